"""Speed and training memory of the Wilkinghoff system, part by part.

The authoritative speed figure is the head-to-head against Wilkinghoff's
ORIGINAL ICASSP 2023 code (github.com/wilkinghoff/icassp2023 at 4f55738,
tf-keras), which this repository does not contain and this script does not
run. Its comparisons below use asd-keras's own network both ways, so they
show the input pipeline and the runtime, not the original code: the
streaming pipeline measured 1.74x here against "the reference's way", yet
the original code was 1.3x faster than `asd-keras train` + `score` (issue
29). To run the head-to-head, outside this repository:

1. Fetch the original code; make a venv with tensorflow==2.21.*,
   tf-keras==2.21.*, tensorflow-probability, librosa, soundfile,
   scikit-learn, pandas and tqdm; run it with TF_USE_LEGACY_KERAS=1.
2. Adapt its main.py only to read the data: `dicts = ['./dev_data/']` (no
   eval_data), clips cut at 4 s (`[:4 * target_sr]`, `Reshape((raw_dim,))`),
   `ensemble_size = 1`, the submission's test clips = the dev-data test
   clips (their embeddings are its eval + unknown embeddings), no
   evaluation-set block (no ground truth), `tf.keras.utils.to_categorical`
   for `keras.utils.np_utils.to_categorical`, `np.sqrt` for `np.math.sqrt`,
   `KMeans(..., n_init=10)` (scikit-learn 1.1.2's default) and the loop
   variable `dict` renamed (TensorFlow 2.21's autograph calls the builtin).
3. Data: `asd-keras synth --out D --layout dcase2023 --machines fan gearbox
   bearing slider ToyCar ToyTrain valve --seconds 4 --train 200
   --target-train 10 --test 50` (7 x 210 training, 7 x 200 test clips).
4. On a quiet machine, back to back: the original from its Python start to
   its submission files, in a fresh folder (it caches decoded clips as
   .npy), with `D/dev_data/raw` linked as `./dev_data`; then `asd-keras
   train --system wilkinghoff --data D/dev_data/raw --out R
   variant=icassp2023 epochs=10 ensemble_size=1 clip_seconds=4` plus
   `asd-keras score --run R --data D/dev_data/raw --out S`, each timed.

Parts measured here:

1. `--kernels`: process CPU seconds per training step (batch 64, random
   waveforms in memory, one process, the variants interleaved): the network
   with Keras' `Conv2D` / `BatchNormalization` layers, with the fused
   batch norm only, and as built (`asd_keras.layers.fast_kernels`: fused
   batch norm and the polyphase first convolution). CPU time, not wall
   time, so that other jobs on the machine disturb it less.
2. `--epoch-starts`: seconds per epoch and the idle wait before each
   epoch's first step, training the network on the system's pipeline with
   a new dataset iterator every epoch (Keras' default) and with one
   repeated iterator (what the extractor does).
3. Training clips per second (the last of `--speed-epochs` epochs), each
   way in a fresh process on the same clips: the system's pipeline (clips
   decoded once and kept in memory under `pipeline_ram_mb`, and streamed
   from disk every epoch with `pipeline_ram_mb=1`) against the reference's
   way re-implemented with this network (every waveform in one NumPy array,
   `model.fit` on it) with Keras 3's defaults (XLA) and without XLA, as the
   reference's TF 2.3 ran it. Also inference clips per second.
4. Peak memory (max RSS of a fresh process) of one training epoch at 1x, 2x
   and 4x the number of clips: streamed, in memory, and the reference's way
   (reference wilkinghoff.md §1: all waveforms in one float32 array, about
   27 GB for DCASE2022).

Usage: python benchmarks/bench_wilkinghoff.py [--clips 100] [--seconds 10]
       python benchmarks/bench_wilkinghoff.py --kernels [--seconds 4]
       python benchmarks/bench_wilkinghoff.py --epoch-starts [--clips 330]
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
ONEDNN = {"in_ram": "asd_keras", "streaming": "asd_keras", "in_memory": "tf_default",
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
    if mode in ("in_ram", "streaming"):
        from asd_keras.systems import get_system

        if mode == "streaming":
            config["pipeline_ram_mb"] = 1  # no clip fits: decoded every epoch
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


def _network(num_samples, num_classes, variant="built"):
    """The compiled training model; `variant` "plain" builds it with Keras'
    Conv2D / BatchNormalization layers, "fused" with the fused batch norm
    only, "built" as the system does."""
    import keras

    import asd_keras.layers.fast_kernels as fast
    from asd_keras.layers import Mixup
    from asd_keras.models import wilkinghoff as wk

    built = fast.FusedBatchNormalization, fast.PolyphaseConv2D
    # The builder imports the fast layers when it runs, so the Keras layers
    # stand in for them while it builds.
    if variant == "plain":
        fast.FusedBatchNormalization = keras.layers.BatchNormalization
    if variant in ("plain", "fused"):
        fast.PolyphaseConv2D = keras.layers.Conv2D
    try:
        keras.utils.set_random_seed(1)
        embedding = wk.wilkinghoff_embedding_model(num_samples)
    finally:
        fast.FusedBatchNormalization, fast.PolyphaseConv2D = built
    head, loss = wk.build_head("sc_adacos", num_classes, {
        "num_subclusters": 16, "trainable_centers": False, "scale_rule": "reference"}, 1)
    model = wk.training_model(embedding, head, num_classes, Mixup(1.0, "max", 1))
    model.compile(optimizer="adam", loss=loss, jit_compile=False)
    return model


KERNEL_VARIANTS = {
    "plain": "Keras Conv2D and BatchNormalization",
    "fused": "fused batch norm",
    "built": "fused batch norm + polyphase first convolution (as built)",
}


def bench_kernels(seconds, repeats, steps=4, num_classes=26):
    """Median process CPU seconds per training step of each variant."""
    import keras
    import numpy as np

    n = int(round(seconds * 16000))
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((64 * steps, n))).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, num_classes, len(x)), num_classes)
    models = {v: _network(n, num_classes, v) for v in KERNEL_VARIANTS}
    cpu = {v: [] for v in models}
    for model in models.values():  # traced and warmed up
        model.fit({"waveform": x[:64], "label": y[:64]}, y[:64], batch_size=64, verbose=0)
    for _ in range(repeats):
        for variant, model in models.items():
            start = time.process_time()
            model.fit({"waveform": x, "label": y}, y, batch_size=64, shuffle=False, verbose=0)
            cpu[variant].append((time.process_time() - start) / steps)
    return {v: float(np.median(t)) for v, t in cpu.items()}


def bench_epoch_starts(data, seconds, epochs):
    """Per-epoch seconds and the idle wait before each first step, with a
    new iterator every epoch and with one repeated iterator."""
    import keras

    from asd_keras.data.labels import ClassEncoder
    from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor

    table = _train_table(data)
    extractor = ClassifierEmbeddingExtractor(clip_seconds=seconds, length_policy="truncate")
    paths = list(table["path"])
    encoder = ClassEncoder("attribute").fit(table)
    loader = extractor.loader(training=True)
    loader.check(paths, progress=False)
    results = {}

    class Starts(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.waited = time.perf_counter(), None

        def on_train_batch_begin(self, batch, logs=None):
            if self.waited is None:
                self.waited = time.perf_counter() - self.start

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append((time.perf_counter() - self.start, self.waited))

    for way in ("new iterator every epoch", "one repeated iterator"):
        keras.utils.set_random_seed(1)
        ds = extractor.training_dataset(paths, encoder.transform(table), encoder.num_classes,
                                        loader, True, 1)
        model = _network(extractor.num_samples, encoder.num_classes)
        starts = Starts()
        starts.rows = []
        if way == "one repeated iterator":
            model.fit(ds.repeat(), steps_per_epoch=-(-len(paths) // 64), epochs=epochs,
                      verbose=0, callbacks=[starts])
        else:
            model.fit(ds, epochs=epochs, verbose=0, callbacks=[starts])
        results[way] = starts.rows
    return results


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
    parser.add_argument("--kernels", action="store_true",
                        help="only CPU seconds per training step of the layer variants")
    parser.add_argument("--epoch-starts", type=int, nargs="?", const=8, metavar="EPOCHS",
                        help="only the epoch-start waits over this many epochs (8)")
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=tuple(ONEDNN))
    parser.add_argument("--data")
    args = parser.parse_args()
    import numpy as np

    if args.worker:
        worker(args.worker, args.data, args.seconds, args.epochs)
        return
    if args.kernels:
        cpu = bench_kernels(args.seconds, args.repeats)
        print(f"## CPU seconds per training step (batch 64, {args.seconds:g} s clips, median "
              f"of {args.repeats}, one process, {os.cpu_count()} CPU cores)\n")
        print("| layers | CPU s / step | vs Keras layers |\n|---|---:|---:|")
        for variant, name in KERNEL_VARIANTS.items():
            print(f"| {name} | {cpu[variant]:.3f} | {cpu['plain'] / cpu[variant]:.2f}x |")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.epoch_starts:
            root = _make_data(Path(tmp) / "x1", args.clips, args.seconds)
            rows = bench_epoch_starts(root, args.seconds, args.epoch_starts)
            ways = list(rows)
            print(f"## Seconds per epoch (idle wait before its first step), {args.clips} "
                  f"clips of {args.seconds:g} s\n")
            print("| epoch | " + " | ".join(ways) + " |\n|---|---:|---:|")
            for epoch, pair in enumerate(zip(*rows.values()), start=1):
                print(f"| {epoch} | " + " | ".join(f"{t:.1f} ({w:.1f})" for t, w in pair) + " |")
            return
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
            n = rates["in_ram"][1]
            ours = rates["in_ram"][0]
            print(f"## Training speed ({n} clips of {args.seconds:g} s, batch 64, "
                  f"epoch {args.speed_epochs} of {args.speed_epochs}, "
                  f"{os.cpu_count()} CPU cores)\n")
            print("| way | oneDNN | training clips/s | asd-keras speed-up |\n"
                  "|---|---|---:|---:|")
            for mode, name in (
                    ("in_ram", "asd-keras: clips in memory, jit_compile=auto"),
                    ("streaming", "asd-keras: clips streamed (pipeline_ram_mb=1)"),
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
            for mode in ("streaming", "in_ram", "in_memory"):
                peaks = []
                for _ in range(args.repeats):
                    result = _run_worker(mode, root, args.seconds)
                    peaks.append(result["peak_mb"])
                by_scale.setdefault(scale, {})[mode] = (result["clips"], peaks)
        print(f"## Peak RSS of one training epoch (median of {args.repeats} processes)\n")
        print("| data | clips | streamed (MB) | asd-keras in memory (MB) "
              "| reference way (MB) |")
        print("|---|---|---|---|---|")
        for scale, runs in by_scale.items():
            cells = []
            for mode in ("streaming", "in_ram", "in_memory"):
                clips, peaks = runs[mode]
                cells.append(f"{float(np.median(peaks)):.0f} (runs {min(peaks):.0f}-"
                             f"{max(peaks):.0f})")
            print(f"| {scale}x | {clips} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
