"""Named registries of components (backends, extractors, systems)."""

import inspect


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
