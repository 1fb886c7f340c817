"""The generated pages of the documentation site (tools/mkdocs_hooks.py).

`make docs` builds the whole site strictly; these tests check, in a second,
that what the hooks generate covers the code and the data it is made from.
"""

import argparse
import importlib.util
from pathlib import Path

import yaml

from asd_keras.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_has_every_verb_and_every_option():
    parser = build_parser()
    page = _hooks().cli_reference_markdown(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 10
    for verb, verb_parser in sub.choices.items():
        assert f"\n## {verb}\n" in page
        assert f"usage: asd-keras {verb}" in page
        for action in verb_parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                assert f"`{option}`" in page, (verb, option)


def test_performance_page_names_the_machine_of_each_csv(tmp_path):
    hooks = _hooks()
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "bench_x.csv").write_text(
        "name,clips_per_s,machine,measured\n"
        "tf.data,498.8,\"Some CPU, 2 cores\",2026-12-01 10:00\n"
        "librosa,66.3,\"Some CPU, 2 cores\",2026-12-01 10:05\n")
    hooks.ROOT = tmp_path
    page = hooks.performance_markdown(folder)
    assert "Machine: Some CPU, 2 cores." in page
    assert "2026-12-01 10:00 to 2026-12-01 10:05" in page
    assert "| tf.data | 499 |" in page


def test_performance_page_of_the_committed_csvs():
    page = _hooks().performance_markdown()
    assert "benchmarks/results/smoke_full.csv" in page
    assert "Machine: AMD EPYC, 2 cores" in page
    assert "| wilkinghoff_10s |" in page


def test_api_pages_cover_every_top_level_package():
    names = _hooks().api_packages()
    for path in (ROOT / "asd_keras").iterdir():
        if path.is_dir() and (path / "__init__.py").exists():
            assert f"asd_keras.{path.name}" in names


def test_every_page_of_the_nav_exists_or_is_generated():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)
    generated = {"performance.md", "reference/cli.md"}

    def pages(items):
        for item in items:
            for value in item.values():
                yield from (pages(value) if isinstance(value, list) else [value])

    listed = list(pages(config["nav"]))
    assert "papers/wilkinghoff.md" in listed
    for page in listed:
        assert page in generated or (ROOT / "docs" / page).exists(), page
