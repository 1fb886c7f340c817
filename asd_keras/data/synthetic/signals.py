"""Signal building blocks of the synthetic machines: slow noise, tone banks,
band noise, resonant hits, periodic times."""

import numpy as np
from scipy import signal




# --------------------------------------------------------------------------
# Signal building blocks
# --------------------------------------------------------------------------


def _slow_noise(rng, n, sr, cutoff_hz=0.5):
    """Smooth zero-mean random curve (unit std) for slow drifts."""
    knots = max(4, int(n / sr * cutoff_hz * 2) + 4)
    curve = np.interp(
        np.linspace(0, knots - 1, n), np.arange(knots), rng.standard_normal(knots)
    )
    return curve / (curve.std() + 1e-9)


def _tone_bank(freq_curve, amplitudes, sr, rng):
    """Harmonics k * f(t) with random phases; `freq_curve` is f(t) in Hz."""
    phase = 2 * np.pi * np.cumsum(freq_curve) / sr
    out = np.zeros_like(freq_curve)
    for k, amp in enumerate(amplitudes, start=1):
        if amp == 0:
            continue
        valid = k * freq_curve < sr / 2 - 200
        out += valid * amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _band_noise(rng, n, sr, low, high, order=2):
    low = max(20.0, low)
    high = min(sr / 2 - 100.0, high)
    sos = signal.butter(order, [low, high], btype="band", fs=sr, output="sos")
    out = signal.sosfilt(sos, rng.standard_normal(n))
    return out / (out.std() + 1e-9)


def _resonant_hits(times, amplitudes, n, sr, freq, decay, rng):
    """Impacts at `times` (s), each ringing at `freq` Hz for ~`decay` s."""
    t = np.arange(int(decay * 6 * sr) + 1) / sr
    kernel = np.exp(-t / decay) * np.sin(
        2 * np.pi * freq * t + rng.uniform(0, np.pi)
    )
    out = np.zeros(n)
    # Impacts are sparse: adding each short kernel in place is much cheaper
    # than a full-length convolution.
    for start, amp in zip(np.round(np.asarray(times) * sr).astype(int),
                          np.asarray(amplitudes, dtype=float)):
        if 0 <= start < n and amp != 0:
            stop = min(n, start + kernel.size)
            out[start:stop] += amp * kernel[: stop - start]
    return out


def _periodic_times(rate_curve, sr, offset=0.0):
    """Times where the running phase of `rate_curve` (Hz) crosses integers."""
    cycles = np.cumsum(rate_curve) / sr + offset
    crossings = np.nonzero(np.diff(np.floor(cycles)) > 0)[0]
    return crossings / sr


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))) + 1e-12)
