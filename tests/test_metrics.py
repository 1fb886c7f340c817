import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support

from asd_keras.evaluation import metrics


def _mcclish_pauc_by_hand(y, s, p=0.1):
    """Truncated ROC area with interpolation at p, then McClish."""
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(1 - y)[distinct]
    tpr = np.r_[0, tps / tps[-1]]
    fpr = np.r_[0, fps / fps[-1]]
    stop = np.searchsorted(fpr, p, "right")
    x = np.r_[fpr[:stop], p]
    yy = np.r_[tpr[:stop], np.interp(p, fpr, tpr)]
    area = np.trapezoid(yy, x)
    return 0.5 * (1 + (area - p * p / 2) / (p - p * p / 2))


def test_pauc_is_mcclish_standardised():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(300), np.ones(60)].astype(int)
    s = np.r_[rng.gamma(2, 1, 300), rng.gamma(2.6, 1, 60)]
    assert metrics.pauc(y, s) == pytest.approx(_mcclish_pauc_by_hand(y, s), abs=1e-12)
    # Worst possible ranking: 0.5 * (1 + (0 - 0.005) / 0.095) = 0.47368...
    assert metrics.pauc([0, 0, 1, 1], [3, 4, 1, 2]) == pytest.approx(0.5 - 0.005 / 0.19)
    assert metrics.auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0


def test_official_scores_published_2023_2026():
    """hmean over the pooled per-machine values (reference dcase.md 5.4)."""
    mse_2026 = [(.7126, .4680, .5511), (.5902, .6434, .5979), (.6484, .6142, .5811),
                (.6948, .8838, .6179), (.6714, .4402, .5089)]
    mahala_2023 = [(.8364, .5886, .5754), (.7409, .5068, .5955), (.8477, .6300, .6233),
                   (.8130, .4622, .5142), (.6678, .4090, .5089), (.8012, .4532, .5384),
                   (.8384, .9006, .6532)]
    for triples, official in ((mse_2026, 0.5980289616592438),
                              (mahala_2023, 0.6105082186925268)):
        per_unit = pd.DataFrame(triples, columns=["AUC (source)", "AUC (target)", "pAUC"])
        pooled = metrics.official_score(
            list(per_unit["AUC (source)"]) + list(per_unit["AUC (target)"])
            + list(per_unit["pAUC"]))
        # The table values are rounded to 4 digits.
        assert pooled == pytest.approx(official, abs=1e-4)
        # ... and pooling is not the mean of per-machine harmonic means.
        per_machine = np.mean([stats.hmean(t) for t in triples])
        assert abs(per_machine - official) > abs(pooled - official)


def test_official_score_floors_at_eps():
    assert metrics.official_score([0.0, 1.0]) == pytest.approx(2 * metrics.EPS, rel=1e-6)


def _table(rng):
    rows = []
    for section in ("00", "01"):
        for domain, shift in (("source", 0.0), ("target", 0.7)):
            for label in (0, 1):
                for _ in range(20):
                    rows.append(dict(machine_type="fan", section=section, domain=domain,
                                     label=label, score=rng.normal(label + shift),
                                     decision=int(rng.uniform() < 0.5)))
    return pd.DataFrame(rows)


def test_2022_definition_uses_all_anomalies_per_domain():
    from sklearn.metrics import roc_auc_score
    table = _table(np.random.default_rng(0))
    per_unit, official = metrics.evaluate(table, "dcase2023")
    part = table[table["section"] == "00"]
    for domain in ("source", "target"):
        subset = part[((part["label"] == 0) & (part["domain"] == domain)) | (part["label"] == 1)]
        expected = roc_auc_score(subset["label"], subset["score"])
        assert per_unit.loc[0, f"AUC ({domain})"] == pytest.approx(expected)
    assert per_unit.loc[0, "pAUC"] == pytest.approx(
        roc_auc_score(part["label"], part["score"], max_fpr=0.1))
    pooled = list(per_unit["AUC (source)"]) + list(per_unit["AUC (target)"]) + list(per_unit["pAUC"])
    assert official == pytest.approx(stats.hmean(pooled))
    src = part[part["domain"] == "source"]
    p, r, f, _ = precision_recall_fscore_support(src["label"], src["decision"], average="binary")
    assert per_unit.loc[0, ["precision (source)", "recall (source)", "F1 (source)"]].tolist() == pytest.approx([p, r, f])


def test_2021_and_2020_definitions():
    from sklearn.metrics import roc_auc_score
    table = _table(np.random.default_rng(1))
    per_unit, official = metrics.evaluate(table, "dcase2021")
    assert len(per_unit) == 4
    part = table[(table["section"] == "01") & (table["domain"] == "target")]
    row = per_unit[(per_unit["section"] == "01") & (per_unit["domain"] == "target")].iloc[0]
    assert row["AUC"] == pytest.approx(roc_auc_score(part["label"], part["score"]))
    assert official == pytest.approx(stats.hmean(list(per_unit["AUC"]) + list(per_unit["pAUC"])))
    per_id, none = metrics.evaluate(table, "dcase2020")
    assert none is None and len(per_id) == 2
    summary = metrics.summary_rows(per_id, "dcase2020")
    assert "average" in set(summary["section"])


def test_single_class_and_nan_are_clear_errors():
    with pytest.raises(ValueError, match="both normal"):
        metrics.auc([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc([0, 1], [np.nan, 1.0])
