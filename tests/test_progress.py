"""Progress bars: drawn on a terminal, silent in log files."""

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from asd_keras.utils.progress import interactive
from asd_keras.utils.progress import progress_bar

_SCRIPT = ("from asd_keras.utils.progress import progress_bar\n"
           "for _ in progress_bar(range(3), desc='counting', mininterval=0): pass\n"
           "print('done', flush=True)\n")


def test_off_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not interactive()
    bar = progress_bar(range(4), desc="work")
    assert list(bar) == [0, 1, 2, 3] and bar.disable
    assert sys.stderr.getvalue() == ""


def test_on_in_a_jupyter_kernel(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert interactive()


def test_the_caller_switch_turns_it_off_anywhere(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progress_bar(range(2), enabled=False).disable


def test_disable_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="enabled=.*disable=True"):
        progress_bar(range(2), disable=True)


def _run(stderr_to_terminal):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if not stderr_to_terminal:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True,
                              text=True, env=env, timeout=120)
        return proc.stdout, proc.stderr
    main, child = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws an empty bar.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE,
                          stderr=child, text=True, env=env, timeout=120)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.stdout, b"".join(chunks).decode(errors="replace")


def test_a_program_draws_the_bar_on_a_terminal_and_not_into_a_log():
    out, err = _run(stderr_to_terminal=True)
    assert "done" in out and "counting" in err and "3/3" in err
    out, err = _run(stderr_to_terminal=False)
    assert "done" in out and err == ""
