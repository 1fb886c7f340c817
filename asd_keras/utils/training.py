"""What the shared system layer hands to a trained extractor's `model.fit`.

`TrainingContext` carries the choices that belong to the run, not to a
model family: the user's Keras callbacks, TensorBoard logging, the backup
folder that makes an interrupted training resumable, and the
`tf.distribute` strategy. A trained extractor builds and compiles its
models inside `context.scope()` and trains them with `context.fit`, so every
family gets all four without repeating them.
"""

import contextlib
import logging
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from asd_keras.utils import interrupt
from asd_keras.utils.checkpoints import AtomicBackupAndRestore
from asd_keras.utils.io import atomic_write_dataframe

logger = logging.getLogger(__name__)

DISTRIBUTE = ("none", "mirrored", "multi_worker")


def make_strategy(distribute):
    """The `tf.distribute` strategy of a `distribute` option (None for "none").

    - `"mirrored"`: `tf.distribute.MirroredStrategy` over the visible GPUs of
      one machine (or the logical CPU devices, when there is no GPU and
      several are configured).
    - `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy`, every
      machine running the same command with its own `TF_CONFIG`.
    """
    if distribute not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}; received {distribute!r}.")
    if distribute == "none":
        return None
    if distribute == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def without_autotune_thread(dataset):
    """`dataset` with tf.data's autotuning turned off, for long-lived iterators.

    The autotuner runs one thread per iterator whose sleep doubles up to 60 s;
    destroying the iterator waits for it. At the end of a 10-epoch Wilkinghoff
    fit (TF 2.21, 2 cores) `model.fit` then returned 36-57 s after its last
    epoch in 6 of 13 trainings (py-spy: the main thread in
    `RootDataset::Iterator::~Iterator` waiting for that thread) and in none
    of 5 with autotuning off, at the same epoch times. Without the autotuner
    `num_parallel_calls=AUTOTUNE` runs one call per core, which is what it
    settles on for these pipelines on small machines anyway; prefetch
    buffers of `AUTOTUNE` keep tf.data's legacy (consumption-driven) sizing.

    Args:
        dataset: `tf.data.Dataset`, or anything else `model.fit` takes
            (returned unchanged).

    Returns:
        The dataset with `options.autotune.enabled = False`.
    """
    if not isinstance(dataset, tf.data.Dataset):
        return dataset
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class TrainingContext:
    """Run-level training options for `model.fit` (see the module docstring).

    Args:
        run_dir: str or Path or None. The run folder; TensorBoard logs go to
            `run_dir/tensorboard/<name>` and histories to
            `run_dir/history/<name>.csv`.
        callbacks: list of `keras.callbacks.Callback`, added to every `fit`.
        tensorboard: bool. Write TensorBoard logs.
        checkpoint_dir: str or Path or None. When given, every epoch is
            backed up under `checkpoint_dir/<name>` (atomic writes, see
            `AtomicBackupAndRestore`) and a repeated `fit` resumes there.
        distribute: str. `"none"`, `"mirrored"` or `"multi_worker"`.
        verbose: int. Keras `fit` verbosity.
    """

    def __init__(self, run_dir=None, callbacks=None, tensorboard=False,
                 checkpoint_dir=None, distribute="none", verbose=1):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.callbacks = list(callbacks or [])
        self.tensorboard = bool(tensorboard)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.distribute = distribute
        self.strategy = make_strategy(distribute)
        self.verbose = verbose

    def scope(self):
        """Build and compile models inside this (the strategy's scope)."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def fit(self, model, dataset, name, epochs, validation_data=None, callbacks=(),
            **kwargs):
        """`model.fit` with the run's callbacks; returns the history DataFrame.

        With a checkpoint folder the history is logged to CSV beside the
        backups, so the epochs trained before an interruption stay in it.

        Args:
            model: compiled `keras.Model`.
            dataset: `tf.data.Dataset` of training batches.
            name: str. Unique within the run (e.g. `member0_fan`); names the
                backup, TensorBoard and history files.
            epochs: int.
            validation_data: optional dataset.
            callbacks: extractor-specific callbacks, run before the user's.
            **kwargs: more `model.fit` arguments.
        """
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built and model.trainable_variables:
            # Built here, not inside the first traced step: a variable created
            # while tracing makes tf.function trace the whole step twice and
            # wrap each initialiser in a tf.cond (a ResNet-18 step: 23 s of
            # tracing that way, 8 s with the optimizer built first, back to
            # back on a busy 2-core machine).
            with self.scope():
                optimizer.build(model.trainable_variables)
        all_callbacks = list(callbacks)
        with contextlib.ExitStack() as stack:
            if self.checkpoint_dir is not None:
                folder = self.checkpoint_dir / name
                folder.mkdir(parents=True, exist_ok=True)
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            history_path = folder / "history.csv"
            # CSVLogger before the backup: a crash between the two repeats an
            # epoch (deduplicated below) rather than losing its row.
            all_callbacks.append(keras.callbacks.CSVLogger(str(history_path), append=True))
            if self.checkpoint_dir is not None:
                all_callbacks.append(AtomicBackupAndRestore(folder / "backup",
                                                            delete_checkpoint=False))
            if self.tensorboard:
                if self.run_dir is None:
                    raise ValueError("tensorboard=true needs a run folder.")
                all_callbacks.append(keras.callbacks.TensorBoard(
                    str(self.run_dir / "tensorboard" / name)))
            all_callbacks.extend(self.callbacks)
            # Last: a Ctrl-C stops training only after the epoch's backup is
            # written or the restore has finished (see `utils.interrupt`).
            all_callbacks.append(interrupt.StopOnInterrupt())
            with interrupt.deferred():
                model.fit(without_autotune_thread(dataset),
                          validation_data=without_autotune_thread(validation_data),
                          epochs=int(epochs),
                          verbose=self.verbose, callbacks=all_callbacks, **kwargs)
            history = pd.read_csv(history_path) if history_path.is_file() else pd.DataFrame(
                {"epoch": np.arange(0)})
        history = history.drop_duplicates("epoch", keep="last").reset_index(drop=True)
        history["epoch"] = history["epoch"] + 1
        if self.run_dir is not None:
            atomic_write_dataframe(self.run_dir / "history" / f"{name}.csv", history)
        return history
