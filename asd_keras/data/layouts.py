"""DCASE Task 2 dataset layouts (2020-2026) parsed into one pandas table.

A data folder is a folder of machine-type folders, e.g. DCASE `dev_data/`,
`dev_data/raw/` or `eval_data/raw/`. Each machine-type folder holds `train/`,
`test/` (2021: `source_test/` and `target_test/`), optionally
`supplemental/` (2025 eval) and `attributes_XX.csv` files. The naming rules
come from `shared/reference/dcase.md` section 1.

Columns of the table returned by `read_dataset`:
    path, file_name, machine_type, section, domain, split, label, index,
    attribute_string, attributes, layout.
`section` is the 2-digit section, or the 2-digit machine ID for 2020.
`domain` is "source", "target" or None (2020, 2022+ eval test).
`label` is 0 (normal), 1 (anomaly) or <NA> (unknown, eval test).

The "plain" layout holds users' own recordings under any file names:
`<machine type>/train/*.wav` (normal clips) and `<machine type>/test/*.wav`
(clips to score), with optional metadata in `<machine type>/labels.csv`
(see `read_dataset`). It is detected when no clip name fits a DCASE scheme
and every machine-type folder has train/ and test/ clips; otherwise pass
`layout="plain"`.
"""

import os
import re
from pathlib import Path

import pandas as pd

LAYOUTS = ("dcase2020", "dcase2021", "dcase2022", "dcase2023", "dcase2026")
# Not in LAYOUTS: those are the DCASE years, which synthetic data can imitate.
PLAIN_LAYOUT = "plain"
PLAIN_METADATA = "labels.csv"
_PLAIN_SPLITS = ("train", "test")
_PLAIN_COLUMNS = ("file_name", "label", "domain", "section")
_PLAIN_LABELS = {"normal": 0, "0": 0, "anomaly": 1, "1": 1}

# Reference dcase.md section 1.5/1.6: 2023-2025 share one naming scheme.
_YEAR_TO_LAYOUT = {
    2020: "dcase2020",
    2021: "dcase2021",
    2022: "dcase2022",
    2023: "dcase2023",
    2024: "dcase2023",
    2025: "dcase2023",
    2026: "dcase2026",
}

_SPLIT_FOLDERS = ("train", "test", "source_test", "target_test", "supplemental")

# Machine types only ever seen in the two-channel 2026 task (reference 1.6).
_MACHINES_2026 = {
    "ToyCarEmu",
    "bearingEmu",
    "gearboxEmu",
    "sliderEmu",
    "valveEmu",
    "SewingMachine",
    "BlowerDustCollector",
    "Sander",
}

_PATTERNS = (
    # 2020 dev: normal_id_01_00000000.wav
    (
        "dcase2020",
        re.compile(
            r"^(?P<label>normal|anomaly)_id_(?P<section>\d{2})_"
            r"(?P<index>\d+)\.wav$"
        ),
    ),
    # 2020 eval test: id_05_00000000.wav
    ("dcase2020", re.compile(r"^id_(?P<section>\d{2})_(?P<index>\d+)\.wav$")),
    # 2021+ train: section_00_source_train_normal_0000_<attributes>.wav
    (
        None,
        re.compile(
            r"^section_(?P<section>\d{2})_(?P<domain>source|target)_train_"
            r"(?P<label>normal)_(?P<index>\d+)(?:_(?P<attributes>.+))?\.wav$"
        ),
    ),
    # 2021+ dev test: section_00_target_test_anomaly_0000[_<attributes>].wav
    (
        None,
        re.compile(
            r"^section_(?P<section>\d{2})_(?P<domain>source|target)_test_"
            r"(?P<label>normal|anomaly)_(?P<index>\d+)"
            r"(?:_(?P<attributes>.+))?\.wav$"
        ),
    ),
    # 2021 eval test: section_03_source_test_0000.wav (domain visible)
    (
        "dcase2021",
        re.compile(
            r"^section_(?P<section>\d{2})_(?P<domain>source|target)_test_"
            r"(?P<index>\d+)\.wav$"
        ),
    ),
    # 2025 eval supplemental: section_00_machine_0001_.wav
    (
        None,
        re.compile(
            r"^section_(?P<section>\d{2})_machine_(?P<index>\d+)_?"
            r"(?P<attributes>.*)\.wav$"
        ),
    ),
    # 2022+ eval test: section_03_0000.wav. The 2022 baseline README writes
    # section_03_test_0000.wav while the ground truth uses the shorter name
    # (reference 1.4), so both are accepted.
    (
        None,
        re.compile(r"^section_(?P<section>\d{2})_(?:test_)?(?P<index>\d+)\.wav$"),
    ),
)

COLUMNS = [
    "path",
    "file_name",
    "machine_type",
    "section",
    "domain",
    "split",
    "label",
    "index",
    "attribute_string",
    "attributes",
    "layout",
]


def layout_for_year(year):
    """Maps a DCASE year (2020-2026) to its layout name."""
    try:
        return _YEAR_TO_LAYOUT[int(year)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(
            f"Unknown DCASE Task 2 year {year!r}. Use one of "
            f"{sorted(_YEAR_TO_LAYOUT)}."
        ) from None


def parse_file_name(file_name):
    """Parses one DCASE clip name.

    Args:
        file_name: str. Base name such as
            `section_00_source_test_normal_0001_spd_3.wav`.

    Returns:
        dict with keys section, domain, label, index, attribute_string and
        layout_hint (a layout name when the pattern belongs to one year
        only), or None if the name fits no DCASE layout.
    """
    for hint, pattern in _PATTERNS:
        match = pattern.match(file_name)
        if match is None:
            continue
        groups = match.groupdict()
        label = groups.get("label")
        return {
            "section": groups["section"],
            "domain": groups.get("domain"),
            "label": None if label is None else int(label == "anomaly"),
            "index": int(groups["index"]),
            "attribute_string": groups.get("attributes") or None,
            "layout_hint": hint,
        }
    return None


def _read_attribute_csvs(machine_dir):
    """Reads `attributes_XX.csv` into {file base name: {parameter: value}}."""
    attributes = {}
    for csv_path in sorted(machine_dir.glob("attributes_*.csv")):
        if "correspondence" in csv_path.name:
            continue
        try:
            frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise ValueError(
                f"Cannot read the attribute file '{csv_path}': {error}. "
                "Restore it from the dataset archive or delete it."
            ) from None
        if "file_name" not in frame.columns:
            raise ValueError(
                f"The attribute file '{csv_path}' has no 'file_name' column "
                f"(columns: {list(frame.columns)}). Restore it from the "
                "dataset archive or delete it."
            )
        keys = [c for c in frame.columns if re.fullmatch(r"d\d+p", c)]
        for row in frame.itertuples(index=False):
            row = row._asdict()
            values = {}
            for key in keys:
                parameter = row.get(key, "")
                value = row.get(key[:-1] + "v", "")
                if parameter:
                    values[parameter] = value
            attributes[Path(row["file_name"]).name] = values
    return attributes


def _machine_dirs(root):
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir()
        and any((d / split).is_dir() for split in _SPLIT_FOLDERS)
    )


def _is_utf8(path):
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path):
    # Python keeps undecodable bytes as lone surrogates, which cannot be
    # printed; show them as \xNN escapes instead.
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _examples(paths, limit=5):
    """'N file(s): [a, b, ...]' for an error message."""
    paths = list(paths)
    shown = ", ".join(f"'{_shown(p)}'" for p in paths[:limit])
    more = f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
    return f"{len(paths)} file(s): {shown}{more}"


def _check_paths_are_utf8(table, root):
    """Refuses clip paths that TensorFlow and libsndfile cannot open."""
    bad = table.loc[~table["path"].map(_is_utf8), "path"]
    if len(bad):
        raise ValueError(
            f"The data folder '{_shown(root)}' holds paths that are not "
            f"valid UTF-8, which TensorFlow and libsndfile cannot open: "
            f"{_examples(bad)}. Rename them (e.g. with convmv) to UTF-8 names."
        )


# Which year a clip's name (or its 2021 source_test/target_test folder)
# belongs to; train names of 2021-2026 fit every section_* year.
_SCHEMES = {
    "dcase2020": "DCASE2020 names (normal_id_00_00000000.wav, id_00_00000000.wav)",
    "section": "section_* names of DCASE2021 and later",
    "dcase2021": "DCASE2021 test clips (source_test/ and target_test/ folders, "
    "section_03_source_test_0000.wav)",
    "dcase2022+": "DCASE2022+ test clips (one test/ folder, e.g. "
    "section_00_source_test_normal_0000_<attributes>.wav, section_03_0000.wav)",
}


def _check_one_naming_scheme(table, root):
    """Refuses a folder whose clips follow the naming of different years.

    A single stray clip of another year would otherwise decide the layout
    of the whole folder (and so the features, metrics and file names).
    """
    is_2020 = table["_hint"] == "dcase2020"
    is_2021 = ~is_2020 & (
        (table["_hint"] == "dcase2021")
        | table["_split_dir"].isin(["source_test", "target_test"])
    )
    is_2022 = ~is_2020 & ~is_2021 & table["_split_dir"].isin(["test", "supplemental"])
    for first, second, a, b in (
        (is_2020, ~is_2020, "dcase2020", "section"),
        (is_2021, is_2022, "dcase2021", "dcase2022+"),
    ):
        if first.any() and second.any():
            odd = first if first.sum() <= second.sum() else second
            raise ValueError(
                f"The data folder '{_shown(root)}' mixes DCASE layouts of "
                f"different years: {int(first.sum())} clip(s) with "
                f"{_SCHEMES[a]} and {int(second.sum())} with {_SCHEMES[b]}. "
                f"The odd {_examples(table.loc[odd, 'path'])}. Move them out "
                "of this folder (each year's data in a folder of its own)."
            )


def _channel_counts(paths):
    """Channel count of every file from its header (NaN when unreadable)."""
    import soundfile

    def channels(path):
        try:
            return soundfile.info(path).channels
        except RuntimeError:
            return float("nan")  # the audio checks report it with its cause

    return paths.map(channels).astype(float)


def _check_one_channel_count(table, root):
    """Refuses mono and two-channel clips in one folder.

    DCASE 2020-2025 clips are mono and 2026 clips two-channel; a stray file
    would be read as channel 0 without notice, or switch the layout.
    """
    channels = table["_channels"].dropna()
    counts = channels.value_counts()
    if len(counts) > 1:
        odd = channels[channels != counts.index[0]]
        found = ", ".join(
            f"{n} with {int(c)} channel(s)" for c, n in counts.items()
        )
        raise ValueError(
            f"The data folder '{_shown(root)}' mixes channel counts ({found}); "
            "DCASE 2020-2025 clips are mono, DCASE 2026 clips two-channel. "
            f"The odd {_examples(table.loc[odd.index, 'path'])}. Convert or "
            "remove them."
        )


def read_dataset(root, layout=None, machine_types=None):
    """Lists every clip of a DCASE-format data folder as a pandas table.

    Args:
        root: str or Path. A folder of machine-type folders (DCASE
            `dev_data/`, `dev_data/raw/`, `eval_data/raw/`, ...).
        layout: str, optional. One of `LAYOUTS` or `"plain"`; detected from
            the file names when None.
        machine_types: list of str, optional. Restrict to these folders.

    The plain layout reads `<machine type>/train/*.wav` (normal, label 0)
    and `<machine type>/test/*.wav` (label unknown) under any names, all in
    section "00" and domain "source" unless `<machine type>/labels.csv`
    says otherwise. That CSV has a `file_name` column (a name, or
    `train/<name>`/`test/<name>` when both folders hold that name) and any
    of `label` (normal/anomaly or 0/1), `domain` (source/target), `section`
    (0-99); every other column is an attribute. Empty cells keep the
    defaults; clips without a row keep them too.

    Returns:
        pandas.DataFrame with the columns listed in the module docstring,
        sorted by machine type, split and file name.

    Raises:
        FileNotFoundError: if `root` does not exist, is a file, or holds no
            clips.
        ValueError: if a WAV file name fits no DCASE layout (and the
            folder is not a plain one), a path is not valid UTF-8, the clips
            mix the naming of different years or mix mono and two-channel
            files, `layout` is unknown, or a plain layout's `labels.csv`
            names a missing clip, a clip twice, or a bad value.
    """
    root = Path(root)
    if layout is not None and layout not in LAYOUTS + (PLAIN_LAYOUT,):
        raise ValueError(
            f"Unknown layout {layout!r}. Use one of {LAYOUTS}, "
            f"{PLAIN_LAYOUT!r} for recordings of your own, or leave it unset "
            "to detect it from the file names."
        )
    if root.is_file():
        raise FileNotFoundError(
            f"Data folder '{root}' is a file, not a folder. Pass the folder "
            "of machine-type folders that holds the clips (e.g. dev_data/ or "
            "dev_data/raw/), not a single file."
        )
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data folder '{root}' does not exist. Pass a folder of "
            "machine-type folders (e.g. dev_data/ or dev_data/raw/), or run "
            "'asd-keras synth' / 'asd-keras download' first."
        )
    machine_dirs = _machine_dirs(root)
    if not machine_dirs and (root / "raw").is_dir():
        raise FileNotFoundError(
            f"'{root}' holds no machine-type folders, but '{root / 'raw'}' "
            "exists: pass that folder instead."
        )
    if machine_types is not None:
        wanted = set(machine_types)
        missing = wanted - {d.name for d in machine_dirs}
        if missing:
            raise FileNotFoundError(
                f"Machine type folder(s) {sorted(missing)} not found under "
                f"'{root}' (found: {[d.name for d in machine_dirs]})."
            )
        machine_dirs = [d for d in machine_dirs if d.name in wanted]

    if not _is_utf8(root):
        raise ValueError(
            f"The data folder path '{_shown(root)}' is not valid UTF-8, so "
            "TensorFlow and libsndfile cannot open the clips in it. Rename "
            "it (e.g. with convmv) to a UTF-8 name."
        )
    if layout == PLAIN_LAYOUT:
        return _read_plain(root, machine_dirs)

    rows, unparsed = [], []
    for machine_dir in machine_dirs:
        attributes = _read_attribute_csvs(machine_dir)
        for split_dir in sorted(machine_dir.iterdir()):
            if not split_dir.is_dir() or split_dir.name not in _SPLIT_FOLDERS:
                continue
            for path in sorted(split_dir.iterdir()):
                if path.suffix.lower() != ".wav":
                    continue
                parsed = parse_file_name(path.name)
                if parsed is None:
                    # Decided after the loop: all-unparsed may be plain.
                    unparsed.append(path)
                    continue
                domain = parsed["domain"]
                if domain is None and split_dir.name in (
                    "source_test",
                    "target_test",
                ):
                    domain = split_dir.name.split("_")[0]
                split = {
                    "source_test": "test",
                    "target_test": "test",
                }.get(split_dir.name, split_dir.name)
                rows.append(
                    {
                        "path": str(path),
                        "file_name": path.name,
                        "machine_type": machine_dir.name,
                        "section": parsed["section"],
                        "domain": domain,
                        "split": split,
                        "label": parsed["label"],
                        "index": parsed["index"],
                        "attribute_string": parsed["attribute_string"],
                        "attributes": attributes.get(path.name, {}),
                        "_split_dir": split_dir.name,
                        "_hint": parsed["layout_hint"],
                    }
                )
    if unparsed:
        if layout is None and not rows and _looks_plain(machine_dirs):
            return _read_plain(root, machine_dirs)
        raise ValueError(
            f"The file '{unparsed[0]}' fits no DCASE Task 2 naming scheme "
            "(e.g. section_00_source_train_normal_0000_<attributes>.wav, "
            "normal_id_00_00000000.wav). Rename it or move it out of the data "
            "folder; for recordings of your own, use layout='plain' (any "
            "names in <machine type>/train/ and <machine type>/test/)."
        )
    if not rows:
        raise FileNotFoundError(
            f"No WAV clips found under '{root}'. Expected machine-type "
            "folders with train/ and test/ subfolders of DCASE-named WAV "
            "files."
        )
    table = pd.DataFrame(rows)
    _check_paths_are_utf8(table, root)
    _check_one_naming_scheme(table, root)
    table["_channels"] = _channel_counts(table["path"])
    _check_one_channel_count(table, root)
    if layout is None:
        layout = detect_layout(table, root=root)
    table = table.drop(columns=["_split_dir", "_hint", "_channels"])
    return _finish_table(table, layout)


def _finish_table(table, layout):
    """Column types, order and row order shared by every layout."""
    table["layout"] = layout
    table["label"] = table["label"].astype("Int64")
    table["domain"] = table["domain"].astype(object)
    table.loc[table["domain"].isna(), "domain"] = None
    table["attribute_string"] = table["attribute_string"].astype(object)
    table.loc[table["attribute_string"].isna(), "attribute_string"] = None
    return table.sort_values(
        ["machine_type", "split", "file_name"], ignore_index=True
    )[COLUMNS]


def _plain_clips(machine_dir, split):
    folder = machine_dir / split
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()
    )


def _looks_plain(machine_dirs):
    """Whether every machine-type folder has train/ and test/ clips.

    Names alone cannot tell a plain folder from a misnamed DCASE one, so a
    folder is read as plain unasked only when it has the plain structure.
    """
    return all(
        _plain_clips(d, split) for d in machine_dirs for split in _PLAIN_SPLITS
    )


def _read_plain(root, machine_dirs):
    """The table of a plain-layout folder (see `read_dataset`)."""
    rows = []
    for machine_dir in machine_dirs:
        clips = []
        for split in _PLAIN_SPLITS:
            for index, path in enumerate(_plain_clips(machine_dir, split)):
                clips.append(
                    {
                        "path": str(path),
                        "file_name": path.name,
                        "machine_type": machine_dir.name,
                        "section": "00",
                        "domain": "source",
                        "split": split,
                        # train/ holds normal clips by definition.
                        "label": 0 if split == "train" else None,
                        "index": index,
                        "attribute_string": None,
                        "attributes": {},
                    }
                )
        _apply_plain_metadata(machine_dir, clips)
        rows += clips
    if not rows:
        raise FileNotFoundError(
            f"No WAV clips found under '{root}'. The plain layout expects "
            "<machine type>/train/*.wav and <machine type>/test/*.wav."
        )
    table = pd.DataFrame(rows)
    _check_paths_are_utf8(table, root)
    return _finish_table(table, PLAIN_LAYOUT)


def _plain_value(value, allowed, what, name, csv_path, line):
    """Maps a metadata cell through `allowed`; None for an empty cell."""
    key = value.strip().lower()
    if not key:
        return None
    if key not in allowed:
        raise ValueError(
            f"'{csv_path}' line {line}: {what} {value!r} for '{name}' is not "
            f"one of {sorted(set(allowed))}. Fix the value, or leave the cell "
            "empty for the default."
        )
    return allowed[key]


def _plain_section(value, name, csv_path, line):
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > 99:
        raise ValueError(
            f"'{csv_path}' line {line}: section {value!r} for '{name}' is not "
            "a number from 0 to 99 (submission files write it as two digits). "
            "Fix the value, or leave the cell empty for section 00."
        )
    return f"{int(value):02d}"


def _apply_plain_metadata(machine_dir, clips):
    """Updates `clips` (rows of one machine type) from its `labels.csv`."""
    csv_path = machine_dir / PLAIN_METADATA
    if not csv_path.is_file():
        return
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError,
            UnicodeDecodeError) as error:
        raise ValueError(
            f"Cannot read the metadata file '{csv_path}': {error}. Write it "
            "as UTF-8 CSV with a header row that includes file_name."
        ) from None
    frame = frame.fillna("")  # short rows leave NaN even with keep_default_na
    if "file_name" not in frame.columns:
        raise ValueError(
            f"The metadata file '{csv_path}' has no 'file_name' column "
            f"(columns: {list(frame.columns)}). Add a header row naming "
            "file_name and any of label, domain, section."
        )
    by_relative = {f"{c['split']}/{c['file_name']}": c for c in clips}
    by_name = {}
    for clip in clips:
        by_name.setdefault(clip["file_name"], []).append(clip)
    attribute_columns = [c for c in frame.columns if c not in _PLAIN_COLUMNS]
    seen = {}
    # Line numbers as an editor shows them: the header is line 1.
    for line, record in enumerate(frame.to_dict("records"), start=2):
        name = record["file_name"].strip().replace("\\", "/")
        if "/" in name:
            found = [by_relative[name]] if name in by_relative else []
        else:
            found = by_name.get(name, [])
        if not found:
            raise ValueError(
                f"'{csv_path}' line {line} names '{name}', which is not a WAV "
                f"file in '{machine_dir / 'train'}' or "
                f"'{machine_dir / 'test'}'. Fix the name or remove the row."
            )
        if len(found) > 1:
            raise ValueError(
                f"'{csv_path}' line {line} names '{name}', which is in both "
                f"train/ and test/ of '{machine_dir}'. Write 'train/{name}' or "
                f"'test/{name}' instead."
            )
        clip = found[0]
        relative = f"{clip['split']}/{clip['file_name']}"
        if relative in seen:
            raise ValueError(
                f"'{csv_path}' lists '{relative}' twice (lines {seen[relative]} "
                f"and {line}). Keep one row per clip."
            )
        seen[relative] = line
        label = _plain_value(record.get("label", ""), _PLAIN_LABELS, "label",
                             relative, csv_path, line)
        if label == 1 and clip["split"] == "train":
            raise ValueError(
                f"'{csv_path}' line {line} labels '{relative}' an anomaly, but "
                "train/ holds normal clips only. Move the clip to test/ or fix "
                "its label."
            )
        if label is not None:
            clip["label"] = label
        domain = _plain_value(record.get("domain", ""),
                              {"source": "source", "target": "target"},
                              "domain", relative, csv_path, line)
        if domain is not None:
            clip["domain"] = domain
        section = _plain_section(record.get("section", ""), relative, csv_path, line)
        if section is not None:
            clip["section"] = section
        attributes = {
            c: record[c].strip() for c in attribute_columns if record[c].strip()
        }
        clip["attributes"] = attributes
        # Spelled like the attribute part of DCASE names, so attribute
        # classes (asd_keras.data.labels) work for plain data too.
        clip["attribute_string"] = "_".join(
            f"{k}_{v}" for k, v in attributes.items()) or None


def detect_layout(table, hints=(), root=None):
    """Guesses the layout of a parsed table (see `read_dataset`).

    Every file counts: `read_dataset` has already refused folders that mix
    naming schemes or channel counts, so no single file decides the year.
    """
    hints = set(hints) | set(table.get("_hint", pd.Series(dtype=object)).dropna())
    if "dcase2020" in hints:
        return "dcase2020"
    if "dcase2021" in hints or table["_split_dir"].isin(
        ["source_test", "target_test"]
    ).any():
        return "dcase2021"
    if set(table["machine_type"]) & _MACHINES_2026:
        return "dcase2026"
    channels = table["_channels"] if "_channels" in table else _channel_counts(
        table["path"])
    # Unreadable headers (NaN) are reported by the audio checks later.
    known = channels.dropna()
    if len(known) and (known == 2).all():
        return "dcase2026"
    in_raw = root is not None and Path(root).name == "raw"
    if in_raw or set(table["section"]) == {"00"}:
        return "dcase2023"
    return "dcase2022"


def describe(table):
    """Counts clips per machine type, section, split, domain and label."""
    counts = (
        table.assign(label=table["label"].astype("string").fillna("?"))
        .fillna({"domain": "-"})
        .groupby(["machine_type", "section", "split", "domain", "label"])
        .size()
        .rename("clips")
        .reset_index()
    )
    return counts


def require_split(table, split):
    """The rows of one split, or a clear error when the folder has none.

    Args:
        table: DataFrame from `read_dataset`.
        split: "train" or "test".

    Raises:
        ValueError: naming the data folder(s) and machine types when no row
            belongs to `split`.
    """
    rows = table[table["split"] == split]
    if rows.empty:
        # path is <data folder>/<machine type>/<split folder>/<clip>.
        folders = sorted(table["path"].map(lambda p: str(Path(p).parents[2])).unique())
        machine_types = sorted(table["machine_type"].unique())
        raise ValueError(
            f"The data folder(s) {folders} have no {split}/ clips (machine "
            f"types: {machine_types}); point --data at a folder whose machine "
            f"types have {split}/ subfolders."
        )
    return rows
