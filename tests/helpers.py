"""Assertions shared by the tests."""

import keras
import numpy as np


def assert_decisions_match(decisions, expected, scores, threshold, atol=1e-4):
    """Decisions agree, except for clips whose score is within `atol` of the threshold.

    Scores computed in another process or graph (a SavedModel) agree only to
    a float tolerance, so a clip that sits on the threshold may flip; every
    other clip must get the same decision.
    """
    decisions = np.asarray(decisions)
    expected = np.asarray(expected)
    scores = np.asarray(scores, dtype=float)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=float), scores.shape)
    clear = np.abs(scores - threshold) > atol * np.maximum(1.0, np.abs(threshold))
    assert clear.any(), "every clip sits on the threshold; the test proves nothing"
    np.testing.assert_array_equal(decisions[clear], expected[clear])


def serve_saved_model(export, paths, strings):
    """Calls an exported SavedModel's `serving_default` in this process.

    tests/test_served_parity.py serves every system from a fresh process;
    elsewhere, loading in this one spares TensorFlow's import (about 10 s on
    a 2-core machine).

    Args:
        export: str or Path. The export folder.
        paths: WAV files of equal length, stacked into one batch.
        strings: dict of the scalar string inputs, e.g. `{"machine_type": "fan"}`.

    Returns:
        (anomaly scores, decisions) as NumPy arrays.
    """
    import soundfile
    import tensorflow as tf

    wave = np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])
    out = tf.saved_model.load(str(export)).signatures["serving_default"](
        waveform=tf.constant(wave), **{k: tf.constant(v) for k, v in strings.items()})
    return out["anomaly_score"].numpy(), out["decision"].numpy()


class CallCounter(keras.callbacks.Callback):
    """Counts the training function's calls (`calls`)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch of one model (named `..._<model_suffix>`)."""

    def __init__(self, model_suffix, epoch):
        super().__init__()
        self.model_suffix, self.epoch = model_suffix, epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.model.name.endswith(self.model_suffix) and epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def roundtrip_and_save(layer, inputs, tmp_path, training=False, rtol=1e-5, atol=1e-6):
    """Config round trip, then save/load inside a Functional model; returns
    the model's output (the loaded model must give the same, to tolerance)."""
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    if isinstance(inputs, list):
        symbolic = [keras.Input(np.shape(x)[1:]) for x in inputs]
    else:
        symbolic = keras.Input(np.shape(inputs)[1:])
    model = keras.Model(symbolic, layer(symbolic))
    expected = keras.ops.convert_to_numpy(model(inputs, training=training))
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = keras.ops.convert_to_numpy(loaded(inputs, training=training))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    return expected


def reference_stft(y, n_fft, hop_length, window="hann", center=True, pad_mode="constant"):
    """librosa.stft's definition in NumPy: `(1 + n_fft // 2, frames)` complex.

    Periodic window (`scipy.signal.get_window(fftbins=True)`, as librosa),
    centred frames padded by `n_fft // 2` with `pad_mode`. Written out so that
    the tests compare with librosa's definition without `librosa.stft`, whose
    numba kernels take about 27 s to compile in a fresh environment (once per
    test worker).
    """
    import scipy.signal

    y = np.asarray(y, np.float64)
    if center:
        y = np.pad(y, n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length]
    win = scipy.signal.get_window(window, n_fft, fftbins=True)
    return np.fft.rfft(frames * win, axis=-1).T


def reference_melspectrogram(y, sr, n_fft, hop_length, n_mels, power=2.0, center=True,
                             pad_mode="constant"):
    """librosa.feature.melspectrogram's definition: librosa's Slaney mel basis
    times `|reference_stft|**power`, `(n_mels, frames)`."""
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    return basis @ np.abs(reference_stft(y, n_fft, hop_length, center=center,
                                         pad_mode=pad_mode)) ** power


def assert_close_to_scale(actual, expected, rtol=1e-4, err_msg=""):
    """Scores agree to `rtol` relative to each value and to the largest one.

    Float32 kernels round differently on CPUs with and without oneDNN and
    AVX-512, and for other batch shapes; a score near 0 among scores near 1
    has the absolute error of its neighbours, so the absolute tolerance is
    `rtol` times the scale of the scores, never a fixed number.
    """
    expected = np.asarray(expected, dtype=float)
    atol = rtol * float(np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=rtol,
                               atol=atol, err_msg=err_msg)
