"""Contrastive losses and augmentation layers, checked by hand and in NumPy.

Tolerances: float32 values are compared with `rtol=1e-5, atol=1e-6` unless
stated (a few float32 operations deep); recovered integers (shifts, widths)
are compared exactly after rounding.
"""

import math

import keras
import numpy as np
import pytest

from asd_keras import layers
from asd_keras import losses
from asd_keras.layers.augment import add_white_noise
from asd_keras.layers.augment import band_mask
from asd_keras.layers.augment import shift_mel
from asd_keras.layers.augment import stretch_time

RNG = np.random.default_rng(0)
TOL = dict(rtol=1e-5, atol=1e-6)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ----------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------


def _nt_xent_numpy(z1, z2, temperature):
    """NT-Xent written out anchor by anchor (SimCLR, Algorithm 1)."""
    z = _unit(np.concatenate([z1, z2]).astype("float64"))
    n = len(z1)
    sim = z @ z.T / temperature
    terms = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        terms.append(-sim[i, positive] + np.log(np.sum(np.exp(sim[i, others]))))
    return np.mean(terms)


def _simsiam_numpy(p1, p2, z1, z2):
    def d(p, z):
        return -np.sum(_unit(p) * _unit(z), axis=-1)
    return np.mean(0.5 * d(p1, z2) + 0.5 * d(p2, z1))


def test_nt_xent_by_hand_and_against_numpy():
    # Two orthogonal clips with identical views, temperature 1: every anchor
    # has similarity 1 to its positive and 0 to its two negatives, so the
    # loss is -1 + log(e + 2).
    e = np.eye(2, dtype="float32")
    value = float(losses.nt_xent(e, 3.0 * e, temperature=1.0))  # scale-free
    assert value == pytest.approx(math.log(math.e + 2.0) - 1.0, rel=1e-6)
    z1 = RNG.normal(size=(3, 4)).astype("float32")
    z2 = RNG.normal(size=(3, 4)).astype("float32")
    for temperature in (0.1, 0.5, 2.0):
        got = float(losses.nt_xent(z1, z2, temperature))
        assert got == pytest.approx(_nt_xent_numpy(z1, z2, temperature), rel=1e-5)
    assert float(losses.nt_xent(z1, z2)) == pytest.approx(
        _nt_xent_numpy(z1, z2, 0.5), rel=1e-5)  # the documented default
    # Symmetric in the two views.
    assert float(losses.nt_xent(z2, z1)) == pytest.approx(
        float(losses.nt_xent(z1, z2)), rel=1e-6)
    for bad in (0.0, -1.0, float("nan"), None, True):
        with pytest.raises(ValueError, match="temperature.*received"):
            losses.nt_xent(z1, z2, bad)


def test_simsiam_by_hand_and_against_numpy():
    z = RNG.normal(size=(3, 4)).astype("float32")
    # Predictions aligned with the other view's projection: minimum -1.
    aligned = losses.simsiam_loss(2.0 * z, z, z, 0.5 * z)
    assert float(aligned) == pytest.approx(-1.0, rel=1e-6)
    e = np.eye(4, dtype="float32")
    # Orthogonal predictions and targets: cosine 0.
    orthogonal = losses.simsiam_loss(e[:2], e[:2], e[2:], e[2:])
    assert float(orthogonal) == pytest.approx(0.0, abs=1e-7)
    p1, p2, z1, z2 = (RNG.normal(size=(3, 4)).astype("float32") for _ in range(4))
    assert float(losses.simsiam_loss(p1, p2, z1, z2)) == pytest.approx(
        _simsiam_numpy(p1, p2, z1, z2), rel=1e-5)
    np.testing.assert_allclose(_np(losses.negative_cosine_similarity(p1, z2)),
                               -np.sum(_unit(p1) * _unit(z2), axis=-1), **TOL)


def test_simsiam_stop_gradient_blocks_the_targets():
    import tensorflow as tf

    p1, p2, z1, z2 = (tf.constant(RNG.normal(size=(3, 4)), "float32") for _ in range(4))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([p1, p2, z1, z2])
        loss = losses.simsiam_loss(p1, p2, z1, z2)
        stacked = tf.stack([p1, p2, z1, z2], axis=1)
        class_loss = losses.SimSiamLoss()(tf.zeros(3), stacked)
    g_p1, g_p2, g_z1, g_z2 = tape.gradient(loss, [p1, p2, z1, z2])
    assert g_z1 is None and g_z2 is None
    # Through the stacked y_pred of the class, the z rows get no gradient.
    g_stacked = tape.gradient(class_loss, stacked).numpy()
    np.testing.assert_array_equal(g_stacked[:, 2:], 0.0)
    # d/dp of -cos(p, z) / (2N) = -(z_hat - (p_hat . z_hat) p_hat) / (2N |p|).
    for p, z, g in ((p1, z2, g_p1), (p2, z1, g_p2)):
        p, z = p.numpy().astype("float64"), z.numpy().astype("float64")
        p_hat, z_hat = _unit(p), _unit(z)
        cos = np.sum(p_hat * z_hat, axis=-1, keepdims=True)
        expected = -(z_hat - cos * p_hat) / np.linalg.norm(p, axis=-1, keepdims=True) / 6
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-4, atol=1e-6)
    # NT-Xent, by contrast, trains both views.
    with tf.GradientTape() as tape:
        tape.watch([z1, z2])
        loss = losses.nt_xent(z1, z2)
    assert all(np.abs(g.numpy()).sum() > 0 for g in tape.gradient(loss, [z1, z2]))


def test_loss_classes_match_the_functions_and_serialise():
    z1, z2 = (RNG.normal(size=(3, 4)).astype("float32") for _ in range(2))
    p1, p2 = (RNG.normal(size=(3, 4)).astype("float32") for _ in range(2))
    y_true = np.zeros(3, "float32")
    nt = losses.NTXent(temperature=0.2)
    assert float(nt(y_true, np.stack([z1, z2], axis=1))) == pytest.approx(
        _nt_xent_numpy(z1, z2, 0.2), rel=1e-5)
    ss = losses.SimSiamLoss()
    assert float(ss(y_true, np.stack([p1, p2, z1, z2], axis=1))) == pytest.approx(
        _simsiam_numpy(p1, p2, z1, z2), rel=1e-5)
    # Sample weights weight whole pairs.
    weights = np.array([1.0, 0.0, 0.0], "float32")
    assert float(ss(y_true, np.stack([p1, p2, z1, z2], axis=1), weights)) == pytest.approx(
        _simsiam_numpy(p1[:1], p2[:1], z1[:1], z2[:1]) / 3, rel=1e-5)
    for loss in (nt, ss):
        config = loss.get_config()
        assert loss.__class__.from_config(config).get_config() == config
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == config
    assert nt.get_config()["temperature"] == 0.2
    with pytest.raises(ValueError, match=r"\(batch, 2, dim\).*\(3, 3, 4\)"):
        nt(y_true, np.stack([z1, z2, z1], axis=1))
    with pytest.raises(ValueError, match=r"\(batch, 4, dim\).*\(3, 2, 4\)"):
        ss(y_true, np.stack([p1, p2], axis=1))
    with pytest.raises(ValueError, match="received -0.5"):
        losses.NTXent(temperature=-0.5)


def _stack(tensors):
    """Stacks `(batch, dim)` tensors on axis 1 with serialisable layers."""
    dim = tensors[0].shape[-1]
    return keras.layers.Concatenate(axis=1)(
        [keras.layers.Reshape((1, dim))(t) for t in tensors])


def _contrastive_model(kind):
    """SimCLR or SimSiam on a (12, 8) log-mel, with every spectrogram
    augmentation in the two branches."""
    inputs = keras.Input((12, 8))
    view1 = layers.TimeMasking(3, 2, seed=1)(layers.TimeStretch(0.2, seed=2)(inputs))
    view2 = layers.FrequencyMasking(2, 1, seed=3)(layers.PitchShift(2, seed=4)(inputs))
    encoder = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)])
    z1, z2 = encoder(view1), encoder(view2)
    if kind == "simclr":
        return keras.Model(inputs, _stack([z1, z2])), losses.NTXent(0.3)
    predictor = keras.layers.Dense(4)
    return (keras.Model(inputs, _stack([predictor(z1), predictor(z2), z1, z2])),
            losses.SimSiamLoss())


@pytest.mark.parametrize("kind", ["simclr", "simsiam"])
def test_loss_inside_a_compiled_model_trains_and_reloads(kind, tmp_path):
    keras.utils.set_random_seed(0)
    model, loss = _contrastive_model(kind)
    model.compile(optimizer="sgd", loss=loss, jit_compile=False)
    x = RNG.normal(size=(6, 12, 8)).astype("float32")
    y = np.zeros(6, "float32")
    trained = model.train_on_batch(x, y)  # augmentations run in the graph
    assert np.isfinite(trained)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
    expected = float(loss(y, model(x)))
    assert float(loaded.loss(y, loaded(x))) == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------
# Augmentations: pure functions by hand
# ----------------------------------------------------------------------


def test_band_mask_by_hand():
    # width floor(u * (max_width + 1)), start floor(u * (size - width + 1))
    uw = np.array([[0.5, 0.99], [0.0, 0.3]], "float32")
    us = np.array([[0.5, 0.0], [0.7, 0.999]], "float32")
    mask = _np(band_mask(uw, us, 10, 3))
    expected = np.zeros((2, 10), bool)
    expected[0, 4:6] = True   # width 2, start floor(0.5 * 9) = 4
    expected[0, 0:3] = True   # width 3, start 0
    expected[1, 9:10] = True  # width 0 (nothing), then width 1 at floor(0.999 * 10)
    np.testing.assert_array_equal(mask, expected)
    # A band wider than the axis covers it all.
    np.testing.assert_array_equal(_np(band_mask([[0.99]], [[0.5]], 2, 5)), [[True, True]])


def test_shift_mel_by_hand():
    x = np.tile(np.arange(5, dtype="float32"), (3, 2, 1))  # (3 clips, 2 frames, 5 mels)
    out = _np(shift_mel(x, np.array([2, -1, 0], "int32")))
    np.testing.assert_allclose(out[0], [[0, 0, 0, 1, 2]] * 2, **TOL)  # up, edge repeated
    np.testing.assert_allclose(out[1], [[1, 2, 3, 4, 4]] * 2, **TOL)  # down
    np.testing.assert_allclose(out[2], x[2], **TOL)


def test_stretch_time_by_hand():
    ramp = np.tile(np.arange(6, dtype="float32")[None, :, None], (3, 1, 2))
    out = _np(stretch_time(ramp, np.array([2.0, 0.5, 1.0], "float32")))
    # Sped up: padded with the last frame.
    np.testing.assert_allclose(out[0, :, 0], [0, 2, 4, 5, 5, 5], **TOL)
    np.testing.assert_allclose(out[1, :, 0], [0, 0.5, 1, 1.5, 2, 2.5], **TOL)  # cropped
    np.testing.assert_allclose(out[2], ramp[2], **TOL)
    x = RNG.normal(size=(1, 9, 3)).astype("float32")
    got = _np(stretch_time(x, np.array([1.3], "float32")))[0]
    position = np.minimum(np.arange(9) * 1.3, 8)
    for m in range(3):
        np.testing.assert_allclose(got[:, m], np.interp(position, np.arange(9), x[0, :, m]),
                                   rtol=1e-5, atol=1e-5)


def test_add_white_noise_by_hand():
    x = RNG.normal(size=(3, 500)).astype("float32")
    x[2] = 0.0
    noise = RNG.normal(size=(3, 500)).astype("float32")
    out = _np(add_white_noise(x, noise, np.array([0.0, 20.0, 10.0], "float32")))
    added = out - x
    snr = 10 * np.log10(np.mean(x[:2] ** 2, axis=1) / np.mean(added[:2] ** 2, axis=1))
    np.testing.assert_allclose(snr, [0.0, 20.0], atol=1e-3)  # dB
    # The added noise is the drawn noise, rescaled per clip.
    scale = np.sum(added * noise, axis=1) / np.sum(noise ** 2, axis=1)
    np.testing.assert_allclose(added[:2], scale[:2, None] * noise[:2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[2], 0.0, atol=1e-12)  # a silent clip stays silent


# ----------------------------------------------------------------------
# Augmentation layers
# ----------------------------------------------------------------------

LOGMEL = (RNG.normal(size=(8, 20, 10)) + 5.0).astype("float32")
WAVE = np.sin(np.linspace(0, 200, 2000))[None] * RNG.uniform(0.5, 2.0, (4, 1))
WAVE = WAVE.astype("float32")

LAYERS = {
    "time_masking": (lambda seed: layers.TimeMasking(5, 2, seed=seed, name="aug"), LOGMEL),
    "frequency_masking": (lambda seed: layers.FrequencyMasking(3, 2, seed=seed, name="aug"),
                          LOGMEL),
    "pitch_shift": (lambda seed: layers.PitchShift(3, seed=seed, name="aug"), LOGMEL),
    "time_stretch": (lambda seed: layers.TimeStretch(0.3, seed=seed, name="aug"), LOGMEL),
    "white_noise": (lambda seed: layers.WhiteNoise(5.0, 20.0, seed=seed, name="aug"), WAVE),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_augmentation_contract(kind, tmp_path):
    make, x = LAYERS[kind]
    layer = make(7)
    out = layer(x, training=True)
    assert tuple(out.shape) == x.shape
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    out = _np(out)
    assert not np.allclose(out, x, **TOL)
    np.testing.assert_allclose(_np(layer(x, training=False)), x, **TOL)
    np.testing.assert_allclose(_np(layer(x)), x, **TOL)  # training defaults to off
    # A second call draws new parameters: another view.
    assert not np.allclose(_np(layer(x, training=True)), out, **TOL)
    np.testing.assert_allclose(_np(make(7)(x, training=True)), out, **TOL)
    assert not np.allclose(_np(make(8)(x, training=True)), out, **TOL)
    # Config round trip, then save/load inside a model: the loaded seed
    # generator starts where the saved one was.
    fresh = make(7)
    config = fresh.get_config()
    assert fresh.__class__.from_config(config).get_config() == config
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, fresh(inputs))
    model.save(tmp_path / f"{kind}.keras")
    loaded = keras.saving.load_model(tmp_path / f"{kind}.keras")
    np.testing.assert_allclose(_np(loaded(x)), x, **TOL)
    np.testing.assert_allclose(_np(loaded(x, training=True)), out, **TOL)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_augmentation_with_unknown_batch_and_length(kind):
    import tensorflow as tf

    make, x = LAYERS[kind]
    layer = make(3)
    spec = tf.TensorSpec((None,) * (x.ndim - 1) + x.shape[-1:], "float32")
    if kind == "white_noise":
        spec = tf.TensorSpec((None, None), "float32")
    graph = tf.function(lambda t: layer(t, training=True), input_signature=[spec])
    eager = _np(make(3)(x, training=True))
    np.testing.assert_allclose(graph(x).numpy(), eager, **TOL)


def _runs(flags):
    """Number of runs of True in a 1-d bool array."""
    return int(np.sum(np.diff(np.concatenate([[0], flags.astype(int)])) == 1))


@pytest.mark.parametrize("axis", [1, 2])
def test_masking_fills_whole_bands_with_the_clip_mean(axis):
    max_width, num_masks = (5, 2) if axis == 1 else (3, 2)
    cls = layers.TimeMasking if axis == 1 else layers.FrequencyMasking
    out = _np(cls(max_width, num_masks, seed=11)(LOGMEL, training=True))
    total = 0
    for clip, original in zip(out, LOGMEL):
        mean = original.mean()
        moved = np.moveaxis(clip, axis - 1, 0)  # masked axis first
        kept = np.moveaxis(original, axis - 1, 0)
        masked = np.all(np.isclose(moved, mean, rtol=1e-5, atol=1e-5), axis=1)
        np.testing.assert_allclose(moved[~masked], kept[~masked], **TOL)
        assert masked.sum() <= num_masks * max_width
        assert _runs(masked) <= num_masks
        total += masked.sum()
    assert total > 0


def test_pitch_shift_is_a_roll_on_the_interior():
    max_bins = 3
    out = _np(layers.PitchShift(max_bins, seed=5)(LOGMEL, training=True))
    n = LOGMEL.shape[2]
    shifts = []
    for clip, original in zip(out, LOGMEL):
        matches = [k for k in range(-max_bins, max_bins + 1) if np.allclose(
            clip, original[:, np.clip(np.arange(n) - k, 0, n - 1)], **TOL)]
        assert len(matches) == 1
        k = matches[0]
        interior = slice(max(k, 0), n + min(k, 0))
        rolled = np.roll(original, k, axis=1)
        np.testing.assert_allclose(clip[:, interior], rolled[:, interior], **TOL)
        shifts.append(k)
    assert len(set(shifts)) > 1  # drawn per clip


def test_time_stretch_rates_within_bounds():
    max_rate = 0.3
    ramp = np.tile(np.arange(20, dtype="float32")[None, :, None], (8, 1, 3))
    out = _np(layers.TimeStretch(max_rate, seed=5)(ramp, training=True))
    rates = out[:, 1, 0]  # frame 1 reads the input at position rate
    assert np.all((rates >= 1 - max_rate - 1e-6) & (rates <= 1 + max_rate + 1e-6))
    assert np.ptp(rates) > 0.01  # drawn per clip
    for clip, rate in zip(out, rates):
        np.testing.assert_allclose(clip[:, 0], np.minimum(np.arange(20) * rate, 19),
                                   rtol=1e-5, atol=1e-4)


def test_white_noise_snr_within_bounds():
    out = _np(layers.WhiteNoise(5.0, 20.0, seed=5)(WAVE, training=True))
    snr = 10 * np.log10(np.mean(WAVE ** 2, axis=1) / np.mean((out - WAVE) ** 2, axis=1))
    assert np.all((snr >= 5.0 - 1e-3) & (snr <= 20.0 + 1e-3)) and np.ptp(snr) > 0.1
    fixed = _np(layers.WhiteNoise(12.0, 12.0, seed=5)(WAVE, training=True))
    snr = 10 * np.log10(np.mean(WAVE ** 2, axis=1) / np.mean((fixed - WAVE) ** 2, axis=1))
    np.testing.assert_allclose(snr, 12.0, atol=1e-3)  # dB


def test_zero_magnitudes_are_identities():
    for layer in (layers.TimeMasking(0, 3), layers.FrequencyMasking(4, 0),
                  layers.PitchShift(0), layers.TimeStretch(0.0)):
        np.testing.assert_allclose(_np(layer(LOGMEL, training=True)), LOGMEL, **TOL)


@pytest.mark.parametrize("build, message", [
    (lambda: layers.TimeMasking(-1), "max_width.*received -1"),
    (lambda: layers.TimeMasking(2.5), "max_width.*received 2.5"),
    (lambda: layers.FrequencyMasking(2, num_masks=-2), "num_masks.*received -2"),
    (lambda: layers.PitchShift(True), "max_bins.*received True"),
    (lambda: layers.TimeStretch(1.0), r"max_rate.*\[0, 1\).*received 1.0"),
    (lambda: layers.TimeStretch("fast"), "max_rate.*received 'fast'"),
    (lambda: layers.WhiteNoise(20.0, 5.0), "max_snr_db.*received 5.0"),
    (lambda: layers.WhiteNoise(float("nan"), 5.0), "min_snr_db.*received nan"),
    (lambda: layers.PitchShift(2, seed="a"), "seed.*received 'a'"),
])
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_input_rank():
    with pytest.raises(ValueError,
                       match=r"TimeMasking expects inputs \(batch, frames, n_mels\)"):
        layers.TimeMasking(2)(np.zeros((2, 10), "float32"))
    with pytest.raises(ValueError, match=r"WhiteNoise expects inputs \(batch, samples\)"):
        layers.WhiteNoise(0.0, 1.0)(np.zeros((10,), "float32"))
