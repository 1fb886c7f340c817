"""Spectral features computed with `tf.signal`, usable inside `tf.data`.

Every function works on a single clip `(samples,)` or a batch
`(batch, samples)` and never mixes clips: a clip gives the same features
alone and inside a batch. Time comes before frequency in every output
(`(..., frames, bins)`).
"""

import sys

import librosa
import numpy as np
import tensorflow as tf

# `sys.float_info.epsilon` is the floor of the DCASE baselines' log
# (reference dcase.md section 2.1).
LOG_EPS = sys.float_info.epsilon
PAD_MODES = ("constant", "reflect")
LOG_MODES = ("max", "offset")


def _pad_last_axis(x, pad, mode):
    paddings = [[0, 0]] * (len(x.shape) - 1) + [[pad, pad]]
    return tf.pad(x, paddings, mode="REFLECT" if mode == "reflect" else "CONSTANT")


def stft_magnitude(
    waveform,
    n_fft=1024,
    hop_length=512,
    center=True,
    pad_mode="constant",
    power=1.0,
):
    """Magnitude (or power) STFT with a periodic Hann window.

    With `center=True` the signal is padded by `n_fft // 2` on both sides,
    as librosa does, giving `1 + samples // hop_length` frames. librosa
    0.10+ pads with zeros (`pad_mode="constant"`); librosa 0.6, used by the
    2020 and 2021 baselines, reflects (`pad_mode="reflect"`).

    Args:
        waveform: float32 tensor `(samples,)` or `(batch, samples)`.
        n_fft: int. FFT and window length.
        hop_length: int. Frame step.
        center: bool. librosa-style centred frames.
        pad_mode: str. `"constant"` or `"reflect"`, for `center=True`.
        power: float. 1 for magnitude, 2 for power.

    Returns:
        float32 tensor `(..., frames, n_fft // 2 + 1)`.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(
            f"pad_mode must be one of {PAD_MODES}; received {pad_mode!r}."
        )
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    if center:
        waveform = _pad_last_axis(waveform, n_fft // 2, pad_mode)
    stft = tf.signal.stft(
        waveform,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    magnitude = tf.abs(stft)
    if power == 1.0:
        return magnitude
    if power == 2.0:
        return tf.square(magnitude)
    return tf.pow(magnitude, power)


def mel_filterbank(sample_rate=16000, n_fft=1024, n_mels=128, fmin=0.0, fmax=None):
    """Slaney-style mel filterbank `(n_fft // 2 + 1, n_mels)`, as librosa's.

    The DCASE baselines use `librosa.feature.melspectrogram` defaults (Slaney
    mel scale and area normalisation), which differ from TensorFlow's
    HTK-style `linear_to_mel_weight_matrix`; librosa builds the matrix so
    the features match the baselines exactly.
    """
    weights = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    return np.ascontiguousarray(weights.T, dtype=np.float32)


class LogMelFrontend:
    """Log-mel spectrogram and stacked-frame vectors of the DCASE baselines.

    Reproduces `librosa.feature.melspectrogram(n_fft=1024, hop_length=512,
    n_mels=128, power=2)` followed by `10 * log10(max(mel, eps))` (2021+) or
    `10 * log10(mel + eps)` (2020), and the stacking of `n_frames`
    consecutive frames into one vector (reference dcase.md section 2.1). A
    10 s clip at 16 kHz gives 313 frames and 309 vectors of 640 values.

    Args:
        sample_rate: int. Defaults to `16000`.
        n_fft: int. Defaults to `1024`.
        hop_length: int. Defaults to `512`.
        n_mels: int. Defaults to `128`.
        n_frames: int. Frames stacked per vector. Defaults to `5`.
        power: float. Defaults to `2.0`.
        log_mode: str. `"max"` for `log10(max(mel, eps))` (2021+) or
            `"offset"` for `log10(mel + eps)` (2020). Defaults to `"max"`.
        pad_mode: str. `"constant"` (librosa >= 0.10, 2022+ baselines) or
            `"reflect"` (librosa 0.6, 2020/2021 baselines).

    Example:
    >>> frontend = LogMelFrontend()
    >>> frontend.vectors(tf.zeros([160000])).shape
    TensorShape([309, 640])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=1024,
        hop_length=512,
        n_mels=128,
        n_frames=5,
        power=2.0,
        log_mode="max",
        pad_mode="constant",
    ):
        if log_mode not in LOG_MODES:
            raise ValueError(
                f"log_mode must be one of {LOG_MODES}; received {log_mode!r}."
            )
        if pad_mode not in PAD_MODES:
            raise ValueError(
                f"pad_mode must be one of {PAD_MODES}; received {pad_mode!r}."
            )
        if int(n_frames) < 1:
            raise ValueError(f"n_frames must be >= 1; received {n_frames!r}.")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.n_frames = int(n_frames)
        self.power = float(power)
        self.log_mode = log_mode
        self.pad_mode = pad_mode
        self._weights = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels)

    @property
    def vector_dim(self):
        """Length of one stacked vector: `n_mels * n_frames`."""
        return self.n_mels * self.n_frames

    @property
    def min_samples(self):
        """Fewest samples that still give one stacked vector."""
        return (self.n_frames - 1) * self.hop_length + 1

    def num_vectors(self, samples):
        """Stacked vectors that a clip of `samples` samples gives.

        Args:
            samples: clip length in samples.

        Returns:
            The number of vectors (zero or less when the clip is shorter than
            `min_samples`).
        """
        return 1 + int(samples) // self.hop_length - self.n_frames + 1

    def get_config(self):
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "n_frames": self.n_frames,
            "power": self.power,
            "log_mode": self.log_mode,
            "pad_mode": self.pad_mode,
        }

    def mel_power(self, waveform):
        """Mel spectrogram before the log, `(..., frames, n_mels)`."""
        spectrum = stft_magnitude(
            waveform,
            self.n_fft,
            self.hop_length,
            center=True,
            pad_mode=self.pad_mode,
            power=self.power,
        )
        return tf.tensordot(spectrum, tf.constant(self._weights), axes=1)

    def spectrogram(self, waveform):
        """Log-mel spectrogram in dB, `(..., frames, n_mels)`."""
        mel = self.mel_power(waveform)
        if self.log_mode == "max":
            mel = tf.maximum(mel, LOG_EPS)
        else:
            mel = mel + LOG_EPS
        return (20.0 / self.power) * (tf.math.log(mel) / np.log(10.0))

    def vectors(self, waveform):
        """Stacked log-mel vectors, `(..., frames - n_frames + 1, dim)`."""
        return stack_frames(self.spectrogram(waveform), self.n_frames)


def stack_frames(spectrogram, n_frames=5):
    """Concatenates `n_frames` consecutive frames, frame-major.

    Vector t is `concat(S[t], S[t + 1], ..., S[t + n_frames - 1])`, as in the
    DCASE baselines.

    Args:
        spectrogram: tensor `(..., frames, bins)`.
        n_frames: int.

    Returns:
        tensor `(..., frames - n_frames + 1, n_frames * bins)`.
    """
    framed = tf.signal.frame(spectrogram, n_frames, 1, axis=-2)
    shape = tf.shape(framed)
    bins = spectrogram.shape[-1]
    new_shape = tf.concat([shape[:-2], [n_frames * bins]], axis=0)
    return tf.reshape(framed, new_shape)


def linear_spectrogram(waveform, n_fft=1024, hop_length=512):
    """Linear-magnitude STFT without centring (Wilkinghoff's input).

    `tf.signal.stft(frame_length=n_fft, frame_step=hop_length)` with a
    periodic Hann window, no padding, then `abs` (reference wilkinghoff.md,
    spectrogram branch): 311 x 513 for 160000 samples.

    Returns:
        float32 tensor `(..., 1 + (samples - n_fft) // hop_length,
        n_fft // 2 + 1)`.
    """
    return stft_magnitude(waveform, n_fft, hop_length, center=False, power=1.0)


def clip_spectrum(waveform):
    """Magnitude spectrum of the whole clip, first `samples // 2` bins.

    The complex FFT of the full waveform truncated to half its length, i.e.
    without the Nyquist bin that `rfft` would add (reference wilkinghoff.md,
    full-signal spectrum branch): 80000 bins for 160000 samples.

    Returns:
        float32 tensor `(..., samples // 2)`.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    spectrum = tf.abs(tf.signal.fft(tf.complex(waveform, tf.zeros_like(waveform))))
    half = tf.shape(waveform)[-1] // 2
    return spectrum[..., :half]
