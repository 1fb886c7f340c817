"""TensorFlow's start-up notices are kept out of the program's output."""

import os
import subprocess
import sys

import pytest

from asd_keras.utils.native_logs import filter_native_lines
from tests.conftest import make_synthetic

# TensorFlow 2.21's start-up on a CPU-only machine, as written to stderr.
STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796676777.611006   22692 port.cc:153] oneDNN custom operations are on.\n",
    "I0000 00:00:1796676777.611529   22692 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n",
    "I0000 00:00:1796676777.680635   22692 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.\n",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.\n",
    "/x/keras/src/module.py:3: UserWarning: something the user should see\n",
    "E0000 00:00:1796676781.749093   22692 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error\n",
    "E0000 00:00:1796676781.749093   22692 op_kernel.cc:9] a real error\n",
    "W0000 00:00:1796676781.749093   22692 loader.cc:9] a warning\n",
]


def test_level_2_keeps_python_warnings_and_real_errors_only():
    kept = filter_native_lines(STARTUP, level=2, has_gpu=False)
    assert kept == [STARTUP[5], STARTUP[7]]


def test_the_cuda_errors_stay_when_there_is_a_gpu_and_level_1_keeps_warnings():
    kept = filter_native_lines(STARTUP, level=1, has_gpu=True)
    assert kept == [STARTUP[5], STARTUP[6], STARTUP[7], STARTUP[8]]


def test_level_0_keeps_everything():
    assert filter_native_lines(STARTUP, level=0, has_gpu=False) == STARTUP


@pytest.mark.slow
def test_a_training_command_prints_its_own_output_only(tmp_path):
    root = make_synthetic(tmp_path / "data", "dcase2023", machine_types=("fan",), train=2,
                          target_train=1, test=1, eval=False)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "asd_keras", "train", "--system", "dense_ae", "--data",
         str(root / "dev_data" / "raw"), "--out", str(tmp_path / "run"), "epochs=2",
         "steps_per_execution=1"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for notice in ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers",
                   "cuInit", "cpu_feature_guard", "rebuild TensorFlow"):
        assert notice not in proc.stderr + proc.stdout, notice
    # Output to a pipe: Keras prints one line per epoch, no progress-bar updates.
    assert "Epoch 2/2" in proc.stdout and "\r" not in proc.stdout
    assert "━" not in proc.stdout
    assert "Run written to" in proc.stdout
