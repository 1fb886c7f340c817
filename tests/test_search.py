"""`asd-keras search` on KerasTuner oracles: the space spec, the four oracles,
resume after interrupts, and bad input. The trials train `logmel_stats` (no
network: about a second each) or, for Hyperband, which needs epochs, a tiny
dense AE."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import make_synthetic

from asd_keras import cli
from asd_keras.evaluation.metrics import official_score
from asd_keras.runners import search
from asd_keras.runners.search_space import SearchSpace
from asd_keras.runners.search_space import grid_size
from asd_keras.runners.search_space import load_search_spec
from asd_keras.systems import get_system

ROOT = Path(__file__).resolve().parents[1]
FAST = {"n_mels": 32}  # logmel_stats: mean and std of 32 log-mel bands


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("search_data"), "dcase2020",
                          machine_types=("fan",), eval=False)
    return str(root / "dev_data")


def _space_file(folder, space, base=None):
    path = Path(folder) / "space.yaml"
    path.write_text(yaml.safe_dump({"base": base or {}, "space": space}, sort_keys=False))
    return str(path)


def _recording_fit(monkeypatch, system, keys, interrupt_at=None):
    """Wraps the system's fit: records each trained point of `keys`, raises
    KeyboardInterrupt (a Ctrl-C) in the `interrupt_at`-th fit."""
    cls = get_system(system)
    original = cls.fit
    trained = []

    def fit(self, table, run_dir, **kwargs):
        trained.append({k: self.config[k] for k in keys})
        if interrupt_at is not None and len(trained) == interrupt_at:
            raise KeyboardInterrupt
        return original(self, table, run_dir, **kwargs)

    monkeypatch.setattr(cls, "fit", fit)
    return trained


def hp_of(hps, name):
    return next(hp for hp in hps.space if hp.name == name)


def test_space_spec_maps_to_keras_tuner_hyperparameters(tmp_path):
    space = SearchSpace({
        "latent_dim": [8, 16], "initializer": ["glorot_uniform", "random_normal"],
        "dropout": [0.0, 0.5], "flag": [True, False], "mixed": [1, 2.5, None],
        "hidden": [[64, 64], [128]],
        "learning_rate": {"min": 1.0e-4, "max": 1.0e-2, "sampling": "log"},
        "units": {"min": 16, "max": 64, "step": 16}})
    hps = space.hyperparameters()
    kinds = {hp.name: type(hp).__name__ for hp in hps.space}
    assert kinds == {"latent_dim": "Choice", "initializer": "Choice", "dropout": "Choice",
                     "flag": "Choice", "mixed": "Choice", "hidden": "Choice",
                     "learning_rate": "Float", "units": "Int"}
    # Plain lists are the choices; booleans, mixed types, null and lists
    # travel as JSON text and come back as they were written.
    assert list(hp_of(hps, "latent_dim").values) == [8, 16]
    assert list(hp_of(hps, "flag").values) == ["true", "false"]
    assert space.point({"flag": "false", "mixed": "2.5", "hidden": "[64, 64]",
                        "latent_dim": 16, "tuner/epochs": 3}) == {
        "latent_dim": 16, "flag": False, "mixed": 2.5, "hidden": [64, 64]}
    assert hp_of(hps, "learning_rate").sampling == "log"
    assert list(hp_of(hps, "units").values) == [16, 32, 48, 64]
    assert space.largest("units") == 64 and space.largest("latent_dim") == 16
    assert grid_size(space.hyperparameters(exclude=("learning_rate",))) == 2 ** 5 * 3 * 4
    # Today's spec files keep working, Table 3's full grid included.
    table3, base = load_search_spec(ROOT / "experiments/gan_detectors/search_table3.yaml")
    assert base == {} and grid_size(SearchSpace(table3).hyperparameters()) == (
        4 * 3 * 3 * 3 * 2 * 2 * 2 * 2 * 2 * 2 * 6)
    small, base = load_search_spec(ROOT / "experiments/gan_detectors/search_small.yaml")
    assert set(small) == {"num_hidden_layers", "w_adv", "w_con", "w_enc"} and base["epochs"] == 3


@pytest.mark.parametrize("space, message", [
    ({}, "non-empty mapping"),
    ({"a": []}, "'a' must hold a non-empty list"),
    ({"a": [1, 1]}, "'a' repeats a value"),
    ({"lr": {"min": 0.1}}, "'lr': a range is a mapping with 'min' and 'max'"),
    ({"lr": {"min": "1e-4", "max": 0.1}}, "YAML reads 1e-4 as text"),
    ({"lr": {"min": 0.0, "max": 0.1, "sampling": "log"}}, "log sampling needs min > 0"),
    ({"lr": {"min": 0.1, "max": 0.1}}, "min must be below max"),
    ({"lr": {"min": 0.1, "max": 1.0, "sampling": "exp"}}, "sampling must be one of"),
])
def test_bad_spaces_name_the_key_and_the_fix(space, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        SearchSpace(space)
    with pytest.raises(ValueError, match=message):
        load_search_spec(_space_file(tmp_path, space))


@pytest.mark.parametrize("oracle, space, budget, protocol", [
    ("grid", {"covariance": ["ledoit_wolf", "empirical"]}, None, "test"),
    ("random", {"n_mels": [16, 32, 48], "covariance": ["ledoit_wolf", "empirical"]}, 2,
     "holdout"),
    # One key: 3 random points, then the Gaussian process proposes the 4th.
    ("bayesian", {"n_mels": {"min": 16, "max": 64, "step": 16}}, 4, "holdout"),
])
def test_oracles_write_trials_and_best_config(oracle, space, budget, protocol, dev, tmp_path,
                                              monkeypatch):
    trained = _recording_fit(monkeypatch, "logmel_stats", list(space))
    out = tmp_path / "search"
    args = ["search", "--system", "logmel_stats", "--space", _space_file(tmp_path, space, FAST),
            "--data", dev, "--out", str(out), "--oracle", oracle, "--protocol", protocol]
    assert cli.main(args + (["--budget", str(budget)] if budget else [])) == 0
    trials = pd.read_csv(out / "trials.csv", dtype={"point": str})
    assert list(trials.columns) == ["trial", "machine_type", *search._METRICS, "objective",
                                    *space, "point"]
    points = [json.loads(p) for p in trials["point"]]
    # Every trained point is a row, none trained twice.
    assert points == trained and len({json.dumps(p) for p in points}) == len(points)
    assert trials["trial"].tolist() == list(range(len(trials)))
    if oracle == "grid":  # in the listed order
        assert [p["covariance"] for p in points] == ["ledoit_wolf", "empirical"]
    else:
        assert 1 <= len(trials) <= budget
    # The objective is the harmonic mean of the selection part's values only.
    for _, row in trials.iterrows():
        assert row["objective"] == pytest.approx(
            official_score([row["select_AUC"], row["select_pAUC"]]))
        if protocol == "test":  # the paper's protocol: one part for both
            assert row["select_AUC"] == row["report_AUC"]
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    chosen = search.select_best(trials).iloc[0]
    assert best["machine_overrides"] == {"fan": json.loads(chosen["point"])}
    assert best["n_mels"] == 32 and best["seed"] == 0
    assert f"({oracle} oracle" in (out / "best.md").read_text()
    assert json.loads((out / "search.json").read_text())["oracle"] == oracle
    if oracle == "grid":  # --force starts the search anew
        assert cli.main(args + ["--force"]) == 0
        assert trained == points + points
        assert sorted(p.name for p in tmp_path.iterdir()) == ["search", "space.yaml"]


def test_interrupted_search_resumes_without_retraining(dev, tmp_path, monkeypatch):
    space = {"n_mels": [16, 32, 48, 64], "covariance": ["ledoit_wolf", "empirical"]}
    out = tmp_path / "search"
    args = ["search", "--system", "logmel_stats", "--space", _space_file(tmp_path, space),
            "--data", dev, "--out", str(out), "--oracle", "random", "--budget", "3"]
    # 1. Ctrl-C while the second trial trains.
    first = _recording_fit(monkeypatch, "logmel_stats", list(space), interrupt_at=2)
    assert cli.main(args) == 130
    assert pd.read_csv(out / "trials.csv")["trial"].tolist() == [0]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial0000"]
    monkeypatch.undo()
    # 2. Ctrl-C just after trials.csv took the second trial, before the
    # oracle heard of it.
    original = search.atomic_write_dataframe

    def write_then_interrupt(path, frame, **kwargs):
        original(path, frame, **kwargs)
        if Path(path).name == "trials.csv" and frame["trial"].nunique() == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(search, "atomic_write_dataframe", write_then_interrupt)
    second = _recording_fit(monkeypatch, "logmel_stats", list(space))
    assert cli.main(args) == 130
    assert second == first[1:2]  # the interrupted trial, trained again from the start
    monkeypatch.undo()
    # 3. The same command finishes the search: one trial is left to train.
    monkeypatch.undo()
    third = _recording_fit(monkeypatch, "logmel_stats", list(space))
    assert cli.main(args) == 0
    assert len(third) == 1
    # 4. A larger budget continues the finished search.
    monkeypatch.undo()
    fourth = _recording_fit(monkeypatch, "logmel_stats", list(space))
    assert cli.main(args[:-1] + ["4"]) == 0
    assert len(fourth) == 1
    trials = pd.read_csv(out / "trials.csv", dtype={"point": str})
    assert trials["trial"].tolist() == [0, 1, 2, 3]
    trained = first[:1] + second + third + fourth
    assert [json.loads(p) for p in trials["point"]] == trained
    assert len({json.dumps(p) for p in trained}) == 4  # no point trained twice
    # Nothing left to train: the same command only replays.
    monkeypatch.undo()
    fifth = _recording_fit(monkeypatch, "logmel_stats", list(space))
    assert cli.main(args[:-1] + ["4"]) == 0
    assert fifth == []
    # Another seed or oracle is another search: --force, or another folder.
    assert cli.main(args[:-2] + ["--oracle", "grid"]) == 2


def test_hyperband_spends_epochs(dev, tmp_path, monkeypatch):
    space = {"epochs": [1, 3], "latent_dim": [2, 4],
             "learning_rate": {"min": 1.0e-4, "max": 1.0e-2, "sampling": "log"}}
    # One small hidden layer and no validation split: a few seconds a trial,
    # most of it graph tracing.
    base = {"batch_size": 64, "hidden_units": 8, "num_hidden_layers": 1,
            "validation_split": 0.0, "steps_per_execution": 1}
    trained = _recording_fit(monkeypatch, "dense_ae", list(space))
    out = tmp_path / "search"
    # max_epochs 3, factor 3: three points for 1 epoch, the best of them for
    # 3 (the budget stops there; the full iteration has 6 trials).
    assert cli.main(["search", "--system", "dense_ae", "--space",
                     _space_file(tmp_path, space, base), "--data", dev, "--out", str(out),
                     "--oracle", "hyperband", "--budget", "4"]) == 0
    trials = pd.read_csv(out / "trials.csv", dtype={"point": str})
    assert trials["epochs"].tolist() == [1, 1, 1, 3] == [t["epochs"] for t in trained]
    first_round = trials.iloc[:3]
    promoted = json.loads(trials["point"].iloc[3])
    leaders = first_round[first_round["objective"] == first_round["objective"].max()]
    assert {**promoted, "epochs": 1} in [json.loads(p) for p in leaders["point"]]
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["machine_overrides"]["fan"]["epochs"] in (1, 3)


def test_bad_input_names_the_value_and_the_fix(dev, tmp_path):
    space = _space_file(tmp_path, {"covariance": ["ledoit_wolf", "empirical"]})
    with pytest.raises(ValueError, match="oracle must be one of .*received 'tpe'"):
        search.run_search("logmel_stats", {"covariance": ["empirical"]}, dev, tmp_path / "a",
                          oracle="tpe")
    with pytest.raises(ValueError, match="system 'logmel_stats' has no 'epochs' key.*--oracle"):
        search.run_search("logmel_stats", {"covariance": ["empirical"]}, dev, tmp_path / "b",
                          oracle="hyperband")
    with pytest.raises(ValueError, match="tunes the keys other than 'epochs'"):
        search.run_search("dense_ae", {"epochs": [1, 2]}, dev, tmp_path / "c",
                          oracle="hyperband")
    with pytest.raises(ValueError, match="non-empty mapping"):
        search.run_search("logmel_stats", {}, dev, tmp_path / "d")
    with pytest.raises(ValueError, match=r"\['trial'\] are names of trials.csv columns"):
        search.run_search("logmel_stats", {"trial": [1, 2]}, dev, tmp_path / "e")
    with pytest.raises(ValueError, match="budget must be >= 1"):
        search.run_search("logmel_stats", {"covariance": ["empirical"]}, dev, tmp_path / "f",
                          budget=0)
    # A folder of a search from before the oracles is not replayed.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text(json.dumps({"mode": "random"}))
    with pytest.raises(FileExistsError, match="names a 'mode'.*--force"):
        search.run_search("logmel_stats", {"covariance": ["empirical"]}, dev, tmp_path / "old")
    # A folder that holds something else is replaced only with --force.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(FileExistsError, match="search folder .* is not empty.*--force"):
        search.run_search("logmel_stats", {"covariance": ["empirical"]}, dev, tmp_path / "run")
    # The CLI refuses an unknown oracle before any work.
    with pytest.raises(SystemExit):
        cli.main(["search", "--system", "logmel_stats", "--space", space, "--data", dev,
                  "--out", str(tmp_path / "g"), "--oracle", "tpe"])
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def test_holdout_parts_follow_the_clips_with_several_machine_types(tmp_path):
    """`score` numbers its rows 0..n-1; with two machine types the test clips
    are not the table's first rows, and the holdout parts must still be the
    clips of report_clips.csv (a KeyError here before)."""
    root = make_synthetic(tmp_path / "data", "dcase2020", machine_types=("fan", "pump"),
                          eval=False)
    out = tmp_path / "search"
    args = ["search", "--system", "logmel_stats", "--space",
            _space_file(tmp_path, {"covariance": ["ledoit_wolf"]}, FAST),
            "--data", str(root / "dev_data"), "--out", str(out), "--oracle", "grid"]
    assert cli.main(args) == 0
    trials = pd.read_csv(out / "trials.csv")
    report = pd.read_csv(out / "report_clips.csv", dtype=str)
    scores = pd.read_csv(out / "trials" / "trial0000" / "scores.csv", dtype={"section": str})
    assert set(trials["machine_type"]) == {"fan", "pump"}
    for _, row in trials.iterrows():
        clips = scores[scores["machine_type"] == row["machine_type"]]
        reported = report[report["machine_type"] == row["machine_type"]]
        assert row["report_n_test"] == len(reported)
        assert row["select_n_test"] + row["report_n_test"] == len(clips)
