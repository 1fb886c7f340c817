"""Reference-table backends of the embedding systems: k-means and local density.

A group's (section's) references are the k-means centroids of its
source-domain training embeddings plus every target-domain training
embedding, so that the handful of target clips are not swamped by the
source clusters; a clip's score is the minimum over the references, that
is the minimum over both domains (reference wilkinghoff.md §6, paper
§IV-B). Embeddings are length-normalised before clustering; the centroids
are not re-normalised (§6). The score is `CosineReferenceScore`:

- `kmeans`: `distance="negative_dot"` gives `-<x/|x|, r>` (the ICASSP 2023
  code), `"cosine"` gives `1 - <x/|x|, r>` (later versions); both rank
  alike. With `local_density="ratio"` the distance `0.5 (1 - cos)` of each
  reference is divided by its local density: the mean distance to its
  `density_k` nearest other references of the group ("Keeping the
  balance", reference methods.md §F).
- `local_density`: the same class with the §F defaults (ratio, every
  source embedding a reference).
"""

import numpy as np
from sklearn.cluster import KMeans

from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import register_backend
from asd_keras.backends.knn import fit_chunk_rows
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import validate_config
from asd_keras.layers.knn import CosineReferenceScore

CLUSTER_DOMAINS = ("source", "all")
DISTANCES = ("negative_dot", "cosine")
DENSITIES = ("none", "ratio")
SCHEMA = {"kmeans_clusters": integer(min=1, optional=True), "kmeans_n_init": integer(min=1),
          "kmeans_domains": choice(*CLUSTER_DOMAINS), "distance": choice(*DISTANCES),
          "local_density": choice(*DENSITIES), "density_k": integer(min=1),
          # NumPy's seeds are 32-bit unsigned.
          "seed": integer(min=0, max=2**32 - 1)}


def length_normalize(embeddings):
    """Row-wise L2 normalisation in float64 (zero rows stay zero)."""
    embeddings = np.asarray(embeddings, np.float64)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


@register_backend("kmeans")
class KMeansBackend(ScoringBackend):
    """k-means centroids (source) + every target embedding, min over them.

    Args:
        kmeans_clusters: int or None. Clusters of the source embeddings
            (None: every source embedding is a reference). Defaults to 16.
        kmeans_n_init: int. k-means restarts; 10, as scikit-learn 1.1.2 did
            (reference wilkinghoff.md §9 item 10).
        kmeans_domains: `"source"` (the paper: cluster the source
            embeddings) or `"all"` (the ICASSP 2023 code clusters source and
            target together, §6); the target embeddings are references in
            both.
        distance: `"negative_dot"` or `"cosine"` (see the module docstring).
        local_density: `"none"` or `"ratio"`.
        density_k: int. Neighbours of a reference's density.
        seed: int. k-means `random_state`.
    """

    required_columns = ("domain",)
    memorises_training = True

    def __init__(self, kmeans_clusters=16, kmeans_n_init=10, kmeans_domains="source",
                 distance="negative_dot", local_density="none", density_k=1, seed=0):
        super().__init__()
        c = validate_config(
            {"kmeans_clusters": kmeans_clusters, "kmeans_n_init": kmeans_n_init,
             "kmeans_domains": kmeans_domains, "distance": distance,
             "local_density": local_density, "density_k": density_k, "seed": seed}, SCHEMA)
        self.kmeans_clusters = c["kmeans_clusters"]
        self.kmeans_n_init, self.kmeans_domains = c["kmeans_n_init"], c["kmeans_domains"]
        self.distance, self.local_density = c["distance"], c["local_density"]
        self.density_k, self.seed = c["density_k"], c["seed"]

    def _references(self, embeddings, domains):
        is_target = domains == "target"
        pool = embeddings if self.kmeans_domains == "all" else embeddings[~is_target]
        parts = []
        if len(pool):
            if self.kmeans_clusters is None:
                parts.append(pool)
            else:
                k = min(self.kmeans_clusters, len(pool))
                parts.append(KMeans(n_clusters=k, n_init=self.kmeans_n_init,
                                    random_state=self.seed).fit(pool).cluster_centers_)
        if is_target.any():
            parts.append(embeddings[is_target])
        return np.concatenate(parts)

    def _weights(self, references):
        if self.local_density == "none":
            alpha = 0.0 if self.distance == "negative_dot" else 1.0
            return np.full(len(references), alpha), np.ones(len(references))
        if len(references) < 2:
            raise ValueError("Local-density normalisation needs at least 2 references per "
                             f"group; received {len(references)}. Add training clips.")
        k = min(self.density_k, len(references) - 1)
        density = np.empty(len(references))
        # Row blocks of bounded size, so that every source embedding as a
        # reference (about 1,000 per DCASE section, 7,000 with grouping=all)
        # never needs the square matrix; the k smallest by partition, then
        # sorted, are the values (and order) of a full sort.
        step = fit_chunk_rows(len(references))
        for i in range(0, len(references), step):
            rows = references[i:i + step]
            distances = 0.5 * (1.0 - rows @ references.T)
            distances[np.arange(len(rows)), i + np.arange(len(rows))] = np.inf
            smallest = np.sort(np.partition(distances, k - 1, axis=1)[:, :k], axis=1)
            density[i:i + len(rows)] = smallest.mean(axis=1)
        density = np.maximum(density, 1e-12)
        # d / rho = 0.5 (1 - <x, r>) / rho = alpha - beta <x, r>.
        return 0.5 / density, 0.5 / density

    def _fit_arrays(self, features, metadata):
        domains = metadata["domain"].astype(str).to_numpy()
        references = self._references(length_normalize(features), domains)
        alpha, beta = self._weights(references)
        return {"references": references.astype(np.float32),
                "alpha": np.asarray(alpha, np.float32), "beta": np.asarray(beta, np.float32)}

    def scoring_layer(self):
        references = self.arrays["references"]
        layer = CosineReferenceScore(*references.shape, name="reference_score")
        layer.build((None, references.shape[1]))
        layer.references.assign(references)
        layer.alpha.assign(self.arrays["alpha"])
        layer.beta.assign(self.arrays["beta"])
        return layer

    @property
    def input_dim(self):
        return int(self.arrays["references"].shape[1])

    def get_config(self):
        return {"kmeans_clusters": self.kmeans_clusters, "kmeans_n_init": self.kmeans_n_init,
                "kmeans_domains": self.kmeans_domains, "distance": self.distance,
                "local_density": self.local_density, "density_k": self.density_k,
                "seed": self.seed}


@register_backend("local_density")
class LocalDensityBackend(KMeansBackend):
    """`kmeans` with the defaults of Wilkinghoff's local-density scoring
    ("Keeping the balance", DCASE 2024): every source embedding a
    reference, distances divided by the density of the `density_k` nearest
    references (1, the published code's conf 1.1.0; reference methods.md
    §F)."""

    def __init__(self, kmeans_clusters=None, kmeans_n_init=10, kmeans_domains="source",
                 distance="cosine", local_density="ratio", density_k=1, seed=0):
        super().__init__(kmeans_clusters, kmeans_n_init, kmeans_domains, distance,
                         local_density, density_k, seed)
