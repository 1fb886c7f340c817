"""Atomic file output and output folders that are never silently overwritten."""

import contextlib
import csv
import io
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, prefix=None, suffix=""):
    """A temporary path beside `path` that replaces it when the block ends.

    Whatever the block writes to the yielded path is synced to disk and
    renamed over `path` (atomic on POSIX file systems); an exception, Ctrl-C
    included, removes it and leaves `path` as it was.

    Args:
        path: str or Path. Destination file.
        prefix: str, optional. Name prefix of the temporary file; defaults
            to `.<name>.` (hidden).
        suffix: str. Name suffix, for writers that check extensions (e.g.
            Keras' `.weights.h5`).

    Yields:
        str, the temporary path to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.",
                               suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Writes `text` to `path` so that readers never see a partial file.

    Args:
        path: str or Path. Destination file.
        text: str. Full file contents.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(text)


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
        ValueError: if the folder cannot be created: an existing parent is a
            file, or the nearest existing parent is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"The {what} '{path}' exists and is not a folder. Choose another "
            "path."
        )
    # Checked before any work: a parent that is a file or read-only would
    # otherwise fail only when the results are moved into place.
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise ValueError(
            f"Cannot create the {what} '{path}': '{parent}' is a file, not a "
            "folder. Choose another path, or move that file away."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"Cannot create the {what} '{path}': the folder '{parent}' is not "
            "writable. Choose another path, or fix the folder's permissions."
        )
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(
            f"The {what} '{path}' already exists and is not empty. Choose "
            "another folder, or pass --force to replace it."
        )


def _process_is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def remove_stale_staging(path):
    """Removes `<name>.partial-<pid>` / `<name>.replaced-<pid>` left by dead processes.

    `staged_dir` removes its staging folder itself, but a process killed
    outright (SIGKILL, power loss) cannot; its folder, which may hold a
    large tf.data cache, would stay for ever. Folders of processes that are
    still running (another command writing the same result) are kept. A
    `.replaced-` folder only exists while `--force` swaps a result in, so
    the user had already asked for it to go.

    Args:
        path: str or Path. The final folder whose siblings are checked.

    Returns:
        list of Path, the folders removed.
    """
    import re

    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(path.name) + r"\.(?:partial|replaced)-(\d+)")
    removed = []
    for sibling in path.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match is None or not sibling.is_dir() or sibling.is_symlink():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _process_is_running(pid):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


@contextlib.contextmanager
def staged_dir(path, force=False, what="output folder"):
    """Builds a folder in a staging location and moves it into place at the end.

    Everything is written to `<path>.partial-<pid>`; only when the block
    finishes without an exception is the staging folder renamed to `path`
    (replacing an existing one only when `force` is True). A failure removes
    the staging folder, so no half-written result is ever left at `path`.
    Staging folders of processes that died without cleaning up are removed
    first (`remove_stale_staging`).

    Args:
        path: str or Path. Final folder.
        force: bool. Whether an existing non-empty folder may be replaced.
        what: str. Name of the folder in error messages.

    Yields:
        Path of the staging folder to write into.
    """
    path = Path(path)
    check_output_dir(path, force=force, what=what)
    remove_stale_staging(path)
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


def load_keras_model(path):
    """Loads a `.keras` model file of a run, naming the file when it is bad.

    Keras reports a damaged archive as "File not found" although the file
    exists, so the archive is checked first.

    Args:
        path: str or Path. A `.keras` file written by `asd-keras train`.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the file is not a complete `.keras` (zip) archive.
    """
    import zipfile

    import keras

    path = Path(path)
    fix = ("Train the run again with 'asd-keras train', or restore the file "
           "from a backup.")
    if not path.is_file():
        raise FileNotFoundError(f"The model file '{path}' is missing. {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        problem = None if bad is None else f"its part '{bad}' fails the CRC check"
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        problem = f"not a complete .keras archive: {error}"
    if problem is not None:
        raise ValueError(
            f"The model file '{path}' is damaged or truncated "
            f"({path.stat().st_size} bytes; {problem}). {fix}"
        )
    return keras.saving.load_model(path)
