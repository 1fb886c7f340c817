"""The installable package: its version, and the wheel in a venv of its own.

`test_the_wheel_installs_and_runs_without_the_source_tree` builds the wheel
with uv, installs it into a new virtual environment (its dependencies
resolved from pyproject.toml's ranges, held to requirements.txt's pins so
that uv's cache serves them), and from a folder outside the source tree
runs `asd-keras --version`, `systems`, `synth`, and a tiny `train` ->
`score` -> `export`. It takes a few minutes and may reach the package
index, so it has its own marker and target (`make test-package`) and is
not part of `make test`.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import asd_keras
from asd_keras.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_package_s(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"asd-keras {asd_keras.__version__}"


def test_pyproject_declares_every_pinned_runtime_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(d) for d in project["dependencies"]}
    pinned = {_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    extras = project["optional-dependencies"]
    assert {"torch", "parity", "docs", "dev"} <= set(extras)
    tools = {_name(d) for group in ("docs", "dev") for d in extras[group]}
    # The test and documentation tools are pinned and declared as extras;
    # execnet and the transitive pins of umap-learn, keras-hub and
    # keras-tuner are not the library's own.
    assert pinned - declared - tools == {"execnet", "pynndescent", "numba", "llvmlite",
                                         "tensorflow-text", "kt-legacy"}
    assert declared <= pinned
    assert tools <= pinned


def _name(requirement):
    for mark in "<>=[; ":
        requirement = requirement.split(mark)[0]
    return requirement.strip().lower().replace("_", "-")


def _run(cmd, cwd, env=None, timeout=900):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.package
def test_the_wheel_installs_and_runs_without_the_source_tree(tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed; `make install` installs it into .venv")
    dist = tmp_path / "dist"
    _run([uv, "build", "--wheel", "--out-dir", dist, ROOT], cwd=tmp_path)
    wheels = list(dist.glob("asd_keras-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    _run([uv, "venv", "--python", sys.executable, venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "--python", python, "--compile-bytecode",
          "--constraint", ROOT / "requirements.txt", wheels[0]], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = venv / "bin" / "asd-keras"
    version = _run([cli, "--version"], cwd=work, env=env)
    assert version.strip() == f"asd-keras {asd_keras.__version__}"
    where = _run([python, "-c", "import asd_keras; print(asd_keras.__file__)"], cwd=work,
                 env=env)
    assert str(venv) in where and str(ROOT) not in where
    assert "wilkinghoff" in _run([cli, "systems"], cwd=work, env=env)
    _run([cli, "synth", "--out", "data", "--layout", "dcase2023", "--seconds", "1",
          "--machines", "fan", "--train", "4", "--test", "2"], cwd=work, env=env)
    _run([cli, "train", "--system", "logmel_stats", "--data", "data/dev_data/raw", "--out",
          "run"], cwd=work, env=env)
    _run([cli, "score", "--run", "run", "--data", "data/dev_data/raw", "--out", "scores"],
         cwd=work, env=env)
    _run([cli, "export", "--run", "run", "--out", "export"], cwd=work, env=env)
    assert list((work / "scores").glob("anomaly_score_*.csv"))
    assert (work / "export" / "saved_model.pb").is_file()
