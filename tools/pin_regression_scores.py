"""Trains the regression cases, commits their runs and pins their scores.

Usage (from the repository root):
    python tools/pin_regression_scores.py [--force] [--cases NAME ...] [--rescore]

Each case of tests/regression_cases.py is trained once into
tests/data/regression/<case>/ and scored on the tiny dataset; the scores go to
tests/data/regression_scores.json. `--cases` re-pins only the named cases
and keeps the others. `--rescore` keeps the committed runs and pins what
they score now: for an intended change of the scoring, without adding new
weights to the repository. The tests then score the committed runs
(inference only), so the pins hold on every CPU.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402

from asd_keras.utils.io import atomic_write_text  # noqa: E402
from asd_keras.utils.runs import environment_summary  # noqa: E402
from tests.regression_cases import CASES  # noqa: E402
from tests.regression_cases import RUNS  # noqa: E402
from tests.regression_cases import make_data  # noqa: E402
from tests.regression_cases import score_run  # noqa: E402
from tests.regression_cases import train_case  # noqa: E402

OUT = ROOT / "tests" / "data" / "regression_scores.json"


def strip_optimizer_state(run):
    """Re-saves every `.keras` file of `run` without its optimizer state.

    Scoring never reads the optimizer's moments, which are two thirds of an
    Adam-trained file; dropping them keeps the committed weights small.
    """
    for path in sorted(Path(run).rglob("*.keras")):
        model = keras.saving.load_model(path, compile=False)
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        model.save(tmp)
        tmp.replace(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace the pinned files")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        help="re-pin only these cases (default: all)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the committed runs instead of training new ones")
    args = parser.parse_args()
    if OUT.exists() and not args.force:
        raise SystemExit(f"{OUT} exists; pass --force to re-pin (and say why in the commit).")
    names = args.cases or list(CASES)
    old = json.loads(OUT.read_text()) if OUT.exists() and args.cases else {"scores": {}}
    scores = dict(old["scores"])
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        for name in names:
            run = Path(tmp) / "runs" / name
            if args.rescore:
                shutil.copytree(RUNS / name, run)  # scoring writes nothing there
            else:
                train_case(name, data, run)
                strip_optimizer_state(run)
            scores[name] = score_run(run, data, Path(tmp) / "scores" / name)
            if not args.rescore:
                shutil.rmtree(RUNS / name, ignore_errors=True)
                shutil.copytree(run, RUNS / name)
    environment = environment_summary()
    pinned_with = {k: environment[k] for k in ("git_commit", "platform", "cpu", "onednn",
                                               "packages") if k in environment}
    record = {"pinned_with": pinned_with, "scores": {k: scores[k] for k in sorted(CASES)}}
    if args.cases:
        record["pinned_with"] = old.get("pinned_with", pinned_with)
        record["repinned"] = {**old.get("repinned", {}),
                              **{name: pinned_with for name in names}}
    atomic_write_text(OUT, json.dumps(record, indent=1, sort_keys=True))
    print(f"Pinned {sum(map(len, scores.values()))} scores of {len(scores)} cases in {OUT}; "
          f"runs in {RUNS}.")


if __name__ == "__main__":
    main()
