"""A tiny end-to-end proxy-task study: one family of each extractor of issue
11 (AE, cross-entropy classification, SimCLR; ArcFace and SimSiam train
in their own modules' tests), two configurations each, trained on a few clips of one machine type (dev sections
00-02 plus the additional-training sections 03-05), then Table VII, the
figures and the three-stage report (paper: Shin & Lee, Tables II-VII)."""

import json

import numpy as np
import pandas as pd
import pytest

from asd_keras.studies.proxy import ASD_COLUMNS
from asd_keras.studies.proxy import load_study_config
from asd_keras.studies.proxy import run_proxy_study
from asd_keras.studies.proxy import split_study_data
from tests.conftest import make_synthetic

# Small enough for 2 CPU cores: 0.5 s clips, 16 mels, one epoch of one step
# (the 18 training clips), eager ResNet steps (tracing one costs more than
# the step), one AE step per call (each step_per_execution > 1 traces twice).
SPECTROGRAM = {"clip_seconds": 0.5, "n_mels": 16, "n_fft": 512, "hop_length": 256,
               "epochs": 1, "batch_size": 18, "depth": 18, "lr_step_epochs": 1,
               "run_eagerly": True, "score_batch_clips": 24}
AE = {"n_mels": 16, "n_fft": 512, "hop_length": 256, "epochs": 2, "batch_size": 64,
      "validation_split": 0.0, "score": "mae", "loss": "mae", "select": "min_loss",
      "steps_per_execution": 1, "score_batch_clips": 24}


def _study():
    resnet = [{"name": "seed_a", "seed": 0}, {"name": "seed_b", "seed": 5}]
    return {
        "name": "tiny",
        "families": [
            {"name": "ae", "label": "AutoEncoder", "system": "dense_ae",
             "proxy_metric": "test_mae", "lower_is_better": {"test_mae": True},
             "base": AE,
             "configurations": [{"name": "latent4_hidden16", "latent_dim": 4,
                                 "hidden_units": 16},
                                {"name": "latent8_hidden32", "latent_dim": 8,
                                 "hidden_units": 32}]},
            {"name": "classification_ce", "label": "Classification (CE)",
             "system": "resnet_ce", "proxy_metric": "macro_f1",
             "lower_is_better": {"macro_f1": False}, "base": SPECTROGRAM,
             "configurations": resnet},
            {"name": "simclr", "label": "Contrastive (SimCLR)", "system": "simclr",
             "proxy_metric": "uniformity",
             "lower_is_better": {"uniformity": True, "alignment": True},
             "base": SPECTROGRAM, "configurations": resnet},
        ],
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("proxy") / "data",
                          machine_types=("ToyCar",), train=2, target_train=1, test=2)
    data = [root / "dev_data", root / "eval_data"]
    out = root.parent / "study"
    summary = run_proxy_study(_study(), data, out, isolate_trials=False)
    return {"data": data, "out": out, "summary": summary}


@pytest.mark.slow
def test_study_writes_one_row_per_configuration_machine_type_and_trial(study):
    out = study["out"]
    rows = pd.read_csv(out / "rows.csv")
    assert len(rows) == 6  # 3 families x 2 configurations x 1 machine type x 1 trial
    assert set(rows["machine_type"]) == {"ToyCar"}
    for column in ASD_COLUMNS:
        assert rows[column].between(0, 1).all(), column
    by_family = rows.set_index("family")
    # Each family reports its own proxy metrics and only those.
    assert by_family.loc["ae", "test_mae"].gt(0).all()
    assert by_family.loc["ae", "macro_f1"].isna().all()
    assert by_family.loc["classification_ce", "macro_f1"].between(0, 1).all()
    assert by_family.loc["simclr", "uniformity"].between(-4, 0).all()
    assert by_family.loc["simclr", "alignment"].between(0, 4).all()
    assert rows["epochs"].tolist() == [2, 2] + [1] * 4
    assert (rows["min_loss"] <= rows["first_loss"]).all()
    record = json.loads((out / "study.json").read_text())
    assert record["figure_machine_type"] == "ToyCar"
    assert [f["name"] for f in record["families"]] == [
        "ae", "classification_ce", "simclr"]
    summary = pd.read_csv(out / "configurations.csv")
    assert len(summary) == 6 and (summary["n_rows"] == 1).all()
    features = np.load(out / "features" / "simclr" / "seed_a" / "ToyCar.npz")
    assert features["features"].shape == (24, 512)  # 3 sections x 8 labelled test clips
    assert set(features["label"]) == {0, 1}


@pytest.mark.slow
def test_trials_in_fresh_processes_give_the_rows_of_trials_in_this_one(study, tmp_path):
    # The default: each trial in its own process (bounded peak memory).
    ae_only = {**_study(), "families": _study()["families"][:1]}
    summary = run_proxy_study(ae_only, study["data"], tmp_path / "isolated")
    rows = pd.read_csv(tmp_path / "isolated" / "rows.csv")
    here = pd.read_csv(study["out"] / "rows.csv")
    here = here[here["family"] == "ae"].dropna(axis=1, how="all").reset_index(drop=True)
    assert sorted(rows.columns) == sorted(here.columns)
    here = here[rows.columns]
    assert rows["epochs"].tolist() == [2, 2]
    # The same seeds and clips; float32 kernels may round differently
    # between processes, so the values agree to a tolerance.
    numeric = rows.select_dtypes("number").columns
    np.testing.assert_allclose(rows[numeric], here[numeric], rtol=1e-3, atol=1e-4)
    assert list(summary["configuration"]) == ["latent4_hidden16", "latent8_hidden32"]


@pytest.mark.slow
def test_the_in_domain_probe_of_a_row_is_the_mean_over_its_sections(study):
    trial = study["out"] / "trials" / "ae" / "latent4_hidden16" / "trial0"
    per_section = pd.read_csv(trial / "probe.csv")
    row = pd.read_csv(trial / "rows.csv").iloc[0]
    assert len(per_section) == 3
    assert row["lp_in_domain_auc"] == pytest.approx(per_section["lp_in_domain_auc"].mean())
    assert row["md_auc"] == pytest.approx(per_section["md_auc"].mean())


@pytest.mark.slow
def test_a_finished_study_resumes_refuses_and_restarts_with_force(study, monkeypatch):
    import asd_keras.studies.proxy.study as module

    with pytest.raises(FileExistsError, match="already holds a finished study"):
        run_proxy_study(_study(), study["data"], study["out"])
    # An interrupted study (no study.json) reuses every finished trial.
    (study["out"] / "study.json").rename(study["out"] / "study.json.bak")
    monkeypatch.setattr(module, "_run_trial", lambda *a, **k: pytest.fail("retrained"))
    again = run_proxy_study(_study(), study["data"], study["out"])
    pd.testing.assert_frame_equal(again, study["summary"])
    # Other settings never reuse a finished trial.
    (study["out"] / "study.json").rename(study["out"] / "study.json.bak")
    with pytest.raises(ValueError, match=r"trained with other settings \(\['epochs'\]\)"):
        run_proxy_study(_study(), study["data"], study["out"], overrides={"epochs": 3})
    (study["out"] / "study.json.bak").rename(study["out"] / "study.json")
    # A study finished for one family is extended, not refused, by more.
    part = run_proxy_study(_study(), study["data"], study["out"], families=["ae"], force=False)
    assert set(part["family"]) == {"ae"}
    again = run_proxy_study(_study(), study["data"], study["out"])
    pd.testing.assert_frame_equal(again, study["summary"])


@pytest.mark.slow
def test_the_report_holds_table7_the_figures_and_three_stages(study, tmp_path):
    from asd_keras.cli import main
    from asd_keras.studies.proxy import feature_panels
    from asd_keras.studies.proxy import load_studies

    out = tmp_path / "report"
    # Fig. 5 is drawn from hand-made features in tests/test_proxy_report.py;
    # here the study's feature files are read as Fig. 5 reads them, without
    # the UMAP and t-SNE runs (about 30 s in a new process).
    assert main(["proxy-report", "--study", str(study["out"]), "--out", str(out),
                 "--no-projections"]) in (0, None)
    table7 = pd.read_csv(out / "table7.csv")
    assert set(table7["family"]) >= {"ae", "classification_ce", "simclr"}
    for name in ("fig2_in_domain_lp.png", "fig3_out_domain_lp.png", "fig4_md.png"):
        assert (out / name).stat().st_size > 1000, name
    assert not (out / "fig5_projections.png").exists()
    report = (out / "report.md").read_text()
    for stage in ("Stage 1", "Stage 2", "Stage 3"):
        assert stage in report
    assert "Fig. 5 not drawn" in report
    # Two configurations cannot give p < 0.05: every verdict is inconclusive.
    assert "inconclusive" in report
    _, families, configurations = load_studies([study["out"]])
    panels = feature_panels(families, configurations, "ToyCar")
    assert [title.rsplit(" (", 1)[0] for title, *_ in panels] == [
        "AutoEncoder", "Classification (CE)"]
    for _, features, labels, md_auc, _ in panels:
        assert features.shape[0] == labels.shape[0] == 24
        assert set(labels) == {0, 1} and 0.0 <= md_auc <= 1.0


def test_bad_study_configurations_and_data_are_named():
    bad = _study()
    bad["families"][1]["configurations"].append({"name": "seed_a"})
    with pytest.raises(ValueError, match="configuration 'seed_a' is given twice"):
        load_study_config(bad)
    bad = _study()
    del bad["families"][0]["lower_is_better"]
    with pytest.raises(ValueError, match="lower_is_better must map every proxy metric"):
        load_study_config(bad)
    bad = _study()
    bad["families"][2]["base"] = {**SPECTROGRAM, "depth": 19}
    with pytest.raises(ValueError, match="Family 'simclr', configuration 'seed_a'.*depth"):
        run_proxy_study(bad, [], "/nonexistent/never-written")
    unlabelled = pd.DataFrame({"split": ["train", "test"], "label": [0, None],
                               "machine_type": ["fan", "fan"]})
    with pytest.raises(ValueError, match="0 labelled test clips"):
        split_study_data(unlabelled)
