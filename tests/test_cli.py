"""End to end through the command-line program, as a user runs it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.helpers import assert_close_to_scale
from tests.helpers import assert_decisions_match

from asd_keras import runs
from asd_keras.cli import main


def _run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    data = base / "data"
    assert _run("synth", "--out", data, "--layout", "dcase2022", "--machines", "fan", "valve",
                "--seconds", 1, "--train", 8, "--target-train", 2, "--test", 3, "--eval") == 0
    run = base / "run"
    assert _run("train", "--system", "dense_ae", "--data", data / "dev_data", "--out", run,
                "--epochs", 2, "--verbose", 0, "batch_size=64", "hidden_units=32",
                # Few steps per epoch: one step per call traces the training
                # step once, not twice (Keras' multi-step loop).
                "validation_split=0.1", "steps_per_execution=1") == 0
    return base, data, run


def test_run_folder_records_what_produced_it(pipeline):
    _, _, run = pipeline
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 13711
    assert record["environment"]["packages"]["tensorflow"].startswith("2.21")
    config = (run / "config.yaml").read_text()
    assert "hidden_units: 32" in config and "system: dense_ae" in config
    assert (run / "members" / "member0" / "extractors" / "fan" / "model.keras").is_file()
    assert (run / "data_summary.csv").is_file()
    assert not list(run.parent.glob("run.partial-*"))


def test_probe_on_the_dense_ae_error_vectors(pipeline):
    base, data, run = pipeline
    out = base / "probe"
    assert _run("probe", "--run", run, "--data", data / "dev_data", "--out", out) == 0
    probe = pd.read_csv(out / "probe.csv", dtype={"section": str})
    assert list(probe["machine_type"]) == ["fan"] * 3 + ["valve"] * 3 + ["mean"]
    values = probe[["lp_in_domain_auc", "lp_out_domain_auc", "md_auc"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert not list(out.glob("anomaly_score_*"))


def test_existing_run_is_not_overwritten(pipeline, capsys):
    _, data, run = pipeline
    before = (run / "run.json").read_text()
    code = _run("train", "--system", "dense_ae", "--data", data / "dev_data", "--out", run,
                "--epochs", 1)
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (run / "run.json").read_text() == before


def test_score_and_evaluate_dev(pipeline, capsys):
    base, data, run = pipeline
    scores = base / "scores_dev"
    assert _run("score", "--run", run, "--data", data / "dev_data", "--out", scores) == 0
    files = sorted(p.name for p in scores.glob("*_test.csv"))
    assert "anomaly_score_fan_section_00_test.csv" in files
    assert "decision_result_valve_section_02_test.csv" in files
    rows = pd.read_csv(scores / "anomaly_score_fan_section_01_test.csv", header=None)
    assert rows.shape == (12, 2) and rows[0].is_monotonic_increasing
    assert np.isfinite(rows[1]).all()
    capsys.readouterr()
    assert _run("evaluate", "--scores", scores, "--data", data / "dev_data") == 0
    out = capsys.readouterr().out
    assert "official score:" in out and "AUC (source)" in out
    result = pd.read_csv(scores / "evaluation" / "result.csv")
    assert len(result) == 6 + 2
    official = json.loads((scores / "evaluation" / "official_score.json").read_text())
    assert 0.0 < official["official_score"] <= 1.0


def test_evaluate_with_official_ground_truth(pipeline, capsys):
    base, data, run = pipeline
    scores = base / "scores_eval"
    assert _run("score", "--run", run, "--data", data / "eval_data", "--out", scores) == 0
    assert _run("evaluate", "--scores", scores, "--ground-truth", data / "ground_truth",
                "--year", 2022) == 0
    assert "official score:" in capsys.readouterr().out
    # A score file that lost a clip no longer matches the ground truth.
    broken = base / "scores_broken"
    broken.mkdir()
    for path in scores.glob("*_test.csv"):
        lines = path.read_text().splitlines()
        if "fan_section_03" in path.name:
            lines = lines[1:]
        (broken / path.name).write_text("\n".join(lines) + "\n")
    assert _run("evaluate", "--scores", broken, "--ground-truth", data / "ground_truth") == 2
    err = capsys.readouterr().err
    assert "do not match" in err and "section_03" in err
    assert not (broken / "evaluation").exists()
    # Eval names carry no labels.
    assert _run("evaluate", "--scores", scores, "--data", data / "eval_data") == 2
    assert "--ground-truth" in capsys.readouterr().err


# A fresh process serves every system's export in tests/test_served_parity.py.
def test_export_serves_the_scores_of_score(pipeline):
    import soundfile
    import tensorflow as tf

    base, data, run = pipeline
    export = base / "export"
    assert _run("export", "--run", run, "--out", export) == 0
    manifest = json.loads((export / "asd_keras_export.json").read_text())
    assert manifest["machine_types"] == ["fan", "valve"]
    assert manifest["inputs"] == ["waveform", "machine_type"]
    scores = base / "scores_for_export"
    assert _run("score", "--run", run, "--data", data / "dev_data", "--out", scores) == 0
    expected = pd.read_csv(scores / "scores.csv")
    fan = expected[expected["machine_type"] == "fan"].head(6)
    paths = [str(next((data / "dev_data" / "fan").rglob(n))) for n in fan["file_name"]]
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])
    out = tf.saved_model.load(str(export)).signatures["serving_default"](
        waveform=tf.constant(waves), machine_type=tf.constant("fan"))
    served, decisions = out["anomaly_score"].numpy(), out["decision"].numpy()
    assert_close_to_scale(served, fan["score"])
    threshold = json.loads((Path(run) / "thresholds.json").read_text())
    assert_decisions_match(decisions, fan["decision"], fan["score"], threshold["fan"])


def test_overrides_before_and_after_the_options_are_all_read(pipeline, tmp_path, capsys):
    _, data, _ = pipeline
    # Two groups of overrides, each after an option other than --data.
    code = _run("train", "--system", "dense_ae", "--data", data / "dev_data", "--verbose", 0,
                "hidden_units=8", "--out", tmp_path / "run", "nonsense_key=1")
    assert code == 2
    err = capsys.readouterr().err
    assert "Unknown configuration key(s) ['nonsense_key']" in err
    with pytest.raises(SystemExit):
        _run("train", "--system", "dense_ae", "--data", data / "dev_data", "--out",
             tmp_path / "run", "--bogus")
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_with_score_out_scores_in_the_same_process(pipeline, tmp_path, capsys):
    base, data, _ = pipeline
    run, scores = tmp_path / "run", tmp_path / "scores"
    command = ["train", "--system", "dense_ae", "--data", data / "dev_data", "--out", run,
               "--epochs", 1, "--verbose", 0, "batch_size=64", "hidden_units=16",
               "steps_per_execution=1", "--score-out", scores]
    assert _run(*command) == 0
    # The same files as a separate `score` of the run writes.
    assert _run("score", "--run", run, "--data", data / "dev_data", "--out",
                tmp_path / "scored_later") == 0
    together = pd.read_csv(scores / "scores.csv")
    later = pd.read_csv(tmp_path / "scored_later" / "scores.csv")
    assert sorted(p.name for p in scores.glob("*_test.csv")) == sorted(
        p.name for p in (tmp_path / "scored_later").glob("*_test.csv"))
    assert list(together["file_name"]) == list(later["file_name"])
    np.testing.assert_allclose(together["score"], later["score"], rtol=1e-5)
    assert json.loads((scores / "run.json").read_text())["seed"] == 13711

    # Stopped after the run was written: the same command scores it without
    # training again.
    import shutil

    shutil.rmtree(scores)
    trained = (run / "run.json").read_text()
    capsys.readouterr()
    assert _run(*command) == 0
    assert "is finished (same system, data and configuration); scoring it" in (
        capsys.readouterr().out)
    assert (run / "run.json").read_text() == trained
    pd.testing.assert_frame_equal(pd.read_csv(scores / "scores.csv"), together)

    # Both written: nothing is replaced without --force; another
    # configuration in the same folder is refused, not scored.
    assert _run(*command) == 2
    assert "--force" in capsys.readouterr().err
    shutil.rmtree(scores)
    other = ["hidden_units=8" if c == "hidden_units=16" else c for c in command]
    assert _run(*other) == 2
    assert "--force" in capsys.readouterr().err and not scores.exists()


def test_score_out_checks_come_before_training(pipeline, tmp_path, capsys):
    _, data, _ = pipeline
    base = ["train", "--system", "dense_ae", "--out", tmp_path / "run", "--epochs", 1]
    assert _run(*base, "--data", data / "dev_data", data / "eval_data",
                "--score-out", tmp_path / "s") == 2
    assert "name the one whose test clips are scored with --score-data" in (
        capsys.readouterr().err)
    assert _run(*base, "--data", data / "dev_data", "--score-data", data / "eval_data") == 2
    assert "--score-data" in capsys.readouterr().err
    assert _run(*base, "--data", data / "dev_data", "--score-out", tmp_path / "run") == 2
    assert "would delete the run" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# The dense AE system behind the CLI: the run trained by `pipeline`, loaded
# as the Python API loads it.
@pytest.fixture(scope="module")
def trained(pipeline):
    from asd_keras.data.layouts import read_dataset

    _, data, run = pipeline
    system = runs.load_run(run)[0]
    train_scores = pd.read_csv(run / "train_scores.csv")
    return system, read_dataset(data / "dev_data"), run, train_scores


def test_system_fit_score_and_reload(trained):
    system, table, run_dir, train_scores = trained
    assert set(train_scores["group"]) == {"fan", "valve"}
    history = pd.read_csv(run_dir / "history" / "member0_fan.csv")
    assert np.isfinite(history["loss"]).all() and "val_loss" in history
    assert list(history["epoch"]) == [1, 2]
    scores = system.score(table)
    test = table[table["split"] == "test"]
    assert list(scores["file_name"]) == list(test["file_name"])
    assert np.isfinite(scores["score"]).all() and (scores["score"] > 0).all()
    assert set(scores["decision"]) <= {0, 1}
    # MSE = the mean of the clip-mean squared residual (reference dcase.md 2.4).
    errors = system.features(test)
    assert errors.shape == (len(test), 640)
    np.testing.assert_allclose(errors.mean(axis=1), scores["score"], rtol=1e-5)
    reloaded = type(system).load(run_dir, system.config)
    again = reloaded.score(table)
    np.testing.assert_allclose(again["score"], scores["score"], rtol=1e-6)
    assert all(v > 0 for v in system.thresholds.values())
    assert sorted(p.name for p in (run_dir / "members" / "member0" / "extractors").iterdir()) \
        == ["fan", "valve"]


def test_mse_score_matches_the_model_on_pipeline_features(trained):
    import tensorflow as tf

    from asd_keras.data.audio import AudioLoader

    system, table, _, _ = trained
    rows = table[(table["split"] == "test") & (table["machine_type"] == "fan")].iloc[:1]
    path = rows["path"].iloc[0]
    loader = AudioLoader()
    loader.check([path])
    extractor = system.members[0].extractors["fan"]
    vectors = extractor.frontend.vectors(loader.load(tf.constant(path))).numpy()
    residual = vectors - extractor.model.predict(vectors, verbose=0)
    features = extractor.transform(rows)
    assert features["squared_error"][0].mean() == pytest.approx(np.mean(residual ** 2),
                                                                rel=1e-5)
    np.testing.assert_allclose(features["residual"][0],
                               residual.reshape(-1, 128).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_mahala_covariance_from_the_frame_level_residuals(trained):
    """The backend's precisions are the inverses of the baseline's batch-centred
    covariances over the extractor's frame batches (reference dcase.md 3)."""
    from asd_keras.backends import get_backend
    from asd_keras.backends.mahalanobis import ResidualCovariance

    system, table, _, _ = trained
    rows = table[(table["split"] == "train") & (table["machine_type"] == "fan")]
    rows = rows.reset_index(drop=True)
    extractor = system.members[0].extractors["fan"]
    batches = list(extractor.frame_batches(rows, "residual"))
    again = list(extractor.frame_batches(rows, "residual"))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    assert batches[0][0].shape[1:] == (5, 128)
    assert sum(len(r) for _, r in batches) == len(rows) * 28  # 1 s clips: 28 vectors
    target = (rows["domain"] == "target").to_numpy()
    accumulator = ResidualCovariance(128)
    for values, clip_rows in batches:
        accumulator.update(values.reshape(len(values), -1), target[clip_rows])
    backend = get_backend("mahala").fit_frames(batches, rows[["domain"]])
    np.testing.assert_allclose(backend.arrays["precisions"], accumulator.inverses(),
                               rtol=1e-5, atol=1e-6)
    clip = np.random.default_rng(0).normal(size=(3, 128)).astype("float32")
    expected = np.einsum("bi,kij,bj->bk", clip, accumulator.inverses(), clip).min(axis=1)
    np.testing.assert_allclose(backend.score(clip), expected, rtol=1e-4)


def test_unknown_machine_type_at_scoring(trained):
    system, table, _, _ = trained
    other = table.copy()
    other.loc[:, "machine_type"] = "pump"
    with pytest.raises(ValueError, match="pump"):
        system.score(other)
