import keras
import numpy as np
import pandas as pd
import pytest

from asd_keras.data.layouts import read_dataset
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


def test_training_lowers_the_loss_config_round_trip_and_keras_save_load(tmp_path):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 40)).astype("float32")
    model = dense_autoencoder(40, hidden_units=32, latent_dim=8)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    # Keras's jit_compile="auto" means XLA, whose compilation would take
    # most of this test on a CPU.
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=False)
    history = model.fit(x, x, epochs=15, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    path = tmp_path / "ae.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_variants_and_bad_config():
    system_cls = get_system("dense_ae")
    assert system_cls({"variant": "dcase2020"}).config["log_mode"] == "offset"
    assert system_cls({"variant": "dcase2020"}).config["pad_mode"] == "reflect"
    assert system_cls({"variant": "dcase2023"}).config["batch_size"] == 256
    assert system_cls({"variant": "dcase2023", "batch_size": 64}).config["batch_size"] == 64
    assert system_cls({"score": "mahala"}).config["backend"] == "mahala"
    with pytest.raises(ValueError, match=r"score must be one of \('mse', 'mahala'\)"):
        system_cls({"score": "l1"})
    with pytest.raises(ValueError, match="score=mahala means backend='mahala'"):
        system_cls({"score": "mahala", "backend": "knn"})
    with pytest.raises(ValueError, match="Valid keys"):
        system_cls({"epoch": 3})
    with pytest.raises(ValueError, match="known systems"):
        get_system("resnet")


@pytest.fixture(scope="module")
def trained(synthetic_sets, tmp_path_factory):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"])
    system = get_system("dense_ae")(
        {"epochs": 2, "batch_size": 64, "hidden_units": 16, "validation_split": 0.1})
    run_dir = tmp_path_factory.mktemp("run")
    train_scores = system.fit(table, run_dir, verbose=0)
    return system, table, run_dir, train_scores


def test_system_fit_score_and_reload(trained):
    system, table, run_dir, train_scores = trained
    assert set(train_scores["group"]) == {"fan", "valve"}
    history = pd.read_csv(run_dir / "history" / "member0_fan.csv")
    assert np.isfinite(history["loss"]).all() and "val_loss" in history
    assert list(history["epoch"]) == [1, 2]
    scores = system.score(table)
    test = table[table["split"] == "test"]
    assert list(scores["file_name"]) == list(test["file_name"])
    assert np.isfinite(scores["score"]).all() and (scores["score"] > 0).all()
    assert set(scores["decision"]) <= {0, 1}
    # MSE = the mean of the clip-mean squared residual (reference dcase.md 2.4).
    errors = system.features(test)
    assert errors.shape == (len(test), 640)
    np.testing.assert_allclose(errors.mean(axis=1), scores["score"], rtol=1e-5)
    reloaded = type(system).load(run_dir, system.config)
    again = reloaded.score(table)
    np.testing.assert_allclose(again["score"], scores["score"], rtol=1e-6)
    assert all(v > 0 for v in system.thresholds.values())
    assert sorted(p.name for p in (run_dir / "members" / "member0" / "extractors").iterdir()) \
        == ["fan", "valve"]


def test_mse_score_matches_the_model_on_pipeline_features(trained):
    import tensorflow as tf

    from asd_keras.data.audio import AudioLoader

    system, table, _, _ = trained
    rows = table[(table["split"] == "test") & (table["machine_type"] == "fan")].iloc[:1]
    path = rows["path"].iloc[0]
    loader = AudioLoader()
    loader.check([path])
    extractor = system.members[0]["extractors"]["fan"]
    vectors = extractor.frontend.vectors(loader.load(tf.constant(path))).numpy()
    residual = vectors - extractor.model.predict(vectors, verbose=0)
    features = extractor.transform(rows)
    assert features["squared_error"][0].mean() == pytest.approx(np.mean(residual ** 2),
                                                                rel=1e-5)
    np.testing.assert_allclose(features["residual"][0],
                               residual.reshape(-1, 128).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_mahala_covariance_from_the_frame_level_residuals(trained):
    """The backend's precisions are the inverses of the baseline's batch-centred
    covariances over the extractor's frame batches (reference dcase.md 3)."""
    from asd_keras.backends import get_backend
    from asd_keras.backends.mahalanobis import ResidualCovariance

    system, table, _, _ = trained
    rows = table[(table["split"] == "train") & (table["machine_type"] == "fan")]
    rows = rows.reset_index(drop=True)
    extractor = system.members[0]["extractors"]["fan"]
    batches = list(extractor.frame_batches(rows, "residual"))
    again = list(extractor.frame_batches(rows, "residual"))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    assert batches[0][0].shape[1:] == (5, 128)
    assert sum(len(r) for _, r in batches) == len(rows) * 28  # 1 s clips: 28 vectors
    target = (rows["domain"] == "target").to_numpy()
    accumulator = ResidualCovariance(128)
    for values, clip_rows in batches:
        accumulator.update(values.reshape(len(values), -1), target[clip_rows])
    backend = get_backend("mahala").fit_frames(batches, rows[["domain"]])
    np.testing.assert_allclose(backend.arrays["precisions"], accumulator.inverses(),
                               rtol=1e-5, atol=1e-6)
    clip = np.random.default_rng(0).normal(size=(3, 128)).astype("float32")
    expected = np.einsum("bi,kij,bj->bk", clip, accumulator.inverses(), clip).min(axis=1)
    np.testing.assert_allclose(backend.score(clip), expected, rtol=1e-4)


def test_unknown_machine_type_at_scoring(trained, synthetic_sets):
    system, table, _, _ = trained
    other = table.copy()
    other.loc[:, "machine_type"] = "pump"
    with pytest.raises(ValueError, match="pump"):
        system.score(other)
