"""`AttentiveStatisticsPooling` (Okabe et al. 2018) against NumPy written out
here from the layer's weights: both attention inputs, uniform weights,
masks, shapes, saving, bad arguments and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from asd_keras.layers.attentive_pooling import AttentiveStatisticsPooling

RNG = np.random.default_rng(0)
BATCH, TOKENS, DIM, ATT = 2, 5, 3, 4
X = RNG.normal(size=(BATCH, TOKENS, DIM)).astype("float32")
# A far-off mean in one dimension: the statistics must survive it.
X[:, :, 1] += 20.0
EPS = 1e-6
TOL = dict(rtol=1e-5, atol=1e-5)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _layer(global_context=False, **kwargs):
    """A built layer with random weights (bias included, which starts at 0)."""
    layer = AttentiveStatisticsPooling(ATT, global_context=global_context, **kwargs)
    layer.build((None, None, DIM))
    rng = np.random.default_rng(1)
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    layer.bias.assign(rng.normal(size=(ATT,)).astype("float32"))
    layer.score_vector.assign(rng.normal(size=(ATT,)).astype("float32"))
    return layer


def _reference(layer, clip):
    """Okabe's equations in float64 on one clip `(T, dim)`."""
    h = clip.astype("float64")
    w, b, v = (np.asarray(x.numpy(), "float64")
               for x in (layer.kernel, layer.bias, layer.score_vector))
    a = h
    if layer.global_context:
        mean = h.mean(0)
        std = np.sqrt(np.maximum((h * h).mean(0) - mean * mean, layer.epsilon))
        a = np.concatenate([h, np.broadcast_to(mean, h.shape),
                            np.broadcast_to(std, h.shape)], axis=1)
    e = np.tanh(a @ w + b) @ v
    alpha = np.exp(e - e.max())
    alpha /= alpha.sum()
    mu = alpha @ h
    sigma = np.sqrt(np.maximum(alpha @ (h * h) - mu * mu, layer.epsilon))
    return np.concatenate([mu, sigma])


def test_output_shape_static_and_dynamic_tokens():
    layer = AttentiveStatisticsPooling(ATT)
    assert _np(layer(X)).shape == (BATCH, 2 * DIM)
    assert layer.compute_output_shape((None, None, DIM)) == (None, 2 * DIM)
    assert layer(keras.Input((None, DIM))).shape == (None, 2 * DIM)
    # The same built layer on another token count.
    assert _np(layer(X[:, :2])).shape == (BATCH, 2 * DIM)


@pytest.mark.parametrize("global_context", [False, True])
def test_matches_numpy_from_the_weights(global_context):
    layer = _layer(global_context)
    assert layer.kernel.shape == ((3 if global_context else 1) * DIM, ATT)
    expected = [_reference(layer, clip) for clip in X]
    np.testing.assert_allclose(_np(layer(X)), expected, **TOL)


@pytest.mark.parametrize("global_context", [False, True])
def test_zero_weights_give_plain_mean_and_std(global_context):
    layer = _layer(global_context)
    for weight in (layer.kernel, layer.bias, layer.score_vector):
        weight.assign(np.zeros(weight.shape, "float32"))
    x = X.astype("float64")
    expected = np.concatenate([x.mean(1), x.std(1)], axis=-1)  # population std
    np.testing.assert_allclose(_np(layer(X)), expected, **TOL)


@pytest.mark.parametrize("global_context", [False, True])
def test_mask_equals_pooling_the_unmasked_tokens_only(global_context):
    layer = _layer(global_context)
    mask = np.array([[True, False, True, True, False],
                     [False, True, True, True, True]])
    got = _np(layer(X, mask=mask))
    for clip, keep, row in zip(X, mask, got):
        np.testing.assert_allclose(row, _np(layer(clip[None, keep]))[0], **TOL)
        np.testing.assert_allclose(row, _reference(layer, clip[keep]), **TOL)
    # A mask from an upstream Masking layer (all-zero tokens) is used, and
    # the pooled output carries none.
    padded = np.concatenate([X, np.zeros((BATCH, 2, DIM), "float32")], axis=1)
    inputs = keras.Input((None, DIM))
    masking = keras.layers.Masking(0.0)
    model = keras.Model(inputs, layer(masking(inputs)))
    np.testing.assert_allclose(_np(model(padded)), _np(layer(X)), **TOL)
    assert layer.compute_mask(masking(inputs), masking.compute_mask(inputs)) is None


def test_config_round_trip_and_save_load(tmp_path):
    layer = _layer(True, epsilon=1e-5, name="asp")
    config = layer.get_config()
    assert config["attention_dim"] == ATT and config["global_context"] is True
    assert AttentiveStatisticsPooling.from_config(config).get_config() == config
    inputs = keras.Input((None, DIM))
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    expected = _np(model(X))
    model.save(tmp_path / "asp.keras")
    loaded = keras.saving.load_model(tmp_path / "asp.keras")
    np.testing.assert_allclose(_np(loaded(X)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs, bad", [
    (dict(attention_dim=0), "0"),
    (dict(attention_dim=-3), "-3"),
    (dict(attention_dim=2.5), "2.5"),
    (dict(attention_dim=True), "True"),
    (dict(epsilon=0.0), "0.0"),
    (dict(epsilon=-1e-3), "-0.001"),
    (dict(epsilon=float("nan")), "nan"),
])
def test_bad_arguments_raise(kwargs, bad):
    with pytest.raises(ValueError, match=f"received {bad}"):
        AttentiveStatisticsPooling(**kwargs)


def test_bad_input_shapes_raise():
    with pytest.raises(ValueError, match=r"received shape \(2, 3\)"):
        AttentiveStatisticsPooling()(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"received shape \(None, 5, None\)"):
        AttentiveStatisticsPooling().build((None, 5, None))


@pytest.mark.parametrize("global_context", [False, True])
def test_gradients_reach_every_weight(global_context):
    layer = _layer(global_context)
    target = RNG.normal(size=(BATCH, 2 * DIM)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(X) * target)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 3
    for weight, grad in zip(layer.trainable_weights, grads):
        grad = _np(grad)
        assert np.all(np.isfinite(grad)), weight.name
        assert np.abs(grad).max() > 1e-6, weight.name
