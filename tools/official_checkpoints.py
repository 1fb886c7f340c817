"""Official EAT checkpoint layouts, written without torch (test fixtures).

`asd-keras convert` reads `torch.save` files without torch, so the test
suite (which has no torch) needs such files: this module writes them.

- `save_torch_zip(obj, path)`: the zip archive of `torch.save` (PyTorch >=
  1.6): `archive/data.pkl` (pickle protocol 2; each array becomes
  `torch._utils._rebuild_tensor_v2` on a persistent storage id
  `("storage", torch.FloatStorage, key, "cpu", numel)`), the raw storages
  `archive/data/<key>`, `archive/byteorder` and `archive/version`. A
  `Pickled(module, name, args)` value is written as the pickle of
  `module.name(*args)` without importing `module`: this is how an enum
  member (`Modality.IMAGE`, `auto()` value 2) pickles. `make parity` checks
  the files against torch itself (`tests/test_encoder_parity.py`).
- `eat_pretraining_checkpoint`, `eat_finetuned_checkpoint`,
  `eat_hugging_face_state`: the layouts of the official EAT code
  (cwx-worst-one/EAT; key names of the modules' state dicts):
  - pre-training (`Data2VecMultiModel.state_dict`): the encoder keys, the
    decoder `modality_encoders.IMAGE.decoder.{blocks.i.0, proj}` and the
    EMA teacher as ONE nested mapping under `_ema` (`EMAModule.fp32_params`;
    with `ema_encoder_only: false` it holds the whole encoder again);
    `cfg.model` is `Data2VecMultiConfig`;
  - fine-tuned (`MaeImageClassificationModel.state_dict`): the encoder under
    `model.` (pre-training modules removed), `fc_norm.*` and `head.*`
    beside it; the pre-training cfg under `cfg.model.pretrained_model_args`;
  - Hugging Face (`EATModel` wrapping `EAT` as `self.model`): the encoder's
    modules `local_encoder`, `extra_tokens`, `fixed_positional_encoder`,
    `pre_norm`, `blocks`, `fc_norm`, `head` under `model.`.
  With `enum_cfg=True` the cfg keeps EAT's enums as objects (OmegaConf's
  `to_container` without `enum_to_str`), which plain `pickle` (and
  `torch.load`) cannot load unless EAT's modules are importable.
"""

import io
import pickle
import zipfile
from collections import OrderedDict

import numpy as np

_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
            np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
            np.dtype("int32"): "IntStorage", np.dtype("bool"): "BoolStorage"}
IMAGE = "modality_encoders.IMAGE."


class Global:
    """A class or function the pickle names, written without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise TypeError(f"{self.module}.{self.name} is only a name to pickle")


class Pickled:
    """`module.name(*args)` in the pickle (REDUCE), e.g. an enum member."""

    def __init__(self, module, name, args):
        self.func, self.args = Global(module, name), tuple(args)


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table extends
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages = []

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", Global("torch", _STORAGE[obj.array.dtype]), obj.key, "cpu",
                    obj.array.size)
        return None

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    def _save_pickled(self, obj):
        self.save_reduce(obj.func, obj.args, obj=obj)

    def _save_array(self, array):
        array = np.array(array, order="C")  # ascontiguousarray would make 0-d arrays 1-d
        if array.dtype not in _STORAGE:
            raise ValueError(f"no torch storage for dtype {array.dtype}")
        storage = _Storage(str(len(self.storages)), array)
        self.storages.append(storage)
        stride = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
        self.save_reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                         (storage, 0, tuple(array.shape), stride, False, OrderedDict()))

    dispatch[Global] = _save_global_ref
    dispatch[Pickled] = _save_pickled
    dispatch[np.ndarray] = _save_array


def torch_pickle(obj):
    """`(data.pkl bytes, storages)` of `obj` as torch.save pickles it."""
    buffer = io.BytesIO()
    writer = _Writer(buffer)
    writer.dump(obj)
    return buffer.getvalue(), writer.storages


def save_torch_zip(obj, path):
    """Writes `obj` (dicts, lists, scalars, NumPy arrays as tensors,
    `Pickled` objects) as `torch.save(obj, path)` would."""
    data, storages = torch_pickle(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}",
                             storage.array.astype(storage.array.dtype.newbyteorder("<"))
                             .tobytes())
        archive.writestr("archive/version", "3\n")
    return path


# ----------------------------------------------------------------------------
# Official EAT layouts


def _enum(module, name, value, enum_cfg):
    # EAT's enums (`auto()`, AUDIO = 1, IMAGE = 2, TEXT = 3; PredictionMode
    # MEAN_POOLING = 1, CLS_TOKEN = 2): by name with enum_to_str, else the
    # member object itself.
    names = {"Modality": ("AUDIO", "IMAGE", "TEXT"),
             "PredictionMode": ("MEAN_POOLING", "CLS_TOKEN", "LIN_SOFTMAX")}[name]
    if enum_cfg:
        return Pickled(f"EAT.models.{module}", name, (names.index(value) + 1,))
    return value


def eat_pretraining_cfg(config, enum_cfg=False, **model):
    """The fairseq cfg of an EAT pre-training run (config/pretraining_AS2M.yaml
    over `Data2VecMultiConfig`), for an `EATBackbone` configuration."""
    image = {"type": _enum("images", "Modality", "IMAGE", enum_cfg), "in_chans": 1,
             "patch_size": config.get("patch_size", 16), "prenet_depth": 0,
             "num_extra_tokens": 1, "init_extra_token_zero": False,
             "use_alibi_encoder": False, "ema_local_encoder": True,
             "max_length": config.get("max_length", 768), "target_length": 1024,
             "decoder": {"decoder_dim": 8, "decoder_groups": 4, "decoder_kernel": 3,
                         "decoder_layers": 2, "input_dropout": 0.0}}
    return {"_name": None, "common": {"seed": 1, "fp16": True},
            "task": {"_name": "mae_image_pretraining", "data": "/data/AS2M",
                     "audio_mae": True, "target_length": 1024},
            "model": {"_name": "data2vec_multi", "depth": config["num_layers"],
                      "embed_dim": config["dim"], "num_heads": config["num_heads"],
                      "mlp_ratio": config.get("mlp_ratio", 4.0), "norm_eps": 1e-6,
                      "norm_affine": True, "layer_norm_first": False,
                      "ema_decay": 0.9998, "ema_end_decay": 0.99999,
                      "ema_encoder_only": False, "cls_loss": 1, "clone_batch": 16,
                      "supported_modality": _enum("EAT_pretraining", "Modality", "IMAGE",
                                                  enum_cfg),
                      "modalities": {"image": image}, **model}}


def _fairseq_extras():
    # What fairseq's trainer saves beside 'cfg' and 'model'.
    return {"args": None, "criterion": None,
            "optimizer_history": [{"criterion_name": "ModelCriterion",
                                   "optimizer_name": "FairseqAdam",
                                   "lr_scheduler_state": {"best": None}, "num_updates": 400}],
            "task_state": {}, "extra_state": {"epoch": 30, "previous_training_time": 1.5e5}}


def eat_pretraining_checkpoint(state, config, enum_cfg=False, seed=0):
    """`{'cfg', 'model', ...}` as an EAT pre-training run saves it.

    Args:
        state: the encoder's official keys (e.g. `random_state_dict`).
        config: its `EATBackbone` configuration.
        enum_cfg: keep the cfg's enums as objects.
        seed: for the teacher and decoder values.
    """
    rng = np.random.default_rng(seed)
    dim = config["dim"]
    decoder = {}
    for i in range(2):  # Decoder2d: Conv2d(in, 8, 3, groups 4) per block, then proj
        fan_in = (dim if i == 0 else 8) // 4
        decoder[f"{IMAGE}decoder.blocks.{i}.0.weight"] = rng.normal(0, 0.1, (8, fan_in, 3, 3))
        decoder[f"{IMAGE}decoder.blocks.{i}.0.bias"] = rng.normal(0, 0.02, 8)
    decoder[f"{IMAGE}decoder.proj.weight"] = rng.normal(0, 0.1, (dim, 8))
    decoder[f"{IMAGE}decoder.proj.bias"] = rng.normal(0, 0.02, dim)
    # The teacher differs from the student: a converter that took its
    # weights would not reproduce the reference outputs.
    teacher = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)
               for k, v in state.items()}
    model = {**state, **{k: v.astype(np.float32) for k, v in decoder.items()},
             "_ema": teacher}
    return {**_fairseq_extras(), "cfg": eat_pretraining_cfg(config, enum_cfg), "model": model}


def eat_finetuned_checkpoint(state, config, head, enum_cfg=False):
    """`{'cfg', 'model', ...}` as an EAT fine-tuning run saves it.

    Args:
        state: the encoder's official keys.
        config: its `EATBackbone` configuration (without `num_classes`).
        head: `fc_norm.{weight,bias}` and `head.{weight,bias}`.
        enum_cfg: keep the cfg's enums as objects.
    """
    model = {f"model.{k}": v for k, v in state.items()}
    model.update(head)
    cfg = {"_name": None, "common": {"seed": 1},
           "task": {"_name": "mae_image_classification", "data": "/data/AS2M"},
           "model": {"_name": "mae_image_classification", "model_path": "/ckpt/pt.pt",
                     "num_classes": int(head["head.weight"].shape[0]),
                     "prediction_mode": _enum("EAT_audio_classification", "PredictionMode",
                                              "CLS_TOKEN", enum_cfg),
                     "use_fc_norm": True, "norm_eps": None, "drop_path_rate": 0.1,
                     "pretrained_model_args": eat_pretraining_cfg(config, enum_cfg)}}
    return {**_fairseq_extras(), "cfg": cfg, "model": model}


def eat_hugging_face_state(state, head=None, prefix="model."):
    """The state dict of the Hugging Face `EATModel` (safetensors)."""
    out = {}
    for key, value in {**state, **(head or {})}.items():
        key = key.replace(IMAGE + "context_encoder.norm.", "pre_norm.").replace(IMAGE, "")
        out[prefix + key] = value
    return out
