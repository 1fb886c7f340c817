"""Training-free clip features: log-mel band statistics over time."""

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import choice
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.pipelines import clip_dataset
from asd_keras.data.pipelines import progress_batches
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.base import register_extractor
from asd_keras.features.spectral import LogMelFrontend
from asd_keras.features.statistics import STATISTICS
from asd_keras.features.statistics import LogMelSpectrogram
from asd_keras.features.statistics import LogMelStatistics

# Clips per feature batch pulled from the pipeline; only bounds the Python
# loop overhead, every clip is computed on its own.
_BATCH = 64
CHANNELS = (0, 1, "both")


@register_extractor("logmel_stats")
class LogMelStatsExtractor(FeatureExtractor):
    """Per-band mean and standard deviation over time of the log-mel.

    The log-mel spectrogram is the DCASE baselines' (`LogMelFrontend`);
    each clip gives the mean and the population standard deviation of every
    mel band over its frames, so clips of any length give one vector.
    `channel` picks what a clip's file gives: channel 0 (the only channel
    of mono files; the near microphone of DCASE 2026 clips), channel 1 (the
    far microphone), or with `"both"` the features of channel 0 and of
    channel 1, each computed exactly as for that channel alone, concatenated
    `[near | far]` (twice one channel's values; `dim` counts both).
    Channels past the second are ignored.

    Args:
        sample_rate: int. Defaults to `16000`.
        n_fft: int. Defaults to `1024`.
        hop_length: int. Defaults to `512`.
        n_mels: int. Defaults to `128`.
        power: float. Defaults to `2.0`.
        log_mode: str. `"max"` (2021+) or `"offset"` (2020).
        pad_mode: str. `"constant"` (2022+) or `"reflect"` (2020/2021).
        statistics: str. `"mean_std"` (`2 * n_mels` values: means, then
            standard deviations), `"mean"` or `"std"`.
        channel: int or str. `0` (default), `1` or `"both"` (then
            `serving_model` takes `(batch, samples, 2)` waveforms). Channel
            1 and `"both"` need two-channel files.

    Example:
    >>> extractor = LogMelStatsExtractor()
    >>> extractor.transform(table)["logmel_stats"].shape  # doctest: +SKIP
    (clips, 256)
    """

    trainable = False

    def __init__(
        self,
        sample_rate=16000,
        n_fft=1024,
        hop_length=512,
        n_mels=128,
        power=2.0,
        log_mode="max",
        pad_mode="constant",
        statistics="mean_std",
        channel=0,
    ):
        own = validate_config({"statistics": statistics, "channel": channel},
                              {"statistics": choice(*STATISTICS), "channel": choice(*CHANNELS)})
        # LogMelFrontend validates and normalises the arguments.
        self._frontend_config = LogMelFrontend(
            sample_rate, n_fft, hop_length, n_mels, power=power,
            log_mode=log_mode, pad_mode=pad_mode,
        ).get_config()
        del self._frontend_config["n_frames"]
        self.statistics, self.channel = own["statistics"], own["channel"]

    @property
    def dim(self):
        """Length of a clip's feature vector: the statistics of every band, per served channel."""
        n_mels = self._frontend_config["n_mels"]
        per_channel = 2 * n_mels if self.statistics == "mean_std" else n_mels
        return self.serving_channels * per_channel

    @property
    def serving_channels(self):
        """Channels of the `serving_model` input: 2 for `"both"`, else 1."""
        return 2 if self.channel == "both" else 1

    def get_config(self):
        return {**self._frontend_config, "statistics": self.statistics,
                "channel": self.channel}

    def loader(self):
        """The `AudioLoader` of `transform`; the SavedModel takes its
        `min_samples` as the shortest servable clip.

        A clip needs one whole analysis window (`n_fft` samples): shorter
        ones are mostly padding, and their statistics (over one or two
        frames, of zeros for an empty clip) are not those of machine sound;
        reflect padding also needs more than `n_fft // 2` samples.
        """
        return AudioLoader(self._frontend_config["sample_rate"], channel=self.channel,
                           min_samples=self._frontend_config["n_fft"])

    def _layers(self):
        """New (weightless) layers: the spectrogram, then the statistics."""
        return (LogMelSpectrogram(**self._frontend_config),
                LogMelStatistics(self.statistics))

    def transform(self, table, verbose=0):
        """`{"logmel_stats": (clips, dim)}` for the clips of `table["path"]`.

        Raises:
            FileNotFoundError, ValueError: naming a missing, unreadable,
                wrongly sampled, single-channel (for channel 1 or `"both"`)
                or corrupt clip.
        """
        paths = [str(p) for p in table["path"]]
        if not paths:
            return {self.name: np.zeros((0, self.dim), np.float32)}
        spectrogram, statistics = self._layers()
        loader = self.loader()
        loader.check(paths, progress=bool(verbose))

        def features(waveform):
            # One clip at a time: clips may differ in length, and padding
            # them to a batch would change their statistics.
            if self.channel == "both":
                # (samples, 2) -> (2, samples): each channel on its own, as
                # a batch of two, then [near | far].
                values = statistics(spectrogram(tf.transpose(waveform)))
                return tf.reshape(values, [-1])
            return statistics(spectrogram(waveform[None]))[0]

        ds = clip_dataset(paths, loader, features).batch(_BATCH).prefetch(tf.data.AUTOTUNE)
        parts = [batch.numpy() for batch in
                 progress_batches(ds, len(paths), "Log-mel statistics", verbose)]
        return {self.name: np.concatenate(parts).astype(np.float32)}

    def serving_model(self, num_samples=None):
        """Waveforms `(batch, num_samples)` to `{"logmel_stats": (batch, dim)}`;
        with `channel="both"` the input is `(batch, num_samples, 2)` (near,
        far) and the output the two channels' features, `[near | far]`.

        `num_samples=None` accepts clips of any length (the statistics are
        over time), which is what the exported SavedModel serves. The
        served waveform is the chosen channel itself (channel 1 of a file
        for `channel=1`): picking it is the caller's.
        """
        spectrogram, statistics = self._layers()
        length = None if num_samples is None else int(num_samples)
        if self.channel == "both":
            waveform = keras.Input((length, 2), name="waveform")
            # The same (weightless) layers on each channel.
            parts = [statistics(spectrogram(waveform[..., i])) for i in (0, 1)]
            features = keras.layers.Concatenate(name="channels")(parts)
        else:
            waveform = keras.Input((length,), name="waveform")
            features = statistics(spectrogram(waveform))
        return keras.Model(waveform, {self.name: features}, name=self.name)
