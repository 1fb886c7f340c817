"""Anomaly systems: the shared system layer, its presets and the registry.

`get_system(name)` returns the class of any registered system: the presets
of `AnomalySystem` (an extractor composed with a backend) and the families
not yet moved onto it (dense AE, Wilkinghoff, GANs), which keep their own
classes until the pipeline refactor reaches them.
"""

from asd_keras.models import DenseAutoencoderSystem
from asd_keras.models import EGBADSystem
from asd_keras.models import GANomalySystem
from asd_keras.models import SkipGANomalySystem
from asd_keras.models import WilkinghoffSystem
from asd_keras.systems.base import SYSTEMS
from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system
from asd_keras.systems.logmel_stats import LogMelStatsSystem

for _cls in (DenseAutoencoderSystem, WilkinghoffSystem, GANomalySystem,
             SkipGANomalySystem, EGBADSystem):
    SYSTEMS.register(_cls.name)(_cls)


def get_system(name):
    """The system class registered under `name` (ValueError lists the names)."""
    return SYSTEMS.get(name)


def describe_system(cls):
    """Every configuration key of a system class with its default value."""
    from asd_keras.backends import BACKENDS
    from asd_keras.extractors import EXTRACTORS
    from asd_keras.systems.base import SYSTEM_DEFAULTS
    from asd_keras.utils.registry import defaults

    if not issubclass(cls, AnomalySystem):
        return dict(cls({}).config)
    merged = {**SYSTEM_DEFAULTS, **cls.DEFAULTS}
    keys = {**defaults(EXTRACTORS.get(merged["extractor"])),
            **defaults(BACKENDS.get(merged["backend"]))}
    return {**merged, **{k: v for k, v in keys.items() if k not in merged}}
