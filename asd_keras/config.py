"""Flat run configurations: defaults, named variants, file and CLI overrides."""

import math
import numbers
from pathlib import Path

import yaml


def parse_overrides(items, flags=None):
    """Parses `key=value` strings; values are read as YAML scalars.

    Example: `["epochs=3", "score=mahala"]` -> `{"epochs": 3, "score":
    "mahala"}`.

    Args:
        items: iterable of `key=value` strings, or None.
        flags: dict, optional. Command-line options that set a key too,
            `{"--epochs": 3}` (None values are options not given); each sets
            the key named by the flag without its dashes.

    Returns:
        dict of key -> parsed value.

    Raises:
        ValueError: for an item without `=`, or a key given twice (naming
            the key and both values): the last one silently winning would
            train with a setting the user may not have meant.
    """
    overrides, given = {}, {}
    entries = []
    for item in items or ():
        if "=" not in item:
            raise ValueError(
                f"Override {item!r} is not of the form key=value (e.g. "
                "epochs=10)."
            )
        key, value = item.split("=", 1)
        # Parsed in order: an unquoted mapping split by the shell fails on
        # its first word, whose error says how to quote it.
        parsed = _parse_value(value)
        entries.append((key.strip(), item, lambda v=parsed: v))
    # An option's value is already typed by argparse.
    entries += [(flag.lstrip("-"), f"{flag} {value}", lambda v=value: v)
                for flag, value in (flags or {}).items() if value is not None]
    for key, shown, parse in entries:
        if key in overrides:
            raise ValueError(
                f"The key {key!r} is given twice on the command line ({given[key]} and "
                f"{shown}); give it once.")
        overrides[key], given[key] = parse(), shown
    return overrides


def _parse_value(text):
    # YAML 1.1 reads "1e-4" as a string, so numbers are tried first.
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return load_yaml_text(text) if text else None
    except _DuplicateKey as error:
        raise ValueError(f"Override value {text!r}: {error.problem}.") from None
    except yaml.YAMLError as error:
        raise ValueError(
            f"Override value {text!r} is not valid YAML ({str(error).splitlines()[0]}); "
            "quote a mapping as one argument, e.g. \"simam={default: local, fan: "
            "global}\".") from None


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping key given twice in YAML text."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping key given twice.

    PyYAML keeps the last of two equal keys without a word, so `epochs: 1`
    followed later by `epochs: 2` would train 2 epochs whichever the author
    meant.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: the base class reports it
                    break
                if first is not None:
                    raise _DuplicateKey(
                        None, None,
                        f"the key {key!r} is given twice ({self._shown(first)} at line "
                        f"{first.start_mark.line + 1} and {self._shown(value_node)} at "
                        f"line {value_node.start_mark.line + 1}); keep one",
                        key_node.start_mark)
                seen[key] = value_node
        return super().construct_mapping(node, deep=deep)

    def _shown(self, node):
        """A value as written (scalars) or as read (collections), for errors."""
        if isinstance(node, yaml.ScalarNode):
            return node.value
        return repr(self.construct_object(node, deep=True))


def load_yaml_text(text):
    """`yaml.safe_load` that raises on a mapping key given twice.

    Raises:
        yaml.YAMLError: as `yaml.safe_load`, and a `ConstructorError` whose
            problem names the repeated key, both values and their lines.
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def read_yaml_mapping(path, what="Config file", fix="Fix the file"):
    """Reads a YAML file that must hold a mapping.

    Args:
        path: str or Path. An existing file.
        what: str. Name of the file in error messages.
        fix: str. What the user should do, ending the error messages.

    Returns:
        dict (empty for an empty file).

    Raises:
        ValueError: naming the file (and the line YAML reports) when it is
            not UTF-8, not YAML, or not a mapping.
    """
    try:
        data = load_yaml_text(Path(path).read_text()) or {}
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} '{path}' is not a UTF-8 text file ({error.reason} at "
            f"byte {error.start}). {fix}."
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(
            f"{what} '{path}' is not valid YAML{where}: {problem}. {fix}."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{what} '{path}' must hold a mapping of keys to values; found "
            f"{type(data).__name__}. {fix}."
        )
    return data


def load_config_file(path):
    """Reads a YAML mapping of configuration keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file '{path}' does not exist.")
    return read_yaml_mapping(path)


# ----------------------------------------------------------------------
# Declarative validation of resolved configurations
# ----------------------------------------------------------------------

_KINDS = ("int", "float", "bool", "str", "choice", "mapping")


class Option:
    """The rule for one configuration key: its type and allowed values.

    Use the helpers `integer`, `number`, `boolean`, `string`, `choice` and
    `mapping` rather than this class. Values are checked strictly, so a
    typo fails before any work starts rather than deep inside training:

    - `int`: Python or NumPy integers. A float with an integral value
      (`3.0`, also what `epochs=1e2` parses to) is accepted and stored as
      the int `3`; `2.5`, `"3"`, `"abc"` and booleans are rejected.
    - `float`: finite ints or floats, stored as float; booleans, strings,
      NaN and infinities are rejected.
    - `bool`: only `True` and `False`; `0`, `1` and strings are rejected.
      (YAML itself reads `true`/`false`, and also `yes`/`no`/`on`/`off`, as
      booleans; anything else, e.g. `"enabled"`, stays a string.)
    - `str`: strings only.
    - `choice`: one of the listed values (booleans never match `0`/`1`).
    - `mapping`: a dict (its contents are the caller's to check).

    Args:
        kind: str. One of `"int"`, `"float"`, `"bool"`, `"str"`, `"choice"`,
            `"mapping"`.
        choices: tuple. The allowed values of a `"choice"`.
        min: number or None. Inclusive lower bound.
        max: number or None. Inclusive upper bound.
        gt: number or None. Exclusive lower bound.
        lt: number or None. Exclusive upper bound.
        optional: bool. Whether None is also allowed.
        also: tuple. Extra literal values allowed besides the type, e.g.
            `("default",)`.
    """

    def __init__(self, kind, choices=(), min=None, max=None, gt=None, lt=None,
                 optional=False, also=()):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}; received {kind!r}.")
        self.kind = kind
        self.choices = tuple(choices)
        self.min, self.max, self.gt, self.lt = min, max, gt, lt
        self.optional = bool(optional)
        self.also = tuple(also)

    def describe(self):
        """What is allowed, in words (used in error messages)."""
        if self.kind == "choice":
            text = f"one of {self.choices}"
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string", "mapping": "a mapping"}[self.kind]
            low = (f"[{self.min}" if self.min is not None
                   else f"({self.gt}" if self.gt is not None else None)
            high = (f"{self.max}]" if self.max is not None
                    else f"{self.lt})" if self.lt is not None else None)
            if low and high:
                text += f" in {low}, {high}"
            elif low:
                text += f" {'>=' if self.min is not None else '>'} {low[1:]}"
            elif high:
                text += f" {'<=' if self.max is not None else '<'} {high[:-1]}"
        extras = [repr(v) for v in self.also] + (["None"] if self.optional else [])
        if extras:
            text += " or " + " or ".join(extras)
        return text

    def check(self, key, value):
        """Returns `value` in canonical form, or raises ValueError naming `key`."""
        received = value

        def fail():
            raise ValueError(
                f"{key} must be {self.describe()}; received {received!r} "
                f"({type(received).__name__}).")

        if value is None and self.optional:
            return None
        if any(_same(value, extra) for extra in self.also):
            return value
        if self.kind == "choice":
            for allowed in self.choices:
                if _same(value, allowed):
                    return allowed
            fail()
        if self.kind == "mapping":
            return value if isinstance(value, dict) else fail()
        if self.kind == "str":
            return value if isinstance(value, str) else fail()
        is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"
        if self.kind == "bool":
            return bool(value) if is_bool else fail()
        if is_bool or not isinstance(value, numbers.Real):
            fail()
        if self.kind == "int":
            if isinstance(value, numbers.Integral):
                value = int(value)
            elif math.isfinite(value) and float(value).is_integer():
                value = int(value)
            else:
                fail()
        else:
            value = float(value)
            if not math.isfinite(value):
                fail()
        if ((self.min is not None and value < self.min)
                or (self.max is not None and value > self.max)
                or (self.gt is not None and value <= self.gt)
                or (self.lt is not None and value >= self.lt)):
            fail()
        return value


def _same(value, allowed):
    # `True == 1` and `1.0 == 1` in Python; a boolean must not pass for a
    # number (nor a number for a string) in a choice.
    if isinstance(value, bool) != isinstance(allowed, bool):
        return False
    if isinstance(value, str) != isinstance(allowed, str):
        return False
    try:
        return bool(value == allowed)
    except (TypeError, ValueError):
        return False


def integer(min=None, max=None, gt=None, lt=None, optional=False, also=()):
    """An integer key, e.g. `integer(min=1)` for `epochs`."""
    return Option("int", min=min, max=max, gt=gt, lt=lt, optional=optional, also=also)


def check_integer(name, value, minimum=None, maximum=None):
    """The project's one integer rule, for config keys and constructor
    arguments alike: an `int`, a NumPy integer or an integral float (`4.0`),
    never a bool or a string; returned as `int`.

    Args:
        name: str. The argument's name, for the message.
        value: the value to check.
        minimum: int or None. Smallest allowed value.
        maximum: int or None. Largest allowed value.

    Returns:
        int.

    Raises:
        ValueError: naming `name`, the value received and what is allowed.
    """
    return integer(min=minimum, max=maximum).check(name, value)


def number(min=None, max=None, gt=None, lt=None, optional=False, also=()):
    """A real-valued key, e.g. `number(gt=0, lt=1)` for a quantile."""
    return Option("float", min=min, max=max, gt=gt, lt=lt, optional=optional, also=also)


def boolean():
    """A `True`/`False` key."""
    return Option("bool")


def string(optional=False):
    """A free-form string key (checked by the code that uses it)."""
    return Option("str", optional=optional)


def choice(*choices, optional=False):
    """A key that takes one of `choices`."""
    return Option("choice", choices=choices, optional=optional)


def mapping():
    """A dict-valued key; its contents are validated by the system."""
    return Option("mapping")


def validate_config(config, schema, prefix=""):
    """Checks every value of a resolved configuration against a schema.

    Called by each extractor's and the system's `__init__`, so the
    Python API and the command line reject a bad value (`epochs=0`,
    `threshold_quantile=2`, `epochs=abc`) before any data is read.

    Args:
        config: dict. The resolved configuration.
        schema: dict key -> `Option` (see `integer`, `number`, `choice`...).
            Every key of `config` must have a rule.
        prefix: str. Prepended to key names in error messages, e.g.
            `"machine_overrides.fan."`.

    Returns:
        dict, `config` with values in canonical form (integral floats such
        as `3.0` as ints, ints of float keys as floats).

    Raises:
        ValueError: naming the first key whose value is not allowed, the
            value received and what is allowed.

    Example:
    >>> validate_config({"epochs": 3.0}, {"epochs": integer(min=1)})
    {'epochs': 3}
    """
    unchecked = sorted(set(config) - set(schema))
    if unchecked:
        raise ValueError(
            f"No validation rule for configuration key(s) {unchecked}; every key "
            "needs an entry in the system's schema.")
    return {key: schema[key].check(f"{prefix}{key}", value)
            for key, value in config.items()}
