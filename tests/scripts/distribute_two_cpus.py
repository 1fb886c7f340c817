"""Trains the dense AE on one and on two logical CPU devices (MirroredStrategy);
prints the largest relative score difference. Run by tests/test_pipeline_training.py."""
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import make_synthetic
from asd_keras.data.layouts import read_dataset
from asd_keras.systems import get_system
root = make_synthetic(Path(sys.argv[1]), "dcase2022", machine_types=("fan",), seconds=1.0, train=3, target_train=1, test=1, eval=False)
table = read_dataset(root / "dev_data")
out = {}
for d in ("none", "mirrored"):
    s = get_system("dense_ae")({"epochs": 2, "batch_size": 64, "hidden_units": 8, "num_hidden_layers": 1, "latent_dim": 2, "validation_split": 0.0, "distribute": d, "steps_per_execution": 1})
    s.fit(table, Path(sys.argv[1]) / d, verbose=0)
    out[d] = s.score(table)["score"].to_numpy()
print("maxrel", np.max(np.abs(out["none"] - out["mirrored"]) / np.abs(out["none"])))
