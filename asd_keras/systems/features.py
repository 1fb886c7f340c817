"""The features a system scores: every clip of a table through the extractor
of its group, optionally cached by clip path (`AnomalySystem.caching_features`)."""

import numpy as np

from asd_keras.systems.groups import group_keys


def feature_set_name(sets, feature_set, extractor):
    """The feature set to score among those an extractor gives.

    Args:
        sets: dict of feature-set name -> values, as `transform` returns.
        feature_set: str or None. The system's `feature_set` key; None
            takes the extractor's only set.
        extractor: str. The extractor's name, for the error messages.

    Raises:
        ValueError: `feature_set` is None and the extractor gives several
            sets, or `feature_set` is not one of them.
    """
    name = feature_set
    if name is None:
        if len(sets) != 1:
            raise ValueError(f"Extractor {extractor!r} gives the feature "
                             f"sets {sorted(sets)}; choose one with feature_set=NAME.")
        return next(iter(sets))
    if name not in sets:
        raise ValueError(f"feature_set={name!r} is not one of the extractor's sets "
                         f"{sorted(sets)}.")
    return name


def group_features(extractors, table, config, feature_cache=None, verbose=0):
    """The chosen feature set of every row, each row by its group's extractor.

    Args:
        extractors: dict of group key -> fitted extractor (one member's).
        table: DataFrame of the clips.
        config: the system's configuration (`extractor_grouping`,
            `feature_set`, `extractor`).
        feature_cache: dict or None. Inside `caching_features`, the
            system's cache: `id(extractors)` -> {clip path: features}.
        verbose: int. Passed to the extractors' `transform`.

    Returns:
        float32 array `(rows, ...)`.

    Raises:
        ValueError: a row's group has no extractor.
    """
    keys = group_keys(table, config["extractor_grouping"])
    unseen = sorted(set(keys) - set(extractors))
    if unseen:
        raise ValueError(
            f"No trained extractor for {unseen} (extractor_grouping="
            f"{config['extractor_grouping']!r}); trained: {sorted(extractors)}.")
    cache = None
    if feature_cache is not None:
        cache = feature_cache.setdefault(id(extractors), {})
    out = None
    for group in sorted(keys.unique()):
        rows = (keys == group).to_numpy()
        part = table[rows]
        paths = part["path"].astype(str).tolist() if "path" in part else None
        todo = np.ones(len(part), bool)
        if cache is not None and paths is not None:
            todo = np.array([p not in cache for p in paths], bool)
        values = None
        if todo.any():
            sets = extractors[group].transform(part[todo], verbose=verbose)
            values = sets[feature_set_name(sets, config["feature_set"], config["extractor"])]
            if cache is not None and paths is not None:
                cache.update(zip(np.asarray(paths)[todo], values))
        if not todo.all() or values is None:
            values = np.stack([cache[p] for p in paths])
        if out is None:
            out = np.zeros((len(table),) + values.shape[1:], np.float32)
        out[rows] = values
    return out
