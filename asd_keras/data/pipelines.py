"""`tf.data` input pipelines.

Clips are decoded and turned into features inside the pipeline. Feature
vectors are cached on disk (not in memory) after the first epoch, then
shuffled at clip and vector level with bounded buffers, so memory does not
grow with the number of clips. Waveform pipelines (`labelled_clips`) keep
the decoded clips in memory when they fit a budget (`decoded_bytes`) and
stream them from disk otherwise.
"""

import numpy as np
import tensorflow as tf

from asd_keras.data.audio import inspect_audio
from asd_keras.data.audio import nonfinite_audio_error
from asd_keras.utils.progress import progress_bar


def decoded_bytes(paths, loader):
    """Bytes of float32 samples that `labelled_clips(..., in_memory=True)`
    keeps: each clip after its length policy, or at its full (resampled)
    length when the policy crops at random (the crop is then drawn anew
    every epoch). Fixed-length policies need no file access; otherwise the
    file headers are read (`inspect_audio`).

    Args:
        paths: list of str.
        loader: `AudioLoader`.

    Returns:
        int.
    """
    channels = 2 if loader.channel == "both" else 1
    if loader.length_policy != "none" and not loader.random_crop:
        return len(paths) * loader.length * channels * 4
    info = inspect_audio(paths, progress=False)
    frames = info["frames"].to_numpy(np.int64)
    rates = info["sample_rate"].to_numpy(np.int64)
    frames = np.where(rates == loader.sample_rate, frames,
                      frames * loader.sample_rate // np.maximum(rates, 1))
    return int(frames.sum()) * channels * 4


def labelled_clips(paths, extras, loader, shuffle=False, seed=0, in_memory=False):
    """One `(waveform, *extras)` element per clip, in a new random order
    every epoch when `shuffle`.

    Streaming (`in_memory=False`): the file names are shuffled and every clip
    is decoded again every epoch, so memory does not grow with the number
    of clips, but the decoding shares the CPU with training. In memory: the
    clips are decoded once, during the first epoch, and kept
    (`Dataset.cache`); later epochs only shuffle and batch them. Both ways
    give the same elements in the same order for the same `seed` (a shuffle
    over all `n` elements draws the same permutation whatever they hold),
    except for a random crop, which is drawn after the cache.

    Args:
        paths: list of str.
        extras: list of arrays aligned with `paths` (e.g. labels).
        loader: `AudioLoader` (already `check`-ed).
        shuffle: bool.
        seed: int. The shuffle's seed.
        in_memory: bool. Keep the decoded clips (`decoded_bytes` says how
            many bytes).

    Returns:
        tf.data.Dataset.
    """
    ds = tf.data.Dataset.from_tensor_slices(
        (list(paths), *(np.asarray(e) for e in extras)))
    order = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not in_memory:
        if shuffle:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        return ds.map(lambda path, *rest: (loader.load(path), *rest), **order)
    crop_later = loader.random_crop
    read = loader.decode if crop_later else loader.load
    ds = filled_cache(ds.map(lambda path, *rest: (read(path), *rest), **order))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if crop_later:
        ds = ds.map(lambda audio, *rest: (loader.fix_length(audio), *rest), **order)
    return ds


def filled_cache(dataset, filename=""):
    """The dataset cached (in memory or on disk), complete before it is read.

    A `tf.data` cache is kept only when one iterator reads it to the end.
    Keras' `fit` stops each epoch's iterator after the known number of
    steps and makes the next epoch's iterator (and prefetches from it) as
    an epoch ends, so a cache filled during training is read partially
    more than once, and TensorFlow discards it each time with a warning the
    user can do nothing about ("The calling iterator did not fully read the
    dataset being cached"). Here the cache is filled first, in one pass over
    the data that the first epoch would otherwise make. On disk the
    elements are written with `Dataset.save` (one shard, so they load in
    order) and read with `Dataset.load`: TensorFlow 2.21's file cache warns
    even after a complete read.

    Args:
        dataset: tf.data.Dataset (finite).
        filename: str. "" keeps the cache in memory; otherwise a new folder
            for the saved elements.

    Returns:
        tf.data.Dataset: the cached elements, in the order of `dataset`.
    """
    if filename:
        dataset.save(str(filename), shard_func=lambda *_: tf.constant(0, tf.int64))
        return tf.data.Dataset.load(str(filename))
    cached = dataset.cache()
    for _ in cached:
        pass
    return cached


def clip_dataset(paths, loader, transform=None, extras=None):
    """One element per clip: `transform(waveform)` (or the waveform).

    Args:
        paths: list of str.
        loader: `AudioLoader` (already `check`-ed).
        transform: callable on a waveform tensor, optional.
        extras: list of arrays aligned with `paths`, optional; their items
            are appended to each element.

    Returns:
        tf.data.Dataset.
    """
    tensors = (tf.constant(list(paths)),)
    if extras:
        tensors += tuple(tf.constant(np.asarray(e)) for e in extras)
    ds = tf.data.Dataset.from_tensor_slices(tensors)

    def load(path, *rest):
        audio = loader.load(path)
        if transform is not None:
            audio = transform(audio)
        return (audio, *rest) if rest else audio

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def progress_batches(ds, total, desc, verbose):
    """Yields the batches of `ds` with a progress bar over `total` clips.

    A clip that decodes to non-finite samples surfaces inside tf.data as an
    `InvalidArgumentError`; it is raised as the ValueError of
    `nonfinite_audio_error`, which names the file.
    """
    with progress_bar(total=total, desc=desc, unit="clip", enabled=verbose, leave=False) as bar:
        try:
            for batch in ds:
                yield batch
                bar.update(len(batch))
        except tf.errors.InvalidArgumentError as error:
            clear = nonfinite_audio_error(error)
            if clear is None:
                raise
            raise clear from None


def vector_dataset(
    paths,
    loader,
    frontend,
    batch_size,
    shuffle=False,
    seed=0,
    cache=None,
    clip_buffer=32,
    vector_buffer=8192,
    extras=None,
    autoencoder_targets=True,
    num_vectors=None,
):
    """Batches of stacked feature vectors for `model.fit`.

    Each clip becomes one `(vectors, dim)` element, cached after the first
    epoch. Shuffling is two-level: clips through a bounded buffer, then
    vectors within blocks of about `vector_buffer` vectors (whole clips are
    gathered into a block and permuted with one gather). The blocks are
    re-batched to `batch_size` with `Dataset.rebatch`, which carries the
    remainder of a block into the next batch. No dataset element is ever a
    single vector: a per-vector `unbatch` + `shuffle` + `batch` costs about
    as much per epoch as the training steps of the DCASE autoencoder
    (benchmarks/bench_dense_ae.py). Memory is bounded by the two buffers,
    whatever the number of clips.

    Args:
        paths: list of str.
        loader: `AudioLoader`.
        frontend: object with `vectors(waveform)`, e.g. `LogMelFrontend`.
        batch_size: int.
        shuffle: bool. Shuffle clips (bounded buffer) and vectors.
        seed: int. Shuffle seed; every epoch draws a new order from it.
        cache: None, "memory" or a file path prefix for an on-disk cache.
        clip_buffer: int. Clips in the clip shuffle buffer.
        vector_buffer: int. About this many vectors are shuffled together.
        extras: list of per-clip arrays, repeated for every vector.
        autoencoder_targets: bool. Yield `(x, x)` pairs (without extras).
        num_vectors: int, optional. Total number of vectors; when given the
            dataset knows its length, so Keras shows the steps per epoch.

    Returns:
        tf.data.Dataset.
    """
    ds = clip_dataset(paths, loader, frontend.vectors, extras=extras)
    if extras:
        def spread(vectors, *rest):
            n = tf.shape(vectors)[0]
            return (vectors, *[tf.fill([n], r) for r in rest])

        ds = ds.map(spread, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = filled_cache(ds, "" if cache == "memory" else str(cache))
    if shuffle:
        ds = ds.shuffle(clip_buffer, seed=seed, reshuffle_each_iteration=True)
        per_clip = (num_vectors / max(1, len(paths))) if num_vectors else 300
        block = max(1, int(round(int(vector_buffer) / max(1.0, per_clip))))
        ds = ds.ragged_batch(block)
        # A fresh stateless seed per block and epoch: reproducible from
        # `seed`, different every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds.batch(2)))

        def permute(block_values, pair):
            parts = block_values if isinstance(block_values, tuple) else (block_values,)
            flat = [p.values for p in parts]
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(flat[0])[0]), seed=pair)
            out = tuple(tf.gather(f, order) for f in flat)
            return out if len(out) > 1 else out[0]

        ds = ds.map(permute, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.rebatch(batch_size)
    if num_vectors is not None:
        ds = ds.apply(
            tf.data.experimental.assert_cardinality(-(-num_vectors // batch_size))
        )
    if autoencoder_targets and not extras:
        ds = ds.map(lambda x: (x, x))
    return ds.prefetch(tf.data.AUTOTUNE)


def micro_batches(dataset, steps):
    """Splits every batch into `steps` micro-batches for gradient accumulation.

    A batch `(inputs, targets)` of `r` samples becomes `steps` consecutive
    elements `(inputs, targets, sample_weight)`: the slices `[i r // steps,
    (i + 1) r // steps)`, each of `m_i` samples weighted `steps * m_i / r`.
    Under a loss averaged over its micro-batch ("sum_over_batch_size") and an
    optimizer that averages the gradients of `steps` micro-batches
    (`gradient_accumulation_steps=steps`), the update is then that of the
    whole batch's mean loss, the last, smaller batch of an epoch included
    (`steps * m_i / r` is 1 when `steps` divides `r`). Every batch is
    exactly `steps` elements, so the accumulation windows never straddle two
    batches or two epochs: a batch of fewer than `steps` samples fills each
    micro-batch it cannot give a sample with its first sample at weight 0
    (its loss and gradient are 0; an empty batch fails in TensorFlow's
    convolution gradients). An element that already has a sample weight
    keeps it, times the split's.

    Args:
        dataset: tf.data.Dataset of `(inputs, targets)` or `(inputs,
            targets, sample_weight)` batches; `inputs`/`targets` may be
            nested (a dict of tensors).
        steps: int >= 1. Micro-batches per batch (1 returns `dataset`).

    Returns:
        tf.data.Dataset of `(inputs, targets, sample_weight)` micro-batches;
        its cardinality is `steps` times the input's when that is known.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer; received {steps!r}.")
    steps = int(steps)
    if steps == 1:
        return dataset

    def split(*element):
        size = tf.shape(tf.nest.flatten(element[1])[0])[0]
        bounds = (tf.range(steps + 1) * size) // steps

        def piece(index):
            index = tf.cast(index, tf.int32)
            start, end = bounds[index], bounds[index + 1]
            count = end - start
            weight = tf.cast(steps * count, tf.float32) / tf.cast(size, tf.float32)
            start = tf.where(count > 0, start, 0)
            end = tf.where(count > 0, end, 1)
            weight = tf.fill([end - start], weight)  # 0 for the stand-in sample
            if len(element) == 3:
                weight = weight * tf.cast(element[2][start:end], tf.float32)
            return (tf.nest.map_structure(lambda t: t[start:end], element[0]),
                    tf.nest.map_structure(lambda t: t[start:end], element[1]), weight)

        return tf.data.Dataset.range(steps).map(piece)

    cardinality = int(dataset.cardinality())
    out = dataset.flat_map(split)
    if cardinality >= 0:
        out = out.apply(tf.data.experimental.assert_cardinality(cardinality * steps))
    return out
