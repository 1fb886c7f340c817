"""Mahalanobis backends and layer, and the linear probe, against sklearn/scipy."""

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf

from asd_keras.backends import get_backend
from asd_keras.backends import load_backend
from asd_keras.backends.linear_probe import in_domain_probe
from asd_keras.backends.linear_probe import out_domain_probe
from asd_keras.layers import MahalanobisDistance


def _data(n=40, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32) @ rng.standard_normal((d, d))


def test_layer_shapes_config_and_save_load(tmp_path):
    layer = MahalanobisDistance(2, 3, squared=False)
    x = np.ones((4, 3), np.float32)
    assert tuple(layer(x).shape) == (4,)
    again = MahalanobisDistance.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    layer.means.assign(np.arange(6, dtype=np.float32).reshape(2, 3))
    layer.precisions.assign(np.stack([np.eye(3), 2 * np.eye(3)]).astype(np.float32))
    # By hand: component 0 at (0,1,2): 1+0+1 = 2; component 1 at (3,4,5),
    # doubled: 2*(4+9+16) = 58; min 2, sqrt.
    np.testing.assert_allclose(layer(np.array([[1, 1, 1]], np.float32)), [np.sqrt(2.0)],
                               rtol=1e-6)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_global_md_matches_sklearn_and_round_trips(tmp_path):
    train, test = _data(), _data(seed=1)
    backend = get_backend("mahalanobis").fit(train)
    reference = LedoitWolf().fit(train.astype(np.float64)).mahalanobis(test)
    np.testing.assert_allclose(backend.score(test), reference, rtol=1e-4)
    backend.save(tmp_path)
    np.testing.assert_allclose(load_backend(tmp_path).score(test), reference, rtol=1e-4)


def test_domain_md_is_the_minimum_over_domains():
    source, target = _data(seed=2), _data(n=10, seed=3) + 5.0
    features = np.concatenate([source, target])
    meta = pd.DataFrame({"domain": ["source"] * 40 + ["target"] * 10})
    backend = get_backend("mahalanobis_domain", covariance="oas").fit(features, meta)
    from sklearn.covariance import OAS

    test = _data(n=6, seed=4)
    expected = np.minimum(OAS().fit(source.astype(np.float64)).mahalanobis(test),
                          OAS().fit(target.astype(np.float64)).mahalanobis(test))
    np.testing.assert_allclose(backend.score(test), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="target domain has 1 training clip"):
        get_backend("mahalanobis_domain").fit(features[:41], meta[:41])
    with pytest.raises(ValueError, match="covariance must be one of"):
        get_backend("mahalanobis", covariance="shrunk")


def _labelled(n_per=20, sections=("00", "01"), shift=4.0, seed=0):
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for s in sections:
        for label in (0, 1):
            feats.append(rng.standard_normal((n_per, 4)) + shift * label)
            rows += [{"section": s, "label": label}] * n_per
    return np.concatenate(feats).astype(np.float32), pd.DataFrame(rows)


def test_linear_probe_separable_and_noise():
    features, meta = _labelled()
    inside = in_domain_probe(features, meta)
    assert list(inside["n_train"]) == [20, 20] and list(inside["n_test"]) == [20, 20]
    assert (inside["auc"] > 0.95).all()
    outside = out_domain_probe(features, meta)
    assert (outside["auc"] > 0.95).all() and list(outside["n_train"]) == [40, 40]
    noise, meta = _labelled(shift=0.0, n_per=100, sections=("00",))
    assert abs(in_domain_probe(noise, meta)["auc"].iloc[0] - 0.5) < 0.2
    with pytest.raises(ValueError, match="at least 2 sections"):
        out_domain_probe(noise, meta)
    with pytest.raises(ValueError, match="Section '00' needs normal and anomalous"):
        in_domain_probe(noise[:100], meta[:100])


def test_linear_probe_backend_score_is_softmax_of_the_linear_layer(tmp_path):
    features, meta = _labelled(sections=("00",))
    probe = get_backend("linear_probe").fit(features, meta)
    a = probe.arrays
    logits = ((features - a["mean"]) / a["std"]) @ a["kernel"] + a["bias"]
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(probe.score(features), expected, rtol=1e-5, atol=1e-6)
    probe.save(tmp_path)
    np.testing.assert_allclose(load_backend(tmp_path).score(features), expected,
                               rtol=1e-5, atol=1e-6)


def test_feature_mean_minmax_train_by_hand_and_in_a_saved_model(tmp_path):
    import tensorflow as tf

    train = np.array([[1.0, 3.0], [5.0, 7.0], [2.0, 2.0]], np.float32)  # means 2, 6, 2
    test = np.array([[4.0, 4.0], [0.0, 0.0], [9.0, 9.0]], np.float32)  # means 4, 0, 9
    raw = get_backend("feature_mean").fit(train)
    np.testing.assert_allclose(raw.score(test), [4.0, 0.0, 9.0])
    scaled = get_backend("feature_mean", normalize="minmax_train").fit(train)
    assert float(scaled.arrays["low"]) == 2.0 and float(scaled.arrays["high"]) == 6.0
    # (mean - 2) / (6 - 2); the training clips span 0 .. 1.
    np.testing.assert_allclose(scaled.score(test), [0.5, -0.5, 1.75], rtol=1e-6)
    np.testing.assert_allclose(scaled.score(train), [0.0, 1.0, 0.0], atol=1e-7)
    scaled.save(tmp_path / "backend")
    again = load_backend(tmp_path / "backend")
    assert again.get_config() == {"normalize": "minmax_train"}
    np.testing.assert_allclose(again.score(test), [0.5, -0.5, 1.75], rtol=1e-6)
    # The formula is Keras layers: a SavedModel computes the same.
    archive = keras.export.ExportArchive()
    layer = again.layer()
    archive.track(layer)
    archive.add_endpoint("serve", lambda x: layer(x),
                         input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    archive.write_out(str(tmp_path / "export"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "export")).serve(tf.constant(test))
    np.testing.assert_allclose(served.numpy(), [0.5, -0.5, 1.75], rtol=1e-6)
    # Constant training scores: span 1, the scores are only shifted.
    flat = get_backend("feature_mean", normalize="minmax_train").fit(train[[0, 2]])
    np.testing.assert_allclose(flat.score(test), [2.0, -2.0, 7.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"normalize must be one of \('none', "
                                         r"'minmax_train'\); received 'minmax_test'"):
        get_backend("feature_mean", normalize="minmax_test")
