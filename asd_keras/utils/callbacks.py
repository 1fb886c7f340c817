"""Keras callbacks of the library's trainings."""

import keras
import numpy as np

from asd_keras.evaluation.compactness import compactness_statistics


class CompactnessMonitor(keras.callbacks.Callback):
    """Logs `intra_compactness` and `inter_compactness` after every epoch.

    The values are computed on a fixed set of training clips without mixup
    and written into the epoch logs, so they appear in `History` next to
    the training loss. `records` also holds the value before training
    (epoch 0).

    Args:
        embedding_model: keras.Model from inputs to embeddings.
        head: a head layer with `class_centers()`.
        inputs: a batched `tf.data.Dataset` (or array) of model inputs.
        labels: `(n,)` int class indices of those inputs.
    """

    def __init__(self, embedding_model, head, inputs, labels):
        super().__init__()
        self.embedding_model = embedding_model
        self.head = head
        self.inputs = inputs
        self.labels = np.asarray(labels)
        self.records = []

    def _measure(self):
        embeddings = self.embedding_model.predict(self.inputs, verbose=0)
        return compactness_statistics(embeddings, self.labels, self.head.class_centers())

    def on_train_begin(self, logs=None):
        intra, inter = self._measure()
        self.records = [{"epoch": 0, "intra_compactness": intra,
                         "inter_compactness": inter}]

    def on_epoch_end(self, epoch, logs=None):
        intra, inter = self._measure()
        self.records.append({"epoch": epoch + 1, "intra_compactness": intra,
                             "inter_compactness": inter})
        if logs is not None:
            logs["intra_compactness"] = intra
            logs["inter_compactness"] = inter


class RestoreBestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest `monitor` and restores
    them when training ends (model selection by training loss, Shin & Lee
    §III-A, without stopping early).

    Unlike `keras.callbacks.EarlyStopping(restore_best_weights=True)` it
    never stops the training and always restores, even when the best epoch
    is the last. After a resumed training only the epochs of the resumed
    attempt are compared.

    Args:
        monitor: str. A key of the epoch logs. Defaults to `"loss"`.

    Attributes:
        best: float. The lowest value seen.
        best_epoch: int or None. Its 0-based epoch.
    """

    def __init__(self, monitor="loss"):
        super().__init__()
        self.monitor = monitor
        self.best = np.inf
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"RestoreBestWeights monitors {self.monitor!r}, which is not in "
                             f"the epoch logs {sorted(logs or {})}.")
        if float(value) < self.best:
            self.best, self.best_epoch = float(value), epoch
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
