"""Residual View, the projection key, greedy k-centre selection and the
`residual_knn` backend (Kim et al., DCASE 2026) against numbers by hand."""

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from asd_keras.backends import get_backend
from asd_keras.backends import load_backend
from asd_keras.backends.coreset import greedy_k_center
from asd_keras.layers import ResidualView
from asd_keras.layers.channels import projection_residual
from asd_keras.layers.channels import residual_view

# Two clips, dim 2: [near | far].
PAIRED = np.array([[1.0, 2.0, 4.0, 2.0],
                   [3.0, 0.0, 0.0, 1.0]], np.float32)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_residual_view_by_hand():
    # near - 0.5 far: (1 - 2, 2 - 1) and (3 - 0, 0 - 0.5).
    np.testing.assert_allclose(_numpy(residual_view(PAIRED, 0.5)),
                               [[-1.0, 1.0], [3.0, -0.5]], atol=1e-7)
    np.testing.assert_allclose(_numpy(residual_view(PAIRED, 0.0)), PAIRED[:, :2])
    # A negative alpha adds the far channel.
    np.testing.assert_allclose(_numpy(residual_view(PAIRED, -1.0)),
                               [[5.0, 4.0], [3.0, 1.0]], atol=1e-7)


def test_projection_key_by_hand():
    # Clip 1: <(1, 2), (4, 2)> = 8, |far|^2 = 20: q = (1, 2) - 0.4 (4, 2) = (-0.6, 1.2).
    # Clip 2: far (0, 1) is orthogonal to near (3, 0): q = near.
    key = _numpy(projection_residual(PAIRED))
    np.testing.assert_allclose(key, [[-0.6, 1.2], [3.0, 0.0]], atol=1e-6)
    # q is orthogonal to f_far.
    np.testing.assert_allclose((key * PAIRED[:, 2:]).sum(axis=1), 0.0, atol=1e-6)
    # A silent far channel leaves the near embedding.
    silent = np.array([[1.0, 2.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(_numpy(projection_residual(silent)), [[1.0, 2.0]])


def test_layer_shapes_config_and_save_load(tmp_path):
    layer = ResidualView(alpha=0.25)
    assert tuple(layer(PAIRED).shape) == (2, 2)
    assert layer.compute_output_shape((None, 6)) == (None, 3)
    clone = ResidualView.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.alpha == 0.25
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(PAIRED, verbose=0),
                               PAIRED[:, :2] - 0.25 * PAIRED[:, 2:], atol=1e-6)
    with pytest.raises(ValueError, match="need an even size .* received size 3"):
        residual_view(np.zeros((2, 3), np.float32), 0.5)


def test_greedy_k_center_known_answer():
    # Points on a line; their mean, 24 / 7 = 3.43, is nearest to 3 (index 3).
    points = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [6.0], [2.0]])
    assert greedy_k_center(points, 1).tolist() == [3]
    # Then the farthest from {3}: 10 (index 4); from {3, 10}: 0 (index 0);
    # from {0, 3, 10}: 6 (index 5, 3 away from 3, against 1 for 1 and 2).
    assert greedy_k_center(points, 4).tolist() == [3, 4, 0, 5]
    # Asking for more points than distinct values stops at the distinct ones.
    assert sorted(greedy_k_center(points, 50).tolist()) == [0, 1, 2, 3, 4, 5]
    # The covering radius never grows as points are added.
    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((60, 5))
    radii = [cdist(cloud, cloud[greedy_k_center(cloud, c)]).min(axis=1).max()
             for c in (2, 5, 10, 20)]
    assert radii == sorted(radii, reverse=True)
    # A random projection keeps the selection size and valid indices.
    chosen = greedy_k_center(rng.standard_normal((40, 300)), 8, projection_dim=16, seed=3)
    assert len(set(chosen.tolist())) == 8 and chosen.max() < 40
    with pytest.raises(ValueError, match="count must be >= 1"):
        greedy_k_center(points, 0)


def _paired(rng, n, dim=3, shift=0.0):
    near = rng.standard_normal((n, dim)) + shift
    far = 0.5 * near + rng.standard_normal((n, dim))
    return np.concatenate([near, far], axis=1).astype(np.float32)


def _metadata(n_source, n_target):
    return pd.DataFrame({"domain": ["source"] * n_source + ["target"] * n_target})


def test_memmixup_bank_size_and_contents():
    rng = np.random.default_rng(1)
    features = np.concatenate([_paired(rng, 20), _paired(rng, 10, shift=4.0)])
    backend = get_backend("residual_knn", alpha=0.5, memmixup_neighbours=3).fit(
        features, _metadata(20, 10))
    residual = features[:, :3] - 0.5 * features[:, 3:]
    target = backend.arrays["target_bank"]
    # 10 target clips and 3 source neighbours each: 10 + 30 entries.
    assert target.shape == (10 + 30, 3)
    np.testing.assert_allclose(target[:10], residual[20:], rtol=1e-6)
    # Each target clip's 3 mixtures: 0.9 t + 0.1 s over its 3 nearest source
    # residuals (Euclidean, in the residual space).
    for t in range(10):
        nearest = np.argsort(cdist(residual[20 + t:21 + t], residual[:20])[0])[:3]
        expected = 0.9 * residual[20 + t] + 0.1 * residual[nearest]
        np.testing.assert_allclose(target[10 + 3 * t:13 + 3 * t], expected, rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(backend.arrays["source_bank"], residual[:20], rtol=1e-6)


def test_scores_residual_banks_and_prps_mean(tmp_path):
    rng = np.random.default_rng(2)
    features = np.concatenate([_paired(rng, 30), _paired(rng, 6, shift=3.0)])
    metadata = _metadata(30, 6)
    test = _paired(rng, 9, shift=1.0)
    plain = get_backend("residual_knn", alpha=0.75, memmixup_neighbours=2).fit(
        features, metadata)
    prps = get_backend("residual_knn", alpha=0.75, memmixup_neighbours=2, prps=True,
                       prototypes=5).fit(features, metadata)
    residual = lambda x: x[:, :3] - 0.75 * x[:, 3:]  # noqa: E731
    banks = np.concatenate([plain.arrays["source_bank"], plain.arrays["target_bank"]])
    full = cdist(residual(test), banks).min(axis=1)
    np.testing.assert_allclose(plain.score(test), full, rtol=1e-5, atol=1e-5)
    # The prototypes: greedy k-centre in the projection-key space over the
    # 36 training clips (the key has 3 dims, below projection_dim: no projection).
    near, far = features[:, :3].astype(np.float64), features[:, 3:].astype(np.float64)
    key = near - ((near * far).sum(1, keepdims=True) / (far * far).sum(1, keepdims=True)) * far
    chosen = greedy_k_center(key, 5)
    np.testing.assert_array_equal(prps.arrays["prototype_indices"], chosen)
    prototypes = residual(features)[chosen]
    branch = cdist(residual(test), prototypes).min(axis=1)
    # The PRPS score is the mean of the two branches.
    np.testing.assert_allclose(prps.score(test), 0.5 * (full + branch), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(prps.prototype_distances(test), branch, rtol=1e-5,
                               atol=1e-5)
    # Save, load, and the same scores.
    prps.save(tmp_path / "b")
    loaded = load_backend(tmp_path / "b")
    assert loaded.get_config() == prps.get_config()
    np.testing.assert_allclose(loaded.score(test), prps.score(test), rtol=1e-6)
    # Transductive z-score (labelled option): per-bank z over the scored clips.
    distances = prps.domain_distances(test)
    z = np.min([(d - d.mean()) / d.std() for d in distances.values()], axis=0)
    proto = (branch - branch.mean()) / branch.std()
    np.testing.assert_allclose(prps.transductive_scores(test), 0.5 * (z + proto),
                               rtol=1e-4, atol=1e-4)


def test_alpha_zero_is_near_only_and_other_keys():
    rng = np.random.default_rng(3)
    features = np.concatenate([_paired(rng, 12), _paired(rng, 4, shift=2.0)])
    test = _paired(rng, 5)
    near_only = get_backend("residual_knn", alpha=0.0, memmixup_neighbours=2).fit(
        features, _metadata(12, 4))
    knn = get_backend("knn", memmixup_neighbours=2).fit(features[:, :3], _metadata(12, 4))
    np.testing.assert_allclose(near_only.score(test), knn.score(test[:, :3]), rtol=1e-5,
                               atol=1e-6)
    # Selecting prototypes in the residual space instead.
    other = get_backend("residual_knn", prps=True, prototypes=4,
                        prototype_key="residual").fit(features, _metadata(12, 4))
    residual = features[:, :3] - 0.5 * features[:, 3:]
    np.testing.assert_array_equal(other.arrays["prototype_indices"],
                                  greedy_k_center(residual, 4))


@pytest.mark.parametrize("kwargs, shown", [
    ({"alpha": "x"}, "alpha must be a number; received 'x'"),
    ({"alpha": float("nan")}, "alpha must be a number; received nan"),
    ({"prps": "yes"}, "prps must be true or false"),
    ({"prototype_key": "far"}, "prototype_key must be one of"),
    ({"prototypes": 0}, "prototypes must be an integer >= 1; received 0"),
    ({"prototypes": 2.5}, "prototypes must be an integer >= 1; received 2.5"),
])
def test_bad_arguments(kwargs, shown):
    with pytest.raises(ValueError, match=shown):
        get_backend("residual_knn", **kwargs)


def test_odd_features_are_refused():
    with pytest.raises(ValueError, match="paired \\[near \\| far\\] features of even size"):
        get_backend("residual_knn").fit(np.zeros((4, 5), np.float32), _metadata(3, 1))
