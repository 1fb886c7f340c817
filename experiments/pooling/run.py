"""Training-free pooling table: encoders x pooling x kNN, with and without
local-density normalisation (beyond the papers; see config.yaml).

Runs the conditions of `config.yaml` with the study runner (`asd-keras
study`), adding `--frozen key=value` settings and `--preset-dir` to the
frozen-encoder conditions only, then pivots `results.csv` into
`pooling_table.csv` / `.md` (official score, the harmonic mean of the
DCASE evaluator, %, for each encoder and pooling, without and with local
density) and `pooling_table.png`.

Usage:
    python experiments/pooling/run.py --data DEV --out experiments/pooling/results \
        [--preset-dir PRESETS] [--frozen clip_seconds=1.0 num_frames=112] [--force]
"""

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from asd_keras.config import read_yaml_mapping
from asd_keras.config import parse_overrides
from asd_keras.runners.study import run_study
from asd_keras.runners.study import trial_weights
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.visualisation.plots import pyplot
from asd_keras.visualisation.plots import save_figure

HERE = Path(__file__).parent
VARIANTS = {"plain": "kNN", "ldn": "kNN + local density"}


def conditions(config, frozen, preset_dir):
    """The conditions of `config` with the frozen-encoder settings added."""
    out = []
    for condition in config["conditions"]:
        condition = dict(condition)
        if condition.get("system") == "frozen_encoder":
            condition.update(frozen)
            if preset_dir:
                condition["preset_dir"] = preset_dir
        out.append(condition)
    return out


def pooling_table(results, trials):
    """`results.csv` of the study as one row per (encoder, pooling), the
    official score (%) without and with local density in columns."""
    frame = pd.read_csv(results)
    parts = frame["condition"].str.split("__", expand=True)
    frame["encoder"], frame["pooling"], frame["variant"] = parts[0], parts[1], parts[2]
    table = frame.pivot_table(index=["encoder", "pooling"], columns="variant",
                              values="official_score mean", sort=False) * 100
    table = table.rename(columns=VARIANTS)[list(VARIANTS.values())].reset_index()
    weights = {}
    for row in trials.itertuples(index=False):
        weights[row.condition.split("__")[0]] = row.weights
    table.insert(1, "weights", table["encoder"].map(weights).fillna(""))
    return table


def plot(table, path):
    plt = pyplot()
    import numpy as np

    labels = [f"{e}\n{p}" for e, p in zip(table["encoder"], table["pooling"])]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(table)), 4.2))
    for i, column in enumerate(VARIANTS.values()):
        ax.bar(x + (i - 0.5) * 0.4, table[column], width=0.4, label=column)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set_ylabel("official score (%)")
    low = float(np.nanmin(table[list(VARIANTS.values())].to_numpy()))
    ax.set_ylim(max(0, low - 5), 100)
    ax.legend(fontsize=8)
    ax.set_title("Training-free pooling: kNN (K = 1) with and without local density")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="labelled dev data folder(s)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--preset-dir", help="folder of converted presets (beats_iter3, "
                        "eat_base); without it the encoders have random weights")
    parser.add_argument("--frozen", nargs="*", default=[], metavar="key=value",
                        help="settings of the frozen-encoder conditions only")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of every condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        config = read_yaml_mapping(args.config, "Experiment config", "Fix the file")
        base = {**(config.get("base") or {}), **parse_overrides(args.overrides)}
        run_study(conditions(config, parse_overrides(args.frozen), args.preset_dir), base,
                  args.data, args.out, trials=args.trials, force=args.force)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"Interrupted; run the same command again to resume in {args.out}.",
              file=sys.stderr)
        return 130
    out = Path(args.out)
    table = pooling_table(out / "results.csv", trial_weights(out))
    atomic_write_dataframe(out / "pooling_table.csv", table)
    text = ("# Training-free pooling: official score (%), kNN K = 1\n\n"
            + table.to_markdown(index=False, floatfmt=".1f") + "\n")
    atomic_write_text(out / "pooling_table.md", text)
    plot(table, out / "pooling_table.png")
    print(text)
    print(f"Pooling table written to {out} (pooling_table.csv, .md, .png).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
