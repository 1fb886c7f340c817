"""The TensorFlow runtime: the defaults asd_keras sets on import, and training
on two logical CPU devices (`distribute=mirrored`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def opted_out_process(tmp_path_factory):
    """One fresh process, started with `TF_ENABLE_ONEDNN_OPTS=0` (the user's
    opt-out), imports asd_keras, then TensorFlow, and trains the dense AE on
    one and on two logical CPUs (tests/scripts/distribute_two_cpus.py); its
    JSON line serves both tests below. Each new process pays TensorFlow's
    import (about 10 s on a 2-core machine), so one process does both."""
    script = Path(__file__).parent / "scripts" / "distribute_two_cpus.py"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    out = subprocess.run([sys.executable, str(script), str(tmp_path_factory.mktemp("mirrored"))],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# The default (oneDNN on, recorded as such) is tested on the runs of
# tests/test_reproducibility.py, which start without the variable.
@pytest.mark.slow
def test_onednn_opt_out(opted_out_process):
    assert opted_out_process["env"] == "0"  # the user's choice wins
    # The run record says what TensorFlow actually did.
    assert opted_out_process["onednn"] is False


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(opted_out_process):
    """`distribute=mirrored` splits each batch over two replicas. The gradients
    are all-reduced, but BatchNormalization's batch statistics are per
    replica (32 vectors, not 64), so training differs slightly: the scores
    agree to 2 % (0.83 % measured with oneDNN on), not bit for bit. Both
    trainings run in the same process (oneDNN off there, see the fixture)."""
    assert opted_out_process["maxrel"] < 2e-2


def test_onednn_is_unknown_before_tensorflow_loads():
    code = ("import json, sys; from asd_keras.utils.runs import environment_summary; "
            "print(json.dumps([environment_summary()['onednn'], 'tensorflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [None, False]
