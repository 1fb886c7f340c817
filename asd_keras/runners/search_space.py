"""Search spaces: the `space:` of a search file as KerasTuner hyperparameters.

A search file (experiments/gan_detectors/search_table3.yaml) holds a `space`
mapping of configuration key -> values and optionally a `base` mapping of
keys shared by every trial. Each key of the space is

- a list of values: a KerasTuner `Choice`, tried in the listed order by the
  grid oracle and drawn by the others. A list whose values share one type
  among int, float and str holds them as they are; any other list (booleans,
  which a `Choice` would turn into 0 and 1, ints mixed with floats, null,
  lists, mappings) holds each value's JSON text, decoded for the trial;
- a range `{min: A, max: B}` with optional `step: S` and
  `sampling: linear | log | reverse_log` (default linear): an `Int` when A
  and B (and S) are integers, a `Float` otherwise. Log sampling needs
  A > 0. Write floats with a dot (`1.0e-4`): YAML reads `1e-4` as text. The
  grid oracle takes a range's every step, or ten evenly spaced values when
  it has no step.
"""

import json
import numbers

import keras_tuner
import numpy as np

from asd_keras.config import load_config_file

RANGE_KEYS = ("min", "max", "step", "sampling")
SAMPLINGS = ("linear", "log", "reverse_log")
_PLAIN_TYPES = (int, float, str)  # what a Choice holds unchanged


def load_search_spec(path):
    """The search space and base keys of a search file (`space:`, `base:`).

    Args:
        path: str or Path of a YAML file holding a `space` mapping (see the
            module docstring) and optionally a `base` mapping.

    Returns:
        (space, base): the space mapping and a new dict of base keys.

    Raises:
        ValueError: for a file without a valid `space` mapping (the message
            names the key and the fix).
    """
    spec = load_config_file(path)
    if not isinstance(spec, dict) or "space" not in spec:
        raise ValueError(
            f"'{path}' must hold a 'space' mapping of key -> list of values or "
            "{min, max} range (and optionally 'base'); see "
            "experiments/gan_detectors/search_table3.yaml.")
    SearchSpace(spec["space"])  # a bad space fails here, naming the file's key
    return spec["space"], dict(spec.get("base") or {})


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_range(key, spec):
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown or "min" not in spec or "max" not in spec:
        raise ValueError(
            f"Search space key {key!r}: a range is a mapping with 'min' and 'max' (and "
            f"optionally 'step', 'sampling'); received {spec!r}. Use a list of values for "
            "a choice.")
    for name in ("min", "max", "step"):
        value = spec.get(name)
        if value is not None and not _is_number(value):
            raise ValueError(
                f"Search space key {key!r}: {name} must be a number; received {value!r}. "
                "Write floats with a dot (1.0e-4): YAML reads 1e-4 as text.")
    low, high, step = spec["min"], spec["max"], spec.get("step")
    sampling = spec.get("sampling", "linear")
    if sampling not in SAMPLINGS:
        raise ValueError(f"Search space key {key!r}: sampling must be one of {SAMPLINGS}; "
                         f"received {sampling!r}.")
    if not low < high:
        raise ValueError(f"Search space key {key!r}: min must be below max; received "
                         f"min={low!r}, max={high!r}.")
    if sampling != "linear" and low <= 0:
        raise ValueError(f"Search space key {key!r}: {sampling} sampling needs min > 0; "
                         f"received min={low!r}. Use sampling: linear, or a positive min.")
    if step is not None and step <= 0:
        raise ValueError(f"Search space key {key!r}: step must be positive; received "
                         f"{step!r}.")
    integer = all(isinstance(v, numbers.Integral) for v in (low, high, step)
                  if v is not None)
    return integer, low, high, step, sampling


class SearchSpace:
    """A validated search space and its KerasTuner hyperparameters.

    Args:
        space: dict of configuration key -> list of values or range mapping
            (see the module docstring).

    Raises:
        ValueError: the space is empty, or a key holds an empty list, a
            repeated value or a bad range; the message names the key.
    """

    def __init__(self, space):
        if not isinstance(space, dict) or not space:
            raise ValueError(
                f"A search space must be a non-empty mapping of key -> list of values or "
                f"{{min, max}} range; received {space!r}. Add at least one key to 'space'.")
        self.space = space
        self._encoded = set()  # keys whose choices are JSON texts
        for key, values in space.items():
            if isinstance(values, dict):
                _check_range(key, values)
                continue
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"Search space key {key!r} must hold a non-empty list or a "
                                 f"{{min, max}} range; received {values!r}.")
            texts = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(texts)) != len(texts):
                raise ValueError(f"Search space key {key!r} repeats a value: {values!r}.")
            if len({type(v) for v in values}) > 1 or type(values[0]) not in _PLAIN_TYPES:
                self._encoded.add(key)

    @property
    def keys(self):
        """The configuration keys of the space, in the file's order."""
        return list(self.space)

    def hyperparameters(self, exclude=()):
        """A KerasTuner `HyperParameters` holding one entry per key.

        Args:
            exclude: keys left out (Hyperband's `epochs`, its budget).

        Returns:
            keras_tuner.HyperParameters.
        """
        hps = keras_tuner.HyperParameters()
        for key, values in self.space.items():
            if key in exclude:
                continue
            if isinstance(values, dict):
                integer, low, high, step, sampling = _check_range(key, values)
                make = hps.Int if integer else hps.Float
                make(key, low, high, step=step, sampling=sampling)
            elif key in self._encoded:
                hps.Choice(key, [json.dumps(v, sort_keys=True) for v in values])
            else:
                hps.Choice(key, list(values))
        return hps

    def point(self, values):
        """The configuration keys of an oracle's hyperparameter values.

        Args:
            values: dict of hyperparameter name -> value (a KerasTuner
                trial's `hyperparameters.values`; `tuner/...` entries are
                ignored).

        Returns:
            dict of configuration key -> value, JSON-encoded choices decoded.
        """
        point = {}
        for key in self.space:
            if key in values:
                value = values[key]
                point[key] = json.loads(value) if key in self._encoded else _plain(value)
        return point

    def largest(self, key):
        """The largest value of a numeric key (a range's max)."""
        values = self.space[key]
        if isinstance(values, dict):
            return values["max"]
        if not all(_is_number(v) for v in values):
            raise ValueError(f"Search space key {key!r} must hold numbers here; received "
                             f"{values!r}.")
        return max(values)


def grid_size(hps):
    """The number of points the grid oracle visits in `hps`."""
    return int(np.prod([len(list(hp.values)) for hp in hps.space]))


def _plain(value):
    """A NumPy scalar as the Python value (YAML and JSON write those)."""
    return value.item() if isinstance(value, np.generic) else value
