"""Machine-sound mixtures for the source-separation proxy task.

Shin & Lee (paper §III-D, §IV-C3) train a separator to pull a target
machine's sound out of a mixture with another machine type's sound, and
score it by the SI-SDR improvement on fixed evaluation mixtures at -5, 0
and 5 dB. This module makes both kinds of mixture:

- `mix_at_snr`: target + gain * interferer, with the gain that puts the
  interferer at the requested SNR below the target (power over the whole
  segment);
- `training_mixtures`: an endless, deterministic `tf.data` stream of
  `(mixture, target)` segments: every epoch visits the target clips in a
  new order; each gets a random segment, a random clip of *another*
  machine type as interferer (its own random segment) and an SNR uniform in
  `snr_range`. Every draw is a stateless function of `(seed, epoch,
  element)`, so the stream is the same on every run and with any number of
  parallel calls;
- `evaluation_manifest`: the fixed evaluation set, `count` mixtures per SNR,
  as a manifest table (target and interferer files, segment offsets, SNR)
  drawn from a seed; `write_manifest` writes it once and later runs must
  find the same table; `manifest_dataset` renders the audio from it exactly.
  Writing the manifest rather than the waveforms keeps the set exact and
  small (1000 x 3 2-second mixtures of one machine type would be 380 MB of
  float32 audio) while every run sees the same samples.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from asd_keras.utils.io import atomic_write_dataframe

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["mixture", "snr_db", "target", "target_offset", "target_machine_type",
                    "interferer", "interferer_offset", "interferer_machine_type"]


def mix_at_snr(target, interferer, snr_db):
    """`(mixture, gain)`: `target + gain * interferer` at `snr_db`.

    The gain makes `10 log10(mean(target^2) / mean((gain * interferer)^2))`
    equal `snr_db` along the last axis. Works on NumPy arrays and tensors.

    Args:
        target: `(..., samples)` float array.
        interferer: array of the same shape.
        snr_db: float or `(...)` array.

    Returns:
        `(mixture, gain)`, the gain shaped `(..., 1)`.
    """
    target = tf.convert_to_tensor(target, tf.float32)
    interferer = tf.convert_to_tensor(interferer, tf.float32)
    snr = tf.cast(tf.convert_to_tensor(snr_db), tf.float32)[..., None]
    target_power = tf.reduce_mean(tf.square(target), axis=-1, keepdims=True)
    interferer_power = tf.reduce_mean(tf.square(interferer), axis=-1, keepdims=True)
    # A silent interferer would need an infinite gain; the floor keeps the
    # stream finite (the evaluation manifest rejects silent clips by name).
    gain = tf.sqrt(target_power / (tf.maximum(interferer_power, 1e-20)
                                   * tf.pow(10.0, snr / 10.0)))
    return target + gain * interferer, gain


def snr_db(target, noise):
    """Measured SNR in dB of `target` over `noise` along the last axis (NumPy)."""
    target = np.asarray(target, np.float64)
    noise = np.asarray(noise, np.float64)
    return 10.0 * np.log10(np.mean(target**2, axis=-1) / np.mean(noise**2, axis=-1))


def _interferer_blocks(targets, interferers):
    """Per target row: the start and size of its machine type's block among
    the interferers (sorted by machine type) and how many others there are."""
    kinds = interferers["machine_type"].astype(str).to_numpy()
    starts, sizes = [], []
    for kind in targets["machine_type"].astype(str):
        where = np.flatnonzero(kinds == kind)
        starts.append(int(where[0]) if len(where) else 0)
        sizes.append(int(len(where)))
    starts, sizes = np.asarray(starts, np.int64), np.asarray(sizes, np.int64)
    others = len(interferers) - sizes
    if (others < 1).any():
        kind = targets["machine_type"].astype(str).iloc[int(np.argmax(others < 1))]
        raise ValueError(f"No interferer for the machine type {kind!r}: the separation "
                         "task mixes each target clip with a clip of another machine type, "
                         "and the interferer clips hold no other type. Train on data with "
                         "at least two machine types.")
    return starts, sizes, others


def sort_interferers(interferers):
    """Interferer rows sorted by machine type (then path), as the draws expect."""
    return interferers.sort_values(["machine_type", "path"], kind="stable").reset_index(
        drop=True)


def training_mixtures(targets, interferers, loader, segment_samples, snr_range=(-5.0, 5.0),
                      seed=0, epochs=None):
    """Endless (or `epochs`-long) stream of `(mixture, target)` segments.

    Args:
        targets: DataFrame with `path` and `machine_type` of the target clips.
        interferers: DataFrame with `path` and `machine_type` of the clips
            the interferers are drawn from; a target's interferer is always
            of another machine type.
        loader: `AudioLoader` giving fixed-length clips (`loader.length`).
        segment_samples: int. Segment length; at most the clip length.
        snr_range: (low, high) in dB; the SNR is uniform in it.
        seed: int. Every draw is a stateless function of the seed.
        epochs: int or None (endless). One epoch visits every target once.

    Returns:
        unbatched `tf.data.Dataset` of `(mixture, target)` float32
        `(segment_samples,)` pairs.
    """
    targets = targets.reset_index(drop=True)
    interferers = sort_interferers(interferers)
    clip = int(loader.length)
    segment = int(segment_samples)
    if segment > clip:
        raise ValueError(f"segment_samples={segment} is longer than the clips' {clip} "
                         "samples; use a shorter segment or a longer clip length.")
    low, high = (float(v) for v in snr_range)
    if high < low:
        raise ValueError(f"snr_range must be (low, high) with low <= high; received "
                         f"{snr_range!r}.")
    starts, sizes, others = _interferer_blocks(targets, interferers)
    n = len(targets)
    target_paths = tf.constant(targets["path"].astype(str).to_numpy())
    interferer_paths = tf.constant(interferers["path"].astype(str).to_numpy())
    starts, sizes, others = (tf.constant(a) for a in (starts, sizes, others))
    seed = int(seed)

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

    def draw(index, element):
        index = tf.cast(index, tf.int64)
        u = tf.random.stateless_uniform([4], seed=tf.stack(
            [tf.cast(seed, tf.int64) + 1, index]), dtype=tf.float64)
        k = tf.minimum(tf.cast(u[0] * tf.cast(others[element], tf.float64), tf.int64),
                       others[element] - 1)
        # Skips the target's own machine type (a contiguous block).
        chosen = k + tf.cast(k >= starts[element], tf.int64) * sizes[element]
        span = tf.cast(clip - segment + 1, tf.float64)
        t_offset = tf.cast(u[1] * span, tf.int64)
        i_offset = tf.cast(u[2] * span, tf.int64)
        snr = tf.cast(low + u[3] * (high - low), tf.float32)
        target = loader.load(target_paths[element])[t_offset:t_offset + segment]
        interferer = loader.load(interferer_paths[chosen])[i_offset:i_offset + segment]
        target = tf.ensure_shape(target, [segment])
        mixture, _ = mix_at_snr(target, tf.ensure_shape(interferer, [segment]), snr)
        return mixture, target

    epochs_ds = tf.data.Dataset.range(epochs) if epochs is not None else \
        tf.data.Dataset.range(2**62)
    return (epochs_ds.flat_map(epoch_order).enumerate()
            .map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def evaluation_manifest(targets, interferers, clip_samples, segment_samples,
                        snrs=(-5.0, 0.0, 5.0), count=1000, seed=0):
    """The fixed evaluation mixtures as a table (see `MANIFEST_COLUMNS`).

    For each SNR, `count` mixtures: the targets cycle through the target
    clips in random orders (each clip used equally often, give or take
    one), each with a random segment and a random clip of another machine
    type as interferer.

    Args:
        targets: DataFrames with `path` and `machine_type`.
        interferers: DataFrames with `path` and `machine_type`.
        clip_samples: int. Clip length the loader gives (offsets lie in it).
        segment_samples: int.
        snrs: SNRs in dB.
        count: int. Mixtures per SNR.
        seed: int.

    Returns:
        DataFrame, one row per mixture.
    """
    if int(count) < 1:
        raise ValueError(f"count must be >= 1 mixture per SNR; received {count!r}.")
    if int(segment_samples) > int(clip_samples):
        raise ValueError(f"segment_samples={segment_samples} is longer than the clips' "
                         f"{clip_samples} samples.")
    targets = targets.reset_index(drop=True)
    if len(targets) == 0:
        raise ValueError("No target clips for the evaluation mixtures.")
    interferers = sort_interferers(interferers)
    starts, sizes, others = _interferer_blocks(targets, interferers)
    rng = np.random.default_rng(int(seed))
    span = int(clip_samples) - int(segment_samples) + 1
    rows = []
    for snr in snrs:
        order = np.concatenate([rng.permutation(len(targets))
                                for _ in range(-(-int(count) // len(targets)))])[:int(count)]
        k = rng.integers(0, others[order])
        chosen = k + (k >= starts[order]) * sizes[order]
        t_offsets = rng.integers(0, span, size=len(order))
        i_offsets = rng.integers(0, span, size=len(order))
        for j, (t, i) in enumerate(zip(order, chosen)):
            rows.append({"mixture": len(rows), "snr_db": float(snr),
                         "target": str(targets["path"].iloc[t]),
                         "target_offset": int(t_offsets[j]),
                         "target_machine_type": str(targets["machine_type"].iloc[t]),
                         "interferer": str(interferers["path"].iloc[i]),
                         "interferer_offset": int(i_offsets[j]),
                         "interferer_machine_type": str(interferers["machine_type"].iloc[i])})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def write_manifest(path, manifest):
    """Writes the manifest once; afterwards checks that it is unchanged.

    Returns:
        the manifest as stored.

    Raises:
        ValueError: when `path` holds a different manifest (other data,
            seed, count or segment length): it names the file.
    """
    path = Path(path)
    if path.is_file():
        stored = pd.read_csv(path, dtype={"target_machine_type": str,
                                          "interferer_machine_type": str})
        same = (list(stored.columns) == list(manifest.columns) and len(stored) == len(manifest)
                and all(np.array_equal(stored[c].to_numpy(), manifest[c].to_numpy())
                        if c not in ("snr_db",) else
                        np.allclose(stored[c].to_numpy(float), manifest[c].to_numpy(float))
                        for c in manifest.columns))
        if not same:
            raise ValueError(f"'{path}' holds other evaluation mixtures than these settings "
                             "draw (data, seed, count, SNRs or lengths differ). Every "
                             "configuration of a study must be scored on the same "
                             "mixtures: restore the settings, or point eval_mixtures_dir "
                             "at another folder.")
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_dataframe(path, manifest)
    logger.info("Wrote %d evaluation mixtures to '%s'.", len(manifest), path)
    return manifest


def check_manifest_audio(manifest, loader, segment_samples):
    """Raises ValueError naming the first silent target or interferer segment."""
    seen = {}
    for column, offset in (("target", "target_offset"), ("interferer", "interferer_offset")):
        for path, start in zip(manifest[column], manifest[offset]):
            if path not in seen:
                seen[path] = np.asarray(loader.load(tf.constant(path)))
            piece = seen[path][int(start):int(start) + int(segment_samples)]
            if not np.any(piece):
                raise ValueError(f"The segment at sample {int(start)} of '{path}' is silent; "
                                 "an SNR cannot be set against silence. Remove the clip.")


def manifest_dataset(manifest, loader, segment_samples):
    """Unbatched `tf.data` `(mixture, target)` pairs of the manifest, in order."""
    segment = int(segment_samples)
    columns = (manifest["target"].astype(str).to_numpy(),
               manifest["target_offset"].to_numpy(np.int64),
               manifest["interferer"].astype(str).to_numpy(),
               manifest["interferer_offset"].to_numpy(np.int64),
               manifest["snr_db"].to_numpy(np.float32))

    def render(target, t_offset, interferer, i_offset, snr):
        t = tf.ensure_shape(loader.load(target)[t_offset:t_offset + segment], [segment])
        i = tf.ensure_shape(loader.load(interferer)[i_offset:i_offset + segment], [segment])
        mixture, _ = mix_at_snr(t, i, snr)
        return mixture, t

    return tf.data.Dataset.from_tensor_slices(columns).map(
        render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
