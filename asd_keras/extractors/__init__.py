"""Feature extractors: clips to per-clip feature vectors (see `base`).

Importing this package registers every extractor below.
"""

from asd_keras.extractors.base import EXTRACTORS
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.base import get_extractor
from asd_keras.extractors.base import load_extractor
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors import logmel_stats  # noqa: F401
from asd_keras.extractors import dense_ae  # noqa: F401
from asd_keras.extractors import classifier_embedding  # noqa: F401
from asd_keras.extractors import gan  # noqa: F401
from asd_keras.extractors import contrastive  # noqa: F401
from asd_keras.extractors import resnet_classifier  # noqa: F401
from asd_keras.extractors import separation  # noqa: F401
from asd_keras.extractors import frozen_encoder  # noqa: F401
from asd_keras.extractors import finetuned_encoder  # noqa: F401
