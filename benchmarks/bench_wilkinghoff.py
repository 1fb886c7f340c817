"""Speed and training memory of the Wilkinghoff system, against the
reference's way of loading every clip into RAM.

1. Training clips per second (the last of `--speed-epochs` epochs), each
   way in a fresh process on the same clips: the system's streaming
   `tf.data` pipeline with its compile settings, against the reference's
   way (every waveform in one NumPy array, `model.fit` on it) with Keras 3's
   defaults (XLA) and without XLA, as the reference's TF 2.3 ran it. Also
   inference clips per second (embedding extraction).
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

from _workers import onednn_label  # noqa: E402  (before asd_keras is imported)
from _workers import worker_env  # noqa: E402

# oneDNN setting of each worker: asd-keras as it imports itself, the
# reference ways as TensorFlow chooses for this CPU (off on AVX2-only
# CPUs), plus the no-XLA reference with oneDNN forced on, which shows how
# much of the speed-up is the runtime setting and how much the pipeline.
ONEDNN = {"streaming": "asd_keras", "in_memory": "tf_default",
          "in_memory_nojit": "tf_default", "in_memory_nojit_onednn": "on"}


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


def worker(mode, data, seconds, epochs=1):
    """Trains `epochs` epochs in this process; prints JSON with the peak RSS
    and the seconds of the last epoch."""
    import keras
    import numpy as np
    import soundfile

    from asd_keras.data.labels import ClassEncoder
    from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
    from asd_keras.models.wilkinghoff import build_head
    from asd_keras.models.wilkinghoff import training_model
    from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model

    table = _train_table(data)
    config = {"epochs": epochs, "clip_seconds": seconds, "length_policy": "truncate",
              "monitor_compactness": False}
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    if mode == "streaming":
        from asd_keras.systems import get_system

        with tempfile.TemporaryDirectory() as run:
            get_system("wilkinghoff")(config).fit(table, run, verbose=0,
                                                  callbacks=[Timer()])
    else:
        extractor = ClassifierEmbeddingExtractor(clip_seconds=seconds,
                                                 length_policy="truncate")
        encoder = ClassEncoder("attribute").fit(table)
        # The reference: every clip decoded into one array before fit().
        waveforms = np.stack([soundfile.read(p, dtype="float32")[0][: extractor.num_samples]
                              for p in table["path"]])
        labels = keras.utils.to_categorical(encoder.transform(table), encoder.num_classes)
        head, loss = build_head("sc_adacos", encoder.num_classes, extractor.config)
        model = training_model(wilkinghoff_embedding_model(extractor.num_samples), head,
                               encoder.num_classes)
        # in_memory: Keras 3's defaults (XLA wherever the model allows it);
        # in_memory_nojit(_onednn): no XLA, as the reference's TF 2.3 ran it.
        model.compile(optimizer="adam", loss=loss,
                      jit_compile="auto" if mode == "in_memory" else False)
        model.fit({"waveform": waveforms, "label": labels}, labels, batch_size=64,
                  epochs=epochs, verbose=0, callbacks=[Timer()])
    seconds_taken = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"mode": mode, "clips": len(table), "peak_mb": peak,
                      "seconds": seconds_taken, "last_epoch_s": times[-1]}))


def _run_worker(mode, root, seconds, epochs=1):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--data", str(root),
         "--seconds", str(seconds), "--epochs", str(epochs)],
        capture_output=True, text=True, env=worker_env(ONEDNN[mode]))
    if out.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def trace_steps(data, seconds, epochs):
    """RSS after every training batch of the streaming system over `epochs`."""
    import keras

    from asd_keras.systems import get_system

    trace = []

    class Trace(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trace.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)

    with tempfile.TemporaryDirectory() as run:
        system = get_system("wilkinghoff")({
            "epochs": epochs, "clip_seconds": seconds, "length_policy": "truncate",
            "monitor_compactness": False})
        system.fit(_train_table(data), run, verbose=0, callbacks=[Trace()])
    return trace


def bench_speed(data, seconds, epochs):
    """Training clips/s of the last of `epochs` epochs, each way in a fresh process."""
    rates = {}
    for mode in ONEDNN:
        result = _run_worker(mode, data, seconds, epochs)
        rates[mode] = (result["clips"] / result["last_epoch_s"], result["clips"])
    return rates


def bench_inference(data, seconds):
    """Embedding extraction clips/s (second pass, after a warm-up)."""
    from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
    from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model

    table = _train_table(data)
    extractor = ClassifierEmbeddingExtractor(clip_seconds=seconds, length_policy="truncate")
    extractor.model = wilkinghoff_embedding_model(extractor.num_samples)
    extractor.transform(table)  # warm-up
    start = time.perf_counter()
    extractor.transform(table)
    return len(table) / (time.perf_counter() - start)


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
    parser.add_argument("--speed-epochs", type=int, default=2,
                        help="epochs per speed run; the last one is timed")
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=tuple(ONEDNN))
    parser.add_argument("--data")
    args = parser.parse_args()
    import numpy as np

    if args.worker:
        worker(args.worker, args.data, args.seconds, args.epochs)
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
            rates = bench_speed(roots[middle], args.seconds, args.speed_epochs)
            n = rates["streaming"][1]
            ours = rates["streaming"][0]
            print(f"## Training speed ({n} clips of {args.seconds:g} s, batch 64, "
                  f"epoch {args.speed_epochs} of {args.speed_epochs}, "
                  f"{os.cpu_count()} CPU cores)\n")
            print("| way | oneDNN | training clips/s | asd-keras speed-up |\n"
                  "|---|---|---:|---:|")
            for mode, name in (
                    ("streaming", "asd-keras: streaming tf.data, jit_compile=auto"),
                    ("in_memory", "reference way, Keras 3 defaults (XLA)"),
                    ("in_memory_nojit", "reference way without XLA (as TF 2.3 ran it)"),
                    ("in_memory_nojit_onednn", "reference way without XLA, oneDNN forced")):
                print(f"| {name} | {onednn_label(worker_env(ONEDNN[mode]))} "
                      f"| {rates[mode][0]:.1f} | {ours / rates[mode][0]:.2f}x |")
            print(f"\nInference (embeddings): {bench_inference(roots[middle], args.seconds):.1f}"
                  " clips/s\n")
        # TensorFlow's allocator makes single peaks noisy (a few hundred MB
        # either way), so each point is the median of fresh processes.
        by_scale = {}
        for scale, root in roots.items():
            for mode in ("streaming", "in_memory"):
                peaks = []
                for _ in range(args.repeats):
                    result = _run_worker(mode, root, args.seconds)
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
