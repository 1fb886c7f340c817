"""Speed and training memory of the Wilkinghoff system, against the
reference's way of loading every clip into RAM.

1. Training clips per second (one epoch after a warm-up epoch) and inference
   clips per second (embedding extraction) on 10 s clips, streaming from
   disk through `tf.data`.
2. Peak memory (max RSS of a fresh process) of one training epoch at 1x, 2x
   and 4x the number of clips: the system's streaming pipeline against the
   reference's approach (reference wilkinghoff.md §1: all waveforms in one
   float32 array, about 27 GB for DCASE2022) with the same model.

Usage: python benchmarks/bench_wilkinghoff.py [--clips 100] [--seconds 10]
Prints markdown tables; nothing is asserted.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _make_data(root, clips, seconds):
    from asd_keras.data.synthetic import SynthConfig
    from asd_keras.data.synthetic import generate
    from asd_keras.data.synthetic import synthetic_data_root

    # Two machine types x 3 sections x (train + 1 target) clips.
    per_section = max(1, clips // 6 - 1)
    generate(root, SynthConfig(layout="dcase2022", machine_types=("fan", "valve"),
                               seconds=seconds, train=per_section, target_train=1,
                               test=1), progress=False)
    return synthetic_data_root(root, "dcase2022", "dev")


def _train_table(data):
    from asd_keras.data.layouts import read_dataset

    table = read_dataset(data)
    return table[table["split"] == "train"]


def worker(mode, data, seconds):
    """One epoch of training in this process; prints JSON with the peak RSS."""
    import keras
    import numpy as np
    import soundfile

    from asd_keras.data.labels import ClassEncoder
    from asd_keras.models.wilkinghoff import WilkinghoffSystem
    from asd_keras.models.wilkinghoff import build_head
    from asd_keras.models.wilkinghoff import training_model
    from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model

    table = _train_table(data)
    config = {"epochs": 1, "clip_seconds": seconds, "monitor_compactness": False}
    start = time.perf_counter()
    if mode == "streaming":
        with tempfile.TemporaryDirectory() as run:
            WilkinghoffSystem(config).fit(table, run, verbose=0)
    else:
        system = WilkinghoffSystem(config)
        encoder = ClassEncoder("attribute").fit(table)
        # The reference: every clip decoded into one array before fit().
        waveforms = np.stack([soundfile.read(p, dtype="float32")[0][: system.num_samples]
                              for p in table["path"]])
        labels = keras.utils.to_categorical(encoder.transform(table), encoder.num_classes)
        head, loss = build_head("sc_adacos", encoder.num_classes, system.config)
        model = training_model(wilkinghoff_embedding_model(system.num_samples), head,
                               encoder.num_classes)
        model.compile(optimizer="adam", loss=loss)
        model.fit({"waveform": waveforms, "label": labels}, labels, batch_size=64,
                  epochs=1, verbose=0)
    seconds_taken = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"mode": mode, "clips": len(table), "peak_mb": peak,
                      "seconds": seconds_taken}))


def trace_steps(data, seconds, epochs):
    """RSS after every training batch of the streaming system over `epochs`."""
    import keras

    from asd_keras.models.wilkinghoff import WilkinghoffSystem

    trace = []

    class Trace(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trace.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)

    original = keras.Model.fit

    def fit(model, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [Trace()]
        return original(model, *args, **kwargs)

    keras.Model.fit = fit  # the system's fit() takes no callbacks
    try:
        with tempfile.TemporaryDirectory() as run:
            system = WilkinghoffSystem({"epochs": epochs, "clip_seconds": seconds,
                                        "monitor_compactness": False})
            system.fit(_train_table(data), run, verbose=0)
    finally:
        keras.Model.fit = original
    return trace


def bench_speed(data, seconds):
    import keras

    from asd_keras.models.wilkinghoff import WilkinghoffSystem

    table = _train_table(data)
    system = WilkinghoffSystem({"epochs": 2, "clip_seconds": seconds,
                                "monitor_compactness": False})

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.start

    timer = Timer()
    # The system's own fit() does not take callbacks; time a model.fit of
    # the same model and pipeline instead.
    from asd_keras.data.labels import ClassEncoder
    from asd_keras.models.wilkinghoff import build_head
    from asd_keras.models.wilkinghoff import training_model
    from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model

    encoder = ClassEncoder("attribute").fit(table)
    labels = encoder.transform(table)
    loader = system.loader(training=True)
    loader.check(table["path"], progress=False)
    ds = system.training_dataset(list(table["path"]), labels, encoder.num_classes, loader,
                         True, 0)
    head, loss = build_head("sc_adacos", encoder.num_classes, system.config)
    embedding = wilkinghoff_embedding_model(system.num_samples)
    model = training_model(embedding, head, encoder.num_classes)
    model.compile(optimizer="adam", loss=loss)
    model.fit(ds, epochs=2, verbose=0, callbacks=[timer], shuffle=False)
    train_rate = len(table) / timer.last
    system.members = [{"groups": {"all": embedding}}]
    system.embed(table)  # warm-up
    start = time.perf_counter()
    system.embed(table)
    infer_rate = len(table) / (time.perf_counter() - start)
    return train_rate, infer_rate, len(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100, help="clips at 1x")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scales", default="1,2,4",
                        help="comma-separated multiples of --clips for the memory table")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--trace-epochs", type=int,
                        help="only trace RSS after every batch of this many epochs "
                             "on the 1x data (streaming)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per point; the median is shown")
    parser.add_argument("--worker", choices=("streaming", "in_memory"))
    parser.add_argument("--data")
    args = parser.parse_args()
    import numpy as np

    if args.worker:
        worker(args.worker, args.data, args.seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.trace_epochs:
            root = _make_data(Path(tmp) / "x1", args.clips, args.seconds)
            trace = trace_steps(root, args.seconds, args.trace_epochs)
            print(f"## RSS after each of {len(trace)} training batches "
                  f"({args.trace_epochs} epochs)\n")
            print(" ".join(f"{value:.0f}" for value in trace) + " MB")
            return
        roots = {}
        for scale in (int(x) for x in args.scales.split(",")):
            roots[scale] = _make_data(Path(tmp) / f"x{scale}", args.clips * scale,
                                      args.seconds)
        if not args.skip_speed:
            middle = sorted(roots)[len(roots) // 2]
            train_rate, infer_rate, n = bench_speed(roots[middle], args.seconds)
            print(f"## Speed ({n} clips of {args.seconds:g} s, batch 64)\n")
            print("| what | clips/s |\n|---|---|")
            print(f"| training (second epoch) | {train_rate:.1f} |")
            print(f"| inference (embeddings) | {infer_rate:.1f} |\n")
        # TensorFlow's allocator makes single peaks noisy (a few hundred MB
        # either way), so each point is the median of fresh processes.
        by_scale = {}
        for scale, root in roots.items():
            for mode in ("streaming", "in_memory"):
                peaks = []
                for _ in range(args.repeats):
                    out = subprocess.run(
                        [sys.executable, __file__, "--worker", mode, "--data", str(root),
                         "--seconds", str(args.seconds)],
                        capture_output=True, text=True, check=True)
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    peaks.append(result["peak_mb"])
                by_scale.setdefault(scale, {})[mode] = (result["clips"], peaks)
        print(f"## Peak RSS of one training epoch (median of {args.repeats} processes)\n")
        print("| data | clips | streaming (MB) | in-memory, reference way (MB) | ratio |")
        print("|---|---|---|---|---|")
        for scale, pair in by_scale.items():
            (clips, s_peaks), (_, m_peaks) = pair["streaming"], pair["in_memory"]
            s, m = float(np.median(s_peaks)), float(np.median(m_peaks))
            print(f"| {scale}x | {clips} | {s:.0f} (runs {min(s_peaks):.0f}-{max(s_peaks):.0f}) "
                  f"| {m:.0f} (runs {min(m_peaks):.0f}-{max(m_peaks):.0f}) | {m / s:.2f} |")


if __name__ == "__main__":
    main()
