"""Training and scoring speed of the GAN detectors against the DCASE dense AE.

1. Training: vectors per second of the second epoch of `model.fit` on the
   same in-memory 640-dim vectors (batch 64 by default), for the dense
   autoencoder baseline (one forward/backward pass per step) and for EGBAD,
   GANomaly and Skip-GANomaly (two optimizers per step), with each one's
   cost relative to the baseline.
2. Scoring: 10 s clips per second from raw waveform to clip score (log-mel
   vectors, per-vector scores, clip mean): the `gan` extractor's serving
   model, which `score` and the SavedModel use.

Usage: python benchmarks/bench_gan.py [--vectors 20000] [--batch 64] [--clips 64]
       [--repeats 3]  (medians over repeats after a warm-up)
Prints a markdown table; nothing is asserted.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _timed_epoch(model, x, batch, y=None, repeats=3):
    """Median vectors/s over `repeats` epochs after a warm-up epoch."""
    import numpy as np

    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace + warm-up
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        speeds.append(len(x) / (time.perf_counter() - start))
    return float(np.median(speeds))


def _timed_scoring(fn, waves, repeats=3):
    """Median clips/s over `repeats` passes after a warm-up call."""
    import numpy as np

    fn(waves[:8])
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(waves), 8):
            fn(waves[i:i + 8])
        speeds.append(len(waves) / (time.perf_counter() - start))
    return float(np.median(speeds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from asd_keras.extractors import get_extractor
    from asd_keras.models.dense_ae import dense_autoencoder

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(args.vectors, 640)).astype("float32")
    waves = tf.constant(np.random.default_rng(1).normal(
        scale=0.1, size=(args.clips, 160000)).astype("float32"))
    rows = []
    ae = dense_autoencoder(640, num_hidden_layers=4)
    ae.compile(keras.optimizers.Adam(1e-3), "mse")
    # The baseline runs twice (first and last) so that TensorFlow's start-up
    # warm-up does not count against it; the faster run is kept.
    base = _timed_epoch(ae, x, args.batch, x, args.repeats)
    extractor = get_extractor("dense_ae")
    extractor.model = ae
    features = extractor.serving_model(None)

    def fn(waveforms):
        return features(waveforms, training=False)["squared_error"]

    base_clips = _timed_scoring(fn, waves, args.repeats)
    for name in ("egbad", "ganomaly", "skip_ganomaly"):
        gan = get_extractor("gan", detector=name, batch_size=args.batch)
        gan.model = gan.build_detector()
        speed = _timed_epoch(gan.model, x, args.batch, repeats=args.repeats)
        scores = gan.serving_model(None)

        def gan_fn(waveforms, scores=scores):
            return scores(waveforms, training=False)["score"]

        clips = _timed_scoring(gan_fn, waves, args.repeats)
        rows.append((name, speed, clips))
    base = max(base, _timed_epoch(ae, x, args.batch, x, args.repeats))
    base_clips = max(base_clips, _timed_scoring(fn, waves, args.repeats))
    rows = [("DCASE dense AE (baseline)", base, base_clips)] + rows
    print(f"Training: {args.vectors} vectors, batch {args.batch}; scoring: {args.clips} "
          "clips of 10 s, 8 per call.\n")
    print("| system | training vectors/s | training time vs baseline | scoring clips/s |")
    print("|---|---:|---:|---:|")
    for name, speed, clips in rows:
        print(f"| {name} | {speed:.0f} | {base / speed:.2f}× | {clips:.1f} |")


if __name__ == "__main__":
    main()
