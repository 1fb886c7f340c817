"""The DCASE dense autoencoder as a trained extractor: clips to residuals.

The extractor trains the baseline autoencoder (`asd_keras.models.dense_ae`)
on the stacked log-mel vectors of its training clips and describes every
clip by its reconstruction residuals (`FrameReconstruction`):

- `squared_error` `(clips, 640)`: the clip mean of the element-wise squared
  residual; the `feature_mean` backend turns it into the MSE score;
- `residual` `(clips, 128)`: the clip mean of the residual chunks; the
  `mahala` backend scores it (and fits its covariances on the frame-level
  residuals, `frame_batches`);
- `absolute_error` `(clips, 640)`: the clip mean of the element-wise
  absolute residual, Shin & Lee's AE feature (their proxy study trains the
  AE with `loss="mae"`, paper Table I).

`proxy_metrics` gives the AE's proxy-task metric of that study: the test
MAE (paper Eq. 6) of the normal test clips.

The shared system trains one extractor per machine type
(`extractor_grouping=machine_type` in the `dense_ae` preset).
"""

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.data.pipelines import vector_dataset
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.common import log_mel_schema
from asd_keras.extractors.vectors import VectorModelExtractor
from asd_keras.layers.reconstruction import FrameReconstruction
from asd_keras.models.dense_ae import dense_autoencoder
from asd_keras.models.precision import dtype_policy_scope
from asd_keras.models.precision import loss_scaled
from asd_keras.models.precision import precision_schema
from asd_keras.models.precision import resolve_jit_compile
from asd_keras.utils.callbacks import RestoreBestWeights

# Differences between the baseline years (reference dcase.md 2.1, 2.3, 2.6);
# they fill the keys left at None.
VARIANTS = {
    # librosa 0.6 (reflect padding), log10(mel + eps), batch 512.
    "dcase2020": {"log_mode": "offset", "pad_mode": "reflect", "batch_size": 512},
    "dcase2021": {"log_mode": "max", "pad_mode": "reflect", "batch_size": 512},
    # librosa 0.9 (zero padding), log10(max(mel, eps)), batch 512.
    "dcase2022": {"log_mode": "max", "pad_mode": "constant", "batch_size": 512},
    # PyTorch port used 2023-2026: batch 256.
    "dcase2023": {"log_mode": "max", "pad_mode": "constant", "batch_size": 256},
}
SETS = ("squared_error", "residual", "absolute_error")
LOSSES = ("mse", "mae")


def _schema():
    schema = {
        "variant": choice(*VARIANTS),
        "hidden_units": integer(min=1),
        "latent_dim": integer(min=1),
        "num_hidden_layers": integer(min=1),
        "epochs": integer(min=1),
        "batch_size": integer(min=1),
        "learning_rate": number(gt=0),
        "loss": choice(*LOSSES),
        "select": choice("last", "min_loss"),
        "validation_split": number(min=0, lt=1),
        "steps_per_execution": integer(min=1),
        **precision_schema(),
        **log_mel_schema(),
    }
    return schema


@register_extractor("dense_ae")
class DenseAutoencoderExtractor(VectorModelExtractor):
    """Reconstruction residuals of the DCASE dense autoencoder.

    Args:
        variant: str. Baseline year (`VARIANTS`): fills `log_mode`,
            `pad_mode` and `batch_size` when they are None.
        hidden_units: int. The network
            (reference dcase.md 2.2).
        latent_dim: see `hidden_units`.
        num_hidden_layers: see `hidden_units`.
        epochs: int. Defaults to `100`.
        batch_size: int or None. Vectors per step.
        learning_rate: float. Adam. Defaults to `1e-3`.
        loss: str. `"mse"` (the DCASE baselines) or `"mae"` (Shin & Lee's
            AE, paper Table I).
        select: str. `"last"` keeps the last epoch's weights (the DCASE
            baselines); `"min_loss"` those of the epoch with the lowest
            training loss (Shin & Lee §III-A).
        validation_split: float. Share of the sorted training files held out
            for Keras validation and never trained on (dcase.md 2.3).
        sample_rate: the log-mel front end.
        channel: the log-mel front end.
        resample: the log-mel front end.
        n_fft: the log-mel front end.
        hop_length: the log-mel front end.
        n_mels: the log-mel front end.
        n_frames: the log-mel front end.
        power: the log-mel front end.
        log_mode: the log-mel front end.
        pad_mode: the log-mel front end.
        cache: `"disk"`, `"memory"` or `"none"`: where the training features
            are cached after the first epoch.
        shuffle_clips: int. The two shuffle buffers of
            `vector_dataset`.
        shuffle_vectors: see `shuffle_clips`.
        score_batch_clips: int. Clips per `transform` call.
        steps_per_execution: int. Training steps per call into the graph.
        jit_compile: `"auto"` (XLA on GPU only), True or False.
        dtype_policy: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (loss-scaled; for GPUs): the network's precision
            (`asd_keras.models.precision`); the log-mel front end and the
            residuals stay float32.
        seed: int. Set before each model is built and seeds the shuffles.
    """

    VARIANTS = VARIANTS
    SETS = SETS
    frame_sets = SETS
    description = "Reconstruction errors"

    def __init__(self, variant="dcase2022", hidden_units=128, latent_dim=8,
                 num_hidden_layers=4, epochs=100, batch_size=None, learning_rate=1e-3,
                 loss="mse", select="last", validation_split=0.1, sample_rate=16000, channel=0, resample=False,
                 n_fft=1024, hop_length=512, n_mels=128, n_frames=5, power=2.0,
                 log_mode=None, pad_mode=None, cache="disk", shuffle_clips=32,
                 shuffle_vectors=8192, score_batch_clips=8,
                 # The model is so small that Keras' per-step overhead would
                 # cost as much as the step.
                 steps_per_execution=32, jit_compile="auto", dtype_policy="float32",
                 seed=13711):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self._configure(config, _schema())

    # -- training --------------------------------------------------------

    def fit(self, table, context, name="dense_ae"):
        """Trains the autoencoder on the clips of `table` (all normal).

        Args:
            table: DataFrame of training rows with `path`.
            context: `asd_keras.utils.training.TrainingContext`.
            name: str. Names the history, backup and TensorBoard files.

        Returns:
            history DataFrame.
        """
        c = self.config
        loader = self.loader()
        paths = sorted(table["path"])
        counts = self._count_vectors(paths, loader)
        # Keras validation_split holds out the tail of the sorted file list
        # and never trains on it (reference dcase.md 2.3); kept on purpose.
        n_val = int(len(paths) * float(c["validation_split"]))
        train_paths, val_paths = paths[:len(paths) - n_val], paths[len(paths) - n_val:]
        if not train_paths:
            raise ValueError(f"{name!r} has {len(paths)} training clip(s): too few for "
                             f"validation_split={c['validation_split']}.")

        def count(subset):
            return int(sum(counts[p] for p in subset))

        keras.utils.set_random_seed(c["seed"])
        with self._training_cache(context) as cache:
            train_ds = vector_dataset(
                train_paths, loader, self.frontend, c["batch_size"], shuffle=True,
                seed=c["seed"], cache=cache("train"), clip_buffer=c["shuffle_clips"],
                vector_buffer=c["shuffle_vectors"], num_vectors=count(train_paths))
            val_ds = None
            if val_paths:
                # Cached too: its features would otherwise be recomputed at
                # the end of every epoch.
                val_ds = vector_dataset(val_paths, loader, self.frontend, c["batch_size"],
                                        cache=cache("validation"),
                                        num_vectors=count(val_paths))
            with context.scope(), dtype_policy_scope(c["dtype_policy"]):
                model = dense_autoencoder(self.frontend.vector_dim, c["hidden_units"],
                                          c["latent_dim"], c["num_hidden_layers"],
                                          name=f"dense_autoencoder_{name}")
                optimizer = loss_scaled(keras.optimizers.Adam(c["learning_rate"]),
                                        c["dtype_policy"])
                model.compile(optimizer=optimizer,
                              loss=c["loss"], steps_per_execution=c["steps_per_execution"],
                              jit_compile=resolve_jit_compile(c["jit_compile"]))
            callbacks = []
            if c["select"] == "min_loss":
                callbacks.append(RestoreBestWeights(monitor="loss"))
            history = context.fit(model, train_ds, name, c["epochs"],
                                  validation_data=val_ds, callbacks=callbacks,
                                  shuffle=False)  # the pipeline shuffles
        self.model = model
        return history

    # -- features --------------------------------------------------------

    def _vector_features(self, vectors):
        """`{"squared_error", "absolute_error": (batch, 640), "residual": (batch, 128)}`."""
        return FrameReconstruction(self.model, self.frontend.n_mels)(vectors)

    def frame_batches(self, table, feature_set):
        """Shuffled batches of frame-level residuals, for backends fitted on
        frames (MAHALA's covariance, reference dcase.md 3).

        Yields:
            (values, rows): `values` `(n, k, d)` (`d` the set's size: the
            `n_frames` residual chunks of each vector for `residual`, the
            squared residual vector for `squared_error`); `rows` `(n,)` the
            positions in `table` of the clips the vectors come from.
        """
        self._check_fitted()
        if feature_set not in SETS:
            raise ValueError(f"feature_set must be one of {SETS}; received {feature_set!r}.")
        c = self.config
        # tf.data's seeded shuffles also depend on the global seed; setting it
        # here makes the batches (and MAHALA's batch-centred covariance) a
        # function of `seed` alone, not of what ran before in the process.
        tf.random.set_seed(c["seed"])
        ds = vector_dataset(
            [str(p) for p in table["path"]], self.loader(), self.frontend, c["batch_size"],
            shuffle=True, seed=c["seed"], clip_buffer=c["shuffle_clips"],
            vector_buffer=c["shuffle_vectors"], extras=[np.arange(len(table))])
        for vectors, rows in ds:
            vectors = vectors.numpy()
            residual = vectors - self.model(vectors, training=False).numpy()
            if feature_set == "residual":
                values = residual.reshape(len(residual), -1, self.frontend.n_mels)
            elif feature_set == "absolute_error":
                values = np.abs(residual)[:, None, :]
            else:
                values = np.square(residual)[:, None, :]
            yield values, rows.numpy()

    # -- proxy task ------------------------------------------------------

    def proxy_metrics(self, train, test, verbose=0):
        """Shin & Lee's AE proxy metric: `{"test_mae": ...}`.

        The mean absolute reconstruction error on log-mel (paper Eq. 6),
        averaged over the stacked vectors of the normal test clips: the
        proxy task is reconstructing normal sound, so anomalous clips are
        left out (an assumption; the paper says "test MAE"). The values are
        in dB of the front end's log-mel, not the paper's normalised scale.

        Args:
            train: unused (the AE needs no fitted classifier).
            test: DataFrame of labelled test clips (`label` 0 = normal).
            verbose: int.

        Returns:
            dict with `test_mae`.
        """
        del train
        normal = test[test["label"].astype(int) == 0]
        if len(normal) == 0:
            raise ValueError("test_mae needs normal test clips; the test table holds "
                             f"{len(test)} clip(s), none labelled normal.")
        errors = self.transform(normal, verbose=verbose)["absolute_error"]
        return {"test_mae": float(errors.mean())}
