"""The logmel_stats extractor and its LogMelSpectrogram/LogMelStatistics layers."""

import sys

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.extractors import get_extractor
from asd_keras.extractors import load_extractor
from asd_keras.extractors.logmel_stats import LogMelStatsExtractor
from asd_keras.features import LogMelFrontend
from asd_keras.layers import LogMelSpectrogram
from asd_keras.layers import LogMelStatistics
from tests.helpers import reference_melspectrogram

SR = 16000


def _numpy_stats(waveform, **frontend):
    spectrogram = LogMelFrontend(**frontend).spectrogram(waveform).numpy()
    return np.concatenate([spectrogram.mean(0), spectrogram.std(0)])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three 1 s clips (noise, a tone, silence) and one of 1.5 s, as PCM_16."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    waves = {
        "noise.wav": 0.3 * rng.standard_normal(SR),
        "tone.wav": 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(SR),
        "silence.wav": np.zeros(SR),
        "long.wav": 0.2 * rng.standard_normal(SR * 3 // 2),
    }
    out = {}
    for name, wave in waves.items():
        soundfile.write(folder / name, np.clip(wave, -1, 1), SR, subtype="PCM_16")
        # What the loader decodes: the 16-bit values.
        out[str(folder / name)] = soundfile.read(folder / name, dtype="float32")[0]
    return out


def test_statistics_layer_shapes_and_values():
    x = np.random.default_rng(1).normal(size=(3, 20, 8)).astype("float32") * 30 - 50
    both = np.asarray(LogMelStatistics()(x))
    assert both.shape == (3, 16)
    np.testing.assert_allclose(both[:, :8], x.mean(1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(both[:, 8:], x.std(1), rtol=1e-5, atol=1e-4)
    assert np.asarray(LogMelStatistics("mean")(x)).shape == (3, 8)
    np.testing.assert_allclose(np.asarray(LogMelStatistics("std")(x)), x.std(1),
                               rtol=1e-5, atol=1e-4)
    assert LogMelStatistics().compute_output_shape((None, None, 128)) == (None, 256)
    assert LogMelSpectrogram().compute_output_shape((None, SR)) == (None, 32, 128)


def test_layer_configs_round_trip():
    layer = LogMelStatistics("std", name="stats")
    again = LogMelStatistics.from_config(layer.get_config())
    assert again.statistics == "std" and again.name == "stats"
    spectrogram = LogMelSpectrogram(n_mels=64, hop_length=256, log_mode="offset",
                                    pad_mode="reflect")
    config = LogMelSpectrogram.from_config(spectrogram.get_config()).frontend.get_config()
    assert config == spectrogram.frontend.get_config()
    assert config["n_mels"] == 64 and config["pad_mode"] == "reflect"


def test_bad_arguments():
    with pytest.raises(ValueError, match="statistics.*'median'"):
        LogMelStatistics("median")
    with pytest.raises(ValueError, match="statistics.*'median'"):
        LogMelStatsExtractor(statistics="median")
    with pytest.raises(ValueError, match="log_mode.*'ln'"):
        LogMelStatsExtractor(log_mode="ln")
    with pytest.raises(ValueError, match="Bad config.*n_frames"):
        get_extractor("logmel_stats", n_frames=5)


def test_transform_matches_numpy_and_librosa(clips):
    paths = list(clips)[::-1]  # not sorted: the output follows the table
    features = LogMelStatsExtractor().transform(pd.DataFrame({"path": paths}))
    assert list(features) == ["logmel_stats"]
    values = features["logmel_stats"]
    assert values.shape == (4, 256) and values.dtype == np.float32
    for row, path in zip(values, paths):
        np.testing.assert_allclose(row, _numpy_stats(clips[path]), rtol=1e-4, atol=1e-3)
    # librosa's log-mel (2022+ baseline settings) on the noise clip.
    noise = next(p for p in paths if p.endswith("noise.wav"))
    mel = reference_melspectrogram(clips[noise], SR, n_fft=1024, hop_length=512,
                                   n_mels=128, power=2.0, pad_mode="constant")
    reference = 10 * np.log10(np.maximum(mel, sys.float_info.epsilon))
    np.testing.assert_allclose(values[paths.index(noise), :128], reference.mean(1),
                               atol=1e-3)
    np.testing.assert_allclose(values[paths.index(noise), 128:], reference.std(1),
                               atol=1e-3)


def test_statistics_options_and_empty_table(clips):
    table = pd.DataFrame({"path": list(clips)})
    both = LogMelStatsExtractor(n_mels=32).transform(table)["logmel_stats"]
    mean = LogMelStatsExtractor(n_mels=32, statistics="mean").transform(table)
    std = LogMelStatsExtractor(n_mels=32, statistics="std").transform(table)
    np.testing.assert_allclose(mean["logmel_stats"], both[:, :32], atol=1e-4)
    np.testing.assert_allclose(std["logmel_stats"], both[:, 32:], atol=1e-4)
    empty = LogMelStatsExtractor().transform(pd.DataFrame({"path": []}))
    assert empty["logmel_stats"].shape == (0, 256)


def test_serving_model_matches_transform_and_survives_saving(clips, tmp_path):
    extractor = LogMelStatsExtractor(pad_mode="reflect", log_mode="offset")
    paths = [p for p in clips if not p.endswith("long.wav")]
    expected = extractor.transform(pd.DataFrame({"path": paths}))["logmel_stats"]
    model = extractor.serving_model(SR)
    waveforms = np.stack([clips[p] for p in paths])
    served = model(waveforms)["logmel_stats"]
    np.testing.assert_allclose(np.asarray(served), expected, rtol=0, atol=1e-4)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(waveforms)["logmel_stats"]),
                               np.asarray(served), rtol=0, atol=1e-5)


def test_extractor_save_and_load(clips, tmp_path):
    extractor = get_extractor("logmel_stats", n_mels=64, statistics="std")
    extractor.save(tmp_path)
    again = load_extractor(tmp_path)
    assert isinstance(again, LogMelStatsExtractor)
    assert again.get_config() == extractor.get_config()
    table = pd.DataFrame({"path": list(clips)[:2]})
    np.testing.assert_allclose(again.transform(table)["logmel_stats"],
                               extractor.transform(table)["logmel_stats"], atol=1e-6)


def test_missing_clip_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        LogMelStatsExtractor().transform(pd.DataFrame({"path": [str(tmp_path / "nowhere.wav")]}))


def test_nan_samples_name_the_clip(tmp_path):
    wave = np.zeros(SR, np.float32)
    wave[100] = np.nan
    soundfile.write(tmp_path / "broken.wav", wave, SR, subtype="FLOAT")
    with pytest.raises(ValueError, match="broken.wav' holds non-finite samples"):
        LogMelStatsExtractor().transform(pd.DataFrame({"path": [str(tmp_path / "broken.wav")]}))
