"""How official checkpoints lay out their keys and configuration.

The part of `asd-keras convert` that reads what a checkpoint says about
itself (`converters` maps the keys onto the Keras weights):

- BEATs: the `cfg` of `BEATs.py` (`BEATsConfig`), or the shapes alone.
- EAT (fairseq data2vec 2): the pre-training file (`Data2VecMultiModel`:
  the encoder, its EMA teacher `_ema` as one nested mapping, the decoder)
  and the fine-tuned one (`MaeImageClassificationModel`: the encoder under
  `model.`, `fc_norm.*` and `head.*` beside it, the pre-training
  configuration under `cfg.model.pretrained_model_args`); Hugging Face
  `model.safetensors` keeps the encoder's modules under a wrapper prefix
  that is detected (methods.md §C1, §H; `models/EAT_pretraining.py` and
  `models/EAT_audio_classification.py` of the official code).
"""

import math
import re

# Pre-training only (data2vec 2 / EAT `remove_pretraining_modules`): key
# prefix -> what it is, for the conversion report.
_EAT_TRAINING_ONLY = {
    "_ema": "EMA teacher (pre-training target model)",
    "ema.": "EMA teacher (pre-training target model)",
    "modality_encoders.IMAGE.decoder.": "masked-patch decoder",
    "shared_decoder.": "masked-patch decoder",
    "recon_proj.": "pre-training loss projection",
    "cls_proj.": "pre-training loss projection",
    "center": "pre-training loss centre",
}
# Fine-tuned fairseq EAT keeps its classifier beside the `model.` prefix.
_EAT_HEAD = ("fc_norm.", "head.")
EAT_IMAGE = "modality_encoders.IMAGE."
# Hugging Face module names -> fairseq names (methods.md §C1).
_EAT_HF_NAMES = {"local_encoder.": EAT_IMAGE + "local_encoder.",
                 "extra_tokens": EAT_IMAGE + "extra_tokens",
                 "fixed_positional_encoder.": EAT_IMAGE + "fixed_positional_encoder.",
                 "pre_norm.": EAT_IMAGE + "context_encoder.norm."}

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


def beats_config_from_checkpoint(state, cfg):
    """`BEATsBackbone` arguments from a BEATs `cfg` (or the shapes alone)."""
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
    """`EATBackbone` arguments from the (normalised) EAT state dict and cfg.

    The architecture comes from `cfg.model` of a pre-training file and from
    `cfg.model.pretrained_model_args.model` of a fine-tuned one
    (`MaeImageClassificationModel` keeps the pre-training configuration
    there). Its flags must be those the port implements (`_EAT_FLAGS`).

    Raises:
        ValueError: naming a flag the port does not implement, or when the
            number of heads cannot be told.
    """
    proj = state.get(EAT_IMAGE + "local_encoder.proj.weight")
    layers = _count_blocks(state, r"blocks\.(\d+)\.")
    if proj is None or not layers:
        raise ValueError("The checkpoint has no 'local_encoder.proj.weight' or no "
                         "'blocks.*' keys: it is not an EAT state dict.")
    dim, patch = proj.shape[0], proj.shape[-1]
    arch, where = _eat_architecture(cfg)
    heads = num_heads or arch.get("num_heads") or {768: 12, 1024: 16}.get(dim)
    if heads is None:
        raise ValueError(f"Cannot tell the number of heads of an EAT of width {dim} without "
                         "the checkpoint's cfg; pass num_heads=N to the converter.")
    bands = 128 // patch
    positions = state.get(EAT_IMAGE + "fixed_positional_encoder.positions")
    max_length = positions.shape[1] // bands if positions is not None else 768
    hidden = _shape(state, "blocks.0.mlp.fc1.weight", 0, default=4 * dim)
    return {"num_layers": layers, "dim": dim, "num_heads": int(heads),
            "mlp_ratio": hidden / dim, "patch_size": patch, "max_length": max_length,
            "num_frames": min(1024, max_length * patch),
            "num_classes": _shape(state, "head.weight", 0, default=0)}


# data2vec 2 flags (`Data2VecMultiConfig`, `D2vImageConfig`) of the
# architecture the port implements, with every released EAT's value
# (methods.md §C1): (key under the model cfg, supported value, meaning).
_EAT_FLAGS = (
    ("layer_norm_first", False, "post-LN blocks with the context norm before them"),
    ("norm_eps", 1e-6, "LayerNorm epsilon 1e-6"),
    ("norm_affine", True, "LayerNorms with weight and bias"),
    ("modalities.image.prenet_depth", 0, "no modality-specific blocks"),
    ("modalities.image.num_extra_tokens", 1, "one CLS (extra) token"),
    ("modalities.image.use_alibi_encoder", False, "fixed sin-cos positions, no ALiBi"),
)
# MaeImageClassificationConfig: PredictionMode.CLS_TOKEN is auto() = 2,
# which is what an enum pickled without `enum_to_str` reads as.
_EAT_CLS_MODES = ("CLS_TOKEN", "PredictionMode.CLS_TOKEN", 2)


def _eat_architecture(cfg):
    """`(model cfg, where)` of an EAT cfg, checked against `_EAT_FLAGS`."""
    cfg = cfg if isinstance(cfg, dict) else {}
    model = cfg.get("model", cfg)
    model = model if isinstance(model, dict) else {}
    pretrained = model.get("pretrained_model_args")
    if isinstance(pretrained, dict) and isinstance(pretrained.get("model"), dict):
        arch, where = dict(pretrained["model"]), "model.pretrained_model_args.model"
        if model.get("norm_eps") is not None:  # the fine-tuning's override wins
            arch["norm_eps"] = model["norm_eps"]
        mode = model.get("prediction_mode", "CLS_TOKEN")
        if mode not in _EAT_CLS_MODES:
            raise ValueError(f"The checkpoint's cfg has model.prediction_mode={mode!r}; the "
                             "EAT port classifies from the CLS token (CLS_TOKEN).")
        if model.get("use_fc_norm", True) is False:
            raise ValueError("The checkpoint's cfg has model.use_fc_norm=False; the EAT port "
                             "applies fc_norm before the head (use_fc_norm=True).")
    else:
        arch, where = model, "model"
    for key, supported, meaning in _EAT_FLAGS:
        value = arch
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:  # not stored: data2vec 2's default, the supported value
            continue
        try:
            same = (math.isclose(float(value), supported, rel_tol=1e-6)
                    if isinstance(supported, float) else value == supported)
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ValueError(f"The checkpoint's cfg has {where}.{key}={value!r}; the EAT port "
                             f"implements {key}={supported!r} ({meaning}), as every released "
                             "EAT checkpoint.")
    return arch, where


def _count_blocks(state, pattern):
    indices = {int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m}
    return max(indices) + 1 if indices else 0


def _shape(state, key, axis, default):
    return int(state[key].shape[axis]) if key in state else default


def normalise_eat_state(state):
    """EAT keys in the fairseq layout, whatever file they come from.

    Returns:
        `(state, info)`: the state dict with pre-training keys dropped and
        any outer prefix removed (a fine-tuned file's `fc_norm.*` and
        `head.*` may sit beside the prefix, as `MaeImageClassificationModel`
        stores them); info records `layout`, `prefix`, `dropped` (count)
        and `dropped_groups` (count per pre-training key group).
    """
    anchor = [k for k in state if k.endswith("local_encoder.proj.weight")
              and not re.search(r"(^|\.)_?ema\.", k)]
    if len(anchor) != 1:
        raise ValueError("Expected exactly one '...local_encoder.proj.weight' key in an EAT "
                         f"checkpoint; found {anchor or 'none'}. Is it an EAT checkpoint?")
    head = anchor[0][:-len("local_encoder.proj.weight")]
    layout = "fairseq" if head.endswith(EAT_IMAGE) else "huggingface"
    prefix = head[:-len(EAT_IMAGE)] if layout == "fairseq" else head
    out, dropped, foreign = {}, {}, []
    for key, value in state.items():
        if key.startswith(prefix):
            key = key[len(prefix):]
        elif not key.startswith(_EAT_HEAD):
            foreign.append(key)
            continue
        if layout == "huggingface":
            for old, new in _EAT_HF_NAMES.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
        group = next((g for g in _EAT_TRAINING_ONLY if key.startswith(g)), None)
        if group is not None:
            dropped[group] = dropped.get(group, 0) + 1
            continue
        if key in out:
            raise ValueError(f"Checkpoint key {key!r} appears both under the prefix {prefix!r} "
                             "and beside it; the file mixes models.")
        out[key] = value
    if foreign:
        raise ValueError(f"{len(foreign)} checkpoint keys lack the prefix {prefix!r} of the "
                         f"encoder's keys (e.g. {foreign[:3]}); the file mixes models.")
    return out, {"layout": layout, "prefix": prefix, "dropped": sum(dropped.values()),
                 "dropped_groups": dropped}


def dropped_report(metadata):
    """What a conversion dropped, in words (empty when nothing was)."""
    groups = metadata.get("dropped_groups") or {}
    if not groups:
        return ""
    order = [g for g in _EAT_TRAINING_ONLY if g in groups]  # the teacher first
    order += [g for g in groups if g not in order]
    parts = [f"{groups[g]} of the {_EAT_TRAINING_ONLY.get(g, 'pre-training modules')} ({g!r})"
             for g in order]
    return (f"{sum(groups.values())} pre-training keys dropped, as the official "
            f"remove_pretraining_modules does: " + ", ".join(parts))
