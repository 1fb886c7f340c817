import pytest

from asd_keras.config import parse_overrides
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import staged_dir


def test_staged_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "result"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as stage:
            atomic_write_text(stage / "half.csv", "a,b\n")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_results_need_force(tmp_path):
    out = tmp_path / "result"
    with staged_dir(out) as stage:
        atomic_write_text(stage / "v.txt", "1")
    with pytest.raises(FileExistsError, match="--force"):
        check_output_dir(out)
    with pytest.raises(FileExistsError, match="--force"):
        with staged_dir(out):
            pass
    assert (out / "v.txt").read_text() == "1"
    with staged_dir(out, force=True) as stage:
        atomic_write_text(stage / "v.txt", "2")
    assert (out / "v.txt").read_text() == "2"


def test_overrides():
    assert parse_overrides(["epochs=3", "score=mahala", "learning_rate=1e-4"]) == {
        "epochs": 3, "score": "mahala", "learning_rate": 1e-4}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["epochs"])
