"""Reading official checkpoint files without torch (`asd-keras convert`).

- `.pt` / `.pth` / `.ckpt`: the zip archive that `torch.save` writes (the
  default since PyTorch 1.6): `<archive>/data.pkl` is a pickle (protocol 2)
  whose tensors point, by persistent id `("storage", type, key, location,
  numel)`, at raw little-endian storages `<archive>/data/<key>`. The pickle
  is read by a restricted unpickler: it never imports a module named in the
  file nor calls anything but the tensor, container and NumPy rebuilders
  listed in `_KNOWN`. Objects of any other class (fairseq's configuration,
  EAT's `Modality` enum when OmegaConf was saved without `enum_to_str`,
  `argparse.Namespace`) become plain values (an enum its value, an object
  its state; OmegaConf containers and nodes their content), which needs
  `trust_pickle=True` so that nobody is surprised by a configuration read
  that way. torch itself is never imported.
- `.safetensors`: the Hugging Face `model.safetensors` of `worstchan/EAT-*`.
- `.npz`: a NumPy archive of the state dict (what the tests build).

Nested mappings of tensors in a state dict (fairseq's `_ema`, the EMA
teacher, is a dict of the teacher's tensors under one key) are flattened
to dotted keys (`_ema.blocks.0.norm1.weight`), so that a converter can
count what it drops.
"""

import codecs
import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

PYTORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
CHECKPOINT_SUFFIXES = PYTORCH_SUFFIXES + (".safetensors", ".npz")
# Storage classes of torch.save's pickles, and torch dtypes (for
# `_rebuild_tensor_v3`), as NumPy dtypes. bfloat16 has no NumPy dtype: its
# 16 bits are read as uint16 and widened to float32.
_STORAGE_DTYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
                   "BFloat16Storage": "bf16", "LongStorage": "i8", "IntStorage": "i4",
                   "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "b1", "UntypedStorage": "u1"}
_TORCH_DTYPES = {"float32": "f4", "float": "f4", "float64": "f8", "double": "f8",
                 "float16": "f2", "half": "f2", "bfloat16": "bf16", "int64": "i8",
                 "long": "i8", "int32": "i4", "int": "i4", "int16": "i2", "short": "i2",
                 "int8": "i1", "uint8": "u1", "bool": "b1"}
# torch.save's pre-1.6 format starts with a pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def read_checkpoint(path, trust_pickle=False):
    """The state dict and stored configuration of a checkpoint file.

    Args:
        path: str or Path. A `.pt`/`.pth`/`.ckpt`, `.safetensors` or `.npz`.
        trust_pickle: bool. Read pickled objects of classes other than
            tensors, containers and NumPy values as plain values (see the
            module docstring). No code from the file runs either way.

    Returns:
        `(state, cfg)`: dict of str -> float32 NumPy array (nested mappings
        flattened to dotted keys), and the stored configuration as plain
        values (a dict) or None.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: for an unknown suffix, a damaged or foreign file, or
            pickled objects without `trust_pickle`.
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
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"Checkpoint '{path}' is not a readable .npz ({error}).") from None
        return _float32(state, path), None
    if suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"Checkpoint '{path}' is not a readable .safetensors file "
                             f"({error}).") from None
        return _float32(state, path), None
    return _read_pytorch(path, trust_pickle)


def _read_pytorch(path, trust_pickle):
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC:
        raise ValueError(
            f"Checkpoint '{path}' is in PyTorch's legacy format (torch.save before 1.6, or "
            "_use_new_zipfile_serialization=False), which the converter does not read. "
            "Re-save it once with a current torch (torch.save(torch.load(f, "
            "weights_only=False), 'new.pt')) and convert the new file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"Checkpoint '{path}' is not a PyTorch checkpoint: torch.save writes a zip "
            f"archive and this file is not one (it starts with {head[:8]!r}). It may be "
            "truncated, an error page saved by a download, or another format.")
    try:
        with zipfile.ZipFile(path) as archive:
            checkpoint, unknown = _unpickle(archive, path)
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError,
            TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"Checkpoint '{path}' is a damaged PyTorch archive "
                         f"({type(error).__name__}: {error}).") from None
    if unknown and not trust_pickle:
        raise ValueError(
            f"Checkpoint '{path}' holds pickled objects of {len(unknown)} class(es) besides "
            f"tensors and plain containers: {sorted(unknown)} (fairseq stores its "
            "configuration that way). The converter reads them as plain values (an enum "
            "as its value, an object as its attributes) without importing or running "
            "their code; to accept that, convert again with --trust-pickle.")
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        state, cfg = checkpoint["model"], checkpoint.get("cfg")
    elif isinstance(checkpoint, dict):
        state, cfg = checkpoint, None
    else:
        raise ValueError(f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, not a "
                         "state dict or a {'cfg', 'model'} mapping.")
    if not isinstance(state, dict):
        raise ValueError(f"Checkpoint '{path}': its 'model' entry is a "
                         f"{type(state).__name__}, not a state dict.")
    return _float32(_flatten(state, path), path), plain(cfg)


def _flatten(state, path, prefix=""):
    out = {}
    for key, value in state.items():
        key = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            out[key] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, path, key + "."))
        elif value is not None:  # a module set to None stores nothing
            raise ValueError(f"Checkpoint '{path}': state-dict entry {key!r} holds a "
                             f"{type(value).__name__}, not a tensor or a mapping of tensors.")
    return out


def _float32(state, path):
    out = {}
    for key, value in state.items():
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise ValueError(f"Checkpoint '{path}': {key!r} has dtype {value.dtype}, not a "
                             "number.")
        out[key] = value.astype(np.float32)
    return out


# ----------------------------------------------------------------------------
# The restricted unpickler


class _Storage:
    """One storage of the archive, read when a tensor first needs it."""

    def __init__(self, archive, name, kind, numel, byteorder):
        self.archive, self.name, self.kind = archive, name, kind
        self.numel, self.byteorder = int(numel), byteorder
        self._data = None

    def view(self, kind):
        """The storage's elements as a 1-D array of `kind` (an entry of
        `_TORCH_DTYPES`' values)."""
        if self._data is None:
            self._data = self.archive.read(self.name)
        kind = self.kind if kind is None or self.kind != "u1" else kind
        if kind == "bf16":
            bits = np.frombuffer(self._data, dtype=self.byteorder + "u2")
            return (bits.astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(self._data, dtype=np.dtype(kind).newbyteorder(self.byteorder))


class _Marker:
    """A torch class or dtype named in the pickle, by its name only."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<torch.{self.name}>"


def _rebuild_tensor(storage, offset, size, stride, *_, kind=None):
    data = storage.view(kind)
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in rank")
    if 0 in size:
        return np.zeros(size, data.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or min(stride, default=0) < 0 or last >= data.size:
        raise pickle.UnpicklingError(f"a tensor of size {size} at offset {offset} overruns "
                                     f"its storage '{storage.name}' of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(
        data[int(offset):], shape=size, strides=[s * data.itemsize for s in stride])
    return np.array(view)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
    return _rebuild_tensor(storage, offset, size, stride, kind=_TORCH_DTYPES[dtype.name])


def _encode(text, encoding="latin1"):
    # Protocol 2 has no bytes opcode: Python 3 pickles bytes as
    # _codecs.encode(str, "latin1").
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


def _numpy_scalar(dtype, data=None):
    return data if dtype.hasobject else np.frombuffer(data, dtype)[0]


def _numpy_reconstruct(subtype, shape, dtype):
    return np.ndarray.__new__(np.ndarray, shape, dtype)


# Everything the unpickler may call, by the name the pickle gives.
_KNOWN = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": lambda data, *_: data,
    "torch._utils._rebuild_parameter_with_state": lambda data, *_: data,
    "torch._tensor._rebuild_from_type_v2": lambda func, new_type, args, state: func(*args),
    "torch.Tensor": _Marker("Tensor"), "torch._tensor.Tensor": _Marker("Tensor"),
    "torch.nn.parameter.Parameter": _Marker("Parameter"),
    "torch.Size": lambda *args: tuple(*args),
    "torch.device": lambda *args: ":".join(str(a) for a in args),
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set, "builtins.frozenset": frozenset, "builtins.complex": complex,
    "_codecs.encode": _encode,
    "numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": _numpy_reconstruct,
}


class _Opaque:
    """An object of a class the reader does not know, kept as data: the
    arguments it was built from, its pickled state and any items."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], (str, int, float)):
            # An enum member pickles as its class called on its value.
            return args[0]
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        pass  # __new__ kept the arguments

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)

    def plain(self):
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (state, slot state)
        if isinstance(state, dict):
            if "_content" in state:  # OmegaConf DictConfig / ListConfig
                return plain(state["_content"])
            if "_val" in state:  # OmegaConf value node
                return plain(state["_val"])
            return plain({**state, **self.items})
        if self.items:
            return plain(self.items)
        if self.elements:
            return plain(self.elements)
        if state is not None:
            return plain(state)
        if self.args or self.kwargs:
            return plain(list(self.args) + ([self.kwargs] if self.kwargs else []))
        return f"<{self.qualname}>"


def _opaque_class(qualname):
    return type(qualname.rsplit(".", 1)[-1], (_Opaque,), {"qualname": qualname})


def _copyreg_reconstructor(cls, base, state):
    if not (isinstance(cls, type) and issubclass(cls, _Opaque)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r}")
    return cls()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storage):
        super().__init__(file)
        self.storage, self.unknown, self.classes = storage, set(), {}

    def find_class(self, module, name):
        qualname = f"{module}.{name}"
        if qualname in _KNOWN:
            return _KNOWN[qualname]
        if qualname == "copyreg._reconstructor":
            return _copyreg_reconstructor
        if module in ("torch", "torch.storage") and (name in _STORAGE_DTYPES
                                                      or name in _TORCH_DTYPES):
            return _Marker(name)
        self.unknown.add(qualname)
        if qualname not in self.classes:
            self.classes[qualname] = _opaque_class(qualname)
        return self.classes[qualname]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        name = getattr(kind, "name", None)
        if name not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unknown storage type {kind!r}")
        return self.storage(key, _STORAGE_DTYPES[name], numel)


def _unpickle(archive, path):
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"Checkpoint '{path}' is a zip archive but not one torch.save wrote "
                         f"(expected one '<archive>/data.pkl'; found {pickles or 'none'}).")
    root = pickles[0].split("/")[0]
    byteorder = "<"
    if f"{root}/byteorder" in names:
        byteorder = "<" if archive.read(f"{root}/byteorder").strip() == b"little" else ">"
    storages = {}

    def storage(key, kind, numel):
        if key not in storages:
            storages[key] = _Storage(archive, f"{root}/data/{key}", kind, numel, byteorder)
        return storages[key]

    unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), storage)
    return unpickler.load(), unpickler.unknown


def plain(value):
    """A configuration as plain dicts, lists and values: objects the
    reader did not know (`_Opaque`) become their content."""
    if isinstance(value, _Opaque):
        return value.plain()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
