"""Synthetic machine sounds written in the exact DCASE Task 2 layouts.

Users can try every system before downloading 100 GB of DCASE data, and the
tests and the demo need data that these machines can make. Each machine type
is a small physical sound model:

* fan: blade-pass harmonics of a rotor plus band-limited airflow noise;
  anomalies: imbalance (once-per-turn tone and modulation), a cracked blade
  (a click every turn), clogging (duller, louder airflow).
* pump: motor hum, vane-pass harmonics and flow noise; anomalies: cavitation
  (random crackle), a leak (high hiss), a worn impeller (vane-pass jitter).
* gearbox: gear-mesh harmonics with shaft-rate sidebands; anomalies: a broken
  tooth (an impact every shaft turn), wear (strong sidebands, mesh jitter).
* valve: a solenoid's periodic clicks and flow hiss; anomalies:
  contamination (detuned, longer clicks), timing faults (late or missed
  clicks).
* slider: a slide rail's strokes (motor tone following the speed, friction
  noise, end-stop knocks); anomalies: no grease (a squeal), rail damage (a
  tick at one position of every stroke).
* bearing: a rolling-element bearing on a shaft (shaft-rate harmonics, weak
  outer- and inner-race ball-pass tones, the inner one shaft-rate modulated,
  broadband friction noise); attribute: rotation speed; anomalies: an
  outer-race defect (impacts at the outer ball-pass rate ringing the
  housing's resonance), an inner-race defect (impacts at the inner ball-pass
  rate, swelling once per shaft turn), lubrication loss (louder friction and
  rough high-frequency noise).
* ToyCar: a toy car on a rolling belt (commutator whine and pinion mesh
  following the motor speed, tyre/belt noise); attribute: speed; anomalies:
  a bent shaft (once-per-wheel-turn speed and level wobble and thump), a
  damaged gear (an impact every wheel turn, mesh modulation), a loose part
  (bursts of rattle clicks).
* ToyTrain: a toy train on a track of rail segments (motor tone, brush
  noise, wheel-rail rumble, each axle clacking over every rail joint at a
  speed-dependent rate); attribute: speed; anomalies: a flat wheel (an
  impact every wheel turn), a derailment-like scrape (bursts of rough
  broadband grinding), a chipped rail (a sharp extra clack per axle at one
  place of the loop, once per lap).

`MACHINE_TYPES` lists every type; seeds derive from a type's position in it,
so new types are appended and never change the earlier types' audio.
`generate` writes `DEFAULT_MACHINE_TYPES` (the first five) unless told
otherwise; `DCASE2022_MACHINE_TYPES` is the DCASE 2022 Task 2 set (fan,
gearbox, bearing, slider, ToyCar, ToyTrain, valve), whose dev sections 00-02
and eval ("additional training") sections 03-05 the dcase2022 layout writes
with `eval=True`. Any type can be written in any layout.

A section is one machine instance with its own physical parameters. An
attribute (speed, flow, pattern, ...) changes the sound. The source domain
has many training clips; the target domain has a few, with the attribute
shifted out of the source range and a louder background. All machine types
share one factory background (pink noise, mains hum, distant machinery,
random clanks). Everything is deterministic given the seed.

In the 2026 layout every clip has two channels: channel 0 is the near
microphone (at the machine), channel 1 the far one (out in the hall). With
m(t) the machine (unit RMS when normal), s(t) ONE background scene per clip
(unit RMS) and b the domain's background level (`background_gain`, times 1.6
in the target domain):

    near(t) = 0.1 * (m(t) + b * g_n * s(t - d_n))
    far(t)  = 0.1 * (a_f * (h * m)(t - d_m) + b * g_f * s(t - d_f))

* The scene s is rendered once, 6 ms longer than the clip, and both
  microphones hear that same realisation with their own gain and delay:
  g_n ~ U(0.8, 1.1), g_f ~ U(1.5, 2.1) (the far microphone hears more of
  the hall), d_n, d_f ~ U(0.5, 5) ms (8-80 samples at 16 kHz, so the far
  channel's copy lags the near one's by d_f - d_n, up to +-4.5 ms). The
  two background parts are therefore the same waveform, not two noises of
  the same kind.
* The machine is direct (gain 1, no delay) at the near microphone and at
  the far one weaker, a_f ~ U(0.3, 0.4) (about 8-10 dB less energy),
  reverberant (h: a 0.3 s exponentially decaying noise response, time
  constant 80 ms, unit energy) and later, d_m ~ U(2, 6) ms. The far path
  hears the clip continued circularly 0.3 s + 6 ms into the past, so it is
  in steady state from the first sample and every machine event lies
  within the clip.
* Gains and delays are the geometry of one section (machine instance),
  drawn from their own generator (seed, machine type, split, section,
  tag 2026) and so leaving every other random stream alone; per clip the
  two background gains jitter by +-5 % (delays stay fixed).
* The domains differ in the scene's level (b) and its composition: the
  source scene is the plain sum pink + tonal bed + clanks, the target
  scene weights them 0.5 / 2.0 / 2.0 (less broadband noise, more hum and
  distant machinery, louder clanks) before scaling to unit RMS, so most of
  the target background's energy lies below 400 Hz (about 0.85-0.9 of it
  against about 0.6-0.65 in the source domain).
* As in every layout, a clip whose peak exceeds 0.99 is scaled down as a
  whole (one factor for both channels, so their ratios hold), and clips
  are float32.

Why subtracting the far channel (for example the "Residual View" embedding
f_near - alpha * f_far) can help: both channels carry the same background
realisation, so a scaled far view carries the near channel's actual
background, not just background of the same kind, and subtracting it can
remove what the channels share (with independent realisations, as before,
nothing could cancel). Why it can hurt: the far channel also carries the
machine (a_f, reverberant, delayed), so subtracting it also removes part of
the machine's own sound, anomalies included; and the background matches only
up to gain and delay. The ratio g_n / g_f differs per section and per clip,
so one alpha cannot fit every clip; the lag D = d_f - d_n leaves, in
waveform terms, 2|sin(pi f D)| of the background at frequency f, so
cancellation holds only below about 1 / (6 D) (37 Hz for D = 4.5 ms, 170 Hz
for 1 ms); frame-level features blur this mismatch but do not remove it.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from scipy import signal
from tqdm.auto import tqdm

from asd_keras.data.layouts import LAYOUTS
from asd_keras.utils.io import atomic_write_rows
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir

# Every synthetic machine type. Seeds derive from a type's position here, so
# new types are appended: the earlier types' audio never changes.
MACHINE_TYPES = (
    "fan", "pump", "gearbox", "valve", "slider", "bearing", "ToyCar", "ToyTrain"
)
# The types written when none are chosen (the demo and the tests' data).
DEFAULT_MACHINE_TYPES = ("fan", "pump", "gearbox", "valve", "slider")
# The seven machine types of DCASE 2022 Task 2 (the folder names).
DCASE2022_MACHINE_TYPES = (
    "fan", "gearbox", "bearing", "slider", "ToyCar", "ToyTrain", "valve"
)


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


# --------------------------------------------------------------------------
# Machine models
# --------------------------------------------------------------------------


class _Machine:
    """A physical sound model.

    Subclasses define `instance(rng)`, which draws one machine's physical
    parameters (a section), and `render(inst, level, anomaly, severity, n,
    sr, rng)`, which returns `n` samples for attribute `level`.
    """

    attribute_name = "att"
    source_levels = (1, 2, 3)
    target_levels = (5,)
    anomaly_kinds = ()


class Fan(_Machine):
    attribute_name = "spd"
    anomaly_kinds = ("imbalance", "blade_crack", "clogging")

    def instance(self, rng):
        return {
            "blades": int(rng.integers(5, 10)),
            "rotation_hz": rng.uniform(16, 24),
            "harmonics": rng.uniform(0.3, 1.0, 8) * 0.7 ** np.arange(8),
            "air_low": rng.uniform(300, 700),
            "air_width": rng.uniform(600, 2000),
            "air_level": rng.uniform(0.6, 1.0),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        rot = inst["rotation_hz"] * (1 + 0.12 * (level - 2))
        rot_curve = rot * (1 + 0.004 * _slow_noise(rng, n, sr))
        tones = _tone_bank(inst["blades"] * rot_curve, inst["harmonics"], sr, rng)
        low, width, air_gain = inst["air_low"], inst["air_width"], 1.0
        if anomaly == "clogging":
            low, width = low * (1 - 0.35 * severity), width * (1 - 0.4 * severity)
            air_gain = 1 + 0.9 * severity
        air = _band_noise(rng, n, sr, low, low + width)
        air *= inst["air_level"] * (rot / inst["rotation_hz"]) ** 2 * air_gain
        x = tones + air
        phase = 2 * np.pi * np.cumsum(rot_curve) / sr
        depth = 0.03
        if anomaly == "imbalance":
            depth = 0.03 + 0.25 * severity
            x += severity * 0.5 * (np.sin(phase) + 0.5 * np.sin(2 * phase))
        x *= 1 + depth * np.sin(phase)
        if anomaly == "blade_crack":
            times = _periodic_times(rot_curve, sr, rng.uniform())
            x += _resonant_hits(
                times,
                severity * 6 * rng.uniform(0.7, 1.3, len(times)),
                n,
                sr,
                rng.uniform(2500, 4000),
                0.004,
                rng,
            )
        return x


class Pump(_Machine):
    attribute_name = "flw"
    anomaly_kinds = ("cavitation", "leak", "worn_impeller")

    def instance(self, rng):
        return {
            "vanes": int(rng.integers(5, 8)),
            "rotation_hz": rng.uniform(22, 30),
            "hum": rng.uniform(0.2, 0.6, 3),
            "vane_harmonics": rng.uniform(0.3, 1.0, 5) * 0.6 ** np.arange(5),
            "flow_high": rng.uniform(600, 1500),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        t = np.arange(n) / sr
        rot = inst["rotation_hz"] * (1 - 0.03 * (level - 2))
        jitter = 0.003 + (0.03 * severity if anomaly == "worn_impeller" else 0)
        rot_curve = rot * (1 + jitter * _slow_noise(rng, n, sr, 8.0))
        hum = sum(
            a * np.sin(2 * np.pi * 100 * k * t) for k, a in enumerate(inst["hum"], 1)
        )
        vanes = _tone_bank(
            inst["vanes"] * rot_curve, inst["vane_harmonics"], sr, rng
        )
        flow = _band_noise(rng, n, sr, 60, inst["flow_high"]) * (
            0.4 + 0.25 * level
        )
        x = hum + vanes + flow
        if anomaly == "cavitation":
            count = rng.poisson(severity * 60 * n / sr)
            times = rng.uniform(0, n / sr, count)
            x += _resonant_hits(
                times,
                rng.uniform(0.5, 2.0, count) * 2.5,
                n,
                sr,
                rng.uniform(3000, 6000),
                0.0015,
                rng,
            )
        elif anomaly == "leak":
            x += 0.35 * severity * _band_noise(rng, n, sr, 3500, 6500, order=3)
        return x


class Gearbox(_Machine):
    attribute_name = "vlt"
    anomaly_kinds = ("broken_tooth", "wear")

    def instance(self, rng):
        return {
            "teeth": int(rng.integers(17, 32)),
            "shaft_hz": rng.uniform(12, 20),
            "mesh_harmonics": rng.uniform(0.4, 1.0, 4) * 0.6 ** np.arange(4),
            "resonance_hz": rng.uniform(1200, 3000),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        shaft = inst["shaft_hz"] * (1 + 0.1 * (level - 2))
        jitter = 0.002 + (0.01 * severity if anomaly == "wear" else 0)
        shaft_curve = shaft * (1 + jitter * _slow_noise(rng, n, sr, 4.0))
        mesh = _tone_bank(
            inst["teeth"] * shaft_curve, inst["mesh_harmonics"], sr, rng
        )
        phase = 2 * np.pi * np.cumsum(shaft_curve) / sr
        sideband = 0.05 + (0.5 * severity if anomaly == "wear" else 0)
        x = mesh * (1 + sideband * np.sin(phase))
        x += 0.15 * _band_noise(rng, n, sr, 200, 4000)
        if anomaly == "broken_tooth":
            times = _periodic_times(shaft_curve, sr, rng.uniform())
            x += _resonant_hits(
                times,
                severity * 5 * rng.uniform(0.8, 1.2, len(times)),
                n,
                sr,
                inst["resonance_hz"],
                0.003,
                rng,
            )
        return x


class Valve(_Machine):
    attribute_name = "pat"
    source_levels = (0, 1, 2)
    target_levels = (4,)
    anomaly_kinds = ("contamination", "timing")

    def instance(self, rng):
        return {
            "period_s": rng.uniform(0.6, 1.2),
            "offsets": np.sort(rng.uniform(0, 0.8, int(rng.integers(2, 4)))),
            "click_hz": rng.uniform(1500, 4000),
            "click_decay": rng.uniform(0.004, 0.01),
            "hiss_low": rng.uniform(1000, 2500),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        period = inst["period_s"] * (1 - 0.12 * level)
        offsets = inst["offsets"] * period
        starts = np.arange(rng.uniform(0, period), n / sr, period)
        times = (starts[:, None] + offsets[None, :]).ravel()
        amplitudes = rng.uniform(0.8, 1.2, len(times)) * 3
        freq, decay = inst["click_hz"], inst["click_decay"]
        if anomaly == "timing":
            times = times + rng.normal(0, 0.04 * severity, len(times))
            drop = rng.uniform(size=len(times)) < 0.25 * severity
            amplitudes[drop] = 0
        if anomaly == "contamination":
            freq *= 1 + 0.3 * severity * rng.choice([-1, 1])
            decay *= 1 + 2 * severity
        x = _resonant_hits(times, amplitudes, n, sr, freq, decay, rng)
        gate = np.zeros(n)
        for start in starts:
            a = int(start * sr)
            gate[a : a + int(0.4 * period * sr)] = 1
        gate = np.convolve(gate, np.ones(160) / 160, mode="same")
        hiss = _band_noise(rng, n, sr, inst["hiss_low"], inst["hiss_low"] + 2500)
        return x + 0.2 * gate * hiss + 0.02 * _band_noise(rng, n, sr, 100, 2000)


class Slider(_Machine):
    attribute_name = "vel"
    anomaly_kinds = ("no_grease", "rail_damage")

    def instance(self, rng):
        return {
            "stroke_s": rng.uniform(0.8, 1.5),
            "motor_hz": rng.uniform(150, 300),
            "friction_low": rng.uniform(800, 1500),
            "knock_hz": rng.uniform(600, 1500),
            "damage_position": rng.uniform(0.2, 0.8),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        stroke = inst["stroke_s"] * (1 - 0.1 * (level - 2))
        t = np.arange(n) / sr
        stroke_phase = (t + rng.uniform(0, stroke)) / stroke
        speed = np.abs(np.sin(np.pi * stroke_phase))
        motor = _tone_bank(
            inst["motor_hz"] * (0.5 + 0.5 * speed), [1.0, 0.5, 0.25], sr, rng
        )
        friction = _band_noise(
            rng, n, sr, inst["friction_low"], inst["friction_low"] + 1500
        )
        x = speed * (0.5 * motor + 0.5 * friction)
        reversals = (np.arange(np.ceil(stroke_phase[-1]) + 1) - stroke_phase[0]) * stroke
        x += _resonant_hits(
            reversals, np.full(len(reversals), 2.0), n, sr, inst["knock_hz"], 0.01, rng
        )
        if anomaly == "no_grease":
            squeal = _tone_bank(
                rng.uniform(3000, 5000) * (1 + 0.01 * _slow_noise(rng, n, sr, 2)),
                [1.0],
                sr,
                rng,
            )
            x += 0.25 * severity * speed**2 * squeal
        elif anomaly == "rail_damage":
            position = (reversals + inst["damage_position"] * stroke)[:-1]
            x += _resonant_hits(
                position,
                np.full(len(position), 4.0 * severity),
                n,
                sr,
                rng.uniform(2500, 4500),
                0.002,
                rng,
            )
        return x


class Bearing(_Machine):
    """A rolling-element bearing on a rotating shaft.

    The ball-pass frequencies follow from the ball count and the ball to
    pitch diameter ratio r: outer race (balls / 2)(1 - r) x shaft rate,
    inner race (balls / 2)(1 + r) x shaft rate.
    """

    attribute_name = "vel"
    anomaly_kinds = ("outer_race", "inner_race", "lubrication")

    def instance(self, rng):
        return {
            "shaft_hz": rng.uniform(20, 35),
            "balls": int(rng.integers(7, 13)),
            "ball_ratio": rng.uniform(0.15, 0.3),
            "shaft_harmonics": rng.uniform(0.3, 1.0, 6) * 0.6 ** np.arange(6),
            "ball_pass_level": rng.uniform(0.08, 0.15),
            "resonance_hz": rng.uniform(2500, 5000),
            "friction_low": rng.uniform(800, 2000),
            "friction_level": rng.uniform(0.3, 0.5),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        shaft = inst["shaft_hz"] * (1 + 0.15 * (level - 2))
        shaft_curve = shaft * (1 + 0.003 * _slow_noise(rng, n, sr, 2.0))
        half, ratio = inst["balls"] / 2, inst["ball_ratio"]
        outer_curve = half * (1 - ratio) * shaft_curve
        inner_curve = half * (1 + ratio) * shaft_curve
        shaft_phase = 2 * np.pi * np.cumsum(shaft_curve) / sr
        x = _tone_bank(shaft_curve, inst["shaft_harmonics"], sr, rng)
        # Even a healthy bearing has weak ball-pass tones; the inner race
        # turns with the shaft, so its tone is modulated at the shaft rate.
        bp = inst["ball_pass_level"]
        x += bp * _tone_bank(outer_curve, [1.0, 0.5, 0.25], sr, rng)
        x += bp * (1 + 0.5 * np.cos(shaft_phase)) * _tone_bank(
            inner_curve, [1.0, 0.5], sr, rng
        )
        friction = _band_noise(
            rng, n, sr, inst["friction_low"], inst["friction_low"] + 3000
        )
        gain = inst["friction_level"] * shaft / inst["shaft_hz"]
        if anomaly == "lubrication":
            gain *= 1 + 0.8 * severity
        x += gain * friction + 0.1 * _band_noise(rng, n, sr, 50, 600)
        if anomaly == "lubrication":
            # Metal-to-metal contact: rough high-frequency friction noise.
            roughness = np.abs(1 + 0.7 * _slow_noise(rng, n, sr, 40.0))
            hiss = _band_noise(rng, n, sr, 4500, 7800, order=3)
            x += 0.8 * severity * roughness * hiss
        elif anomaly in ("outer_race", "inner_race"):
            # A spall is struck by every passing ball; each strike rings the
            # housing's resonance. The inner race carries the spall through
            # the load zone once per turn, so those strikes swell and fade
            # at the shaft rate.
            curve = outer_curve if anomaly == "outer_race" else inner_curve
            times = _periodic_times(curve, sr, rng.uniform())
            amplitudes = 3 * severity * rng.uniform(0.8, 1.2, len(times))
            if anomaly == "inner_race":
                at = np.minimum((times * sr).astype(int), n - 1)
                amplitudes *= 1.6 * (0.6 + 0.4 * np.cos(shaft_phase[at]))
            x += _resonant_hits(
                times, amplitudes, n, sr, inst["resonance_hz"], 0.0015, rng
            )
        return x


class ToyCar(_Machine):
    """A toy car running on a rolling belt.

    A small DC motor (commutator whine) drives the wheels through a pinion
    and a spur gear; the tyres roll on the belt.
    """

    attribute_name = "spd"
    anomaly_kinds = ("bent_shaft", "gear_damage", "loose_part")

    def instance(self, rng):
        return {
            "motor_hz": rng.uniform(120, 220),
            "poles": int(rng.integers(3, 6)),
            "whine_harmonics": rng.uniform(0.3, 1.0, 4) * 0.6 ** np.arange(4),
            "pinion_teeth": int(rng.integers(8, 14)),
            "gear_ratio": rng.uniform(8, 16),
            "mesh_level": rng.uniform(0.3, 0.6),
            "belt_low": rng.uniform(150, 400),
            "belt_high": rng.uniform(1500, 3000),
            "belt_level": rng.uniform(0.4, 0.8),
            "gear_resonance_hz": rng.uniform(2000, 4000),
            "rattle_hz": rng.uniform(1200, 3000),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        motor = inst["motor_hz"] * (1 + 0.15 * (level - 2))
        motor_curve = motor * (1 + 0.01 * _slow_noise(rng, n, sr, 1.0))
        wheel_curve = motor_curve / inst["gear_ratio"]
        wheel_phase = 2 * np.pi * np.cumsum(wheel_curve) / sr + rng.uniform(0, 2 * np.pi)
        if anomaly == "bent_shaft":
            # The wobbling axle loads the motor once per wheel turn.
            motor_curve = motor_curve * (1 + 0.08 * severity * np.sin(wheel_phase))
        whine = _tone_bank(
            inst["poles"] * motor_curve, inst["whine_harmonics"], sr, rng
        )
        mesh = _tone_bank(inst["pinion_teeth"] * motor_curve, [1.0, 0.4], sr, rng)
        belt = _band_noise(rng, n, sr, inst["belt_low"], inst["belt_high"])
        belt *= inst["belt_level"] * (motor / inst["motor_hz"]) * (
            1 + 0.1 * np.sin(wheel_phase)
        )
        if anomaly == "gear_damage":
            mesh *= 1 + 0.6 * severity * np.sin(wheel_phase)
        x = 0.6 * whine + inst["mesh_level"] * mesh + belt
        if anomaly == "bent_shaft":
            x *= 1 + 0.6 * severity * np.sin(wheel_phase + 0.5)
            x += 1.5 * severity * np.sin(wheel_phase) ** 8 * _band_noise(
                rng, n, sr, 100, 800
            )
        elif anomaly == "gear_damage":
            # A damaged tooth of the spur gear strikes once per wheel turn.
            times = _periodic_times(wheel_curve, sr, rng.uniform())
            x += _resonant_hits(
                times,
                7 * severity * rng.uniform(0.8, 1.2, len(times)),
                n,
                sr,
                inst["gear_resonance_hz"],
                0.003,
                rng,
            )
        elif anomaly == "loose_part":
            # A loose part bounces: short bursts of clicks, mostly once per
            # wheel turn, some at random.
            turns = _periodic_times(wheel_curve, sr, rng.uniform())
            turns = turns[rng.uniform(size=len(turns)) < 0.5 + 0.5 * severity]
            extra = rng.uniform(0, n / sr, rng.poisson(5 * severity * n / sr))
            starts = np.concatenate([turns, extra])
            gaps = rng.uniform(0.004, 0.015, (len(starts), 3))
            times = (starts[:, None] + np.cumsum(gaps, axis=1)).ravel()
            x += _resonant_hits(
                times,
                6 * severity * rng.uniform(0.5, 1.0, len(times)),
                n,
                sr,
                inst["rattle_hz"],
                0.002,
                rng,
            )
        return x


class ToyTrain(_Machine):
    """A toy train running on a track of rail segments.

    A motor drives the wheels through a gear; the wheels rumble on the
    rails, and every axle clacks over every rail joint.
    """

    attribute_name = "spd"
    anomaly_kinds = ("flat_wheel", "scrape", "chipped_rail")

    def instance(self, rng):
        wheelbase, length = rng.uniform(0.03, 0.05), rng.uniform(0.1, 0.2)
        return {
            "speed_m_s": rng.uniform(0.3, 0.6),
            "wheel_m": rng.uniform(0.03, 0.06),
            "motor_ratio": rng.uniform(15, 30),
            "motor_harmonics": rng.uniform(0.3, 1.0, 5) * 0.6 ** np.arange(5),
            "segment_m": rng.uniform(0.15, 0.3),
            "loop_m": rng.uniform(1.2, 2.4),
            "axles_m": np.array([0.0, wheelbase, length, length + wheelbase]),
            "rumble_high": rng.uniform(800, 1600),
            "rumble_level": rng.uniform(0.4, 0.8),
            "clack_hz": rng.uniform(800, 2000),
            "wheel_ring_hz": rng.uniform(3000, 6000),
            "chip_hz": rng.uniform(4500, 6500),
        }

    def render(self, inst, level, anomaly, severity, n, sr, rng):
        speed = inst["speed_m_s"] * (1 + 0.15 * (level - 2))
        speed_curve = speed * (1 + 0.01 * _slow_noise(rng, n, sr, 1.0))
        wheel_curve = speed_curve / inst["wheel_m"]
        motor_curve = wheel_curve * inst["motor_ratio"]
        motor = _tone_bank(motor_curve, inst["motor_harmonics"], sr, rng)
        motor_phase = 2 * np.pi * np.cumsum(motor_curve) / sr
        brushes = _band_noise(rng, n, sr, 2000, 5000) * (
            0.08 * (1 + 0.5 * np.sin(motor_phase))
        )
        rumble = _band_noise(rng, n, sr, 60, inst["rumble_high"])
        rumble *= inst["rumble_level"] * speed / inst["speed_m_s"]
        x = 0.5 * motor + brushes + rumble
        # Rail joints: every axle passes every joint; axles trail the front
        # one by their distance along the train.
        start = rng.uniform(0, inst["segment_m"])
        clacks = []
        for offset in inst["axles_m"]:
            clacks.append(
                _periodic_times(
                    speed_curve / inst["segment_m"],
                    sr,
                    (start - offset) / inst["segment_m"],
                )
            )
        clacks = np.concatenate(clacks)
        x += _resonant_hits(
            clacks,
            2 * rng.uniform(0.8, 1.2, len(clacks)),
            n,
            sr,
            inst["clack_hz"],
            0.008,
            rng,
        )
        if anomaly == "flat_wheel":
            times = _periodic_times(wheel_curve, sr, rng.uniform())
            x += _resonant_hits(
                times,
                8 * severity * rng.uniform(0.8, 1.2, len(times)),
                n,
                sr,
                inst["wheel_ring_hz"],
                0.002,
                rng,
            )
        elif anomaly == "scrape":
            # Derailment-like grinding: bursts of rough broadband noise.
            count = 1 + rng.poisson(2 * severity * n / sr)
            grind = np.zeros(n)
            for _ in range(count):
                length = int(rng.uniform(0.2, 0.5) * sr)
                a = int(rng.uniform(0, max(1, n - length)))
                grind[a : a + length] += np.hanning(length)[: n - a]
            roughness = np.abs(1 + 0.8 * _slow_noise(rng, n, sr, 40.0))
            x += 4 * severity * grind * roughness * _band_noise(
                rng, n, sr, 1000, 7000
            )
        elif anomaly == "chipped_rail":
            # A chip at one place of the loop: every axle strikes it once
            # per lap, the first pass early in the clip.
            lap = inst["loop_m"] / speed
            passes = np.arange(rng.uniform(0, min(lap, 0.5 * n / sr)), n / sr, lap)
            times = (passes[:, None] + inst["axles_m"][None, :] / speed).ravel()
            x += _resonant_hits(
                times,
                15 * severity * rng.uniform(0.8, 1.2, len(times)),
                n,
                sr,
                inst["chip_hz"],
                0.005,
                rng,
            )
        return x


_MODELS = {
    "fan": Fan(),
    "pump": Pump(),
    "gearbox": Gearbox(),
    "valve": Valve(),
    "slider": Slider(),
    "bearing": Bearing(),
    "ToyCar": ToyCar(),
    "ToyTrain": ToyTrain(),
}

# Sections per layout and split (reference dcase.md section 1).
_SECTIONS = {
    "dcase2020": {"dev": ("00", "02", "04"), "eval": ("01", "03", "05")},
    "dcase2021": {"dev": ("00", "01", "02"), "eval": ("03", "04", "05")},
    "dcase2022": {"dev": ("00", "01", "02"), "eval": ("03", "04", "05")},
    "dcase2023": {"dev": ("00",), "eval": ("00",)},
    "dcase2026": {"dev": ("00",), "eval": ("00",)},
}

# The 2024+ data hide some attributes ("noAttribute") and shuffle those
# clip indices (reference dcase.md section 1.5); the generator does the same
# for this machine type in the one-section layouts.
_HIDDEN_ATTRIBUTE_MACHINE = "slider"


@dataclasses.dataclass
class SynthConfig:
    """Size and shape of a synthetic dataset.

    Attributes:
        layout: str. One of `LAYOUTS`.
        machine_types: list of str. Subset of `MACHINE_TYPES`; defaults to
            `DEFAULT_MACHINE_TYPES`.
        seconds: float. Clip length.
        train: int. Source-domain training clips per section.
        target_train: int. Target-domain training clips per section.
        test: int. Test clips per section, domain and label (2020: per
            machine ID and label, twice this number).
        seed: int.
        sample_rate: int.
        eval: bool. Also write eval-style data (anonymised test names) and
            the official evaluator's ground-truth folders.
        background_gain: float. Background level relative to the machine
            in the source domain; the target domain's is 1.6 times larger.
        severity: tuple of float. Range of anomaly severities.
    """

    layout: str = "dcase2022"
    machine_types: tuple = DEFAULT_MACHINE_TYPES
    seconds: float = 10.0
    train: int = 50
    target_train: int = 3
    test: int = 10
    seed: int = 0
    sample_rate: int = 16000
    eval: bool = False
    background_gain: float = 0.5
    severity: tuple = (0.3, 0.7)

    def validate(self):
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"Unknown layout {self.layout!r}; use one of {LAYOUTS}."
            )
        unknown = sorted(set(self.machine_types) - set(MACHINE_TYPES))
        if unknown or not self.machine_types:
            spelled = {m.lower(): m for m in MACHINE_TYPES}
            hints = [
                f"{u!r} -> {spelled[u.lower()]!r}"
                for u in unknown
                if u.lower() in spelled
            ]
            hint = f" (names are case-sensitive: {', '.join(hints)})" if hints else ""
            raise ValueError(
                f"Unknown synthetic machine type(s) {unknown or '(none)'}; "
                f"choose from {MACHINE_TYPES}{hint}."
            )
        if self.seconds * self.sample_rate < 4096:
            raise ValueError(
                f"seconds={self.seconds} is too short: a clip needs at least "
                f"{4096 / self.sample_rate:.2f} s."
            )
        if not 0 <= float(self.background_gain) < float("inf"):
            raise ValueError(
                f"background_gain must be a finite number >= 0; received "
                f"{self.background_gain!r}."
            )
        for name in ("train", "target_train", "test"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; received {getattr(self, name)}.")


# The 2026 layout's two microphones (see the module docstring).
# Background (pink, tonal bed, clanks) weights in the target domain; the
# source domain uses the plain sum (equal weights).
_TARGET_MIX = (0.5, 2.0, 2.0)
# Longest delay of any path to a microphone; the scene and the machine are
# rendered this much (and, for the machine, the room response) longer.
_MAX_MIC_DELAY_S = 0.006
# Far-path room response: exponential decay (time constant, length).
_ROOM_DECAY_S = 0.08
_ROOM_SECONDS = 0.3
# Seed tag of the per-section microphone geometry stream.
_GEOMETRY_SEED_TAG = 2026


def _mic_geometry(config, machine_type, split, section):
    """One section's microphone geometry (2026 layout): gains and delays.

    Drawn from its own generator, so no other random stream (instance,
    plan, clips) changes; fixed per section, as the microphones of one
    machine instance stay where they are.
    """
    rng = np.random.default_rng([
        config.seed, MACHINE_TYPES.index(machine_type), split == "eval",
        int(section), _GEOMETRY_SEED_TAG,
    ])
    return {
        # The shared hall scene: the far microphone hears more of it.
        "near_bg_gain": rng.uniform(0.8, 1.1),
        "far_bg_gain": rng.uniform(1.5, 2.1),
        "near_bg_delay_s": rng.uniform(0.0005, 0.005),
        "far_bg_delay_s": rng.uniform(0.0005, 0.005),
        # The machine: direct (gain 1, no delay) at the near microphone,
        # weaker, reverberant and later at the far one.
        "far_machine_gain": rng.uniform(0.3, 0.4),
        "far_machine_delay_s": rng.uniform(0.002, 0.006),
    }


def _delayed(x, pre, delay, n):
    """`n` samples of `x` delayed by `delay` samples; x[pre] is time 0."""
    return x[pre - delay : pre - delay + n]


def _two_mic_parts(config, background, machine_type, inst, domain, level,
                   anomaly, rng):
    """The 2026 layout's four signal parts, each (n,), before the 0.1 scale.

    Returns a dict: near_machine, far_machine, near_background,
    far_background, and the per-clip values used (gains and integer
    delays in samples). A clip is 0.1 * (near_machine + near_background)
    in channel 0 and 0.1 * (far_machine + far_background) in channel 1.
    """
    sr = config.sample_rate
    n = int(round(config.seconds * sr))
    model = _MODELS[machine_type]
    geometry = inst["_mics"]
    max_delay = int(np.ceil(_MAX_MIC_DELAY_S * sr))

    def samples(seconds):
        return min(max_delay, int(round(seconds * sr)))

    room_size = int(_ROOM_SECONDS * sr)
    pre = room_size + max_delay
    severity = rng.uniform(*config.severity) if anomaly else 0.0
    machine = model.render(inst, level, anomaly, severity, n, sr, rng)
    machine = machine / inst["_normal_rms"]
    # The far path hears the clip continued circularly `pre` samples into
    # the past, so its reverberation and delay are in steady state from the
    # first sample, while every event (an anomaly's clank, say) that the
    # near microphone hears lies within the clip.
    machine = np.take(machine, np.arange(-pre, n) % n)
    # One scene for both microphones, `max_delay` samples longer than the
    # clip; each microphone hears it with its own delay.
    bg_gain = config.background_gain * (1.6 if domain == "target" else 1.0)
    mix = _TARGET_MIX if domain == "target" else None
    scene = background.render(rng, n + max_delay, sr, mix=mix)
    t = np.arange(room_size) / sr
    room = rng.standard_normal(room_size) * np.exp(-t / _ROOM_DECAY_S)
    room /= np.sqrt(np.sum(room**2))
    # Small per-clip gain jitter (people, doors, air); delays stay fixed.
    near_bg_gain = geometry["near_bg_gain"] * rng.uniform(0.95, 1.05)
    far_bg_gain = geometry["far_bg_gain"] * rng.uniform(0.95, 1.05)
    near_bg_delay = samples(geometry["near_bg_delay_s"])
    far_bg_delay = samples(geometry["far_bg_delay_s"])
    machine_delay = samples(geometry["far_machine_delay_s"])
    reverberant = signal.fftconvolve(machine, room)
    return {
        "near_machine": machine[pre:],
        "far_machine": geometry["far_machine_gain"]
        * _delayed(reverberant, pre, machine_delay, n),
        "near_background": bg_gain * near_bg_gain
        * _delayed(scene, max_delay, near_bg_delay, n),
        "far_background": bg_gain * far_bg_gain
        * _delayed(scene, max_delay, far_bg_delay, n),
        "near_bg_gain": near_bg_gain,
        "far_bg_gain": far_bg_gain,
        "near_bg_delay": near_bg_delay,
        "far_bg_delay": far_bg_delay,
        "far_machine_delay": machine_delay,
        "mix": mix,
    }


def _clip(config, background, machine_type, inst, domain, level, anomaly, rng):
    """Renders one clip: (samples,) or (samples, 2) for dcase2026."""
    if config.layout == "dcase2026":
        parts = _two_mic_parts(config, background, machine_type, inst, domain,
                               level, anomaly, rng)
        near = 0.1 * (parts["near_machine"] + parts["near_background"])
        far = 0.1 * (parts["far_machine"] + parts["far_background"])
        out = np.stack([near, far], axis=-1)
    else:
        sr = config.sample_rate
        n = int(round(config.seconds * sr))
        model = _MODELS[machine_type]
        severity = rng.uniform(*config.severity) if anomaly else 0.0
        machine = model.render(inst, level, anomaly, severity, n, sr, rng)
        machine = machine / inst["_normal_rms"]
        bg_gain = config.background_gain * (1.6 if domain == "target" else 1.0)
        out = 0.1 * (machine + bg_gain * background.render(rng, n, sr))
    peak = np.max(np.abs(out))
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def _instance(config, machine_type, split, section):
    rng = np.random.default_rng(
        [config.seed, MACHINE_TYPES.index(machine_type), split == "eval", int(section)]
    )
    model = _MODELS[machine_type]
    inst = model.instance(rng)
    # Each instance is normalised so that its normal sound has unit RMS.
    probe = model.render(inst, 2, None, 0.0, config.sample_rate * 2, config.sample_rate, rng)
    inst["_normal_rms"] = _rms(probe)
    # The 2026 layout's microphone geometry (its own random stream).
    inst["_mics"] = _mic_geometry(config, machine_type, split, section)
    return inst


def _plan(config, machine_type, split, section):
    """Lists the clips of one section: dicts with domain/label/level/..."""
    rng = np.random.default_rng(
        [config.seed, MACHINE_TYPES.index(machine_type), split == "eval", int(section), 1]
    )
    model = _MODELS[machine_type]
    clips = []
    domains = ("source",) if config.layout == "dcase2020" else ("source", "target")
    for domain in domains:
        levels = model.source_levels if domain == "source" else model.target_levels
        n_train = config.train if domain == "source" else config.target_train
        if config.layout == "dcase2020":
            n_train = config.train + config.target_train
        for i in range(n_train):
            clips.append(
                dict(part="train", domain=domain, label=0, index=i,
                     level=int(rng.choice(levels)), anomaly=None)
            )
        n_test = config.test * (2 if config.layout == "dcase2020" else 1)
        for label in (0, 1):
            for i in range(n_test):
                anomaly = rng.choice(model.anomaly_kinds) if label else None
                clips.append(
                    dict(part="test", domain=domain, label=label, index=i,
                         level=int(rng.choice(levels)), anomaly=anomaly)
                )
    for i, clip in enumerate(clips):
        clip["seed"] = [config.seed, MACHINE_TYPES.index(machine_type), split == "eval", int(section), 2, i]
    return clips


def _attribute_string(machine_type, level, domain):
    model = _MODELS[machine_type]
    return f"{model.attribute_name}_{level}_bg_{'B' if domain == 'target' else 'A'}"


def _names(config, machine_type, split, section, clip, hidden):
    """Returns (relative folder, file name, attribute string) for a clip."""
    layout = config.layout
    dom, lab = clip["domain"], ("anomaly" if clip["label"] else "normal")
    attrs = _attribute_string(machine_type, clip["level"], dom)
    idx = clip["index"]
    if layout == "dcase2020":
        if clip["part"] == "train":
            return "train", f"normal_id_{section}_{idx:08d}.wav", None
        return "test", f"{lab}_id_{section}_{idx:08d}.wav", None
    if clip["part"] == "train":
        shown = "noAttribute" if hidden else attrs
        return "train", f"section_{section}_{dom}_train_normal_{idx:04d}_{shown}.wav", attrs
    if layout == "dcase2021":
        return f"{dom}_test", f"section_{section}_{dom}_test_{lab}_{idx:04d}.wav", attrs
    shown = "noAttribute" if hidden else attrs
    return "test", f"section_{section}_{dom}_test_{lab}_{idx:04d}_{shown}.wav", attrs


def _eval_test_name(layout, section, domain, index):
    if layout == "dcase2020":
        return "test", f"id_{section}_{index:08d}.wav"
    if layout == "dcase2021":
        return f"{domain}_test", f"section_{section}_{domain}_test_{index:04d}.wav"
    return "test", f"section_{section}_{index:04d}.wav"


# Clips rendered in one process below this count (a 10 s clip takes ~30 ms).
_PARALLEL_MIN_CLIPS = 64
_BACKGROUNDS = {}


def _render(task):
    """Renders and writes one clip (in a worker process or in this one).

    Every clip draws from its own seed and the hall from the dataset seed,
    so the files do not depend on which process renders them or in what
    order.
    """
    config, machine_type, inst, clip, path = task
    background = _BACKGROUNDS.get(config.seed)
    if background is None:
        background = _BACKGROUNDS[config.seed] = FactoryBackground(config.seed)
    rng = np.random.default_rng(clip["seed"])
    audio = _clip(config, background, machine_type, inst, clip["domain"], clip["level"],
                  clip["anomaly"], rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, config.sample_rate, subtype="PCM_16")


def _render_all(tasks, workers, bar):
    """Runs `_render` on every task, on `workers` processes when there are
    enough clips to pay for them."""
    import concurrent.futures
    import multiprocessing
    import os
    import sys

    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be an integer >= 1 (or None for every core); "
                         f"received {workers!r}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for every core); received "
                         f"{workers!r}.")
    # Forked workers: a spawned one would re-run the caller's script (a
    # script without a `__main__` guard would start over). Forking a process
    # that has imported TensorFlow can deadlock on its threads, so then the
    # clips are rendered here.
    if (workers == 1 or len(tasks) < _PARALLEL_MIN_CLIPS or "tensorflow" in sys.modules
            or "fork" not in multiprocessing.get_all_start_methods()):
        for task in tasks:
            _render(task)
            bar.update()
        return
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for _ in pool.map(_render, tasks, chunksize=8):
            bar.update()


def generate(out, config=None, force=False, progress=True, workers=None):
    """Writes a synthetic dataset in a DCASE layout.

    Folder structure under `out` (2023/2026 add the `raw/` level of the
    official download scripts):
        dev_data[/raw]/<machine>/{train,test|source_test,target_test}/*.wav
        dev_data[/raw]/<machine>/attributes_XX.csv            (2022+)
        eval_data[/raw]/<machine>/...                          (eval=True)
        ground_truth/...  the official evaluator's files       (eval=True)
        synth.json        the generator settings

    Args:
        out: str or Path. New folder (an existing non-empty one needs
            `force`).
        config: SynthConfig. Defaults to `SynthConfig()`.
        force: bool. Replace an existing folder.
        progress: bool. Show a progress bar.
        workers: int or None. Processes that render the clips; None (the
            default) uses every core. The files are the same whatever the
            number.

    Returns:
        Path to `out`.
    """
    config = config or SynthConfig()
    config.validate()
    out = Path(out)
    raw = ("raw",) if config.layout in ("dcase2023", "dcase2026") else ()
    splits = ("dev", "eval") if config.eval else ("dev",)
    jobs = []
    for split in splits:
        for machine_type in config.machine_types:
            for section in _SECTIONS[config.layout][split]:
                jobs.append((split, machine_type, section))
    total = sum(
        len(_plan(config, m, s, sec)) for s, m, sec in jobs
    )
    with staged_dir(out, force=force, what="synthetic data folder") as stage:
        bar = tqdm(total=total, desc="Synthesising clips", unit="clip", disable=not progress)
        ground_truth = {}
        attribute_rows = {}
        tasks = []
        for split, machine_type, section in jobs:
            inst = _instance(config, machine_type, split, section)
            plan = _plan(config, machine_type, split, section)
            machine_dir = stage.joinpath(f"{split}_data", *raw, machine_type)
            hidden = (
                machine_type == _HIDDEN_ATTRIBUTE_MACHINE
                and config.layout in ("dcase2023", "dcase2026")
            )
            if hidden:
                _shuffle_hidden_indices(plan, config.seed)
            eval_index = {}
            eval_order = np.random.default_rng(
                [config.seed, MACHINE_TYPES.index(machine_type), int(section), 3]
            )
            test_clips = [c for c in plan if c["part"] == "test"]
            eval_perm = eval_order.permutation(len(test_clips))
            for rank, clip in zip(eval_perm, test_clips):
                eval_index[id(clip)] = int(rank)
            for clip in plan:
                folder, name, attrs = _names(config, machine_type, split, section, clip, hidden)
                if split == "eval" and clip["part"] == "test":
                    original = name
                    if config.layout == "dcase2021":
                        domain_count = sum(
                            1 for c in test_clips
                            if c["domain"] == clip["domain"] and eval_index[id(c)] < eval_index[id(clip)]
                        )
                        folder, name = _eval_test_name(config.layout, section, clip["domain"], domain_count)
                    else:
                        folder, name = _eval_test_name(config.layout, section, clip["domain"], eval_index[id(clip)])
                    key = (machine_type, section, clip["domain"] if config.layout == "dcase2021" else None)
                    ground_truth.setdefault(key, []).append(
                        (name, original, clip["label"], clip["domain"])
                    )
                tasks.append((config, machine_type, inst, clip, machine_dir / folder / name))
                if attrs is not None and config.layout not in ("dcase2020", "dcase2021"):
                    include = not hidden and (split == "dev" or clip["part"] == "train")
                    if include:
                        rel = f"{machine_type}/{folder}/{name}"
                        level = attrs.split("_")
                        attribute_rows.setdefault((machine_dir, section), []).append(
                            [rel, level[0], level[1], level[2], level[3]]
                        )
        _render_all(tasks, workers, bar)
        bar.close()
        for (machine_dir, section), rows in attribute_rows.items():
            frame = pd.DataFrame(rows, columns=["file_name", "d1p", "d1v", "d2p", "d2v"])
            atomic_write_text(
                machine_dir / f"attributes_{section}.csv", frame.to_csv(index=False)
            )
        if config.eval:
            _write_ground_truth(stage / "ground_truth", config.layout, ground_truth)
        settings = dataclasses.asdict(config)
        settings["machine_types"] = list(config.machine_types)
        settings["severity"] = list(config.severity)
        atomic_write_text(stage / "synth.json", json.dumps(settings, indent=2))
    return out


def _shuffle_hidden_indices(plan, seed):
    """Renumbers hidden-attribute clips in a random order, per group."""
    rng = np.random.default_rng([seed, 11])
    groups = {}
    for clip in plan:
        groups.setdefault((clip["part"], clip["domain"], clip["label"]), []).append(clip)
    for clips in groups.values():
        for clip, new in zip(clips, rng.permutation(len(clips))):
            clip["index"] = int(new)


def _write_ground_truth(folder, layout, ground_truth):
    """Writes ground truth in the official evaluators' formats (reference 1)."""
    if layout == "dcase2020":
        rows = []
        for machine_type in sorted({k[0] for k in ground_truth}):
            rows.append([machine_type])
            for key in sorted(k for k in ground_truth if k[0] == machine_type):
                for name, original, label, _ in sorted(ground_truth[key]):
                    rows.append([name, original, label])
        atomic_write_rows(folder / "eval_data_list.csv", rows)
        return
    for (machine_type, section, domain), entries in sorted(ground_truth.items()):
        entries = sorted(entries)
        if layout == "dcase2021":
            stem = f"ground_truth_{machine_type}_section_{section}_{domain}_test.csv"
            atomic_write_rows(folder / "ground_truth_data" / stem,
                              [[n, lab] for n, _, lab, _ in entries])
            continue
        stem = f"ground_truth_{machine_type}_section_{section}_test.csv"
        atomic_write_rows(folder / "ground_truth_data" / stem,
                          [[n, lab] for n, _, lab, _ in entries])
        atomic_write_rows(folder / "ground_truth_domain" / stem,
                          [[n, int(d == "target")] for n, _, _, d in entries])
        atomic_write_rows(folder / "ground_truth_attributes" / stem,
                          [[n, Path(o).stem] for n, o, _, _ in entries])


def synthetic_data_root(out, layout, split="dev"):
    """Folder of machine-type folders inside a generated dataset."""
    raw = ("raw",) if layout in ("dcase2023", "dcase2026") else ()
    return Path(out).joinpath(f"{split}_data", *raw)
