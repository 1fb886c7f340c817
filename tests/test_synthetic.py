import hashlib

import numpy as np
import pytest
import soundfile

from asd_keras.data import synthetic
from asd_keras.data.synthetic import machines
from asd_keras.data.synthetic import scene as synthetic_scene
from asd_keras.data.synthetic import signals
from asd_keras.data.synthetic import writer
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.submission import read_ground_truth
from asd_keras.data.synthetic.machine_model import _Machine
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


def test_clips_rendered_on_two_processes_are_the_same_files(tmp_path):
    """Enough clips for the worker processes (a fresh interpreter: this one
    has TensorFlow loaded, where generate() renders in-process)."""
    import subprocess
    import sys

    settings = dict(layout="dcase2022", machine_types=("fan",), seconds=0.5, train=20,
                    target_train=2, test=2, seed=8, eval=False)
    assert 3 * (22 + 4) >= writer._PARALLEL_MIN_CLIPS
    synthetic.generate(tmp_path / "one", synthetic.SynthConfig(**settings), progress=False,
                       workers=1)
    code = ("import sys; from asd_keras.data import synthetic; "
            f"synthetic.generate(sys.argv[1], synthetic.SynthConfig(**{settings!r}), "
            "progress=False, workers=2); assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "two")], check=True,
                   timeout=300)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    with pytest.raises(ValueError, match="workers must be >= 1.*received 0"):
        synthetic.generate(tmp_path / "zero", synthetic.SynthConfig(**settings),
                           progress=False, workers=0)


def test_machine_models_have_two_or_more_anomaly_kinds():
    assert len(synthetic.MACHINE_TYPES) >= 5
    for model in machines._MODELS.values():
        assert len(model.anomaly_kinds) >= 2


def test_anomalies_change_the_sound():
    sr, n = 16000, 16000 * 2
    for name, model in machines._MODELS.items():
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
    assert set(machines._MODELS) == set(synthetic.MACHINE_TYPES)
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
    model = machines._MODELS[machine]
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


# --------------------------------------------------------------------------
# The 2026 layout's two microphones: one shared background scene, the
# machine louder near than far, and a domain-dependent scene mix.
# --------------------------------------------------------------------------

_SR = 16000
_MIC_CONFIG = synthetic.SynthConfig(layout="dcase2026", seconds=1.5, seed=3)


def _normalised_xcorr(a, b, max_lag):
    """Normalised correlation of a(t) and b(t + k) for k in -max_lag..max_lag."""
    values = []
    for k in range(-max_lag, max_lag + 1):
        x, y = (a[: a.size - k], b[k:]) if k >= 0 else (a[-k:], b[: b.size + k])
        values.append(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return np.array(values)


def _low_share(x, cutoff_hz=400.0):
    power = np.abs(np.fft.rfft(x)) ** 2
    return power[np.fft.rfftfreq(x.size, 1 / _SR) < cutoff_hz].sum() / power.sum()


def test_2026_one_background_scene_reaches_both_mics():
    # valve, dev section 00, seed 3: geometry with a clear lag (50 samples).
    inst = synthetic_scene._instance(_MIC_CONFIG, "valve", "dev", "00")
    geometry = inst["_mics"]
    assert geometry["far_bg_gain"] > geometry["near_bg_gain"]
    lag = round(geometry["far_bg_delay_s"] * _SR) - round(geometry["near_bg_delay_s"] * _SR)
    assert abs(lag) >= 10
    max_lag = int(np.ceil(synthetic_scene._MAX_MIC_DELAY_S * _SR))
    background = synthetic.FactoryBackground(3)
    # The written clip with the machine silenced is background only.
    silent = dict(inst, _normal_rms=np.inf)
    for domain in ("source", "target"):
        clip = synthetic_scene._clip(_MIC_CONFIG, background, "valve", silent, domain, 2, None,
                               np.random.default_rng(5))
        assert clip.dtype == np.float32 and clip.shape == (24000, 2)
        near, far = clip[:, 0].astype(np.float64), clip[:, 1].astype(np.float64)
        xcorr = _normalised_xcorr(near, far, max_lag)
        assert np.argmax(xcorr) - max_lag == lag, domain
        assert xcorr.max() > 0.9, domain
        assert xcorr[max_lag] < xcorr.max() - 0.3, domain  # the lag matters
        # The far microphone hears more of the hall.
        assert 1.3 < np.std(far) / np.std(near) < 2.9, domain
    # The parts helper agrees: far background = gain ratio x shifted near.
    parts = synthetic_scene._two_mic_parts(_MIC_CONFIG, background, "valve", inst, "source", 2,
                                     None, np.random.default_rng(5))
    assert parts["far_bg_delay"] - parts["near_bg_delay"] == lag
    ratio = parts["far_bg_gain"] / parts["near_bg_gain"]
    near_bg, far_bg = parts["near_background"], parts["far_background"]
    if lag >= 0:
        np.testing.assert_allclose(far_bg[lag:], ratio * near_bg[: near_bg.size - lag],
                                   rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(far_bg[:lag], ratio * near_bg[-lag:], rtol=1e-9, atol=1e-12)


def test_2026_machine_louder_near_than_far():
    # The background off: the written clip is the machine only.
    config = synthetic.SynthConfig(layout="dcase2026", seconds=1.5, seed=3,
                                   background_gain=0.0)
    background = synthetic.FactoryBackground(3)
    for machine in ("fan", "pump", "valve"):
        inst = synthetic_scene._instance(config, machine, "dev", "00")
        clip = synthetic_scene._clip(config, background, machine, inst, "source", 2, None,
                               np.random.default_rng(7)).astype(np.float64)
        ratio = np.sum(clip[:, 0] ** 2) / np.sum(clip[:, 1] ** 2)
        # a_f in 0.3..0.4 through a unit-energy room: about 6-11x less.
        assert 3.0 < ratio < 20.0, (machine, ratio)
        # The far machine is the near one, reverberated and delayed.
        parts = synthetic_scene._two_mic_parts(config, background, machine, inst, "source", 2,
                                         None, np.random.default_rng(7))
        assert 32 <= parts["far_machine_delay"] <= 96
        assert np.allclose(parts["near_background"], 0)
        # The clip is 0.1 x the parts, peak-normalised by one factor.
        expected = 0.1 * np.stack([parts["near_machine"], parts["far_machine"]], axis=-1)
        expected *= min(1.0, 0.99 / np.max(np.abs(expected)))
        np.testing.assert_allclose(clip, expected, atol=1e-6)


def test_2026_target_scene_mix_differs_from_source():
    inst = synthetic_scene._instance(_MIC_CONFIG, "fan", "dev", "00")
    background = synthetic.FactoryBackground(3)

    def shares(domain):
        out = []
        for seed in range(4):
            parts = synthetic_scene._two_mic_parts(_MIC_CONFIG, background, "fan", inst, domain, 2,
                                             None, np.random.default_rng(seed))
            out.append([_low_share(parts["near_background"]),
                        _low_share(parts["far_background"])])
        return np.array(out)

    source, target = shares("source"), shares("target")
    # The tonal bed (hum, distant machinery) sits below 400 Hz: the target
    # mix (pink 0.5, bed 2, clanks 2) moves the scene's energy there.
    assert (target.mean(axis=0) > source.mean(axis=0) + 0.15).all(), (source, target)
    assert (target.min(axis=0) > source.max(axis=0)).all()
    # The scene's composition, not only its level: unit RMS either way.
    rng = np.random.default_rng(1)
    scene = background.render(rng, 8000, _SR, mix=synthetic_scene._TARGET_MIX)
    np.testing.assert_allclose(np.sqrt(np.mean(scene**2)), 1.0, rtol=1e-6)


def test_2026_geometry_per_section_from_its_own_stream():
    a = synthetic_scene._mic_geometry(_MIC_CONFIG, "fan", "dev", "00")
    assert a == synthetic_scene._mic_geometry(_MIC_CONFIG, "fan", "dev", "00")
    assert a != synthetic_scene._mic_geometry(_MIC_CONFIG, "fan", "eval", "00")
    assert a != synthetic_scene._mic_geometry(_MIC_CONFIG, "pump", "dev", "00")
    for value in ("near_bg_delay_s", "far_bg_delay_s", "far_machine_delay_s"):
        assert 0 < a[value] * _SR <= synthetic_scene._MAX_MIC_DELAY_S * _SR  # tens of samples
    # The instance's own parameters do not depend on the geometry stream.
    inst = synthetic_scene._instance(_MIC_CONFIG, "fan", "dev", "00")
    drawn = machines._MODELS["fan"].instance(np.random.default_rng([3, 0, False, 0]))
    for key, value in drawn.items():
        np.testing.assert_allclose(inst[key], value, rtol=1e-12)


def _render_reference(background, rng, n, sr):
    """FactoryBackground.render as written before `mix` existed."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    pink = np.fft.irfft(spectrum, n)
    pink /= pink.std() + 1e-9
    bed = background._tonal_bed(n, sr)
    start = int(rng.integers(0, bed.size - n))
    count = rng.poisson(background.clank_rate * n / sr)
    clanks = np.zeros(n)
    for _ in range(count):
        clanks += signals._resonant_hits(
            [rng.uniform(0, n / sr)], [rng.uniform(0.5, 2.0)], n, sr,
            rng.choice(background.clank_hz), rng.uniform(0.01, 0.05), rng,
        )
    out = pink + bed[start : start + n] + clanks
    return out / np.sqrt(np.mean(np.square(out)))


def test_background_render_without_mix_unchanged():
    background = synthetic.FactoryBackground(3)
    n = 3 * _SR  # long enough for several clanks
    for seed in range(3):
        rng_new, rng_ref = np.random.default_rng(seed), np.random.default_rng(seed)
        new = background.render(rng_new, n, _SR)
        reference = _render_reference(background, rng_ref, n, _SR)
        np.testing.assert_allclose(new, reference, rtol=1e-12, atol=1e-12)
        # The same draws in the same order: both generators end alike.
        assert rng_new.bit_generator.state == rng_ref.bit_generator.state
        # Weights change the output, not the draws; (1, 1, 1) is the default.
        rng_mix, rng_one = np.random.default_rng(seed), np.random.default_rng(seed)
        mixed = background.render(rng_mix, n, _SR, mix=synthetic_scene._TARGET_MIX)
        ones = background.render(rng_one, n, _SR, mix=(1.0, 1.0, 1.0))
        assert rng_mix.bit_generator.state == rng_ref.bit_generator.state
        np.testing.assert_allclose(ones, reference, rtol=1e-12, atol=1e-12)
        assert np.abs(mixed - reference).mean() > 0.1


def test_a_machine_model_without_render_cannot_be_built():
    class Half(_Machine):
        def instance(self, rng):
            return {}

    with pytest.raises(TypeError, match="render"):
        Half()
