"""Anomaly scores of the GAN detectors, per vector and per clip.

The per-vector formulas follow the original code (reference methods.md §A);
a clip's score aggregates the scores of its stacked log-mel vectors (paper
§3, "Validation and Evaluation": the average error over the clip; the
`VectorScores` layer does it inside the models).
"""

import numpy as np
from keras import ops

AGGREGATIONS = ("mean", "max")


def ganomaly_score(z, z_hat):
    """`mean over latent units of (z - z_hat)^2` (reference A1)."""
    return ops.mean(ops.square(z - z_hat), axis=-1)


def skip_ganomaly_score(x, x_hat, real_features, fake_features, weight=0.9):
    """`weight * mean((x - x_hat)^2) + (1 - weight) * mean((f(x) - f(x_hat))^2)`.

    `weight` (the paper's lambda = 0.9) weights the reconstruction term
    (reference A2).
    """
    reconstruction = ops.mean(ops.square(x - x_hat), axis=-1)
    latent = ops.mean(ops.square(real_features - fake_features), axis=-1)
    return weight * reconstruction + (1.0 - weight) * latent


def _norm(x, degree):
    if degree == 1:
        return ops.sum(ops.abs(x), axis=-1)
    if degree == 2:
        return ops.sqrt(ops.sum(ops.square(x), axis=-1))
    return ops.power(ops.sum(ops.power(ops.abs(x), degree), axis=-1), 1.0 / degree)


def egbad_score(x, x_hat, real_features, fake_features, weight=0.1, degree=1):
    """`(1 - w) * ||x - G(E(x))||_d + w * ||f(E(x), x) - f(E(x), G(E(x)))||_d`.

    The 'fm' score of the EGBAD code with its defaults w = 0.1 and d = 1 (an
    L1 norm, not squared; reference A3).
    """
    return ((1.0 - weight) * _norm(x - x_hat, degree)
            + weight * _norm(real_features - fake_features, degree))


def egbad_crossentropy_score(x, x_hat, fake_logits, weight=0.1, degree=1):
    """EGBAD's 'cross-e' mode: the discriminator term is `BCE(D(E(x), G(E(x))), 1)`."""
    dis = ops.binary_crossentropy(ops.ones_like(fake_logits), fake_logits,
                                  from_logits=True)
    return (1.0 - weight) * _norm(x - x_hat, degree) + weight * ops.reshape(dis, [-1])


def aggregate(vector_scores, how="mean"):
    """Per-clip score from `(clips, vectors)` per-vector scores."""
    if how == "mean":
        return ops.mean(vector_scores, axis=-1)
    if how == "max":
        return ops.max(vector_scores, axis=-1)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}; received {how!r}.")


def minmax(scores, low=None, high=None):
    """`(s - low) / (high - low)`; by default over the scores themselves.

    The originals scale the scores of the whole test set to [0, 1]
    (reference A1, A2). A constant score vector maps to zeros. Scaling by the
    test set itself is transductive, so no system does it (the `feature_mean`
    backend's `normalize=minmax_train` uses the training range); as a
    monotone map per machine type it leaves that type's AUC and pAUC
    unchanged.
    """
    scores = np.asarray(scores, dtype=np.float64)
    low = scores.min() if low is None else float(low)
    high = scores.max() if high is None else float(high)
    span = high - low
    return (scores - low) / span if span > 0 else np.zeros_like(scores)
