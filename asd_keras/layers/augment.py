"""Random augmentations for contrastive learning on log-mel spectrograms.

The proxy-task study of Shin & Lee (§III-E) builds the two views of a clip
with "time masking, frequency masking, pitch shift, time stretch and white
noise" and gives no parameters, so the magnitudes are constructor arguments
without defaults. Each augmentation is a pure function on `keras.ops`
(tested by hand) plus a layer that draws its random parameters per clip
from a `keras.random.SeedGenerator`.

Conventions of the layers:

* Spectrogram layers take log-mel batches `(batch, frames, n_mels)`, time on
  axis 1 and mel bands on axis 2 (trailing channel axes are allowed);
  `WhiteNoise` takes waveforms `(batch, samples)`.
* They augment only when called with `training=True` and pass the input
  through unchanged otherwise, like Keras' `RandomFlip`.
* Each call draws fresh parameters, so calling a layer twice on a batch
  gives two different views; two layers built with the same integer seed
  give the same sequence of outputs.
"""

import abc
import math
import numbers

import keras
from keras import ops

from asd_keras.config import check_integer
from asd_keras.features.precision import Float32Layer


def _check_float(value, name):
    try:
        valid = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{name} must be a finite number; received {value!r}.")
    return float(value)


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool)
                             or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None; received {seed!r}.")
    return None if seed is None else int(seed)


def _per_clip(values, axis, rank):
    """Expands `(batch,)` or `(batch, size)` values to broadcast against a
    rank-`rank` batch, with `size` (if any) on `axis`."""
    if len(values.shape) == 2:
        for _ in range(1, axis):
            values = ops.expand_dims(values, 1)
    while len(values.shape) < rank:
        values = ops.expand_dims(values, -1)
    return values


def _clip_mean(x):
    return ops.mean(x, axis=tuple(range(1, len(x.shape))), keepdims=True)


def band_mask(uniform_width, uniform_start, size, max_width):
    """SpecAugment bands from uniform draws (Park et al. 2019, §2).

    Each band has a width `w` uniform on `{0, ..., max_width}` (at most
    `size`) and a first index uniform on `{0, ..., size - w}`, so a band
    always lies inside the axis.

    Args:
        uniform_width: tensor `(batch, num_masks)` of `U[0, 1)` draws.
        uniform_start: tensor `(batch, num_masks)` of `U[0, 1)` draws.
        size: int or scalar tensor. Length of the masked axis.
        max_width: int. Largest band width.

    Returns:
        Bool tensor `(batch, size)`, true inside any of the clip's bands.
    """
    size_f = ops.cast(size, "float32")
    uniform_width = ops.cast(uniform_width, "float32")
    uniform_start = ops.cast(uniform_start, "float32")
    # The minimum guards against float rounding of u * (max_width + 1) for
    # u just below 1.
    width = ops.minimum(ops.floor(uniform_width * (max_width + 1)), float(max_width))
    width = ops.minimum(width, size_f)
    start = ops.floor(uniform_start * (size_f - width + 1.0))
    start = ops.minimum(start, size_f - width)
    positions = ops.cast(ops.arange(size), "float32")
    inside = ops.logical_and(positions >= ops.expand_dims(start, -1),
                             positions < ops.expand_dims(start + width, -1))
    return ops.any(inside, axis=1)


def mask_bands(x, mask, axis):
    """Replaces the masked indices of `axis` by the clip's mean.

    The mean of the whole clip (before masking) is used rather than 0:
    SpecAugment masks with 0 on mean-normalised features, which is the
    mean; on raw log-mel values (dB or log power) 0 would be an arbitrary,
    possibly loud, level.

    Args:
        x: tensor `(batch, frames, n_mels, ...)`.
        mask: bool tensor `(batch, x.shape[axis])`.
        axis: int, 1 (time) or 2 (mel).
    """
    mask = _per_clip(mask, axis, len(x.shape))
    return ops.where(mask, ops.broadcast_to(_clip_mean(x), ops.shape(x)), x)


def shift_mel(x, shift):
    """Shifts each clip along the mel axis by an integer number of bins.

    `out[:, :, m] = x[:, :, m - shift]`: a positive shift moves energy to
    higher bands (higher pitch). Edges: the bands vacated at one end repeat
    the nearest band that was kept (edge replication); the bands pushed past
    the other end are dropped.

    Args:
        x: tensor `(batch, frames, n_mels, ...)`.
        shift: int tensor `(batch,)`.
    """
    n_mels = ops.shape(x)[2]
    source = ops.expand_dims(ops.arange(n_mels, dtype="int32"), 0)
    source = source - ops.expand_dims(ops.cast(shift, "int32"), -1)
    source = ops.clip(source, 0, n_mels - 1)
    index = _per_clip(source, 2, len(x.shape))
    return ops.take_along_axis(x, index, axis=2)


def stretch_time(x, rate):
    """Resamples the time axis by `rate` with linear interpolation.

    Output frame `t` reads the input at position `t * rate` (librosa's
    `time_stretch` convention: `rate > 1` is faster, the content is
    compressed). The output keeps the input's length and starts at frame 0:
    a slowed clip (`rate < 1`) is cropped to its first `frames` frames; a
    sped-up clip runs out of input, and the remaining frames repeat the last
    input frame (edge padding).

    Args:
        x: tensor `(batch, frames, n_mels, ...)`.
        rate: positive float tensor `(batch,)`.
    """
    frames = ops.shape(x)[1]
    last = ops.cast(frames - 1, "float32")
    grid = ops.expand_dims(ops.cast(ops.arange(frames), "float32"), 0)
    position = ops.minimum(grid * ops.expand_dims(ops.cast(rate, "float32"), -1), last)
    low = ops.floor(position)
    fraction = _per_clip(ops.cast(position - low, x.dtype), 1, len(x.shape))
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, frames - 1)
    rank = len(x.shape)
    x_low = ops.take_along_axis(x, _per_clip(low, 1, rank), axis=1)
    x_high = ops.take_along_axis(x, _per_clip(high, 1, rank), axis=1)
    return x_low + fraction * (x_high - x_low)


def add_white_noise(x, noise, snr_db):
    """Adds `noise` scaled so that each clip's SNR is `snr_db`.

    The noise is rescaled by its own mean power, so the realised SNR,
    `10 log10(mean(x^2) / mean(n^2))`, equals `snr_db` exactly rather than
    on average. A silent clip stays silent (its signal power is 0).

    Args:
        x: tensor `(batch, samples, ...)`.
        noise: tensor of `x`'s shape, e.g. standard Gaussian draws.
        snr_db: tensor `(batch,)`.
    """
    rank = len(x.shape)
    signal_power = _clip_mean(ops.square(x))
    noise_power = ops.maximum(_clip_mean(ops.square(noise)), 1e-12)
    ratio = ops.power(10.0, _per_clip(ops.cast(snr_db, x.dtype), 1, rank) / 10.0)
    return x + noise * ops.sqrt(signal_power / (noise_power * ratio))


class _RandomAugmentation(Float32Layer):
    """Training-only random layer: seed, rank check, identity at inference.

    float32 under any dtype policy (`Float32Layer`): the augmentations sit in
    the front end, on waveforms or log-mel values between float32 layers.
    """

    min_rank = 3
    expected = "(batch, frames, n_mels)"

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) < self.min_rank:
            raise ValueError(
                f"{self.__class__.__name__} expects inputs {self.expected}; "
                f"received shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        return self.augment(inputs)

    # The hook each augmentation defines. keras.layers.Layer is not an ABC,
    # so the decorator documents rather than enforces it.
    @abc.abstractmethod
    def augment(self, inputs):
        """The augmentation of a training batch, with fresh random draws."""

    def _uniform(self, shape):
        # float32 whatever floatx is, so that the integers derived from the
        # draws (widths, positions, shifts) do not depend on the float policy.
        return keras.random.uniform(shape, dtype="float32", seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        return config


class _BandMasking(_RandomAugmentation):
    axis = None

    def __init__(self, max_width, num_masks=1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_width = check_integer("max_width", max_width, 0)
        self.num_masks = check_integer("num_masks", num_masks, 0)

    def augment(self, inputs):
        if self.max_width == 0 or self.num_masks == 0:
            return inputs
        draws = (ops.shape(inputs)[0], self.num_masks)
        mask = band_mask(self._uniform(draws), self._uniform(draws),
                         ops.shape(inputs)[self.axis], self.max_width)
        return mask_bands(inputs, mask, self.axis)

    def get_config(self):
        config = super().get_config()
        config.update(max_width=self.max_width, num_masks=self.num_masks)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class TimeMasking(_BandMasking):
    """SpecAugment time masking (Park et al. 2019), during training only.

    Each clip gets `num_masks` bands of whole frames, each of width uniform
    on `{0, ..., max_width}` and position uniform within the clip (bands may
    overlap), set to the clip's mean log-mel value (see `mask_bands`).

    Args:
        max_width: int >= 0. Largest band width in frames (SpecAugment's T).
        num_masks: int >= 0. Bands per clip. Defaults to `1`.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: log-mel tensor `(batch, frames, n_mels)`.
        training: bool. Identity unless true.

    Returns:
        Tensor of the input's shape.
    """

    axis = 1


@keras.saving.register_keras_serializable(package="asd_keras")
class FrequencyMasking(_BandMasking):
    """SpecAugment frequency masking (Park et al. 2019), during training only.

    Each clip gets `num_masks` bands of whole mel bins (the same bins in
    every frame), each of width uniform on `{0, ..., max_width}`, set to the
    clip's mean log-mel value (see `mask_bands`).

    Args:
        max_width: int >= 0. Largest band width in mel bins (SpecAugment's F).
        num_masks: int >= 0. Bands per clip. Defaults to `1`.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: log-mel tensor `(batch, frames, n_mels)`.
        training: bool. Identity unless true.

    Returns:
        Tensor of the input's shape.
    """

    axis = 2


@keras.saving.register_keras_serializable(package="asd_keras")
class PitchShift(_RandomAugmentation):
    """Pitch shift approximated by a shift along the mel axis.

    Each clip is shifted by an integer number of mel bins uniform on
    `{-max_bins, ..., max_bins}` (positive: up), with edge replication (see
    `shift_mel`). Assumption: the study names "pitch shift" without saying
    how it is done. A true pitch shift multiplies frequencies by a constant;
    the mel scale is close to logarithmic above about 1 kHz, where a
    constant mel-bin shift approximates it, and close to linear below, where
    it does not. Shifting the log-mel directly avoids resynthesising the
    waveform and keeps the augmentation inside the model.

    Args:
        max_bins: int >= 0. Largest shift in mel bins.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: log-mel tensor `(batch, frames, n_mels)`.
        training: bool. Identity unless true.

    Returns:
        Tensor of the input's shape.
    """

    def __init__(self, max_bins, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_bins = check_integer("max_bins", max_bins, 0)

    def augment(self, inputs):
        if self.max_bins == 0:
            return inputs
        uniform = self._uniform(ops.shape(inputs)[:1])
        shift = ops.minimum(ops.floor(uniform * (2 * self.max_bins + 1)),
                            2.0 * self.max_bins) - self.max_bins
        return shift_mel(inputs, ops.cast(shift, "int32"))

    def get_config(self):
        config = super().get_config()
        config.update(max_bins=self.max_bins)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class TimeStretch(_RandomAugmentation):
    """Time stretch of the log-mel frames, during training only.

    Each clip's time axis is resampled by a rate uniform on `[1 - max_rate,
    1 + max_rate]` with linear interpolation between frames, then cropped or
    edge-padded back to the input length, anchored at the first frame (see
    `stretch_time`). Like a phase-vocoder stretch it changes tempo, not the
    mel bands; interpolating frames of a log spectrogram is an approximation
    of it.

    Args:
        max_rate: float in `[0, 1)`. Largest relative change of speed.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: log-mel tensor `(batch, frames, n_mels)`.
        training: bool. Identity unless true.

    Returns:
        Tensor of the input's shape.
    """

    def __init__(self, max_rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        max_rate = _check_float(max_rate, "max_rate")
        if not 0.0 <= max_rate < 1.0:
            raise ValueError(f"max_rate must be in [0, 1); received {max_rate!r}.")
        self.max_rate = max_rate

    def augment(self, inputs):
        if self.max_rate == 0.0:
            return inputs
        uniform = self._uniform(ops.shape(inputs)[:1])
        return stretch_time(inputs, 1.0 + self.max_rate * (2.0 * uniform - 1.0))

    def get_config(self):
        config = super().get_config()
        config.update(max_rate=self.max_rate)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class WhiteNoise(_RandomAugmentation):
    """Additive white Gaussian noise on waveforms, during training only.

    Each clip gets standard Gaussian noise scaled to an SNR uniform on
    `[min_snr_db, max_snr_db]` dB, exactly (see `add_white_noise`).

    Args:
        min_snr_db: float. Lowest SNR in dB.
        max_snr_db: float >= `min_snr_db`. Highest SNR in dB.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: waveform tensor `(batch, samples)`.
        training: bool. Identity unless true.

    Returns:
        Tensor of the input's shape.
    """

    min_rank = 2
    expected = "(batch, samples)"

    def __init__(self, min_snr_db, max_snr_db, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.min_snr_db = _check_float(min_snr_db, "min_snr_db")
        self.max_snr_db = _check_float(max_snr_db, "max_snr_db")
        if self.max_snr_db < self.min_snr_db:
            raise ValueError(
                f"max_snr_db must be >= min_snr_db ({self.min_snr_db}); "
                f"received {max_snr_db!r}."
            )

    def augment(self, inputs):
        uniform = self._uniform(ops.shape(inputs)[:1])
        snr_db = self.min_snr_db + (self.max_snr_db - self.min_snr_db) * uniform
        noise = keras.random.normal(ops.shape(inputs), dtype=inputs.dtype,
                                    seed=self.seed_generator)
        return add_white_noise(inputs, noise, snr_db)

    def get_config(self):
        config = super().get_config()
        config.update(min_snr_db=self.min_snr_db, max_snr_db=self.max_snr_db)
        return config
