"""Trace time and s/step of the proxy study's ResNet training steps, graph vs eager.

For each ResNet depth and training model of Shin & Lee's proxy study (the
classification extractor with its cross-entropy or ArcFace head, the
contrastive extractor with SimCLR or SimSiam), a fresh worker process trains
the model exactly as the extractor does (`extractor.fit`: its encoder, head,
optimizer and tf.data pipeline) for `--epochs` epochs of full batches and
times every step with a callback:

- trace: the first step minus the median of the later ones (graph mode:
  tracing the training step, Grappler and the first run; eager: the first
  step's warm-up);
- s/step: the median of the later steps;
- peak RSS of the worker (`ru_maxrss`).

The clips are the proxy study's synthetic set (`--data`, made as
`make exp-proxy-classification` makes it when missing), tiled to
`--seconds` (10 s: the paper's 313 frames of 128 mels at 16 kHz, hop 512).
Each worker runs alone, one after the other. Timings are only comparable on
an otherwise idle machine; the trace column is what `run_eagerly=false` (the
default) costs once per trained model.

Usage: python benchmarks/bench_trace.py [--depths 18 34 50 101 152]
       [--models ce arcface simclr simsiam] [--seconds 10 1] [--modes graph eager]
       [--batch 32] [--epochs 1] [--data DIR]
Prints a markdown table; nothing is asserted.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "synthetic" / "proxy_dcase2022"
# The synthetic proxy set of the Makefile's exp-proxy-* targets.
SYNTH = ["synth", "--layout", "dcase2022", "--machines", "fan", "gearbox", "bearing", "slider",
         "ToyCar", "ToyTrain", "valve", "--seconds", "1", "--train", "2", "--target-train", "1",
         "--test", "2", "--eval", "--seed", "3"]
MODELS = {"ce": ("resnet_classifier", {"loss": "ce"}),
          "arcface": ("resnet_classifier", {"loss": "arcface"}),
          "simclr": ("contrastive", {"framework": "simclr"}),
          "simsiam": ("contrastive", {"framework": "simsiam"})}


def _worker(model, depth, seconds, mode, batch, epochs, data):
    import keras

    from asd_keras.extractors import get_extractor
    from asd_keras.runs import read_tables
    from asd_keras.utils.training import TrainingContext

    name, config = MODELS[model]
    table = read_tables(data)
    # Every training clip of every machine type, classes = sections: enough
    # clips for a few full batches of 32.
    table = table[table["split"] == "train"].reset_index(drop=True)
    extractor = get_extractor(name, depth=depth, clip_seconds=seconds, batch_size=batch,
                              epochs=epochs, select="last", run_eagerly=mode == "eager",
                              **config, **({"classes": "section"}
                                           if name == "resnet_classifier" else {}))

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    extractor.fit(table, TrainingContext(callbacks=[timer], verbose=0))
    later = sorted(timer.times[1:])
    step = later[len(later) // 2] if later else float("nan")
    return {"steps": len(timer.times), "first_s": timer.times[0], "trace_s":
            timer.times[0] - step, "step_s": step,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _data_folders(data):
    folder = Path(data)
    if not (folder / "dev_data").is_dir():
        subprocess.run([sys.executable, "-m", "asd_keras", *SYNTH, "--out", str(folder)],
                       check=True, cwd=ROOT)
    return [str(folder / "dev_data"), str(folder / "eval_data")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 34, 50, 101, 152])
    parser.add_argument("--models", nargs="+", default=["ce"], choices=sorted(MODELS))
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0])
    parser.add_argument("--modes", nargs="+", default=["graph", "eager"],
                        choices=["graph", "eager"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(**json.loads(args.worker))))
        return 0
    folders = _data_folders(args.data)
    print("| model | depth | clip (s) | mode | steps | trace (s) | s/step | peak RSS (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for seconds in args.seconds:
            for depth in args.depths:
                for mode in args.modes:
                    job = {"model": model, "depth": depth, "seconds": seconds, "mode": mode,
                           "batch": args.batch, "epochs": args.epochs, "data": folders}
                    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                                          capture_output=True, text=True, cwd=ROOT)
                    if done.returncode:
                        print(f"| {model} | {depth} | {seconds:g} | {mode} | failed: "
                              f"{done.stderr.strip().splitlines()[-1:]} | | | |", flush=True)
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    print(f"| {model} | {depth} | {seconds:g} | {mode} | {r['steps']} | "
                          f"{r['trace_s']:.1f} | {r['step_s']:.2f} | {r['peak_rss_gb']:.2f} |",
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
