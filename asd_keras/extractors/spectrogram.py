"""Base of the trained extractors whose network sees a clip's log-mel spectrogram.

Shin & Lee's classification and contrastive proxy tasks (paper §III-C, §III-E)
train a backbone on the whole log-mel spectrogram of a clip (16 kHz, 128
mels, n_fft 1024, hop 512; §III-A) and keep the backbone's pooled output as
the clip's feature for anomaly detection. This base holds what those
families share:

- a fixed input length (`clip_seconds`; clips are truncated, padded or tiled
  by `length_policy`, as `FixedLength` does at serving time), decoded in
  parallel by `tf.data` without a cache, so memory stays flat in the number
  of clips;
- the encoder `waveform -> log-mel -> backbone -> (batch, dim)`, saved as
  `encoder.keras`, whose output is the feature set `embedding`;
- the study's common protocol (§III-A): AdamW with a StepLR-style schedule
  (a staircase `ExponentialDecay`: the rate is multiplied by `lr_gamma`
  every `lr_step_epochs` epochs), and model selection by the lowest training
  loss (`select="min_loss"`: the weights of that epoch are restored after
  the last one; no validation split);
- `proxy_metrics(train, test)`: the family's proxy-task metrics on the test
  clips, which the study correlates with the ASD metrics;
- the compile keys `jit_compile` and `dtype_policy` (mixed precision,
  `asd_keras.models.precision`: the networks are built under the policy,
  the log-mel front end and the embedding stay float32).

Subclasses implement `_build_training_model(encoder, train)` (returns the
compiled-to-be model, its loss and the `tf.data` pipeline) and
`proxy_metrics`, and may save more state (`_save_extra`, `_load_extra`).
"""

import abc
import importlib
import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.pipelines import micro_batches
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.common import front_end_schema
from asd_keras.features.spectral_layers import FixedLength
from asd_keras.features.statistics import LogMelSpectrogram
from asd_keras.models.precision import dtype_policy_scope
from asd_keras.models.precision import float32_output
from asd_keras.models.precision import loss_scaled
from asd_keras.models.precision import precision_schema
from asd_keras.models.precision import resolve_jit_compile
from asd_keras.models.resnet import RESNET_DEPTHS
from asd_keras.models.resnet import resnet_backbone
from asd_keras.optimizers import LeanAdamW
from asd_keras.optimizers import PerUpdateSchedule
from asd_keras.utils.callbacks import RestoreBestWeights
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import load_keras_model
from asd_keras.utils.progress import progress_bar
from asd_keras.utils.training import without_autotune_thread

logger = logging.getLogger(__name__)

LENGTH_POLICIES = ("truncate", "pad", "tile_crop")
SELECTIONS = ("min_loss", "last")


def trained_model_schema():
    """Validation rules of the training, loading and feature keys that every
    trained waveform-model extractor takes (the log-mel ones add their front
    end and backbone keys, `spectrogram_model_schema`)."""
    return {
        "epochs": integer(min=1),
        "batch_size": integer(min=1),
        "learning_rate": number(gt=0),
        "weight_decay": number(min=0),
        "lr_step_epochs": integer(min=1),
        "lr_gamma": number(gt=0, max=1),
        "select": choice(*SELECTIONS),
        "clip_seconds": number(gt=0),
        "length_policy": choice(*LENGTH_POLICIES),
        "sample_rate": integer(min=1),
        "channel": choice(0, 1),
        "resample": boolean(),
        "score_batch_clips": integer(min=1),
        "pipeline_ram_mb": integer(min=1),
        **precision_schema(),
        "run_eagerly": boolean(),
        "seed": integer(min=0, max=2**32 - 1),
    }


def spectrogram_model_schema():
    """Validation rules of the keys every log-mel spectrogram-model extractor takes."""
    return {
        "depth": choice(*RESNET_DEPTHS),
        **trained_model_schema(),
        **front_end_schema(),
    }


def step_lr_schedule(learning_rate, lr_step_epochs, lr_gamma, steps_per_epoch):
    """PyTorch's `StepLR` as a Keras schedule of optimizer steps.

    The rate is `learning_rate * lr_gamma ** floor(epoch / lr_step_epochs)`,
    constant within an epoch (a staircase decay every `lr_step_epochs *
    steps_per_epoch` steps).
    """
    return keras.optimizers.schedules.ExponentialDecay(
        float(learning_rate), decay_steps=int(lr_step_epochs) * max(1, int(steps_per_epoch)),
        decay_rate=float(lr_gamma), staircase=True)


class SpectrogramModelExtractor(FeatureExtractor):
    """A trained extractor: fixed-length log-mel spectrogram -> backbone features.

    Subclasses call `_configure(config, schema)` from `__init__` (the schema
    extends `spectrogram_model_schema()`) and implement
    `_build_training_model` and `proxy_metrics` (see the module docstring).
    """

    trainable = True
    description = "Embedding"

    def _configure(self, config, schema):
        self.config = validate_config(config, schema)
        self.encoder = None
        # (encoder, its traced inference function), see `_inference_function`.
        self._inference = None

    def get_config(self):
        return dict(self.config)

    @property
    def num_samples(self):
        """Samples of each clip (`clip_seconds` at `sample_rate`)."""
        c = self.config
        return int(round(float(c["clip_seconds"]) * int(c["sample_rate"])))

    def loader(self, training=False):
        c = self.config
        return AudioLoader(sample_rate=c["sample_rate"], channel=c["channel"],
                           length=self.num_samples, length_policy=c["length_policy"],
                           resample=bool(c["resample"]),
                           random_crop=training and c["length_policy"] == "tile_crop",
                           min_samples=1)

    def log_mel_layer(self, name="log_mel"):
        """The log-mel front end (§III-A) as a weightless layer."""
        c = self.config
        return LogMelSpectrogram(sample_rate=c["sample_rate"], n_fft=c["n_fft"],
                                 hop_length=c["hop_length"], n_mels=c["n_mels"],
                                 log_mode=c["log_mode"], pad_mode=c["pad_mode"], name=name)

    @property
    def num_frames(self):
        """Log-mel frames of one clip (centred STFT frames at `hop_length`)."""
        return 1 + self.num_samples // int(self.config["hop_length"])

    def build_encoder(self, name="encoder"):
        """`(batch, num_samples)` waveforms -> pooled backbone output."""
        c = self.config
        waveform = keras.Input((self.num_samples,), name="waveform")
        log_mel = self.log_mel_layer()(waveform)
        backbone = resnet_backbone(int(c["depth"]), n_mels=int(c["n_mels"]),
                                   frames=self.num_frames, seed=int(c["seed"]),
                                   name="backbone")
        return keras.Model(waveform, float32_output(backbone(log_mel), "embedding_float32"),
                           name=name)

    # -- pipelines ---------------------------------------------------------

    def _bounded(self, ds):
        """Caps what tf.data's autotuner may buffer (`pipeline_ram_mb`)."""
        options = tf.data.Options()
        options.autotune.ram_budget = int(self.config["pipeline_ram_mb"]) * 2**20
        return without_autotune_thread(ds.with_options(options))

    def training_dataset(self, paths, targets=None, seed=0):
        """Shuffled, batched `(waveform, target)` pairs for `model.fit`.

        Args:
            paths: list of str. Training clips.
            targets: `(clips, ...)` array, or None for a zero target per clip
                (self-supervised losses ignore it).
            seed: int. Shuffle seed.
        """
        n = self.num_samples
        loader = self.loader(training=True)
        loader.check(list(paths), progress=False)
        if targets is None:
            targets = np.zeros(len(paths), np.float32)
        ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(targets)))
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda p, y: (tf.ensure_shape(loader.load(p), [n]), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # Full batches only: a last batch of one or two clips degenerates
        # BatchNorm and the in-batch negatives of NT-Xent, and a second batch
        # shape would trace the training step twice (about a minute for a
        # ResNet-152 on 2 CPU cores). The clips are reshuffled every epoch,
        # so none is left out for good.
        return self._bounded(ds.batch(self.batch_size(len(paths)), drop_remainder=True)
                             .prefetch(tf.data.AUTOTUNE))

    def batch_size(self, num_clips):
        """`batch_size`, or all the clips when there are fewer."""
        if num_clips < 1:
            raise ValueError(f"{self.name}: no training clips (received {num_clips}).")
        return min(int(self.config["batch_size"]), int(num_clips))

    def waveform_dataset(self, paths):
        """Batches of fixed-length waveforms of `paths`, in order."""
        n = self.num_samples
        loader = self.loader()
        loader.check([str(p) for p in paths], progress=False)
        ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
        ds = ds.map(lambda p: tf.ensure_shape(loader.load(p), [n]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return self._bounded(ds.batch(int(self.config["score_batch_clips"]))
                             .prefetch(tf.data.AUTOTUNE))

    # -- training ----------------------------------------------------------

    def _fit_kwargs(self, table):
        """More `model.fit` arguments (e.g. `steps_per_epoch` for an
        endless training stream)."""
        del table
        return {}

    def _steps_per_epoch(self, table):
        """Optimizer steps per epoch, which the StepLR schedule counts in."""
        return len(table) // self.batch_size(len(table))

    def micro_batches_per_update(self):
        """Pipeline elements per optimizer update: 1, or a subclass's
        `gradient_accumulation_steps` (each batch then runs as that many
        micro-batches, see `fit`)."""
        return 1

    @abc.abstractmethod
    def _build_training_model(self, encoder, table):
        """Returns `(model, loss, dataset)`: the uncompiled training model
        around `encoder`, its Keras loss and its `model.fit` pipeline."""

    def fit(self, table, context, name=None):
        """Trains the backbone on the (normal) clips of `table`.

        Returns:
            history DataFrame (one row per epoch; `selected` marks the epoch
            whose weights were kept).
        """
        c = self.config
        name = name or self.name
        seed = int(c["seed"])
        keras.utils.set_random_seed(seed)
        table = table.reset_index(drop=True)
        accumulate = self.micro_batches_per_update()
        fit_kwargs = self._fit_kwargs(table)
        with context.scope(), dtype_policy_scope(c["dtype_policy"]):
            encoder = self.build_encoder()
            model, loss, dataset = self._build_training_model(encoder, table)
            steps = self._steps_per_epoch(table)
            schedule = step_lr_schedule(c["learning_rate"], c["lr_step_epochs"],
                                        c["lr_gamma"], steps)
            if accumulate > 1:
                # Each batch runs as `accumulate` weighted micro-batches whose
                # averaged gradients make one update (`micro_batches`); the
                # schedule keeps counting updates, and one training call is
                # one update, so callbacks and step timings count updates.
                dataset = micro_batches(dataset, accumulate).prefetch(tf.data.AUTOTUNE)
                schedule = PerUpdateSchedule(schedule, accumulate)
                if "steps_per_epoch" in fit_kwargs:
                    fit_kwargs["steps_per_epoch"] *= accumulate
            # Keras' AdamW with its per-step scalars computed once a step (a
            # ResNet-152 step traces 26k ops instead of 35k).
            optimizer = LeanAdamW(
                learning_rate=schedule, weight_decay=float(c["weight_decay"]),
                gradient_accumulation_steps=accumulate if accumulate > 1 else None)
            model.compile(optimizer=loss_scaled(optimizer, c["dtype_policy"]), loss=loss,
                          run_eagerly=bool(c["run_eagerly"]), steps_per_execution=accumulate,
                          jit_compile=(False if c["run_eagerly"]
                                       else resolve_jit_compile(c["jit_compile"])))
        callbacks = []
        best = None
        if c["select"] == "min_loss":
            best = RestoreBestWeights(monitor="loss")
            callbacks.append(best)
        history = context.fit(model, dataset, name, c["epochs"], callbacks=callbacks,
                              shuffle=False,  # tf.data shuffles
                              **fit_kwargs)
        if best is not None and best.best_epoch is not None and len(history):
            history["selected"] = history["epoch"] == best.best_epoch + 1
            if context.run_dir is not None:
                # context.fit wrote the run's history before the selection was known.
                atomic_write_dataframe(context.run_dir / "history" / f"{name}.csv", history)
        self.encoder = encoder
        self.training_model = model
        return history

    # -- features ----------------------------------------------------------

    def _check_fitted(self):
        if self.encoder is None:
            raise ValueError(f"The {self.name} extractor is not trained; call fit() or "
                             "load it.")

    def _inference_function(self):
        """The encoder in inference mode as one `tf.function` of any batch size.

        `encoder.predict` traces once for the full batches and again for a
        shorter last one (a minute each for a deep network on 2 CPU cores);
        this traces once per encoder, and every later `embed` (the probe,
        the figures, the proxy metric) reuses the trace.
        """
        encoder = self.encoder
        if self._inference is None or self._inference[0] is not encoder:
            function = tf.function(
                lambda waveform: encoder(waveform, training=False),
                input_signature=[tf.TensorSpec((None, self.num_samples), tf.float32)],
                jit_compile=resolve_jit_compile(self.config["jit_compile"]))
            self._inference = (encoder, function)
        return self._inference[1]

    def embed(self, paths, verbose=0):
        """`(clips, dim)` float32 backbone features of the clips at `paths`."""
        self._check_fitted()
        if len(paths) == 0:
            return np.zeros((0, self.encoder.output_shape[-1]), np.float32)
        dataset = self.waveform_dataset(list(paths))
        if self.config["run_eagerly"]:
            # Batch by batch without tracing `predict`: for the few clips
            # this option is meant for, a trace costs more than the batches.
            values = np.concatenate([np.asarray(self.encoder(batch, training=False))
                                     for batch in dataset]).astype(np.float32)
        else:
            infer = self._inference_function()
            values = np.concatenate([np.asarray(infer(batch)) for batch in progress_bar(
                dataset, desc="Embedding", unit="batch", enabled=verbose, leave=False)]
            ).astype(np.float32)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise ValueError(f"Non-finite embedding for '{list(paths)[int(np.argmax(bad))]}'"
                             "; check the clip and the trained model.")
        return values

    def transform(self, table, verbose=0):
        """`{"embedding": (clips, dim)}`: the pooled backbone output."""
        return {"embedding": self.embed([str(p) for p in table["path"]], verbose)}

    def serving_model(self, num_samples=None):
        """Waveforms of any length `(batch, samples)` to `{"embedding"}`; the
        length policy is applied without the random training crop."""
        self._check_fitted()
        waveform = keras.Input((num_samples,), name="waveform")
        fixed = FixedLength(self.num_samples, self.config["length_policy"])(waveform)
        return keras.Model(waveform, {"embedding": self.encoder(fixed, training=False)},
                           name=f"{self.name}_features")

    @abc.abstractmethod
    def proxy_metrics(self, train, test, verbose=0):
        """The family's proxy-task metrics on the test clips.

        Args:
            train: DataFrame of the group's training clips.
            test: DataFrame of the group's labelled test clips.
            verbose: int.

        Returns:
            dict of str -> float (e.g. `{"macro_f1": 0.98}`).
        """

    # -- persistence -------------------------------------------------------

    def _save_extra(self, folder):
        """Subclasses write state beyond the encoder (heads, class maps)."""

    def _load_extra(self, folder):
        """Subclasses read what `_save_extra` wrote."""

    def _save_weights(self, folder):
        self._check_fitted()
        with atomic_path(Path(folder) / "encoder.keras", suffix=".keras") as tmp:
            self.encoder.save(tmp)
        self._save_extra(Path(folder))

    def _load_weights(self, folder):
        importlib.import_module("asd_keras.layers")  # registers the custom layers
        self.encoder = load_keras_model(Path(folder) / "encoder.keras")
        self._load_extra(Path(folder))


def write_json(path, record):
    """Writes `record` as JSON atomically."""
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
