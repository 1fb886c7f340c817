"""Anomaly systems: the shared system layer, its presets and the registry.

`get_system(name)` returns the class of any registered system: the presets
of `AnomalySystem` (an extractor composed with a backend) and the families
not yet moved onto it (Wilkinghoff, GANs), which keep their own
classes until the pipeline refactor reaches them.
"""

from asd_keras.models import EGBADSystem
from asd_keras.models import GANomalySystem
from asd_keras.models import SkipGANomalySystem
from asd_keras.models import WilkinghoffSystem
from asd_keras.systems.base import SYSTEMS
from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system
from asd_keras.systems.dense_ae import DenseAutoencoderSystem
from asd_keras.systems.logmel_stats import LogMelStatsSystem

for _cls in (WilkinghoffSystem, GANomalySystem,
             SkipGANomalySystem, EGBADSystem):
    SYSTEMS.register(_cls.name)(_cls)


def get_system(name):
    """The system class registered under `name` (ValueError lists the names)."""
    return SYSTEMS.get(name)


def describe_system(cls):
    """Every configuration key of a system class with its default value
    (for presets: the named options, the system keys and every key of the
    default extractor and backend, resolved)."""
    return dict(cls({}).config)
