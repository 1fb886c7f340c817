"""Scoring backends: per-clip features to anomaly scores (see `base`).

Importing this package registers every backend below.
"""

from asd_keras.backends.base import BACKENDS
from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import get_backend
from asd_keras.backends.base import load_backend
from asd_keras.backends.base import register_backend
from asd_keras.backends import linear_probe  # noqa: F401
from asd_keras.backends import mahalanobis  # noqa: F401
from asd_keras.backends import knn  # noqa: F401
from asd_keras.backends import kmeans  # noqa: F401
from asd_keras.backends import residual_knn  # noqa: F401
