"""The argument parser of the `asd-keras` program: one sub-command per verb,
each bound to its handler in `asd_keras.cli.commands`."""

import argparse

from asd_keras import __version__
from asd_keras.cli.commands import cmd_convert
from asd_keras.cli.commands import cmd_download
from asd_keras.cli.commands import cmd_evaluate
from asd_keras.cli.commands import cmd_export
from asd_keras.cli.commands import cmd_probe
from asd_keras.cli.commands import cmd_proxy_report
from asd_keras.cli.commands import cmd_score
from asd_keras.cli.commands import cmd_search
from asd_keras.cli.commands import cmd_study
from asd_keras.cli.commands import cmd_synth
from asd_keras.cli.commands import cmd_systems
from asd_keras.cli.commands import cmd_train


def build_parser():
    """The `asd-keras` argument parser, one sub-command per verb.

    Importing it needs neither TensorFlow nor Keras: each verb's handler imports
    what it needs when it runs, so `--help` stays fast.

    Returns:
        An `argparse.ArgumentParser` whose parsed namespace holds `func`, the
        verb's handler.
    """
    from asd_keras.data.dcase_naming import LAYOUTS  # lazy: pandas, inside main's Ctrl-C guard
    from asd_keras.data.plain_layout import PLAIN_LAYOUT  # lazy: pandas, inside main's Ctrl-C guard

    readable = tuple(LAYOUTS) + (PLAIN_LAYOUT,)  # plain: the user's own recordings
    parser = argparse.ArgumentParser(
        prog="asd-keras",
        description="Machine-sound anomaly detection (DCASE Task 2) in Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"asd-keras {__version__}")
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
    p.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras training output: 0 none, 1 progress bar, 2 one line per "
                        "epoch (default: 1 on a terminal, 2 when the output is a file "
                        "or a pipe, so logs hold no progress-bar updates)")
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

    p = sub.add_parser("search", help="hyper-parameter search on KerasTuner oracles (grid, "
                       "random, Bayesian, Hyperband), resumable")
    p.add_argument("--system", required=True)
    p.add_argument("--space", required=True, help="YAML with 'space' (key -> list of values "
                   "or {min, max, step, sampling} range) and 'base'")
    p.add_argument("--data", required=True, nargs="+", help="labelled dev data folder(s)")
    p.add_argument("--out", required=True)
    p.add_argument("--oracle", "--mode", dest="oracle",
                   choices=("grid", "random", "bayesian", "hyperband"), default="random",
                   help="KerasTuner oracle proposing the points (--mode: its former name); "
                        "hyperband tunes the other keys and spends 'epochs'")
    p.add_argument("--budget", type=int, help="at most this many trials (default: every "
                   "grid point, 20 random or bayesian trials, one hyperband iteration); "
                   "a larger budget continues a finished search")
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
