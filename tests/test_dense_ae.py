import keras
import numpy as np
import pytest

from asd_keras.data.layouts import read_dataset
from asd_keras.models import DenseAutoencoderSystem
from asd_keras.models import dense_autoencoder
from asd_keras.systems import get_system


def test_architecture_and_parameter_count():
    model = dense_autoencoder()
    assert model.output_shape == (None, 640)
    dense = lambda i, o: i * o + o  # noqa: E731
    bn = lambda u: 4 * u  # noqa: E731  (gamma, beta, moving mean/variance)
    expected = (dense(640, 128) + 3 * dense(128, 128) + dense(128, 8)
                + dense(8, 128) + 3 * dense(128, 128) + dense(128, 640)
                + 8 * bn(128) + bn(8))
    assert model.count_params() == expected
    names = [layer.name for layer in model.layers]
    assert names[1:4] == ["encoder_0_dense", "encoder_0_bn", "encoder_0_relu"]
    assert "bottleneck_dense" in names and names[-1] == "reconstruction"
    small = dense_autoencoder(64, hidden_units=16, latent_dim=4, num_hidden_layers=2)
    assert small.get_layer("bottleneck_dense").units == 4


def test_config_round_trip_and_keras_save_load(tmp_path):
    model = dense_autoencoder(40, hidden_units=8, latent_dim=2)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    x = np.random.default_rng(0).normal(size=(5, 40)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, x, epochs=1, verbose=0)
    path = tmp_path / "ae.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_training_lowers_the_loss():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 40)).astype("float32")
    model = dense_autoencoder(40, hidden_units=32, latent_dim=8)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    history = model.fit(x, x, epochs=15, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_variants_and_bad_config():
    assert DenseAutoencoderSystem({"variant": "dcase2020"}).frontend.log_mode == "offset"
    assert DenseAutoencoderSystem({"variant": "dcase2020"}).frontend.pad_mode == "reflect"
    assert DenseAutoencoderSystem({"variant": "dcase2023"}).config["batch_size"] == 256
    assert DenseAutoencoderSystem({"variant": "dcase2023", "batch_size": 64}).config["batch_size"] == 64
    with pytest.raises(ValueError, match="score"):
        DenseAutoencoderSystem({"score": "l1"})
    with pytest.raises(ValueError, match="Valid keys"):
        DenseAutoencoderSystem({"epoch": 3})
    with pytest.raises(ValueError, match="known systems"):
        get_system("resnet")


@pytest.fixture(scope="module")
def trained(synthetic_sets, tmp_path_factory):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"])
    system = DenseAutoencoderSystem(
        {"epochs": 2, "batch_size": 64, "hidden_units": 16, "validation_split": 0.1}
    )
    run_dir = tmp_path_factory.mktemp("run")
    histories = system.fit(table, run_dir, verbose=0)
    return system, table, run_dir, histories


def test_system_fit_score_and_reload(trained):
    system, table, run_dir, histories = trained
    assert set(histories) == {"fan", "valve"}
    assert np.isfinite(histories["fan"]["loss"]).all()
    assert "val_loss" in histories["fan"]
    scores = system.score(table, with_error_vectors=True)
    test = table[table["split"] == "test"]
    assert list(scores.index) == list(test.index)
    assert np.isfinite(scores["score"]).all() and (scores["score"] > 0).all()
    assert set(scores["decision"]) <= {0, 1}
    assert scores["error_vector"].iloc[0].shape == (640,)
    np.testing.assert_allclose(
        [v.mean() for v in scores["error_vector"]], scores["score_mse"], rtol=1e-5)
    reloaded = DenseAutoencoderSystem.load(run_dir, system.config)
    again = reloaded.score(table)
    np.testing.assert_allclose(again["score"], scores["score"], rtol=1e-6)
    for kind in ("mse", "mahala"):
        assert system.scoring["fan"][f"threshold_{kind}"] > 0
    assert (run_dir / "history" / "fan.csv").is_file()
    assert (run_dir / "train_scores" / "valve.csv").is_file()


def test_mse_score_matches_the_model_on_pipeline_features(trained):
    import tensorflow as tf

    from asd_keras.data.audio import AudioLoader

    system, table, _, _ = trained
    path = table[(table["split"] == "test") & (table["machine_type"] == "fan")]["path"].iloc[0]
    loader = AudioLoader()
    loader.check([path])
    vectors = system.frontend.vectors(loader.load(tf.constant(path))).numpy()
    model = system.models["fan"]
    expected = np.mean((vectors - model.predict(vectors, verbose=0)) ** 2)
    fn = system.score_function(model, system.scoring["fan"]["inverse_covariances"])
    got = fn(loader.load(tf.constant(path))[None])["mse"].numpy()[0]
    assert got == pytest.approx(expected, rel=1e-5)


def test_unknown_machine_type_at_scoring(trained, synthetic_sets):
    system, table, _, _ = trained
    other = table.copy()
    other.loc[:, "machine_type"] = "pump"
    with pytest.raises(ValueError, match="pump"):
        system.score(other)


@pytest.mark.parametrize("layout", ["dcase2020", "dcase2026"])
def test_end_to_end_on_machine_ids_and_stereo(layout, synthetic_sets, tmp_path):
    from asd_keras.evaluation import metrics
    from asd_keras.evaluation.submission import labels_from_data
    from asd_keras.evaluation.submission import join_scores_and_labels
    from asd_keras.evaluation.submission import read_submission
    from asd_keras.evaluation.submission import write_submission

    dev = synthetic_sets[layout]["dev"]
    table = read_dataset(dev, machine_types=["fan"])
    system = DenseAutoencoderSystem({"epochs": 1, "batch_size": 64, "hidden_units": 16})
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
