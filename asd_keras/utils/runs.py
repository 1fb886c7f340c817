"""Run records: seed, resolved configuration, versions and environment."""

import datetime
import json
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

from asd_keras import __version__
from asd_keras.utils.io import atomic_write_text

_PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "scipy",
    "scikit-learn",
    "librosa",
    "pandas",
    "soundfile",
)


def set_seed(seed, deterministic=False):
    """Seeds Python, NumPy, TensorFlow and Keras once, at the start of a run.

    Args:
        seed: int.
        deterministic: bool. Also make TensorFlow's ops deterministic
            (`tf.config.experimental.enable_op_determinism`), so that the
            same command on the same machine gives identical results. It
            costs speed: Keras then runs without XLA, and some kernels pick
            slower deterministic algorithms. Results still differ between
            machines (other CPU instruction sets round differently). The
            setting lasts for the rest of the process.

    Returns:
        int, the seed.
    """
    import keras  # lazy: environment_summary() runs without loading TensorFlow

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf  # lazy: as keras above

        tf.config.experimental.enable_op_determinism()
    return seed


def seed_run(config):
    """`set_seed` with a system configuration's `seed` and `deterministic`."""
    return set_seed(config["seed"], bool(config.get("deterministic", False)))


def _git_commit():
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_summary():
    """Returns a JSON-serialisable description of the software and machine."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "asd_keras": __version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_summary(),
        "packages": versions,
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "op_determinism": _op_determinism(),
        "onednn": _onednn_enabled(),
    }


# Instruction sets that change which CPU kernels run (oneDNN's AVX-512/VNNI
# paths, numpy's SIMD dispatch) and so the last bits of float results.
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_summary():
    """The CPU's model name and the instruction sets that change float results.

    Recorded in every run because results differ across CPUs in their last
    bits (oneDNN runs other kernels on AVX-512 with VNNI than on AVX2 only),
    and such differences grow through training.

    Returns:
        dict: `model` (str or None), `flags` (the listed sets the CPU has)
        and `intra_op_threads` (`TF_NUM_INTRAOP_THREADS`, None when unset).
    """
    model, flags = platform.processor() or None, set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
        if model and flags:
            break
    return {"model": model, "flags": [f for f in _CPU_FLAGS if f in flags],
            "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS")}


def _onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels (None before TF loads).

    Recorded because oneDNN changes CPU speed and the last bits of results.
    """
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.util import _pywrap_util_port  # lazy: only once TF is loaded

    return bool(_pywrap_util_port.IsMklEnabled())


def _op_determinism():
    """Whether TensorFlow's op determinism is on (None before TF is loaded)."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.framework import config  # lazy: only once TF is loaded

    return bool(config.is_op_determinism_enabled())


def write_run_record(folder, config, seed, command=None, extra=None):
    """Writes `config.yaml` and `run.json` describing what produced a folder.

    Args:
        folder: str or Path. The run or result folder.
        config: dict. The fully resolved configuration.
        seed: int. The seed set at the start of the run.
        command: list of str, optional. The command line.
        extra: dict, optional. More fields for `run.json`.
    """
    folder = Path(folder)
    atomic_write_text(
        folder / "config.yaml", yaml.safe_dump(config, sort_keys=True)
    )
    record = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "seed": int(seed),
        "command": list(command) if command is not None else sys.argv,
        "environment": environment_summary(),
    }
    record.update(extra or {})
    atomic_write_text(folder / "run.json", json.dumps(record, indent=2))
