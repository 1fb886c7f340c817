"""Adversarial losses of the GAN detectors (reference methods.md §A).

Pure functions on `keras.ops`, used by the `train_step`s of
`asd_keras.models.gan`, plus thin serialisable `keras.losses.Loss` classes.
The discriminators return logits, so the sigmoid lives in the
cross-entropy (numerically safer than the originals' `Sigmoid + BCELoss`,
with the same value).
"""

import keras
from keras import ops


def adversarial_crossentropy(logits, real):
    """Mean sigmoid cross-entropy of discriminator logits against 1 or 0.

    Args:
        logits: tensor `(batch, 1)`.
        real: bool. Target 1 (real) or 0 (fake).

    Returns:
        Scalar tensor, `mean(-log sigmoid(l))` for real, `mean(-log(1 -
        sigmoid(l)))` for fake.
    """
    targets = ops.ones_like(logits) if real else ops.zeros_like(logits)
    return ops.mean(ops.binary_crossentropy(targets, logits, from_logits=True))


def feature_matching(real_features, fake_features):
    """Element-wise mean squared difference of discriminator features.

    GANomaly's `l2_loss(D_feat(x), D_feat(x_hat))` (reference A1): averaged
    over every element, not a difference of batch means.
    """
    return ops.mean(ops.square(real_features - fake_features))


def l1_reconstruction(x, x_hat):
    """Mean absolute error over every element (`nn.L1Loss`), the contextual loss."""
    return ops.mean(ops.abs(x - x_hat))


def latent_l2(z, z_hat):
    """Mean squared error over every element, the encoder (latent) loss."""
    return ops.mean(ops.square(z - z_hat))


@keras.saving.register_keras_serializable(package="asd_keras")
class FeatureMatching(keras.losses.Loss):
    """`feature_matching` as a Loss: `y_true` are the real features, `y_pred`
    the features of the generated input."""

    def __init__(self, name="feature_matching", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


@keras.saving.register_keras_serializable(package="asd_keras")
class AdversarialCrossEntropy(keras.losses.Loss):
    """Sigmoid cross-entropy of logits against a fixed real/fake target.

    Args:
        real: bool. Whether the target is 1 (real) or 0 (fake).
    """

    def __init__(self, real=True, name="adversarial_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.real = bool(real)

    def call(self, y_true, y_pred):
        targets = ops.ones_like(y_pred) if self.real else ops.zeros_like(y_pred)
        return ops.mean(ops.binary_crossentropy(targets, y_pred, from_logits=True),
                        axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(real=self.real)
        return config
