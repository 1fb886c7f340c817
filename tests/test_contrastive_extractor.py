"""The contrastive extractor (SimCLR, SimSiam) and its presets, on tiny data.

One `simclr` system is trained once for the module (one machine type, one
epoch, 1-s clips, 32 mels, ResNet-18); the other tests reuse its extractor.
Trainings run eagerly (`run_eagerly=True`): tracing the two-view ResNet-18
train step costs about 30 s on a 2-core machine, far more than the few eager
steps these tests take. Graph-mode training, which `asd-keras train` runs,
was checked by hand (train, score, evaluate, export, probe on tiny data).
"""

import contextlib

import keras
import numpy as np
import pandas as pd
import pytest

from asd_keras.data.layouts import read_dataset
from asd_keras.extractors import get_extractor
from asd_keras.extractors import load_extractor
from asd_keras.extractors.contrastive import AUGMENTATIONS
from asd_keras.systems import get_system
from asd_keras.utils.training import TrainingContext
from tests.conftest import make_synthetic

TINY = {"clip_seconds": 1.0, "n_mels": 32, "depth": 18, "epochs": 1,
        "batch_size": 6, "score_batch_clips": 6, "run_eagerly": True}



@contextlib.contextmanager
def _restoring(model):
    """Puts back `model`'s weights: a call with `training=True` moves the
    BatchNorm statistics of the fixture's encoder."""
    weights = model.get_weights()
    try:
        yield model
    finally:
        model.set_weights(weights)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A trained `simclr` system on one machine type, and its data."""
    root = tmp_path_factory.mktemp("contrastive")
    # Three sections x (1 source + 1 target) = 6 training clips: one batch
    # of 6, so the NT-Xent batch has 5 negatives per anchor.
    make_synthetic(root / "data", machine_types=("fan",), train=1, target_train=1,
                   test=1, eval=False)
    table = read_dataset(root / "data" / "dev_data")
    system = get_system("simclr")(TINY)
    system.fit(table, root / "run", verbose=0)
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    extractor = system.members[0].extractors["fan"]
    return {"system": system, "extractor": extractor, "train": train, "test": test,
            "table": table, "metrics": extractor.proxy_metrics(train, test),
            "folder": root / "run" / "members" / "member0" / "extractors" / "fan"}


@pytest.mark.parametrize("key, value, message", [
    ("framework", "moco", "framework must be one of"),
    ("temperature", 0, "temperature must be"),
    ("projection_dim", 0, "projection_dim must be"),
    ("time_stretch_rate", 1.0, "time_stretch_rate must be"),
    ("time_mask_fraction", 1.5, "time_mask_fraction must be"),
    ("noise_max_snr_db", 5.0, r"noise_max_snr_db must be >= noise_min_snr_db \(10.0\); "
                              "received 5.0"),
    ("pitch_shift_bins", 32, r"pitch_shift_bins must be below n_mels \(32\); received 32"),
    ("freq_mask_bins", 33, r"freq_mask_bins must be at most n_mels \(32\); received 33"),
])
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        get_extractor("contrastive", n_mels=32, **{key: value})


def test_presets_fix_the_framework_and_groupings():
    for name in ("simclr", "simsiam"):
        config = get_system(name)({}).config
        assert config["framework"] == name
        assert config["extractor"] == "contrastive"
        assert config["backend"] == "mahalanobis"
        assert config["extractor_grouping"] == config["grouping"] == "machine_type"
        assert (config["epochs"], config["clip_seconds"], config["projection_dim"]) == (
            200, 10.0, 128)
    with pytest.raises(ValueError, match=r"framework must be one of \('simclr',\)"):
        get_system("simclr")({"framework": "simsiam"})
    with pytest.raises(ValueError, match="Unknown configuration key"):
        get_system("simsiam")({"temprature": 0.1})


def test_training_model_views_differ_and_are_seeded(tiny):
    extractor = tiny["extractor"]
    model = extractor.training_model
    assert model.output_shape == (None, 2, 128)
    # Two instances per augmentation, with different seeds: the views never
    # share a random stream.
    for kind in AUGMENTATIONS:
        first = model.get_layer(f"view1_{kind}")
        second = model.get_layer(f"view2_{kind}")
        assert first is not second and first.seed != second.seed
    waves = extractor.waveform_dataset(list(tiny["train"]["path"]))
    batch = next(iter(waves))
    with _restoring(model):
        z = keras.ops.convert_to_numpy(model(batch, training=True))
    assert not np.allclose(z[:, 0], z[:, 1], atol=1e-3)
    # Without augmentations the two views are the same clip: the difference
    # above comes from the augmentations alone.
    plain = get_extractor("contrastive", white_noise=False, time_stretch_rate=0.0,
                          pitch_shift_bins=0, time_mask_fraction=0.0, freq_mask_bins=0,
                          **TINY)
    same, _, _ = plain._build_training_model(extractor.encoder, tiny["train"])
    with _restoring(same):
        z = keras.ops.convert_to_numpy(same(batch, training=True))
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-5)
    # At inference the augmentations are identities.
    z = keras.ops.convert_to_numpy(model(batch, training=False))
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-5)


def test_views_and_heads_reproducible_under_the_seed(tiny):
    # Around the trained encoder (the ResNet's seeded initialisation is
    # tests/test_resnet.py's): the views' draws and the heads' initial
    # weights come from the seed alone.
    encoder = tiny["extractor"].encoder
    batch = next(iter(tiny["extractor"].waveform_dataset(list(tiny["train"]["path"]))))

    def first_step_output(seed):
        extractor = get_extractor("contrastive", **{**TINY, "seed": seed})
        keras.utils.set_random_seed(seed)  # as `fit` does before building
        model, _, _ = extractor._build_training_model(encoder, tiny["train"])
        with _restoring(model):
            return keras.ops.convert_to_numpy(model(batch, training=True))

    first = first_step_output(3)
    assert np.allclose(first, first_step_output(3), atol=1e-5)
    assert not np.allclose(first, first_step_output(4), atol=1e-3)


def test_simclr_system_trains_and_scores(tiny):
    history = pd.read_csv(tiny["folder"].parents[3] / "history" / "member0_fan.csv")
    assert len(history) == 1 and np.isfinite(history["loss"]).all()
    system = tiny["system"]
    scored = system.score(tiny["table"])
    assert len(scored) == len(tiny["test"])
    assert np.isfinite(scored["score"]).all()
    assert set(scored["decision"]) <= {0, 1}
    assert system.features(tiny["test"]).shape == (len(tiny["test"]), 512)


def test_simsiam_trains_with_a_finite_loss(tiny):
    extractor = get_extractor("contrastive", framework="simsiam", **{**TINY, "epochs": 2})
    history = extractor.fit(tiny["train"], TrainingContext(None, verbose=0))
    assert extractor.training_model.output_shape == (None, 4, 128)
    # SimSiam's predictor bottleneck: projection_dim // 4.
    assert extractor.training_model.get_layer("predictor").get_layer(
        "predictor_dense1").units == 32
    loss = history["loss"].to_numpy()
    # The SimSiam loss is a negative cosine similarity: within [-1, 1].
    assert len(loss) == 2 and np.isfinite(loss).all() and (np.abs(loss) <= 1.0).all()
    assert history["selected"].sum() == 1
    assert extractor.transform(tiny["test"])["embedding"].shape == (len(tiny["test"]), 512)


def test_proxy_metrics_by_hand(tiny):
    extractor, test = tiny["extractor"], tiny["test"]
    metrics = tiny["metrics"]
    assert set(metrics) == {"alignment", "uniformity"}
    assert 0.0 < metrics["alignment"] <= 4.0
    assert -4.0 <= metrics["uniformity"] <= 0.0

    def unit(f):
        f = np.asarray(f, np.float64)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    f = unit(extractor.transform(test)["embedding"])
    i, j = np.triu_indices(len(f), k=1)
    squared = np.sum((f[i] - f[j]) ** 2, axis=1)
    assert metrics["uniformity"] == pytest.approx(np.log(np.mean(np.exp(-2 * squared))),
                                                  abs=1e-6)
    # A second computation of the views: the same draws (a fixed seed).
    view1, view2 = extractor.augmented_views(list(test["path"]))
    assert view1.shape == view2.shape == (len(test), 512)
    expected = np.mean(np.sum((unit(view1) - unit(view2)) ** 2, axis=1))
    assert np.isclose(metrics["alignment"], expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least two test clips; received 1"):
        extractor.proxy_metrics(tiny["train"], test.iloc[:1])


def test_save_load_round_trip(tiny):
    extractor, test = tiny["extractor"], tiny["test"]
    restored = load_extractor(tiny["folder"])
    assert restored.get_config() == extractor.get_config()
    eager = extractor.transform(test)["embedding"]
    np.testing.assert_allclose(restored.transform(test)["embedding"], eager, atol=1e-5)
    # Without run_eagerly the features come from the traced `predict`.
    restored.config["run_eagerly"] = False
    np.testing.assert_allclose(restored.transform(test)["embedding"], eager, atol=1e-5)
    restored.config["run_eagerly"] = True
    before = tiny["metrics"]
    after = restored.proxy_metrics(tiny["train"], test)
    assert np.allclose([after["alignment"], after["uniformity"]],
                       [before["alignment"], before["uniformity"]], atol=1e-5)
