"""Training a run folder, and loading it back.

A run folder is what `asd-keras train` writes and every later command
reads: the trained members, `config.yaml` and `run.json` (the record:
system, data, resolved configuration, seed, versions, CPU, and the choices
made from the data), `data_summary.csv`. It is written atomically; a
resumable system keeps its epoch backups in `<run>.checkpoints` until the
run is written, so the same command resumes an interrupted training.
"""

import json
import shutil
from pathlib import Path

import yaml

from asd_keras.config import load_config_file
from asd_keras.config import parse_overrides
from asd_keras.config import read_yaml_mapping
from asd_keras.data.layouts import describe
from asd_keras.systems import get_system
from asd_keras.utils.checkpoints import has_progress
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.utils.runs import seed_run
from asd_keras.utils.runs import write_run_record


def new_system(name, config_file=None, overrides=(), flags=None):
    """A new system from its name, an optional config file and `key=value`
    overrides; the whole configuration is validated here, before any audio
    is read.

    Args:
        name: str. A registered system name (`asd-keras systems`).
        config_file: str, Path or None. A YAML file of configuration keys.
        overrides: list of `key=value` strings (they win over the file).
        flags: dict of flag name -> value for keys also given as flags
            (e.g. `{"--epochs": 3}`); a key given twice is an error.

    Returns:
        An unfitted `AnomalySystem`.
    """
    config = load_config_file(config_file) if config_file else {}
    config.update(parse_overrides(list(overrides), flags=flags))
    return get_system(name)(config)


def run_record(system, table, data):
    """The record of a run: system, data folders, layout, machine types and
    the resolved configuration (also the fingerprint of its checkpoints)."""
    return {"system": system.name,
            "data": [str(Path(d).resolve()) for d in _folders(data)],
            "layout": table["layout"].iloc[0],
            "machine_types": sorted(table["machine_type"].unique()),
            "params": system.config}


def fit_run(system, table, run_dir, record, record_dir=None, verbose=0, checkpoint_dir=None):
    """Seeds, fits `system` into `run_dir` and then writes its record: the
    one train -> record sequence of every run, trial and experiment.

    The record is written after the fit so that the choices made from the
    data (e.g. the Wilkinghoff clip length, `system.data_choices`) are in it.

    Args:
        system: unfitted `AnomalySystem`.
        table: dataset table to train on.
        run_dir: Path. Where the fitted members go.
        record: dict of the caller's fields (data, condition, trial, ...);
            `system` and the resolved `params` are added.
        record_dir: Path or None. Where `config.yaml` and `run.json` go
            (default `run_dir`; a trial records in its trial folder).
        verbose: int. Keras verbosity.
        checkpoint_dir: Path or None. Epoch backups to resume from.

    Returns:
        int, the seed the run was trained with.
    """
    seed = seed_run(system.config)
    system.fit(table, run_dir, verbose=verbose, checkpoint_dir=checkpoint_dir)
    write_run_record(record_dir or run_dir,
                     {**record, "system": system.name, "params": system.config}, seed,
                     extra={"data_choices": system.data_choices})
    return seed


def train_run(system, table, data, out, force=False, verbose=1):
    """Trains `system` on the rows of `table` and writes the run folder `out`.

    The folder appears only when everything is written. A resumable system
    trains from the backups in `<out>.checkpoints` left by an interrupted
    run of the same system, data and configuration; a different run's
    backups are refused unless `force`.

    Args:
        system: unfitted `AnomalySystem`.
        table: dataset table (`read_tables`).
        data: the folder(s) `table` was read from, for the record.
        out: str or Path. The run folder.
        force: bool. Replace an existing folder (and other checkpoints).
        verbose: int. Keras verbosity.

    Returns:
        The fitted system.
    """
    record = run_record(system, table, data)
    checkpoints = checkpoint_dir(out, record, force) if system.resumable else None
    try:
        with staged_dir(out, force=force, what="run folder") as stage:
            atomic_write_dataframe(stage / "data_summary.csv", describe(table))
            fit_run(system, table, stage, record, verbose=verbose, checkpoint_dir=checkpoints)
    except BaseException:
        # Backups are kept for the rerun; a folder with nothing to resume from
        # (only its fingerprint) would only be litter.
        if checkpoints is not None and not has_progress(checkpoints):
            shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return system


def checkpoint_dir(out, record, force):
    """`<out>.checkpoints`: epoch backups that survive an interrupted run.

    A repeated `train` with the same system, data and configuration resumes
    from them; a different one is refused unless `force` discards them.

    Raises:
        FileExistsError: the folder holds another run's checkpoints.
    """
    out = Path(out)
    folder = out.with_name(out.name + ".checkpoints")
    fingerprint = json.dumps(record, sort_keys=True, default=str)
    marker = folder / "fingerprint.json"
    if folder.exists():
        if force:
            shutil.rmtree(folder)
        elif not marker.is_file() or marker.read_text() != fingerprint:
            raise FileExistsError(
                f"'{folder}' holds checkpoints of a different run (system, data or "
                "configuration differ). Pass --force to discard them, or delete "
                "the folder.")
        else:
            print(f"Resuming from the checkpoints in '{folder}'.")
    if not folder.exists():
        try:
            atomic_write_text(marker, fingerprint)
        except BaseException:
            # A folder without its fingerprint would read as another run's.
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return folder


def is_finished_run(out, system, data):
    """Whether `out` is a finished run of `system` on `data` with the same
    configuration (what the same `train` command wrote before)."""
    config = Path(out) / "config.yaml"
    if not config.is_file():
        return False
    record = read_yaml_mapping(config, what="Run configuration")

    def canonical(value):
        return json.dumps(value, sort_keys=True, default=str)

    params = yaml.safe_load(yaml.safe_dump(system.config))
    return (record.get("system") == system.name
            and record.get("data") == [str(Path(d).resolve()) for d in _folders(data)]
            and canonical(record.get("params")) == canonical(params))


def load_run(run_dir):
    """The fitted system of a run folder, and its record.

    Returns:
        (system, record): the `AnomalySystem` and the `config.yaml` mapping.

    Raises:
        FileNotFoundError: `run_dir` is not a finished run folder.
        ValueError: its `config.yaml` is unreadable or incomplete (the
            message says how to restore it).
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"'{run_dir}' is not a finished run folder (no config.yaml). "
            "Train one with 'asd-keras train'.")
    fix = ("Restore the run's config.yaml from a backup, or train the run "
           "again with 'asd-keras train'")
    record = read_yaml_mapping(config_path, what="Run configuration", fix=fix)
    if not isinstance(record.get("system"), str) or not isinstance(
            record.get("params"), dict):
        raise ValueError(
            f"Run configuration '{config_path}' needs a 'system' name and a "
            f"'params' mapping; found {record.get('system')!r} and "
            f"{type(record.get('params')).__name__}. {fix}.")
    system = get_system(record["system"]).load(run_dir, record["params"])
    return system, record


def check_not_inside(out, run, what):
    """`out` must not be the run folder or hold it: `--force` would delete it.

    Raises:
        ValueError: naming both folders.
    """
    out, run = Path(out).resolve(), Path(run).resolve()
    if out == run or out in run.parents:
        raise ValueError(f"The {what} '{out}' is (or holds) the run folder '{run}'; "
                         "--force would delete the run. Choose another folder.")


def _folders(data):
    return [data] if isinstance(data, (str, Path)) else list(data)
