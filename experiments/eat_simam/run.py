"""Enhanced-feature EAT (Zhong et al., DCASE 2024): filter-bank and SimAM ablations.

1. The conditions of `config.yaml` through the study runner (models kept):
   the `eat_simam` system with the Kaldi mel bank (o-FB), the evenly spaced
   linear bank (m-FB) and the gammatone bank (g-FB), all without SimAM, and
   m-FB with global and with local SimAM.
2. "Customised" SimAM: per machine type, the test scores of the global or
   the local run as `customised` says (the paper chooses the mode per
   machine type from prior knowledge), evaluated like any run.
3. Tables (CSV + markdown, %): `filter_banks` (o/m/g-FB), `simam` (none,
   global, local, customised), `per_machine` (official score per machine
   type of every condition), `scoring` (the `main` run's embeddings scored
   without domain normalisation, with the default local density, and with
   GenRep's transductive z-score, labelled), `parameters` (the paper's
   90 M against EAT-base and the CPU network).
4. `simam_maps.png`: the m-FB filter banks of a normal and an anomalous
   test clip of `map_machine` and the weights `sigmoid(E_inv)` that global
   and local SimAM put on them (output / input, from the trained networks'
   own front ends).

`--tables-only` recomputes steps 2-4 from a finished study.

Usage:
    python experiments/eat_simam/run.py --data DEV --out experiments/eat_simam/results \\
        [--full] [--preset-dir PRESETS] [--force] [key=value ...]
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
LABELS = {"o_fb": "o-FB (Kaldi mel)", "m_fb": "m-FB (linear)", "g_fb": "g-FB (gammatone)",
          "m_fb_global": "m-FB + global SimAM", "m_fb_local": "m-FB + local SimAM",
          "customised": "m-FB + customised SimAM"}
METRICS = {"AUC (source)": "AUC source", "AUC (target)": "AUC target",
           "pAUC (both)": "pAUC"}
# The paper's published figure (abstract; methods.md §G). Its ablation numbers
# are not in any accessible source.
PAPER_SCORE = 66.40


def conditions(config, full, preset_dir, overrides):
    """The study's conditions with the base (and FULL) keys folded in."""
    base = {**config["base"], **(config["full"] if full else {}), **overrides}
    if preset_dir:
        from asd_keras.models.audio_encoders import PRESETS

        if PRESETS.get(base["preset"], {}).get("checkpoint", "") is None:
            raise ValueError(
                f"--preset-dir gives pre-trained weights, but preset={base['preset']!r} is a "
                "CPU-sized configuration with no official checkpoint; add --full (FULL=1: "
                "eat_base) or set preset=eat_base.")
        folder = Path(preset_dir) / str(base["preset"])
        if not folder.is_dir():
            raise FileNotFoundError(
                f"--preset-dir '{preset_dir}' has no preset '{base['preset']}'; convert "
                "the official EAT checkpoint with 'asd-keras convert --encoder eat "
                f"--checkpoint FILE --out {folder}', or drop --preset-dir.")
        base["preset"] = str(folder)
    return [{**base, **c} for c in config["conditions"]]


def _trial(out, name):
    return Path(out) / "trials" / name / "trial0"


def _scores(out, name):
    path = _trial(out, name) / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"No scores in '{path}'; run the study first.")
    return pd.read_csv(path, dtype={"section": str})


def _row(scores, layout):
    from asd_keras.evaluation.metrics import domain_metrics
    from asd_keras.evaluation.metrics import evaluate
    from asd_keras.evaluation.metrics import harmonic_means

    means = harmonic_means(domain_metrics(scores))
    _, official = evaluate(scores, layout)
    return {**{name: 100 * means[column] for column, name in METRICS.items()},
            "official score": 100 * official}


def customised_scores(out, modes):
    """Test scores of the global or the local run per machine type."""
    runs = {"global": _scores(out, "m_fb_global"), "local": _scores(out, "m_fb_local")}
    if set(modes.values()) - set(runs):
        raise ValueError(f"customised modes must be 'global' or 'local'; received {modes}.")
    parts = []
    for machine_type in sorted(runs["local"]["machine_type"].unique()):
        mode = modes.get(machine_type, modes["default"])
        frame = runs[mode]
        parts.append(frame[frame["machine_type"] == machine_type])
    return pd.concat(parts, ignore_index=True)


def tables(out, config, layout):
    """The filter-bank, SimAM and per-machine-type tables."""
    from asd_keras.evaluation.metrics import evaluate

    weights = dict(zip(*trial_weights(out)[["condition", "weights"]].to_numpy().T))
    scores = {c["name"]: _scores(out, c["name"]) for c in config["conditions"]}
    scores["customised"] = customised_scores(out, config["customised"])
    weights["customised"] = weights.get("m_fb_local", "")
    rows = {name: {"condition": LABELS.get(name, name), "weights": weights.get(name, ""),
                   **_row(frame, layout)} for name, frame in scores.items()}
    filter_banks = pd.DataFrame([rows[n] for n in ("o_fb", "m_fb", "g_fb")])
    simam = pd.DataFrame([rows[n] for n in ("m_fb", "m_fb_global", "m_fb_local",
                                            "customised")])
    simam["condition"] = simam["condition"].replace({LABELS["m_fb"]: "m-FB, no SimAM"})
    per_machine = {}
    for name, frame in scores.items():
        for machine_type, part in frame.groupby("machine_type"):
            _, official = evaluate(part, layout)
            per_machine.setdefault(machine_type, {"machine type": machine_type})[
                LABELS.get(name, name)] = 100 * official
    return filter_banks, simam, pd.DataFrame(list(per_machine.values()))


def scoring_variants(out, config, table):
    """The `main` run's embeddings under three domain normalisations."""
    from asd_keras.backends.knn import KNNBackend
    from asd_keras.backends.knn import transductive_domain_zscore
    from asd_keras.systems import get_system

    trial = _trial(out, config["main"])
    record = yaml.safe_load((trial / "config.yaml").read_text())
    system = get_system(record["system"]).load(trial / "run", record["params"])
    params = system.config
    features = system.features(table)
    keys = {"k": params["k"], "metric": params["metric"], "domains": "both"}
    variants = {"kNN, minimum over source and target banks (no normalisation)":
                ("none", False),
                "kNN + local density (default; training clips only)": ("ratio", False),
                "kNN + GenRep z-score of the TEST clips (transductive)": ("none", True)}
    layout = table["layout"].iloc[0]
    rows = []
    for label, (density, transductive) in variants.items():
        parts = []
        for (machine_type, section), rows_ in table.groupby(["machine_type", "section"]):
            train = rows_[rows_["split"] == "train"]
            test = rows_[rows_["split"] == "test"].copy()
            backend = KNNBackend(**keys, local_density=density,
                                 density_k=params["density_k"])
            backend.fit(features[train.index.to_numpy()],
                        train[["domain"]].reset_index(drop=True))
            values = features[test.index.to_numpy()]
            test["score"] = (transductive_domain_zscore(backend.domain_distances(values))
                             if transductive else backend.score(values))
            parts.append(test)
        rows.append({"scoring": label, **_row(pd.concat(parts), layout)})
    return pd.DataFrame(rows)


def parameters(config):
    """Trainable parameters of the network at EAT-base and at the CPU size."""
    import keras

    from asd_keras.models.audio_encoders import PRESETS
    from asd_keras.models.encoder_finetuning import eat_embedding_model

    rows = [{"network": "the paper (EAT-base + ASP + ArcFace)", "parameters (M)": 90.0,
             "source": "abstract"}]
    for preset in ("eat_base", config["base"]["preset"]):
        if preset not in PRESETS or any(r["network"].startswith(preset) for r in rows):
            continue
        model = eat_embedding_model(16000 * 10, PRESETS[preset]["config"], "linear",
                                    simam="local")
        count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        rows.append({"network": f"{preset} + ASP + embedding (ours, 10 s)",
                     "parameters (M)": count / 1e6, "source": "counted"})
        del model
        keras.backend.clear_session()
    return pd.DataFrame(rows)


def simam_maps(out, config, table, path):
    """Filter banks of a normal and an anomalous clip before/after SimAM."""
    from asd_keras.extractors.base import load_extractor

    machine = config["map_machine"]
    test = table[(table["split"] == "test") & (table["machine_type"] == machine)
                 & (table["domain"] == "source")]
    if test.empty or test["label"].nunique() < 2:
        raise ValueError(f"map_machine={machine!r} has no normal and anomalous source test "
                         "clips in the data; choose another machine type.")
    clips = [test[test["label"] == 0]["path"].iloc[0], test[test["label"] == 1]["path"].iloc[0]]
    maps = {}
    for mode in ("global", "local"):
        folder = _trial(out, f"m_fb_{mode}") / "run" / "members" / "member0" / "extractors"
        extractor = load_extractor(next(p for p in sorted(folder.iterdir()) if p.is_dir()))
        values = extractor.enhancement_maps(clips)
        # The clip's own frames (the rest is EAT's zero padding).
        frames = extractor.model.get_layer("fbank").frames_for(extractor.num_samples)
        fbank, enhanced = values["fbank"][:, :frames], values["enhanced"][:, :frames]
        maps.setdefault("m-FB input (normalised)", fbank)
        # SimAM's weight sigmoid(E_inv) = output / input; near-zero inputs
        # leave it undefined (blank).
        with np.errstate(divide="ignore", invalid="ignore"):
            maps[f"{mode} SimAM weight"] = np.where(np.abs(fbank) > 1e-3,
                                                    enhanced / fbank, np.nan)
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharex=True, sharey=True)
    for row, kind in enumerate(("normal", "anomalous")):
        for col, (title, values) in enumerate(maps.items()):
            ax = axes[row, col]
            weight = "weight" in title
            image = ax.imshow(values[row].T, origin="lower", aspect="auto",
                              cmap="viridis" if weight else "magma",
                              vmin=0.5 if weight else None, vmax=1.0 if weight else None)
            fig.colorbar(image, ax=ax, fraction=0.04)
            ax.set_title(f"{kind} {machine}: {title}", fontsize=9)
            ax.set_xlabel("frame (10 ms)")
            ax.set_ylabel("linear bin (20 Hz - 8 kHz)")
    fig.tight_layout()
    save_figure(fig, path)
    return [Path(c).name for c in clips]


def _markdown(frame, title):
    return f"# {title}\n\n" + frame.to_markdown(index=False, floatfmt=".2f") + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True,
                        help="labelled dev data folder(s) (DCASE 2023-2025 layout)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--full", action="store_true",
                        help="EAT-base at the paper's sizes (the config's `full` keys)")
    parser.add_argument("--preset-dir", help="folder holding converted EAT presets "
                        "(eat_base, ...); without it EAT starts from random weights")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--tables-only", action="store_true",
                        help="recompute the tables and maps from the finished study in --out")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of every condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    out = Path(args.out)
    try:
        config = read_yaml_mapping(args.config, "Experiment config", "Fix the file")
        specs = conditions(config, args.full, args.preset_dir,
                           parse_overrides(args.overrides))
        if not args.tables_only:
            run_study(specs, {"seed": int(config["seed"])}, args.data, out,
                      trials=int(config.get("trials", 1)), force=args.force,
                      keep_models=True)
        elif not (out / "results.csv").is_file():
            raise FileNotFoundError(f"No finished study in '{out}' (results.csv) for "
                                    "--tables-only; run without it first.")
        table = read_tables(args.data)
        layout = table["layout"].iloc[0]
        filter_banks, simam, per_machine = tables(out, config, layout)
        scoring = scoring_variants(out, config, table)
        clips = simam_maps(out, config, table, out / "simam_maps.png")
        params = parameters(config)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"Interrupted; run the same command again to resume in {out}.",
              file=sys.stderr)
        return 130
    outputs = {
        "filter_banks": (filter_banks, "Filter-bank ablation (no SimAM), %"),
        "simam": (simam, "SimAM ablation (m-FB), %; customised = "
                  f"{config['customised']}"),
        "per_machine": (per_machine, "Official score per machine type (%)"),
        "scoring": (scoring, f"Domain normalisation of the kNN scores ({LABELS.get(config['main'], config['main'])}), %"),
        "parameters": (params, "Parameters"),
    }
    for name, (frame, title) in outputs.items():
        atomic_write_dataframe(out / f"{name}.csv", frame)
        atomic_write_text(out / f"{name}.md", _markdown(frame, title))
    for name in ("filter_banks", "simam", "scoring"):
        print(_markdown(outputs[name][0], outputs[name][1]))
    print(f"SimAM maps of {clips[0]} (normal) and {clips[1]} (anomalous): "
          f"{out / 'simam_maps.png'}")
    print(f"Tables written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
