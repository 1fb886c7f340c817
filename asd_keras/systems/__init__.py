"""Anomaly systems: the shared system layer, its presets and the registry.

`get_system(name)` returns the class of any registered system; every one is
a preset of `AnomalySystem` (an extractor composed with a backend).
"""

from asd_keras.systems.base import SYSTEMS
from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system
from asd_keras.systems import contrastive  # noqa: F401
from asd_keras.systems.dense_ae import DenseAutoencoderSystem
from asd_keras.systems import eat_simam  # noqa: F401
from asd_keras.systems import frozen_encoder  # noqa: F401
from asd_keras.systems.gan import EGBADSystem
from asd_keras.systems.gan import GANomalySystem
from asd_keras.systems.gan import SkipGANomalySystem
from asd_keras.systems.logmel_stats import LogMelStatsSystem
from asd_keras.systems import resnet  # noqa: F401
from asd_keras.systems import residual_view  # noqa: F401
from asd_keras.systems import separation  # noqa: F401
from asd_keras.systems.wilkinghoff import WilkinghoffSystem


def get_system(name):
    """The system class registered under `name` (ValueError lists the names)."""
    return SYSTEMS.get(name)


def describe_system(cls):
    """Every configuration key of a system class with its default value
    (for presets: the named options, the system keys and every key of the
    default extractor and backend, resolved)."""
    return dict(cls({}).config)
