"""Group keys: which model of a system serves a clip.

A system fits one extractor per extractor group and one backend per
(backend) group. With `grouping="all"` there is one group, `"all"`; by
machine type the key is the machine type (`"fan"`); by section it is
`"fan_section_00"`, the stem of DCASE's submission file names
(reference dcase.md §4.3). Groupings nest: a section lies in its machine
type, and everything in `"all"`.
"""

import pandas as pd

ALL = "all"
_SEPARATOR = "_section_"


def group_key(grouping, machine_type=None, section=None):
    """The key of one clip's group.

    Args:
        grouping: str. `"all"`, `"machine_type"` or `"section"`.
        machine_type: str.
        section: str. Two digits (`"00"`).

    Returns:
        str.

    Raises:
        ValueError: an unknown grouping, or a missing machine type or
            section that the grouping needs.
    """
    if grouping == ALL:
        return ALL
    if grouping not in ("machine_type", "section"):
        raise ValueError(f"grouping must be 'all', 'machine_type' or 'section'; "
                         f"received {grouping!r}.")
    if machine_type is None or (grouping == "section" and section is None):
        raise ValueError(f"grouping={grouping!r} needs the machine type"
                         f"{' and the section' if grouping == 'section' else ''}; received "
                         f"machine_type={machine_type!r}, section={section!r}.")
    if grouping == "machine_type":
        return str(machine_type)
    return f"{machine_type}{_SEPARATOR}{section}"


def group_keys(table, grouping):
    """`group_key` of every row of a dataset table, as a Series on its index."""
    if grouping == ALL:
        return pd.Series(ALL, index=table.index)
    if grouping == "machine_type":
        return table["machine_type"].astype(str)
    if grouping != "section":
        group_key(grouping)  # raises the error that names the value
    return table["machine_type"].astype(str) + _SEPARATOR + table["section"].astype(str)


def machine_type_of(group):
    """The machine type of a group key; None for `"all"` (or None)."""
    if group in (None, ALL):
        return None
    return group.split(_SEPARATOR)[0]


def section_of(group):
    """The section of a section key (`"fan_section_00"` -> `"00"`), else None."""
    if group in (None, ALL) or _SEPARATOR not in group:
        return None
    return group.split(_SEPARATOR, 1)[1]


def owner_group(group, candidates):
    """The group among `candidates` (coarser or equal groups) that holds
    `group`: `"fan_section_00"` lies in `"fan"` and in `"all"`.

    Raises:
        ValueError: naming the group when no candidate holds it.
    """
    for candidate in candidates:
        if candidate == ALL or group == candidate or group.startswith(candidate + _SEPARATOR):
            return candidate
    raise ValueError(f"No extractor group holds the group {group!r}; extractor groups: "
                     f"{list(candidates)}.")
