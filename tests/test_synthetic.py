import hashlib

import numpy as np
import pytest
import soundfile

from asd_keras.data import synthetic
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.submission import read_ground_truth
from tests.conftest import make_synthetic
from tests.helpers import reference_melspectrogram


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


# --------------------------------------------------------------------------
# The DCASE 2022 machine types added after the first five: bearing, ToyCar,
# ToyTrain.
# --------------------------------------------------------------------------

_NEW_TYPES = ("bearing", "ToyCar", "ToyTrain")

# First dev training clip and first anonymised eval test clip of each of the
# first five types (dcase2022, seed 3, 1 s clips, one clip per group),
# recorded with the five-type MACHINE_TYPES before the new types were
# appended: file name, sum, sum of magnitudes, 8 evenly spaced samples.
_PINNED = {
    "fan": [
        ("section_00_source_train_normal_0000_spd_3_bg_A.wav", 36.517608642578125, 1590.4414367675781,
         [0.1163330078125, -0.171539306640625, 0.13983154296875, -0.041259765625,
          0.224884033203125, -0.253662109375, 0.092041015625, -0.048828125]),
        ("section_03_0000.wav", 51.04443359375, 2211.9617309570312,
         [-0.015045166015625, 0.050018310546875, 0.107666015625, 0.213134765625,
          0.060577392578125, -0.248626708984375, -0.0244140625, -0.16650390625]),
    ],
    "pump": [
        ("section_00_source_train_normal_0000_flw_2_bg_A.wav", 13.234039306640625, 1432.2903137207031,
         [0.0035400390625, -0.007720947265625, -0.088409423828125, -0.00244140625,
          0.098297119140625, 0.0421142578125, 0.03643798828125, -0.10565185546875]),
        ("section_03_0000.wav", 38.88116455078125, 1611.875,
         [0.05810546875, -0.14630126953125, -0.119598388671875, 0.163421630859375,
          0.11334228515625, 0.075103759765625, 0.111480712890625, -0.05474853515625]),
    ],
    "gearbox": [
        ("section_00_source_train_normal_0000_vlt_1_bg_A.wav", -19.90313720703125, 1498.6915283203125,
         [0.15228271484375, -0.086700439453125, -0.078826904296875, -0.21258544921875,
          -0.00537109375, 0.076416015625, 0.088531494140625, 0.01824951171875]),
        ("section_03_0000.wav", -65.16195678710938, 1750.3190002441406,
         [-0.072509765625, -0.057098388671875, 0.015380859375, 0.132080078125,
          0.274322509765625, 0.055694580078125, -0.0909423828125, -0.161590576171875]),
    ],
    "valve": [
        ("section_00_source_train_normal_0000_pat_2_bg_A.wav", 63.33868408203125, 817.61181640625,
         [-0.013275146484375, 0.050384521484375, -0.0108642578125, -0.091644287109375,
          -0.020233154296875, 0.00762939453125, -0.4420166015625, 0.002197265625]),
        ("section_03_0000.wav", -30.374908447265625, 1506.9570007324219,
         [0.11920166015625, 0.227935791015625, 0.0435791015625, -0.06158447265625,
          0.049560546875, -0.04449462890625, 0.17669677734375, 0.11236572265625]),
    ],
    "slider": [
        ("section_00_source_train_normal_0000_vel_1_bg_A.wav", 19.423370361328125, 1436.8371276855469,
         [0.058502197265625, -0.079132080078125, -0.008758544921875, -0.054779052734375,
          0.1041259765625, 0.267333984375, 0.005462646484375, 0.0230712890625]),
        ("section_03_0000.wav", -48.52349853515625, 1326.8605346679688,
         [-0.062164306640625, -0.165008544921875, 0.212249755859375, 0.11016845703125,
          -0.002227783203125, 0.088287353515625, -0.000457763671875, -0.072052001953125]),
    ],
}


def test_existing_types_audio_unchanged(tmp_path):
    root = make_synthetic(tmp_path / "x", "dcase2022", machine_types=tuple(_PINNED),
                          train=1, target_train=1, test=1, seed=3, eval=True)
    for machine, clips in _PINNED.items():
        for folder, (name, total, magnitude, samples) in zip(
            (root / "dev_data" / machine / "train", root / "eval_data" / machine / "test"), clips
        ):
            path = sorted(folder.glob("*.wav"))[0]
            assert path.name == name, (machine, path.name)
            audio, _ = soundfile.read(path, dtype="float64")
            idx = np.linspace(0, len(audio) - 1, 8).astype(int)
            assert np.allclose(audio[idx], samples, atol=1e-6), (machine, name)
            assert np.allclose([audio.sum(), np.abs(audio).sum()], [total, magnitude], atol=1e-6), (machine, name)


def test_new_types_are_appended_and_defaults_unchanged(monkeypatch, tmp_path):
    five = ("fan", "pump", "gearbox", "valve", "slider")
    assert synthetic.MACHINE_TYPES[:5] == five
    assert synthetic.MACHINE_TYPES[5:] == _NEW_TYPES
    assert synthetic.DEFAULT_MACHINE_TYPES == five
    assert tuple(synthetic.SynthConfig().machine_types) == five
    assert set(synthetic.DCASE2022_MACHINE_TYPES) == {
        "fan", "gearbox", "bearing", "slider", "ToyCar", "ToyTrain", "valve"}
    assert set(synthetic._MODELS) == set(synthetic.MACHINE_TYPES)
    # The CLI's default is the same five types.
    from asd_keras import cli

    seen = {}

    def fake_generate(out, config, force=False):
        seen["config"] = config
        return out

    monkeypatch.setattr(synthetic, "generate", fake_generate)
    args = cli.build_parser().parse_args(["synth", "--out", str(tmp_path / "s")])
    args.func(args)
    assert tuple(seen["config"].machine_types) == five
    args = cli.build_parser().parse_args(
        ["synth", "--out", str(tmp_path / "s"), "--machines", "ToyCar", "bearing"])
    seen.clear()
    args.func(args)
    assert tuple(seen["config"].machine_types) == ("ToyCar", "bearing")
    with pytest.raises(ValueError, match="case-sensitive.*'ToyCar'"):
        synthetic.SynthConfig(machine_types=("toycar",)).validate()


def test_new_types_deterministic_and_in_dcase2022_layout(tmp_path):
    def digest(root, machine):
        return _digest(root / "dev_data" / machine)

    kwargs = dict(machine_types=_NEW_TYPES, seconds=0.5, train=2, target_train=1, test=1)
    a = make_synthetic(tmp_path / "a", "dcase2022", eval=True, **kwargs)
    b = make_synthetic(tmp_path / "b", "dcase2022", eval=False, **kwargs)
    c = make_synthetic(tmp_path / "c", "dcase2022", eval=False, seed=4, **kwargs)
    for machine in _NEW_TYPES:
        assert digest(a, machine) == digest(b, machine) != digest(c, machine), machine
    # Mixed-case folder names as in DCASE; dev sections 00-02 labelled,
    # eval ("additional training") sections 03-05 with unlabelled test clips.
    assert {p.name for p in (a / "dev_data").iterdir()} == set(_NEW_TYPES)
    dev = read_dataset(a / "dev_data")
    assert set(dev["machine_type"]) == set(_NEW_TYPES)
    assert set(dev["section"]) == {"00", "01", "02"}
    test = dev[dev["split"] == "test"]
    assert set(test["label"]) == {0, 1} and set(test["domain"]) == {"source", "target"}
    evaluation = read_dataset(a / "eval_data")
    assert set(evaluation["section"]) == {"03", "04", "05"}
    assert evaluation.loc[evaluation["split"] == "test", "label"].isna().all()
    assert (evaluation.loc[evaluation["split"] == "train", "label"] == 0).all()
    truth = read_ground_truth(a / "ground_truth")
    assert sorted(truth["file_name"]) == sorted(evaluation.loc[evaluation["split"] == "test", "file_name"])


def _log_mel_stats(x, sr):
    mel = reference_melspectrogram(x.astype(np.float32), sr, n_fft=1024, hop_length=512,
                                   n_mels=64)
    log_mel = 10 * np.log10(mel + 1e-10)
    # Time mean (stationary changes) and time maximum (sparse impacts).
    return np.concatenate([log_mel.mean(axis=1), log_mel.max(axis=1)])


@pytest.mark.parametrize("machine", _NEW_TYPES)
def test_new_types_anomalies_and_domain_shift_change_the_sound(machine):
    sr, n = 16000, 16000 * 2
    model = synthetic._MODELS[machine]
    assert len(model.anomaly_kinds) == 3
    for section in (0, 1):
        inst = model.instance(np.random.default_rng(section))

        def stats(level, anomaly, severity, seed):
            rng = np.random.default_rng([section, seed])
            return _log_mel_stats(model.render(inst, level, anomaly, severity, n, sr, rng), sr)

        normals = [stats(2, None, 0.0, seed) for seed in range(3)]
        spread = max(np.abs(p - q).mean() for i, p in enumerate(normals) for q in normals[i + 1:])

        def distance(x):
            return min(np.abs(x - q).mean() for q in normals)

        for kind in model.anomaly_kinds:
            assert distance(stats(2, kind, 0.5, 10)) > 1.2 * spread, (machine, section, kind)
        # The target domain's attribute value is outside the source range.
        level = model.target_levels[0]
        assert level not in model.source_levels
        assert distance(stats(level, None, 0.0, 11)) > 1.2 * spread, (machine, section, "target")
