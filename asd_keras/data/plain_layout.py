"""The "plain" layout: users' own recordings under any file names.

`<machine type>/train/*.wav` holds normal clips and `<machine type>/test/*.wav`
the clips to score; `<machine type>/labels.csv` may give labels, domains,
sections and attributes (see `asd_keras.data.layouts.read_dataset`).
"""

import pandas as pd

from asd_keras.data.clip_table import check_paths_are_utf8
from asd_keras.data.clip_table import finish_table

# Not in `dcase_naming.LAYOUTS`: those are the DCASE years, which synthetic data can imitate.
PLAIN_LAYOUT = "plain"
PLAIN_METADATA = "labels.csv"
_PLAIN_SPLITS = ("train", "test")
_PLAIN_COLUMNS = ("file_name", "label", "domain", "section")
_PLAIN_LABELS = {"normal": 0, "0": 0, "anomaly": 1, "1": 1}


def _plain_clips(machine_dir, split):
    folder = machine_dir / split
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()
    )


def looks_plain(machine_dirs):
    """Whether every machine-type folder has train/ and test/ clips.

    Names alone cannot tell a plain folder from a misnamed DCASE one, so a
    folder is read as plain unasked only when it has the plain structure.
    """
    return all(
        _plain_clips(d, split) for d in machine_dirs for split in _PLAIN_SPLITS
    )


def read_plain(root, machine_dirs):
    """The table of a plain-layout folder (see
    `asd_keras.data.layouts.read_dataset`)."""
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
    check_paths_are_utf8(table, root)
    return finish_table(table, PLAIN_LAYOUT)


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
