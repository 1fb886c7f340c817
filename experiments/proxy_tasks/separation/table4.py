"""Writes Shin & Lee's Table IV from a separation study folder.

Reads `configurations.csv` of the study (`run.py --config
separation/config.yaml`) and writes `table4.csv` and `table4.md`: per
configuration (N conformer blocks, C channels) the SI-SDRi at -5, 0 and 5
dB and their mean, and the in-domain LP, out-domain LP and MD AUCs (%),
each beside the paper's value; below, Spearman's rho of the mean SI-SDRi
with each AUC over the configurations, with its exact p-value (the paper's
Table VII row, §V-E).

Usage:
    python experiments/proxy_tasks/separation/table4.py --study STUDY --out FOLDER [--force]
"""

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from asd_keras.evaluation.proxy import significance_mark
from asd_keras.evaluation.proxy import spearman_exact
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text

HERE = Path(__file__).parent
ASD = [("lp_in_domain_auc", "in-domain LP %"), ("lp_out_domain_auc", "out-domain LP %"),
       ("md_auc", "MD %")]
SNRS = [("si_sdri_m5db", "SI-SDRi -5 dB"), ("si_sdri_0db", "SI-SDRi 0 dB"),
        ("si_sdri_5db", "SI-SDRi 5 dB")]


def table4(configurations, paper_rows):
    """The Table IV frame: ours beside the paper's, in the study's order."""
    records = []
    for row in configurations.itertuples(index=False):
        paper = paper_rows.get(row.configuration)
        record = {"configuration": row.configuration}
        for column, label in SNRS:
            record[f"{label} (dB)"] = getattr(row, column)
        record["SI-SDRi (dB)"] = row.si_sdri
        record["SI-SDRi paper (dB)"] = paper[0] if paper else float("nan")
        for i, (column, label) in enumerate(ASD):
            record[label] = 100 * getattr(row, column)
            record[f"{label} paper"] = paper[i + 1] if paper else float("nan")
        records.append(record)
    return pd.DataFrame(records)


def correlations(configurations):
    """Spearman's rho (exact p) of the mean SI-SDRi with each ASD AUC."""
    records = []
    for column, label in ASD:
        rho, p = spearman_exact(configurations["si_sdri"], configurations[column])
        records.append({"asd_metric": label, "rho": rho, "p": p,
                        "mark": significance_mark(p), "n": len(configurations)})
    return pd.DataFrame(records)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="separation study folder")
    parser.add_argument("--out", required=True, help="folder for table4.csv/.md")
    parser.add_argument("--paper", default=str(HERE.parent / "paper_tables.yaml"))
    parser.add_argument("--force", action="store_true", help="overwrite table4.*")
    args = parser.parse_args(argv)
    study = Path(args.study)
    path = study / "configurations.csv"
    if not path.is_file():
        print(f"error: no configurations.csv in '{study}'; run the separation study "
              "first (make exp-proxy-separation).", file=sys.stderr)
        return 2
    configurations = pd.read_csv(path)
    configurations = configurations[configurations["family"] == "separation"]
    missing = [c for c in ["si_sdri"] + [c for c, _ in SNRS + ASD]
               if c not in configurations]
    if missing or configurations.empty:
        print(f"error: '{path}' holds no separation rows with {missing or 'values'}; is it "
              "a separation study?", file=sys.stderr)
        return 2
    paper = yaml.safe_load(Path(args.paper).read_text())["families"]["separation"]["rows"]
    table = table4(configurations, paper)
    out = Path(args.out)
    if (out / "table4.csv").exists() and not args.force:
        print(f"error: '{out / 'table4.csv'}' exists; pass --force to overwrite it.",
              file=sys.stderr)
        return 2
    atomic_write_dataframe(out / "table4.csv", table)
    parts = ["# Table IV: source separation (ours beside the paper's)\n",
             table.to_markdown(index=False, floatfmt=".2f") + "\n"]
    if len(configurations) >= 3:
        rho = correlations(configurations)
        atomic_write_dataframe(out / "table4_spearman.csv", rho)
        parts += ["## Spearman's rho of the mean SI-SDRi with each AUC (exact p)\n",
                  rho.to_markdown(index=False, floatfmt=".4g") + "\n",
                  "Paper (Table VII): 0.98*** in-domain LP, 0.95** out-domain LP, "
                  "0.95*** MD.\n"]
    atomic_write_text(out / "table4.md", "\n".join(parts))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
