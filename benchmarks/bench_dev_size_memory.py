"""Peak memory and on-disk caches at DCASE 2023 dev size (issue 29, "Data size").

DCASE 2023 Task 2 dev: 7 machine types x 1,000 training clips (990 source +
10 target) and 200 test clips, 10 s at 16 kHz. Make that data once (2.6 GB
of WAVs, ~20 min on 2 cores):

    python -m asd_keras synth --out /work/big/dcase2023_dev --layout dcase2023 \\
        --machines fan gearbox bearing slider ToyCar ToyTrain valve --seconds 10 \\
        --train 990 --target-train 10 --test 50 --seed 0

then run this script on it. Each case runs at every `--fractions` of the
clips (a folder of symbolic links to the first fraction of each machine
type's clips, per domain and label) in a fresh process, whose peak RSS is
read from `os.wait4` (the kernel's `ru_maxrss` of that child alone). Memory
is flat when the peak stays about the same from the smallest fraction to the
whole data (per-clip file names and embeddings aside).

Cases:
  synth        the generator itself (`asd-keras synth`, one machine type,
               `--synth-train` training clips of 10 s, written to --work).
  wilkinghoff  `asd-keras train --system wilkinghoff clip_seconds=10
               epochs=1` (training pipeline, embedding every training clip,
               k-means, cross-fitted scores), then `asd-keras score`.
  frozen       `asd-keras train --system frozen_encoder` (`--frozen-preset`,
               default the CPU-sized `eat_small`, random weights; embedding
               every training clip into a fresh cache, kNN banks), then
               `asd-keras score`; disk is the embedding cache's size.
  cache_read   the frozen encoder's `transform` served from a cache
               holding full-size BEATs entries (13 layers x 768, random
               values written first, unmeasured), so that reading a layer
               sweep's cache is measured at the real entry size without
               hours of encoding (BEATs: 0.16 clips/s on 2 shared cores).
  knn          the `knn` backend alone on random embeddings: `--knn-dim`
               features, references = fraction x 7,000 (one pooled bank with
               local density, the largest bank a grouping gives) and
               MemMixup per section (990 neighbours), scoring 1,400 test
               clips; disk is the fitted `arrays.npz`.

Usage:
    python benchmarks/bench_dev_size_memory.py --data /work/big/dcase2023_dev \\
        [--fractions 0.25 1] [--cases synth wilkinghoff frozen knn] [--work DIR]

Prints a markdown table (case, fraction, clips, peak RSS MB, disk MB, wall
s). Nothing is asserted; wall times are only meaningful on a quiet machine.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
CASES = ("synth", "wilkinghoff", "frozen", "cache_read", "knn")
DEV_TRAIN, DEV_TEST = 7000, 1400


def _machine_root(data):
    """The folder of machine-type folders inside a generated dataset."""
    data = Path(data)
    for candidate in (data / "dev_data" / "raw", data / "dev_data", data):
        if candidate.is_dir() and any((p / "train").is_dir() for p in candidate.iterdir()):
            return candidate
    raise FileNotFoundError(f"No machine-type folders (<type>/train/*.wav) under '{data}'; "
                            "pass the folder `asd-keras synth --out` wrote.")


def _subset(data, fraction, out):
    """A folder of links to the first `fraction` of every machine type's
    clips per (part, domain, label) group, at least one per group and two
    per training domain (the cross-fitted thresholds split each domain in
    two). Returns (folder, training clips, test clips)."""
    root = _machine_root(data)
    counts = {"train": 0, "test": 0}
    for machine in sorted(p for p in root.iterdir() if (p / "train").is_dir()):
        (out / machine.name).mkdir(parents=True)
        for csv in machine.glob("attributes_*.csv"):
            (out / machine.name / csv.name).symlink_to(csv.resolve())
        for part in ("train", "test"):
            groups = {}
            for wav in sorted((machine / part).glob("*.wav")):
                fields = wav.name.split("_")  # section_00_<domain>_<part>_<label>_...
                groups.setdefault((fields[2], fields[4]), []).append(wav)
            (out / machine.name / part).mkdir()
            for files in groups.values():
                keep = max(2 if part == "train" else 1, math.ceil(fraction * len(files)))
                for wav in files[:keep]:
                    (out / machine.name / part / wav.name).symlink_to(wav.resolve())
                    counts[part] += 1
    return out, counts["train"], counts["test"]


def _folder_bytes(*folders):
    total = 0
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def _measured(command, log):
    """Runs `command` in a fresh process; returns (peak RSS MB, wall s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write("$ " + " ".join(map(str, command)) + "\n")
        out.flush()
        process = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[3:5]} failed (exit {process.returncode}); see '{log}'.")
    return usage.ru_maxrss / 1024.0, wall  # ru_maxrss is in KB on Linux


def _cli(*args):
    return [sys.executable, "-m", "asd_keras", *args]


def run_synth(work, train, log):
    out = work / f"synth_{train}"
    peak, wall = _measured(_cli("synth", "--out", out, "--layout", "dcase2023",
                                "--machines", "fan", "--seconds", "10", "--train", train,
                                "--target-train", 2, "--test", 1, "--force"), log)
    disk = _folder_bytes(out)
    shutil.rmtree(out)
    return [("synth (generator)", "-", train + 6, peak, disk, wall)]


def run_system(case, data, fraction, work, log, settings):
    folder, n_train, n_test = _subset(data, fraction, work / f"data_{case}_{fraction:g}")
    run = work / f"run_{case}_{fraction:g}"
    rows = []
    peak, wall = _measured(_cli("train", "--system", case, "--data", folder, "--layout",
                                "dcase2023", "--out", run, "--force", "--verbose", "0",
                                *settings), log)
    cache = work / f"cache_{fraction:g}"
    disk = _folder_bytes(cache) if case == "frozen_encoder" else _folder_bytes(
        run, f"{run}.checkpoints")
    rows.append((f"{case} train (fit + embed train)", fraction, n_train, peak, disk, wall))
    peak, wall = _measured(_cli("score", "--run", run, "--data", folder, "--layout",
                                "dcase2023", "--out", work / f"scores_{case}_{fraction:g}",
                                "--force"), log)
    disk = _folder_bytes(cache) if case == "frozen_encoder" else 0
    rows.append((f"{case} score (embed test)", fraction, n_test, peak, disk, wall))
    return rows


def knn_worker(refs, tests, dim, mode, out):
    """Fits and scores one kNN backend on random embeddings (in this process)."""
    import numpy as np
    import pandas as pd

    from asd_keras.backends import get_backend

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    if mode == "pooled":
        features = rng.standard_normal((refs, dim)).astype(np.float32)
        backend = get_backend("knn", domains="pooled", local_density="ratio")
        backend.fit(features)
    else:  # one DCASE section with MemMixup: 990 source + 10 target clips
        features = rng.standard_normal((refs, dim)).astype(np.float32)
        target = max(1, refs // 100)
        domains = pd.DataFrame({"domain": ["source"] * (refs - target) + ["target"] * target})
        backend = get_backend("knn", memmixup_neighbours=990).fit(features, domains)
    scores = backend.score(rng.standard_normal((tests, dim)).astype(np.float32))
    backend.save(out)
    bank = sum(len(v) for k, v in backend.arrays.items() if k.endswith("_bank"))
    print(json.dumps({"finite": bool(np.isfinite(scores).all()), "bank": bank,
                      "seconds": time.perf_counter() - start}))


def cache_worker(action, folder, cache):
    """`fill`: writes random BEATs-size entries for every clip of `folder`
    that the cache lacks; `read`: the training clips' last layer from it."""
    import numpy as np
    import pandas as pd

    from asd_keras.extractors.base import get_extractor
    from asd_keras.extractors.embedding_cache import EmbeddingCache

    paths = sorted(str(p) for p in Path(folder).glob("*/train/*.wav"))
    extractor = get_extractor("frozen_encoder", encoder="beats", preset="beats_iter3",
                              clip_seconds=10.0, cache_dir=str(cache))
    if action == "fill":
        paths += sorted(str(p) for p in Path(folder).glob("*/test/*.wav"))
        entries = EmbeddingCache(cache, extractor.num_layers + 1)
        rng = np.random.default_rng(0)
        for key in extractor._cache_keys(paths):
            if not entries.file(key).is_file():
                entries.store(key, rng.standard_normal((extractor.num_layers + 1, 768)))
        return
    start = time.perf_counter()
    features = extractor.transform(pd.DataFrame({"path": paths}))
    print(json.dumps({name: list(v.shape) for name, v in features.items()}
                     | {"seconds": time.perf_counter() - start}))


def run_cache_read(data, fraction, work, log):
    folder, n_train, _ = _subset(data, fraction, work / f"data_cache_read_{fraction:g}")
    cache = work / "cache_beats"  # keys hold the clips' real paths: shared by fractions
    _measured([sys.executable, __file__, "--worker-cache", "fill", folder, cache], log)
    peak, wall = _measured([sys.executable, __file__, "--worker-cache", "read", folder,
                            cache], log)
    return [("frozen cache read (BEATs entries, 1 layer)", fraction, n_train, peak,
             _folder_bytes(cache), wall)]


def run_knn(fraction, work, log, dim):
    rows = []
    for mode, refs, tests in (("pooled", round(fraction * DEV_TRAIN), DEV_TEST),
                              ("section_memmixup", round(fraction * 1000), 200)):
        out = work / f"knn_{mode}_{fraction:g}"
        peak, wall = _measured([sys.executable, __file__, "--worker-knn", refs, tests, dim,
                                mode, out], log)
        rows.append((f"knn {mode} ({dim}-dim, {tests} test clips)", fraction, refs, peak,
                     _folder_bytes(out), wall))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder written by `asd-keras synth` (see above)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--synth-train", type=int, nargs="+", default=[50, 200],
                        help="training clips of the generator case")
    parser.add_argument("--wilkinghoff", nargs="*", default=[],
                        help="extra key=value settings of the Wilkinghoff runs")
    parser.add_argument("--frozen-preset", default="eat_small")
    parser.add_argument("--frozen", nargs="*", default=[],
                        help="extra key=value settings of the frozen-encoder runs")
    parser.add_argument("--knn-dim", type=int, default=768)
    parser.add_argument("--worker-knn", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--worker-cache", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_knn:
        refs, tests, dim, mode, out = args.worker_knn
        knn_worker(int(refs), int(tests), int(dim), mode, out)
        return
    if args.worker_cache:
        cache_worker(*args.worker_cache)
        return
    if args.data is None and set(args.cases) - {"synth", "knn"}:
        parser.error("--data is needed for the wilkinghoff, frozen and cache_read cases")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_dev_size_"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    print(f"Worker output: {log}", flush=True)
    rows = []

    def add(new_rows):
        for row in new_rows:
            print(_row(*row), flush=True)  # as they come: a long run shows progress
        rows.extend(new_rows)

    try:
        if "synth" in args.cases:
            for train in args.synth_train:
                add(run_synth(work, train, log))
        for fraction in args.fractions:
            if "wilkinghoff" in args.cases:
                add(run_system("wilkinghoff", args.data, fraction, work, log,
                               ["clip_seconds=10", "length_policy=truncate", "epochs=1",
                                *args.wilkinghoff]))
            if "frozen" in args.cases:
                add(run_system("frozen_encoder", args.data, fraction, work, log,
                               ["encoder=eat", f"preset={args.frozen_preset}",
                                "clip_seconds=10", f"cache_dir={work / f'cache_{fraction:g}'}",
                                *args.frozen]))
            if "cache_read" in args.cases:
                add(run_cache_read(args.data, fraction, work, log))
            if "knn" in args.cases:
                add(run_knn(fraction, work, log, args.knn_dim))
    finally:
        print("\n| case | fraction | clips | peak RSS MB | disk MB | wall s |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            print(_row(*row))
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _row(case, fraction, clips, peak, disk, wall):
    return (f"| {case} | {fraction} | {clips} | {peak:.0f} | {disk / 2**20:.1f} | "
            f"{wall:.1f} |")


if __name__ == "__main__":
    main()
