"""Dense autoencoder training speed against the baseline's way, in one run.

Both ways train the same DCASE baseline model (640-128x4-8-128x4-640, Adam
1e-3, MSE, batch 512, 10 % validation) on the same clips, each in a fresh
process, one after the other:

- baseline: the DCASE baselines' way, every stacked log-mel vector of every
  clip in one NumPy array, then `model.fit(x, x, validation_split=0.1,
  shuffle=True)` with Keras' defaults (reference dcase.md 2.3);
- asd-keras: the `dense_ae` system's `fit`, streaming `tf.data` with an
  on-disk feature cache, block shuffling and the system's step settings
  (`jit_compile="auto"`: no XLA on a CPU), and again with XLA forced on.

The baseline runs with TensorFlow's own oneDNN choice for the CPU, as its
original code would; asd-keras with the oneDNN default it sets on import.

Printed: seconds per epoch (median over the epochs after the first), the
whole training call (features, all epochs and, for asd-keras, the MAHALA
covariances and training scores), their ratios, the fraction of the CPU's
peak FLOP rate reached by the training steps, and the peak RSS at 1x and 4x
the clips (memory must stay flat for asd-keras).

Usage: python benchmarks/bench_dense_ae.py [--clips 210] [--seconds 4]
       [--epochs 100] [--scales 1,4] [--memory-epochs 2]
Prints markdown; nothing is asserted.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _workers import onednn_label  # noqa: E402  (before asd_keras is imported)
from _workers import worker_env  # noqa: E402

# The baseline runs as its original code would (TensorFlow's oneDNN choice
# for this CPU); asd-keras as it sets itself up on import.
ONEDNN = {"baseline": "tf_default", "asd_keras": "asd_keras", "asd_keras_xla": "asd_keras"}

BATCH = 512
# Multiply-adds per 640-dim vector through the baseline model (forward).
MACS = 640 * 128 + 3 * 128 * 128 + 128 * 8 + 8 * 128 + 3 * 128 * 128 + 128 * 640


def _make_data(root, clips, seconds):
    from asd_keras.data.synthetic import SynthConfig
    from asd_keras.data.synthetic import generate

    generate(root, SynthConfig(layout="dcase2023", machine_types=("fan",), seconds=seconds,
                               train=max(1, clips - 1), target_train=1, test=1),
             progress=False)
    return root / "dev_data" / "raw"


class _EpochTimer:
    """A Keras callback recording the wall time of every epoch."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        return Timer()


def worker(mode, data, epochs):
    """Trains one way in this process; prints one JSON line."""
    import keras
    import numpy as np

    from asd_keras.data.layouts import read_dataset

    table = read_dataset(data)
    train = table[table["split"] == "train"]
    timer = _EpochTimer()
    start = time.perf_counter()
    if mode == "baseline":
        import tensorflow as tf

        from asd_keras.data.audio import AudioLoader
        from asd_keras.features import LogMelFrontend
        from asd_keras.models import dense_autoencoder

        frontend, loader = LogMelFrontend(), AudioLoader()
        loader.check(train["path"], progress=False)
        vectors = np.concatenate([frontend.vectors(loader.load(tf.constant(p))).numpy()
                                  for p in sorted(train["path"])])
        keras.utils.set_random_seed(0)
        model = dense_autoencoder()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        model.fit(vectors, vectors, batch_size=BATCH, epochs=epochs, shuffle=True,
                  validation_split=0.1, verbose=0, callbacks=[timer])
        train_vectors = len(vectors) - int(len(vectors) * 0.1)
    else:
        from asd_keras.systems import get_system

        config = {"epochs": epochs, "batch_size": BATCH}
        if mode == "asd_keras_xla":
            config["jit_compile"] = True
        system = get_system("dense_ae")(config)
        with tempfile.TemporaryDirectory() as run:
            system.fit(table, run, verbose=0, callbacks=[timer])
        extractor = system.members[0].extractors["fan"]
        paths = sorted(train["path"])
        frames = extractor.loader().check(paths, progress=False)["frames"]
        counts = [extractor.frontend.num_vectors(f) for f in frames]
        n_val = int(len(paths) * 0.1)
        train_vectors = int(sum(counts[: len(paths) - n_val]))
    total = time.perf_counter() - start
    steady = timer.times[1:] or timer.times
    print(json.dumps({
        "mode": mode, "clips": len(train), "train_vectors": train_vectors,
        "epoch_s": float(np.median(steady)), "first_epoch_s": timer.times[0],
        "total_s": total,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


def _run_worker(mode, data, epochs):
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--data", str(data),
                          "--epochs", str(epochs)], capture_output=True, text=True,
                         env=worker_env(ONEDNN[mode]))
    if out.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_gflops():
    """2 FMA units x SIMD floats x 2 FLOP x cores x clock, from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    flags = set(re.findall(r"^flags\s*:\s*(.*)$", text, re.M)[0].split()) if text else set()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    clock = (max(mhz) if mhz else 2200.0) / 1000.0
    return (os.cpu_count() or 1) * clock * 2 * lanes * 2, clock, lanes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=210)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--scales", default="1,4",
                        help="multiples of --clips for the memory table")
    parser.add_argument("--memory-epochs", type=int, default=2)
    parser.add_argument("--worker", choices=tuple(ONEDNN))
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.epochs)
        return
    peak, clock, lanes = peak_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        data = _make_data(Path(tmp) / "x1", args.clips, args.seconds)
        results = {mode: _run_worker(mode, data, args.epochs) for mode in ONEDNN}
        base, ours = results["baseline"], results["asd_keras"]
        print(f"## Dense AE training: {base['clips']} clips of {args.seconds:g} s, "
              f"{args.epochs} epochs, batch {BATCH}, {os.cpu_count()} CPU cores\n")
        print("| way | oneDNN | s/epoch | first epoch (s) | whole training call (s) "
              "| GFLOP/s in epochs | share of peak |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for mode, name in (("baseline", "baseline: NumPy array + model.fit"),
                           ("asd_keras", "asd-keras: dense_ae system fit"),
                           ("asd_keras_xla", "asd-keras, jit_compile=true")):
            r = results[mode]
            rate = 6 * MACS * r["train_vectors"] / r["epoch_s"] / 1e9
            print(f"| {name} | {onednn_label(worker_env(ONEDNN[mode]))} "
                  f"| {r['epoch_s']:.3f} | {r['first_epoch_s']:.2f} "
                  f"| {r['total_s']:.1f} | {rate:.1f} | {rate / peak:.1%} |")
        xla = results["asd_keras_xla"]
        print(f"\nSpeed-up per epoch: **{base['epoch_s'] / ours['epoch_s']:.2f}x** "
              f"({base['epoch_s'] / xla['epoch_s']:.2f}x with XLA); "
              f"whole training call: {base['total_s'] / ours['total_s']:.2f}x "
              f"({base['total_s'] / xla['total_s']:.2f}x with XLA) "
              "(asd-keras's call also fits the MAHALA covariances and scores every "
              "training clip for the threshold).")
        print(f"Peak: {peak:.0f} GFLOP/s = {os.cpu_count()} cores x {clock:.2f} GHz x "
              f"2 FMA x {lanes} float32 lanes x 2 FLOP; a training step is taken as "
              f"3x the forward pass, {6 * MACS / 1e6:.2f} MFLOP per vector.\n")
        rows = []
        for scale in (int(s) for s in args.scales.split(",")):
            scaled = data if scale == 1 else _make_data(
                Path(tmp) / f"x{scale}", args.clips * scale, args.seconds)
            rows.append((scale, {mode: _run_worker(mode, scaled, args.memory_epochs)
                                 for mode in ("baseline", "asd_keras")}))
        print(f"## Peak RSS ({args.memory_epochs} epochs, fresh process each)\n")
        print("| clips | baseline (MB) | asd-keras (MB) |\n|---:|---:|---:|")
        for scale, r in rows:
            print(f"| {r['baseline']['clips']} | {r['baseline']['peak_mb']:.0f} "
                  f"| {r['asd_keras']['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
