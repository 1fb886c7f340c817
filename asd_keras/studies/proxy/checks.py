"""Consistency checks of a proxy-study folder, run before any report is made.

`rows.csv` (one row per family, configuration, machine type and trial) and
`configurations.csv` (their means) are checked against each other and
against `study.json`: every record complete, every configuration of
study.json with all its rows (machine types x trials), every row's
configuration listed, and the means and row counts of configurations.csv
those of rows.csv. A damaged study is refused with an error naming the file,
the missing or extra configuration or row, and the fix. Without these
checks a truncated rows.csv gave the same Table VII as a whole one, and a
configurations.csv of other rows went unnoticed.

NaN cells are part of valid studies (a metric a family does not report, an
out-domain AUC a machine type cannot give); the configuration means leave
them out. `left_out_cells` lists where that made a mean cover fewer rows,
so that the report can say so.
"""

import csv

import numpy as np
import pandas as pd

FIX_STUDY = ("Run the proxy study again (asd_keras.studies.proxy.study, the "
             "make exp-proxy-* targets), or pass the folder that holds it")
# The runner keeps each finished trial's own rows.csv; without study.json a
# rerun with the same settings reuses them and rewrites both tables.
FIX_TABLES = ("Delete study.json and run the proxy study again with the same settings "
              "(its finished trials under trials/ are reused, and rows.csv and "
              "configurations.csv are rewritten from them)")
# configurations.csv is written from rows.csv with full float precision;
# the tolerance only absorbs a different summation order.
RTOL, ATOL = 1e-9, 1e-12
SHOWN = 5


def _listing(items):
    items = list(items)
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def read_csv(path, required, folder):
    """Reads a study table whose every record is complete.

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming the file and the first line that is cut off or
            has another number of fields than the header, or the missing
            columns.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"'{folder}' is an unfinished proxy study: '{path}' is missing. {FIX_STUDY}.")
    text = path.read_text()
    lines = list(csv.reader(text.splitlines()))
    width = len(lines[0]) if lines else 0
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != width:
            raise ValueError(
                f"'{path}' line {number} has {len(fields)} field(s), the header {width}: "
                f"the file is cut off or damaged. {FIX_TABLES}.")
    if text and not text.endswith("\n"):
        raise ValueError(f"'{path}' does not end with a line break: its last line "
                         f"({len(lines)}) may be cut off. {FIX_TABLES}.")
    frame = pd.read_csv(path, dtype={"family": str, "configuration": str,
                                     "machine_type": str})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"'{path}' lacks the column(s) {missing}; it has {list(frame.columns)}. "
            f"It was written by an older or different runner. {FIX_STUDY}.")
    return frame


def check_rows(folder, spec, rows, keys):
    """Every configuration of study.json has exactly its rows in rows.csv.

    The expected rows of a configuration are study.json's `machine_types`
    (else every machine type in rows.csv) times trials `0 ..
    trials - 1` (else up to the largest trial in rows.csv).

    Raises:
        ValueError: naming rows.csv and the repeated, incomplete, unlisted,
            missing or extra rows.
    """
    path = folder / "rows.csv"
    twice = rows[rows.duplicated(list(keys))]
    if not twice.empty:
        raise ValueError(
            f"'{path}' repeats {len(twice)} (family, configuration, machine_type, trial) "
            f"row(s), e.g. {twice[list(keys)].iloc[0].tolist()}. {FIX_TABLES}.")
    blank = rows[list(keys)].isna().any(axis=1).to_numpy()
    trials = pd.to_numeric(rows["trial"], errors="coerce").to_numpy(np.float64)
    bad = blank | ~np.isfinite(trials) | (trials != np.round(trials)) | (trials < 0)
    if bad.any():
        lines = [str(i + 2) for i in np.flatnonzero(bad)]
        raise ValueError(f"'{path}' line(s) {_listing(lines)} lack a family, configuration, "
                         f"machine type or trial number. {FIX_TABLES}.")
    listed = {(f["name"], c) for f in spec["families"] for c in f["configurations"]}
    found = set(zip(rows["family"], rows["configuration"]))
    unknown = sorted(found - listed)
    if unknown:
        raise ValueError(
            f"'{path}' has rows of configuration(s) {_listing(f'{f}/{c}' for f, c in unknown)}"
            f" that '{folder / 'study.json'}' does not list. {FIX_STUDY}.")
    machine_types = spec.get("machine_types")
    if not isinstance(machine_types, list) or not machine_types:
        machine_types = sorted(rows["machine_type"].unique())
    count = spec.get("trials")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        count = int(trials.max()) + 1 if len(trials) else 1
    expected = {(f, c, m, t) for f, c in listed for m in machine_types for t in range(count)}
    present = set(zip(rows["family"], rows["configuration"], rows["machine_type"],
                      trials.astype(int)))
    where = (f"study.json: {count} trial(s) of the machine types {list(machine_types)} per "
             "configuration")
    for name, wrong in (("lacks", expected - present), ("has unexpected", present - expected)):
        if wrong:
            shown = (f"{f}/{c} {m} trial {t}" for f, c, m, t in sorted(wrong))
            raise ValueError(
                f"'{path}' {name} {len(wrong)} row(s) ({where}): {_listing(shown)}. The "
                f"file is incomplete or edited. {FIX_TABLES}.")


def check_configurations(folder, configurations, rows, columns):
    """configurations.csv holds the row counts and means of rows.csv.

    Args:
        folder: Path of the study.
        configurations: DataFrame of configurations.csv.
        rows: DataFrame of rows.csv (already checked by `check_rows`).
        columns: the numeric columns to compare (those in both files).

    Raises:
        ValueError: naming configurations.csv, the configuration, the
            column and both values.
    """
    path = folder / "configurations.csv"
    groups = rows.groupby(["family", "configuration"], sort=False)
    counts = groups.size()
    columns = [c for c in columns if c in configurations.columns and c in rows.columns]
    means = groups[columns].mean()
    for _, row in configurations.iterrows():
        key = (row["family"], row["configuration"])
        name = f"{key[0]}/{key[1]}"
        if key not in counts.index:
            raise ValueError(f"'{path}' has the configuration {name}, which has no row in "
                             f"'{folder / 'rows.csv'}'. {FIX_TABLES}.")
        if "n_rows" in configurations.columns and row["n_rows"] != counts[key]:
            raise ValueError(
                f"'{path}' says configuration {name} has {row['n_rows']} row(s), but "
                f"'{folder / 'rows.csv'}' holds {counts[key]}. {FIX_TABLES}.")
        for column in columns:
            stated = float(row[column])
            actual = float(means.loc[key, column])
            if not np.isclose(stated, actual, rtol=RTOL, atol=ATOL, equal_nan=True):
                raise ValueError(
                    f"'{path}': configuration {name} has {column} = {stated!r}, but the "
                    f"mean of its rows in '{folder / 'rows.csv'}' is {actual!r}. "
                    f"{FIX_TABLES}.")


def left_out_cells(rows, families, asd_columns):
    """Where NaN cells made a configuration mean cover fewer rows.

    Args:
        rows: DataFrame of rows.csv.
        families: the study.json families.
        asd_columns: the ASD metric columns.

    Returns:
        list of str such as `"ae/c1: md_auc over 1 of 2 rows"`, for every
        family's ASD columns and proxy metrics that have NaN cells in some
        but not all rows of a configuration.
    """
    notes = []
    for family in families:
        part = rows[rows["family"] == family["name"]]
        columns = [*asd_columns, *family["proxy_metrics"]]
        for configuration, group in part.groupby("configuration", sort=False):
            for column in columns:
                values = pd.to_numeric(group[column], errors="coerce").to_numpy(np.float64)
                finite = int(np.isfinite(values).sum())
                if 0 < finite < len(values):
                    notes.append(f"{family['name']}/{configuration}: {column} over {finite} "
                                 f"of {len(values)} rows")
    return notes


def left_out_text(studies):
    """The report's note on NaN cells left out of the means ("" if none)."""
    notes = [note for s in studies for note in s.get("left_out", ())]
    if not notes:
        return ""
    return ("NaN cells of rows.csv are left out of the configuration means, which then "
            "cover fewer rows (machine types x trials): " + "; ".join(notes) + ".")
