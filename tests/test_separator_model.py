"""The CMGAN (TSCNet) separator and its layers, checked against NumPy,
librosa and the PyTorch original's parameter count."""

import keras
import numpy as np
import pytest

from asd_keras import layers
from asd_keras.layers.conformer import glu
from asd_keras.models import build_separator
from asd_keras.models import separator_feature_model
from tests.helpers import roundtrip_and_save
from tests.helpers import reference_stft

RNG = np.random.default_rng(0)
# 0.3 s at 16 kHz, not a multiple of the 100-sample hop.
SAMPLES = 4850
FRAMES = 1 + SAMPLES // 100


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _roundtrip_and_save(layer, inputs, tmp_path):
    return roundtrip_and_save(layer, inputs, tmp_path, atol=1e-5)


# ----------------------------------------------------------------------
# Front end
# ----------------------------------------------------------------------


def test_stft_round_trip_and_librosa(tmp_path):
    x = RNG.normal(size=(2, SAMPLES)).astype("float32")
    spec = _roundtrip_and_save(layers.SeparatorSTFT(name="stft"), x, tmp_path)
    assert spec.shape == (2, FRAMES, 201, 3)
    back = _roundtrip_and_save(layers.SeparatorISTFT(name="istft"),
                               [spec[..., 1:], x], tmp_path)
    assert back.shape == x.shape
    # Every sample comes back, the first and last hop included.
    assert np.abs(back - x).max() < 1e-4

    ref = reference_stft(x[1], n_fft=400, hop_length=100, window="hamming",
                         center=True, pad_mode="reflect").T
    magnitude = spec[1, ..., 0] ** (1 / 0.3)
    # Peak |X| is about 45; float32 FFTs agree to ~1.5e-5.
    np.testing.assert_allclose(magnitude, np.abs(ref), rtol=1e-5, atol=1e-4)
    # Phase kept: (Re_c, Im_c) * |X|c**(1/0.3 - 1) is the complex STFT.
    unc = (spec[1, ..., 1] + 1j * spec[1, ..., 2]) * spec[1, ..., 0] ** (1 / 0.3 - 1)
    np.testing.assert_allclose(unc, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(spec[..., 0], np.hypot(spec[..., 1], spec[..., 2]),
                               rtol=1e-5, atol=1e-6)


def test_rms_scaling_and_masked_refinement(tmp_path):
    x = (0.01 * RNG.normal(size=(2, 800))).astype("float32")
    scaled = _roundtrip_and_save(layers.RMSScaling(name="rms"), [x, x], tmp_path)
    np.testing.assert_allclose(np.sqrt(np.mean(scaled**2, axis=-1)), 1.0, rtol=1e-5)
    back = _np(layers.RMSScaling(inverse=True)([scaled, x]))
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-8)
    silent = np.zeros((1, 800), "float32")
    assert np.all(_np(layers.RMSScaling()([silent, silent])) == 0.0)
    with pytest.raises(ValueError, match="-1"):
        layers.RMSScaling(epsilon=-1)

    noisy = RNG.normal(size=(2, 3, 5, 3)).astype("float32")
    mask = RNG.normal(size=(2, 3, 5, 1)).astype("float32")
    refinement = RNG.normal(size=(2, 3, 5, 2)).astype("float32")
    out = _roundtrip_and_save(layers.MaskedRefinement(name="combine"),
                              [noisy, mask, refinement], tmp_path)
    # mask * |Y|c * (cos, sin)(angle Y) + refinement.
    phase = np.arctan2(noisy[..., 2], noisy[..., 1])
    magnitude = np.hypot(noisy[..., 1], noisy[..., 2])
    expected = mask * magnitude[..., None] * np.stack(
        [np.cos(phase), np.sin(phase)], axis=-1) + refinement
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------
# Conformer layers
# ----------------------------------------------------------------------


def _numpy_attention(x, wq, wkv, wo, bo, table, heads, head_dim, max_rel):
    """CMGAN's `Attention.forward` in NumPy (no mask, no dropout)."""
    batch, length, _ = x.shape

    def split(t):
        return t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

    q = split(x @ wq)
    k, v = (split(t) for t in np.split(x @ wkv, 2, axis=-1))
    scale = head_dim**-0.5
    i = np.arange(length)
    rel = table[np.clip(i[:, None] - i[None, :], -max_rel, max_rel) + max_rel]
    dots = (q @ k.transpose(0, 1, 3, 2)) * scale
    dots = dots + np.einsum("bhnd,nrd->bhnr", q, rel) * scale
    attn = np.exp(dots - dots.max(axis=-1, keepdims=True))
    attn = attn / attn.sum(axis=-1, keepdims=True)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
    return out @ wo + bo


def test_relative_position_attention_matches_numpy(tmp_path):
    dim, heads, head_dim, max_rel, length = 6, 2, 3, 3, 7  # distances clip
    x = RNG.normal(size=(2, length, dim)).astype("float32")
    layer = layers.RelativePositionAttention(heads, head_dim, max_rel, name="attn")
    layer.build(x.shape)
    values = [RNG.normal(size=w.shape).astype("float32") * 0.5 for w in layer.weights]
    for weight, value in zip(layer.weights, values):
        weight.assign(value)
    assert layer.relative_embeddings.shape == (2 * max_rel + 1, head_dim)
    expected = _numpy_attention(
        x, _np(layer.query_kernel), _np(layer.key_value_kernel),
        _np(layer.output_kernel), _np(layer.output_bias),
        _np(layer.relative_embeddings), heads, head_dim, max_rel)
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)
    fresh = layers.RelativePositionAttention(heads, head_dim, max_rel, dropout=0.2,
                                             seed=1, name="attn")
    assert _roundtrip_and_save(fresh, x, tmp_path).shape == x.shape
    with pytest.raises(ValueError, match="1.5"):
        layers.RelativePositionAttention(2, 3, dropout=1.5)


def _conformer_parameters(dim, heads, head_dim, mult=4, expansion=2, kernel=31):
    """Trainable parameters of CMGAN's `ConformerBlock` (conformer.py)."""
    attn_inner, inner = heads * head_dim, dim * expansion
    feed_forward = 2 * dim + (dim * dim * mult + dim * mult) + (dim * mult * dim + dim)
    attention = (2 * dim + dim * attn_inner + dim * 2 * attn_inner
                 + attn_inner * dim + dim + (2 * 512 + 1) * head_dim)
    conv = (2 * dim + dim * 2 * inner + 2 * inner + inner * kernel + inner
            + 2 * inner + inner * dim + dim)
    return 2 * feed_forward + attention + conv + 2 * dim


def test_glu_and_conformer_block(tmp_path):
    z = RNG.normal(size=(2, 3, 8)).astype("float32")
    np.testing.assert_allclose(
        _np(glu(z)), z[..., :4] / (1 + np.exp(-z[..., 4:])), rtol=1e-6, atol=1e-6)

    dim = 8
    x = RNG.normal(size=(2, 9, dim)).astype("float32")
    block = layers.ConformerBlock(dim, num_heads=2, seed=0, name="conformer")
    out = _roundtrip_and_save(block, x, tmp_path)
    assert out.shape == x.shape
    assert block.head_dim == 4
    # GLU halves the pointwise expansion back to inner = 2 * dim channels.
    assert tuple(block.conv_pointwise_in.kernel.shape) == (dim, 4 * dim)
    assert tuple(block.conv_depthwise.kernel.shape) == (31, 2 * dim, 1)
    assert tuple(block.conv_pointwise_out.kernel.shape) == (2 * dim, dim)
    trainable = sum(int(np.prod(w.shape)) for w in block.trainable_weights)
    assert trainable == _conformer_parameters(dim, 2, 4)
    # Post-norm output: zero mean, unit variance per position at init.
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-5)
    assert _np(block(x, training=True)).shape == x.shape
    with pytest.raises(ValueError, match="30"):
        layers.ConformerBlock(dim, conv_kernel=30)
    with pytest.raises(ValueError, match="dim"):
        layers.ConformerBlock(3, num_heads=4)


def test_two_stage_conformer_runs_time_then_frequency(tmp_path):
    dim = 8
    x = RNG.normal(size=(2, 5, 7, dim)).astype("float32")
    layer = layers.TwoStageConformer(dim, num_heads=2, seed=3, name="tscb")
    out = _roundtrip_and_save(layer, x, tmp_path)
    assert out.shape == x.shape
    # The same maps applied slice by slice (inference: BatchNorm uses its
    # moving statistics, so slicing the batch changes nothing).
    time_out = np.stack(
        [_np(layer.time_conformer(x[:, :, f])) + x[:, :, f] for f in range(7)], axis=2)
    expected = np.stack(
        [_np(layer.freq_conformer(time_out[:, t])) + time_out[:, t] for t in range(5)],
        axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------
# The full separator
# ----------------------------------------------------------------------

_PROBES = {
    "stft": (201, 3),
    "tap_0": (101, 8),
    "mask_dense4_prelu": (101, 8),
    "mask_subpixel_shuffle": (202, 8),
    "mask_freq_prelu": (201, 1),
    "complex_subpixel_shuffle": (202, 8),
    "complex_conv": (201, 2),
    "estimate": (201, 2),
}


@pytest.mark.parametrize("num_blocks", [0, 1])
def test_separator_shapes_through_every_block(num_blocks):
    model = build_separator(width=8, num_blocks=num_blocks, seed=0)
    names = list(_PROBES) + [f"tap_{i}" for i in range(1, num_blocks + 1)]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names]
                        + [model.output])
    x = RNG.normal(size=(2, SAMPLES)).astype("float32")
    *inner, waveform = (_np(t) for t in probe(x))
    for name, value in zip(names, inner):
        assert value.shape == (2, FRAMES, *_PROBES.get(name, (101, 8))), name
    assert waveform.shape == x.shape and np.isfinite(waveform).all()
    features = separator_feature_model(model)(x)
    if num_blocks == 0:
        # Keras returns a one-output model's tensor itself, not a list.
        features = [features]
    assert len(features) == num_blocks + 1
    taps = dict(zip(names, inner))
    for i, feature in enumerate(features):
        np.testing.assert_allclose(_np(feature), taps[f"tap_{i}"], rtol=1e-5, atol=1e-5)
    # Per-frequency output PReLU starts at -0.25 (CMGAN's init), the
    # per-channel ones at PyTorch's 0.25.
    alpha = _np(model.get_layer("mask_freq_prelu").alpha)
    assert alpha.shape == (1, 201, 1) and np.all(alpha == -0.25)
    assert np.all(_np(model.get_layer("encoder_conv_prelu").alpha) == 0.25)


def test_separator_save_load_and_config(tmp_path):
    model = build_separator(width=8, num_blocks=1, seed=2)
    x = RNG.normal(size=(1, 3200)).astype("float32")
    expected = _np(model(x, training=False))
    model.save(tmp_path / "separator.keras")
    loaded = keras.saving.load_model(tmp_path / "separator.keras")
    np.testing.assert_allclose(_np(loaded(x, training=False)), expected,
                               rtol=1e-4, atol=1e-5)
    features = separator_feature_model(loaded)(x)
    assert [tuple(f.shape) for f in features] == [(1, 33, 101, 8)] * 2
    # The config carries the seeded initialisers: it rebuilds the same
    # weights, as does build_separator with the same seed.
    again = keras.Model.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(_np(a), _np(b))
    first = _np(model.get_layer("mask_dense1_conv").kernel)
    other = _np(model.get_layer("complex_dense1_conv").kernel)
    assert not np.allclose(first, other)


def _tscnet_parameters(width, num_blocks):
    """Trainable parameters of CMGAN's `TSCNet` (generator.py), any size."""
    def norm_prelu(c):
        return 3 * c  # InstanceNorm2d(affine) 2c + PReLU(c)

    dense = sum(6 * i * width * width + width + norm_prelu(width) for i in range(1, 5))
    sub_pixel = width * 2 * width * 3 + 2 * width
    encoder = (3 * width + width + norm_prelu(width) + dense
               + width * width * 3 + width + norm_prelu(width))
    mask = dense + sub_pixel + (width * 2 + 1) + norm_prelu(1) + 2 + 201
    complex_ = dense + sub_pixel + norm_prelu(width) + (width * 2 * 2 + 2)
    block = 2 * _conformer_parameters(width, 4, width // 4)
    return encoder + num_blocks * block + mask + complex_


# count_params(), exact; it includes BatchNorm's moving mean and variance
# (8 * width per block), which PyTorch keeps as buffers.
_PARAMETERS = {
    (0, 64): 803_537, (1, 64): 1_061_873, (2, 64): 1_320_209, (4, 64): 1_836_881,
    (0, 128): 3_204_305, (1, 128): 4_146_961, (2, 128): 5_089_617, (4, 128): 6_974_929,
}


def test_parameter_counts():
    for (num_blocks, width), count in _PARAMETERS.items():
        # Counting needs shapes only: a StatelessScope leaves the variables
        # uninitialised, which saves most of the build time.
        with keras.StatelessScope():
            model = build_separator(width=width, num_blocks=num_blocks)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert model.count_params() == count, (num_blocks, width)
        assert trainable == _tscnet_parameters(width, num_blocks)
        assert count - trainable == 8 * width * num_blocks
    # TSCNet(num_channel=64): the paper's 1.83 M.
    assert _tscnet_parameters(64, 4) == 1_834_833


@pytest.mark.parametrize("kwargs, received", [
    ({"width": 2}, "2"),
    ({"width": 10}, "10"),
    ({"num_blocks": -1}, "-1"),
    ({"n_fft": 402}, "402"),
    ({"hop_length": 150}, "150"),
    ({"compress_factor": 0.0}, "0.0"),
    ({"dropout": 1.0}, "1.0"),
    ({"num_samples": 100}, "100"),
])
def test_separator_rejects_bad_arguments(kwargs, received):
    with pytest.raises(ValueError, match=received):
        build_separator(**kwargs)
