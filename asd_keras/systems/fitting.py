"""Fitting one ensemble member of a system, group by group (the steps of
`AnomalySystem.fit`): an extractor per extractor group, reused when an
interrupted fit finished it; a backend per group; and the training scores
the group's decision threshold is fitted on, cross-fitted for backends that
keep the training clips themselves."""

import logging

import numpy as np
import pandas as pd

from asd_keras.extractors import load_extractor

logger = logging.getLogger(__name__)


def backend_metadata(table):
    """The backend metadata columns of a dataset table (`domain`, missing
    ones as `"source"`, `section`, and `label` when the table has it)."""
    meta = pd.DataFrame({"domain": table["domain"].fillna("source").astype(str).to_numpy(),
                         "section": table["section"].astype(str).to_numpy()})
    if "label" in table.columns:
        meta["label"] = table["label"].to_numpy()
    return meta


def fit_extractor(system, member, group, rows, context, checkpoints, pool):
    """One group's fitted extractor; records its `data_choices` on `system`.

    Args:
        system: the `AnomalySystem` being fitted.
        member: int. The ensemble member.
        group: str. The extractor group key.
        rows: DataFrame of the group's training clips.
        context: `TrainingContext` of the run.
        checkpoints: Path or None. The checkpoint folder: a trainable
            extractor is saved under `finished/` once fitted, and one found
            there is loaded instead of fitted again.
        pool: DataFrame of every training clip, for extractors that use
            other groups' clips (`uses_other_groups`).
    """
    name = f"member{member}_{group}"
    finished = None if checkpoints is None else checkpoints / "finished" / name
    if finished is not None and (finished / "extractor.json").is_file():
        logger.info("%s: finished in an earlier attempt; reusing '%s'.", name, finished)
        return load_extractor(finished)
    extractor = system._new_extractor(member, group)
    if extractor.trainable:
        logger.info("Training %s extractor %s on %d clips.", system.config["extractor"],
                    name, len(rows))
    extra = {"pool": pool} if extractor.uses_other_groups else {}
    extractor.fit(rows.reset_index(drop=True), context, name, **extra)
    choices = extractor.data_choices
    if choices:
        if system.config["extractor_grouping"] == "all":
            system.data_choices = dict(choices)
        else:
            system.data_choices[group] = dict(choices)
    if finished is not None and extractor.trainable:
        extractor.save(finished)  # extractor.json, written last, marks it finished
    return extractor


def fit_backend(system, member, group, extractor, rows, features):
    """One group's fitted backend, on the features of its training clips
    (or on their frames, for a backend that fits on frames of a feature set
    the extractor gives frame by frame).

    Raises:
        ValueError: the backend refuses the clips; the message names the
            group and its number of clips.
    """
    try:
        return _fit_backend_of_group(system, member, group, extractor, rows, features)
    except ValueError as error:
        raise ValueError(f"Group {group!r} ({len(rows)} training clips): {error}") from error


def _fit_backend_of_group(system, member, group, extractor, rows, features):
    backend = system._new_backend(member, group)
    metadata = backend_metadata(rows)
    name = system.config["feature_set"]
    if backend.fits_on_frames and name is not None and name in extractor.frame_sets:
        return backend.fit_frames(
            extractor.frame_batches(rows.reset_index(drop=True), name), metadata)
    return backend.fit(features, metadata)


def cross_fitted_scores(group, rows, features, new_backend, folds=2):
    """Each fold's training scores under a backend fitted on the other folds
    (the folds alternate within each domain, so both hold every domain).

    Args:
        group: str. The group key, for the error messages.
        rows: DataFrame of the group's training clips.
        features: array `(clips, dim)` aligned with `rows`.
        new_backend: callable returning a new, unfitted backend of the group.
        folds: int.

    Returns:
        array `(clips,)` of scores.

    Raises:
        ValueError: a fold would hold every clip or none, or a backend
            refuses half of the clips.
    """
    domains = rows["domain"].fillna("source").astype(str).to_numpy()
    fold = np.zeros(len(rows), int)
    for domain in pd.unique(domains):
        where = np.flatnonzero(domains == domain)
        fold[where] = np.arange(len(where)) % folds
    scores = np.zeros(len(rows))
    metadata = backend_metadata(rows)
    for f in range(folds):
        held = fold == f
        if held.all() or not held.any():
            raise ValueError(f"Group {group!r} has {len(rows)} training clip(s): too few "
                             "to cross-fit the threshold scores (use "
                             "threshold_scores=train).")
        try:
            fitted = new_backend().fit(
                features[~held], metadata[~held].reset_index(drop=True))
        except ValueError as error:
            raise ValueError(
                f"Group {group!r}, backend fitted on half of its {len(rows)} training "
                f"clips to cross-fit the threshold scores: {error} Use "
                "threshold_scores=train, or settings that fit fewer clips.") from error
        scores[held] = fitted.score(features[held])
    return scores
