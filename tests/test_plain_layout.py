"""The plain layout: users' own recordings under any names, optional CSV."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.data.clip_table import COLUMNS
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.submission import write_submission


def _wav(path, seconds=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(16000 * seconds), np.float32), 16000,
                    subtype="PCM_16")


@pytest.fixture
def plain(tmp_path):
    """pump: two train and three test clips with arbitrary names."""
    for name in ("morning run.wav", "b-02.WAV"):
        _wav(tmp_path / "pump" / "train" / name)
    for name in ("x1.wav", "x2.wav", "b-02.WAV"):
        _wav(tmp_path / "pump" / "test" / name)
    (tmp_path / "pump" / "test" / "notes.txt").write_text("not audio")
    return tmp_path


def _csv(root, text):
    (root / "pump" / "labels.csv").write_text(text)


def test_defaults_without_csv(plain):
    table = read_dataset(plain)
    assert list(table.columns) == COLUMNS and len(table) == 5
    assert (table["layout"] == "plain").all()
    assert (table["section"] == "00").all() and (table["domain"] == "source").all()
    assert (table["machine_type"] == "pump").all()
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    assert (train["label"] == 0).all() and test["label"].isna().all()
    assert str(table["label"].dtype) == "Int64"
    assert table["attribute_string"].isna().all()
    assert set(test["file_name"]) == {"x1.wav", "x2.wav", "b-02.WAV"}
    explicit = read_dataset(plain, layout="plain")
    pd.testing.assert_frame_equal(table, explicit)


def test_metadata_csv(plain):
    _csv(plain, "file_name,label,domain,section,speed,mic\n"
                "x1.wav,anomaly,target,1,fast,\n"
                "x2.wav,0,,,slow,near\n"
                "test/b-02.WAV,1,Source,02,,\n"
                "train/b-02.WAV,normal,target,,,\n")
    table = read_dataset(plain).set_index(["split", "file_name"])
    assert table.loc[("test", "x1.wav"), "label"] == 1
    assert table.loc[("test", "x1.wav"), "domain"] == "target"
    assert table.loc[("test", "x1.wav"), "section"] == "01"
    assert table.loc[("test", "x1.wav"), "attributes"] == {"speed": "fast"}
    assert table.loc[("test", "x1.wav"), "attribute_string"] == "speed_fast"
    assert table.loc[("test", "x2.wav"), "label"] == 0
    assert table.loc[("test", "x2.wav"), "section"] == "00"
    assert table.loc[("test", "x2.wav"), "attribute_string"] == "speed_slow_mic_near"
    assert table.loc[("test", "b-02.WAV"), "section"] == "02"
    assert table.loc[("test", "b-02.WAV"), "domain"] == "source"
    assert table.loc[("train", "b-02.WAV"), "domain"] == "target"
    # Not in the CSV: defaults.
    assert table.loc[("train", "morning run.wav"), "label"] == 0
    assert table.loc[("train", "morning run.wav"), "domain"] == "source"


@pytest.mark.parametrize(
    "text, match",
    [
        ("file_name,label\nmissing.wav,0\n", r"line 2 names 'missing.wav'.*remove the row"),
        ("file_name,label\nx1.wav,0\nx1.wav,1\n", r"'test/x1.wav' twice \(lines 2 and 3\)"),
        ("file_name,label\nx1.wav,broken\n", r"label 'broken' for 'test/x1.wav'"),
        ("file_name,domain\nx1.wav,elsewhere\n", r"domain 'elsewhere' for 'test/x1.wav'"),
        ("file_name,section\nx1.wav,A\n", r"section 'A' for 'test/x1.wav'"),
        ("file_name\nb-02.WAV\n", r"both train/ and test/.*'test/b-02.WAV'"),
        ("file_name,label\ntrain/b-02.WAV,anomaly\n", r"train/ holds normal clips only"),
        ("name,label\nx1.wav,0\n", r"no 'file_name' column"),
    ],
)
def test_metadata_errors_name_the_file_and_fix(plain, text, match):
    _csv(plain, text)
    with pytest.raises(ValueError, match=match) as error:
        read_dataset(plain)
    assert "labels.csv" in str(error.value)


def test_detection_needs_plain_structure(tmp_path):
    # Only train/: a misnamed DCASE folder as much as a plain one, so the
    # name error stays, pointing at layout='plain'.
    _wav(tmp_path / "fan" / "train" / "rec.wav")
    with pytest.raises(ValueError, match=r"rec\.wav.*layout='plain'"):
        read_dataset(tmp_path)
    table = read_dataset(tmp_path, layout="plain")
    assert list(table["split"]) == ["train"]
    # DCASE names mixed with free names are refused, not read as plain.
    _wav(tmp_path / "fan" / "test" / "section_00_0001.wav")
    with pytest.raises(ValueError, match=r"rec\.wav"):
        read_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"rec\.wav"):
        read_dataset(tmp_path, layout="dcase2023")


def test_empty_plain_folder(tmp_path):
    (tmp_path / "fan" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="No WAV clips"):
        read_dataset(tmp_path, layout="plain")


def test_submission_file_names(plain, tmp_path):
    _csv(plain, "file_name,section\nx1.wav,1\n")
    test = read_dataset(plain).query("split == 'test'")
    scores = test.assign(score=0.5, decision=0)
    out = tmp_path / "out"
    out.mkdir()
    names = sorted(p.name for p in write_submission(scores, out, "plain"))
    assert names == [
        "anomaly_score_pump_section_00_test.csv",
        "anomaly_score_pump_section_01_test.csv",
        "decision_result_pump_section_00_test.csv",
        "decision_result_pump_section_01_test.csv",
    ]
