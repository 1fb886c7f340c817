"""Scoring backends: per-clip features to anomaly scores (see `base`).

Importing this package imports every module in it, which registers every
backend: a new one is a new file.
"""

from asd_keras.backends.base import BACKENDS
from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import get_backend
from asd_keras.backends.base import load_backend
from asd_keras.backends.base import register_backend
from asd_keras.utils.registry import import_submodules

# Every module of the package, so that adding a component is adding a file
# (its registration decorator runs on import).
import_submodules(__name__, __path__)
