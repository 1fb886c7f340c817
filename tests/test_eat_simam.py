"""EAT fine-tuned for ASD (the enhanced-feature paper): network, optimizer,
extractor and the `eat_simam` system on tiny presets and clips."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile
from tests.conftest import make_synthetic
from tests.helpers import assert_decisions_match

from asd_keras.cli import main
from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.extractors.base import get_extractor
from asd_keras.layers import SimAM
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.audio_encoders import transfer_weights
from asd_keras.models.encoder_finetuning import block_index
from asd_keras.models.encoder_finetuning import eat_embedding_model
from asd_keras.optimizers import LayerwiseAdamW
from asd_keras.systems import get_system

RATE = 16000
TINY = {"num_layers": 2, "dim": 32, "num_heads": 2}


def _run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A tiny EAT written as a converted preset folder (pre-trained weights)."""
    folder = tmp_path_factory.mktemp("presets") / "eat_tiny"
    keras.utils.set_random_seed(5)
    build_encoder("eat", num_frames=112, **TINY).save_to_preset(
        folder, metadata={"checkpoint": "tiny test encoder"})
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("eat_simam"), "dcase2023",
                          machine_types=("fan", "valve"), train=4, target_train=2, test=2,
                          eval=False)
    dev = synthetic_data_root(root, "dcase2023", "dev")
    return dev, read_dataset(dev)


# -- the network -----------------------------------------------------------------


def test_network_copies_the_preset_and_reproduces_its_tokens(preset):
    """With the mel bank, the preset's normalisation, no SimAM and no masks,
    the network's last block equals the preset encoder's `layer_2`."""
    keras.utils.set_random_seed(0)
    encoder = build_encoder("eat", num_frames=112, **TINY)
    encoder.load_weights(preset / "model.weights.h5")
    network = eat_embedding_model(RATE, {**TINY, "num_frames": 112}, "mel",
                                  time_mask_width=0, freq_mask_width=0, embedding_dim=8)
    copied = transfer_weights(encoder, network)
    assert {"local_encoder", "extra_tokens", "context_encoder_norm", "blocks_0_attn",
            "blocks_1_mlp_fc2"} <= set(copied)
    assert "attentive_pooling" not in copied and "embedding" not in copied
    waves = np.random.default_rng(1).normal(0, 0.1, (2, RATE)).astype("float32")
    probe = keras.Model(network.input, network.get_layer("blocks_1_norm2").output)
    np.testing.assert_allclose(probe.predict(waves, verbose=0),
                               encoder.predict(waves, verbose=0)["layer_2"], atol=1e-5)
    assert network.output_shape == (None, 8)


def test_network_front_end_bank_simam_and_pooling():
    network = eat_embedding_model(RATE, TINY, "linear", norm_mean=-1.0, norm_std=2.0,
                                  simam="local", simam_tile=32, pooling="asp",
                                  attention_dim=4, embedding_dim=6)
    fbank = network.get_layer("fbank")
    # 98 frames of a 1 s clip, rounded up to a multiple of the 16-frame patch.
    assert (fbank.filter_bank, fbank.num_frames, fbank.norm_mean) == ("linear", 112, -1.0)
    waves = np.random.default_rng(2).normal(0, 0.1, (2, RATE)).astype("float32")
    probe = keras.Model(network.input, [fbank.output, network.get_layer("simam").output])
    before, after = probe.predict(waves, verbose=0)
    expected = SimAM("local", 32)(before)
    np.testing.assert_allclose(after, keras.ops.convert_to_numpy(expected), atol=1e-5)
    # The patch tokens only: ASP gives 2 x dim from 7 x 8 tokens.
    assert network.get_layer("attentive_pooling").output.shape == (None, 64)
    assert network.predict(waves, verbose=0).shape == (2, 6)
    with pytest.raises(ValueError, match="'attention'"):
        eat_embedding_model(RATE, TINY, pooling="attention")
    with pytest.raises(ValueError, match=r"\['depth'\]"):
        eat_embedding_model(RATE, {"depth": 2})
    assert [block_index(n) for n in ("blocks_3_attn", "local_encoder", "embedding")] == [
        3, -1, None]


# -- layer-wise learning rates -----------------------------------------------------


def _two_layers():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="low")(inputs)
    outputs = keras.layers.Dense(1, name="top")(x)
    return keras.Model(inputs, outputs)


def test_layerwise_adamw_scales_each_layers_step(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    moved = {}
    for name, optimizer in (
            ("plain", keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.0)),
            ("scaled", LayerwiseAdamW({"low": 0.25, "top": 0.0}, learning_rate=0.01,
                                      weight_decay=0.0))):
        keras.utils.set_random_seed(3)
        model = _two_layers()
        before = {w.path: w.numpy().copy() for w in model.weights}
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        moved[name] = {w.path: w.numpy() - before[w.path] for w in model.weights}
    for path, step in moved["scaled"].items():
        expected = 0.0 if path.startswith("top") else 0.25
        np.testing.assert_allclose(step, expected * moved["plain"][path], rtol=1e-4,
                                   atol=1e-8)
    assert np.abs(moved["plain"]["low/kernel"]).max() > 1e-3
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.optimizer.layer_scales == {"low": 0.25, "top": 0.0}
    with pytest.raises(ValueError, match="-1.0"):
        LayerwiseAdamW({"low": -1.0})


def test_extractor_layer_decay_and_frozen_blocks(preset):
    extractor = get_extractor("finetuned_encoder", preset=str(preset), filter_bank="mel",
                              clip_seconds=1.0, length_policy="truncate", frozen_blocks=1,
                              layer_decay=0.5)
    network = extractor.build_network([], None)  # mel: the preset's normalisation
    assert extractor.data_choices["norm_mean"] == -4.268
    assert extractor.data_choices["weights"].startswith("fine-tuned from tiny test encoder")
    frozen = {layer.name for layer in network.layers if not layer.trainable}
    assert {"local_encoder", "blocks_0_attn", "blocks_0_mlp_fc1"} <= frozen
    assert not frozen & {"blocks_1_attn", "attentive_pooling", "embedding"}
    optimizer = extractor.optimizer(network)
    assert optimizer.scale_of("blocks_1_attn/kernel") == 0.5
    assert optimizer.scale_of("blocks_0_attn/kernel") == 0.25
    assert optimizer.scale_of("local_encoder/kernel") == 0.125
    assert optimizer.scale_of("embedding/kernel") == 1.0
    with pytest.raises(ValueError, match="frozen_blocks=3 exceeds the preset's 2"):
        get_extractor("finetuned_encoder", preset=str(preset), filter_bank="mel",
                      clip_seconds=1.0, length_policy="truncate",
                      frozen_blocks=3).build_network([], None)


# -- configuration -------------------------------------------------------------------


def test_customised_simam_becomes_per_machine_networks():
    system = get_system("eat_simam")({"simam": {"default": "local", "fan": "global"}})
    assert system.config["extractor_grouping"] == "machine_type"
    assert system.config["simam"] == "local"
    assert system.config["machine_overrides"] == {"fan": {"simam": "global"}}
    assert system._new_extractor(0, "fan").config["simam"] == "global"
    assert system._new_extractor(0, "valve").config["simam"] == "local"
    defaults = get_system("eat_simam")({}).config
    assert (defaults["filter_bank"], defaults["simam"], defaults["pooling"], defaults["loss"],
            defaults["backend"], defaults["local_density"]) == (
        "linear", "local", "asp", "arcface", "knn", "ratio")
    with pytest.raises(ValueError, match="needs a 'default' mode"):
        get_system("eat_simam")({"simam": {"fan": "global"}})
    with pytest.raises(ValueError, match="extractor_grouping=machine_type"):
        get_system("eat_simam")({"simam": {"default": "local"}, "extractor_grouping": "all"})
    with pytest.raises(ValueError, match="'sideways'"):
        get_system("eat_simam")({"simam": {"default": "sideways"}})
    with pytest.raises(ValueError, match="is a beats encoder"):
        get_system("eat_simam")({"preset": "beats_iter3"})
    with pytest.raises(FileNotFoundError, match="no_such_preset"):
        get_system("eat_simam")({"preset": "no_such_preset"})


# -- end to end ------------------------------------------------------------------


def test_train_score_export_with_estimated_normalisation(preset, data, tmp_path, capsys):
    """The `eat_simam` preset from the command line: fine-tune the preset with
    the linear bank and local SimAM, score, evaluate, export; the SavedModel
    serves the scores of `score`, and the re-estimated normalisation is the
    mean and std of the training clips' log energies."""
    dev, table = data
    run, scores, export = tmp_path / "run", tmp_path / "scores", tmp_path / "export"
    assert _run("train", "--system", "eat_simam", "--data", dev, "--out", run,
                "--verbose", 0, f"preset={preset}", "clip_seconds=1.0", "epochs=1",
                "batch_size=8", "attention_dim=8", "embedding_dim=16",
                "jit_compile=false") == 0
    record = json.loads((run / "run.json").read_text())
    choices = record["data_choices"]
    choices = next(iter(choices.values())) if "norm_mean" not in choices else choices
    train = table[table["split"] == "train"]
    fbank = KaldiFbank(window_type="hanning", subtract_waveform_mean=True,
                       filter_bank="linear", norm_mean=0.0, norm_std=0.5)
    values = np.concatenate([
        keras.ops.convert_to_numpy(fbank(soundfile.read(p, dtype="float32")[0][None]))
        .ravel() for p in train["path"]]).astype(np.float64)
    np.testing.assert_allclose([choices["norm_mean"], choices["norm_std"]],
                               [values.mean(), values.std()], rtol=1e-4)
    assert choices["num_frames"] == 112
    assert _run("score", "--run", run, "--data", dev, "--out", scores) == 0
    assert _run("evaluate", "--scores", scores, "--data", dev) == 0
    capsys.readouterr()
    assert _run("export", "--run", run, "--out", export) == 0
    import tensorflow as tf

    produced = pd.read_csv(scores / "scores.csv", dtype={"section": str})
    assert np.isfinite(produced["score"]).all()
    section = produced[produced["machine_type"] == "valve"]
    paths = [str(next(Path(dev).rglob(name))) for name in section["file_name"]]
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        waveform=tf.constant(waves), machine_type=tf.constant("valve"),
        section=tf.constant("00"))
    np.testing.assert_allclose(served["anomaly_score"].numpy(), section["score"],
                               rtol=1e-4, atol=1e-4)
    assert np.ptp(section["score"].to_numpy()) > 1e-4
    threshold = json.loads((run / "thresholds.json").read_text())["valve_section_00"]
    assert_decisions_match(served["decision"].numpy(), section["decision"], section["score"],
                           threshold)


# -- the experiment's tables ---------------------------------------------------------


def _experiment():
    import importlib.util

    path = Path(__file__).parents[1] / "experiments" / "eat_simam" / "run.py"
    spec = importlib.util.spec_from_file_location("eat_simam_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_scores(rng, shift):
    """Scores of two machine types, one section, both domains; anomalies
    score `shift` higher on average."""
    rows = []
    for machine_type in ("fan", "valve"):
        for domain in ("source", "target"):
            for label in (0, 1):
                for i in range(5):
                    rows.append({"machine_type": machine_type, "section": "00",
                                 "domain": domain, "label": label,
                                 "file_name": f"{machine_type}_{domain}_{label}_{i}.wav",
                                 "score": rng.normal() + shift * label})
    return pd.DataFrame(rows)


def test_experiment_customised_selection_and_tables(tmp_path):
    """Customised SimAM takes fan's scores from the global run and the other
    machine types' from the local run; every table row is the official
    evaluation of its condition's scores."""
    from asd_keras.evaluation.metrics import evaluate

    run = _experiment()
    import yaml

    config = yaml.safe_load((Path(run.HERE) / "config.yaml").read_text())
    rng = np.random.default_rng(0)
    frames = {}
    for i, condition in enumerate(config["conditions"]):
        frames[condition["name"]] = _fake_scores(rng, 0.5 + 0.3 * i)
        folder = tmp_path / "trials" / condition["name"] / "trial0"
        folder.mkdir(parents=True)
        frames[condition["name"]].to_csv(folder / "scores.csv", index=False)
        (folder / "run.json").write_text(json.dumps(
            {"data_choices": {"encoder_weights": "random weights"}}))
    chosen = run.customised_scores(tmp_path, {"default": "local", "fan": "global"})
    fan = chosen[chosen["machine_type"] == "fan"]["score"].to_numpy()
    valve = chosen[chosen["machine_type"] == "valve"]["score"].to_numpy()
    glob, local = frames["m_fb_global"], frames["m_fb_local"]
    np.testing.assert_array_equal(fan, glob[glob["machine_type"] == "fan"]["score"])
    np.testing.assert_array_equal(valve, local[local["machine_type"] == "valve"]["score"])
    filter_banks, simam, per_machine = run.tables(tmp_path, config, "dcase2023")
    assert list(filter_banks["condition"]) == ["o-FB (Kaldi mel)", "m-FB (linear)",
                                               "g-FB (gammatone)"]
    assert list(simam["condition"]) == ["m-FB, no SimAM", "m-FB + global SimAM",
                                        "m-FB + local SimAM", "m-FB + customised SimAM"]
    for frame, row in ((frames["g_fb"], filter_banks.iloc[2]), (chosen, simam.iloc[3])):
        _, official = evaluate(frame, "dcase2023")
        assert row["official score"] == pytest.approx(100 * official, abs=1e-9)
        assert row["weights"] in ("random weights", "")
    fan_row = per_machine[per_machine["machine type"] == "fan"].iloc[0]
    _, fan_global = evaluate(glob[glob["machine_type"] == "fan"], "dcase2023")
    assert fan_row["m-FB + customised SimAM"] == pytest.approx(100 * fan_global)
    with pytest.raises(ValueError, match="'sideways'"):
        run.customised_scores(tmp_path, {"default": "sideways"})


def test_a_mapping_split_by_the_shell_is_a_clear_error():
    """`simam={default: local, fan: global}` unquoted reaches the program as
    two words; the first is not YAML and the error says how to quote it."""
    from asd_keras.config import parse_overrides

    assert parse_overrides(["simam={default: local, fan: global}"]) == {
        "simam": {"default": "local", "fan": "global"}}
    with pytest.raises(ValueError, match=r"'\{fan:'.*quote a mapping"):
        parse_overrides(["simam={fan:", "global}"])
