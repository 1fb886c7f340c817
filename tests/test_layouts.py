import pandas as pd
import pytest

from asd_keras.data.dcase_naming import LAYOUTS
from asd_keras.data.dcase_naming import layout_for_year
from asd_keras.data.dcase_naming import parse_file_name
from asd_keras.data.layouts import read_dataset
from asd_keras.systems import get_system


@pytest.mark.parametrize(
    "name, expected",
    [
        ("normal_id_01_00000012.wav", ("01", None, 0, 12, None, "dcase2020")),
        ("anomaly_id_04_00000000.wav", ("04", None, 1, 0, None, "dcase2020")),
        ("id_05_00000007.wav", ("05", None, None, 7, None, "dcase2020")),
        (
            "section_00_source_train_normal_0000_m-n_W.wav",
            ("00", "source", 0, 0, "m-n_W", None),
        ),
        (
            "section_02_target_test_anomaly_0049.wav",
            ("02", "target", 1, 49, None, None),
        ),
        (
            "section_03_source_test_0011.wav",
            ("03", "source", None, 11, None, "dcase2021"),
        ),
        (
            "section_00_source_test_normal_0000_car_A2_spd_28V_mic_1_noise_1.wav",
            ("00", "source", 0, 0, "car_A2_spd_28V_mic_1_noise_1", None),
        ),
        (
            "section_00_target_train_normal_0021_noAttribute.wav",
            ("00", "target", 0, 21, "noAttribute", None),
        ),
        ("section_00_0001.wav", ("00", None, None, 1, None, None)),  # 1-based
        ("section_03_test_0199.wav", ("03", None, None, 199, None, None)),
        ("section_00_machine_0001_.wav", ("00", None, None, 1, None, None)),
    ],
)
def test_parse_file_name(name, expected):
    parsed = parse_file_name(name)
    got = (
        parsed["section"],
        parsed["domain"],
        parsed["label"],
        parsed["index"],
        parsed["attribute_string"],
        parsed["layout_hint"],
    )
    assert got == expected


@pytest.mark.parametrize("name", ["fan_001.wav", "section_0_source.wav", "x.wav"])
def test_unparseable_names(name):
    assert parse_file_name(name) is None


def test_every_layout_is_read_and_detected(synthetic_sets):
    for layout in LAYOUTS:
        dev = read_dataset(synthetic_sets[layout]["dev"])
        assert (dev["layout"] == layout).all()
        assert set(dev["split"]) == {"train", "test"}
        test = dev[dev["split"] == "test"]
        assert set(test["label"].astype(int)) == {0, 1}
        assert (dev.loc[dev["split"] == "train", "label"] == 0).all()
        evaluation = read_dataset(synthetic_sets[layout]["eval"])
        eval_test = evaluation[evaluation["split"] == "test"]
        assert eval_test["label"].isna().all()
        if layout == "dcase2021":
            # Eval names of 2021 keep the domain; the folder says it too.
            assert set(eval_test["domain"]) == {"source", "target"}
        elif layout in ("dcase2022", "dcase2023", "dcase2026"):
            assert eval_test["domain"].isna().all()


def test_counts_sections_and_attributes(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"])
    assert sorted(table["section"].unique()) == ["00", "01", "02"]
    fan = table[(table["machine_type"] == "fan") & (table["section"] == "00")]
    train = fan[fan["split"] == "train"]
    assert (train["domain"] == "source").sum() == 6
    assert (train["domain"] == "target").sum() == 2
    assert len(fan[fan["split"] == "test"]) == 2 * 2 * 2
    row = train.iloc[0]
    # attributes_00.csv is parsed into a dict per file
    assert row["attributes"]["spd"] == row["attribute_string"].split("_")[1]


def test_hidden_attributes_in_one_section_layouts(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2023"]["dev"])
    slider_free = table[table["machine_type"] == "valve"]
    assert (slider_free["attribute_string"] != "noAttribute").all()


def test_2021_test_domain_from_folder(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2021"]["dev"])
    test = table[table["split"] == "test"]
    assert set(test["domain"]) == {"source", "target"}
    assert test["attribute_string"].isna().all()


def test_bad_file_name_is_an_error_naming_the_file(tmp_path):
    folder = tmp_path / "fan" / "train"
    folder.mkdir(parents=True)
    (folder / "recording_17.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="recording_17.wav"):
        read_dataset(tmp_path)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No WAV clips"):
        read_dataset(tmp_path)
    (tmp_path / "raw" / "fan" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="raw"):
        read_dataset(tmp_path)


def test_unknown_layout_and_year():
    with pytest.raises(ValueError, match="dcase2019"):
        read_dataset(".", layout="dcase2019")
    with pytest.raises(ValueError, match="2019"):
        layout_for_year(2019)
    assert layout_for_year(2024) == "dcase2023"


def test_machine_type_filter(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"], machine_types=["fan"])
    assert set(table["machine_type"]) == {"fan"}
    with pytest.raises(FileNotFoundError, match="pump"):
        read_dataset(synthetic_sets["dcase2022"]["dev"], machine_types=["pump"])
    assert isinstance(table, pd.DataFrame)


@pytest.mark.parametrize("layout", ["dcase2020", "dcase2026"])
def test_system_end_to_end_on_machine_ids_and_stereo(layout, synthetic_sets, tmp_path):
    from asd_keras.evaluation import metrics
    from asd_keras.evaluation.submission import labels_from_data
    from asd_keras.evaluation.submission import join_scores_and_labels
    from asd_keras.evaluation.submission import read_submission
    from asd_keras.evaluation.submission import write_submission

    dev = synthetic_sets[layout]["dev"]
    table = read_dataset(dev, machine_types=["fan"])
    # The training-free system: the layout, not the model, is under test.
    system = get_system("logmel_stats")()
    system.fit(table, tmp_path, verbose=0)
    scores = system.score(table)
    write_submission(scores, tmp_path, layout)
    names = sorted(p.name for p in tmp_path.glob("anomaly_score_*.csv"))
    if layout == "dcase2020":
        assert names == [f"anomaly_score_fan_id_{i}.csv" for i in ("00", "02", "04")]
        assert not list(tmp_path.glob("decision_result_*"))
    else:
        assert names == ["anomaly_score_fan_section_00_test.csv"]
    submitted, family = read_submission(tmp_path)
    labels, detected = labels_from_data(dev)
    joined = join_scores_and_labels(submitted, labels[labels["machine_type"] == "fan"])
    per_unit, official = metrics.evaluate(joined, detected)
    assert (official is None) == (layout == "dcase2020")
    assert per_unit.filter(like="AUC").notna().all().all()
