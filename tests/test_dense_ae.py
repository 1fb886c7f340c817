import keras
import numpy as np
import pytest

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
    with pytest.raises(ValueError, match=r"score must be one of \('mse', 'mahala', 'mae'\)"):
        system_cls({"score": "l1"})
    with pytest.raises(ValueError, match="score=mahala means backend='mahala'"):
        system_cls({"score": "mahala", "backend": "knn"})
    with pytest.raises(ValueError, match="Valid keys"):
        system_cls({"epoch": 3})
    with pytest.raises(ValueError, match="known systems"):
        get_system("resnet")
