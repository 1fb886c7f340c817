"""The proxy-task study of Shin & Lee: proxy metric against ASD metrics.

For every family (AE, classification, contrastive, ...) and each of its
configurations, `run_proxy_study` trains the family's system `trials`
times on the normal training clips (one model per machine type, as the
paper's Fig. 1), and for every machine type records one row:

- the family's proxy-task metrics on the labelled test clips
  (`extractor.proxy_metrics(train, test)`: test MAE, macro-F1, alignment
  and uniformity, ...);
- the three ASD metrics of the frozen features (`asd_keras.runners.probe`,
  paper §IV-B): in-domain LP, out-domain LP and global MD AUC, each the
  arithmetic mean over the machine type's test sections;
- the training's health: the training loss at the first and last epoch and
  its minimum.

A family is configuration, not code: a system name, the proxy metric that
Table VII correlates, the metrics' directions and a list of named
configurations (overrides). Adding a family (source separation, pretrained
encoders) means adding such an entry; its extractor only has to implement
`proxy_metrics`.

Study folder:

    study.json                   the families, trials, data and aggregation
    rows.csv, rows.md            one row per (family, configuration, machine type, trial)
    configurations.csv, .md      means over machine types and trials (the paper's tables)
    features/<family>/<configuration>/<machine_type>.npz
                                 test features of `figure_machine_type`, trial 0 (Fig. 5)
    trials/<family>/<configuration>/trial<k>/
                                 rows.csv, probe.csv, config.yaml, run.json, history/

Finished trials are kept, so an interrupted study resumes where it stopped;
`asd-keras proxy-report` turns one or more study folders into Table VII,
Figs. 2-5 and the three-stage report.
"""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from asd_keras import runs
from asd_keras.config import load_yaml_text
from asd_keras.runners.probe import probe
from asd_keras.studies.proxy.schema import ASD_COLUMNS
from asd_keras.studies.proxy.schema import CONFIG_FAMILY_KEYS
from asd_keras.studies.proxy.schema import HEALTH_COLUMNS
from asd_keras.studies.proxy.schema import KEY_COLUMNS
from asd_keras.systems import get_system
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.processes import call_in_fresh_process
from asd_keras.utils.progress import progress_bar

logger = logging.getLogger(__name__)


def _fail(where, message):
    raise ValueError(f"{where}: {message}")


def load_study_config(source):
    """A validated study configuration from a YAML file or a dict.

    The configuration:

        name: str
        base: {key: value}             # overrides for every family
        figure_machine_type: str       # optional; Fig. 5's machine type
        families:
          - name: ae                   # unique, also the folder name
            label: AutoEncoder         # shown in tables and figures
            system: dense_ae           # a registered system
            proxy_metric: test_mae     # the metric Table VII correlates
            lower_is_better: {test_mae: true}   # every metric it reports
            base: {loss: mae}          # overrides for every configuration
            configurations:
              - {name: latent4_hidden64, latent_dim: 4, hidden_units: 64}

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: naming the family or configuration and the bad entry.
    """
    where = "study configuration"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No study configuration at '{path}'.")
        where = f"'{path}'"
        try:
            config = load_yaml_text(path.read_text())
        except yaml.YAMLError as error:
            raise ValueError(f"{where} is not valid YAML: {error}") from error
    else:
        config = source
    if not isinstance(config, dict) or not isinstance(config.get("families"), list) or not (
            config["families"]):
        _fail(where, "needs a non-empty list `families`; see load_study_config's docstring.")
    config = {"name": "proxy_study", "base": {}, "figure_machine_type": None, **config}
    if not isinstance(config["base"], dict):
        _fail(where, f"`base` must be a mapping; received {config['base']!r}.")
    names = set()
    families = []
    for i, family in enumerate(config["families"]):
        if not isinstance(family, dict):
            _fail(where, f"family {i} must be a mapping; received {family!r}.")
        label = f"{where}, family {family.get('name', i)!r}"
        missing = sorted({"name", "system", "proxy_metric", "configurations"} - set(family))
        if missing:
            _fail(label, f"misses {missing}.")
        unknown = sorted(set(family) - CONFIG_FAMILY_KEYS)
        if unknown:
            _fail(label, f"has unknown key(s) {unknown}; valid: {sorted(CONFIG_FAMILY_KEYS)}.")
        if family["name"] in names:
            _fail(label, "is given twice; family names must be unique.")
        names.add(family["name"])
        directions = family.get("lower_is_better") or {}
        if not isinstance(directions, dict) or family["proxy_metric"] not in directions:
            _fail(label, f"lower_is_better must map every proxy metric, including "
                         f"{family['proxy_metric']!r}, to true or false; received "
                         f"{directions!r}.")
        configurations = family["configurations"]
        if not isinstance(configurations, list) or not configurations:
            _fail(label, "needs a non-empty list `configurations`.")
        seen = set()
        for c in configurations:
            if not isinstance(c, dict) or "name" not in c:
                _fail(label, f"every configuration needs a `name`; received {c!r}.")
            if c["name"] in seen:
                _fail(label, f"configuration {c['name']!r} is given twice.")
            seen.add(c["name"])
        families.append({"label": family["name"], "base": {}, **family,
                         "lower_is_better": {k: bool(v) for k, v in directions.items()}})
    config["families"] = families
    return config


def _system(family, configuration, base, overrides, trial):
    config = {**base, **family["base"],
              **{k: v for k, v in configuration.items() if k != "name"}, **overrides}
    config["seed"] = int(config.get("seed", 0)) + trial
    try:
        return get_system(family["system"])(config)
    except ValueError as error:
        raise ValueError(f"Family {family['name']!r}, configuration "
                         f"{configuration['name']!r}: {error}") from error


def _extractor_of(system, machine_type):
    grouping = system.config["extractor_grouping"]
    if grouping in ("all", "machine_type"):
        return system.extractor_for(machine_type)
    raise ValueError(f"The proxy study needs one extractor per machine type or one for "
                     f"all; system {system.name!r} has extractor_grouping={grouping!r}.")


def _health(run_dir, machine_type, system):
    """First, last and lowest training loss of the machine type's model."""
    key = "all" if system.config["extractor_grouping"] == "all" else machine_type
    path = Path(run_dir) / "history" / f"member0_{key}.csv"
    if not path.is_file():  # a training-free extractor
        return {k: np.nan for k in HEALTH_COLUMNS}
    loss = pd.read_csv(path)["loss"].to_numpy(float)
    return {"first_loss": float(loss[0]), "last_loss": float(loss[-1]),
            "min_loss": float(np.min(loss)), "epochs": int(len(loss))}


def _run_trial(family, configuration, trial, study, train, test, folder, overrides,
               keep_models, figure_dir):
    system = _system(family, configuration, study["base"], overrides, trial)
    table = pd.concat([train, test], ignore_index=True)
    record = {"family": family["name"], "configuration": configuration, "trial": trial}
    # Training, probe and figure read the same clips: their features are
    # computed once.
    with runs.trial(folder, system, train, record, keep_models,
                    cache_features=True) as written:
        stage = written.folder
        per_section = probe(system, table, seed=written.seed)
        atomic_write_dataframe(stage / "probe.csv", per_section)
        rows = []
        for machine_type in sorted(test["machine_type"].unique()):
            t = test[test["machine_type"] == machine_type].reset_index(drop=True)
            r = train[train["machine_type"] == machine_type].reset_index(drop=True)
            extractor = _extractor_of(system, machine_type)
            extra = {"pool": test} if extractor.uses_other_groups else {}
            metrics = extractor.proxy_metrics(r, t, **extra)
            sections = per_section[per_section["machine_type"] == machine_type]
            # Frozen pretrained encoders say whether their weights are
            # converted ones or random (no checkpoint given).
            note = extractor.weights_note
            rows.append({"family": family["name"], "configuration": configuration["name"],
                         "machine_type": machine_type, "trial": trial,
                         **({"weights": note} if note else {}),
                         **{k: float(v) for k, v in metrics.items()},
                         **{c: float(sections[c].mean()) for c in ASD_COLUMNS},
                         "n_sections": int(len(sections)),
                         **_health(stage / "run", machine_type, system)})
            if figure_dir is not None and machine_type == study["figure_machine_type"]:
                figure_dir.mkdir(parents=True, exist_ok=True)
                with _atomic_npz(figure_dir / f"{machine_type}.npz") as tmp:
                    np.savez(tmp, features=system.features(t), label=t["label"].to_numpy(int),
                             section=t["section"].astype(str).to_numpy(),
                             domain=t["domain"].fillna("").astype(str).to_numpy(),
                             md_auc=float(sections["md_auc"].mean()))
        atomic_write_dataframe(stage / "rows.csv", pd.DataFrame(rows))
    return rows


def _check_resumed(folder, system):
    """A finished trial is reused only if it was trained with the same
    resolved configuration (not, say, with other `key=value` overrides)."""
    recorded = yaml.safe_load((folder / "config.yaml").read_text()).get("params")
    current = yaml.safe_load(yaml.safe_dump(system.config))
    if recorded != current:
        changed = sorted(k for k in set(recorded or {}) | set(current)
                         if (recorded or {}).get(k) != current.get(k))
        raise ValueError(f"'{folder}' was trained with other settings ({changed}); pass "
                         "--force to run the study again, or choose another folder.")


def _atomic_npz(path):
    return atomic_path(path, suffix=".npz")


def split_study_data(table):
    """(train, labelled test) rows of the study's data.

    The training rows are every normal training clip (DCASE 2022: dev
    sections 00-02 and the additional-training sections 03-05); the test
    rows are the test clips with a normal/anomaly label (dev sections
    00-02; the evaluation set's unlabelled test clips are left out).

    Raises:
        ValueError: when there are no training or no labelled test clips.
    """
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].copy()
    test["label"] = pd.to_numeric(test["label"], errors="coerce")
    unlabelled = int(test["label"].isna().sum())
    test = test[test["label"].notna()].reset_index(drop=True)
    test["label"] = test["label"].astype(int)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"The study needs training clips and labelled test clips; the data "
                         f"hold {len(train)} training and {len(test)} labelled test clips "
                         f"({unlabelled} unlabelled). Pass development data (and the "
                         "additional-training folder).")
    if unlabelled:
        logger.info("Leaving out %d unlabelled test clips (evaluation data).", unlabelled)
    missing = sorted(set(test["machine_type"]) - set(train["machine_type"]))
    if missing:
        raise ValueError(f"Machine type(s) {missing} have test clips but no training clips.")
    return train, test


def summarise_rows(rows, study):
    """Means over machine types and trials, one row per (family, configuration),
    in the order of the study configuration."""
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in KEY_COLUMNS
               and pd.api.types.is_numeric_dtype(frame[c])]
    out = []
    for family in study["families"]:
        for configuration in family["configurations"]:
            part = frame[(frame["family"] == family["name"])
                         & (frame["configuration"] == configuration["name"])]
            if len(part) == 0:
                continue
            notes = {}
            if "weights" in part:  # frozen encoders: converted or random weights
                values = part["weights"].dropna()
                if len(values):
                    notes["weights"] = ("random weights" if (values == "random weights").any()
                                        else str(values.iloc[0]))
            out.append({"family": family["name"], "configuration": configuration["name"],
                        **notes, "n_rows": int(len(part)),
                        **{c: float(part[c].mean()) for c in numeric}})
    return pd.DataFrame(out)


def _markdown(frame):
    shown = frame.copy()
    for column in ASD_COLUMNS:
        if column in shown:
            shown[column] = 100 * shown[column]
    return shown.rename(columns={c: f"{c} (%)" for c in ASD_COLUMNS}).to_markdown(
        index=False, floatfmt=".4g") + "\n"


def run_proxy_study(config, data, out, trials=1, force=False, overrides=None,
                    keep_models=False, families=None, machine_types=None,
                    isolate_trials=True):
    """Trains and evaluates every configuration of every family.

    Args:
        config: dict or path of a study configuration (`load_study_config`).
        data: folder or list of folders (e.g. DCASE 2022 `dev_data` and
            `eval_data`, whose training clips are the additional-training
            sections).
        out: the study folder (see the module docstring).
        trials: int. Trials per configuration (seed + trial).
        force: bool. Discard a finished study in `out` and start again.
        overrides: dict of keys applied to every configuration last (e.g.
            `epochs` for a quick run).
        keep_models: bool. Keep the trained models of every trial.
        families: list of family names to run (default: all).
        machine_types: list of machine types to train and evaluate
            (default: every one in the data), to shrink a study.
        isolate_trials: bool. Train each trial in a fresh process
            (`asd_keras.utils.processes`), so the study's peak memory is its
            largest trial's rather than the sum of what TensorFlow keeps
            from every trial before (measured for the default separation
            study: docs/performance-notes.md). False trains in this process, which saves
            the start of a process per trial (about 5 s) and suits debuggers.

    Returns:
        DataFrame of the configurations' means (`configurations.csv`).

    Raises:
        FileExistsError: when `out` holds a finished study and not `force`.
        ValueError: for a bad configuration or data (names the entry).
    """
    study = load_study_config(config)
    if families is not None:
        unknown = sorted(set(families) - {f["name"] for f in study["families"]})
        if unknown:
            raise ValueError(f"Unknown families {unknown}; the study has "
                             f"{[f['name'] for f in study['families']]}.")
        study["families"] = [f for f in study["families"] if f["name"] in families]
    if isinstance(trials, bool) or int(trials) < 1:
        raise ValueError(f"trials must be >= 1; received {trials!r}.")
    out = Path(out)
    overrides = dict(overrides or {})
    if (out / "study.json").is_file():
        done = json.loads((out / "study.json").read_text())
        finished = {f["name"]: f["configurations"] for f in done.get("families", [])}
        wanted = {f["name"]: [c["name"] for c in f["configurations"]]
                  for f in study["families"]}
        if force:
            for name in ("trials", "features"):
                shutil.rmtree(out / name, ignore_errors=True)
        elif finished == wanted and done.get("trials") == int(trials):
            raise FileExistsError(f"'{out}' already holds a finished study (study.json). Pass "
                                  "--force to run it again, or choose another folder.")
        else:
            # A study finished for other families (e.g. --families simclr)
            # is extended: its trials are reused after the settings check.
            logger.info("Extending the study in '%s' (finished: %s).", out, sorted(finished))
        (out / "study.json").unlink()
    # Every system is built before any training, so a bad key fails at once.
    for family in study["families"]:
        for configuration in family["configurations"]:
            _system(family, configuration, study["base"], overrides, 0)
    train, test = split_study_data(runs.read_tables(data))
    if machine_types is not None:
        unknown = sorted(set(machine_types) - set(test["machine_type"]))
        if unknown:
            raise ValueError(f"machine_types {unknown} are not in the data; it holds "
                             f"{sorted(test['machine_type'].unique())}.")
        train = train[train["machine_type"].isin(machine_types)].reset_index(drop=True)
        test = test[test["machine_type"].isin(machine_types)].reset_index(drop=True)
    if study["figure_machine_type"] is None:
        study["figure_machine_type"] = sorted(test["machine_type"].unique())[0]
    elif study["figure_machine_type"] not in set(test["machine_type"]):
        raise ValueError(f"figure_machine_type={study['figure_machine_type']!r} is not among "
                         f"the machine types {sorted(test['machine_type'].unique())}.")
    jobs = [(f, c, t) for f in study["families"] for c in f["configurations"]
            for t in range(int(trials))]
    rows = []
    for family, configuration, trial in progress_bar(jobs, desc="Proxy study", unit="trial"):
        folder = out / "trials" / family["name"] / configuration["name"] / f"trial{trial}"
        if (folder / "rows.csv").is_file():  # finished in an earlier attempt
            _check_resumed(folder, _system(family, configuration, study["base"], overrides,
                                           trial))
            done = pd.read_csv(folder / "rows.csv")
            if sorted(done["machine_type"]) != sorted(test["machine_type"].unique()):
                raise ValueError(f"'{folder}' holds the machine types "
                                 f"{sorted(done['machine_type'])}, not the study's "
                                 f"{sorted(test['machine_type'].unique())}; pass --force "
                                 "or choose another folder.")
            rows.extend(done.to_dict("records"))
            continue
        figure_dir = (out / "features" / family["name"] / configuration["name"]
                      if trial == 0 else None)
        arguments = (family, configuration, trial, study, train, test, folder, overrides,
                     keep_models, figure_dir)
        if isolate_trials:
            rows.extend(call_in_fresh_process(
                _run_trial, *arguments, name=f"proxy-{configuration['name']}-{trial}",
                quiet_tensorflow=True))
        else:
            rows.extend(_run_trial(*arguments))
    frame = pd.DataFrame(rows)
    summary = summarise_rows(rows, study)
    atomic_write_dataframe(out / "rows.csv", frame)
    atomic_write_text(out / "rows.md", _markdown(frame))
    atomic_write_dataframe(out / "configurations.csv", summary)
    atomic_write_text(out / "configurations.md", _markdown(summary))
    record = {
        "name": study["name"], "trials": int(trials), "aggregation": "mean",
        "figure_machine_type": study["figure_machine_type"],
        "data": [str(d) for d in ([data] if isinstance(data, (str, Path)) else data)],
        "overrides": overrides,
        "machine_types": sorted(test["machine_type"].unique()),
        "families": [{"name": f["name"], "label": f["label"], "system": f["system"],
                      "proxy_metric": f["proxy_metric"],
                      "proxy_metrics": sorted(f["lower_is_better"]),
                      "lower_is_better": f["lower_is_better"],
                      "configurations": [c["name"] for c in f["configurations"]]}
                     for f in study["families"]],
    }
    # Written last: it marks the study finished.
    atomic_write_text(out / "study.json", json.dumps(record, indent=1))
    return summary
