"""Where a dense AE training step's time goes on this CPU, in one run.

The DCASE baseline autoencoder (640-128x4-8-128x4-640) trains on 25,600
random 640-dim vectors held in memory (so no input pipeline is measured),
batch 512, 32 steps per call, each variant in a fresh process, one after the
other:

- `baseline model`: Dense + BatchNormalization + ReLU, as the DCASE code;
- `without BatchNormalization`: Dense + ReLU (not the baseline: a bound);
- `1 intra-op thread`: the baseline model with one thread per op, to show
  how much the second core helps such small matrices;
- `fused BatchNormalization`: the same model with TensorFlow's single fused
  batch-norm kernel (`FusedBatchNormV3` on a (batch, 1, 1, units) view) in
  place of Keras's op-by-op layer, to test whether the layer's op count is
  what costs;
- `2 replicas (MirroredStrategy)`: data parallelism over two logical CPU
  devices of one thread each, one step per call (the strategy cannot run
  several steps per call on logical CPU devices here).

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
    "fused BatchNormalization": dict(batch_norm="fused", threads=0),
    "2 replicas (MirroredStrategy)": dict(batch_norm=True, threads=1, replicas=2),
}


def _fused_batch_norm_layer():
    import keras
    import tensorflow as tf

    class FusedBatchNorm(keras.layers.Layer):
        """Keras's BatchNormalization defaults through one fused TF kernel."""

        def build(self, input_shape):
            units = input_shape[-1]
            self.gamma = self.add_weight(shape=(units,), initializer="ones")
            self.beta = self.add_weight(shape=(units,), initializer="zeros")
            self.moving_mean = self.add_weight(shape=(units,), initializer="zeros",
                                               trainable=False)
            self.moving_variance = self.add_weight(shape=(units,), initializer="ones",
                                                   trainable=False)

        def call(self, x, training=False):
            if not training:
                return ((x - self.moving_mean) * tf.math.rsqrt(self.moving_variance + 1e-3)
                        * self.gamma + self.beta)
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                tf.reshape(x, (-1, 1, 1, x.shape[-1])), self.gamma, self.beta,
                epsilon=1e-3, is_training=True)[:3]
            self.moving_mean.assign(self.moving_mean * 0.99 + mean * 0.01)
            self.moving_variance.assign(self.moving_variance * 0.99 + variance * 0.01)
            return tf.reshape(y, tf.shape(x))

    return FusedBatchNorm


def _worker(batch_norm, threads, epochs, replicas=1):
    import contextlib
    import time

    import asd_keras  # noqa: F401  (sets asd-keras's oneDNN default first)
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    scope = contextlib.nullcontext()
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        scope = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(replicas)]).scope()
    import keras

    x = np.random.default_rng(0).normal(size=(25600, 640)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(512).cache().prefetch(2)
    norm = _fused_batch_norm_layer() if batch_norm == "fused" else keras.layers.BatchNormalization
    with scope:
        inputs = keras.Input((640,))
        h = inputs
        for units in [128] * 4 + [8] + [128] * 4:
            h = keras.layers.Dense(units)(h)
            if batch_norm:
                h = norm()(h)
            h = keras.layers.ReLU()(h)
        model = keras.Model(inputs, keras.layers.Dense(640)(h))
        model.compile(keras.optimizers.Adam(1e-3), "mse",
                      steps_per_execution=1 if replicas > 1 else 32, jit_compile=False)
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
