"""CMGAN's TSCNet generator as a waveform-to-waveform separator.

The model follows CMGAN's `TSCNet` (ruizhecao96/CMGAN
`src/models/generator.py`, reference methods.md §E) channels-last:

    waveform (B, N) -> RMS scaling -> compressed STFT (B, T, 201, 3)
    -> DenseEncoder (B, T, 101, width)          [tap_0]
    -> num_blocks x TwoStageConformer            [tap_1 ... tap_N]
    -> MaskDecoder (B, T, 201, 1) and ComplexDecoder (B, T, 201, 2)
    -> mask * noisy + refinement -> uncompress, ISTFT -> / c -> (B, N)

with `T = 1 + N // hop_length`. Only the generator is built: CMGAN's metric
discriminator and its GAN loss are not part of this model, because the
separator is trained by SI-SDR alone.

Layer names map onto the PyTorch modules: `encoder_*` is `dense_encoder`
(`encoder_dense{i}_*` its `dilated_dense.{conv,norm,prelu}{i}`),
`tsconformer_{i}` is `TSCB_{i}`, `mask_*` is `mask_decoder` and
`complex_*` is `complex_decoder`. Weights start as PyTorch's defaults
(uniform +-1/sqrt(fan_in) kernels and biases, PReLU slopes 0.25, norms at
one and zero).

Deviations from CMGAN:

- `num_blocks` and `width` are free (TSCNet has 4 blocks of 64 channels).
- The RMS scaling and the STFT run inside the model, and the scale has a
  small epsilon so a silent input does not divide by zero.
- The STFT magnitude carries a `1e-24` epsilon under its square root (finite
  gradients at silent bins), and `mask * |Y|c * cos(angle Y)` is computed as
  `mask * Re(Yc)`, the same value without an `atan2`.
- The inverse STFT divides by the exact overlap-added window, so it returns
  all `N` samples of any length. CMGAN's `evaluation.py` instead pads the
  input to a multiple of the hop with its own first samples, splits long
  files into chunks, and crops `torch.istft`'s output to `N`.
- Keras counts BatchNormalization's moving mean and variance in
  `count_params()` (PyTorch keeps them as buffers): `8 * width` more
  per two-stage block than PyTorch's `sum(p.numel())`. The trainable
  weights match TSCNet's exactly: 1,834,833 at width 64 with 4 blocks.
"""

import random

import keras

from asd_keras.config import check_integer
from asd_keras.layers.conformer import TwoStageConformer
from asd_keras.layers.conformer import torch_uniform
from asd_keras.layers.separation import MaskedRefinement
from asd_keras.layers.separation import RMSScaling
from asd_keras.layers.separation import SeparatorISTFT
from asd_keras.layers.separation import SeparatorSTFT

_DENSE_DEPTH = 4
# nn.InstanceNorm2d(affine=True) eps.
_NORM_EPSILON = 1e-5
TAP_PREFIX = "tap_"


class _Builder:
    """Creates the named layers of one separator, each with its own seeds."""

    def __init__(self, seed):
        self._rng = None if seed is None else random.Random(int(seed))

    def seed(self):
        return None if self._rng is None else self._rng.randrange(2**31 - 1)

    def conv(self, x, filters, kernel, name, strides=(1, 1), dilation=(1, 1)):
        """Valid `Conv2D` with PyTorch's default initialisation."""
        fan_in = x.shape[-1] * kernel[0] * kernel[1]
        return keras.layers.Conv2D(
            filters, kernel, strides=strides, dilation_rate=dilation,
            padding="valid",
            kernel_initializer=torch_uniform(fan_in, self.seed()),
            bias_initializer=torch_uniform(fan_in, self.seed()),
            name=name,
        )(x)

    @staticmethod
    def norm_prelu(x, name):
        """`nn.InstanceNorm2d(affine=True)` then `nn.PReLU(channels)`."""
        # GroupNormalization with one channel per group is instance norm
        # with a per-channel affine; stats over (time, freq) of each sample.
        x = keras.layers.GroupNormalization(
            groups=-1, epsilon=_NORM_EPSILON, name=f"{name}_norm")(x)
        # nn.PReLU's slopes start at 0.25; one per channel.
        return keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25),
            shared_axes=[1, 2], name=f"{name}_prelu")(x)

    def dilated_dense(self, x, name):
        """CMGAN's `DilatedDenseNet(depth=4)` on `(B, T, F, C)`."""
        width = x.shape[-1]
        skip = x
        for i in range(_DENSE_DEPTH):
            dilation = 2**i
            prefix = f"{name}{i + 1}"
            # Causal in time: `dilation` zero frames before, none after;
            # frequency padded (1, 1) (reference methods.md §E DenseEncoder).
            out = keras.layers.ZeroPadding2D(
                ((dilation, 0), (1, 1)), name=f"{prefix}_pad")(skip)
            out = self.conv(out, width, (2, 3), f"{prefix}_conv",
                            dilation=(dilation, 1))
            out = self.norm_prelu(out, prefix)
            if i < _DENSE_DEPTH - 1:
                # torch.cat([out, skip]): new features first (methods.md §E),
                # which fixes the kernel's input-channel order.
                skip = keras.layers.Concatenate(name=f"{prefix}_concat")([out, skip])
        return out

    def sub_pixel(self, x, name):
        """`SPConvTranspose2d(r=2)`: frequency F -> 2F, same channels."""
        width = x.shape[-1]
        bins = x.shape[2]
        x = keras.layers.ZeroPadding2D(((0, 0), (1, 1)), name=f"{name}_pad")(x)
        x = self.conv(x, 2 * width, (1, 3), f"{name}_conv")
        # torch views (B, 2C, T, F) as (B, r, C, T, F) and moves r after F:
        # channel k * C + c goes to frequency 2 f + k. Channels-last that is
        # (B, T, F, 2C) -> (B, T, F, 2, C) -> (B, T, 2F, C).
        x = keras.layers.Reshape((-1, bins, 2, width), name=f"{name}_split")(x)
        return keras.layers.Reshape((-1, 2 * bins, width), name=f"{name}_shuffle")(x)


def _check_arguments(width, num_blocks, n_fft, num_heads, dropout, num_samples):
    width = check_integer("width", width, 4)
    num_heads = check_integer("num_heads", num_heads, 1)
    if width % num_heads:
        raise ValueError(
            f"width must be divisible by num_heads ({num_heads}); "
            f"received width={width!r}.")
    num_blocks = check_integer("num_blocks", num_blocks, 0)
    n_fft = check_integer("n_fft", n_fft, 4)
    if n_fft % 4:
        # The encoder halves the (n_fft/2 + 1) bins and the decoders double
        # them and drop one; that returns to n_fft/2 + 1 only if it is odd.
        raise ValueError(f"n_fft must be a multiple of 4; received {n_fft!r}.")
    if isinstance(dropout, bool) or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1); received {dropout!r}.")
    if num_samples is not None:
        # Reflect padding needs more than n_fft // 2 samples.
        num_samples = check_integer("num_samples", num_samples, n_fft // 2 + 1)
    return width, num_blocks, n_fft, num_heads, num_samples


def build_separator(width=64, num_blocks=4, n_fft=400, hop_length=100,
                    compress_factor=0.3, num_heads=4, dropout=0.2,
                    num_samples=None, seed=None, name="separator"):
    """CMGAN's TSCNet generator from waveform to estimated waveform.

    Args:
        width: int. Channels of the encoder, conformers and decoders; at
            least 4 and divisible by `num_heads`. Defaults to `64`.
        num_blocks: int. Two-stage conformer blocks, `>= 0`. Defaults to `4`.
        n_fft: int. STFT window and FFT length, a multiple of 4. Defaults to
            `400` (201 bins).
        hop_length: int. STFT hop, a divisor of `n_fft`. Defaults to `100`.
        compress_factor: float. Magnitude power law in (0, 1]. Defaults to
            `0.3`.
        num_heads: int. Attention heads; `head_dim = width // num_heads`.
            Defaults to `4`.
        dropout: float. Attention and feed-forward dropout of the
            conformers. Defaults to `0.2`.
        num_samples: int or None. Fixed input length; `None` (default)
            accepts any length above `n_fft // 2`.
        seed: int or None. Seeds every initialiser: the same seed builds the
            same weights.
        name: str. Model name. Defaults to `"separator"`.

    Returns:
        keras.Model `(batch, num_samples)` -> `(batch, num_samples)`, input
        named `waveform`. Layers `tap_0` (encoder output) ... `tap_N` (block
        outputs), each `(batch, frames, n_fft // 4 + 1, width)`, feed
        `separator_feature_model`.

    Raises:
        ValueError: if an argument is out of range.

    Example:
    >>> model = build_separator(width=16, num_blocks=1)  # doctest: +SKIP
    >>> model(np.zeros((1, 4000), "float32")).shape  # doctest: +SKIP
    TensorShape([1, 4000])
    """
    width, num_blocks, n_fft, num_heads, num_samples = _check_arguments(
        width, num_blocks, n_fft, num_heads, dropout, num_samples)
    builder = _Builder(seed)

    waveform = keras.Input((num_samples,), name="waveform")
    scaled = RMSScaling(name="rms_scale")([waveform, waveform])
    noisy = SeparatorSTFT(n_fft, hop_length, compress_factor, name="stft")(scaled)

    # DenseEncoder.
    x = builder.conv(noisy, width, (1, 1), "encoder_conv")
    x = builder.norm_prelu(x, "encoder_conv")
    x = builder.dilated_dense(x, "encoder_dense")
    x = keras.layers.ZeroPadding2D(((0, 0), (1, 1)), name="encoder_down_pad")(x)
    x = builder.conv(x, width, (1, 3), "encoder_down_conv", strides=(1, 2))
    x = builder.norm_prelu(x, "encoder_down")
    # The taps stay on the main path, so they are part of the graph.
    x = keras.layers.Identity(name=f"{TAP_PREFIX}0")(x)

    for index in range(1, num_blocks + 1):
        x = TwoStageConformer(
            width, num_heads=num_heads, head_dim=width // num_heads,
            attn_dropout=dropout, ff_dropout=dropout, seed=builder.seed(),
            name=f"tsconformer_{index}",
        )(x)
        x = keras.layers.Identity(name=f"{TAP_PREFIX}{index}")(x)

    # MaskDecoder.
    mask = builder.dilated_dense(x, "mask_dense")
    mask = builder.sub_pixel(mask, "mask_subpixel")
    mask = builder.conv(mask, 1, (1, 2), "mask_conv")
    mask = builder.norm_prelu(mask, "mask_conv")
    mask = builder.conv(mask, 1, (1, 1), "mask_final_conv")
    # nn.PReLU(201, init=-0.25) on (B, F, T): one slope per frequency bin,
    # starting negative (reference methods.md §E MaskDecoder).
    mask = keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(-0.25),
        shared_axes=[1, 3], name="mask_freq_prelu")(mask)

    # ComplexDecoder.
    refinement = builder.dilated_dense(x, "complex_dense")
    refinement = builder.sub_pixel(refinement, "complex_subpixel")
    refinement = builder.norm_prelu(refinement, "complex_subpixel")
    refinement = builder.conv(refinement, 2, (1, 2), "complex_conv")

    estimate = MaskedRefinement(name="estimate")([noisy, mask, refinement])
    output = SeparatorISTFT(n_fft, hop_length, compress_factor, name="istft")(
        [estimate, waveform])
    output = RMSScaling(inverse=True, name="rms_unscale")([output, waveform])
    return keras.Model(waveform, output, name=name)


def separator_feature_model(separator):
    """The separator's encoder and conformer outputs, sharing its layers.

    Args:
        separator: a model from `build_separator` (or loaded from one).

    Returns:
        keras.Model from the separator's input to the list of the outputs
        of layers `tap_0` ... `tap_N`: the dense-encoder output and each
        two-stage conformer output, `(batch, frames, n_fft // 4 + 1, width)`.
        With `num_blocks=0` the list has one entry, and Keras returns that
        one tensor itself when the model is called.

    Raises:
        ValueError: if `separator` has no `tap_0` layer.
    """
    taps = {}
    for layer in separator.layers:
        suffix = layer.name[len(TAP_PREFIX):]
        if layer.name.startswith(TAP_PREFIX) and suffix.isdigit():
            taps[int(suffix)] = layer
    if 0 not in taps or sorted(taps) != list(range(len(taps))):
        raise ValueError(
            f"Model {separator.name!r} has no tap_0 ... tap_N layers; received "
            f"tap indices {sorted(taps)}. Build it with build_separator.")
    outputs = [taps[i].output for i in range(len(taps))]
    return keras.Model(separator.input, outputs, name=f"{separator.name}_features")
