"""The DCASE dense autoencoder baseline (2020-2026).

`dense_autoencoder` builds the Functional model of reference dcase.md 2.2;
`DenseAutoencoderSystem` trains one per machine type with `model.fit` on a
streaming log-mel pipeline, scores clips by mean squared reconstruction error
(MSE) or selective Mahalanobis distance (MAHALA), fits the gamma decision
threshold, and exports a SavedModel from raw waveform to score.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import resolve_config
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.layouts import require_split
from asd_keras.data.pipelines import vector_dataset
from asd_keras.features.spectral import LogMelFrontend
from asd_keras.models.common import log_mel_schema
from asd_keras.models.common import JIT_CHOICES
from asd_keras.models.common import machine_type_endpoint
from asd_keras.models.common import resolve_jit_compile
from asd_keras.models.common import score_clips
from asd_keras.models.common import training_split
from asd_keras.scoring.mahalanobis import ResidualCovariance
from asd_keras.scoring.threshold import gamma_threshold
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import load_keras_model


def dense_autoencoder(
    input_dim=640,
    hidden_units=128,
    latent_dim=8,
    num_hidden_layers=4,
    name="dense_autoencoder",
):
    """The DCASE baseline autoencoder as a Functional `keras.Model`.

    `Input(d) -> [Dense(h) -> BN -> ReLU] x L -> Dense(latent) -> BN -> ReLU
    -> [Dense(h) -> BN -> ReLU] x L -> Dense(d)` with a linear output and
    Keras default initialisers and BatchNorm settings, as the Keras
    baselines (reference dcase.md 2.2).

    Args:
        input_dim: int. Size of a stacked log-mel vector. Defaults to `640`.
        hidden_units: int. Width h of every hidden layer. Defaults to `128`.
        latent_dim: int. Bottleneck size. Defaults to `8`.
        num_hidden_layers: int. Hidden layers L on each side. Defaults to 4.
        name: str.

    Returns:
        keras.Model mapping `(batch, input_dim)` to `(batch, input_dim)`.

    Example:
    >>> model = dense_autoencoder()
    >>> model.count_params()
    269992
    """
    import keras

    from asd_keras.models.blocks import dense_block
    from asd_keras.models.blocks import dense_stack

    inputs = keras.Input(shape=(input_dim,), name="log_mel_vectors")
    x, _ = dense_stack(inputs, hidden_units, num_hidden_layers, "encoder")
    x = dense_block(x, latent_dim, "bottleneck")
    x, _ = dense_stack(x, hidden_units, num_hidden_layers, "decoder")
    outputs = keras.layers.Dense(input_dim, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=name)


DEFAULTS = {
    "variant": "dcase2022",
    "hidden_units": 128,
    "latent_dim": 8,
    "num_hidden_layers": 4,
    "epochs": 100,
    "batch_size": 512,
    "learning_rate": 1e-3,
    "validation_split": 0.1,
    "score": "mse",
    "threshold_quantile": 0.9,
    "sample_rate": 16000,
    "channel": 0,
    "resample": False,
    "n_fft": 1024,
    "hop_length": 512,
    "n_mels": 128,
    "n_frames": 5,
    "power": 2.0,
    "log_mode": "max",
    "pad_mode": "constant",
    "cache": "disk",
    "shuffle_clips": 32,
    "shuffle_vectors": 8192,
    "score_batch_clips": 8,
    # Training steps per call into the compiled graph: the model is so
    # small that Keras' per-step overhead would cost as much as the step.
    "steps_per_execution": 32,
    "jit_compile": "auto",
    "seed": 13711,
    "deterministic": False,
}

# Differences between the baseline years (reference dcase.md 2.1, 2.3, 2.6).
VARIANTS = {
    # librosa 0.6 (reflect padding), log10(mel + eps), batch 512.
    "dcase2020": {"log_mode": "offset", "pad_mode": "reflect", "batch_size": 512},
    "dcase2021": {"log_mode": "max", "pad_mode": "reflect", "batch_size": 512},
    # librosa 0.9 (zero padding), log10(max(mel, eps)), batch 512.
    "dcase2022": {"log_mode": "max", "pad_mode": "constant", "batch_size": 512},
    # PyTorch port used 2023-2026: batch 256.
    "dcase2023": {"log_mode": "max", "pad_mode": "constant", "batch_size": 256},
}

SCORES = ("mse", "mahala")

# What each key of DEFAULTS accepts (`asd_keras.config.validate_config`).
SCHEMA = {
    "variant": choice(*VARIANTS),
    "hidden_units": integer(min=1),
    "latent_dim": integer(min=1),
    "num_hidden_layers": integer(min=1),
    "epochs": integer(min=1),
    "batch_size": integer(min=1),
    "learning_rate": number(gt=0),
    "validation_split": number(min=0, lt=1),
    "score": choice(*SCORES),
    "threshold_quantile": number(gt=0, lt=1),
    "steps_per_execution": integer(min=1),
    "jit_compile": choice(*JIT_CHOICES),
    **log_mel_schema(),
}


class DenseAutoencoderSystem:
    """Trains, scores and exports the dense autoencoder, one per machine type.

    Args:
        config: dict of overrides of `DEFAULTS`; `variant` picks the year's
            small differences (`VARIANTS`).

    Example:
    >>> system = DenseAutoencoderSystem({"epochs": 2})
    >>> system.fit(train_table, run_dir)  # doctest: +SKIP
    >>> scores = system.score(test_table)  # doctest: +SKIP
    """

    name = "dense_ae"

    def __init__(self, config=None):
        self.config = validate_config(
            resolve_config(DEFAULTS, dict(config or {}), VARIANTS), SCHEMA)
        c = self.config
        self.frontend = LogMelFrontend(
            sample_rate=c["sample_rate"],
            n_fft=c["n_fft"],
            hop_length=c["hop_length"],
            n_mels=c["n_mels"],
            n_frames=c["n_frames"],
            power=c["power"],
            log_mode=c["log_mode"],
            pad_mode=c["pad_mode"],
        )
        self.models = {}
        self.scoring = {}

    def _loader(self):
        # Shorter clips than one stacked vector cannot be scored.
        return AudioLoader(
            sample_rate=self.config["sample_rate"],
            channel=self.config["channel"],
            resample=bool(self.config["resample"]),
            min_samples=max(self.frontend.n_fft, self.frontend.min_samples),
        )

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------

    def fit(self, table, run_dir, verbose=1):
        """Trains one autoencoder per machine type on the table's train split.

        Args:
            table: DataFrame from `read_dataset`.
            run_dir: Path. Folder for models, histories and caches.
            verbose: int. Keras `fit` verbosity.

        Returns:
            dict machine type -> training history DataFrame.
        """
        import keras

        run_dir = Path(run_dir)
        loader = self._loader()
        train = training_split(table, run_dir, loader)
        histories = {}
        for machine_type, group in train.groupby("machine_type"):
            print(f"Training dense autoencoder for '{machine_type}' on "
                  f"{len(group)} clips")
            keras.utils.set_random_seed(self.config["seed"])
            histories[machine_type] = self._fit_one(
                machine_type, group, loader, run_dir, verbose
            )
        self.save(run_dir)
        return histories

    def _fit_one(self, machine_type, group, loader, run_dir, verbose):
        import keras

        c = self.config
        paths = sorted(group["path"])
        # Keras validation_split holds out the tail of the sorted file list
        # and never trains on it (reference dcase.md 2.3); kept on purpose.
        n_val = int(len(paths) * float(c["validation_split"]))
        train_paths = paths[: len(paths) - n_val]
        val_paths = paths[len(paths) - n_val :]
        if not train_paths:
            raise ValueError(
                f"'{machine_type}' has {len(paths)} training clip(s): too few "
                f"for validation_split={c['validation_split']}."
            )
        cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=run_dir))

        def cache(name):
            return {"disk": cache_root / name, "memory": "memory"}.get(c["cache"])

        frames = loader.check(paths, progress=False).set_index("path")["frames"]

        def count(subset):
            return int(sum(self.frontend.num_vectors(frames[p]) for p in subset))

        try:
            train_ds = vector_dataset(
                train_paths,
                loader,
                self.frontend,
                c["batch_size"],
                shuffle=True,
                seed=c["seed"],
                cache=cache("train"),
                clip_buffer=c["shuffle_clips"],
                vector_buffer=c["shuffle_vectors"],
                num_vectors=count(train_paths),
            )
            val_ds = None
            if val_paths:
                # Cached too: its features would otherwise be recomputed
                # at the end of every epoch.
                val_ds = vector_dataset(
                    val_paths, loader, self.frontend, c["batch_size"],
                    cache=cache("validation"), num_vectors=count(val_paths),
                )
            model = dense_autoencoder(
                self.frontend.vector_dim,
                c["hidden_units"],
                c["latent_dim"],
                c["num_hidden_layers"],
                name=f"dense_autoencoder_{machine_type}",
            )
            model.compile(
                optimizer=keras.optimizers.Adam(c["learning_rate"]),
                loss="mse",
                steps_per_execution=c["steps_per_execution"],
                jit_compile=resolve_jit_compile(c["jit_compile"]),
            )
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=int(c["epochs"]),
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles clips and vectors
            )
        finally:
            shutil.rmtree(cache_root, ignore_errors=True)
        self.models[machine_type] = model
        self.scoring[machine_type] = self._fit_scoring(
            machine_type, model, group, loader
        )
        frame = pd.DataFrame(history.history)
        frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
        atomic_write_dataframe(run_dir / "history" / f"{machine_type}.csv", frame)
        return frame

    def _fit_scoring(self, machine_type, model, group, loader):
        """MAHALA covariances and gamma thresholds from the training clips."""
        c = self.config
        accumulator = ResidualCovariance(self.frontend.n_mels)
        is_target = group["file_name"].str.contains("target").to_numpy()
        ds = vector_dataset(
            list(group["path"]),
            loader,
            self.frontend,
            c["batch_size"],
            shuffle=True,
            seed=c["seed"],
            clip_buffer=c["shuffle_clips"],
            vector_buffer=c["shuffle_vectors"],
            extras=[is_target],
        )
        for vectors, target in tqdm(
            ds, desc=f"MAHALA covariance ({machine_type})", unit="batch",
            leave=False,
        ):
            vectors = vectors.numpy()
            residual = vectors - model(vectors, training=False).numpy()
            accumulator.update(residual, target.numpy())
        state = {"inverse_covariances": accumulator.inverses()}
        train_scores = self._score_paths(model, state, list(group["path"]), loader,
                                         desc=f"Training scores ({machine_type})")
        for kind in SCORES:
            state[f"threshold_{kind}"] = gamma_threshold(
                train_scores[kind], c["threshold_quantile"]
            )
        state["train_scores"] = pd.DataFrame(
            {"file_name": group["file_name"].to_numpy(), **train_scores}
        )
        return state

    # ------------------------------------------------------------------
    # Scoring
    # ------------------------------------------------------------------

    def score_function(self, model, inverse_covariances):
        """The waveform-to-score function shared by `score` and `export`.

        Returns:
            tf.function mapping float32 `(clips, samples)` to a dict with
            `mse` and `mahala` scores `(clips,)` and the clip-mean
            element-wise squared error `error_vector` `(clips, dim)`.
        """
        import tensorflow as tf

        frontend = self.frontend
        inverses = tf.constant(inverse_covariances, tf.float32)
        chunk = frontend.n_mels

        @tf.function(reduce_retracing=True)
        def score(waveforms):
            vectors = frontend.vectors(waveforms)
            clips, steps = tf.shape(vectors)[0], tf.shape(vectors)[1]
            flat = tf.reshape(vectors, [-1, frontend.vector_dim])
            residual = flat - model(flat, training=False)
            residual = tf.reshape(residual, [clips, steps, frontend.vector_dim])
            squared = tf.square(residual)
            error_vector = tf.reduce_mean(squared, axis=1)
            mse = tf.reduce_mean(error_vector, axis=1)
            mean_chunk = tf.reduce_mean(
                tf.reshape(residual, [clips, -1, chunk]), axis=1
            )
            per_domain = tf.einsum(
                "bi,kij,bj->bk", mean_chunk, inverses, mean_chunk
            )
            return {
                "mse": mse,
                "mahala": tf.reduce_min(per_domain, axis=1),
                "error_vector": error_vector,
            }

        return score

    def _score_paths(self, model, state, paths, loader, desc="Scoring",
                     with_error_vectors=False):
        fn = self.score_function(model, state["inverse_covariances"])
        keys = list(SCORES) + (["error_vector"] if with_error_vectors else [])
        return score_clips(paths, loader, fn, keys,
                           self.config["score_batch_clips"], desc)

    def features(self, table, verbose=0):
        """Per-clip features of any rows: the clip-mean element-wise squared
        reconstruction error of the clip's machine-type model, `(rows, 640)`
        (what `asd-keras probe` scores with the linear probe and global MD).
        """
        del verbose
        missing = sorted(set(table["machine_type"]) - set(self.models))
        if missing:
            raise ValueError(f"The run has no model for machine type(s) {missing} "
                             f"(trained: {sorted(self.models)}).")
        loader = self._loader()
        out = np.zeros((len(table), self.frontend.vector_dim), np.float32)
        positions = np.arange(len(table))
        for machine_type, rows in table.groupby("machine_type").indices.items():
            result = self._score_paths(
                self.models[machine_type], self.scoring[machine_type],
                list(table["path"].iloc[rows]), loader,
                desc=f"Features {machine_type}", with_error_vectors=True)
            out[positions[rows]] = np.stack(result["error_vector"])
        return out

    def score(self, table, with_error_vectors=False):
        """Scores every test clip of the table.

        Args:
            table: DataFrame from `read_dataset` (its test split is used).
            with_error_vectors: bool. Also return the clip-mean element-wise
                squared reconstruction error (a feature for other methods).

        Returns:
            DataFrame of the test rows with `score` (the configured kind),
            `score_mse`, `score_mahala` and `decision` columns, and
            `error_vector` when asked.
        """
        test = require_split(table, "test").copy()
        missing = sorted(set(test["machine_type"]) - set(self.models))
        if missing:
            raise ValueError(
                f"The run has no model for machine type(s) {missing} "
                f"(trained: {sorted(self.models)}). Train on them, or score a "
                "data folder without them."
            )
        loader = self._loader()
        kind = self.config["score"]
        parts = []
        for machine_type, group in test.groupby("machine_type"):
            state = self.scoring[machine_type]
            result = self._score_paths(
                self.models[machine_type], state, list(group["path"]), loader,
                desc=f"Scoring {machine_type}",
                with_error_vectors=with_error_vectors,
            )
            group = group.copy()
            group["score_mse"] = result["mse"]
            group["score_mahala"] = result["mahala"]
            group["score"] = result[kind]
            group["decision"] = (
                group["score"] > state[f"threshold_{kind}"]
            ).astype(int)
            if with_error_vectors:
                group["error_vector"] = list(result["error_vector"])
            parts.append(group)
        return pd.concat(parts).loc[test.index]

    # ------------------------------------------------------------------
    # Persistence and export
    # ------------------------------------------------------------------

    def save(self, run_dir):
        run_dir = Path(run_dir)
        for machine_type, model in self.models.items():
            folder = run_dir / "models"
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / f"{machine_type}.keras")
            state = self.scoring[machine_type]
            np.save(folder / f"{machine_type}_inverse_covariances.npy",
                    state["inverse_covariances"])
            atomic_write_text(
                folder / f"{machine_type}_scoring.json",
                json.dumps({f"threshold_{k}": state[f"threshold_{k}"]
                            for k in SCORES}, indent=2),
            )
            atomic_write_dataframe(
                run_dir / "train_scores" / f"{machine_type}.csv",
                state["train_scores"],
            )

    @classmethod
    def load(cls, run_dir, config):
        system = cls(config)
        folder = Path(run_dir) / "models"
        paths = sorted(folder.glob("*.keras"))
        if not paths:
            raise FileNotFoundError(
                f"No trained models in '{folder}'. Is '{run_dir}' a finished "
                "'asd-keras train' run?"
            )
        for path in paths:
            machine_type = path.stem
            system.models[machine_type] = load_keras_model(path)
            state = json.loads((folder / f"{machine_type}_scoring.json").read_text())
            state["inverse_covariances"] = np.load(
                folder / f"{machine_type}_inverse_covariances.npy"
            )
            system.scoring[machine_type] = state
        return system

    def export(self, out_dir):
        """Writes a SavedModel mapping raw waveforms to anomaly scores.

        The serving signature `serving_default(waveform, machine_type)` takes
        float32 waveforms `(clips, samples)` at the run's sample rate (the
        configured channel, mono) and a scalar machine type string, and
        returns `anomaly_score` (float32, the configured score kind) and
        `decision` (int32) of shape `(clips,)`.
        """
        import keras
        import tensorflow as tf

        machine_types = sorted(self.models)
        kind = self.config["score"]
        archive = keras.export.ExportArchive()
        functions, thresholds = [], []
        for machine_type in machine_types:
            model = self.models[machine_type]
            archive.track(model)
            functions.append(self.score_function(
                model, self.scoring[machine_type]["inverse_covariances"]))
            thresholds.append(self.scoring[machine_type][f"threshold_{kind}"])
        serve = machine_type_endpoint(
            machine_types, [lambda w, f=f: f(w)[kind] for f in functions], thresholds)

        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([], tf.string, name="machine_type"),
            ],
        )
        archive.write_out(str(out_dir), verbose=False)
        return {
            "machine_types": machine_types,
            "sample_rate": self.config["sample_rate"],
            "channel": self.config["channel"],
            "score": kind,
        }
