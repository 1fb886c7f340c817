"""SimAM (methods.md §D) against NumPy by hand: global, local tiles, edges."""

import keras
import numpy as np
import pytest

from asd_keras.layers import SimAM


def _simam_numpy(x, lam=1e-4):
    """The reference formula on one map `(H, W)`."""
    n = max(x.size - 1, 1)
    d = (x - x.mean()) ** 2
    v = d.sum() / n
    return x / (1.0 + np.exp(-(d / (4 * (v + lam)) + 0.5)))


def _local_numpy(x, tile, lam=1e-4):
    out = np.empty_like(x)
    for i in range(0, x.shape[0], tile):
        for j in range(0, x.shape[1], tile):
            out[i:i + tile, j:j + tile] = _simam_numpy(x[i:i + tile, j:j + tile], lam)
    return out


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_global_matches_the_formula_by_hand():
    # A 2 x 2 map: mean 2.5, d = (2.25, 0.25, 0.25, 2.25), v = 5 / 3.
    x = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
    d = np.array([[2.25, 0.25], [0.25, 2.25]])
    expected = x[0] / (1 + np.exp(-(d / (4 * (5 / 3 + 1e-4)) + 0.5)))
    np.testing.assert_allclose(_np(SimAM()(x))[0], expected, rtol=1e-6)
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 20, 12)).astype(np.float32)
    np.testing.assert_allclose(_np(SimAM()(maps)), [_simam_numpy(m) for m in maps],
                               rtol=1e-5, atol=1e-6)


def test_channels_are_independent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 6, 3)).astype(np.float32)
    out = _np(SimAM()(x))
    for c in range(3):
        np.testing.assert_allclose(out[..., c], [_simam_numpy(m) for m in x[..., c]],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 64), (70, 45), (5, 3)])
def test_local_tiles_and_edge_tiles(shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    out = _np(SimAM("local", tile=32)(x))
    np.testing.assert_allclose(out, [_local_numpy(m, 32) for m in x], rtol=1e-5, atol=1e-6)


def test_local_with_one_tile_equals_global():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 30, 32)).astype(np.float32)
    np.testing.assert_allclose(_np(SimAM("local", tile=32)(x)), _np(SimAM("global")(x)),
                               rtol=1e-6, atol=1e-7)


def test_config_save_load_and_errors(tmp_path):
    layer = SimAM("local", tile=16, lam=1e-3)
    assert SimAM.from_config(layer.get_config()).get_config() == layer.get_config()
    inputs = keras.Input((40, 20))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(4).standard_normal((2, 40, 20)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               [_local_numpy(m, 16, 1e-3) for m in x], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mode must be one of"):
        SimAM("tiles")
    with pytest.raises(ValueError, match="tile must be >= 1"):
        SimAM("local", tile=0)
    with pytest.raises(ValueError, match="static height and width"):
        SimAM("local")(keras.Input((None, 20)))
