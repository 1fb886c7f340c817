"""The three-stage report of Shin & Lee's proxy-task study (paper §VI-D).

`write_proxy_report` reads one or more study folders written by the proxy
study runner (`study.json`, `rows.csv`, `configurations.csv` and
`features/`) and writes, into one report folder:

- `table7.csv`, `table7.md`: Spearman's rho of each family's Table VII proxy
  metric with each ASD AUC over the family's configurations, with the exact
  p-value, the paper's marks and a verdict;
- `fig2_in_domain_lp.png`, `fig3_out_domain_lp.png`, `fig4_md.png`: the
  normalised proxy performance against each ASD AUC (Figs. 2-4);
- `fig5_projections.png`: UMAP and t-SNE of two families' test features
  (Fig. 5);
- `report.md`: Stage 1 (training health: saturation and failure), Stage 2
  (separability and compactness), Stage 3 (correlation verdicts) and the
  per-configuration tables in the layout of Tables II-VI.

Nothing family-specific is built in: every family, its proxy metrics and
their directions come from `study.json`. Only the health thresholds have
defaults named after metrics (macro-F1 saturation, uniformity collapse),
and they are arguments.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.evaluation.proxy import MAX_EXACT_N
from asd_keras.evaluation.proxy import correlation_table
from asd_keras.runners import study_checks
from asd_keras.runners.study_checks import FIX_STUDY
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import staged_dir
from asd_keras.visualisation.proxy import ASD_LABELS

ASD_COLUMNS = ("lp_in_domain_auc", "lp_out_domain_auc", "md_auc")
LOSS_COLUMNS = ("first_loss", "last_loss", "min_loss", "epochs")
ROW_KEYS = ("family", "configuration", "machine_type", "trial")
FAMILY_KEYS = ("name", "label", "proxy_metric", "proxy_metrics", "lower_is_better",
               "configurations")
FIGURES = {
    "lp_in_domain_auc": "fig2_in_domain_lp.png",
    "lp_out_domain_auc": "fig3_out_domain_lp.png",
    "md_auc": "fig4_md.png",
}
FIG5 = "fig5_projections.png"
# Table VII's significance level.
ALPHA = 0.05
# Saturation (Stage 1): every configuration at least this good. The paper's
# classification F1 scores all exceed 97 % (Table III).
DEFAULT_SATURATION_LEVELS = {"macro_f1": 0.97}
# Collapse (Stage 1): a configuration worse than this. Uniformity is in
# [-4t, 0] and 0 means every feature points the same way; the paper reads
# SimSiam's -0.21 and -0.18 (Table V) as collapse.
DEFAULT_COLLAPSE_LEVELS = {"uniformity": -0.3}
# Pairings of the randomised Spearman test, used only above MAX_EXACT_N.
RANDOM_PAIRINGS = 100_000


# ----------------------------------------------------------------------
# reading study folders
# ----------------------------------------------------------------------


def _check_family(family, path):
    """Validates one `families` entry of study.json."""
    if not isinstance(family, dict):
        raise ValueError(f"'{path}': every entry of 'families' must be a mapping; "
                         f"received {family!r}. {FIX_STUDY}.")
    missing = [key for key in FAMILY_KEYS if key not in family]
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
    rows = study_checks.read_csv(folder / "rows.csv", [*ROW_KEYS, *numeric, *LOSS_COLUMNS],
                                 folder)
    study_checks.check_rows(folder, spec, rows, ROW_KEYS)
    path = folder / "configurations.csv"
    aggregated = not path.is_file()
    if aggregated:
        configurations = aggregate_rows(rows, [*numeric, *LOSS_COLUMNS])
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
                                          [*numeric, *LOSS_COLUMNS])
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


# ----------------------------------------------------------------------
# Stage 1: training health
# ----------------------------------------------------------------------


def _better_or_equal(values, level, lower_is_better):
    return values <= level if lower_is_better else values >= level


def _loss_stalled(first, last, loss_ratio):
    """True where a trained model's loss did not fall enough.

    `last > loss_ratio * first` for a positive first loss; written as a drop
    of less than `(1 - loss_ratio) * |first|` so that negative losses
    (SimSiam's negative cosine, SI-SDR) are judged the same way. Models
    without a first loss (not trained) are never flagged; a non-finite last
    loss (divergence) always is.
    """
    trained = np.isfinite(first)
    drop = first - last
    stalled = ~np.isfinite(last) | (drop < (1.0 - loss_ratio) * np.abs(first))
    return trained & stalled, trained


def training_health(family, configurations, rows, saturation_levels=None,
                    saturation_spread=0.01, collapse_levels=None, loss_ratio=0.95):
    """Stage 1 of the protocol for one family: saturation and failure.

    - Saturated (the task is too easy; the proxy cannot rank models): every
      configuration reaches a `saturation_levels` value (e.g. macro_f1 >=
      0.97), or the Table VII proxy metric's spread (max - min) over the
      configurations is below `saturation_spread` times its mean magnitude.
    - Failed (the task is too hard): a configuration is worse than a
      `collapse_levels` value (e.g. uniformity > -0.3: features collapsed
      towards one direction), or the training loss of one of its models did
      not fall (`last_loss > loss_ratio * first_loss`).

    Levels apply to whichever of the family's `proxy_metrics` they name, in
    the family's direction; the proxy values are the configuration means,
    the losses those of each model in rows.csv.

    Args:
        family: dict, a study.json family.
        configurations: DataFrame of configuration means (any families).
        rows: DataFrame of rows.csv (any families).
        saturation_levels: {metric: level}; None for
            `DEFAULT_SATURATION_LEVELS`.
        saturation_spread: float, relative spread below which the proxy
            metric counts as saturated.
        collapse_levels: {metric: level}; None for `DEFAULT_COLLAPSE_LEVELS`.
        loss_ratio: float in (0, 1].

    Returns:
        dict with family, label, proxy, n, min, max, relative_spread,
        saturated (bool), saturation (reason, "" if none), collapsed (list of
        "configuration (metric value)"), stalled (list of "configuration (k
        of m models)"), untrained (models without a first loss), failed
        (bool) and status ("ok", "saturated", "failed" or "saturated,
        failed").
    """
    saturation_levels = (DEFAULT_SATURATION_LEVELS if saturation_levels is None
                         else saturation_levels)
    collapse_levels = DEFAULT_COLLAPSE_LEVELS if collapse_levels is None else collapse_levels
    name, proxy = family["name"], family["proxy_metric"]
    directions = family["lower_is_better"]
    part = configurations[configurations["family"] == name]
    values = part[proxy].to_numpy(np.float64)
    finite = values[np.isfinite(values)]
    reasons = []
    for metric, level in saturation_levels.items():
        if metric not in family["proxy_metrics"]:
            continue
        v = part[metric].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        if v.size and _better_or_equal(v, level, directions[metric]).all():
            sign = "≤" if directions[metric] else "≥"
            reasons.append(f"every configuration has {metric} {sign} {level:g}")
    spread = float(np.ptp(finite)) if finite.size else float("nan")
    scale = float(np.mean(np.abs(finite))) if finite.size else float("nan")
    relative = (float("nan") if not finite.size else 0.0 if spread == 0
                else float("inf") if scale == 0 else spread / scale)
    if finite.size and spread == 0:
        reasons.append(f"{proxy} is constant ({finite[0]:.4g})")
    elif np.isfinite(relative) and relative < saturation_spread:
        reasons.append(f"{proxy} spans only {100 * relative:.2g} % of its mean "
                       f"magnitude (< {100 * saturation_spread:g} %)")
    collapsed = []
    for metric, level in collapse_levels.items():
        if metric not in family["proxy_metrics"]:
            continue
        v = part[metric].to_numpy(np.float64)
        worse = np.isfinite(v) & ~_better_or_equal(v, level, directions[metric])
        collapsed += [f"{c} ({metric} {x:.3g})"
                      for c, x in zip(part["configuration"][worse], v[worse])]
    stalled, untrained = [], 0
    models = rows[rows["family"] == name]
    for configuration in part["configuration"]:
        m = models[models["configuration"] == configuration]
        flags, trained = _loss_stalled(m["first_loss"].to_numpy(np.float64),
                                       m["last_loss"].to_numpy(np.float64), loss_ratio)
        untrained += int((~trained).sum())
        if flags.any():
            stalled.append(f"{configuration} ({int(flags.sum())} of "
                           f"{int(trained.sum())} models)")
    saturated, failed = bool(reasons), bool(collapsed or stalled)
    status = ", ".join(s for s, on in (("saturated", saturated), ("failed", failed))
                       if on) or "ok"
    return {
        "family": name, "label": family["label"], "proxy": proxy, "n": len(part),
        "min": float(finite.min()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "relative_spread": relative, "saturated": saturated,
        "saturation": "; ".join(reasons), "collapsed": collapsed, "stalled": stalled,
        "untrained": untrained, "failed": failed, "status": status,
    }


# ----------------------------------------------------------------------
# Stage 3: correlation verdicts (Table VII)
# ----------------------------------------------------------------------


def smallest_attainable_p(n):
    """The smallest exact two-sided Spearman p-value possible with n pairs.

    Without ties it is reached at rho = +-1: 2 / n! (n = 4: 0.083, n = 5:
    0.017); ties can only make it larger. Below 3 pairs there is no test.
    """
    return 1.0 if n < 3 else min(1.0, 2.0 / math.factorial(n))


def correlation_verdicts(configurations, families, health=None, seed=0):
    """Table VII with a Stage 3 verdict per family and ASD metric.

    Verdicts: "aligned" (p < 0.05, better proxy with better ASD), "opposed"
    (p < 0.05, the other way), "not aligned" (p >= 0.05 although n allows
    p < 0.05), or "inconclusive for n = k (reason)": the smallest
    attainable p for n is >= 0.05, a metric is constant or missing, or the
    family did not pass Stage 1 (`health`). rho and p are still given when
    they could be computed.

    Args:
        configurations: DataFrame of configuration means with `family`, the
            families' proxy metrics and `ASD_COLUMNS`.
        families: list of study.json family dicts.
        health: optional {family name: `training_health` dict}.
        seed: int, for the randomised test used above MAX_EXACT_N pairs.

    Returns:
        DataFrame with family, label, proxy, lower_is_better, asd_metric, n,
        rho, p, mark, rho_oriented, relationship, p_method, verdict.
    """
    rows = []
    for family in families:
        name, proxy = family["name"], family["proxy_metric"]
        lower = family["lower_is_better"][proxy]
        part = configurations[configurations["family"] == name]
        n = len(part)
        x = part[proxy].to_numpy(np.float64)
        status = (health or {}).get(name, {}).get("status", "ok")
        for asd in ASD_COLUMNS:
            y = part[asd].to_numpy(np.float64)
            row = {"family": name, "label": family["label"], "proxy": proxy,
                   "lower_is_better": lower, "asd_metric": asd, "n": n,
                   "rho": np.nan, "p": np.nan, "mark": "", "rho_oriented": np.nan,
                   "relationship": "", "p_method": ""}
            # Why no verdict can be given, checked in order of precedence.
            reason = None
            if not np.isfinite(x).all():
                reason = f"{proxy} missing for {int((~np.isfinite(x)).sum())} configurations"
            elif not np.isfinite(y).all():
                reason = f"{asd} missing for {int((~np.isfinite(y)).sum())} configurations"
            elif n < 3:
                reason = "fewer than 3 configurations"
            elif np.ptp(x) == 0:
                reason = "constant proxy metric"
            elif np.ptp(y) == 0:
                reason = "constant ASD metric"
            else:
                # Computed even when no verdict follows, so rho is on record.
                exact = n <= MAX_EXACT_N
                try:
                    cell = correlation_table(
                        part, "family", proxy, asd, lower_is_better={proxy: lower},
                        n_resamples=None if exact else RANDOM_PAIRINGS, rng=seed)
                except ValueError as error:
                    reason = str(error)
                else:
                    row.update(cell.iloc[0][["rho", "p", "mark", "rho_oriented",
                                             "relationship"]].to_dict())
                    row["p_method"] = ("exact" if exact else
                                       f"randomised ({RANDOM_PAIRINGS:,} pairings)")
            if reason is None and smallest_attainable_p(n) >= ALPHA:
                reason = f"smallest attainable p = {smallest_attainable_p(n):.3g}"
            if reason is None and status != "ok":
                reason = f"stage 1: {status}"
            if reason is not None:
                row["verdict"] = f"inconclusive for n = {n} ({reason})"
            elif row["p"] < ALPHA:
                row["verdict"] = "aligned" if row["rho_oriented"] > 0 else "opposed"
            else:
                row["verdict"] = "not aligned"
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------


def _pct(value):
    return "n/a" if not np.isfinite(value) else f"{100 * value:.2f}"


def _num(value):
    return "n/a" if not np.isfinite(value) else f"{value:.4g}"


def _markdown(records, columns):
    # Cells are formatted strings already; tabulate would reparse "66.00" as 66.
    return pd.DataFrame(records, columns=columns).to_markdown(index=False,
                                                              disable_numparse=True)


def table7_markdown(table7):
    """Table VII laid out as in the paper: one row per family."""
    records = []
    for name, part in table7.groupby("family", sort=False):
        first = part.iloc[0]
        arrow = "↓" if first["lower_is_better"] else "↑"
        record = {"Proxy task": first["label"], "proxy metric": f"{first['proxy']} ({arrow})"}
        for _, cell in part.iterrows():
            record[ASD_LABELS[cell["asd_metric"]]] = (
                "n/a" if not np.isfinite(cell["rho"]) else f"{cell['rho']:.2f}{cell['mark']}")
        records.append(record)
    columns = ["Proxy task", "proxy metric", *(ASD_LABELS[c] for c in ASD_COLUMNS)]
    return (
        "Spearman's rho between each family's proxy metric and its ASD AUCs over the "
        "family's configurations (exact two-sided p: * p < 0.05, ** p < 0.01, "
        "*** p < 0.001). For lower-is-better (↓) metrics a negative rho means better "
        "proxy goes with better ASD.\n\n" + _markdown(records, columns) + "\n")


def _stage1_markdown(health, thresholds):
    records = [{
        "family": h["label"], "proxy metric": h["proxy"], "n": h["n"],
        "range": f"{_num(h['min'])} to {_num(h['max'])}",
        "relative spread": ("n/a" if not np.isfinite(h["relative_spread"])
                            else f"{100 * h['relative_spread']:.3g} %"),
        "saturation": h["saturation"] or "no",
        "collapse": "; ".join(h["collapsed"]) or "no",
        "loss did not fall": "; ".join(h["stalled"]) or (
            "n/a (not trained)" if h["untrained"] and not h["stalled"] else "no"),
        "stage 1": h["status"],
    } for h in health.values()]
    columns = ["family", "proxy metric", "n", "range", "relative spread", "saturation",
               "collapse", "loss did not fall", "stage 1"]
    return thresholds + "\n\n" + _markdown(records, columns) + "\n"


def _stage2_markdown(configurations, families):
    records = []
    for family in families:
        part = configurations[configurations["family"] == family["name"]]
        for asd in ASD_COLUMNS:
            finite = part[np.isfinite(part[asd])]
            v = finite[asd].to_numpy(np.float64)
            records.append({
                "family": family["label"], "ASD metric": ASD_LABELS[asd],
                **{f"{k} %": _pct(f(v)) if v.size else "n/a"
                   for k, f in (("mean", np.mean), ("min", np.min), ("max", np.max))},
                "best configuration": (finite["configuration"].iloc[np.argmax(v)]
                                       if v.size else "n/a")})
    return _markdown(records, ["family", "ASD metric", "mean %", "min %", "max %",
                               "best configuration"]) + "\n"


def _configuration_markdown(configurations, family):
    part = configurations[configurations["family"] == family["name"]]
    records = []
    for _, row in part.iterrows():
        record = {"configuration": row["configuration"]}
        for metric in family["proxy_metrics"]:
            arrow = "↓" if family["lower_is_better"][metric] else "↑"
            record[f"{metric} ({arrow})"] = _num(row[metric])
        for asd in ASD_COLUMNS:
            record[f"{ASD_LABELS[asd]} %"] = _pct(row[asd])
        records.append(record)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True) + "\n"


# ----------------------------------------------------------------------
# Fig. 5 panels
# ----------------------------------------------------------------------


def _load_features(path):
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("features", "label", "md_auc") if k not in archive.files]
        if missing:
            raise ValueError(f"'{path}' lacks the array(s) {missing}; it has "
                             f"{archive.files}. {FIX_STUDY}.")
        return (archive["features"], archive["label"].astype(int),
                float(archive["md_auc"]))


def feature_panels(families, configurations, machine_type, count=2):
    """Fig. 5 panels of the first `count` families with a features file.

    For each family the configuration with the best mean MD AUC that has a
    file `features/<family>/<configuration>/<machine_type>.npz` is used.

    Returns:
        list of (title, features, labels, md_auc, path).
    """
    panels = []
    for family in families:
        if machine_type is None or len(panels) == count:
            break
        part = configurations[configurations["family"] == family["name"]]
        order = part.sort_values("md_auc", ascending=False, na_position="last")
        for configuration in order["configuration"]:
            path = (Path(family["study"]) / "features" / family["name"] / configuration
                    / f"{machine_type}.npz")
            if path.is_file():
                features, labels, md_auc = _load_features(path)
                panels.append((f"{family['label']} ({configuration})", features, labels,
                               md_auc, path))
                break
    return panels


# ----------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------


def _sign(metric, families, lower, higher, unknown):
    """The comparison sign of a threshold in the metric's direction."""
    directions = {f["lower_is_better"][metric] for f in families
                  if metric in f["proxy_metrics"]}
    if len(directions) != 1:  # not reported, or reported both ways
        return unknown
    return lower if directions.pop() else higher


def _thresholds_text(families, saturation_levels, saturation_spread, collapse_levels,
                     loss_ratio):
    """The Stage 1 thresholds as a sentence of the report."""
    saturated = ", ".join(
        f"{m} {_sign(m, families, '≤', '≥', 'at or better than')} {v:g}"
        for m, v in saturation_levels.items()) or "(no level given)"
    collapsed = ", ".join(
        f"{m} {_sign(m, families, '>', '<', 'worse than')} {v:g}"
        for m, v in collapse_levels.items()) or "(no level given)"
    return (
        f"Thresholds: **saturated** when every configuration reaches {saturated}, or "
        "when the Table VII proxy metric's spread (max − min) is below "
        f"{100 * saturation_spread:g} % of its mean magnitude; **failed** when a "
        f"configuration has {collapsed} (collapse; configuration means), or when a "
        f"model's training loss did not fall (last_loss > {loss_ratio:g} × first_loss, "
        f"i.e. a drop below {100 * (1 - loss_ratio):.3g} % of |first_loss|; each model "
        "of rows.csv). A family that is saturated or failed gets no Stage 3 verdict.")


def _check_out(out, studies):
    """`out` must not be a study folder or hold one: --force would delete it."""
    resolved = Path(out).resolve()
    for study in studies:
        folder = study["folder"].resolve()
        if resolved == folder or resolved in folder.parents:
            raise ValueError(
                f"The report folder '{out}' is (or holds) the study folder '{folder}'; "
                "--force would delete the study. Choose another folder.")


def write_proxy_report(study_dirs, out, force=False, saturation_levels=None,
                       saturation_spread=0.01, collapse_levels=None, loss_ratio=0.95,
                       seed=0, projections=True):
    """Writes the proxy-task report of one or more study folders.

    Args:
        study_dirs: str/Path or list of them; study folders (e.g. the ae,
            classification and contrastive studies). A family may appear in
            only one of them.
        out: str or Path, the report folder (written atomically).
        force: bool. Replace an existing report folder.
        saturation_levels, saturation_spread, collapse_levels, loss_ratio:
            Stage 1 thresholds, see `training_health`.
        seed: int. Random state of UMAP and t-SNE (Fig. 5), and of the
            Spearman test if a family has more than 10 configurations.
        projections: bool. Draw Fig. 5; False skips UMAP and t-SNE (tens
            of seconds in a new process), and the report says so.

    Returns:
        Path of the report folder.

    Raises:
        FileNotFoundError: if a study folder lacks study.json or rows.csv.
        FileExistsError: if `out` holds files and `force` is False.
        ValueError: on malformed study files, a family in two study folders,
            or `out` being a study folder.
    """
    from asd_keras.visualisation.proxy import plot_feature_projections
    from asd_keras.visualisation.proxy import plot_proxy_vs_asd

    if not 0 < loss_ratio <= 1:
        raise ValueError(f"loss_ratio must be in (0, 1]; received {loss_ratio!r}.")
    if saturation_levels is None:
        saturation_levels = DEFAULT_SATURATION_LEVELS
    if collapse_levels is None:
        collapse_levels = DEFAULT_COLLAPSE_LEVELS
    studies, families, configurations = load_studies(study_dirs)
    _check_out(out, studies)
    # Before any work: the figures take tens of seconds (UMAP compiles).
    check_output_dir(out, force=force, what="report folder")
    rows = pd.concat([s["rows"] for s in studies], ignore_index=True)
    health = {f["name"]: training_health(f, configurations, rows, saturation_levels,
                                         saturation_spread, collapse_levels, loss_ratio)
              for f in families}
    table7 = correlation_verdicts(configurations, families, health, seed=seed)
    machine_types = [s["spec"].get("figure_machine_type") for s in studies]
    machine_type = next((m for m in machine_types if m), None)
    panels = feature_panels(families, configurations, machine_type) if projections else []

    thresholds = _thresholds_text(families, saturation_levels, saturation_spread,
                                  collapse_levels, loss_ratio)
    machine_note = ""
    if len({m for m in machine_types if m}) > 1:
        machine_note = (f" The study folders name different figure machine types "
                        f"{machine_types}; the first, {machine_type!r}, is used.")

    with staged_dir(out, force=force, what="report folder") as stage:
        atomic_write_dataframe(stage / "table7.csv", table7)
        atomic_write_text(stage / "table7.md", table7_markdown(table7))
        for asd, name in FIGURES.items():
            plot_proxy_vs_asd(configurations, families, asd, stage / name,
                              correlations=table7)
        if not projections:
            fig5 = "Fig. 5 not drawn (`projections=False`, `--no-projections`)."
        elif len(panels) >= 2:
            plot_feature_projections([p[:4] for p in panels], stage / FIG5, seed=seed)
            fig5 = (f"`{FIG5}`: UMAP and t-SNE of the {machine_type} test features "
                    "(trial 0) of " + " and ".join(
                        f"{title}, MD AUC {_pct(md)} %" for title, _, _, md, _ in panels)
                    + "." + machine_note)
        else:
            fig5 = (f"Fig. 5 skipped: it needs features of two families for the figure "
                    f"machine type ({machine_type!r}); found "
                    f"{[p[0] for p in panels] or 'none'}. The study writes them to "
                    "STUDY/features/<family>/<configuration>/<machine_type>.npz."
                    + machine_note)
        atomic_write_text(stage / "report.md", _report_text(
            studies, families, configurations, health, table7, thresholds, fig5))
    return Path(out)


def _report_text(studies, families, configurations, health, table7, thresholds, fig5):
    lines = ["# Proxy-task report (Shin & Lee, three-stage verification)", "",
             "Studies:", ""]
    for s in studies:
        names = ", ".join(f["name"] for f in s["spec"]["families"])
        note = " (configurations.csv missing: means computed from rows.csv)" \
            if s["aggregated"] else ""
        lines.append(f"- `{s['folder']}`: {s['spec'].get('name', '?')}, "
                     f"{s['spec'].get('trials', '?')} trial(s), families {names}{note}")
    lines += ["", "ASD metrics are AUCs in %: the mean over a machine type's test "
              "sections, then the arithmetic mean over machine types and trials. "
              + study_checks.left_out_text(studies), "",
              "## Stage 1: training health", "", _stage1_markdown(health, thresholds),
              "## Stage 2: separability (LP) and compactness (MD)", "",
              "Over each family's configurations.", "",
              _stage2_markdown(configurations, families),
              "## Stage 3: correlation (Table VII)", "",
              "Verdicts: **aligned** (p < 0.05, better proxy with better ASD), "
              "**opposed** (p < 0.05, the other way), **not aligned** (p ≥ 0.05 "
              "although n allows p < 0.05), **inconclusive for n = k** (the smallest "
              "attainable exact p for n is ≥ 0.05, e.g. n ≤ 4; a metric is constant; "
              "or the family did not pass Stage 1).", ""]
    records = [{"family": r["label"], "proxy": r["proxy"],
                "ASD metric": ASD_LABELS[r["asd_metric"]], "n": r["n"],
                "ρ": "n/a" if not np.isfinite(r["rho"]) else f"{r['rho']:.2f}{r['mark']}",
                "p": "n/a" if not np.isfinite(r["p"]) else f"{r['p']:.3g}",
                "verdict": r["verdict"]} for _, r in table7.iterrows()]
    lines += [_markdown(records, ["family", "proxy", "ASD metric", "n", "ρ", "p",
                                  "verdict"]), "", table7_markdown(table7),
              "Figures: " + ", ".join(f"`{name}` ({ASD_LABELS[asd]})"
                                      for asd, name in FIGURES.items())
              + ": normalised proxy performance (min-max within each family, 1 = best "
              "configuration) against the ASD AUC; dashed lines are linear trends of "
              "the families with p < 0.05.", "", fig5, "",
              "## Per-configuration results (Tables II-VI)", ""]
    for family in families:
        lines += [f"### {family['label']} (`{family['name']}`)", "",
                  _configuration_markdown(configurations, family)]
    return "\n".join(lines)
