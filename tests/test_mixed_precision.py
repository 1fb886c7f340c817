"""The `dtype_policy` key of the trained extractors (`asd_keras.models.precision`).

Every trained family is trained for one epoch at a tiny size under
`mixed_bfloat16` (the policy a CPU runs): the networks keep float32
variables and compute in bfloat16, the loss and every feature and score are
finite float32, a saved and loaded model gives the same features, the
exported SavedModel takes and returns float32, and the global policy is
float32 again afterwards. The GAN's own two-optimizer step is also
compiled with XLA, and checked for its loss scaling under `mixed_float16`
(meant for GPUs). The float32-versus-
bfloat16 score difference is a measurement, not a test:
benchmarks/bench_mixed_precision.py.
"""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from asd_keras.data.layouts import read_dataset
from asd_keras.extractors import EXTRACTORS
from asd_keras.extractors import get_extractor
from asd_keras.extractors import load_extractor
from asd_keras.models.precision import DTYPE_POLICIES
from asd_keras.systems import get_system
from asd_keras.utils.training import TrainingContext
from tests.conftest import make_tiny_dev
from tests.helpers import assert_close_to_scale

MIXED = "mixed_bfloat16"
VECTORS = dict(epochs=1, batch_size=64, hidden_units=16, num_hidden_layers=1, latent_dim=4)
# The spectrum branch alone (tests/test_wilkinghoff.py's FAST): a few seconds.
WILKINGHOFF = dict(epochs=1, clip_seconds=1.0, batch_size=8, branches="spectrum",
                   classes="section", kmeans_clusters=2)
# Eager, as tests/test_resnet_classifier.py: tracing a ResNet costs more here.
RESNET = dict(clip_seconds=1.0, n_mels=32, epochs=1, batch_size=8, score_batch_clips=8,
              run_eagerly=True)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """One machine type, three sections of 4 training and 4 test clips of 1 s."""
    return read_dataset(make_tiny_dev(tmp_path_factory.mktemp("mixed")))


def _train(table):
    return table[table["split"] == "train"].reset_index(drop=True)


def _test(table):
    return table[table["split"] == "test"].reset_index(drop=True)


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _policies(networks):
    """The dtype policy of every layer with weights, by layer path (nested
    Functional models left out: Keras does not save their own policy, which
    plays no part, each layer casting its inputs and variables itself)."""
    return {layer.path: layer.dtype_policy.name for net in networks
            for layer in _layers(net)
            if layer.weights and not isinstance(layer, keras.Model)}


def _assert_mixed(model, networks=None):
    """float32 variables everywhere; bfloat16 compute in the layers with
    weights but the pinned float32 ones; float32 outputs."""
    assert model.dtype_policy.name == MIXED
    assert model.weights and {w.dtype for w in model.weights} == {"float32"}
    layers = [layer for net in (networks or [model]) for layer in _layers(net)]
    assert MIXED in _policies(networks or [model]).values()
    for layer in layers:
        if type(layer).__name__ in ("LinearSpectrogram", "ClipSpectrum", "LogMelSpectrogram",
                                    "SubClusterAdaCos", "ArcFace", "Mixup"):
            assert layer.compute_dtype == "float32", layer.name
    for net in networks or [model]:
        for output in keras.tree.flatten(net.output):
            assert output.dtype == "float32", (net.name, output.dtype)


def _assert_float32_features(features):
    for name, values in features.items():
        assert values.dtype == np.float32, name
        assert np.isfinite(values).all() and np.abs(values).max() > 0, name


# -- configuration ---------------------------------------------------------------


TRAINED = [name for name in EXTRACTORS if EXTRACTORS.get(name).trainable]


@pytest.mark.parametrize("name", TRAINED)
def test_every_trained_extractor_takes_dtype_policy_and_jit_compile(name):
    assert get_extractor(name).get_config()["dtype_policy"] == "float32"
    assert get_extractor(name).get_config()["jit_compile"] == "auto"
    for policy in DTYPE_POLICIES:
        assert get_extractor(name, dtype_policy=policy).get_config()["dtype_policy"] == policy
    with pytest.raises(ValueError, match=r"dtype_policy must be one of \('float32', "
                                         r"'mixed_bfloat16', 'mixed_float16'\); received "
                                         r"'bfloat16'"):
        get_extractor(name, dtype_policy="bfloat16")


def test_systems_take_the_key_and_reject_a_bad_value():
    assert {"gan", "dense_ae", "classifier_embedding", "resnet_classifier", "contrastive",
            "separation", "finetuned_encoder"} <= set(TRAINED)
    assert get_system("ganomaly")({"dtype_policy": MIXED}).config["dtype_policy"] == MIXED
    with pytest.raises(ValueError, match=r"dtype_policy must be one of .*received 'fp16'"):
        get_system("wilkinghoff")({"dtype_policy": "fp16"})


# -- training, save/load and export per family ------------------------------------


@pytest.mark.parametrize("system_name, config", [
    ("dense_ae", VECTORS), ("wilkinghoff", WILKINGHOFF)])
def test_mixed_bfloat16_system_trains_scores_reloads_and_exports(table, tmp_path,
                                                                 system_name, config):
    import tensorflow as tf

    from tests.helpers import serve_saved_model

    system = get_system(system_name)(dict(config, dtype_policy=MIXED))
    system.fit(table, tmp_path / "run", verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # no leak
    extractor = next(iter(system.members[0].extractors.values()))
    _assert_mixed(extractor.model)
    history = pd.read_csv(next((tmp_path / "run" / "history").glob("*.csv")))
    losses = history[[c for c in history if "loss" in c and not c.startswith("val_")]]
    assert len(history) == 1 and np.isfinite(losses.to_numpy()).all()
    test = _test(table)
    _assert_float32_features(extractor.transform(test))
    scores = system.score(test)["score"].to_numpy()
    assert np.isfinite(scores).all()

    folder = next((tmp_path / "run" / "members" / "member0" / "extractors").iterdir())
    assert json.loads((folder / "extractor.json").read_text())["config"][
        "dtype_policy"] == MIXED
    loaded = type(system).load(tmp_path / "run", system.config)
    again = next(iter(loaded.members[0].extractors.values()))
    assert _policies([again.model]) == _policies([extractor.model])
    assert_close_to_scale(loaded.score(test)["score"], scores, rtol=1e-5)

    system.export(tmp_path / "export")
    signature = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    assert signature.structured_input_signature[1]["waveform"].dtype == tf.float32
    assert signature.structured_outputs["anomaly_score"].dtype == tf.float32
    fan = test[test["section"] == test["section"].iloc[0]]
    strings = {"machine_type": "fan", "section": fan["section"].iloc[0]}
    served, _ = serve_saved_model(tmp_path / "export", list(fan["path"]),
                                  {k: v for k, v in strings.items()
                                   if k in signature.structured_input_signature[1]})
    # bfloat16 keeps 8 significant bits; the SavedModel's graph fuses ops
    # (a bias into its matmul) that eager Keras rounds separately, so the two
    # agree to a few bfloat16 roundings (4.5e-4 seen), not to float32's.
    assert_close_to_scale(served, scores[fan.index], rtol=1e-2)
    assert keras.config.dtype_policy().name == "float32"


def test_mixed_bfloat16_resnet_trains_and_reloads(table, tmp_path):
    extractor = get_extractor("resnet_classifier", dtype_policy=MIXED, **RESNET)
    history = extractor.fit(_train(table), TrainingContext(verbose=0), "resnet")
    assert np.isfinite(history["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"
    _assert_mixed(extractor.training_model)
    assert extractor.serving_model().output["embedding"].dtype == "float32"
    test = _test(table)
    before = extractor.transform(test)
    _assert_float32_features(before)
    extractor.save(tmp_path / "resnet")
    after = load_extractor(tmp_path / "resnet").transform(test)
    assert_close_to_scale(after["embedding"], before["embedding"], rtol=1e-5)


# -- the GAN's own train_step: XLA and mixed_float16 --------------------------------


def _vectors():
    # Three full batches of 32: one trace (and one XLA compilation).
    return np.random.default_rng(0).normal(size=(96, 16)).astype("float32")


def test_mixed_bfloat16_gan_compiles_with_xla_and_reloads(tmp_path):
    """GANomaly's own step under XLA and mixed_bfloat16, re-initialising the
    discriminator (a threshold every loss is below) inside the compiled step;
    the saved model is rebuilt with its sub-networks' policy. (The vector
    extractors' export is tested on the dense AE above.)"""
    from asd_keras.utils.io import load_keras_model

    extractor = get_extractor("gan", detector="ganomaly", n_mels=8, n_frames=2,
                              reinit_threshold=1e9, jit_compile=True, dtype_policy=MIXED,
                              **VECTORS)
    model = extractor.build_detector()
    assert model.jit_compile
    history = model.fit(_vectors(), batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(history["g_loss"]).all() and np.isfinite(history["d_loss"]).all()
    assert history["d_reinits"] == [3.0]  # every step
    assert keras.config.dtype_policy().name == "float32"
    networks = model.generator_networks + [model.discriminator]
    _assert_mixed(model, networks)
    scores = keras.ops.convert_to_numpy(model(_vectors()))
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    model.save(tmp_path / "gan.keras")
    loaded = load_keras_model(tmp_path / "gan.keras")
    assert _policies(loaded.generator_networks + [loaded.discriminator]) == _policies(
        networks)
    assert_close_to_scale(keras.ops.convert_to_numpy(loaded(_vectors())), scores, rtol=1e-5)


def test_gan_scales_both_float16_losses():
    """mixed_float16 (for GPUs; slow but working on a CPU): both optimizers
    of the two-optimizer step are loss-scaled and the step stays finite."""
    extractor = get_extractor("gan", detector="egbad", n_mels=8, n_frames=2,
                              jit_compile=False, dtype_policy="mixed_float16", **VECTORS)
    model = extractor.build_detector()
    for optimizer in (model.optimizer, model.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.discriminator.get_layer("discriminator_0_dense").compute_dtype == "float16"
    history = model.fit(_vectors(), batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(history["g_loss"]).all() and np.isfinite(history["d_loss"]).all()
    # Every step's scaled gradients were finite, so each was applied.
    assert int(model.discriminator_optimizer.iterations) == 3
    scores = keras.ops.convert_to_numpy(model(_vectors()))
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert keras.config.dtype_policy().name == "float32"
