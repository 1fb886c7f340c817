import subprocess
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from asd_keras.data.audio import AudioLoader
from asd_keras.data.audio import inspect_audio
from asd_keras.features import LogMelFrontend
from asd_keras.features import clip_spectrum
from asd_keras.features import linear_spectrogram
from asd_keras.features import stack_frames
from tests.helpers import reference_melspectrogram
from tests.helpers import reference_stft

SR = 16000


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory, synthetic_sets):
    """A real synthetic fan clip, 10 s, written as 16-bit PCM."""
    from asd_keras.data.synthetic import SynthConfig
    from asd_keras.data.synthetic import generate

    root = tmp_path_factory.mktemp("tenseconds") / "data"
    generate(root, SynthConfig(machine_types=("fan",), train=1, target_train=1,
                               test=1, seconds=10.0), progress=False)
    return next((root / "dev_data" / "fan" / "train").glob("*.wav"))


def _librosa_log_mel(y, pad_mode, log_mode):
    mel = reference_melspectrogram(y, SR, n_fft=1024, hop_length=512, n_mels=128,
                                   power=2.0, pad_mode=pad_mode)
    eps = sys.float_info.epsilon
    mel = np.maximum(mel, eps) if log_mode == "max" else mel + eps
    return 10.0 * np.log10(mel).T


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("log_mode", ["max", "offset"])
def test_log_mel_matches_librosa_on_a_wav_file(wav_file, pad_mode, log_mode):
    y, sr = soundfile.read(wav_file, dtype="float32")
    loader = AudioLoader(sample_rate=SR)
    loader.check([str(wav_file)])
    waveform = loader.load(tf.constant(str(wav_file)))
    np.testing.assert_allclose(waveform.numpy(), y, atol=1e-6)
    frontend = LogMelFrontend(pad_mode=pad_mode, log_mode=log_mode)
    ours = frontend.spectrogram(waveform).numpy()
    reference = _librosa_log_mel(y, pad_mode, log_mode)
    assert ours.shape == reference.shape == (313, 128)
    # float32 STFTs in two libraries: agreement within 1e-3 dB everywhere.
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=0)
    vectors = frontend.vectors(waveform).numpy()
    assert vectors.shape == (309, 640)
    np.testing.assert_allclose(vectors[7], reference[7:12].reshape(-1), atol=1e-3)


def test_batch_invariance():
    rng = np.random.default_rng(0)
    loud = rng.standard_normal(SR * 2).astype(np.float32)
    quiet = 1e-3 * rng.standard_normal(SR * 2).astype(np.float32)
    frontend = LogMelFrontend()
    alone = frontend.vectors(tf.constant(quiet)).numpy()
    batched = frontend.vectors(tf.constant(np.stack([loud, quiet]))).numpy()
    # A clip's features must not depend on its batch neighbours (no
    # batch-wide normalisation). Batched and single-clip CPU kernels may
    # round differently (about one float32 ulp, ~1e-5 dB at -50 dB), so the
    # comparison allows 1e-4 dB; a leak from the loud clip would move these
    # quiet-clip values by tens of dB.
    np.testing.assert_allclose(batched[1], alone, rtol=0, atol=1e-4)


def test_stack_frames_is_frame_major():
    spec = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    stacked = stack_frames(tf.constant(spec), 5).numpy()
    assert stacked.shape == (3, 15)
    np.testing.assert_array_equal(stacked[1], spec[1:6].reshape(-1))


def test_linear_spectrogram_matches_librosa_without_centring(wav_file):
    y, _ = soundfile.read(wav_file, dtype="float32")
    ours = linear_spectrogram(tf.constant(y)).numpy()
    reference = np.abs(
        reference_stft(y, n_fft=1024, hop_length=512, center=False, window="hann")
    ).T
    assert ours.shape == reference.shape == (311, 513)
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)


def test_clip_spectrum_matches_numpy(wav_file):
    y, _ = soundfile.read(wav_file, dtype="float32")
    ours = clip_spectrum(tf.constant(y)).numpy()
    reference = np.abs(np.fft.fft(y.astype(np.float64)))[: y.size // 2]
    assert ours.shape == (80000,)
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=5e-2)


def _write(path, data, sr=SR, subtype="PCM_16"):
    soundfile.write(path, data, sr, subtype=subtype)
    return str(path)


def test_corrupt_truncated_missing_files(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all")
    with pytest.raises(ValueError, match="garbage.wav"):
        inspect_audio([str(garbage)])
    good = _write(tmp_path / "good.wav", np.zeros(SR, np.float32))
    data = open(good, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.wav.*truncated"):
        inspect_audio([str(cut)])
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        inspect_audio([str(tmp_path / "missing.wav")])


def test_sample_rate_checks_and_resampling(tmp_path):
    path = _write(tmp_path / "sr8k.wav", np.zeros(8000, np.float32), sr=8000)
    with pytest.raises(ValueError, match="sr8k.wav.*8000 Hz.*resample"):
        AudioLoader(sample_rate=SR).check([path])
    loader = AudioLoader(sample_rate=SR, resample=True)
    loader.check([path])
    assert loader.load(tf.constant(path)).shape[0] == SR


def test_too_short_clip(tmp_path):
    path = _write(tmp_path / "short.wav", np.zeros(300, np.float32))
    with pytest.raises(ValueError, match="short.wav.*300 samples"):
        AudioLoader(min_samples=1024).check([path])


def test_non_finite_samples_name_the_file(tmp_path):
    data = np.zeros(SR, np.float32)
    data[100] = np.nan
    path = _write(tmp_path / "nan.wav", data, subtype="FLOAT")
    loader = AudioLoader()
    loader.check([path])
    with pytest.raises(tf.errors.InvalidArgumentError, match="nan.wav"):
        loader.load(tf.constant(path))


def test_channels_and_length_policies(tmp_path):
    stereo = np.stack([np.linspace(-1, 1, SR), np.linspace(1, -1, SR)], -1) * 0.5
    path = _write(tmp_path / "stereo.wav", stereo.astype(np.float32))
    mono = _write(tmp_path / "mono.wav", stereo[:, 0].astype(np.float32))
    for channel in (0, 1):
        loader = AudioLoader(channel=channel)
        loader.check([path])
        np.testing.assert_allclose(
            loader.load(tf.constant(path)).numpy(), stereo[:, channel], atol=1e-4
        )
    both = AudioLoader(channel="both")
    both.check([path])
    assert both.load(tf.constant(path)).shape == (SR, 2)
    with pytest.raises(ValueError, match="mono.wav.*channel"):
        AudioLoader(channel=1).check([mono])
    x = tf.constant(np.arange(5, dtype=np.float32))
    pad = AudioLoader(length=8, length_policy="pad").fix_length(x).numpy()
    np.testing.assert_array_equal(pad, [0, 1, 2, 3, 4, 0, 0, 0])
    tile = AudioLoader(length=12, length_policy="tile_crop").fix_length(x).numpy()
    np.testing.assert_array_equal(tile, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    cut = AudioLoader(length=3, length_policy="truncate").fix_length(x).numpy()
    np.testing.assert_array_equal(cut, [0, 1, 2])
    with pytest.raises(ValueError, match="mono.wav.*truncate"):
        AudioLoader(length=2 * SR, length_policy="truncate").check([mono])
    with pytest.raises(ValueError, match="length_policy"):
        AudioLoader(length_policy="stretch")


def test_tensorflow_io_is_not_needed():
    out = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; "
         "print(u.find_spec('tensorflow_io') is None)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "True"
