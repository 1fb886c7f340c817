"""Intra- and inter-class compactness of embeddings (paper Figs. 2-3)."""

import keras
import numpy as np


def compactness_statistics(embeddings, labels, centers):
    """Mean intra- and inter-class compactness losses.

    Args:
        embeddings: `(n, dim)`; they are length-normalised here.
        labels: `(n,)` int class indices.
        centers: `(classes, K, dim)` unit class centres (`head.class_centers()`).

    Returns:
        (intra, inter): `intra` is the mean squared distance of each
        embedding to the nearest centre of its own class (the cluster
        assignment of Theorem 6, Eq. 20); `inter` the mean squared distance
        to the centres of the other classes (NaN with one class). For unit
        vectors a squared distance of 2 means orthogonal (Lemma 5).
    """
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    centers = np.asarray(centers, np.float64)
    distances = 2.0 - 2.0 * np.einsum("nd,ckd->nck", x, centers)
    rows = np.arange(len(x))
    intra = float(distances[rows, labels].min(axis=1).mean())
    if centers.shape[0] < 2:
        return intra, float("nan")
    others = np.ones(distances.shape[:2], bool)
    others[rows, labels] = False
    inter = float(distances[others].mean())
    return intra, inter


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
