"""Spectral front-end layers of the Wilkinghoff embedding model.

They run inside the model (not the input pipeline) because the reference
computes them on the mixed-up waveform (reference wilkinghoff.md §2-3), and
because an exported SavedModel must map raw audio to a score.
"""

import keras
from keras import ops

from asd_keras.features.precision import Float32Layer


@keras.saving.register_keras_serializable(package="asd_keras")
class LinearSpectrogram(Float32Layer):
    """Linear-magnitude STFT without centring.

    `|STFT|` with a periodic Hann window, `fft_length = frame_length` and no
    padding: 160000 samples give 311 frames x 513 bins (reference
    wilkinghoff.md §2, spectrogram branch; no power, log or mel).

    Args:
        frame_length: int. Window and FFT length. Defaults to `1024`.
        frame_step: int. Hop length. Defaults to `512`.

    Call arguments:
        waveform: float tensor `(batch, samples)`.

    Returns:
        float tensor `(batch, frames, frame_length // 2 + 1)`.

    Example:
    >>> LinearSpectrogram()(np.zeros((2, 160000), "float32")).shape
    (2, 311, 513)
    """

    def __init__(self, frame_length=1024, frame_step=512, **kwargs):
        super().__init__(**kwargs)
        if int(frame_length) <= 0 or int(frame_step) <= 0:
            raise ValueError(
                "frame_length and frame_step must be positive; received "
                f"{frame_length!r} and {frame_step!r}."
            )
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)

    def call(self, waveform):
        real, imag = ops.stft(
            waveform,
            sequence_length=self.frame_length,
            sequence_stride=self.frame_step,
            fft_length=self.frame_length,
            window="hann",
            center=False,
        )
        return ops.sqrt(ops.square(real) + ops.square(imag))

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None
        if samples is not None:
            frames = 1 + (samples - self.frame_length) // self.frame_step
        return (*input_shape[:-1], frames, self.frame_length // 2 + 1)

    def get_config(self):
        config = super().get_config()
        config.update(frame_length=self.frame_length, frame_step=self.frame_step)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class ClipSpectrum(Float32Layer):
    """Magnitude spectrum of the whole clip, first `samples // 2` bins.

    The reference takes the complex FFT of the waveform and keeps the first
    half, so the Nyquist bin that `rfft` would add is dropped (reference
    wilkinghoff.md §2, full-signal spectrum branch).

    Call arguments:
        waveform: float tensor `(batch, samples)`.

    Returns:
        float tensor `(batch, samples // 2)`.
    """

    def call(self, waveform):
        # The real FFT gives the complex FFT's first half of a real signal
        # at half the cost.
        real, imag = ops.rfft(waveform)
        half = ops.shape(waveform)[-1] // 2
        magnitude = ops.sqrt(ops.square(real) + ops.square(imag))
        return magnitude[..., :half]

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        return (*input_shape[:-1], None if samples is None else samples // 2)


@keras.saving.register_keras_serializable(package="asd_keras")
class TemporalMeanNormalization(Float32Layer):
    """Subtracts the mean over time from every frequency bin of each clip.

    The reference's "CMN-like normalization", applied to the linear
    magnitude, so the output is signed (reference wilkinghoff.md §2).

    Args:
        axis: int. The time axis. Defaults to `1`.
    """

    def __init__(self, axis=1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        return inputs - ops.mean(inputs, axis=self.axis, keepdims=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis)
        return config


LENGTH_POLICIES = ("truncate", "pad", "tile_crop")


@keras.saving.register_keras_serializable(package="asd_keras")
class FixedLength(Float32Layer):
    """Brings waveforms of any length to the fixed input length of a model.

    The serving-time twin of `AudioLoader`'s length policy (without its
    random training crop): `"truncate"` keeps the first `length` samples,
    `"pad"` also zero-pads shorter clips, `"tile_crop"` repeats a clip until
    it holds `length` samples and keeps the first `length` (the DCASE 2023
    system tiles 6-18 s clips to 18 s, reference wilkinghoff.md §1).

    Args:
        length: int. Output samples.
        policy: str. `"truncate"`, `"pad"` or `"tile_crop"`.

    Call arguments:
        waveform: float tensor `(batch, samples)`; for `"truncate"`,
            `samples >= length`.

    Returns:
        float tensor `(batch, length)`.
    """

    def __init__(self, length: int, policy: str = "truncate", **kwargs):
        super().__init__(**kwargs)
        if int(length) < 1:
            raise ValueError(f"length must be >= 1; received {length!r}.")
        if policy not in LENGTH_POLICIES:
            raise ValueError(f"policy must be one of {LENGTH_POLICIES}; received {policy!r}.")
        self.length, self.policy = int(length), policy

    def call(self, waveform):
        n = self.length
        if self.policy == "pad":
            waveform = waveform[:, :n]
            return ops.pad(waveform, [[0, 0], [0, n - ops.shape(waveform)[1]]])
        if self.policy == "tile_crop":
            samples = ops.shape(waveform)[1]
            repeats = (n + samples - 1) // samples
            waveform = ops.tile(waveform, [1, repeats])
        return ops.reshape(waveform[:, :n], (-1, n))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def get_config(self):
        config = super().get_config()
        config.update(length=self.length, policy=self.policy)
        return config
