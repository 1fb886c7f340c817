"""The shared system layer's training: resume after an interruption, user
callbacks, TensorBoard; and the layers of the dense AE extractor."""

import logging

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from asd_keras.data.layouts import read_dataset
from asd_keras.data.pipelines import filled_cache
from asd_keras.extractors import load_extractor
from asd_keras.layers import FeatureMean
from asd_keras.layers import FrameReconstruction
from asd_keras.layers import LogMelVectors
from asd_keras.models import dense_autoencoder
from asd_keras.systems import get_system
from tests.conftest import make_synthetic
from tests.helpers import Interrupt

# Few steps per epoch: one step per call traces the training step once, not
# twice (Keras' multi-step loop).
AE = {"epochs": 4, "batch_size": 64, "hidden_units": 8, "num_hidden_layers": 1,
      "latent_dim": 2, "validation_split": 0.0, "steps_per_execution": 1}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("data"), "dcase2022",
                          machine_types=("fan", "valve"), seconds=1.0, train=3,
                          target_train=1, test=1, eval=False)
    return read_dataset(root / "dev_data")


class Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((self.model.name, epoch))


def test_an_interrupted_training_resumes_where_it_stopped(table, tmp_path, caplog):
    checkpoints = tmp_path / "checkpoints"
    system = get_system("dense_ae")(AE)
    assert system.resumable
    with pytest.raises(KeyboardInterrupt):
        system.fit(table, tmp_path / "first", verbose=0, checkpoint_dir=checkpoints,
                   callbacks=[Interrupt("valve", 2)])
    finished = checkpoints / "finished"
    assert (finished / "member0_fan" / "extractor.json").is_file()
    assert not (finished / "member0_valve").exists()
    fan = load_extractor(finished / "member0_fan").model.get_weights()

    epochs = Epochs()
    with caplog.at_level(logging.INFO, logger="asd_keras"):
        again = get_system("dense_ae")(AE)
        again.fit(table, tmp_path / "second", verbose=0, checkpoint_dir=checkpoints,
                  callbacks=[epochs])
    assert "member0_fan: finished in an earlier attempt" in caplog.text
    assert "Resuming 'dense_autoencoder_member0_valve' after epoch 2" in caplog.text
    # Only valve's last two epochs ran; fan is the model of the first attempt.
    assert epochs.seen == [("dense_autoencoder_member0_valve", 2),
                           ("dense_autoencoder_member0_valve", 3)]
    for a, b in zip(fan, again.members[0].extractors["fan"].model.get_weights()):
        np.testing.assert_array_equal(a, b)
    history = pd.read_csv(tmp_path / "second" / "history" / "member0_valve.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert np.isfinite(again.score(table)["score"]).all()


def test_user_callbacks_and_tensorboard(table, tmp_path):
    epochs = Epochs()
    system = get_system("dense_ae")({**AE, "epochs": 1, "tensorboard": True})
    system.fit(table, tmp_path, verbose=0, callbacks=[epochs])
    assert sorted(epochs.seen) == [("dense_autoencoder_member0_fan", 0),
                                   ("dense_autoencoder_member0_valve", 0)]
    for group in ("fan", "valve"):
        assert list((tmp_path / "tensorboard" / f"member0_{group}" / "train").glob(
            "events.out.tfevents.*"))
    with pytest.raises(ValueError, match="tensorboard must be true or false"):
        get_system("dense_ae")({"tensorboard": "yes"})
    with pytest.raises(ValueError, match="coarser than extractor_grouping"):
        get_system("dense_ae")({"grouping": "all"})


# -- layers of the dense AE extractor ------------------------------------------


def test_log_mel_vectors_stack_the_spectrogram_frames(tmp_path):
    from asd_keras.features.spectral import LogMelFrontend

    wave = np.random.default_rng(0).normal(scale=0.1, size=(2, 16000)).astype("float32")
    layer = LogMelVectors(n_frames=3, n_mels=16)
    out = np.asarray(layer(wave))
    assert out.shape == (2, 32 - 2, 48)
    assert layer.compute_output_shape((2, 16000)) == (2, 30, 48)
    spec = np.asarray(LogMelFrontend(n_mels=16, n_frames=3).spectrogram(wave))
    np.testing.assert_allclose(out[:, 4], spec[:, 4:7].reshape(2, -1), rtol=1e-6, atol=1e-5)
    clone = LogMelVectors.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((16000,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored(wave), out, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="n_frames must be an integer >= 1; received 0"):
        LogMelVectors(n_frames=0)


def test_frame_reconstruction_and_feature_mean_by_hand(tmp_path):
    keras.utils.set_random_seed(1)
    ae = dense_autoencoder(12, hidden_units=4, latent_dim=2, num_hidden_layers=1)
    vectors = np.random.default_rng(1).normal(size=(2, 5, 12)).astype("float32")
    layer = FrameReconstruction(ae, chunk_dim=4)
    out = {k: np.asarray(v) for k, v in layer(vectors).items()}
    residual = vectors - np.asarray(ae(vectors.reshape(-1, 12))).reshape(2, 5, 12)
    np.testing.assert_allclose(out["squared_error"], (residual ** 2).mean(axis=1),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["residual"], residual.reshape(2, 15, 4).mean(axis=1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["absolute_error"], np.abs(residual).mean(axis=1),
                               rtol=1e-5, atol=1e-7)
    assert layer.compute_output_shape((2, 5, 12)) == {"squared_error": (2, 12),
                                                      "residual": (2, 4),
                                                      "absolute_error": (2, 12)}
    mean = FeatureMean()
    np.testing.assert_allclose(mean(out["squared_error"]), out["squared_error"].mean(axis=1),
                               rtol=1e-6)
    inputs = keras.Input((None, 12))
    features = layer(inputs)
    model = keras.Model(inputs, {"score": mean(features["squared_error"]),
                                 "residual": features["residual"]})
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    got = restored(vectors)
    np.testing.assert_allclose(got["score"], out["squared_error"].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(got["residual"], out["residual"], rtol=1e-5, atol=1e-6)
    assert FrameReconstruction.from_config(layer.get_config()).chunk_dim == 4
    with pytest.raises(ValueError, match="chunk_dim must divide the autoencoder's size 12"):
        FrameReconstruction(ae, chunk_dim=5)


@pytest.mark.parametrize("on_disk", [False, True])
def test_filled_cache_is_complete_before_training_reads_it(tmp_path, capfd, on_disk):
    """Keras stops every epoch's iterator early and makes the next one as an
    epoch ends; a cache filled then would be discarded (TensorFlow warns on
    file descriptor 2). `filled_cache` completes it first."""
    calls = []

    def counted(x):
        calls.append(1)
        return x

    source = tf.data.Dataset.range(8).map(
        lambda x: tf.py_function(counted, [x], tf.int64))
    capfd.readouterr()
    cached = filled_cache(source, str(tmp_path / "cache") if on_disk else "")
    assert len(calls) == 8  # one pass, before any training iterator
    if on_disk:
        assert (tmp_path / "cache" / "dataset_spec.pb").is_file()
    for _ in range(2):  # partial reads, as Keras' epoch iterators do
        assert [int(v) for v in cached.take(3)] == [0, 1, 2]
    assert sorted(int(v) for v in cached) == list(range(8))
    assert len(calls) == 8  # read from the cache, not computed again
    assert "did not fully read the dataset being cached" not in capfd.readouterr().err
