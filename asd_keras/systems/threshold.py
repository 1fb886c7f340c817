"""Decision thresholds of the DCASE baselines."""

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
