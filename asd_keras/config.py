"""Flat run configurations: defaults, named variants, file and CLI overrides."""

from pathlib import Path

import yaml


def parse_overrides(items):
    """Parses `key=value` strings; values are read as YAML scalars.

    Example: `["epochs=3", "score=mahala"]` -> `{"epochs": 3, "score":
    "mahala"}`.
    """
    overrides = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(
                f"Override {item!r} is not of the form key=value (e.g. "
                "epochs=10)."
            )
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    return overrides


def _parse_value(text):
    # YAML 1.1 reads "1e-4" as a string, so numbers are tried first.
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text) if text else None


def load_config_file(path):
    """Reads a YAML mapping of configuration keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file '{path}' does not exist.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(
            f"Config file '{path}' must hold a mapping of keys to values; "
            f"found {type(data).__name__}."
        )
    return data


def resolve_config(defaults, user, variants=None, variant_key="variant"):
    """Merges defaults, the chosen variant and user values.

    Precedence: user values > the variant's values > defaults. Unknown keys
    are an error that lists the valid ones.

    Args:
        defaults: dict of every valid key.
        user: dict of values from a config file and the command line.
        variants: dict of variant name -> dict of values, optional.
        variant_key: str. Key in `defaults`/`user` naming the variant.

    Returns:
        dict, the resolved configuration.
    """
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown configuration key(s) {unknown}. Valid keys: "
            f"{sorted(defaults)}."
        )
    config = dict(defaults)
    if variants is not None:
        name = user.get(variant_key, defaults[variant_key])
        if name not in variants:
            raise ValueError(
                f"Unknown {variant_key} {name!r}; use one of {sorted(variants)}."
            )
        config.update(variants[name])
    config.update(user)
    return config
