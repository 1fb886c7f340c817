"""Peak host memory of the EAT + m-FB + SimAM FULL=1 training, by phase.

    python benchmarks/bench_eat_simam_memory.py 4x1 8x1           # batch x accumulation
    python benchmarks/bench_eat_simam_memory.py 32x4 --steps 2    # the FULL setting
    python benchmarks/bench_eat_simam_memory.py --pipeline        # the tf.data buffers
    python benchmarks/bench_eat_simam_memory.py --compute         # s/clip at batch 8 vs 16

Each setting `BxK` (effective batch `B`, `K` micro-batches of `B / K` per
optimizer update: `gradient_accumulation_steps=K`) runs in its own process
(so its peak RSS is its own) the `eat_simam_full` configuration of
`smoke_configs.py` (EAT-base, 10 s clips, m-FB + local SimAM, layer-wise
decay, cosine schedule) on the smoke's synthetic 10 s clips, and stops
after `--steps` optimizer updates. It prints the peak RSS (`ru_maxrss`)
after each phase:

- `imports`: TensorFlow and the library loaded;
- `norm`: the normalisation-statistics pass over the training clips;
- `built`: EAT-base, the head and the optimizer's slots built (on_train_begin);
- `first`: the first update (trace and run);
- `steady`: the later updates;

and the seconds per optimizer update of the later updates (the median;
on a shared CPU these are inflated, and the ratio between settings run
back to back is the figure to compare). `--pipeline` iterates the training
pipeline alone (no model) and prints its peak RSS; `--compute` times a
forward and backward pass of EAT-base per clip at batches of 8 and 16,
alternated in one process (what micro-batches of 8 cost in compute; needs
about 10 GB). `--one-step` (a diagnostic) runs one micro-batch per
training-function call instead of one update.

With a few GB to spare only: run one setting at a time and watch `free -g`
(batch 32 without accumulation needs more than 21 GB).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

NAME = "eat_simam_full"


def peak_mb():
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _table():
    from smoke_configs import DATA
    from smoke_configs import select

    from asd_keras.data.layouts import read_dataset

    spec = select([NAME])[0]
    root = ROOT / "data" / "synthetic" / "smoke_full" / spec.data
    if not (root / "synth.json").is_file():
        d = DATA[spec.data]
        subprocess.run([sys.executable, "-m", "asd_keras", "synth", "--out", str(root),
                        "--layout", d["layout"], "--machines", *d["machines"], "--seconds",
                        "10", "--train", str(d["train"]), "--target-train",
                        str(d["target_train"]), "--test", str(d["test"]), "--seed", "0",
                        "--force"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    folder = root / "dev_data" / "raw"
    table = read_dataset(folder if folder.is_dir() else root / "dev_data")
    return spec, table[table["split"] == "train"]


class _Done(Exception):
    """Ends a setting's run after its last measured update."""


def run_setting(batch, accumulation, steps, multi_step=True):
    """Trains `steps` updates of the FULL configuration; returns the record."""
    import keras

    from asd_keras.extractors.finetuned_encoder import FinetunedEncoderExtractor
    from asd_keras.systems import get_system

    record = {"batch": batch, "accumulation": accumulation, "imports": peak_mb()}
    spec, train = _table()
    original = FinetunedEncoderExtractor._normalisation

    def normalisation(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        record["norm"] = peak_mb()
        return result

    FinetunedEncoderExtractor._normalisation = normalisation
    calls = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            record["built"] = peak_mb()
            calls.append(time.perf_counter())

        def on_train_batch_end(self, step, logs=None):
            calls.append(time.perf_counter())
            record["first" if len(calls) == 2 else "steady"] = peak_mb()
            record["updates"] = int(self.model.optimizer.iterations.numpy())
            if len(calls) > steps:
                # Out of `fit` at once: the scorer's pass over the training
                # clips that follows training is not what is measured.
                raise _Done()

    config = {**spec.config, "batch_size": batch, "gradient_accumulation_steps": accumulation}
    if not multi_step:
        # Diagnostic: one micro-batch per training-function call (the
        # accumulation itself unchanged), to see what the multi-step loop costs.
        compile_ = keras.Model.compile

        def compile_one_step(self, *args, **kwargs):
            return compile_(self, *args, **{**kwargs, "steps_per_execution": 1})

        keras.Model.compile = compile_one_step
        steps = steps * accumulation
    system = get_system(spec.system)(config)
    work = Path(tempfile.mkdtemp(prefix="bench_eat_memory_"))
    try:
        system.fit(train, work / "run", verbose=0, callbacks=[Probe()])
    except _Done:
        pass
    gaps = sorted(b - a for a, b in zip(calls[1:], calls[2:]))
    record["s_per_update"] = gaps[len(gaps) // 2] * (1 if multi_step else accumulation) if (
        gaps) else None
    record["first_s"] = calls[1] - calls[0] if len(calls) > 1 else None
    return record


def run_pipeline():
    """Iterates the training pipeline alone; returns its peak RSS."""
    from asd_keras.extractors.finetuned_encoder import FinetunedEncoderExtractor

    spec, train = _table()
    record = {"imports": peak_mb()}
    keys = {k: v for k, v in spec.config.items() if k != "system"}
    extractor = FinetunedEncoderExtractor(**{k: v for k, v in keys.items()
                                             if k in FinetunedEncoderExtractor().config})
    paths = list(train["path"])
    extractor.resolve_length(paths)
    loader = extractor.loader(training=True)
    loader.check(paths, progress=False)
    batches = 0
    for _ in range(3):
        for _ in extractor.training_dataset(paths, [0] * len(paths), 2, loader):
            batches += 1
    record.update(batches=batches, pipeline=peak_mb())
    return record


def run_compute(batches=(8, 16), rounds=3):
    """Seconds per clip of EAT-base's forward and backward pass (10 s clips,
    the FULL network, no optimizer) at each batch size, alternated in this
    process so that a shared CPU slows all alike; returns the medians."""
    import keras
    import numpy as np
    import tensorflow as tf

    from asd_keras.layers import ArcFace
    from asd_keras.losses import MixupCrossEntropy
    from asd_keras.models.encoder_finetuning import eat_embedding_model
    from asd_keras.models.wilkinghoff import training_model

    keras.utils.set_random_seed(0)
    network = eat_embedding_model(160000, {}, "linear", norm_mean=-1.0, norm_std=2.0,
                                  simam="local")
    model = training_model(network, ArcFace(10, 16.0, 0.2, seed=0, name="head"), 10)
    loss = MixupCrossEntropy()

    @tf.function(reduce_retracing=True)
    def step(waves, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model({"waveform": waves, "label": labels}, training=True))
        return tape.gradient(value, model.trainable_variables)[0][0, 0]

    rng = np.random.default_rng(0)
    data = {b: (tf.constant(rng.normal(0, 0.1, (b, 160000)).astype("float32")),
                tf.constant(np.eye(10, dtype="float32")[rng.integers(0, 10, b)]))
            for b in batches}
    for b in batches:
        step(*data[b]).numpy()  # trace
    times = {b: [] for b in batches}
    for _ in range(rounds):
        for b in list(batches) + list(batches[:1]):
            start = time.perf_counter()
            step(*data[b]).numpy()
            times[b].append((time.perf_counter() - start) / b)
    return {f"s_per_clip_{b}": float(np.median(v)) for b, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", default=["32x4"],
                        help="BxK: effective batch B in K micro-batches (default 32x4)")
    parser.add_argument("--steps", type=int, default=2,
                        help="optimizer updates per setting (default 2; >= 2 to time one)")
    parser.add_argument("--pipeline", action="store_true", help="the pipeline alone")
    parser.add_argument("--compute", action="store_true",
                        help="seconds per clip of a forward + backward pass at 8 and 16")
    parser.add_argument("--one-step", action="store_true",
                        help="diagnostic: one micro-batch per training-function call")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "pipeline":
            record = run_pipeline()
        elif args.child == "compute":
            record = run_compute()
        else:
            batch, accumulation = (int(v) for v in args.child.split("x"))
            record = run_setting(batch, accumulation, args.steps, not args.one_step)
        record["peak"] = peak_mb()
        print("RECORD " + json.dumps(record))
        return 0
    settings = (["pipeline"] if args.pipeline else []) + (["compute"] if args.compute else [])
    for setting in settings or args.settings:
        if setting not in ("pipeline", "compute") and (len(setting.split("x")) != 2 or not all(
                v.isdigit() for v in setting.split("x"))):
            parser.error(f"A setting is BxK such as 32x4; received {setting!r}.")
        proc = subprocess.run([sys.executable, __file__, "--child", setting, "--steps",
                               str(args.steps)] + (["--one-step"] if args.one_step else []),
                              cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RECORD ")]
        if not lines:
            print(f"{setting}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        record = json.loads(lines[-1][len("RECORD "):])
        print(setting + ": " + ", ".join(
            f"{k} {v:.0f} MB" if k in ("imports", "norm", "built", "first", "steady", "peak",
                                       "pipeline") else
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in record.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
