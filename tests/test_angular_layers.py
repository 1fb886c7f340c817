"""Layers and losses of the angular-margin system, checked by hand."""

import math

import keras
import numpy as np
import pytest

from asd_keras import layers
from asd_keras import losses
from asd_keras.layers.heads import adaptive_scale
from asd_keras.layers.mixup import mix
from tests.helpers import roundtrip_and_save as _roundtrip_and_save
from tests.helpers import reference_stft

RNG = np.random.default_rng(0)


def _unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


# ----------------------------------------------------------------------
# Spectral layers
# ----------------------------------------------------------------------


def test_linear_spectrogram_matches_librosa(tmp_path):
    x = RNG.normal(size=(2, 16000)).astype("float32")
    layer = layers.LinearSpectrogram(name="spec")
    out = _roundtrip_and_save(layer, x, tmp_path)
    assert out.shape == (2, 30, 513)
    assert layer.compute_output_shape((None, 160000)) == (None, 311, 513)
    ref = np.abs(reference_stft(x[1], n_fft=1024, hop_length=512, center=False,
                              window="hann")).T
    np.testing.assert_allclose(out[1], ref, rtol=1e-4, atol=2e-3)


def test_clip_spectrum_drops_the_nyquist_bin(tmp_path):
    x = RNG.normal(size=(2, 1000)).astype("float32")
    out = _roundtrip_and_save(layers.ClipSpectrum(name="fft"), x, tmp_path)
    assert out.shape == (2, 500)
    np.testing.assert_allclose(out, np.abs(np.fft.fft(x))[:, :500], rtol=1e-4, atol=1e-3)


def test_temporal_mean_normalization(tmp_path):
    x = RNG.normal(size=(2, 7, 5, 1)).astype("float32") + 3.0
    out = _roundtrip_and_save(layers.TemporalMeanNormalization(name="tmn"), x, tmp_path)
    np.testing.assert_allclose(out, x - x.mean(axis=1, keepdims=True), atol=1e-5)


# ----------------------------------------------------------------------
# Mixup
# ----------------------------------------------------------------------


def test_mix_rules_by_hand():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "float32")
    y = np.array([[1, 0], [0, 1], [1, 0]], "float32")
    lam = np.array([0.25, 1.0, 0.6], "float32")
    xm, ym = (keras.ops.convert_to_numpy(t) for t in mix(x, y, lam, "standard"))
    # partner of row 0 is row 2, of row 2 is row 0
    np.testing.assert_allclose(xm[0], 0.25 * x[0] + 0.75 * x[2])
    np.testing.assert_allclose(xm[1], x[1])
    np.testing.assert_allclose(ym[0], [1.0, 0.0])  # same class: convex label
    np.testing.assert_allclose(ym[2], [1.0, 0.0])
    _, ymax = (keras.ops.convert_to_numpy(t) for t in mix(x, y, lam, "max"))
    # "max" rule of the reference: max(0.25, 0.75) for two equal classes
    np.testing.assert_allclose(ymax[0], [0.75, 0.0])
    np.testing.assert_allclose(ymax[2], [0.6, 0.0])
    np.testing.assert_allclose(ymax[1], [0.0, 1.0])


def test_mixup_layer_training_and_inference(tmp_path):
    x = RNG.normal(size=(8, 4)).astype("float32")
    y = np.eye(8, dtype="float32")  # every pair of classes differs
    layer = layers.Mixup(probability=1.0, label_rule="standard", seed=3, name="mixup")
    xm, ym = (keras.ops.convert_to_numpy(t) for t in layer([x, y], training=True))
    lam = ym[np.arange(8), np.arange(8)]
    assert np.all((lam >= 0) & (lam <= 1)) and len(np.unique(lam)) > 1
    np.testing.assert_allclose(xm, lam[:, None] * x + (1 - lam[:, None]) * x[::-1],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)
    same = layer([x, y], training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same[0]), x)
    never = layers.Mixup(probability=0.0)([x, y], training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(never[1]), y)
    clone = layers.Mixup.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = [keras.Input((4,)), keras.Input((8,))]
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "mixup.keras")
    loaded = keras.saving.load_model(tmp_path / "mixup.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded([x, y])[0]), x)
    with pytest.raises(ValueError, match="probability"):
        layers.Mixup(probability=1.5)
    with pytest.raises(ValueError, match="label_rule"):
        layers.Mixup(label_rule="mean")


def test_mixup_dataset_is_reproducible():
    import tensorflow as tf

    from asd_keras.layers.mixup import mixup_dataset

    x = RNG.normal(size=(6, 3)).astype("float32")
    y = np.eye(6, dtype="float32")
    ds = tf.data.Dataset.from_tensor_slices(({"waveform": x, "label": y}, y)).batch(6)
    a = [b for b in mixup_dataset(ds, 1.0, "standard", seed=1)][0]
    b = [b for b in mixup_dataset(ds, 1.0, "standard", seed=1)][0]
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    np.testing.assert_array_equal(a[0]["label"].numpy(), a[1].numpy())
    lam = np.diag(a[1].numpy())
    np.testing.assert_allclose(a[0]["waveform"].numpy(),
                               lam[:, None] * x + (1 - lam[:, None]) * x[::-1], atol=1e-6)


# ----------------------------------------------------------------------
# Heads: values computed by hand in NumPy
# ----------------------------------------------------------------------


def _head_inputs(batch=5, dim=4, classes=3):
    emb = RNG.normal(size=(batch, dim)).astype("float32")
    labels = np.eye(classes, dtype="float32")[RNG.integers(0, classes, batch)]
    return emb, labels


def _reference_scale(s, cos, labels, k):
    """The SCAdaCos update written out from reference wilkinghoff.md §4."""
    logits = s * cos
    top = logits.max()
    b_avg = np.mean(np.sum(np.exp(logits - top), axis=1))
    theta = np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7))
    rep = np.repeat(labels, k, axis=1)
    theta_class = np.sum(rep * theta, axis=1) * np.count_nonzero(labels, axis=1)
    med = np.sort(theta_class)[len(theta_class) // 2]  # upper median ('nearest')
    return (top + np.log(b_avg)) / np.cos(min(np.pi / 4, med)) + 1e-7


@pytest.mark.parametrize("k", [1, 2, 16])
def test_subcluster_adacos_by_hand(k, tmp_path):
    classes, dim = 3, 4
    emb, labels = _head_inputs(6, dim, classes)
    labels[0] = [0.3, 0.7, 0.0]  # a mixed-up target
    layer = layers.SubClusterAdaCos(classes, k, seed=1, name="scada")
    layer.build([emb.shape, labels.shape])
    centers = keras.ops.convert_to_numpy(layer.centers)
    s0 = math.sqrt(2) * math.log(classes * k - 1)
    assert float(layer.scale.numpy()) == pytest.approx(s0, rel=1e-6)
    cos = _unit(emb) @ _unit(centers, axis=0)
    s1 = _reference_scale(s0, cos, labels, k)
    out = keras.ops.convert_to_numpy(layer([emb, labels], training=True))
    assert out.shape == (6, classes, 2)
    assert float(layer.scale.numpy()) == pytest.approx(s1, rel=1e-5)
    e = np.exp(s1 * cos)
    probs = (e / e.sum(axis=1, keepdims=True)).reshape(6, classes, k).sum(axis=2)
    np.testing.assert_allclose(out[..., 0], probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], labels)
    # Inference leaves the scale alone.
    layer([emb, labels], training=False)
    assert float(layer.scale.numpy()) == pytest.approx(s1, rel=1e-5)
    if k == 16:
        # A sum of 16 angles is always above pi/4 (reference §4, surprise 3).
        top = (s0 * cos).max()
        b_avg = np.mean(np.sum(np.exp(s0 * cos - top), axis=1))
        assert s1 == pytest.approx(math.sqrt(2) * (top + np.log(b_avg)) + 1e-7, rel=1e-6)
    assert layer.class_centers().shape == (classes, k, dim)
    assert not layer.trainable_weights  # fixed centres by default
    fresh = layers.SubClusterAdaCos(classes, k, seed=1, name="scada")
    _roundtrip_and_save(fresh, [emb, labels], tmp_path)


def test_adacos_paper_rule_by_hand():
    classes = 4
    emb, labels = _head_inputs(5, 3, classes)
    layer = layers.AdaCos(classes, scale_rule="adacos", seed=2)
    layer.build([emb.shape, labels.shape])
    cos = _unit(emb) @ _unit(keras.ops.convert_to_numpy(layer.centers), axis=0)
    s0 = math.sqrt(2) * math.log(classes - 1)
    b_avg = np.mean(np.sum((labels == 0) * np.exp(s0 * cos), axis=1))
    theta = np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7))
    med = np.sort(np.sum(labels * theta, axis=1))[len(labels) // 2]
    expected = np.log(b_avg) / np.cos(min(np.pi / 4, med))
    layer([emb, labels], training=True)
    assert float(layer.scale.numpy()) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(adaptive_scale(s0, cos.astype("float32"), labels, 1,
                                                  "adacos")), expected, rtol=1e-5)
    assert "num_subclusters" not in layer.get_config()
    with pytest.raises(ValueError, match="at least 2 centres"):
        layers.AdaCos(1)


def test_arcface_by_hand(tmp_path):
    classes = 3
    emb, labels = _head_inputs(4, 5, classes)
    layer = layers.ArcFace(classes, scale=10.0, margin=0.3, seed=4, name="arc")
    out = keras.ops.convert_to_numpy(layer([emb, labels]))
    cos = _unit(emb) @ _unit(keras.ops.convert_to_numpy(layer.centers), axis=0)
    logits = 10.0 * np.cos(np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7)) + 0.3 * labels)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out[..., 0], e / e.sum(axis=1, keepdims=True), rtol=1e-4,
                               atol=1e-6)
    assert len(layer.trainable_weights) == 1
    _roundtrip_and_save(layers.ArcFace(classes, 10.0, 0.3, seed=4, name="arc"),
                        [emb, labels], tmp_path)
    with pytest.raises(ValueError, match="margin"):
        layers.ArcFace(3, margin=2.0)


def test_softmax_head_by_hand(tmp_path):
    emb, labels = _head_inputs(4, 5, 3)
    layer = layers.SoftmaxHead(3, seed=5, name="sm")
    out = keras.ops.convert_to_numpy(layer([emb, labels]))
    logits = emb @ keras.ops.convert_to_numpy(layer.kernel)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out[..., 0], e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    _roundtrip_and_save(layers.SoftmaxHead(3, seed=5, name="sm"), [emb, labels], tmp_path)


@pytest.mark.parametrize("with_classifier", [False, True])
def test_compactness_head_by_hand(with_classifier, tmp_path):
    emb, labels = _head_inputs(4, 5, 3)
    layer = layers.CompactnessHead(3, with_classifier, seed=6, name="comp")
    out = keras.ops.convert_to_numpy(layer([emb, labels]))
    assert out.shape == (4, 3, 3 if with_classifier else 2)
    centres = _unit(keras.ops.convert_to_numpy(layer.centers), axis=0).T
    distances = ((_unit(emb)[:, None, :] - centres[None]) ** 2).sum(axis=-1)
    np.testing.assert_allclose(out[..., 0], distances, rtol=1e-5, atol=1e-6)
    assert all("centers" not in w.path for w in layer.trainable_weights)
    _roundtrip_and_save(layers.CompactnessHead(3, with_classifier, seed=6, name="comp"),
                        [emb, labels], tmp_path)


# ----------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------


def test_losses_by_hand(tmp_path):
    probs = np.array([[0.2, 0.5, 0.1], [0.6, 0.3, 0.1]], "float32")  # row 0 sums to 0.8
    targets = np.array([[0.0, 0.75, 0.0], [0.4, 0.6, 0.0]], "float32")
    stacked = np.stack([probs, targets], axis=-1)
    expected = -np.sum(targets * np.log(probs / probs.sum(1, keepdims=True)), axis=1)
    loss = losses.MixupCrossEntropy()
    assert float(loss(targets, stacked)) == pytest.approx(expected.mean(), rel=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(losses.mixup_categorical_crossentropy(None, stacked)),
        expected, rtol=1e-5)
    distances = np.array([[0.5, 1.0, 2.0], [1.5, 0.2, 3.0]], "float32")
    comp = np.stack([distances, targets], axis=-1)
    expected_comp = (targets * distances).sum(axis=1)
    assert float(losses.CompactnessLoss()(targets, comp)) == pytest.approx(
        expected_comp.mean(), rel=1e-6)
    both = np.stack([distances, targets, probs], axis=-1)
    combo = losses.CompactnessCrossEntropy(weight=0.5)
    assert float(combo(targets, both)) == pytest.approx(
        (expected_comp + 0.5 * expected).mean(), rel=1e-5)
    for cls in (losses.MixupCrossEntropy, losses.CompactnessLoss,
                losses.CompactnessCrossEntropy):
        instance = cls()
        clone = cls.from_config(instance.get_config())
        assert clone.get_config() == instance.get_config()
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(instance))
        assert isinstance(restored, cls)
    with pytest.raises(ValueError, match="stacked head output"):
        losses.mixup_categorical_crossentropy(None, probs)
