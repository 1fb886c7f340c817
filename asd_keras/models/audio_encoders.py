"""BEATs and EAT as Keras 3 Functional models, from waveform to every layer.

Both encoders take 16 kHz waveforms `(batch, samples)` and return a dict:

- `"fbank"`: the normalised Kaldi filter banks the encoder sees
  (`KaldiFbank`, methods.md §C1/§C2), `(batch, frames, 128)`;
- `"layer_0"`: the tokens entering the first transformer layer, and
  `"layer_<i>"` the output of layer `i` (1-based), `(batch, tokens, dim)`;
- fine-tuned variants (`num_classes > 0`) add `"logits"` (EAT: the CLS
  token through `fc_norm` and the head) or `"probabilities"` (BEATs: the
  per-token predictor averaged over tokens, then a sigmoid, as the
  original's fine-tuned forward pass).

Tokens are a time-major grid of 16 x 16 patches: token `t * num_bands + f`
with `num_bands = 128 / 16 = 8`. EAT puts its CLS token first
(`num_extra_tokens = 1`); BEATs has none.

BEATs (iter3 configuration, §C2): patch convolution 16 x 16 to 512 (no
bias), LayerNorm, 512 -> 768 projection, convolutional position embedding
added, post-LN LayerNorm, then 12 deep-norm post-LN layers (residual scale
`(2 * 12) ** 0.25`) with gated relative position bias shared by all layers.

EAT (§C1, `models/images.py`, `models/modules.py`): patch convolution 16 x 16
with bias, fixed 2-D sin-cos positions, the CLS token, LayerNorm
(`context_encoder.norm`), then post-LN `AltBlock`s (eps 1e-6). Base: 12 x
768, large: 24 x 1024. The front end pads or crops to 1024 frames (10 s).

Only inference is reproduced exactly: dropout, layer drop, masking and
BEATs' weight norm (folded into the kernel) are not part of the model.

`load_encoder(preset)` builds a named configuration (random weights) or
loads a preset folder written by `asd-keras convert` (`save_preset`).
"""

import hashlib
import inspect
import json
import math
import os
from pathlib import Path

import keras
from keras import layers

from asd_keras.layers.audio_transformers import ClassToken
from asd_keras.layers.audio_transformers import ConvPositionEmbedding
from asd_keras.layers.audio_transformers import FixedPositions
from asd_keras.layers.audio_transformers import FusedSelfAttention
from asd_keras.layers.audio_transformers import GatedRelativeAttention
from asd_keras.layers.audio_transformers import RelativePositionBias
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_text

ENCODER_TYPES = ("beats", "eat")
PRESET_CONFIG = "config.json"
PRESET_WEIGHTS = "model.weights.h5"
PRESET_METADATA = "metadata.json"


def _patches(fbank, patch_size, dim, use_bias, name):
    """Non-overlapping `patch_size` squares of `(batch, frames, mels)` to
    time-major tokens `(batch, frames // p * mels // p, dim)`."""
    image = layers.Reshape((-1, fbank.shape[-1], 1), name=f"{name}_image")(fbank)
    grid = layers.Conv2D(dim, patch_size, strides=patch_size, use_bias=use_bias,
                         name=name)(image)
    return layers.Reshape((-1, dim), name=f"{name}_tokens")(grid)


class AudioEncoder(keras.Model):
    """Base of the pretrained audio encoders (a Functional model).

    Attributes:
        encoder_type: str. `"beats"` or `"eat"`.
        num_layers: int. Transformer layers (`"layer_1"` ... outputs).
        dim: int. Token width.
        num_bands: int. Frequency patches per time patch.
        num_extra_tokens: int. Tokens before the patch grid (EAT's CLS).
        frontend: `KaldiFbank` of the model.
    """

    encoder_type = None
    num_extra_tokens = 0

    @property
    def layer_names(self):
        """Names of the token outputs: `layer_0` (the first layer's input) to `layer_<num_layers>`."""
        return [f"layer_{i}" for i in range(self.num_layers + 1)]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._arguments}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def token_count(self, num_samples):
        """Tokens (extra tokens included) of a clip of `num_samples`."""
        frames = self.frontend.num_frames or self.frontend.frames_for(num_samples)
        return (frames // self.patch_size) * self.num_bands + self.num_extra_tokens


@keras.saving.register_keras_serializable(package="asd_keras")
class BEATsEncoder(AudioEncoder):
    """BEATs (Chen et al., ICML 2023) in its released iter3 configuration.

    Args:
        num_layers: int. Defaults to `12`.
        dim: int. Token width, `encoder_embed_dim`. Defaults to `768`.
        num_heads: int. Defaults to `12`.
        ffn_dim: int. Defaults to `3072`.
        patch_dim: int. Patch-embedding width, `embed_dim`. Defaults to `512`.
        patch_size: int. Defaults to `16`.
        conv_bias: bool. Bias of the patch convolution. Defaults to False.
        conv_pos: int. Kernel of the position convolution. Defaults to `128`.
        conv_pos_groups: int. Defaults to `16`.
        num_buckets: int. Relative position buckets. Defaults to `320`.
        max_distance: int. Defaults to `800`.
        gated: bool. Gated relative position bias (`gru_rel_pos`).
        deep_norm: bool. Residual scale `(2 num_layers) ** 0.25`.
        num_classes: int. Size of the fine-tuned predictor (527 for
            AudioSet); 0 for a pre-trained model.
        num_mel_bins: int. Defaults to `128`.
        norm_mean: float. Filter-bank normalisation (AudioSet).
        norm_std: float. Filter-bank normalisation (AudioSet).
        layer_norm_epsilon: float. Defaults to `1e-5` (PyTorch's).
        num_frames: int or None. Pad or crop the filter banks to this many
            frames, as EAT does; None (the original) keeps every frame.
    """

    encoder_type = "beats"

    def __init__(self, num_layers=12, dim=768, num_heads=12, ffn_dim=3072, patch_dim=512,
                 patch_size=16, conv_bias=False, conv_pos=128, conv_pos_groups=16,
                 num_buckets=320, max_distance=800, gated=True, deep_norm=True,
                 num_classes=0, num_mel_bins=128, norm_mean=15.41663, norm_std=6.55582,
                 layer_norm_epsilon=1e-5, num_frames=None, name="beats", **kwargs):
        arguments = {k: v for k, v in locals().items()
                     if k not in ("self", "kwargs", "name", "__class__")}
        _check_grid(num_mel_bins, patch_size)
        waveform = keras.Input((None,), name="waveform")
        frontend = KaldiFbank(window_type="povey", num_mel_bins=num_mel_bins,
                              waveform_scale=32768.0, num_frames=num_frames,
                              norm_mean=norm_mean, norm_std=norm_std, name="fbank")
        fbank = frontend(waveform)
        x = _patches(fbank, patch_size, patch_dim, conv_bias, "patch_embedding")
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="layer_norm")(x)
        if patch_dim != dim:
            x = layers.Dense(dim, name="post_extract_proj")(x)
        x = layers.Add(name="pos_add")([
            x, ConvPositionEmbedding(dim, conv_pos, conv_pos_groups, name="pos_conv")(x)])
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_layer_norm")(x)
        outputs = {"fbank": fbank, "layer_0": x}
        bias = RelativePositionBias(num_heads, num_buckets, max_distance,
                                    name="relative_position_bias")(x)
        alpha = math.pow(2 * num_layers, 0.25) if deep_norm else 1.0
        for i in range(num_layers):
            prefix = f"layers_{i}"
            attended = GatedRelativeAttention(dim, num_heads, gated=gated,
                                              name=f"{prefix}_self_attn")([x, bias])
            x = layers.LayerNormalization(epsilon=layer_norm_epsilon,
                                          name=f"{prefix}_self_attn_layer_norm")(
                _residual(x, attended, alpha, f"{prefix}_attn_residual"))
            hidden = layers.Dense(ffn_dim, activation="gelu", name=f"{prefix}_fc1")(x)
            hidden = layers.Dense(dim, name=f"{prefix}_fc2")(hidden)
            x = layers.LayerNormalization(epsilon=layer_norm_epsilon,
                                          name=f"{prefix}_final_layer_norm")(
                _residual(x, hidden, alpha, f"{prefix}_ffn_residual"))
            outputs[f"layer_{i + 1}"] = x
        if num_classes:
            logits = layers.Dense(num_classes, name="predictor")(x)
            pooled = layers.GlobalAveragePooling1D(name="predictor_mean")(logits)
            outputs["probabilities"] = layers.Activation("sigmoid", name="probabilities")(pooled)
        super().__init__(inputs=waveform, outputs=outputs, name=name, **kwargs)
        self._arguments = arguments
        self.num_layers, self.dim, self.patch_size = num_layers, dim, patch_size
        self.num_bands = num_mel_bins // patch_size
        self.num_classes = num_classes
        self.frontend = frontend


@keras.saving.register_keras_serializable(package="asd_keras")
class EATEncoder(AudioEncoder):
    """EAT (Chen et al., IJCAI 2024), the data2vec 2 style audio encoder.

    Args:
        num_layers: int. 12 (base) or 24 (large).
        dim: int. 768 (base) or 1024 (large).
        num_heads: int. 12 (base) or 16 (large).
        mlp_ratio: float. Defaults to `4.0`.
        patch_size: int. Defaults to `16`.
        max_length: int. Time patches of the fixed position table (the
            original's `max_length`, 768).
        num_frames: int. Frames the front end pads or crops to (1024 for
            10 s; a multiple of `patch_size`).
        num_classes: int. Fine-tuned head size (527); 0 when pre-trained.
        num_mel_bins: int. Defaults to `128`.
        norm_mean: float. Filter-bank normalisation (AudioSet).
        norm_std: float. Filter-bank normalisation (AudioSet).
        layer_norm_epsilon: float. Defaults to `1e-6`.
    """

    encoder_type = "eat"
    num_extra_tokens = 1

    def __init__(self, num_layers=12, dim=768, num_heads=12, mlp_ratio=4.0, patch_size=16,
                 max_length=768, num_frames=1024, num_classes=0, num_mel_bins=128,
                 norm_mean=-4.268, norm_std=4.569, layer_norm_epsilon=1e-6, name="eat",
                 **kwargs):
        arguments = {k: v for k, v in locals().items()
                     if k not in ("self", "kwargs", "name", "__class__")}
        _check_grid(num_mel_bins, patch_size)
        if num_frames % patch_size or num_frames // patch_size > max_length:
            raise ValueError(
                f"num_frames must be a multiple of patch_size ({patch_size}) with at most "
                f"max_length ({max_length}) time patches; received {num_frames!r}.")
        num_bands = num_mel_bins // patch_size
        waveform = keras.Input((None,), name="waveform")
        frontend = KaldiFbank(window_type="hanning", num_mel_bins=num_mel_bins,
                              subtract_waveform_mean=True, num_frames=num_frames,
                              norm_mean=norm_mean, norm_std=norm_std, name="fbank")
        fbank = frontend(waveform)
        outputs = {"fbank": fbank, **eat_body(fbank, num_layers, dim, num_heads, mlp_ratio,
                                              patch_size, max_length, layer_norm_epsilon)}
        x = outputs[f"layer_{num_layers}"]
        if num_classes:
            cls = x[:, 0]
            cls = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="fc_norm")(cls)
            outputs["logits"] = layers.Dense(num_classes, name="head")(cls)
        super().__init__(inputs=waveform, outputs=outputs, name=name, **kwargs)
        self._arguments = arguments
        self.num_layers, self.dim, self.patch_size = num_layers, dim, patch_size
        self.num_bands = num_bands
        self.num_classes = num_classes
        self.frontend = frontend


def eat_body(fbank, num_layers=12, dim=768, num_heads=12, mlp_ratio=4.0, patch_size=16,
             max_length=768, layer_norm_epsilon=1e-6):
    """EAT from its (normalised) filter banks to every layer's tokens.

    The layers carry the names of `EATEncoder`'s, so weights move between
    an encoder and any Functional model built on this body by layer name
    (`transfer_weights`), e.g. a fine-tuning network with another front end.

    Args:
        fbank: Keras tensor `(batch, frames, bins)`; `frames` a multiple of
            `patch_size`, `bins` of `patch_size`.
        num_layers: as `EATEncoder`.
        dim: as `EATEncoder`.
        num_heads: as `EATEncoder`.
        mlp_ratio: as `EATEncoder`.
        patch_size: as `EATEncoder`.
        max_length: as `EATEncoder`.
        layer_norm_epsilon: as `EATEncoder`.

    Returns:
        dict `"layer_0"` (the tokens entering the first block) ...
        `"layer_<num_layers>"`, each `(batch, 1 + tokens, dim)`, CLS first.
    """
    num_bands = fbank.shape[-1] // patch_size
    x = _patches(fbank, patch_size, dim, True, "local_encoder")
    x = FixedPositions(dim, max_length * num_bands, num_bands,
                       name="fixed_positional_encoder")(x)
    x = ClassToken(dim, name="extra_tokens")(x)
    x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="context_encoder_norm")(x)
    outputs = {"layer_0": x}
    for i in range(num_layers):
        prefix = f"blocks_{i}"
        attended = FusedSelfAttention(dim, num_heads, name=f"{prefix}_attn")(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name=f"{prefix}_norm1")(
            layers.Add(name=f"{prefix}_attn_residual")([x, attended]))
        hidden = layers.Dense(int(dim * mlp_ratio), activation="gelu",
                              name=f"{prefix}_mlp_fc1")(x)
        hidden = layers.Dense(dim, name=f"{prefix}_mlp_fc2")(hidden)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name=f"{prefix}_norm2")(
            layers.Add(name=f"{prefix}_mlp_residual")([x, hidden]))
        outputs[f"layer_{i + 1}"] = x
    return outputs


def transfer_weights(source, target):
    """Copies the weights of every layer of `target` that `source` has by
    name (same shapes required); returns the names copied."""
    copied = []
    for layer in target.layers:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        if not layer.weights or type(other) is not type(layer):
            continue
        shapes = [tuple(w.shape) for w in other.weights]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"Layer {layer.name!r} has weights {shapes} in the source but "
                             f"{[tuple(w.shape) for w in layer.weights]} in the target; the "
                             "preset and the network configuration disagree.")
        layer.set_weights(other.get_weights())
        copied.append(layer.name)
    return copied


def _check_grid(num_mel_bins, patch_size):
    if patch_size < 1 or num_mel_bins % patch_size:
        raise ValueError(f"num_mel_bins ({num_mel_bins!r}) must be a multiple of patch_size "
                         f"({patch_size!r}).")


def _residual(x, branch, alpha, name):
    if alpha == 1.0:
        return layers.Add(name=name)([x, branch])
    scaled = layers.Rescaling(alpha, name=f"{name}_scale")(x)
    return layers.Add(name=name)([scaled, branch])


ENCODER_CLASSES = {"beats": BEATsEncoder, "eat": EATEncoder}

# Named configurations (random weights until a checkpoint is converted);
# `mAP` is the published AudioSet-2M mAP of the fine-tuned model (proxy
# study Table VI), `checkpoint` the official file it is converted from.
PRESETS = {
    "beats_iter3": {"encoder": "beats", "config": {}, "mAP": 48.0,
                    "checkpoint": "BEATs_iter3.pt"},
    "beats_iter3_plus": {"encoder": "beats", "config": {}, "mAP": 48.6,
                         "checkpoint": "BEATs_iter3_plus_AS2M.pt"},
    "beats_iter3_plus_as2m": {
        "encoder": "beats", "config": {"num_classes": 527}, "mAP": 48.6,
        "checkpoint": "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt1.pt"},
    "eat_base": {"encoder": "eat", "config": {}, "mAP": 48.9,
                 "checkpoint": "EAT-base_epoch30_pretrain.pt"},
    "eat_large": {"encoder": "eat",
                  "config": {"num_layers": 24, "dim": 1024, "num_heads": 16},
                  "mAP": 49.5, "checkpoint": "EAT-large_epoch20_pretrain.pt"},
    "eat_base_as2m": {"encoder": "eat", "config": {"num_classes": 527}, "mAP": 48.9,
                      "checkpoint": "EAT-base_epoch30_finetune_AS2M.pt"},
    # CPU-sized EAT (no checkpoint exists): the enhanced-feature EAT
    # experiment's default, fine-tuned from random weights.
    "eat_small": {"encoder": "eat",
                  "config": {"num_layers": 4, "dim": 192, "num_heads": 3},
                  "mAP": None, "checkpoint": None},
    "eat_large_as2m": {"encoder": "eat",
                       "config": {"num_layers": 24, "dim": 1024, "num_heads": 16,
                                  "num_classes": 527},
                       "mAP": 49.5, "checkpoint": "EAT-large_epoch20_finetune_AS2M.pt"},
}


def encoder_defaults(encoder):
    """Every constructor argument of an encoder type with its default."""
    if encoder not in ENCODER_CLASSES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder!r}.")
    parameters = inspect.signature(ENCODER_CLASSES[encoder].__init__).parameters.items()
    return {name: p.default for name, p in parameters
            if p.default is not inspect.Parameter.empty and name != "name"}


def build_encoder(encoder, **config):
    """A new encoder of type `"beats"` or `"eat"` with random weights."""
    if encoder not in ENCODER_CLASSES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder!r}.")
    return ENCODER_CLASSES[encoder](**config)


def preset_info(preset):
    """What `load_encoder(preset)` would build, without building it.

    Returns:
        dict with `encoder`, `config`, `pretrained` (bool: converted
        weights), `source`, `mAP` (published AudioSet mAP, or None) and
        `fingerprint` (identifies the weights and configuration).

    Raises:
        FileNotFoundError, ValueError: naming an unknown preset or a bad
            preset folder.
    """
    if preset in PRESETS:
        record = PRESETS[preset]
        return {"encoder": record["encoder"], "config": dict(record["config"]),
                "pretrained": False, "source": f"named configuration {preset!r}",
                "mAP": record["mAP"], "fingerprint": f"random:{preset}"}
    folder = Path(preset)
    if not folder.exists():
        raise FileNotFoundError(
            f"Encoder preset {preset!r} is neither a named configuration {sorted(PRESETS)} "
            "nor an existing folder; create one with 'asd-keras convert --encoder beats|eat "
            "--checkpoint FILE --out FOLDER'.")
    for part in (PRESET_CONFIG, PRESET_WEIGHTS):
        if not (folder / part).is_file():
            raise FileNotFoundError(
                f"Preset folder '{folder}' has no {part}; it is not an 'asd-keras convert' "
                "output (convert the checkpoint again).")
    try:
        record = json.loads((folder / PRESET_CONFIG).read_text())
        metadata = json.loads((folder / PRESET_METADATA).read_text()) \
            if (folder / PRESET_METADATA).is_file() else {}
    except ValueError as error:
        raise ValueError(f"'{folder / PRESET_CONFIG}' is damaged ({error}); convert the "
                         "checkpoint again.") from None
    if record.get("encoder") not in ENCODER_CLASSES or not isinstance(record.get("config"), dict):
        raise ValueError(f"'{folder / PRESET_CONFIG}' names no encoder of {ENCODER_TYPES}; "
                         "convert the checkpoint again.")
    # The weights file as it is now (metadata.json's hash is from the
    # conversion, which a rewritten file leaves stale) and the configuration
    # (a front-end setting such as num_frames changes the embeddings).
    config = json.dumps(record["config"], sort_keys=True)
    fingerprint = hashlib.sha256(
        f"{file_sha256(folder / PRESET_WEIGHTS)}|{config}".encode()).hexdigest()
    return {"encoder": record["encoder"], "config": record["config"],
            "pretrained": bool(metadata.get("pretrained", True)),
            "source": metadata.get("checkpoint", str(folder)), "mAP": metadata.get("mAP"),
            "fingerprint": fingerprint}


def load_encoder(preset, seed=0, overrides=None):
    """An encoder from a named configuration or a preset folder.

    Args:
        preset: str. A key of `PRESETS` (random weights drawn with `seed`)
            or a folder written by `save_preset` / `asd-keras convert`.
        seed: int. Seed of the random weights of a named configuration.
        overrides: dict. Constructor arguments that leave the weights as
            they are (e.g. EAT's `num_frames`).

    Returns:
        `(encoder, info)`: the `AudioEncoder` and `preset_info(preset)`.
    """
    info = preset_info(preset)
    if not info["pretrained"] and preset in PRESETS:
        keras.utils.set_random_seed(int(seed))
    encoder = build_encoder(info["encoder"], **{**info["config"], **(overrides or {})})
    if preset not in PRESETS:
        path = Path(preset) / PRESET_WEIGHTS
        try:
            encoder.load_weights(path)
        except (ValueError, OSError) as error:
            raise ValueError(f"The weights '{path}' do not fit the preset's configuration "
                             f"({error}); convert the checkpoint again.") from None
    return encoder, info


def save_preset(encoder, folder, metadata=None):
    """Writes an encoder as a preset folder: `config.json` (type and
    constructor arguments), `model.weights.h5` and `metadata.json`. Each
    file is written atomically; the caller owns the folder's overwrite
    policy. Returns the metadata written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in encoder.get_config().items() if k not in ("name", "trainable")}
    with atomic_path(folder / PRESET_WEIGHTS, suffix=".weights.h5") as tmp:
        encoder.save_weights(tmp)
    metadata = {"pretrained": True, **(metadata or {}),
                "weights_sha256": file_sha256(folder / PRESET_WEIGHTS),
                "keras_version": keras.__version__}
    atomic_write_text(folder / PRESET_METADATA, json.dumps(metadata, indent=2, sort_keys=True))
    atomic_write_text(folder / PRESET_CONFIG, json.dumps(
        {"encoder": encoder.encoder_type, "config": config}, indent=2, sort_keys=True))
    return metadata


_FILE_HASHES = {}


def file_sha256(path):
    """SHA-256 of a file, remembered per (path, inode, size, modification
    time): each process hashes a preset's weights once."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]
