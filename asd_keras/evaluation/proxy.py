"""Proxy-task metrics and their rank correlation with ASD performance.

Shin & Lee, "Quantitative analysis of proxy tasks for anomalous sound
detection", section IV-C and Table VII: each proxy-task family (AE,
classification, source separation, contrastive learning, ...) is trained in
a handful of configurations (n <= 10), and its proxy metric is correlated
with the ASD AUCs of those configurations by Spearman's rho. With so few
points the large-sample t approximation of `scipy.stats.spearmanr` is not
valid, so the p-value here comes from the exact permutation distribution:
all n! pairings, enumerated by `scipy.stats.permutation_test`.

Proxy metrics: `macro_f1` (Eq. 7, classification), `alignment` (Eq. 9) and
`uniformity` (Eq. 10) of Wang & Isola (2020) for contrastive models. The
MAE of an AE (Eq. 6) and SI-SDRi (Eq. 8) are computed where the models are.
"""

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats
from scipy.spatial import distance
from sklearn import metrics

# The paper never has more than ten configurations per family. Measured on a
# 2-core CPU (scipy 1.17): n = 9 takes about 1.5 s; n = 10 (3,628,800
# pairings) about 15 s and 0.55 GB, because scipy's itertools.product holds
# every permutation tuple at once; n = 11 would be 11 times that.
MAX_EXACT_N = 10
# Pairings evaluated per call of the statistic, so the permuted rank arrays
# take BATCH * n * 8 bytes rather than n! * n * 8.
BATCH = 200_000
ALTERNATIVES = ("two-sided", "less", "greater")
# Table VII caption: * p < 0.05, ** p < 0.01, *** p < 0.001 (strict).
SIGNIFICANCE_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
# Direction of the paper's proxy metrics (arrows of Tables II-VI). Keys are
# suggested column names; pass this (or a subset) as `lower_is_better`.
PAPER_LOWER_IS_BETTER = {
    "MAE": True,
    "macro_F1": False,
    "SI-SDRi": False,
    "alignment": True,
    "uniformity": True,
    "mAP": False,
}


def _unit_rows(features, what):
    """`(n, dim)` float64 rows scaled to unit L2 norm."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(
            f"{what}: features must be a non-empty 2-D array (samples, dim); "
            f"received shape {f.shape}."
        )
    if not np.all(np.isfinite(f)):
        raise ValueError(
            f"{what}: {int(np.sum(~np.isfinite(f)))} feature value(s) are NaN "
            "or infinite. Fix the model that produced them."
        )
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0.0)
    if zero.size:
        # A zero vector has no direction on the hypersphere; clamping the norm
        # (as torch's F.normalize does) would silently score it as the origin.
        raise ValueError(
            f"{what}: {zero.size} feature row(s) are all zero (first at row "
            f"{int(zero[0])}) and cannot be L2-normalised. A collapsed model "
            "can output this; inspect the features before computing the metric."
        )
    return f / norms


def alignment(f1, f2, alpha=2):
    """Alignment of positive pairs (Wang & Isola 2020; paper Eq. 9).

    `E ||f(x) - f(y)||_2 ** alpha` over the positive pairs `(f1[i], f2[i])`,
    e.g. the embeddings of two augmented views of clip `i`. Both inputs are
    L2-normalised here, row by row, as in Eq. 9 (`f = F / ||F||_2`), so raw
    embeddings may be passed. Lower is better; the range is `[0, 2**alpha]`.

    Args:
        f1: `(n, dim)` features of the first view of each pair.
        f2: `(n, dim)` features of the second view, row `i` paired with
            `f1[i]`.
        alpha: float > 0. Exponent of the distance (2 in the paper and in
            Wang & Isola's default).

    Returns:
        float, the mean of `||f1[i] - f2[i]|| ** alpha` over `i`.

    Raises:
        ValueError: on shapes that differ, NaN/inf, all-zero rows (no
            direction to normalise) or `alpha <= 0`.
    """
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alignment: alpha must be > 0; received {alpha!r}.")
    a = _unit_rows(f1, "alignment (f1)")
    b = _unit_rows(f2, "alignment (f2)")
    if a.shape != b.shape:
        raise ValueError(
            "alignment: f1 and f2 hold positive pairs row by row, so their "
            f"shapes must be equal; received {a.shape} and {b.shape}."
        )
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def uniformity(f, t=2):
    """Uniformity on the hypersphere (Wang & Isola 2020; paper Eq. 10).

    `log E exp(-t ||f(x) - f(y)||_2^2)` over all distinct pairs `x != y`
    of the rows of `f` (the unordered pairs `i < j`, as Wang & Isola's
    `torch.pdist`), after L2-normalising each row here. The log-mean-exp is
    computed as `logsumexp - log(pairs)`, which cannot underflow to
    `log 0` for large `t`. Lower is better; the range is `[-4t, 0]`, and 0
    means every feature is the same direction (collapse).

    Memory is O(n^2 / 2) for the pairwise distances (n = 10,000 rows needs
    about 400 MB); subsample rows for larger sets.

    Args:
        f: `(n, dim)` features, n >= 2.
        t: float > 0. Scale of the Gaussian potential (2 in the paper and in
            Wang & Isola's default).

    Returns:
        float.

    Raises:
        ValueError: on fewer than two rows, NaN/inf, all-zero rows or
            `t <= 0`.
    """
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"uniformity: t must be > 0; received {t!r}.")
    unit = _unit_rows(f, "uniformity")
    if unit.shape[0] < 2:
        raise ValueError(
            "uniformity: needs at least two feature rows to form a pair; "
            f"received {unit.shape[0]}."
        )
    squared = distance.pdist(unit, metric="sqeuclidean")
    return float(special.logsumexp(-t * squared) - np.log(squared.size))


def macro_f1(y_true, y_pred, labels=None):
    """Macro F1 of a classification proxy task (paper Eq. 7).

    The unweighted mean of the per-class F1 scores, as
    `sklearn.metrics.f1_score(average="macro")`. Classes are those in
    `labels`, or else the union of `y_true` and `y_pred`; a class that is
    predicted but never true has F1 = 0 (`zero_division=0` only matters
    when `labels` names a class absent from both, which then scores 0).

    Args:
        y_true: `(n,)` true class labels.
        y_pred: `(n,)` predicted class labels.
        labels: optional sequence of the classes to average over.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: on empty or mismatched inputs.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            "macro_f1: true and predicted labels must be non-empty, 1-D and "
            f"of equal length; received shapes {y_true.shape} and "
            f"{y_pred.shape}."
        )
    return float(
        metrics.f1_score(
            y_true, y_pred, labels=labels, average="macro", zero_division=0.0
        )
    )


def _check_sample(values, name):
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"spearman_exact: {name} must be numeric; received {values!r}."
        ) from err
    if v.ndim != 1:
        raise ValueError(
            f"spearman_exact: {name} must be 1-D; received shape {v.shape}."
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"spearman_exact: {name} has {int(np.sum(~np.isfinite(v)))} NaN or "
            f"infinite value(s): {v.tolist()}. Drop the configuration or fill "
            "in its metric; ranks of missing values are undefined."
        )
    return v


def spearman_exact(x, y, alternative="two-sided", n_resamples=None, rng=0):
    """Spearman's rho with an exact permutation p-value.

    `rho` is `scipy.stats.spearmanr(x, y).statistic` (Pearson correlation of
    average ranks, so ties are allowed). The p-value comes from
    `scipy.stats.permutation_test(permutation_type="pairings")` over all
    n! pairings of the ranks of `x` with the ranks of `y` (exact when
    `n_resamples >= n!`, which the default guarantees). The null hypothesis
    is that every pairing is equally likely; with ties the test is
    conditional on the observed tie pattern. As in scipy, the one-sided
    p-values count null values `<=` ("less") or `>=` ("greater") the
    observed one, and "two-sided" is twice the smaller of the two, clipped
    at 1 (without ties the null is symmetric, so this equals the share of
    pairings with `|rho|` at least the observed one).

    Anchors: n = 5 and rho = -1 give p = 2/120 = 0.0167 (two-sided);
    n = 5 and rho = -0.9 give p = 10/120 = 0.083.

    Args:
        x: `(n,)` values, e.g. a proxy metric per configuration.
        y: `(n,)` values, e.g. an ASD AUC per configuration.
        alternative: "two-sided", "less" (negative association) or
            "greater" (positive association).
        n_resamples: None (default) for the exact test, which needs
            3 <= n <= MAX_EXACT_N (10). An int gives scipy's randomised test
            with that many random pairings drawn from `rng` (exact anyway if
            it is >= n!); its p-values are (count + 1) / (n_resamples + 1),
            scipy's conservative estimate. Use it only for n > 10. The
            exact test costs about 1.5 s at n = 9 and 15 s at n = 10.
        rng: seed or `numpy.random.Generator` for the randomised test;
            unused by the exact one.

    Returns:
        (rho, p): two floats.

    Raises:
        ValueError: on n < 3, n > MAX_EXACT_N without `n_resamples`, lengths
            that differ, NaN/inf, a constant input (rho undefined) or an
            unknown `alternative`.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(
            f"spearman_exact: alternative must be one of {ALTERNATIVES}; "
            f"received {alternative!r}."
        )
    x = _check_sample(x, "x")
    y = _check_sample(y, "y")
    if x.size != y.size:
        raise ValueError(
            f"spearman_exact: x and y must be paired, of equal length; "
            f"received {x.size} and {y.size} values."
        )
    n = x.size
    if n < 3:
        # With two points every pairing gives rho = +-1 and p = 1: no test.
        raise ValueError(
            f"spearman_exact: needs at least 3 pairs; received n = {n}."
        )
    for name, v in (("x", x), ("y", y)):
        if np.ptp(v) == 0:
            raise ValueError(
                f"spearman_exact: {name} is constant ({v.tolist()}), so its "
                "ranks do not vary and rho is undefined."
            )
    if n_resamples is None:
        if n > MAX_EXACT_N:
            raise ValueError(
                f"spearman_exact: the exact test enumerates n! pairings and "
                f"n = {n} gives {math.factorial(n):,} (limit n <= "
                f"{MAX_EXACT_N}). Pass n_resamples (e.g. 100_000) and rng "
                "for a randomised p-value, or correlate fewer configurations."
            )
        n_resamples = math.factorial(n)
    elif (isinstance(n_resamples, bool) or not isinstance(n_resamples, int)
          or n_resamples < 1):
        raise ValueError(
            "spearman_exact: n_resamples must be None (exact) or a positive "
            f"int; received {n_resamples!r}."
        )

    rho = float(stats.spearmanr(x, y).statistic)
    # Twice an average rank is an integer, so the sum of products below is an
    # exact integer in float64: pairings that tie with the observed one
    # compare equal without relying on scipy's relative tolerance (which is
    # ~0 when rho is 0). Permuting the ranks leaves their means and variances
    # unchanged, so this sum is rho up to a positive affine map and gives the
    # same ordering of the null distribution, hence the same p-values.
    twice_x = 2.0 * stats.rankdata(x)
    twice_y = 2.0 * stats.rankdata(y)

    def rank_products(ranks, axis=-1):
        return np.sum(ranks * twice_y, axis=axis)

    result = stats.permutation_test(
        (twice_x,),
        rank_products,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_resamples,
        batch=BATCH,
        alternative=alternative,
        rng=rng,
    )
    return rho, float(result.pvalue)


def significance_mark(p):
    """The Table VII mark of a p-value: "***" (p < 0.001), "**" (p < 0.01),
    "*" (p < 0.05) or "" (not significant). The bounds are strict, so
    p = 0.05 exactly gets no mark.

    Raises:
        ValueError: if `p` is NaN or outside [0, 1].
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also False for NaN
        raise ValueError(f"significance_mark: p must be in [0, 1]; received {p!r}.")
    for level, mark in SIGNIFICANCE_LEVELS:
        if p < level:
            return mark
    return ""


def _directions(lower_is_better, proxy_cols):
    """{proxy: True/False/None} from the `correlation_table` argument."""
    if lower_is_better is None:
        return {proxy: None for proxy in proxy_cols}
    if isinstance(lower_is_better, Mapping):
        missing = [p for p in proxy_cols if p not in lower_is_better]
        if missing:
            raise ValueError(
                "correlation_table: lower_is_better gives no direction for "
                f"proxy column(s) {missing}; received keys "
                f"{sorted(map(str, lower_is_better))}."
            )
        directions = {}
        for proxy in proxy_cols:
            value = lower_is_better[proxy]
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"correlation_table: lower_is_better[{proxy!r}] must be a "
                    f"bool; received {value!r}."
                )
            directions[proxy] = bool(value)
        return directions
    names = [lower_is_better] if isinstance(lower_is_better, str) else list(
        lower_is_better
    )
    unknown = [name for name in names if name not in proxy_cols]
    if unknown:
        # A typo would otherwise mark a lower-is-better proxy as higher.
        raise ValueError(
            f"correlation_table: lower_is_better names {unknown}, which are "
            f"not among the proxy columns {list(proxy_cols)}."
        )
    return {proxy: proxy in names for proxy in proxy_cols}


def correlation_table(
    frame,
    family_col,
    proxy_cols,
    asd_cols,
    lower_is_better=None,
    alternative="two-sided",
    n_resamples=None,
    rng=0,
):
    """Spearman correlations of proxy metrics with ASD metrics, per family
    (the layout of the paper's Table VII, one row per cell).

    `frame` has one row per trained configuration: its family (e.g. "AE",
    "SimSiam"), one or more proxy-metric columns and one or more ASD-metric
    columns. Different families may report different proxies in one wide
    frame: a proxy that is NaN for every configuration of a family is taken
    as not reported by it and skipped; a proxy or ASD value missing for only
    some configurations is an error (drop those rows first), since silently
    dropping them would change n.

    Signs are never flipped in `rho`. ASD metrics are taken as higher is
    better (AUCs). For proxies where lower is better (MAE, alignment,
    uniformity), a negative rho means that better proxy values go with
    better ASD, as the Table VII caption says. That direction is recorded
    as data: `lower_is_better`, `rho_oriented` (`-rho` for lower-is-better
    proxies, `rho` otherwise, so positive always means better proxy goes
    with better ASD) and `relationship`.

    Args:
        frame: pandas.DataFrame, one row per configuration.
        family_col: str, the column naming each row's proxy-task family.
        proxy_cols: str or sequence of str, the proxy-metric columns.
        asd_cols: str or sequence of str, the ASD-metric columns.
        lower_is_better: None (direction unknown: `lower_is_better` is None,
            `rho_oriented` NaN, `relationship` "unknown"); a mapping
            {proxy column: bool} covering every proxy column (extra keys are
            ignored, so `PAPER_LOWER_IS_BETTER` can be passed); or an
            iterable of the proxy columns where lower is better (all others
            are higher-is-better).
        alternative: passed to `spearman_exact` ("two-sided" in the paper).
        n_resamples: passed to `spearman_exact` (None = exact test).
        rng: passed to `spearman_exact` (None = exact test).

    Returns:
        DataFrame with columns family, proxy, asd_metric, n, rho, p, mark,
        lower_is_better, rho_oriented, relationship ("positive": better
        proxy with better ASD; "negative"; "none" when rho = 0; "unknown").
        Rows follow the order of first appearance of the families, then the
        given order of proxies and ASD metrics.

    Raises:
        ValueError: on missing columns, partly missing values, a family with
            too few configurations or a constant metric (the message names
            the family, proxy and ASD metric), or a bad `lower_is_better`.
    """
    proxy_cols = [proxy_cols] if isinstance(proxy_cols, str) else list(proxy_cols)
    asd_cols = [asd_cols] if isinstance(asd_cols, str) else list(asd_cols)
    if not proxy_cols or not asd_cols:
        raise ValueError(
            "correlation_table: needs at least one proxy and one ASD column; "
            f"received proxy_cols={proxy_cols}, asd_cols={asd_cols}."
        )
    missing = [c for c in [family_col, *proxy_cols, *asd_cols] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"correlation_table: column(s) {missing} are not in the frame; "
            f"it has {list(frame.columns)}."
        )
    directions = _directions(lower_is_better, proxy_cols)
    if frame[family_col].isna().any():
        raise ValueError(
            f"correlation_table: {int(frame[family_col].isna().sum())} row(s) "
            f"have no family in column {family_col!r}."
        )

    rows = []
    for family, group in frame.groupby(family_col, sort=False):
        for proxy in proxy_cols:
            proxy_values = group[proxy].to_numpy(dtype=np.float64)
            absent = np.isnan(proxy_values)
            if absent.all():
                continue  # this family does not report this proxy metric
            if absent.any():
                raise ValueError(
                    f"correlation_table: family {family!r} has proxy {proxy!r} "
                    f"for only {int((~absent).sum())} of {absent.size} "
                    "configurations; drop the incomplete rows or fill them in."
                )
            for asd in asd_cols:
                try:
                    rho, p = spearman_exact(
                        proxy_values,
                        group[asd].to_numpy(dtype=np.float64),
                        alternative=alternative,
                        n_resamples=n_resamples,
                        rng=rng,
                    )
                except ValueError as err:
                    raise ValueError(
                        f"correlation_table: family {family!r}, proxy "
                        f"{proxy!r}, ASD metric {asd!r}: {err}"
                    ) from err
                lower = directions[proxy]
                if lower is None:
                    oriented, relationship = float("nan"), "unknown"
                else:
                    oriented = -rho if lower else rho
                    relationship = (
                        "positive" if oriented > 0
                        else "negative" if oriented < 0 else "none"
                    )
                rows.append(
                    {
                        "family": family,
                        "proxy": proxy,
                        "asd_metric": asd,
                        "n": int(proxy_values.size),
                        "rho": rho,
                        "p": p,
                        "mark": significance_mark(p),
                        "lower_is_better": lower,
                        "rho_oriented": oriented,
                        "relationship": relationship,
                    }
                )
    if not rows:
        raise ValueError(
            f"correlation_table: no family reports any of the proxy columns "
            f"{proxy_cols}; every value is NaN."
        )
    return pd.DataFrame(rows)
