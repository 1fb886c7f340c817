"""Intra- and inter-class compactness of embeddings (paper Figs. 2-3)."""

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
