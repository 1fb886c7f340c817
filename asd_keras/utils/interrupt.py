"""Ctrl-C during training: stop at a safe point, never inside a write.

Python raises `KeyboardInterrupt` wherever the main thread happens to be,
which during training can be the middle of an HDF5 backup write or load,
or of TensorFlow building a graph: an h5py file is then left open, to be
torn down later at an arbitrary moment (a backup write that failed this
way ended in a segmentation fault in libhdf5). While `deferred()` is
active, the first Ctrl-C only sets a flag; `StopOnInterrupt`, the last
callback of every `fit`, raises `KeyboardInterrupt` at the next batch or
epoch end, after that epoch's backup is complete. A second Ctrl-C raises
at once, as without this module.

Keras' own `model.stop_training` is not used for the stop: it ends the
epoch normally (a full validation pass, then `on_epoch_end`), and the
backup callback would record the cut-short epoch as finished, so a
resumed run would skip the rest of it.
"""

import contextlib
import os
import signal
import threading

import keras

_MESSAGE = (b"\nCtrl-C: stopping at the end of this training step (the last backup is "
            b"kept); press Ctrl-C again to stop at once.\n")

_state = {"depth": 0, "requested": False}


def _on_sigint(signum, frame):
    if _state["depth"] and not _state["requested"]:
        _state["requested"] = True
        # os.write, not print: a handler that prints while the interrupted
        # code is printing raises "reentrant call" in the buffered writer.
        try:
            os.write(2, _MESSAGE)
        except OSError:
            pass
        return
    raise KeyboardInterrupt


def requested():
    """Whether a Ctrl-C is waiting for the next safe point."""
    return _state["requested"]


def check():
    """Raises the pending Ctrl-C, if any, as `KeyboardInterrupt`."""
    if _state["requested"]:
        _state["requested"] = False
        raise KeyboardInterrupt("Ctrl-C")


@contextlib.contextmanager
def deferred():
    """A block in which the first Ctrl-C waits for `check()` (see the module).

    Installs the deferring SIGINT handler for the block when Python's own
    handler is in place and this is the main thread; a SIGINT that is
    ignored (a background job) or handled by the embedding program is left
    alone, and in other threads the block changes nothing. A Ctrl-C still
    pending when the block ends is raised then, so none is ever lost.
    Re-entrant.
    """
    installed = None
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        installed = signal.signal(signal.SIGINT, _on_sigint)
    _state["depth"] += 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _state["depth"] -= 1
        if installed is not None:
            signal.signal(signal.SIGINT, installed)
        if not _state["depth"]:
            pending, _state["requested"] = _state["requested"], False
            if pending and not failed:
                raise KeyboardInterrupt("Ctrl-C")


class StopOnInterrupt(keras.callbacks.Callback):
    """Raises a deferred Ctrl-C at the end of a batch, an epoch or a restore.

    Put it last in the callback list, so that on an epoch end the backup
    (and the history row) of the finished epoch are written first, and on
    the start of training the backup restore completes first.
    """

    def on_train_begin(self, logs=None):
        check()

    def on_train_batch_end(self, batch, logs=None):
        check()

    def on_test_batch_end(self, batch, logs=None):
        check()

    def on_epoch_end(self, epoch, logs=None):
        check()
