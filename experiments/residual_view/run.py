"""Residual View and PRPS (Kim et al., DCASE 2026): Tables 2-3, Figures 1-2.

1. The conditions of `config.yaml` through the study runner (`asd-keras
   study`, models kept): the MAHALA baseline (the dense AE, near channel)
   and, for every encoder, the `residual_view` system near-only (alpha 0),
   with Residual View (alpha, 0.5) and with Residual View + PRPS. They give
   `table2.*` (AUC source, AUC target, pAUC, official score), `table3.*`
   (the same per machine type for `reference_encoder`) and `figure2.*`
   (the three views per encoder, last layer).
2. Figure 1: every encoder's features of every layer, computed once (the
   frozen encoders' embeddings come from the cache the study filled; the
   Wilkinghoff network is the study's trained one), scored by the
   `residual_knn` backend for each alpha of `alphas`, one bank per section:
   `figure1.csv` / `.png`. The alpha with the best official score over all
   machine types at the last layer is chosen globally (never per machine
   type, as the report). The Residual View at the last layer and the
   configured alpha must equal the study's; `checks.md` records it.
3. `variants.*`, at the last layer: Residual View + PRPS keeping the
   report's share of the training clips as prototypes (`prototype_share`,
   128 of about 1000 clips: with fewer than 128 clips per section PRPS keeps
   them all), and with GenRep's per-domain z-score of the test clips' own
   distances (a labelled comparison; the report and the system do not use
   test statistics).

`--tables-only` recomputes steps 2-3 and the tables from a finished study.

Usage:
    python experiments/residual_view/run.py --data DEV --out experiments/residual_view/results \\
        [--preset-dir PRESETS] [--frozen clip_seconds=1.0 num_frames=112] [--force]
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from asd_keras.config import read_yaml_mapping
from asd_keras.config import parse_overrides
from asd_keras.runs import read_tables
from asd_keras.runners.study import run_study
from asd_keras.runners.study import trial_weights
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.visualisation.plots import pyplot
from asd_keras.visualisation.plots import save_figure

HERE = Path(__file__).parent
VIEWS = {"near": "near-only", "residual": "Residual View",
         "residual_prps": "Residual View + PRPS"}
BASELINE = "MAHALA baseline (dense AE)"
METRICS = {"AUC (source)": "AUC source", "AUC (target)": "AUC target",
           "pAUC (both)": "pAUC"}
# The report's development-set results (Table 2; SSLAM, last layer).
REPORT_TABLE2 = pd.DataFrame([
    {"system": BASELINE, "report system": "Baseline (MAHALA)", "AUC source": 66.46,
     "AUC target": 54.24, "pAUC": 53.91, "official score": 57.66},
    {"system": "Residual View", "report system": "System 3 (SSLAM)", "AUC source": 67.21,
     "AUC target": 64.40, "pAUC": 56.61, "official score": 62.41},
    {"system": "Residual View + PRPS", "report system": "System 1 (SSLAM)",
     "AUC source": 70.34, "AUC target": 68.14, "pAUC": 57.80, "official score": 63.24},
])


def conditions(config, frozen, preset_dir):
    """The study's conditions: the baseline, then three views per encoder."""
    out = [{"name": "mahala", **config["baseline"]}]
    for encoder, keys in config["encoders"].items():
        keys = dict(keys)
        if keys.get("extractor", "frozen_encoder") == "frozen_encoder":
            keys.update(frozen)
            if preset_dir:
                keys["preset_dir"] = preset_dir
        for view, alpha, prps in (("near", 0.0, False),
                                  ("residual", config["alpha"], False),
                                  ("residual_prps", config["alpha"], True)):
            out.append({"name": f"{encoder}__{view}", "system": "residual_view",
                        "channel": "both", **keys, **config["residual"],
                        "alpha": float(alpha), "prps": prps})
    return out


def _label(condition, baseline=BASELINE):
    if condition == "mahala":
        return "", baseline
    encoder, view = condition.split("__")
    return encoder, VIEWS[view]


def table2(results, weights, baseline=BASELINE):
    """One row per condition: AUC source/target, pAUC, official score (%)."""
    frame = pd.read_csv(results)
    notes = dict(zip(weights["condition"], weights["weights"]))
    rows = []
    for record in frame.to_dict("records"):
        encoder, system = _label(record["condition"], baseline)
        row = {"encoder": encoder, "weights": notes.get(record["condition"], ""),
               "system": system}
        for column, name in METRICS.items():
            row[name] = 100 * record[f"{column} mean"]
        row["official score"] = 100 * record["official_score mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def table3(out, reference, baseline=BASELINE):
    """Per machine type (and the harmonic means over them) for the baseline
    and the reference encoder's three views: one row per machine type and
    metric, one column per system (%)."""
    from scipy import stats

    names = {"mahala": baseline, **{f"{reference}__{v}": label for v, label in VIEWS.items()}}
    columns = {}
    for condition, label in names.items():
        path = out / "trials" / condition / "trial0" / "per_section.csv"
        if not path.is_file():
            raise FileNotFoundError(f"No per-section results in '{path}'; is "
                                    f"reference_encoder={reference!r} one of the encoders?")
        part = pd.read_csv(path, dtype={"section": str}).set_index("machine_type")
        values = {}
        for machine, row in part.iterrows():
            for column, name in METRICS.items():
                values[(machine, name)] = 100 * row[column]
            values[(machine, "official score")] = 100 * stats.hmean(
                [row[c] for c in METRICS])
        for name in METRICS.values():
            values[("All (hmean)", name)] = stats.hmean(
                [v for (m, n), v in values.items() if n == name and m != "All (hmean)"])
        pooled = [v for (m, n), v in values.items() if m != "All (hmean)" and n != "official score"]
        values[("All (hmean)", "official score")] = stats.hmean(pooled)
        columns[label] = values
    frame = pd.DataFrame(columns)
    frame.index.names = ["machine type", "metric"]
    return frame.reset_index()


def _features(out, encoder):
    """The study's Residual View run of `encoder`, and its extractor giving
    every layer (frozen encoders) or its one feature set."""
    from asd_keras.extractors.base import get_extractor
    from asd_keras.systems import get_system

    trial = out / "trials" / f"{encoder}__residual" / "trial0"
    record = yaml.safe_load((trial / "config.yaml").read_text())
    system = get_system(record["system"]).load(trial / "run", record["params"])
    extractor = system.extractor_for()  # extractor_grouping "all"
    if extractor.name == "frozen_encoder":
        layers = list(range(extractor.num_layers + 1))
        extractor = get_extractor("frozen_encoder", **{**extractor.get_config(),
                                                       "layer": layers})
    return system, extractor


def section_scores(backend_config, features, train, test, transductive=False,
                   prototype_share=None):
    """Test scores with one `residual_knn` backend per section
    (`prototype_share`: PRPS keeps that share of each section's training
    clips instead of `prototypes`)."""
    import math

    from asd_keras.backends import get_backend

    scores = np.zeros(len(test))
    keys = train["machine_type"] + "_" + train["section"]
    test_keys = test["machine_type"] + "_" + test["section"]
    for key in sorted(test_keys.unique()):
        rows = (keys == key).to_numpy()
        config = dict(backend_config)
        if prototype_share is not None:
            config["prototypes"] = max(1, math.ceil(prototype_share * rows.sum()))
        backend = get_backend("residual_knn", **config).fit(
            features["train"][rows], train[rows][["domain"]].reset_index(drop=True))
        where = (test_keys == key).to_numpy()
        scores[where] = (backend.transductive_scores(features["test"][where]) if transductive
                         else backend.score(features["test"][where]))
    return scores


def official_metrics(test, scores):
    from asd_keras.evaluation.metrics import evaluate

    scored = test.assign(score=scores)
    per_unit, official = evaluate(scored, scored["layout"].iloc[0])
    from scipy import stats
    return {"AUC source": 100 * stats.hmean(per_unit["AUC (source)"]),
            "AUC target": 100 * stats.hmean(per_unit["AUC (target)"]),
            "pAUC": 100 * stats.hmean(per_unit["pAUC"]), "official score": 100 * official}


def sweep(out, table, config):
    """Figure 1 (every layer x alpha) and, at the last layer, the variants:
    PRPS keeping the report's share of the clips, and the transductive
    domain z-score."""
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    rows, variants = [], []
    for encoder in config["encoders"]:
        system, extractor = _features(out, encoder)
        logging.info("Figure 1: %s, %d alpha values.", encoder, len(config["alphas"]))
        sets = {"train": extractor.transform(train), "test": extractor.transform(test)}
        names = list(sets["train"])
        for name in names:
            layer = int(name.split("_")[1]) if name.startswith("layer_") else 0
            features = {part: sets[part][name] for part in sets}
            for alpha in config["alphas"]:
                backend = {**system.backend_config, "alpha": float(alpha), "prps": False}
                scores = section_scores(backend, features, train, test)
                rows.append({"encoder": encoder, "layer": layer, "last": name == names[-1],
                             "alpha": float(alpha), **official_metrics(test, scores)})
            if name != names[-1]:
                continue
            backend = {**system.backend_config, "alpha": float(config["alpha"]),
                       "prps": True, "seed": int(config["seed"])}
            share = float(config["prototype_share"])
            scores = section_scores(backend, features, train, test, prototype_share=share)
            variants.append({"encoder": encoder, "system": "Residual View + PRPS, "
                             f"prototypes {share:.1%} of the clips",
                             **official_metrics(test, scores)})
            scores = section_scores(backend, features, train, test, transductive=True)
            variants.append({"encoder": encoder, "system": "Residual View + PRPS, "
                             "transductive domain z-score (test statistics)",
                             **official_metrics(test, scores)})
    return pd.DataFrame(rows), pd.DataFrame(variants)


def choices(figure1, config):
    """The globally selected alpha per encoder (last layer) and the check
    against the study's Residual View."""
    rows = []
    for encoder, part in figure1[figure1["last"]].groupby("encoder", sort=False):
        best = part.loc[part["official score"].idxmax()]
        near = part[part["alpha"] == 0.0]["official score"].iloc[0]
        rows.append({"encoder": encoder, "selected alpha": best["alpha"],
                     "official score at it": best["official score"],
                     "near-only (alpha 0)": near})
    return pd.DataFrame(rows)


def check(figure1, table, config):
    """The sweep's Residual View (last layer, configured alpha) against the
    study's: the same features, banks and metric must give the same score."""
    lines = []
    for encoder in config["encoders"]:
        part = figure1[(figure1["encoder"] == encoder) & figure1["last"]
                       & np.isclose(figure1["alpha"], config["alpha"])]
        study = table[(table["encoder"] == encoder)
                      & (table["system"] == VIEWS["residual"])]["official score"]
        diff = abs(float(part["official score"].iloc[0]) - float(study.iloc[0]))
        lines.append(f"| {encoder} | {float(study.iloc[0]):.4f} | "
                     f"{float(part['official score'].iloc[0]):.4f} | {diff:.2e} |")
    return ("# Consistency check\n\nResidual View (last layer, alpha "
            f"{config['alpha']}): the study's run against the Figure 1 sweep.\n\n"
            "| encoder | study | sweep | difference |\n|---|---|---|---|\n"
            + "\n".join(lines) + "\n")


def plot_figure1(figure1, path):
    plt = pyplot()

    encoders = list(dict.fromkeys(figure1["encoder"]))
    fig, axes = plt.subplots(1, len(encoders), figsize=(4.2 * len(encoders), 4.4),
                             squeeze=False)
    for ax, encoder in zip(axes[0], encoders):
        part = figure1[figure1["encoder"] == encoder]
        grid = part.pivot_table(index="alpha", columns="layer", values="official score")
        image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", origin="lower")
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]),
                      [f"{a:g}" + (" (near-only)" if a == 0 else "") for a in grid.index],
                      fontsize=7)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6, color="w")
        ax.set_xlabel("layer" if grid.shape[1] > 1 else "clip embedding")
        ax.set_ylabel("alpha")
        ax.set_title(encoder)
        fig.colorbar(image, ax=ax, shrink=0.8, label="official score (%)")
    fig.suptitle("Figure 1: official score per layer, near-only (alpha 0) and Residual "
                 "View", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_figure2(table, path, baseline=BASELINE):
    plt = pyplot()

    part = table[table["encoder"] != ""]
    encoders = list(dict.fromkeys(part["encoder"]))
    x = np.arange(len(encoders))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(encoders)), 4))
    for i, view in enumerate(VIEWS.values()):
        values = [part[(part["encoder"] == e) & (part["system"] == view)]["official score"]
                  .iloc[0] for e in encoders]
        ax.bar(x + (i - 1) * 0.27, values, width=0.27, label=view)
    reference = table[table["system"] == baseline]["official score"]
    if len(reference):
        ax.axhline(float(reference.iloc[0]), color="k", lw=1, ls="--", label=baseline)
    labels = [f"{e}\n({w})" if w else e for e, w in
              part.drop_duplicates("encoder")[["encoder", "weights"]].itertuples(index=False)]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("official score (%)")
    low = float(part["official score"].min())
    ax.set_ylim(max(0, low - 10), 100)
    ax.legend(fontsize=7)
    ax.set_title("Figure 2: near-only, Residual View and + PRPS, last layer")
    fig.tight_layout()
    save_figure(fig, path)


def _markdown(frame, title):
    return f"# {title}\n\n" + frame.to_markdown(index=False, floatfmt=".2f") + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="labelled two-channel "
                        "dev data folder(s) (DCASE 2026 layout)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--preset-dir", help="folder of converted presets (beats_iter3, "
                        "eat_base); without it the encoders have random weights")
    parser.add_argument("--frozen", nargs="*", default=[], metavar="key=value",
                        help="settings of the frozen-encoder conditions only")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--tables-only", action="store_true",
                        help="recompute the tables and figures from the finished study "
                        "in --out (e.g. after changing alphas), without training")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of every residual_view condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    out = Path(args.out)
    try:
        config = read_yaml_mapping(args.config, "Experiment config", "Fix the file")
        config["residual"] = {**config["residual"], **parse_overrides(args.overrides)}
        specs = conditions(config, parse_overrides(args.frozen), args.preset_dir)
        if not args.tables_only:
            run_study(specs, {"seed": int(config["seed"])}, args.data, out, trials=1,
                      force=args.force, keep_models=True)
        elif not (out / "results.csv").is_file():
            raise FileNotFoundError(f"No finished study in '{out}' (results.csv) for "
                                    "--tables-only; run without it first.")
        baseline = config.get("baseline_label", BASELINE)
        table = table2(out / "results.csv", trial_weights(out), baseline)
        figure1, variants = sweep(out, read_tables(args.data), config)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"Interrupted; run the same command again to resume in {out}.",
              file=sys.stderr)
        return 130
    selected = choices(figure1, config)
    reference = table3(out, config["reference_encoder"], baseline)
    outputs = {
        "table2": (table, "Table 2: development-set results (%)"),
        "table3": (reference, f"Table 3: per machine type (%), {config['reference_encoder']}"),
        "figure2": (table[table["encoder"] != ""][["encoder", "weights", "system",
                                                  "official score"]],
                    "Figure 2: official score (%), last layer"),
        "alpha": (selected, "Residual coefficient selected globally (last layer)"),
        "variants": (variants, "Variants at the last layer: PRPS keeping the report's "
                     "share of the clips; the transductive domain z-score (uses test "
                     "statistics; not the report's system)"),
        "report_table2": (REPORT_TABLE2, "The report's Table 2 (development set, SSLAM)"),
    }
    for name, (frame, title) in outputs.items():
        atomic_write_dataframe(out / f"{name}.csv", frame)
        atomic_write_text(out / f"{name}.md", _markdown(frame, title))
    atomic_write_dataframe(out / "figure1.csv", figure1)
    atomic_write_text(out / "checks.md", check(figure1, table, config))
    plot_figure1(figure1, out / "figure1.png")
    plot_figure2(table, out / "figure2.png", baseline)
    print(_markdown(table, "Table 2 (%)"))
    print(_markdown(selected, "Selected alpha"))
    print(check(figure1, table, config))
    print(f"Tables and figures written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
