"""`TemporalPooling`: every mode checked against NumPy written out here,
shapes with known and unknown token counts, saving, and bad arguments."""

import re

import keras
import numpy as np
import pytest

from asd_keras import layers
from asd_keras.layers.pooling import POOLING_MODES
from tests.helpers import roundtrip_and_save

RNG = np.random.default_rng(0)
BANDS, EXTRA, DIM = 4, 1, 3
# 1 CLS token + 3 time patches x 4 bands.
TOKENS = RNG.normal(size=(2, EXTRA + 3 * BANDS, DIM)).astype("float32")
# A CLS token far above every patch token: a mode that forgot to drop it
# would be off by far more than the tolerance.
TOKENS[:, 0, :] = 50.0
# Dimension 2 of clip 1 is negative everywhere, so GeM must give 0 there.
TOKENS[1, EXTRA:, 2] = -np.abs(TOKENS[1, EXTRA:, 2]) - 0.1
PATCHES = TOKENS[:, EXTRA:, :].astype("float64")
TOL = dict(rtol=1e-5, atol=1e-5)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _pool(mode, tokens=TOKENS, **kwargs):
    layer = layers.TemporalPooling(mode, num_bands=BANDS, num_extra_tokens=EXTRA, **kwargs)
    return _np(layer(tokens))


def _gem(x, p, weights=None):
    """(sum_t w_t max(x_t, 0)^p / sum_t w_t)^(1/p) over axis 1."""
    weights = np.ones(x.shape[:2]) if weights is None else weights
    powered = np.maximum(x, 0.0) ** p
    mean = (weights[..., None] * powered).sum(1) / weights.sum(1)[..., None]
    return mean ** (1.0 / p)


def _rdp_weights(x, gamma, epsilon=1e-6):
    deviation = np.linalg.norm(x - x.mean(axis=1, keepdims=True), axis=-1)
    relative = deviation / (deviation.mean(axis=1, keepdims=True) + epsilon)
    return relative**gamma / (relative**gamma).sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_shapes_known_and_unknown_token_count(mode):
    layer = layers.TemporalPooling(mode, num_bands=BANDS, num_extra_tokens=EXTRA)
    dim = BANDS * DIM if mode == "band_mean" else DIM
    assert _pool(mode).shape == (2, dim)
    assert layer.compute_output_shape((None, None, DIM)) == (None, dim)
    assert layer.output_dim(DIM) == dim

    inputs = keras.Input((None, DIM))
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, dim)
    model = keras.Model(inputs, outputs)
    for time_patches in (3, 5):
        tokens = RNG.normal(size=(2, EXTRA + time_patches * BANDS, DIM)).astype("float32")
        got = _np(model(tokens))
        assert got.shape == (2, dim)
        np.testing.assert_allclose(got, _pool(mode, tokens), **TOL)


# ----------------------------------------------------------------------
# Values against NumPy
# ----------------------------------------------------------------------


def test_mean_cls_and_max():
    np.testing.assert_allclose(_pool("mean"), PATCHES.mean(axis=1), **TOL)
    np.testing.assert_array_equal(_pool("max"), TOKENS[:, EXTRA:, :].max(axis=1))
    np.testing.assert_array_equal(_pool("cls"), TOKENS[:, 0, :])
    # The CLS token is the first extra token, not the last, when there are two.
    two = layers.TemporalPooling("cls", num_extra_tokens=2)(TOKENS[:, ::-1, :])
    np.testing.assert_array_equal(_np(two), TOKENS[:, -1, :])


def test_band_mean_is_time_mean_per_band_band_major():
    time_patches, bands, dim = 3, BANDS, 2
    tokens = np.full((2, EXTRA + time_patches * bands, dim), 1e3, "float32")
    # Token t * bands + f, dimension d of clip b holds 100 b + 10 t + f + 0.1 d.
    for b in range(2):
        for t in range(time_patches):
            for f in range(bands):
                for d in range(dim):
                    tokens[b, EXTRA + t * bands + f, d] = 100 * b + 10 * t + f + 0.1 * d
    expected = np.zeros((2, bands * dim))
    for b in range(2):
        for f in range(bands):
            for d in range(dim):
                # Band f's dim values first; the mean of 10 t over t = 0, 1, 2 is 10.
                expected[b, f * dim + d] = 100 * b + 10 + f + 0.1 * d
    got = _pool("band_mean", tokens)
    np.testing.assert_allclose(got, expected, **TOL)
    reshaped = tokens[:, EXTRA:].reshape(2, time_patches, bands, dim).mean(1)
    np.testing.assert_allclose(got, reshaped.reshape(2, bands * dim), **TOL)


def test_gem_clamps_negatives():
    for p in (1.0, 3.0, 10.0):
        np.testing.assert_allclose(_pool("gem", p=p), _gem(PATCHES, p), **TOL)
    # Dimension 2 of clip 1 is all negative: clamped to 0, not a NaN power.
    assert _pool("gem", p=3.0)[1, 2] == 0.0
    # Negative entries count as 0 (not |x|) in the mean.
    assert not np.allclose(_gem(np.abs(PATCHES), 3.0), _gem(PATCHES, 3.0), **TOL)
    # p = 1 on positive tokens is the mean; large values do not overflow.
    positive = np.abs(TOKENS) * 1e4
    np.testing.assert_allclose(_pool("gem", positive, p=1.0),
                               positive[:, EXTRA:].mean(1), rtol=1e-5)
    np.testing.assert_allclose(_pool("gem", positive, p=10.0),
                               _gem(positive[:, EXTRA:].astype("float64"), 10.0), rtol=1e-5)


def test_gwrp_weights_sorted_tokens_and_limits():
    r = 0.4
    ordered = -np.sort(-PATCHES, axis=1)  # descending per dimension
    weights = r ** np.arange(ordered.shape[1])
    expected = (weights[None, :, None] * ordered).sum(1) / weights.sum()
    np.testing.assert_allclose(_pool("gwrp", r=r), expected, **TOL)
    np.testing.assert_allclose(_pool("gwrp", r=1.0), PATCHES.mean(axis=1), **TOL)
    np.testing.assert_array_equal(_pool("gwrp", r=0.0), TOKENS[:, EXTRA:].max(axis=1))


def test_rdp_by_hand():
    np.testing.assert_allclose(_pool("rdp", gamma=0.0), PATCHES.mean(axis=1), **TOL)
    weights = _rdp_weights(PATCHES, gamma=2.0)
    expected = (weights[..., None] * PATCHES).sum(axis=1)
    np.testing.assert_allclose(_pool("rdp", gamma=2.0), expected, **TOL)
    assert not np.allclose(expected, PATCHES.mean(axis=1), **TOL)
    # By hand: tokens 0, 0, 3 have mean 1, deviations 1, 1, 2 (mean 4/3),
    # relative deviations 3/4, 3/4, 3/2, squared 9/16, 9/16, 36/16, so
    # weights 1/6, 1/6, 2/3 and the pooled value 2/3 * 3 = 2 (the mean is 1).
    three = np.array([[[0.0], [0.0], [3.0]]], "float32")
    np.testing.assert_allclose(_np(layers.TemporalPooling("rdp", gamma=2.0)(three)),
                               [[2.0]], **TOL)
    # A constant sequence (all deviations 0) pools to itself, not NaN.
    constant = np.ones((1, 5, DIM), "float32")
    np.testing.assert_allclose(_np(layers.TemporalPooling("rdp", gamma=2.0)(constant)),
                               np.ones((1, DIM)), **TOL)


def test_rdp_gem_is_weighted_gem():
    weights = _rdp_weights(PATCHES, gamma=2.0)
    np.testing.assert_allclose(_pool("rdp_gem", gamma=2.0, p=3.0),
                               _gem(PATCHES, 3.0, weights), **TOL)
    np.testing.assert_allclose(_pool("rdp_gem", gamma=0.0, p=3.0), _gem(PATCHES, 3.0),
                               **TOL)
    assert not np.allclose(_gem(PATCHES, 3.0, weights), _gem(PATCHES, 3.0), **TOL)


# ----------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------


@pytest.mark.parametrize("mode,kwargs", [
    ("band_mean", {}),
    ("rdp_gem", dict(p=4.0, gamma=3.0, epsilon=1e-4)),
    ("gwrp", dict(r=0.25)),
])
def test_config_round_trip_and_save(mode, kwargs, tmp_path):
    layer = layers.TemporalPooling(mode, num_bands=BANDS, num_extra_tokens=EXTRA,
                                   name=f"pool_{mode}", **kwargs)
    config = layer.get_config()
    assert config["mode"] == mode and config["num_bands"] == BANDS
    assert config["num_extra_tokens"] == EXTRA
    for key, value in kwargs.items():
        assert config[key] == value
    got = roundtrip_and_save(layer, TOKENS, tmp_path)
    np.testing.assert_allclose(got, _pool(mode, **kwargs), **TOL)


def test_save_with_unknown_token_count(tmp_path):
    inputs = keras.Input((None, DIM))
    model = keras.Model(inputs, layers.TemporalPooling(
        "band_mean", num_bands=BANDS, num_extra_tokens=EXTRA)(inputs))
    path = tmp_path / "band_mean.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    longer = RNG.normal(size=(1, EXTRA + 7 * BANDS, DIM)).astype("float32")
    np.testing.assert_allclose(_np(loaded(longer)), _pool("band_mean", longer), **TOL)


# ----------------------------------------------------------------------
# Bad arguments
# ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,shown", [
    (dict(mode="median"), "'median'"),
    (dict(mode="cls", num_extra_tokens=0), "received 0"),
    (dict(num_bands=0), "received 0"),
    (dict(num_bands=2.5), "2.5"),
    (dict(num_extra_tokens=-1), "-1"),
    (dict(p=0.0), "received 0.0"),
    (dict(p=float("inf")), "inf"),
    (dict(r=1.5), "1.5"),
    (dict(r=-0.1), "-0.1"),
    (dict(gamma=-2.0), "-2.0"),
    (dict(epsilon=-1e-3), "-0.001"),
])
def test_bad_arguments(kwargs, shown):
    with pytest.raises(ValueError, match=re.escape(shown)):
        layers.TemporalPooling(**kwargs)


def test_bad_token_shapes():
    # 13 tokens: 12 patches with the CLS token dropped, 13 without.
    layers.TemporalPooling("band_mean", num_bands=4, num_extra_tokens=1)(TOKENS)
    with pytest.raises(ValueError, match=re.escape("(2, 13, 3)")):
        layers.TemporalPooling("band_mean", num_bands=4)(TOKENS)
    with pytest.raises(ValueError, match=re.escape("(None, 10, 3)")):
        layers.TemporalPooling("band_mean", num_bands=4)(keras.Input((10, DIM)))
    with pytest.raises(ValueError, match=re.escape("(2, 1, 3)")):
        layers.TemporalPooling("mean", num_extra_tokens=1)(TOKENS[:, :1])
    with pytest.raises(ValueError, match=re.escape("(2, 3)")):
        layers.TemporalPooling("mean")(TOKENS[:, 0])
