"""Add your own Keras model to asd-keras as a new family of systems.

What this example teaches: a family is three pieces, all written outside
the library here.

1. A network: a function building a functional Keras model
   (`conv_autoencoder`, a 1-D convolutional autoencoder of log-mel frames).
2. An extractor: a `FeatureExtractor` subclass registered with
   `@register_extractor(name)`. Its constructor arguments are its
   configuration keys (checked by `validate_config`); `fit` trains the
   network through the run's `TrainingContext` (callbacks, checkpoints,
   `tf.distribute`); `serving_model` maps waveforms to named features, used
   by `transform` and by the exported SavedModel alike; `_save_weights` and
   `_load_weights` keep the model in the run folder.
3. A preset: an `AnomalySystem` subclass registered with
   `@register_system(name)`: `DEFAULTS` pick the extractor, the scoring
   backend and the groupings; `OPTIONS` name a choice of keys.

The family is then a system like the built-in ones (`get_system`, `fit`,
`score`, `load`, `export`). A minute or two on a laptop (`--tiny`: the
tests' size):

    python examples/custom_family.py --out /tmp/asd_custom
"""

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np

from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.layouts import read_dataset
from asd_keras.data.pipelines import labelled_clips
from asd_keras.data.synthetic import SynthConfig
from asd_keras.data.synthetic import generate
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.evaluation.metrics import evaluate
from asd_keras.extractors import FeatureExtractor
from asd_keras.extractors import register_extractor
from asd_keras.extractors.common import score_clips
from asd_keras.features.statistics import LogMelSpectrogram
from asd_keras.systems import AnomalySystem
from asd_keras.systems import get_system
from asd_keras.systems import register_system
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import load_keras_model


def conv_autoencoder(n_mels, mean, variance, filters=32, bottleneck=8):
    """Log-mel frames `(batch, frames, n_mels)` in dB -> their reconstruction in dB."""
    log_mel = keras.Input((None, n_mels), name="log_mel")
    # The training data's band statistics are constants of the model, so
    # the saved .keras file and the SavedModel carry them.
    x = keras.layers.Normalization(mean=mean, variance=variance)(log_mel)
    for width in (filters, bottleneck, filters):
        x = keras.layers.Conv1D(width, 5, padding="same", activation="relu")(x)
    x = keras.layers.Conv1D(n_mels, 5, padding="same")(x)
    out = keras.layers.Normalization(mean=mean, variance=variance, invert=True)(x)
    return keras.Model(log_mel, out, name="conv_autoencoder")


@register_extractor("conv_ae")
class ConvAutoencoderExtractor(FeatureExtractor):
    """Per-band reconstruction errors of a convolutional log-mel autoencoder,
    trained on random crops of `segment_seconds` (`seed`: the system's
    seed plus the ensemble member)."""

    trainable = True

    def __init__(self, n_mels=64, filters=32, bottleneck=8, segment_seconds=1.0, epochs=20,
                 batch_size=16, learning_rate=1e-3, sample_rate=16000, seed=0):
        schema = {"n_mels": integer(min=1), "filters": integer(min=1),
                  "bottleneck": integer(min=1), "segment_seconds": number(gt=0),
                  "epochs": integer(min=1), "batch_size": integer(min=1),
                  "learning_rate": number(gt=0), "sample_rate": integer(min=1),
                  "seed": integer(min=0)}
        config = {k: v for k, v in locals().items() if k in schema}
        self.config = validate_config(config, schema)
        self.model = None

    def get_config(self):
        return dict(self.config)

    def _spectrogram(self):
        return LogMelSpectrogram(self.config["sample_rate"], n_mels=self.config["n_mels"])

    def fit(self, table, context, name="conv_ae"):
        c = self.config
        loader = AudioLoader(c["sample_rate"], length_policy="tile_crop", random_crop=True,
                             length=int(c["segment_seconds"] * c["sample_rate"]))
        paths = sorted(str(p) for p in table["path"])
        loader.check(paths, progress=False)
        spectrogram = self._spectrogram()
        # Decoded once and kept in memory; a new random crop every epoch.
        clips = labelled_clips(paths, [], loader, shuffle=True, seed=c["seed"], in_memory=True)
        frames = clips.map(lambda waveform: spectrogram(waveform[None])[0])
        stats = keras.layers.Normalization()
        stats.adapt(frames.batch(c["batch_size"]))
        mean, variance = (np.ravel(v).tolist() for v in (stats.mean, stats.variance))
        keras.utils.set_random_seed(c["seed"])
        with context.scope():
            self.model = conv_autoencoder(c["n_mels"], mean, variance, c["filters"],
                                          c["bottleneck"])
            self.model.compile(keras.optimizers.Adam(c["learning_rate"]), loss="mse")
        train = frames.map(lambda s: (s, s)).batch(c["batch_size"])
        return context.fit(self.model, train, name, c["epochs"], shuffle=False)

    def serving_model(self, num_samples=None):
        waveform = keras.Input((num_samples,), name="waveform")
        log_mel = self._spectrogram()(waveform)
        # Keras ops on symbolic tensors become part of the functional model.
        error = keras.ops.mean(keras.ops.square(self.model(log_mel) - log_mel), axis=1)
        return keras.Model(waveform, {"error": error}, name="conv_ae_features")

    def transform(self, table, verbose=0):
        model = self.serving_model()
        paths = [str(p) for p in table["path"]]
        # score_clips batches clips of equal length through the model; the
        # base class's loader reads one channel at the configured rate.
        out = score_clips(paths, self.loader(), lambda w: {"error": model(w)["error"]},
                          ["error"], desc="Reconstruction errors", progress=bool(verbose))
        return {"error": np.asarray(out["error"], np.float32)}

    def _save_weights(self, folder):
        with atomic_path(Path(folder) / "model.keras", suffix=".keras") as tmp:
            self.model.save(tmp)

    def _load_weights(self, folder):
        self.model = load_keras_model(Path(folder) / "model.keras")


@register_system("conv_ae")
class ConvAutoencoderSystem(AnomalySystem):
    """Convolutional log-mel autoencoder per machine type; MSE or Mahalanobis score."""

    DEFAULTS = {"extractor": "conv_ae", "extractor_grouping": "machine_type",
                "grouping": "section", "score": "mse"}
    OPTIONS = {"score": {
        "mse": {"backend": "feature_mean", "feature_set": "error"},
        "mahalanobis": {"backend": "mahalanobis", "feature_set": "error"},
    }}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Output folder (default: a new temporary folder).")
    parser.add_argument("--force", action="store_true", help="Replace a non-empty --out.")
    parser.add_argument("--score", choices=("mse", "mahalanobis"), default="mse")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="A few seconds (the tests' size).")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="asd_keras_custom_"))
    check_output_dir(out, args.force, what="example folder")

    sizes = dict(seconds=0.5, train=3, test=2) if args.tiny else dict(seconds=2, train=30, test=5)
    generate(out / "data", SynthConfig(machine_types=("fan", "valve"), target_train=1,
                                       **sizes), force=True, progress=False)
    table = read_dataset(synthetic_data_root(out / "data", "dcase2022"))

    # Registered, the family is found by name like a built-in system.
    network = dict(n_mels=16, filters=4, bottleneck=2, segment_seconds=0.5, epochs=1) \
        if args.tiny else dict(epochs=args.epochs)
    system = get_system("conv_ae")({"score": args.score, **network})
    chosen = {k: system.config[k] for k in ("extractor", "backend", "feature_set")}
    print(f"Training conv_ae ({chosen}) into '{out / 'run'}'.")
    system.fit(table, out / "run", verbose=0 if args.tiny else 2)

    scores = system.score(table)
    scores.to_csv(out / "scores.csv", index=False)
    _, official = evaluate(scores, "dcase2022")
    reloaded = get_system("conv_ae").load(out / "run", system.config)
    difference = float(np.abs(reloaded.score(table)["score"] - scores["score"]).max())
    system.export(out / "saved_model")
    print(f"{len(scores)} test clips scored, official score {official:.3f}; reloaded run's "
          f"largest score difference {difference:.2e}; SavedModel in '{out / 'saved_model'}'.")
    (out / "summary.json").write_text(json.dumps(
        {"official_score": official, "reload_max_difference": difference, **chosen}))

if __name__ == "__main__":
    main()
