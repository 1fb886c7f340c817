"""Reading proxy-study folders (`study.json`, `rows.csv`,
`configurations.csv`) into the report's tables, with their checks."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.studies.proxy import checks as study_checks
from asd_keras.studies.proxy.checks import FIX_STUDY
from asd_keras.studies.proxy.schema import ASD_COLUMNS
from asd_keras.studies.proxy.schema import HEALTH_COLUMNS
from asd_keras.studies.proxy.schema import KEY_COLUMNS
from asd_keras.studies.proxy.schema import RECORDED_FAMILY_KEYS


# ----------------------------------------------------------------------
# reading study folders
# ----------------------------------------------------------------------


def _check_family(family, path):
    """Validates one `families` entry of study.json."""
    if not isinstance(family, dict):
        raise ValueError(f"'{path}': every entry of 'families' must be a mapping; "
                         f"received {family!r}. {FIX_STUDY}.")
    missing = [key for key in RECORDED_FAMILY_KEYS if key not in family]
    if missing:
        raise ValueError(f"'{path}': family {family.get('name')!r} lacks the key(s) "
                         f"{missing}. {FIX_STUDY}.")
    name, metrics = family["name"], family["proxy_metrics"]
    if not isinstance(metrics, list) or family["proxy_metric"] not in metrics:
        raise ValueError(
            f"'{path}': family {name!r} must list its Table VII proxy_metric "
            f"{family['proxy_metric']!r} among proxy_metrics; received {metrics!r}.")
    directions = family["lower_is_better"]
    bad = [m for m in metrics if not isinstance(directions, dict)
           or not isinstance(directions.get(m), bool)]
    if bad:
        raise ValueError(
            f"'{path}': family {name!r} needs lower_is_better true/false for each "
            f"proxy metric; missing or not a bool for {bad} (received "
            f"{directions!r}).")
    configurations = family["configurations"]
    if (not isinstance(configurations, list) or not configurations
            or len(set(configurations)) != len(configurations)):
        raise ValueError(
            f"'{path}': family {name!r} needs a non-empty list of distinct "
            f"configuration names; received {configurations!r}.")


def _read_spec(folder):
    path = folder / "study.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"'{folder}' is not a proxy-study folder: '{path}' is missing. {FIX_STUDY}.")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}). {FIX_STUDY}.") from error
    if not isinstance(spec, dict) or not isinstance(spec.get("families"), list) \
            or not spec["families"]:
        raise ValueError(f"'{path}' must hold a mapping with a non-empty 'families' "
                         f"list. {FIX_STUDY}.")
    if spec.get("aggregation", "mean") != "mean":
        raise ValueError(
            f"'{path}': aggregation {spec['aggregation']!r} is not supported; the "
            "report averages configurations with the arithmetic mean ('mean').")
    for family in spec["families"]:
        _check_family(family, path)
    names = [f["name"] for f in spec["families"]]
    if len(set(names)) != len(names):
        raise ValueError(f"'{path}' lists a family twice: {names}. {FIX_STUDY}.")
    return spec


def aggregate_rows(rows, columns):
    """Arithmetic mean of `columns` per (family, configuration), with n_rows.

    The definition of configurations.csv: over machine types and trials.
    """
    groups = rows.groupby(["family", "configuration"], sort=False)
    frame = groups[list(columns)].mean().reset_index()
    frame["n_rows"] = groups.size().to_numpy()
    return frame


def read_study(study_dir):
    """Reads and validates one proxy-study folder.

    Args:
        study_dir: str or Path, a folder with study.json, rows.csv and
            (normally) configurations.csv.

    Returns:
        dict with `folder` (Path), `spec` (study.json), `rows` and
        `configurations` (DataFrames; configurations in study.json order)
        and `aggregated` (True when configurations.csv was missing and the
        configuration means were computed from rows.csv), `left_out`
        (`study_checks.left_out_cells`: means that leave NaN cells out).

    Raises:
        FileNotFoundError: if study.json or rows.csv is missing.
        ValueError: on a malformed study.json, missing columns, AUCs outside
            [0, 1], configurations that differ from study.json's, or tables
            that do not match each other or the study (`study_checks`).
    """
    folder = Path(study_dir)
    spec = _read_spec(folder)
    proxies = list(dict.fromkeys(m for f in spec["families"] for m in f["proxy_metrics"]))
    numeric = [*ASD_COLUMNS, *proxies]
    rows = study_checks.read_csv(folder / "rows.csv", [*KEY_COLUMNS, *numeric, *HEALTH_COLUMNS],
                                 folder)
    study_checks.check_rows(folder, spec, rows, KEY_COLUMNS)
    path = folder / "configurations.csv"
    aggregated = not path.is_file()
    if aggregated:
        configurations = aggregate_rows(rows, [*numeric, *HEALTH_COLUMNS])
    else:
        configurations = study_checks.read_csv(path, ["family", "configuration", *numeric],
                                               folder)
    for name, frame in (("rows.csv", rows), (path.name, configurations)):
        values = frame[list(ASD_COLUMNS)].to_numpy(np.float64)
        outside = np.isfinite(values) & ((values < 0) | (values > 1))
        if outside.any():
            raise ValueError(
                f"'{folder / name}' has {int(outside.sum())} ASD AUC value(s) outside "
                f"[0, 1] (e.g. {values[outside][0]!r}); AUCs must be fractions, not "
                f"percent. {FIX_STUDY}.")
    listed = {f["name"]: f["configurations"] for f in spec["families"]}
    for name, frame in (("rows.csv", rows), (path.name, configurations)):
        extra = sorted(set(frame["family"]) - set(listed))
        if extra:
            raise ValueError(f"'{folder / name}' has rows of family(ies) {extra} that "
                             f"'{folder / 'study.json'}' does not list. {FIX_STUDY}.")
    keys = configurations[["family", "configuration"]]
    if keys.duplicated().any():
        twice = keys[keys.duplicated()].values.tolist()
        raise ValueError(f"'{folder / path.name}' repeats (family, configuration) "
                         f"rows: {twice}. {FIX_STUDY}.")
    ordered = []
    for name, names in listed.items():
        part = configurations[configurations["family"] == name].set_index("configuration")
        missing = [c for c in names if c not in part.index]
        unknown = [c for c in part.index if c not in names]
        if missing or unknown:
            raise ValueError(
                f"'{folder / path.name}': family {name!r} should have the "
                f"configurations {names} of study.json; missing {missing}, not "
                f"listed {unknown}. Finish the study (rerun its make target) or fix "
                "study.json.")
        ordered.append(part.loc[names].reset_index())
    configurations = pd.concat(ordered, ignore_index=True)
    if not aggregated:
        study_checks.check_configurations(folder, configurations, rows,
                                          [*numeric, *HEALTH_COLUMNS])
    return {"folder": folder, "spec": spec, "rows": rows, "configurations": configurations,
            "aggregated": aggregated, "left_out": study_checks.left_out_cells(
                rows, spec["families"], ASD_COLUMNS)}


def load_studies(study_dirs):
    """Reads several study folders; each family may come from one folder only.

    Returns:
        (studies, families, configurations): the `read_study` dicts; every
        family dict of every study.json in order, with `study` (its folder)
        added; one DataFrame of all configurations.

    Raises:
        ValueError: if no folder is given or a family appears in two folders.
    """
    folders = [study_dirs] if isinstance(study_dirs, (str, Path)) else list(study_dirs)
    if not folders:
        raise ValueError("write_proxy_report: received no study folder.")
    studies, families, seen = [], [], {}
    for folder in folders:
        study = read_study(folder)
        for family in study["spec"]["families"]:
            name = family["name"]
            if name in seen:
                raise ValueError(
                    f"Family {name!r} appears in both '{seen[name]}' and "
                    f"'{study['folder']}'; each family must come from one study "
                    "folder. Pass only one of them, or rename the family in one "
                    "study.")
            seen[name] = study["folder"]
            family = {**family, "study": study["folder"]}
            # Pretrained encoders run without converted checkpoints have
            # random weights; every table and figure says so.
            rows = study["rows"]
            if "weights" in rows:
                notes = rows.loc[rows["family"] == name, "weights"].dropna()
                if (notes == "random weights").any():
                    family["label"] = f"{family['label']} (random weights)"
            families.append(family)
        studies.append(study)
    configurations = pd.concat([s["configurations"] for s in studies], ignore_index=True)
    return studies, families, configurations
