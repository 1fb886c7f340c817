"""The Wilkinghoff training pipeline keeps decoded clips in memory when they
fit `pipeline_ram_mb` and streams them otherwise, with the same batches.

Also the layers that compute its Conv2D and BatchNormalization with faster
kernels (`asd_keras.layers.fast_kernels`) against the Keras layers.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from asd_keras.data.labels import ClassEncoder
from asd_keras.data.layouts import read_dataset
from asd_keras.data.pipelines import decoded_bytes
from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
from asd_keras.layers.fast_kernels import FusedBatchNormalization
from asd_keras.layers.fast_kernels import PolyphaseConv2D
from asd_keras.utils.training import TrainingContext


@pytest.fixture(scope="module")
def clips(synthetic_sets):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"], machine_types=["fan"])
    table = table[table["split"] == "train"].reset_index(drop=True)
    encoder = ClassEncoder("attribute").fit(table)
    return table, encoder


def _batches(clips, ram_mb, policy="truncate", epochs=2):
    table, encoder = clips
    paths = list(table["path"])
    keras.utils.set_random_seed(3)
    extractor = ClassifierEmbeddingExtractor(clip_seconds=0.75, length_policy=policy,
                                             pipeline_ram_mb=ram_mb, batch_size=4)
    loader = extractor.loader(training=True)
    loader.check(paths, progress=False)
    ds = extractor.training_dataset(paths, encoder.transform(table), encoder.num_classes,
                                    loader, True, 7)
    batches = [[(x["waveform"].numpy(), y.numpy()) for x, y in ds] for _ in range(epochs)]
    return extractor, loader, batches


def test_clips_in_memory_or_streamed_give_the_same_batches(clips):
    held = decoded_bytes(list(clips[0]["path"]), _batches(clips, 1, epochs=0)[1])
    assert held == len(clips[0]) * 12000 * 4  # 0.75 s at 16 kHz, float32
    streamed, _, a = _batches(clips, 1)  # 1 MB: the clips do not fit
    kept, _, b = _batches(clips, 64)
    assert streamed.data_choices["training_clips"].startswith("streamed from disk")
    assert kept.data_choices["training_clips"].startswith("in memory")
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b) == -(-len(clips[0]) // 4)
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # Every epoch is shuffled anew, over every clip exactly once.
    assert not np.array_equal(a[0][0][0], a[1][0][0])
    for epoch in b:
        assert np.concatenate([y for _, y in epoch]).sum() == len(clips[0])


def test_pipelines_run_without_the_autotune_thread(clips):
    extractor, loader, _ = _batches(clips, 64, epochs=0)
    table, encoder = clips
    ds = extractor.training_dataset(list(table["path"]), encoder.transform(table),
                                    encoder.num_classes, loader, True, 7)
    assert ds.options().autotune.enabled is False
    scoring = extractor.waveform_dataset(list(table["path"]), extractor.loader())
    assert scoring.options().autotune.enabled is False


def test_one_repeated_iterator_gives_the_epochs_of_new_iterators(clips):
    # `fit` repeats the dataset (one iterator for all epochs).
    for ram_mb in (1, 64):
        _, loader, epochs = _batches(clips, ram_mb)
        table, encoder = clips
        keras.utils.set_random_seed(3)
        extractor = ClassifierEmbeddingExtractor(clip_seconds=0.75, length_policy="truncate",
                                                 pipeline_ram_mb=ram_mb, batch_size=4)
        ds = extractor.training_dataset(list(table["path"]), encoder.transform(table),
                                        encoder.num_classes, loader, True, 7)
        repeated = [x["waveform"].numpy() for x, _ in ds.repeat().take(2 * len(epochs[0]))]
        for x, (expected, _) in zip(repeated, epochs[0] + epochs[1]):
            np.testing.assert_array_equal(x, expected)


def test_a_random_crop_is_drawn_anew_from_the_clips_in_memory(clips):
    extractor, loader, batches = _batches(clips, 64, policy="tile_crop")
    assert loader.random_crop and extractor.data_choices["training_clips"].startswith(
        "in memory")
    # The full 1 s clips are kept (the crop comes after the cache) ...
    assert decoded_bytes(list(clips[0]["path"]), loader) == len(clips[0]) * 16000 * 4
    first, second = (np.concatenate([x for x, _ in epoch]) for epoch in batches)
    assert first.shape == second.shape == (len(clips[0]), 12000)
    # ... and cropped at a new offset every epoch, so the rows of the same
    # clip (the order differs too) are not the same twice.
    rows = {tuple(r[:64]) for r in first}
    assert sum(tuple(r[:64]) in rows for r in second) < len(clips[0])


def test_trained_the_same_whichever_way_the_clips_come(clips):
    table, _ = clips
    embeddings = []
    for ram_mb in (1, 64):
        extractor = ClassifierEmbeddingExtractor(
            branches="spectrum", epochs=2, clip_seconds=0.75, length_policy="truncate",
            batch_size=4, pipeline_ram_mb=ram_mb, seed=5)
        extractor.fit(table, TrainingContext(None, verbose=0))
        embeddings.append(extractor.transform(table)["embedding"])
    scale = np.abs(embeddings[0]).max()
    np.testing.assert_allclose(embeddings[0], embeddings[1], rtol=0, atol=1e-4 * scale)


def _close(actual, desired, rtol=1e-5, scale=0.0):
    """Equal up to float32 rounding of sums taken in another order: within
    `rtol` of the largest magnitude (or of `scale`, the largest term)."""
    desired = np.asarray(desired)
    np.testing.assert_allclose(actual, desired, rtol=0,
                               atol=rtol * max(np.abs(desired).max(), scale, 1e-30))


@pytest.mark.parametrize("shape, kernel, strides", [
    ((2, 33, 70, 1), 7, 2),     # the spectrogram's first convolution, in small
    ((2, 15, 31, 3), 3, (2, 3)),
    ((2, 9, 10, 2), 4, 2),      # an even kernel
    ((2, 9, 10, 2), 3, 1),      # stride 1: Conv2D's own code
])
def test_polyphase_convolution_is_conv2d(shape, kernel, strides):
    x = tf.constant(np.random.default_rng(0).standard_normal(shape).astype("float32"))
    plain = keras.layers.Conv2D(5, kernel, strides=strides, padding="same",
                                bias_initializer="glorot_uniform")
    poly = PolyphaseConv2D(5, kernel, strides=strides, padding="same")
    plain.build(shape)
    poly.build(shape)
    poly.set_weights(plain.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = [layer(x) for layer in (plain, poly)]
        losses = [tf.reduce_sum(tf.sin(y)) for y in outputs]
    _close(outputs[1], outputs[0])
    grads = [tape.gradient(loss, [x, layer.kernel]) for loss, layer in zip(losses, (plain, poly))]
    for a, b in zip(*grads):
        _close(b, a)
    assert poly.compute_output_shape(shape) == tuple(outputs[1].shape)


@pytest.mark.parametrize("shape, axis", [
    ((8, 6, 5, 3), -1), ((8, 6, 5, 1), -2), ((8, 7), -1), ((1, 7), -1), ((4, 3, 5), 1)])
def test_fused_batch_normalization_is_batch_normalization(shape, axis):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal(shape).astype("float32") * 3 + 1)
    plain = keras.layers.BatchNormalization(axis=axis)
    fused = FusedBatchNormalization(axis=axis)
    plain.build(shape)
    fused.build(shape)
    weights = [w + 0.1 * rng.standard_normal(w.shape).astype("float32")
               for w in plain.get_weights()]
    for layer in (plain, fused):
        layer.set_weights(weights)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = [layer(x, training=True) for layer in (plain, fused)]
        losses = [tf.reduce_sum(y * tf.sin(y)) for y in outputs]
    # Keras computes x * a + (beta - mean * a), a = gamma / sqrt(var + eps):
    # two terms of up to |x| * a that cancel (a batch of one: var = 0).
    axes = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    smallest = np.asarray(x).var(axis=axes).min()
    terms = np.abs(x).max() * np.abs(weights[0]).max() / np.sqrt(smallest + plain.epsilon)
    _close(outputs[1], outputs[0], scale=terms)
    grads = [tape.gradient(loss, [x, *layer.trainable_weights])
             for loss, layer in zip(losses, (plain, fused))]
    for a, b in zip(*grads):
        _close(b, a, scale=terms)
    # Moving statistics from the biased batch variance, as Keras; inference
    # is the Keras layer's formula (to the last bit with oneDNN; one ulp
    # apart in an element with it off).
    for a, b in zip(plain.non_trainable_weights, fused.non_trainable_weights):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False),
                               rtol=1e-6, atol=1e-7)


def test_fast_layers_save_and_load_as_keras_layers(tmp_path):
    inputs = keras.Input((12, 16, 1))
    x = FusedBatchNormalization(axis=-2, name="bn")(inputs)
    x = PolyphaseConv2D(4, 7, strides=2, padding="same", name="conv")(x)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("conv")) is PolyphaseConv2D
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    data = np.random.default_rng(2).standard_normal((3, 12, 16, 1)).astype("float32")
    np.testing.assert_array_equal(loaded(data), model(data))
    # The weights are those of the Keras layers.
    plain = keras.Sequential([keras.Input((12, 16, 1)),
                              keras.layers.BatchNormalization(axis=-2),
                              keras.layers.Conv2D(4, 7, strides=2, padding="same")])
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(plain(data), model(data), atol=1e-5)
