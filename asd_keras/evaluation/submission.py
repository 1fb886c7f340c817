"""Submission files, ground truth, and joining them for evaluation.

File names and row formats follow `shared/reference/dcase.md` section 4.3:
rows are `file_name,value` without a header; one file per machine ID (2020),
per section and domain (2021) or per section (2022-2026).
"""

import re
from pathlib import Path

import pandas as pd

from asd_keras.data.layouts import read_dataset
from asd_keras.utils.io import atomic_write_rows

_SCORE_FILE = re.compile(
    r"^(?P<kind>anomaly_score|decision_result)_(?P<machine>.+?)_"
    r"(?:id_(?P<id>\d{2})|section_(?P<section>\d{2})"
    r"(?:_(?P<domain>source|target))?_test)\.csv$"
)


def submission_stem(layout, machine_type, section, domain=None):
    """The per-unit part of a submission file name."""
    if layout == "dcase2020":
        return f"{machine_type}_id_{section}"
    if layout == "dcase2021":
        return f"{machine_type}_section_{section}_{domain}_test"
    return f"{machine_type}_section_{section}_test"


def write_submission(scores, folder, layout, decisions=True):
    """Writes `anomaly_score_*.csv` (and `decision_result_*.csv`) files.

    Args:
        scores: DataFrame with machine_type, section, domain, file_name,
            score and (when `decisions`) decision.
        folder: str or Path. Existing output folder.
        layout: str.
        decisions: bool. Also write the decision files (not in 2020).

    Returns:
        list of Paths written.
    """
    folder = Path(folder)
    if scores["score"].isna().any():
        bad = scores.loc[scores["score"].isna(), "file_name"].tolist()[:5]
        raise ValueError(f"Missing scores for {bad}; nothing was written.")
    keys = ["machine_type", "section"]
    if layout == "dcase2021":
        keys.append("domain")
    written = []
    for key, group in scores.groupby(keys):
        stem = submission_stem(layout, *key)
        group = group.sort_values("file_name")
        path = folder / f"anomaly_score_{stem}.csv"
        atomic_write_rows(
            path,
            [[n, repr(float(s))] for n, s in zip(group["file_name"], group["score"])],
        )
        written.append(path)
        if decisions and layout != "dcase2020":
            path = folder / f"decision_result_{stem}.csv"
            atomic_write_rows(
                path,
                [[n, int(d)] for n, d in zip(group["file_name"], group["decision"])],
            )
            written.append(path)
    return written


def _read_rows(path, value_name):
    frame = pd.read_csv(path, header=None, dtype={0: str})
    if frame.shape[1] < 2:
        raise ValueError(
            f"'{path}' must have rows 'file_name,value'; found "
            f"{frame.shape[1]} column(s)."
        )
    frame = frame.iloc[:, :2]
    frame.columns = ["file_name", value_name]
    _refuse_duplicates(frame, ["file_name"], f"'{path}'")
    return frame


def _refuse_duplicates(frame, keys, where, source=None):
    """Refuses a clip listed twice; it would count twice in AUC and pAUC.

    Args:
        frame: DataFrame with the `keys` columns (and `source` if given).
        keys: list of str. Columns that identify a clip.
        where: str. The file or folder, for the message.
        source: str, optional. Column naming the file of each row.
    """
    repeated = frame[frame.duplicated(keys, keep=False)]
    if repeated.empty:
        return
    clips = repeated.drop_duplicates(keys)["file_name"].tolist()
    files = ""
    if source is not None:
        first = repeated[repeated["file_name"] == clips[0]]
        files = f" ('{clips[0]}' is in {sorted(first[source].unique())})"
    raise ValueError(
        f"{where} lists {len(clips)} clip(s) more than once, e.g. "
        f"{clips[:5]}{files}. Each clip needs exactly one row: remove the "
        "duplicates (rewrite score files with 'asd-keras score'; restore "
        "ground-truth files from the official evaluator)."
    )


def read_submission(folder):
    """Reads every score (and decision) file of a submission folder.

    Returns:
        (table, layout_family) where table has machine_type, section,
        domain (2021 only), file_name, score and decision (NaN when no
        decision file exists), and layout_family is 'dcase2020',
        'dcase2021' or 'dcase2022'.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        # Passing one of the score files (e.g. scores.csv) is an easy slip;
        # "does not exist" would send the user looking for the wrong thing.
        raise ValueError(
            f"'{folder}' is a file; --scores expects the folder written by "
            "'asd-keras score --out FOLDER' (it holds the anomaly_score_*.csv "
            f"files). Pass that folder, e.g. '{folder.parent}'.")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Score folder '{folder}' does not exist. Run 'asd-keras score' "
            "first."
        )
    scores, decisions = [], {}
    families = set()
    for path in sorted(folder.glob("*.csv")):
        match = _SCORE_FILE.match(path.name)
        if match is None:
            continue
        g = match.groupdict()
        section = g["id"] or g["section"]
        family = (
            "dcase2020" if g["id"] else "dcase2021" if g["domain"] else "dcase2022"
        )
        families.add(family)
        key = (g["machine"], section, g["domain"])
        if g["kind"] == "anomaly_score":
            frame = _read_rows(path, "score")
            bad = pd.to_numeric(frame["score"], errors="coerce").isna()
            if bad.any():
                raise ValueError(
                    f"'{path}' has non-numeric scores for "
                    f"{frame.loc[bad, 'file_name'].tolist()[:5]}."
                )
            frame["score"] = frame["score"].astype(float)
            frame["machine_type"], frame["section"], frame["domain"] = key
            frame["_file"] = path.name
            scores.append(frame)
        else:
            decisions[key] = _read_rows(path, "decision")
    if not scores:
        raise FileNotFoundError(
            f"No anomaly_score_*.csv files in '{folder}'."
        )
    if len(families) > 1:
        raise ValueError(
            f"'{folder}' mixes submission formats of several years "
            f"({sorted(families)}); keep one system's files per folder."
        )
    table = pd.concat(scores, ignore_index=True)
    # Clip names carry the machine ID or section, so one machine type's
    # score files must not share a clip.
    _refuse_duplicates(table, ["machine_type", "file_name"],
                       f"The score folder '{folder}'", source="_file")
    table = table.drop(columns="_file")
    table["decision"] = float("nan")
    for key, frame in decisions.items():
        mask = (
            (table["machine_type"] == key[0])
            & (table["section"] == key[1])
            & (table["domain"].fillna("") == (key[2] or ""))
        )
        mapping = dict(zip(frame["file_name"], frame["decision"]))
        names = set(table.loc[mask, "file_name"])
        if set(mapping) != names:
            raise ValueError(
                f"The decision file for {key[0]} section {key[1]} lists "
                "different clips than its anomaly_score file; rewrite both "
                "with 'asd-keras score'."
            )
        table.loc[mask, "decision"] = table.loc[mask, "file_name"].map(mapping)
    return table, families.pop()


def labels_from_data(folder, layout=None):
    """Test labels and domains from dev-set file names."""
    table = read_dataset(folder, layout=layout)
    test = table[table["split"] == "test"]
    if test["label"].isna().any():
        example = test.loc[test["label"].isna(), "path"].iloc[0]
        raise ValueError(
            f"Test clips in '{folder}' carry no labels in their names (e.g. "
            f"'{example}'): this is evaluation data. Pass --ground-truth with "
            "the official ground-truth folder instead."
        )
    return test[["machine_type", "section", "domain", "file_name", "label"]], table[
        "layout"
    ].iloc[0]


_GT_DATA = re.compile(
    r"^ground_truth_(?P<machine>.+?)_section_(?P<section>\d{2})"
    r"(?:_(?P<domain>source|target))?_test\.csv$"
)


def read_ground_truth(folder):
    """Reads the official evaluators' ground truth.

    Accepts `eval_data_list.csv` (2020) or a folder with
    `ground_truth_data/` (2021: per domain; 2022+: plus
    `ground_truth_domain/`).

    Returns:
        DataFrame with machine_type, section, domain, file_name, label.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"Ground-truth path '{folder}' does not exist.")
    list_2020 = folder if folder.is_file() else folder / "eval_data_list.csv"
    if list_2020.is_file() and list_2020.name == "eval_data_list.csv":
        rows, machine = [], None
        for line in list_2020.read_text().splitlines():
            parts = [p for p in line.strip().split(",") if p != ""]
            if len(parts) == 1:
                machine = parts[0]
            elif len(parts) >= 3:
                match = re.match(r"^id_(\d{2})_", parts[0])
                if machine is None or match is None:
                    raise ValueError(
                        f"'{list_2020}': unexpected row {line!r}; expected a "
                        "machine-type row, then 'id_XX_...wav,original,label'."
                    )
                rows.append(
                    {
                        "machine_type": machine,
                        "section": match.group(1),
                        "domain": None,
                        "file_name": parts[0],
                        "label": int(parts[2]),
                    }
                )
        frame = pd.DataFrame(rows)
        if not frame.empty:
            _refuse_duplicates(frame, ["machine_type", "file_name"],
                               f"'{list_2020}'")
        return frame
    data_dir = folder / "ground_truth_data"
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"'{folder}' has neither eval_data_list.csv (2020) nor "
            "ground_truth_data/ (2021+). Pass the evaluator's ground-truth "
            "folder."
        )
    frames = []
    for path in sorted(data_dir.glob("ground_truth_*.csv")):
        match = _GT_DATA.match(path.name)
        if match is None:
            continue
        g = match.groupdict()
        frame = _read_rows(path, "label")
        frame["label"] = frame["label"].astype(int)
        frame["machine_type"], frame["section"] = g["machine"], g["section"]
        frame["_file"] = path.name
        if g["domain"]:
            frame["domain"] = g["domain"]
        else:
            domain_path = folder / "ground_truth_domain" / path.name
            if not domain_path.is_file():
                raise FileNotFoundError(
                    f"Missing '{domain_path}': 2022+ ground truth needs the "
                    "domain file beside each ground_truth_data file."
                )
            domains = _read_rows(domain_path, "domain")
            mapping = dict(zip(domains["file_name"], domains["domain"]))
            if set(mapping) != set(frame["file_name"]):
                raise ValueError(
                    f"'{domain_path}' and '{path}' list different clips."
                )
            frame["domain"] = frame["file_name"].map(
                lambda n: "target" if int(mapping[n]) == 1 else "source"
            )
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"No ground_truth_*.csv files in '{data_dir}'.")
    table = pd.concat(frames, ignore_index=True)
    _refuse_duplicates(table, ["machine_type", "file_name"], f"'{data_dir}'",
                       source="_file")
    return table.drop(columns="_file")


def join_scores_and_labels(scores, labels):
    """Aligns scores with labels; the clip sets must match exactly.

    The official evaluators sort both lists and align by position, aborting
    on a length mismatch (reference 4.3); here any missing or extra clip is
    an error that names it.
    """
    keys = ["machine_type", "section", "file_name"]
    left = scores.drop(columns=["domain"], errors="ignore")
    merged = left.merge(labels, on=keys, how="outer", indicator=True)
    missing = merged[merged["_merge"] == "right_only"]
    extra = merged[merged["_merge"] == "left_only"]
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(
                f"{len(missing)} labelled clip(s) have no score, e.g. "
                f"{missing[keys].head(3).values.tolist()}"
            )
        if len(extra):
            parts.append(
                f"{len(extra)} scored clip(s) are not in the ground truth, "
                f"e.g. {extra[keys].head(3).values.tolist()}"
            )
        raise ValueError(
            "Scores and ground truth do not match: "
            + "; ".join(parts)
            + ". Score exactly the clips of the test set, and use the "
            "ground truth of the same dataset."
        )
    return merged.drop(columns="_merge")
