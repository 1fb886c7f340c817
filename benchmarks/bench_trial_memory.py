"""Memory that stays in one process from one trained system to the next.

Fits the largest separator of the proxy study's separation family (4 blocks,
128 channels; one epoch on 9 training clips each of fan and ToyCar, 0.5 s)
`--fits` times in one process, each with another seed, drops it, and prints
the RSS and the peak RSS after each fit; with `--release`, Keras' session is
cleared and glibc's `malloc_trim(0)` hands freed heap back after each fit.
Then it counts the Keras layers and models and the traced functions still
alive. A growth of the peak with no such object alive is TensorFlow's own
runtime state, which only a fresh process per trial bounds.

Usage: python benchmarks/bench_trial_memory.py --data DEV_DATA [--fits 3] [--release]
(DEV_DATA: a DCASE 2022-layout dev_data folder with fan and ToyCar, e.g.
data/synthetic/proxy_dcase2022/dev_data from `make exp-proxy-separation`.)
Run it with nothing else running; it prints figures and asserts nothing.
"""

import argparse
import collections
import ctypes
import ctypes.util
import gc
import os
import resource
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return -1


def _release():
    import keras

    keras.backend.clear_session(free_memory=True)
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--fits", type=int, default=3)
    parser.add_argument("--release", action="store_true")
    args = parser.parse_args()

    import keras
    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    from asd_keras.runs import read_tables
    from asd_keras.systems import get_system

    table = read_tables(args.data, machine_types=["fan", "ToyCar"])
    train = table[table["split"] == "train"].groupby("machine_type").head(9)
    train = train.reset_index(drop=True)
    peaks = []
    with tempfile.TemporaryDirectory() as work:
        for fit in range(args.fits):
            system = get_system("separation")({
                "epochs": 1, "clip_seconds": 0.5, "segment_seconds": 0.25, "batch_size": 1,
                "gradient_accumulation_steps": 1, "num_blocks": 4, "width": 128,
                "extractor_grouping": "all", "seed": fit})
            system.fit(train, f"{work}/run{fit}", verbose=0)
            del system
            if args.release:
                _release()
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            print(f"fit {fit}: RSS {_rss_mb()} MB, peak {peaks[-1]} MB", flush=True)
    gc.collect()
    layers = sum(isinstance(o, (keras.Model, keras.layers.Layer)) for o in gc.get_objects())
    functions = collections.Counter(
        getattr(o, "_name", "?") for o in gc.get_objects()
        if isinstance(o, polymorphic_function.Function))
    print(f"peak growth per fit: {[b - a for a, b in zip(peaks, peaks[1:])]} MB; alive after "
          f"the fits: {layers} Keras layers/models, traced functions {dict(functions)}")


if __name__ == "__main__":
    main()
