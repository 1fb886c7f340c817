"""MkDocs hooks of the documentation site (`mkdocs.yml`, `make docs`).

At build time, without network, they add pages that are generated rather
than written by hand, so they cannot drift from the code and the data:

- `reference/cli.md`: every verb of the `asd-keras` argument parser
  (`asd_keras.cli.parser.build_parser`), its usage, help and arguments;
- `reference/api/<package>.md`: one mkdocstrings page per top-level package
  of `asd_keras`, rendered from the docstrings (griffe, static analysis);
- `performance.md`: every benchmark CSV under `benchmarks/results/`, with
  the machine and date recorded in its rows;

and they publish the committed experiment figures (`experiments/*/results*/
*.png`) at their repository paths, so the pages link them without a copy.
"""

import argparse
import csv
import functools
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asd_keras"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"
USAGE_WIDTH = 88

# Columns shown for a known CSV (the rest stay in the file); any other CSV
# is shown whole.
SHOWN_COLUMNS = {
    "smoke_full": [
        ("name", "configuration"), ("family", "family"), ("params", "params"),
        ("batch", "batch"), ("trace_s", "trace s"), ("s_per_step", "s/step"),
        ("peak_rss_mb", "peak RSS MB"), ("train_gflop_per_step", "GFLOP/step"),
        ("projected_cpu_h", "FULL run, this CPU (h)"),
        ("projected_gpu_h", "FULL run, 1 GPU (h)"), ("status", "status"),
    ],
}
# How each benchmark CSV was made, for the page.
COMMANDS = {
    "smoke_full": "python benchmarks/smoke_full.py --force  (make smoke-full SMOKE=--force)",
}


# -- CLI reference ------------------------------------------------------------

def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _argument_row(action):
    if action.option_strings:
        name = ", ".join(f"`{option}`" for option in action.option_strings)
    else:
        name = f"`{action.dest}`"
    if action.nargs == 0:
        value = ""
    elif action.choices:
        value = " \\| ".join(f"`{choice}`" for choice in action.choices)
    else:
        value = f"`{action.metavar or action.dest.upper()}`"
        if action.nargs in ("+", "*"):
            value += " …"
    default = ""
    if action.required:
        default = "required"
    elif action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
        default = f"`{action.default}`"
    return f"| {name} | {value} | {default} | {_cell(action.help or '')} |"


def cli_reference_markdown(parser):
    """Markdown of an argparse parser with sub-commands: one section per verb.

    Args:
        parser: an `argparse.ArgumentParser` with one level of sub-parsers.

    Returns:
        The page's markdown.
    """
    width = functools.partial(argparse.HelpFormatter, width=USAGE_WIDTH)
    parser.formatter_class = width
    lines = [
        "# CLI reference",
        "",
        "Generated from `asd_keras.cli.parser.build_parser` when the site is built.",
        "Each verb is also `python -m asd_keras VERB --help`.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
        "| verb | what it does |",
        "|---|---|",
    ]
    commands = _subcommands(parser)
    lines += [f"| [`{name}`](#{name}) | {_cell(help_)} |" for name, _, help_ in commands]
    for name, sub, help_ in commands:
        sub.formatter_class = width
        lines += ["", f"## {name}", "", (help_ or "").capitalize() + ".", "",
                  "```text", sub.format_usage().rstrip(), "```", ""]
        # As `--help`: neither the help option nor arguments hidden from it.
        actions = [a for a in sub._actions
                   if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]
        if actions:
            lines += ["| argument | value | default | help |", "|---|---|---|---|"]
            lines += [_argument_row(action) for action in actions]
    return "\n".join(lines) + "\n"


def _cli_page():
    sys.path.insert(0, str(ROOT))
    from asd_keras.cli.parser import build_parser  # the checkout's, not an installed copy
    return cli_reference_markdown(build_parser())


# -- API reference -------------------------------------------------------------

def api_packages(package=PACKAGE):
    """Top-level packages and modules of `asd_keras`, each one API page.

    Args:
        package: the package folder.

    Returns:
        Sorted dotted names, e.g. `["asd_keras.backends", ..., "asd_keras.utils"]`.
    """
    names = []
    for path in sorted(package.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            names.append(f"{package.name}.{path.name}")
        elif path.suffix == ".py":
            names.append(f"{package.name}.{path.stem}")
    return names


def api_page_markdown(name):
    """One API page: the package's docstring, then each module's members."""
    return (f"# `{name}`\n\n::: {name}\n    options:\n      show_submodules: true\n")


# -- Performance page ----------------------------------------------------------

def _number(value):
    try:
        number = float(value)
    except ValueError:
        return value
    if number != number:  # NaN
        return "-"
    if number.is_integer() and abs(number) >= 1:
        return f"{int(number):,}"
    if abs(number) >= 100:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def benchmark_section(path):
    """Markdown of one benchmark CSV: the machine(s) and dates its rows record, then the table.

    Args:
        path: a CSV file with a header row; columns `machine` and `measured`,
            when present, name the host and date of each row.

    Returns:
        The section's markdown.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stem = path.stem
    lines = [f"## `{path.relative_to(ROOT)}`", ""]
    if stem in COMMANDS:
        lines += [f"Command: `{COMMANDS[stem]}`", ""]
    machines = sorted({row.get("machine") or "not recorded" for row in rows})
    dates = sorted(row["measured"] for row in rows if row.get("measured"))
    lines.append("Machine: " + "; ".join(machines) + ".")
    if dates:
        lines.append(f"Measured: {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")
                     + f"; {len(rows)} rows.")
    lines.append("")
    columns = SHOWN_COLUMNS.get(stem) or [(c, c) for c in (rows[0] if rows else [])]
    columns = [(key, title) for key, title in columns if not rows or key in rows[0]]
    lines.append("| " + " | ".join(title for _, title in columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_cell(_number(row.get(key, "")) or "-")
                                        for key, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def performance_markdown(folder=BENCHMARK_RESULTS):
    """The performance page: every CSV of `folder`, as tables with their machines."""
    paths = sorted(folder.glob("*.csv"))
    lines = [
        "# Benchmark results",
        "",
        "Generated from the committed benchmark CSVs when the site is built; "
        "each section names the machine its rows were measured on. Timings "
        "depend on that machine. How the measurements were made, what they "
        "led to and the figures of single benchmark runs: "
        "[Performance notes](performance-notes.md).",
        "",
    ]
    if not paths:
        lines.append(f"No benchmark CSV in `{folder.relative_to(ROOT)}` yet.")
    lines += [benchmark_section(path) for path in paths]
    return "\n".join(lines)


# -- MkDocs hook ---------------------------------------------------------------

def _generated(config, uri, content):
    return File.generated(config, uri, content=content)


def on_files(files, config):
    """Adds the generated pages and the experiment figures to the site."""
    files.append(_generated(config, "reference/cli.md", _cli_page()))
    files.append(_generated(config, "performance.md", performance_markdown()))
    for name in api_packages():
        uri = f"reference/api/{name.split('.', 1)[1]}.md"
        files.append(_generated(config, uri, api_page_markdown(name)))
    for figure in sorted(ROOT.glob("experiments/**/results*/*.png")):
        uri = figure.relative_to(ROOT).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files


def on_config(config):
    """Fills the nav's "API reference" section with one page per package."""
    pages = [{name: f"reference/api/{name.split('.', 1)[1]}.md"} for name in api_packages()]
    for item in config["nav"] or []:
        if isinstance(item, dict) and "API reference" in item:
            item["API reference"] = pages
    return config
