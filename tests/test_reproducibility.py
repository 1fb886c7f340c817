"""`deterministic=true`: the same command on the same machine, the same scores."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import make_synthetic

TINY = ["--epochs", "2", "hidden_units=16", "num_hidden_layers=1", "latent_dim=4",
        "batch_size=64", "validation_split=0"]


def _train_and_score(data, out, extra):
    """Starts `train` then `score` in a fresh process; returns the Popen."""
    run, scores = out / "run", out / "scores"
    command = (
        f"import sys; from asd_keras.cli import main; "
        f"code = main(['train', '--system', 'dense_ae', '--data', {str(data)!r}, "
        f"'--out', {str(run)!r}, '--verbose', '0', *{TINY + extra!r}]); "
        f"sys.exit(code or main(['score', '--run', {str(run)!r}, '--data', {str(data)!r}, "
        f"'--out', {str(scores)!r}]))")
    # Without TF_ENABLE_ONEDNN_OPTS, as on a fresh shell: asd_keras's default
    # applies (tests/test_runtime.py tests the opt-out).
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    return subprocess.Popen([sys.executable, "-c", command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("repro")
    data = make_synthetic(base / "data", machine_types=("fan",), train=8, eval=False)
    data = data / "dev_data"
    # Both runs at once: same command, so the results must not depend on timing.
    procs = {name: _train_and_score(data, base / name, ["deterministic=true"])
             for name in ("a", "b")}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output[-3000:]
    return base


@pytest.mark.slow
def test_deterministic_runs_give_identical_scores(runs):
    a = pd.read_csv(runs / "a" / "scores" / "scores.csv")
    b = pd.read_csv(runs / "b" / "scores" / "scores.csv")
    assert len(a) == len(b) > 0
    # Same machine, same command, op determinism on: bit-identical.
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    history_a = pd.read_csv(runs / "a" / "run" / "history" / "member0_fan.csv")
    history_b = pd.read_csv(runs / "b" / "run" / "history" / "member0_fan.csv")
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    for name in ("a", "b"):
        record = json.loads((runs / name / "run" / "run.json").read_text())
        assert record["environment"]["op_determinism"] is True
        # asd_keras asks for oneDNN whatever the CPU, and the record says
        # what TensorFlow actually did.
        assert record["environment"]["onednn"] is True
