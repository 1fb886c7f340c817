"""The training-free baseline: per-band log-mel statistics, scored per section.

Each clip becomes the mean and standard deviation over time of each of its
128 log-mel bands (256 values); one global Mahalanobis model (Ledoit-Wolf
covariance) per machine type and section scores them. Nothing is trained,
so it is the simplest honest reference point for any trained system.
`backend=knn` (and the kNN keys) swaps the scorer.
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("logmel_stats")
class LogMelStatsSystem(AnomalySystem):
    """Training-free: per-band log-mel mean and std, Mahalanobis per section."""

    DEFAULTS = {"extractor": "logmel_stats", "backend": "mahalanobis", "grouping": "section"}
