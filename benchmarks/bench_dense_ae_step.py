"""Where a dense AE training step's time goes on this CPU, in one run.

The DCASE baseline autoencoder (640-128x4-8-128x4-640) trains on 25,600
random 640-dim vectors held in memory (so no input pipeline is measured),
batch 512, 32 steps per call, each variant in a fresh process, one after the
other:

- `baseline model`: Dense + BatchNormalization + ReLU, as the DCASE code;
- `without BatchNormalization`: Dense + ReLU (not the baseline: a bound);
- `1 intra-op thread`: the baseline model with one thread per op, to show
  how much the second core helps such small matrices.

Printed: seconds per epoch (median of 10 epochs after 2 warm-up epochs) and
each variant's ratio to the baseline model. Nothing is asserted.

Usage: python benchmarks/bench_dense_ae_step.py [--epochs 10]
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = {
    "baseline model": dict(batch_norm=True, threads=0),
    "without BatchNormalization": dict(batch_norm=False, threads=0),
    "1 intra-op thread": dict(batch_norm=True, threads=1),
}


def _worker(batch_norm, threads, epochs):
    import time

    import asd_keras  # noqa: F401  (sets asd-keras's oneDNN default first)
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras

    x = np.random.default_rng(0).normal(size=(25600, 640)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(512).cache().prefetch(2)
    inputs = keras.Input((640,))
    h = inputs
    for units in [128] * 4 + [8] + [128] * 4:
        h = keras.layers.Dense(units)(h)
        if batch_norm:
            h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    model = keras.Model(inputs, keras.layers.Dense(640)(h))
    model.compile(keras.optimizers.Adam(1e-3), "mse", steps_per_execution=32,
                  jit_compile=False)
    model.fit(data, epochs=2, verbose=0)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    print(json.dumps({"s_per_epoch": float(np.median(times))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1; received {args.epochs}.")
    if args.worker:
        _worker(**json.loads(args.worker), epochs=args.epochs)
        return
    results = {}
    for name, variant in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs),
                              "--worker", json.dumps(variant)],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])["s_per_epoch"]
        print(f"{name}: {results[name]:.3f} s/epoch", file=sys.stderr)
    base = results["baseline model"]
    print(f"## Dense AE step: 50 steps of batch 512 per epoch, {os.cpu_count()} CPU cores\n")
    print("| variant | s/epoch | relative to the baseline model |")
    print("|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
