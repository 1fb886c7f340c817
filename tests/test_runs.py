"""The runs layer (`asd_keras.runs`), the group keys and members of a
system, and the project's one integer rule."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from asd_keras import runs
from asd_keras.config import check_integer
from asd_keras.systems import get_system
from asd_keras.systems.groups import group_key
from asd_keras.systems.groups import group_keys
from asd_keras.systems.groups import machine_type_of
from asd_keras.systems.groups import owner_group
from asd_keras.systems.groups import section_of

FAST = {"epochs": 1, "clip_seconds": 1.0, "batch_size": 8, "monitor_clips": 16,
        "ensemble_size": 1, "kmeans_clusters": 2, "branches": "spectrum"}


def test_read_tables_joins_folders_of_one_layout_and_refuses_two(synthetic_sets):
    dev, evaluation = synthetic_sets["dcase2022"]["dev"], synthetic_sets["dcase2022"]["eval"]
    table = runs.read_tables([dev, evaluation], machine_types=["fan"])
    assert set(table["machine_type"]) == {"fan"}
    assert len(table) == len(runs.read_tables(dev, machine_types=["fan"])) + len(
        runs.read_tables(evaluation, machine_types=["fan"]))
    with pytest.raises(ValueError, match=r"different layouts \(\['dcase2021', 'dcase2022'\]\)"):
        runs.read_tables([synthetic_sets["dcase2021"]["dev"], dev])
    with pytest.raises(ValueError, match="No data folder"):
        runs.read_tables([])


def test_labelled_test_refuses_or_drops_unlabelled_clips(synthetic_sets):
    both = runs.read_tables([synthetic_sets["dcase2022"]["dev"],
                             synthetic_sets["dcase2022"]["eval"]])
    unlabelled = int(both.loc[both["split"] == "test", "label"].isna().sum())
    assert unlabelled > 0
    with pytest.raises(ValueError, match=f"The search needs labelled test clips; {unlabelled} "):
        runs.labelled_test(both, "The search")
    kept = runs.labelled_test(both, "The study", drop_unlabelled=True)
    dev_test = runs.read_tables(synthetic_sets["dcase2022"]["dev"]).query("split == 'test'")
    assert len(kept) == len(dev_test) and kept["label"].dtype.kind == "i"
    assert sorted(kept["label"]) == sorted(dev_test["label"].astype(int))
    with pytest.raises(ValueError, match="the data hold none"):
        runs.labelled_test(both[both["split"] == "train"], "The probe")


def test_a_trial_records_after_its_fit_and_keeps_or_drops_models(synthetic_sets, tmp_path):
    table = runs.read_tables(synthetic_sets["dcase2022"]["dev"], machine_types=["fan"])
    for keep in (False, True):
        system = get_system("wilkinghoff")(FAST)
        folder = tmp_path / f"trial_keep{keep}"
        with runs.trial(folder, system, table, {"trial": 3}, keep_models=keep) as written:
            assert written.folder != folder and written.system is system
            scores = system.score(table)
            assert (written.folder / "run" / "members").is_dir()
        assert np.isfinite(scores["score"]).all()
        record = json.loads((folder / "run.json").read_text())
        # Written after the fit: what the fit chose from the data is in it.
        assert "length_policy=truncate" in json.dumps(record["data_choices"])
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["trial"] == 3 and config["system"] == "wilkinghoff"
        assert config["params"]["epochs"] == 1
        assert (folder / "run" / "members").is_dir() == keep
    # An error inside the block leaves no trial folder behind.
    with pytest.raises(RuntimeError, match="evaluation failed"):
        with runs.trial(tmp_path / "broken", get_system("wilkinghoff")(FAST), table, {}):
            raise RuntimeError("evaluation failed")
    assert not (tmp_path / "broken").exists()


def test_train_run_load_run_and_the_finished_run_check(synthetic_sets, tmp_path):
    data = synthetic_sets["dcase2022"]["dev"]
    table = runs.read_tables(data, machine_types=["fan"])
    system = runs.new_system("wilkinghoff", overrides=[f"{k}={v}" for k, v in FAST.items()])
    out = tmp_path / "run"
    assert not runs.is_finished_run(out, system, data)
    runs.train_run(system, table, data, out)
    assert (out / "data_summary.csv").is_file()
    assert not out.with_name("run.checkpoints").exists()
    assert runs.is_finished_run(out, system, data)
    other = runs.new_system("wilkinghoff", overrides=["epochs=2", *(
        f"{k}={v}" for k, v in FAST.items() if k != "epochs")])
    assert not runs.is_finished_run(out, other, data)
    loaded, record = runs.load_run(out)
    assert record["machine_types"] == ["fan"] and record["layout"] == "dcase2022"
    test = table[table["split"] == "test"]
    np.testing.assert_allclose(loaded.score(test)["score"], system.score(test)["score"],
                               rtol=1e-5)
    with pytest.raises(FileExistsError):
        runs.train_run(system, table, data, out)
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        runs.load_run(tmp_path)
    with pytest.raises(ValueError, match="is \\(or holds\\) the run folder"):
        runs.check_not_inside(tmp_path, out, "score folder")
    # The members: the model serving a clip, by machine type and section.
    assert loaded.extractor_for("fan", "00") is loaded.members[0].extractors["all"]
    assert loaded.backend_for("fan", "00") is loaded.members[0].backends["fan_section_00"]
    with pytest.raises(ValueError, match="No backend was trained for the group 'pump_section_00'"):
        loaded.backend_for("pump", "00")
    with pytest.raises(ValueError, match=r"member must be in \[0, 1\)"):
        loaded.extractor_for(member=1)


def test_group_keys():
    table = pd.DataFrame({"machine_type": ["fan", "fan", "valve"],
                          "section": ["00", "01", "00"]})
    assert list(group_keys(table, "all")) == ["all"] * 3
    assert list(group_keys(table, "machine_type")) == ["fan", "fan", "valve"]
    keys = list(group_keys(table, "section"))
    assert keys == ["fan_section_00", "fan_section_01", "valve_section_00"]
    assert keys[0] == group_key("section", "fan", "00")
    assert [machine_type_of(k) for k in keys] == ["fan", "fan", "valve"]
    assert [section_of(k) for k in keys] == ["00", "01", "00"]
    assert machine_type_of("all") is None and section_of("fan") is None
    assert owner_group("fan_section_01", ["fan", "valve"]) == "fan"
    assert owner_group("valve_section_00", ["all"]) == "all"
    with pytest.raises(ValueError, match="No extractor group holds the group 'pump'"):
        owner_group("pump", ["fan", "valve"])
    with pytest.raises(ValueError, match="grouping must be"):
        group_keys(table, "domain")
    with pytest.raises(ValueError, match="needs the machine type and the section"):
        group_key("section", "fan")


def test_one_integer_rule():
    assert check_integer("epochs", 4.0, 1) == 4 and type(check_integer("n", np.int64(3))) is int
    for bad in (True, "3", 2.5, float("nan"), None):
        with pytest.raises(ValueError, match=f"n_mels must be an integer >= 1; received "
                                              f"{bad!r}".replace("(", r"\(").replace(")", r"\)")):
            check_integer("n_mels", bad, 1)
    with pytest.raises(ValueError, match=r"width must be an integer in \[4, 8\]"):
        check_integer("width", 9, 4, 8)


def test_a_system_refuses_a_backend_fitted_on_test_labels():
    with pytest.raises(ValueError, match="'linear_probe' is an evaluation protocol.*asd-keras probe"):
        get_system("logmel_stats")({"backend": "linear_probe"})


def test_backends_check_their_keys_with_the_integer_rule():
    from asd_keras.backends import get_backend

    # int(2.5) used to train with k=2 and int("4") with 4 clusters.
    with pytest.raises(ValueError, match=r"k must be an integer >= 1; received 2.5"):
        get_backend("knn", k=2.5)
    with pytest.raises(ValueError, match=r"kmeans_clusters must be an integer >= 1 or None; "
                                         r"received '4'"):
        get_backend("kmeans", kmeans_clusters="4")
    assert get_backend("kmeans", kmeans_clusters=4.0).get_config()["kmeans_clusters"] == 4
    with pytest.raises(ValueError, match=r"memmixup_alpha must be a number in \(0, 1\]"):
        get_backend("knn", memmixup_alpha=0)


@pytest.mark.parametrize("name, kwargs, shown", [
    ("frozen_encoder", {"batch_size": 2.5}, r"batch_size must be an integer >= 1; received 2.5"),
    ("frozen_encoder", {"clip_seconds": 0}, r"clip_seconds must be a number > 0 or None"),
    ("frozen_encoder", {"num_frames": 20}, r"num_frames must be a positive multiple of 16"),
    ("frozen_encoder", {"channel": True}, r"channel must be one of \(0, 1, 'both'\)"),
    ("logmel_stats", {"channel": "far"}, r"channel must be one of \(0, 1, 'both'\)"),
    ("logmel_stats", {"statistics": "median"}, r"statistics must be one of"),
])
def test_training_free_extractors_check_their_keys_with_schemas(name, kwargs, shown):
    from asd_keras.extractors import get_extractor

    with pytest.raises(ValueError, match=shown):
        get_extractor(name, **kwargs)
