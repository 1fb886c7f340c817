"""Configuration validation before any work, safe GAN resume, clean interruption."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asd_keras import cli
from asd_keras.data.layouts import read_dataset
from asd_keras.systems import get_system
from tests.conftest import make_tiny_dev

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ["dense_ae", "wilkinghoff", "ganomaly", "skip_ganomaly", "egbad"]
TINY_GAN = dict(hidden_units=8, num_hidden_layers=1, latent_dim=2, batch_size=64)
TINY_GAN_ARGS = [f"{k}={v}" for k, v in TINY_GAN.items()]


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return make_tiny_dev(tmp_path_factory.mktemp("data"))


# ----------------------------------------------------------------------
# Part 1: one declarative schema per system, checked on construction
# ----------------------------------------------------------------------


def test_every_extractor_key_has_a_rule_and_every_variant_passes():
    from asd_keras.extractors import dense_ae
    from asd_keras.extractors import gan
    from asd_keras.extractors import get_extractor
    from asd_keras.utils.registry import defaults

    assert sorted(dense_ae._schema()) == sorted(defaults(dense_ae.DenseAutoencoderExtractor))
    for name in dense_ae.VARIANTS:
        config = get_extractor("dense_ae", variant=name).get_config()
        assert None not in config.values() and config["variant"] == name
    assert sorted(gan._schema()) == sorted(defaults(gan.AdversarialExtractor))
    for name in gan.VARIANTS:
        config = get_extractor("gan", variant=name).get_config()
        assert config["variant"] == name and config["log_mode"] and config["pad_mode"]


def test_every_preset_variant_builds():
    from asd_keras.extractors import classifier_embedding
    from asd_keras.utils.registry import defaults

    schema = classifier_embedding._schema()
    assert sorted(schema) == sorted(defaults(
        classifier_embedding.ClassifierEmbeddingExtractor))
    for name, cls in (("wilkinghoff", get_system("wilkinghoff")),):
        for key, variants in cls.VARIANTS.items():
            for value, implied in variants.items():
                config = cls({key: value}).config
                assert config[key] == value and config["deterministic"] is False
                assert all(config[k] == v for k, v in implied.items()), (name, value)


def test_validator_types_ranges_and_messages():
    from asd_keras.config import boolean
    from asd_keras.config import choice
    from asd_keras.config import integer
    from asd_keras.config import number
    from asd_keras.config import validate_config

    schema = {"epochs": integer(min=1), "q": number(gt=0, lt=1),
              "split": number(min=0, lt=1), "flag": boolean(),
              "channel": choice(0, 1), "k": integer(min=1, optional=True),
              "reinit": number(min=0, optional=True, also=("default",))}
    ok = validate_config({"epochs": 3.0, "q": 0.5, "split": 0, "flag": False,
                          "channel": np.int64(1), "k": None, "reinit": "default"}, schema)
    assert ok == {"epochs": 3, "q": 0.5, "split": 0.0, "flag": False, "channel": 1,
                  "k": None, "reinit": "default"}
    assert type(ok["epochs"]) is int and type(ok["split"]) is float
    assert validate_config({"epochs": np.int64(7)}, schema) == {"epochs": 7}
    bad = [("epochs", 0, "an integer >= 1"), ("epochs", -5, ">= 1"),
           ("epochs", 2.5, "integer"), ("epochs", "abc", "integer"),
           ("epochs", True, "integer"), ("q", 2, r"in \(0, 1\)"), ("q", 0, r"\(0, 1\)"),
           ("q", float("nan"), "number"), ("q", "0.5", "number"), ("split", 1, r"\[0, 1\)"),
           ("flag", "yes", "true or false"), ("flag", 1, "true or false"),
           ("channel", True, r"one of \(0, 1\)"), ("channel", "both", "one of"),
           ("k", 0, "or None"), ("reinit", "auto", "'default' or None")]
    for key, value, allowed in bad:
        with pytest.raises(ValueError, match=allowed) as info:
            validate_config({key: value}, schema)
        message = str(info.value)
        assert message.startswith(f"{key} must be") and f"received {value!r}" in message
    with pytest.raises(ValueError, match="No validation rule"):
        validate_config({"unknown": 1}, schema)


BAD_VALUES = [("epochs", 0), ("epochs", -1), ("epochs", "abc"), ("epochs", 2.5),
              ("batch_size", 0), ("learning_rate", 0), ("threshold_quantile", 2),
              ("threshold_quantile", 0.0), ("seed", -1), ("deterministic", "yes"),
              ("sample_rate", "16k")]


@pytest.mark.parametrize("name", SYSTEMS)
def test_systems_reject_bad_values_on_construction(name):
    system_cls = get_system(name)
    for key, value in BAD_VALUES:
        with pytest.raises(ValueError, match=f"{key} must be") as info:
            system_cls({key: value})
        assert f"received {value!r}" in str(info.value)
    assert system_cls({"epochs": 3.0, "deterministic": True}).config["epochs"] == 3
    if name == "dense_ae":
        for key, value in [("validation_split", 1.0), ("score", "l1"), ("channel", "both"),
                           ("cache", "ssd"), ("hidden_units", 0)]:
            with pytest.raises(ValueError, match=f"{key} must be"):
                system_cls({key: value})
    elif name == "wilkinghoff":
        for key, value in [("ensemble_size", 0), ("mixup_probability", 1.5),
                           ("loss", "triplet"), ("kmeans_clusters", 0),
                           ("monitor_compactness", "no"), ("clip_seconds", 0)]:
            with pytest.raises(ValueError, match=f"{key} must be"):
                system_cls({key: value})
    else:
        for key, value in [("dropout", 1.0), ("beta_1", 1.0), ("score_weight", 2),
                           ("reinit_threshold", "never"), ("initializer", "orthogonal"),
                           ("normalize", "zscore"), ("machine_overrides", [1])]:
            with pytest.raises(ValueError, match=f"{key} must be"):
                system_cls({key: value})


def test_gan_machine_overrides_use_the_same_schema():
    system_cls = get_system("ganomaly")
    for overrides, key in [({"fan": {"epochs": 0}}, r"machine_overrides\['fan'\]: epochs"),
                           ({"fan": {"learning_rate": "fast"}},
                            r"machine_overrides\['fan'\]: learning_rate"),
                           ({"valve": {"score_degree": 0}},
                            r"machine_overrides\['valve'\]: score_degree"),
                           ({"fan": {"batch_size": 1.5}},
                            r"machine_overrides\['fan'\]: batch_size"),
                           ({"fan": {"normalize": "minmax_test"}},
                            r"machine_overrides\['fan'\]: normalize")]:
        with pytest.raises(ValueError, match=f"{key} must be"):
            system_cls({"machine_overrides": overrides})
    with pytest.raises(ValueError, match="must be a mapping"):
        system_cls({"machine_overrides": {"fan": 30}})
    # The system's seed (+ member) seeds every machine type's model.
    with pytest.raises(ValueError, match=r"has key\(s\) \['seed'\] that are not keys"):
        system_cls({"machine_overrides": {"fan": {"seed": 3}}})
    system = system_cls({"machine_overrides": {"fan": {"epochs": 30.0}}})
    epochs = system._new_extractor(0, "fan").config["epochs"]
    assert epochs == 30 and type(epochs) is int
    assert system._new_extractor(0, "valve").config["epochs"] == 10


@pytest.mark.parametrize("system, args", [
    ("dense_ae", ["--epochs", "0"]),
    ("ganomaly", ["--epochs", "-1"]),
    ("dense_ae", ["epochs=-5"]),
    ("ganomaly", ["epochs=abc"]),
    ("dense_ae", ["threshold_quantile=2"]),
    ("wilkinghoff", ["batch_size=0"]),
])
def test_cli_train_rejects_bad_config_before_any_work(system, args, tmp_path, monkeypatch,
                                                      capsys):
    from asd_keras.runs import tables

    def no_reading(*a, **k):
        raise AssertionError("the data was read before the configuration was checked")

    monkeypatch.setattr(tables, "read_dataset", no_reading)
    data = tmp_path / "dev_data"
    data.mkdir()
    out = tmp_path / "runs" / "run"
    code = cli.main(["train", "--system", system, "--data", str(data), "--out", str(out),
                     "--verbose", "0", *args])
    assert code == 2
    key = args[-1].split("=")[0] if "=" in args[-1] else "epochs"
    err = capsys.readouterr().err
    assert f"{key} must be" in err and "received" in err
    assert not out.parent.exists()  # no run, partial or checkpoint folder


# ----------------------------------------------------------------------
# Part 2: GAN backups that survive an interruption
# ----------------------------------------------------------------------


def _steps(extractor, table):
    train = table[table["split"] == "train"]
    frames = extractor.loader().check(sorted(train["path"]), progress=False)["frames"]
    vectors = int(sum(extractor.frontend.num_vectors(f) for f in frames))
    return -(-vectors // TINY_GAN["batch_size"])


def _backups(folder):
    # Dot-files are temporaries of a save in progress, not backups.
    return sorted(p for p in folder.glob("*.weights.h5") if not p.name.startswith("."))


def _newest(files):
    return max(files, key=lambda p: p.stat().st_mtime_ns)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _remove_objects(path):
    # Still opens as HDF5 but lacks most of the model's objects, like the
    # 180 KB `latest.weights.h5` that Ctrl-C left during a 5.8 MB save.
    import h5py

    with h5py.File(path, "r+") as f:
        for name in list(f.keys()):
            if name != "vars":
                del f[name]


def test_ctrl_c_during_a_save_then_a_damaged_backup_still_resume(dev, tmp_path, monkeypatch,
                                                                 caplog):
    from keras.src.saving import saving_lib

    table = read_dataset(dev)
    checkpoints = tmp_path / "ckpt"
    backup = checkpoints / "training" / "member0_fan" / "backup"
    config = {**TINY_GAN, "epochs": 3}
    original = saving_lib._save_state
    calls = {"saves": 0, "objects": 0}

    def interrupted_last_save(*args, **kwargs):
        # Ctrl-C half-way through the third backup, through Keras' own saving.
        if kwargs.get("inner_path") == "":
            calls["saves"] += 1
            calls["objects"] = 0
        calls["objects"] += 1
        if calls["saves"] == 3 and calls["objects"] == 8:
            raise KeyboardInterrupt("simulated Ctrl-C during a save")
        return original(*args, **kwargs)

    monkeypatch.setattr(saving_lib, "_save_state", interrupted_last_save)
    with pytest.raises(KeyboardInterrupt):
        get_system("ganomaly")(config).fit(table, tmp_path / "run1", verbose=0,
                                           checkpoint_dir=checkpoints)
    monkeypatch.setattr(saving_lib, "_save_state", original)
    assert calls["saves"] == 3
    # The interrupted save left no file a later run would mistake for a backup.
    assert not [p for p in backup.iterdir() if p.name.startswith(".")]
    # Worse still, the newest complete backup (epoch 2) is damaged on disk.
    damaged = _newest(_backups(backup))
    _remove_objects(damaged)
    system = get_system("ganomaly")(config)
    with caplog.at_level(logging.INFO, logger="asd_keras"):
        system.fit(table, tmp_path / "run2", verbose=0, checkpoint_dir=checkpoints)
    out = caplog.text
    assert f"'{damaged}' cannot be loaded" in out
    assert "Resuming 'ganomaly_member0_fan' after epoch 1" in out
    # Epoch 1 came from the previous backup; epochs 2-3 were trained again.
    extractor = system.members[0].extractors["fan"]
    assert int(extractor.model.optimizer.iterations) == 3 * _steps(extractor, table)
    history = pd.read_csv(tmp_path / "run2" / "history" / "member0_fan.csv")
    assert history["epoch"].tolist() == [1, 2, 3]


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=False)  # no XLA on CPU
    return model


def test_backup_callback_skips_backups_that_do_not_load(tmp_path, caplog):
    from asd_keras.utils.checkpoints import AtomicBackupAndRestore

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    folder = tmp_path / "backup"
    model = _tiny_model()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[AtomicBackupAndRestore(folder, delete_checkpoint=False)])
    assert len(_backups(folder)) == 2  # the newest and the previous one
    for damage in (_truncate, _remove_objects):
        newest = _newest(_backups(folder))
        damage(newest)
        caplog.clear()
        resumed = _tiny_model()
        with caplog.at_level(logging.INFO, logger="asd_keras"):
            history = resumed.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
                AtomicBackupAndRestore(folder, delete_checkpoint=False)])
        out = caplog.text
        assert f"'{newest}' cannot be loaded" in out and "after epoch 2" in out
        assert len(history.history["loss"]) == 1  # only epoch 3 again
    # When no backup loads, training starts over from the model's own weights
    # rather than from a half-loaded mixture.
    for path in _backups(folder):
        _remove_objects(path)
    fresh = _tiny_model()
    before = [v.numpy().copy() for v in fresh.weights]
    callback = AtomicBackupAndRestore(folder, delete_checkpoint=False)
    callback.set_model(fresh)
    with caplog.at_level(logging.INFO, logger="asd_keras"):
        callback.on_train_begin()
    assert "trains from the first epoch" in caplog.text
    assert getattr(fresh, "_initial_epoch", None) in (None, 0) and not _backups(folder)
    for value, variable in zip(before, fresh.weights):
        np.testing.assert_array_equal(value, variable.numpy())


def _start(args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    # As a command started from a terminal: a test session launched in the
    # background of a script (`make test &`) ignores SIGINT, the child would
    # inherit that, and Python then installs no KeyboardInterrupt handler.
    # -X faulthandler: a crash (SIGSEGV, abort) prints the Python stack.
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "asd_keras", *args],
                            cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# Batches of 4 vectors make about 30 steps per epoch: the first backup comes
# seconds before the run could end by itself, so the signal lands in training
# even when this process is slow to poll on a loaded CPU.
EPOCHS = 12
SIGINT_GAN_ARGS = [f"{k}={v}" for k, v in {**TINY_GAN, "batch_size": 4}.items()]
# Where `asd-keras train --out run` backs up the GAN of machine type fan.
GAN_BACKUP = Path("run.checkpoints") / "training" / "member0_fan" / "backup"


@pytest.fixture(scope="module")
def signalled_runs(dev, tmp_path_factory):
    """Two real `asd-keras train` processes, signalled while they train.

    `sigint`: a GAN run, Ctrl-C once its first epoch is backed up. `sigterm`:
    a dense AE run, SIGTERM once its staging folder holds the cache folder.
    Both start together, so their TensorFlow imports overlap.
    """
    base = tmp_path_factory.mktemp("signals")
    runs = {
        "sigint": dict(folder=base / "sigint", signal=signal.SIGINT, args=[
            "--system", "ganomaly", "--epochs", str(EPOCHS), *SIGINT_GAN_ARGS]),
        "sigterm": dict(folder=base / "sigterm", signal=signal.SIGTERM, args=[
            "--system", "dense_ae", "--epochs", "100000", "batch_size=64",
            "hidden_units=8", "num_hidden_layers=1", "latent_dim=2"]),
    }
    ready = {
        "sigint": lambda f: bool(_backups(f / GAN_BACKUP)),
        "sigterm": lambda f: any(f.glob("run.partial-*/cache-*")),
    }
    for name, run in runs.items():
        run["folder"].mkdir()
        run["args"] = ["train", "--data", str(dev), "--out", str(run["folder"] / "run"),
                       "--verbose", "0", *run["args"]]
        run["process"] = _start(run["args"])
    pending = set(runs)
    # Generous: on a loaded 2-core machine (the other test worker and these
    # two processes all importing TensorFlow) the first backup can take
    # minutes; a run still waiting then is stopped and reported, not left to
    # finish by itself (which would read as "the signal did nothing").
    started = time.monotonic()
    while pending and time.monotonic() < started + 300:
        for name in sorted(pending):
            run = runs[name]
            if ready[name](run["folder"]):
                run["process"].send_signal(run["signal"])
                run["signalled_after"] = time.monotonic() - started
                pending.discard(name)
            elif run["process"].poll() is not None:
                pending.discard(name)  # ended by itself; its test reports how
        time.sleep(0.05)
    for name in pending:
        runs[name]["process"].kill()
        runs[name]["never_ready"] = True
    for run in runs.values():
        try:
            run["out"], run["err"] = run["process"].communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run["process"].kill()
            run["out"], run["err"] = run["process"].communicate()
        run["returncode"] = run["process"].returncode
    return runs


def test_sigint_during_cli_training_then_the_same_command_resumes(signalled_runs, capsys):
    run = signalled_runs["sigint"]
    folder = run["folder"]
    assert not run.get("never_ready"), "no backup within 300 s: " + run["err"][-2000:]
    assert "signalled_after" in run, "the run ended before its first backup: " + run["err"]
    assert run["returncode"] == 130, (
        f"signalled {run['signalled_after']:.1f} s after the start: " + run["err"][-2000:])
    assert "interrupted; rerun the same command to resume" in run["err"]
    assert "Traceback" not in run["err"]
    assert not (folder / "run").exists() and not list(folder.glob("run.partial-*"))
    assert _backups(folder / GAN_BACKUP)
    capsys.readouterr()
    assert cli.main(run["args"]) == 0  # the same command again
    assert "Resuming 'ganomaly_member0_fan' after epoch" in capsys.readouterr().out
    history = pd.read_csv(folder / "run" / "history" / "member0_fan.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert not (folder / "run.checkpoints").exists()


# ----------------------------------------------------------------------
# Part 3: no staging folder left behind
# ----------------------------------------------------------------------


def test_sigterm_during_training_removes_the_staging_folder(signalled_runs):
    run = signalled_runs["sigterm"]
    assert not run.get("never_ready"), "no cache folder within 300 s: " + run["err"][-2000:]
    assert run["returncode"] == 143, run["err"]
    assert "terminated" in run["err"] and "Traceback" not in run["err"]
    assert not list(run["folder"].glob("run.partial-*"))
    assert not (run["folder"] / "run").exists()


def test_staging_folders_of_dead_processes_are_removed(tmp_path):
    from asd_keras.utils.io import staged_dir

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = int(finished.stdout)  # reaped: no process has this pid now
    live = os.getppid()
    stale = [tmp_path / f"result.partial-{dead}", tmp_path / f"result.replaced-{dead}"]
    kept = [tmp_path / f"result.partial-{live}", tmp_path / f"other.partial-{dead}",
            tmp_path / f"result.partial-{dead}x"]
    for folder in stale + kept:
        (folder / "cache").mkdir(parents=True)
        (folder / "cache" / "data").write_text("x")
    with staged_dir(tmp_path / "result") as stage:
        (stage / "v.txt").write_text("1")
    assert (tmp_path / "result" / "v.txt").read_text() == "1"
    assert not any(folder.exists() for folder in stale)
    assert all((folder / "cache" / "data").is_file() for folder in kept)


@pytest.mark.parametrize("system, hint", [("ganomaly", True), ("dense_ae", True),
                                          ("logmel_stats", False)])
def test_ctrl_c_exits_130_with_a_message_instead_of_a_traceback(system, hint, dev, tmp_path,
                                                                 monkeypatch, capsys):
    system_cls = get_system(system)

    def interrupted(self, table, run_dir, **kwargs):
        (Path(run_dir) / "half-written.csv").write_text("a\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(system_cls, "fit", interrupted)
    run = tmp_path / "run"
    try:
        epochs = ["--epochs", "1"] if hint else []  # logmel_stats trains nothing
        code = cli.main(["train", "--system", system, "--data", str(dev), "--out", str(run),
                         *epochs, "--verbose", "0"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main() as a traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert ("rerun the same command to resume" in err) == hint
    assert not run.exists() and not list(tmp_path.glob("run.partial-*"))
