"""The tf.data pipelines of the classifier-embedding extractors
(`classifier_embedding` and `finetuned_encoder`): labelled training batches
of fixed-length waveforms, waveform batches to embed in order, and the
memory bounds both run under."""

import logging

import numpy as np
import tensorflow as tf

from asd_keras.data.pipelines import decoded_bytes
from asd_keras.data.pipelines import labelled_clips
from asd_keras.layers.mixup import mixup_dataset
from asd_keras.utils.training import without_autotune_thread

logger = logging.getLogger(__name__)


def training_batches(config, num_samples, data_choices, paths, labels, num_classes, loader,
                     shuffle=True, seed=0):
    """The `model.fit` pipeline: `({"waveform", "label"}, one_hot)` batches.

    When the decoded clips fit in `pipeline_ram_mb`, they are decoded
    once and kept in memory, as the reference keeps every waveform in
    one array; otherwise the file names are shuffled and the clips
    decoded from disk every epoch, so memory does not grow with the
    number of clips (`asd_keras.data.pipelines.labelled_clips`; both
    ways give the same batches). One-hot labels are attached, the clips
    batched, mixed up here when `mixup_in="pipeline"`, and prefetched.

    Args:
        config: the extractor's configuration (`pipeline_ram_mb`,
            `batch_size`, `mixup_in`, `mixup_probability`, `mixup_label`).
        num_samples: int. The network's input length.
        data_choices: dict. The extractor's `data_choices`;
            `"training_clips"` is set to say which way was taken.
        paths: list of str. The training clips.
        labels: int array `(clips,)` of class indices.
        num_classes: int.
        loader: `AudioLoader` of the training clips.
        shuffle: bool. Shuffle every epoch (and mix up, when asked).
        seed: int. Seeds the shuffles and the pipeline's mixup.
    """
    c = config
    n = num_samples
    paths = list(paths)
    held, budget = decoded_bytes(paths, loader), int(c["pipeline_ram_mb"])
    in_memory = held <= budget * 2**20
    data_choices["training_clips"] = (
        f"{'in memory' if in_memory else 'streamed from disk every epoch'} "
        f"({held / 2**20:.0f} MB of decoded clips, pipeline_ram_mb={budget})")
    logger.info("Training clips: %s.", data_choices["training_clips"])
    ds = labelled_clips(paths, [np.asarray(labels, np.int32)], loader, shuffle, seed,
                        in_memory)

    def attach(waveform, label):
        one_hot = tf.one_hot(label, num_classes)
        return {"waveform": tf.ensure_shape(waveform, [n]), "label": one_hot}, one_hot

    ds = ds.map(attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(int(c["batch_size"]))
    if shuffle and c["mixup_in"] == "pipeline":
        ds = mixup_dataset(ds, float(c["mixup_probability"]), c["mixup_label"], seed)
    return bounded_pipeline(ds.prefetch(2), c, budget * 2**20 - (held if in_memory else 0))


def waveform_batches(config, num_samples, paths, loader):
    """Batches of `score_batch_clips` fixed-length waveforms `(batch, n)`, in
    order; `(batch, n, 2)` for a loader of `channel="both"`.

    Args:
        config: the extractor's configuration (`score_batch_clips`,
            `pipeline_ram_mb`).
        num_samples: int. The network's input length `n`.
        paths: the clips.
        loader: `AudioLoader` of the clips.
    """
    n = num_samples
    shape = [n, 2] if loader.channel == "both" else [n]
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    ds = ds.map(lambda p: tf.ensure_shape(loader.load(p), shape),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return bounded_pipeline(ds.batch(int(config["score_batch_clips"])).prefetch(2), config)


def bounded_pipeline(ds, config, ram_bytes=None):
    """Fixes what the pipeline may buffer and turns tf.data's autotuner
    off (`utils.training.without_autotune_thread`): the callers prefetch
    2 batches and map one clip per core. `ram_bytes` (default
    `pipeline_ram_mb` of `config`, at least 64 MB) stays the budget should
    a caller turn autotuning back on.

    With the autotuner, its prefetch buffers of 10 s clips grew over the
    steps of an epoch, so peak memory crept up with the number of clips
    even though nothing is cached, and its thread held up the end of
    `model.fit` by up to a minute.
    """
    if ram_bytes is None:
        ram_bytes = int(config["pipeline_ram_mb"]) * 2**20
    options = tf.data.Options()
    options.autotune.ram_budget = max(int(ram_bytes), 64 * 2**20)
    return without_autotune_thread(ds.with_options(options))
