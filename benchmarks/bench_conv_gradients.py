"""Where the Wilkinghoff network's convolution time goes, kernel by kernel.

Issue 29 asks for Wilkinghoff training 1.5x faster than the original code;
oneDNN's convolution kernels and their gradients take about 77 % of a
training step, and the original runs the same kernels. This script times,
for every convolution shape of the spectrogram branch (batch 64, clips of
`--seconds`), on this CPU:

- the forward convolution;
- TensorFlow's input gradient (`Conv2DBackpropInput`, what autodiff runs)
  against the same gradient computed as a forward convolution of the
  output gradient with the flipped, transposed kernel (exact for stride 1);
- the kernel gradient (`Conv2DBackpropFilter`);
- the first convolution (7 x 7, stride 2, one input channel) three ways: as
  the original (plain `Conv2D`), as built here (`PolyphaseConv2D`: stride 1
  on the 2 x 2 polyphase components) and its input gradient as a forward
  convolution (`alt`).

Each figure is the median of `--repeats` timings of `--calls` calls of a
`tf.function`, in milliseconds; ratios are against TensorFlow's own
gradient. Prints a markdown table; nothing is asserted.

Usage: python benchmarks/bench_conv_gradients.py [--seconds 4] [--calls 10]
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

BATCH = 64


def _time(function, *args, calls, repeats):
    function(*args)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = function(*args)
        np.asarray(out)
        runs.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(runs)


def _shapes(seconds):
    """(name, rows, columns, in, out, kernel, padding) of the stride-1
    convolutions: block 1 on polyphase components, then blocks 2-5."""
    frames = 1 + (int(seconds * 16000) - 1024) // 512
    rows, cols = -(-frames // 2), 257
    shapes = [("block1 (polyphase)", rows + 3, cols + 3, 4, 16, 4, "VALID")]
    rows, cols = (rows - 3) // 2 + 1, (cols - 3) // 2 + 1  # 3 x 3 max pool, stride 2
    for block, filters in ((2, 16), (3, 32), (4, 64), (5, 128)):
        if block > 2:
            rows, cols = -(-rows // 2), -(-cols // 2)
        shapes.append((f"block{block} 3x3", rows, cols, filters, filters, 3, "SAME"))
    return frames, shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    timing = {"calls": args.calls, "repeats": args.repeats}
    rng = np.random.default_rng(0)
    frames, shapes = _shapes(args.seconds)
    print(f"Batch {BATCH}, {args.seconds:g} s clips ({frames} frames x 513 bins); "
          "milliseconds per call.\n")
    print("| convolution | forward | input gradient (TF) | input gradient as a forward "
          "convolution | ratio | kernel gradient (TF) |")
    print("|---|---|---|---|---|---|")
    for name, rows, cols, c_in, c_out, k, padding in shapes:
        x = tf.constant(rng.standard_normal((BATCH, rows, cols, c_in)).astype("float32"))
        w = tf.constant(rng.standard_normal((k, k, c_in, c_out)).astype("float32") * 0.1)
        dy = tf.constant(rng.standard_normal(
            tf.nn.conv2d(x, w, 1, padding).shape).astype("float32"))
        flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
        edge = [[0, 0], [k - 1, k - 1], [k - 1, k - 1], [0, 0]]
        forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, padding))
        backprop_input = tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=[1, 1, 1, 1],
            padding=padding))
        as_forward = tf.function(lambda dy, f: tf.nn.conv2d(
            tf.pad(dy, edge) if padding == "VALID" else dy, f, 1, padding))
        backprop_filter = tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 1, 1, 1],
            padding=padding))
        gap = float(tf.reduce_max(tf.abs(backprop_input(dy, w) - as_forward(dy, flipped))))
        if gap > 1e-3 * float(tf.reduce_max(tf.abs(backprop_input(dy, w)))):
            raise RuntimeError(f"{name}: the two input gradients differ by {gap}")
        t_in = _time(backprop_input, dy, w, **timing)
        t_alt = _time(as_forward, dy, flipped, **timing)
        print(f"| {name}: {rows}x{cols}, {c_in}->{c_out} | "
              f"{_time(forward, x, w, **timing):.1f} | {t_in:.1f} | {t_alt:.1f} | "
              f"{t_alt / t_in:.2f} | {_time(backprop_filter, x, dy, **timing):.1f} |")

    x = tf.constant(rng.standard_normal((BATCH, frames, 513, 1)).astype("float32"))
    w = tf.constant(rng.standard_normal((7, 7, 1, 16)).astype("float32") * 0.1)
    dy = tf.constant(rng.standard_normal(tf.nn.conv2d(x, w, 2, "SAME").shape)
                     .astype("float32"))
    forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, 2, "SAME"))
    backprop_input = tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=[1, 2, 2, 1],
        padding="SAME"))
    backprop_filter = tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 2, 2, 1],
        padding="SAME"))
    print(f"\nThe original's first convolution (plain Conv2D 7x7, stride 2, 1 -> 16 "
          f"channels, {frames}x513): forward {_time(forward, x, w, **timing):.1f}, "
          f"input gradient {_time(backprop_input, dy, w, **timing):.1f}, kernel gradient "
          f"{_time(backprop_filter, x, dy, **timing):.1f} ms.")

    # Block 1's input gradient on coarser phases: the output gradient's 2 x 2
    # phases (64 channels) convolved with a 3 x 3 kernel into the input's
    # 4 x 4 phases (16 channels), the same sums with more channels per call
    # (the layout changes around it not counted).
    rows, cols = -(-(shapes[0][1] - 3) // 2) + 2, -(-(shapes[0][2] - 3) // 2) + 2
    x = tf.constant(rng.standard_normal((BATCH, rows, cols, 64)).astype("float32"))
    w = tf.constant(rng.standard_normal((3, 3, 64, 16)).astype("float32"))
    coarse = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "VALID"))
    print(f"\nBlock 1's input gradient as a 3x3 convolution of 4x4 phases ({rows}x{cols}, "
          f"64->16 channels, 2.3x the arithmetic): {_time(coarse, x, w, **timing):.1f} ms.")


if __name__ == "__main__":
    main()
