"""Attentive statistics pooling of transformer tokens into one clip vector.

Okabe, Koshinaka & Shinoda, "Attentive Statistics Pooling for Deep Speaker
Embedding" (Interspeech 2018), used here to pool the tokens of an EAT
transformer fine-tuned for anomalous sound detection. For tokens `h_t`
(`t = 1..T`, each of size `dim`):

    e_t     = v^T tanh(W^T a_t + b)
    alpha_t = exp(e_t) / sum_tau exp(e_tau)
    mu      = sum_t alpha_t h_t
    sigma   = sqrt(max(sum_t alpha_t h_t * h_t - mu * mu, epsilon))
    output  = [mu, sigma]

with `a_t = h_t` (Okabe) or, with `global_context`, `a_t = [h_t, mean(h),
std(h)]`, the plain (unweighted, population) statistics of the clip's
tokens: the ECAPA-TDNN variant (Desplanques et al. 2020, speechbrain's
`AttentiveStatisticsPooling`), here with Okabe's scalar score per token.

Okabe's score has a further scalar bias `k`; a softmax over the tokens
ignores any constant added to every score, so `k` changes nothing and
always gets a zero gradient. It is left out.
"""

import math
import numbers

import keras
from keras import ops

from asd_keras.config import check_integer


@keras.saving.register_keras_serializable(package="asd_keras")
class AttentiveStatisticsPooling(keras.layers.Layer):
    """Pools tokens `(batch, tokens, dim)` into an attention-weighted mean and std.

    Every token gets one attention score `e_t = v^T tanh(W^T a_t + b)`; the
    softmax of the scores over the tokens gives the weights `alpha_t`, and
    the output is `[mu, sigma]`, the weighted mean and the weighted standard
    deviation of the tokens, each of size `dim`. The attention input `a_t`
    is the token itself, or with `global_context` the token concatenated
    with the plain mean and std of all the clip's tokens (ECAPA-TDNN).

    The variance is computed as `sum_t alpha_t (h_t - mu)^2`, equal to
    Okabe's `sum_t alpha_t h_t^2 - mu^2` but without its cancellation when
    `|mu|` is much larger than `sigma`; it is floored at `epsilon` before
    the square root (as is the plain variance of `global_context`), which
    keeps the gradient finite for a constant dimension. Everything is
    computed in float32, whatever the dtype policy.

    Masking: with a boolean `mask` `(batch, tokens)` (passed, or propagated
    from an upstream layer such as `keras.layers.Masking`), masked tokens
    get zero weight and are left out of the global context too, so the
    output equals that of the unmasked tokens alone. A clip with every token
    masked pools to `mu = 0`, `sigma = sqrt(epsilon)`. The output has no
    token axis and carries no mask.

    Weights: `kernel` W `(in_dim, attention_dim)` (`in_dim` is `dim`, or
    `3 * dim` with `global_context`), `bias` b `(attention_dim,)` and
    `score_vector` v `(attention_dim,)`.

    Args:
        attention_dim: int. Hidden size of the attention, >= 1. Defaults to
            `128`.
        global_context: bool. Whether the attention also sees the clip's
            plain mean and std (ECAPA-TDNN). Defaults to `False`.
        epsilon: float. Floor of the variances, > 0. Defaults to `1e-6`.
        **kwargs: Passed on to `keras.layers.Layer`.

    Call arguments:
        tokens: float tensor `(batch, tokens, dim)`; `tokens` may be unknown.
        mask: optional boolean tensor `(batch, tokens)`, True for the tokens
            to pool.

    Returns:
        float32 tensor `(batch, 2 * dim)`: the weighted mean, then the
        weighted std.

    Example:
    >>> AttentiveStatisticsPooling(64)(np.ones((2, 497, 768), "float32")).shape
    TensorShape([2, 1536])
    """

    def __init__(
        self,
        attention_dim: int = 128,
        global_context: bool = False,
        epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        attention_dim = check_integer("attention_dim", attention_dim, 1)
        # `not x > 0` (rather than `x <= 0`) also rejects NaN.
        if (isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real)
                or not epsilon > 0 or not math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number > 0; received {epsilon!r}.")
        self.attention_dim = int(attention_dim)
        self.global_context = bool(global_context)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def _check_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "AttentiveStatisticsPooling expects tokens (batch, tokens, dim) with a "
                f"known dim; received shape {tuple(input_shape)}.")

    def build(self, input_shape):
        self._check_shape(input_shape)
        dim = int(input_shape[-1])
        in_dim = 3 * dim if self.global_context else dim
        self.kernel = self.add_weight(
            name="kernel", shape=(in_dim, self.attention_dim), initializer="glorot_uniform")
        self.bias = self.add_weight(
            name="bias", shape=(self.attention_dim,), initializer="zeros")
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.attention_dim,), initializer="glorot_uniform")
        self.built = True

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return (input_shape[0], 2 * input_shape[-1])

    def compute_mask(self, inputs, mask=None):
        return None

    def _statistics(self, tokens, weights):
        """Mean and std `(batch, dim)` of `tokens` under `weights` `(batch, T, 1)`
        that sum to 1 (or 0) over the tokens."""
        mean = ops.sum(weights * tokens, axis=1)
        centred = tokens - ops.expand_dims(mean, 1)
        variance = ops.sum(weights * ops.square(centred), axis=1)
        return mean, ops.sqrt(ops.maximum(variance, self.epsilon))

    def call(self, tokens, mask=None):
        # The statistics (a variance of EAT's spiky tokens) lose too much in
        # float16, so the layer runs in float32 whatever the policy.
        tokens = ops.cast(tokens, "float32")
        if mask is None:
            valid = ops.ones_like(tokens[:, :, :1])
        else:
            valid = ops.expand_dims(ops.cast(ops.cast(mask, "bool"), "float32"), -1)
        inputs = tokens
        if self.global_context:
            # Plain statistics over the valid tokens; the floor of 1 only acts
            # on a clip with no valid token (whose sums are 0 anyway).
            count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
            mean, std = self._statistics(tokens, valid / count)
            context = ops.concatenate([mean, std], axis=-1)
            context = ops.expand_dims(context, 1) * ops.ones_like(tokens[:, :, :1])
            inputs = ops.concatenate([tokens, context], axis=-1)
        kernel = ops.cast(self.kernel, "float32")
        bias = ops.cast(self.bias, "float32")
        score_vector = ops.cast(self.score_vector, "float32")
        hidden = ops.tanh(ops.matmul(inputs, kernel) + bias)
        scores = ops.matmul(hidden, ops.expand_dims(score_vector, -1))  # (batch, T, 1)
        if mask is not None:
            # The most negative float32: exp of it minus any finite maximum is
            # exactly 0. A clip with no valid token gets uniform weights,
            # which the product with `valid` then sets to 0.
            scores = ops.where(valid > 0, scores, float(-3.4028235e38))
        weights = ops.softmax(scores, axis=1) * valid
        mean, std = self._statistics(tokens, weights)
        return ops.concatenate([mean, std], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            attention_dim=self.attention_dim,
            global_context=self.global_context,
            epsilon=self.epsilon,
        )
        return config
