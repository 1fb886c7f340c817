"""What the benchmark scripts share: the environment of their worker processes.

Imported before anything of asd_keras, so that `USER_ONEDNN` is the value the
user set, not the default asd_keras sets on import (asd_keras/__init__.py).
"""

import os

USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")


def worker_env(onednn):
    """The environment of a fresh worker process.

    Args:
        onednn: `"asd_keras"`: what importing asd_keras gives (the user's
            value, else oneDNN on); `"tf_default"`: TensorFlow's own choice
            for this CPU (the user's value, else unset), as the original
            code runs; `"on"`: forced on.

    Returns:
        dict for `subprocess.run(env=...)`.
    """
    if onednn not in ("asd_keras", "tf_default", "on"):
        raise ValueError(f"onednn must be 'asd_keras', 'tf_default' or 'on'; received {onednn!r}.")
    env = dict(os.environ)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn == "on":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    elif USER_ONEDNN is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = USER_ONEDNN
    elif onednn == "asd_keras":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def onednn_label(env):
    """Short text for a table: how the worker's TensorFlow chose oneDNN."""
    value = env.get("TF_ENABLE_ONEDNN_OPTS")
    return "TF default for this CPU" if value is None else f"TF_ENABLE_ONEDNN_OPTS={value}"
