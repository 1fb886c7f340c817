"""The handlers of the `asd-keras` verbs: each reads its arguments, calls
the runs layer (`asd_keras.runs`) or a runner, and prints what it wrote."""

from pathlib import Path

from asd_keras.config import parse_overrides
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import folder_lock
from asd_keras.utils.registry import defaults


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
    """`asd-keras synth`: writes synthetic clips in a DCASE layout.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.data import synthetic  # lazy: pandas, scipy: 1.4 s (fast --help)

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
    """`asd-keras systems`: every system, extractor and backend, with keys and defaults.

    Args:
        args: the parsed `argparse.Namespace` of the verb (`names` limits the systems).
    """
    from asd_keras.backends import BACKENDS  # lazy: TensorFlow (fast --help)
    from asd_keras.extractors import EXTRACTORS  # lazy: TensorFlow (fast --help)
    from asd_keras.systems import SYSTEMS  # lazy: TensorFlow (fast --help)
    from asd_keras.systems import describe_system  # lazy: TensorFlow (fast --help)

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
    """`asd-keras train`: trains a system into a new (resumable) run folder.

    With `--score-out` it then scores the test clips in the same process.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras import runs  # lazy: TensorFlow (fast --help)
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
    from asd_keras import runs  # lazy: TensorFlow (fast --help)
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
    from asd_keras import runs  # lazy: TensorFlow (fast --help)
    runs.check_not_inside(args.out, args.run, what)
    check_output_dir(args.out, args.force, what=what)


def cmd_score(args):
    """`asd-keras score`: writes the official submission files of a trained run.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras import runs  # lazy: TensorFlow (fast --help)

    _checked_out(args, "score folder")
    system, record = runs.load_run(args.run)
    scores = runs.score_run(system, args.run, args.data, args.out, args.layout, args.force,
                            trained_layout=record.get("layout"))
    print(f"Scored {len(scores)} clips; submission files in '{args.out}'.")


def cmd_evaluate(args):
    """`asd-keras evaluate`: official AUC, pAUC and score of a score folder.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras import runs  # lazy: TensorFlow (fast --help)
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
    """`asd-keras probe`: linear-probe and global-Mahalanobis AUCs of a run's features.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.runners.probe import probe_run  # lazy: TensorFlow (fast --help)

    args.out = args.out or str(Path(args.run)) + "-probe"
    _checked_out(args, "probe folder")
    result = probe_run(args.run, args.data, args.out, args.layout, args.seed, args.force)
    _print_table(result)
    print(f"Probe results written to '{args.out}' (an evaluation of the representation: "
          "it uses test labels, so no submission file is written).")


def cmd_export(args):
    """`asd-keras export`: writes a run's SavedModel (waveform to anomaly score) and prints its inputs.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras import runs  # lazy: TensorFlow (fast --help)

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
    """`asd-keras study`: trains and evaluates conditions over trials (resumable).

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.runners.study import load_study_spec  # lazy: TensorFlow (fast --help)
    from asd_keras.runners.study import run_study  # lazy: TensorFlow (fast --help)

    _split_data_and_overrides(args)
    conditions, base = load_study_spec(args.config, only=args.only)
    base.update(parse_overrides(args.overrides, flags={"--epochs": args.epochs}))
    summary = run_study(conditions, base, args.data, args.out, trials=args.trials,
                        force=args.force, definition=args.definition,
                        keep_models=args.keep_models)
    print((Path(args.out) / "results.md").read_text())
    print(f"Study of {len(summary)} conditions written to '{args.out}'.")


# ----------------------------------------------------------------------
# search
# ----------------------------------------------------------------------


def cmd_search(args):
    """`asd-keras search`: hyper-parameter search on a KerasTuner oracle (resumable).

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.runners.search import run_search  # lazy: TensorFlow (fast --help)
    from asd_keras.runners.search_space import load_search_spec  # lazy: KerasTuner (fast --help)

    _split_data_and_overrides(args)
    space, base = load_search_spec(args.space)
    base.update(parse_overrides(args.overrides))
    run_search(args.system, space, args.data, args.out, oracle=args.oracle,
               budget=args.budget, protocol=args.protocol, base=base, seed=args.seed,
               force=args.force)
    print((Path(args.out) / "best.md").read_text())
    print(f"Search written to '{args.out}'; train the selection with "
          f"--config {Path(args.out) / 'best_config.yaml'}.")


# ----------------------------------------------------------------------
# proxy-report
# ----------------------------------------------------------------------


def cmd_proxy_report(args):
    """`asd-keras proxy-report`: the three-stage report of a proxy-task study.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.studies.proxy import write_proxy_report  # lazy: TensorFlow (fast --help)

    out = write_proxy_report(args.study, args.out, force=args.force,
                             projections=not args.no_projections)
    print((out / "table7.md").read_text())
    print(f"Proxy-task report written to '{out}' (report.md, table7.csv, figures).")


# ----------------------------------------------------------------------
# download
# ----------------------------------------------------------------------


def cmd_download(args):
    """`asd-keras download`: the official DCASE archives from Zenodo, checked, unzipped.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.data.download import ZENODO_URL  # lazy: tqdm and urllib (fast --help)
    from asd_keras.data.download import download  # lazy: tqdm and urllib (fast --help)

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
    """`asd-keras convert`: an official BEATs or EAT checkpoint into a preset folder.

    Args:
        args: the parsed `argparse.Namespace` of the verb.
    """
    from asd_keras.models.converters import convert_checkpoint  # lazy: TensorFlow (fast --help)
    from asd_keras.models.converters import dropped_report  # lazy: TensorFlow (fast --help)
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
