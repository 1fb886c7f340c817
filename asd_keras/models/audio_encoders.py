"""BEATs and EAT: their named configurations and preset folders.

`load_encoder(preset)` builds a named configuration (random weights) or
loads a preset folder; `preset_info(preset)` says what it would load without
building it. A preset folder is keras-hub's (`AudioEncoder.save_to_preset`,
`asd-keras convert`): `config.json` (the serialized `BEATsBackbone` or
`EATBackbone`), `model.weights.h5` and `metadata.json`, so that
`BEATsBackbone.from_preset(folder)` and `keras_hub.models.Backbone.from_preset(folder)`
load it too. Folders written before the backbones were keras-hub's (a
`config.json` of `{"encoder": ..., "config": ...}`) still load here, with
the same fingerprint.

The networks themselves are in `beats_backbone` and `eat_backbone`.
"""

import hashlib
import inspect
import json
from pathlib import Path

import keras

from asd_keras.models.audio_tokens import NON_ARCHITECTURE_ARGUMENTS
from asd_keras.models.audio_tokens import PRESET_CONFIG
from asd_keras.models.audio_tokens import PRESET_METADATA
from asd_keras.models.audio_tokens import PRESET_WEIGHTS
from asd_keras.models.audio_tokens import file_sha256

ENCODER_TYPES = ("beats", "eat")


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


def encoder_class(encoder):
    """The keras-hub `Backbone` class of an encoder type.

    Args:
        encoder: str. `"beats"` or `"eat"`.

    Returns:
        `BEATsBackbone` or `EATBackbone`.

    Raises:
        ValueError: for another encoder type.
    """
    if encoder not in ENCODER_TYPES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder!r}.")
    # keras-hub takes about 2 s to import (tensorflow-text), which every
    # process that imports the systems would pay without an encoder in use.
    from asd_keras.models.beats_backbone import BEATsBackbone  # lazy: keras-hub (2 s)
    from asd_keras.models.eat_backbone import EATBackbone  # lazy: keras-hub (2 s)

    return {"beats": BEATsBackbone, "eat": EATBackbone}[encoder]


# How keras-hub's config.json names each class (`registered_name`, the
# package and class name of `keras.saving.register_keras_serializable`).
_REGISTERED_NAMES = {"asd_keras>BEATsBackbone": "beats", "asd_keras>EATBackbone": "eat"}

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
    """Every hyper-parameter of an encoder type with its default (the
    constructor's arguments but `name` and `dtype`)."""
    if encoder not in ENCODER_TYPES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder!r}.")
    parameters = inspect.signature(encoder_class(encoder).__init__).parameters.items()
    return {name: p.default for name, p in parameters
            if p.default is not inspect.Parameter.empty
            and name not in NON_ARCHITECTURE_ARGUMENTS}


def build_encoder(encoder, **config):
    """A new encoder of type `"beats"` or `"eat"` with random weights."""
    if encoder not in ENCODER_TYPES:
        raise ValueError(f"encoder must be one of {ENCODER_TYPES}; received {encoder!r}.")
    return encoder_class(encoder)(**config)


def preset_info(preset):
    """What `load_encoder(preset)` would build, without building it.

    Returns:
        dict with `encoder`, `config` (hyper-parameters), `pretrained`
        (bool: converted weights), `keras_hub` (bool: a keras-hub preset
        folder; False for named configurations and earlier folders), `source`, `mAP` (published AudioSet mAP, or None) and
        `fingerprint` (identifies the weights and configuration).

    Raises:
        FileNotFoundError, ValueError: naming an unknown preset or a bad
            preset folder.
    """
    if preset in PRESETS:
        record = PRESETS[preset]
        return {"encoder": record["encoder"], "config": dict(record["config"]),
                "pretrained": False, "keras_hub": False,
                "source": f"named configuration {preset!r}",
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
    encoder, config = _preset_record(record, folder / PRESET_CONFIG)
    # The weights file as it is now (metadata.json's hash is from the
    # conversion, which a rewritten file leaves stale) and the configuration
    # (a front-end setting such as num_frames changes the embeddings). Both
    # folder formats give the same text for the same network.
    text = json.dumps(config, sort_keys=True)
    fingerprint = hashlib.sha256(
        f"{file_sha256(folder / PRESET_WEIGHTS)}|{text}".encode()).hexdigest()
    return {"encoder": encoder, "config": config, "keras_hub": "registered_name" in record,
            "pretrained": bool(metadata.get("pretrained", True)),
            "source": metadata.get("checkpoint", str(folder)), "mAP": metadata.get("mAP"),
            "fingerprint": fingerprint}


def _preset_record(record, path):
    """`(encoder type, constructor arguments)` of a preset's config.json:
    keras-hub's serialized backbone or the earlier `{"encoder", "config"}`."""
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        record = {}
    if "registered_name" in record:
        encoder = _REGISTERED_NAMES.get(record["registered_name"])
        config = {k: v for k, v in record["config"].items()
                  if k not in NON_ARCHITECTURE_ARGUMENTS}
    else:
        encoder, config = record.get("encoder"), record.get("config")
    if encoder not in ENCODER_TYPES:
        found = record.get("registered_name", record.get("encoder"))
        raise ValueError(f"'{path}' holds no encoder of {ENCODER_TYPES} (found {found!r}); "
                         "convert the checkpoint again.")
    return encoder, config


def load_encoder(preset, seed=0, overrides=None):
    """An encoder from a named configuration or a preset folder.

    Args:
        preset: str. A key of `PRESETS` (random weights drawn with `seed`)
            or a preset folder (`save_to_preset`, `asd-keras convert`;
            also the earlier format, see the module docstring).
        seed: int. Seed of the random weights of a named configuration.
        overrides: dict. Constructor arguments that leave the weights as
            they are (e.g. EAT's `num_frames`).

    Returns:
        `(encoder, info)`: the `BEATsBackbone` or `EATBackbone` and
        `preset_info(preset)`.

    Raises:
        FileNotFoundError, ValueError: naming an unknown preset, a bad
            preset folder or weights that do not fit it.
    """
    info = preset_info(preset)
    overrides = dict(overrides or {})
    if preset in PRESETS:
        keras.utils.set_random_seed(int(seed))
        return build_encoder(info["encoder"], **{**info["config"], **overrides}), info
    path = Path(preset) / PRESET_WEIGHTS
    try:
        if info["keras_hub"]:
            encoder = encoder_class(info["encoder"]).from_preset(str(preset), **overrides)
        else:
            encoder = build_encoder(info["encoder"], **{**info["config"], **overrides})
            encoder.load_weights(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"The weights '{path}' do not fit the preset's configuration "
                         f"({error}); convert the checkpoint again.") from None
    return encoder, info
