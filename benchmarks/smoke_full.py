"""Runs every paper-size (`FULL=1`) configuration for a few graph-mode steps.

    python benchmarks/smoke_full.py                      # all, table to results/
    python benchmarks/smoke_full.py resnet_ce_152        # one configuration
    python benchmarks/smoke_full.py "ResNet CE" --list   # a family; list names
    python benchmarks/smoke_full.py --smoke              # tiny sizes (CPU test)

For each configuration of `smoke_configs.py`, in its own process (so peak
RSS is its own), on synthetic clips of the paper's length:

1. builds the system at full size and trains it with `AnomalySystem.fit`
   in graph mode (`run_eagerly=False`) at the paper's batch size; a
   callback stops training after `--steps` calls of the training function
   (`steps_per_execution` optimizer steps each) and times them: the first
   call holds the trace, the later ones give the seconds per step;
2. fits the scorer on the embedded training clips (part of `fit`);
3. scores two batches of test clips (the second one is timed per clip);
4. exports the SavedModel.

It records parameters, trace time (first call minus one steady call),
seconds per optimizer step, peak RSS (`ru_maxrss`), training FLOPs per step
(3 x the forward FLOPs of the training model at the batch size, counted by
TensorFlow's profiler on the traced graph: backward ~ 2 x forward), and the
projected wall time of the whole paper run on this CPU (measured rates) and
on one GPU at `--gpu-tflops` sustained float32 (a FLOP-bound lower bound:
small models on a GPU are bound by overheads instead). Results:
`benchmarks/results/smoke_full.csv` and `.md`, rewritten after every
configuration from the records in `benchmarks/results/smoke_full_records/`
(one JSON per configuration). A configuration with a record of status "ok"
is not measured again without `--force`, so an interrupted sweep continues
where it stopped, and the table holds every configuration measured so far.
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from smoke_configs import DATA  # noqa: E402
from smoke_configs import TINY_DATA  # noqa: E402
from smoke_configs import CONFIGS  # noqa: E402
from smoke_configs import select  # noqa: E402

GPU_TFLOPS = 10.0  # sustained float32: about half an A100's 19.5 TFLOP/s peak
COLUMNS = ["name", "family", "system", "params", "batch", "trace_s", "s_per_step",
           "steps_timed", "fit_s", "score_s_per_clip", "export_s", "peak_rss_mb",
           "train_gflop_per_step", "cpu_gflops", "projected_cpu_h", "projected_gpu_h",
           "gpu_peak_mb", "status"]


# -- the child: one configuration ---------------------------------------------


def forward_flops(model, batch):
    """FLOPs of one forward pass of a functional Keras model at `batch`,
    counted by TensorFlow's profiler on the traced graph (None when the
    model has no static inputs or the profiler finds no counted op)."""
    import keras
    import tensorflow as tf

    try:
        specs = keras.tree.map_structure(
            lambda x: tf.TensorSpec((batch,) + tuple(x.shape[1:]), x.dtype), model.input)
    except (AttributeError, ValueError, TypeError):
        return None
    fn = tf.function(lambda inputs: model(inputs, training=False))
    graph = fn.get_concrete_function(specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=graph, options=options)
    return int(info.total_float_ops) or None


def _step_timer(max_calls):
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Times the training function's calls of the first `fit` and stops
        it after `max_calls` calls; a later `fit` of the same system (the
        next machine type's model) is stopped after its first call, since
        only the first is timed."""

        def __init__(self):
            super().__init__()
            self.first = None

        def on_train_begin(self, logs=None):
            self.calls, self.begin = [], time.perf_counter()
            if self.first is None:
                self.first = {"model": self.model, "calls": self.calls, "begin": self.begin}

        def _iterations(self):
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                return None
            return int(optimizer.iterations.numpy())

        def on_train_batch_end(self, batch, logs=None):
            self.calls.append((time.perf_counter(), self._iterations()))
            if len(self.calls) >= (max_calls if self.calls is self.first["calls"] else 1):
                self.model.stop_training = True

    return StepTimer()


def _timings(first, steps_per_call):
    """Trace seconds and seconds per optimizer step of the timed calls."""
    import numpy as np

    calls = first["calls"]
    if len(calls) < 2:
        raise ValueError(f"Only {len(calls)} training call(s) ran; the smoke needs at "
                         "least 2 (give the configuration more synthetic clips).")
    per_step = []
    for (t0, i0), (t1, i1) in zip(calls, calls[1:]):
        steps = (i1 - i0) if (i0 is not None and i1 is not None and i1 > i0) else (
            steps_per_call)
        per_step.append((t1 - t0) / steps)
    s_per_step = float(np.median(per_step))
    first_steps = calls[0][1] if calls[0][1] else steps_per_call
    trace = (calls[0][0] - first["begin"]) - s_per_step * first_steps
    total_steps = sum(int(round((b[0] - a[0]) / s_per_step)) for a, b in zip(calls, calls[1:]))
    return max(trace, 0.0), s_per_step, total_steps


def run_child(name, data_root, tiny, max_calls, out):
    """Runs one configuration in this process and writes its JSON record."""
    record = {"name": name}
    try:
        record.update(_run(name, data_root, tiny, max_calls))
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - the table reports every failure
        import traceback

        traceback.print_exc()
        record["status"] = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(record))


def _run(name, data_root, tiny, max_calls):
    import keras
    import tensorflow as tf

    from asd_keras.data.layouts import read_dataset
    from asd_keras.systems import get_system

    spec = select([name])[0]
    config = {**spec.config, **(spec.tiny if tiny else {})}
    if spec.system in ("frozen_encoder", "residual_view"):
        config.setdefault("cache_dir", str(Path(tempfile.mkdtemp()) / "cache"))
    system = get_system(spec.system)(config)
    table = read_dataset(_data_folder(Path(data_root) / spec.data),
                         machine_types=list(spec.machine_types) if spec.machine_types else None)
    train = table[table["split"] == "train"]
    if spec.train_per_section:
        train = train.groupby(["machine_type", "section"], sort=False).head(
            spec.train_per_section)
    test = table[table["split"] == "test"]
    gpu = bool(tf.config.list_physical_devices("GPU"))
    timer = _step_timer(max_calls)
    work = Path(tempfile.mkdtemp(prefix=f"smoke_{name}_"))
    start = time.perf_counter()
    system.fit(train, work / "run", verbose=0, callbacks=[timer])
    fit_s = time.perf_counter() - start
    record = {"fit_s": fit_s, "batch": int(system.config.get("batch_size") or 1)}
    extractor = next(iter(system.members[0].extractors.values()))
    clip_samples = int(round(float(_clip_seconds(system, spec, tiny)) * 16000))
    serving = extractor.serving_model(clip_samples)
    record["params"] = int(serving.count_params())
    counting = time.perf_counter()
    per_clip_flops = forward_flops(serving, 1)
    if timer.first is not None:
        model = timer.first["model"]
        record["params"] = int(model.count_params())
        steps_per_call = int(getattr(model, "steps_per_execution", 1) or 1)
        trace, s_per_step, steps = _timings(timer.first, steps_per_call)
        record.update(trace_s=trace, s_per_step=s_per_step, steps_timed=steps)
        fwd = forward_flops(model, record["batch"])
        if fwd is None:
            # A subclassed training model (the GANs' adversarial step): the
            # sum of its functional sub-models' forward passes, run once each.
            parts = [forward_flops(layer, record["batch"]) for layer in model.layers
                     if isinstance(layer, keras.Model)]
            fwd = sum(p for p in parts if p) or None
        record["train_flop_per_step"] = None if fwd is None else 3 * fwd
    # Tracing the models once more for the profiler's FLOP count.
    record["flop_count_s"] = time.perf_counter() - counting
    batch = max(1, min(len(test) // 2, int(system.config.get("score_batch_clips") or 8)))
    system.score(test.iloc[:batch])
    start = time.perf_counter()
    system.score(test.iloc[batch:2 * batch])
    record["score_s_per_clip"] = (time.perf_counter() - start) / batch
    if timer.first is None:
        # A frozen encoder: its first scoring batch holds the trace.
        record["trace_s"] = None
    record["forward_flop_per_clip"] = per_clip_flops
    start = time.perf_counter()
    system.export(work / "export")
    record["export_s"] = time.perf_counter() - start
    if gpu:
        info = tf.config.experimental.get_memory_info("GPU:0")
        record["gpu_peak_mb"] = info["peak"] / 2**20
    record["device"] = "GPU" if gpu else "CPU"
    keras.backend.clear_session()
    return record


def _data_folder(root):
    """The folder of machine-type folders of a synthetic data set."""
    for candidate in (root / "dev_data" / "raw", root / "dev_data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"No dev_data under '{root}'; delete it and rerun to regenerate.")


def _clip_seconds(system, spec, tiny):
    value = system.config.get("clip_seconds")
    if isinstance(value, (int, float)):
        return value
    return 1.0 if tiny else 10.0


# -- the parent: data, processes, projection, table -----------------------------


def make_data(root, tiny, specs):
    """Synthesises each data set the configurations use (once; kept)."""
    table = TINY_DATA if tiny else DATA
    for key in sorted({s.data for s in specs}):
        folder = Path(root) / key
        if (folder / "synth.json").is_file():
            continue
        d = table[key]
        cmd = [sys.executable, "-m", "asd_keras", "synth", "--out", str(folder), "--layout",
               d["layout"], "--machines", *d["machines"], "--seconds",
               "1" if tiny else "10", "--train", str(d["train"]), "--target-train",
               str(d["target_train"]), "--test", str(d["test"]), "--seed", "0", "--force"]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def project(spec, record, gpu_tflops):
    """Adds the projected wall times of the whole paper run (hours)."""
    full = spec.full
    s_clip = record.get("score_s_per_clip") or 0.0
    cpu_s = full.scored * s_clip
    flops = full.scored * (record.get("forward_flop_per_clip") or 0)
    if spec.trained and record.get("s_per_step"):
        epochs = int(spec.config.get("epochs", 1))
        samples = full.clips_per_model * full.vectors_per_clip * (1 - full.validation_split)
        steps = epochs * max(1, int(samples // record["batch"]))
        cpu_s += full.models * (record["trace_s"] + steps * record["s_per_step"])
        flops += full.models * steps * (record.get("train_flop_per_step") or 0)
        if record.get("train_flop_per_step"):
            record["cpu_gflops"] = record["train_flop_per_step"] / record["s_per_step"] / 1e9
    record["projected_cpu_h"] = cpu_s / 3600
    record["projected_gpu_h"] = (flops / (gpu_tflops * 1e12) / 3600) if flops else None
    if record.get("train_flop_per_step"):
        record["train_gflop_per_step"] = record["train_flop_per_step"] / 1e9
    return record


# Imported once by the fork server; every configuration's process is forked
# from it, so none pays TensorFlow's import (about 7 s on 2 cores).
PRELOAD = ["tensorflow", "keras", "pandas", "asd_keras.systems", "asd_keras.data.layouts"]


def _child_main(name, data_root, tiny, max_calls, out, log_path):
    """A configuration's process: its output goes to `log_path`; the exit
    code is 0 (record written), 130 (Ctrl-C) or 1 (a crash outside `_run`)."""
    import traceback

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        import threading

        import tqdm

        # tqdm's default lock is a multiprocessing semaphore, which `os._exit`
        # below would leave to the resource tracker's "leaked" warning.
        tqdm.tqdm.set_lock(threading.RLock())
        run_child(name, data_root, tiny, max_calls, out)
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - reported through the log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # The record is written: skip the interpreter's tear-down of
        # TensorFlow (about 2 s, which would count in the wall time).
        os._exit(code)


def _context():
    """The multiprocessing context: a fork server with `PRELOAD` imported.

    The server is a fresh interpreter (not a fork of this process, which may
    have run TensorFlow already, as a test does), that never runs an op, so
    each configuration still starts with a clean TensorFlow runtime and its
    own peak RSS.
    """
    import multiprocessing
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    # The first fork waits for the server's imports: not a configuration's time.
    warm = context.Process(target=_no_op)
    warm.start()
    warm.join()
    return context


def _no_op():
    pass


def _run_process(context, spec, data_root, tiny, max_calls, out, log_path):
    """Runs one configuration; returns (exit code, seconds)."""
    process = context.Process(target=_child_main, name=f"smoke-{spec.name}", args=(
        spec.name, str(data_root), tiny, max_calls, str(out), str(log_path)))
    start = time.perf_counter()
    process.start()
    try:
        process.join()
    except KeyboardInterrupt:
        # Ctrl-C reached the child too; let it end, then stop the sweep.
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
        raise
    return process.exitcode, time.perf_counter() - start


def run_all(specs, data_root, tiny, max_calls, gpu_tflops, log=print, record_dir=None,
            on_record=None):
    """Runs each configuration in a fresh process; returns the records.

    With `record_dir`, each record is written there (`<name>.json`,
    atomically) as soon as its configuration ends, and `on_record(record)`
    is called, so an interrupted sweep keeps what it measured.
    """
    from asd_keras.utils.io import atomic_write_text

    context = _context()
    records = []
    for spec in specs:
        with tempfile.TemporaryDirectory() as tmp:
            out, log_path = Path(tmp) / "record.json", Path(tmp) / "log.txt"
            code, wall = _run_process(context, spec, data_root, tiny, max_calls, out,
                                      log_path)
            output = log_path.read_text(errors="replace") if log_path.is_file() else ""
            if code in (130, -signal.SIGINT):
                # Ctrl-C reaches the child too: its record is not a result.
                raise KeyboardInterrupt
            if out.is_file():
                record = json.loads(out.read_text())
            else:
                record = {"name": spec.name, "status": _crash(code, output)}
        record.update(family=spec.family, system=spec.system, wall_s=wall,
                      machine=machine_line(), measured=time.strftime("%Y-%m-%d %H:%M"))
        if record["status"] == "ok":
            project(spec, record, gpu_tflops)
        else:
            log(output[-3000:])
        log(f"{spec.name:28s} {record['status'][:60]:12s} wall {wall:6.1f} s  "
            f"trace {_fmt(record.get('trace_s'))} s  step {_fmt(record.get('s_per_step'), 3)} s"
            f"  RSS {_fmt(record.get('peak_rss_mb'), 0)} MB")
        records.append(record)
        if record_dir is not None:
            Path(record_dir).mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(record_dir) / f"{spec.name}.json", json.dumps(record))
        if on_record is not None:
            on_record(record)
    return records


def load_records(record_dir, specs):
    """The saved records of `specs` (by name; a missing or unreadable file
    is no record), in the configurations' order."""
    records = {}
    for spec in specs:
        path = Path(record_dir) / f"{spec.name}.json"
        try:
            records[spec.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return records


def _crash(code, output):
    """A one-line status of a child that wrote no record."""
    if code < 0:
        signal = -code
        return (f"killed by signal {signal}" + (" (SIGKILL: the kernel's out-of-memory "
                                                "killer, when dmesg says so)" if signal == 9 else ""))
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return f"crashed (exit {code})" + (f": {lines[-1][:300]}" if lines else "")


def _fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(records, out_dir, header):
    """Writes `smoke_full.csv` and `smoke_full.md` atomically."""
    import pandas as pd

    from asd_keras.utils.io import atomic_write_dataframe
    from asd_keras.utils.io import atomic_write_text

    frame = pd.DataFrame(records)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_dataframe(out_dir / "smoke_full.csv", frame)
    shown = frame[["name", "params", "trace_s", "s_per_step", "peak_rss_mb",
                   "train_gflop_per_step", "projected_cpu_h", "projected_gpu_h", "status"]]
    shown = shown.rename(columns={
        "name": "configuration", "params": "params", "trace_s": "trace s",
        "s_per_step": "s/step", "peak_rss_mb": "peak RSS MB",
        "train_gflop_per_step": "GFLOP/step", "projected_cpu_h": "FULL run, this CPU (h)",
        "projected_gpu_h": "FULL run, 1 GPU (h)", "status": "status"})
    lines = [header, "", "| " + " | ".join(shown.columns) + " |",
             "|" + "---|" * len(shown.columns)]
    for row in shown.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("-" if value != value else (
                    f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"))
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append("-" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out_dir / "smoke_full.md", "\n".join(lines) + "\n")
    return frame


def machine_line():
    """The CPU model, cores and TensorFlow version, for the table's header."""
    from asd_keras.utils.runs import cpu_summary

    cpu = cpu_summary()
    return (f"{cpu.get('model', 'unknown CPU')}, {os.cpu_count()} cores, "
            f"flags {','.join(cpu.get('flags') or []) or '-'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="configurations or families (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU test)")
    parser.add_argument("--steps", type=int, default=2,
                        help="training-function calls per configuration (default 2: "
                             "one traced, one timed)")
    parser.add_argument("--data-root", default=None,
                        help="synthetic data (default data/synthetic/smoke_full[_tiny])")
    parser.add_argument("--out", default=str(HERE / "results"),
                        help="folder of smoke_full.csv/.md")
    parser.add_argument("--gpu-tflops", type=float, default=GPU_TFLOPS,
                        help="sustained float32 TFLOP/s of the projected GPU")
    parser.add_argument("--list", action="store_true", help="list the configurations")
    parser.add_argument("--force", action="store_true",
                        help="measure configurations that already have a record again")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (one traced call and one timed); "
                     f"received {args.steps}.")
    data_root = Path(args.data_root or ROOT / "data" / "synthetic" / (
        "smoke_full_tiny" if args.smoke else "smoke_full")).resolve()
    if args.child:
        # One configuration in this process (for debugging a configuration).
        run_child(args.child, data_root, args.smoke, args.steps, args.json)
        return 0
    try:
        specs = select(args.names)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        for spec in specs:
            print(f"{spec.name:28s} {spec.family:20s} {spec.paper}")
        return 0
    out_dir = Path(args.out)
    record_dir = out_dir / ("smoke_full_tiny_records" if args.smoke else "smoke_full_records")
    done = load_records(record_dir, specs)
    todo = [s for s in specs if args.force or done.get(s.name, {}).get("status") != "ok"]
    if len(todo) < len(specs):
        print(f"{len(specs) - len(todo)} of {len(specs)} configurations already measured "
              f"({record_dir}); --force measures them again.")

    def write(_record=None):
        # Every configuration measured so far, this call's or an earlier one's.
        everything = load_records(record_dir, CONFIGS.values())
        records = list(everything.values())
        minutes = sum(r.get("wall_s") or 0 for r in records) / 60
        machines = sorted({r.get("machine", "?") for r in records})
        header = (f"Measured with `python benchmarks/smoke_full.py"
                  f"{' --smoke' if args.smoke else ''}` on {'; '.join(machines)}; "
                  f"{len(records)} configurations, {minutes:.1f} min of configuration wall "
                  f"time; GPU projection at {args.gpu_tflops:g} TFLOP/s sustained float32.")
        write_table(records, out_dir, header)
        return header

    try:
        make_data(data_root, args.smoke, todo)
        run_all(todo, data_root, args.smoke, args.steps, args.gpu_tflops,
                record_dir=record_dir, on_record=write)
    except KeyboardInterrupt:
        print(f"\nInterrupted. The configurations measured so far are in {record_dir}; "
              "the same command measures the rest.", file=sys.stderr)
        return 130
    header = write()
    print(header)
    print(f"Wrote {out_dir / 'smoke_full.csv'} and smoke_full.md")
    records = load_records(record_dir, specs)
    failed = [s.name for s in specs if records.get(s.name, {}).get("status") != "ok"]
    if failed:
        print(f"FAILED: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
