"""Keras callbacks of the library's trainings."""

import keras
import numpy as np


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
