"""The regression cases: one tiny run of each system family, pinned so that
refactors cannot move a score unnoticed, on any CPU.

Training is never pinned. CPUs differ in the last bits of float results
(oneDNN on Intel Xeon with AVX-512, Eigen on AVX2-only AMD EPYC, other thread
counts), and the differences grow with every training step: after one epoch
the Wilkinghoff local-density scores differed by up to 58 % between two CPUs
(issue 28). So the pins are split:

- `tools/pin_regression_scores.py` trains each case below once and commits
  its run folder (`tests/data/regression/<case>/`, tiny weights and fitted
  backends) and the scores that `score` gives on the tiny dataset
  (`tests/data/regression_scores.json`).
- `tests/test_regression_scores.py` scores the committed runs again:
  inference only (front end, forward pass, backend scoring, thresholds), whose
  spread across CPUs is a few float32 ulps, far below `RTOL`.
- The same module trains each family and checks invariants instead of values:
  the loss falls, every score is finite, and a planted anomaly outranks
  the normal clips of its section.

Re-pin only when a change of scores is intended, and say why in the commit.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from asd_keras.cli import main
from tests.conftest import make_synthetic

DATA = dict(layout="dcase2022", machine_types=("fan", "valve"), seconds=1.0, train=6,
            target_train=2, test=2, seed=3, eval=False)
RUNS = Path(__file__).parent / "data" / "regression"
EPOCHS = 2
AE = ["hidden_units=16", "num_hidden_layers=1", "latent_dim=4", "batch_size=64"]
GAN = ["hidden_units=8", "num_hidden_layers=1", "latent_dim=2", "batch_size=64"]
WK = ["clip_seconds=1.0", "batch_size=8"]

CASES = {
    "dense_ae_mse": ("dense_ae", AE + ["score=mse"]),
    "dense_ae_mahala": ("dense_ae", AE + ["score=mahala"]),
    # Both branches; k-means centres per section (the default backend).
    "wilkinghoff_kmeans": ("wilkinghoff", WK + ["kmeans_clusters=2"]),
    # Local density on every source embedding; the spectrum branch alone
    # keeps the committed weights small. Ensembles (members summed) are
    # tested in tests/test_wilkinghoff.py.
    "wilkinghoff_density": ("wilkinghoff", WK + [
        "backend=local_density", "kmeans_clusters=null", "density_k=2",
        "branches=spectrum"]),
    # One GAN: the three detectors share the training step and the scoring
    # path; their networks' and losses' values are tested by hand in
    # tests/test_gan.py.
    "ganomaly": ("ganomaly", GAN),
}
# Relative tolerance of a clip's score, and the absolute floor as a share of
# the case's largest |score|. Inference from the same weights differs across
# numeric settings by at most 9e-7 of the case's largest score (3.7e-5
# relative on a small local-density score; oneDNN off and one intra-op thread
# against the pins, AMD EPYC, 2026-12-07); the floor leaves a factor of 100.
RTOL = 1e-4
ATOL_SHARE = 1e-4


def make_data(root):
    """The tiny DCASE 2022-layout dataset of the cases; returns dev_data."""
    return make_synthetic(root, **DATA) / "dev_data"


def train_case(name, data, run, epochs=EPOCHS, extra=()):
    """Trains one case through the CLI into `run` (a new folder); `extra`
    overrides (`key=value`) come after the case's own."""
    system, overrides = CASES[name]
    code = main(["train", "--system", system, "--data", str(data), "--out", str(run),
                 "--epochs", str(epochs), "--verbose", "0", *overrides, *extra])
    if code:
        raise RuntimeError(f"train failed for case {name!r} (exit {code}).")


def score_run(run, data, out):
    """Scores a run folder through the CLI; returns `{type/file: score}`."""
    code = main(["score", "--run", str(run), "--data", str(data), "--out", str(out)])
    if code:
        raise RuntimeError(f"score failed for the run {str(run)!r} (exit {code}).")
    frame = pd.read_csv(Path(out) / "scores.csv")
    key = frame["machine_type"].astype(str) + "/" + frame["file_name"].astype(str)
    return dict(zip(key, frame["score"].astype(float)))


def plant_anomalies(data, gain=8.0, seed=0):
    """Turns one test clip per machine type into an obvious anomaly.

    The first source-domain test anomaly of section 00 gets broadband noise
    at `gain` times the clip's RMS added: a fault that no detector which learned
    the normal sound may rank below its section's normal test clips.

    Returns:
        dict: machine type -> the planted clip's file name.
    """
    rng = np.random.default_rng(seed)
    planted = {}
    for folder in sorted(Path(data).iterdir()):
        path = sorted((folder / "test").glob("section_00_source_test_anomaly_*.wav"))[0]
        wave, rate = soundfile.read(path, dtype="float32")
        rms = float(np.sqrt(np.mean(wave ** 2)))
        noisy = wave + gain * rms * rng.standard_normal(wave.shape).astype(np.float32)
        soundfile.write(path, np.clip(noisy, -1.0, 1.0), rate, subtype="PCM_16")
        planted[folder.name] = path.name
    return planted
