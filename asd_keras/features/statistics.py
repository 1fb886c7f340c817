"""Log-mel spectrogram and its per-band statistics over time, as layers.

Both run inside `serving_model` and inside the `tf.data` pipeline of the
`logmel_stats` extractor, so the exported model and `transform` share one
implementation of the features.
"""

import keras
from keras import ops

from asd_keras.features.spectral import LogMelFrontend
from asd_keras.features.precision import Float32Layer
from asd_keras.features.spectral import stack_frames

STATISTICS = ("mean_std", "mean", "std")


@keras.saving.register_keras_serializable(package="asd_keras")
class LogMelSpectrogram(Float32Layer):
    """The DCASE log-mel spectrogram in dB (`LogMelFrontend.spectrogram`).

    The computation is `LogMelFrontend`'s (TensorFlow ops), so the layer
    needs the TensorFlow backend; it has no weights.

    Args:
        sample_rate: int. Defaults to `16000`.
        n_fft: int. Defaults to `1024`.
        hop_length: int. Defaults to `512`.
        n_mels: int. Defaults to `128`.
        power: float. Defaults to `2.0`.
        log_mode: str. `"max"` (2021+) or `"offset"` (2020).
        pad_mode: str. `"constant"` (2022+) or `"reflect"` (2020/2021).

    Call arguments:
        waveform: float tensor `(batch, samples)`.

    Returns:
        float tensor `(batch, 1 + samples // hop_length, n_mels)`.

    Example:
    >>> LogMelSpectrogram()(np.zeros((2, 16000), "float32")).shape
    TensorShape([2, 32, 128])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=1024,
        hop_length=512,
        n_mels=128,
        power=2.0,
        log_mode="max",
        pad_mode="constant",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # LogMelFrontend validates the arguments and owns the mel matrix.
        self.frontend = LogMelFrontend(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            power=power,
            log_mode=log_mode,
            pad_mode=pad_mode,
        )

    def call(self, waveform):
        return self.frontend.spectrogram(waveform)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else 1 + samples // self.frontend.hop_length
        return (*input_shape[:-1], frames, self.frontend.n_mels)

    def get_config(self):
        config = super().get_config()
        frontend = self.frontend.get_config()
        frontend.pop("n_frames")  # frame stacking is not part of the layer
        config.update(frontend)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class LogMelStatistics(Float32Layer):
    """Per-band mean and population standard deviation over time.

    Args:
        statistics: str. `"mean_std"` (means, then standard deviations),
            `"mean"` or `"std"`. Defaults to `"mean_std"`.

    Call arguments:
        spectrogram: float tensor `(batch, frames, bands)`.

    Returns:
        float tensor `(batch, 2 * bands)` for `"mean_std"`, else
        `(batch, bands)`.

    Example:
    >>> LogMelStatistics()(np.ones((2, 32, 128), "float32")).shape
    (2, 256)
    """

    def __init__(self, statistics="mean_std", **kwargs):
        super().__init__(**kwargs)
        if statistics not in STATISTICS:
            raise ValueError(
                f"statistics must be one of {STATISTICS}; received {statistics!r}."
            )
        self.statistics = statistics

    def call(self, spectrogram):
        mean = ops.mean(spectrogram, axis=-2)
        if self.statistics == "mean":
            return mean
        # Two passes (centre, then square) keep float32 precise for dB values
        # far from zero, where E[x^2] - E[x]^2 cancels badly.
        centred = spectrogram - ops.expand_dims(mean, axis=-2)
        std = ops.sqrt(ops.mean(ops.square(centred), axis=-2))
        if self.statistics == "std":
            return std
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape):
        bands = input_shape[-1]
        if self.statistics == "mean_std" and bands is not None:
            bands = 2 * bands
        return (*input_shape[:-2], bands)

    def get_config(self):
        config = super().get_config()
        config.update(statistics=self.statistics)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class LogMelVectors(LogMelSpectrogram):
    """Stacked log-mel vectors of the DCASE autoencoders (`LogMelFrontend.vectors`).

    Vector t concatenates frames t .. t + n_frames - 1 of the log-mel
    spectrogram, frame-major (reference dcase.md 2.1).

    Args:
        n_frames: int. Frames per vector. Defaults to `5`.
        **kwargs: the arguments of `LogMelSpectrogram`.

    Call arguments:
        waveform: float tensor `(batch, samples)`.

    Returns:
        float tensor `(batch, vectors, n_frames * n_mels)`.

    Example:
    >>> LogMelVectors()(np.zeros((2, 16000), "float32")).shape
    TensorShape([2, 28, 640])
    """

    def __init__(self, n_frames=5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
            raise ValueError(f"n_frames must be an integer >= 1; received {n_frames!r}.")
        self.n_frames = n_frames

    def call(self, waveform):
        return stack_frames(self.frontend.spectrogram(waveform), self.n_frames)

    def compute_output_shape(self, input_shape):
        *lead, frames, bins = super().compute_output_shape(input_shape)
        vectors = None if frames is None else frames - self.n_frames + 1
        return (*lead, vectors, self.n_frames * bins)

    def get_config(self):
        config = super().get_config()
        config.update(n_frames=self.n_frames)
        return config
