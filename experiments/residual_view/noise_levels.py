"""Residual View against the loudness of the hall (beyond the report).

For each background level of `--gains` a synthetic two-channel set is
written (the `exp-residual-view` set's shape; `SynthConfig.background_gain`,
the hall's level relative to the machine at the near microphone in the
source domain, 1.6 times that in the target domain), the training-free
log-mel statistics of both microphones are computed once, and the
`residual_knn` backend scores near-only (alpha 0) and the Residual View for
each alpha, one memory bank per section. Writes `noise_levels.csv`, `.md`
(official score, %, rows: background level, columns: alpha) and `.png`.

Usage:
    python experiments/residual_view/noise_levels.py --out experiments/residual_view/results \\
        [--gains 0.5 1.5 3.0] [--data-root data/synthetic/residual_view_noise]
"""

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from run import official_metrics
from run import section_scores

from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import DCASE2022_MACHINE_TYPES
from asd_keras.data.synthetic import SynthConfig
from asd_keras.data.synthetic import generate
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.extractors.base import get_extractor
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.visualisation.plots import pyplot
from asd_keras.visualisation.plots import save_figure


def dataset(root, gain, args):
    """The synthetic set of one background level (written once)."""
    folder = Path(root) / f"gain_{gain:g}"
    if not (folder / "synth.json").is_file():
        generate(folder, SynthConfig(
            layout="dcase2026", machine_types=DCASE2022_MACHINE_TYPES,
            seconds=args.seconds, train=args.train, target_train=args.target_train,
            test=args.test, seed=args.seed, background_gain=gain), force=True)
    return read_dataset(synthetic_data_root(folder, "dcase2026", "dev"))


def plot(frame, path):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for gain, part in frame.groupby("background gain"):
        ax.plot(part["alpha"], part["official score"], marker="o",
                label=f"background x{gain:g}")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("alpha (0: near-only)")
    ax.set_ylabel("official score (%)")
    ax.set_title("Residual View vs the hall's level (log-mel statistics, kNN)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.5, 1.5, 3.0])
    parser.add_argument("--alphas", type=float, nargs="+",
                        default=[-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--data-root", default="data/synthetic/residual_view_noise")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--target-train", type=int, default=10)
    parser.add_argument("--test", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rows = []
    try:
        for gain in args.gains:
            table = dataset(args.data_root, gain, args)
            train = table[table["split"] == "train"].reset_index(drop=True)
            test = table[table["split"] == "test"].reset_index(drop=True)
            extractor = get_extractor("logmel_stats", channel="both")
            features = {"train": extractor.transform(train)["logmel_stats"],
                        "test": extractor.transform(test)["logmel_stats"]}
            for alpha in args.alphas:
                scores = section_scores({"alpha": alpha}, features, train, test)
                rows.append({"background gain": gain, "alpha": alpha,
                             **official_metrics(test, scores)})
            logging.info("background x%g: done.", gain)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_dataframe(out / "noise_levels.csv", frame)
    pivot = frame.pivot_table(index="background gain", columns="alpha",
                              values="official score").reset_index()
    pivot.columns = [str(c) if c == "background gain" else f"alpha {c:g}"
                     for c in pivot.columns]
    text = ("# Residual View vs the hall's level: official score (%), log-mel "
            "statistics, kNN (K = 1, MemMixup)\n\n"
            + pivot.to_markdown(index=False, floatfmt=".1f") + "\n")
    atomic_write_text(out / "noise_levels.md", text)
    plot(frame, out / "noise_levels.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
