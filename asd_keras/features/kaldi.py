"""Kaldi-compatible log-mel filter banks, the front end of BEATs and EAT.

Both encoders were pre-trained on `torchaudio.compliance.kaldi.fbank`
features (reference methods.md §C1, §C2), so a port must reproduce that
function, not a librosa-style log-mel. Per frame (25 ms, 10 ms shift,
`snip_edges`: only frames that fit entirely): remove the frame's DC offset,
pre-emphasise (0.97, the first sample replicated), window (Povey = Hann
** 0.85, or Hann; both symmetric), zero-pad to the next power of two, take
the power spectrum, apply Kaldi's triangular mel bank (mel = 1127 ln(1 + f
/ 700), 20 Hz to Nyquist, zero weight on the Nyquist bin) and the natural
log of at least float32 epsilon. Then the encoders' own steps: BEATs scales
the waveform by 2**15 first; EAT removes the waveform's mean first and pads
or crops to a fixed number of frames before normalising.
"""

import keras
import numpy as np
from keras import ops

from asd_keras.features.filterbanks import FILTER_BANKS
from asd_keras.features.filterbanks import filter_bank_matrix
from asd_keras.features.filterbanks import kaldi_mel_banks  # noqa: F401  (public here too)
from asd_keras.features.precision import Float32Layer

WINDOWS = ("povey", "hanning")
# torch.finfo(torch.float32).eps: Kaldi's log floor.
_LOG_FLOOR = float(np.finfo(np.float32).eps)


def kaldi_window(window_type, length):
    """Kaldi's symmetric analysis window: `"povey"` (Hann ** 0.85) or
    `"hanning"`, as float32 `(length,)`."""
    if window_type not in WINDOWS:
        raise ValueError(f"window_type must be one of {WINDOWS}; received {window_type!r}.")
    n = np.arange(length, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))
    return (hann ** 0.85 if window_type == "povey" else hann).astype(np.float32)


@keras.saving.register_keras_serializable(package="asd_keras")
class KaldiFbank(Float32Layer):
    """Waveforms `(batch, samples)` to Kaldi log filter-bank energies
    `(batch, frames, num_mel_bins)`, normalised as an encoder expects.

    The bank is Kaldi's mel bank by default. `filter_bank="linear"` or
    `"gammatone"` puts another bank on the same power spectrum (see
    `asd_keras.features.filterbanks`); every other step stays the same.

    `frames = 1 + (samples - frame_length) // frame_shift` (Kaldi's
    `snip_edges`), or `num_frames` when given: the features are then cut or
    zero-padded at the end (before normalisation, as EAT's
    `feature_extract.py`). The output is `(fbank - norm_mean) / (2 *
    norm_std)`, the AudioSet normalisation both encoders use.

    Args:
        sample_rate: int. Defaults to `16000`.
        num_mel_bins: int. Number of filters, whatever the bank (the name
            is Kaldi's). Defaults to `128`.
        frame_length_ms: float. Defaults to `25.0`.
        frame_shift_ms: float. Defaults to `10.0`.
        window_type: str. `"povey"` (BEATs) or `"hanning"` (EAT).
        preemphasis: float. Defaults to `0.97`.
        low_freq: float. Defaults to `20.0`.
        waveform_scale: float. Multiplies the waveform first (BEATs:
            `32768.0`, 16-bit integer range).
        subtract_waveform_mean: bool. Removes each clip's mean first (EAT).
        num_frames: int or None. Fixed output length (EAT: 1024 for 10 s).
        norm_mean: float. BEATs 15.41663, EAT -4.268.
        norm_std: float. BEATs 6.55582, EAT 4.569.
        filter_bank: str. `"mel"` (Kaldi's, what BEATs and EAT were
            pre-trained on), `"linear"` (triangles evenly spaced in Hz, the
            m-FB of "An Enhanced Audio Feature Tailored for ASD Based on
            Pre-trained Models") or `"gammatone"` (ERB-rate spaced, its
            g-FB ablation). Defaults to `"mel"`.
        high_freq: float. Highest bank edge in Hz; `<= 0` is an offset
            from the Nyquist frequency (Kaldi's convention). Defaults to
            `0.0` (Nyquist).

    Example:
    >>> fbank = KaldiFbank(window_type="povey", waveform_scale=32768.0,
    ...                    norm_mean=15.41663, norm_std=6.55582)
    >>> fbank(np.zeros((2, 16000), "float32")).shape
    TensorShape([2, 98, 128])
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 128,
                 frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                 window_type: str = "povey", preemphasis: float = 0.97,
                 low_freq: float = 20.0, waveform_scale: float = 1.0,
                 subtract_waveform_mean: bool = False, num_frames: int = None,
                 norm_mean: float = 0.0, norm_std: float = 0.5, filter_bank: str = "mel",
                 high_freq: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if window_type not in WINDOWS:
            raise ValueError(f"window_type must be one of {WINDOWS}; received {window_type!r}.")
        if filter_bank not in FILTER_BANKS:
            raise ValueError(
                f"filter_bank must be one of {FILTER_BANKS}; received {filter_bank!r}.")
        if num_mel_bins < 4:
            raise ValueError(f"num_mel_bins must be at least 4; received {num_mel_bins!r}.")
        if norm_std <= 0:
            raise ValueError(f"norm_std must be positive; received {norm_std!r}.")
        if num_frames is not None and int(num_frames) < 1:
            raise ValueError(f"num_frames must be positive or None; received {num_frames!r}.")
        self.sample_rate = int(sample_rate)
        self.num_mel_bins = int(num_mel_bins)
        self.frame_length_ms = float(frame_length_ms)
        self.frame_shift_ms = float(frame_shift_ms)
        self.window_type = window_type
        self.preemphasis = float(preemphasis)
        self.low_freq = float(low_freq)
        self.waveform_scale = float(waveform_scale)
        self.subtract_waveform_mean = bool(subtract_waveform_mean)
        self.num_frames = None if num_frames is None else int(num_frames)
        self.norm_mean = float(norm_mean)
        self.norm_std = float(norm_std)
        self.filter_bank = filter_bank
        self.high_freq = float(high_freq)
        # Kaldi truncates the millisecond sizes to whole samples.
        self.window_size = int(self.sample_rate * self.frame_length_ms * 0.001)
        self.window_shift = int(self.sample_rate * self.frame_shift_ms * 0.001)
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError(
                f"frame_length_ms={frame_length_ms!r} and frame_shift_ms={frame_shift_ms!r} "
                f"give fewer than 2 samples per frame at {sample_rate} Hz.")
        self.fft_length = 1 << (self.window_size - 1).bit_length()
        self._window = kaldi_window(window_type, self.window_size)
        # Bad edges (low_freq, high_freq) are rejected here, by the bank.
        self._banks = filter_bank_matrix(self.filter_bank, self.num_mel_bins, self.fft_length,
                                         self.sample_rate, self.low_freq, self.high_freq)

    def frames_for(self, num_samples):
        """Frames of a clip of `num_samples` samples (before `num_frames`)."""
        return max(0, 1 + (int(num_samples) - self.window_size) // self.window_shift)

    def call(self, waveform):
        waveform = ops.cast(waveform, "float32")
        if self.subtract_waveform_mean:
            waveform = waveform - ops.mean(waveform, axis=-1, keepdims=True)
        if self.waveform_scale != 1.0:
            waveform = waveform * self.waveform_scale
        num_samples = ops.shape(waveform)[-1]
        count = 1 + (num_samples - self.window_size) // self.window_shift
        index = (ops.arange(count)[:, None] * self.window_shift
                 + ops.arange(self.window_size)[None, :])
        frames = ops.take(waveform, index, axis=1)
        frames = frames - ops.mean(frames, axis=-1, keepdims=True)
        if self.preemphasis != 0.0:
            previous = ops.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
            frames = frames - self.preemphasis * previous
        frames = frames * ops.convert_to_tensor(self._window)
        real, imag = ops.rfft(frames, fft_length=self.fft_length)
        power = real * real + imag * imag
        energies = ops.matmul(power, ops.convert_to_tensor(self._banks))
        fbank = ops.log(ops.maximum(energies, _LOG_FLOOR))
        if self.num_frames is not None:
            fbank = fbank[:, :self.num_frames]
            missing = ops.maximum(self.num_frames - ops.shape(fbank)[1], 0)
            fbank = ops.pad(fbank, ((0, 0), (0, missing), (0, 0)))
            fbank = ops.reshape(fbank, (-1, self.num_frames, self.num_mel_bins))
        return (fbank - self.norm_mean) / (2.0 * self.norm_std)

    def compute_output_shape(self, input_shape):
        frames = self.num_frames
        if frames is None and input_shape[-1] is not None:
            frames = self.frames_for(input_shape[-1])
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        config = super().get_config()
        config.update({
            "sample_rate": self.sample_rate, "num_mel_bins": self.num_mel_bins,
            "frame_length_ms": self.frame_length_ms, "frame_shift_ms": self.frame_shift_ms,
            "window_type": self.window_type, "preemphasis": self.preemphasis,
            "low_freq": self.low_freq, "waveform_scale": self.waveform_scale,
            "subtract_waveform_mean": self.subtract_waveform_mean,
            "num_frames": self.num_frames, "norm_mean": self.norm_mean,
            "norm_std": self.norm_std, "filter_bank": self.filter_bank,
            "high_freq": self.high_freq,
        })
        return config
