"""Base of the trained extractors on the DCASE baselines' stacked log-mel vectors.

The dense autoencoder and the GAN detectors share everything but their
network and what it makes of a clip's vectors: the baseline front end
(`LogMelFrontend`, with per-year `VARIANTS` filling the keys left at None),
the audio loader, the training-feature cache, the serving model from
waveforms to named features (`LogMelVectors` followed by the subclass's
`_vector_features`), `transform` over clips of any length, and the `.keras`
persistence of the trained model.
"""

import abc
import contextlib
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.common import score_clips
from asd_keras.features.spectral import LogMelFrontend
from asd_keras.features.statistics import LogMelVectors
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import load_keras_model


class VectorModelExtractor(FeatureExtractor):
    """A trained extractor whose model sees stacked log-mel vectors.

    Subclasses set `VARIANTS` (`{variant: {key: value}}`), `SETS` (the
    feature set names) and `description` (the progress label), call
    `_configure(config, schema)` from `__init__`, train `self.model` in
    `fit` and implement `_vector_features(vectors)`: Keras layers from
    `(batch, vectors, dim)` to the dict of named features.
    """

    trainable = True
    VARIANTS = {}
    SETS = ()
    description = "Features"

    def _configure(self, config, schema):
        variant = config["variant"]
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {tuple(self.VARIANTS)}; received "
                             f"{variant!r}.")
        for key, value in self.VARIANTS[variant].items():
            if config[key] is None:
                config[key] = value
        self.config = c = validate_config(config, schema)
        self.frontend = LogMelFrontend(
            sample_rate=c["sample_rate"], n_fft=c["n_fft"], hop_length=c["hop_length"],
            n_mels=c["n_mels"], n_frames=c["n_frames"], power=c["power"],
            log_mode=c["log_mode"], pad_mode=c["pad_mode"])
        self.model = None

    def get_config(self):
        return dict(self.config)

    def loader(self):
        # Shorter clips than one stacked vector cannot be scored.
        return AudioLoader(sample_rate=self.config["sample_rate"],
                           channel=self.config["channel"],
                           resample=bool(self.config["resample"]),
                           min_samples=max(self.frontend.n_fft, self.frontend.min_samples))

    def _count_vectors(self, paths, loader):
        """Stacked vectors per clip, `{path: count}` (checks every clip)."""
        frames = loader.check(list(paths), progress=False).set_index("path")["frames"]
        return {p: self.frontend.num_vectors(frames[p]) for p in paths}

    @contextlib.contextmanager
    def _training_cache(self, context):
        """Yields `cache(part)`: where `vector_dataset` caches the features of
        one part (`cache="disk"`: a folder in the run, removed afterwards)."""
        root = Path(tempfile.mkdtemp(prefix="cache-", dir=context.run_dir))
        try:
            yield lambda part: {"disk": root / part, "memory": "memory"}.get(
                self.config["cache"])
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _check_fitted(self):
        if self.model is None:
            raise ValueError(f"The {self.name} extractor is not trained; call fit() or "
                             "load it.")

    @abc.abstractmethod
    def _vector_features(self, vectors):
        """Keras layers: `(batch, vectors, dim)` to the dict of named features."""

    def serving_model(self, num_samples=None):
        """Waveforms `(batch, num_samples)` to the named features."""
        self._check_fitted()
        frontend = self.frontend.get_config()
        n_frames = frontend.pop("n_frames")
        waveform = keras.Input((num_samples,), name="waveform")
        vectors = LogMelVectors(n_frames, **frontend)(waveform)
        return keras.Model(waveform, self._vector_features(vectors),
                           name=f"{self.name}_features")

    def transform(self, table, verbose=0):
        """The named feature sets of the clips of `table`, `(clips, dim)` each.

        Raises:
            ValueError: naming the first clip with a NaN or infinite feature.
        """
        self._check_fitted()
        model = self.serving_model(None)
        if len(table) == 0:
            return {k: np.zeros((0, model.output[k].shape[-1]), np.float32)
                    for k in self.SETS}

        def features(waveforms):
            return {k: v.numpy() for k, v in model(waveforms, training=False).items()}

        paths = [str(p) for p in table["path"]]
        out = score_clips(paths, self.loader(), features, list(self.SETS),
                          self.config["score_batch_clips"], self.description,
                          progress=bool(verbose))
        out = {k: np.asarray(out[k], np.float32) for k in self.SETS}
        for key, values in out.items():
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise ValueError(f"Non-finite {key} features for "
                                 f"'{paths[int(np.argmax(bad))]}'; check the clip and "
                                 "the trained model.")
        return out

    def _save_weights(self, folder):
        self._check_fitted()
        with atomic_path(Path(folder) / "model.keras", suffix=".keras") as tmp:
            self.model.save(tmp)

    def _load_weights(self, folder):
        self.model = load_keras_model(Path(folder) / "model.keras")
