"""How a system's flat configuration is resolved (see `asd_keras.systems.base`):
the system's own keys, a preset's named options and variants, and the
extractor's and backend's keys, each checked before anything is built."""

import dataclasses

from asd_keras.backends import BACKENDS
from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import mapping
from asd_keras.config import number
from asd_keras.config import string
from asd_keras.config import validate_config
from asd_keras.extractors import EXTRACTORS
from asd_keras.utils.registry import defaults
from asd_keras.utils.training import DISTRIBUTE

GROUPINGS = ("all", "machine_type", "section")  # coarse to fine
THRESHOLDS = ("gamma", "percentile")
THRESHOLD_SCORES = ("auto", "train", "cross_fitted")

SYSTEM_DEFAULTS = {
    "extractor": "logmel_stats",
    "backend": "mahalanobis",
    "extractor_grouping": "all",
    "grouping": "section",
    "feature_set": None,
    "ensemble_size": 1,
    "threshold": "gamma",
    "threshold_quantile": 0.9,
    "threshold_scores": "auto",
    "machine_overrides": {},
    "seed": 0,
    "deterministic": False,
    "tensorboard": False,
    "distribute": "none",
}
SYSTEM_SCHEMA = {
    "extractor": string(),
    "backend": string(),
    "extractor_grouping": choice(*GROUPINGS),
    "grouping": choice(*GROUPINGS),
    "feature_set": string(optional=True),
    "ensemble_size": integer(min=1),
    "threshold": choice(*THRESHOLDS),
    "threshold_quantile": number(gt=0, lt=1),
    "threshold_scores": choice(*THRESHOLD_SCORES),
    "machine_overrides": mapping(),
    # NumPy's seeds are 32-bit unsigned.
    "seed": integer(min=0, max=2**32 - 1),
    "deterministic": boolean(),
    "tensorboard": boolean(),
    "distribute": choice(*DISTRIBUTE),
}


@dataclasses.dataclass
class Resolved:
    """A preset's configuration, resolved.

    Attributes:
        options: dict. The values of the preset's named options and variants.
        system: dict. The validated system keys (`SYSTEM_DEFAULTS`).
        extractor_config: dict. Keys for the extractor's constructor.
        backend_config: dict. Keys for the backend's constructor.
        extractor_keys: dict. Every key the extractor takes, with its default.
        backend_keys: dict. Every key the backend takes, with its default.
    """

    options: dict
    system: dict
    extractor_config: dict
    backend_config: dict
    extractor_keys: dict
    backend_keys: dict


def resolve(preset, config):
    """Resolves the user's flat `config` against a preset class (its
    `name`, `DEFAULTS`, `OPTIONS`, `VARIANTS` and `IMPLIES`).

    Raises:
        ValueError: a bad option or variant value, a key no component takes
            (listing the valid ones), a key both take, a bad system value, or
            a grouping coarser than the extractor grouping.
    """
    user = dict(config or {})
    options, variant_defaults = {}, {}
    for key, variants in preset.VARIANTS.items():
        value = options[key] = user.pop(key, preset.DEFAULTS.get(key))
        if value not in variants:
            raise ValueError(f"{key} must be one of {tuple(variants)}; received "
                             f"{value!r}.")
        variant_defaults.update(variants[value])
    options.update(expand_options(preset, user))
    chosen = {k: v for k, v in preset.DEFAULTS.items()
              if k not in preset.OPTIONS and k not in preset.VARIANTS}
    chosen.update(variant_defaults)
    merged = {**SYSTEM_DEFAULTS, **chosen, **user}
    for key, values in preset.IMPLIES.items():
        for name, implied in values.get(merged.get(key), {}).items():
            if name in user and user[name] != implied:
                raise ValueError(f"{key}={merged[key]} needs {name}={implied!r}; "
                                 f"received {name}={user[name]!r}.")
            merged[name] = implied
    extractor_keys = defaults(EXTRACTORS.get(merged["extractor"]))
    backend_keys = defaults(BACKENDS.get(merged["backend"]))
    # Preset values meant for another extractor or backend (chosen by the
    # user) are dropped; the user's own keys must fit somewhere.
    components = {k: v for k, v in {**chosen, **user}.items()
                  if k not in SYSTEM_DEFAULTS and (
                      k in user or k in extractor_keys or k in backend_keys)}
    unknown = sorted(k for k in components
                     if k not in extractor_keys and k not in backend_keys)
    if unknown:
        valid = set(SYSTEM_DEFAULTS) | set(preset.OPTIONS) | set(extractor_keys) | set(
            backend_keys)
        raise ValueError(
            f"Unknown configuration key(s) {unknown} for system {preset.name!r} with "
            f"extractor {merged['extractor']!r} and backend {merged['backend']!r}. "
            f"Valid keys: {sorted(valid)}.")
    both = sorted(k for k in components if k in extractor_keys and k in backend_keys)
    if both:
        raise ValueError(f"Configuration key(s) {both} are taken by both the extractor "
                         f"{merged['extractor']!r} and the backend {merged['backend']!r}.")
    system = validate_config({k: merged[k] for k in SYSTEM_DEFAULTS}, SYSTEM_SCHEMA)
    if GROUPINGS.index(system["grouping"]) < GROUPINGS.index(system["extractor_grouping"]):
        raise ValueError(
            f"grouping={system['grouping']!r} is coarser than extractor_grouping="
            f"{system['extractor_grouping']!r}: each backend group must lie within "
            "one extractor group. Choose a grouping at least as fine.")
    return Resolved(options, system,
                    {k: v for k, v in components.items() if k in extractor_keys},
                    {k: v for k, v in components.items() if k in backend_keys},
                    extractor_keys, backend_keys)


def expand_options(preset, user):
    """Replaces the preset's named options in `user` (in place) by the keys
    they stand for; returns the options' values."""
    values = {}
    for key, choices in preset.OPTIONS.items():
        value = user.pop(key, preset.DEFAULTS.get(key))
        if value not in choices:
            raise ValueError(f"{key} must be one of {tuple(choices)}; received "
                             f"{value!r}.")
        values[key] = value
        for name, implied in choices[value].items():
            if name in user and user[name] != implied:
                raise ValueError(f"{key}={value} means {name}={implied!r}, but "
                                 f"{name}={user[name]!r} was given; drop one of them.")
            user[name] = implied
    return values
