"""Training backups that survive an interruption at any moment.

`keras.callbacks.BackupAndRestore` overwrites `latest.weights.h5` in place:
Ctrl-C in the middle of a save leaves a truncated file that still opens as
HDF5, and the next run fails with "A total of N objects could not be
loaded". Its `double_checkpoint` copy does not help, because it falls back
only on `OSError` and the copy itself is not atomic. `AtomicBackupAndRestore`
writes every backup to a temporary file that is renamed into place, keeps
the previous good backup, and on restore falls back to it.
"""

import json
import logging
import os
import re
import tempfile
from pathlib import Path

import keras

from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_text

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
        # A failed load may already have overwritten some variables.
        fresh = self._temporary()
        try:
            self.model.save_weights(fresh, overwrite=True)
            for epoch, batch, path in backups:
                try:
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
            self.model.load_weights(fresh)
            logger.warning("No backup in '%s' could be loaded; '%s' trains from the "
                           "first epoch.", folder, self.model.name)
        finally:
            Path(fresh).unlink(missing_ok=True)

    def _temporary(self):
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.backup_dir, prefix=".tmp-",
                                    suffix=".weights.h5")
        os.close(fd)
        return name

    def _save_model(self):
        epoch, batch = self._current_epoch, self._last_batch_seen
        final = Path(self.backup_dir) / f"ckpt-{epoch:06d}-{batch:06d}.weights.h5"
        with atomic_path(final, prefix=".tmp-", suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        atomic_write_text(self._training_metadata_path, json.dumps(
            {"epoch": epoch, "batch": batch, "weights": final.name}))
        # Pruned only after the new backup is in place.
        for _, _, old in self.backups()[self.keep:]:
            old.unlink(missing_ok=True)


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
