"""The sound models of the full-size factory machines: fan, pump, gearbox,
valve, slider and bearing (`asd_keras.data.synthetic` describes each)."""

import numpy as np

from asd_keras.data.synthetic.machine_model import _Machine
from asd_keras.data.synthetic.signals import _band_noise
from asd_keras.data.synthetic.signals import _periodic_times
from asd_keras.data.synthetic.signals import _resonant_hits
from asd_keras.data.synthetic.signals import _slow_noise
from asd_keras.data.synthetic.signals import _tone_bank


class Fan(_Machine):
    """A fan: blade-pass harmonics of a rotor plus band-limited airflow noise."""

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
    """A pump: motor hum, vane-pass harmonics and flow noise."""

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
    """A gearbox: gear-mesh harmonics with shaft-rate sidebands."""

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
    """A solenoid valve: periodic clicks and flow hiss."""

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
    """A slide rail: a motor tone following the speed of its strokes,
    friction noise and end-stop knocks."""

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
