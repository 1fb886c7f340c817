"""Named registries of components (backends, extractors, systems)."""

import importlib
import inspect
import pkgutil


class Registry:
    """A name -> class table filled by a class decorator.

    Args:
        kind: str. What the entries are, for messages ("backend", ...).

    Example:
    >>> BACKENDS = Registry("backend")
    >>> @BACKENDS.register("knn")
    ... class KNN: ...
    """

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name):
        """Class decorator adding a class under `name` (sets `cls.name`)."""

        def add(cls):
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"A {self.kind} named {name!r} is already registered "
                                 f"({self._entries[name].__name__}).")
            cls.name = name
            self._entries[name] = cls
            return cls

        return add

    def get(self, name):
        """The class registered as `name`, or a ValueError listing the names."""
        if name not in self._entries:
            raise ValueError(f"Unknown {self.kind} {name!r}; known {self.kind}s: "
                             f"{sorted(self._entries)}.")
        return self._entries[name]

    def create(self, name, **config):
        """A new instance of `name` built from its config keys."""
        cls = self.get(name)
        try:
            inspect.signature(cls).bind(**config)
        except TypeError as error:
            raise ValueError(f"Bad config for {self.kind} {name!r}: {error}; its keys: "
                             f"{sorted(defaults(cls))}.") from None
        return cls(**config)

    def names(self):
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self.names())


def defaults(cls):
    """Constructor keys of a registered class and their default values."""
    return {name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def import_submodules(package_name, package_path):
    """Imports every module of a package, so that their registrations run.

    A package of components calls this at the end of its `__init__`; adding
    a component is then adding a file, with no list of imports to edit.

    Args:
        package_name: str. The package's `__name__`.
        package_path: the package's `__path__`.

    Returns:
        list of str: the names of the modules imported, sorted.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(package_path)
                   if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package_name}.{name}")
    return names
