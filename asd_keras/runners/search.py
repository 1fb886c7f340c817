"""Hyper-parameter search on KerasTuner oracles, with an explicit selection
protocol.

A search space (`asd_keras.runners.search_space`; e.g. the GAN paper's
Table 3, `experiments/gan_detectors/search_table3.yaml`) becomes KerasTuner
hyperparameters, and a KerasTuner oracle proposes the points: `grid`,
`random`, `bayesian` or `hyperband` (`ORACLES`). `run_search` trains one
run per point (one model per machine type, `asd_keras.runs.trial`), scores
it, appends one row per (trial, machine type) to `trials.csv`, and reports
the trial's objective to the oracle: the harmonic mean of the selection
part's per-machine-type AUCs and pAUCs (the official DCASE score's mean of
the pooled values), maximised.

Resume: `trials.csv` (written atomically after every trial) is the only
state. A rerun builds the oracle anew with the same seed and replays the
search: every point the oracle proposes that `trials.csv` already holds gets
its recorded objective back without training, so the oracle walks the same
path and continues where the interrupted run stopped. The oracle's own files
go to a scratch folder: KerasTuner writes them non-atomically, and its grid
oracle does not save where it is. A rerun with a larger `budget` extends a
finished search the same way. The budget counts the oracle's proposals: a
point proposed again (the Bayesian oracle may, on a discrete space) counts
but is not trained again. Hyperband's trials each train from scratch for
their `epochs` (no weights are carried over from the trial they continue).

`trials.csv` has one row per (trial, machine type): trial, machine_type,
select_AUC, select_pAUC, select_n_test, report_AUC, report_pAUC,
report_n_test, objective, one column per space key (and `epochs` for
Hyperband) and `point`, the trial's configuration keys as JSON.

Two selection protocols, and every result says which one produced it:
- `"test"`: the paper's protocol (§5.3): hyper-parameters are chosen per
  machine type by the AUC on the test set that is then reported. The
  reported numbers are optimistic: the anomalous test clips chose them.
- `"holdout"`: the labelled test clips of every (machine type, section,
  domain, label) are split in two halves; the choice (and the oracle's objective)
  is made on the selection half and the numbers are reported on the other
  half, which the choice never saw.
"""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras_tuner
import numpy as np
import pandas as pd
import yaml
from keras_tuner.engine.trial import TrialStatus

from asd_keras import runs
from asd_keras.evaluation.metrics import machine_type_metrics
from asd_keras.evaluation.metrics import official_score
from asd_keras.runners.search_space import SearchSpace
from asd_keras.runners.search_space import grid_size
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import remove_stale_staging
from asd_keras.utils.progress import progress_bar

logger = logging.getLogger(__name__)

PROTOCOLS = {
    "test": "selected and reported on the same test clips (the paper's protocol; "
            "optimistic, since the anomalous test clips choose the hyper-parameters)",
    "holdout": "selected on one half of the labelled test clips, reported on the "
               "other half that the selection never saw",
}
ORACLES = {
    "grid": "every point of the space in order, the last key varying fastest "
            "(KerasTuner GridSearchOracle)",
    "random": "points drawn at random, none twice (KerasTuner RandomSearchOracle)",
    "bayesian": "Gaussian-process Bayesian optimisation after max(3, 3 x keys) random "
                "points (KerasTuner BayesianOptimizationOracle)",
    "hyperband": "Hyperband: many points for few epochs, the best ones again for more "
                 "(KerasTuner HyperbandOracle, factor 3, one iteration)",
}
DEFAULT_BUDGET = 20  # trials of the random and Bayesian oracles when none is given
HYPERBAND_FACTOR = 3  # KerasTuner's default: a third of each round goes on
_METRICS = ["select_AUC", "select_pAUC", "select_n_test", "report_AUC", "report_pAUC",
            "report_n_test"]
_COLUMNS = ("trial", "machine_type", *_METRICS, "objective", "point", "protocol")


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
        # By path: `score` numbers its rows 0..n-1, the mask has the table's
        # index (test clips after the training clips of each machine type).
        selected = scores["path"].map(mask)
        if selected.isna().any():
            raise ValueError(f"Scored clip(s) outside the holdout split, e.g. "
                             f"'{scores.loc[selected.isna(), 'path'].iloc[0]}'.")
        selected = selected.astype(bool).to_numpy()
        parts = {"select": scores[selected], "report": scores[~selected]}
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


def _hyperband_epochs(system, system_cls, space, base):
    """Hyperband's max_epochs: the space's largest `epochs`, else the base's
    (or the system's default) `epochs`."""
    config = system_cls(base).config
    if "epochs" not in config:
        raise ValueError(
            f"The hyperband oracle spends epochs, but system {system!r} has no 'epochs' "
            "key (it trains nothing epoch by epoch). Use --oracle grid, random or bayesian.")
    epochs = space.largest("epochs") if "epochs" in space.space else config["epochs"]
    if not float(epochs).is_integer() or epochs < 1:
        raise ValueError(f"The hyperband oracle needs a whole number of epochs >= 1; "
                         f"received epochs={epochs!r}.")
    return int(epochs)


def _new_oracle(name, hps, seed, max_epochs):
    common = dict(objective=keras_tuner.Objective("score", direction="max"),
                  hyperparameters=hps, allow_new_entries=False, tune_new_entries=False,
                  # KerasTuner takes a seed of 0 for "draw a random seed".
                  seed=int(seed) + 1)
    oracles = keras_tuner.oracles
    if name == "hyperband":
        return oracles.HyperbandOracle(max_epochs=max_epochs, factor=HYPERBAND_FACTOR,
                                       hyperband_iterations=1, **common)
    # The budget is counted by run_search, the same way for every oracle.
    kind = {"grid": oracles.GridSearchOracle, "random": oracles.RandomSearchOracle,
            "bayesian": oracles.BayesianOptimizationOracle}[name]
    return kind(max_trials=None, **common)


def _read_trials(path):
    if not path.is_file():
        return pd.DataFrame(columns=["trial", "objective", "point"])
    # pandas writes and reads floats exactly: the objectives given back to
    # the oracle on a replay are those it saw.
    return pd.read_csv(path, dtype={"point": str, "machine_type": str})


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def run_search(system, space, data, out, oracle="random", budget=None, protocol="holdout",
               base=None, seed=0, force=False, holdout_fraction=0.5):
    """Trains and evaluates the points a KerasTuner oracle proposes; resumable.

    Args:
        system: str. A registered system name (e.g. "ganomaly").
        space: dict key -> list of values or {min, max, step, sampling}
            range (`asd_keras.runners.search_space`).
        data: folder or list of folders with train and labelled test clips.
        out: folder for `trials.csv`, `best.csv`, `best.md`, `best_config.yaml`.
        oracle: "grid", "random", "bayesian" or "hyperband" (`ORACLES`).
            Hyperband tunes the other keys and spends `epochs`: its
            `tuner/epochs` is the trial's `epochs`, up to the space's largest
            `epochs` (else the base's or the system's).
        budget: int or None. At most this many trials; None: every grid
            point, `DEFAULT_BUDGET` random or Bayesian trials, one full
            Hyperband iteration.
        protocol: "test" or "holdout" (see the module docstring).
        base: dict of configuration shared by every trial.
        seed: int >= 0. Oracle, holdout split and training seed.
        force: bool. Discard an existing search in `out`.
        holdout_fraction: float. Share of test clips used for selection.

    Returns:
        DataFrame of the best trial per machine type.

    Raises:
        ValueError: an unknown oracle or protocol, a bad budget, seed or
            space, or Hyperband on a system without epochs.
        FileExistsError: `out` holds a search of another specification
            (other than the budget), or something that is not a search,
            and `force` is False.
    """
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {sorted(ORACLES)}; received {oracle!r}.")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}; received {protocol!r}.")
    if budget is not None and int(budget) < 1:
        raise ValueError(f"budget must be >= 1 (or None for the oracle's default); "
                         f"received {budget!r}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0; received {seed!r}.")
    searched = SearchSpace(space)
    clashes = sorted(set(searched.keys) & set(_COLUMNS))
    if clashes:
        raise ValueError(f"Search space key(s) {clashes} are names of trials.csv columns, "
                         "not configuration keys; remove them from 'space'.")
    system_cls = get_system(system)
    base = dict(base or {})
    base.setdefault("seed", int(seed))
    max_epochs = None
    if oracle == "hyperband":
        max_epochs = _hyperband_epochs(system, system_cls, searched, base)
    hps = searched.hyperparameters(exclude=("epochs",) if oracle == "hyperband" else ())
    if not hps.space:
        raise ValueError("The hyperband oracle tunes the keys other than 'epochs', and the "
                         "space holds none; add keys to 'space', or use another oracle.")
    columns = searched.keys + (["epochs"] if max_epochs and "epochs" not in searched.keys
                               else [])
    first = searched.point({hp.name: hp.default for hp in hps.space})
    # Unknown keys and bad values fail before any training.
    system_cls({**base, **first, **({"epochs": max_epochs} if max_epochs else {})})
    if budget is None:
        budget = DEFAULT_BUDGET if oracle in ("random", "bayesian") else None
    out = Path(out)
    spec = {"system": system, "space": space, "oracle": oracle, "protocol": protocol,
            "base": base, "seed": int(seed), "holdout_fraction": holdout_fraction,
            # As given (not resolved), so a clone elsewhere can resume it.
            "data": [str(Path(d)) for d in ([data] if isinstance(data, (str, Path))
                                            else data)]}
    _open_folder(out, spec, budget, force)
    table = runs.read_tables(data)
    test = table[table["split"] == "test"]
    runs.labelled_test(table, "The search")
    mask = None
    if protocol == "holdout":
        split = holdout_split(test, holdout_fraction, seed)
        # The clips the selection never saw; reports built on this search
        # (experiments/gan_detectors/run.py --selection) evaluate on them only.
        atomic_write_dataframe(out / "report_clips.csv",
                               test.loc[~split, ["machine_type", "section", "file_name"]])
        mask = pd.Series(split.to_numpy(), index=test["path"].to_numpy())
    trials_path = out / "trials.csv"
    done = _read_trials(trials_path)
    finished = done.drop_duplicates("trial")
    numbers = dict(zip(finished["point"], finished["trial"].astype(int)))
    objectives = dict(zip(finished["trial"].astype(int), finished["objective"]))
    size = grid_size(hps)
    logger.info("Oracle %s: %s. Budget: %s (a grid over the space: %d point(s)); %d trial(s) "
                "already done. Protocol: %s (%s).", oracle, ORACLES[oracle],
                f"{budget} trial(s)" if budget else "until the oracle stops", size,
                len(numbers), protocol, PROTOCOLS[protocol])
    if max_epochs:
        logger.info("Hyperband: up to %d epochs per trial; every trial trains from scratch "
                    "for its epochs (no weights are carried over).", max_epochs)
    tuner = _new_oracle(oracle, hps, seed, max_epochs)
    tuner.verbose = 0  # the progress bar and the log report the trials
    visited = []
    total = budget or (size if oracle == "grid" else None)
    with tempfile.TemporaryDirectory(prefix="asd-keras-oracle-") as scratch, \
            progress_bar(total=total, desc=f"Search ({system}, {oracle})", unit="trial") as progress:
        # KerasTuner's own Tuner sets the folder this way; it only holds
        # the oracle's JSON files, rebuilt from trials.csv by every run.
        tuner._set_project_dir(scratch, "oracle")
        while budget is None or len(visited) < budget:
            trial = tuner.create_trial("asd-keras")
            if trial.status != TrialStatus.RUNNING:  # the oracle has nothing left
                break
            values = trial.hyperparameters.values
            point = searched.point(values)
            if max_epochs:
                point["epochs"] = int(values["tuner/epochs"])
            key = json.dumps(point, sort_keys=True)
            if key not in numbers:
                number = max(numbers.values(), default=-1) + 1
                rows = _train_trial(system_cls({**base, **point}), table, out, number,
                                    protocol, mask, oracle)
                for column in columns:
                    rows[column] = _cell(point[column])
                rows["point"] = key
                done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
                atomic_write_dataframe(trials_path, done)
                numbers[key], objectives[number] = number, float(rows["objective"].iloc[0])
            visited.append(numbers[key])
            tuner.update_trial(trial.trial_id, {"score": objectives[numbers[key]]})
            trial.status = TrialStatus.COMPLETED
            tuner.end_trial(trial)
            progress.update()
    if not visited:
        raise ValueError(f"The {oracle} oracle proposed no trial for the space {space!r}.")
    best = select_best(done[done["trial"].isin(visited)])
    best.insert(1, "protocol", protocol)
    atomic_write_dataframe(out / "best.csv", best)
    shown = best[["machine_type", "trial", "select_AUC", "report_AUC", "report_pAUC", *columns]]
    atomic_write_text(out / "best.md", (
        f"Best {system} trial per machine type ({oracle} oracle, {len(set(visited))} "
        f"trial(s)). Protocol **{protocol}**: {PROTOCOLS[protocol]}.\n\n"
        + shown.to_markdown(index=False, floatfmt=".4f") + "\n"))
    overrides = {row["machine_type"]: json.loads(row["point"]) for _, row in best.iterrows()}
    atomic_write_text(out / "best_config.yaml", yaml.safe_dump(
        {**base, "machine_overrides": overrides}, sort_keys=True))
    return best


def _open_folder(out, spec, budget, force):
    """Creates `out` with its search.json, or checks that it holds the same
    search (the budget may differ: a larger one continues it); `force`
    replaces whatever it holds."""
    check_output_dir(out, force=True, what="search folder")  # a file, an unwritable parent
    remove_stale_staging(out)  # the `.replaced-` folder of a --force that was killed
    spec_path = out / "search.json"
    if spec_path.is_file() and not force:
        previous = json.loads(spec_path.read_text())
        previous.pop("budget", None)
        if "mode" in previous:
            raise FileExistsError(
                f"'{out}' holds a search written before asd-keras searched with "
                "KerasTuner oracles (its search.json names a 'mode'); its trials cannot "
                "be replayed. Pass --force to redo it, or choose another output folder.")
        if previous != json.loads(json.dumps(spec)):
            raise FileExistsError(
                f"'{out}' holds a search with another specification. Pass --force "
                "to discard it, or choose another output folder.")
    elif out.is_dir() and any(out.iterdir()):
        check_output_dir(out, force, what="search folder")  # not a search: only --force
        # Renamed first: a Ctrl-C during the removal leaves no half of the
        # old search (trials.csv without its search.json) to resume from.
        discarded = out.with_name(f"{out.name}.replaced-{os.getpid()}")
        out.rename(discarded)
        shutil.rmtree(discarded)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_path, json.dumps({**spec, "budget": budget}, indent=1))


def _train_trial(instance, table, out, number, protocol, mask, oracle):
    """Trains and scores one trial; its trials.csv rows (without the point)."""
    with runs.trial(out / "trials" / f"trial{number:04d}", instance, table,
                    {"trial": number, "oracle": oracle}) as written:
        scores = instance.score(table)
        atomic_write_dataframe(written.folder / "scores.csv", scores[
            ["machine_type", "section", "file_name", "label", "score"]])
    rows = _trial_rows(scores, protocol, mask)
    rows.insert(0, "trial", number)
    rows["objective"] = official_score([*rows["select_AUC"], *rows["select_pAUC"]])
    return rows
