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
"""

import re
from pathlib import Path

import pandas as pd

LAYOUTS = ("dcase2020", "dcase2021", "dcase2022", "dcase2023", "dcase2026")

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


def read_dataset(root, layout=None, machine_types=None):
    """Lists every clip of a DCASE-format data folder as a pandas table.

    Args:
        root: str or Path. A folder of machine-type folders (DCASE
            `dev_data/`, `dev_data/raw/`, `eval_data/raw/`, ...).
        layout: str, optional. One of `LAYOUTS`; detected from the file
            names when None.
        machine_types: list of str, optional. Restrict to these folders.

    Returns:
        pandas.DataFrame with the columns listed in the module docstring,
        sorted by machine type, split and file name.

    Raises:
        FileNotFoundError: if `root` does not exist or holds no clips.
        ValueError: if a WAV file name fits no DCASE layout, or `layout` is
            unknown.
    """
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(
            f"Unknown layout {layout!r}. Use one of {LAYOUTS}, or leave it "
            "unset to detect it from the file names."
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

    rows = []
    hints = set()
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
                    raise ValueError(
                        f"The file '{path}' fits no DCASE Task 2 naming "
                        "scheme (e.g. section_00_source_train_normal_0000_"
                        "<attributes>.wav, normal_id_00_00000000.wav). "
                        "Rename it or move it out of the data folder."
                    )
                if parsed["layout_hint"]:
                    hints.add(parsed["layout_hint"])
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
                    }
                )
    if not rows:
        raise FileNotFoundError(
            f"No WAV clips found under '{root}'. Expected machine-type "
            "folders with train/ and test/ subfolders of DCASE-named WAV "
            "files."
        )
    table = pd.DataFrame(rows)
    if layout is None:
        layout = detect_layout(table, hints, root)
    table["layout"] = layout
    table["label"] = table["label"].astype("Int64")
    table["domain"] = table["domain"].astype(object)
    table.loc[table["domain"].isna(), "domain"] = None
    table["attribute_string"] = table["attribute_string"].astype(object)
    table.loc[table["attribute_string"].isna(), "attribute_string"] = None
    table = table.drop(columns="_split_dir")
    return table.sort_values(
        ["machine_type", "split", "file_name"], ignore_index=True
    )[COLUMNS]


def detect_layout(table, hints=(), root=None):
    """Guesses the layout of a parsed table (see `read_dataset`)."""
    hints = set(hints)
    if "dcase2020" in hints:
        return "dcase2020"
    if "dcase2021" in hints or table["_split_dir"].isin(
        ["source_test", "target_test"]
    ).any():
        return "dcase2021"
    if set(table["machine_type"]) & _MACHINES_2026:
        return "dcase2026"
    import soundfile

    try:
        channels = soundfile.info(table["path"].iloc[0]).channels
    except RuntimeError:
        channels = 1  # the audio checks report the unreadable file later
    if channels == 2:
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
    """
    rows = table[table["split"] == split]
    if rows.empty:
        raise ValueError(
            f"The data folder has no {split}/ clips; point --data at a folder "
            f"whose machine types have {split}/ subfolders."
        )
    return rows
