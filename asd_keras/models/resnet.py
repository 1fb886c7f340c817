"""ResNet-18/34/50/101/152 backbones for log-mel spectrograms.

Shin & Lee's proxy-task study (paper §III) trains the ResNet family on
classification (cross-entropy, ArcFace) and contrastive (SimCLR, SimSiam)
proxy tasks and, for anomaly detection, keeps only the backbone: the pooled
penultimate output, 512-d for ResNet-18/34 and 2048-d for ResNet-50/101/152.
The heads are attached by the callers; this module builds the backbone.

The layout is torchvision's `torchvision.models.resnet` (v1.5: the stride of
a bottleneck block sits on its 3x3 conv), with one input channel, no fc
layer and no pretrained weights, so that torchvision checkpoints can be
converted layer by layer:

    torchvision key               Keras layer
    conv1, bn1                    stem_conv, stem_bn
    layer{s}.{b}.conv{k}          stage{s + 1}_block{b + 1}_conv{k}
    layer{s}.{b}.bn{k}            stage{s + 1}_block{b + 1}_bn{k}
    layer{s}.{b}.downsample.0     stage{s + 1}_block{b + 1}_shortcut_conv
    layer{s}.{b}.downsample.1     stage{s + 1}_block{b + 1}_shortcut_bn

(a PyTorch conv weight `(out, in, kh, kw)` is a Keras kernel
`(kh, kw, in, out)`). Stages are numbered from 2 and blocks from 1, as in
`keras.applications`. The log-mel input `(batch, frames, n_mels)` becomes
the image `(frames, n_mels, 1)`: height is time, width is frequency.
"""

import random

import keras
from keras import layers

from asd_keras.config import check_integer

RESNET_DEPTHS = (18, 34, 50, 101, 152)

# depth -> (block kind, blocks per stage); torchvision's resnet18 ... resnet152.
_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_WIDTHS = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}
# torchvision's BatchNorm2d defaults; PyTorch momentum 0.1 is Keras' 0.9.
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _spec(depth):
    # hasattr(__index__) admits numpy integers but not 18.0 or "18".
    if (isinstance(depth, bool) or not hasattr(depth, "__index__")
            or int(depth) not in _SPECS):
        raise ValueError(f"depth must be one of {RESNET_DEPTHS}; received {depth!r}.")
    return _SPECS[int(depth)]


def resnet_feature_dim(depth):
    """Size of the pooled backbone output of a ResNet `depth`.

    Args:
        depth: int. One of `RESNET_DEPTHS`.

    Returns:
        int. 512 for ResNet-18/34, 2048 for ResNet-50/101/152.

    Raises:
        ValueError: if `depth` is not one of `RESNET_DEPTHS`.
    """
    kind, _ = _spec(depth)
    return _WIDTHS[-1] * _EXPANSION[kind]


class _Builder:
    """Creates the named layers of one backbone, each conv with its own seed.

    A Keras initializer built with an integer seed draws the same values
    every time it is called, so sharing one seed would give every conv of a
    given shape identical kernels; each conv gets a seed drawn from a
    generator seeded by the model's `seed` instead.
    """

    def __init__(self, seed):
        self._seeds = None if seed is None else random.Random(int(seed))

    def _initializer(self):
        seed = None if self._seeds is None else self._seeds.randrange(2**31 - 1)
        # torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"):
        # N(0, 2 / (out_channels * kh * kw)), not truncated.
        return keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=seed
        )

    def conv(self, x, filters, kernel, name, strides=1):
        """`kernel` x `kernel` conv with PyTorch's symmetric `kernel // 2` padding."""
        # Keras' padding="same" puts the odd extra row of a strided conv at
        # the end, PyTorch pads both sides equally; explicit zero padding
        # and "valid" reproduce PyTorch's output grid exactly.
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return layers.Conv2D(
            filters, kernel, strides=strides, padding="valid", use_bias=False,
            kernel_initializer=self._initializer(), name=name,
        )(x)

    @staticmethod
    def bn(x, name):
        return layers.BatchNormalization(
            epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name
        )(x)

    @staticmethod
    def relu(x, name):
        return layers.ReLU(name=name)(x)

    def shortcut(self, x, filters, strides, name):
        if strides == 1 and x.shape[-1] == filters:
            return x
        x = self.conv(x, filters, 1, f"{name}_shortcut_conv", strides=strides)
        return self.bn(x, f"{name}_shortcut_bn")

    def basic_block(self, x, width, strides, name):
        """torchvision's `BasicBlock`: two 3x3 convs, the first strided."""
        shortcut = self.shortcut(x, width, strides, name)
        r = self.conv(x, width, 3, f"{name}_conv1", strides=strides)
        r = self.relu(self.bn(r, f"{name}_bn1"), f"{name}_relu1")
        r = self.conv(r, width, 3, f"{name}_conv2")
        r = self.bn(r, f"{name}_bn2")
        x = layers.Add(name=f"{name}_add")([shortcut, r])
        return self.relu(x, f"{name}_out")

    def bottleneck_block(self, x, width, strides, name):
        """torchvision's `Bottleneck` (v1.5): 1x1, strided 3x3, 1x1 x4."""
        filters = width * _EXPANSION["bottleneck"]
        shortcut = self.shortcut(x, filters, strides, name)
        r = self.conv(x, width, 1, f"{name}_conv1")
        r = self.relu(self.bn(r, f"{name}_bn1"), f"{name}_relu1")
        r = self.conv(r, width, 3, f"{name}_conv2", strides=strides)
        r = self.relu(self.bn(r, f"{name}_bn2"), f"{name}_relu2")
        r = self.conv(r, filters, 1, f"{name}_conv3")
        r = self.bn(r, f"{name}_bn3")
        x = layers.Add(name=f"{name}_add")([shortcut, r])
        return self.relu(x, f"{name}_out")


def resnet_backbone(depth, n_mels=128, frames=None, seed=None, name=None):
    """A torchvision-layout ResNet backbone on log-mel spectrograms.

    Stem `7x7/2 conv -> BN -> ReLU -> 3x3/2 max pool`, four stages of basic
    (18, 34) or bottleneck (50, 101, 152) blocks of widths 64, 128, 256, 512
    (the first block of stages 3-5 strided by 2, a projection shortcut where
    the stride or width changes), global average pooling. Convs have no
    bias; kernels are He-normal over fan-out and BN starts at gamma 1, beta
    0, as torchvision's default initialisation (`zero_init_residual=False`).

    Args:
        depth: int. One of `RESNET_DEPTHS`.
        n_mels: int. Mel bands (the image width). Defaults to `128`.
        frames: int or `None`. Frames per input (the image height); `None`
            (default) accepts any length.
        seed: int or `None`. Seeds the conv kernels; the same seed builds
            the same initial weights.
        name: str or `None`. Model name; defaults to `f"resnet{depth}"`.

    Returns:
        keras.Model `(batch, frames, n_mels)` -> `(batch, resnet_feature_dim(depth))`,
        input named `logmel`, output layer `pool`.

    Raises:
        ValueError: if `depth` is not one of `RESNET_DEPTHS`, or `n_mels` or
            `frames` is not a positive integer.

    Example:
    >>> resnet_backbone(18).output_shape  # doctest: +SKIP
    (None, 512)
    """
    kind, blocks = _spec(depth)
    n_mels = check_integer("n_mels", n_mels, 1)
    frames = None if frames is None else check_integer("frames", frames, 1)

    builder = _Builder(seed)
    block = builder.basic_block if kind == "basic" else builder.bottleneck_block

    inputs = keras.Input((frames, n_mels), name="logmel")
    x = layers.Reshape((-1 if frames is None else frames, n_mels, 1),
                       name="add_channel")(inputs)
    x = builder.conv(x, _WIDTHS[0], 7, "stem_conv", strides=2)
    x = builder.relu(builder.bn(x, "stem_bn"), "stem_relu")
    # Zero padding before the max pool is harmless: the input is post-ReLU,
    # so a padded zero never exceeds the window's true maximum, as
    # PyTorch's -inf padding.
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for stage, (width, count) in enumerate(zip(_WIDTHS, blocks), start=2):
        for index in range(1, count + 1):
            strides = 2 if stage > 2 and index == 1 else 1
            x = block(x, width, strides, f"stage{stage}_block{index}")
    outputs = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{int(depth)}")
