"""Filter banks that `KaldiFbank` can put on the Kaldi power spectrum.

"An Enhanced Audio Feature Tailored for ASD Based on Pre-trained Models"
fine-tunes EAT on filter banks whose centres are evenly spaced in Hz (its
m-FB). The reason is that the mel scale packs the high frequencies, where
many machine sounds carry their faults, into a few wide bands. A gammatone
bank on the ERB-rate scale (g-FB) is the paper's ablation. All three banks
here are `(padded_window_size // 2 + 1, num_bins)` float32 matrices. They
multiply the power spectrum where Kaldi's mel matrix does, and the Nyquist
bin gets zero weight as in Kaldi:

- `"mel"`: Kaldi's triangles on the mel axis (`kaldi_mel_banks`).
- `"linear"`: the same triangles on the Hz axis.
- `"gammatone"`: the power response of scipy's IIR gammatone filters,
  with centres evenly spaced on Glasberg & Moore's ERB-rate scale.
"""

import numpy as np
from scipy import signal

from asd_keras.config import check_integer

FILTER_BANKS = ("mel", "linear", "gammatone")


def bank_edges(name, low_freq, high_freq, sample_rate):
    """The bank's edges in Hz, with Kaldi's convention that `high_freq <= 0` is
    an offset from Nyquist, validated as in `kaldi_mel_banks`."""
    nyquist = 0.5 * sample_rate
    high = float(high_freq)
    if high <= 0.0:
        high += nyquist
    if not 0.0 <= low_freq < high <= nyquist:
        raise ValueError(
            f"{name} bank edges must satisfy 0 <= low_freq < high_freq <= {nyquist}; "
            f"received low_freq={low_freq!r}, high_freq={high_freq!r}.")
    return float(low_freq), high


def _check_num_bins(num_bins):
    return check_integer("num_bins", num_bins, 1)


def fft_bin_freqs(padded_window_size, sample_rate):
    """Frequencies in Hz of rfft bins 0 to N/2 - 1. The Nyquist bin is left
    out because every bank gives it zero weight."""
    return sample_rate / padded_window_size * np.arange(padded_window_size // 2)


def with_zero_nyquist(banks):
    """`(num_bins, N/2)` weights to the `(N/2 + 1, num_bins)` float32 matrix,
    with a zero row for the Nyquist bin, as `kaldi_mel_banks` does."""
    return np.pad(banks, ((0, 0), (0, 1))).T.astype(np.float32)


def _hz_to_mel(freq):
    # Kaldi's mel scale (reference methods.md §C1), which BEATs and EAT use.
    return 1127.0 * np.log(1.0 + np.asarray(freq, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (np.exp(np.asarray(mel, np.float64) / 1127.0) - 1.0)


def erb_rate(freq):
    """Glasberg & Moore's ERB-rate scale (ERB number): `21.4 log10(1 +
    0.00437 f)`, with `f` in Hz.

    Args:
        freq: float or array. Frequencies in Hz.

    Returns:
        float64 array of ERB numbers.
    """
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(freq, np.float64))


def erb_rate_to_hz(rate):
    """The inverse of `erb_rate`: ERB numbers to Hz.

    Args:
        rate: float or array. ERB numbers.

    Returns:
        float64 array of frequencies in Hz.
    """
    return (10.0 ** (np.asarray(rate, np.float64) / 21.4) - 1.0) / 0.00437


def _even_centres(num_bins, low, high):
    """`num_bins` centres strictly between `low` and `high`, evenly spaced as
    the centres of Kaldi's triangles are: `low + (i + 1) * delta`, where
    `delta = (high - low) / (num_bins + 1)`."""
    delta = (high - low) / (num_bins + 1)
    return low + (np.arange(num_bins) + 1.0) * delta


def filter_bank_centres(kind, num_bins, sample_rate, low_freq=20.0, high_freq=0.0):
    """The centre frequencies, in Hz, of the filters of a bank.

    Args:
        kind: str. One of `FILTER_BANKS`.
        num_bins: int. Number of filters.
        sample_rate: int.
        low_freq: float. Lowest edge in Hz.
        high_freq: float. Highest edge in Hz; `<= 0` is an offset from the
            Nyquist frequency (Kaldi's convention).

    Returns:
        float64 array `(num_bins,)`, increasing: evenly spaced on the mel
        axis, in Hz, or on the ERB-rate axis, by `kind`.
    """
    _check_kind(kind)
    num_bins = _check_num_bins(num_bins)
    low, high = bank_edges(kind.capitalize(), low_freq, high_freq, sample_rate)
    if kind == "mel":
        return _mel_to_hz(_even_centres(num_bins, _hz_to_mel(low), _hz_to_mel(high)))
    if kind == "linear":
        return _even_centres(num_bins, low, high)
    return erb_rate_to_hz(_even_centres(num_bins, erb_rate(low), erb_rate(high)))


def kaldi_mel_banks(num_mel_bins, padded_window_size, sample_rate, low_freq=20.0,
                    high_freq=0.0):
    """Kaldi's triangular mel filter bank on the rfft bins (the bank of
    `torchaudio.compliance.kaldi.fbank`, reference methods.md §C1).

    Args:
        num_mel_bins: int.
        padded_window_size: int. FFT length (a power of two).
        sample_rate: int.
        low_freq: float. Lowest edge in Hz.
        high_freq: float. Highest edge in Hz; `<= 0` is an offset from the
            Nyquist frequency (Kaldi's convention).

    Returns:
        float32 array `(padded_window_size // 2 + 1, num_mel_bins)`; the
        Nyquist bin has zero weight, as in Kaldi.
    """
    low, high = bank_edges("Mel", low_freq, high_freq, sample_rate)
    mel = _hz_to_mel(fft_bin_freqs(padded_window_size, sample_rate))
    return with_zero_nyquist(triangles(_hz_to_mel(low), _hz_to_mel(high), num_mel_bins, mel))


def linear_banks(num_bins, padded_window_size, sample_rate, low_freq=20.0, high_freq=0.0):
    """Triangular filters with centres evenly spaced in Hz (the paper's m-FB).

    This is Kaldi's mel-bank construction with the mel axis replaced by Hz.
    With `delta = (high - low) / (num_bins + 1)`, filter `i` rises from
    `low + i * delta` to a peak of 1 at `low + (i + 1) * delta` and falls
    to 0 at `low + (i + 2) * delta`. On an FFT bin at frequency `f` its
    weight is `max(0, min((f - left) / (centre - left), (right - f) /
    (right - centre)))`.

    Args:
        num_bins: int. Number of filters.
        padded_window_size: int. FFT length (a power of two).
        sample_rate: int.
        low_freq: float. Lowest edge in Hz.
        high_freq: float. Highest edge in Hz; `<= 0` is an offset from the
            Nyquist frequency (Kaldi's convention).

    Returns:
        float32 array `(padded_window_size // 2 + 1, num_bins)`; the
        Nyquist bin has zero weight, as in Kaldi's mel bank.

    Raises:
        ValueError: `num_bins` is not positive, or the edges do not satisfy
            `0 <= low_freq < high_freq <= sample_rate / 2`.
    """
    num_bins = _check_num_bins(num_bins)
    low, high = bank_edges("Linear", low_freq, high_freq, sample_rate)
    return with_zero_nyquist(
        triangles(low, high, num_bins, fft_bin_freqs(padded_window_size, sample_rate)))


def triangles(low, high, num_bins, positions):
    """Kaldi's triangular filters on any axis (Hz, mel, ...).

    With `delta = (high - low) / (num_bins + 1)`, filter `i` rises from
    `low + i * delta` to 1 at `low + (i + 1) * delta` and falls to 0 at
    `low + (i + 2) * delta` (Kaldi's `MelBanks`, whose axis is the mel
    scale).

    Args:
        low: float. The outer edges on the axis.
        high: float. The outer edges on the axis.
        num_bins: int.
        positions: array `(n,)`. The FFT bins' positions on the axis.

    Returns:
        float64 array `(num_bins, n)`.
    """
    delta = (high - low) / (num_bins + 1)
    index = np.arange(num_bins)[:, None]
    left = low + index * delta
    centre = low + (index + 1.0) * delta
    right = low + (index + 2.0) * delta
    positions = np.asarray(positions)[None, :]
    up = (positions - left) / (centre - left)
    down = (right - positions) / (right - centre)
    return np.maximum(0.0, np.minimum(up, down))


def _gammatone_power_response(centre, freqs, sample_rate):
    """`|H(f)|^2` of `scipy.signal.gammatone(centre, "iir", fs=sample_rate)`
    at the frequencies `freqs` (Hz).

    `freqz(b, a)` is not used on the expanded denominator. scipy's design
    is a fourfold pole pair, `a(z) = (1 - 2 r cos(w) z^-1 + r^2 z^-2)^4`.
    For a centre of a few tens of Hz (below about 50 Hz at 16 kHz) the
    poles sit so near z = 1 that the degree-8 polynomial cancels to
    rounding noise near the centre. The response then peaks at the wrong
    frequency, with a gain of 25 instead of 1. The quadratic factor is
    read back from `a`: its coefficients are `a[1] / 4` and `a[8] ** (1 /
    4)`. `freqz` of that factor, raised to the 4th power, is accurate. The
    numerator, degree 4 with no repeated roots, is evaluated as designed.
    """
    b, a = signal.gammatone(centre, "iir", fs=sample_rate)
    b, a = np.asarray(b, np.float64), np.asarray(a, np.float64)
    quadratic = np.array([1.0, a[1] / 4.0, a[8] ** 0.25])
    quartic = quadratic
    for _ in range(3):
        quartic = np.convolve(quartic, quadratic)
    # Guards the factorisation above: if a scipy release changes the design,
    # this fails loudly instead of producing a wrong bank.
    if quartic.shape != a.shape or not np.allclose(quartic, a, rtol=0.0,
                                                   atol=1e-9 * np.abs(a).max()):
        raise RuntimeError(
            "scipy.signal.gammatone's IIR denominator is no longer a fourth power of a "
            f"quadratic (centre {centre!r} Hz); gammatone_banks needs updating.")
    _, numerator = signal.freqz(b, 1.0, worN=freqs, fs=sample_rate)
    _, denominator = signal.freqz(quadratic, 1.0, worN=freqs, fs=sample_rate)
    return np.abs(numerator) ** 2 / np.abs(denominator) ** 8


def gammatone_banks(num_bins, padded_window_size, sample_rate, low_freq=20.0,
                    high_freq=0.0):
    """Gammatone filters on the ERB-rate scale (the paper's g-FB ablation).

    The centres are evenly spaced on Glasberg & Moore's ERB-rate scale
    (`erb_rate`), placed as the triangles' centres are: `erb_lo + (i + 1)
    * (erb_hi - erb_lo) / (num_bins + 1)`, so all of them lie strictly
    between the edges. Each filter is `scipy.signal.gammatone(centre,
    "iir", fs=sample_rate)`, a 4th-order gammatone with a bandwidth of
    1.019 ERB. Its weights are the filter's power response `|H(f)|^2` at
    the FFT bin frequencies.

    The power response, not the magnitude `|H(f)|`, is used because the
    bank weights a power spectrum. A gammatone channel's output power is
    `|H(f)|^2 |X(f)|^2`. Weighting `|X(f)|^2` by `|H(f)|` would give a
    channel that is wider and has longer skirts than the gammatone.

    Each filter is then scaled to a largest weight of 1 over the bins it is
    evaluated on. Its scale is then comparable to the unit-peak triangles,
    even where a narrow low filter falls between two bins, or the digital
    filter's peak gain differs from 1 near the Nyquist frequency.

    The shapes differ from the triangles in two ways. The weights are not
    zero outside the edges, because the gammatone's skirts reach every bin;
    the edges place only the centres. And filters with a centre near the
    Nyquist frequency (above about 0.85 Nyquist) have peaks that move off
    the centre, because scipy's digital design warps wide filters there.

    Args:
        num_bins: int. Number of filters.
        padded_window_size: int. FFT length (a power of two).
        sample_rate: int.
        low_freq: float. Lowest edge in Hz.
        high_freq: float. Highest edge in Hz; `<= 0` is an offset from the
            Nyquist frequency (Kaldi's convention).

    Returns:
        float32 array `(padded_window_size // 2 + 1, num_bins)`; the
        Nyquist bin has zero weight, as in Kaldi's mel bank.

    Raises:
        ValueError: `num_bins` is not positive, or the edges do not satisfy
            `0 <= low_freq < high_freq <= sample_rate / 2`.
    """
    num_bins = _check_num_bins(num_bins)
    low, high = bank_edges("Gammatone", low_freq, high_freq, sample_rate)
    centres = erb_rate_to_hz(_even_centres(num_bins, erb_rate(low), erb_rate(high)))
    freqs = fft_bin_freqs(padded_window_size, sample_rate)
    banks = np.stack([_gammatone_power_response(float(c), freqs, sample_rate)
                      for c in centres])
    return with_zero_nyquist(banks / banks.max(axis=1, keepdims=True))


def _check_kind(kind):
    if kind not in FILTER_BANKS:
        raise ValueError(f"filter bank must be one of {FILTER_BANKS}; received {kind!r}.")


def filter_bank_matrix(kind, num_bins, padded_window_size, sample_rate, low_freq=20.0,
                       high_freq=0.0):
    """The filter-bank matrix of a kind, as `KaldiFbank` applies it.

    Args:
        kind: str. `"mel"` (Kaldi's, `kaldi_mel_banks`), `"linear"`
            (`linear_banks`) or `"gammatone"` (`gammatone_banks`).
        num_bins: int. Number of filters.
        padded_window_size: int. FFT length (a power of two).
        sample_rate: int.
        low_freq: float. Lowest edge in Hz.
        high_freq: float. Highest edge in Hz; `<= 0` is an offset from the
            Nyquist frequency (Kaldi's convention).

    Returns:
        float32 array `(padded_window_size // 2 + 1, num_bins)` with zero
        weight on the Nyquist bin.

    Raises:
        ValueError: `kind` is not one of `FILTER_BANKS`, or the bank
            rejects its arguments.
    """
    _check_kind(kind)
    if kind == "mel":
        return kaldi_mel_banks(num_bins, padded_window_size, sample_rate, low_freq, high_freq)
    if kind == "linear":
        return linear_banks(num_bins, padded_window_size, sample_rate, low_freq, high_freq)
    return gammatone_banks(num_bins, padded_window_size, sample_rate, low_freq, high_freq)
