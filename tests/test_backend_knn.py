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


@pytest.mark.parametrize("metric,normalisation", [("euclidean", "none"),
                                                  ("cosine", "ratio"),
                                                  ("euclidean", "difference")])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_layer_gives_the_same_distances_chunked(metric, normalisation, k):
    """The bank is compared `chunk_size` references at a time, the running
    k nearest merged: any chunk size gives the whole bank's result, also
    with k larger than a chunk and a last chunk shorter than the others."""
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((11, 4)).astype(np.float32)
    density = rng.uniform(0.5, 2.0, 11).astype(np.float32)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    results = []
    for chunk_size in (11, 4, 3, 1):
        layer = NearestNeighbourDistance(11, 4, k, metric, normalisation,
                                         chunk_size=chunk_size)
        layer.build((None, 4))
        layer.bank.assign(bank)
        layer.density.assign(density)
        results.append(keras.ops.convert_to_numpy(layer(x)))
    for got in results[1:]:
        np.testing.assert_allclose(got, results[0], rtol=1e-6, atol=1e-7)


def _widest_batch_tensor(layer, dim):
    """The widest `(batch, n)` tensor in the traced graph of `layer`."""
    import tensorflow as tf

    graph = tf.function(layer).get_concrete_function(
        tf.TensorSpec((None, dim), tf.float32)).graph
    widths = [t.shape[1] for op in graph.get_operations() for t in op.outputs
              if t.shape.rank == 2 and t.shape[0] is None]
    return max(widths)


def test_scoring_layers_never_hold_a_batch_by_bank_matrix():
    from asd_keras.layers import CosineReferenceScore

    for chunk_size, widest in ((4, 4), (40, 37)):  # 40: one chunk, the whole bank
        layer = NearestNeighbourDistance(37, 3, k=2, chunk_size=chunk_size)
        layer.build((None, 3))
        assert _widest_batch_tensor(layer, 3) == widest
        table = CosineReferenceScore(37, 3, chunk_size=chunk_size)
        table.build((None, 3))
        assert _widest_batch_tensor(table, 3) == widest


def test_cosine_reference_score_chunked_is_the_same_minimum():
    from asd_keras.layers import CosineReferenceScore

    rng = np.random.default_rng(4)
    references = rng.standard_normal((9, 5)).astype(np.float32)
    alpha, beta = rng.uniform(0, 1, 9).astype(np.float32), rng.uniform(1, 2, 9).astype(
        np.float32)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    results = []
    for chunk_size in (9, 4, 1):
        layer = CosineReferenceScore(9, 5, chunk_size=chunk_size)
        layer.build((None, 5))
        layer.references.assign(references)
        layer.alpha.assign(alpha)
        layer.beta.assign(beta)
        results.append(keras.ops.convert_to_numpy(layer(x)))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = (alpha - beta * (unit @ references.T)).min(axis=1)
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got, results[0], rtol=1e-6, atol=1e-7)


def test_fit_distances_in_row_blocks_match_the_square_matrix(monkeypatch):
    """Densities and MemMixup neighbours from row blocks of at most
    `FIT_CHUNK_VALUES` distances equal those of the whole distance matrix
    (the same values, sorted)."""
    from asd_keras.backends import knn

    rng = np.random.default_rng(5)
    points = rng.standard_normal((23, 4))
    for metric in ("euclidean", "cosine"):
        full = np.sort(knn._distances(points, points, metric), axis=1)[:, 1:4].mean(axis=1)
        np.testing.assert_array_equal(knn.reference_density(points, 3, metric, 5), full)
    np.testing.assert_array_equal(
        knn.nearest_indices(points[:7], points[7:], 4, chunk_rows=2),
        np.argsort(cdist(points[:7], points[7:]), axis=1)[:, :4])
    features = points.astype(np.float32)
    domains = _domains(18, 5)
    whole = get_backend("knn", memmixup_neighbours=4, local_density="ratio",
                        density_k=2).fit(features, domains)
    kmeans = get_backend("local_density", density_k=2).fit(features, domains)
    monkeypatch.setattr(knn, "FIT_CHUNK_VALUES", 4 * len(points))
    assert knn.fit_chunk_rows(len(points)) == 4
    blocks = get_backend("knn", memmixup_neighbours=4, local_density="ratio",
                         density_k=2).fit(features, domains)
    kmeans_blocks = get_backend("local_density", density_k=2).fit(features, domains)
    for name in whole.arrays:
        np.testing.assert_allclose(blocks.arrays[name], whole.arrays[name], rtol=1e-12)
    for name in kmeans.arrays:
        np.testing.assert_allclose(kmeans_blocks.arrays[name], kmeans.arrays[name],
                                   rtol=1e-6)
