"""The representation probe of Shin & Lee's proxy-task study (paper §IV-B).

For a trained system's per-clip features (`system.features(table)`):

- **LP in-domain**: per section, a linear probe trained on half of the
  section's labelled test clips (stratified) and tested on the other half;
- **LP out-domain**: leave one section of the machine type out, train on the
  others' labelled test clips, test on it;
- **global MD**: per machine type, one mean and covariance over all its
  normal training clips (no domain labels), scored on the test clips.

The linear probe reads test labels, so this is an evaluation protocol of a
representation, never a detector: it writes AUC tables, no submission file.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.backends import get_backend
from asd_keras.backends.linear_probe import in_domain_probe
from asd_keras.backends.linear_probe import out_domain_probe
from asd_keras.data.layouts import require_split
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.metrics import auc
from asd_keras.runs import labelled_test
from asd_keras.runs import load_run
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.utils.runs import set_seed
from asd_keras.utils.runs import write_run_record

COLUMNS = ["machine_type", "section", "n_test", "lp_in_domain_auc", "lp_out_domain_auc",
           "md_auc"]


def probe(system, table, seed=0, verbose=0):
    """LP (in- and out-domain) and global-MD AUCs per section.

    Args:
        system: a trained system with `features(table)`.
        table: dataset table with training clips and labelled test clips.
        seed: int. Seed of the probes' splits and training.
        verbose: int.

    Returns:
        DataFrame with `COLUMNS`, one row per machine type and section.
    """
    train = require_split(table, "train").reset_index(drop=True)
    test = labelled_test(require_split(table, "test"), "The probe")
    train_features = system.features(train, verbose=verbose)
    test_features = system.features(test, verbose=verbose)
    rows = []
    for machine_type in sorted(test["machine_type"].unique()):
        t = (test["machine_type"] == machine_type).to_numpy()
        r = (train["machine_type"] == machine_type).to_numpy()
        meta = test.loc[t, ["section", "domain", "label"]].reset_index(drop=True)
        meta["section"] = meta["section"].astype(str)
        md = get_backend("mahalanobis").fit(train_features[r]).score(test_features[t])
        in_domain = in_domain_probe(test_features[t], meta, seed=seed).set_index("section")
        sections = sorted(meta["section"].unique())
        out_domain = (out_domain_probe(test_features[t], meta, seed=seed).set_index("section")
                      if len(sections) > 1 else None)
        for section in sections:
            s = (meta["section"] == section).to_numpy()
            rows.append({
                "machine_type": machine_type, "section": section, "n_test": int(s.sum()),
                "lp_in_domain_auc": float(in_domain.loc[section, "auc"]),
                "lp_out_domain_auc": (np.nan if out_domain is None
                                      else float(out_domain.loc[section, "auc"])),
                "md_auc": auc(meta["label"].to_numpy()[s], md[s],
                              what=f"MD AUC of {machine_type} section {section}"),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(per_section):
    """Mean AUCs over all sections (NaN-aware), one row."""
    values = per_section[COLUMNS[3:]].mean(skipna=True)
    return pd.DataFrame([{"machine_type": "mean", "section": "", "n_test":
                          int(per_section["n_test"].sum()), **values.to_dict()}],
                        columns=COLUMNS)


def probe_run(run, data, out, layout=None, seed=0, force=False):
    """Linear-probe and global-Mahalanobis AUCs of a run's features per
    section (`asd_keras.runners.probe`), written to `out` as CSV and
    markdown. It uses test labels, so it is an evaluation of the
    representation, not a detector.

    Returns:
        DataFrame of the per-section rows and their summary rows.
    """
    system, record = load_run(run)
    table = read_dataset(data, layout=layout)
    seed_used = set_seed(seed, False)
    per_section = probe(system, table, seed=seed)
    result = pd.concat([per_section, summary(per_section)], ignore_index=True)
    with staged_dir(out, force=force, what="probe folder") as stage:
        atomic_write_dataframe(stage / "probe.csv", result)
        atomic_write_text(stage / "probe.md", result.to_markdown(index=False, floatfmt=".4f"))
        write_run_record(stage, {"run": str(Path(run).resolve()), "system": record["system"],
                                 "data": str(Path(data).resolve())}, seed_used)
    return result
