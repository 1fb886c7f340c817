"""What a finished run folder produces: submission scores and a SavedModel;
and the official evaluation of submission files.
Each writes its output folder atomically and records what produced it."""

import json
import logging
import sys
from pathlib import Path

import pandas as pd

from asd_keras.data.dcase_naming import layout_for_year
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation import metrics
from asd_keras.evaluation import submission
from asd_keras.runs.training import load_run
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.utils.runs import seed_run
from asd_keras.utils.runs import write_run_record

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ["machine_type", "section", "domain", "file_name"]


def score_run(system, run, data, out, layout=None, force=False, trained_layout=None):
    """Scores the test clips of `data` with the fitted `system` of the run
    folder `run`; writes the submission files, `scores.csv` and the
    folder's record into `out`.

    Args:
        system: fitted `AnomalySystem` (`load_run`, or just trained).
        run: str or Path. Its run folder, for the record.
        data: str or Path. The data folder whose test clips are scored.
        out: str or Path. The score folder.
        layout: str or None. The data's layout, detected when None.
        force: bool. Replace an existing `out`.
        trained_layout: str or None. The layout the run was trained on; a
            different one is scored, with a warning.

    Returns:
        DataFrame of the scored test clips (`score`, `decision`).
    """
    seed = seed_run(system.config)
    table = read_dataset(data, layout=layout)
    layout = table["layout"].iloc[0]
    if trained_layout and trained_layout != layout:
        # Not an error: scoring another year's data can be deliberate.
        print(f"asd-keras score: warning: the run '{run}' was trained on "
              f"{trained_layout} data but '{data}' is {layout} data; features, "
              "sections and thresholds may not carry over.", file=sys.stderr)
    scores = system.score(table)
    with staged_dir(out, force=force, what="score folder") as stage:
        submission.write_submission(scores, stage, layout)
        columns = SCORE_COLUMNS + [c for c in scores.columns if c.startswith("score")] + [
            "decision"]
        atomic_write_dataframe(stage / "scores.csv", scores[columns])
        write_run_record(
            stage,
            {"run": str(Path(run).resolve()), "data": str(Path(data).resolve()),
             "layout": layout, "score": system.config.get("score", "score")},
            seed)
    return scores


def export_run(run, out, force=False):
    """Writes the SavedModel of a run folder (waveform -> anomaly score) and
    its manifest `asd_keras_export.json` into `out`.

    Returns:
        dict, the manifest (inputs, waveform shape, groups, system, run).
    """
    system, record = load_run(run)
    with staged_dir(out, force=force, what="export folder") as stage:
        manifest = system.export(stage)
        manifest.update(system=record["system"], run=str(Path(run).resolve()))
        atomic_write_text(stage / "asd_keras_export.json", json.dumps(manifest, indent=2))
    return manifest


def read_scores_and_labels(scores_dir, data=None, ground_truth=None, year=None):
    """Submission files joined with their labels, and the layout whose
    official metrics apply.

    Args:
        scores_dir: folder of `anomaly_score_*.csv` files.
        data: the data folder the labels come from, or None with
            `ground_truth`.
        ground_truth: folder of DCASE ground-truth CSVs, or None.
        year: int or None. Evaluate with that year's metrics.

    Returns:
        (table, layout).

    Raises:
        ValueError: the files and the data (or year) follow different
            naming families; the message says which.
    """
    scores, family = submission.read_submission(scores_dir)
    if ground_truth:
        labels = submission.read_ground_truth(ground_truth)
        layout = family
    else:
        labels, layout = submission.labels_from_data(data)
        if metrics.metric_family(layout) != family:
            raise ValueError(
                f"The score files in '{scores_dir}' follow the {family} naming but "
                f"'{data}' is {layout} data. Score this data folder again.")
    if year is not None:
        layout = layout_for_year(year)
        if metrics.metric_family(layout) != family:
            raise ValueError(
                f"--year {year} uses {metrics.metric_family(layout)} file names, but "
                f"'{scores_dir}' holds {family} files.")
    return submission.join_scores_and_labels(scores, labels), layout


def evaluate_scores(table, layout, out, force=False):
    """The official DCASE metrics of joined scores and labels
    (`read_scores_and_labels`), written to `out` (`result.csv`,
    `result.md`, `official_score.json`).

    Returns:
        (result, official): the per-unit and summary rows, and the official
        score (None for DCASE 2020, which has none).
    """
    per_unit, official = metrics.evaluate(table, layout)
    result = pd.concat([per_unit, metrics.summary_rows(per_unit, layout)], ignore_index=True)
    with staged_dir(out, force=force, what="evaluation folder") as stage:
        atomic_write_dataframe(stage / "result.csv", result)
        text = result.to_markdown(index=False, floatfmt=".4f")
        if official is not None:
            text += f"\n\nofficial score: {official:.6f}\n"
            atomic_write_text(stage / "official_score.json",
                              json.dumps({"official_score": official, "layout": layout}))
        atomic_write_text(stage / "result.md", text)
    return result, official
