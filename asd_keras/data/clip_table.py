"""The clip table every layout is read into: its columns, and the checks
that refuse a data folder the table cannot describe consistently.

`asd_keras.data.layouts.read_dataset` lists a folder's clips, then these
checks refuse paths TensorFlow and libsndfile cannot open, clips named after
the schemes of different DCASE years, and mono clips beside two-channel ones;
`finish_table` gives every layout's table the same column types and order.
"""

import os

import soundfile

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


def finish_table(table, layout):
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


def is_utf8(path):
    """Whether a path encodes to UTF-8 (TensorFlow and libsndfile need it)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path):
    """The path as printable text for an error message.

    Python keeps undecodable bytes as lone surrogates, which cannot be
    printed; they are shown as \\xNN escapes instead.
    """
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _examples(paths, limit=5):
    """'N file(s): [a, b, ...]' for an error message."""
    paths = list(paths)
    shown = ", ".join(f"'{printable_path(p)}'" for p in paths[:limit])
    more = f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
    return f"{len(paths)} file(s): {shown}{more}"


def check_paths_are_utf8(table, root):
    """Refuses clip paths that TensorFlow and libsndfile cannot open."""
    bad = table.loc[~table["path"].map(is_utf8), "path"]
    if len(bad):
        raise ValueError(
            f"The data folder '{printable_path(root)}' holds paths that are not "
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


def check_one_naming_scheme(table, root):
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
                f"The data folder '{printable_path(root)}' mixes DCASE layouts of "
                f"different years: {int(first.sum())} clip(s) with "
                f"{_SCHEMES[a]} and {int(second.sum())} with {_SCHEMES[b]}. "
                f"The odd {_examples(table.loc[odd, 'path'])}. Move them out "
                "of this folder (each year's data in a folder of its own)."
            )


def channel_counts(paths):
    """Channel count of every file from its header (NaN when unreadable)."""

    def channels(path):
        try:
            return soundfile.info(path).channels
        except RuntimeError:
            return float("nan")  # the audio checks report it with its cause

    return paths.map(channels).astype(float)


def check_one_channel_count(table, root):
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
            f"The data folder '{printable_path(root)}' mixes channel counts ({found}); "
            "DCASE 2020-2025 clips are mono, DCASE 2026 clips two-channel. "
            f"The odd {_examples(table.loc[odd.index, 'path'])}. Convert or "
            "remove them."
        )
