"""Shin & Lee's source-separation proxy task: a CMGAN-style separator's features.

The study (paper §III-D, Table IV) trains a separator (CMGAN's TSCNet
generator, `asd_keras.models.separator`; reference/methods.md §E) to pull a
target machine's sound out of a mixture with another machine type's sound,
by the negative SI-SDR of the estimated waveform. CMGAN's metric
discriminator and its PESQ-driven GAN loss are not part of this training:
the paper's objective is SI-SDR alone (Table I), so the separator is
trained as a plain regression network.

- Training data (`asd_keras.data.mixtures.training_mixtures`): each epoch
  visits the group's normal training clips in a new order; each clip gives
  a random segment (`segment_seconds`, 2 s in the paper) mixed with a
  random segment of a clip of another machine type from the run's training
  clips (the `pool`), at an SNR uniform in `[snr_min_db, snr_max_db]`
  (-5 to 5 dB). The stream is a stateless function of the seed.
- Features for ASD: the extraction points are the dense encoder's output
  and every two-stage conformer block's output (N + 1 maps of
  `(frames, 101, width)`); each is pooled (`point_pooling`, see
  `asd_keras.layers.segments.PooledFeatureMaps`), the pooled vectors are
  concatenated, and the clip's segments are aggregated
  (`segment_aggregation`). The clip is brought to `clip_seconds` first
  (`length_policy`), and cut into `clip_seconds // segment_seconds`
  segments; a shorter tail is dropped.
- Proxy metric (`proxy_metrics`, §IV-C3): SI-SDR improvement of the
  estimate over the mixture, on `eval_mixtures` fixed mixtures per SNR (-5,
  0 and 5 dB) of the group's normal test clips with normal test clips of
  other machine types (`asd_keras.data.mixtures.evaluation_manifest`,
  drawn from `eval_seed`, not the model's seed, so every configuration is
  measured on the same mixtures; written once to `eval_mixtures_dir` when
  it is set).

The training protocol is the study's (§III-A, `SpectrogramModelExtractor`:
AdamW, StepLR, the epoch of lowest training loss), with CMGAN's generator
settings as defaults (lr 5e-4, halved every 30 epochs, batch 4).

Memory (assumption): at the paper's size (2 s segments: 321 frames, 201
bins in the dense encoder and decoders, 101 in the conformers) a training
step at the paper's batch of 4 takes 5.9 GB of host memory with no
conformer block and width 64, 10.6 GB at width 128, and more than the 24 GB
of a test machine with 4 blocks at width 64 (killed), because every
two-stage conformer keeps its time-stage attention (`101 x 4 heads x 321^2`
floats a segment, with their relative-position logits and dropout masks)
and its feed-forward maps for the backward pass; with 4 blocks at width 128
one segment a step takes 11.6 GB (peak RSS of `train_on_batch` in a fresh
process, 2026-12-07). `gradient_accumulation_steps=k` splits every batch
into `k` micro-batches (`asd_keras.data.pipelines.micro_batches`) whose
averaged gradients make one update, and the paper-size study
(experiments/proxy_tasks/separation/config.yaml) runs its batches of 4 as 4
micro-batches of one segment. Every loss term keeps its weight in the whole
batch, so without conformer blocks the update is exactly the batch's; with
them, the conformers' batch normalisation (in their convolution modules)
normalises each micro-batch on its own, over one segment's 32,421
frame-frequency positions a channel instead of four segments'. The
encoder's and decoders' instance norms work per segment and are unaffected.
The alternative, rematerialising the blocks, keeps the batch whole at the
price of a second forward pass, and Keras' dropout would draw new masks in
it; `dtype_policy="mixed_bfloat16"` halves the activations' bytes but
changes the arithmetic.
"""

import importlib
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import string
from asd_keras.data.mixtures import check_manifest_audio
from asd_keras.data.mixtures import evaluation_manifest
from asd_keras.data.mixtures import manifest_dataset
from asd_keras.data.mixtures import training_mixtures
from asd_keras.data.mixtures import write_manifest
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.spectrogram import SpectrogramModelExtractor
from asd_keras.extractors.spectrogram import trained_model_schema
from asd_keras.layers.segments import AGGREGATIONS
from asd_keras.layers.segments import POOLINGS
from asd_keras.layers.segments import MergeSegments
from asd_keras.layers.segments import PooledFeatureMaps
from asd_keras.layers.segments import SplitSegments
from asd_keras.losses.separation import NegativeSISDR
from asd_keras.losses.separation import si_sdr
from asd_keras.models.precision import resolve_jit_compile
from asd_keras.models.separator import build_separator
from asd_keras.models.separator import separator_feature_model
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import load_keras_model
from asd_keras.utils.progress import progress_bar

logger = logging.getLogger(__name__)

EVAL_SNRS_DB = (-5.0, 0.0, 5.0)  # paper §IV-C3
CONFORMER_BLOCKS = (0, 1, 2, 4)  # Table IV; any count >= 0 builds


def snr_key(snr):
    """`si_sdri_m5db`, `si_sdri_0db`, `si_sdri_5db`: the metric name of an SNR."""
    value = int(round(float(snr)))
    return f"si_sdri_{'m' if value < 0 else ''}{abs(value)}db"


def _schema():
    return {
        **trained_model_schema(),
        "width": integer(min=4),
        "num_blocks": integer(min=0),
        "dropout": number(min=0, lt=1),
        "segment_seconds": number(gt=0),
        "snr_min_db": number(),
        "snr_max_db": number(),
        "point_pooling": choice(*POOLINGS),
        "segment_aggregation": choice(*AGGREGATIONS),
        "eval_mixtures": integer(min=1),
        "eval_seed": integer(min=0, max=2**32 - 1),
        "eval_mixtures_dir": string(optional=True),
        "gradient_accumulation_steps": integer(min=1),
    }


@register_extractor("separation")
class SeparationExtractor(SpectrogramModelExtractor):
    """A separator trained on machine-sound mixtures; its pooled encoder maps
    are the clip's feature (`"embedding"`).

    Args:
        width: int. Channels C of the separator (Table IV: 64, 128).
            Defaults to `64`. Must be divisible by 4 (the attention heads).
        num_blocks: int. Two-stage conformer blocks N (Table IV: 0, 1, 2,
            4). Defaults to `4` (CMGAN's).
        dropout: float. Attention and feed-forward dropout of the conformers.
            Defaults to `0.2` (CMGAN's).
        segment_seconds: float. Training and feature segments. Defaults to
            `2.0` (paper §III-D, CMGAN's 2-s crops).
        snr_min_db: float. Training SNR range. Defaults to `-5`
            and `5` (the evaluation SNRs' range; assumption: the paper gives
            none for training).
        snr_max_db: see `snr_min_db`.
        point_pooling: `"frequency"` (default), `"channel"` or
            `"frequency_mean"`: how each extraction point is pooled (see
            `PooledFeatureMaps`).
        segment_aggregation: `"mean"` (default) or `"max"` over the clip's
            segments.
        eval_mixtures: int. Evaluation mixtures per SNR. Defaults to `1000`
            (paper §IV-C3).
        eval_seed: int. Seed of the evaluation mixtures. Defaults to `0`.
        eval_mixtures_dir: str or None. Folder the evaluation manifests are
            written to once (`<machine types>.csv`) and checked against
            afterwards. Defaults to None (drawn in memory, same draws).
        epochs: int. Defaults to `200` (the study's protocol, §III-A; CMGAN
            trains 120).
        batch_size: int. Segments per step. Defaults to `4` (CMGAN).
        learning_rate: AdamW. Defaults to `5e-4` (CMGAN's
            generator) and `1e-2` (PyTorch's AdamW default).
        weight_decay: see `learning_rate`.
        lr_step_epochs: StepLR. Defaults to `30` and `0.5` (CMGAN).
        lr_gamma: StepLR. Defaults to `30` and `0.5` (CMGAN).
        select: `"min_loss"` (default) or `"last"`.
        clip_seconds: float. Clip length before segmentation. Defaults to
            `10.0` (DCASE 2022 clips).
        length_policy: `"truncate"`, `"pad"` or `"tile_crop"` (default).
        sample_rate: audio loading (16 kHz: the STFT of
            n_fft 400, hop 100 is CMGAN's at 16 kHz).
        channel: see `sample_rate`.
        resample: see `sample_rate`.
        score_batch_clips: int. Clips per feature batch; `separate` and
            `proxy_metrics` run as many segments a batch as these clips
            hold. Defaults to `1`: a batch's memory grows with its segments
            (one 10 s clip, 5 segments of 2 s: 2.0 GB of host memory at
            N = 0, C = 64 and 4.5 GB at N = 4, C = 128; 8 clips at N = 0,
            C = 64 took 11.3 GB), and the time per clip hardly changes.
        pipeline_ram_mb: as the
            other trained extractors.
        jit_compile: see `pipeline_ram_mb`.
        dtype_policy: see `pipeline_ram_mb`.
        run_eagerly: see `pipeline_ram_mb`.
        seed: see `pipeline_ram_mb`.
        gradient_accumulation_steps: int. Micro-batches per batch: each
            batch of `batch_size` segments runs as this many micro-batches,
            one after another, and one AdamW update is made from their
            averaged gradients, at a `k`-th of the activation memory. Defaults
            to `1`. Assumption (see the module docstring, "Memory"): the
            update is the whole batch's except for the conformers' batch
            normalisation, which normalises each micro-batch on its own.
    """

    description = "Separator encoder features"
    uses_other_groups = True

    def __init__(self, width=64, num_blocks=4, dropout=0.2, segment_seconds=2.0,
                 snr_min_db=-5.0, snr_max_db=5.0, point_pooling="frequency",
                 segment_aggregation="mean", eval_mixtures=1000, eval_seed=0,
                 eval_mixtures_dir=None, epochs=200, batch_size=4, learning_rate=5e-4,
                 weight_decay=1e-2, lr_step_epochs=30, lr_gamma=0.5, select="min_loss",
                 clip_seconds=10.0, length_policy="tile_crop", sample_rate=16000, channel=0,
                 resample=False, score_batch_clips=1, pipeline_ram_mb=1024,
                 jit_compile="auto", dtype_policy="float32", run_eagerly=False,
                 gradient_accumulation_steps=1, seed=0):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self._configure(config, _schema())
        c = self.config
        if c["gradient_accumulation_steps"] > c["batch_size"]:
            raise ValueError(
                f"gradient_accumulation_steps={c['gradient_accumulation_steps']} exceeds "
                f"batch_size={c['batch_size']}: a micro-batch would be empty; use at most "
                f"{c['batch_size']} (a divisor of it gives equal micro-batches).")
        if c["width"] % 4:
            raise ValueError(f"width must be divisible by the 4 attention heads; received "
                             f"{c['width']!r}.")
        if c["snr_max_db"] < c["snr_min_db"]:
            raise ValueError(f"snr_max_db must be >= snr_min_db ({c['snr_min_db']}); "
                             f"received {c['snr_max_db']!r}.")
        if self.segment_samples > self.num_samples:
            raise ValueError(f"segment_seconds={c['segment_seconds']} is longer than "
                             f"clip_seconds={c['clip_seconds']}; a clip must hold at least "
                             "one segment.")
        if self.segment_samples < 400:
            raise ValueError(f"segment_seconds={c['segment_seconds']} gives "
                             f"{self.segment_samples} samples, fewer than one STFT window "
                             "(400); use a longer segment.")
        self.separator = None
        self._pool = None
        # (separator, its traced inference function), see `_separator_function`.
        self._separate = None

    @property
    def segment_samples(self):
        """Samples of one separator segment (`segment_seconds` at `sample_rate`)."""
        c = self.config
        return int(round(float(c["segment_seconds"]) * int(c["sample_rate"])))

    @property
    def num_segments(self):
        """Whole segments in one clip."""
        return self.num_samples // self.segment_samples

    @property
    def _segments_per_batch(self):
        # As many segments as a feature batch of `score_batch_clips` clips
        # holds, so both kinds of batch take the same memory.
        return int(self.config["score_batch_clips"]) * self.num_segments

    # -- models ------------------------------------------------------------

    def build_separator(self):
        """A new separator network at this extractor's width, depth and segment length.

        Returns:
            A Keras model from a segment's waveform to the separated waveforms.
        """
        c = self.config
        return build_separator(width=int(c["width"]), num_blocks=int(c["num_blocks"]),
                               dropout=float(c["dropout"]), num_samples=self.segment_samples,
                               seed=int(c["seed"]), name="separator")

    def _encoder_of(self, separator, name="encoder"):
        """Clips `(batch, clip samples)` -> pooled extraction points, sharing
        the separator's layers."""
        c = self.config
        points = separator_feature_model(separator)
        waveform = keras.Input((self.num_samples,), name="waveform")
        segments = SplitSegments(self.segment_samples, name="segments")(waveform)
        maps = points(segments)
        pooled = PooledFeatureMaps(c["point_pooling"], name="point_pooling")(maps)
        clip = MergeSegments(self.num_segments, c["segment_aggregation"],
                             name="segment_aggregation")(pooled)
        return keras.Model(waveform, clip, name=name)

    def build_encoder(self, name="encoder"):
        self.separator = self.build_separator()
        return self._encoder_of(self.separator, name)

    # -- training ----------------------------------------------------------

    def fit(self, table, context, name=None, pool=None):
        """Trains the separator on mixtures of `table`'s clips with clips of
        other machine types from `pool` (default: `table` itself)."""
        self._pool = table if pool is None else pool
        try:
            return super().fit(table, context, name)
        finally:
            self._pool = None

    def _fit_kwargs(self, table):
        return {"steps_per_epoch": self._steps_per_epoch(table)}

    def micro_batches_per_update(self):
        """`gradient_accumulation_steps`: pipeline elements per update."""
        return int(self.config["gradient_accumulation_steps"])

    def _build_training_model(self, encoder, table):
        """The separator, its loss (negative SI-SDR) and the endless mixture
        stream, batched (`steps_per_epoch` batches make an epoch)."""
        del encoder
        c = self.config
        pool = self._pool.reset_index(drop=True)
        loader = self.loader(training=True)
        paths = sorted(set(table["path"].astype(str)) | set(pool["path"].astype(str)))
        loader.check(paths, progress=False)
        targets = table[["path", "machine_type"]]
        interferers = pool[["path", "machine_type"]]
        stream = training_mixtures(targets, interferers, loader, self.segment_samples,
                                   (c["snr_min_db"], c["snr_max_db"]), seed=int(c["seed"]))
        dataset = self._bounded(stream.batch(self.batch_size(len(table)), drop_remainder=True)
                                .prefetch(tf.data.AUTOTUNE))
        # Recorded in run.json: what the mixtures were drawn from.
        self.data_choices = {"target_clips": int(len(targets)),
                             "interferer_pool_clips": int(len(interferers)),
                             "segments_per_clip": int(self.num_segments)}
        return self.separator, NegativeSISDR(), dataset

    # -- proxy metric ------------------------------------------------------

    def _manifest(self, targets, interferers):
        c = self.config
        manifest = evaluation_manifest(targets, interferers, self.num_samples,
                                       self.segment_samples, EVAL_SNRS_DB,
                                       int(c["eval_mixtures"]), int(c["eval_seed"]))
        if c["eval_mixtures_dir"]:
            kinds = "_".join(sorted(set(targets["machine_type"].astype(str))))
            manifest = write_manifest(Path(c["eval_mixtures_dir"]) / f"{kinds}.csv", manifest)
        return manifest

    def _separator_function(self):
        """The separator in inference mode: eager with `run_eagerly`, else one
        `tf.function` of any batch size (traced once per separator).

        Called eagerly, a Keras functional model keeps every layer's output
        until the call returns: 8 segments of 0.25 s through the 4-block,
        128-channel separator took 2.8 GB more RSS eagerly, 0.7 GB traced
        (the graph frees each tensor once it is used).
        """
        separator = self.separator
        if self.config["run_eagerly"]:
            return lambda mixture: separator(mixture, training=False)
        if self._separate is None or self._separate[0] is not separator:
            function = tf.function(
                lambda mixture: separator(mixture, training=False),
                input_signature=[tf.TensorSpec((None, self.segment_samples), tf.float32)],
                jit_compile=resolve_jit_compile(self.config["jit_compile"]))
            self._separate = (separator, function)
        return self._separate[1]

    def separate(self, mixtures):
        """Estimated targets of `(n, segment samples)` mixtures (NumPy)."""
        self._check_fitted()
        mixtures = np.asarray(mixtures, np.float32)
        batch = self._segments_per_batch
        separate = self._separator_function()
        return np.concatenate([np.asarray(separate(mixtures[i:i + batch]))
                               for i in range(0, len(mixtures), batch)] or
                              [np.zeros((0, self.segment_samples), np.float32)])

    def proxy_metrics(self, train, test, verbose=0, pool=None):
        """SI-SDR improvement on the fixed evaluation mixtures (§IV-C3).

        The targets are the normal clips of `test`; the interferers are the
        normal clips of other machine types in `pool` (default: `test`).

        Returns:
            dict: `si_sdri` (mean of the three SNRs), `si_sdri_m5db`,
            `si_sdri_0db`, `si_sdri_5db` and `si_sdr` (the estimates' mean
            SI-SDR), all in dB.
        """
        del train
        self._check_fitted()
        pool = test if pool is None else pool
        normal = lambda t: t[t["label"].astype(int) == 0] if "label" in t else t  # noqa: E731
        targets = normal(test)
        if len(targets) == 0:
            raise ValueError("The separation proxy metric needs normal test clips; the test "
                             "rows hold none.")
        manifest = self._manifest(targets, normal(pool))
        loader = self.loader()
        loader.check(sorted(set(manifest["target"]) | set(manifest["interferer"])),
                     progress=False)
        check_manifest_audio(manifest, loader, self.segment_samples)
        dataset = manifest_dataset(manifest, loader, self.segment_samples).batch(
            self._segments_per_batch).prefetch(tf.data.AUTOTUNE)
        improvements, estimates = [], []
        separate = self._separator_function()
        for mixture, target in progress_bar(dataset, desc="SI-SDRi", unit="batch",
                                            enabled=verbose, leave=False):
            estimate = separate(mixture)
            after = np.asarray(si_sdr(target, estimate), np.float64)
            before = np.asarray(si_sdr(target, mixture), np.float64)
            improvements.append(after - before)
            estimates.append(after)
        improvements = np.concatenate(improvements)
        estimates = np.concatenate(estimates)
        if not np.isfinite(improvements).all():
            raise ValueError("Non-finite SI-SDR on the evaluation mixtures; check the "
                             "trained model.")
        snrs = manifest["snr_db"].to_numpy(float)
        metrics = {snr_key(s): float(improvements[np.isclose(snrs, s)].mean())
                   for s in EVAL_SNRS_DB}
        return {"si_sdri": float(np.mean(list(metrics.values()))), **metrics,
                "si_sdr": float(estimates.mean())}

    # -- persistence -------------------------------------------------------

    def _save_weights(self, folder):
        self._check_fitted()
        with atomic_path(Path(folder) / "separator.keras", suffix=".keras") as tmp:
            self.separator.save(tmp)

    def _load_weights(self, folder):
        importlib.import_module("asd_keras.layers")  # registers the custom layers
        self.separator = load_keras_model(Path(folder) / "separator.keras")
        self.encoder = self._encoder_of(self.separator)
