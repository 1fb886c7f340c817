"""Anomaly systems: the shared system layer, its presets and the registry.

`get_system(name)` returns the class of any registered system; every one is
a preset of `AnomalySystem` (an extractor composed with a backend).
"""

from asd_keras.systems.base import SYSTEMS
from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system
from asd_keras.systems.dense_ae import DenseAutoencoderSystem
from asd_keras.systems.gan import EGBADSystem
from asd_keras.systems.gan import GANomalySystem
from asd_keras.systems.gan import SkipGANomalySystem
from asd_keras.systems.logmel_stats import LogMelStatsSystem
from asd_keras.systems.wilkinghoff import WilkinghoffSystem
from asd_keras.utils.registry import import_submodules

# Every module of the package, so that adding a component is adding a file
# (its registration decorator runs on import).
import_submodules(__name__, __path__)


def get_system(name):
    """The system class registered under `name` (ValueError lists the names)."""
    return SYSTEMS.get(name)


def describe_system(cls):
    """Every configuration key of a system class with its default value
    (for presets: the named options, the system keys and every key of the
    default extractor and backend, resolved)."""
    return dict(cls({}).config)
