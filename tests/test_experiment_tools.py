"""Studies, RISE, t-SNE distances, domain metrics and plots."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from asd_keras.evaluation.embedding_space import anomaly_to_normal_distances
from asd_keras.evaluation.embedding_space import tsne_projection
from asd_keras.evaluation.metrics import domain_metrics
from asd_keras.evaluation.rise import importance_map
from asd_keras.evaluation.rise import rise_masks
from asd_keras.visualisation import plots


def test_rise_masks_shape_and_expectation():
    masks = rise_masks(400, (40, 60), time_cells=8, freq_cells=10, seed=1)
    assert masks.shape == (400, 40, 60)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert masks.mean() == pytest.approx(0.75 ** 2, abs=0.03)
    np.testing.assert_array_equal(masks, rise_masks(400, (40, 60), 8, 10, seed=1))
    with pytest.raises(ValueError, match="time_cells"):
        rise_masks(1, (4, 60), time_cells=8)


def test_importance_map_by_hand_and_localisation():
    spectrogram = np.ones((30, 40), np.float32)
    # Nothing masked: every mask is 1, so the map is the plain score.
    flat = importance_map(lambda x: x.sum(axis=(1, 2)), spectrogram, num_masks=10,
                          batch_size=4, time_cells=5, freq_cells=5,
                          mask_probability=0.0, centre=False, progress=False)
    np.testing.assert_allclose(flat, 1200.0)
    # Centred, a constant score leaves nothing.
    centred = importance_map(lambda x: np.full(len(x), 5.0), spectrogram, num_masks=10,
                             batch_size=4, time_cells=5, freq_cells=5, progress=False)
    np.testing.assert_allclose(centred, 0.0, atol=1e-5)
    # By hand: two masks, scores 3 and 1 (mean 2), E[M] = 0.75^2.
    masks = np.concatenate([rise_masks(1, (30, 40), 5, 5, seed=s) for s in (7, 8)])
    scores = iter([np.array([3.0]), np.array([1.0])])
    hand = importance_map(lambda x: next(scores), spectrogram, num_masks=2, batch_size=1,
                          time_cells=5, freq_cells=5, seed=7, progress=False)
    np.testing.assert_allclose(hand, (1.0 * masks[0] - 1.0 * masks[1]) / (2 * 0.5625),
                               rtol=1e-6)
    # A score that only looks at one region highlights that region.
    region = importance_map(lambda x: x[:, 10:15, 20:30].sum(axis=(1, 2)) - 100.0,
                            spectrogram,
                            num_masks=600, batch_size=100, time_cells=6, freq_cells=8,
                            progress=False)
    inside = region[10:15, 20:30].mean()
    outside = np.delete(np.delete(region, slice(8, 17), 0), slice(17, 33), 1).mean()
    assert inside > outside * 1.1
    with pytest.raises(ValueError, match="finite scores"):
        importance_map(lambda x: np.zeros(2), spectrogram, num_masks=4, batch_size=4,
                       time_cells=5, freq_cells=5, progress=False)


def test_tsne_and_anomaly_distances():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [4.0, 4.0], [1.0, 3.0]])
    distances = anomaly_to_normal_distances(points, [0, 0, 1, 1])
    np.testing.assert_allclose(distances, [5.0, 3.0])
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(30, 8)) + 5 * np.eye(8)[0]
    anomalous = rng.normal(size=(10, 8)) - 5 * np.eye(8)[0]
    projected = tsne_projection(np.concatenate([normal, anomalous]), seed=0)
    assert projected.shape == (40, 2)
    labels = np.r_[np.zeros(30), np.ones(10)]
    far = anomaly_to_normal_distances(projected, labels).mean()
    within = anomaly_to_normal_distances(projected[:30], np.r_[np.zeros(20), np.ones(10)])
    assert far > within.mean()
    with pytest.raises(ValueError, match="both normal"):
        anomaly_to_normal_distances(points, [0, 0, 0, 0])


def test_domain_metrics_definitions():
    table = pd.DataFrame({
        "machine_type": "fan", "section": "00",
        "domain": ["source"] * 4 + ["target"] * 4,
        "label": [0, 0, 1, 1, 0, 0, 1, 1],
        "score": [0.1, 0.2, 0.9, 0.15, 0.5, 0.6, 0.55, 0.7],
    })
    official = domain_metrics(table, "official").iloc[0]
    simple = domain_metrics(table, "simple").iloc[0]
    # simple source: normals {.1,.2} vs anomalies {.9,.15}: 3 of 4 pairs
    assert simple["AUC (source)"] == pytest.approx(0.75)
    # official source: normals {.1,.2} vs all anomalies {.9,.15,.55,.7}: 7/8
    assert official["AUC (source)"] == pytest.approx(7 / 8)
    # official target: normals {.5,.6} vs anomalies {.9,.15,.55,.7}: 2+0+1+2 of 8
    assert official["AUC (target)"] == pytest.approx(5 / 8)
    assert official["AUC (both)"] == simple["AUC (both)"]
    with pytest.raises(ValueError, match="definition"):
        domain_metrics(table, "loose")


def test_plots_write_png(tmp_path):
    frame = pd.DataFrame({"epoch": [0, 1, 2], "loss": [np.nan, 2.0, 1.0],
                          "intra_compactness": [1.8, 1.5, 1.2],
                          "inter_compactness": [2.0, 2.0, 2.0]})
    plots.plot_training_curves({"a": frame}, tmp_path / "curves.png")
    plots.plot_tsne({"t": (np.random.rand(10, 2), np.r_[np.zeros(5), np.ones(5)])},
                    tmp_path / "tsne.png")
    plots.plot_importance([("clip", np.random.rand(20, 30), {"m": np.random.rand(20, 30)})],
                          tmp_path / "rise.png")
    for name in ("curves.png", "tsne.png", "rise.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_study_cli_runs_resumes_and_refuses_overwrite(synthetic_sets, tmp_path):
    from asd_keras import cli

    spec = {"base": {"system": "wilkinghoff", "clip_seconds": 1.0, "epochs": 1,
                     "branches": "spectrum",
                     "batch_size": 16, "kmeans_clusters": 2},
            "conditions": [{"name": "one", "loss": "compactness", "classes": "one"},
                           {"name": "attr", "loss": "sc_adacos", "classes": "attribute"}]}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(spec))
    out = tmp_path / "study"
    args = ["study", "--config", str(config), "--data",
            str(synthetic_sets["dcase2022"]["dev"]), "--out", str(out), "--trials", "2"]
    assert cli.main(args) == 0
    summary = pd.read_csv(out / "results.csv")
    assert summary["condition"].tolist() == ["one", "attr"]
    assert summary["trials"].tolist() == [2, 2]
    assert np.isfinite(summary["AUC (both) mean"]).all()
    assert "±" in (out / "results.md").read_text()
    trial = out / "trials" / "attr" / "trial1"
    assert json.loads((trial / "result.json").read_text())["trial"] == 1
    assert (trial / "test_embeddings.npz").is_file()
    assert not (trial / "run" / "members").exists()  # models dropped by default
    assert cli.main(args) == 2  # finished study, no --force
    # An interrupted study resumes from its finished trials.
    (out / "results.csv").unlink()
    stamp = (trial / "result.json").stat().st_mtime
    assert cli.main(args) == 0
    assert (trial / "result.json").stat().st_mtime == stamp


@pytest.mark.slow
def test_residual_view_experiment_tables_and_figures(synthetic_sets, tmp_path, capsys):
    """`experiments/residual_view/run.py` on tiny two-channel data, with the
    log-mel statistics as the one encoder and as the baseline (the dense AE
    would only add training time)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "experiments/residual_view/run.py"
    spec = importlib.util.spec_from_file_location("residual_view_run", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"seed": 0, "alpha": 0.5, "alphas": [-0.5, 0.0, 0.5],
              "residual": {"k": 1, "memmixup_alpha": 0.9, "memmixup_neighbours": 990,
                           "prototypes": 3}, "prototype_share": 0.25,
              "baseline": {"system": "logmel_stats"},
              "baseline_label": "log-mel statistics, near channel",
              "encoders": {"logmel_stats": {"extractor": "logmel_stats"}},
              "reference_encoder": "logmel_stats"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    dev, out = synthetic_sets["dcase2026"]["dev"], tmp_path / "results"
    args = ["--data", str(dev), "--out", str(out), "--config", str(path)]
    assert module.main(args) == 0
    table2 = pd.read_csv(out / "table2.csv", dtype={"encoder": str, "weights": str}).fillna("")
    assert table2["system"].tolist() == ["log-mel statistics, near channel", "near-only",
                                         "Residual View", "Residual View + PRPS"]
    assert table2[["AUC source", "AUC target", "pAUC", "official score"]].notna().all().all()
    figure1 = pd.read_csv(out / "figure1.csv")
    assert len(figure1) == 3 and figure1["alpha"].tolist() == [-0.5, 0.0, 0.5]
    # The sweep's alpha 0 is the near-only run, its alpha 0.5 the Residual
    # View run: the same features, banks and metric.
    for alpha, system in ((0.0, "near-only"), (0.5, "Residual View")):
        swept = figure1[figure1["alpha"] == alpha]["official score"].iloc[0]
        run = table2[table2["system"] == system]["official score"].iloc[0]
        np.testing.assert_allclose(swept, run, atol=1e-9)
    # Residual View differs from near-only (the far channel is used).
    assert abs(figure1["official score"].iloc[2] - figure1["official score"].iloc[1]) > 1e-6
    table3 = pd.read_csv(out / "table3.csv")
    assert set(table3["machine type"]) == {"fan", "valve", "All (hmean)"}
    variants = pd.read_csv(out / "variants.csv")
    assert variants["system"].str.contains("25.0% of the clips|transductive").all()
    assert len(variants) == 2
    for name in ("figure1.png", "figure2.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A finished study is not overwritten without --force; its tables are
    # recomputed with --tables-only.
    assert module.main(args) == 2
    assert "--force" in capsys.readouterr().err
    (out / "table2.csv").unlink()
    assert module.main(args + ["--tables-only"]) == 0
    assert pd.read_csv(out / "table2.csv").shape[0] == 4
    assert module.main(["--data", str(dev), "--out", str(tmp_path / "none"), "--config",
                        str(path), "--tables-only"]) == 2
    assert "No finished study" in capsys.readouterr().err
