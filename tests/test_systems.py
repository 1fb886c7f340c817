"""The shared system layer (extractor x backend) end to end through the CLI,
on the plain layout of a user's own recordings. Every system's SavedModel is
checked against `score` in tests/test_served_parity.py."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.cli import main
from asd_keras.systems import SYSTEMS
from asd_keras.systems import AnomalySystem
from asd_keras.systems import get_system


def _clip(path, freq, rng, seconds=1.0):
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """pump/: 12 normal training clips (440 Hz) and 6 + 6 labelled test clips,
    the anomalies with an extra 3 kHz whine; arbitrary file names."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for i in range(12):
        _clip(root / "pump" / "train" / f"rec {i}.wav", 440 + rng.uniform(-5, 5), rng)
    rows = ["file_name,label"]
    for i in range(6):
        _clip(root / "pump" / "test" / f"n{i}.wav", 440, rng)
        rows.append(f"n{i}.wav,normal")
        name = root / "pump" / "test" / f"a{i}.wav"
        _clip(name, 440, rng)
        wave, sr = soundfile.read(name)
        t = np.arange(wave.size) / sr
        soundfile.write(name, (wave + 0.2 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32),
                        sr, subtype="PCM_16")
        rows.append(f"a{i}.wav,anomaly")
    (root / "pump" / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _run(*args):
    return main([str(a) for a in args])


@pytest.mark.parametrize("overrides", [[], ["backend=mahalanobis_domain", "covariance=oas"],
                                       ["backend=knn", "k=2", "local_density=ratio"]])
def test_train_score_evaluate_own_recordings(recordings, tmp_path, overrides):
    run, scores = tmp_path / "run", tmp_path / "scores"
    assert _run("train", "--system", "logmel_stats", "--data", recordings, "--out", run,
                *overrides) == 0
    assert (run / "members" / "member0" / "backends" / "pump_section_00"
            / "arrays.npz").is_file()
    assert _run("score", "--run", run, "--data", recordings, "--out", scores) == 0
    table = pd.read_csv(scores / "scores.csv")
    assert len(table) == 12 and np.isfinite(table["score"]).all()
    anomalous = table["file_name"].str.startswith("a")
    # The whine is far outside the training statistics.
    assert table.loc[anomalous, "score"].min() > table.loc[~anomalous, "score"].max()
    assert _run("evaluate", "--scores", scores, "--data", recordings) == 0
    result = pd.read_csv(scores / "evaluation" / "result.csv")
    assert result["AUC (source)"].iloc[0] == pytest.approx(1.0)


def test_cross_fitted_thresholds_and_machine_overrides(recordings, tmp_path):
    from asd_keras.backends import get_backend
    from asd_keras.data.layouts import read_dataset
    from asd_keras.systems.threshold import gamma_threshold

    table = read_dataset(recordings)
    cls = get_system("logmel_stats")
    system = cls({"backend": "knn", "machine_overrides": {"pump": {"k": 3}}})
    assert system.cross_fitted  # auto: a memory bank scores a clip against itself
    assert not cls({"backend": "knn", "threshold_scores": "train"}).cross_fitted
    assert not cls({"backend": "mahalanobis"}).cross_fitted
    system.fit(table, tmp_path / "run", verbose=0)
    backend = system.members[0].backends["pump_section_00"]
    assert backend.k == 3
    # By hand: alternate clips form two folds, each scored by a bank of the other.
    train = table[table["split"] == "train"].reset_index(drop=True)
    features = system.features(train)
    fold = np.arange(len(train)) % 2
    scores = np.zeros(len(train))
    for f in (0, 1):
        bank = get_backend("knn", k=3).fit(features[fold != f],
                                           pd.DataFrame({"domain": ["source"] * 6}))
        scores[fold == f] = bank.score(features[fold == f])
    assert system.thresholds["pump_section_00"] == pytest.approx(
        gamma_threshold(scores, 0.9), rel=1e-6)
    with pytest.raises(ValueError, match="extractor_grouping='all'"):
        cls({"machine_overrides": {"pump": {"n_mels": 64}}})
    with pytest.raises(ValueError, match="grouping='all' fits one backend"):
        cls({"grouping": "all", "machine_overrides": {"pump": {"covariance": "oas"}}})
    # Errors of a group's backend name the group (and the cross-fitting).
    with pytest.raises(ValueError, match=r"Group 'pump_section_00' \(12 training clips\): "
                                         "The source bank holds 12 clip"):
        cls({"backend": "knn", "k": 50}).fit(table, tmp_path / "k50", verbose=0)
    with pytest.raises(ValueError, match="half of its 12 training clips.*threshold_scores=train"):
        cls({"backend": "knn", "k": 7}).fit(table, tmp_path / "k7", verbose=0)
    with pytest.raises(ValueError, match="seed is one per run"):
        cls({"machine_overrides": {"pump": {"seed": 3}}})
    with pytest.raises(ValueError, match=r"machine_overrides\['pump'\]: k must be an integer >= 1; received 0"):
        cls({"backend": "knn", "machine_overrides": {"pump": {"k": 0}}})
    with pytest.raises(ValueError, match=r"key\(s\) \['kk'\]"):
        cls({"machine_overrides": {"pump": {"kk": 1}}})


def test_config_errors_before_any_work(recordings, tmp_path, capsys):
    cls = get_system("logmel_stats")
    with pytest.raises(ValueError, match=r"Unknown configuration key\(s\) \['kk'\]"):
        cls({"kk": 1})
    with pytest.raises(ValueError, match="Unknown backend 'nope'"):
        cls({"backend": "nope"})
    with pytest.raises(ValueError, match="grouping"):
        cls({"grouping": "machine"})
    assert _run("train", "--system", "logmel_stats", "--data", recordings,
                "--out", tmp_path / "run", "n_mels=0") == 2
    assert not (tmp_path / "run").exists()
    capsys.readouterr()


def test_systems_verb_lists_every_system_and_component(capsys):
    assert _run("systems") == 0
    out = capsys.readouterr().out
    for name in SYSTEMS.names():
        assert f"system {name}:" in out
    assert "extractor logmel_stats:" in out and "backend mahalanobis:" in out
    assert "    grouping = 'section'" in out
    assert issubclass(get_system("logmel_stats"), AnomalySystem)


def test_probe_writes_lp_and_md_aucs_and_no_submission(recordings, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "probe"
    assert _run("train", "--system", "logmel_stats", "--data", recordings, "--out", run) == 0
    assert _run("probe", "--run", run, "--data", recordings, "--out", out) == 0
    result = pd.read_csv(out / "probe.csv")
    row = result[result["machine_type"] == "pump"].iloc[0]
    assert row["n_test"] == 12
    assert row["md_auc"] == pytest.approx(1.0)
    assert 0.0 <= row["lp_in_domain_auc"] <= 1.0
    assert np.isnan(row["lp_out_domain_auc"])  # one section: nothing to leave out
    assert not list(out.glob("anomaly_score_*"))
    # --force must never delete the run it reads.
    for verb, extra in (("probe", ["--data", recordings]), ("score", ["--data", recordings]),
                        ("export", [])):
        assert _run(verb, "--run", run, *extra, "--out", run, "--force") == 2
        assert "would delete the run" in capsys.readouterr().err
    assert (run / "thresholds.json").is_file()
    # Unlabelled test clips cannot be probed.
    bare = tmp_path / "bare"
    for split in ("train", "test"):
        (bare / "pump" / split).mkdir(parents=True)
        for f in (recordings / "pump" / split).glob("*.wav"):
            (bare / "pump" / split / f.name).write_bytes(f.read_bytes())
    capsys.readouterr()
    assert _run("probe", "--run", run, "--data", bare, "--out", tmp_path / "p2") == 2
    assert "labelled test clips" in capsys.readouterr().err


def test_caching_features_runs_each_clip_through_the_extractor_once(recordings, tmp_path,
                                                                    monkeypatch):
    from asd_keras.data.layouts import read_dataset
    from asd_keras.extractors.logmel_stats import LogMelStatsExtractor

    table = read_dataset(recordings)
    test = table[table["split"] == "test"].reset_index(drop=True)
    calls = []
    original = LogMelStatsExtractor.transform

    def counting(self, rows, verbose=0):
        calls.append(len(rows))
        return original(self, rows, verbose)

    monkeypatch.setattr(LogMelStatsExtractor, "transform", counting)
    system = get_system("logmel_stats")({})
    with system.caching_features():
        system.fit(table, tmp_path / "run", verbose=0)
        train_features = system.features(table[table["split"] == "train"])
        first = system.features(test.head(4))
        both = system.features(test)  # only the 8 clips not seen yet are computed
    assert calls == [12, 4, 8]
    uncached = system.features(test)  # the block has ended
    assert calls == [12, 4, 8, 12]
    np.testing.assert_allclose(both, uncached, rtol=1e-6)
    np.testing.assert_allclose(first, uncached[:4], rtol=1e-6)
    assert train_features.shape[0] == 12
