"""The scripts of examples/ run at their `--tiny` size and do what they say.

Each runs as a user runs it: in its own Python process, from another
folder, with the repository on PYTHONPATH. The checks read the files it
wrote (its `summary.json` records what it computed in its process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script, tmp_path, *args):
    """Runs an example with `--tiny --out <tmp>/out`; returns (out, process)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        # Nothing goes to the home folder's embedding cache.
        "ASD_KERAS_CACHE": str(tmp_path / "cache")}
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--tiny", "--out", str(out), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    return out, process


def _succeeded(script, tmp_path):
    out, process = _run(script, tmp_path)
    assert process.returncode == 0, process.stdout + process.stderr
    return out, json.loads((out / "summary.json").read_text())


def test_every_example_is_tested():
    tested = {"train_score_export.py", "custom_family.py", "layers_in_your_model.py",
              "convert_and_embed.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_train_score_export(tmp_path):
    out, summary = _succeeded("train_score_export.py", tmp_path)
    scores = pd.read_csv(out / "scores.csv")
    # One fan: 3 sections x 2 domains x 2 labels x 2 clips.
    assert len(scores) == 24 and np.isfinite(scores["score"]).all()
    assert set(scores["decision"]) <= {0, 1}
    assert (out / "run" / "thresholds.json").is_file()
    assert 0.0 <= summary["official_score"] <= 1.0
    assert summary["reload_max_difference"] <= 1e-6 * scores["score"].abs().max()
    # The SavedModel served the first test clip's score.
    assert (out / "saved_model" / "saved_model.pb").is_file()
    np.testing.assert_allclose(summary["served_score"], summary["score"], rtol=1e-4)
    assert summary["score"] == pytest.approx(scores["score"].iloc[0])


def test_train_score_export_refuses_a_used_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    _, process = _run("train_score_export.py", tmp_path)
    assert process.returncode != 0
    assert "pass --force to replace it" in process.stderr
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_custom_family(tmp_path):
    out, summary = _succeeded("custom_family.py", tmp_path)
    assert (summary["extractor"], summary["backend"], summary["feature_set"]) == (
        "conv_ae", "feature_mean", "error")
    # One model per machine type, saved by the example's own extractor.
    for machine in ("fan", "valve"):
        folder = out / "run" / "members" / "member0" / "extractors" / machine
        assert json.loads((folder / "extractor.json").read_text())["name"] == "conv_ae"
        assert (folder / "model.keras").is_file()
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 48 and np.isfinite(scores["score"]).all()
    assert summary["reload_max_difference"] <= 1e-6 * scores["score"].abs().max()
    assert (out / "saved_model" / "saved_model.pb").is_file()


def test_layers_in_your_model(tmp_path):
    out, summary = _succeeded("layers_in_your_model.py", tmp_path)
    assert (out / "model.keras").is_file()
    assert summary["reload_max_difference"] <= 1e-6
    assert np.isfinite(summary["loss"]).all()
    # Three machine types x 2 domains x 2 labels x 2 clips, scores in [0, 2].
    scores = np.asarray(summary["scores"])
    assert scores.shape == (24,) and np.all((scores >= 0) & (scores <= 2))
    assert set(summary["auc"]) == {"fan", "valve", "ToyCar"}
    # The head's classes: each machine type with each training attribute.
    assert {c.split()[0] for c in summary["classes"]} == {"fan", "valve", "ToyCar"}


def test_convert_and_embed(tmp_path):
    out, summary = _succeeded("convert_and_embed.py", tmp_path)
    preset = out / "preset"
    for name in ("config.json", "model.weights.h5", "metadata.json"):
        assert (preset / name).is_file()
    # A keras-hub preset of an EATBackbone.
    assert json.loads((preset / "config.json").read_text())["registered_name"] == \
        "asd_keras>EATBackbone"
    assert summary["encoder_outputs"] == ["fbank", "layer_0", "layer_1", "layer_2"]
    with np.load(out / "embeddings.npz") as embeddings:
        # 36 clips (12 training, 24 test) of the 2-layer, width-32 stand-in.
        assert {k: embeddings[k].shape for k in embeddings.files} == {
            "layer_1": (36, 32), "layer_2": (36, 32)}
        assert all(np.isfinite(embeddings[k]).all() for k in embeddings.files)
    assert len(summary["scores"]) == 24 and np.isfinite(summary["scores"]).all()
    # The embedding cache was the example's own, not the home folder's.
    assert any((out / "embedding_cache").rglob("*")) and not (tmp_path / "cache").exists()
