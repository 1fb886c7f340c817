"""Gradient accumulation of the EAT fine-tuning (`gradient_accumulation_steps`):
`k` micro-batches give the update of one batch, on tiny EAT networks and 1 s
clips."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests.conftest import make_synthetic
from tests.helpers import CallCounter

from asd_keras.data.layouts import read_dataset
from asd_keras.data.pipelines import micro_batches
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.extractors.base import get_extractor
from asd_keras.layers import ArcFace
from asd_keras.losses import MixupCrossEntropy
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.encoder_finetuning import eat_embedding_model
from asd_keras.models.wilkinghoff import training_model
from asd_keras.optimizers import LayerwiseAdamW
from asd_keras.optimizers import PerUpdateSchedule
from asd_keras.systems import get_system
from asd_keras.utils.training import TrainingContext

RATE = 16000
TINY = {"num_layers": 2, "dim": 32, "num_heads": 2}
LR = 1e-3
# Summation order moves the updates by ~5e-6 here (at a rate of 1e-3); a wrong
# weighting or a schedule counted in micro-batches moves them by ~1e-3.
ATOL = 0.1 * LR


def _clips(n=11, classes=3):
    rng = np.random.default_rng(0)
    waves = rng.normal(0, 0.1, (n, RATE)).astype("float32")
    return waves, np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]


def _train(steps, per_update=True, weighted=True):
    """Two epochs of 11 clips in batches of 8 (8 + 3: the last batch has
    fewer clips than 4 micro-batches, so the split pads it); returns the
    weight changes and the optimizer."""
    waves, labels = _clips()
    keras.utils.set_random_seed(0)
    network = eat_embedding_model(RATE, TINY, "linear", norm_mean=-1.0, norm_std=2.0,
                                  simam="local", time_mask_width=0, freq_mask_width=0,
                                  attention_dim=8, embedding_dim=8)
    model = training_model(network, ArcFace(3, 16.0, 0.2, seed=0, name="head"), 3)
    ds = tf.data.Dataset.from_tensor_slices(
        ({"waveform": waves, "label": labels}, labels)).batch(8)
    rate = keras.optimizers.schedules.CosineDecay(0.0, 3, alpha=0.01, warmup_target=LR,
                                                  warmup_steps=1)
    if steps > 1:
        ds = micro_batches(ds, steps)
        if not weighted:
            ds = ds.map(lambda x, y, w: (x, y))
        if per_update:
            rate = PerUpdateSchedule(rate, steps)
    optimizer = LayerwiseAdamW({"blocks_0_attn": 0.5, "local_encoder": 0.25},
                               learning_rate=rate, weight_decay=0.01,
                               gradient_accumulation_steps=steps if steps > 1 else None)
    # Eagerly: a tiny network's steps take milliseconds, its traces seconds
    # (the extractor test below trains in graph mode).
    model.compile(optimizer=optimizer, loss=MixupCrossEntropy(), steps_per_execution=steps,
                  run_eagerly=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(ds, epochs=2, verbose=0, shuffle=False)
    return [w.numpy() - b for w, b in zip(model.trainable_weights, before)], optimizer


def _max_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.slow
def test_micro_batches_give_the_update_of_the_whole_batch():
    """4 updates (2 epochs x 2 batches) with layer-wise rates, weight decay and
    a warm-up + cosine schedule: 4 micro-batches per batch move every weight
    as the whole batches do; without the split's weights or with the schedule
    counted in micro-batches they do not."""
    reference, optimizer = _train(1)
    assert int(optimizer.iterations.numpy()) == 4
    assert max(float(np.abs(d).max()) for d in reference) > 10 * ATOL
    changes, optimizer = _train(4)
    assert int(optimizer.iterations.numpy()) == 4
    assert _max_difference(changes, reference) < ATOL
    assert _max_difference(_train(4, weighted=False)[0], reference) > 5 * ATOL
    assert _max_difference(_train(4, per_update=False)[0], reference) > 5 * ATOL


def test_micro_batches_split_weights_and_cardinality():
    waves, labels = _clips(11)
    ds = tf.data.Dataset.from_tensor_slices(
        ({"waveform": waves, "label": labels}, labels)).batch(8)
    split = micro_batches(ds, 4)
    assert int(split.cardinality()) == 8
    elements = list(split)
    sizes = [int(w.shape[0]) for _, _, w in elements]
    weights = [float(w[0]) for _, _, w in elements]
    # 8 clips: four pairs of weight 1; 3 clips: bounds 0, 0, 1, 2, 3, so the
    # first micro-batch is a stand-in (the batch's first clip) at weight 0.
    assert sizes == [2, 2, 2, 2, 1, 1, 1, 1]
    assert weights == pytest.approx([1, 1, 1, 1, 0, 4 / 3, 4 / 3, 4 / 3])
    np.testing.assert_array_equal(elements[4][0]["waveform"], waves[8:9])
    np.testing.assert_array_equal(np.concatenate([e[0]["waveform"] for e in elements[5:]]),
                                  waves[8:])
    assert micro_batches(ds, 1) is ds
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"received {bad!r}"):
            micro_batches(ds, bad)


def test_per_update_schedule_counts_updates_and_round_trips():
    cosine = keras.optimizers.schedules.CosineDecay(0.0, 10, warmup_target=1.0,
                                                    warmup_steps=2)
    schedule = PerUpdateSchedule(cosine, 4)
    # Update u is applied at call 4u + 3.
    for update in range(6):
        assert float(schedule(4 * update + 3)) == pytest.approx(float(cosine(update)))
    optimizer = LayerwiseAdamW({"low": 0.5}, learning_rate=schedule,
                               gradient_accumulation_steps=4)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.gradient_accumulation_steps == 4
    assert float(restored.learning_rate) == pytest.approx(float(optimizer.learning_rate))
    assert restored._learning_rate.steps == 4
    with pytest.raises(ValueError, match="received 0"):
        PerUpdateSchedule(cosine, 0)
    with pytest.raises(ValueError, match="LearningRateSchedule; received 0.1"):
        PerUpdateSchedule(0.1, 2)


def test_key_validates():
    extractor = get_extractor("finetuned_encoder", batch_size=8, gradient_accumulation_steps=4)
    assert extractor.get_config()["gradient_accumulation_steps"] == 4
    assert get_extractor("finetuned_encoder").get_config()["gradient_accumulation_steps"] == 1
    assert get_extractor("finetuned_encoder", **extractor.get_config()).get_config() == (
        extractor.get_config())
    for bad in (0, -2, "four"):
        with pytest.raises(ValueError, match=f"gradient_accumulation_steps.*{bad}"):
            get_extractor("finetuned_encoder", gradient_accumulation_steps=bad)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=9 exceeds batch_size=8"):
        get_extractor("finetuned_encoder", batch_size=8, gradient_accumulation_steps=9)


def test_full_configuration_carries_the_key():
    """The experiment's FULL=1 keys (and the smoke configuration) build an
    `eat_simam` system that accumulates over micro-batches of 8 at batch 32."""
    import yaml

    root = Path(__file__).parents[1]
    path = root / "experiments" / "eat_simam" / "run.py"
    spec = importlib.util.spec_from_file_location("eat_simam_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = yaml.safe_load((root / "experiments" / "eat_simam" / "config.yaml").read_text())
    for condition in module.conditions(config, True, None, {}):
        keys = {k: v for k, v in condition.items() if k not in ("system", "name")}
        extractor = get_system(condition["system"])(keys)._new_extractor(0, "fan")
        assert (extractor.config["batch_size"], extractor.micro_batches_per_update()) == (32, 4)
    base = module.conditions(config, False, None, {})[0]
    assert get_system("eat_simam")({k: v for k, v in base.items() if k not in (
        "system", "name")})._new_extractor(0, "fan").micro_batches_per_update() == 1
    spec = importlib.util.spec_from_file_location(
        "smoke_configs", root / "benchmarks" / "smoke_configs.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    assert smoke.CONFIGS["eat_simam_full"].config["gradient_accumulation_steps"] == 4


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """6 training clips of 1 s and a 2-block EAT preset folder."""
    base = tmp_path_factory.mktemp("accumulation")
    root = make_synthetic(base / "data", "dcase2023", machine_types=("fan",), train=5,
                          target_train=1, test=1, eval=False)
    table = read_dataset(synthetic_data_root(root, "dcase2023", "dev"))
    keras.utils.set_random_seed(5)
    build_encoder("eat", num_frames=112, **TINY).save_to_preset(
        base / "eat_tiny", metadata={"checkpoint": "tiny test encoder"})
    return table[table["split"] == "train"], base / "eat_tiny"


@pytest.mark.slow
def test_extractor_trains_the_same_with_micro_batches(clips):
    """The extractor's own path in graph mode (pipeline split, optimizer,
    warm-up schedule, one training call per update): 6 clips in batches of 4
    (4 + 2: two stand-ins) give 2 updates, 2 calls and the weights of the
    undivided batches. One epoch: later epochs' shuffles differ (with 1,
    `fit` repeats one dataset; with micro-batches Keras opens one per
    epoch), which the test above covers without shuffling."""
    table, preset = clips
    weights, calls = {}, {}
    for steps in (1, 4):
        extractor = get_extractor(
            "finetuned_encoder", preset=str(preset), clip_seconds=1.0,
            length_policy="truncate", batch_size=4, epochs=1, learning_rate=LR,
            warmup_epochs=1.0, layer_decay=0.5, mixup_probability=0.0, time_mask_width=0,
            freq_mask_width=0, attention_dim=8, embedding_dim=8, norm_clips=2,
            jit_compile=False, gradient_accumulation_steps=steps)
        counter = CallCounter()
        context = TrainingContext(None, callbacks=[counter], verbose=0)
        extractor.fit(table, context)
        weights[steps] = [w.numpy() for w in extractor.model.trainable_weights]
        calls[steps] = (counter.calls, int(counter.model.optimizer.iterations.numpy()))
    assert calls == {1: (2, 2), 4: (2, 2)}
    assert _max_difference(weights[4], weights[1]) < ATOL
