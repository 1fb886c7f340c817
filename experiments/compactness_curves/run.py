"""Figures 2-3 of Wilkinghoff & Kurth: training loss and the mean intra- and
inter-class compactness losses after every epoch.

Fig. 2: sub-cluster AdaCos with one sub-cluster per class, with mixup.
Fig. 3: AdaCos without mixup. The values come from the library's
`CompactnessMonitor` callback (asd_keras.extractors.compactness_monitor).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from asd_keras.config import parse_overrides
from asd_keras.runs import fit_run
from asd_keras.runs import read_tables
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir

CONDITIONS = {
    "Fig. 2: sub-cluster AdaCos (1 sub-cluster), mixup": {
        "loss": "sc_adacos", "num_subclusters": 1},
    "Fig. 3: AdaCos, no mixup": {"loss": "adacos", "mixup_probability": 0.0},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    base = {"clip_seconds": 4.0, "classes": "attribute", "epochs": args.epochs,
            "monitor_compactness": True, "monitor_clips": 256, "seed": 7, **parse_overrides(args.overrides)}
    table = read_tables(args.data)
    from asd_keras.visualisation.plots import plot_training_curves

    with staged_dir(args.out, force=args.force, what="results folder") as stage:
        histories = {}
        for number, (title, overrides) in enumerate(CONDITIONS.items(), start=2):
            system = get_system("wilkinghoff")({**base, **overrides})
            run = stage / f"fig{number}"
            fit_run(system, table, run, {"figure": title}, verbose=2)
            histories[title] = pd.read_csv(run / "history" / "member0_all.csv").astype(
                {"epoch": int})
            frame = histories[title].assign(figure=title)
            atomic_write_dataframe(stage / f"fig{number}_history.csv", frame)
        plot_training_curves(histories, stage / "compactness_curves.png")
        text = "\n\n".join(f"### {t}\n\n" + h.astype({"epoch": str}).to_markdown(
                                index=False, floatfmt=".4f")
                           for t, h in histories.items())
        atomic_write_text(stage / "results.md", text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
