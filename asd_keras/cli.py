"""The `asd-keras` command-line program (also `python -m asd_keras`).

Verbs: synth, systems, probe, train, score, evaluate, export, study, search,
proxy-report, convert, download (`asd-keras VERB --help`). Every long step
shows a progress bar; every result folder is written atomically and never
replaced without --force.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _split_data_and_overrides(args):
    """`--data A B key=value` : argparse's nargs="+" swallows the overrides."""
    data, extra = [], []
    for item in args.data:
        (extra if "=" in item and not Path(item).exists() else data).append(item)
    if not data:
        raise ValueError(f"--data needs at least one folder; received {args.data}.")
    args.data = data
    args.overrides = extra + list(args.overrides)


def _print_table(frame, floatfmt=".4f"):
    print(frame.to_markdown(index=False, floatfmt=floatfmt))


# ----------------------------------------------------------------------
# synth
# ----------------------------------------------------------------------


def cmd_synth(args):
    from asd_keras.data import synthetic

    config = synthetic.SynthConfig(
        layout=args.layout,
        machine_types=tuple(args.machines or synthetic.DEFAULT_MACHINE_TYPES),
        seconds=args.seconds,
        train=args.train,
        target_train=args.target_train,
        test=args.test,
        seed=args.seed,
        eval=args.eval,
        background_gain=args.background_gain,
    )
    out = synthetic.generate(args.out, config, force=args.force)
    print(f"Wrote {args.layout} data to '{out}'.")
    print(f"  dev data:  {synthetic.synthetic_data_root(out, args.layout, 'dev')}")
    if args.eval:
        print(f"  eval data: {synthetic.synthetic_data_root(out, args.layout, 'eval')}")
        print(f"  ground truth: {Path(out) / 'ground_truth'}")


# ----------------------------------------------------------------------
# train
# ----------------------------------------------------------------------


def cmd_systems(args):
    from asd_keras.backends import BACKENDS
    from asd_keras.extractors import EXTRACTORS
    from asd_keras.systems import SYSTEMS
    from asd_keras.systems import describe_system
    from asd_keras.utils.registry import defaults

    def show(key, value):
        return f"    {key} = {value!r}"

    for name in args.names or SYSTEMS.names():
        cls = SYSTEMS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"system {name}: {doc[0] if doc else ''}")
        for key, value in describe_system(cls).items():
            print(show(key, value))
    if args.names:
        return
    for kind, registry in (("extractor", EXTRACTORS), ("backend", BACKENDS)):
        for name in registry.names():
            cls = registry.get(name)
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{kind} {name}: {doc[0] if doc else ''}")
            for key, value in defaults(cls).items():
                print(show(key, value))


def cmd_train(args):
    from asd_keras import runs
    from asd_keras.utils.io import check_output_dir
    from asd_keras.utils.io import folder_lock

    _split_data_and_overrides(args)
    system = runs.new_system(args.system, args.config, args.overrides,
                             flags={"--epochs": args.epochs})
    args.resumable = system.resumable
    score_data = _score_data(args)
    # An earlier `train --score-out` may have stopped after its run was written.
    finished = (score_data is not None and not args.force
                and runs.is_finished_run(args.out, system, args.data))
    if not finished:
        check_output_dir(args.out, args.force, what="run folder")
    # Held until the command ends: a second command writing the same run (or
    # its checkpoints) is refused instead of mixing or replacing them.
    with folder_lock(args.out, what="run folder"):
        if finished:
            print(f"The run in '{args.out}' is finished (same system, data and "
                  "configuration); scoring it.")
            system, _ = runs.load_run(args.out)
        else:
            table = runs.read_tables(args.data, args.layout, args.machines)
            runs.train_run(system, table, args.data, args.out, args.force, args.verbose)
            print(f"Run written to '{args.out}'.")
        if score_data is not None:
            scores = runs.score_run(system, args.out, score_data, args.score_out,
                                    args.layout, args.force)
            print(f"Scored {len(scores)} clips; submission files in '{args.score_out}'.")


def _score_data(args):
    """The data `train --score-out` scores after training (None without
    --score-out); checks the score folder before anything is trained."""
    from asd_keras import runs
    from asd_keras.utils.io import check_output_dir

    if args.score_out is None:
        if args.score_data is not None:
            raise ValueError(f"--score-data {args.score_data!r} needs --score-out, the "
                             "folder of the submission files.")
        return None
    runs.check_not_inside(args.score_out, args.out, "score folder")
    check_output_dir(args.score_out, args.force, what="score folder")
    if args.score_data is not None:
        return args.score_data
    if len(args.data) > 1:
        raise ValueError(f"--score-out with several --data folders {args.data}: name the "
                         "one whose test clips are scored with --score-data.")
    return args.data[0]


def _checked_out(args, what):
    """`--out` of a verb that reads the run `--run`: not inside the run, and
    free (or `--force`)."""
    from asd_keras import runs
    from asd_keras.utils.io import check_output_dir

    runs.check_not_inside(args.out, args.run, what)
    check_output_dir(args.out, args.force, what=what)


def cmd_score(args):
    from asd_keras import runs

    _checked_out(args, "score folder")
    system, record = runs.load_run(args.run)
    scores = runs.score_run(system, args.run, args.data, args.out, args.layout, args.force,
                            trained_layout=record.get("layout"))
    print(f"Scored {len(scores)} clips; submission files in '{args.out}'.")


def cmd_evaluate(args):
    from asd_keras import runs
    from asd_keras.utils.io import check_output_dir

    table, layout = runs.read_scores_and_labels(args.scores, args.data, args.ground_truth,
                                                args.year)
    # The inputs are valid; the output folder must be too before any result.
    out = Path(args.out) if args.out else Path(args.scores) / "evaluation"
    check_output_dir(out, args.force, what="evaluation folder")
    result, official = runs.evaluate_scores(table, layout, out, args.force)
    _print_table(result)
    print("DCASE 2020 has no single official score; see the per-ID values and machine-"
          "type averages above." if official is None else f"official score: {official:.6f}")
    print(f"Results written to '{out}'.")


def cmd_probe(args):
    from asd_keras.runners.probe import probe_run

    args.out = args.out or str(Path(args.run)) + "-probe"
    _checked_out(args, "probe folder")
    result = probe_run(args.run, args.data, args.out, args.layout, args.seed, args.force)
    _print_table(result)
    print(f"Probe results written to '{args.out}' (an evaluation of the representation: "
          "it uses test labels, so no submission file is written).")


def cmd_export(args):
    from asd_keras import runs

    _checked_out(args, "export folder")
    manifest = runs.export_run(args.run, args.out, args.force)
    names = manifest.get("inputs") or ["waveform", "machine_type"] + (
        ["section"] if "sections" in manifest else [])
    two_channels = len(manifest.get("waveform_shape") or []) == 3
    waveform = ("waveform [clips, samples, 2 (near, far)] float32" if two_channels
                else "waveform [clips, samples] float32")
    inputs = ", ".join([waveform] + [f"{name} string" for name in names[1:]])
    print(f"SavedModel written to '{args.out}' (signature serving_default: "
          f"{inputs} -> anomaly_score, decision).")


# ----------------------------------------------------------------------
# study
# ----------------------------------------------------------------------


def cmd_study(args):
    from asd_keras.config import load_config_file
    from asd_keras.config import parse_overrides
    from asd_keras.runners.study import run_study

    _split_data_and_overrides(args)
    spec = load_config_file(args.config)
    if not isinstance(spec, dict) or "conditions" not in spec:
        raise ValueError(
            f"'{args.config}' must hold a 'conditions' list (and optionally a "
            "'base' mapping); see experiments/angular_margin/config.yaml.")
    base = dict(spec.get("base") or {})
    base.update(parse_overrides(args.overrides, flags={"--epochs": args.epochs}))
    conditions = spec["conditions"]
    if args.only:
        conditions = [c for c in conditions if c["name"] in args.only]
        if not conditions:
            raise ValueError(f"--only {args.only} matches no condition of '{args.config}'.")
    summary = run_study(conditions, base, args.data, args.out, trials=args.trials,
                        force=args.force, definition=args.definition,
                        keep_models=args.keep_models)
    print((Path(args.out) / "results.md").read_text())
    print(f"Study of {len(summary)} conditions written to '{args.out}'.")


# ----------------------------------------------------------------------
# search
# ----------------------------------------------------------------------


def cmd_search(args):
    from asd_keras.config import load_config_file
    from asd_keras.config import parse_overrides
    from asd_keras.runners.search import run_search

    _split_data_and_overrides(args)
    spec = load_config_file(args.space)
    if "space" not in spec:
        raise ValueError(
            f"'{args.space}' must hold a 'space' mapping of key -> list of values (and "
            "optionally 'base'); see experiments/gan_detectors/search_table3.yaml.")
    base = dict(spec.get("base") or {})
    base.update(parse_overrides(args.overrides))
    run_search(args.system, spec["space"], args.data, args.out, mode=args.mode,
               budget=args.budget, protocol=args.protocol, base=base, seed=args.seed,
               force=args.force)
    print((Path(args.out) / "best.md").read_text())
    print(f"Search written to '{args.out}'; train the selection with "
          f"--config {Path(args.out) / 'best_config.yaml'}.")


# ----------------------------------------------------------------------
# proxy-report
# ----------------------------------------------------------------------


def cmd_proxy_report(args):
    from asd_keras.runners.proxy_report import write_proxy_report

    out = write_proxy_report(args.study, args.out, force=args.force,
                             projections=not args.no_projections)
    print((out / "table7.md").read_text())
    print(f"Proxy-task report written to '{out}' (report.md, table7.csv, figures).")


# ----------------------------------------------------------------------
# download
# ----------------------------------------------------------------------


def cmd_download(args):
    from asd_keras.data.download import ZENODO_URL
    from asd_keras.data.download import download

    target = download(
        args.year,
        args.split,
        args.out,
        machine_types=args.machines,
        base_url=args.base_url or ZENODO_URL,
        keep_archives=args.keep_archives,
    )
    print(f"DCASE {args.year} {args.split} data in '{target}'.")


# ----------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------


def cmd_convert(args):
    from asd_keras.config import parse_overrides
    from asd_keras.models.converters import convert_checkpoint
    from asd_keras.models.converters import dropped_report
    from asd_keras.utils.io import check_output_dir

    check_output_dir(args.out, args.force, what="preset folder")
    metadata = convert_checkpoint(args.encoder, args.checkpoint, args.out, force=args.force,
                                  trust_pickle=args.trust_pickle,
                                  overrides=parse_overrides(args.overrides))
    layout = f", {metadata['layout']} layout" if "layout" in metadata else ""
    print(f"Converted {metadata['keys']} keys of '{args.checkpoint}' ({args.encoder}{layout}) "
          f"into the preset '{args.out}'. Use it with "
          f"'asd-keras train --system frozen_encoder encoder={args.encoder} "
          f"preset={args.out} ...'.")
    if metadata.get("dropped"):
        print(dropped_report(metadata) + ".")


# ----------------------------------------------------------------------


def build_parser():
    from asd_keras.data.layouts import LAYOUTS
    from asd_keras.data.layouts import PLAIN_LAYOUT

    readable = tuple(LAYOUTS) + (PLAIN_LAYOUT,)  # plain: the user's own recordings
    parser = argparse.ArgumentParser(
        prog="asd-keras",
        description="Machine-sound anomaly detection (DCASE Task 2) in Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic DCASE-format data")
    p.add_argument("--out", required=True)
    p.add_argument("--layout", choices=LAYOUTS, default="dcase2022")
    p.add_argument("--machines", nargs="+",
                   help="machine types: fan pump gearbox valve slider bearing "
                        "ToyCar ToyTrain (default: the first five; the DCASE "
                        "2022 set is fan gearbox bearing slider ToyCar "
                        "ToyTrain valve)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--train", type=int, default=50,
                   help="source-domain training clips per section")
    p.add_argument("--target-train", type=int, default=3,
                   help="target-domain training clips per section")
    p.add_argument("--test", type=int, default=10,
                   help="test clips per section, domain and label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background-gain", type=float, default=0.5,
                   help="factory background level relative to the machine in the "
                        "source domain (the target domain's is 1.6 times larger)")
    p.add_argument("--eval", action="store_true",
                   help="also write eval data and ground truth")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("systems", help="list systems, extractors and backends with "
                                         "their configuration keys and defaults")
    p.add_argument("names", nargs="*", help="only these systems (default: all)")
    p.set_defaults(func=cmd_systems)

    p = sub.add_parser("probe", help="linear-probe and global-Mahalanobis AUCs of a "
                                       "run's features (uses test labels)")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="data with training and labelled test clips")
    p.add_argument("--out", help="result folder (default: RUN-probe)")
    p.add_argument("--layout", choices=readable)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("train", help="train a system")
    p.add_argument("--system", required=True)
    p.add_argument("--data", required=True, nargs="+",
                   help="folder(s) of machine-type folders; several train together")
    p.add_argument("--out", required=True, help="new run folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--config", help="YAML file of configuration keys")
    p.add_argument("--layout", choices=readable)
    p.add_argument("--machines", nargs="+")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--score-out", help="after training, score the test clips of "
                   "--score-data in this process and write the submission files here "
                   "(as 'score' would)")
    p.add_argument("--score-data", help="data folder --score-out scores (default: the "
                   "one --data folder)")
    p.add_argument("--force", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="write official submission files")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--layout", choices=readable)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="official AUC/pAUC and score")
    p.add_argument("--scores", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--data", help="dev data folder (labels in names)")
    group.add_argument("--ground-truth", help="official ground-truth folder")
    p.add_argument("--year", type=int)
    p.add_argument("--out", help="default: SCORES/evaluation")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a SavedModel: waveform -> score")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("study", help="train and evaluate conditions over trials")
    p.add_argument("--config", required=True, help="YAML with 'base' and 'conditions'")
    p.add_argument("--data", required=True, nargs="+", help="labelled dev data folder(s)")
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--epochs", type=int)
    p.add_argument("--only", nargs="+", help="run only these condition names")
    p.add_argument("--definition", choices=("official", "simple"), default="official",
                   help="domain AUC definition (see evaluation.metrics.domain_metrics)")
    p.add_argument("--keep-models", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_study, resumable=True)

    p = sub.add_parser("search", help="hyper-parameter search (grid or random), resumable")
    p.add_argument("--system", required=True)
    p.add_argument("--space", required=True, help="YAML with 'space' (key -> list) and 'base'")
    p.add_argument("--data", required=True, nargs="+", help="labelled dev data folder(s)")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=("grid", "random"), default="random")
    p.add_argument("--budget", type=int, default=20, help="points in random mode")
    p.add_argument("--protocol", choices=("test", "holdout"), default="holdout",
                   help="test: the paper's selection on test AUC (optimistic); "
                        "holdout: select on half of the test clips, report the other half")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_search, resumable=True)

    p = sub.add_parser("proxy-report", help="three-stage report of proxy-task "
                                              "study folders (Table VII, Figs. 2-5)")
    p.add_argument("--study", required=True, nargs="+",
                   help="study folder(s) with study.json, rows.csv, configurations.csv")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--force", action="store_true")
    p.add_argument("--no-projections", action="store_true",
                   help="skip Fig. 5 (UMAP and t-SNE take tens of seconds)")
    p.set_defaults(func=cmd_proxy_report)

    p = sub.add_parser("convert", help="convert an official BEATs or EAT checkpoint into "
                       "a Keras preset folder")
    p.add_argument("--encoder", required=True, choices=("beats", "eat"))
    p.add_argument("--checkpoint", required=True,
                   help=".pt/.pth/.ckpt (read without torch), .safetensors or .npz state dict")
    p.add_argument("--out", required=True, help="preset folder to write")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read pickled objects other than tensors and containers (fairseq "
                        "configs, enums) as plain values; their code is never imported or run")
    p.add_argument("--force", action="store_true")
    p.add_argument("overrides", nargs="*", help="encoder arguments the file cannot tell, "
                   "key=value (e.g. num_heads=16)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("download", help="download DCASE data from Zenodo")
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--split", choices=("dev", "eval"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--machines", nargs="+")
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--keep-archives", action="store_true")
    p.set_defaults(func=cmd_download, resumable=True)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, so that staged folders and caches are cleaned up.

    A subclass of KeyboardInterrupt: whatever survives Ctrl-C (checkpoints,
    `staged_dir`'s clean-up) survives a `kill` the same way.
    """


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def _handle_sigterm():
    """Installs the SIGTERM handler; returns the previous one (None if not installed)."""
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave the signal alone
        return None
    # None: a handler set outside Python, which cannot be put back.
    return signal.SIG_DFL if previous is None else previous


class _StdoutHandler(logging.Handler):
    """Prints the library's log messages to the current `sys.stdout` (looked
    up at each message, so redirections apply)."""

    def emit(self, record):
        print(self.format(record), file=sys.stdout, flush=True)


def _configure_logging():
    """The library reports progress through `logging`; the program shows it."""
    logger = logging.getLogger("asd_keras")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler(logging.INFO))
    logger.setLevel(logging.INFO)


def _exit_now(code):
    """Ends the program with `code` at once, after flushing its output.

    CPython marks a KeyboardInterrupt as unhandled when it passes through
    code run by `PyRun_String` (some of TensorFlow's import does), even if
    `main` catches it later, and then kills itself with SIGINT at exit:
    2 of 17 Ctrl-Cs about 3 s after the start ended in exit code -2 instead
    of 130, after the one-line message. Everything the command wrote is
    already cleaned up by then (the `finally` blocks ran while the interrupt
    unwound), so nothing is lost by skipping the interpreter's shutdown.
    """
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv=None):
    """Runs the program; returns its exit code.

    Exit codes: 0 success, 2 bad input (the message names it), 130 Ctrl-C
    and 143 SIGTERM, both after cleaning up (`train` of a resumable system,
    `study`, `search` and `download` resume when the command is repeated).
    """
    import signal
    import threading

    from asd_keras.utils.io import DiskFullError

    try:
        # Imports pandas and the layouts (seconds): a Ctrl-C here is an
        # interrupt like any other, not an import traceback.
        parser = build_parser()
    except KeyboardInterrupt:
        print("\nasd-keras: interrupted.", file=sys.stderr)
        return 128 + signal.SIGINT
    args, unknown = parser.parse_known_args(argv)
    # argparse fills the `key=value` positional before the options, so
    # overrides written after them (`train ... --out RUN epochs=3`) come back
    # unrecognised; they are overrides all the same.
    stray = [item for item in unknown if item.startswith("-") or "=" not in item]
    if stray or (unknown and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or unknown)}")
    if unknown:
        args.overrides = list(args.overrides) + unknown
    _configure_logging()
    previous = _handle_sigterm()
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError,
            DiskFullError) as error:
        print(f"asd-keras {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from asd_keras.utils.io import is_disk_full

        if is_disk_full(error):  # a full disk outside the writes that name their folder
            print(f"asd-keras {args.command}: error: no space left on the disk "
                  f"({str(error).splitlines()[0]}). Free some space, or write to another "
                  "disk, then run the same command again.", file=sys.stderr)
            return 2
        # A corrupt clip surfaces deep inside tf.data as a TensorFlow error.
        from asd_keras.data.audio import nonfinite_audio_error

        clear = nonfinite_audio_error(error)
        if clear is None:
            raise
        print(f"asd-keras {args.command}: error: {clear}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        resumable = getattr(args, "resumable", False)
        hint = "; rerun the same command to resume" if resumable else ""
        print(f"\nasd-keras {args.command}: {'terminated' if terminated else 'interrupted'}"
              f"{hint}.", file=sys.stderr)
        code = 128 + (signal.SIGTERM if terminated else signal.SIGINT)
        if argv is None and threading.current_thread() is threading.main_thread():
            _exit_now(code)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if argv is None and threading.current_thread() is threading.main_thread():
            # The program is over (run as `asd-keras`): a Ctrl-C while Python
            # and TensorFlow shut down would only turn its exit code into
            # "killed by SIGINT" (-2), so it is ignored.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    if argv is None and threading.current_thread() is threading.main_thread():
        # Everything is written and closed: skip the interpreter's tear-down
        # of TensorFlow's runtime (about 2 s after a training run).
        logging.shutdown()
        _exit_now(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
