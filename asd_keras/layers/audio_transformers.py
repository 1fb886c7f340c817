"""Building blocks of the pretrained audio transformers BEATs and EAT.

The facts reproduced here are in reference methods.md §C1 (EAT) and §C2
(BEATs, `beats/backbone.py`); the PyTorch originals are the parity
references (§H, `tools/encoder_parity.py`).

- `ConvPositionEmbedding`: BEATs' convolutional position embedding, a
  grouped 1-D convolution over the tokens (kernel 128, 16 groups, the
  original's weight norm folded into the kernel), its last output dropped
  (`SamePad` for an even kernel), then GELU.
- `RelativePositionBias`: the bucketed relative position bias that BEATs
  computes in its first layer and shares with all others (T5 buckets,
  bidirectional, 320 buckets, max distance 800).
- `GatedRelativeAttention`: BEATs' multi-head self-attention with the
  gated relative position bias (`gru_rel_pos`).
- `FusedSelfAttention`: EAT's (timm/data2vec 2) attention with one fused
  qkv projection.
- `FixedPositions`: adds the first tokens' rows of a fixed (sin-cos) table.
- `ClassToken`: prepends a learned token (EAT's CLS "extra" token).
"""

import math

import keras
import numpy as np
from keras import ops

from asd_keras.config import check_integer


def _heads(dim, num_heads):
    dim = check_integer("dim", dim, 1)
    num_heads = check_integer("num_heads", num_heads, 1)
    if dim % num_heads:
        raise ValueError(f"dim ({dim}) must be divisible by num_heads; received {num_heads!r}.")
    return dim, num_heads


def sincos_positions(dim, num_time, num_bands):
    """EAT's fixed 2-D sin-cos table `(num_time * num_bands, dim)`, rows
    time-major (`t * num_bands + f`).

    As `get_2d_sincos_pos_embed_flexible` (methods.md §C1): the first half
    of the channels encodes the frequency band, the second half the time
    patch (its meshgrid puts the band index first), each half `[sin | cos]`
    with frequencies `10000 ** (-k / (dim / 4))`, in float32.
    """
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4; received {dim!r}.")
    grid_band, grid_time = np.meshgrid(np.arange(num_bands, dtype=np.float32),
                                       np.arange(num_time, dtype=np.float32))

    def encode(positions):
        omega = np.arange(dim // 4, dtype=np.float32) / np.float32(dim / 4.0)
        omega = 1.0 / 10000 ** omega
        angles = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(grid_band), encode(grid_time)], axis=1).astype(np.float32)


def relative_position_buckets(length, num_buckets, max_distance):
    """BEATs' bidirectional T5 buckets of `key - query` positions, `(length,
    length)` int32, computed with `keras.ops` in float32 as the original."""
    positions = ops.arange(length)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = ops.cast(relative > 0, "int32") * half
    distance = ops.abs(relative)
    max_exact = half // 2
    # The original evaluates log(distance / max_exact) in float32 and then
    # divides by a double constant rounded to float32; the floor of the
    # product decides the bucket, so the same order of operations is kept.
    scaled = (ops.log(ops.cast(ops.maximum(distance, 1), "float32") / float(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * float(half - max_exact))
    large = ops.minimum(max_exact + ops.cast(scaled, "int32"), half - 1)
    return buckets + ops.where(distance < max_exact, ops.cast(distance, "int32"), large)


@keras.saving.register_keras_serializable(package="asd_keras")
class ConvPositionEmbedding(keras.layers.Layer):
    """BEATs' convolutional position embedding: `gelu(conv(tokens))`.

    A grouped 1-D convolution over `(batch, tokens, dim)` with `kernel_size
    // 2` zeros on each side; for an even kernel the last output is dropped
    (the original's `SamePad`), so the length is kept. The original
    reparametrises the kernel by weight norm (`g * v / ||v||` over the kernel
    axis); the converter folds it into `kernel`, which is all inference
    needs.

    Args:
        dim: int. Channels.
        kernel_size: int. Defaults to `128`.
        groups: int. Defaults to `16`.
    """

    def __init__(self, dim: int = 768, kernel_size: int = 128, groups: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_integer("dim", dim, 1)
        self.kernel_size = check_integer("kernel_size", kernel_size, 1)
        self.groups = check_integer("groups", groups, 1)
        if self.dim % self.groups:
            raise ValueError(f"dim ({self.dim}) must be divisible by groups; "
                             f"received {groups!r}.")

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.dim // self.groups, self.dim),
            initializer=keras.initializers.RandomNormal(
                stddev=math.sqrt(4.0 / (self.kernel_size * self.dim))))
        self.bias = self.add_weight(name="bias", shape=(self.dim,), initializer="zeros")

    def call(self, tokens):
        pad = self.kernel_size // 2
        padded = ops.pad(tokens, ((0, 0), (pad, pad), (0, 0)))
        out = ops.conv(padded, self.kernel, padding="valid") + self.bias
        if self.kernel_size % 2 == 0:
            out = out[:, :-1]
        return keras.activations.gelu(out, approximate=False)

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "kernel_size": self.kernel_size, "groups": self.groups})
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class RelativePositionBias(keras.layers.Layer):
    """The shared relative position bias of BEATs: `(heads, tokens, tokens)`.

    One learned value per bucket and head (`relative_attention_bias`, an
    embedding of `num_buckets` rows); its input only gives the token count.

    Args:
        num_heads: int.
        num_buckets: int. Defaults to `320`.
        max_distance: int. Defaults to `800`.
    """

    def __init__(self, num_heads: int = 12, num_buckets: int = 320, max_distance: int = 800,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_integer("num_heads", num_heads, 1)
        self.num_buckets = check_integer("num_buckets", num_buckets, 1)
        self.max_distance = check_integer("max_distance", max_distance, 1)
        if self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4:
            raise ValueError(
                f"num_buckets ({num_buckets!r}) must be >= 4 and max_distance "
                f"({max_distance!r}) larger than num_buckets // 4.")

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_buckets, self.num_heads),
            initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, tokens):
        buckets = relative_position_buckets(ops.shape(tokens)[1], self.num_buckets,
                                            self.max_distance)
        return ops.transpose(ops.take(self.embeddings, buckets, axis=0), (2, 0, 1))

    def compute_output_shape(self, input_shape):
        return (self.num_heads, input_shape[1], input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "num_buckets": self.num_buckets,
                       "max_distance": self.max_distance})
        return config


def _attend(logits, values, batch, length, dim):
    weights = ops.softmax(logits, axis=-1)
    out = ops.matmul(weights, values)  # (batch, heads, tokens, head_dim)
    return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (batch, length, dim))


@keras.saving.register_keras_serializable(package="asd_keras")
class GatedRelativeAttention(keras.layers.Layer):
    """BEATs' self-attention with a gated relative position bias.

    Called on `[tokens (batch, n, dim), bias (heads, n, n)]`. With `q`, `k`,
    `v` the projections split into heads, the gate of head `h` at query `i`
    is computed from the unscaled query (`grep_linear`, `head_dim -> 8`,
    summed in two groups of 4, sigmoid): `g = a * (b * grep_a[h] - 1) + 2`,
    and the logits are `q k^T / sqrt(head_dim) + g * bias`. The original
    subtracts the row maximum before adding the bias (with a factor of 32
    that cancels); softmax is invariant to that shift.

    Args:
        dim: int.
        num_heads: int.
        gated: bool. The gate (`gru_rel_pos`); False adds the bias as is.
    """

    def __init__(self, dim: int = 768, num_heads: int = 12, gated: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads = _heads(dim, num_heads)
        self.gated = bool(gated)
        self.head_dim = self.dim // self.num_heads

    def build(self, input_shape):
        for name in ("query", "key", "value", "output"):
            setattr(self, f"{name}_kernel", self.add_weight(
                name=f"{name}_kernel", shape=(self.dim, self.dim),
                initializer="glorot_uniform"))
            setattr(self, f"{name}_bias", self.add_weight(
                name=f"{name}_bias", shape=(self.dim,), initializer="zeros"))
        if self.gated:
            self.gate_kernel = self.add_weight(name="gate_kernel", shape=(self.head_dim, 8),
                                               initializer="glorot_uniform")
            self.gate_bias = self.add_weight(name="gate_bias", shape=(8,), initializer="zeros")
            self.gate_scale = self.add_weight(name="gate_scale", shape=(self.num_heads,),
                                              initializer="ones")

    def _split(self, x, batch, length):
        return ops.transpose(ops.reshape(x, (batch, length, self.num_heads, self.head_dim)),
                             (0, 2, 1, 3))

    def call(self, inputs):
        tokens, bias = inputs
        batch, length = ops.shape(tokens)[0], ops.shape(tokens)[1]
        query = self._split(ops.matmul(tokens, self.query_kernel) + self.query_bias, batch, length)
        key = self._split(ops.matmul(tokens, self.key_kernel) + self.key_bias, batch, length)
        value = self._split(ops.matmul(tokens, self.value_kernel) + self.value_bias,
                            batch, length)
        logits = ops.matmul(query * (self.head_dim ** -0.5), ops.transpose(key, (0, 1, 3, 2)))
        bias = bias[None]
        if self.gated:
            gates = ops.matmul(query, self.gate_kernel) + self.gate_bias
            gates = ops.sigmoid(ops.sum(ops.reshape(gates, (batch, self.num_heads, length, 2, 4)),
                                        axis=-1))
            gate_a, gate_b = gates[..., 0:1], gates[..., 1:2]
            scale = ops.reshape(self.gate_scale, (1, self.num_heads, 1, 1))
            bias = (gate_a * (gate_b * scale - 1.0) + 2.0) * bias
        out = _attend(logits + bias, value, batch, length, self.dim)
        return ops.matmul(out, self.output_kernel) + self.output_bias

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "num_heads": self.num_heads, "gated": self.gated})
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class FusedSelfAttention(keras.layers.Layer):
    """Multi-head self-attention with one fused `dim -> 3 dim` projection
    (EAT's `AltAttention`: the output columns are `[q | k | v]`, each split
    into heads in order), scaled dot product, softmax, output projection.

    Args:
        dim: int.
        num_heads: int.
    """

    def __init__(self, dim: int = 768, num_heads: int = 12, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads = _heads(dim, num_heads)
        self.head_dim = self.dim // self.num_heads

    def build(self, input_shape):
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(self.dim, 3 * self.dim),
                                          initializer="glorot_uniform")
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * self.dim,),
                                        initializer="zeros")
        self.output_kernel = self.add_weight(name="output_kernel", shape=(self.dim, self.dim),
                                             initializer="glorot_uniform")
        self.output_bias = self.add_weight(name="output_bias", shape=(self.dim,),
                                           initializer="zeros")

    def call(self, tokens):
        batch, length = ops.shape(tokens)[0], ops.shape(tokens)[1]
        qkv = ops.matmul(tokens, self.qkv_kernel) + self.qkv_bias
        qkv = ops.transpose(ops.reshape(qkv, (batch, length, 3, self.num_heads, self.head_dim)),
                            (2, 0, 3, 1, 4))
        query, key, value = qkv[0], qkv[1], qkv[2]
        logits = ops.matmul(query * (self.head_dim ** -0.5), ops.transpose(key, (0, 1, 3, 2)))
        out = _attend(logits, value, batch, length, self.dim)
        return ops.matmul(out, self.output_kernel) + self.output_bias

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "num_heads": self.num_heads})
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class FixedPositions(keras.layers.Layer):
    """Adds the first `tokens` rows of a fixed position table (not trained).

    The table is a non-trainable weight of `max_positions` rows, filled with
    EAT's sin-cos values (`sincos_positions`) for `num_bands` bands; a
    converted checkpoint overwrites it with its own table.

    Args:
        dim: int.
        max_positions: int. Rows of the table (EAT: 768 time patches x 8).
        num_bands: int. Frequency patches per time patch.
    """

    def __init__(self, dim: int = 768, max_positions: int = 6144, num_bands: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_integer("dim", dim, 1)
        self.max_positions = check_integer("max_positions", max_positions, 1)
        self.num_bands = check_integer("num_bands", num_bands, 1)
        if self.max_positions % self.num_bands:
            raise ValueError(f"max_positions ({max_positions!r}) must be a multiple of "
                             f"num_bands ({num_bands!r}).")

    def build(self, input_shape):
        table = sincos_positions(self.dim, self.max_positions // self.num_bands, self.num_bands)
        self.positions = self.add_weight(
            name="positions", shape=table.shape, trainable=False,
            initializer=keras.initializers.Constant(table))

    def call(self, tokens):
        return tokens + self.positions[None, :ops.shape(tokens)[1]]

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "max_positions": self.max_positions,
                       "num_bands": self.num_bands})
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class ClassToken(keras.layers.Layer):
    """Prepends a learned token: `(batch, n, dim)` to `(batch, n + 1, dim)`.

    Args:
        dim: int.
    """

    def __init__(self, dim: int = 768, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_integer("dim", dim, 1)

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, self.dim),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, tokens):
        token = ops.broadcast_to(ops.cast(self.token, tokens.dtype),
                                 (ops.shape(tokens)[0], 1, self.dim))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim})
        return config
