"""Losses for the stacked head outputs of `asd_keras.layers.heads`.

The heads stack their per-class output with the (mixed-up) targets, so these
losses read the targets from `y_pred[..., 1]` and ignore `y_true`, as the
reference's `mixupLoss` (reference wilkinghoff.md §4 "Loss"). Each is a pure
function plus a thin serialisable `keras.losses.Loss`.
"""

import keras
from keras import ops

EPSILON = 1e-7


def _check_channels(y_pred, minimum, what):
    channels = y_pred.shape[-1]
    if len(y_pred.shape) != 3 or (channels is not None and channels < minimum):
        raise ValueError(
            f"{what} expects a stacked head output (batch, classes, >= "
            f"{minimum}); received shape {tuple(y_pred.shape)}. Use one of "
            "the heads of asd_keras.layers.heads."
        )


def categorical_crossentropy_from_probabilities(targets, probabilities):
    """Keras' CCE on probabilities: renormalise, clip to [eps, 1-eps], -sum t log p.

    The targets are not renormalised (the reference's "max" mixup labels may
    sum to less than 1).
    """
    probabilities = probabilities / ops.sum(probabilities, axis=-1, keepdims=True)
    probabilities = ops.clip(probabilities, EPSILON, 1.0 - EPSILON)
    return -ops.sum(targets * ops.log(probabilities), axis=-1)


def mixup_categorical_crossentropy(y_true, y_pred):
    """Cross-entropy of the stacked probabilities against the stacked targets.

    Args:
        y_true: ignored (the targets travel in `y_pred`).
        y_pred: `(batch, classes, 2)`: probabilities, targets.

    Returns:
        `(batch,)` losses.
    """
    _check_channels(y_pred, 2, "mixup_categorical_crossentropy")
    return categorical_crossentropy_from_probabilities(y_pred[..., 1], y_pred[..., 0])


def compactness_loss(y_true, y_pred):
    """Intra-class compactness (Definition 1): target-weighted squared distance.

    Args:
        y_true: ignored.
        y_pred: `(batch, classes, >=2)`: squared distances, targets.

    Returns:
        `(batch,)` `sum_j t_j ||x - c_j||^2`; its batch mean is the mean IC
        compactness loss over the samples.
    """
    _check_channels(y_pred, 2, "compactness_loss")
    return ops.sum(y_pred[..., 1] * y_pred[..., 0], axis=-1)


def compactness_crossentropy_loss(y_true, y_pred, weight=1.0):
    """Compactness plus `weight` times the classifier's cross-entropy.

    Args:
        y_true: ignored.
        y_pred: `(batch, classes, 3)`: squared distances, targets,
            classifier probabilities (`CompactnessHead(with_classifier=True)`).
        weight: float. Weight of the descriptiveness (CCE) term.
    """
    _check_channels(y_pred, 3, "compactness_crossentropy_loss")
    cce = categorical_crossentropy_from_probabilities(y_pred[..., 1], y_pred[..., 2])
    return compactness_loss(y_true, y_pred) + weight * cce


@keras.saving.register_keras_serializable(package="asd_keras")
class MixupCrossEntropy(keras.losses.Loss):
    """`mixup_categorical_crossentropy` as a Keras loss."""

    def __init__(self, name="mixup_crossentropy", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        return mixup_categorical_crossentropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="asd_keras")
class CompactnessLoss(keras.losses.Loss):
    """`compactness_loss` as a Keras loss."""

    def __init__(self, name="compactness", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        return compactness_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="asd_keras")
class CompactnessCrossEntropy(keras.losses.Loss):
    """`compactness_crossentropy_loss` as a Keras loss.

    Args:
        weight: float. Weight of the cross-entropy term. Defaults to `1.0`
            (the paper sums the two losses).
    """

    def __init__(self, weight=1.0, name="compactness_crossentropy",
                 reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        return compactness_crossentropy_loss(y_true, y_pred, self.weight)

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight)
        return config
