"""The compactness monitor of `classifier_embedding` trainings
(`monitor_compactness=true`): the intra- and inter-class compactness of
Wilkinghoff's compactness losses, measured after every epoch."""

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
