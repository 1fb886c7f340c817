"""`call_in_fresh_process`: results, errors, Ctrl-C and a dying child."""

import os
import signal

import numpy as np
import pandas as pd
import pytest

from asd_keras.utils.processes import ProcessDiedError
from asd_keras.utils.processes import call_in_fresh_process


def _describe(frame, scale=1.0):
    import keras

    # A fresh process has built no layer yet: Keras' name counter starts again.
    names = [keras.layers.Dense(1).name for _ in range(2)]
    return {"pid": os.getpid(), "total": float(frame["x"].sum() * scale), "names": names,
            "ctrl_c": signal.getsignal(signal.SIGINT) is signal.default_int_handler}


def _fail(value):
    raise ValueError(f"bad value {value!r}; pass a positive number")


def _interrupted():
    raise KeyboardInterrupt


def _killed():
    os.kill(os.getpid(), signal.SIGKILL)


def test_returns_the_result_of_a_call_in_a_new_runtime():
    import keras

    keras.layers.Dense(1)  # this process's name counter moves on
    before = signal.getsignal(signal.SIGINT)
    frame = pd.DataFrame({"x": np.arange(5.0)})
    result = call_in_fresh_process(_describe, frame, scale=2.0)
    assert result["total"] == 20.0
    assert result["pid"] != os.getpid()
    assert result["names"] == ["dense", "dense_1"]
    # Ctrl-C, ignored while the child starts, is Python's again in the function,
    # and this process's handler is the one it had before.
    assert result["ctrl_c"]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_child_s_exception_is_raised_with_its_traceback():
    with pytest.raises(ValueError, match="bad value -1; pass a positive number") as info:
        call_in_fresh_process(_fail, -1)
    assert "in _fail" in str(info.value.__cause__)


def test_ctrl_c_in_the_child_is_ctrl_c_here():
    with pytest.raises(KeyboardInterrupt):
        call_in_fresh_process(_interrupted)


def test_a_killed_child_is_an_error_that_says_so():
    with pytest.raises(ProcessDiedError, match="_killed was killed by signal 9.*out-of-memory"):
        call_in_fresh_process(_killed)


def _devices():
    import tensorflow as tf

    return len(tf.config.list_physical_devices("CPU"))


def test_the_child_can_start_tensorflow_quietly(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert call_in_fresh_process(_devices, quiet_tensorflow=True) >= 1
    err = capfd.readouterr().err
    assert "absl::InitializeLog" not in err and "oneDNN custom operations" not in err
