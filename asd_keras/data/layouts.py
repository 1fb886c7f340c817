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

The clip names of each year are parsed in `asd_keras.data.dcase_naming`,
plain folders read in `asd_keras.data.plain_layout`, and the table's columns
and consistency checks live in `asd_keras.data.clip_table`.
"""

import re
from pathlib import Path

import pandas as pd

from asd_keras.data.clip_table import COLUMNS
from asd_keras.data.clip_table import channel_counts
from asd_keras.data.clip_table import check_one_channel_count
from asd_keras.data.clip_table import check_one_naming_scheme
from asd_keras.data.clip_table import check_paths_are_utf8
from asd_keras.data.clip_table import finish_table
from asd_keras.data.clip_table import is_utf8
from asd_keras.data.clip_table import printable_path
from asd_keras.data.dcase_naming import LAYOUTS
from asd_keras.data.dcase_naming import detect_layout
from asd_keras.data.dcase_naming import layout_for_year
from asd_keras.data.dcase_naming import parse_file_name
from asd_keras.data.plain_layout import PLAIN_LAYOUT
from asd_keras.data.plain_layout import PLAIN_METADATA
from asd_keras.data.plain_layout import looks_plain
from asd_keras.data.plain_layout import read_plain

# The public names of the layouts, wherever they are defined.
__all__ = [
    "COLUMNS",
    "LAYOUTS",
    "PLAIN_LAYOUT",
    "PLAIN_METADATA",
    "describe",
    "detect_layout",
    "layout_for_year",
    "parse_file_name",
    "read_dataset",
    "require_split",
]

_SPLIT_FOLDERS = ("train", "test", "source_test", "target_test", "supplemental")


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

    if not is_utf8(root):
        raise ValueError(
            f"The data folder path '{printable_path(root)}' is not valid UTF-8, so "
            "TensorFlow and libsndfile cannot open the clips in it. Rename "
            "it (e.g. with convmv) to a UTF-8 name."
        )
    if layout == PLAIN_LAYOUT:
        return read_plain(root, machine_dirs)

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
        if layout is None and not rows and looks_plain(machine_dirs):
            return read_plain(root, machine_dirs)
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
    check_paths_are_utf8(table, root)
    check_one_naming_scheme(table, root)
    table["_channels"] = channel_counts(table["path"])
    check_one_channel_count(table, root)
    if layout is None:
        layout = detect_layout(table, root=root)
    table = table.drop(columns=["_split_dir", "_hint", "_channels"])
    return finish_table(table, layout)


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
