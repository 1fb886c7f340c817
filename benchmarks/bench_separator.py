"""Training and inference speed of the CMGAN-style separator (Shin & Lee Table IV).

For N = 0 and N = 4 two-stage conformer blocks at widths 64 and 128:

1. Training: segments per second of `train_on_batch` (negative SI-SDR,
   AdamW) on `--segment-seconds` mixtures in batches of `--batch`, the
   median over `--steps` steps after the first one, and the first step's
   time (graph tracing included), which a short CPU run pays once per model.
2. Inference: clips per second from a `--clip-seconds` waveform to the
   clip's feature vector (the `separation` extractor's encoder: segments,
   dense encoder and conformers, pooling; what `score`, `probe` and the
   SavedModel run), in batches of `--clip-batch`.

Each figure is also given relative to the smallest model (N = 0, width
64), the baseline. Runs on whatever device TensorFlow sees (the GPU when
there is one).

Usage: python benchmarks/bench_separator.py [--segment-seconds 2.0] [--batch 4]
       [--steps 3] [--clip-seconds 10.0] [--clip-batch 4] [--clips 8]
       [--configs 0x64 4x64 0x128 4x128]
Prints a markdown table; nothing is asserted.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _train_speed(num_blocks, width, segment, batch, steps):
    import keras
    import numpy as np

    from asd_keras.losses.separation import NegativeSISDR
    from asd_keras.models.separator import build_separator

    model = build_separator(width=width, num_blocks=num_blocks, num_samples=segment, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(5e-4), loss=NegativeSISDR())
    rng = np.random.default_rng(0)
    target = rng.normal(size=(batch, segment)).astype(np.float32)
    mixture = (target + rng.normal(size=target.shape)).astype(np.float32)
    start = time.perf_counter()
    model.train_on_batch(mixture, target)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(mixture, target)
        times.append(time.perf_counter() - start)
    return model, first, batch / float(np.median(times))


def _inference_speed(model, num_blocks, width, segment_seconds, clip_seconds, clip_batch,
                     clips):
    import numpy as np

    from asd_keras.extractors import get_extractor

    extractor = get_extractor("separation", width=width, num_blocks=num_blocks,
                              segment_seconds=segment_seconds, clip_seconds=clip_seconds)
    encoder = extractor._encoder_of(model)
    waves = np.random.default_rng(1).normal(
        size=(clips, extractor.num_samples)).astype(np.float32)
    start = time.perf_counter()
    encoder.predict(waves[:clip_batch], batch_size=clip_batch, verbose=0)  # trace
    first = time.perf_counter() - start
    start = time.perf_counter()
    encoder.predict(waves, batch_size=clip_batch, verbose=0)
    return first, clips / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--clip-batch", type=int, default=4)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--configs", nargs="+", default=["0x64", "4x64", "0x128", "4x128"],
                        help="N x width")
    args = parser.parse_args(argv)
    import pandas as pd
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    segment = int(round(args.segment_seconds * 16000))
    rows = []
    for spec in args.configs:
        num_blocks, width = (int(v) for v in spec.split("x"))
        model, first, train = _train_speed(num_blocks, width, segment, args.batch, args.steps)
        trace, infer = _inference_speed(model, num_blocks, width, args.segment_seconds,
                                        args.clip_seconds, args.clip_batch, args.clips)
        rows.append({"N blocks": num_blocks, "width": width,
                     "parameters": model.count_params(),
                     "first train step (s)": first, "train segments/s": train,
                     "first predict (s)": trace, "inference clips/s": infer})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["train vs N=0,C=64"] = table["train segments/s"] / table["train segments/s"].iloc[0]
    table["inference vs N=0,C=64"] = (table["inference clips/s"]
                                      / table["inference clips/s"].iloc[0])
    print(f"\nSeparator speed on {device}: {args.segment_seconds} s segments, batch "
          f"{args.batch}; {args.clip_seconds} s clips, batch {args.clip_batch}\n")
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
