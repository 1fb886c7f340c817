"""Official BEATs and EAT checkpoints to Keras presets (`asd-keras convert`).

Each converter lists every key the official state dict holds for a
configuration (names and PyTorch shapes, reference methods.md §C1, §C2 and
§H), checks the checkpoint against that list and maps each key by name onto
the Keras weight it becomes (transposing PyTorch's `(out, in)` matrices and
`(out, in, kh, kw)` kernels). A missing key, a key that belongs to no part
of the encoder, or a shape that does not fit stops the conversion with a
message naming the keys.

Readers (`read_checkpoint`):

- `.pt` / `.pth` / `.ckpt`: PyTorch files. This needs torch, an optional
  extra (`pip install torch==2.13.0`); nothing else in the library imports
  it. BEATs files hold `{"cfg", "model"}`; fairseq (EAT) files hold
  `{"cfg", "model"}` with a nested configuration.
- `.safetensors`: read without torch (the Hugging Face `model.safetensors`
  of `worstchan/EAT-*`).
- `.npz`: a NumPy archive of the state dict (what the tests build).

Keys that only pre-training uses (EAT's EMA teacher, decoder and projection
heads; `remove_pretraining_modules` in `models/EAT_pretraining.py`) are
dropped and counted in the preset's metadata. Fine-tuned EAT checkpoints
prefix every key with `model.`; Hugging Face files keep the encoder's
modules at the top (`local_encoder`, `extra_tokens`,
`fixed_positional_encoder`, `pre_norm`, `blocks`, `fc_norm`, `head`). The
prefix inside the Hugging Face wrapper is UNVERIFIED (methods.md §C1), so
it is detected as whatever precedes `local_encoder.proj.weight` and written
to the metadata.
"""

import math
import re
from pathlib import Path

import numpy as np

from asd_keras.models.audio_encoders import ENCODER_TYPES
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.audio_encoders import encoder_defaults
from asd_keras.models.audio_encoders import file_sha256
from asd_keras.models.audio_encoders import save_preset
from asd_keras.utils.io import staged_dir

PYTORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
CHECKPOINT_SUFFIXES = PYTORCH_SUFFIXES + (".safetensors", ".npz")
TORCH_MISSING = ("Reading PyTorch checkpoints needs torch, an optional extra of asd-keras: "
                 "install it with 'pip install torch==2.13.0' (or 'make parity'), or convert "
                 "a .safetensors file instead.")
# Pre-training only (data2vec 2 / EAT `remove_pretraining_modules`).
_EAT_TRAINING_ONLY = ("_ema", "ema.", "recon_proj.", "cls_proj.", "shared_decoder.", "center",
                      "modality_encoders.IMAGE.decoder.")
_EAT_IMAGE = "modality_encoders.IMAGE."
# Hugging Face module names -> fairseq names (methods.md §C1).
_EAT_HF_NAMES = {"local_encoder.": _EAT_IMAGE + "local_encoder.",
                 "extra_tokens": _EAT_IMAGE + "extra_tokens",
                 "fixed_positional_encoder.": _EAT_IMAGE + "fixed_positional_encoder.",
                 "pre_norm.": _EAT_IMAGE + "context_encoder.norm."}

# The iter3 configuration as BEATs' checkpoints store it (methods.md §C2).
BEATS_ITER3_CFG = {
    "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12, "activation_fn": "gelu", "layer_norm_first": False,
    "deep_norm": True, "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0, "dropout_input": 0.0, "conv_pos": 128, "conv_pos_groups": 16,
    "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800,
    "gru_rel_pos": True, "input_patch_size": 16, "embed_dim": 512, "conv_bias": False,
    "finetuned_model": False, "predictor_class": 527, "layer_wise_gradient_decay_ratio": 1.0,
}


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
    """The official BEATs keys of a `BEATsEncoder` configuration, in order.

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
    """The official (fairseq) EAT keys of an `EATEncoder` configuration."""
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
# Reading checkpoint files


def read_checkpoint(path, trust_pickle=False):
    """The state dict and stored configuration of a checkpoint file.

    Args:
        path: str or Path. A `.pt`/`.pth`/`.ckpt`, `.safetensors` or `.npz`.
        trust_pickle: bool. Let torch unpickle Python objects besides tensors
            (fairseq stores its configuration that way). Only for files from
            a source you trust: unpickling can run code.

    Returns:
        `(state, cfg)`: dict of str -> float32 NumPy array, and the stored
        configuration (a dict) or None.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: for an unknown suffix, a damaged file, or missing torch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"Checkpoint '{path}' has suffix {suffix!r}; expected one of "
                         f"{CHECKPOINT_SUFFIXES}.")
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {k: archive[k] for k in archive.files}
        except (ValueError, OSError) as error:
            raise ValueError(f"Checkpoint '{path}' is not a readable .npz ({error}).") from None
        return _float32(state), None
    if suffix == ".safetensors":
        from safetensors.numpy import load_file
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"Checkpoint '{path}' is not a readable .safetensors file "
                             f"({error}).") from None
        return _float32(state), None
    return _read_pytorch(path, trust_pickle)


def _read_pytorch(path, trust_pickle):
    try:
        import torch
    except ImportError:
        raise ValueError(f"Cannot read '{path}': {TORCH_MISSING}") from None
    import pickle
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"Checkpoint '{path}' holds Python objects besides tensors and plain "
            f"containers (fairseq stores its configuration that way): {error}. If you "
            "trust the file's source, convert it again with --trust-pickle.") from None
    except Exception as error:  # noqa: BLE001 - torch.load raises many types on bad files
        raise ValueError(f"Checkpoint '{path}' is not a readable PyTorch file "
                         f"({type(error).__name__}: {error}).") from None
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        state, cfg = checkpoint["model"], checkpoint.get("cfg")
    elif isinstance(checkpoint, dict):
        state, cfg = checkpoint, None
    else:
        raise ValueError(f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, not a "
                         "state dict or a {'cfg', 'model'} mapping.")
    arrays = {}
    for key, value in state.items():
        if hasattr(value, "detach"):
            arrays[key] = value.detach().to(torch.float32).numpy()
    return _float32(arrays), _plain(cfg)


def _plain(cfg):
    """A fairseq/omegaconf configuration as plain dicts (or None)."""
    if cfg is None or isinstance(cfg, dict):
        return cfg
    try:
        from omegaconf import OmegaConf
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - any object: keep its attributes
        return dict(getattr(cfg, "__dict__", {}))


def _float32(state):
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}


# ----------------------------------------------------------------------------
# Configurations from checkpoints


def beats_config_from_checkpoint(state, cfg):
    """`BEATsEncoder` arguments from a BEATs `cfg` (or the shapes alone)."""
    if cfg:
        if cfg.get("layer_norm_first", False):
            raise ValueError("The checkpoint's cfg has layer_norm_first=True (pre-LN); only "
                             "the released post-LN (deep-norm) BEATs are ported.")
        if not cfg.get("relative_position_embedding", False):
            raise ValueError("The checkpoint's cfg has relative_position_embedding=False; "
                             "the released BEATs (iter1-3) use it.")
        if cfg.get("activation_fn", "gelu") != "gelu":
            raise ValueError(f"Activation {cfg.get('activation_fn')!r} in the checkpoint's "
                             "cfg; the port implements gelu.")
        merged = {**BEATS_ITER3_CFG, **cfg}
        config = {"num_layers": merged["encoder_layers"], "dim": merged["encoder_embed_dim"],
                  "num_heads": merged["encoder_attention_heads"],
                  "ffn_dim": merged["encoder_ffn_embed_dim"], "patch_dim": merged["embed_dim"],
                  "patch_size": merged["input_patch_size"],
                  "conv_bias": bool(merged["conv_bias"]), "conv_pos": merged["conv_pos"],
                  "conv_pos_groups": merged["conv_pos_groups"],
                  "num_buckets": merged["num_buckets"], "max_distance": merged["max_distance"],
                  "gated": bool(merged["gru_rel_pos"]), "deep_norm": bool(merged["deep_norm"]),
                  "num_classes": (merged["predictor_class"]
                                  if merged.get("finetuned_model") else 0)}
        return config
    layers = _count_blocks(state, r"encoder\.layers\.(\d+)\.")
    dim = _shape(state, "post_extract_proj.weight", 0, default=None)
    patch = state.get("patch_embedding.weight")
    if patch is None or not layers:
        raise ValueError("The checkpoint has no 'patch_embedding.weight' or no "
                         "'encoder.layers.*' keys: it is not a BEATs state dict.")
    dim = dim or patch.shape[0]
    table = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    heads = _shape(state, table, 1, default=12)
    config = {}
    pos = next((state[k] for k in ("encoder.pos_conv.0.weight_v", "encoder.pos_conv.0.weight",
                                   "encoder.pos_conv.0.parametrizations.weight.original1")
                if k in state), None)
    if pos is not None:
        config = {"conv_pos": int(pos.shape[-1]), "conv_pos_groups": dim // int(pos.shape[1])}
    if table in state:
        config["num_buckets"] = int(state[table].shape[0])
    return {**config, "num_layers": layers, "dim": dim, "num_heads": heads,
            "ffn_dim": _shape(state, "encoder.layers.0.fc1.weight", 0, default=4 * dim),
            "patch_dim": patch.shape[0], "patch_size": patch.shape[-1],
            "conv_bias": "patch_embedding.bias" in state,
            "num_classes": _shape(state, "predictor.weight", 0, default=0)}


def eat_config_from_checkpoint(state, cfg, num_heads=None):
    """`EATEncoder` arguments from the (normalised) EAT state dict and cfg."""
    proj = state.get(_EAT_IMAGE + "local_encoder.proj.weight")
    layers = _count_blocks(state, r"blocks\.(\d+)\.")
    if proj is None or not layers:
        raise ValueError("The checkpoint has no 'local_encoder.proj.weight' or no "
                         "'blocks.*' keys: it is not an EAT state dict.")
    dim, patch = proj.shape[0], proj.shape[-1]
    model_cfg = (cfg or {}).get("model", cfg or {}) or {}
    heads = num_heads or model_cfg.get("num_heads") or {768: 12, 1024: 16}.get(dim)
    if heads is None:
        raise ValueError(f"Cannot tell the number of heads of an EAT of width {dim} without "
                         "the checkpoint's cfg; pass num_heads=N to the converter.")
    bands = 128 // patch
    positions = state.get(_EAT_IMAGE + "fixed_positional_encoder.positions")
    max_length = positions.shape[1] // bands if positions is not None else 768
    hidden = _shape(state, "blocks.0.mlp.fc1.weight", 0, default=4 * dim)
    return {"num_layers": layers, "dim": dim, "num_heads": int(heads),
            "mlp_ratio": hidden / dim, "patch_size": patch, "max_length": max_length,
            "num_frames": min(1024, max_length * patch),
            "num_classes": _shape(state, "head.weight", 0, default=0)}


def _count_blocks(state, pattern):
    indices = {int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m}
    return max(indices) + 1 if indices else 0


def _shape(state, key, axis, default):
    return int(state[key].shape[axis]) if key in state else default


def normalise_eat_state(state):
    """EAT keys in the fairseq layout, whatever file they come from.

    Returns:
        `(state, info)`: the state dict with pre-training keys dropped and
        any outer prefix removed; info records `layout`, `prefix` and
        `dropped` (count).
    """
    anchor = [k for k in state if k.endswith("local_encoder.proj.weight")]
    if len(anchor) != 1:
        raise ValueError("Expected exactly one '...local_encoder.proj.weight' key in an EAT "
                         f"checkpoint; found {anchor or 'none'}. Is it an EAT checkpoint?")
    head = anchor[0][:-len("local_encoder.proj.weight")]
    layout = "fairseq" if head.endswith(_EAT_IMAGE) else "huggingface"
    prefix = head[:-len(_EAT_IMAGE)] if layout == "fairseq" else head
    out, dropped, foreign = {}, 0, []
    for key, value in state.items():
        if not key.startswith(prefix):
            foreign.append(key)
            continue
        key = key[len(prefix):]
        if layout == "huggingface":
            for old, new in _EAT_HF_NAMES.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
        if key.startswith(_EAT_TRAINING_ONLY):
            dropped += 1
            continue
        out[key] = value
    if foreign:
        raise ValueError(f"{len(foreign)} checkpoint keys lack the prefix {prefix!r} of the "
                         f"encoder's keys (e.g. {foreign[:3]}); the file mixes models.")
    return out, {"layout": layout, "prefix": prefix, "dropped": dropped}


# ----------------------------------------------------------------------------
# Mapping onto a Keras encoder


def convert_state_dict(encoder, state):
    """Assigns an official state dict to a Keras encoder, checking every key.

    Args:
        encoder: `BEATsEncoder` or `EATEncoder` of the checkpoint's
            configuration.
        state: dict of str -> NumPy array in the official layout (EAT:
            after `normalise_eat_state`).

    Raises:
        ValueError: naming missing or unexpected keys, or a shape mismatch.
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
        if state[entry.key].shape != entry.shape:
            raise ValueError(f"Checkpoint key {entry.key!r} has shape "
                             f"{tuple(state[entry.key].shape)}; the configuration expects "
                             f"{entry.shape}.")
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
            from asd_keras.layers.audio_transformers import sincos_positions
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
    """Converts an official checkpoint file into a preset folder.

    Args:
        encoder_type: str. `"beats"` or `"eat"`.
        checkpoint: str or Path. The official file (see `read_checkpoint`).
        out: str or Path. Preset folder to write (replaced only with
            `force`).
        force: bool.
        trust_pickle: bool. See `read_checkpoint`.
        overrides: dict. Encoder arguments the file cannot tell (e.g.
            `num_heads`, `num_frames`).

    Returns:
        dict: the preset's metadata.
    """
    if encoder_type not in ENTRIES:
        raise ValueError(f"--encoder must be one of {ENCODER_TYPES}; received "
                         f"{encoder_type!r}.")
    state, cfg = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    info = {}
    if encoder_type == "eat":
        state, info = normalise_eat_state(state)
        config = eat_config_from_checkpoint(state, cfg, (overrides or {}).get("num_heads"))
    else:
        if any(k.startswith(_EAT_IMAGE) or k.startswith("blocks.") for k in state):
            raise ValueError(f"'{checkpoint}' looks like an EAT checkpoint; use --encoder eat.")
        config = beats_config_from_checkpoint(state, cfg)
    config.update(overrides or {})
    encoder = build_encoder(encoder_type, **config)
    convert_state_dict(encoder, state)
    metadata = {"encoder": encoder_type, "checkpoint": str(Path(checkpoint).resolve()),
                "checkpoint_sha256": file_sha256(checkpoint), "pretrained": True,
                "keys": len(state), **info}
    with staged_dir(out, force=force, what="preset folder") as staging:
        return save_preset(encoder, staging, metadata)
