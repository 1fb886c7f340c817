"""Graph mode of the trained extractors: traces stay few and small.

Invariants, not timings: `LeanAdamW` updates as Keras' AdamW does with step
scalars that do not grow with the number of variables; `TrainingContext.fit`
traces the training step once for all epochs (the optimizer is built before
the trace); `embed` traces the encoder once for any batch size; a trained
extractor's networks are freed with it.
"""

import collections
import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from asd_keras.optimizers import LeanAdamW
from asd_keras.utils.training import TrainingContext


def _schedule():
    return keras.optimizers.schedules.ExponentialDecay(1e-2, 3, 0.5, staircase=True)


def _step(optimizer, variables, graph):
    def apply(grads):
        optimizer.apply(grads, variables)

    return tf.function(apply) if graph else apply


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("graph", [False, True])
def test_lean_adamw_updates_as_keras_adamw(graph, amsgrad):
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((5, 7)).astype("float32"),
             rng.standard_normal((7,)).astype("float32")]
    grads = [[rng.standard_normal(v.shape).astype("float32") for v in start]
             for _ in range(8)]
    results = []
    for cls in (keras.optimizers.AdamW, LeanAdamW):
        variables = [keras.Variable(v) for v in start]
        optimizer = cls(learning_rate=_schedule(), weight_decay=0.1, amsgrad=amsgrad)
        step = _step(optimizer, variables, graph)
        for g in grads:
            step([tf.constant(x) for x in g])
        results.append([v.numpy() for v in variables])
    for lean, reference in zip(results[1], results[0]):
        np.testing.assert_allclose(lean, reference, rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[1][0], start[0])  # it did train


def _traced_ops(cls, count):
    variables = [keras.Variable(np.ones((3, 4), "float32")) for _ in range(count)]
    optimizer = cls(learning_rate=_schedule(), weight_decay=0.01)
    optimizer.build(variables)
    step = tf.function(lambda g: optimizer.apply(g, variables))
    graph = step.get_concrete_function([tf.TensorSpec((3, 4))] * count).graph
    return collections.Counter(op.type for op in graph.get_operations())


def test_lean_adamw_step_scalars_do_not_grow_with_the_variables():
    few, many = _traced_ops(LeanAdamW, 1), _traced_ops(LeanAdamW, 9)
    # The schedule and the bias correction (two powers) once per step...
    assert few["Pow"] == many["Pow"]
    # ...where Keras' AdamW evaluates them for every variable.
    keras_few, keras_many = (_traced_ops(keras.optimizers.AdamW, 1),
                             _traced_ops(keras.optimizers.AdamW, 9))
    assert keras_many["Pow"] > keras_few["Pow"]
    per_variable = (sum(many.values()) - sum(few.values())) / 8
    keras_per_variable = (sum(keras_many.values()) - sum(keras_few.values())) / 8
    assert per_variable < 0.6 * keras_per_variable


def test_lean_adamw_config_round_trip():
    optimizer = LeanAdamW(learning_rate=_schedule(), weight_decay=0.02, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, LeanAdamW)
    assert restored.beta_1 == pytest.approx(0.8)
    assert restored.weight_decay == pytest.approx(0.02)


def _counting(model):
    """Counts the Python calls of the model's train_step: one per trace."""
    calls = []
    original = model.train_step

    def train_step(data):
        calls.append(1)
        return original(data)

    model.train_step = train_step
    return calls


def test_fit_traces_the_training_step_once_for_all_epochs():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8)(inputs)))
    model.compile(optimizer=LeanAdamW(learning_rate=1e-3, weight_decay=0.01), loss="mse")
    calls = _counting(model)
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((12, 4), "float32"), np.zeros((12, 1), "float32"))).batch(4)
    history = TrainingContext(verbose=0).fit(model, data, "tiny", epochs=3)
    assert len(history) == 3
    assert model.optimizer.built
    # A variable created inside the first trace (Keras builds the optimizer
    # there) makes tf.function trace the step a second time.
    assert len(calls) == 1


def test_fit_iterates_without_the_autotune_thread():
    # tf.data's autotuning thread held up the end of `fit` by up to 60 s.
    from asd_keras.utils.training import without_autotune_thread

    seen = []

    class Recording(keras.Model):
        def fit(self, x=None, **kwargs):
            seen.append((x.options().autotune.enabled,
                         kwargs["validation_data"].options().autotune.enabled))
            return super().fit(x, **kwargs)

    inputs = keras.Input((4,))
    model = Recording(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((8, 4), "float32"), np.zeros((8, 1), "float32"))).batch(4)
    assert data.options().autotune.enabled is None  # on, TensorFlow's default
    TrainingContext(verbose=0).fit(model, data, "tiny", epochs=1, validation_data=data)
    assert seen == [(False, False)]
    assert without_autotune_thread([1, 2]) == [1, 2]  # not a dataset: unchanged


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    import soundfile

    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(5):
        path = folder / f"section_00_source_train_normal_{i:04d}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(1600).astype("float32"), 16000)
        paths.append(str(path))
    return paths


def test_embed_traces_the_encoder_once_for_any_batch(clips):
    from asd_keras.extractors import get_extractor

    extractor = get_extractor("resnet_classifier", depth=18, clip_seconds=0.1, n_mels=32,
                              score_batch_clips=2)
    extractor.encoder = extractor.build_encoder()  # untrained weights suffice
    first = extractor.embed(clips)  # batches of 2, 2 and 1 clips
    again = extractor.embed(clips[:3])
    np.testing.assert_allclose(again, first[:3], rtol=1e-5, atol=1e-6)
    eager = np.concatenate([np.asarray(extractor.encoder(b, training=False))
                            for b in extractor.waveform_dataset(clips)])
    np.testing.assert_allclose(first, eager, rtol=1e-4, atol=1e-5)
    assert extractor._inference_function().experimental_get_tracing_count() == 1


def test_a_trained_extractor_frees_its_networks(clips):
    """Nothing outside the extractor (Keras' global state, a traced
    function, the training context) keeps a trained model alive, so a study
    training one model after another does not grow."""
    import pandas as pd

    from asd_keras.extractors import get_extractor

    table = pd.DataFrame({"path": clips, "machine_type": "fan",
                          "section": ["00", "00", "01", "01", "01"]})
    extractor = get_extractor("resnet_classifier", depth=18, clip_seconds=0.1, n_mels=32,
                              classes="section", epochs=2, batch_size=2,
                              score_batch_clips=2)
    extractor.fit(table, TrainingContext(verbose=0))
    extractor.embed(clips)
    refs = [weakref.ref(extractor.encoder), weakref.ref(extractor.training_model),
            weakref.ref(extractor.training_model.optimizer)]
    del extractor
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_separate_traces_the_separator_once_and_matches_eager():
    from asd_keras.extractors import get_extractor

    extractor = get_extractor("separation", width=8, num_blocks=1, clip_seconds=0.05,
                              segment_seconds=0.025, score_batch_clips=3)
    extractor.separator = extractor.build_separator()
    extractor.encoder = extractor._encoder_of(extractor.separator)
    mixtures = np.random.default_rng(2).standard_normal((5, 400)).astype("float32")
    traced = extractor.separate(mixtures)  # batches of 3 and 2
    extractor.separate(mixtures[:1])
    eager = np.asarray(extractor.separator(mixtures, training=False))
    np.testing.assert_allclose(traced, eager, rtol=1e-4, atol=1e-5)
    assert extractor._separator_function().experimental_get_tracing_count() == 1
