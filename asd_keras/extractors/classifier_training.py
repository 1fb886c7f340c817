"""Training the network of a classifier-embedding extractor on its auxiliary
classification task: classes from the clips' metadata (`asd_keras.data.
labels`), the classification head and loss, mixup, compilation under the
extractor's precision, and the Keras fit, with the optional compactness
monitor."""

import logging

import keras
import numpy as np
import pandas as pd

from asd_keras.data.labels import ClassEncoder
from asd_keras.extractors.compactness_monitor import CompactnessMonitor
from asd_keras.layers import Mixup
from asd_keras.models.precision import dtype_policy_scope
from asd_keras.models.precision import loss_scaled
from asd_keras.models.precision import resolve_jit_compile
from asd_keras.models.wilkinghoff import build_head
from asd_keras.models.wilkinghoff import training_model
from asd_keras.utils.io import atomic_write_dataframe

logger = logging.getLogger(__name__)


def train_classifier(extractor, table, context, name):
    """Trains a classifier-embedding extractor's network on the clips of
    `table` (all normal).

    The extractor's hooks shape the training: `resolve_length` and `loader`
    (the input), `build_network`, `optimizer`, `micro_batches_per_update`,
    `training_dataset` and `waveform_dataset`.

    Args:
        extractor: a `ClassifierEmbeddingExtractor` (or a subclass).
        table: DataFrame of the training clips.
        context: `TrainingContext` of the run.
        name: str. The training's name (histories, checkpoints, the model).

    Returns:
        (embedding_model, encoder, history): the trained network, the fitted
        `ClassEncoder`, and the history DataFrame (with the epoch-0
        compactness when monitored).
    """
    c = extractor.config
    paths = list(table["path"])
    extractor.resolve_length(paths)
    if c["channel"] == "both":
        # Trained on the near channel only (`loader()` gives channel 0),
        # but the far channel is embedded later: a mono file stops the
        # run now rather than after training.
        extractor.loader(channel="both").check(paths, progress=False)
    loaders = {"train": extractor.loader(training=True), "eval": extractor.loader()}
    # check() also picks the decoder, so the checked loaders are reused.
    loaders["train"].check(paths, progress=False)
    loaders["eval"].check(paths, progress=False)
    seed = int(c["seed"])
    keras.utils.set_random_seed(seed)
    encoder = ClassEncoder(c["classes"], bool(c["domain_in_class"])).fit(table)
    labels = encoder.transform(table)
    logger.info("%s: loss=%s, classes=%s (%d).", name, c["loss"], c["classes"],
                encoder.num_classes)
    with context.scope(), dtype_policy_scope(c["dtype_policy"]):
        embedding_model = extractor.build_network(paths, loaders["eval"])
        head, loss = build_head(c["loss"], encoder.num_classes, c, seed)
        mixup = None
        if c["mixup_in"] == "model" and float(c["mixup_probability"]) > 0:
            mixup = Mixup(float(c["mixup_probability"]), c["mixup_label"], seed,
                          name="mixup")
        model = training_model(embedding_model, head, encoder.num_classes, mixup,
                               name=f"{extractor.network_name}_{name}")
        # One training-function call per optimizer update, so callbacks,
        # progress and step timings count updates under accumulation.
        model.compile(optimizer=loss_scaled(extractor.optimizer(embedding_model),
                                            c["dtype_policy"]), loss=loss,
                      jit_compile=resolve_jit_compile(c["jit_compile"]),
                      steps_per_execution=extractor.micro_batches_per_update())
    train_ds = extractor.training_dataset(paths, labels, encoder.num_classes,
                                          loaders["train"], True, seed)
    monitor = None
    if c["monitor_compactness"]:
        pick = np.sort(np.random.default_rng(seed).permutation(len(paths))[
            :int(c["monitor_clips"])])
        monitor = CompactnessMonitor(
            embedding_model, head,
            extractor.waveform_dataset([paths[i] for i in pick], loaders["eval"]),
            labels[pick])
    # One iterator for the whole fit, each epoch a new shuffle (the same
    # orders as new iterators): Keras makes a new one every epoch
    # otherwise, and on 2 cores the start of one epoch in three then
    # stalled for 2-20 s (benchmarks/bench_wilkinghoff.py). An epoch is
    # every batch's micro-batches, a whole number of training calls.
    steps_per_epoch = (-(-len(paths) // int(c["batch_size"]))
                       * extractor.micro_batches_per_update())
    history = context.fit(model, train_ds.repeat(), name, c["epochs"],
                          callbacks=[monitor] if monitor else [],
                          shuffle=False,  # tf.data shuffles
                          steps_per_epoch=steps_per_epoch)
    if monitor is not None and monitor.records:
        history = pd.concat([pd.DataFrame(monitor.records[:1]), history],
                            ignore_index=True)
        if context.run_dir is not None:
            atomic_write_dataframe(context.run_dir / "history" / f"{name}.csv", history)
    return embedding_model, encoder, history
