"""The parts of the BEATs and EAT backbones that do not need keras-hub.

Importing keras-hub takes about 2 s (it loads tensorflow-text), so only
the backbone classes (`beats_backbone`, `eat_backbone`, on
`audio_backbone.AudioEncoder`) import it. Everything the other networks
and the preset files need lives here: the preset file names, the patch
embedding, EAT's transformer body (which the fine-tuning network
`encoder_finetuning` reuses by layer name) and the weights' hashes.
"""

import hashlib
import os

import keras

from asd_keras.layers.audio_transformers import ClassToken
from asd_keras.layers.audio_transformers import FixedPositions
from asd_keras.layers.audio_transformers import FusedSelfAttention

PRESET_CONFIG = "config.json"
PRESET_WEIGHTS = "model.weights.h5"
PRESET_METADATA = "metadata.json"
# Constructor arguments that are not hyper-parameters of the network: they
# change neither its weights nor its outputs.
NON_ARCHITECTURE_ARGUMENTS = ("name", "trainable", "dtype")


def patch_tokens(fbank, patch_size, dim, use_bias, name, dtype=None):
    """Non-overlapping `patch_size` squares of `(batch, frames, mels)` to
    time-major tokens `(batch, frames // p * mels // p, dim)`."""
    image = keras.layers.Reshape((-1, fbank.shape[-1], 1), dtype=dtype,
                                 name=f"{name}_image")(fbank)
    grid = keras.layers.Conv2D(dim, patch_size, strides=patch_size, use_bias=use_bias,
                               dtype=dtype, name=name)(image)
    return keras.layers.Reshape((-1, dim), dtype=dtype, name=f"{name}_tokens")(grid)


def check_grid(num_mel_bins, patch_size):
    """Raises ValueError unless the mel bins tile into whole patches."""
    if patch_size < 1 or num_mel_bins % patch_size:
        raise ValueError(f"num_mel_bins ({num_mel_bins!r}) must be a multiple of patch_size "
                         f"({patch_size!r}).")


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


def eat_body(fbank, num_layers=12, dim=768, num_heads=12, mlp_ratio=4.0, patch_size=16,
             max_length=768, layer_norm_epsilon=1e-6, dtype=None):
    """EAT from its (normalised) filter banks to every layer's tokens.

    The layers carry the names of `EATBackbone`'s, so weights move between
    a backbone and any Functional model built on this body by layer name
    (`audio_encoders.transfer_weights`), e.g. a fine-tuning network with
    another front end.

    Args:
        fbank: Keras tensor `(batch, frames, bins)`; `frames` a multiple of
            `patch_size`, `bins` of `patch_size`.
        num_layers: int. As `EATBackbone`.
        dim: int. See `num_layers`.
        num_heads: int. See `num_layers`.
        mlp_ratio: float. See `num_layers`.
        patch_size: int. See `num_layers`.
        max_length: int. See `num_layers`.
        layer_norm_epsilon: float. See `num_layers`.
        dtype: str or `keras.DTypePolicy` or None. See `num_layers`.

    Returns:
        dict `"layer_0"` (the tokens entering the first block) ...
        `"layer_<num_layers>"`, each `(batch, 1 + tokens, dim)`, CLS first.
    """
    layers = keras.layers
    num_bands = fbank.shape[-1] // patch_size
    x = patch_tokens(fbank, patch_size, dim, True, "local_encoder", dtype)
    x = FixedPositions(dim, max_length * num_bands, num_bands, dtype=dtype,
                       name="fixed_positional_encoder")(x)
    x = ClassToken(dim, dtype=dtype, name="extra_tokens")(x)
    x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                  name="context_encoder_norm")(x)
    outputs = {"layer_0": x}
    for i in range(num_layers):
        prefix = f"blocks_{i}"
        attended = FusedSelfAttention(dim, num_heads, dtype=dtype, name=f"{prefix}_attn")(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                      name=f"{prefix}_norm1")(
            layers.Add(dtype=dtype, name=f"{prefix}_attn_residual")([x, attended]))
        hidden = layers.Dense(int(dim * mlp_ratio), activation="gelu", dtype=dtype,
                              name=f"{prefix}_mlp_fc1")(x)
        hidden = layers.Dense(dim, dtype=dtype, name=f"{prefix}_mlp_fc2")(hidden)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                      name=f"{prefix}_norm2")(
            layers.Add(dtype=dtype, name=f"{prefix}_mlp_residual")([x, hidden]))
        outputs[f"layer_{i + 1}"] = x
    return outputs
