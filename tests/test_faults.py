"""Faults never crash and never lose a run: full disk, two commands, Ctrl-C."""

import errno
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asd_keras import cli
from tests.conftest import make_tiny_dev

REPO = Path(__file__).resolve().parents[1]
TINY_AE = ["hidden_units=8", "num_hidden_layers=1", "latent_dim=2", "cache=memory"]
# Where `asd-keras train --out run` backs up the dense AE of machine type fan.
AE_BACKUP = Path("run.checkpoints") / "training" / "member0_fan" / "backup"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return make_tiny_dev(tmp_path_factory.mktemp("data"))


def _train(dev, out, *extra, system="dense_ae", epochs=2):
    args = ["train", "--system", system, "--data", str(dev), "--out", str(out),
            "--verbose", "0", *extra]
    if system != "logmel_stats":
        args += ["--epochs", str(epochs), *TINY_AE]
    return cli.main(args)


def _backups(folder):
    return sorted(p.name for p in Path(folder).glob("ckpt-*.weights.h5"))


# ----------------------------------------------------------------------
# A full disk: a clear error (exit 2), the last backup kept, no crash
# ----------------------------------------------------------------------


def test_disk_full_during_a_backup_keeps_the_last_one_and_the_rerun_resumes(
        dev, tmp_path, monkeypatch, capsys):
    from asd_keras.utils import io as io_module

    real_fsync, backups = os.fsync, []

    def fsync(fd):
        # The second epoch's backup hits a full disk when it reaches the disk
        # (delayed allocation reports ENOSPC at fsync, as NFS does at close).
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith(".weights.h5"):
            backups.append(name)
            if len(backups) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(io_module.os, "fsync", fsync)
    assert _train(dev, tmp_path / "run") == 2
    err = capsys.readouterr().err
    backup = tmp_path / AE_BACKUP
    assert f"No space left on the disk of '{backup}' for the training backup" in err
    assert "it needs about" in err and "KB" in err
    assert "resume from the last backup ('ckpt-000001-000000.weights.h5', after epoch 1)" in err
    assert "Traceback" not in err
    assert _backups(backup) == ["ckpt-000001-000000.weights.h5"]
    assert not list(backup.glob(".tmp-*")) and not (tmp_path / "run").exists()
    assert not list(tmp_path.glob("run.partial-*"))
    monkeypatch.setattr(io_module.os, "fsync", real_fsync)
    assert _train(dev, tmp_path / "run") == 0
    assert "Resuming 'dense_autoencoder_member0_fan' after epoch 1" in capsys.readouterr().out
    history = pd.read_csv(tmp_path / "run" / "history" / "member0_fan.csv")
    assert history["epoch"].tolist() == [1, 2]


def test_a_backup_that_cannot_fit_is_refused_before_writing(dev, tmp_path, monkeypatch,
                                                            capsys):
    import shutil

    from asd_keras.utils import checkpoints

    real = shutil.disk_usage

    def almost_full(path):
        return real(path)._replace(free=1000)

    monkeypatch.setattr(checkpoints.shutil, "disk_usage", almost_full)
    assert _train(dev, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "for the training backup: it needs about" in err and "1.0 KB free" in err
    # Nothing to resume from: no checkpoint folder is left behind either.
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_result_folder_names_it(tmp_path):
    from asd_keras.utils.io import DiskFullError
    from asd_keras.utils.io import staged_dir

    out = tmp_path / "scores"
    with pytest.raises(DiskFullError, match=re.escape(f"disk of '{tmp_path}' for the score")):
        with staged_dir(out, what="score folder") as stage:
            (stage / "a.csv").write_text("x" * 5000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_train_before_any_backup_leaves_no_checkpoint_folder(dev, tmp_path,
                                                                     monkeypatch, capsys):
    from asd_keras.systems import get_system

    def failing(self, *args, **kwargs):
        raise ValueError("simulated failure before the first backup")

    monkeypatch.setattr(get_system("dense_ae"), "fit", failing)
    assert _train(dev, tmp_path / "run") == 2
    assert "simulated failure" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------
# Two commands writing the same run
# ----------------------------------------------------------------------


def _hold_lock(folder):
    """Another process holding the run's lock, as a running `train` does."""
    code = ("import sys\nfrom asd_keras.utils.io import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_command_on_the_same_run_is_refused_naming_the_first(dev, tmp_path,
                                                                     capsys):
    out = tmp_path / "runs" / "x"
    holder = _hold_lock(out)
    try:
        assert _train(dev, out, "backend=knn", system="logmel_stats") == 2
        err = capsys.readouterr().err
        assert f"The run folder '{out}' is being written by process {holder.pid} (" in err
        assert "-c import sys" in err and f"kill {holder.pid}" in err
        # Dense AE: the checkpoints are the other command's too.
        assert _train(dev, out, epochs=1) == 2
        assert not out.exists() and not out.with_name("x.checkpoints").exists()
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert _train(dev, out, "backend=knn", system="logmel_stats") == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["x"]  # the lock file is gone


def test_a_result_that_appears_meanwhile_is_never_replaced_without_force(tmp_path):
    from asd_keras.utils.io import staged_dir

    out = tmp_path / "run"
    with pytest.raises(FileExistsError, match="appeared while this command was writing"):
        with staged_dir(out, what="run folder") as stage:
            (stage / "mine.txt").write_text("second")
            out.mkdir()  # another program finished the same folder meanwhile
            (out / "theirs.txt").write_text("first")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    kept = tmp_path / f"run.conflict-{os.getpid()}"
    assert (kept / "mine.txt").read_text() == "second"
    with staged_dir(out, force=True) as stage:  # --force still replaces it
        (stage / "mine.txt").write_text("third")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


# ----------------------------------------------------------------------
# Ctrl-C: at start-up, right after a resume, twice
# ----------------------------------------------------------------------


def test_ctrl_c_while_the_program_starts_is_one_line(monkeypatch, capsys):
    def importing(*args, **kwargs):
        raise KeyboardInterrupt  # as while pandas imports

    monkeypatch.setattr(cli, "build_parser", importing)
    assert cli.main(["systems"]) == 130
    assert capsys.readouterr().err.strip() == "asd-keras: interrupted."


@pytest.fixture
def python_sigint():
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _tiny_fit(context, epochs, callbacks=()):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=False)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(8)
    context.fit(model, data, "tiny", epochs, callbacks=list(callbacks))
    return model


def _open_hdf5_files():
    import h5py

    return h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_during_the_restore_of_a_resume(signals, tmp_path, monkeypatch, caplog,
                                               python_sigint):
    """One Ctrl-C lets the restore finish, then stops; two stop inside it."""
    from keras.src.saving import saving_lib

    from asd_keras.utils.training import TrainingContext

    context = TrainingContext(checkpoint_dir=tmp_path, verbose=0)
    _tiny_fit(context, 2)
    backup = tmp_path / "tiny" / "backup"
    saved = {p.name: p.read_bytes() for p in backup.glob("ckpt-*")}
    assert sorted(saved) == ["ckpt-000001-000000.weights.h5", "ckpt-000002-000000.weights.h5"]
    original, calls = saving_lib._load_state, {"n": 0}

    def interrupted_load(*args, **kwargs):
        # Ctrl-C half-way through reading the backup, its HDF5 file open.
        calls["n"] += 1
        if calls["n"] == 3:
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(saving_lib, "_load_state", interrupted_load)
    with caplog.at_level(logging.INFO, logger="asd_keras"), \
            pytest.raises(KeyboardInterrupt):
        _tiny_fit(context, 4)
    resumed = "Resuming 'sequential" in caplog.text
    assert resumed == (signals == 1)  # the first Ctrl-C waits for the restore
    assert not _open_hdf5_files()
    assert {p.name: p.read_bytes() for p in backup.glob("ckpt-*")} == saved
    monkeypatch.setattr(saving_lib, "_load_state", original)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asd_keras"):
        model = _tiny_fit(context, 4)
    assert "after epoch 2" in caplog.text
    assert int(model.optimizer.iterations) == 4 * 4  # restored 1-2, trained 3-4
    history = pd.read_csv(tmp_path / "tiny" / "history.csv")
    assert history.drop_duplicates("epoch", keep="last")["epoch"].tolist() == [0, 1, 2, 3]


def test_ctrl_c_in_an_epoch_stops_at_the_batch_end_without_a_partial_backup(
        tmp_path, python_sigint):
    import keras

    from asd_keras.utils.training import TrainingContext

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 4 + 2:  # epoch 2, batch 3
                signal.raise_signal(signal.SIGINT)
                self.after = True

        def on_train_batch_end(self, batch, logs=None):
            assert not getattr(self, "done", False), "a batch ran after the stop"
            self.done = getattr(self, "after", False)

    context = TrainingContext(checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        _tiny_fit(context, 3, [CtrlC()])
    # Epoch 2 was cut short: only epoch 1 is backed up, and a rerun redoes 2.
    assert _backups(tmp_path / "tiny" / "backup") == ["ckpt-000001-000000.weights.h5"]
    model = _tiny_fit(context, 3)
    assert int(model.optimizer.iterations) == 3 * 4
