"""The TensorFlow runtime defaults asd_keras sets on import."""

import json
import os
import subprocess
import sys

PROBE = """
import json, os
import asd_keras
from asd_keras.utils.runs import environment_summary
import tensorflow as tf
print(json.dumps({"env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "onednn": environment_summary()["onednn"]}))
"""


def _probe(value):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# The default (oneDNN on, recorded as such) is tested on the runs of
# tests/test_reproducibility.py, which start without the variable.
def test_onednn_opt_out():
    result = _probe("0")
    assert result["env"] == "0"  # the user's choice wins
    # The run record says what TensorFlow actually did.
    assert result["onednn"] is False


def test_onednn_is_unknown_before_tensorflow_loads():
    code = ("import json, sys; from asd_keras.utils.runs import environment_summary; "
            "print(json.dumps([environment_summary()['onednn'], 'tensorflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [None, False]
