"""Decision thresholds: the DCASE baselines' gamma fit, and the rule a
system applies to each group's training scores."""

import numpy as np
from scipy import stats


def gamma_threshold(scores, quantile=0.9):
    """Fits a gamma distribution to normal scores and returns its quantile.

    `scipy.stats.gamma.fit` then `gamma.ppf(quantile)`, as the 2021+
    baselines do on per-file training scores (reference dcase.md 2.5).

    Args:
        scores: 1-D array of scores of normal training clips.
        quantile: float in (0, 1). Defaults to `0.9`.

    Returns:
        float threshold; a clip is anomalous when its score is above it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size < 3:
        raise ValueError(
            f"gamma_threshold needs a 1-D array of at least 3 scores; "
            f"received shape {scores.shape}."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("gamma_threshold received NaN or infinite scores.")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1); received {quantile}.")
    shape, loc, scale = stats.gamma.fit(scores)
    return float(stats.gamma.ppf(quantile, shape, loc=loc, scale=scale))


def group_threshold(scores, group, rule, quantile):
    """A group's decision threshold from its training clips' scores.

    Args:
        scores: 1-D array of the group's training scores.
        group: str. The group key, for the error message.
        rule: str. `"percentile"` (the score quantile) or `"gamma"`
            (`gamma_threshold`).
        quantile: float in (0, 1).

    Raises:
        ValueError: the gamma rule gets fewer than 3 scores.
    """
    if rule == "percentile":
        return float(np.quantile(scores, quantile))
    if len(scores) < 3:
        raise ValueError(f"Group {group!r} has {len(scores)} training clip(s); the gamma "
                         "threshold needs at least 3 (or use threshold=percentile).")
    return gamma_threshold(scores, quantile)
