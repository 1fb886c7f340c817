"""Scores and training time of the demo systems in float32 and mixed_bfloat16.

The demo's two systems (`experiments/dense_ae_baseline/demo.yaml` and
`experiments/wilkinghoff_demo/demo.yaml`) are trained on the demo data
(`data/synthetic/demo/dev_data`, written first when it is missing) once with
`dtype_policy=float32` and once with `dtype_policy=mixed_bfloat16`, each in
a fresh process with the same seed, and score the test clips. Printed per
system:

- the official score (DCASE 2022: harmonic mean of the AUCs and pAUCs) of
  each policy;
- max and median of |score(bfloat16) - score(float32)| over the test
  clips, relative to the standard deviation of the float32 scores (the
  scale on which a threshold and a ranking act);
- the Spearman rank correlation of the two policies' per-clip scores;
- the training time of each (`system.fit`: features, training, backends
  and thresholds; TensorFlow's import excluded) and their ratio.

Training is not bit-reproducible across policies: the bfloat16 run differs
by its rounding from the first step on, so the difference includes the
training's own sensitivity, not only inference rounding.

Usage: python benchmarks/bench_mixed_precision.py [--epochs N] [--quick]
  --quick   a tiny dataset in a temporary folder (2 machine types, 2 s clips)
            and 1 epoch unless --epochs: checks that the script runs.
Prints markdown; nothing is asserted. Run it on a quiet machine: the load
average is printed because a busy CPU inflates the times.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _workers import onednn_label  # noqa: E402  (before asd_keras is imported)
from _workers import worker_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "data" / "synthetic" / "demo"
SYSTEMS = {
    "dense_ae": ROOT / "experiments" / "dense_ae_baseline" / "demo.yaml",
    "wilkinghoff": ROOT / "experiments" / "wilkinghoff_demo" / "demo.yaml",
}
POLICIES = ("float32", "mixed_bfloat16")
QUICK_SECONDS = 2.0


def worker(system_name, data, policy, overrides, out_csv):
    """Trains and scores one system with one policy; prints a JSON line."""
    from asd_keras.config import load_config_file
    from asd_keras.data.layouts import read_dataset
    from asd_keras.evaluation.metrics import evaluate
    from asd_keras.systems import get_system
    from asd_keras.utils.runs import seed_run

    config = {**load_config_file(SYSTEMS[system_name]), **overrides,
              "dtype_policy": policy}
    system = get_system(system_name)(config)
    table = read_dataset(data)
    seed_run(system.config)
    with tempfile.TemporaryDirectory() as run:
        start = time.perf_counter()
        system.fit(table, run, verbose=0)
        train_s = time.perf_counter() - start
    test = table[table["split"] == "test"].reset_index(drop=True)
    start = time.perf_counter()
    scored = system.score(test)
    score_s = time.perf_counter() - start
    _, official = evaluate(scored, table["layout"].iloc[0])
    scored[["file_name", "machine_type", "section", "score"]].to_csv(out_csv, index=False)
    print(json.dumps({"official": official, "train_s": train_s, "score_s": score_s,
                      "train_clips": int((table["split"] == "train").sum()),
                      "test_clips": len(test)}))


def _run_worker(system_name, data, policy, overrides, out_csv):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", system_name, "--data", str(data),
         "--policy", policy, "--overrides", json.dumps(overrides), "--out", str(out_csv)],
        capture_output=True, text=True, env=worker_env("asd_keras"))
    if out.returncode != 0:
        raise RuntimeError(f"{system_name} {policy} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make_demo_data():
    subprocess.run([sys.executable, "-m", "asd_keras", "synth", "--out", str(DEMO_DATA),
                    "--layout", "dcase2022", "--train", "30", "--test", "10", "--seed", "0"],
                   check=True, cwd=ROOT)


def _make_quick_data(root):
    subprocess.run([sys.executable, "-m", "asd_keras", "synth", "--out", str(root),
                    "--layout", "dcase2022", "--machines", "fan", "valve", "--seconds",
                    str(QUICK_SECONDS), "--train", "4", "--target-train", "1", "--test", "2",
                    "--seed", "0"], check=True, cwd=ROOT, capture_output=True)
    return root / "dev_data"


def _overrides(system_name, epochs, quick):
    overrides = {}
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    if quick:
        overrides.setdefault("epochs", 1)
        if system_name == "wilkinghoff":
            # The demo's 10 s input on 2 s clips, and fewer centres than clips.
            overrides.update(clip_seconds=QUICK_SECONDS, kmeans_clusters=2)
    return overrides


def compare(first, second):
    """Differences of two score tables of the same clips (float32 first)."""
    import numpy as np
    from scipy.stats import spearmanr

    merged = first.merge(second, on=["file_name", "machine_type", "section"],
                         suffixes=("_f32", "_bf16"))
    if len(merged) != len(first):
        raise ValueError("The two runs scored different clips.")
    a, b = merged["score_f32"].to_numpy(float), merged["score_bf16"].to_numpy(float)
    scale = float(np.std(a)) or 1.0
    diff = np.abs(b - a) / scale
    return {"max": float(diff.max()), "median": float(np.median(diff)),
            "spearman": float(spearmanr(a, b).statistic), "scale": scale}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs of both systems (default: "
                        "each demo config's; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny temporary data and 1 epoch: checks the script")
    parser.add_argument("--systems", nargs="+", choices=tuple(SYSTEMS),
                        default=list(SYSTEMS))
    parser.add_argument("--worker", choices=tuple(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.policy, json.loads(args.overrides), args.out)
        return
    import pandas as pd

    from asd_keras.utils.runs import cpu_summary

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.quick:
            data = _make_quick_data(tmp / "data")
        else:
            if not (DEMO_DATA / "dev_data").is_dir():
                _make_demo_data()
            data = DEMO_DATA / "dev_data"
        cpu = cpu_summary()
        print(f"CPU: {cpu['model']} ({os.cpu_count()} cores; {', '.join(cpu['flags'])}); "
              f"{onednn_label(worker_env('asd_keras'))}; load average before: "
              f"{os.getloadavg()[0]:.2f}; data: {data}"
              f"{' (--quick)' if args.quick else ''}\n")
        print("| system | policy | epochs | official score | train (s) | train vs "
              "float32 | score (s) |\n|---|---|---:|---:|---:|---:|---:|")
        differences = {}
        for name in args.systems:
            overrides = _overrides(name, args.epochs, args.quick)
            results, scores = {}, {}
            for policy in POLICIES:
                csv = tmp / f"{name}_{policy}.csv"
                results[policy] = _run_worker(name, data, policy, overrides, csv)
                scores[policy] = pd.read_csv(csv, dtype={"section": str})
            epochs = overrides.get("epochs", "config")
            for policy in POLICIES:
                r = results[policy]
                ratio = r["train_s"] / results["float32"]["train_s"]
                print(f"| {name} | {policy} | {epochs} | {r['official']:.4f} | "
                      f"{r['train_s']:.1f} | {ratio:.2f}x | {r['score_s']:.1f} |")
            differences[name] = (compare(scores["float32"], scores["mixed_bfloat16"]),
                                 results["float32"]["test_clips"])
        print("\n| system | test clips | max abs diff / std | median abs diff / std | "
              "Spearman rho | std of float32 scores |\n|---|---:|---:|---:|---:|---:|")
        for name, (d, clips) in differences.items():
            print(f"| {name} | {clips} | {d['max']:.4f} | {d['median']:.4f} | "
                  f"{d['spearman']:.4f} | {d['scale']:.4g} |")


if __name__ == "__main__":
    main()
