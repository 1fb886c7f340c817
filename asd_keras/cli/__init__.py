"""The `asd-keras` command-line program (also `python -m asd_keras`).

Verbs: synth, systems, probe, train, score, evaluate, export, study, search,
proxy-report, convert, download (`asd-keras VERB --help`). Every long step
shows a progress bar; every result folder is written atomically and never
replaced without --force. The parser is `asd_keras.cli.parser`, the verbs'
handlers `asd_keras.cli.commands`; this module runs them, turns bad input
into one-line errors with exit code 2, and Ctrl-C / SIGTERM into a clean
stop (130 / 143).
"""

import logging
import os
import signal
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from asd_keras.cli.parser import build_parser  # noqa: E402  (after the log level)
from asd_keras.utils.io import DiskFullError  # noqa: E402
from asd_keras.utils.io import is_disk_full  # noqa: E402
from asd_keras.utils.native_logs import start_tensorflow  # noqa: E402

# Verbs that never load TensorFlow (the others import it through the library).
_WITHOUT_TENSORFLOW = frozenset({"synth", "download"})


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, so that staged folders and caches are cleaned up.

    A subclass of KeyboardInterrupt: whatever survives Ctrl-C (checkpoints,
    `staged_dir`'s clean-up) survives a `kill` the same way.
    """


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def _handle_sigterm():
    """Installs the SIGTERM handler; returns the previous one (None if not installed)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave the signal alone
        return None
    # None: a handler set outside Python, which cannot be put back.
    return signal.SIG_DFL if previous is None else previous


class _StdoutHandler(logging.Handler):
    """Prints the library's log messages to the current `sys.stdout` (looked
    up at each message, so redirections apply)."""

    def emit(self, record):
        print(self.format(record), file=sys.stdout, flush=True)


def _configure_logging():
    """The library reports progress through `logging`; the program shows it."""
    logger = logging.getLogger("asd_keras")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler(logging.INFO))
    logger.setLevel(logging.INFO)


def _exit_now(code):
    """Ends the program with `code` at once, after flushing its output.

    CPython marks a KeyboardInterrupt as unhandled when it passes through
    code run by `PyRun_String` (some of TensorFlow's import does), even if
    `main` catches it later, and then kills itself with SIGINT at exit:
    2 of 17 Ctrl-Cs about 3 s after the start ended in exit code -2 instead
    of 130, after the one-line message. Everything the command wrote is
    already cleaned up by then (the `finally` blocks ran while the interrupt
    unwound), so nothing is lost by skipping the interpreter's shutdown.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv=None):
    """Runs the program; returns its exit code.

    Exit codes: 0 success, 2 bad input (the message names it), 130 Ctrl-C
    and 143 SIGTERM, both after cleaning up (`train` of a resumable system,
    `study`, `search` and `download` resume when the command is repeated).
    """
    try:
        # Imports pandas and the layouts (seconds): a Ctrl-C here is an
        # interrupt like any other, not an import traceback.
        parser = build_parser()
    except KeyboardInterrupt:
        print("\nasd-keras: interrupted.", file=sys.stderr)
        return 128 + signal.SIGINT
    args, unknown = parser.parse_known_args(argv)
    # argparse fills the `key=value` positional before the options, so
    # overrides written after them (`train ... --out RUN epochs=3`) come back
    # unrecognised; they are overrides all the same.
    stray = [item for item in unknown if item.startswith("-") or "=" not in item]
    if stray or (unknown and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or unknown)}")
    if unknown:
        args.overrides = list(args.overrides) + unknown
    if args.command == "train" and args.verbose is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    _configure_logging()
    previous = _handle_sigterm()
    try:
        if args.command not in _WITHOUT_TENSORFLOW:
            # Imported here, once, so that its start-up notices are filtered
            # (asd_keras.utils.native_logs) and a Ctrl-C during the import is
            # an interrupt like any other.
            start_tensorflow()
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError,
            DiskFullError) as error:
        print(f"asd-keras {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if is_disk_full(error):  # a full disk outside the writes that name their folder
            print(f"asd-keras {args.command}: error: no space left on the disk "
                  f"({str(error).splitlines()[0]}). Free some space, or write to another "
                  "disk, then run the same command again.", file=sys.stderr)
            return 2
        # A corrupt clip surfaces deep inside tf.data as a TensorFlow error.
        from asd_keras.data.audio import nonfinite_audio_error  # lazy: pandas (fast --help)

        clear = nonfinite_audio_error(error)
        if clear is None:
            raise
        print(f"asd-keras {args.command}: error: {clear}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        resumable = getattr(args, "resumable", False)
        hint = "; rerun the same command to resume" if resumable else ""
        print(f"\nasd-keras {args.command}: {'terminated' if terminated else 'interrupted'}"
              f"{hint}.", file=sys.stderr)
        code = 128 + (signal.SIGTERM if terminated else signal.SIGINT)
        if argv is None and threading.current_thread() is threading.main_thread():
            _exit_now(code)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if argv is None and threading.current_thread() is threading.main_thread():
            # The program is over (run as `asd-keras`): a Ctrl-C while Python
            # and TensorFlow shut down would only turn its exit code into
            # "killed by SIGINT" (-2), so it is ignored.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    if argv is None and threading.current_thread() is threading.main_thread():
        # Everything is written and closed: skip the interpreter's tear-down
        # of TensorFlow's runtime (about 2 s after a training run).
        logging.shutdown()
        _exit_now(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
