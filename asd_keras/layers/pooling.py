"""Temporal pooling of a pretrained audio transformer's tokens into one clip vector.

BEATs and EAT cut a log-mel spectrogram into 16 x 16 patches and return one
token per patch, time-major on a (time patches x frequency bands) grid:
token `t * num_bands + f`. Some models put extra tokens in front (EAT: one
CLS token). `TemporalPooling` turns `(batch, num_tokens, dim)` into one
vector per clip with the poolings of the training-free ASD systems:

- the plain token mean (Shin & Lee's proxy study);
- GenRep's temporal pooling, a mean over time per frequency band (reference
  methods.md section B);
- the families compared by Wilkinghoff, Yadav & Tan 2026 (methods.md
  section B2): max, generalised mean (GeM), global weighted rank pooling
  (GWRP), relative-deviation pooling (RDP) and the RDP + GeM hybrid.
"""

import math
import numbers

import keras
from keras import ops

from asd_keras.config import check_integer

POOLING_MODES = ("mean", "band_mean", "cls", "max", "gem", "gwrp", "rdp", "rdp_gem")

# Floor for quantities that go through a power or a logarithm. Far below any
# value that matters in float32 (and above its smallest normal, 1.2e-38), it
# only ever replaces exact zeros, where it keeps values and gradients finite.
_TINY = 1e-30


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


@keras.saving.register_keras_serializable(package="asd_keras")
class TemporalPooling(keras.layers.Layer):
    """Pools transformer tokens `(batch, num_tokens, dim)` into one vector per clip.

    The first `num_extra_tokens` tokens (e.g. EAT's CLS token) are set aside;
    every mode except `"cls"` pools the remaining `T = num_tokens -
    num_extra_tokens` patch tokens, each of the `dim` dimensions on its own
    unless said otherwise:

    - `"mean"`: the mean over the tokens.
    - `"band_mean"`: GenRep's temporal pooling. The tokens are laid out as
      `(T / num_bands, num_bands)` (time-major), averaged over time only,
      and the `num_bands` band vectors are concatenated, band 0 first:
      `x.reshape(B, T // F, F, D).mean(1).reshape(B, F * D)`.
    - `"cls"`: the first extra token.
    - `"max"`: the maximum over the tokens.
    - `"gem"`: generalised mean, `(mean_t max(x_t, 0)^p)^(1/p)`; negative
      entries are clamped to 0 first (Wilkinghoff, Yadav & Tan 2026).
    - `"gwrp"`: global weighted rank pooling. Each dimension is sorted in
      descending order and averaged with weight `r^i` on rank `i = 0, 1,
      ...`: `sum_i r^i x_(i) / sum_i r^i`. `r = 1` is the mean, `r = 0` the
      maximum (rank 0 always has weight 1).
    - `"rdp"`: relative-deviation pooling. The paper's equations are
      images; this is OUR READING, UNVERIFIED: `d_t = ||x_t - mean_tau
      x_tau||_2` (over `dim`), `dn_t = d_t / (mean_tau d_tau + epsilon)`,
      `w_t = dn_t^gamma / sum_tau dn_tau^gamma`, pooled `= sum_t w_t x_t`.
      `gamma = 0` is the mean. The normalisation by the mean deviation
      cancels in `w_t`; it is kept because the paper describes it.
    - `"rdp_gem"`: the hybrid, a weighted GeM (also our reading,
      UNVERIFIED): `(sum_t w_t max(x_t, 0)^p / sum_t w_t)^(1/p)` with the
      RDP weights `w_t` of `gamma`.

    Everything is computed in float32. The paper's best settings (its
    Table III) are p = 10, r = 0.4, gamma = 19 for BEATs and p = 3, r = 0.9,
    gamma = 1 for EAT.

    Args:
        mode: str. One of `POOLING_MODES`. Defaults to `"mean"`.
        num_bands: int. Frequency bands of the token grid (8 for BEATs and
            EAT on 128 mel bands). Only `"band_mean"` uses it. Defaults to
            `8`.
        num_extra_tokens: int. Tokens before the patch tokens (1 for EAT's
            CLS token, 0 for BEATs). Defaults to `0`.
        p: float. GeM exponent, > 0. Defaults to `3.0`.
        r: float. GWRP decay, in [0, 1]. Defaults to `0.5`.
        gamma: float. RDP exponent, >= 0. Defaults to `1.0`.
        epsilon: float. Added to RDP's mean deviation, >= 0. Defaults to
            `1e-6`.

    Call arguments:
        tokens: float tensor `(batch, num_tokens, dim)`; `num_tokens` may be
            unknown.

    Returns:
        float32 tensor `(batch, num_bands * dim)` for `"band_mean"`, else
        `(batch, dim)`.

    Example:
    >>> TemporalPooling("band_mean")(np.ones((2, 496, 768), "float32")).shape
    TensorShape([2, 6144])
    """

    def __init__(
        self,
        mode: str = "mean",
        num_bands: int = 8,
        num_extra_tokens: int = 0,
        p: float = 3.0,
        r: float = 0.5,
        gamma: float = 1.0,
        epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"mode must be one of {POOLING_MODES}; received {mode!r}.")
        check_integer("num_bands", num_bands, 1)
        check_integer("num_extra_tokens", num_extra_tokens, 0)
        if mode == "cls" and num_extra_tokens < 1:
            raise ValueError(
                f"mode 'cls' needs num_extra_tokens >= 1; received {num_extra_tokens!r}.")
        # `not x > 0` (rather than `x <= 0`) also rejects NaN; an infinite p
        # or gamma would turn the powers into 0 * inf.
        if not _is_number(p) or not p > 0 or not math.isfinite(p):
            raise ValueError(f"p must be a finite number > 0; received {p!r}.")
        if not _is_number(r) or not 0 <= r <= 1:
            raise ValueError(f"r must be a number in [0, 1]; received {r!r}.")
        if not _is_number(gamma) or not gamma >= 0 or not math.isfinite(gamma):
            raise ValueError(f"gamma must be a finite number >= 0; received {gamma!r}.")
        if not _is_number(epsilon) or not epsilon >= 0 or not math.isfinite(epsilon):
            raise ValueError(f"epsilon must be a finite number >= 0; received {epsilon!r}.")
        self.mode = mode
        self.num_bands = int(num_bands)
        self.num_extra_tokens = int(num_extra_tokens)
        self.p = float(p)
        self.r = float(r)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)

    def _check_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"TemporalPooling expects tokens (batch, num_tokens, dim); received "
                f"shape {tuple(input_shape)}.")
        num_tokens = input_shape[1]
        if num_tokens is None:
            return
        needed = self.num_extra_tokens + (0 if self.mode == "cls" else 1)
        if num_tokens < needed:
            raise ValueError(
                f"mode {self.mode!r} with num_extra_tokens={self.num_extra_tokens} needs "
                f"at least {needed} tokens; received shape {tuple(input_shape)}.")
        patches = num_tokens - self.num_extra_tokens
        if self.mode == "band_mean" and patches % self.num_bands:
            raise ValueError(
                f"band_mean needs num_tokens - num_extra_tokens divisible by "
                f"num_bands={self.num_bands}; received shape {tuple(input_shape)} "
                f"({patches} patch tokens).")

    def build(self, input_shape):
        self._check_shape(input_shape)
        self.built = True

    def output_dim(self, dim):
        """Size of the pooled vector for tokens of size `dim` (None stays None)."""
        if dim is None or self.mode != "band_mean":
            return dim
        return self.num_bands * dim

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return (input_shape[0], self.output_dim(input_shape[-1]))

    def call(self, tokens):
        # Powers up to p ~ 10 and weights r^i that span many decades lose too
        # much in float16, so the pooling runs in float32 whatever the policy.
        tokens = ops.cast(tokens, "float32")
        if self.mode == "cls":
            return tokens[:, 0, :]
        x = tokens[:, self.num_extra_tokens:, :]
        if self.mode == "mean":
            return ops.mean(x, axis=1)
        if self.mode == "max":
            return ops.max(x, axis=1)
        if self.mode == "band_mean":
            return self._band_mean(x)
        if self.mode == "gem":
            return _generalised_mean(x, self.p)
        if self.mode == "gwrp":
            return self._rank_pooling(x)
        weights = self._deviation_weights(x)
        if self.mode == "rdp":
            return ops.sum(weights * x, axis=1)
        return _generalised_mean(x, self.p, weights)

    def _band_mean(self, x):
        shape = ops.shape(x)
        batch, dim = shape[0], shape[2]
        # The batch size (and the token count) may be unknown while tracing;
        # `-1` absorbs the time axis, so only the batch size is read at run time.
        grid = ops.reshape(x, (batch, -1, self.num_bands, dim))
        return ops.reshape(ops.mean(grid, axis=1), (batch, self.num_bands * dim))

    def _rank_pooling(self, x):
        ordered = -ops.sort(-x, axis=1)  # descending along the tokens
        ranks = ops.arange(ops.shape(x)[1], dtype="float32")
        # r^0 is 1 even for r = 0, so r = 0 is exactly the maximum.
        weights = ops.where(ranks == 0, 1.0, ops.power(self.r, ranks))
        weights = ops.reshape(weights / ops.sum(weights), (1, -1, 1))
        return ops.sum(weights * ordered, axis=1)

    def _deviation_weights(self, x):
        """RDP weights `(batch, T, 1)`, summing to 1 over the tokens."""
        centred = x - ops.mean(x, axis=1, keepdims=True)
        # The floor keeps sqrt's gradient finite for a token at the mean.
        deviation = ops.sqrt(ops.maximum(ops.sum(ops.square(centred), axis=-1), _TINY))
        relative = deviation / (ops.mean(deviation, axis=1, keepdims=True) + self.epsilon)
        # dn^gamma / sum dn^gamma as a softmax of gamma log dn: dn can reach T
        # (~500 tokens) and gamma ~20, and 500^20 overflows float32.
        logits = self.gamma * ops.log(ops.maximum(relative, _TINY))
        return ops.expand_dims(ops.softmax(logits, axis=1), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            num_bands=self.num_bands,
            num_extra_tokens=self.num_extra_tokens,
            p=self.p,
            r=self.r,
            gamma=self.gamma,
            epsilon=self.epsilon,
        )
        return config


def _generalised_mean(x, p, weights=None):
    """`(sum_t w_t max(x_t, 0)^p / sum_t w_t)^(1/p)` over axis 1 (plain mean
    when `weights` is None).

    Computed as `s * (mean (x+ / s)^p)^(1/p)` with `s` the largest positive
    entry: x^p overflows float32 for |x| > 7000 at p = 10 (EAT has spikes)
    and underflows for small x, while (x / s)^p lies in [0, 1].
    """
    positive = ops.maximum(x, 0.0)
    scale = ops.max(positive, axis=1, keepdims=True)
    safe_scale = ops.where(scale > 0, scale, 1.0)
    ratio = positive / safe_scale
    # The inner where keeps the gradient of ratio^p finite at 0 for p < 1.
    nonzero = ratio > 0
    powered = ops.where(nonzero, ops.power(ops.where(nonzero, ratio, 1.0), p), 0.0)
    if weights is None:
        mean = ops.mean(powered, axis=1)
    else:
        mean = ops.sum(weights * powered, axis=1) / ops.sum(weights, axis=1)
    # mean is 0 only when every entry is <= 0 (the result is then 0 through
    # scale), or underflows when the largest entry has a negligible weight;
    # the floor keeps the 1/p power and its gradient finite there.
    return ops.squeeze(scale, axis=1) * ops.power(ops.maximum(mean, _TINY), 1.0 / p)
