"""Training backups that survive an interruption at any moment.

`keras.callbacks.BackupAndRestore` overwrites `latest.weights.h5` in place:
Ctrl-C in the middle of a save leaves a truncated file that still opens as
HDF5, and the next run fails with "A total of N objects could not be
loaded". Its `double_checkpoint` copy does not help, because it falls back
only on `OSError` and the copy itself is not atomic. `AtomicBackupAndRestore`
writes every backup to a temporary file that is renamed into place, keeps
the previous good backup, and on restore falls back to it.

A full disk must never meet libhdf5 half-way through a write: `save_weights`
then raised `OSError: [Errno 28]` with its HDF5 file left open, and closing
that file (explicitly, or from a garbage-collector finaliser) printed
dozens of "Can't decrement id ref count" errors and then crashed the
process with a segmentation fault inside libhdf5. Backups are therefore
serialised to memory, where HDF5 cannot run out of space, and written to
disk with plain file I/O, whose `ENOSPC` is an ordinary exception; a
backup that cannot fit is refused before any byte is written, naming the
space it needs. A load interrupted half-way closes its (read-only) file.
"""

import contextlib
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
from keras.src.saving import saving_lib

from asd_keras.utils.io import DiskFullError
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import is_disk_full

logger = logging.getLogger(__name__)

_NAME = re.compile(r"ckpt-(\d+)-(\d+)\.weights\.h5")


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` with atomic saves and a fall-back restore.

    Each backup is `ckpt-<epochs done>-<batch>.weights.h5` in `backup_dir`,
    written to a temporary file in the same folder and renamed into place
    (`os.replace`), so a backup is either complete or absent;
    `training_metadata.json` records the newest one. The `keep` newest
    backups are kept. On restore the newest backup that loads is used; one
    that does not (damaged on disk, or written by another model) is
    reported by name and removed, and when none loads training starts from
    the beginning instead of failing.

    Args:
        backup_dir: str or Path. Folder for the backups, used by this
            callback only.
        save_freq: `"epoch"` or int, as `BackupAndRestore`.
        delete_checkpoint: bool. Remove `backup_dir` when `fit` finishes.
            Defaults to True.
        keep: int. Backups kept (>= 1). Defaults to 2, the newest and the
            previous one.

    Example:
    >>> backup = AtomicBackupAndRestore("/tmp/backup", delete_checkpoint=False)
    >>> model.fit(ds, epochs=10, callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True, keep=2):
        super().__init__(str(backup_dir), save_freq=save_freq,
                         delete_checkpoint=delete_checkpoint)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1; received {keep!r}.")
        self.keep = keep

    def backups(self):
        """The complete backups, newest first, as `(epoch, batch, Path)`."""
        folder = Path(self.backup_dir)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _NAME.fullmatch(path.name)
            if match is not None:
                found.append((int(match.group(1)), int(match.group(2)), path))
        return sorted(found, reverse=True)

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(
                "AtomicBackupAndRestore needs a built model before `fit()`; "
                f"{self.model.name!r} is not built. Call it on a batch first.")
        folder = Path(self.backup_dir)
        # Left by a save that was interrupted; never a complete backup.
        for stale in folder.glob(".tmp-*.weights.h5") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)
        backups = self.backups()
        if not backups:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        # A failed load may already have overwritten some variables; kept in
        # memory, so a restore writes nothing to disk.
        variables = self._variables()
        fresh = [variable.numpy() for variable in variables]
        for epoch, batch, path in backups:
            try:
                with _closing_hdf5(path):
                    self.model.load_weights(path)
            except Exception as error:
                logger.warning("Backup '%s' cannot be loaded (%s); removing it and "
                               "trying the previous one.", path, _first_line(error))
                path.unlink(missing_ok=True)
                continue
            self.model._initial_epoch = epoch
            logger.info("Resuming '%s' after epoch %d from '%s'.", self.model.name,
                        epoch, path)
            return
        for variable, value in zip(variables, fresh):
            variable.assign(value)
        logger.warning("No backup in '%s' could be loaded; '%s' trains from the "
                       "first epoch.", folder, self.model.name)

    def _variables(self):
        """The model's and its optimizer's variables: what a backup holds."""
        variables = list(self.model.weights)
        optimizer = self.model.optimizer
        if optimizer is not None:
            variables += list(optimizer.variables)
        return variables

    def backup_bytes(self):
        """An estimate of one backup's size: the model's and optimizer's variables.

        HDF5 adds about 1 KB per variable (measured on the dense AE's
        backup: 134 variables, 3.22 MB of arrays, a 3.34 MB file), counted
        here with a margin.
        """
        variables = self._variables()
        arrays = sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(
            v.dtype)).itemsize for v in variables)
        return arrays + 2048 * len(variables) + 65536

    def _check_space(self, what):
        """Refuses a write that cannot fit before it starts (`DiskFullError`)."""
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        needed = self.backup_bytes()
        if shutil.disk_usage(folder).free < needed:
            raise self._disk_full(what, needed)

    def _disk_full(self, what, needed):
        previous = self.backups()
        hint = (f"then run the same command again to resume from the last backup "
                f"('{previous[0][2].name}', after epoch {previous[0][0]}), which is kept"
                if previous else "then run the same command again")
        return DiskFullError(self.backup_dir, needed, what=f"training {what}", hint=hint)

    def _save_model(self):
        epoch, batch = self._current_epoch, self._last_batch_seen
        final = Path(self.backup_dir) / f"ckpt-{epoch:06d}-{batch:06d}.weights.h5"
        self._check_space("backup")
        data = _weights_bytes(self.model)
        try:
            with atomic_path(final, prefix=".tmp-", suffix=".weights.h5") as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)
        except OSError as error:
            # The estimate was too low, or the disk filled up meanwhile.
            if is_disk_full(error):
                raise self._disk_full("backup", len(data)) from error
            raise
        atomic_write_text(self._training_metadata_path, json.dumps(
            {"epoch": epoch, "batch": batch, "weights": final.name}))
        # Pruned only after the new backup is in place.
        for _, _, old in self.backups()[self.keep:]:
            old.unlink(missing_ok=True)


def has_progress(checkpoint_dir):
    """Whether a checkpoint folder holds anything a resumed run would use.

    That is an epoch backup or a finished extractor; a folder with only its
    `fingerprint.json` (a training that failed before its first backup)
    holds nothing worth keeping.

    Args:
        checkpoint_dir: str or Path. A `RUN.checkpoints` folder.

    Returns:
        bool.
    """
    folder = Path(checkpoint_dir)
    backups = (p for p in folder.glob("training/*/backup/*.weights.h5")
               if _NAME.fullmatch(p.name))
    finished = folder.glob("finished/*/extractor.json")
    return any(True for _ in backups) or any(True for _ in finished)


def _weights_bytes(model):
    """`model.save_weights` into memory: the bytes of a `.weights.h5` file.

    Keras' own `save_weights` writes through libhdf5 straight to disk (see
    the module docstring); this is the same serialisation (`saving_lib`'s
    `H5IOStore` on a `BytesIO`, as Keras does for `.keras` archives).
    """
    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
    finally:
        store.close()  # in memory: closing cannot fail for want of space
    return buffer.getbuffer()


@contextlib.contextmanager
def _closing_hdf5(path):
    """Closes the HDF5 file that a failed load left open on `path`.

    Keras closes its file only when the load succeeds; after a damaged
    backup or a second Ctrl-C it would stay open until some later garbage
    collection. Read-only, so closing it writes nothing.
    """
    try:
        yield
    except BaseException:
        target = os.path.abspath(path)
        for file_id in h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE):
            try:
                name = os.path.abspath(os.fsdecode(file_id.name))
            except Exception:  # an identifier invalidated meanwhile
                continue
            if name == target:
                with contextlib.suppress(Exception):  # the first error is the one to raise
                    h5py.File(file_id).close()
        raise


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
