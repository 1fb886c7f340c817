"""Contrastive self-supervised losses: SimCLR's NT-Xent and SimSiam's.

The proxy-task study of Shin & Lee (§III-E, Table I) trains SimCLR with the
NT-Xent loss and SimSiam with the negative cosine similarity on two
augmented views of each log-mel spectrogram. Each loss is a pure function on
`keras.ops` plus a thin serialisable `keras.losses.Loss`.

Convention of the `Loss` classes: the model stacks its outputs for the two
views on axis 1 of `y_pred`, and `y_true` is ignored (there are no labels;
pass any array with the batch size, e.g. zeros, to `fit`). The classes return
one value per pair (clip), the mean of its two views' terms, so that the
default `"sum_over_batch_size"` reduction gives exactly the pure function's
value and sample weights weight whole clips.
"""

import math

import keras
from keras import ops

# SimCLR's default temperature for small batches. The study does not give one.
# SimCLR (Chen et al. 2020) uses 0.1 for ImageNet at batch size 4096 and 0.5
# for CIFAR-10 at batch size 512 (google-research/simclr README; the paper's
# Appendix B.9 finds 0.5 best on CIFAR-10). ASD training sets are small and
# batches are hundreds of clips, the CIFAR-10 regime, hence 0.5.
DEFAULT_TEMPERATURE = 0.5


def _check_temperature(temperature):
    try:
        valid = not isinstance(temperature, bool) and float(temperature) > 0.0
        valid = valid and math.isfinite(float(temperature))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"temperature must be a finite positive number; received {temperature!r}."
        )


def _nt_xent_pairs(z1, z2, temperature):
    """NT-Xent per pair: `(l(i, i+N) + l(i+N, i)) / 2`, shape `(batch,)`."""
    z1 = ops.normalize(z1, axis=-1)
    z2 = ops.normalize(z2, axis=-1)
    z = ops.concatenate([z1, z2], axis=0)
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    n2 = ops.shape(logits)[0]
    # An anchor is not its own negative: a large negative logit drops the
    # diagonal from the softmax denominator (its exp underflows to zero).
    # -1e9 rather than -inf so that no inf - inf can appear.
    self_mask = ops.eye(n2, dtype="bool")
    logits = ops.where(self_mask, ops.cast(-1e9, logits.dtype), logits)
    log_denominator = ops.logsumexp(logits, axis=-1)
    # The positive of anchor i is i+N (and vice versa): the same dot product.
    positive = ops.sum(z1 * z2, axis=-1) / temperature
    n = ops.shape(z1)[0]
    first, second = log_denominator[:n], log_denominator[n:]
    return 0.5 * ((first - positive) + (second - positive))


def nt_xent(z1, z2, temperature=DEFAULT_TEMPERATURE):
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020).

    The `2N` projections are L2-normalised; each of the `2N` anchors is
    classified against the `2N - 1` others by the softmax of its cosine
    similarities divided by `temperature`, with its other view as the
    target; the loss is the mean cross-entropy over the `2N` anchors.

    Args:
        z1: tensor `(N, dim)`. Projections of the first views.
        z2: tensor `(N, dim)`. Projections of the second views; `z2[i]` is
            the positive of `z1[i]`.
        temperature: float > 0. Defaults to `0.5`, SimCLR's setting for
            small batches (CIFAR-10, batch 512; ImageNet at batch 4096 uses
            0.1). The study (Shin & Lee) does not state its temperature;
            ASD batches are in the small-batch regime.

    Returns:
        Scalar tensor.
    """
    _check_temperature(temperature)
    return ops.mean(_nt_xent_pairs(z1, z2, float(temperature)))


def negative_cosine_similarity(p, z):
    """SimSiam's `D(p, z) = -cos(p, stop_gradient(z))` per row, `(batch,)`.

    The stop-gradient is part of the definition (Chen & He 2021, Eq. 1 and
    Algorithm 1): `z` is treated as a constant target.
    """
    z = ops.stop_gradient(z)
    return -ops.sum(ops.normalize(p, axis=-1) * ops.normalize(z, axis=-1), axis=-1)


def _simsiam_pairs(p1, p2, z1, z2):
    return 0.5 * negative_cosine_similarity(p1, z2) + 0.5 * negative_cosine_similarity(
        p2, z1
    )


def simsiam_loss(p1, p2, z1, z2):
    """SimSiam's symmetrised loss (Chen & He 2021).

    `L = D(p1, z2) / 2 + D(p2, z1) / 2` with `D(p, z) = -cos(p,
    stop_gradient(z))`, averaged over the batch; its minimum is -1.

    Args:
        p1: tensors `(N, dim)`. Predictor outputs of views 1 and 2.
        p2: tensors `(N, dim)`. Predictor outputs of views 1 and 2.
        z1: tensors `(N, dim)`. Projector outputs of views 1 and 2 (no
            gradient flows into them through this loss).
        z2: see `z1`.

    Returns:
        Scalar tensor.
    """
    return ops.mean(_simsiam_pairs(p1, p2, z1, z2))


def _check_stack(y_pred, views, what, layout):
    shape = tuple(y_pred.shape)
    if len(shape) != 3 or (shape[1] is not None and shape[1] != views):
        raise ValueError(
            f"{what} expects y_pred of shape (batch, {views}, dim) stacking "
            f"{layout} on axis 1; received shape {shape}."
        )


@keras.saving.register_keras_serializable(package="asd_keras")
class NTXent(keras.losses.Loss):
    """`nt_xent` as a Keras loss.

    `y_pred` is `(batch, 2, dim)`: the projections of the two views stacked
    on axis 1 (`ops.stack([z1, z2], axis=1)`); `y_true` is ignored. Returns
    per-pair values whose batch mean is `nt_xent(z1, z2, temperature)`. The
    negatives are the other clips of the same batch, so the value depends on
    the batch it is computed on.

    Args:
        temperature: float > 0. Defaults to `0.5` (see `nt_xent`).
    """

    def __init__(self, temperature=DEFAULT_TEMPERATURE, name="nt_xent",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_temperature(temperature)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        _check_stack(y_pred, 2, "NTXent", "the projections [z1, z2]")
        return _nt_xent_pairs(y_pred[:, 0], y_pred[:, 1], self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class SimSiamLoss(keras.losses.Loss):
    """`simsiam_loss` as a Keras loss.

    `y_pred` is `(batch, 4, dim)`: `ops.stack([p1, p2, z1, z2], axis=1)`,
    the predictor outputs then the projector outputs of views 1 and 2 (the
    order of `simsiam_loss`'s arguments); `y_true` is ignored. Returns
    per-pair values whose batch mean is `simsiam_loss(p1, p2, z1, z2)`; the
    stop-gradient on `z1, z2` is applied here, so the model may output them
    as they are.
    """

    def __init__(self, name="simsiam", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        _check_stack(y_pred, 4, "SimSiamLoss", "[p1, p2, z1, z2]")
        return _simsiam_pairs(y_pred[:, 0], y_pred[:, 1], y_pred[:, 2], y_pred[:, 3])
