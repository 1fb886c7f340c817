"""Planning, naming, rendering and writing a synthetic dataset (`generate`),
its ground truth, and where its data folders are (`synthetic_data_root`)."""

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from asd_keras.data.synthetic.background import FactoryBackground
from asd_keras.data.synthetic.config import SynthConfig
from asd_keras.data.synthetic.machines import MACHINE_TYPES
from asd_keras.data.synthetic.machines import _HIDDEN_ATTRIBUTE_MACHINE
from asd_keras.data.synthetic.machines import _MODELS
from asd_keras.data.synthetic.machines import _SECTIONS
from asd_keras.data.synthetic.scene import _clip
from asd_keras.data.synthetic.scene import _instance
from asd_keras.utils.io import atomic_write_rows
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import staged_dir
from asd_keras.utils.progress import progress_bar


def _plan(config, machine_type, split, section):
    """Lists the clips of one section: dicts with domain/label/level/..."""
    rng = np.random.default_rng(
        [config.seed, MACHINE_TYPES.index(machine_type), split == "eval", int(section), 1]
    )
    model = _MODELS[machine_type]
    clips = []
    domains = ("source",) if config.layout == "dcase2020" else ("source", "target")
    for domain in domains:
        levels = model.source_levels if domain == "source" else model.target_levels
        n_train = config.train if domain == "source" else config.target_train
        if config.layout == "dcase2020":
            n_train = config.train + config.target_train
        for i in range(n_train):
            clips.append(
                dict(part="train", domain=domain, label=0, index=i,
                     level=int(rng.choice(levels)), anomaly=None)
            )
        n_test = config.test * (2 if config.layout == "dcase2020" else 1)
        for label in (0, 1):
            for i in range(n_test):
                anomaly = rng.choice(model.anomaly_kinds) if label else None
                clips.append(
                    dict(part="test", domain=domain, label=label, index=i,
                         level=int(rng.choice(levels)), anomaly=anomaly)
                )
    for i, clip in enumerate(clips):
        clip["seed"] = [config.seed, MACHINE_TYPES.index(machine_type), split == "eval", int(section), 2, i]
    return clips


def _attribute_string(machine_type, level, domain):
    model = _MODELS[machine_type]
    return f"{model.attribute_name}_{level}_bg_{'B' if domain == 'target' else 'A'}"


def _names(config, machine_type, split, section, clip, hidden):
    """Returns (relative folder, file name, attribute string) for a clip."""
    layout = config.layout
    dom, lab = clip["domain"], ("anomaly" if clip["label"] else "normal")
    attrs = _attribute_string(machine_type, clip["level"], dom)
    idx = clip["index"]
    if layout == "dcase2020":
        if clip["part"] == "train":
            return "train", f"normal_id_{section}_{idx:08d}.wav", None
        return "test", f"{lab}_id_{section}_{idx:08d}.wav", None
    if clip["part"] == "train":
        shown = "noAttribute" if hidden else attrs
        return "train", f"section_{section}_{dom}_train_normal_{idx:04d}_{shown}.wav", attrs
    if layout == "dcase2021":
        return f"{dom}_test", f"section_{section}_{dom}_test_{lab}_{idx:04d}.wav", attrs
    shown = "noAttribute" if hidden else attrs
    return "test", f"section_{section}_{dom}_test_{lab}_{idx:04d}_{shown}.wav", attrs


def _eval_test_name(layout, section, domain, index):
    if layout == "dcase2020":
        return "test", f"id_{section}_{index:08d}.wav"
    if layout == "dcase2021":
        return f"{domain}_test", f"section_{section}_{domain}_test_{index:04d}.wav"
    return "test", f"section_{section}_{index:04d}.wav"


# Clips rendered in one process below this count (a 10 s clip takes ~30 ms).
_PARALLEL_MIN_CLIPS = 64
_BACKGROUNDS = {}


def _render(task):
    """Renders and writes one clip (in a worker process or in this one).

    Every clip draws from its own seed and the hall from the dataset seed,
    so the files do not depend on which process renders them or in what
    order.
    """
    config, machine_type, inst, clip, path = task
    background = _BACKGROUNDS.get(config.seed)
    if background is None:
        background = _BACKGROUNDS[config.seed] = FactoryBackground(config.seed)
    rng = np.random.default_rng(clip["seed"])
    audio = _clip(config, background, machine_type, inst, clip["domain"], clip["level"],
                  clip["anomaly"], rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, config.sample_rate, subtype="PCM_16")


def _render_all(tasks, workers, bar):
    """Runs `_render` on every task, on `workers` processes when there are
    enough clips to pay for them."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be an integer >= 1 (or None for every core); "
                         f"received {workers!r}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for every core); received "
                         f"{workers!r}.")
    # Forked workers: a spawned one would re-run the caller's script (a
    # script without a `__main__` guard would start over). Forking a process
    # that has imported TensorFlow can deadlock on its threads, so then the
    # clips are rendered here.
    if (workers == 1 or len(tasks) < _PARALLEL_MIN_CLIPS or "tensorflow" in sys.modules
            or "fork" not in multiprocessing.get_all_start_methods()):
        for task in tasks:
            _render(task)
            bar.update()
        return
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for _ in pool.map(_render, tasks, chunksize=8):
            bar.update()


def generate(out, config=None, force=False, progress=True, workers=None):
    """Writes a synthetic dataset in a DCASE layout.

    Folder structure under `out` (2023/2026 add the `raw/` level of the
    official download scripts):
        dev_data[/raw]/<machine>/{train,test|source_test,target_test}/*.wav
        dev_data[/raw]/<machine>/attributes_XX.csv            (2022+)
        eval_data[/raw]/<machine>/...                          (eval=True)
        ground_truth/...  the official evaluator's files       (eval=True)
        synth.json        the generator settings

    Args:
        out: str or Path. New folder (an existing non-empty one needs
            `force`).
        config: SynthConfig. Defaults to `SynthConfig()`.
        force: bool. Replace an existing folder.
        progress: bool. Show a progress bar.
        workers: int or None. Processes that render the clips; None (the
            default) uses every core. The files are the same whatever the
            number.

    Returns:
        Path to `out`.
    """
    config = config or SynthConfig()
    config.validate()
    out = Path(out)
    raw = ("raw",) if config.layout in ("dcase2023", "dcase2026") else ()
    splits = ("dev", "eval") if config.eval else ("dev",)
    jobs = []
    for split in splits:
        for machine_type in config.machine_types:
            for section in _SECTIONS[config.layout][split]:
                jobs.append((split, machine_type, section))
    total = sum(
        len(_plan(config, m, s, sec)) for s, m, sec in jobs
    )
    with staged_dir(out, force=force, what="synthetic data folder") as stage:
        bar = progress_bar(total=total, desc="Synthesising clips", unit="clip", enabled=progress)
        ground_truth = {}
        attribute_rows = {}
        tasks = []
        for split, machine_type, section in jobs:
            inst = _instance(config, machine_type, split, section)
            plan = _plan(config, machine_type, split, section)
            machine_dir = stage.joinpath(f"{split}_data", *raw, machine_type)
            hidden = (
                machine_type == _HIDDEN_ATTRIBUTE_MACHINE
                and config.layout in ("dcase2023", "dcase2026")
            )
            if hidden:
                _shuffle_hidden_indices(plan, config.seed)
            eval_index = {}
            eval_order = np.random.default_rng(
                [config.seed, MACHINE_TYPES.index(machine_type), int(section), 3]
            )
            test_clips = [c for c in plan if c["part"] == "test"]
            eval_perm = eval_order.permutation(len(test_clips))
            for rank, clip in zip(eval_perm, test_clips):
                eval_index[id(clip)] = int(rank)
            for clip in plan:
                folder, name, attrs = _names(config, machine_type, split, section, clip, hidden)
                if split == "eval" and clip["part"] == "test":
                    original = name
                    if config.layout == "dcase2021":
                        domain_count = sum(
                            1 for c in test_clips
                            if c["domain"] == clip["domain"] and eval_index[id(c)] < eval_index[id(clip)]
                        )
                        folder, name = _eval_test_name(config.layout, section, clip["domain"], domain_count)
                    else:
                        folder, name = _eval_test_name(config.layout, section, clip["domain"], eval_index[id(clip)])
                    key = (machine_type, section, clip["domain"] if config.layout == "dcase2021" else None)
                    ground_truth.setdefault(key, []).append(
                        (name, original, clip["label"], clip["domain"])
                    )
                tasks.append((config, machine_type, inst, clip, machine_dir / folder / name))
                if attrs is not None and config.layout not in ("dcase2020", "dcase2021"):
                    include = not hidden and (split == "dev" or clip["part"] == "train")
                    if include:
                        rel = f"{machine_type}/{folder}/{name}"
                        level = attrs.split("_")
                        attribute_rows.setdefault((machine_dir, section), []).append(
                            [rel, level[0], level[1], level[2], level[3]]
                        )
        _render_all(tasks, workers, bar)
        bar.close()
        for (machine_dir, section), rows in attribute_rows.items():
            frame = pd.DataFrame(rows, columns=["file_name", "d1p", "d1v", "d2p", "d2v"])
            atomic_write_text(
                machine_dir / f"attributes_{section}.csv", frame.to_csv(index=False)
            )
        if config.eval:
            _write_ground_truth(stage / "ground_truth", config.layout, ground_truth)
        settings = dataclasses.asdict(config)
        settings["machine_types"] = list(config.machine_types)
        settings["severity"] = list(config.severity)
        atomic_write_text(stage / "synth.json", json.dumps(settings, indent=2))
    return out


def _shuffle_hidden_indices(plan, seed):
    """Renumbers hidden-attribute clips in a random order, per group."""
    rng = np.random.default_rng([seed, 11])
    groups = {}
    for clip in plan:
        groups.setdefault((clip["part"], clip["domain"], clip["label"]), []).append(clip)
    for clips in groups.values():
        for clip, new in zip(clips, rng.permutation(len(clips))):
            clip["index"] = int(new)


def _write_ground_truth(folder, layout, ground_truth):
    """Writes ground truth in the official evaluators' formats (reference 1)."""
    if layout == "dcase2020":
        rows = []
        for machine_type in sorted({k[0] for k in ground_truth}):
            rows.append([machine_type])
            for key in sorted(k for k in ground_truth if k[0] == machine_type):
                for name, original, label, _ in sorted(ground_truth[key]):
                    rows.append([name, original, label])
        atomic_write_rows(folder / "eval_data_list.csv", rows)
        return
    for (machine_type, section, domain), entries in sorted(ground_truth.items()):
        entries = sorted(entries)
        if layout == "dcase2021":
            stem = f"ground_truth_{machine_type}_section_{section}_{domain}_test.csv"
            atomic_write_rows(folder / "ground_truth_data" / stem,
                              [[n, lab] for n, _, lab, _ in entries])
            continue
        stem = f"ground_truth_{machine_type}_section_{section}_test.csv"
        atomic_write_rows(folder / "ground_truth_data" / stem,
                          [[n, lab] for n, _, lab, _ in entries])
        atomic_write_rows(folder / "ground_truth_domain" / stem,
                          [[n, int(d == "target")] for n, _, _, d in entries])
        atomic_write_rows(folder / "ground_truth_attributes" / stem,
                          [[n, Path(o).stem] for n, o, _, _ in entries])


def synthetic_data_root(out, layout, split="dev"):
    """Folder of machine-type folders inside a generated dataset."""
    raw = ("raw",) if layout in ("dcase2023", "dcase2026") else ()
    return Path(out).joinpath(f"{split}_data", *raw)
