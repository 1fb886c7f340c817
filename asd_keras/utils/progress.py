"""Progress bars that show on a terminal and stay out of log files.

Long work (synthesis, embedding, studies, searches) reports progress with
tqdm. Written into a log file, a bar is hundreds of carriage-return updates
of one line, so a bar is drawn only where a person watches it: on a
terminal (standard error is a TTY) or in a Jupyter kernel. Keras' own bars
follow the same rule through `verbose` (the CLI's `--verbose` defaults to 1
on a terminal, 2 elsewhere).
"""

import sys

from tqdm.auto import tqdm


def interactive():
    """Whether progress bars are drawn here: a terminal or a Jupyter kernel.

    Returns:
        bool. True when standard error is a TTY or IPython's kernel runs
        this program.
    """
    stream = sys.stderr
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        tty = False
    return tty or "ipykernel" in sys.modules


def progress_bar(iterable=None, *, enabled=True, **kwargs):
    """A tqdm bar, drawn only when `enabled` and `interactive()`.

    Args:
        iterable: the iterable to wrap, or None for a manual bar
            (`update`, `close`).
        enabled: bool. The caller's own switch (a `verbose` or `progress`
            argument). Defaults to `True`.
        **kwargs: tqdm's arguments (`total`, `desc`, `unit`, `leave`, ...);
            `disable` is decided here.

    Returns:
        tqdm. A disabled bar still iterates, counts and closes as usual.
    """
    if "disable" in kwargs:
        raise ValueError("progress_bar decides `disable` itself; pass enabled=... "
                         f"instead (received disable={kwargs['disable']!r}).")
    return tqdm(iterable, disable=not (enabled and interactive()), **kwargs)
