"""The `resnet_classifier` extractor (Shin & Lee §III-C, Table III) and the
`resnet_ce` / `resnet_arcface` presets, on tiny data.

The `resnet_ce` preset is trained once for the module (one machine type,
three sections, 1-s clips, 32 mels, ResNet-18) and the CE tests reuse its
extractor; one ArcFace extractor is trained for the ArcFace tests.
Trainings run eagerly (`run_eagerly=True`), as in
tests/test_contrastive_extractor.py: tracing the ResNet-18 train step costs
about 25 s of CPU per model, far more than the few eager steps here. The
graph-mode training is what `asd-keras train` runs (tried by hand for both
presets).
"""


import json

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from asd_keras.cli import main
from asd_keras.data.labels import class_keys
from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.extractors import load_extractor
from asd_keras.extractors.resnet_classifier import ResNetClassifierExtractor
from asd_keras.systems import get_system
from asd_keras.utils.training import TrainingContext
from tests.conftest import make_synthetic

# 1 s clips and 32 mels keep ResNet-18 fast on a CPU; two epochs give a
# selection among epochs. With run_eagerly the features are computed batch
# by batch without a traced predict step.
TINY = {"clip_seconds": 1.0, "n_mels": 32, "epochs": 2, "batch_size": 8,
        "score_batch_clips": 8, "run_eagerly": True}



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One machine type, three sections of 5 training clips, 24 test clips."""
    root = make_synthetic(tmp_path_factory.mktemp("resnet_data"), machine_types=("fan",),
                          train=4, target_train=1, test=2, eval=False)
    table = read_dataset(synthetic_data_root(root, "dcase2022", "dev"))
    return (table, table[table["split"] == "train"].reset_index(drop=True),
            table[table["split"] == "test"].reset_index(drop=True))


@pytest.fixture(scope="module")
def ce_run(data, tmp_path_factory):
    """The `resnet_ce` preset trained once; its extractor serves the CE tests."""
    table, _, _ = data
    run = tmp_path_factory.mktemp("resnet_ce") / "run"
    system = get_system("resnet_ce")(dict(TINY))
    system.fit(table, run, verbose=0)
    return system, run


@pytest.fixture(scope="module")
def arcface(data):
    _, train, _ = data
    extractor = ResNetClassifierExtractor(loss="arcface", **dict(TINY, epochs=1))
    history = extractor.fit(train, TrainingContext(verbose=0), "arcface")
    return extractor, history


def test_config_errors_name_the_key(data):
    with pytest.raises(ValueError, match="loss must be one of"):
        ResNetClassifierExtractor(loss="softmax")
    with pytest.raises(ValueError, match="classes must be one of .* received 'per_section'"):
        ResNetClassifierExtractor(classes="per_section")
    with pytest.raises(ValueError, match="arcface_margin must be"):
        ResNetClassifierExtractor(arcface_margin=2.0)
    with pytest.raises(ValueError, match="loss must be one of \\('ce',\\); received 'arcface'"):
        get_system("resnet_ce")({"loss": "arcface"})
    # One machine type with classes=machine_type is a single class.
    _, train, _ = data
    with pytest.raises(ValueError, match="at least 2"):
        ResNetClassifierExtractor(classes="machine_type")._build_training_model(None, train)


def test_preset_fits_and_scores(data, ce_run):
    table, _, test = data
    system, run = ce_run
    assert (system.config["loss"], system.config["backend"]) == ("ce", "mahalanobis")
    # classes=auto: three sections per machine type give the paper's section classes.
    assert system.config["classes"] == "auto"
    assert system.data_choices["fan"]["classes"] == "section"
    assert system.members[0].extractors["fan"].config["classes"] == "section"
    assert system.config["extractor_grouping"] == system.config["grouping"] == "machine_type"
    scores = system.score(table)
    assert len(scores) == len(test) and np.isfinite(scores["score"]).all()
    # The run's history marks the epoch whose weights were kept.
    history = pd.read_csv(run / "history" / "member0_fan.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert history["selected"].sum() == 1
    assert history.loc[history["selected"], "loss"].item() == history["loss"].min()


def test_ce_macro_f1_is_the_saved_heads_argmax(data, ce_run):
    _, train, test = data
    system, run = ce_run
    extractor = system.members[0].extractors["fan"]
    f1 = extractor.proxy_metrics(train, test)["macro_f1"]
    assert 0.0 <= f1 <= 1.0
    folder = run / "members" / "member0" / "extractors" / "fan"
    head = keras.saving.load_model(folder / "classifier.keras")
    features = extractor.transform(test)["embedding"]
    assert features.shape == (len(test), 512)
    predicted = np.argmax(head.predict(features, verbose=0), axis=-1)
    classes = sorted(class_keys(train, "section").unique())
    true = class_keys(test, "section").map({c: i for i, c in enumerate(classes)})
    assert f1 == pytest.approx(f1_score(true, predicted, average="macro"))
    # A test clip of an untrained section is named.
    unseen = test.copy()
    unseen.loc[0, "section"] = "05"
    with pytest.raises(ValueError, match=f"{unseen.loc[0, 'file_name']}.*not trained on"):
        extractor.proxy_metrics(train, unseen)


def test_ce_round_trip_and_serving(data, ce_run):
    import soundfile

    _, train, test = data
    system, run = ce_run
    extractor = system.members[0].extractors["fan"]
    loaded = load_extractor(run / "members" / "member0" / "extractors" / "fan")
    expected = extractor.transform(test)["embedding"]
    assert np.allclose(loaded.transform(test)["embedding"], expected, atol=1e-5)
    assert loaded.proxy_metrics(train, test) == pytest.approx(
        extractor.proxy_metrics(train, test))
    # The serving model applies the length policy to any clip length.
    model = loaded.serving_model(None)
    for samples in (8000, 24000):
        wave = np.random.default_rng(samples).normal(0, 0.1, (2, samples)).astype("float32")
        out = keras.ops.convert_to_numpy(model(wave)["embedding"])
        assert out.shape == (2, 512) and np.isfinite(out).all()
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in test["path"][:3]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(waves)["embedding"]),
                               expected[:3], rtol=1e-4, atol=1e-5)


def test_arcface_trains_selects_and_round_trips(data, arcface, tmp_path):
    _, train, test = data
    extractor, history = arcface
    assert history["selected"].tolist() == [True]
    metrics = extractor.proxy_metrics(train, test)
    assert set(metrics) == {"macro_f1"} and 0.0 <= metrics["macro_f1"] <= 1.0
    extractor.save(tmp_path / "arcface")
    assert not (tmp_path / "arcface" / "classifier.keras").exists()  # the probe is refitted
    loaded = load_extractor(tmp_path / "arcface")
    assert np.allclose(loaded.transform(test)["embedding"],
                       extractor.transform(test)["embedding"], atol=1e-5)
    assert loaded.proxy_metrics(train, test) == pytest.approx(metrics)


def test_defaults_train_on_one_section_per_machine_type(tmp_path):
    """DCASE 2023+ has one section per machine type: `classes=auto` takes the
    attribute classes there and the run records why; `classes=section`
    remains available and still refuses such data with a clear error."""
    root = make_synthetic(tmp_path / "data", "dcase2023", machine_types=("fan",), train=4,
                          target_train=1, test=1, eval=False)
    dev = synthetic_data_root(root, "dcase2023", "dev")
    run = tmp_path / "run"
    tiny = [f"{k}={v}" for k, v in dict(TINY, epochs=1).items()]
    assert main(["train", "--system", "resnet_arcface", "--data", str(dev), "--out", str(run),
                 "--verbose", "0", *tiny]) == 0
    choices = json.loads((run / "run.json").read_text())["data_choices"]
    assert choices["fan"]["classes"] == "attribute"
    assert "['fan'] have a single section" in choices["fan"]["why"]
    saved = json.loads((run / "members" / "member0" / "extractors" / "fan"
                        / "extractor.json").read_text())
    assert saved["config"]["classes"] == "attribute"
    classes = json.loads((run / "members" / "member0" / "extractors" / "fan"
                          / "classes.json").read_text())
    train = read_dataset(dev)
    train = train[train["split"] == "train"].reset_index(drop=True)
    assert classes["granularity"] == "attribute"
    assert classes["classes"] == sorted(class_keys(train, "attribute").unique())
    assert len(classes["classes"]) > 1
    scores = tmp_path / "scores"
    assert main(["score", "--run", str(run), "--data", str(dev), "--out", str(scores)]) == 0
    assert np.isfinite(pd.read_csv(scores / "scores.csv")["score"]).all()
    # The explicit values are still there.
    with pytest.raises(ValueError, match="classes='section' gives 1 class"):
        ResNetClassifierExtractor(classes="section")._build_training_model(None, train)
    extractor = ResNetClassifierExtractor(classes="machine_type")
    with pytest.raises(ValueError, match="classes='machine_type' gives 1 class"):
        extractor._build_training_model(None, train)
    assert extractor.data_choices == {}  # nothing was resolved
