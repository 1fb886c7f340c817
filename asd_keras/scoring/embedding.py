"""Scoring backends for embedding models, per section.

Every backend reduces to a table of reference embeddings per section with
an affine cosine score per reference,

    score(x) = min_j  alpha_j - beta_j * <x/|x|, r_j>,

which `score` evaluates in NumPy and an exported SavedModel evaluates in
TensorFlow from the same arrays (`padded_tables`):

- `KMeansBackend`: k-means centroids of the source-domain training
  embeddings plus every target-domain training embedding, negative cosine
  similarity (alpha 0, beta 1), minimum over both domains (reference
  wilkinghoff.md §6, paper §IV-B).
- `LocalDensityBackend`: the same references, each distance
  `0.5 * (1 - cos)` divided by the reference's local density, the mean
  distance to its K nearest other references of the section ("Keeping the
  balance", reference methods.md §F).

Any embedding model plugs in: `fit(embeddings, sections, domains)` then
`score(embeddings, sections)`.
"""

import numpy as np

KMEANS_DOMAINS = ("source", "all")
DISTANCES = ("negative_dot", "cosine")
PAD_ALPHA = 1e9


def length_normalize(embeddings):
    """Row-wise L2 normalisation (zero rows stay zero)."""
    embeddings = np.asarray(embeddings, np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


class _ReferenceBackend:
    """Shared reference building, scoring and persistence.

    Subclasses define `kind` and `_weights(references) -> (alpha, beta)`.
    """

    kind = None

    def __init__(self, n_clusters=16, n_init=10, seed=0, kmeans_domains="source"):
        if kmeans_domains not in KMEANS_DOMAINS:
            raise ValueError(
                f"kmeans_domains must be one of {KMEANS_DOMAINS}; received "
                f"{kmeans_domains!r}."
            )
        if n_clusters is not None and int(n_clusters) < 1:
            raise ValueError(f"n_clusters must be >= 1 or None; received {n_clusters!r}.")
        self.n_clusters = None if n_clusters is None else int(n_clusters)
        self.n_init = int(n_init)
        self.seed = int(seed)
        self.kmeans_domains = kmeans_domains
        self.tables = {}

    def _references(self, embeddings, domains):
        """(references, domain of each) for one section's training embeddings."""
        from sklearn.cluster import KMeans

        is_target = np.asarray([d == "target" for d in domains])
        source = embeddings[~is_target]
        pool = embeddings if self.kmeans_domains == "all" else source
        parts, kinds = [], []
        if len(pool):
            if self.n_clusters is None:
                centres = pool
            else:
                k = min(self.n_clusters, len(pool))
                # n_init=10 as scikit-learn 1.1.2 did (reference §9 item 10);
                # centroids are not re-normalised (reference §6).
                centres = KMeans(n_clusters=k, n_init=self.n_init,
                                 random_state=self.seed).fit(pool).cluster_centers_
            parts.append(centres)
            kinds += ["source"] * len(centres)
        if is_target.any():
            parts.append(embeddings[is_target])
            kinds += ["target"] * int(is_target.sum())
        if not parts:
            raise ValueError("A section has no training embeddings to build references from.")
        return np.concatenate(parts), np.asarray(kinds)

    def fit(self, embeddings, sections, domains):
        """Builds each section's references from its training embeddings.

        Args:
            embeddings: `(clips, dim)` training embeddings (normal clips).
            sections: `(clips,)` section keys, e.g. `fan_00`.
            domains: `(clips,)` "source", "target" or None (no domains).
        """
        embeddings = length_normalize(embeddings)
        sections = np.asarray(sections)
        domains = np.asarray(domains, dtype=object)
        if len(embeddings) != len(sections) or len(sections) != len(domains):
            raise ValueError(
                f"embeddings ({len(embeddings)}), sections ({len(sections)}) and "
                f"domains ({len(domains)}) must have the same length."
            )
        self.tables = {}
        for section in np.unique(sections):
            rows = sections == section
            references, kinds = self._references(embeddings[rows], domains[rows])
            alpha, beta = self._weights(references)
            self.tables[str(section)] = {
                "references": references.astype(np.float32),
                "alpha": np.asarray(alpha, np.float32),
                "beta": np.asarray(beta, np.float32),
                "domains": kinds,
            }
        return self

    def score(self, embeddings, sections, per_domain=False):
        """Anomaly scores (higher = more anomalous).

        Args:
            embeddings: `(clips, dim)`.
            sections: `(clips,)` section keys seen in `fit`.
            per_domain: bool. Also return the minimum over each domain's
                references (`{"source": ..., "target": ...}`, NaN where a
                section has none).
        """
        embeddings = length_normalize(embeddings)
        sections = np.asarray(sections)
        unknown = sorted(set(map(str, np.unique(sections))) - set(self.tables))
        if unknown:
            raise ValueError(
                f"No references for section(s) {unknown}; the backend was fitted "
                f"on {sorted(self.tables)}. Train on those sections' clips."
            )
        scores = np.empty(len(embeddings))
        domain_scores = {d: np.full(len(embeddings), np.nan) for d in ("source", "target")}
        for section, table in self.tables.items():
            rows = sections == section
            if not rows.any():
                continue
            values = table["alpha"] - table["beta"] * (
                embeddings[rows] @ table["references"].T.astype(np.float64)
            )
            scores[rows] = values.min(axis=1)
            for domain in domain_scores:
                mask = table["domains"] == domain
                if mask.any():
                    domain_scores[domain][rows] = values[:, mask].min(axis=1)
        return (scores, domain_scores) if per_domain else scores

    def padded_tables(self, sections):
        """`(references [S,R,D], alpha [S,R], beta [S,R])`, padded to the
        largest section with references that can never be the minimum."""
        tables = [self.tables[s] for s in sections]
        width = max(len(t["alpha"]) for t in tables)
        dim = tables[0]["references"].shape[1]
        refs = np.zeros((len(tables), width, dim), np.float32)
        alpha = np.full((len(tables), width), PAD_ALPHA, np.float32)
        beta = np.zeros((len(tables), width), np.float32)
        for i, t in enumerate(tables):
            n = len(t["alpha"])
            refs[i, :n], alpha[i, :n], beta[i, :n] = t["references"], t["alpha"], t["beta"]
        return refs, alpha, beta

    def get_config(self):
        return {"kind": self.kind, "n_clusters": self.n_clusters,
                "n_init": self.n_init, "seed": self.seed,
                "kmeans_domains": self.kmeans_domains}

    def save(self, path):
        """Writes the fitted tables to an `.npz` file."""
        arrays = {}
        for section, table in self.tables.items():
            for key, value in table.items():
                arrays[f"{section}/{key}"] = np.asarray(value).astype(
                    str if key == "domains" else value.dtype)
        np.savez(path, **arrays)

    def load_tables(self, path):
        self.tables = {}
        with np.load(path) as data:
            for name in data.files:
                section, key = name.rsplit("/", 1)
                self.tables.setdefault(section, {})[key] = data[name]
        return self


class KMeansBackend(_ReferenceBackend):
    """k-means (source) + all target samples, min over domains.

    Args:
        n_clusters: int. k of k-means per section (`None`: every source
            embedding is a reference). Defaults to `16`.
        n_init: int. k-means restarts. Defaults to `10`.
        seed: int. k-means `random_state`. Defaults to `0`.
        kmeans_domains: `"source"` (the paper) or `"all"` (the ICASSP 2023
            code clusters source and target together, reference §6).
        distance: `"negative_dot"` (`-<x, r>`, the ICASSP 2023 code) or
            `"cosine"` (`1 - <x, r>`, later versions); both rank alike.
    """

    kind = "kmeans"

    def __init__(self, n_clusters=16, n_init=10, seed=0, kmeans_domains="source",
                 distance="negative_dot"):
        super().__init__(n_clusters, n_init, seed, kmeans_domains)
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}; received {distance!r}.")
        self.distance = distance

    def _weights(self, references):
        alpha = 0.0 if self.distance == "negative_dot" else 1.0
        return np.full(len(references), alpha), np.ones(len(references))

    def get_config(self):
        return {**super().get_config(), "distance": self.distance}


class LocalDensityBackend(_ReferenceBackend):
    """Local-density ("ratio") normalised cosine distance.

    Args:
        k: int. Neighbours that define a reference's local density.
            Defaults to `1` (conf 1.1.0 of the reference code).
        n_clusters: int or None. Source references are k-means centroids
            (int) or all source embeddings (None, the 1.1.0 default).
        n_init, seed, kmeans_domains: as `KMeansBackend`.
    """

    kind = "local_density"

    def __init__(self, k=1, n_clusters=None, n_init=10, seed=0,
                 kmeans_domains="source"):
        super().__init__(n_clusters, n_init, seed, kmeans_domains)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; received {k!r}.")
        self.k = int(k)

    def _weights(self, references):
        if len(references) < 2:
            raise ValueError(
                "Local-density normalisation needs at least 2 references per "
                f"section; received {len(references)}. Add training clips."
            )
        distances = 0.5 * (1.0 - references @ references.T)
        np.fill_diagonal(distances, np.inf)
        k = min(self.k, len(references) - 1)
        density = np.sort(distances, axis=1)[:, :k].mean(axis=1)
        density = np.maximum(density, 1e-12)
        # d/rho = 0.5 (1 - <x, r>) / rho = alpha - beta <x, r>.
        return 0.5 / density, 0.5 / density

    def get_config(self):
        return {**super().get_config(), "k": self.k}


BACKENDS = {"kmeans": KMeansBackend, "local_density": LocalDensityBackend}


def backend_from_config(config):
    """Builds a backend from `get_config()` output."""
    config = dict(config)
    kind = config.pop("kind")
    if kind not in BACKENDS:
        raise ValueError(f"Unknown backend {kind!r}; available: {sorted(BACKENDS)}.")
    return BACKENDS[kind](**config)
