"""Proxy-task metrics and exact Spearman tests (Shin & Lee, Eqs. 7-10 and
Table VII)."""

import ast
import math
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from asd_keras.evaluation import proxy

E1, E2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _brute_force_p(x, y):
    """p-values over all n! pairings by itertools, scipy's conventions.

    rho is the Pearson correlation of average ranks (its definition);
    ranking a permuted x is permuting its ranks, so x is ranked once.
    """
    rank_x, rank_y = stats.rankdata(x), stats.rankdata(y)
    observed = np.corrcoef(rank_x, rank_y)[0, 1]
    null = np.array([np.corrcoef(rank_x[list(order)], rank_y)[0, 1]
                     for order in permutations(range(len(rank_x)))])
    tol = 1e-9  # null values equal to the observed one differ by rounding only
    less = np.mean(null <= observed + tol)
    greater = np.mean(null >= observed - tol)
    return {
        "less": less,
        "greater": greater,
        "two-sided": min(1.0, 2 * min(less, greater)),
        "abs": np.mean(np.abs(null) >= abs(observed) - tol),
    }


# --- alignment and uniformity (Eqs. 9-10) ---------------------------------


def test_alignment_by_hand():
    # Pair distances sqrt(2) (orthogonal) and 0 (identical).
    f1, f2 = np.stack([E1, E2]), np.stack([E2, E2])
    assert proxy.alignment(f1, f2) == pytest.approx(1.0, abs=1e-12)  # (2 + 0) / 2
    assert proxy.alignment(f1, f2, alpha=1) == pytest.approx(np.sqrt(2) / 2, abs=1e-12)
    # Normalised inside: scaled rows give the same value; opposite = 2**2.
    assert proxy.alignment(3 * f1, 5 * f2) == pytest.approx(1.0, abs=1e-12)
    assert proxy.alignment([[2.0, 0.0]], [[-7.0, 0.0]]) == pytest.approx(4.0, abs=1e-12)


def test_uniformity_by_hand():
    assert proxy.uniformity(np.stack([E1, E2])) == pytest.approx(-4.0, abs=1e-12)
    # Squared distances 4, 2, 2 over the three distinct pairs.
    expected = np.log((np.exp(-8.0) + 2 * np.exp(-4.0)) / 3)
    assert proxy.uniformity(np.stack([E1, -E1, 10 * E2])) == pytest.approx(expected, abs=1e-12)
    assert proxy.uniformity(np.stack([E1, -E1, E2]), t=1) == pytest.approx(
        np.log((np.exp(-4.0) + 2 * np.exp(-2.0)) / 3), abs=1e-12)
    # Collapse: all one direction gives 0. Large t: exp(-4000) underflows,
    # the log-mean-exp does not.
    assert proxy.uniformity(np.stack([E1, 2 * E1, 3 * E1])) == pytest.approx(0.0, abs=1e-12)
    assert proxy.uniformity(np.stack([E1, -E1]), t=1000) == pytest.approx(-4000.0, rel=1e-12)


def test_alignment_uniformity_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(1, 3\)"):
        proxy.alignment(np.stack([E1, E2]), E1[None])
    with pytest.raises(ValueError, match="all zero"):
        proxy.alignment(np.stack([E1, 0 * E1]), np.stack([E1, E2]))
    with pytest.raises(ValueError, match="alpha"):
        proxy.alignment(E1[None], E2[None], alpha=0)
    with pytest.raises(ValueError, match="NaN"):
        proxy.uniformity([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="at least two"):
        proxy.uniformity(E1[None])
    with pytest.raises(ValueError, match="t must be"):
        proxy.uniformity(np.stack([E1, E2]), t=-1)


def test_macro_f1_by_hand():
    # Class F1 = 2tp / (2tp + fp + fn): 0: 2/4, 1: 4/5, 2: 2/3.
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    expected = (0.5 + 0.8 + 2 / 3) / 3
    assert proxy.macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert proxy.macro_f1(["a", "b"], ["a", "b"]) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        proxy.macro_f1([0, 1, 1], [0, 1])


# --- exact Spearman -------------------------------------------------------


def test_paper_anchors_n5():
    x = [1, 2, 3, 4, 5]
    rho, p = proxy.spearman_exact(x, [5, 4, 3, 2, 1])
    assert rho == pytest.approx(-1.0, abs=1e-12)
    assert p == pytest.approx(2 / 120, abs=1e-12)  # marked * in Table VII
    assert proxy.significance_mark(p) == "*"
    # rho = 1 - 6 * 38 / 120 = -0.9: one reversal plus four neighbours of it.
    rho, p = proxy.spearman_exact(x, [5, 4, 3, 1, 2])
    assert rho == pytest.approx(-0.9, abs=1e-12)
    assert p == pytest.approx(10 / 120, abs=1e-12)  # not significant
    assert proxy.significance_mark(p) == ""


def test_paper_table_ii_ae_md_is_marked():
    """Table II (AE, n = 9, MAE with a tie) gives Table VII's -0.78* for MD."""
    mae = [4.59, 4.46, 4.40, 4.46, 4.34, 4.25, 4.41, 4.26, 4.13]
    md = [56.11, 56.51, 57.38, 55.52, 56.97, 57.30, 55.74, 56.55, 57.65]
    rho, p = proxy.spearman_exact(mae, md)
    assert rho == pytest.approx(-0.78, abs=0.005)
    assert 0.01 <= p < 0.05
    assert proxy.significance_mark(p) == "*"


def test_one_sided_alternatives():
    x, y = [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]
    assert proxy.spearman_exact(x, y, "less")[1] == pytest.approx(1 / 120, abs=1e-12)
    assert proxy.spearman_exact(x, y, "greater")[1] == pytest.approx(1.0, abs=1e-12)
    assert proxy.spearman_exact(x, x, "greater")[1] == pytest.approx(1 / 120, abs=1e-12)
    # rho = -0.9: 1 + 4 pairings have rho <= -0.9; all but rho = -1 have >=.
    y = [5, 4, 3, 1, 2]
    assert proxy.spearman_exact(x, y, "less")[1] == pytest.approx(5 / 120, abs=1e-12)
    assert proxy.spearman_exact(x, y, "greater")[1] == pytest.approx(119 / 120, abs=1e-12)


@pytest.mark.parametrize("case", ["random", "ties", "zero"])
def test_matches_spearmanr_and_brute_force(case):
    rng = np.random.default_rng(7)
    if case == "random":
        x, y = rng.normal(size=6), rng.normal(size=6)
    elif case == "ties":
        x, y = [1.0, 2.0, 2.0, 3.0, 5.0, 5.0], [0.3, 0.1, 0.1, 0.9, 0.4, 0.8]
    else:
        x, y = [1, 2, 3, 4, 5], [2, 4, 3, 1, 5]  # sum d^2 = 20: rho = 0
    expected = _brute_force_p(x, y)
    for alternative in ("two-sided", "less", "greater"):
        rho, p = proxy.spearman_exact(x, y, alternative)
        assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert p == pytest.approx(expected[alternative], abs=1e-12)
    if case != "ties":
        # Without ties the null is symmetric: 2 * min(...) is the |rho| share.
        assert expected["two-sided"] == pytest.approx(expected["abs"], abs=1e-12)


def test_large_n_needs_explicit_resamples():
    x = np.arange(12.0)
    y = x.copy()
    y[[3, 4]] = y[[4, 3]]  # one swap: rho = 1 - 12 / 1716
    with pytest.raises(ValueError, match=r"n = 12 .*n_resamples"):
        proxy.spearman_exact(x, y)
    rho, p = proxy.spearman_exact(x, y, n_resamples=2000, rng=3)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # Randomised: (count + 1) / 2001 with count ~ 0, reproducible by seed.
    assert 1 / 2001 <= p < 0.01
    assert proxy.spearman_exact(x, y, n_resamples=2000, rng=3)[1] == p
    # n_resamples >= n! is the exact test.
    p_exact = proxy.spearman_exact([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], n_resamples=10**6)[1]
    assert p_exact == pytest.approx(2 / 120, abs=1e-12)


@pytest.mark.parametrize(
    "x, y, message",
    [
        ([1, 2], [2, 1], "at least 3 pairs; received n = 2"),
        ([1, 2, np.nan, 4], [1, 2, 3, 4], "x has 1 NaN"),
        ([1, 2, 3, 4], [1, 2, 3, np.inf], "y has 1 NaN or infinite"),
        ([2, 2, 2, 2], [1, 2, 3, 4], r"x is constant \(\[2.0, 2.0, 2.0, 2.0\]\)"),
        ([1, 2, 3, 4], [0.5] * 4, "y is constant"),
        ([1, 2, 3, 4], [1, 2, 3], "received 4 and 3"),
    ],
)
def test_spearman_rejects_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        proxy.spearman_exact(x, y)


def test_spearman_rejects_bad_options():
    with pytest.raises(ValueError, match="'two_sided'"):
        proxy.spearman_exact([1, 2, 3], [1, 2, 3], alternative="two_sided")
    with pytest.raises(ValueError, match="n_resamples"):
        proxy.spearman_exact([1, 2, 3], [1, 2, 3], n_resamples=0)


@pytest.mark.parametrize(
    "p, mark",
    [(0.0, "***"), (0.000999, "***"), (0.001, "**"), (0.00999, "**"),
     (0.01, "*"), (0.04999, "*"), (0.05, ""), (0.0833, ""), (1.0, "")],
)
def test_significance_marks_at_the_bounds(p, mark):
    assert proxy.significance_mark(p) == mark


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_significance_mark_rejects_non_probability(p):
    with pytest.raises(ValueError, match="p must be in"):
        proxy.significance_mark(p)


# --- correlation table ----------------------------------------------------


def _two_families():
    """AE: MAE falls as both AUCs rise (rho = -1). SS: SI-SDRi against LP
    gives rho = 0.9 and against MD rho = 1."""
    return pd.DataFrame({
        "family": ["AE"] * 5 + ["SS"] * 5,
        "MAE": [4.6, 4.5, 4.4, 4.3, 4.2] + [np.nan] * 5,
        "SI-SDRi": [np.nan] * 5 + [2.3, 2.7, 3.1, 3.5, 3.9],
        "LP": [70, 71, 72, 73, 74, 56, 58, 60, 63, 62],
        "MD": [55, 56, 57, 58, 59, 55, 56, 57, 58, 61],
    })


def test_correlation_table_two_families():
    table = proxy.correlation_table(
        _two_families(), "family", ["MAE", "SI-SDRi"], ["LP", "MD"],
        lower_is_better=proxy.PAPER_LOWER_IS_BETTER)
    assert list(table.columns) == ["family", "proxy", "asd_metric", "n", "rho", "p",
                                   "mark", "lower_is_better", "rho_oriented",
                                   "relationship"]
    assert table[["family", "proxy", "asd_metric"]].values.tolist() == [
        ["AE", "MAE", "LP"], ["AE", "MAE", "MD"],
        ["SS", "SI-SDRi", "LP"], ["SS", "SI-SDRi", "MD"]]
    assert table["n"].tolist() == [5, 5, 5, 5]
    assert table["rho"].tolist() == pytest.approx([-1.0, -1.0, 0.9, 1.0], abs=1e-12)
    assert table["p"].tolist() == pytest.approx([2 / 120, 2 / 120, 10 / 120, 2 / 120],
                                                abs=1e-12)
    assert table["mark"].tolist() == ["*", "*", "", "*"]
    # Signs stay as computed; the direction is data.
    assert table["lower_is_better"].tolist() == [True, True, False, False]
    assert table["rho_oriented"].tolist() == pytest.approx([1.0, 1.0, 0.9, 1.0], abs=1e-12)
    assert table["relationship"].tolist() == ["positive"] * 4


def test_correlation_table_directions():
    frame = _two_families()
    unknown = proxy.correlation_table(frame, "family", "MAE", "MD")
    assert unknown["family"].tolist() == ["AE"]  # SS has no MAE: skipped
    assert unknown["lower_is_better"].tolist() == [None]
    assert np.isnan(unknown["rho_oriented"].iloc[0])
    assert unknown["relationship"].tolist() == ["unknown"]
    # An iterable names the lower-is-better proxies; the rest are higher.
    listed = proxy.correlation_table(frame, "family", ["MAE", "SI-SDRi"], "MD",
                                     lower_is_better=["MAE"])
    assert listed["lower_is_better"].tolist() == [True, False]
    # Not flipping would read MAE's rho = -1 as a negative relationship.
    flipped = proxy.correlation_table(frame, "family", "MAE", "MD", lower_is_better=[])
    assert flipped["relationship"].tolist() == ["negative"]


def test_correlation_table_rejects_bad_input():
    frame = _two_families()
    with pytest.raises(ValueError, match=r"\['MSE'\]"):
        proxy.correlation_table(frame, "family", ["MAE"], ["MD"], lower_is_better=["MSE"])
    with pytest.raises(ValueError, match=r"no direction for proxy column\(s\) \['MAE'\]"):
        proxy.correlation_table(frame, "family", ["MAE"], ["MD"],
                                lower_is_better={"SI-SDRi": False})
    with pytest.raises(ValueError, match=r"\['AUC'\] are not in the frame"):
        proxy.correlation_table(frame, "family", ["MAE"], ["AUC"])
    partial = frame.copy()
    partial.loc[1, "MAE"] = np.nan
    with pytest.raises(ValueError, match="'AE' has proxy 'MAE' for only 4 of 5"):
        proxy.correlation_table(partial, "family", ["MAE"], ["MD"])
    partial = frame.copy()
    partial.loc[6, "LP"] = np.nan
    with pytest.raises(ValueError, match="family 'SS', proxy 'SI-SDRi', ASD metric 'LP'"):
        proxy.correlation_table(partial, "family", ["SI-SDRi"], ["LP"])
    with pytest.raises(ValueError, match="family 'AE'.*n = 2"):
        proxy.correlation_table(frame.iloc[[0, 1]], "family", ["MAE"], ["MD"])


def test_module_imports_no_deep_learning_framework():
    """evaluation/ stays importable without TensorFlow, Keras or torch."""
    tree = ast.parse(Path(proxy.__file__).read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom)}
    assert roots <= {"math", "collections", "numpy", "pandas", "scipy", "sklearn",
                     "asd_keras"}
    assert math.factorial(proxy.MAX_EXACT_N) == 3_628_800
