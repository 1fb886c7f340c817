"""One clip's scene: a machine instance in its background, with the
two-microphone geometry of the DCASE 2026 layout."""

import numpy as np
from scipy import signal

from asd_keras.data.synthetic.machines import MACHINE_TYPES
from asd_keras.data.synthetic.machines import _MODELS
from asd_keras.data.synthetic.signals import _rms


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
