"""Conformer layers of the CMGAN separator (TSCNet), channels-last.

A port of CMGAN's `src/models/conformer.py` (itself lucidrains' conformer)
and of the two-stage conformer block `TSCB` of `src/models/generator.py`
(reference methods.md §E). Weights start as PyTorch's defaults: linear and
conv kernels and biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, the relative
position table `N(0, 1)`, norms at one and zero, so that a seeded build
draws from the same distributions as the original.

A PyTorch checkpoint maps onto these layers as follows (a `nn.Linear`
weight `(out, in)` is a Keras kernel `(in, out)`, a `nn.Conv1d` weight
`(out, in, 1)` a Dense kernel `(in, out)`, a depthwise weight `(c, 1, k)` a
`DepthwiseConv1D` kernel `(k, c, 1)`):

    torch (ConformerBlock)            Keras (ConformerBlock)
    ff1.fn.norm, ff1.fn.fn.net.0/3    ff1_norm, ff1_dense1, ff1_dense2
    attn.norm                         attention_norm
    attn.fn.to_q / to_kv / to_out     attention.query_kernel /
                                      key_value_kernel / output_kernel,bias
    attn.fn.rel_pos_emb               attention.relative_embeddings
    conv.net.0/2/4/5/7                conv_norm, conv_pointwise_in,
                                      conv_depthwise, conv_batch_norm,
                                      conv_pointwise_out
    ff2.*, post_norm                  ff2_*, post_norm
"""

import math
import random

import keras
from keras import ops

from asd_keras.config import check_integer

# torch.nn.LayerNorm / BatchNorm1d defaults; PyTorch momentum 0.1 is Keras' 0.9.
_NORM_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _check_rate(value, arg):
    if isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{arg} must be in [0, 1); received {value!r}.")
    return float(value)


def torch_uniform(fan_in, seed=None):
    """PyTorch's default `nn.Linear`/`nn.Conv*` initialiser.

    `kaiming_uniform_(a=sqrt(5))` for the weight and the bias rule of
    `reset_parameters` both draw from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.

    Args:
        fan_in: int. Inputs per output unit (in_channels / groups x kernel).
        seed: int or None.

    Returns:
        keras.initializers.RandomUniform.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


_CONFORMER_ARGUMENTS = (
    "dim", "num_heads", "head_dim", "ff_mult", "conv_expansion", "conv_kernel",
    "attn_dropout", "ff_dropout", "conv_dropout", "max_relative_position",
)


def _conformer_arguments(dim, num_heads, head_dim, ff_mult, conv_expansion,
                         conv_kernel, attn_dropout, ff_dropout, conv_dropout,
                         max_relative_position):
    """Validated, normalised `ConformerBlock` arguments as a dict."""
    dim = check_integer("dim", dim, 1)
    num_heads = check_integer("num_heads", num_heads, 1)
    if head_dim is None:
        if dim < num_heads:
            raise ValueError(
                f"dim ({dim!r}) must be >= num_heads ({num_heads!r}) when "
                "head_dim is None.")
        head_dim = dim // num_heads
    conv_kernel = check_integer("conv_kernel", conv_kernel, 1)
    if conv_kernel % 2 == 0:
        # An even kernel is padded (k//2, k//2 - 1) in CMGAN but
        # (k//2 - 1, k//2) by Keras' "same".
        raise ValueError(f"conv_kernel must be odd; received {conv_kernel!r}.")
    return dict(
        dim=dim,
        num_heads=num_heads,
        head_dim=check_integer("head_dim", head_dim, 1),
        ff_mult=check_integer("ff_mult", ff_mult, 1),
        conv_expansion=check_integer("conv_expansion", conv_expansion, 1),
        conv_kernel=conv_kernel,
        attn_dropout=_check_rate(attn_dropout, "attn_dropout"),
        ff_dropout=_check_rate(ff_dropout, "ff_dropout"),
        conv_dropout=_check_rate(conv_dropout, "conv_dropout"),
        max_relative_position=check_integer("max_relative_position", max_relative_position, 0),
    )


class _Seeds:
    """A stream of initialiser seeds drawn from one `seed` (None: unseeded).

    A Keras initializer with an integer seed draws the same values on every
    call, so each weight needs its own seed.
    """

    def __init__(self, seed):
        self._rng = None if seed is None else random.Random(int(seed))

    def __call__(self):
        return None if self._rng is None else self._rng.randrange(2**31 - 1)


def glu(x, axis=-1):
    """Gated linear unit: first half times the sigmoid of the second half.

    `torch.nn.functional.glu` / CMGAN's `GLU(dim)`: `out, gate =
    x.chunk(2, dim)`, `out * sigmoid(gate)`.

    Args:
        x: tensor with an even size along `axis`.
        axis: int. Defaults to `-1` (channels-last).

    Returns:
        Tensor with half the size along `axis`.
    """
    out, gate = ops.split(x, 2, axis=axis)
    return out * ops.sigmoid(gate)


@keras.saving.register_keras_serializable(package="asd_keras")
class RelativePositionAttention(keras.layers.Layer):
    """Multi-head self-attention with Shaw's relative position embedding.

    CMGAN's `Attention` (reference methods.md §E): `q = x W_q`,
    `[k, v] = x W_kv` (no biases), per head
    `dots[i, j] = (q_i . k_j + q_i . E[clip(i - j, -M, M) + M]) * d**-0.5`
    with a learned table `E` of shape `(2M + 1, d)`, softmax over `j`,
    `attn . v`, heads merged and projected by `W_o` with bias, then
    dropout. As in CMGAN the dropout acts on the projected output only,
    never on the attention weights.

    Args:
        num_heads: int. Number of heads.
        head_dim: int. Size `d` of each head.
        max_relative_position: int M. Distances are clipped to `[-M, M]`.
            Defaults to `512`.
        dropout: float. Output dropout rate. Defaults to `0.0`.
        seed: int or None. Seeds the initialisers.

    Call arguments:
        inputs: float tensor `(batch, length, dim)`.
        training: bool. Enables dropout.

    Input shape:
        `(batch, length, dim)`.

    Output shape:
        `(batch, length, dim)`.

    Example:
    >>> layer = RelativePositionAttention(num_heads=4, head_dim=16)
    >>> layer(np.zeros((2, 10, 64), "float32")).shape
    TensorShape([2, 10, 64])
    """

    def __init__(self, num_heads, head_dim, max_relative_position=512,
                 dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_integer("num_heads", num_heads, 1)
        self.head_dim = check_integer("head_dim", head_dim, 1)
        self.max_relative_position = check_integer("max_relative_position", max_relative_position, 0)
        self.dropout = _check_rate(dropout, "dropout")
        self.seed = seed

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                f"The last input axis must be known; received {input_shape}.")
        inner = self.num_heads * self.head_dim
        seeds = _Seeds(self.seed)
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(dim, inner),
            initializer=torch_uniform(dim, seeds()))
        self.key_value_kernel = self.add_weight(
            name="key_value_kernel", shape=(dim, 2 * inner),
            initializer=torch_uniform(dim, seeds()))
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(inner, dim),
            initializer=torch_uniform(inner, seeds()))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(dim,),
            initializer=torch_uniform(inner, seeds()))
        # nn.Embedding's default initialisation is N(0, 1).
        self.relative_embeddings = self.add_weight(
            name="relative_embeddings",
            shape=(2 * self.max_relative_position + 1, self.head_dim),
            initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=seeds()))
        self.output_dropout = keras.layers.Dropout(self.dropout, name="dropout")

    def _split_heads(self, x, length):
        x = ops.reshape(x, (-1, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, inputs, training=None):
        length = ops.shape(inputs)[1]
        scale = self.head_dim ** -0.5
        query = self._split_heads(ops.matmul(inputs, self.query_kernel), length)
        key, value = ops.split(ops.matmul(inputs, self.key_value_kernel), 2, axis=-1)
        key = self._split_heads(key, length)
        value = self._split_heads(value, length)
        dots = ops.einsum("bhid,bhjd->bhij", query, key) * scale
        positions = ops.arange(length)
        distance = ops.clip(
            positions[:, None] - positions[None, :],
            -self.max_relative_position, self.max_relative_position,
        ) + self.max_relative_position
        embeddings = ops.take(self.relative_embeddings, distance, axis=0)
        dots = dots + ops.einsum("bhnd,nrd->bhnr", query, embeddings) * scale
        attention = ops.softmax(dots, axis=-1)
        out = ops.einsum("bhij,bhjd->bhid", attention, value)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)),
                          (-1, length, self.num_heads * self.head_dim))
        out = ops.matmul(out, self.output_kernel) + self.output_bias
        return self.output_dropout(out, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            max_relative_position=self.max_relative_position,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config


class _ConformerLayer(keras.layers.Layer):
    """The validated constructor arguments and config of the conformer layers."""

    def __init__(self, dim, num_heads=4, head_dim=None, ff_mult=4,
                 conv_expansion=2, conv_kernel=31, attn_dropout=0.2,
                 ff_dropout=0.2, conv_dropout=0.0, max_relative_position=512,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        arguments = _conformer_arguments(
            dim, num_heads, head_dim, ff_mult, conv_expansion, conv_kernel,
            attn_dropout, ff_dropout, conv_dropout, max_relative_position)
        for key, value in arguments.items():
            setattr(self, key, value)
        self.seed = seed

    def _conformer_config(self):
        return {key: getattr(self, key) for key in _CONFORMER_ARGUMENTS}

    def get_config(self):
        config = super().get_config()
        config.update(self._conformer_config(), seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class ConformerBlock(_ConformerLayer):
    """Conformer block: ½FF, MHSA, convolution module, ½FF, LayerNorm.

    CMGAN's `ConformerBlock` (reference methods.md §E), every sub-module
    pre-norm with its own residual:

    - `x + 0.5 * FF(x)`, FF = LayerNorm, Dense(dim * ff_mult), Swish,
      Dropout, Dense(dim), Dropout;
    - `x + MHSA(LayerNorm(x))` with `RelativePositionAttention`;
    - `x + Conv(x)`, Conv = LayerNorm, pointwise Dense(2 * inner), GLU,
      depthwise conv (`conv_kernel`, "same"), BatchNorm, Swish, pointwise
      Dense(dim), Dropout, with `inner = dim * conv_expansion`;
    - `x + 0.5 * FF(x)` again, then a final LayerNorm.

    Norm epsilons are PyTorch's (1e-5) and the BatchNorm momentum is
    PyTorch's 0.1 (Keras `momentum=0.9`).

    Args:
        dim: int. Channels of the input.
        num_heads: int. Attention heads. Defaults to `4`.
        head_dim: int or None. Size of each head; `None` (default) is
            `dim // num_heads`.
        ff_mult: int. Feed-forward expansion. Defaults to `4`.
        conv_expansion: int. Convolution-module expansion. Defaults to `2`.
        conv_kernel: int. Odd depthwise kernel size. Defaults to `31`.
        attn_dropout: float. Defaults to `0.2`.
        ff_dropout: float. Defaults to `0.2`.
        conv_dropout: float. Defaults to `0.0`.
        max_relative_position: int. Defaults to `512`.
        seed: int or None. Seeds the initialisers.

    Call arguments:
        inputs: float tensor `(batch, length, dim)`.
        training: bool. Dropout and batch statistics.

    Input shape:
        `(batch, length, dim)`.

    Output shape:
        `(batch, length, dim)`.

    Example:
    >>> ConformerBlock(64)(np.zeros((2, 10, 64), "float32")).shape
    TensorShape([2, 10, 64])
    """


    def _layer_norm(self, name):
        return keras.layers.LayerNormalization(epsilon=_NORM_EPSILON, name=name)

    def _dense(self, units, fan_in, seeds, name):
        return keras.layers.Dense(
            units,
            kernel_initializer=torch_uniform(fan_in, seeds()),
            bias_initializer=torch_uniform(fan_in, seeds()),
            name=name,
        )

    def build(self, input_shape):
        if input_shape[-1] != self.dim:
            raise ValueError(
                f"ConformerBlock(dim={self.dim}) received inputs of shape "
                f"{input_shape}; the last axis must be {self.dim}.")
        dim = self.dim
        hidden = dim * self.ff_mult
        inner = dim * self.conv_expansion
        seeds = _Seeds(self.seed)
        shape = tuple(input_shape)
        wide = shape[:-1] + (hidden,)
        gated = shape[:-1] + (inner,)

        for prefix in ("ff1", "ff2"):
            norm = self._layer_norm(f"{prefix}_norm")
            dense1 = self._dense(hidden, dim, seeds, f"{prefix}_dense1")
            dense2 = self._dense(dim, hidden, seeds, f"{prefix}_dense2")
            norm.build(shape)
            dense1.build(shape)
            dense2.build(wide)
            setattr(self, f"{prefix}_norm", norm)
            setattr(self, f"{prefix}_dense1", dense1)
            setattr(self, f"{prefix}_dense2", dense2)
            setattr(self, f"{prefix}_dropout",
                    keras.layers.Dropout(self.ff_dropout, name=f"{prefix}_dropout"))

        self.attention_norm = self._layer_norm("attention_norm")
        self.attention_norm.build(shape)
        self.attention = RelativePositionAttention(
            self.num_heads, self.head_dim, self.max_relative_position,
            self.attn_dropout, seed=seeds(), name="attention")
        self.attention.build(shape)

        self.conv_norm = self._layer_norm("conv_norm")
        self.conv_norm.build(shape)
        self.conv_pointwise_in = self._dense(2 * inner, dim, seeds, "conv_pointwise_in")
        self.conv_pointwise_in.build(shape)
        # nn.Conv1d(inner, inner, k, groups=inner): fan_in = k.
        # float32 under any policy: TensorFlow 2.21's CPU depthwise_conv2d in
        # bfloat16 did not finish a (1, 1, 40, 4) input with a (1, 31) kernel
        # in 60 s (float32 and float16: 10 ms), so mixed_bfloat16 never trained.
        self.conv_depthwise = keras.layers.DepthwiseConv1D(
            self.conv_kernel, padding="same",
            depthwise_initializer=torch_uniform(self.conv_kernel, seeds()),
            bias_initializer=torch_uniform(self.conv_kernel, seeds()),
            dtype="float32", name="conv_depthwise")
        self.conv_depthwise.build(gated)
        self.conv_batch_norm = keras.layers.BatchNormalization(
            momentum=_BN_MOMENTUM, epsilon=_NORM_EPSILON, name="conv_batch_norm")
        self.conv_batch_norm.build(gated)
        self.conv_pointwise_out = self._dense(dim, inner, seeds, "conv_pointwise_out")
        self.conv_pointwise_out.build(gated)
        self.conv_dropout_layer = keras.layers.Dropout(
            self.conv_dropout, name="conv_dropout")

        self.post_norm = self._layer_norm("post_norm")
        self.post_norm.build(shape)

    def _feed_forward(self, x, prefix, training):
        dropout = getattr(self, f"{prefix}_dropout")
        y = getattr(self, f"{prefix}_norm")(x)
        y = ops.silu(getattr(self, f"{prefix}_dense1")(y))
        y = dropout(y, training=training)
        y = dropout(getattr(self, f"{prefix}_dense2")(y), training=training)
        return x + 0.5 * y

    def call(self, inputs, training=None):
        x = self._feed_forward(inputs, "ff1", training)
        x = x + self.attention(self.attention_norm(x), training=training)
        y = glu(self.conv_pointwise_in(self.conv_norm(x)))
        y = self.conv_depthwise(y)
        y = ops.silu(self.conv_batch_norm(y, training=training))
        y = self.conv_dropout_layer(self.conv_pointwise_out(y), training=training)
        x = x + y
        x = self._feed_forward(x, "ff2", training)
        return self.post_norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="asd_keras")
class TwoStageConformer(_ConformerLayer):
    """Two-stage conformer block: a time conformer, then a frequency one.

    CMGAN's `TSCB` (reference methods.md §E) on a channels-last
    `(batch, time, freq, channels)` map: a `ConformerBlock` runs along time
    on each frequency bin, `(batch * freq, time, channels)`, and its output
    is added to its input (an outer residual on top of the block's own
    ones); a second `ConformerBlock` then runs along frequency on each
    frame, `(batch * time, freq, channels)`, again with an outer residual.

    Args:
        dim: int. Channels of the input.
        num_heads:
            passed to both `ConformerBlock`s; same defaults.
        head_dim: see `num_heads`.
        ff_mult: see `num_heads`.
        conv_expansion: see `num_heads`.
        conv_kernel: see `num_heads`.
        attn_dropout: see `num_heads`.
        ff_dropout: see `num_heads`.
        conv_dropout: see `num_heads`.
        max_relative_position: see `num_heads`.
        seed: int or None. Seeds the initialisers.

    Call arguments:
        inputs: float tensor `(batch, time, freq, dim)`.
        training: bool.

    Input shape:
        `(batch, time, freq, dim)`; `freq` must be known.

    Output shape:
        `(batch, time, freq, dim)`.

    Example:
    >>> TwoStageConformer(64)(np.zeros((1, 5, 101, 64), "float32")).shape
    TensorShape([1, 5, 101, 64])
    """


    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[2] is None or input_shape[3] != self.dim:
            raise ValueError(
                "TwoStageConformer expects (batch, time, freq, "
                f"{self.dim}) with a known freq; received {input_shape}.")
        seeds = _Seeds(self.seed)
        self.time_conformer = ConformerBlock(
            **self._conformer_config(), seed=seeds(), name="time_conformer")
        self.time_conformer.build((None, input_shape[1], self.dim))
        self.freq_conformer = ConformerBlock(
            **self._conformer_config(), seed=seeds(), name="freq_conformer")
        self.freq_conformer.build((None, input_shape[2], self.dim))

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        time, freq, channels = shape[1], inputs.shape[2], self.dim
        # (B, T, F, C) -> (B, F, T, C) -> (B*F, T, C), as torch's
        # permute(0, 3, 2, 1).view(b*f, t, c) on (B, C, T, F).
        x = ops.reshape(ops.transpose(inputs, (0, 2, 1, 3)), (-1, time, channels))
        x = self.time_conformer(x, training=training) + x
        x = ops.transpose(ops.reshape(x, (-1, freq, time, channels)), (0, 2, 1, 3))
        x = ops.reshape(x, (-1, freq, channels))
        x = self.freq_conformer(x, training=training) + x
        return ops.reshape(x, (-1, time, freq, channels))

    def compute_output_shape(self, input_shape):
        return input_shape

