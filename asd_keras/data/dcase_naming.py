"""The DCASE Task 2 layouts by year: clip-name schemes, the year of a layout,
and which year a folder's clips follow.

The naming rules come from `shared/reference/dcase.md` section 1; 2023-2025
share one scheme (`dcase2023`).
"""

import re
from pathlib import Path

import pandas as pd

from asd_keras.data.clip_table import channel_counts

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


def detect_layout(table, hints=(), root=None):
    """Guesses the layout of a parsed table (see
    `asd_keras.data.layouts.read_dataset`).

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
    channels = table["_channels"] if "_channels" in table else channel_counts(
        table["path"])
    # Unreadable headers (NaN) are reported by the audio checks later.
    known = channels.dropna()
    if len(known) and (known == 2).all():
        return "dcase2026"
    in_raw = root is not None and Path(root).name == "raw"
    if in_raw or set(table["section"]) == {"00"}:
        return "dcase2023"
    return "dcase2022"
