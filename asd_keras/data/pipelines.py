"""Streaming `tf.data` input pipelines.

Clips are decoded and turned into features inside the pipeline; features are
cached on disk (not in memory) after the first epoch, then shuffled at clip
and vector level with bounded buffers, so memory does not grow with the
number of clips.
"""

import numpy as np


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
    import tensorflow as tf

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
    import tensorflow as tf
    from tqdm.auto import tqdm

    from asd_keras.data.audio import nonfinite_audio_error

    with tqdm(total=total, desc=desc, unit="clip", disable=not verbose, leave=False) as bar:
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
    import tensorflow as tf

    ds = clip_dataset(paths, loader, frontend.vectors, extras=extras)
    if extras:
        def spread(vectors, *rest):
            n = tf.shape(vectors)[0]
            return (vectors, *[tf.fill([n], r) for r in rest])

        ds = ds.map(spread, num_parallel_calls=tf.data.AUTOTUNE)
    if cache == "memory":
        ds = ds.cache()
    elif cache:
        ds = ds.cache(str(cache))
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
