"""Scale-invariant signal-to-distortion ratio (SI-SDR) and its loss.

Shin & Lee train the separator of the source-separation proxy task by the
SI-SDR of the estimated waveform (paper §III-D, Eq. 8) and report the
SI-SDR improvement of the estimate over the mixture (SI-SDRi). The
definition follows torchmetrics' `scale_invariant_signal_distortion_ratio`
(reference/methods.md §E):

    alpha = (<s_hat, s> + eps) / (||s||^2 + eps)
    SI-SDR = 10 log10((||alpha s||^2 + eps) / (||alpha s - s_hat||^2 + eps))

with eps the float32 machine epsilon, so that s = [3, -0.5, 2, 7] and
s_hat = [2.5, 0, 2, 8] give 18.4030 dB. `zero_mean=True` removes each
signal's mean first, as torchmetrics' option and Le Roux et al. (2019) do.
"""

import keras
import numpy as np
from keras import ops

EPS = float(np.finfo(np.float32).eps)


def si_sdr(target, estimate, zero_mean=False, eps=EPS):
    """SI-SDR in dB of `estimate` against `target` along the last axis.

    Args:
        target: tensor `(..., samples)`. The reference signal.
        estimate: tensor of the same shape. The estimated signal.
        zero_mean: bool. Remove each signal's mean first.
        eps: float. Stabiliser added to the projection and both energies.

    Returns:
        tensor `(...)` of SI-SDR values in dB.
    """
    target = ops.convert_to_tensor(target)
    estimate = ops.cast(ops.convert_to_tensor(estimate), target.dtype)
    if zero_mean:
        target = target - ops.mean(target, axis=-1, keepdims=True)
        estimate = estimate - ops.mean(estimate, axis=-1, keepdims=True)
    alpha = (ops.sum(estimate * target, axis=-1, keepdims=True) + eps) / (
        ops.sum(target * target, axis=-1, keepdims=True) + eps)
    projection = alpha * target
    noise = projection - estimate
    ratio = (ops.sum(projection * projection, axis=-1) + eps) / (
        ops.sum(noise * noise, axis=-1) + eps)
    return 10.0 * ops.log10(ratio)


def negative_si_sdr(target, estimate, zero_mean=False, eps=EPS):
    """The training objective: `-si_sdr(target, estimate)` per example."""
    return -si_sdr(target, estimate, zero_mean=zero_mean, eps=eps)


@keras.saving.register_keras_serializable(package="asd_keras")
class NegativeSISDR(keras.losses.Loss):
    """Negative SI-SDR in dB between `y_true` and `y_pred` waveforms.

    Args:
        zero_mean: bool. Remove each waveform's mean first. Defaults to
            False (torchmetrics' default; the mixtures here are zero-mean
            machine sounds, so the two differ little).
        eps: float. Stabiliser (see `si_sdr`). Defaults to float32 eps.
        reduction: as `keras.losses.Loss`.
        name: as `keras.losses.Loss`.
    """

    def __init__(self, zero_mean=False, eps=EPS, reduction="sum_over_batch_size",
                 name="negative_si_sdr", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0; received {eps!r}.")
        self.zero_mean = bool(zero_mean)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        return negative_si_sdr(y_true, y_pred, zero_mean=self.zero_mean, eps=self.eps)

    def get_config(self):
        return {**super().get_config(), "zero_mean": self.zero_mean, "eps": self.eps}
