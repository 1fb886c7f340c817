"""The ResNet backbones: torchvision's layout and parameter counts, output
shapes, variable lengths, initialisation and a .keras round trip."""

import functools

import keras
import numpy as np
import pytest

from asd_keras.models import RESNET_DEPTHS
from asd_keras.models import resnet_backbone
from asd_keras.models import resnet_feature_dim

RNG = np.random.default_rng(0)

# torchvision's sum(p.numel() for p in resnetN().parameters()), less its fc
# layer (512 or 2048 -> 1000) and the two input channels conv1 does not have
# here (64 * 2 * 7 * 7).
TORCHVISION_COUNTS = {
    18: 11_689_512 - 513_000 - 6_272,
    34: 21_797_672 - 513_000 - 6_272,
    50: 25_557_032 - 2_049_000 - 6_272,
    101: 44_549_160 - 2_049_000 - 6_272,
    152: 60_192_808 - 2_049_000 - 6_272,
}


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _logmel(*shape):
    return RNG.normal(size=shape).astype("float32")


@functools.cache
def _default(depth):
    # Building ResNet-152 takes seconds on a slow core: build each once.
    return resnet_backbone(depth, seed=0)


def _torch_out(size, kernel, stride, padding):
    # PyTorch's Conv2d / MaxPool2d output size (floor mode).
    return (size + 2 * padding - kernel) // stride + 1


@pytest.mark.parametrize("depth", RESNET_DEPTHS)
def test_parameter_counts_match_torchvision(depth):
    assert TORCHVISION_COUNTS[18] == 11_170_240
    assert TORCHVISION_COUNTS[152] == 58_137_536
    model = _default(depth)
    assert _count(model.trainable_weights) == TORCHVISION_COUNTS[depth]
    assert model.output_shape == (None, resnet_feature_dim(depth))
    assert model.input_shape == (None, None, 128)
    assert model.name == f"resnet{depth}"
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in model.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    # Every conv but the shortcuts counts towards the depth, the fc the last.
    assert sum("shortcut" not in c.name for c in convs) == depth - 1
    assert sum("shortcut" in c.name for c in convs) == (3 if depth < 50 else 4)
    assert len(bns) == len(convs)
    assert not any(c.use_bias for c in convs)
    assert all(c.padding == "valid" for c in convs)
    assert all(bn.epsilon == 1e-5 and bn.momentum == 0.9 for bn in bns)
    # BN moving mean and variance are the only non-trainable weights.
    assert _count(model.non_trainable_weights) == _count(model.trainable_weights) - sum(
        _count(c.weights) for c in convs)


def test_feature_dims():
    assert [resnet_feature_dim(d) for d in RESNET_DEPTHS] == [512, 512, 2048, 2048, 2048]


def test_grid_matches_pytorch_on_odd_sizes():
    frames, n_mels = 225, 223
    model = resnet_backbone(18, n_mels=n_mels, frames=frames, seed=0)
    sizes = [frames, n_mels]
    sizes = [_torch_out(s, 7, 2, 3) for s in sizes]
    assert model.get_layer("stem_relu").output.shape == (None, *sizes, 64)
    sizes = [_torch_out(s, 3, 2, 1) for s in sizes]
    assert model.get_layer("stem_pool").output.shape == (None, *sizes, 64)
    for stage, width in zip((2, 3, 4, 5), (64, 128, 256, 512)):
        if stage > 2:
            sizes = [_torch_out(s, 3, 2, 1) for s in sizes]
        out = model.get_layer(f"stage{stage}_block2_out").output
        assert out.shape == (None, *sizes, width)
    assert sizes == [8, 7]
    # A projection only where the stride or width changes.
    with pytest.raises(ValueError):
        model.get_layer("stage2_block1_shortcut_conv")
    assert model.get_layer("stage3_block1_shortcut_conv").strides == (2, 2)
    assert model.get_layer("stage3_block1_conv1").strides == (2, 2)


@pytest.mark.parametrize("depth", (18, 50))
def test_forward_shapes(depth):
    model = _default(depth)
    features = model(_logmel(2, 40, 128), training=False).numpy()
    assert features.shape == (2, resnet_feature_dim(depth))
    assert np.isfinite(features).all() and (features >= 0).all()
    if depth == 50:
        # v1.5: the stride sits on the bottleneck's 3x3 conv, not the 1x1.
        assert model.get_layer("stage3_block1_conv1").strides == (1, 1)
        assert model.get_layer("stage3_block1_conv2").strides == (2, 2)
        assert model.get_layer("stage3_block1_shortcut_conv").strides == (2, 2)
        # Stage 2 projects 64 to 256 channels without a stride.
        assert model.get_layer("stage2_block1_shortcut_conv").strides == (1, 1)
        assert model.get_layer("stage2_block1_out").output.shape[-1] == 256


def test_any_number_of_frames():
    model = _default(18)
    for batch, frames in ((1, 37), (3, 101), (1, 1)):
        features = model(_logmel(batch, frames, 128), training=False)
        assert tuple(features.shape) == (batch, 512)


def test_keras_save_load_round_trip(tmp_path):
    # Unseeded, so a reloaded model that ignored the file would differ.
    model = resnet_backbone(18, n_mels=32)
    model(_logmel(4, 24, 32), training=True)  # moves the BN statistics
    assert not np.allclose(model.get_layer("stem_bn").moving_mean.numpy(), 0.0)
    path = tmp_path / "resnet18.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == "resnet18"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    x = _logmel(2, 30, 32)
    np.testing.assert_allclose(loaded(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_seeded_initialisation_follows_torchvision():
    first = _default(18)
    same = resnet_backbone(18, seed=0)
    other = resnet_backbone(18, n_mels=16, frames=8, seed=1)
    for a, b in zip(first.weights, same.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-7, atol=0)
    kernel = lambda m, n: m.get_layer(n).kernel.numpy()  # noqa: E731
    assert not np.allclose(kernel(first, "stem_conv"), kernel(other, "stem_conv"))
    # Convs of equal shape get different seeds, hence different kernels.
    assert not np.allclose(kernel(first, "stage2_block1_conv1"),
                           kernel(first, "stage2_block2_conv1"))
    # kaiming_normal_(mode="fan_out"): N(0, 2 / (9 * 512)), untruncated.
    w = kernel(first, "stage5_block2_conv2")
    std = np.sqrt(2.0 / (3 * 3 * 512))
    assert abs(w.mean()) < 0.01 * std
    assert abs(w.std() / std - 1.0) < 0.01
    assert np.abs(w).max() > 4 * std  # a truncated normal stops at 2 std
    bn = first.get_layer("stage5_block2_bn2")
    np.testing.assert_array_equal(bn.gamma.numpy(), 1.0)
    np.testing.assert_array_equal(bn.beta.numpy(), 0.0)


@pytest.mark.parametrize("depth", (19, 0, 18.0, "18", True, None))
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=f"received {depth!r}") as info:
        resnet_backbone(depth)
    assert "(18, 34, 50, 101, 152)" in str(info.value)
    with pytest.raises(ValueError, match="depth must be one of"):
        resnet_feature_dim(depth)


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_mels must be an integer >= 1; received 0"):
        resnet_backbone(18, n_mels=0)
    with pytest.raises(ValueError, match="frames must be an integer >= 1; received 2.5"):
        resnet_backbone(18, frames=2.5)
    assert resnet_backbone(18, n_mels=np.int64(8), frames=np.int64(4)).input_shape == (
        None, 4, 8)
