"""Running one piece of work in a fresh process, for a bounded peak memory.

A process that trains system after system does not give TensorFlow's
runtime memory back: `benchmarks/bench_trial_memory.py` measured about
200 MB more resident memory after each trained system, and neither
`keras.backend.clear_session()` nor `malloc_trim` lowers the peak. A study
of many configurations therefore peaks at the sum of their leftovers
rather than at its largest configuration. `call_in_fresh_process` runs one
trial in its own process instead, so the operating system takes all of
its memory back when it ends.

Each process is started fresh ("spawn"), not forked: the calling process
may have run TensorFlow, whose thread pools do not survive a fork. It is
a child of the calling process, so `/usr/bin/time -v` and
`getrusage(RUSAGE_CHILDREN)` count its peak memory (a fork server's
children would escape both). The price is the child's own imports:
about 5 s for TensorFlow on 2 cores, a small share of a trial.
"""

import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback

from asd_keras.utils.native_logs import start_tensorflow

_EXIT_INTERRUPTED = 130


class ProcessDiedError(RuntimeError):
    """Raised when the child died without a result (killed, or crashed in C)."""


def _child(connection, function, args, kwargs, log_level, quiet_tensorflow):
    code = 1
    try:
        # Ctrl-C was ignored while this process started (see
        # `call_in_fresh_process`); from here it ends the process cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        connection.send(("started",))
        import tqdm

        if quiet_tensorflow:
            start_tensorflow()

        if log_level is not None:
            # A spawned child does not inherit the parent's logging set-up;
            # its messages keep the parent's level.
            logging.basicConfig(level=log_level, format="%(message)s", stream=sys.stdout)

        # tqdm's default lock is a multiprocessing semaphore, which the
        # `os._exit` below would leave to the resource tracker's "leaked
        # semaphore" warning.
        tqdm.tqdm.set_lock(threading.RLock())
        result = function(*args, **kwargs)
        connection.send(("ok", result))
        code = 0
    except KeyboardInterrupt:
        code = _EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - handed to the parent
        text = traceback.format_exc()
        try:
            connection.send(("error", error, text))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            connection.send(("error", RuntimeError(str(error)), text))
    finally:
        connection.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # The result is sent: skip the interpreter's tear-down of TensorFlow
        # (about 2 s a trial).
        os._exit(code)


def call_in_fresh_process(function, *args, name="asd-keras-trial", quiet_tensorflow=False,
                          **kwargs):
    """Calls `function(*args, **kwargs)` in a fresh process; returns its result.

    The function and its arguments and result must pickle (a module-level
    function; DataFrames, paths, dicts). The child writes to this process's
    standard output and error.

    Args:
        function: a module-level callable.
        *args: its positional arguments.
        name: str. The child process's name (shown by `ps`).
        quiet_tensorflow: bool. Import TensorFlow first in the child with
            its start-up notices filtered, as the `asd-keras` program does
            (`asd_keras.utils.native_logs`).
        **kwargs: its keyword arguments.

    Returns:
        What `function` returned.

    Raises:
        KeyboardInterrupt: on Ctrl-C (which reaches the child too; it is
            given 30 s to end at its own safe point, then killed).
        Exception: the exception the function raised, re-raised here, with
            the child's traceback as its cause's message.
        ProcessDiedError: when the child ended without a result (e.g.
            killed by the out-of-memory killer).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, name=name,
                              args=(sender, function, args, kwargs, _log_level(),
                                    quiet_tensorflow))
    # The child starts with Ctrl-C ignored (an ignored signal stays ignored
    # across fork and exec) until `_child` runs: a Ctrl-C during its start-up
    # (seconds of imports, outside any handler) would otherwise end it with a
    # traceback of whatever it was importing. This process ignores it only
    # for the fork and exec themselves.
    # (Only the main thread may set handlers, and a handler set outside
    # Python, None here, could not be put back.)
    swap = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if swap else None
    try:
        process.start()
    finally:
        if swap:
            signal.signal(signal.SIGINT, previous)
    sender.close()
    message, started = None, False
    try:
        try:
            started = receiver.recv()[0] == "started"
            message = receiver.recv()
        except EOFError:  # the child ended without sending
            pass
        process.join()
    except KeyboardInterrupt:
        if not started:
            # The child ignored this Ctrl-C while it started: it gets it as
            # soon as it listens, and stops there.
            try:
                started = receiver.poll(30) and receiver.recv()[0] == "started"
            except EOFError:
                started = False
            if started and process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        # Otherwise Ctrl-C reached the child too: it stops at its safe point
        # (training stops after the current step and keeps its backup).
        process.join(30)
        raise
    finally:
        receiver.close()
        if process.is_alive():  # a second Ctrl-C, or a child that hangs
            process.kill()
            process.join()
    if message is not None and message[0] == "ok":
        return message[1]
    if message is not None:
        _, error, text = message
        raise error from _ChildTraceback(text)
    if process.exitcode in (_EXIT_INTERRUPTED, -2):
        raise KeyboardInterrupt
    number = -process.exitcode if process.exitcode < 0 else None
    why = (f"was killed by signal {number}" + (
        " (SIGKILL: on Linux usually the out-of-memory killer; `dmesg` says)"
        if number == 9 else "") if number else f"exited with code {process.exitcode}")
    raise ProcessDiedError(f"The process running {function.__name__} "
                             f"{why} without a result.")


def _log_level():
    """The root logger's level when this program set logging up, else None."""
    root = logging.getLogger()
    return root.level if root.handlers else None


class _ChildTraceback(Exception):
    """The child's traceback, chained to a re-raised exception."""

    def __str__(self):
        return "\n" + self.args[0]
