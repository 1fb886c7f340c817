"""Repeated-trial studies: train and evaluate a list of conditions.

Used by the experiment folders (e.g. `experiments/angular_margin`) to
reproduce a paper table: every condition (a named set of configuration
overrides) is trained `trials` times with different seeds, scored on the
test split, and summarised as mean and standard deviation over trials of
the harmonic means over sections. Finished trials are kept, so an
interrupted study resumes where it stopped.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.evaluation.metrics import domain_metrics
from asd_keras.evaluation.metrics import evaluate
from asd_keras.evaluation.metrics import harmonic_means
from asd_keras import runs
from asd_keras.config import load_config_file
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.progress import progress_bar

METRIC_COLUMNS = ["AUC (source)", "pAUC (source)", "AUC (target)", "pAUC (target)",
                  "AUC (both)", "pAUC (both)"]


def _run_trial(condition, trial, base_config, table, folder, definition, keep_models):
    config = {**base_config, **{k: v for k, v in condition.items() if k != "name"}}
    system_name = config.pop("system", "wilkinghoff")
    config["seed"] = int(config.get("seed", 0)) + trial
    system = get_system(system_name)(config)
    record = {"condition": condition["name"], "trial": trial}
    with runs.trial(folder, system, table, record, keep_models) as written:
        scores = system.score(table)
        per_section = domain_metrics(scores, definition)
        _, official = evaluate(scores, scores["layout"].iloc[0])
        atomic_write_dataframe(written.folder / "per_section.csv", per_section)
        columns = ["machine_type", "section", "domain", "label", "file_name", "score"]
        atomic_write_dataframe(written.folder / "scores.csv", scores[columns])
        # The first member's features (embeddings) for embedding-space plots.
        test = table[table["split"] == "test"]
        np.savez(written.folder / "test_embeddings.npz", embeddings=system.features(test),
                 label=test["label"].to_numpy(int),
                 section=(test["machine_type"] + "_" + test["section"]).to_numpy(str),
                 domain=test["domain"].fillna("").to_numpy(str))
        result = {"condition": condition["name"], "trial": trial,
                  "official_score": official, **harmonic_means(per_section)}
        atomic_write_text(written.folder / "result.json", json.dumps(result, indent=1))
    return result


def trial_weights(out):
    """The encoder weights of each condition of a finished study in `out`:
    a DataFrame `condition, weights` with "random weights", "pretrained" or
    "" (no pretrained encoder), read from the first trial's run record."""
    rows = []
    for record in sorted(Path(out).glob("trials/*/trial0/run.json")):
        data = json.loads(record.read_text())
        choices = data.get("data_choices") or {}
        values = {v.get("encoder_weights") for v in choices.values() if isinstance(v, dict)}
        values.add(choices.get("encoder_weights"))
        values.discard(None)
        rows.append({"condition": record.parent.parent.name,
                     "weights": ", ".join(sorted(values))})
    return pd.DataFrame(rows, columns=["condition", "weights"])


def summarise(results, conditions):
    """Mean and standard deviation over trials, one row per condition.

    Returns:
        (numbers, markdown): a DataFrame with `<metric> mean` and `<metric>
        std` columns, and a markdown table of `mean ± std` in percent.
    """
    frame = pd.DataFrame(results)
    rows, pretty = [], []
    for condition in conditions:
        part = frame[frame["condition"] == condition["name"]]
        row = {"condition": condition["name"], "trials": len(part)}
        shown = {"condition": condition["name"], "trials": len(part)}
        for column in METRIC_COLUMNS + ["official_score"]:
            values = part[column].to_numpy(float)
            std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            row[f"{column} mean"], row[f"{column} std"] = float(values.mean()), std
            shown[column] = f"{100 * values.mean():.1f} ± {100 * std:.1f}"
        rows.append(row)
        pretty.append(shown)
    return pd.DataFrame(rows), pd.DataFrame(pretty).to_markdown(index=False)


def load_study_spec(path, only=None):
    """The conditions and base keys of a study file (`conditions:`, `base:`).

    Args:
        path: str or Path of a YAML file holding a `conditions` list (each a
            mapping with a `name`) and optionally a `base` mapping
            (experiments/angular_margin/config.yaml).
        only: list of condition names to keep (default: all).

    Returns:
        (conditions, base): the list of condition mappings and a new dict.

    Raises:
        ValueError: for a file without `conditions`, or `only` names that
            match no condition.
    """
    spec = load_config_file(path)
    if not isinstance(spec, dict) or "conditions" not in spec:
        raise ValueError(
            f"'{path}' must hold a 'conditions' list (and optionally a "
            "'base' mapping); see experiments/angular_margin/config.yaml.")
    conditions = spec["conditions"]
    if only:
        conditions = [c for c in conditions if c["name"] in only]
        if not conditions:
            raise ValueError(f"--only {only} matches no condition of '{path}'.")
    return conditions, dict(spec.get("base") or {})


def run_study(conditions, base_config, data, out, trials=2, force=False,
              definition="official", keep_models=False):
    """Trains and evaluates every condition `trials` times.

    Args:
        conditions: list of dicts, each with a unique `name` and the
            configuration overrides of that condition (optionally `system`).
        base_config: dict of configuration shared by all conditions.
        data: folder or list of folders with train and (labelled) test clips.
        out: folder for `trials/<condition>/trial<k>/`, `results.csv` and
            `results.md`.
        trials: int. Independent trials per condition (seed + k).
        force: bool. Discard an existing study in `out` and start again.
        definition: str. Domain AUC definition, see `domain_metrics`.
        keep_models: bool. Keep the trained models of every trial.

    Returns:
        DataFrame of the summary (also written to `out/results.csv`).
    """
    out = Path(out)
    names = [c["name"] for c in conditions]
    if len(set(names)) != len(names):
        raise ValueError(f"Condition names must be unique; received {names}.")
    if int(trials) < 1:
        raise ValueError(f"trials must be >= 1; received {trials!r}.")
    if (out / "results.csv").exists():
        if not force:
            raise FileExistsError(
                f"'{out}' already holds a finished study (results.csv). Pass "
                "--force to run it again, or choose another output folder.")
        shutil.rmtree(out / "trials", ignore_errors=True)
    table = runs.read_tables(data)
    runs.labelled_test(table, "The study")
    if table["label"].isna().all():
        raise ValueError(
            f"The test clips in {data} have no labels (evaluation data); run "
            "the study on development data.")
    results = []
    jobs = [(c, t) for c in conditions for t in range(int(trials))]
    for condition, trial in progress_bar(jobs, desc="Study", unit="trial"):
        folder = out / "trials" / condition["name"] / f"trial{trial}"
        if (folder / "result.json").is_file():  # resume
            results.append(json.loads((folder / "result.json").read_text()))
            continue
        results.append(_run_trial(condition, trial, base_config, table, folder,
                                  definition, keep_models))
    numbers, markdown = summarise(results, conditions)
    atomic_write_dataframe(out / "results.csv", numbers)
    atomic_write_text(out / "results.md", markdown + "\n")
    atomic_write_dataframe(out / "trials.csv", pd.DataFrame(results))
    return numbers
