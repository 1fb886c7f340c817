"""Wilkinghoff's angular-margin embedding network (ICASSP 2023 / TASLP).

A two-branch CNN maps the raw waveform to a 256-d embedding: the
linear-magnitude spectrogram feeds a ResNet-like 2-D branch, the magnitude
spectrum of the whole clip a Conv1D + dense branch (reference
wilkinghoff.md §3). It is trained on an auxiliary classification task
(machine type, section, attributes, domain) with a (sub-cluster) AdaCos,
ArcFace, softmax or compactness head, with mixup, one model for all machine
types. Clips are scored per section by a reference-table backend
(`asd_keras.backends.kmeans`); R independently trained runs are summed.
Under a mixed dtype policy (`asd_keras.models.precision`) the front ends and
the heads compute in float32 and each branch's embedding is cast to float32.
"""

import keras
from keras import layers

from asd_keras.layers import ClipSpectrum
from asd_keras.layers import LinearSpectrogram
from asd_keras.layers import TemporalMeanNormalization
from asd_keras.layers.fast_kernels import FusedBatchNormalization
from asd_keras.layers.fast_kernels import PolyphaseConv2D
from asd_keras.layers.heads import AdaCos
from asd_keras.layers.heads import ArcFace
from asd_keras.layers.heads import CompactnessHead
from asd_keras.layers.heads import SoftmaxHead
from asd_keras.layers.heads import SubClusterAdaCos
from asd_keras.losses.angular import CompactnessCrossEntropy
from asd_keras.losses.angular import CompactnessLoss
from asd_keras.losses.angular import MixupCrossEntropy
from asd_keras.models.precision import float32_output

BLOCK2_BN = ("shortcut", "residual")
BRANCHES = ("both", "spectrogram", "spectrum")
LOSSES = ("sc_adacos", "adacos", "arcface", "softmax", "compactness",
          "compactness_cce")
LENGTH_POLICIES = ("truncate", "pad", "tile_crop")


def _conv_kwargs(l2):
    return {"use_bias": False,
            "kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}


def spectrum_encoder(num_bins, embedding_dim=128, l2=1e-5, name="spectrum_encoder"):
    """The full-clip spectrum branch: Conv1D stack and dense layers.

    Conv1D (128, 256/64) -> (128, 64/32) -> (128, 16/4), each with ReLU and
    no BN, flatten, 4 x [Dense 128 -> BN -> ReLU], linear Dense
    `embedding_dim` named `emb_fft` (reference wilkinghoff.md §3).

    Args:
        num_bins: int. Spectrum length (`samples // 2`).
        embedding_dim: int. Defaults to `128`.
        l2: float. Kernel L2 factor. Defaults to `1e-5`.

    Returns:
        keras.Model `(batch, num_bins)` -> `(batch, embedding_dim)`.
    """
    kw = _conv_kwargs(l2)
    inputs = keras.Input((num_bins,), name="spectrum")
    x = layers.Reshape((num_bins, 1), name="spectrum_channel")(inputs)
    for i, (kernel, stride) in enumerate(((256, 64), (64, 32), (16, 4))):
        x = layers.Conv1D(128, kernel, strides=stride, padding="same",
                          name=f"fft_conv{i + 1}", **kw)(x)
        x = layers.ReLU(name=f"fft_relu{i + 1}")(x)
    x = layers.Flatten(name="fft_flatten")(x)
    for i in range(4):
        x = layers.Dense(128, name=f"fft_dense{i + 1}", **kw)(x)
        x = FusedBatchNormalization(name=f"fft_bn{i + 1}")(x)
        x = layers.ReLU(name=f"fft_dense_relu{i + 1}")(x)
    outputs = layers.Dense(embedding_dim, name="emb_fft", **kw)(x)
    return keras.Model(inputs, float32_output(outputs, f"{name}_float32"), name=name)


def spectrogram_encoder(num_frames, num_bins=513, embedding_dim=128, l2=1e-5,
                        block2_bn="shortcut", name="spectrogram_encoder"):
    """The spectrogram branch: temporal mean normalisation, per-frequency BN
    and a ResNet-like 2-D CNN (reference wilkinghoff.md §3).

    Args:
        num_frames: int. STFT frames (311 for 10 s at 16 kHz).
        num_bins: int. Frequency bins. Defaults to `513`.
        embedding_dim: int. Defaults to `128`.
        l2: float. Kernel L2 factor.
        block2_bn: str. `"shortcut"` (default): the published code, whose
            first residual unit of block 2 has no BN on its residual path
            and a BN on the shortcut; `"residual"`: the January 2024 fix
            (commit fa05253), BN on the residual path (reference §3 "BN bug
            history"). The parameter count is the same.

    Returns:
        keras.Model `(batch, num_frames, num_bins)` -> `(batch, embedding_dim)`.
    """
    if block2_bn not in BLOCK2_BN:
        raise ValueError(f"block2_bn must be one of {BLOCK2_BN}; received {block2_bn!r}.")
    kw = _conv_kwargs(l2)

    def conv(x, filters, name, kernel=3, strides=1, conv_class=layers.Conv2D):
        return conv_class(filters, kernel, strides=strides, padding="same",
                             name=name, **kw)(x)

    def bn(x, name):
        return FusedBatchNormalization(name=name)(x)

    def relu(x, name):
        return layers.ReLU(name=name)(x)

    def unit(x, filters, name):
        r = conv(relu(x, f"{name}_relu1"), filters, f"{name}_conv1")
        r = relu(bn(r, f"{name}_bn"), f"{name}_relu2")
        r = conv(r, filters, f"{name}_conv2")
        return layers.Add(name=f"{name}_add")([x, r])

    inputs = keras.Input((num_frames, num_bins), name="spectrogram")
    x = layers.Reshape((num_frames, num_bins, 1), name="spectrogram_channel")(inputs)
    x = TemporalMeanNormalization(axis=1, name="temporal_mean_norm")(x)
    x = FusedBatchNormalization(axis=-2, name="frequency_bn")(x)
    # One input channel: polyphase components make the convolution faster.
    x = conv(x, 16, "block1_conv", kernel=7, strides=2, conv_class=PolyphaseConv2D)
    x = relu(bn(x, "block1_bn"), "block1_relu")
    x = layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)

    # Block 2, unit a.
    r = conv(relu(x, "block2a_relu1"), 16, "block2a_conv1")
    if block2_bn == "residual":
        r = bn(r, "block2a_bn")
    else:
        x = bn(x, "block2a_bn")  # the published code's BN on the shortcut
    r = conv(relu(r, "block2a_relu2"), 16, "block2a_conv2")
    x = layers.Add(name="block2a_add")([x, r])
    x = bn(x, "block2_bn")
    # Block 2, unit b: ReLU before BN, as the reference.
    r = conv(relu(x, "block2b_relu1"), 16, "block2b_conv1")
    r = bn(relu(r, "block2b_relu2"), "block2b_bn")
    r = conv(r, 16, "block2b_conv2")
    x = layers.Add(name="block2b_add")([x, r])

    for block, filters in ((3, 32), (4, 64), (5, 128)):
        prefix = f"block{block}"
        x = bn(x, f"{prefix}_in_bn")
        r = conv(relu(x, f"{prefix}a_relu1"), filters, f"{prefix}a_conv1", strides=2)
        r = relu(bn(r, f"{prefix}a_bn"), f"{prefix}a_relu2")
        r = conv(r, filters, f"{prefix}a_conv2")
        s = layers.MaxPooling2D(2, padding="same", name=f"{prefix}_shortcut_pool")(x)
        s = layers.Conv2D(filters, 1, padding="same", name=f"{prefix}_shortcut_conv", **kw)(s)
        x = layers.Add(name=f"{prefix}a_add")([s, r])
        x = bn(x, f"{prefix}_mid_bn")
        x = unit(x, filters, f"{prefix}b")

    # Max over the whole time axis.
    x = layers.MaxPooling2D((x.shape[1], 1), padding="same", name="time_pool")(x)
    x = layers.Flatten(name="mel_flatten")(x)
    x = bn(x, "mel_flatten_bn")
    outputs = layers.Dense(embedding_dim, name="emb_mel", **kw)(x)
    return keras.Model(inputs, float32_output(outputs, f"{name}_float32"), name=name)


def wilkinghoff_embedding_model(num_samples=160000, embedding_dim=128, l2=1e-5,
                                block2_bn="shortcut", branches="both",
                                name="wilkinghoff_embedding"):
    """The embedding model: raw waveform to the concatenated embedding.

    Args:
        num_samples: int. Clip length in samples (160000 for 10 s).
        embedding_dim: int. Size of each branch's embedding. Defaults to 128.
        l2: float. Kernel L2 factor. Defaults to `1e-5`.
        block2_bn: str. See `spectrogram_encoder`.
        branches: str. `"both"` (the system), `"spectrogram"` (the
            spectrogram-only variant used for RISE) or `"spectrum"`.

    Returns:
        keras.Model `(batch, num_samples)` -> `(batch, 2 * embedding_dim)`
        (`embedding_dim` for one branch). The branches are the nested models
        `spectrum_encoder` and `spectrogram_encoder`.

    Example:
    >>> wilkinghoff_embedding_model(160000).count_params()  # doctest: +SKIP
    """
    if branches not in BRANCHES:
        raise ValueError(f"branches must be one of {BRANCHES}; received {branches!r}.")
    frames = 1 + (int(num_samples) - 1024) // 512
    if frames < 16:
        raise ValueError(
            f"num_samples={num_samples} gives {frames} STFT frames; the "
            "spectrogram branch needs at least 16 (8704 samples)."
        )
    waveform = keras.Input((int(num_samples),), name="waveform")
    outputs = []
    if branches in ("both", "spectrum"):
        spectrum = ClipSpectrum(name="clip_spectrum")(waveform)
        outputs.append(spectrum_encoder(int(num_samples) // 2, embedding_dim, l2)(spectrum))
    if branches in ("both", "spectrogram"):
        spectrogram = LinearSpectrogram(1024, 512, name="linear_spectrogram")(waveform)
        outputs.append(spectrogram_encoder(frames, 513, embedding_dim, l2,
                                           block2_bn)(spectrogram))
    # float32 under any policy: a 16-bit layer would round the float32
    # branch embeddings again.
    if len(outputs) == 2:
        embedding = keras.layers.Concatenate(name="embedding", dtype="float32")(outputs)
    else:
        embedding = keras.layers.Identity(name="embedding", dtype="float32")(outputs[0])
    return keras.Model(waveform, embedding, name=name)


def build_head(loss, num_classes, config, seed=None):
    """The head layer and Keras loss for a `loss` name (see `LOSSES`)."""
    if loss == "sc_adacos":
        head = SubClusterAdaCos(
            num_classes, int(config["num_subclusters"]),
            bool(config["trainable_centers"]), config["scale_rule"], seed, name="head")
        return head, MixupCrossEntropy()
    if loss == "adacos":
        head = AdaCos(num_classes, bool(config["trainable_centers"]), config["scale_rule"],
                      seed, name="head")
        return head, MixupCrossEntropy()
    if loss == "arcface":
        head = ArcFace(num_classes, float(config["arcface_scale"]),
                       float(config["arcface_margin"]), seed=seed, name="head")
        return head, MixupCrossEntropy()
    if loss == "softmax":
        return (SoftmaxHead(num_classes, float(config["l2"]), seed, name="head"),
                MixupCrossEntropy())
    if loss == "compactness":
        return (CompactnessHead(num_classes, False, seed=seed, name="head"),
                CompactnessLoss())
    if loss == "compactness_cce":
        return (CompactnessHead(num_classes, True, float(config["l2"]), seed, name="head"),
                CompactnessCrossEntropy(float(config["cce_weight"])))
    raise ValueError(f"loss must be one of {LOSSES}; received {loss!r}.")


def training_model(embedding_model, head, num_classes, mixup=None,
                   name="wilkinghoff_training"):
    """Wraps an embedding model for training: inputs `{"waveform", "label"}`.

    Args:
        embedding_model: keras.Model waveform -> embedding.
        head: a head layer of `asd_keras.layers.heads`.
        num_classes: int.
        mixup: `asd_keras.layers.Mixup` or None.
        name: str. The model's name (backups and logs name it).

    Returns:
        keras.Model whose output is the head's stacked output.
    """
    waveform = keras.Input(embedding_model.input_shape[1:], name="waveform")
    label = keras.Input((num_classes,), name="label")
    x, y = (mixup([waveform, label]) if mixup is not None else (waveform, label))
    outputs = head([embedding_model(x), y])
    return keras.Model({"waveform": waveform, "label": label}, outputs,
                       name=name)
