"""Pinned scores of every system on one tiny dataset (the pipeline refactor's
safety net).

`python tools/pin_regression_scores.py` trains each case below through the
CLI and writes `tests/data/regression_scores.json`;
`tests/test_regression_scores.py` reruns the cases and compares. Re-pin only
when a change of scores is intended, and say why in the commit.

The cases train for one epoch with `deterministic=true`, so that the
differences between CPUs (last-bit float differences, oneDNN on or off)
stay far below the tolerance instead of growing over many steps.
"""

import pandas as pd

from asd_keras.cli import main
from tests.conftest import make_synthetic

DATA = dict(layout="dcase2022", machine_types=("fan", "valve"), seconds=1.0, train=6,
            target_train=2, test=2, seed=3, eval=False)
AE = ["hidden_units=16", "num_hidden_layers=1", "latent_dim=4", "batch_size=64"]
GAN = ["hidden_units=8", "num_hidden_layers=1", "latent_dim=2", "batch_size=64"]
# One k-means centre: the mean, which moves continuously with the
# embeddings; with several, a last-bit difference between CPUs can move a
# clip to another centre and its score by percents.
WK = ["clip_seconds=1.0", "batch_size=8", "kmeans_clusters=1"]

CASES = {
    "dense_ae_mse": ("dense_ae", AE + ["score=mse"]),
    "dense_ae_mahala": ("dense_ae", AE + ["score=mahala"]),
    # Both branches, kept at their seeded initial weights (learning rate
    # 1e-9): six AdaCos steps through the 2-D CNN turn oneDNN's and Eigen's
    # last-bit differences into 2 % score differences. This case pins the
    # frontends, the network's forward pass, k-means and the scoring; the
    # next one pins training (spectrum branch).
    "wilkinghoff_kmeans": ("wilkinghoff", WK + ["learning_rate=1e-9"]),
    # Local density on every source embedding, two members summed (one
    # network per section is tested in tests/test_wilkinghoff.py).
    "wilkinghoff_density_x2": (
        "wilkinghoff", [k for k in WK if not k.startswith("kmeans_clusters")] + [
            "backend=local_density", "kmeans_clusters=null", "density_k=2",
            "ensemble_size=2", "branches=spectrum"]),
    # One GAN: the three detectors share the training step and the scoring
    # path; their networks' and losses' values are tested by hand in
    # tests/test_gan.py.
    "ganomaly": ("ganomaly", GAN),
}
# Relative tolerance of a clip's score, and the absolute floor as a share of
# the case's largest |score|.
RTOL = 2e-3
ATOL_SHARE = 1e-4


def make_data(root):
    """The tiny DCASE 2022-layout dataset of the cases; returns dev_data."""
    return make_synthetic(root, **DATA) / "dev_data"


def run_case(name, data, out):
    """Trains and scores one case through the CLI; returns clip -> score."""
    system, overrides = CASES[name]
    run, scores = out / name, out / f"{name}-scores"
    code = main(["train", "--system", system, "--data", str(data), "--out", str(run),
                 "--epochs", "1", "--verbose", "0", "deterministic=true", *overrides])
    if code:
        raise RuntimeError(f"train failed for case {name!r} (exit {code}).")
    code = main(["score", "--run", str(run), "--data", str(data), "--out", str(scores)])
    if code:
        raise RuntimeError(f"score failed for case {name!r} (exit {code}).")
    frame = pd.read_csv(scores / "scores.csv")
    key = frame["machine_type"].astype(str) + "/" + frame["file_name"].astype(str)
    return dict(zip(key, frame["score"].astype(float)))
