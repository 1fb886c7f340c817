"""The proxy-task report (Shin & Lee §VI) on hand-made study folders: Table
VII verdicts, Stage 1 flags, figures, the `proxy-report` verb and its errors.
No model is trained."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from asd_keras.cli import main
from asd_keras.studies import proxy as proxy_report
from asd_keras.studies.proxy import write_proxy_report
from asd_keras.visualisation.proxy import normalise_proxy

ASD = ["lp_in_domain_auc", "lp_out_domain_auc", "md_auc"]
PROXIES = ["test_mae", "macro_f1", "alignment", "uniformity"]
MACHINES = ("fan", "valve")


def _family(name, label, proxy, directions, configurations):
    return {"name": name, "label": label, "proxy_metric": proxy,
            "proxy_metrics": list(directions), "lower_is_better": directions,
            "configurations": list(configurations)}


def _rows(family, table):
    """Two machine types per configuration, the ASD AUCs at mean +- 0.01 so
    that the configuration means are the values of `table`.

    Args:
        table: {configuration: {column: value}}; first_loss 1.0 and
            last_loss 0.5 unless given.
    """
    rows = []
    for configuration, values in table.items():
        for sign, machine_type in zip((1, -1), MACHINES):
            row = {"family": family, "configuration": configuration,
                   "machine_type": machine_type, "trial": 0,
                   **dict.fromkeys(PROXIES, np.nan), "first_loss": 1.0,
                   "last_loss": 0.5, "min_loss": 0.5, "epochs": 3}
            row.update({k: v + sign * 0.01 if k in ASD else v for k, v in values.items()})
            row["min_loss"] = min(row["first_loss"], row["last_loss"])
            rows.append(row)
    return rows


def _asd(in_domain, out_domain, md):
    return {"lp_in_domain_auc": in_domain, "lp_out_domain_auc": out_domain, "md_auc": md}


def _write_study(folder, name, families, rows, features=(), configurations=True):
    folder.mkdir(parents=True)
    spec = {"name": name, "trials": 1, "aggregation": "mean",
            "figure_machine_type": "fan", "families": families}
    (folder / "study.json").write_text(json.dumps(spec))
    frame = pd.DataFrame(rows)
    frame.to_csv(folder / "rows.csv", index=False)
    if configurations:
        columns = ASD + PROXIES + ["first_loss", "last_loss", "min_loss", "epochs"]
        groups = frame.groupby(["family", "configuration"], sort=False)
        means = groups[columns].mean().reset_index()
        means["n_rows"] = groups.size().to_numpy()
        means.to_csv(folder / "configurations.csv", index=False)
    rng = np.random.default_rng(0)
    for family, configuration, md_auc in features:
        labels = np.repeat([0, 1], 15)
        # Anomalous clips shifted, so both projections have structure.
        points = rng.normal(size=(30, 6)) + 2.0 * labels[:, None]
        path = folder / "features" / family / configuration / "fan.npz"
        path.parent.mkdir(parents=True)
        np.savez(path, features=points.astype(np.float32), label=labels,
                 section=np.array(["00"] * 30), domain=np.array(["source"] * 30),
                 md_auc=np.float64(md_auc))
    return folder


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    base = tmp_path_factory.mktemp("proxy")
    confs = [f"c{i}" for i in range(5)]
    # AE: MAE falls as in-domain LP rises (aligned, rho = -1), MD falls
    # (opposed, rho = +1), out-domain LP ranks 1 5 2 4 3 (rho = -0.3).
    ae = {c: {"test_mae": mae, **_asd(lp_in, lp_out, md)} for c, mae, lp_in, lp_out, md in zip(
        confs, [5e-3, 4e-3, 3e-3, 2e-3, 1e-3], [0.60, 0.62, 0.64, 0.66, 0.68],
        [0.60, 0.64, 0.61, 0.63, 0.62], [0.70, 0.68, 0.66, 0.64, 0.62])}
    ae_dir = _write_study(
        base / "ae", "proxy_ae",
        [_family("ae", "AutoEncoder", "test_mae", {"test_mae": True}, confs)],
        _rows("ae", ae), features=[("ae", "c0", 0.6415), ("ae", "c1", 0.6)])
    # Classification: CE saturated (every F1 >= 0.97) though monotone with
    # the AUCs; ArcFace constant.
    ce = {c: {"macro_f1": f1, **_asd(a, a, a)} for c, f1, a in zip(
        confs, [0.972, 0.975, 0.98, 0.985, 0.99], [0.55, 0.56, 0.57, 0.58, 0.59])}
    arc = {c: {"macro_f1": 0.98, **_asd(a, a - 0.05, a)} for c, a in zip(
        confs, [0.55, 0.57, 0.56, 0.59, 0.58])}
    f1 = {"macro_f1": False}
    classification_dir = _write_study(
        base / "classification", "proxy_classification",
        [_family("classification_ce", "Classification (CE)", "macro_f1", f1, confs),
         _family("classification_arcface", "Classification (ArcFace)", "macro_f1", f1,
                 confs)],
        _rows("classification_ce", ce) + _rows("classification_arcface", arc))
    # Contrastive: SimCLR healthy but only n = 4; SimSiam collapses (s3, s4)
    # and s0's loss did not fall. No configurations.csv: aggregated here.
    contrastive = {"uniformity": True, "alignment": True}
    simclr = {f"r{i}": {"uniformity": u, "alignment": 0.2, **_asd(a, a, a)}
              for i, (u, a) in enumerate(zip([-0.9, -0.8, -0.7, -0.6],
                                             [0.60, 0.58, 0.56, 0.54]))}
    simsiam = {f"s{i}": {"uniformity": u, "alignment": 0.1 + 0.01 * i, **_asd(a, a, a)}
               for i, (u, a) in enumerate(zip([-0.8, -0.6, -0.4, -0.2, -0.1],
                                              [0.60, 0.58, 0.56, 0.54, 0.52]))}
    simsiam["s0"].update(first_loss=-0.5, last_loss=-0.51)
    contrastive_dir = _write_study(
        base / "contrastive", "proxy_contrastive",
        [_family("simclr", "Contrastive (SimCLR)", "uniformity", contrastive, list(simclr)),
         _family("simsiam", "Contrastive (SimSiam)", "uniformity", contrastive,
                 list(simsiam))],
        _rows("simclr", simclr) + _rows("simsiam", simsiam),
        features=[("simclr", "r1", 0.55)], configurations=False)
    return base, [ae_dir, classification_dir, contrastive_dir]


@pytest.fixture(scope="module")
def report(studies):
    base, folders = studies
    return write_proxy_report(folders, base / "report")


def _verdicts(report):
    table = pd.read_csv(report / "table7.csv")
    return {(r.family, r.asd_metric): r for r in table.itertuples()}


def test_every_file_is_written_and_pngs_are_images(report):
    import matplotlib.image

    names = ["table7.csv", "table7.md", "report.md", "fig2_in_domain_lp.png",
             "fig3_out_domain_lp.png", "fig4_md.png", "fig5_projections.png"]
    assert sorted(p.name for p in report.iterdir()) == sorted(names)
    for name in names[3:]:
        image = matplotlib.image.imread(report / name)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0  # not a blank canvas
    assert not list(report.parent.glob("report.partial-*"))


def test_table7_rho_p_and_verdicts(report):
    cells = _verdicts(report)
    aligned = cells[("ae", "lp_in_domain_auc")]
    assert aligned.rho == pytest.approx(-1.0) and aligned.rho_oriented == pytest.approx(1.0)
    assert aligned.p == pytest.approx(2 / 120) and aligned.mark == "*"
    assert aligned.verdict == "aligned" and aligned.relationship == "positive"
    opposed = cells[("ae", "md_auc")]
    assert opposed.rho == pytest.approx(1.0) and opposed.verdict == "opposed"
    assert cells[("ae", "lp_out_domain_auc")].rho == pytest.approx(-0.3)
    assert cells[("ae", "lp_out_domain_auc")].verdict == "not aligned"
    constant = cells[("classification_arcface", "md_auc")]
    assert np.isnan(constant.rho)
    assert constant.verdict == "inconclusive for n = 5 (constant proxy metric)"
    small = cells[("simclr", "md_auc")]
    assert small.rho == pytest.approx(-1.0)  # computed, but p >= 2/24 whatever happens
    assert small.verdict == "inconclusive for n = 4 (smallest attainable p = 0.0833)"
    saturated = cells[("classification_ce", "md_auc")]
    assert saturated.rho == pytest.approx(1.0) and saturated.p < 0.05
    assert saturated.verdict == "inconclusive for n = 5 (stage 1: saturated)"
    assert cells[("simsiam", "md_auc")].verdict == "inconclusive for n = 5 (stage 1: failed)"
    wide = (report / "table7.md").read_text()
    assert "| AutoEncoder" in wide and "-1.00*" in wide and "n/a" in wide


def test_report_sections_and_stage1_flags(report):
    text = (report / "report.md").read_text()
    for heading in ("## Stage 1: training health", "## Stage 2:", "## Stage 3:",
                    "## Per-configuration results", "### AutoEncoder (`ae`)"):
        assert heading in text
    stage1 = text.split("## Stage 1")[1].split("## Stage 2")[0]
    assert "macro_f1 ≥ 0.97" in stage1 and "uniformity > -0.3" in stage1
    assert "0.95 × first_loss" in stage1
    rows = {line.split("|")[1].strip(): line for line in stage1.splitlines()
            if line.startswith("| ") and "---" not in line}
    assert "every configuration has macro_f1 ≥ 0.97" in rows["Classification (CE)"]
    assert rows["Classification (CE)"].rstrip(" |").endswith("saturated")
    assert "macro_f1 is constant" in rows["Classification (ArcFace)"]
    simsiam = rows["Contrastive (SimSiam)"]
    assert "s3 (uniformity -0.2); s4 (uniformity -0.1)" in simsiam
    assert "s0 (2 of 2 models)" in simsiam and simsiam.rstrip(" |").endswith("failed")
    assert rows["AutoEncoder"].rstrip(" |").endswith("ok")
    assert rows["Contrastive (SimCLR)"].rstrip(" |").endswith("ok")
    # Stage 2: best MD configuration of the AE, in percent.
    assert ("| AutoEncoder              | MD            | 66.00    | 62.00   | 70.00"
            "   | c0") in text
    # Fig. 5 takes the first two families with features (not the CE family,
    # which has none), the AE's best-MD configuration.
    assert "AutoEncoder (c0), MD AUC 64.15 %" in text
    assert "Contrastive (SimCLR) (r1)" in text
    assert "configurations.csv missing" in text  # the contrastive study


def test_training_health_thresholds_are_arguments(studies):
    _, folders = studies
    _, families, configurations = proxy_report.load_studies(folders)
    rows = pd.concat([proxy_report.read_study(f)["rows"] for f in folders])
    simclr = next(f for f in families if f["name"] == "simclr")
    assert proxy_report.training_health(simclr, configurations, rows)["status"] == "ok"
    strict = proxy_report.training_health(simclr, configurations, rows,
                                          collapse_levels={"uniformity": -0.75})
    assert strict["collapsed"] == ["r2 (uniformity -0.7)", "r3 (uniformity -0.6)"]
    # A loss that fell by half still "did not fall" if 60 % is demanded.
    assert proxy_report.training_health(simclr, configurations, rows,
                                        loss_ratio=0.4)["status"] == "failed"


def test_normalisation_orients_lower_is_better_up():
    np.testing.assert_allclose(normalise_proxy([1.0, 2.0, 3.0], True), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(normalise_proxy([1.0, 2.0, 3.0], True, better_up=False),
                               [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalise_proxy([1.0, 2.0, 3.0], False), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalise_proxy([0.98, 0.98], False), [0.5, 0.5])


def test_cli_writes_and_refuses_to_overwrite(studies, tmp_path, capsys):
    _, folders = studies
    out = tmp_path / "cli_report"
    args = ["proxy-report", "--study", str(folders[0]), str(folders[1]), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"written to '{out}'" in printed and "| AutoEncoder" in printed
    text = (out / "report.md").read_text()
    # Only the AE has features among these two studies.
    assert "Fig. 5 skipped" in text and not (out / "fig5_projections.png").exists()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "report.md").read_text() == text
    assert main(args + ["--force"]) == 0


def test_a_family_in_two_folders_is_refused(studies, tmp_path):
    _, folders = studies
    copy = shutil.copytree(folders[0], tmp_path / "ae_again")
    with pytest.raises(ValueError, match="Family 'ae' appears in both") as error:
        write_proxy_report([folders[0], copy], tmp_path / "out")
    assert str(folders[0]) in str(error.value) and str(copy) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_study_folders_are_named(studies, tmp_path, capsys):
    _, folders = studies
    with pytest.raises(FileNotFoundError, match="study.json' is missing"):
        write_proxy_report([tmp_path], tmp_path / "out")
    broken = shutil.copytree(folders[1], tmp_path / "broken")
    (broken / "rows.csv").unlink()
    assert main(["proxy-report", "--study", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert f"'{broken / 'rows.csv'}' is missing" in capsys.readouterr().err
    broken = shutil.copytree(folders[1], tmp_path / "no_md")
    rows = pd.read_csv(broken / "rows.csv")
    rows.drop(columns="md_auc").to_csv(broken / "rows.csv", index=False)
    with pytest.raises(ValueError, match=r"rows.csv' lacks the column\(s\) \['md_auc'\]"):
        write_proxy_report(broken, tmp_path / "out")
    percent = shutil.copytree(folders[1], tmp_path / "percent")
    rows = pd.read_csv(percent / "configurations.csv")
    rows["md_auc"] *= 100
    rows.to_csv(percent / "configurations.csv", index=False)
    with pytest.raises(ValueError, match="fractions, not percent"):
        write_proxy_report(percent, tmp_path / "out")
    with pytest.raises(ValueError, match="would delete the study"):
        write_proxy_report(folders[1], folders[1].parent, force=True)


def _damaged_copy(folder, target, rows=None, configurations=None, spec=None):
    """A copy of a study folder with rows.csv, configurations.csv or
    study.json changed by the given functions."""
    copy = shutil.copytree(folder, target)
    for name, change in (("rows.csv", rows), ("configurations.csv", configurations)):
        if change is not None:
            frame = change(pd.read_csv(copy / name))
            frame.to_csv(copy / name, index=False)
    if spec is not None:
        record = json.loads((copy / "study.json").read_text())
        (copy / "study.json").write_text(json.dumps(spec(record)))
    return copy


def test_damaged_rows_are_refused_naming_the_file_and_the_rows(studies, tmp_path, capsys):
    """A truncated or edited rows.csv used to give the same Table VII."""
    _, folders = studies
    ae = folders[0]
    fix = "Delete study.json and run the proxy study again with the same settings"
    # The last row dropped, configurations.csv intact: the report's case.
    cut = _damaged_copy(ae, tmp_path / "cut", rows=lambda f: f.iloc[:-1])
    with pytest.raises(ValueError, match=r"rows.csv' lacks 1 row\(s\) \(study.json: 1 "
                                         r"trial\(s\) of the machine types \['fan', 'valve'\] "
                                         r"per configuration\): ae/c4 valve trial 0\. The file "
                                         f"is incomplete or edited. {fix}"):
        proxy_report.read_study(cut)
    assert main(["proxy-report", "--study", str(cut), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"error: '{cut / 'rows.csv'}' lacks 1 row(s)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # A configuration without rows, and in configurations.csv neither.
    gone = _damaged_copy(ae, tmp_path / "gone", rows=lambda f: f[f["configuration"] != "c2"],
                         configurations=lambda f: f[f["configuration"] != "c2"])
    with pytest.raises(ValueError, match="lacks 2 row.*: ae/c2 fan trial 0, ae/c2 valve "
                                         "trial 0"):
        proxy_report.read_study(gone)
    # A row of a configuration that study.json does not list.
    renamed = _damaged_copy(ae, tmp_path / "renamed", rows=lambda f: f.replace(
        {"configuration": {"c3": "c9"}}))
    with pytest.raises(ValueError, match=r"rows.csv' has rows of configuration\(s\) ae/c9 "
                                         r"that '.*study.json' does not list"):
        proxy_report.read_study(renamed)
    # Fewer trials than study.json says.
    trials = _damaged_copy(ae, tmp_path / "trials", spec=lambda r: {**r, "trials": 2})
    with pytest.raises(ValueError, match=r"lacks 10 row\(s\) \(study.json: 2 trial\(s\).*"
                                         r"ae/c0 fan trial 1, .* and 5 more"):
        proxy_report.read_study(trials)
    # A record cut off in the middle (an interrupted copy).
    partial = shutil.copytree(ae, tmp_path / "partial")
    text = (partial / "rows.csv").read_text()
    (partial / "rows.csv").write_text(text[:text.rindex(",") - 3])
    with pytest.raises(ValueError, match=r"rows.csv' line 11 has \d+ field\(s\), the header "
                                         r"\d+: the file is cut off or damaged"):
        proxy_report.read_study(partial)
    # A key cell emptied.
    blank = _damaged_copy(ae, tmp_path / "blank", rows=lambda f: f.assign(
        machine_type=f["machine_type"].where(f.index != 3)))
    with pytest.raises(ValueError, match=r"rows.csv' line\(s\) 5 lack a family"):
        proxy_report.read_study(blank)


def test_configurations_must_match_their_rows(studies, tmp_path):
    _, folders = studies
    ae = folders[0]

    def edit(frame):
        frame.loc[2, "md_auc"] = 0.5  # c1 fan: 0.69 -> 0.5
        return frame

    edited = _damaged_copy(ae, tmp_path / "edited", rows=edit)
    with pytest.raises(ValueError, match=r"configurations.csv': configuration ae/c1 has "
                                         r"md_auc = 0.68, but the mean of its rows in "
                                         r"'.*rows.csv' is 0.5"):
        proxy_report.read_study(edited)
    counted = _damaged_copy(ae, tmp_path / "counted", configurations=lambda f: f.assign(
        n_rows=f["n_rows"].where(f["configuration"] != "c4", 3)))
    with pytest.raises(ValueError, match="says configuration ae/c4 has 3 row.*holds 2"):
        proxy_report.read_study(counted)


def test_nan_cells_left_out_of_a_mean_are_reported(studies, report, tmp_path):
    """Without configurations.csv the means leave NaN cells out; the report
    used to say nothing (Table VII's rho moved from 0.932 to 0.953)."""
    _, folders = studies

    def blank(frame):
        frame.loc[2, "md_auc"] = np.nan  # c1 fan
        return frame

    study = _damaged_copy(folders[0], tmp_path / "nan", rows=blank)
    (study / "configurations.csv").unlink()
    out = write_proxy_report(study, tmp_path / "report", projections=False)
    text = (out / "report.md").read_text()
    assert ("NaN cells of rows.csv are left out of the configuration means, which then "
            "cover fewer rows (machine types x trials): ae/c1: md_auc over 1 of 2 rows.") \
        in text
    assert "NaN cells" not in (report / "report.md").read_text()
