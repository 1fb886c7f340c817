"""Runs one family group of Shin & Lee's proxy-task study (Tables II, III, V).

Thin wrapper of `asd_keras.studies.proxy.study.run_proxy_study`: trains
every configuration of the study configuration `--config` on the normal
training clips of `--data` (DCASE 2022 `dev_data` and `eval_data`, whose
training clips are the additional-training sections), and writes the study
folder `--out` (rows.csv, configurations.csv/.md, study.json, features/).
`asd-keras proxy-report --study OUT ...` then writes Table VII, Figs. 2-5
and the three-stage report. Interrupted studies resume; `--force` restarts.

Usage:
    python experiments/proxy_tasks/run.py --config experiments/proxy_tasks/ae/config.yaml \
        --data DEV EVAL --out experiments/proxy_tasks/ae/results [key=value ...]
"""

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

# As the asd-keras program: TensorFlow's start-up notices are not shown
# (TF_CPP_MIN_LOG_LEVEL=0 shows them); the study's trial processes, which
# run this module again, start quietly too.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from asd_keras.utils.native_logs import start_tensorflow  # noqa: E402

start_tensorflow()
from asd_keras.config import parse_overrides  # noqa: E402
from asd_keras.studies.proxy import run_proxy_study  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="study configuration (YAML)")
    parser.add_argument("--data", nargs="+", required=True,
                        help="data folder(s): DCASE 2022 dev_data [eval_data]")
    parser.add_argument("--out", required=True, help="study folder")
    parser.add_argument("--trials", type=int, default=1, help="trials per configuration")
    parser.add_argument("--families", nargs="+", help="run only these families")
    parser.add_argument("--machine-types", nargs="+",
                        help="train and evaluate only these machine types")
    parser.add_argument("--keep-models", action="store_true")
    parser.add_argument("--force", action="store_true", help="discard a finished study")
    parser.add_argument("--in-process", action="store_true",
                        help="train every trial in this process instead of a fresh one "
                             "each (the peak memory then grows from trial to trial)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every configuration last (e.g. epochs=20)")
    args = parser.parse_args(argv)
    # `--data DIR key=value`: nargs="+" also takes the overrides.
    args.overrides += [d for d in args.data if "=" in d and not Path(d).exists()]
    args.data = [d for d in args.data if d not in args.overrides]
    if args.machine_types:
        args.overrides += [m for m in args.machine_types if "=" in m]
        args.machine_types = [m for m in args.machine_types if "=" not in m]
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        summary = run_proxy_study(args.config, args.data, args.out, trials=args.trials,
                                  force=args.force, overrides=parse_overrides(args.overrides),
                                  keep_models=args.keep_models, families=args.families,
                                  machine_types=args.machine_types,
                                  isolate_trials=not args.in_process)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The unfinished trial's staging folder is gone; finished trials stay.
        print(f"Interrupted; run the same command again to resume the study in "
              f"{args.out}.", file=sys.stderr)
        return 130
    print(summary.to_markdown(index=False, floatfmt=".4g"))
    print(f"Study written to {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    # As the asd-keras program: a Ctrl-C during shutdown is ignored, and the
    # exit skips the interpreter's tear-down, where CPython would turn an
    # interrupt that passed through TensorFlow's start-up into "killed by
    # SIGINT" (exit -2 after a double Ctrl-C) instead of this exit code.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
