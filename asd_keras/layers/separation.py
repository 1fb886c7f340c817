"""Front and back end of the CMGAN separator: scaling, STFT and ISTFT.

CMGAN (reference methods.md §E "Input") scales every utterance to unit RMS,
takes `torch.stft(n_fft=400, hop=100, window=hamming(400))` (centred,
reflect padding, periodic window) and compresses the magnitude as `|X|**0.3`
keeping the phase; the estimate is uncompressed with `**(1 / 0.3)`, inverted
by `torch.istft` and divided by the scale. The layers here do the same
inside the model, channels-last, with `keras.ops` only.
"""

import keras
import numpy as np
from keras import ops

from asd_keras.config import check_integer
from asd_keras.features.precision import Float32Layer

# Added to |X|^2 before the square root: it keeps the magnitude, the power
# law and their gradients finite at silent bins and is far below float32
# resolution of any audible bin.
_SQUARED_EPSILON = 1e-24


def _check_spectral(n_fft, hop_length, compress_factor):
    n_fft = check_integer("n_fft", n_fft, 4)
    if check_integer("hop_length", hop_length, 1) and n_fft % int(hop_length):
        raise ValueError(
            f"hop_length must be a positive divisor of n_fft ({n_fft}); "
            f"received {hop_length!r}.")
    if isinstance(compress_factor, bool) or not 0.0 < float(compress_factor) <= 1.0:
        raise ValueError(
            f"compress_factor must be in (0, 1]; received {compress_factor!r}.")
    return int(n_fft), int(hop_length), float(compress_factor)


def hamming_window(length):
    """Periodic Hamming window, `torch.hamming_window(length)`.

    Args:
        length: int.

    Returns:
        float32 NumPy array `(length,)`: `0.54 - 0.46 cos(2 pi n / length)`.
    """
    n = np.arange(length)
    return (0.54 - 0.46 * np.cos(2.0 * np.pi * n / length)).astype("float32")


def _overlap_add(frames, hop_length):
    """Overlap-adds `(batch, frames, n_fft)` at `hop_length`, `n_fft % hop == 0`."""
    count = frames.shape[-1] // hop_length
    num_frames = ops.shape(frames)[1]
    chunks = ops.reshape(frames, (-1, num_frames, count, hop_length))
    # Chunk k of frame t lands on hop block t + k.
    total = 0.0
    for k in range(count):
        total = total + ops.pad(chunks[:, :, k, :], ((0, 0), (k, count - 1 - k), (0, 0)))
    return ops.reshape(total, (ops.shape(frames)[0], -1))


@keras.saving.register_keras_serializable(package="asd_keras")
class RMSScaling(Float32Layer):
    """Per-utterance RMS scaling, CMGAN's `c = sqrt(N / sum(x**2))`.

    Computes `c` from `reference` and returns `signal * c`, or
    `signal / c` with `inverse=True` (reference methods.md §E "Input" 1:
    the noisy input is scaled by `c`, the estimate divided by it).

    Args:
        inverse: bool. Divide instead of multiply. Defaults to False.
        epsilon: float. Added to the mean square, so a silent reference
            gives a large but finite `c`. Defaults to `1e-12`.

    Call arguments:
        inputs: list `[signal, reference]` of float tensors
            `(batch, samples)`; the lengths may differ.

    Returns:
        float tensor shaped as `signal`.

    Example:
    >>> x = np.ones((1, 8), "float32") * 2
    >>> RMSScaling()([x, x])  # unit RMS: all ones
    """

    def __init__(self, inverse=False, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if float(epsilon) <= 0:
            raise ValueError(f"epsilon must be positive; received {epsilon!r}.")
        self.inverse = bool(inverse)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        signal, reference = inputs
        mean_square = ops.mean(ops.square(reference), axis=-1, keepdims=True)
        if self.inverse:
            return signal * ops.sqrt(mean_square + self.epsilon)
        return signal * ops.rsqrt(mean_square + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(inverse=self.inverse, epsilon=self.epsilon)
        return config


class _CompressedSpectrum(Float32Layer):
    """The STFT settings and config shared by the analysis and synthesis layers."""

    def __init__(self, n_fft=400, hop_length=100, compress_factor=0.3, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length, self.compress_factor = _check_spectral(
            n_fft, hop_length, compress_factor)
        self._window = hamming_window(self.n_fft)

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft, hop_length=self.hop_length,
                      compress_factor=self.compress_factor)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class SeparatorSTFT(_CompressedSpectrum):
    """Power-law compressed STFT, stacked as (magnitude, real, imaginary).

    `torch.stft(x, n_fft, hop_length, window=hamming_window(n_fft),
    center=True, pad_mode="reflect")`, so `samples` give
    `1 + samples // hop_length` frames and `n_fft // 2 + 1` bins; then
    `|X|**p` with the phase kept: channels `|X|**p`, `Re(X)|X|**(p-1)`,
    `Im(X)|X|**(p-1)` (CMGAN's generator input with the compressed
    magnitude prepended, reference methods.md §E "Input" 2-4).

    Args:
        n_fft: int. Window and FFT length. Defaults to `400`.
        hop_length: int. A divisor of `n_fft`. Defaults to `100`.
        compress_factor: float p in (0, 1]. Defaults to `0.3`.

    Call arguments:
        waveform: float tensor `(batch, samples)`, `samples > n_fft // 2`
            (reflect padding).

    Returns:
        float tensor `(batch, frames, n_fft // 2 + 1, 3)`.

    Example:
    >>> SeparatorSTFT()(np.zeros((2, 16000), "float32")).shape
    TensorShape([2, 161, 201, 3])
    """


    def call(self, waveform):
        real, imag = ops.stft(
            waveform, self.n_fft, self.hop_length, self.n_fft,
            window=self._window, center=True,
        )
        magnitude = ops.sqrt(ops.square(real) + ops.square(imag) + _SQUARED_EPSILON)
        gain = ops.power(magnitude, self.compress_factor - 1.0)
        return ops.stack(
            [ops.power(magnitude, self.compress_factor), real * gain, imag * gain],
            axis=-1,
        )

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else 1 + samples // self.hop_length
        return (input_shape[0], frames, self.n_fft // 2 + 1, 3)



@keras.saving.register_keras_serializable(package="asd_keras")
class SeparatorISTFT(_CompressedSpectrum):
    """Inverse of `SeparatorSTFT`: uncompress, inverse STFT, crop.

    The compressed `(real, imaginary)` pair is uncompressed to
    `|X| = |Xc|**(1/p)` with its phase, each frame is inverse-FFT'd,
    windowed and overlap-added, and the sum is divided by the overlap-added
    squared window; this is `torch.istft(center=True)`'s least-squares
    inverse. The centring padding is dropped and the signal is cut to the
    length of `reference`. `keras.ops.istft` is not used: on TensorFlow it
    normalises by the steady-state window sum, which is wrong over the first
    and last `n_fft - hop_length` samples of the padded signal, so the
    round trip would miss the first and last hop of the waveform.

    Args:
        n_fft: int. Defaults to `400`.
        hop_length: int. A divisor of `n_fft`. Defaults to `100`.
        compress_factor: float p in (0, 1]. Defaults to `0.3`.

    Call arguments:
        inputs: list `[spectrum, reference]`: the compressed spectrum
            `(batch, frames, n_fft // 2 + 1, 2)` (real, imaginary) and any
            `(batch, samples)` tensor giving the output length; a spectrum
            of `1 + samples // hop_length` frames covers all `samples`.

    Returns:
        float tensor `(batch, samples)`.

    Example:
    >>> x = np.random.randn(1, 1000).astype("float32")
    >>> y = SeparatorISTFT()([SeparatorSTFT()(x)[..., 1:], x])  # y == x
    """


    def call(self, inputs):
        spectrum, reference = inputs
        real, imag = spectrum[..., 0], spectrum[..., 1]
        magnitude = ops.sqrt(ops.square(real) + ops.square(imag) + _SQUARED_EPSILON)
        gain = ops.power(magnitude, 1.0 / self.compress_factor - 1.0)
        frames = ops.irfft((real * gain, imag * gain), fft_length=self.n_fft)
        window = ops.convert_to_tensor(self._window, dtype=frames.dtype)
        signal = _overlap_add(frames * window, self.hop_length)
        envelope = _overlap_add(
            ops.ones_like(frames[:1]) * ops.square(window), self.hop_length)
        signal = signal / envelope
        start = self.n_fft // 2
        return signal[:, start:start + ops.shape(reference)[-1]]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][-1])



@keras.saving.register_keras_serializable(package="asd_keras")
class MaskedRefinement(keras.layers.Layer):
    """CMGAN's output combination of the mask and the complex refinement.

    `Re = mask |Y|c cos(angle Y) + Re_ref`, `Im = mask |Y|c sin(angle Y) +
    Im_ref` (reference methods.md §E "Output"). `|Y|c cos(angle Y)` is the
    compressed real part itself, so the noisy phase is applied without an
    `atan2`.

    Call arguments:
        inputs: list `[noisy, mask, refinement]`: the `SeparatorSTFT` output
            `(batch, frames, bins, 3)`, the mask `(batch, frames, bins, 1)`
            and the refinement `(batch, frames, bins, 2)`.

    Returns:
        float tensor `(batch, frames, bins, 2)`: compressed (real, imaginary).
    """

    def call(self, inputs):
        noisy, mask, refinement = inputs
        return mask * noisy[..., 1:3] + refinement

    def compute_output_shape(self, input_shape):
        return input_shape[2]
