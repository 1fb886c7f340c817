"""AUC, pAUC and the official score exactly as the DCASE evaluators.

Reference `shared/reference/dcase.md` section 4: AUC is
`sklearn.metrics.roc_auc_score`; pAUC is the same call with `max_fpr=0.1`,
which sklearn McClish-standardises (random = 0.5, range [0.4737, 1]); the
official score is one harmonic mean over the pooled list of per-unit values,
each floored at `sys.float_info.epsilon`.
"""

import sys

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics

EPS = sys.float_info.epsilon
MAX_FPR = 0.1


def _check_binary(y_true, y_score, what):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError(
            f"{what}: labels and scores must be 1-D and of equal length; "
            f"received {y_true.shape} and {y_score.shape}."
        )
    if not np.all(np.isfinite(y_score)):
        raise ValueError(
            f"{what}: {int(np.sum(~np.isfinite(y_score)))} score(s) are NaN "
            "or infinite. Fix the system that produced them."
        )
    classes = set(np.unique(y_true).tolist())
    if classes != {0, 1}:
        raise ValueError(
            f"{what}: AUC needs both normal (0) and anomalous (1) clips; "
            f"found labels {sorted(classes)}. Check the test set or the "
            "ground truth."
        )
    return y_true, y_score


def auc(y_true, y_score, what="AUC"):
    """Area under the ROC curve (higher score = more anomalous)."""
    y_true, y_score = _check_binary(y_true, y_score, what)
    return float(metrics.roc_auc_score(y_true, y_score))


def pauc(y_true, y_score, max_fpr=MAX_FPR, what="pAUC"):
    """McClish-standardised partial AUC up to `max_fpr`, as sklearn."""
    y_true, y_score = _check_binary(y_true, y_score, what)
    return float(metrics.roc_auc_score(y_true, y_score, max_fpr=max_fpr))


def official_score(values):
    """Harmonic mean of the pooled values, each floored at machine epsilon."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("official_score needs at least one value.")
    return float(stats.hmean(np.maximum(values, EPS)))


def decision_metrics(y_true, decision):
    """Precision, recall and F1 of 0/1 decisions, as the evaluators print."""
    tn, fp, fn, tp = metrics.confusion_matrix(
        np.asarray(y_true), np.asarray(decision), labels=[0, 1]
    ).ravel()
    precision = tp / max(tp + fp, EPS)
    recall = tp / max(tp + fn, EPS)
    f1 = 2.0 * precision * recall / max(precision + recall, EPS)
    return float(precision), float(recall), float(f1)


def metric_family(layout):
    """'dcase2020', 'dcase2021' or 'dcase2022' (2022-2026 share metrics)."""
    if layout in ("dcase2020", "dcase2021"):
        return layout
    return "dcase2022"


def evaluate(table, layout):
    """Computes the per-unit table and the official score.

    Args:
        table: pandas.DataFrame with columns machine_type, section, domain,
            label (0/1), score, and optionally decision (0/1).
        layout: str. A layout name (`dcase2020` ... `dcase2026`).

    Returns:
        (per_unit, official) where `per_unit` is a DataFrame with one row
        per machine ID (2020), (machine, section, domain) (2021) or
        (machine, section) (2022+), and `official` is the official score
        (None for 2020, which has none).
    """
    family = metric_family(layout)
    has_decision = "decision" in table.columns and table["decision"].notna().all()
    rows = []
    if family == "dcase2020":
        for (machine, section), group in table.groupby(["machine_type", "section"]):
            what = f"{machine} id_{section}"
            rows.append(
                {
                    "machine_type": machine,
                    "section": section,
                    "AUC": auc(group["label"], group["score"], what),
                    "pAUC": pauc(group["label"], group["score"], what=what),
                }
            )
        return pd.DataFrame(rows), None
    if family == "dcase2021":
        keys = ["machine_type", "section", "domain"]
        for (machine, section, domain), group in table.groupby(keys):
            what = f"{machine} section {section} {domain}"
            row = {
                "machine_type": machine,
                "section": section,
                "domain": domain,
                "AUC": auc(group["label"], group["score"], what),
                "pAUC": pauc(group["label"], group["score"], what=what),
            }
            if has_decision:
                p, r, f = decision_metrics(group["label"], group["decision"])
                row.update(precision=p, recall=r, F1=f)
            rows.append(row)
        per_unit = pd.DataFrame(rows)
        official = official_score(
            list(per_unit["AUC"]) + list(per_unit["pAUC"])
        )
        return per_unit, official
    for (machine, section), group in table.groupby(["machine_type", "section"]):
        what = f"{machine} section {section}"
        anomalies = group[group["label"] == 1]
        row = {"machine_type": machine, "section": section}
        for domain in ("source", "target"):
            # Reference 4.2: each domain's normals against ALL anomalies.
            normals = group[(group["label"] == 0) & (group["domain"] == domain)]
            if layout == "plain" and normals.empty:
                # A user's own recordings need not have a target domain:
                # the value is absent, not an error (DCASE data must have it).
                row[f"AUC ({domain})"] = np.nan
                continue
            subset = pd.concat([normals, anomalies])
            row[f"AUC ({domain})"] = auc(
                subset["label"], subset["score"], f"{what} {domain}"
            )
        row["pAUC"] = pauc(group["label"], group["score"], what=what)
        if has_decision:
            for domain in ("source", "target"):
                part = group[group["domain"] == domain]
                if part.empty:
                    continue
                p, r, f = decision_metrics(part["label"], part["decision"])
                row.update(
                    {
                        f"precision ({domain})": p,
                        f"recall ({domain})": r,
                        f"F1 ({domain})": f,
                    }
                )
        rows.append(row)
    per_unit = pd.DataFrame(rows)
    values = (list(per_unit["AUC (source)"]) + list(per_unit["AUC (target)"])
              + list(per_unit["pAUC"]))
    official = official_score([v for v in values if not np.isnan(v)])
    return per_unit, official


def summary_rows(per_unit, layout):
    """Arithmetic and harmonic means of each metric column, as extra rows."""
    value_columns = [
        c for c in per_unit.columns if c not in ("machine_type", "section", "domain")
    ]
    rows = []
    for name, fn in (
        ("arithmetic mean", np.mean),
        ("harmonic mean", lambda v: stats.hmean(np.maximum(v, EPS))),
    ):
        row = {"machine_type": name, "section": ""}
        for column in value_columns:
            row[column] = float(fn(per_unit[column].to_numpy(dtype=float)))
        rows.append(row)
    if metric_family(layout) == "dcase2020":
        for machine, group in per_unit.groupby("machine_type"):
            row = {"machine_type": machine, "section": "average"}
            for column in value_columns:
                row[column] = float(group[column].mean())
            rows.append(row)
    return pd.DataFrame(rows)


DOMAIN_DEFINITIONS = ("official", "simple")


def domain_metrics(table, definition="official"):
    """AUC and pAUC per section for the source domain, the target domain and
    both domains together (the columns of the paper's Table II).

    Args:
        table: DataFrame with machine_type, section, domain, label, score.
        definition: `"official"`: a domain's normals against ALL anomalies
            of the section (DCASE 2022+ evaluators, reference dcase.md §4);
            `"simple"`: a domain's normals against that domain's anomalies
            only, as Wilkinghoff's code reports them (reference
            wilkinghoff.md §7).

    Returns:
        DataFrame, one row per (machine_type, section), columns
        `AUC (source)`, `pAUC (source)`, `AUC (target)`, `pAUC (target)`,
        `AUC (both)`, `pAUC (both)`.
    """
    if definition not in DOMAIN_DEFINITIONS:
        raise ValueError(
            f"definition must be one of {DOMAIN_DEFINITIONS}; received {definition!r}."
        )
    rows = []
    for (machine, section), group in table.groupby(["machine_type", "section"]):
        what = f"{machine} section {section}"
        row = {"machine_type": machine, "section": section}
        for domain in ("source", "target", "both"):
            if domain == "both":
                subset = group
            elif definition == "official":
                subset = group[(group["domain"] == domain) | (group["label"] == 1)]
            else:
                subset = group[group["domain"] == domain]
            row[f"AUC ({domain})"] = auc(subset["label"], subset["score"], f"{what} {domain}")
            row[f"pAUC ({domain})"] = pauc(subset["label"], subset["score"],
                                           what=f"{what} {domain}")
        rows.append(row)
    return pd.DataFrame(rows)


def harmonic_means(per_section):
    """Harmonic mean over sections of every metric column (eps floor)."""
    columns = [c for c in per_section.columns if c not in ("machine_type", "section", "domain")]
    return {c: float(stats.hmean(np.maximum(per_section[c].to_numpy(float), EPS)))
            for c in columns}


def machine_type_metrics(table):
    """AUC and pAUC per machine type: the mean over its sections (machine IDs).

    Each section's AUC and pAUC pool all its test clips (both domains), which
    for DCASE 2020 is the official per-ID value, and the machine type's value
    is their average, as the 2020 evaluator's per-machine-type rows and the
    per-machine tables of the GAN paper (Table 7).

    Args:
        table: DataFrame with machine_type, section, label (0/1), score.

    Returns:
        DataFrame with machine_type, AUC, pAUC, sections and n_test (the
        number of test clips, the weight of Table 6).
    """
    rows = []
    for machine, group in table.groupby("machine_type"):
        per_section = [
            (auc(part["label"], part["score"], f"{machine} section {section}"),
             pauc(part["label"], part["score"], what=f"{machine} section {section}"))
            for section, part in group.groupby("section")]
        values = np.asarray(per_section)
        rows.append({"machine_type": machine, "AUC": float(values[:, 0].mean()),
                     "pAUC": float(values[:, 1].mean()), "sections": len(per_section),
                     "n_test": len(group)})
    return pd.DataFrame(rows)


def weighted_summary(per_machine, columns=("AUC", "pAUC"), weight="n_test"):
    """Test-size-weighted mean and standard deviation across machine types.

    The paper's Table 6: machine types with more test clips weigh more.
    The standard deviation is the weighted population one,
    `sqrt(sum w (x - mean)^2 / sum w)`.

    Returns:
        dict `<column> mean` and `<column> std` -> float.
    """
    w = per_machine[weight].to_numpy(float)
    if w.sum() <= 0:
        raise ValueError(f"The weights in column {weight!r} sum to {w.sum()}; need > 0.")
    out = {}
    for column in columns:
        x = per_machine[column].to_numpy(float)
        mean = float(np.average(x, weights=w))
        out[f"{column} mean"] = mean
        out[f"{column} std"] = float(np.sqrt(np.average((x - mean) ** 2, weights=w)))
    return out
