"""Feature-pipeline speed and training memory, against the baseline's way.

1. Clips per second of the tf.data log-mel pipeline (parallel decode and
   `tf.signal` features) and of a per-file librosa loop like the DCASE
   baseline's `file_to_vectors`, on the same clips; and their ratio.
2. Peak memory (max RSS of a fresh process) of one training epoch of the
   dense autoencoder as the number of clips doubles: the streaming pipeline
   with its on-disk cache, against the baseline's way of stacking every
   vector of every clip into one in-memory array before `fit`.

Usage: python benchmarks/bench_pipeline.py [--clips 40] [--seconds 10]
Prints a markdown table; nothing is asserted.
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


def _make_data(root, clips, seconds):
    from asd_keras.data.synthetic import SynthConfig
    from asd_keras.data.synthetic import generate

    train = max(1, clips - 1)
    generate(root, SynthConfig(layout="dcase2023", machine_types=("fan",),
                               seconds=seconds, train=train, target_train=1,
                               test=1), progress=False)
    return sorted(str(p) for p in (root / "dev_data/raw/fan/train").glob("*.wav"))


def bench_features(paths):
    import librosa
    import numpy as np

    from asd_keras.data.audio import AudioLoader
    from asd_keras.data.pipelines import clip_dataset
    from asd_keras.features import LogMelFrontend

    frontend = LogMelFrontend()
    loader = AudioLoader()
    loader.check(paths, progress=False)
    ds = clip_dataset(paths, loader, frontend.vectors)
    for _ in ds.take(2):  # trace the graph first
        pass
    start = time.perf_counter()
    n = sum(1 for _ in ds)
    tf_rate = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for path in paths:
        y, sr = librosa.load(path, sr=None, mono=False)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512,
                                             n_mels=128, power=2.0)
        log_mel = 20.0 / 2.0 * np.log10(np.maximum(mel, sys.float_info.epsilon))
        frames = log_mel.shape[1] - 4
        vectors = np.zeros((frames, 640), np.float32)
        for t in range(5):
            vectors[:, 128 * t: 128 * (t + 1)] = log_mel[:, t: t + frames].T
    librosa_rate = len(paths) / (time.perf_counter() - start)
    return tf_rate, librosa_rate


_EPOCH = r"""
import json, os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tempfile
from pathlib import Path
from asd_keras.data.audio import AudioLoader
from asd_keras.data.pipelines import vector_dataset
from asd_keras.features import LogMelFrontend
from asd_keras.models import dense_autoencoder
paths, mode = json.loads(sys.argv[1]), sys.argv[2]
frontend, loader = LogMelFrontend(), AudioLoader()
loader.check(paths, progress=False)
model = dense_autoencoder()
model.compile("adam", "mse")
if mode == "stream":
    with tempfile.TemporaryDirectory() as cache:
        ds = vector_dataset(paths, loader, frontend, 512, shuffle=True,
                            cache=str(Path(cache) / "c"))
        model.fit(ds, epochs=1, verbose=0)
else:  # the baseline: every vector of every clip in one array
    import tensorflow as tf
    data = np.concatenate([frontend.vectors(loader.load(tf.constant(p))).numpy()
                           for p in paths])
    model.fit(data, data, batch_size=512, epochs=1, shuffle=True, verbose=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_memory_mb(paths, mode):
    out = subprocess.run([sys.executable, "-c", _EPOCH, json.dumps(paths), mode],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = _make_data(Path(tmp) / "data", 4 * args.clips, args.seconds)
        tf_rate, librosa_rate = bench_features(paths[: args.clips])
        print(f"## Log-mel features, {args.clips} clips of {args.seconds:g} s, "
              f"{os.cpu_count()} CPU cores\n")
        print("| pipeline | clips/s |\n|---|---:|")
        print(f"| tf.data + tf.signal (asd-keras) | {tf_rate:.1f} |")
        print(f"| per-file librosa loop (baseline) | {librosa_rate:.1f} |")
        print(f"| ratio | {tf_rate / librosa_rate:.2f}x |\n")
        print("## Peak memory of one training epoch (max RSS, MB)\n")
        print("| clips | streaming pipeline | baseline in-memory array |\n|---:|---:|---:|")
        for factor in (1, 2, 4):
            subset = paths[: factor * args.clips]
            stream = peak_memory_mb(subset, "stream")
            memory = peak_memory_mb(subset, "array")
            print(f"| {len(subset)} | {stream:.0f} | {memory:.0f} |")


if __name__ == "__main__":
    main()
