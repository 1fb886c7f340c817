"""Pins every system's scores on the tiny regression dataset.

Usage (from the repository root):
    python tools/pin_regression_scores.py [--force] [--cases NAME ...]
Writes tests/data/regression_scores.json (see tests/regression_cases.py);
`--cases` re-pins only the named cases and keeps the others.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asd_keras.utils.io import atomic_write_text  # noqa: E402
from asd_keras.utils.runs import environment_summary  # noqa: E402
from tests.regression_cases import CASES  # noqa: E402
from tests.regression_cases import make_data  # noqa: E402
from tests.regression_cases import run_case  # noqa: E402

OUT = ROOT / "tests" / "data" / "regression_scores.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace the pinned file")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        help="re-pin only these cases (default: all)")
    args = parser.parse_args()
    if OUT.exists() and not args.force:
        raise SystemExit(f"{OUT} exists; pass --force to re-pin (and say why in the commit).")
    names = args.cases or list(CASES)
    old = json.loads(OUT.read_text()) if OUT.exists() and args.cases else {"scores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        scores = {**old["scores"],
                  **{name: run_case(name, data, Path(tmp) / "runs") for name in names}}
    environment = environment_summary()
    pinned_with = {k: environment[k] for k in ("git_commit", "platform", "onednn", "packages")}
    record = {"pinned_with": pinned_with, "scores": scores}
    if args.cases:
        record["pinned_with"] = old.get("pinned_with", pinned_with)
        record["repinned"] = {**old.get("repinned", {}),
                              **{name: pinned_with for name in names}}
    atomic_write_text(OUT, json.dumps(record, indent=1, sort_keys=True))
    print(f"Pinned {sum(map(len, scores.values()))} scores of {len(scores)} cases in {OUT}.")


if __name__ == "__main__":
    main()
