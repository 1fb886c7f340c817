import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import make_synthetic

from asd_keras.runners import search
from asd_keras.runners.comparison import table6
from asd_keras.runners.comparison import table7
from asd_keras.evaluation.metrics import machine_type_metrics
from asd_keras.evaluation.metrics import weighted_summary

ROOT = Path(__file__).resolve().parents[1]


def test_holdout_split_and_selection():
    test = pd.DataFrame({"machine_type": ["fan"] * 8, "section": ["00"] * 8,
                         "domain": [None] * 8, "label": [0, 0, 0, 0, 1, 1, 1, 1],
                         "path": [f"c{i}.wav" for i in range(8)]})
    mask = search.holdout_split(test, 0.5, seed=0)
    assert mask.sum() == 4
    assert mask[test["label"] == 1].sum() == 2  # both parts keep both labels
    with pytest.raises(ValueError, match="c0.wav"):
        search.holdout_split(test.iloc[[0, 4, 5]], 0.5)
    trials = pd.DataFrame({"trial": [0, 0, 1, 1, 2], "machine_type": ["fan", "pump"] * 2 + ["fan"],
                           "select_AUC": [0.7, 0.6, 0.9, 0.5, 0.9],
                           "select_pAUC": [0.5, 0.5, 0.6, 0.5, 0.7]})
    best = search.select_best(trials).set_index("machine_type")["trial"]
    assert best.to_dict() == {"fan": 2, "pump": 0}


def test_machine_type_metrics_and_weighted_summary():
    table = pd.DataFrame({
        "machine_type": ["fan"] * 8,
        "section": ["00"] * 4 + ["02"] * 4,
        "label": [0, 1, 0, 1] * 2,
        "score": [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8]})
    row = machine_type_metrics(table).iloc[0]
    # Section 00 separates perfectly (AUC 1); in section 02 one of four
    # (anomaly, normal) pairs is ordered right (AUC 0.25).
    assert row["AUC"] == pytest.approx(0.625) and row["n_test"] == 8 and row["sections"] == 2
    frame = pd.DataFrame({"AUC": [0.6, 0.9], "pAUC": [0.5, 0.5], "n_test": [1, 3]})
    summary = weighted_summary(frame)
    assert summary["AUC mean"] == pytest.approx(0.825)
    assert summary["AUC std"] == pytest.approx(np.sqrt((0.225 ** 2 + 3 * 0.075 ** 2) / 4))
    assert summary["pAUC std"] == pytest.approx(0.0)
    per_machine = pd.DataFrame({"condition": ["A", "A", "B", "B"],
                                "machine_type": ["fan", "pump"] * 2,
                                "AUC": [0.6, 0.9, 0.5, 0.5], "pAUC": [0.5, 0.5, 0.6, 0.6],
                                "n_test": [1, 3, 1, 3]})
    t7 = table7(per_machine)
    assert list(t7.columns) == ["condition", "fan AUC", "fan pAUC", "pump AUC", "pump pAUC"]
    assert t7.iloc[0]["pump AUC"] == pytest.approx(90.0)
    t6 = table6(per_machine).set_index("condition")
    assert t6.loc["A", "AUC mean"] == pytest.approx(82.5)


def _load_run_script():
    spec = importlib.util.spec_from_file_location(
        "gan_run", ROOT / "experiments" / "gan_detectors" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_search_resume_and_experiment_tables(synthetic_sets, tmp_path, monkeypatch):
    from asd_keras import cli
    from asd_keras.systems import get_system

    # One machine type keeps the trainings of this test small, and the dense
    # AE trains in a fraction of a GAN's time: the runners treat every
    # system alike.
    dev = str(make_synthetic(tmp_path / "data", "dcase2020", machine_types=("fan",),
                             eval=False) / "dev_data")
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({
        "base": {"epochs": 1, "batch_size": 64, "hidden_units": 8, "steps_per_execution": 1},
        "space": {"latent_dim": [2, 4], "num_hidden_layers": [1, 2]}}))
    out = tmp_path / "search"
    args = ["search", "--system", "dense_ae", "--space", str(space_file), "--data", dev,
            "--out", str(out), "--mode", "random", "--budget", "2"]
    assert cli.main(args) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["trial"].unique()) == [0, 1]
    assert set(trials["machine_type"]) == {"fan"}
    # The trials keep their histories and scores, not their trained models.
    assert (out / "trials" / "trial0000" / "run" / "history" / "member0_fan.csv").is_file()
    assert not (out / "trials" / "trial0000" / "run" / "members").exists()
    # Selection and report halves are disjoint and together the whole test set.
    n_test = (pd.read_csv(out / "trials" / "trial0000" / "scores.csv")
              .groupby("machine_type").size())
    per_type = trials[trials["trial"] == 0].set_index("machine_type")
    assert (per_type["select_n_test"] + per_type["report_n_test"]).to_dict() == n_test.to_dict()
    assert "holdout" in (out / "best.md").read_text()
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert set(best["machine_overrides"]) == {"fan"}

    # A repeated call resumes: nothing is trained again.
    def refuse(*a, **k):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(get_system("dense_ae"), "fit", refuse)
    assert cli.main(args) == 0
    # Another specification in the same folder needs --force.
    assert cli.main(args + ["--seed", "1"]) == 2
    monkeypatch.undo()

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"conditions": [
        {"name": "DCASE", "system": "dense_ae", "epochs": 1, "variant": "dcase2020",
         "steps_per_execution": 1},
        {"name": "Tuned", "system": "dense_ae", "epochs": 1, "batch_size": 64,
         "hidden_units": 8, "steps_per_execution": 1}]}))
    results = tmp_path / "results"
    run = _load_run_script()
    run.main(["--data", dev, "--config", str(config), "--out", str(results),
              "--selection", f"Tuned={out}"])
    t7 = pd.read_csv(results / "table7.csv")
    assert t7["condition"].tolist() == ["DCASE", "Tuned"]
    assert {"fan AUC", "fan pAUC"} <= set(t7.columns)
    assert ((t7.drop(columns="condition") >= 0) & (t7.drop(columns="condition") <= 100)).all().all()
    text = (results / "results.md").read_text()
    assert "protocol **holdout**" in text and "no selection on test data" in text
    # Holdout selection: every condition is evaluated on the unseen half only.
    held_out = pd.read_csv(out / "report_clips.csv")
    assert f"the {len(held_out)} test clips that the holdout searches" in text
    per_machine = pd.read_csv(results / "per_machine.csv")
    assert per_machine.groupby("condition")["n_test"].sum().eq(len(held_out)).all()
    assert (results / "figure6.png").stat().st_size > 10_000
    saved = yaml.safe_load((results / "conditions" / "Tuned" / "config.yaml").read_text())
    assert not (results / "conditions" / "Tuned" / "run" / "members").exists()
    assert saved["params"]["machine_overrides"] == best["machine_overrides"]
