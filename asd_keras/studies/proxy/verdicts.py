"""Stage 1 (training health: saturation, collapse, failure) and Stage 3
(Table VII's correlation verdicts) of the proxy-study report."""

import math

import numpy as np
import pandas as pd

from asd_keras.evaluation.proxy import MAX_EXACT_N
from asd_keras.evaluation.proxy import correlation_table
from asd_keras.studies.proxy.schema import ASD_COLUMNS


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
