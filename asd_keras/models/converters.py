"""Official BEATs and EAT checkpoints to keras-hub presets (`asd-keras convert`).

Each converter lists every key the official state dict holds for a
configuration (names and PyTorch shapes, reference methods.md §C1, §C2 and
§H), checks the checkpoint against that list and maps each key by name onto
the Keras weight it becomes (transposing PyTorch's `(out, in)` matrices and
`(out, in, kh, kw)` kernels). A missing key, a key that belongs to no part
of the encoder, a shape that does not fit or a NaN or infinite value stops
the conversion with a message naming the keys; so does an architecture flag
of the stored configuration that the port does not implement
(`checkpoint_layouts`), or an override that is no encoder argument.

Checkpoint files are read by `checkpoint_io.read_checkpoint` (PyTorch
`.pt` without torch, `.safetensors`, `.npz`).

Keys that only pre-training uses (EAT's EMA teacher `_ema`, decoder and
projection heads; `remove_pretraining_modules` in `models/EAT_pretraining.py`)
are dropped, counted per group in the preset's metadata and reported by
`asd-keras convert`. Fine-tuned EAT checkpoints (`MaeImageClassificationModel`
in `models/EAT_audio_classification.py`) hold the encoder under `model.` and
their own `fc_norm.*` and `head.*` beside it; Hugging Face files keep the encoder's
modules at the top (`local_encoder`, `extra_tokens`,
`fixed_positional_encoder`, `pre_norm`, `blocks`, `fc_norm`, `head`). The
prefix inside the Hugging Face wrapper is UNVERIFIED (methods.md §C1), so
it is detected as whatever precedes `local_encoder.proj.weight` and written
to the metadata.
"""

import math
from pathlib import Path

import numpy as np

from asd_keras.layers.audio_transformers import sincos_positions
from asd_keras.models.audio_tokens import file_sha256
from asd_keras.models.audio_encoders import ENCODER_TYPES
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.audio_encoders import encoder_defaults
from asd_keras.models.checkpoint_io import CHECKPOINT_SUFFIXES  # noqa: F401 - re-exported
from asd_keras.models.checkpoint_io import PYTORCH_SUFFIXES  # noqa: F401 - re-exported
from asd_keras.models.checkpoint_io import read_checkpoint
from asd_keras.models.checkpoint_layouts import BEATS_ITER3_CFG  # noqa: F401 - re-exported
from asd_keras.models.checkpoint_layouts import EAT_IMAGE as _EAT_IMAGE
from asd_keras.models.checkpoint_layouts import beats_config_from_checkpoint
from asd_keras.models.checkpoint_layouts import dropped_report  # noqa: F401 - re-exported
from asd_keras.models.checkpoint_layouts import eat_config_from_checkpoint
from asd_keras.models.checkpoint_layouts import normalise_eat_state
from asd_keras.utils.io import staged_dir


def _linear(weight):
    return np.transpose(weight)


def _conv2d(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _same(value):
    return value


class _Entry:
    """One official key: its PyTorch shape and the Keras weight it fills."""

    def __init__(self, key, shape, layer, weight, transform=_same, kind="matrix"):
        self.key, self.shape = key, tuple(shape)
        self.layer, self.weight, self.transform, self.kind = layer, weight, transform, kind


def _dense(entries, key, layer, fan_in, fan_out, bias=True):
    entries.append(_Entry(f"{key}.weight", (fan_out, fan_in), layer, "kernel", _linear))
    if bias:
        entries.append(_Entry(f"{key}.bias", (fan_out,), layer, "bias", kind="bias"))


def _norm(entries, key, layer, dim):
    entries.append(_Entry(f"{key}.weight", (dim,), layer, "gamma", kind="scale"))
    entries.append(_Entry(f"{key}.bias", (dim,), layer, "beta", kind="bias"))


def beats_entries(config):
    """The official BEATs keys of a `BEATsBackbone` configuration, in order.

    The position convolution's weight-norm pair and the relative position
    table (one tensor repeated under every layer's name) are handled by
    `convert_state_dict`; they are listed here with their shapes.
    """
    c = _beats_config(config)
    d, p = c["dim"], c["patch_dim"]
    entries = [_Entry("patch_embedding.weight", (p, 1, c["patch_size"], c["patch_size"]),
                      "patch_embedding", "kernel", _conv2d)]
    if c["conv_bias"]:
        entries.append(_Entry("patch_embedding.bias", (p,), "patch_embedding", "bias",
                              kind="bias"))
    _norm(entries, "layer_norm", "layer_norm", p)
    if p != d:
        _dense(entries, "post_extract_proj", "post_extract_proj", p, d)
    k, groups = c["conv_pos"], c["conv_pos_groups"]
    entries += [_Entry("encoder.pos_conv.0.weight_g", (1, 1, k), "pos_conv", "kernel",
                       kind="weight_g"),
                _Entry("encoder.pos_conv.0.weight_v", (d, d // groups, k), "pos_conv",
                       "kernel", kind="weight_v"),
                _Entry("encoder.pos_conv.0.bias", (d,), "pos_conv", "bias", kind="bias")]
    _norm(entries, "encoder.layer_norm", "encoder_layer_norm", d)
    heads = c["num_heads"]
    for i in range(c["num_layers"]):
        key, name = f"encoder.layers.{i}", f"layers_{i}"
        attn = f"{name}_self_attn"
        for proj, weight in (("q", "query"), ("k", "key"), ("v", "value"), ("out", "output")):
            entries.append(_Entry(f"{key}.self_attn.{proj}_proj.weight", (d, d), attn,
                                  f"{weight}_kernel", _linear))
            entries.append(_Entry(f"{key}.self_attn.{proj}_proj.bias", (d,), attn,
                                  f"{weight}_bias", kind="bias"))
        if c["gated"]:
            entries += [
                _Entry(f"{key}.self_attn.grep_linear.weight", (8, d // heads), attn,
                       "gate_kernel", _linear),
                _Entry(f"{key}.self_attn.grep_linear.bias", (8,), attn, "gate_bias",
                       kind="bias"),
                _Entry(f"{key}.self_attn.grep_a", (1, heads, 1, 1), attn, "gate_scale",
                       lambda a: np.reshape(a, (-1,)), kind="scale")]
        entries.append(_Entry(f"{key}.self_attn.relative_attention_bias.weight",
                              (c["num_buckets"], heads), "relative_position_bias",
                              "embeddings", kind="shared"))
        _norm(entries, f"{key}.self_attn_layer_norm", f"{name}_self_attn_layer_norm", d)
        _dense(entries, f"{key}.fc1", f"{name}_fc1", d, c["ffn_dim"])
        _dense(entries, f"{key}.fc2", f"{name}_fc2", c["ffn_dim"], d)
        _norm(entries, f"{key}.final_layer_norm", f"{name}_final_layer_norm", d)
    if c["num_classes"]:
        _dense(entries, "predictor", "predictor", d, c["num_classes"])
    return entries


def eat_entries(config):
    """The official (fairseq) EAT keys of an `EATBackbone` configuration."""
    c = _eat_config(config)
    d, ps = c["dim"], c["patch_size"]
    bands = c["num_mel_bins"] // ps
    entries = [
        _Entry(_EAT_IMAGE + "local_encoder.proj.weight", (d, 1, ps, ps), "local_encoder",
               "kernel", _conv2d),
        _Entry(_EAT_IMAGE + "local_encoder.proj.bias", (d,), "local_encoder", "bias",
               kind="bias"),
        _Entry(_EAT_IMAGE + "fixed_positional_encoder.positions",
               (1, c["max_length"] * bands, d), "fixed_positional_encoder", "positions",
               lambda a: a[0], kind="positions"),
        _Entry(_EAT_IMAGE + "extra_tokens", (1, 1, d), "extra_tokens", "token", kind="bias"),
    ]
    _norm(entries, _EAT_IMAGE + "context_encoder.norm", "context_encoder_norm", d)
    hidden = int(d * c["mlp_ratio"])
    for i in range(c["num_layers"]):
        key, name = f"blocks.{i}", f"blocks_{i}"
        _norm(entries, f"{key}.norm1", f"{name}_norm1", d)
        entries += [
            _Entry(f"{key}.attn.qkv.weight", (3 * d, d), f"{name}_attn", "qkv_kernel", _linear),
            _Entry(f"{key}.attn.qkv.bias", (3 * d,), f"{name}_attn", "qkv_bias", kind="bias"),
            _Entry(f"{key}.attn.proj.weight", (d, d), f"{name}_attn", "output_kernel", _linear),
            _Entry(f"{key}.attn.proj.bias", (d,), f"{name}_attn", "output_bias", kind="bias")]
        _norm(entries, f"{key}.norm2", f"{name}_norm2", d)
        _dense(entries, f"{key}.mlp.fc1", f"{name}_mlp_fc1", d, hidden)
        _dense(entries, f"{key}.mlp.fc2", f"{name}_mlp_fc2", hidden, d)
    if c["num_classes"]:
        _norm(entries, "fc_norm", "fc_norm", d)
        _dense(entries, "head", "head", d, c["num_classes"])
    return entries


def _beats_config(config):
    return {**encoder_defaults("beats"), **config}


def _eat_config(config):
    return {**encoder_defaults("eat"), **config}


ENTRIES = {"beats": beats_entries, "eat": eat_entries}


# ----------------------------------------------------------------------------
# Mapping onto a Keras encoder


def convert_state_dict(encoder, state):
    """Assigns an official state dict to a Keras encoder, checking every key.

    Args:
        encoder: `BEATsBackbone` or `EATBackbone` of the checkpoint's
            configuration.
        state: dict of str -> NumPy array in the official layout (EAT:
            after `normalise_eat_state`).

    Raises:
        ValueError: naming missing or unexpected keys, a shape mismatch, or
            a tensor with NaN or infinite values.
    """
    config = {k: v for k, v in encoder.get_config().items() if k not in ("name", "trainable")}
    entries = ENTRIES[encoder.encoder_type](config)
    expected = {e.key for e in entries}
    if encoder.encoder_type == "beats":
        # The official file may carry the folded weight or torch's
        # parametrisation names instead of weight_g / weight_v.
        state = _beats_pos_conv_names(state)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
        raise ValueError(f"The checkpoint does not match a {encoder.encoder_type} encoder of "
                         f"configuration {config}: " + "; ".join(parts) + ".")
    for entry in entries:
        value = state[entry.key]
        if value.shape != entry.shape:
            raise ValueError(f"Checkpoint key {entry.key!r} has shape {tuple(value.shape)}; "
                             f"the configuration expects {entry.shape}.")
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:  # a diverged or damaged checkpoint would give NaN features downstream
            raise ValueError(f"Checkpoint key {entry.key!r} holds {bad} NaN or infinite "
                             f"value(s) of {np.size(value)}; the file is damaged or its "
                             "training diverged. Convert a sound checkpoint.")
    values = {}
    for entry in entries:
        target = (entry.layer, entry.weight)
        if entry.kind in ("weight_g", "weight_v"):
            continue
        if entry.kind == "shared":
            if target in values:
                if not np.array_equal(values[target], state[entry.key]):
                    raise ValueError(f"{entry.key!r} differs from layer 0's table; BEATs shares "
                                     "one relative position table across layers.")
                continue
        values[target] = entry.transform(state[entry.key])
    if encoder.encoder_type == "beats":
        g = state["encoder.pos_conv.0.weight_g"]
        v = state["encoder.pos_conv.0.weight_v"]
        values[("pos_conv", "kernel")] = np.transpose(fold_weight_norm(g, v), (2, 1, 0))
    for (layer_name, weight_name), value in values.items():
        weight = getattr(encoder.get_layer(layer_name), weight_name)
        if tuple(weight.shape) != value.shape:
            raise ValueError(f"Keras weight {layer_name}.{weight_name} has shape "
                             f"{tuple(weight.shape)}; the checkpoint gives {value.shape}.")
        weight.assign(value.astype(np.float32))


def fold_weight_norm(g, v):
    """`g * v / ||v||` with the norm over all axes but the last (PyTorch's
    `weight_norm(dim=2)` of a Conv1d kernel `(out, in / groups, k)`)."""
    norm = np.sqrt(np.sum(np.square(v.astype(np.float64)), axis=(0, 1), keepdims=True))
    return (g * v / norm).astype(np.float32)


def _beats_pos_conv_names(state):
    state = dict(state)
    base = "encoder.pos_conv.0."
    renames = {base + "parametrizations.weight.original0": base + "weight_g",
               base + "parametrizations.weight.original1": base + "weight_v"}
    for old, new in renames.items():
        if old in state:
            state[new] = state.pop(old)
    if base + "weight" in state and base + "weight_g" not in state:
        # Already folded: g = ||w|| per kernel tap and v = w give w back.
        weight = state.pop(base + "weight")
        state[base + "weight_v"] = weight
        state[base + "weight_g"] = np.sqrt(np.sum(np.square(weight.astype(np.float64)),
                                                  axis=(0, 1), keepdims=True)).astype(np.float32)
    return state


def random_state_dict(encoder_type, config=None, seed=0):
    """A state dict in the official layout with random, non-trivial values.

    For tests and parity checks: every weight differs from its PyTorch
    default (norm scales around 1, small non-zero biases), so that a
    transposed or swapped weight shows. BEATs' relative position table is
    the same tensor under every layer's name, as in the released files.

    Args:
        encoder_type: str. `"beats"` or `"eat"`.
        config: dict. Encoder arguments (defaults: the full-size model).
        seed: int.

    Returns:
        dict of str -> float32 array.
    """
    if encoder_type not in ENTRIES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder_type!r}.")
    rng = np.random.default_rng(seed)
    state, shared = {}, None
    for entry in ENTRIES[encoder_type](dict(config or {})):
        shape = entry.shape
        if entry.kind == "scale":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif entry.kind == "bias":
            value = 0.02 * rng.standard_normal(shape)
        elif entry.kind == "weight_g":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif entry.kind == "positions":
            dim, rows = shape[2], shape[1]
            bands = 128 // _eat_config(config or {})["patch_size"]
            value = sincos_positions(dim, rows // bands, bands)[None]
        elif entry.kind == "shared":
            if shared is None:
                shared = 0.5 * rng.standard_normal(shape)
            value = shared
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            fan_out = shape[0]
            value = rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))
        state[entry.key] = np.asarray(value, np.float32)
    return state


def convert_checkpoint(encoder_type, checkpoint, out, force=False, trust_pickle=False,
                       overrides=None):
    """Converts an official checkpoint file into a keras-hub preset folder.

    The folder (`config.json`, `model.weights.h5`, `metadata.json`) loads
    with `load_encoder(out)`, `BEATsBackbone.from_preset(out)` /
    `EATBackbone.from_preset(out)` or `keras_hub.models.Backbone.from_preset(out)`.

    Args:
        encoder_type: str. `"beats"` or `"eat"`.
        checkpoint: str or Path. The official file (see `read_checkpoint`).
        out: str or Path. Preset folder to write (replaced only with
            `force`).
        force: bool.
        trust_pickle: bool. See `read_checkpoint`.
        overrides: dict. Encoder arguments the file cannot tell (e.g.
            `num_heads`, `num_frames`); any key must be an argument of the
            encoder (`encoder_defaults`).

    Returns:
        dict: the preset's metadata (`dropped` and `dropped_groups`: the
        pre-training keys left out; `dropped_report` words them).

    Raises:
        ValueError: for an unknown override, an unreadable file, an
            architecture flag the port does not implement, or a key, shape
            or value that does not fit.
    """
    if encoder_type not in ENTRIES:
        raise ValueError(f"--encoder must be one of {ENCODER_TYPES}; received "
                         f"{encoder_type!r}.")
    overrides = dict(overrides or {})
    valid = sorted(encoder_defaults(encoder_type))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"Unknown {encoder_type} encoder argument(s) {unknown} given to "
                         f"convert; the valid ones are {valid}.")
    state, cfg = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    info = {}
    if encoder_type == "eat":
        state, info = normalise_eat_state(state)
        config = eat_config_from_checkpoint(state, cfg, overrides.get("num_heads"))
    else:
        if any(k.startswith(_EAT_IMAGE) or k.startswith("blocks.") for k in state):
            raise ValueError(f"'{checkpoint}' looks like an EAT checkpoint; use --encoder eat.")
        config = beats_config_from_checkpoint(state, cfg)
    config.update(overrides)
    encoder = build_encoder(encoder_type, **config)
    convert_state_dict(encoder, state)
    metadata = {"encoder": encoder_type, "checkpoint": str(Path(checkpoint).resolve()),
                "checkpoint_sha256": file_sha256(checkpoint), "pretrained": True,
                "keys": len(state), **info}
    with staged_dir(out, force=force, what="preset folder") as staging:
        return encoder.save_to_preset(staging, metadata=metadata)
