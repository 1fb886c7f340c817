"""Hyper-parameter search with an explicit selection protocol.

A search space is a declarative mapping of configuration keys to lists of
values (e.g. the GAN paper's Table 3, `experiments/gan_detectors/
search_table3.yaml`). `grid_points` enumerates the full grid, `sample_points`
draws a budget of distinct points from it. `run_search` trains one run per
point (one model per machine type), scores it, and appends one row per
(trial, machine type) to `trials.csv`, so an interrupted search resumes.

Two selection protocols, and every result says which one produced it:
- `"test"`: the paper's protocol (§5.3): hyper-parameters are chosen per
  machine type by the AUC on the test set that is then reported. The
  reported numbers are optimistic: the anomalous test clips chose them.
- `"holdout"`: the labelled test clips of every (machine type, section,
  label) are split in two halves; the choice is made on the selection half
  and the numbers are reported on the other half, which the choice never
  saw.
"""

import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from asd_keras import runs
from asd_keras.config import load_config_file
from asd_keras.evaluation.metrics import machine_type_metrics
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.progress import progress_bar

logger = logging.getLogger(__name__)

PROTOCOLS = {
    "test": "selected and reported on the same test clips (the paper's protocol; "
            "optimistic, since the anomalous test clips choose the hyper-parameters)",
    "holdout": "selected on one half of the labelled test clips, reported on the "
               "other half that the selection never saw",
}
MODES = ("grid", "random")


def load_search_spec(path):
    """The search space and base keys of a search file (`space:`, `base:`).

    Args:
        path: str or Path of a YAML file holding a `space` mapping of key ->
            list of values and optionally a `base` mapping
            (experiments/gan_detectors/search_table3.yaml).

    Returns:
        (space, base): the space mapping and a new dict of base keys.

    Raises:
        ValueError: for a file without a `space` mapping.
    """
    spec = load_config_file(path)
    if not isinstance(spec, dict) or "space" not in spec:
        raise ValueError(
            f"'{path}' must hold a 'space' mapping of key -> list of values (and "
            "optionally 'base'); see experiments/gan_detectors/search_table3.yaml.")
    return spec["space"], dict(spec.get("base") or {})


def check_space(space):
    """Validates a space: a non-empty mapping of key -> non-empty list."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"A search space must be a non-empty mapping of key -> list of "
                         f"values; received {space!r}.")
    for key, values in space.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"Search space key {key!r} must hold a non-empty list; "
                             f"received {values!r}.")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"Search space key {key!r} repeats a value: {values!r}.")
    return space


def grid_size(space):
    """Number of points of the full grid of `space`.

    Args:
        space: a dict of key -> list of values (checked by `check_space`).

    Returns:
        The product of the lists' lengths.
    """
    return int(np.prod([len(v) for v in check_space(space).values()]))


def grid_points(space):
    """Every point of the grid, in a fixed order (last key varies fastest)."""
    keys = list(check_space(space))
    return [dict(zip(keys, combo)) for combo in itertools.product(*space.values())]


def sample_points(space, budget, seed=0):
    """`budget` distinct grid points drawn uniformly without replacement."""
    keys = list(check_space(space))
    sizes = [len(space[k]) for k in keys]
    total = grid_size(space)
    if int(budget) < 1:
        raise ValueError(f"budget must be >= 1; received {budget!r}.")
    budget = min(int(budget), total)
    flat = np.random.default_rng(seed).choice(total, size=budget, replace=False)
    points = []
    for index in flat:
        coords = np.unravel_index(int(index), sizes)
        points.append({k: space[k][int(c)] for k, c in zip(keys, coords)})
    return points


def holdout_split(test, fraction=0.5, seed=0):
    """Boolean mask (aligned with `test`): True for the selection part.

    Every (machine type, section, domain, label) group is split so both
    parts keep normal and anomalous clips of every section.
    """
    rng = np.random.default_rng(seed)
    mask = pd.Series(False, index=test.index)
    keys = ["machine_type", "section", "domain", "label"]
    for _, group in test.fillna({"domain": ""}).groupby(keys):
        if len(group) < 2:
            raise ValueError(
                f"The holdout protocol needs >= 2 test clips per machine type, section, "
                f"domain and label; '{group['path'].iloc[0]}' is alone in its group. Use "
                "--protocol test, or more test clips.")
        chosen = rng.permutation(group.index.to_numpy())[: int(round(len(group) * fraction))]
        mask.loc[chosen] = True
    return mask


def _trial_rows(scores, protocol, mask):
    parts = {"select": scores, "report": scores}
    if protocol == "holdout":
        parts = {"select": scores[mask.loc[scores.index]],
                 "report": scores[~mask.loc[scores.index]]}
    frames = []
    for name, part in parts.items():
        frame = machine_type_metrics(part).set_index("machine_type")
        frames.append(frame[["AUC", "pAUC", "n_test"]].add_prefix(f"{name}_"))
    return pd.concat(frames, axis=1).reset_index()


def select_best(trials):
    """Per machine type, the trial with the best selection AUC (then pAUC)."""
    ranked = trials.sort_values(["machine_type", "select_AUC", "select_pAUC", "trial"],
                                ascending=[True, False, False, True])
    return ranked.groupby("machine_type", sort=True).head(1).reset_index(drop=True)


def run_search(system, space, data, out, mode="random", budget=20, protocol="holdout",
               base=None, seed=0, force=False, holdout_fraction=0.5):
    """Trains and evaluates points of a search space; resumable.

    Args:
        system: str. A registered system name (e.g. "ganomaly").
        space: dict key -> list of values.
        data: folder or list of folders with train and labelled test clips.
        out: folder for `trials.csv`, `best.csv`, `best.md`, `best_config.yaml`.
        mode: "grid" (every point) or "random" (`budget` distinct points).
        budget: int. Points in random mode.
        protocol: "test" or "holdout" (see the module docstring).
        base: dict of configuration shared by every trial.
        seed: int. Sampling, holdout split and training seed.
        force: bool. Discard an existing search in `out`.
        holdout_fraction: float. Share of test clips used for selection.

    Returns:
        DataFrame of the best trial per machine type.
    """

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; received {mode!r}.")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}; received {protocol!r}.")
    system_cls = get_system(system)
    base = dict(base or {})
    base.setdefault("seed", int(seed))
    points = grid_points(space) if mode == "grid" else sample_points(space, budget, seed)
    for point in points[:1]:
        system_cls({**base, **point})  # unknown keys fail before any training
    out = Path(out)
    spec = {"system": system, "space": space, "mode": mode, "budget": budget,
            "protocol": protocol, "base": base, "seed": int(seed),
            "holdout_fraction": holdout_fraction,
            # As given (not resolved), so a clone elsewhere can resume it.
            "data": [str(Path(d)) for d in ([data] if isinstance(data, (str, Path))
                                            else data)]}
    spec_path = out / "search.json"
    if spec_path.is_file():
        same = json.loads(spec_path.read_text()) == json.loads(json.dumps(spec))
        if force or not same:
            if not force:
                raise FileExistsError(
                    f"'{out}' holds a search with another specification. Pass --force "
                    "to discard it, or choose another output folder.")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_path, json.dumps(spec, indent=1))
    table = runs.read_tables(data)
    test = table[table["split"] == "test"]
    runs.labelled_test(table, "The search")
    mask = None
    if protocol == "holdout":
        mask = holdout_split(test, holdout_fraction, seed)
        # The clips the selection never saw; reports built on this search
        # (experiments/gan_detectors/run.py --selection) evaluate on them only.
        atomic_write_dataframe(out / "report_clips.csv",
                               test.loc[~mask, ["machine_type", "section", "file_name"]])
    trials_path = out / "trials.csv"
    done = pd.read_csv(trials_path) if trials_path.is_file() else pd.DataFrame()
    finished = set(done["trial"]) if len(done) else set()
    logger.info("%d point(s) of a %d-point grid; %d already done. Protocol: %s (%s).",
                len(points), grid_size(space), len(finished), protocol, PROTOCOLS[protocol])
    for index, point in enumerate(progress_bar(points, desc=f"Search ({system})", unit="trial")):
        if index in finished:
            continue
        config = {**base, **point}
        instance = system_cls(config)
        with runs.trial(out / "trials" / f"trial{index:04d}", instance, table,
                        {"trial": index}) as written:
            scores = instance.score(table)
            atomic_write_dataframe(written.folder / "scores.csv", scores[
                ["machine_type", "section", "file_name", "label", "score"]])
        rows = _trial_rows(scores, protocol, mask)
        rows.insert(0, "trial", index)
        for key, value in point.items():
            rows[key] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        done = pd.concat([done, rows], ignore_index=True)
        atomic_write_dataframe(trials_path, done)
    best = select_best(done[done["trial"].isin(range(len(points)))])
    best.insert(1, "protocol", protocol)
    atomic_write_dataframe(out / "best.csv", best)
    shown = best[["machine_type", "trial", "select_AUC", "report_AUC", "report_pAUC",
                  *space.keys()]]
    atomic_write_text(out / "best.md", (
        f"Best {system} trial per machine type. Protocol **{protocol}**: "
        f"{PROTOCOLS[protocol]}.\n\n" + shown.to_markdown(index=False, floatfmt=".4f") + "\n"))
    overrides = {row["machine_type"]: {k: _plain(row[k]) for k in space}
                 for _, row in best.iterrows()}
    atomic_write_text(out / "best_config.yaml", yaml.safe_dump(
        {**base, "machine_overrides": overrides}, sort_keys=True))
    return best


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value
