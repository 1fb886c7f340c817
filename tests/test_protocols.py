"""The backend and extractor protocols: registry, validation, persistence."""

import numpy as np
import pandas as pd
import pytest

from asd_keras.backends import BACKENDS
from asd_keras.backends import ScoringBackend
from asd_keras.backends import get_backend
from asd_keras.backends import load_backend
from asd_keras.backends import register_backend
from asd_keras.extractors import FeatureExtractor
from asd_keras.extractors import load_extractor
from asd_keras.extractors import register_extractor


@register_backend("test_mean_distance")
class MeanDistanceBackend(ScoringBackend):
    required_columns = ("domain",)

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = float(scale)

    def _fit_arrays(self, features, metadata):
        return {"mean": features[metadata["domain"].to_numpy() == "source"].mean(0)}

    def scoring_layer(self):
        import keras

        mean, scale = self.arrays["mean"], self.scale
        return keras.layers.Lambda(
            lambda x: scale * keras.ops.sum(keras.ops.square(x - mean), axis=-1))

    @property
    def input_dim(self):
        return int(self.arrays["mean"].shape[0])

    def get_config(self):
        return {"scale": self.scale}


@register_extractor("test_constant")
class ConstantExtractor(FeatureExtractor):
    def __init__(self, value=2.0):
        self.value = float(value)

    def transform(self, table, verbose=0):
        return {"all": np.full((len(table), 3), self.value, np.float32)}

    def serving_model(self, num_samples=None):
        import keras

        waveform = keras.Input((num_samples,))
        value = self.value
        return keras.Model(waveform, {"all": keras.layers.Lambda(
            lambda w: keras.ops.zeros_like(w[:, :3]) + value)(waveform)})

    def get_config(self):
        return {"value": self.value}


def _meta(n):
    return pd.DataFrame({"domain": ["source"] * (n - 1) + ["target"]})


def test_fit_score_save_load_round_trip(tmp_path):
    x = np.array([[0, 0], [2, 0], [1, 3], [9, 9]], np.float32)
    backend = get_backend("test_mean_distance", scale=2.0).fit(x, _meta(4))
    # mean of the source rows (1, 1): 2 * ((0-1)^2 + (5-1)^2) = 34 for (0, 5)
    np.testing.assert_allclose(backend.score(np.array([[0, 5]], np.float32)), [34.0],
                               rtol=1e-6)
    backend.save(tmp_path / "b")
    again = load_backend(tmp_path / "b")
    assert type(again) is MeanDistanceBackend and again.scale == 2.0
    np.testing.assert_allclose(again.score(x), backend.score(x), rtol=1e-6)


def test_backend_input_errors():
    backend = get_backend("test_mean_distance")
    with pytest.raises(ValueError, match="not fitted"):
        backend.score(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="columns"):
        backend.fit(np.zeros((2, 2)), pd.DataFrame({"section": ["00", "00"]}))
    with pytest.raises(ValueError, match="aligned"):
        backend.fit(np.zeros((3, 2)), _meta(2))
    with pytest.raises(ValueError, match=r"'source' or 'target'.*'other'"):
        backend.fit(np.zeros((2, 2)), pd.DataFrame({"domain": ["source", "other"]}))
    bad = np.zeros((3, 2))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*rows \[1\]"):
        backend.fit(bad, _meta(3))
    backend.fit(np.zeros((3, 2)), _meta(3))
    with pytest.raises(ValueError, match="2-dim features; received 5-dim"):
        backend.score(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="Unknown backend 'nope'.*test_mean_distance"):
        get_backend("nope")
    with pytest.raises(ValueError, match="Bad config.*scale"):
        get_backend("test_mean_distance", sclae=1.0)
    assert "test_mean_distance" in BACKENDS


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="backend.json"):
        load_backend(tmp_path)
    get_backend("test_mean_distance").fit(np.ones((2, 2)), _meta(2)).save(tmp_path)
    (tmp_path / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="damaged"):
        load_backend(tmp_path)
    with pytest.raises(FileNotFoundError, match="extractor.json"):
        load_extractor(tmp_path)


def test_an_incomplete_component_cannot_be_built():
    class NoLayer(ScoringBackend):
        def _fit_arrays(self, features, metadata):
            return {}

    with pytest.raises(TypeError, match="scoring_layer"):
        NoLayer()


def test_extractor_save_load(tmp_path):
    ConstantExtractor(5.0).save(tmp_path)
    again = load_extractor(tmp_path)
    assert again.transform(pd.DataFrame({"path": ["a", "b"]}))["all"][1, 0] == 5.0
