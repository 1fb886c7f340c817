"""Scoring backends: decision thresholds, Mahalanobis (MAHALA) scoring and
per-section embedding backends (k-means, local density)."""

from asd_keras.scoring.embedding import KMeansBackend
from asd_keras.scoring.embedding import LocalDensityBackend
