"""Parity of the Keras BEATs and EAT ports with their PyTorch references.

Not part of the library (it imports torch). References (methods.md §H):

- BEATs: `speechbrain.lobes.models.beats.BEATs` (speechbrain 1.1.2), built
  from a checkpoint file in the official `{"cfg", "model"}` format that this
  script writes with the iter3 configuration (§C2) and random weights.
- EAT: `tools/eat_reference.py`, written from §C1.

For each encoder: a random state dict in the official layout
(`asd_keras.models.converters.random_state_dict`) is loaded into the
reference and converted by the library's converter (BEATs through the
`.pt` file, i.e. `asd-keras convert`'s own reader); both run on the same
clip, and the filter banks and every layer's tokens are compared (max
absolute difference, float32). Layers must agree to `--tolerance`; the
filter bank to twice torchaudio's own float32 error on that clip (see
FBANK_FACTOR), measured against the same front end run in float64, and
never less than `--tolerance`.

    python tools/encoder_parity.py check [--size full|tiny] [--out FILE]
    python tools/encoder_parity.py fixtures --out tests/data/encoders

`fixtures` writes the small `.npz` fixtures that the torch-free test suite
compares against (`tests/test_audio_encoders.py`).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (label, encoder type, configuration)
TINY = (
    ("beats", "beats", {"num_layers": 2, "dim": 32, "num_heads": 4, "ffn_dim": 64,
                        "patch_dim": 16, "conv_pos": 16, "conv_pos_groups": 4}),
    ("eat", "eat", {"num_layers": 2, "dim": 32, "num_heads": 4, "max_length": 64,
                    "num_frames": 96}),
)
FULL = (
    ("beats_iter3", "beats", {}),
    ("beats_iter3_plus_as2m", "beats", {"num_classes": 527}),
    ("eat_base", "eat", {}),
    ("eat_large", "eat", {"num_layers": 24, "dim": 1024, "num_heads": 16}),
)
SAMPLE_RATE = 16000
# Filter-bank parity is stated relative to torchaudio's own float32 error
# (its max |difference| from the same front end run in float64, on the same
# clip), not as a fixed absolute bound: near a quiet bin beside loud tones
# the log of a tiny power amplifies float32 rounding, so torchaudio itself
# is 8.8e-5 from float64 there (EAT-base, 10 s) and the port 1.2e-4 from
# torchaudio. Two float32 computations each within e of the exact value can
# differ by 2e, hence the factor. The layers' bound (--tolerance) is the
# floor: on a clip where torchaudio happens to be within a few 1e-6 of
# float64, the port is still within the ordinary float32 spread (the tiny
# fixtures: torchaudio 7.2e-6 from float64, the port 2.1e-5, 2.8e-5 apart).
FBANK_FACTOR = 2.0


def test_clip(seconds, seed=0):
    """A machine-like test clip: a harmonic hum, a noise floor and a few
    impulses, scaled like a DCASE recording (peak about 0.3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) / k
              for k, f in enumerate((120.0, 240.0, 360.0, 1130.0), start=1))
    wave = 0.05 * hum + 0.02 * rng.standard_normal(t.size)
    wave[rng.integers(0, t.size, 20)] += 0.2
    return (wave / np.abs(wave).max() * 0.3).astype(np.float32)


def beats_cfg(config):
    """The official BEATs `cfg` of an encoder configuration."""
    from asd_keras.models.converters import BEATS_ITER3_CFG
    from asd_keras.models.converters import _beats_config
    c = _beats_config(config)
    return {**BEATS_ITER3_CFG, "encoder_layers": c["num_layers"],
            "encoder_embed_dim": c["dim"], "encoder_ffn_embed_dim": c["ffn_dim"],
            "encoder_attention_heads": c["num_heads"], "embed_dim": c["patch_dim"],
            "input_patch_size": c["patch_size"], "conv_bias": c["conv_bias"],
            "conv_pos": c["conv_pos"], "conv_pos_groups": c["conv_pos_groups"],
            "num_buckets": c["num_buckets"], "max_distance": c["max_distance"],
            "gru_rel_pos": c["gated"], "deep_norm": c["deep_norm"],
            "finetuned_model": bool(c["num_classes"]),
            "predictor_class": c["num_classes"] or 527}


def run_beats_reference(checkpoint, wave):
    """speechbrain's BEATs from an official-format file: fbank and layers."""
    import torch
    import torchaudio
    from speechbrain.lobes.models.beats import BEATs

    torch.set_grad_enabled(False)
    model = BEATs(ckp_path=str(checkpoint), freeze=True, output_all_hiddens=True)
    model.eval()
    batch = torch.from_numpy(wave)
    fbank = model.preprocess(batch).numpy()
    # The same front end in float64 (methods.md §C2): the fbank's tolerance.
    fbank64 = np.stack([
        ((torchaudio.compliance.kaldi.fbank(
            torch.from_numpy(w.astype(np.float64))[None] * 2 ** 15, num_mel_bins=128,
            sample_frequency=16000, frame_length=25, frame_shift=10) - 15.41663)
         / (2 * 6.55582)).numpy() for w in wave])
    out = model.extract_features(batch, wav_lens=torch.ones(len(wave)))
    hidden = out[0].numpy()  # (layers + 1, tokens, batch, dim): time-first inside
    if hidden.shape[2] != len(wave):
        hidden = np.swapaxes(hidden, 1, 2)
    layers = [np.swapaxes(h, 0, 1) if h.shape[0] != len(wave) else h for h in hidden]
    result = {"fbank": fbank, "fbank_float64": fbank64,
              **{f"layer_{i}": h for i, h in enumerate(layers)}}
    if len(out) > 1 and out[1] is not None and model.predictor is not None:
        result["probabilities"] = out[1].numpy()
    return result


def run_eat_reference(state, config, wave):
    """tools/eat_reference.py with the same weights: fbank and layers."""
    import torch
    from eat_reference import EATReference, eat_fbank, load_official_state_dict
    from asd_keras.models.converters import _eat_config

    torch.set_grad_enabled(False)
    c = _eat_config(config)
    model = EATReference(embed_dim=c["dim"], depth=c["num_layers"], num_heads=c["num_heads"],
                         mlp_ratio=c["mlp_ratio"], patch_size=c["patch_size"],
                         num_bands=c["num_mel_bins"] // c["patch_size"],
                         max_length=c["max_length"], num_classes=c["num_classes"])
    load_official_state_dict(model, {k: torch.from_numpy(v) for k, v in state.items()})
    model.eval()
    fbank = torch.stack([eat_fbank(torch.from_numpy(w), target_length=c["num_frames"])
                         for w in wave])
    fbank64 = np.stack([eat_fbank(torch.from_numpy(w.astype(np.float64)),
                                  target_length=c["num_frames"], dtype=torch.float64).numpy()
                        for w in wave])
    layers = model.extract_features(fbank)
    result = {"fbank": fbank.numpy(), "fbank_float64": fbank64,
              **{f"layer_{i}": h.numpy() for i, h in enumerate(layers)}}
    if c["num_classes"]:
        result["logits"] = model.classify(fbank).numpy()
    return result


def keras_outputs(encoder_type, config, state):
    from asd_keras.models.audio_encoders import build_encoder
    from asd_keras.models.converters import convert_state_dict
    encoder = build_encoder(encoder_type, **config)
    convert_state_dict(encoder, state)
    return encoder


def reference_and_port(encoder_type, config, wave, seed=0):
    """`(state, reference outputs, Keras encoder)` for one configuration; the
    BEATs port is converted from the written `.pt` file (the CLI's path)."""
    import torch
    from asd_keras.models.audio_encoders import load_encoder
    from asd_keras.models.converters import convert_checkpoint
    from asd_keras.models.converters import random_state_dict

    state = random_state_dict(encoder_type, config, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        if encoder_type == "beats":
            path = Path(tmp) / "BEATs_random.pt"
            torch.save({"cfg": beats_cfg(config),
                        "model": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
            reference = run_beats_reference(path, wave)
        else:
            path = Path(tmp) / "eat_random.pt"
            torch.save({"cfg": {"model": {"num_heads": config.get("num_heads", 12)}},
                        "model": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
            reference = run_eat_reference(state, config, wave)
        convert_checkpoint(encoder_type, path, Path(tmp) / "preset",
                           overrides={"num_frames": config["num_frames"]}
                           if "num_frames" in config else None)
        encoder, _ = load_encoder(str(Path(tmp) / "preset"))
    return state, reference, encoder


def fbank_tolerance(reference, floor):
    """`(tolerance, torchaudio's float32 error)` of the filter bank: the
    error times FBANK_FACTOR, at least `floor` (the layers' tolerance)."""
    own = float(np.abs(reference["fbank"].astype(np.float64)
                       - reference["fbank_float64"]).max())
    if own > 1e-3:  # a float64 front end that differs would loosen the bound
        raise SystemExit(f"The float64 fbank is {own:.3g} from the reference's float32 fbank: "
                         "it is not the same front end, so it cannot set the tolerance.")
    return max(FBANK_FACTOR * own, floor), own


def compare(reference, encoder, wave, tolerance, batch_size=2):
    """Max |difference| per output, each with its tolerance: the fbank's
    from `fbank_tolerance`, every other output `tolerance`."""
    outputs = {}
    for start in range(0, len(wave), batch_size):
        part = encoder.predict_on_batch(wave[start:start + batch_size])
        for k, v in part.items():
            outputs.setdefault(k, []).append(np.asarray(v))
    outputs = {k: np.concatenate(v) for k, v in outputs.items()}
    report = {}
    for name, expected in reference.items():
        if name == "fbank_float64":
            continue
        got = outputs[name]
        if got.shape != expected.shape:
            raise SystemExit(f"{name}: Keras shape {got.shape} != reference {expected.shape}")
        report[name] = {"max_abs_diff": float(np.abs(got - expected).max()),
                        "max_abs_value": float(np.abs(expected).max()),
                        "shape": list(expected.shape), "tolerance": tolerance}
        if name == "fbank":
            limit, own = fbank_tolerance(reference, tolerance)
            report[name].update(tolerance=limit, torchaudio_float32_error=own)
    return report


def check(size, out, seconds, tolerance):
    configs = FULL if size == "full" else TINY
    wave = np.stack([test_clip(seconds, seed=s) for s in (0, 1)])
    results = {}
    failed = False
    for label, encoder_type, config in configs:
        start = time.perf_counter()
        _, reference, encoder = reference_and_port(encoder_type, config, wave)
        report = compare(reference, encoder, wave, tolerance)
        worst = max(r["max_abs_diff"] for r in report.values())
        failed |= any(r["max_abs_diff"] > r["tolerance"] for r in report.values())
        results[label] = {"encoder": encoder_type, "config": config, "clip_seconds": seconds,
                                 "worst": worst, "outputs": report,
                                 "seconds": round(time.perf_counter() - start, 1)}
        print(f"{label} ({size}): worst max|diff| {worst:.3g} over "
              f"{len(report)} outputs (tolerance {tolerance:g}; fbank "
              f"{report['fbank']['tolerance']:.3g}: at least {FBANK_FACTOR:g} x torchaudio's "
              f"float32 error {report['fbank']['torchaudio_float32_error']:.3g})")
        for name, r in report.items():
            print(f"  {name:14s} {r['max_abs_diff']:.3g}  (|ref| <= {r['max_abs_value']:.3g}, "
                  f"tolerance {r['tolerance']:.3g})")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2))
    if failed:
        raise SystemExit("Parity FAILED: a difference exceeds its tolerance.")
    print("Parity OK.")


def fixtures(out):
    """Tiny-configuration fixtures: official-layout weights, a 1 s clip and
    the references' outputs, one `.npz` per encoder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wave = np.stack([test_clip(1.0, seed=s) for s in (0, 1)])
    for _, encoder_type, config in TINY:
        state, reference, _ = reference_and_port(encoder_type, config, wave, seed=3)
        arrays = {f"state/{k}": v for k, v in state.items()}
        arrays.update({f"reference/{k}": v.astype(np.float32) for k, v in reference.items()
                       if k != "fbank_float64"})  # only the tolerance needs it
        arrays["waveform"] = wave
        arrays["config"] = np.array(json.dumps(config))
        path = out / f"{encoder_type}_tiny.npz"
        np.savez_compressed(path, **arrays)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("--size", choices=("full", "tiny"), default="full")
    c.add_argument("--seconds", type=float, default=10.0)
    c.add_argument("--tolerance", type=float, default=1e-4,
                   help="max |difference| of every layer; the fbank's is relative to "
                        "torchaudio's own float32 error (FBANK_FACTOR)")
    c.add_argument("--out")
    f = sub.add_parser("fixtures")
    f.add_argument("--out", default="tests/data/encoders")
    args = parser.parse_args()
    if args.command == "check":
        check(args.size, args.out, args.seconds, args.tolerance)
    else:
        fixtures(args.out)


if __name__ == "__main__":
    main()
