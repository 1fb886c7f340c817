"""TensorFlow's start-up notices, kept out of a command's output.

Importing TensorFlow 2.21 writes its C++ start-up notices (the oneDNN note,
"Could not find cuda drivers", the CPU-feature note, and absl's "All log
messages before absl::InitializeLog() is called are written to STDERR")
straight to file descriptor 2, twice (two of its libraries log them), and
`TF_CPP_MIN_LOG_LEVEL` does not silence them: they are written before absl's
logging reads it (tensorflow/tensorflow#100442, #79029). A CPU-only machine
also gets an error-level "failed call to cuInit" when the devices are first
listed. `start_tensorflow` imports TensorFlow and lists its devices with
descriptor 2 captured, then writes back every line that
`TF_CPP_MIN_LOG_LEVEL` would have hidden had it applied; anything else
(Python warnings, real errors) is written back unchanged.
"""

import contextlib
import os
import re
import sys
import tempfile

_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# absl's prefix: severity letter, MMDD, time (seconds since the epoch before
# absl is set up), thread id, file:line]
_NATIVE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] ")
# What a machine without a GPU (or without a CUDA driver) is told at start.
_NO_GPU = re.compile(r"cuInit|cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory")
_LEVELS = "IWEF"


def min_log_level():
    """`TF_CPP_MIN_LOG_LEVEL` as an int (0: everything; 2 hides INFO and
    WARNING, which the asd-keras program sets by default)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_native_lines(lines, level, has_gpu):
    """The lines of captured start-up output that `level` lets through.

    Args:
        lines: list of str (with their line ends).
        level: int. `TF_CPP_MIN_LOG_LEVEL`: messages of a lower severity
            (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL) are dropped.
        has_gpu: bool. Without a GPU, the CUDA start-up errors are dropped
            too (they say only that there is none).

    Returns:
        list of str: the lines to show. A line that continues a dropped
        message (no prefix of its own) is dropped with it.
    """
    kept, dropping = [], False
    for line in lines:
        match = _NATIVE.match(line)
        if line.startswith(_ABSL_PREAMBLE):
            dropping = level >= 1
        elif match:
            severity = _LEVELS.index(match.group(1))
            dropping = severity < level or (
                not has_gpu and level >= 1 and severity == 2 and bool(_NO_GPU.search(line)))
        elif not dropping or "Warning" in line or "Error" in line or "Traceback" in line:
            dropping = False
        if not dropping:
            kept.append(line)
    return kept


@contextlib.contextmanager
def _captured_fd2():
    """Redirects descriptor 2 to a temporary file; yields a list that holds
    the captured lines once the block has ended."""
    captured = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.extend(sink.read().decode(errors="replace").splitlines(keepends=True))


def start_tensorflow():
    """Imports TensorFlow and lists its devices, without the start-up notices
    that `TF_CPP_MIN_LOG_LEVEL` asks to hide (see the module docstring).

    With `TF_CPP_MIN_LOG_LEVEL` unset or 0, nothing is captured. Everything
    else written during the import is written back to standard error.

    Returns:
        list of the physical GPU devices.
    """
    level = min_log_level()
    if level <= 0:
        import tensorflow as tf  # lazy: seconds, and only the verbs that need it

        return tf.config.list_physical_devices("GPU")
    gpus, captured = [], []
    try:
        with _captured_fd2() as captured:
            import tensorflow as tf  # lazy: seconds, and only the verbs that need it

            gpus = tf.config.list_physical_devices("GPU")
    finally:
        # Also when the import fails: its own messages are what explains it.
        for line in filter_native_lines(captured, level, bool(gpus)):
            sys.stderr.write(line)
        sys.stderr.flush()
    return gpus
