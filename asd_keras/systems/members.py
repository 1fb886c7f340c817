"""One trained ensemble member of a system: its extractors and backends."""

import dataclasses

from asd_keras.systems.groups import group_key


@dataclasses.dataclass
class Member:
    """The models one ensemble member trained, by group key
    (`asd_keras.systems.groups`): one extractor per extractor group and one
    backend per group.

    Attributes:
        extractors: dict of group key -> fitted `FeatureExtractor`.
        backends: dict of group key -> fitted `ScoringBackend`.
    """

    extractors: dict = dataclasses.field(default_factory=dict)
    backends: dict = dataclasses.field(default_factory=dict)

    def extractor_for(self, grouping, machine_type=None, section=None):
        """The extractor serving clips of a machine type (and section) under
        the system's `extractor_grouping`.

        Raises:
            ValueError: naming the group when this member has no extractor for it.
        """
        return _pick(self.extractors, "extractor", group_key(grouping, machine_type, section))

    def backend_for(self, grouping, machine_type=None, section=None):
        """The backend scoring clips of a machine type (and section) under
        the system's `grouping`.

        Raises:
            ValueError: naming the group when this member has no backend for it.
        """
        return _pick(self.backends, "backend", group_key(grouping, machine_type, section))


def _pick(models, kind, key):
    if key not in models:
        raise ValueError(f"No {kind} was trained for the group {key!r}; trained groups: "
                         f"{sorted(models)}.")
    return models[key]
