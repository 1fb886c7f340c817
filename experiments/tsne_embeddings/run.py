"""Table III and Fig. 5 of Wilkinghoff & Kurth: t-SNE of the test embeddings
and the mean distance from each anomalous clip to its closest normal clip in
the t-SNE plane, over the trials of the Table II study
(experiments/angular_margin)."""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.evaluation.embedding_space import anomaly_to_normal_distances
from asd_keras.evaluation.embedding_space import tsne_projection
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.visualisation.plots import plot_tsne

HERE = Path(__file__).parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(HERE.parent / "angular_margin" / "results"))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    trials = sorted(Path(args.study).glob("trials/*/trial*/test_embeddings.npz"))
    if not trials:
        raise SystemExit(
            f"No trial embeddings under '{args.study}'. Run 'make exp-angular-margin' first.")
    rows, panels = [], {}
    for path in trials:
        condition, trial = path.parent.parent.name, int(path.parent.name[5:])
        data = np.load(path)
        points = tsne_projection(data["embeddings"], seed=trial, perplexity=args.perplexity)
        distances = anomaly_to_normal_distances(points, data["label"])
        rows.append({"condition": condition, "trial": trial,
                     "mean distance": float(distances.mean())})
        if trial == 0:
            panels[condition] = (points, data["label"])
    frame = pd.DataFrame(rows)
    summary = frame.groupby("condition", sort=False)["mean distance"].agg(
        ["mean", "std", "count"]).reset_index()
    with staged_dir(args.out, force=args.force, what="results folder") as stage:
        atomic_write_dataframe(stage / "trials.csv", frame)
        atomic_write_dataframe(stage / "results.csv", summary)
        shown = summary.assign(distance=[f"{m:.3f} ± {s:.3f}" for m, s in
                                         zip(summary["mean"], summary["std"])])
        text = shown[["condition", "count", "distance"]].to_markdown(index=False)
        atomic_write_text(stage / "results.md", text + "\n")
        plot_tsne(panels, stage / "tsne.png")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
