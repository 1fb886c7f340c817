import hashlib

import numpy as np
import pytest
import soundfile

from asd_keras.data import synthetic
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.submission import read_ground_truth
from tests.conftest import make_synthetic


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.wav")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic(tmp_path / "a", "dcase2023", machine_types=("pump",), eval=False)
    b = make_synthetic(tmp_path / "b", "dcase2023", machine_types=("pump",), eval=False)
    c = make_synthetic(tmp_path / "c", "dcase2023", machine_types=("pump",), eval=False, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_machine_models_have_two_or_more_anomaly_kinds():
    assert len(synthetic.MACHINE_TYPES) >= 5
    for model in synthetic._MODELS.values():
        assert len(model.anomaly_kinds) >= 2


def test_anomalies_change_the_sound():
    sr, n = 16000, 16000 * 2
    for name, model in synthetic._MODELS.items():
        inst = model.instance(np.random.default_rng(0))
        normal = model.render(inst, 2, None, 0.0, n, sr, np.random.default_rng(1))
        for kind in model.anomaly_kinds:
            anomalous = model.render(inst, 2, kind, 0.6, n, sr, np.random.default_rng(1))
            spectrum = lambda x: np.log(np.abs(np.fft.rfft(x)) ** 2 + 1e-3)  # noqa: E731
            assert np.abs(spectrum(anomalous) - spectrum(normal)).mean() > 0.05, (name, kind)


def test_two_channel_2026_far_mic_is_noisier(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2026"]["dev"])
    data, sr = soundfile.read(table["path"].iloc[0])
    assert data.ndim == 2 and data.shape[1] == 2 and sr == 16000
    near, far = data[:, 0], data[:, 1]
    assert not np.allclose(near, far)


def test_eval_ground_truth_matches_anonymised_files(synthetic_sets):
    for layout in ("dcase2020", "dcase2021", "dcase2022", "dcase2026"):
        sets = synthetic_sets[layout]
        truth = read_ground_truth(sets["ground_truth"])
        table = read_dataset(sets["eval"])
        test = table[table["split"] == "test"]
        assert sorted(truth["file_name"]) == sorted(test["file_name"])
        assert set(truth["label"]) == {0, 1}


def test_existing_folder_and_bad_settings(tmp_path):
    make_synthetic(tmp_path / "x", "dcase2022", machine_types=("fan",), eval=False)
    with pytest.raises(FileExistsError, match="--force"):
        make_synthetic(tmp_path / "x", "dcase2022", machine_types=("fan",))
    with pytest.raises(ValueError, match="drill"):
        make_synthetic(tmp_path / "y", machine_types=("drill",))
    with pytest.raises(ValueError, match="too short"):
        make_synthetic(tmp_path / "y", seconds=0.1)
