
import keras
import numpy as np
import pandas as pd
import pytest
from tests.helpers import assert_decisions_match

from asd_keras.data.layouts import read_dataset
from asd_keras.extractors import get_extractor
from asd_keras.layers import VectorScores
from asd_keras.losses.adversarial import AdversarialCrossEntropy
from asd_keras.losses.adversarial import FeatureMatching
from asd_keras.losses.adversarial import adversarial_crossentropy
from asd_keras.losses.adversarial import feature_matching
from asd_keras.models.blocks import dense_decoder
from asd_keras.models.blocks import dense_discriminator
from asd_keras.models.blocks import dense_encoder
from asd_keras.models.blocks import dense_unet
from asd_keras.models.gan import EGBAD
from asd_keras.models.gan import GANomaly
from asd_keras.models.gan import SkipGANomaly
from asd_keras.models import gan_scores
from asd_keras.systems import get_system

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
    model.compile("adam", FeatureMatching(), jit_compile=False)
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


# Each option's two values, in two combinations (the step order, the
# adversarial loss and the re-initialisation are independent code paths of
# train_step). A threshold no loss can reach from below never triggers a
# re-initialisation; one every loss is below triggers at every step.
@pytest.mark.parametrize("order, adversarial, reinit_threshold, reinits", [
    ("generator_first", "feature_matching", 0.0, [0.0, 0.0]),
    ("discriminator_first", "bce", 1e9, [3.0, 3.0])])
def test_options_of_paper_and_code(order, adversarial, reinit_threshold, reinits):
    keras.utils.set_random_seed(0)
    model = GANomaly(step_order=order, adversarial=adversarial,
                     reinit_threshold=reinit_threshold, **SMALL)
    model.compile()
    history = model.fit(_data(), batch_size=32, epochs=2, verbose=0).history
    assert np.isfinite(history["g_loss"]).all()
    assert history["d_reinits"] == reinits  # 3 steps per epoch
    with pytest.raises(ValueError, match="step_order"):
        GANomaly(step_order="both", **SMALL)
    with pytest.raises(ValueError, match="adversarial"):
        SkipGANomaly(adversarial="wasserstein", **SMALL)


def test_discriminator_reinitialisation():
    keras.utils.set_random_seed(0)
    model = GANomaly(**SMALL)
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
    x = _data()
    expected = model.predict(x, verbose=0)
    clone = cls.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is cls and restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, rtol=1e-6)


# The three detectors share train_step; each one's losses go through it in
# the system tests (GANomaly in the regression case, Skip-GANomaly through
# the CLI below, EGBAD through the export test of tests/test_systems.py).
def test_training_moves_both_networks_and_resumes_from_a_saved_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = EGBAD(initializer="random_normal", dropout=0.25, **SMALL)
    model.compile()
    x = _data()
    before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    gen_before = [w.numpy().copy() for w in model.generator_variables()]
    history = model.fit(x, batch_size=32, epochs=2, verbose=0).history
    # Both networks train, with finite losses that move.
    for name in model.loss_names:
        assert np.isfinite(history[name]).all(), name
    assert history["g_loss"][0] != history["g_loss"][-1]
    assert history["d_loss"][0] != history["d_loss"][-1]
    assert int(model.optimizer.iterations) == 6
    assert any(not np.allclose(a, b.numpy())
               for a, b in zip(before, model.discriminator.trainable_weights))
    assert any(not np.allclose(a, b.numpy())
               for a, b in zip(gen_before, model.generator_variables()))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert int(restored.discriminator_optimizer.iterations) == 6
    # Training continues from the restored optimizer state.
    restored.fit(x, batch_size=32, epochs=1, verbose=0)
    assert int(restored.optimizer.iterations) == 9


# ----------------------------------------------------------------------
# The VectorScores layer: a detector over a clip's vectors, per clip
# ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", DETECTORS)
def test_vector_scores_by_hand_config_and_save_load(cls, tmp_path):
    keras.utils.set_random_seed(0)
    detector = cls(**SMALL)
    vectors = np.random.default_rng(2).normal(size=(3, 7, 20)).astype("float32")
    per_vector = detector(vectors.reshape(-1, 20), training=False).numpy().reshape(3, 7)
    for how, expected in (("mean", per_vector.mean(axis=1)), ("max", per_vector.max(axis=1))):
        layer = VectorScores(detector, how)
        out = np.asarray(layer(vectors))
        assert out.shape == (3, 1) == layer.compute_output_shape((3, 7, 20))
        np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5, atol=1e-7)
    clone = VectorScores.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.aggregation == "max"
    assert type(clone.detector) is cls
    inputs = keras.Input((None, 20))
    model = keras.Model(inputs, VectorScores(detector)(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(restored(vectors))[:, 0], per_vector.mean(axis=1),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"aggregation must be one of \('mean', 'max'\)"):
        VectorScores(detector, "median")


def test_extractor_builds_each_detector_with_its_own_defaults():
    small = dict(hidden_units=8, num_hidden_layers=1, latent_dim=2, n_mels=4, n_frames=2)
    ganomaly = get_extractor("gan", detector="ganomaly", **small).build_detector()
    assert isinstance(ganomaly, GANomaly) and ganomaly.input_dim == 8
    assert ganomaly.adversarial == "feature_matching" and ganomaly.reinit_threshold == 1e-5
    skip = get_extractor("gan", detector="skip_ganomaly", adversarial="feature_matching",
                         score_weight=0.5, discriminator_latent_term=False,
                         **small).build_detector()
    assert isinstance(skip, SkipGANomaly) and skip.adversarial == "feature_matching"
    assert skip.score_weight == 0.5 and not skip.discriminator_latent_term
    egbad = get_extractor("gan", detector="egbad", w_adv=7, **small).build_detector()
    assert isinstance(egbad, EGBAD) and egbad.reinit_threshold is None
    assert egbad.step_order == "discriminator_first" and egbad.score_weight == 0.1
    never = get_extractor("gan", reinit_threshold=None, learning_rate=1e-3, beta_1=0.3,
                          **small).build_detector("named")
    assert never.reinit_threshold is None and never.name == "named"
    assert float(never.discriminator_optimizer.learning_rate) == pytest.approx(1e-3)
    assert float(never.optimizer.beta_1) == pytest.approx(0.3)
    assert get_extractor("gan").config["log_mode"] == "offset"  # variant dcase2020
    assert get_extractor("gan", variant="dcase2022").config["pad_mode"] == "constant"
    with pytest.raises(ValueError, match="detector must be one of"):
        get_extractor("gan", detector="bigan")
    with pytest.raises(ValueError, match="not trained"):
        get_extractor("gan").serving_model()


# ----------------------------------------------------------------------
# The presets: fit, score, resume, save/load, export
# ----------------------------------------------------------------------

TINY = dict(epochs=2, batch_size=64, hidden_units=16, num_hidden_layers=2)


def test_bad_config_and_no_minmax_test(synthetic_sets):
    with pytest.raises(ValueError, match="normalize must be one of"):
        get_system("ganomaly")({"normalize": "zscore"})
    # Min-max over the test set is transductive: not a backend option.
    with pytest.raises(ValueError, match="normalize must be one of"):
        get_system("ganomaly")({"normalize": "minmax_test"})
    with pytest.raises(ValueError, match=r"machine_overrides\['fan'\] has key\(s\) "
                                         r"\['threshold'\] that are not keys"):
        get_system("ganomaly")({"machine_overrides": {"fan": {"threshold": "percentile"}}})
    with pytest.raises(ValueError, match="initializer must be one of"):
        get_system("egbad")({"initializer": "orthogonal"})
    with pytest.raises(ValueError, match=r"machine_overrides\['fan'\]: step_order must be"):
        get_system("skip_ganomaly")({"machine_overrides": {"fan": {"step_order": "x"}}})
    with pytest.raises(ValueError, match="trains the 'ganomaly' detector; received "
                                         "detector='egbad'"):
        get_system("ganomaly")({"detector": "egbad"})
    # The two-optimizer train_step does not run under tf.distribute (yet).
    with pytest.raises(ValueError, match="use distribute=none"):
        get_system("egbad")({"distribute": "mirrored"})
    from asd_keras.utils.training import TrainingContext

    with pytest.raises(ValueError, match="use distribute=none"):
        get_extractor("gan").fit(pd.DataFrame({"path": []}),
                                 TrainingContext(distribute="mirrored"))
    # Each machine type has its own extractor, so even its front end may differ.
    system = get_system("ganomaly")({"machine_overrides": {"fan": {"n_mels": 64,
                                                                   "normalize": "minmax_train"}}})
    assert system._new_extractor(0, "fan").config["n_mels"] == 64
    assert system._new_extractor(0, "valve").config["n_mels"] == 128
    assert system._new_backend(0, "fan").normalize == "minmax_train"


# One preset end to end (the others share its extractor and backend): the
# CLI, then the loaded system's scores checked against the formulas.
def test_cli_train_score_evaluate_export_and_the_score_formulas(synthetic_sets, tmp_path):
    import soundfile
    import tensorflow as tf

    from asd_keras import cli
    from asd_keras import runs
    from asd_keras.systems.threshold import gamma_threshold

    dev = str(synthetic_sets["dcase2020"]["dev"])
    run = tmp_path / "run"
    overrides = [f"{k}={v}" for k, v in TINY.items()]
    args = ["train", "--system", "skip_ganomaly", "--data", dev, "--out", str(run),
            "--verbose", "0", *overrides, "normalize=minmax_train",
            "machine_overrides={valve: {epochs: 1}}"]
    # Checkpoints of another configuration are refused without --force.
    (tmp_path / "run.checkpoints").mkdir()
    (tmp_path / "run.checkpoints" / "fingerprint.json").write_text("{}")
    assert cli.main(args) == 2
    assert cli.main(args + ["--force"]) == 0
    assert not (tmp_path / "run.checkpoints").exists()  # removed after success
    history = pd.read_csv(run / "history" / "member0_fan.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert {"g_loss", "d_loss", "d_reinits"} <= set(history.columns)
    assert len(pd.read_csv(run / "history" / "member0_valve.csv")) == 1
    assert (run / "members" / "member0" / "extractors" / "fan" / "model.keras").is_file()
    assert (run / "members" / "member0" / "backends" / "fan" / "arrays.npz").is_file()
    assert cli.main(["score", "--run", str(run), "--data", dev, "--out",
                     str(tmp_path / "scores")]) == 0
    scores = pd.read_csv(tmp_path / "scores" / "scores.csv")
    assert {"score", "decision"} <= set(scores.columns) and "score_raw" not in scores.columns
    assert cli.main(["evaluate", "--scores", str(tmp_path / "scores"), "--data", dev]) == 0
    assert cli.main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0

    system = runs.load_run(run)[0]
    extractors = system.members[0].extractors
    assert extractors["valve"].config["epochs"] == 1 and extractors["fan"].config["epochs"] == 2
    table = read_dataset(synthetic_sets["dcase2020"]["dev"])
    fan = table[(table["split"] == "test") & (table["machine_type"] == "fan")]
    fan_scores = scores[scores["machine_type"] == "fan"].set_index("file_name")
    fan = fan.assign(score=fan_scores.loc[fan["file_name"], "score"].to_numpy())
    # The raw clip scores are the extractor's features: the mean over the
    # clip's stacked log-mel vectors of the detector's per-vector scores.
    raw = system.features(fan)[:, 0]
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in fan["path"]])
    extractor = extractors["fan"]
    vectors = extractor.frontend.vectors(tf.constant(waves)).numpy()
    per_vector = extractor.model(vectors.reshape(-1, vectors.shape[-1]), training=False)
    np.testing.assert_allclose(raw, np.asarray(per_vector).reshape(len(waves), -1).mean(1),
                               rtol=1e-5, atol=1e-7)
    # minmax_train: each machine type's training scores span 0 .. 1, and the
    # threshold is the gamma rule's on them.
    train = table[(table["split"] == "train") & (table["machine_type"] == "fan")]
    train_raw = system.features(train)[:, 0]
    train_scores = (train_raw - train_raw.min()) / (train_raw.max() - train_raw.min())
    np.testing.assert_allclose(fan["score"], (raw - train_raw.min()) / np.ptp(train_raw),
                               rtol=1e-5, atol=1e-6)
    # The threshold was fitted on the features computed during training, in
    # other batches than here, so it carries the features' error (1e-5
    # relative above) divided by the scores' span (minmax) and passed
    # through the gamma fit's moments: 4.6e-4 relative on an Intel Xeon with
    # oneDNN. 1e-5 of the raw scale over the span, times 100, bounds that.
    span_error = float(1e-5 * np.abs(train_raw).max() / np.ptp(train_raw))
    assert system.thresholds["fan"] == pytest.approx(gamma_threshold(train_scores, 0.9),
                                                     rel=max(100 * span_error, 1e-4))
    # The SavedModel gives the scores and decisions of `score`.
    served = tf.saved_model.load(str(tmp_path / "export"))
    out = served.serve(tf.constant(waves), tf.constant("fan"))
    # Relative to the scores' scale: the served graph batches differently.
    np.testing.assert_allclose(out["anomaly_score"].numpy(), fan["score"], rtol=1e-4,
                               atol=1e-4 * np.abs(fan["score"]).max())
    decisions = fan_scores.loc[fan["file_name"], "decision"]
    assert_decisions_match(out["decision"].numpy(), decisions, fan["score"],
                           system.thresholds["fan"])
