"""`benchmarks/smoke_full.py`'s records: a configuration measured once is not
measured again without --force, and the table holds every record. (The
children themselves run in tests/test_gpu_check.py's smoke.)"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import smoke_full  # noqa: E402


def _record(name, **values):
    return {"name": name, "status": "ok", "params": 1000, "trace_s": 1.5, "s_per_step": 0.25,
            "peak_rss_mb": 900.0, "wall_s": 30.0, "machine": "test CPU", **values}


def test_measured_configurations_are_kept_and_tabled(tmp_path, capsys):
    records = tmp_path / "smoke_full_tiny_records"
    records.mkdir()
    for name in ("dense_ae_dcase2022", "ganomaly"):
        (records / f"{name}.json").write_text(json.dumps(_record(name)))
    # A record that is not JSON counts as missing, not as a crash.
    (records / "egbad.json").write_text("{not json")

    assert smoke_full.main(["--smoke", "--out", str(tmp_path), "ganomaly"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 configurations already measured" in out
    table = (tmp_path / "smoke_full.md").read_text()
    # Every recorded configuration, in the configurations' order, with the
    # sum of their wall times in the header.
    assert table.index("| dense_ae_dcase2022 |") < table.index("| ganomaly |")
    assert "egbad" not in table and "2 configurations, 1.0 min" in table
    assert "| 1,000 | 1.5 | 0.25 | 900 |" in table
    csv = (tmp_path / "smoke_full.csv").read_text().splitlines()
    assert csv[0].startswith("name,family,system,params") and len(csv) == 3

