"""The swappable filter banks of `KaldiFbank`: mel (Kaldi's), linear (the
m-FB of "An Enhanced Audio Feature Tailored for ASD Based on Pre-trained
Models") and gammatone (its g-FB ablation).

The matrices are NumPy, so they are compared with tight tolerances. The
layer runs through TF kernels and is compared with a NumPy computation to
float32 tolerances.
"""

import math

import keras
import numpy as np
import pytest
from scipy import signal

from asd_keras.features.filterbanks import FILTER_BANKS
from asd_keras.features.filterbanks import filter_bank_centres
from asd_keras.features.filterbanks import filter_bank_matrix
from asd_keras.features.filterbanks import gammatone_banks
from asd_keras.features.filterbanks import linear_banks
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.features.kaldi import kaldi_mel_banks
from asd_keras.features.kaldi import kaldi_window
from tests.helpers import roundtrip_and_save

RNG = np.random.default_rng(0)
# A fine FFT (1.95 Hz bins at 16 kHz), so that a peak's bin pins its frequency.
FINE_FFT, RATE = 8192, 16000
BIN_HZ = RATE / FINE_FFT


def _bin_freqs(padded_window_size, sample_rate):
    return sample_rate / padded_window_size * np.arange(padded_window_size // 2 + 1)


# ---------------------------------------------------------------- linear


def test_linear_banks_by_hand():
    # 16-point FFT at 16 Hz: bins at 0, 1, ..., 8 Hz; edges 0..8 Hz, 2 bins:
    # delta = 8 / 3, triangles (0, 8/3, 16/3) and (8/3, 16/3, 8). E.g. bin 3
    # in filter 0: (16/3 - 3) / (8/3) = 7/8; in filter 1: (3 - 8/3) / (8/3) = 1/8.
    expected = np.array([
        [0.0, 0.0],
        [0.375, 0.0],
        [0.75, 0.0],
        [0.875, 0.125],
        [0.5, 0.5],
        [0.125, 0.875],
        [0.0, 0.75],
        [0.0, 0.375],
        [0.0, 0.0],  # Nyquist: zero weight, as in Kaldi
    ])
    got = linear_banks(2, 16, 16, low_freq=0.0, high_freq=8.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    # high_freq <= 0 is an offset from Nyquist: 0.0 means 8 Hz here.
    np.testing.assert_array_equal(linear_banks(2, 16, 16, low_freq=0.0), got)


def test_linear_banks_shape_nyquist_and_peaks_at_evenly_spaced_centres():
    banks = linear_banks(10, FINE_FFT, RATE, low_freq=20.0, high_freq=-1000.0)
    assert banks.shape == (FINE_FFT // 2 + 1, 10)
    assert np.all(banks[-1] == 0.0)
    # Edges 20 Hz and 8000 - 1000 Hz: delta = 6980 / 11, centres 20 + (i + 1) delta.
    centres = 20.0 + (np.arange(10) + 1) * 6980.0 / 11
    np.testing.assert_allclose(filter_bank_centres("linear", 10, RATE, 20.0, -1000.0),
                               centres, rtol=1e-12)
    np.testing.assert_allclose(np.diff(centres), 6980.0 / 11, rtol=1e-12)
    peaks = _bin_freqs(FINE_FFT, RATE)[banks.argmax(axis=0)]
    assert np.all(np.abs(peaks - centres) <= BIN_HZ)
    assert banks.max() <= 1.0


# ---------------------------------------------------------------- gammatone


def _erb_rate(f):
    return 21.4 * math.log10(1.0 + 0.00437 * f)


def _erb_rate_to_hz(e):
    return (10.0 ** (e / 21.4) - 1.0) / 0.00437


def test_gammatone_centres_are_evenly_spaced_in_erb_rate():
    lo, hi = _erb_rate(20.0), _erb_rate(6000.0)
    expected = [_erb_rate_to_hz(lo + (i + 1) * (hi - lo) / 7) for i in range(6)]
    got = filter_bank_centres("gammatone", 6, RATE, 20.0, 6000.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    rates = [_erb_rate(f) for f in got]
    np.testing.assert_allclose(np.diff(rates), (hi - lo) / 7, rtol=1e-9)


@pytest.mark.parametrize("low, high", [(20.0, 6000.0), (20.0, 100.0)])
def test_gammatone_banks_shape_nyquist_unit_peaks_at_centres(low, high):
    # 20..6000 Hz keeps every centre below about 0.85 Nyquist, above which
    # scipy's digital design moves the peaks. 20..100 Hz puts the centres at
    # 34..82 Hz. There, freqz on scipy's expanded degree-8 denominator puts
    # the 34 Hz peak at 21 Hz, which the factored evaluation must avoid.
    banks = gammatone_banks(4, FINE_FFT, RATE, low_freq=low, high_freq=high)
    assert banks.shape == (FINE_FFT // 2 + 1, 4)
    assert banks.dtype == np.float32
    assert np.all(banks[-1] == 0.0)
    np.testing.assert_allclose(banks.max(axis=0), 1.0, rtol=0, atol=1e-7)
    centres = filter_bank_centres("gammatone", 4, RATE, low, high)
    peaks = _bin_freqs(FINE_FFT, RATE)[banks.argmax(axis=0)]
    assert np.all(np.abs(peaks - centres) <= BIN_HZ), (peaks, centres)


def test_gammatone_filter_is_scipys_power_response():
    # A 1 kHz-region filter, where scipy's own freqz(b, a) is accurate.
    banks = gammatone_banks(3, 512, RATE, low_freq=500.0, high_freq=2000.0)
    lo, hi = _erb_rate(500.0), _erb_rate(2000.0)
    centre = _erb_rate_to_hz(lo + 2 * (hi - lo) / 4)  # the middle one of 3
    b, a = signal.gammatone(centre, "iir", fs=RATE)
    freqs = _bin_freqs(512, RATE)[:-1]
    _, response = signal.freqz(b, a, worN=freqs, fs=RATE)
    power = np.abs(response) ** 2
    np.testing.assert_allclose(banks[:-1, 1], power / power.max(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- dispatcher


def test_dispatcher_mel_is_kaldis_and_kinds_dispatch():
    assert FILTER_BANKS == ("mel", "linear", "gammatone")
    np.testing.assert_array_equal(filter_bank_matrix("mel", 128, 512, RATE),
                                  kaldi_mel_banks(128, 512, RATE))
    np.testing.assert_array_equal(filter_bank_matrix("linear", 8, 512, RATE, 50.0, 7000.0),
                                  linear_banks(8, 512, RATE, 50.0, 7000.0))
    np.testing.assert_array_equal(filter_bank_matrix("gammatone", 8, 512, RATE),
                                  gammatone_banks(8, 512, RATE))
    with pytest.raises(ValueError, match=r"one of \('mel', 'linear', 'gammatone'\); "
                                         r"received 'bark'"):
        filter_bank_matrix("bark", 8, 512, RATE)


@pytest.mark.parametrize("function", [linear_banks, gammatone_banks])
def test_bad_edges_and_bins_name_the_value(function):
    with pytest.raises(ValueError, match="received low_freq=9000.0, high_freq=0.0"):
        function(8, 512, RATE, low_freq=9000.0)
    with pytest.raises(ValueError, match="received low_freq=20.0, high_freq=9000.0"):
        function(8, 512, RATE, high_freq=9000.0)
    with pytest.raises(ValueError, match="received low_freq=-1.0"):
        function(8, 512, RATE, low_freq=-1.0)
    with pytest.raises(ValueError, match="num_bins must be an integer >= 1; received 0"):
        function(0, 512, RATE)


# ---------------------------------------------------------------- KaldiFbank


def _numpy_fbank(waveform, banks, window_type="povey", preemphasis=0.97):
    """Kaldi's front end in NumPy (float64): 25 ms frames every 10 ms at 16
    kHz, DC removal, pre-emphasis, window, 512-point power spectrum, bank,
    log of at least float32 eps."""
    frames = np.lib.stride_tricks.sliding_window_view(waveform.astype(np.float64), 400,
                                                      axis=-1)[..., ::160, :]
    frames = frames - frames.mean(axis=-1, keepdims=True)
    previous = np.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = (frames - preemphasis * previous) * kaldi_window(window_type, 400)
    power = np.abs(np.fft.rfft(frames, n=512, axis=-1)) ** 2
    return np.log(np.maximum(power @ banks.astype(np.float64), np.finfo(np.float32).eps))


def test_kaldi_fbank_linear_matches_numpy():
    layer = KaldiFbank(num_mel_bins=16, filter_bank="linear", high_freq=-500.0)
    waveform = RNG.normal(size=(2, 1200)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(waveform))
    assert got.shape == (2, 6, 16)  # 1 + (1200 - 400) // 160 frames
    expected = _numpy_fbank(waveform, linear_banks(16, 512, RATE, 20.0, -500.0))
    # Default normalisation (0, 0.5): the output is the log energies themselves.
    assert np.abs(expected).min() > 1.0  # so a relative tolerance is meaningful
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0)


def test_kaldi_fbank_default_is_the_mel_bank():
    layer = KaldiFbank(num_mel_bins=16)
    assert layer.filter_bank == "mel" and layer.high_freq == 0.0
    np.testing.assert_array_equal(layer._banks, kaldi_mel_banks(16, 512, RATE, 20.0))


@pytest.mark.parametrize("filter_bank", ["linear", "gammatone"])
def test_kaldi_fbank_config_roundtrip_and_save(filter_bank, tmp_path):
    layer = KaldiFbank(num_mel_bins=8, filter_bank=filter_bank, high_freq=7000.0,
                       window_type="hanning", name=f"fbank_{filter_bank}")
    config = layer.get_config()
    assert config["filter_bank"] == filter_bank and config["high_freq"] == 7000.0
    assert KaldiFbank.from_config(config).get_config() == config
    out = roundtrip_and_save(layer, RNG.normal(size=(2, 800)).astype("float32"), tmp_path,
                             rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 3, 8)


def test_kaldi_fbank_bad_bank_and_edges_name_the_value():
    with pytest.raises(ValueError, match="filter_bank must be one of .*received 'bark'"):
        KaldiFbank(filter_bank="bark")
    with pytest.raises(ValueError, match="Linear bank edges .*received low_freq=20.0, "
                                         "high_freq=12345.0"):
        KaldiFbank(filter_bank="linear", high_freq=12345.0)
    with pytest.raises(ValueError, match="Gammatone bank edges .*received low_freq=8000.0"):
        KaldiFbank(filter_bank="gammatone", low_freq=8000.0)
    with pytest.raises(ValueError, match="Mel bank edges .*high_freq=-9000.0"):
        KaldiFbank(high_freq=-9000.0)
