"""The TensorFlow runtime defaults asd_keras sets on import."""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os
import asd_keras
from asd_keras.utils.runs import environment_summary
import tensorflow as tf
print(json.dumps({"env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "onednn": environment_summary()["onednn"]}))
"""


def _probe(value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value, expected_env, expected_onednn", [
    (None, "1", True),   # asd_keras asks for oneDNN whatever the CPU
    ("0", "0", False),   # the user's choice wins
])
def test_onednn_default_and_opt_out(value, expected_env, expected_onednn):
    result = _probe(value)
    assert result["env"] == expected_env
    # The run record says what TensorFlow actually did.
    assert result["onednn"] is expected_onednn


def test_onednn_is_unknown_before_tensorflow_loads():
    code = ("import json, sys; from asd_keras.utils.runs import environment_summary; "
            "print(json.dumps([environment_summary()['onednn'], 'tensorflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [None, False]
