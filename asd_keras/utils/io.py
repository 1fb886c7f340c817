"""Atomic file output and output folders that are never silently overwritten."""

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# errno values meaning "the disk (or the user's quota) is full".
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left on a device, with the folder and the space it needs.

    An `OSError` with errno `ENOSPC`, so code that handles a full disk
    still recognises it; its message says where, how much and what to do.

    Args:
        folder: str or Path. The folder being written.
        needed: int. Bytes the write needs (an estimate, or a lower bound
            when `at_least` is True).
        what: str. What was being written, for the message.
        at_least: bool. `needed` is a lower bound (the bytes written when
            the disk filled up), not an estimate.
        hint: str. The last sentence of the message: how to carry on.
    """

    def __init__(self, folder, needed, what="output", at_least=False,
                 hint="then run the same command again"):
        self.folder, self.needed = Path(folder), int(needed)
        self.free = _free_bytes(self.folder)
        free = "" if self.free is None else f"{format_bytes(self.free)} free"
        if at_least and not self.needed:
            need = f"the disk is full ({free})" if free else "the disk is full"
        elif at_least:
            need = f"it needs more than {format_bytes(self.needed)} (it filled the disk)"
        else:
            need = f"it needs about {format_bytes(self.needed)}" + (f", {free}" if free else "")
        super().__init__(errno.ENOSPC, (
            f"No space left on the disk of '{self.folder}' for the {what}: {need}. Free "
            f"some space there (or write to another disk), {hint}."))

    def __str__(self):
        return self.strerror


def format_bytes(count):
    """`count` bytes as a short human-readable size (`"2.6 MB"`)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover - the loop returns at GB


def _free_bytes(path):
    """Free bytes on the disk holding `path` (its nearest existing parent)."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def is_disk_full(error):
    """Whether an exception means the disk (or quota) is full.

    Covers `OSError` (errno ENOSPC or EDQUOT), h5py's errors, which carry
    the errno only in their text, and TensorFlow's `ResourceExhaustedError`
    of a SavedModel write.
    """
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return True
    text = str(error)
    return any(marker in text for marker in (
        "No space left on device", "Disk quota exceeded", f"errno = {errno.ENOSPC},"))


def tree_bytes(path):
    """Total size of the files under `path` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


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


class FolderInUseError(FileExistsError):
    """Another process is writing the same output folder (see `folder_lock`)."""


# Locks this process holds, by lock file: `folder_lock` is re-entrant, since
# `train` holds its run's lock for the whole command and `staged_dir`
# takes the same lock again.
_HELD_LOCKS = {}


def _lock_path(path):
    path = Path(path).absolute()
    return path.with_name(f".{path.name}.lock")


def _command_line():
    """This process's command, as the user would recognise it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("asd-keras", os.path.join("asd_keras", "__main__.py"))):
        argv[0] = "asd-keras"
    else:  # the Python API: the interpreter's own arguments say more
        argv = list(getattr(sys, "orig_argv", argv))
    return " ".join(argv).replace("\n", " ")[:500]


def _read_holder(fd):
    """`(pid, command)` written by the process holding the lock, if any yet."""
    # The holder writes them right after it gets the lock; a reader can come
    # in between, hence the short retry.
    for _ in range(20):
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode() or "null")
        except (OSError, ValueError):
            holder = None
        if isinstance(holder, dict):
            return holder.get("pid"), holder.get("command")
        time.sleep(0.05)
    return None, None


@contextlib.contextmanager
def folder_lock(path, what="output folder"):
    """Holds an exclusive lock on an output folder for the duration of the block.

    The lock is `fcntl.flock` on `.<name>.lock` beside the folder; it also
    covers the folder's siblings named after it (`<name>.checkpoints`,
    `<name>.partial-<pid>`). The operating system drops it when the process
    ends in any way (even SIGKILL), so it never outlives its holder. The
    lock file records the holder's pid and command, named in the error of a
    second process, and is removed when the block ends. Re-entrant within a
    process.

    Args:
        path: str or Path. The folder to lock (it need not exist).
        what: str. Name of the folder in the error message.

    Yields:
        Path of the lock file.

    Raises:
        FolderInUseError: if another process holds the lock.
    """
    import fcntl  # lazy: POSIX only; the rest of utils.io imports anywhere

    lock = _lock_path(path)
    key = str(lock)
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key][1] += 1
        try:
            yield lock
        finally:
            _HELD_LOCKS[key][1] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _read_holder(fd)
            os.close(fd)
            holder = ("another process" if pid is None
                      else f"process {pid} ({command})" if command else f"process {pid}")
            stop = f", stop it (kill {pid})" if pid is not None else ""
            raise FolderInUseError(
                f"The {what} '{path}' is being written by {holder}. Wait for it to "
                f"finish{stop}, or choose another folder.") from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder removes the file when it releases the lock, so
        # the file locked here may no longer be the one at that path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _HELD_LOCKS[key] = [fd, 1]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": _command_line()}).encode(), 0)
        yield lock
    finally:
        del _HELD_LOCKS[key]
        # Removed while still locked: a process that opened it meanwhile sees
        # it is gone (above) and takes a new one.
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _disk_full(error, folder, written, what):
    """A `DiskFullError` for a write into `folder` that filled the disk."""
    filename = getattr(error, "filename", None)
    where = Path(filename).parent if isinstance(filename, (str, Path)) else folder
    return DiskFullError(where, written, what=what, at_least=True)


@contextlib.contextmanager
def staged_dir(path, force=False, what="output folder"):
    """Builds a folder in a staging location and moves it into place at the end.

    Everything is written to `<path>.partial-<pid>`; only when the block
    finishes without an exception is the staging folder renamed to `path`
    (replacing an existing one only when `force` is True). A failure removes
    the staging folder, so no half-written result is ever left at `path`.
    Staging folders of processes that died without cleaning up are removed
    first (`remove_stale_staging`). The folder is locked (`folder_lock`)
    while it is built, and without `force` the rename itself refuses to
    replace a folder that appeared meanwhile.

    Args:
        path: str or Path. Final folder.
        force: bool. Whether an existing non-empty folder may be replaced.
        what: str. Name of the folder in error messages.

    Yields:
        Path of the staging folder to write into.

    Raises:
        FolderInUseError: if another process is writing `path`.
        FileExistsError: if `path` exists (or appeared while the block
            ran) and `force` is False.
        DiskFullError: if the disk filled up while the block wrote.
    """
    path = Path(path)
    check_output_dir(path, force=force, what=what)
    with folder_lock(path, what=what):
        check_output_dir(path, force=force, what=what)  # may have changed while waiting
        remove_stale_staging(path)
        staging = path.with_name(f"{path.name}.partial-{os.getpid()}")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        free = _free_bytes(staging) or 0
        try:
            yield staging
        except BaseException as error:
            # The result needs more than what it filled: the space free at the
            # start, or what the staging folder holds (a tf.data cache that
            # failed may already have removed its files).
            full = is_disk_full(error) and not isinstance(error, DiskFullError)
            written = max(free, tree_bytes(staging)) if full else 0
            shutil.rmtree(staging, ignore_errors=True)
            if full:
                raise _disk_full(error, path.parent, written, what) from error
            raise
        _place(staging, path, force, what)


def _place(staging, path, force, what):
    """Renames `staging` to `path`; replaces an existing folder only with `force`."""
    if not force:
        # rename(2) replaces an empty folder but fails on a non-empty one or
        # a file, so a result that appeared since the check is never lost.
        try:
            os.rename(staging, path)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR,
                                   errno.EISDIR):
                raise
        kept = path.with_name(f"{path.name}.conflict-{os.getpid()}")
        os.rename(staging, kept)
        raise FileExistsError(
            f"The {what} '{path}' appeared while this command was writing it (another "
            f"program wrote it); it was left as it is, and this command's result is in "
            f"'{kept}'. Move one of them away, or pass --force to replace '{path}'.")
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
    import keras  # lazy: utils.io serves the CLI and data/, which run without TensorFlow

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
