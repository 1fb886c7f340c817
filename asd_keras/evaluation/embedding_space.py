"""Embedding-space views: t-SNE projections and anomaly-to-normal distances
(paper §IV-F, Table III and Fig. 5)."""

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.manifold import TSNE


def tsne_projection(embeddings, seed=0, perplexity=30.0):
    """2-D t-SNE of length-normalised embeddings (scikit-learn).

    On the unit sphere Euclidean and cosine distances rank alike (paper
    Lemma 5), so the Euclidean metric is used.
    """
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(float(perplexity), (len(x) - 1) / 3.0)
    if perplexity <= 0:
        raise ValueError(f"t-SNE needs at least 2 embeddings; received {len(x)}.")
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(x)


def anomaly_to_normal_distances(points, labels):
    """Euclidean distance from each anomalous point to the closest normal one.

    Args:
        points: `(n, 2)` projections.
        labels: `(n,)` 0 normal, 1 anomalous.

    Returns:
        `(anomalies,)` distances.
    """
    labels = np.asarray(labels).astype(int)
    if not ((labels == 0).any() and (labels == 1).any()):
        raise ValueError("Need both normal (0) and anomalous (1) samples.")
    return cdist(points[labels == 1], points[labels == 0]).min(axis=1)
