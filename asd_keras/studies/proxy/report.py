"""The three-stage report of Shin & Lee's proxy-task study (paper §VI-D).

`write_proxy_report` reads one or more study folders written by the proxy
study runner (`study.json`, `rows.csv`, `configurations.csv` and
`features/`) and writes, into one report folder:

- `table7.csv`, `table7.md`: Spearman's rho of each family's Table VII proxy
  metric with each ASD AUC over the family's configurations, with the exact
  p-value, the paper's marks and a verdict;
- `fig2_in_domain_lp.png`, `fig3_out_domain_lp.png`, `fig4_md.png`: the
  normalised proxy performance against each ASD AUC (Figs. 2-4);
- `fig5_projections.png`: UMAP and t-SNE of two families' test features
  (Fig. 5);
- `report.md`: Stage 1 (training health: saturation and failure), Stage 2
  (separability and compactness), Stage 3 (correlation verdicts) and the
  per-configuration tables in the layout of Tables II-VI.

Nothing family-specific is built in: every family, its proxy metrics and
their directions come from `study.json`. Only the health thresholds have
defaults named after metrics (macro-F1 saturation, uniformity collapse),
and they are arguments.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.studies.proxy import checks as study_checks
from asd_keras.studies.proxy.checks import FIX_STUDY
from asd_keras.studies.proxy.reading import load_studies
from asd_keras.studies.proxy.schema import ASD_COLUMNS
from asd_keras.studies.proxy.schema import FIG5
from asd_keras.studies.proxy.schema import FIGURES
from asd_keras.studies.proxy.verdicts import DEFAULT_COLLAPSE_LEVELS
from asd_keras.studies.proxy.verdicts import DEFAULT_SATURATION_LEVELS
from asd_keras.studies.proxy.verdicts import correlation_verdicts
from asd_keras.studies.proxy.verdicts import training_health
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import check_output_dir
from asd_keras.utils.io import staged_dir
from asd_keras.visualisation.proxy import ASD_LABELS
from asd_keras.visualisation.proxy import plot_feature_projections
from asd_keras.visualisation.proxy import plot_proxy_vs_asd


# ----------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------


def _pct(value):
    return "n/a" if not np.isfinite(value) else f"{100 * value:.2f}"


def _num(value):
    return "n/a" if not np.isfinite(value) else f"{value:.4g}"


def _markdown(records, columns):
    # Cells are formatted strings already; tabulate would reparse "66.00" as 66.
    return pd.DataFrame(records, columns=columns).to_markdown(index=False,
                                                              disable_numparse=True)


def table7_markdown(table7):
    """Table VII laid out as in the paper: one row per family."""
    records = []
    for name, part in table7.groupby("family", sort=False):
        first = part.iloc[0]
        arrow = "↓" if first["lower_is_better"] else "↑"
        record = {"Proxy task": first["label"], "proxy metric": f"{first['proxy']} ({arrow})"}
        for _, cell in part.iterrows():
            record[ASD_LABELS[cell["asd_metric"]]] = (
                "n/a" if not np.isfinite(cell["rho"]) else f"{cell['rho']:.2f}{cell['mark']}")
        records.append(record)
    columns = ["Proxy task", "proxy metric", *(ASD_LABELS[c] for c in ASD_COLUMNS)]
    return (
        "Spearman's rho between each family's proxy metric and its ASD AUCs over the "
        "family's configurations (exact two-sided p: * p < 0.05, ** p < 0.01, "
        "*** p < 0.001). For lower-is-better (↓) metrics a negative rho means better "
        "proxy goes with better ASD.\n\n" + _markdown(records, columns) + "\n")


def _stage1_markdown(health, thresholds):
    records = [{
        "family": h["label"], "proxy metric": h["proxy"], "n": h["n"],
        "range": f"{_num(h['min'])} to {_num(h['max'])}",
        "relative spread": ("n/a" if not np.isfinite(h["relative_spread"])
                            else f"{100 * h['relative_spread']:.3g} %"),
        "saturation": h["saturation"] or "no",
        "collapse": "; ".join(h["collapsed"]) or "no",
        "loss did not fall": "; ".join(h["stalled"]) or (
            "n/a (not trained)" if h["untrained"] and not h["stalled"] else "no"),
        "stage 1": h["status"],
    } for h in health.values()]
    columns = ["family", "proxy metric", "n", "range", "relative spread", "saturation",
               "collapse", "loss did not fall", "stage 1"]
    return thresholds + "\n\n" + _markdown(records, columns) + "\n"


def _stage2_markdown(configurations, families):
    records = []
    for family in families:
        part = configurations[configurations["family"] == family["name"]]
        for asd in ASD_COLUMNS:
            finite = part[np.isfinite(part[asd])]
            v = finite[asd].to_numpy(np.float64)
            records.append({
                "family": family["label"], "ASD metric": ASD_LABELS[asd],
                **{f"{k} %": _pct(f(v)) if v.size else "n/a"
                   for k, f in (("mean", np.mean), ("min", np.min), ("max", np.max))},
                "best configuration": (finite["configuration"].iloc[np.argmax(v)]
                                       if v.size else "n/a")})
    return _markdown(records, ["family", "ASD metric", "mean %", "min %", "max %",
                               "best configuration"]) + "\n"


def _configuration_markdown(configurations, family):
    part = configurations[configurations["family"] == family["name"]]
    records = []
    for _, row in part.iterrows():
        record = {"configuration": row["configuration"]}
        for metric in family["proxy_metrics"]:
            arrow = "↓" if family["lower_is_better"][metric] else "↑"
            record[f"{metric} ({arrow})"] = _num(row[metric])
        for asd in ASD_COLUMNS:
            record[f"{ASD_LABELS[asd]} %"] = _pct(row[asd])
        records.append(record)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True) + "\n"


# ----------------------------------------------------------------------
# Fig. 5 panels
# ----------------------------------------------------------------------


def _load_features(path):
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("features", "label", "md_auc") if k not in archive.files]
        if missing:
            raise ValueError(f"'{path}' lacks the array(s) {missing}; it has "
                             f"{archive.files}. {FIX_STUDY}.")
        return (archive["features"], archive["label"].astype(int),
                float(archive["md_auc"]))


def feature_panels(families, configurations, machine_type, count=2):
    """Fig. 5 panels of the first `count` families with a features file.

    For each family the configuration with the best mean MD AUC that has a
    file `features/<family>/<configuration>/<machine_type>.npz` is used.

    Returns:
        list of (title, features, labels, md_auc, path).
    """
    panels = []
    for family in families:
        if machine_type is None or len(panels) == count:
            break
        part = configurations[configurations["family"] == family["name"]]
        order = part.sort_values("md_auc", ascending=False, na_position="last")
        for configuration in order["configuration"]:
            path = (Path(family["study"]) / "features" / family["name"] / configuration
                    / f"{machine_type}.npz")
            if path.is_file():
                features, labels, md_auc = _load_features(path)
                panels.append((f"{family['label']} ({configuration})", features, labels,
                               md_auc, path))
                break
    return panels


# ----------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------


def _sign(metric, families, lower, higher, unknown):
    """The comparison sign of a threshold in the metric's direction."""
    directions = {f["lower_is_better"][metric] for f in families
                  if metric in f["proxy_metrics"]}
    if len(directions) != 1:  # not reported, or reported both ways
        return unknown
    return lower if directions.pop() else higher


def _thresholds_text(families, saturation_levels, saturation_spread, collapse_levels,
                     loss_ratio):
    """The Stage 1 thresholds as a sentence of the report."""
    saturated = ", ".join(
        f"{m} {_sign(m, families, '≤', '≥', 'at or better than')} {v:g}"
        for m, v in saturation_levels.items()) or "(no level given)"
    collapsed = ", ".join(
        f"{m} {_sign(m, families, '>', '<', 'worse than')} {v:g}"
        for m, v in collapse_levels.items()) or "(no level given)"
    return (
        f"Thresholds: **saturated** when every configuration reaches {saturated}, or "
        "when the Table VII proxy metric's spread (max − min) is below "
        f"{100 * saturation_spread:g} % of its mean magnitude; **failed** when a "
        f"configuration has {collapsed} (collapse; configuration means), or when a "
        f"model's training loss did not fall (last_loss > {loss_ratio:g} × first_loss, "
        f"i.e. a drop below {100 * (1 - loss_ratio):.3g} % of |first_loss|; each model "
        "of rows.csv). A family that is saturated or failed gets no Stage 3 verdict.")


def _check_out(out, studies):
    """`out` must not be a study folder or hold one: --force would delete it."""
    resolved = Path(out).resolve()
    for study in studies:
        folder = study["folder"].resolve()
        if resolved == folder or resolved in folder.parents:
            raise ValueError(
                f"The report folder '{out}' is (or holds) the study folder '{folder}'; "
                "--force would delete the study. Choose another folder.")


def write_proxy_report(study_dirs, out, force=False, saturation_levels=None,
                       saturation_spread=0.01, collapse_levels=None, loss_ratio=0.95,
                       seed=0, projections=True):
    """Writes the proxy-task report of one or more study folders.

    Args:
        study_dirs: str/Path or list of them; study folders (e.g. the ae,
            classification and contrastive studies). A family may appear in
            only one of them.
        out: str or Path, the report folder (written atomically).
        force: bool. Replace an existing report folder.
        saturation_levels:
            Stage 1 thresholds, see `training_health`.
        saturation_spread: see `saturation_levels`.
        collapse_levels: see `saturation_levels`.
        loss_ratio: see `saturation_levels`.
        seed: int. Random state of UMAP and t-SNE (Fig. 5), and of the
            Spearman test if a family has more than 10 configurations.
        projections: bool. Draw Fig. 5; False skips UMAP and t-SNE (tens
            of seconds in a new process), and the report says so.

    Returns:
        Path of the report folder.

    Raises:
        FileNotFoundError: if a study folder lacks study.json or rows.csv.
        FileExistsError: if `out` holds files and `force` is False.
        ValueError: on malformed study files, a family in two study folders,
            or `out` being a study folder.
    """
    if not 0 < loss_ratio <= 1:
        raise ValueError(f"loss_ratio must be in (0, 1]; received {loss_ratio!r}.")
    if saturation_levels is None:
        saturation_levels = DEFAULT_SATURATION_LEVELS
    if collapse_levels is None:
        collapse_levels = DEFAULT_COLLAPSE_LEVELS
    studies, families, configurations = load_studies(study_dirs)
    _check_out(out, studies)
    # Before any work: the figures take tens of seconds (UMAP compiles).
    check_output_dir(out, force=force, what="report folder")
    rows = pd.concat([s["rows"] for s in studies], ignore_index=True)
    health = {f["name"]: training_health(f, configurations, rows, saturation_levels,
                                         saturation_spread, collapse_levels, loss_ratio)
              for f in families}
    table7 = correlation_verdicts(configurations, families, health, seed=seed)
    machine_types = [s["spec"].get("figure_machine_type") for s in studies]
    machine_type = next((m for m in machine_types if m), None)
    panels = feature_panels(families, configurations, machine_type) if projections else []

    thresholds = _thresholds_text(families, saturation_levels, saturation_spread,
                                  collapse_levels, loss_ratio)
    machine_note = ""
    if len({m for m in machine_types if m}) > 1:
        machine_note = (f" The study folders name different figure machine types "
                        f"{machine_types}; the first, {machine_type!r}, is used.")

    with staged_dir(out, force=force, what="report folder") as stage:
        atomic_write_dataframe(stage / "table7.csv", table7)
        atomic_write_text(stage / "table7.md", table7_markdown(table7))
        for asd, name in FIGURES.items():
            plot_proxy_vs_asd(configurations, families, asd, stage / name,
                              correlations=table7)
        if not projections:
            fig5 = "Fig. 5 not drawn (`projections=False`, `--no-projections`)."
        elif len(panels) >= 2:
            plot_feature_projections([p[:4] for p in panels], stage / FIG5, seed=seed)
            fig5 = (f"`{FIG5}`: UMAP and t-SNE of the {machine_type} test features "
                    "(trial 0) of " + " and ".join(
                        f"{title}, MD AUC {_pct(md)} %" for title, _, _, md, _ in panels)
                    + "." + machine_note)
        else:
            fig5 = (f"Fig. 5 skipped: it needs features of two families for the figure "
                    f"machine type ({machine_type!r}); found "
                    f"{[p[0] for p in panels] or 'none'}. The study writes them to "
                    "STUDY/features/<family>/<configuration>/<machine_type>.npz."
                    + machine_note)
        atomic_write_text(stage / "report.md", _report_text(
            studies, families, configurations, health, table7, thresholds, fig5))
    return Path(out)


def _report_text(studies, families, configurations, health, table7, thresholds, fig5):
    lines = ["# Proxy-task report (Shin & Lee, three-stage verification)", "",
             "Studies:", ""]
    for s in studies:
        names = ", ".join(f["name"] for f in s["spec"]["families"])
        note = " (configurations.csv missing: means computed from rows.csv)" \
            if s["aggregated"] else ""
        lines.append(f"- `{s['folder']}`: {s['spec'].get('name', '?')}, "
                     f"{s['spec'].get('trials', '?')} trial(s), families {names}{note}")
    lines += ["", "ASD metrics are AUCs in %: the mean over a machine type's test "
              "sections, then the arithmetic mean over machine types and trials. "
              + study_checks.left_out_text(studies), "",
              "## Stage 1: training health", "", _stage1_markdown(health, thresholds),
              "## Stage 2: separability (LP) and compactness (MD)", "",
              "Over each family's configurations.", "",
              _stage2_markdown(configurations, families),
              "## Stage 3: correlation (Table VII)", "",
              "Verdicts: **aligned** (p < 0.05, better proxy with better ASD), "
              "**opposed** (p < 0.05, the other way), **not aligned** (p ≥ 0.05 "
              "although n allows p < 0.05), **inconclusive for n = k** (the smallest "
              "attainable exact p for n is ≥ 0.05, e.g. n ≤ 4; a metric is constant; "
              "or the family did not pass Stage 1).", ""]
    records = [{"family": r["label"], "proxy": r["proxy"],
                "ASD metric": ASD_LABELS[r["asd_metric"]], "n": r["n"],
                "ρ": "n/a" if not np.isfinite(r["rho"]) else f"{r['rho']:.2f}{r['mark']}",
                "p": "n/a" if not np.isfinite(r["p"]) else f"{r['p']:.3g}",
                "verdict": r["verdict"]} for _, r in table7.iterrows()]
    lines += [_markdown(records, ["family", "proxy", "ASD metric", "n", "ρ", "p",
                                  "verdict"]), "", table7_markdown(table7),
              "Figures: " + ", ".join(f"`{name}` ({ASD_LABELS[asd]})"
                                      for asd, name in FIGURES.items())
              + ": normalised proxy performance (min-max within each family, 1 = best "
              "configuration) against the ASD AUC; dashed lines are linear trends of "
              "the families with p < 0.05.", "", fig5, "",
              "## Per-configuration results (Tables II-VI)", ""]
    for family in families:
        lines += [f"### {family['label']} (`{family['name']}`)", "",
                  _configuration_markdown(configurations, family)]
    return "\n".join(lines)
