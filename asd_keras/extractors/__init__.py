"""Feature extractors: clips to per-clip feature vectors (see `base`).

Importing this package imports every module in it, which registers every
extractor: a new one is a new file.
"""

from asd_keras.extractors.base import EXTRACTORS
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.base import get_extractor
from asd_keras.extractors.base import load_extractor
from asd_keras.extractors.base import register_extractor
from asd_keras.utils.registry import import_submodules

# Every module of the package, so that adding a component is adding a file
# (its registration decorator runs on import).
import_submodules(__name__, __path__)
