"""Puts Shin & Lee's Tables II-VII beside this project's numbers.

Reads the paper's values (`paper_tables.yaml`), the study folders'
`configurations.csv` and the report's `table7.csv`, and writes one markdown
file with, per family, each configuration's proxy metric and AUCs (%) as
"paper / ours", and Table VII's rho the same way. Run by `make
exp-proxy-report` after `asd-keras proxy-report`.

Usage:
    python experiments/proxy_tasks/compare.py --study A B C --report R --out R/comparison.md
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from asd_keras.utils.io import atomic_write_text

HERE = Path(__file__).parent
ASD = [("lp_in_domain_auc", "in-domain LP %"), ("lp_out_domain_auc", "out-domain LP %"),
       ("md_auc", "MD %")]


def family_table(name, paper, ours, notes=None):
    """Markdown rows `configuration | metric: paper / ours ...` of one family;
    `notes` (configuration -> text, e.g. "random weights") is shown beside
    the configuration's name."""
    proxy = paper["proxy"]
    scale = float(paper["ours_factor"])
    records = []
    for i, (configuration, values) in enumerate(paper["rows"].items()):
        row = ours[ours["configuration"] == configuration]
        mine = row.iloc[0] if len(row) else None

        def pair(paper_value, column, factor):
            if mine is None or column not in mine or pd.isna(mine[column]):
                return f"{paper_value} / n/a"
            return f"{paper_value} / {mine[column] / factor:.4g}"

        note = (notes or {}).get(configuration)
        record = {"configuration": f"{configuration} ({note})" if note else configuration,
                  f"{proxy} (paper / ours)": pair(values[0], proxy, scale)}
        if "alignment" in paper:
            record["alignment (paper / ours)"] = pair(paper["alignment"][i], "alignment", 1.0)
        for (column, label), value in zip(ASD, values[1:]):
            record[f"{label} (paper / ours)"] = pair(value, column, 0.01)
        records.append(record)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", nargs="+", required=True, help="study folders")
    parser.add_argument("--report", required=True, help="proxy-report folder (table7.csv)")
    parser.add_argument("--paper", default=str(HERE / "paper_tables.yaml"))
    parser.add_argument("--out", required=True, help="markdown file to write")
    args = parser.parse_args(argv)
    paper = yaml.safe_load(Path(args.paper).read_text())
    parts = ["# Shin & Lee's tables beside this project's\n",
             "Each cell is `paper / ours`. AUCs in %; the paper's MAE is x 1e-3 on its "
             "normalised log-mel, ours in dB (only ranks compare).\n"]
    for folder in map(Path, args.study):
        study = json.loads((folder / "study.json").read_text())
        ours = pd.read_csv(folder / "configurations.csv")
        rows = pd.read_csv(folder / "rows.csv")
        # Pretrained encoders without converted checkpoints: random weights.
        notes = ({} if "weights" not in rows else
                 rows.dropna(subset=["weights"]).groupby("configuration")["weights"]
                 .agg(lambda v: "random weights" if (v == "random weights").any()
                      else "").to_dict())
        for family in study["families"]:
            if family["name"] not in paper["families"]:
                continue
            parts.append(f"## {family['label']} (`{family['name']}`)\n")
            parts.append(family_table(family["name"], paper["families"][family["name"]],
                                      ours[ours["family"] == family["name"]],
                                      notes) + "\n")
    table7 = pd.read_csv(Path(args.report) / "table7.csv")
    records = []
    for name, cells in paper["table7"].items():
        part = table7[table7["family"] == name].set_index("asd_metric")
        record = {"family": name}
        for (column, label), cell in zip(ASD, cells):
            if column in part.index and pd.notna(part.loc[column, "rho"]):
                mark = part.loc[column, "mark"] if isinstance(part.loc[column, "mark"],
                                                              str) else ""
                ours = f"{part.loc[column, 'rho']:.2f}{mark}"
            else:
                ours = "n/a"
            record[f"{label.replace(' %', '')} rho (paper / ours)"] = f"{cell} / {ours}"
        records.append(record)
    parts.append("## Table VII: Spearman's rho\n")
    parts.append(pd.DataFrame(records).to_markdown(index=False, disable_numparse=True) + "\n")
    atomic_write_text(args.out, "\n".join(parts))
    print(f"Comparison written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
