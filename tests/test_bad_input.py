"""Bad input gives a clear error that names the file and the fix.

Each test reproduces one mistake a user made on a fresh machine: before the
fix it gave a wrong result or a traceback.
"""

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.cli import main
from asd_keras.data.layouts import read_dataset
from asd_keras.data.layouts import require_split
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.evaluation.submission import labels_from_data
from asd_keras.evaluation.submission import read_ground_truth
from asd_keras.evaluation.submission import read_submission
from asd_keras.evaluation.submission import write_submission
from asd_keras.systems import get_system
from asd_keras.utils.io import check_output_dir

from tests.conftest import make_synthetic


def _run(*args):
    return main([str(a) for a in args])


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{a},{b}\n" for a, b in rows))


def _copy(source, target):
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def dev_sets(tmp_path_factory):
    """The dev data folder of each layout: fan only, 2 + 1 training clips per
    section, 1 test clip per domain and label (smaller than `synthetic_sets`)."""
    base = tmp_path_factory.mktemp("bad_input_data")
    return {
        layout: synthetic_data_root(
            make_synthetic(base / layout, layout, machine_types=("fan",), train=2,
                           target_train=1, test=1, eval=False), layout, "dev")
        for layout in ("dcase2020", "dcase2021", "dcase2022", "dcase2023", "dcase2026")
    }


@pytest.fixture(scope="module")
def trained_run(dev_sets, tmp_path_factory):
    """One tiny dense-AE run on DCASE2023-layout data."""
    run = tmp_path_factory.mktemp("bad_input_run") / "run"
    # Fewest layers and no validation pass: less graph to trace.
    assert _run("train", "--system", "dense_ae", "--data", dev_sets["dcase2023"],
                "--out", run, "--epochs", 1, "--verbose", 0, "hidden_units=8",
                "batch_size=64", "num_hidden_layers=1", "validation_split=0") == 0
    return run


# 1. Duplicate clips in submission and ground-truth files --------------------


@pytest.mark.parametrize("second", [0.1, 0.9], ids=["repeated", "conflicting"])
def test_duplicate_row_in_score_file(tmp_path, second):
    name = "section_00_0001.wav"
    _write_csv(tmp_path / "anomaly_score_fan_section_00_test.csv",
               [(name, 0.1), ("section_00_0002.wav", 0.5), (name, second)])
    with pytest.raises(ValueError, match=f"anomaly_score_fan_section_00_test.csv.*{name}"):
        read_submission(tmp_path)


def test_duplicate_row_in_decision_file(tmp_path):
    names = ["section_00_0001.wav", "section_00_0002.wav"]
    _write_csv(tmp_path / "anomaly_score_fan_section_00_test.csv", zip(names, [0.1, 0.2]))
    _write_csv(tmp_path / "decision_result_fan_section_00_test.csv",
               zip(names + names[:1], [0, 1, 1]))
    with pytest.raises(ValueError, match="decision_result_fan_section_00_test.csv.*0001"):
        read_submission(tmp_path)


def test_same_clip_in_two_score_files(tmp_path):
    name = "section_00_source_test_0000.wav"
    _write_csv(tmp_path / "anomaly_score_fan_section_00_source_test.csv", [(name, 0.1)])
    _write_csv(tmp_path / "anomaly_score_fan_section_00_target_test.csv",
               [(name, 0.7), ("section_00_target_test_0000.wav", 0.2)])
    with pytest.raises(ValueError, match=f"{name}.*source_test.csv.*target_test.csv"):
        read_submission(tmp_path)


@pytest.mark.parametrize("where", ["ground_truth_data", "ground_truth_domain"])
def test_duplicate_row_in_ground_truth(tmp_path, where):
    names = ["section_00_0000.wav", "section_00_0001.wav", "section_00_0002.wav"]
    for folder, values in (("ground_truth_data", [0, 1, 1]),
                           ("ground_truth_domain", [0, 0, 1])):
        rows = list(zip(names, values))
        if folder == where:
            rows.append(rows[1])
        _write_csv(tmp_path / folder / "ground_truth_fan_section_00_test.csv", rows)
    with pytest.raises(ValueError, match=f"{where}.*section_00_0001.wav"):
        read_ground_truth(tmp_path)


def test_duplicate_row_in_2020_eval_data_list(tmp_path):
    path = tmp_path / "eval_data_list.csv"
    path.write_text("fan\nid_01_00000000.wav,normal_id_01_00000003.wav,0\n"
                    "id_01_00000001.wav,anomaly_id_01_00000007.wav,1\n"
                    "id_01_00000000.wav,normal_id_01_00000003.wav,0\n"
                    "valve\nid_01_00000000.wav,normal_id_01_00000001.wav,0\n")
    with pytest.raises(ValueError, match="eval_data_list.csv.*id_01_00000000.wav"):
        read_ground_truth(tmp_path)


# 2. One data folder, one year's naming -------------------------------------


@pytest.mark.parametrize("layout, stray", [
    ("dcase2023", "test/normal_id_00_00000000.wav"),
    ("dcase2022", "source_test/section_00_source_test_normal_0000.wav"),
    ("dcase2021", "test/section_00_0000.wav"),
])
def test_stray_name_of_another_year(dev_sets, tmp_path, layout, stray):
    root = _copy(dev_sets[layout], tmp_path / "data")
    clip = next((root / "fan" / "train").glob("*.wav"))
    (root / "fan" / stray).parent.mkdir(exist_ok=True)
    shutil.copy(clip, root / "fan" / stray)
    with pytest.raises(ValueError, match=rf"mixes DCASE layouts.*odd 1 file\(s\).*{stray}"):
        read_dataset(root)


# 3. One data folder, one channel count -------------------------------------


def test_stereo_clip_among_mono_clips(dev_sets, tmp_path):
    root = _copy(dev_sets["dcase2023"], tmp_path / "data")
    # The first clip in reading order once decided the layout alone.
    first = sorted((root / "fan" / "test").glob("*.wav"))[0]
    audio, rate = soundfile.read(first, dtype="float32")
    soundfile.write(first, np.stack([audio, audio], axis=1), rate, subtype="PCM_16")
    with pytest.raises(ValueError, match=rf"mixes channel counts.*odd 1 file\(s\).*{first.name}"):
        read_dataset(root)


def test_mono_clip_in_2026_data(dev_sets, tmp_path):
    root = _copy(dev_sets["dcase2026"], tmp_path / "data")
    clip = sorted((root / "fan" / "train").glob("*.wav"))[-1]
    audio, rate = soundfile.read(clip, dtype="float32")
    soundfile.write(clip, audio[:, 0], rate, subtype="PCM_16")
    with pytest.raises(ValueError, match=rf"mixes channel counts.*{clip.name}"):
        read_dataset(root)


# 4. / 5. Empty train split, --data pointing at a file -----------------------


def test_missing_train_split_names_the_folder(dev_sets, tmp_path):
    root = _copy(dev_sets["dcase2022"], tmp_path / "test_only")
    shutil.rmtree(root / "fan" / "train")
    table = read_dataset(root)
    with pytest.raises(ValueError, match=re.escape(str(root)) + r".*machine types: \['fan'\]"):
        require_split(table, "train")


def test_data_pointing_at_a_file(dev_sets, tmp_path, capsys):
    clip = next((dev_sets["dcase2022"] / "fan" / "train").glob("*.wav"))
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        read_dataset(clip)
    assert _run("train", "--system", "dense_ae", "--data", clip,
                "--out", tmp_path / "run") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


# 6. Paths that are not UTF-8 ------------------------------------------------


def test_clip_name_that_is_not_utf8(dev_sets, tmp_path, capsys):
    root = _copy(dev_sets["dcase2023"], tmp_path / "data")
    clip = sorted((root / "fan" / "train").glob("*.wav"))[-1]
    os.rename(os.fsencode(clip), os.fsencode(clip)[:-4] + b"_\xff.wav")
    with pytest.raises(ValueError, match=r"not valid UTF-8.*_\\xff\.wav.*Rename"):
        read_dataset(root)
    assert _run("train", "--system", "dense_ae", "--data", root, "--out", tmp_path / "run") == 2
    assert "_\\xff.wav" in capsys.readouterr().err


def test_data_folder_path_that_is_not_utf8(dev_sets, tmp_path):
    root = _copy(dev_sets["dcase2023"], tmp_path / os.fsdecode(b"data\xff"))
    with pytest.raises(ValueError, match=r"data\\xff' is not valid UTF-8.*Rename"):
        read_dataset(root)


# 7. NaN samples -------------------------------------------------------------


def test_nan_samples_end_in_a_clear_cli_error(trained_run, dev_sets, tmp_path, capsys):
    # Scoring decodes the clips through the same loader as training (and
    # costs no second training run in this file).
    root = _copy(dev_sets["dcase2023"], tmp_path / "data")
    clip = sorted((root / "fan" / "test").glob("*.wav"))[-1]
    audio, rate = soundfile.read(clip, dtype="float32")
    audio[100] = np.nan
    soundfile.write(clip, audio, rate, subtype="FLOAT")
    capsys.readouterr()
    assert _run("score", "--run", trained_run, "--data", root, "--out", tmp_path / "s") == 2
    err = capsys.readouterr().err
    assert f"asd-keras score: error: '{clip}' holds non-finite samples" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


# 8. Damaged model files -----------------------------------------------------


def test_truncated_model_file(trained_run, dev_sets, tmp_path, capsys):
    run = _copy(trained_run, tmp_path / "run")
    model = run / "members" / "member0" / "extractors" / "fan" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert _run("score", "--run", run, "--data", dev_sets["dcase2023"],
                "--out", tmp_path / "scores") == 2
    err = capsys.readouterr().err
    assert f"'{model}' is damaged or truncated" in err and "asd-keras train" in err


@pytest.mark.parametrize("system, extractor, group", [
    ("wilkinghoff", "classifier_embedding", "all"),
    ("ganomaly", "gan", "fan"),
])
def test_truncated_model_file_of_other_systems(tmp_path, system, extractor, group):
    # One run layout for every system: load reads the extractors first.
    folder = tmp_path / "members" / "member0" / "extractors" / group
    folder.mkdir(parents=True)
    (folder / "extractor.json").write_text(json.dumps({"name": extractor, "config": {}}))
    (folder / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "thresholds.json").write_text("{}")
    with pytest.raises(ValueError, match=f"{re.escape(str(folder / 'model.keras'))}' is "
                                         "damaged or truncated"):
        get_system(system).load(tmp_path, {})


# 9. Broken YAML ------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("system: dense_ae\nparams: [1, 2\n", "not valid YAML at line 3"),
    ("- dense_ae\n", "must hold a mapping"),
    ("system: dense_ae\nparams: 3\n", "'params' mapping"),
])
def test_broken_run_config(tmp_path, capsys, text, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    assert _run("score", "--run", run, "--data", tmp_path, "--out", tmp_path / "scores") == 2
    err = capsys.readouterr().err
    assert str(run / "config.yaml") in err and expected in err


def test_broken_config_file(dev_sets, tmp_path, capsys):
    config = tmp_path / "settings.yaml"
    config.write_text("epochs: 3\nhidden_units: [8\n")
    assert _run("train", "--system", "dense_ae", "--data", dev_sets["dcase2022"],
                "--out", tmp_path / "run", "--config", config) == 2
    err = capsys.readouterr().err
    assert f"'{config}' is not valid YAML at line 3" in err


# 10. Output folders that cannot be created ---------------------------------


def test_output_under_a_file(trained_run, dev_sets, tmp_path, capsys):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=f"'{blocker}' is a file, not a folder"):
        check_output_dir(blocker / "deeper" / "scores")

    dev = dev_sets["dcase2023"]
    scores = tmp_path / "scores"
    labels, layout = labels_from_data(dev)
    scores.mkdir()
    write_submission(labels.assign(score=labels["label"].astype(float), decision=1),
                     scores, layout)
    commands = {
        "train": ["--system", "dense_ae", "--data", dev, "--epochs", 1, "--verbose", 0],
        "score": ["--run", trained_run, "--data", dev],
        "evaluate": ["--scores", scores, "--data", dev],
        # No run at all: the output path is checked before the run is loaded.
        "export": ["--run", tmp_path / "no_run"],
    }
    capsys.readouterr()
    for verb, args in commands.items():
        assert _run(verb, *args, "--out", blocker / verb) == 2, verb
        out, err = capsys.readouterr()
        assert f"asd-keras {verb}: error: Cannot create" in err, verb
        assert f"'{blocker}' is a file" in err, verb
        assert out == "", verb  # failed before any work (evaluate prints its table)


# 11. Scoring data of another year ------------------------------------------


def test_scoring_another_layout_warns(trained_run, dev_sets, tmp_path, capsys):
    data = tmp_path / "data2020"
    shutil.copytree(dev_sets["dcase2020"] / "fan", data / "fan")
    capsys.readouterr()
    assert _run("score", "--run", trained_run, "--data", data, "--out", tmp_path / "s") == 0
    err = capsys.readouterr().err
    assert "asd-keras score: warning:" in err and "dcase2023" in err and "dcase2020" in err
    assert len(pd.read_csv(tmp_path / "s" / "scores.csv")) == len(read_dataset(data).query(
        "split == 'test'"))
    # The training layout itself gives no warning.
    assert _run("score", "--run", trained_run, "--data", dev_sets["dcase2023"],
                "--out", tmp_path / "same") == 0
    assert "warning" not in capsys.readouterr().err
