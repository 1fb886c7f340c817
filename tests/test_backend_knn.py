"""kNN memory-bank backend and layer against scipy and numbers by hand."""

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from asd_keras.backends import get_backend
from asd_keras.backends import load_backend
from asd_keras.backends.knn import transductive_domain_zscore
from asd_keras.layers import NearestNeighbourDistance


def test_layer_shapes_config_values_and_save_load(tmp_path):
    rng = np.random.default_rng(0)
    bank, x = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    layer = NearestNeighbourDistance(7, 3, k=2)
    assert tuple(layer(x.astype(np.float32)).shape) == (5,)
    assert NearestNeighbourDistance.from_config(layer.get_config()).get_config() == \
        layer.get_config()
    layer.bank.assign(bank.astype(np.float32))
    expected = np.sort(cdist(x, bank), axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(layer(x.astype(np.float32)), expected, rtol=1e-5, atol=1e-5)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="k must be between 1 and the bank size 7"):
        NearestNeighbourDistance(7, 3, k=8)


def test_ratio_normalisation_can_change_the_nearest_reference():
    # References at 0 (dense: density 1) and 10 (sparse: density 4); x at 3.
    layer = NearestNeighbourDistance(2, 1, normalisation="ratio")
    layer.build((None, 1))
    layer.bank.assign(np.array([[0.0], [10.0]], np.float32))
    layer.density.assign(np.array([1.0, 4.0], np.float32))
    # Raw: min(3, 7) = 3; normalised: min(3/1, 7/4) = 1.75 from the far one.
    np.testing.assert_allclose(layer(np.array([[3.0]], np.float32)), [1.75], rtol=1e-6)


def _domains(n_source=8, n_target=2):
    return pd.DataFrame({"domain": ["source"] * n_source + ["target"] * n_target})


def test_banks_min_over_domains_and_memmixup(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.standard_normal((10, 4)).astype(np.float32)
    features[8:] += 5.0
    backend = get_backend("knn", memmixup_neighbours=3).fit(features, _domains())
    target = backend.arrays["target_bank"]
    assert target.shape == (2 + 2 * 3, 4)
    # The first mixture: 0.9 * target clip 0 + 0.1 * its nearest source clip.
    nearest = np.argsort(cdist(features[8:9], features[:8]))[0, 0]
    np.testing.assert_allclose(target[2], 0.9 * features[8] + 0.1 * features[nearest],
                               rtol=1e-6)
    test = rng.standard_normal((6, 4)).astype(np.float32)
    expected = np.minimum(cdist(test, features[:8]).min(axis=1),
                          cdist(test, target).min(axis=1))
    np.testing.assert_allclose(backend.score(test), expected, rtol=1e-5, atol=1e-5)
    backend.save(tmp_path)
    np.testing.assert_allclose(load_backend(tmp_path).score(test), expected, rtol=1e-5,
                               atol=1e-5)
    distances = backend.domain_distances(test)
    z = transductive_domain_zscore(distances)
    by_hand = np.minimum(*[(d - d.mean()) / d.std() for d in distances.values()])
    np.testing.assert_allclose(z, by_hand, rtol=1e-9)


def test_local_density_and_cosine_pooled():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((6, 3))
    backend = get_backend("knn", metric="cosine", domains="pooled",
                          local_density="ratio", density_k=2).fit(features)
    d = 0.5 * cdist(features, features, "cosine")
    density = np.sort(d, axis=1)[:, 1:3].mean(axis=1)
    np.testing.assert_allclose(backend.arrays["pooled_density"], density, rtol=1e-5)
    test = rng.standard_normal((4, 3))
    expected = (0.5 * cdist(test, features, "cosine") / density).min(axis=1)
    np.testing.assert_allclose(backend.score(test), expected, rtol=1e-4, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="metric must be one of"):
        get_backend("knn", metric="manhattan")
    with pytest.raises(ValueError, match="memmixup_alpha"):
        get_backend("knn", memmixup_alpha=0.0)
    with pytest.raises(ValueError, match="target bank holds 2 clip"):
        get_backend("knn", k=3).fit(np.ones((10, 2)), _domains())
    with pytest.raises(ValueError, match="columns"):
        get_backend("knn").fit(np.ones((10, 2)))


def test_cosine_distances_of_close_embeddings_do_not_depend_on_the_batch():
    """Embeddings a short training leaves close together (cosine distances
    of 1e-5, as the `eat_simam` SavedModel of issue 28) divided by densities
    as small: computed as `1 - <x, y>` in float32 the scores were the
    rounding of the dot product, 1 % off and different for each batch
    shape; as `|x - y|^2` about the bank's centre they follow float64."""
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(256)
    bank = centre + 3e-3 * rng.standard_normal((8, 256))
    x = centre + 3e-3 * rng.standard_normal((24, 256))
    distances = 0.5 * cdist(bank, bank, "cosine")
    density = np.sort(distances, axis=1)[:, 1]
    assert density.max() < 1e-4  # as small as the trained model's
    expected = (0.5 * cdist(x, bank, "cosine") / density).min(axis=1)
    layer = NearestNeighbourDistance(8, 256, metric="cosine", normalisation="ratio")
    layer.build((None, 256))
    layer.bank.assign(bank.astype(np.float32))
    layer.density.assign(density.astype(np.float32))
    x = x.astype(np.float32)
    whole = keras.ops.convert_to_numpy(layer(x))
    by_three = np.concatenate([keras.ops.convert_to_numpy(layer(x[i:i + 3]))
                               for i in range(0, 24, 3)])
    one_by_one = np.concatenate([keras.ops.convert_to_numpy(layer(x[i:i + 1]))
                                 for i in range(24)])
    for got in (whole, by_three, one_by_one):
        np.testing.assert_allclose(got, expected, rtol=1e-4)
