"""Per-machine-type comparison of systems (the GAN paper's Tables 6 and 7).

`run_comparison` trains and scores each condition (a named system and its
configuration) once on the same data, keeping each finished condition so an
interrupted comparison resumes; `table7` lays the per-machine AUC and pAUC
out as the paper's Table 7, and `table6` gives the test-size-weighted
average and standard deviation over machine types (Table 6).
"""

import json
import logging
from pathlib import Path

import pandas as pd

from asd_keras import runs
from asd_keras.evaluation.metrics import machine_type_metrics
from asd_keras.evaluation.metrics import weighted_summary
from asd_keras.runners.search import PROTOCOLS
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.progress import progress_bar

logger = logging.getLogger(__name__)


def run_comparison(conditions, data, out, force=False, keep_models=False):
    """Trains and scores every condition once.

    Args:
        conditions: list of dicts, each with a unique `name`, a `system` and
            that system's configuration keys.
        data: folder or list of folders with train and labelled test clips.
        out: folder; each condition writes `conditions/<name>/` with
            `scores.csv`, `config.yaml` and `run.json`.
        force: bool. Retrain conditions that already finished.
        keep_models: bool. Keep each condition's trained models.

    Returns:
        DataFrame of every condition's test scores: condition, machine_type,
        section, file_name, label, score.
    """
    names = [c.get("name") for c in conditions]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"Every condition needs a unique 'name'; received {names}.")
    for condition in conditions:
        if "system" not in condition:
            raise ValueError(f"Condition {condition['name']!r} names no 'system'.")
        get_system(condition["system"])(_config(condition))  # validate before training
    table = runs.read_tables(data)
    runs.labelled_test(table, "The comparison")
    out = Path(out)
    frames = []
    for condition in progress_bar(conditions, desc="Comparison", unit="system"):
        folder = out / "conditions" / condition["name"]
        if (folder / "scores.csv").is_file() and not force:
            logger.info("%s: finished earlier; reusing '%s'.", condition["name"], folder)
            scores = pd.read_csv(folder / "scores.csv", dtype={"section": str})
        else:
            system = get_system(condition["system"])(_config(condition))
            with runs.trial(folder, system, table, {"condition": condition["name"]},
                            keep_models) as written:
                scores = system.score(table)[SCORE_COLUMNS]
                atomic_write_dataframe(written.folder / "scores.csv", scores)
        frames.append(scores.assign(condition=condition["name"]))
    return pd.concat(frames, ignore_index=True)


SCORE_COLUMNS = ["machine_type", "section", "file_name", "label", "score"]


def per_machine_metrics(scores, report_clips=None):
    """`machine_type_metrics` per condition, optionally on a subset of clips.

    Args:
        scores: DataFrame from `run_comparison`.
        report_clips: DataFrame with machine_type and file_name of the clips
            to evaluate on (e.g. a holdout search's `report_clips.csv`), or
            None for every test clip.

    Returns:
        DataFrame with condition, machine_type, AUC, pAUC, sections, n_test.
    """
    if report_clips is not None:
        keys = set(zip(report_clips["machine_type"], report_clips["file_name"]))
        chosen = [k in keys for k in zip(scores["machine_type"], scores["file_name"])]
        scores = scores[chosen]
        if scores.empty:
            raise ValueError("None of the report clips is among the scored test clips; "
                             "was the search run on the same data?")
    frames = []
    for condition in dict.fromkeys(scores["condition"]):
        frame = machine_type_metrics(scores[scores["condition"] == condition])
        frame.insert(0, "condition", condition)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _config(condition):
    return {k: v for k, v in condition.items() if k not in ("name", "system", "note")}


def table7(per_machine, percent=True):
    """One row per condition, AUC and pAUC columns per machine type (Table 7)."""
    scale = 100.0 if percent else 1.0
    wide = per_machine.pivot(index="condition", columns="machine_type", values=["AUC", "pAUC"])
    order = list(dict.fromkeys(per_machine["condition"]))
    machines = sorted(per_machine["machine_type"].unique())
    columns = [(metric, m) for m in machines for metric in ("AUC", "pAUC")]
    wide = wide.loc[order, columns] * scale
    wide.columns = [f"{m} {metric}" for metric, m in columns]
    return wide.reset_index()


def table6(per_machine, percent=True):
    """Test-size-weighted mean ± std over machine types, per condition (Table 6)."""
    scale = 100.0 if percent else 1.0
    rows = []
    for condition in dict.fromkeys(per_machine["condition"]):
        part = per_machine[per_machine["condition"] == condition]
        summary = weighted_summary(part)
        rows.append({"condition": condition,
                     **{k: v * scale for k, v in summary.items()}})
    return pd.DataFrame(rows)


def markdown_table6(frame):
    """Table 6 as markdown with `mean % ± std` cells."""
    shown = pd.DataFrame({
        "condition": frame["condition"],
        "AUC": [f"{m:.2f} % ± {s:.2f}" for m, s in zip(frame["AUC mean"], frame["AUC std"])],
        "pAUC": [f"{m:.2f} % ± {s:.2f}" for m, s in zip(frame["pAUC mean"], frame["pAUC std"])],
    })
    return shown.to_markdown(index=False)


def selection_note(search_folder):
    """A sentence naming the protocol of a search whose best config is used."""
    spec = json.loads((Path(search_folder) / "search.json").read_text())
    # Searches written before the KerasTuner oracles name theirs "mode".
    oracle = spec.get("oracle", spec.get("mode"))
    return (f"hyper-parameters per machine type from the {oracle} search in "
            f"'{search_folder}' ({spec['system']}), protocol **{spec['protocol']}**: "
            f"{PROTOCOLS[spec['protocol']]}")
