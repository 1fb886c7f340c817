import json

import keras
import numpy as np
import pandas as pd
import pytest
from tests.helpers import assert_decisions_match

from asd_keras.data.layouts import read_dataset
from asd_keras.losses.adversarial import AdversarialCrossEntropy
from asd_keras.losses.adversarial import FeatureMatching
from asd_keras.losses.adversarial import adversarial_crossentropy
from asd_keras.losses.adversarial import feature_matching
from asd_keras.systems import get_system
from asd_keras.models.blocks import dense_decoder
from asd_keras.models.blocks import dense_discriminator
from asd_keras.models.blocks import dense_encoder
from asd_keras.models.blocks import dense_unet
from asd_keras.models.gan import EGBAD
from asd_keras.models.gan import GANomaly
from asd_keras.models.gan import GANSystem
from asd_keras.models.gan import SkipGANomaly
from asd_keras.scoring import gan as gan_scores

SMALL = dict(input_dim=20, hidden_units=8, latent_dim=3, num_hidden_layers=2, seed=1)
DETECTORS = [GANomaly, SkipGANomaly, EGBAD]


def _data(n=96, dim=20, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")


# ----------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------


def test_blocks_shapes_and_names():
    enc = dense_encoder(20, 8, 3, 2, name="e")
    assert enc.output_shape == (None, 3)
    assert [l.name for l in enc.layers][1:4] == ["e_0_dense", "e_0_bn", "e_0_relu"]
    assert dense_decoder(3, 8, 20, 2).output_shape == (None, 20)
    unet = dense_unet(20, 8, 3, 2)
    assert unet.output_shape == (None, 20)
    # The first decoder layer is joined with the last encoder layer.
    assert unet.get_layer("generator_skip_0").output.shape == (None, 16)
    plain = dense_discriminator(20, 8, 2)(_data(4))
    assert plain["logit"].shape == (4, 1) and plain["features"].shape == (4, 8)
    assert dense_discriminator(20, 8, 2, feature_dim=3)(_data(4))["features"].shape == (4, 3)
    joint = dense_discriminator(20, 8, 2, latent_dim=3)
    out = joint([_data(4), np.zeros((4, 3), "float32")])
    assert out["features"].shape == (4, 8) and out["logit"].shape == (4, 1)
    with pytest.raises(ValueError, match="kernel_initializer"):
        dense_encoder(20, initializer="he_normal")
    with pytest.raises(ValueError, match="latent_dim"):
        dense_encoder(20, latent_dim=0)


# ----------------------------------------------------------------------
# Losses and score formulas against values computed by hand
# ----------------------------------------------------------------------


def test_losses_by_hand_config_and_serialisation(tmp_path):
    logits = np.array([[0.0], [np.log(3.0)]], "float32")
    # -log sigmoid(0) = ln 2; -log sigmoid(ln 3) = ln(4/3).
    real = (np.log(2.0) + np.log(4.0 / 3.0)) / 2
    fake = (np.log(2.0) + np.log(4.0)) / 2  # -log(1 - 3/4) = ln 4
    np.testing.assert_allclose(float(adversarial_crossentropy(logits, True)), real, rtol=1e-5)
    np.testing.assert_allclose(float(adversarial_crossentropy(logits, False)), fake, rtol=1e-5)
    a = np.array([[1.0, 2.0], [0.0, 0.0]], "float32")
    b = np.array([[0.0, 0.0], [0.0, 2.0]], "float32")
    np.testing.assert_allclose(float(feature_matching(a, b)), (1 + 4 + 0 + 4) / 4)
    np.testing.assert_allclose(float(FeatureMatching()(a, b)), 9 / 4)
    np.testing.assert_allclose(float(AdversarialCrossEntropy(real=False)(logits, logits)), fake,
                               rtol=1e-5)
    for loss in (FeatureMatching(), AdversarialCrossEntropy(real=False)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    # Save and load inside a model that uses it.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile("adam", FeatureMatching())
    model.fit(a, b, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss, FeatureMatching)
    np.testing.assert_allclose(restored.evaluate(a, b, verbose=0),
                               model.evaluate(a, b, verbose=0), rtol=1e-6)


def test_score_formulas_by_hand():
    z = np.array([[1.0, 0.0], [0.0, 0.0]], "float32")
    z_hat = np.array([[0.0, 3.0], [0.0, 0.0]], "float32")
    np.testing.assert_allclose(gan_scores.ganomaly_score(z, z_hat), [5.0, 0.0])
    x = np.array([[1.0, 2.0]], "float32")
    x_hat = np.array([[0.0, 1.0]], "float32")
    f_real = np.array([[1.0]], "float32")
    f_fake = np.array([[3.0]], "float32")
    # Skip: 0.9 * mean(1, 1) + 0.1 * mean(4) = 1.3
    np.testing.assert_allclose(gan_scores.skip_ganomaly_score(x, x_hat, f_real, f_fake), [1.3],
                               rtol=1e-6)
    # EGBAD, d = 1: 0.9 * (1 + 1) + 0.1 * 2 = 2.0; d = 2: 0.9 * sqrt 2 + 0.1 * 2.
    np.testing.assert_allclose(gan_scores.egbad_score(x, x_hat, f_real, f_fake), [2.0], rtol=1e-6)
    np.testing.assert_allclose(gan_scores.egbad_score(x, x_hat, f_real, f_fake, degree=2),
                               [0.9 * np.sqrt(2) + 0.2], rtol=1e-6)
    np.testing.assert_allclose(
        gan_scores.egbad_crossentropy_score(x, x_hat, np.zeros((1, 1), "float32")),
        [0.9 * 2 + 0.1 * np.log(2.0)], rtol=1e-6)
    per_vector = np.array([[1.0, 2.0, 6.0]], "float32")
    np.testing.assert_allclose(gan_scores.aggregate(per_vector, "mean"), [3.0])
    np.testing.assert_allclose(gan_scores.aggregate(per_vector, "max"), [6.0])
    np.testing.assert_allclose(gan_scores.minmax([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(gan_scores.minmax([5.0], 4.0, 6.0), [0.5])
    with pytest.raises(ValueError, match="aggregation"):
        gan_scores.aggregate(per_vector, "median")


def test_model_scores_match_the_networks_by_hand():
    x = _data(6)
    model = GANomaly(**SMALL)
    z = model.encoder(x).numpy()
    z_hat = model.reencoder(model.decoder(z)).numpy()
    np.testing.assert_allclose(model(x).numpy(), ((z - z_hat) ** 2).mean(-1), rtol=1e-5)
    # Generator loss = w_adv * feature matching + w_con * L1 + w_enc * latent L2.
    losses, d_loss = model.generator_and_discriminator_losses(x, training=False)
    x_hat = model.decoder(z).numpy()
    f_real = model.discriminator(x)["features"].numpy()
    f_fake = model.discriminator(x_hat)["features"].numpy()
    adv = ((f_real - f_fake) ** 2).mean()
    expected = 1.0 * adv + 50.0 * np.abs(x - x_hat).mean() + 1.0 * ((z - z_hat) ** 2).mean()
    np.testing.assert_allclose(float(losses["g_loss"]), expected, rtol=1e-4)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    l_real = model.discriminator(x)["logit"].numpy()
    l_fake = model.discriminator(x_hat)["logit"].numpy()
    bce = 0.5 * (-np.log(sig(l_real)).mean() - np.log(1 - sig(l_fake)).mean())
    np.testing.assert_allclose(float(d_loss), bce, rtol=1e-4)

    skip = SkipGANomaly(**SMALL)
    x_hat = skip.generator(x).numpy()
    f_real = skip.discriminator(x)["features"].numpy()
    f_fake = skip.discriminator(x_hat)["features"].numpy()
    expected = (0.9 * ((x - x_hat) ** 2).mean(-1) + 0.1 * ((f_real - f_fake) ** 2).mean(-1))
    np.testing.assert_allclose(skip(x).numpy(), expected, rtol=1e-4)

    egbad = EGBAD(**SMALL)
    z = egbad.encoder(x).numpy()
    x_hat = egbad.generator(z).numpy()
    f_real = egbad.discriminator([x, z])["features"].numpy()
    f_fake = egbad.discriminator([x_hat, z])["features"].numpy()
    expected = 0.9 * np.abs(x - x_hat).sum(-1) + 0.1 * np.abs(f_real - f_fake).sum(-1)
    np.testing.assert_allclose(egbad(x).numpy(), expected, rtol=1e-4)


# ----------------------------------------------------------------------
# train_step, re-initialisation, options, serialisation
# ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", DETECTORS)
def test_train_step_losses_are_finite_and_move(cls):
    keras.utils.set_random_seed(0)
    model = cls(**SMALL)
    model.compile()
    before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    gen_before = [w.numpy().copy() for w in model.generator_variables()]
    history = model.fit(_data(), batch_size=32, epochs=3, verbose=0).history
    for name in model.loss_names:
        values = np.array(history[name])
        assert np.isfinite(values).all(), name
    assert history["g_loss"][0] != history["g_loss"][-1]
    assert history["d_loss"][0] != history["d_loss"][-1]
    assert int(model.optimizer.iterations) == 9
    assert int(model.discriminator_optimizer.iterations) == 9
    assert any(not np.allclose(a, b.numpy())
               for a, b in zip(before, model.discriminator.trainable_weights))
    assert any(not np.allclose(a, b.numpy())
               for a, b in zip(gen_before, model.generator_variables()))


@pytest.mark.parametrize("order", ["generator_first", "discriminator_first"])
@pytest.mark.parametrize("adversarial", ["feature_matching", "bce"])
def test_options_of_paper_and_code(order, adversarial):
    model = GANomaly(step_order=order, adversarial=adversarial, **SMALL)
    model.compile()
    history = model.fit(_data(), batch_size=48, epochs=1, verbose=0).history
    assert np.isfinite(history["g_loss"]).all()
    with pytest.raises(ValueError, match="step_order"):
        GANomaly(step_order="both", **SMALL)
    with pytest.raises(ValueError, match="adversarial"):
        SkipGANomaly(adversarial="wasserstein", **SMALL)


def test_discriminator_reinitialisation():
    keras.utils.set_random_seed(0)
    # A threshold no loss can reach from below never triggers...
    model = GANomaly(reinit_threshold=0.0, **SMALL)
    model.compile()
    assert model.fit(_data(), batch_size=32, epochs=1, verbose=0).history["d_reinits"] == [0.0]
    # ...and one every loss is below triggers at every step.
    model = GANomaly(reinit_threshold=1e9, **SMALL)
    model.compile()
    assert model.fit(_data(), batch_size=32, epochs=2, verbose=0).history["d_reinits"] == [3.0,
                                                                                           3.0]
    # A direct call draws fresh kernels and resets the BN statistics.
    bn = model.discriminator.get_layer("discriminator_0_bn")
    dense = model.discriminator.get_layer("discriminator_0_dense")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 3.0, "float32"))
    kernel = dense.kernel.numpy().copy()
    model.reinitialize_discriminator()
    assert not np.allclose(kernel, dense.kernel.numpy())
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)
    limit = np.sqrt(6 / (20 + 8))  # Glorot uniform bound
    assert np.abs(dense.kernel.numpy()).max() <= limit
    # Two re-initialisations give different weights (the seed advances).
    first = dense.kernel.numpy().copy()
    model.reinitialize_discriminator()
    assert not np.allclose(first, dense.kernel.numpy())
    assert EGBAD(**SMALL).reinit_threshold is None  # the EGBAD code has none


@pytest.mark.parametrize("cls", DETECTORS)
def test_config_round_trip_and_keras_save_load(cls, tmp_path):
    keras.utils.set_random_seed(0)
    model = cls(initializer="random_normal", dropout=0.25, **SMALL)
    model.compile()
    x = _data()
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    clone = cls.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert int(restored.discriminator_optimizer.iterations) == 3
    # Training continues from the restored optimizer state.
    restored.fit(x, batch_size=32, epochs=1, verbose=0)
    assert int(restored.optimizer.iterations) == 6


# ----------------------------------------------------------------------
# The system: fit, score, resume, save/load, export
# ----------------------------------------------------------------------

TINY = dict(epochs=2, batch_size=64, hidden_units=16, num_hidden_layers=2)


# Skip-GANomaly goes end to end through the CLI test below; EGBAD's and
# every detector's own parts are tested at model level above.
@pytest.mark.parametrize("name", ["ganomaly"])
def test_system_fit_score_save_load_export(name, synthetic_sets, tmp_path):
    import soundfile
    import tensorflow as tf

    table = read_dataset(synthetic_sets["dcase2020"]["dev"])
    system = get_system(name)({**TINY, "normalize": "minmax_train",
                               "machine_overrides": {"valve": {"epochs": 1}}})
    histories = system.fit(table, tmp_path / "run", verbose=0)
    assert len(histories["fan"]) == 2 and len(histories["valve"]) == 1
    assert histories["fan"]["epoch"].tolist() == [1, 2]
    scores = system.score(table)
    assert len(scores) == (table["split"] == "test").sum()
    assert np.isfinite(scores["score_raw"]).all()
    state = system.scoring["fan"]
    fan = scores[scores["machine_type"] == "fan"]
    np.testing.assert_allclose(
        fan["score"], (fan["score_raw"] - state["train_min"])
        / (state["train_max"] - state["train_min"]), rtol=1e-6)
    assert set(scores["decision"]) <= {0, 1}
    loaded = type(system).load(tmp_path / "run", system.config)
    again = loaded.score(table)
    # Same machine and batches, but reloaded weights may take other kernels.
    np.testing.assert_allclose(again["score"].to_numpy(), scores["score"].to_numpy(),
                               rtol=1e-6, atol=1e-7)
    system.export(tmp_path / "export")
    served = tf.saved_model.load(str(tmp_path / "export"))
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in fan["path"]])
    out = served.serve(tf.constant(waves), tf.constant("fan"))
    np.testing.assert_allclose(out["anomaly_score"].numpy(), fan["score"], rtol=1e-4, atol=1e-6)
    assert_decisions_match(out["decision"].numpy(), fan["decision"], fan["score_raw"],
                           state["threshold"])


def test_minmax_test_and_bad_config(synthetic_sets):
    with pytest.raises(ValueError, match="normalize"):
        get_system("ganomaly")({"normalize": "zscore"})
    with pytest.raises(ValueError, match="cannot differ per machine type"):
        get_system("ganomaly")({"machine_overrides": {"fan": {"n_mels": 64}}})
    with pytest.raises(ValueError, match="initializer must be one of"):
        get_system("egbad")({"initializer": "orthogonal"})
    with pytest.raises(ValueError, match="step_order"):
        get_system("skip_ganomaly")({"machine_overrides": {"fan": {"step_order": "x"}}})


def test_interrupted_fit_resumes(synthetic_sets, tmp_path, monkeypatch):
    table = read_dataset(synthetic_sets["dcase2020"]["dev"])
    checkpoints = tmp_path / "ckpt"
    system = get_system("ganomaly")(TINY)
    original = GANSystem._fit_scoring

    def crash_on_valve(self, machine_type, group, loader):
        if machine_type == "valve":
            raise KeyboardInterrupt("simulated interruption")
        return original(self, machine_type, group, loader)

    monkeypatch.setattr(GANSystem, "_fit_scoring", crash_on_valve)
    with pytest.raises(KeyboardInterrupt):
        system.fit(table, tmp_path / "run1", verbose=0, checkpoint_dir=checkpoints)
    assert (checkpoints / "fan" / "done" / "scoring.json").is_file()
    meta = json.loads((checkpoints / "valve" / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    monkeypatch.setattr(GANSystem, "_fit_scoring", original)
    resumed = get_system("ganomaly")(TINY)
    histories = resumed.fit(table, tmp_path / "run2", verbose=0, checkpoint_dir=checkpoints)
    # Valve's two epochs were done before the interruption: none is repeated.
    valve = resumed.models["valve"]
    steps = -(-int(sum(resumed.frontend.num_vectors(f) for f in
                       resumed.loader().check(sorted(table[(table.split == "train") & (
                           table.machine_type == "valve")]["path"]), progress=False)["frames"]))
              // 64)
    assert int(valve.optimizer.iterations) == 2 * steps
    assert histories["valve"]["epoch"].tolist() == [1, 2]
    # Fan was reused from its finished checkpoint, not retrained.
    fan = table[table["machine_type"] == "fan"]
    np.testing.assert_allclose(resumed.score(fan)["score"], system.score(fan)["score"],
                               rtol=1e-6)


def test_cli_train_score_evaluate_export_and_resume_guard(synthetic_sets, tmp_path):
    from asd_keras import cli

    dev = str(synthetic_sets["dcase2020"]["dev"])
    run = tmp_path / "run"
    overrides = [f"{k}={v}" for k, v in TINY.items()]
    args = ["train", "--system", "skip_ganomaly", "--data", dev, "--out", str(run),
            "--verbose", "0", *overrides]
    # Checkpoints of another configuration are refused without --force.
    (tmp_path / "run.checkpoints").mkdir()
    (tmp_path / "run.checkpoints" / "fingerprint.json").write_text("{}")
    assert cli.main(args) == 2
    assert cli.main(args + ["--force"]) == 0
    assert not (tmp_path / "run.checkpoints").exists()  # removed after success
    assert (run / "models" / "fan" / "model.keras").is_file()
    assert cli.main(["score", "--run", str(run), "--data", dev, "--out",
                     str(tmp_path / "scores")]) == 0
    frame = pd.read_csv(tmp_path / "scores" / "scores.csv")
    assert {"score", "score_raw", "decision"} <= set(frame.columns)
    assert cli.main(["evaluate", "--scores", str(tmp_path / "scores"), "--data", dev]) == 0
    assert cli.main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "saved_model.pb").is_file()


@pytest.mark.parametrize("layout", ["dcase2026"])
def test_later_layouts_train_per_machine_type(layout, synthetic_sets, tmp_path):
    table = read_dataset(synthetic_sets[layout]["dev"])
    system = get_system("ganomaly")({**TINY, "epochs": 1, "variant": "dcase2022"})
    system.fit(table, tmp_path / "run", verbose=0)
    assert sorted(system.models) == ["fan", "valve"]
    scores = system.score(table)
    assert np.isfinite(scores["score"]).all() and set(scores["domain"]) == {"source", "target"}
