"""A trained system's models and thresholds in its run folder.

    members/member<r>/extractors/<group>/   FeatureExtractor.save
    members/member<r>/backends/<group>/     ScoringBackend.save
    thresholds.json                         group -> decision threshold
"""

import json
from pathlib import Path

from asd_keras.backends import load_backend
from asd_keras.extractors import load_extractor
from asd_keras.systems.members import Member
from asd_keras.utils.io import atomic_write_text


def save_members(run_dir, members, thresholds):
    """Writes every member's extractors and backends, then the thresholds.

    Args:
        run_dir: str or Path. The run folder.
        members: list of `Member`.
        thresholds: dict of group key -> decision threshold.
    """
    root = Path(run_dir) / "members"
    for r, member in enumerate(members):
        for group, extractor in member.extractors.items():
            extractor.save(root / f"member{r}" / "extractors" / group)
        for group, backend in member.backends.items():
            backend.save(root / f"member{r}" / "backends" / group)
    atomic_write_text(Path(run_dir) / "thresholds.json",
                      json.dumps(thresholds, indent=1, sort_keys=True))


def load_members(run_dir, system_name):
    """Reads the members and thresholds that `save_members` wrote.

    Args:
        run_dir: str or Path. The run folder.
        system_name: str. The system's registry name, for the error message.

    Returns:
        (members, thresholds): a list of `Member` in member order, and the
        dict of group key -> decision threshold.

    Raises:
        FileNotFoundError: the folder holds no trained members or no
            `thresholds.json`.
    """
    root = Path(run_dir) / "members"
    folders = sorted(root.glob("member*"), key=lambda p: int(p.name[6:]))
    if not folders or not (Path(run_dir) / "thresholds.json").is_file():
        raise FileNotFoundError(f"No trained members in '{root}' or no thresholds.json; "
                                f"is '{run_dir}' a finished 'asd-keras train --system "
                                f"{system_name}' run?")
    members = []
    for folder in folders:
        members.append(Member(
            extractors={p.name: load_extractor(p)
                        for p in sorted((folder / "extractors").iterdir())},
            backends={p.name: load_backend(p)
                      for p in sorted((folder / "backends").iterdir())},
        ))
    thresholds = json.loads((Path(run_dir) / "thresholds.json").read_text())
    return members, thresholds
