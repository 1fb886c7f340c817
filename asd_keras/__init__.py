"""asd-keras: machine-sound anomaly detection (DCASE Task 2) in Keras 3.

The public API is organised by concept: `asd_keras.data` (layouts, audio,
pipelines, synthetic data, download, class labels), `asd_keras.features`,
`asd_keras.layers`, `asd_keras.losses`, `asd_keras.models`,
`asd_keras.extractors`, `asd_keras.backends`, `asd_keras.systems`, the runs
layer `asd_keras.runs`, `asd_keras.runners`, `asd_keras.evaluation`,
`asd_keras.visualisation` and the command-line program in `asd_keras.cli`. Importing this package does not
import TensorFlow. Its one side effect: when TensorFlow is not loaded yet it
defaults `TF_ENABLE_ONEDNN_OPTS` to `1` (an existing value is kept; set it to
`0` before importing to opt out).
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by default on Linux only when
# the CPU has AVX512-VNNI/BF16, AVX-VNNI or AMX (tensorflow/core/util/port.cc,
# DefaultOneDnnPolicy); on AVX2-only CPUs it falls back to Eigen. There, the
# Wilkinghoff CNN trains 1.6x faster with oneDNN (benchmarks/
# bench_wilkinghoff.py), so asd-keras asks for it unless the user chose. The
# variable is read once, when TensorFlow loads, hence before any import.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
