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

    Args:
        paths: list of str.
        loader: `AudioLoader`.
        frontend: object with `vectors(waveform)`, e.g. `LogMelFrontend`.
        batch_size: int.
        shuffle: bool. Shuffle clips (bounded buffer) and vectors.
        seed: int. Shuffle seed.
        cache: None, "memory" or a file path prefix for an on-disk cache.
        clip_buffer: int. Clips in the clip shuffle buffer.
        vector_buffer: int. Vectors in the vector shuffle buffer.
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
    ds = ds.unbatch()
    if shuffle:
        ds = ds.shuffle(vector_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if num_vectors is not None:
        ds = ds.apply(
            tf.data.experimental.assert_cardinality(-(-num_vectors // batch_size))
        )
    if autoencoder_targets and not extras:
        ds = ds.map(lambda x: (x, x))
    return ds.prefetch(tf.data.AUTOTUNE)
