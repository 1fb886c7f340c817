"""The sound models of the toy machines: a toy car on a rolling belt and a toy
train on a track (`asd_keras.data.synthetic` describes each)."""

import numpy as np

from asd_keras.data.synthetic.machine_model import _Machine
from asd_keras.data.synthetic.signals import _band_noise
from asd_keras.data.synthetic.signals import _periodic_times
from asd_keras.data.synthetic.signals import _resonant_hits
from asd_keras.data.synthetic.signals import _slow_noise
from asd_keras.data.synthetic.signals import _tone_bank


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
