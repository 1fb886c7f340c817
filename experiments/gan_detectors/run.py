"""Tables 6-7 and Figure 6 of de Oliveira Neto et al.: the DCASE dense AE
baseline, EGBAD, GANomaly and Skip-GANomaly, one model per machine type, on
DCASE 2020 layout data; AUC and pAUC per machine type and their
test-size-weighted average and standard deviation."""

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from asd_keras.config import load_config_file
from asd_keras.config import parse_overrides
from asd_keras.runners.comparison import markdown_table6
from asd_keras.runners.comparison import per_machine_metrics
from asd_keras.runners.comparison import run_comparison
from asd_keras.runners.comparison import selection_note
from asd_keras.runners.comparison import table6
from asd_keras.runners.comparison import table7
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.visualisation.plots import plot_detector_bars

HERE = Path(__file__).parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="DCASE 2020 dev data folder(s)")
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--selection", action="append", default=[],
                        metavar="CONDITION=SEARCH_DIR",
                        help="use the per-machine choice of an 'asd-keras search' folder "
                             "(repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain finished conditions")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every condition")
    args = parser.parse_args(argv)
    # `--data DIR key=value`: nargs="+" also takes the overrides.
    args.overrides += [d for d in args.data if "=" in d and not Path(d).exists()]
    args.data = [d for d in args.data if d not in args.overrides]
    conditions = load_config_file(args.config)["conditions"]
    overrides = parse_overrides(args.overrides)
    notes = {c["name"]: "fixed hyper-parameters of the config; no selection on test data"
             for c in conditions}
    by_name = {c["name"]: c for c in conditions}
    report_clips, scope = None, "all test clips"
    for item in args.selection:
        name, _, folder = item.partition("=")
        if name not in by_name or not folder:
            raise SystemExit(f"--selection {item!r}: use CONDITION=SEARCH_DIR with a "
                             f"condition of {sorted(by_name)}.")
        best = yaml.safe_load((Path(folder) / "best_config.yaml").read_text())
        by_name[name]["machine_overrides"] = best["machine_overrides"]
        notes[name] = selection_note(folder)
        held_out = Path(folder) / "report_clips.csv"
        if held_out.is_file():  # holdout protocol: report on the unseen half only
            clips = pd.read_csv(held_out, dtype={"section": str})
            if report_clips is not None and not clips.equals(report_clips):
                raise SystemExit("The --selection searches held out different test clips; "
                                 "run them with the same --seed on the same data.")
            report_clips = clips
            scope = (f"the {len(clips)} test clips that the holdout searches did not use "
                     "for selection")
    conditions = [{**c, **overrides} for c in conditions]
    scores = run_comparison(conditions, args.data, args.out, force=args.force)
    per_machine = per_machine_metrics(scores, report_clips)
    out = Path(args.out)
    t7, t6 = table7(per_machine), table6(per_machine)
    atomic_write_dataframe(out / "per_machine.csv", per_machine)
    atomic_write_dataframe(out / "table7.csv", t7)
    atomic_write_dataframe(out / "table6.csv", t6)
    plot_detector_bars(per_machine, t6, out / "figure6.png")
    lines = ["# GAN detectors vs the DCASE baseline", "",
             f"Data: {', '.join(args.data)}. Command: `python experiments/gan_detectors/run.py "
             f"{' '.join(sys.argv[1:] if argv is None else argv)}` (see the README). Every "
             f"condition is evaluated on {scope}.", "",
             "## Table 7: AUC / pAUC per machine type (%)", "",
             t7.to_markdown(index=False, floatfmt=".2f"), "",
             "## Table 6: test-size-weighted average ± std over machine types", "",
             markdown_table6(t6), "", "## How each condition's hyper-parameters were chosen",
             ""]
    lines += [f"- **{name}**: {note}" for name, note in notes.items()]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"Tables and figure6.png written to '{out}'.")


if __name__ == "__main__":
    main()
