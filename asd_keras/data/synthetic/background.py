"""The factory background shared by the machines of a synthetic dataset."""

import numpy as np

from asd_keras.data.synthetic.signals import _resonant_hits
from asd_keras.data.synthetic.signals import _rms
from asd_keras.data.synthetic.signals import _slow_noise


class FactoryBackground:
    """One factory hall shared by every machine type of a dataset.

    The hall's character (hum level, machinery tones, clank resonances) is
    fixed by the dataset seed; each clip draws a new realisation.
    """

    def __init__(self, seed):
        rng = np.random.default_rng([seed, 7919])
        self.seed = [seed, 7920]
        self.hum_amplitudes = rng.uniform(0.1, 0.4, 4) / np.arange(1, 5)
        self.machinery_hz = rng.uniform(30, 90, 3)
        self.clank_hz = rng.uniform(400, 3000, 4)
        self.clank_rate = rng.uniform(0.2, 0.6)

    def _tonal_bed(self, n, sr):
        """Mains hum and distant machinery, rendered once per clip length.

        Clips take random slices of one long track, which sounds the same
        as drawing new phases and is far cheaper.
        """
        key = (n, sr)
        if getattr(self, "_bed_key", None) != key:
            rng = np.random.default_rng(self.seed)
            length = n + 4 * sr
            t = np.arange(length) / sr
            hum = sum(
                a * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3))
                for k, a in enumerate(self.hum_amplitudes, start=1)
            )
            machinery = sum(
                0.3
                * (1 + 0.3 * _slow_noise(rng, length, sr, 0.3))
                * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
                for f in self.machinery_hz
            )
            self._bed = 0.5 * hum + machinery
            self._bed_key = key
        return self._bed

    def parts(self, rng, n, sr):
        """The scene's three components, (pink, tonal_bed, clanks), each (n,).

        Pink noise has unit std; the tonal bed is mains hum plus distant
        machinery (a random slice of `_tonal_bed`); clanks are sparse
        resonant impacts. Draws from `rng` exactly as `render` does.
        """
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spectrum /= np.sqrt(np.maximum(freqs, 20.0))
        pink = np.fft.irfft(spectrum, n)
        pink /= pink.std() + 1e-9
        bed = self._tonal_bed(n, sr)
        start = int(rng.integers(0, bed.size - n))
        count = rng.poisson(self.clank_rate * n / sr)
        clanks = np.zeros(n)
        for _ in range(count):
            clanks += _resonant_hits(
                [rng.uniform(0, n / sr)],
                [rng.uniform(0.5, 2.0)],
                n,
                sr,
                rng.choice(self.clank_hz),
                rng.uniform(0.01, 0.05),
                rng,
            )
        return pink, bed[start : start + n], clanks

    def render(self, rng, n, sr, mix=None):
        """One realisation of the hall, (n,) with unit RMS.

        Args:
            mix: None or (pink, tonal_bed, clanks) weights. None is the
                plain sum (equal weights, the arithmetic of every layout
                but the 2026 target domain); weights change the scene's
                composition, not its level (the sum is still scaled to
                unit RMS). The random draws do not depend on `mix`.
        """
        pink, bed, clanks = self.parts(rng, n, sr)
        if mix is None:
            out = pink + bed + clanks
        else:
            w_pink, w_bed, w_clanks = mix
            out = w_pink * pink + w_bed * bed + w_clanks * clanks
        return out / _rms(out)
