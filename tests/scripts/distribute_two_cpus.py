"""Trains the dense AE on one and on two logical CPU devices (MirroredStrategy);
prints one JSON line: the largest relative score difference (`maxrel`), and
the `TF_ENABLE_ONEDNN_OPTS` value and oneDNN state (`env`, `onednn`) of this
process, which tests/test_runtime.py starts with the variable set to 0 (the
user's opt-out), so that one TensorFlow import serves both tests."""
import importlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# asd_keras first: its import defaults TF_ENABLE_ONEDNN_OPTS unless the user set it.
importlib.import_module("asd_keras")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.conftest import make_synthetic  # noqa: E402
from asd_keras.data.layouts import read_dataset  # noqa: E402
from asd_keras.systems import get_system  # noqa: E402
from asd_keras.utils.runs import environment_summary  # noqa: E402
root = make_synthetic(Path(sys.argv[1]), "dcase2022", machine_types=("fan",), seconds=1.0, train=3, target_train=1, test=1, eval=False)
table = read_dataset(root / "dev_data")
out = {}
for d in ("none", "mirrored"):
    s = get_system("dense_ae")({"epochs": 2, "batch_size": 64, "hidden_units": 8, "num_hidden_layers": 1, "latent_dim": 2, "validation_split": 0.0, "distribute": d, "steps_per_execution": 1})
    s.fit(table, Path(sys.argv[1]) / d, verbose=0)
    out[d] = s.score(table)["score"].to_numpy()
print(json.dumps({"env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "onednn": environment_summary()["onednn"],
                  "maxrel": float(np.max(np.abs(out["none"] - out["mirrored"])
                                         / np.abs(out["none"])))}))
