"""Atomic file output and output folders that are never silently overwritten."""

import contextlib
import csv
import io
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path, text):
    """Writes `text` to `path` so that readers never see a partial file.

    The text goes to a temporary file in the same folder, which is then
    renamed over `path` (an atomic operation on POSIX file systems).

    Args:
        path: str or Path. Destination file.
        text: str. Full file contents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_rows(path, rows):
    """Writes rows as a header-less CSV (the DCASE submission format).

    Args:
        path: str or Path. Destination file.
        rows: iterable of sequences. Each becomes one `csv.writer` row.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def atomic_write_dataframe(path, frame, **to_csv_kwargs):
    """Writes a pandas DataFrame as CSV atomically."""
    to_csv_kwargs.setdefault("index", False)
    atomic_write_text(path, frame.to_csv(**to_csv_kwargs))


def check_output_dir(path, force=False, what="output folder"):
    """Refuses to reuse a non-empty folder unless `force` is set.

    Args:
        path: str or Path. Folder that a command is about to write.
        force: bool. Whether an existing folder may be replaced.
        what: str. Name of the folder in the error message.

    Raises:
        FileExistsError: if `path` exists, is non-empty and `force` is False.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"The {what} '{path}' exists and is not a folder. Choose another "
            "path."
        )
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(
            f"The {what} '{path}' already exists and is not empty. Choose "
            "another folder, or pass --force to replace it."
        )


@contextlib.contextmanager
def staged_dir(path, force=False, what="output folder"):
    """Builds a folder in a staging location and moves it into place at the end.

    Everything is written to `<path>.partial-<pid>`; only when the block
    finishes without an exception is the staging folder renamed to `path`
    (replacing an existing one only when `force` is True). A failure removes
    the staging folder, so no half-written result is ever left at `path`.

    Args:
        path: str or Path. Final folder.
        force: bool. Whether an existing non-empty folder may be replaced.
        what: str. Name of the folder in error messages.

    Yields:
        Path of the staging folder to write into.
    """
    path = Path(path)
    check_output_dir(path, force=force, what=what)
    staging = path.with_name(f"{path.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.replaced-{os.getpid()}")
        os.replace(path, backup)
    os.replace(staging, path)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
