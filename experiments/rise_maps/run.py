"""Fig. 4 of Wilkinghoff & Kurth: RISE importance maps of a spectrogram-only
model trained with sub-cluster AdaCos on machine type + section + attribute
classes, next to one trained with an IC compactness loss and no auxiliary
classes, for an anomalous gearbox clip and a normal valve clip."""

import argparse
import sys
from pathlib import Path

import numpy as np

from asd_keras.config import parse_overrides
from asd_keras.evaluation.rise import importance_map
from asd_keras.runs import fit_run
from asd_keras.runs import read_tables
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.visualisation.plots import plot_importance

MODELS = {
    "sub-cluster AdaCos, attribute classes": {"loss": "sc_adacos", "classes": "attribute"},
    "IC compactness, one class": {"loss": "compactness", "classes": "one"},
}
CLIPS = (("gearbox", 1), ("valve", 0))  # (machine type, label)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--masks", type=int, default=4000)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    base = {"clip_seconds": 4.0, "branches": "spectrogram", "epochs": args.epochs,
            "monitor_compactness": False, "seed": 11, **parse_overrides(args.overrides)}
    table = read_tables(args.data)
    test = table[(table["split"] == "test") & (table["section"] == table["section"].min())]
    picks = []
    for machine_type, label in CLIPS:
        rows = test[(test["machine_type"] == machine_type) & (test["label"] == label)]
        if rows.empty:
            raise SystemExit(f"No {machine_type} test clip with label {label} in {args.data}.")
        picks.append(rows.iloc[0])
    with staged_dir(args.out, force=args.force, what="results folder") as stage:
        systems = {}
        for number, (name, overrides) in enumerate(MODELS.items()):
            system = get_system("wilkinghoff")({**base, **overrides})
            run = stage / f"model{number}"
            fit_run(system, table, run, {"model": name}, verbose=2)
            systems[name] = system
        rows, lines = [], []
        for clip in picks:
            maps, spectrogram = {}, None
            for index, (name, system) in enumerate(systems.items()):
                where = {"machine_type": clip["machine_type"], "section": clip["section"]}
                spectrogram_fn, embed_fn = system.extractor_for(**where).spectrogram_functions()
                backend = system.backend_for(**where)

                def score_fn(spectrograms, backend=backend, embed_fn=embed_fn):
                    return backend.score(embed_fn(spectrograms))

                spectrogram = spectrogram_fn(clip["path"])
                maps[name] = importance_map(score_fn, spectrogram, num_masks=args.masks,
                                            batch_size=64, seed=3)
                np.save(stage / f"{clip['machine_type']}_model{index}_map.npy", maps[name])
                lines.append(f"| {clip['file_name']} | {name} | {args.masks} | "
                             f"{float(score_fn(spectrogram[None])[0]):.4f} |")
            title = f"{clip['machine_type']} {'anomalous' if clip['label'] else 'normal'}"
            rows.append((title, spectrogram, maps))
        plot_importance(rows, stage / "rise_maps.png")
        text = ("| clip | model | masks | score of the unmasked clip |\n"
                "|---|---|---|---|\n" + "\n".join(lines))
        atomic_write_text(stage / "results.md", text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
