"""Embedding-extraction speed of the Keras BEATs and EAT ports against PyTorch.

For BEATs (iter3) and EAT-base at full size with random weights, on the
same `--clips` clips of `--seconds` seconds in batches of `--batch`:

- keras: the `frozen_encoder` extractor's model (waveform -> front end ->
  encoder -> mean-pooled last layer) in a `tf.function`, as `transform`
  runs it, and the same with XLA (`jit_compile=True`);
- pytorch: the reference on the same weights and clips (speechbrain's BEATs,
  `tools/eat_reference.py` with torchaudio's Kaldi fbank), `torch.no_grad`,
  pooled the same way.

Clips per second are the median over `--repeats` passes after a warm-up
pass (tracing and compilation excluded; the warm-up time is printed too),
and the ratio keras / pytorch is given per encoder. Each framework runs in
its own process, one after the other, so they never share the CPU.
PyTorch needs the parity extra (`make parity` installs it); without it the
PyTorch rows say so.

Usage: python benchmarks/bench_encoders.py [--batch 8] [--seconds 10]
       [--clips 16] [--repeats 3] [--encoders beats eat]
Prints a markdown table; nothing is asserted.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def _clips(count, seconds):
    sys.path.insert(0, str(ROOT / "tools"))
    from encoder_parity import test_clip
    import numpy as np
    return np.stack([test_clip(seconds, seed=s) for s in range(count)])


def _keras_worker(encoder_type, batch, seconds, clips, repeats, jit):
    import numpy as np
    import tensorflow as tf

    from asd_keras.models.audio_encoders import build_encoder
    from asd_keras.models.converters import convert_state_dict
    from asd_keras.models.converters import random_state_dict

    import keras

    encoder = build_encoder(encoder_type)
    convert_state_dict(encoder, random_state_dict(encoder_type, seed=0))
    last = f"layer_{encoder.num_layers}"
    extra = encoder.num_extra_tokens
    trunk = keras.Model(encoder.input, encoder.output[last])

    @tf.function(jit_compile=jit)
    def embed(waveform):
        return tf.reduce_mean(trunk(waveform, training=False)[:, extra:], axis=1)

    data = _clips(clips, seconds)
    batches = [tf.constant(data[i:i + batch]) for i in range(0, clips, batch)]
    start = time.perf_counter()
    for b in batches:
        embed(b).numpy()
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            embed(b).numpy()
        times.append(time.perf_counter() - start)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return {"clips_per_s": clips / float(np.median(times)), "warmup_s": warm, "device": device}


def _torch_worker(encoder_type, batch, seconds, clips, repeats):
    import tempfile

    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from encoder_parity import beats_cfg
    from asd_keras.models.converters import random_state_dict

    torch.set_grad_enabled(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = random_state_dict(encoder_type, seed=0)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    if encoder_type == "beats":
        from speechbrain.lobes.models.beats import BEATs
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "beats.pt"
            torch.save({"cfg": beats_cfg({}), "model": tensors}, path)
            model = BEATs(ckp_path=str(path), freeze=True).to(device).eval()

        def embed(waveform):
            out = model.extract_features(waveform, wav_lens=torch.ones(len(waveform),
                                                                       device=device))[0]
            return out.mean(dim=1)
    else:
        from eat_reference import EATReference, eat_fbank, load_official_state_dict
        model = EATReference()
        load_official_state_dict(model, tensors)
        model = model.to(device).eval()

        def embed(waveform):
            fbank = torch.stack([eat_fbank(w) for w in waveform])
            return model(fbank)[:, 1:].mean(dim=1)

    data = _clips(clips, seconds)
    batches = [torch.from_numpy(data[i:i + batch]).to(device) for i in range(0, clips, batch)]
    start = time.perf_counter()
    for b in batches:
        embed(b).cpu().numpy()
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            embed(b).cpu().numpy()
        times.append(time.perf_counter() - start)
    return {"clips_per_s": clips / float(np.median(times)), "warmup_s": warm,
            "device": device.upper(), "torch_threads": torch.get_num_threads()}


def _run(args, framework, encoder_type, jit=False):
    command = [sys.executable, __file__, "--worker", framework, "--encoders", encoder_type,
               "--batch", str(args.batch), "--seconds", str(args.seconds),
               "--clips", str(args.clips), "--repeats", str(args.repeats)]
    if jit:
        command.append("--jit")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:160]}
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoders", nargs="+", default=["beats", "eat"])
    parser.add_argument("--worker", choices=("keras", "pytorch"), help=argparse.SUPPRESS)
    parser.add_argument("--jit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        encoder_type = args.encoders[0]
        if args.worker == "keras":
            result = _keras_worker(encoder_type, args.batch, args.seconds, args.clips,
                                   args.repeats, args.jit)
        else:
            result = _torch_worker(encoder_type, args.batch, args.seconds, args.clips,
                                   args.repeats)
        print(json.dumps(result))
        return
    rows = []
    for encoder_type in args.encoders:
        reference = _run(args, "pytorch", encoder_type)
        runs = [("keras (tf.function)", _run(args, "keras", encoder_type)),
                ("keras (XLA jit_compile)", _run(args, "keras", encoder_type, jit=True))]
        runs.append(("pytorch reference", reference))
        base = reference.get("clips_per_s")
        for label, result in runs:
            if "error" in result:
                rows.append(f"| {encoder_type} | {label} | - | - | - | {result['error']} |")
                continue
            ratio = f"{result['clips_per_s'] / base:.2f}" if base else "n/a"
            rows.append(f"| {encoder_type} | {label} | {result['device']} | "
                        f"{result['clips_per_s']:.2f} | {ratio} | "
                        f"warm-up {result['warmup_s']:.1f} s |")
    print(f"Batch {args.batch}, {args.clips} clips of {args.seconds:g} s, median of "
          f"{args.repeats} passes; ratio = clips/s relative to the PyTorch reference.\n")
    print("| encoder | implementation | device | clips/s | ratio | note |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
