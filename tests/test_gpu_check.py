"""`make gpu-check` on a machine without a GPU, and its `--smoke` sizes on the CPU."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.slow
def test_without_a_gpu_it_says_so_and_exits_0():
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "No GPU is visible to TensorFlow" in proc.stdout


@pytest.mark.slow
def test_unknown_configuration_is_refused_with_the_known_names():
    proc = subprocess.run([sys.executable, str(SCRIPT), "resnet_ce_153"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "resnet_ce_153" in proc.stderr and "resnet_ce_152" in proc.stderr


@pytest.mark.slow
def test_smoke_sizes_run_on_the_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "ganomaly", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "gpu_check_smoke.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and "configuration" not in line}
    assert set(rows) == {"ganomaly", "demo dense_ae", "demo wilkinghoff"}
    cells = [c.strip() for c in rows["ganomaly"].split("|")[1:-1]]
    # samples/s and step time are measured numbers, memory is host RSS on a CPU.
    assert float(cells[2].replace(",", "")) > 0 and float(cells[3].replace(",", "")) > 0
    assert "host RSS" in cells[4]
    assert all(r.rstrip(" |").split("|")[-1].strip().startswith("ok") for r in rows.values())
