"""Distance to a memory bank: the mean of the k nearest references.

Both layers compare a batch with their table `chunk_size` references at a
time (static slices, so the exported graph is the same), keeping a running
k nearest (or minimum) per clip: the largest intermediate is `(batch,
chunk_size)`, never `(batch, references)`, so scoring memory does not grow
with the bank (a DCASE 2023 dev section with MemMixup holds ~10,000
references; `benchmarks/bench_dev_size_memory.py`).
"""

import keras
from keras import ops

METRICS = ("euclidean", "cosine")
NORMALISATIONS = ("none", "ratio", "difference")
# References compared per step: (batch, 1024) float32 intermediates are
# 16 MB at the 4096-clip batches of `ScoringBackend.score`.
CHUNK_SIZE = 1024


def reference_chunks(size, chunk_size):
    """`(start, stop)` slices of `size` references, `chunk_size` at a time."""
    return [(start, min(size, start + chunk_size)) for start in range(0, size, chunk_size)]


def _squared_distances(x, y, centre=None):
    """Squared Euclidean distances `(len(x), len(y))` without cancellation.

    `|x|^2 + |y|^2 - 2<x, y>` after moving the origin to `centre` (default:
    the centre of `y`; a chunk of a table passes the whole table's, so every
    chunk is measured alike): about the origin, float32 would lose distances
    that are small next to the norms (raw log-mel levels have |x|^2 ~ 1e6;
    unit embeddings that lie close together, 1 against distances of 1e-5)
    to cancellation, and differently for each batch shape.
    """
    if centre is None:
        centre = ops.mean(y, axis=0, keepdims=True)
    x, y = x - centre, y - centre
    squared = (ops.sum(ops.square(x), axis=-1, keepdims=True)
               + ops.sum(ops.square(y), axis=-1)[None, :]
               - 2.0 * ops.matmul(x, ops.transpose(y)))
    return ops.maximum(squared, 0.0)


@keras.saving.register_keras_serializable(package="asd_keras")
class NearestNeighbourDistance(keras.layers.Layer):
    """Mean distance to the `k` nearest rows of a memory bank.

    Distances: Euclidean (GenRep's `calc_dist_matrix`, reference methods.md
    §B) or `0.5 * (1 - cos)` (reference methods.md §F). With local-density
    normalisation each reference's distance is divided by (`"ratio"`) or
    reduced by (`"difference"`) its density before the nearest ones are
    taken, so the nearest normalised reference can differ from the nearest
    raw one (§F). The bank and densities are non-trainable weights set
    after fitting (`asd_keras.backends.knn`).

    Args:
        bank_size: int. References in the bank.
        dim: int. Feature size.
        k: int. Neighbours averaged. Defaults to 1.
        metric: str. `"euclidean"` or `"cosine"`.
        normalisation: str. `"none"`, `"ratio"` or `"difference"`.
        chunk_size: int. References compared per step (the module
            docstring); the result does not depend on it beyond float
            rounding.

    Call arguments:
        features: float tensor `(batch, dim)`.

    Returns:
        float tensor `(batch,)`.
    """

    def __init__(self, bank_size: int, dim: int, k: int = 1, metric: str = "euclidean",
                 normalisation: str = "none", chunk_size: int = CHUNK_SIZE, **kwargs):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; received {metric!r}.")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}; received "
                             f"{normalisation!r}.")
        if not 1 <= int(k) <= int(bank_size):
            raise ValueError(f"k must be between 1 and the bank size {bank_size}; "
                             f"received {k!r}.")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1; received {chunk_size!r}.")
        self.bank_size, self.dim, self.k = int(bank_size), int(dim), int(k)
        self.metric, self.normalisation = metric, normalisation
        self.chunk_size = int(chunk_size)

    def build(self, input_shape):
        self.bank = self.add_weight(shape=(self.bank_size, self.dim), initializer="zeros",
                                    trainable=False, name="bank")
        self.density = self.add_weight(shape=(self.bank_size,), initializer="ones",
                                       trainable=False, name="density")

    def call(self, features):
        x, bank = features, self.bank
        if self.metric == "cosine":
            x = features / ops.maximum(ops.norm(features, axis=-1, keepdims=True), 1e-12)
            bank = bank / ops.maximum(ops.norm(bank, axis=-1, keepdims=True), 1e-12)
        centre = ops.mean(bank, axis=0, keepdims=True)
        nearest = None  # the running k nearest, negated (top_k takes the largest)
        for start, stop in reference_chunks(self.bank_size, self.chunk_size):
            distances = self._distances(x, bank[start:stop], centre,
                                        self.density[start:stop])
            best, _ = ops.top_k(-distances, min(self.k, stop - start))
            if nearest is not None:
                best, _ = ops.top_k(ops.concatenate([nearest, best], axis=-1),
                                    min(self.k, stop))
            nearest = best
        return -ops.mean(nearest, axis=-1)

    def _distances(self, x, references, centre, density):
        if self.metric == "cosine":
            # 0.5 (1 - cos) = 0.25 |x - y|^2 for unit vectors. Not as
            # 1 - <x, y>: when the embeddings lie close together (cosine
            # distances of 1e-5 after a short training), float32 keeps only
            # the rounding of the dot product, which differs between batch
            # shapes and kernels, and the local-density ratio then divides
            # that error by a density as small.
            distances = 0.25 * _squared_distances(x, references, centre)
        else:
            distances = ops.sqrt(_squared_distances(x, references, centre))
        if self.normalisation == "ratio":
            distances = distances / density[None, :]
        elif self.normalisation == "difference":
            distances = distances - density[None, :]
        return distances

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(bank_size=self.bank_size, dim=self.dim, k=self.k, metric=self.metric,
                      normalisation=self.normalisation, chunk_size=self.chunk_size)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class CosineReferenceScore(keras.layers.Layer):
    """`min_j alpha_j - beta_j <x / |x|, r_j>` over a table of references.

    The score of the embedding backends (`asd_keras.backends.kmeans`): with
    k-means centroids and target embeddings as references `r_j` (not
    re-normalised, reference wilkinghoff.md §6), `alpha = 0, beta = 1` is
    the negative cosine similarity of the ICASSP 2023 code and `alpha = beta
    = 1` the cosine distance; `alpha = beta = 0.5 / rho_j` divides the
    distance `0.5 (1 - cos)` by each reference's local density (reference
    methods.md §F). The table is held in non-trainable weights set after
    fitting.

    Args:
        num_references: int. Rows of the table.
        dim: int. Embedding size.
        chunk_size: int. References compared per step (the module
            docstring); the minimum does not depend on it.

    Call arguments:
        embeddings: float tensor `(batch, dim)`.

    Returns:
        float tensor `(batch,)`.
    """

    def __init__(self, num_references: int, dim: int, chunk_size: int = CHUNK_SIZE,
                 **kwargs):
        super().__init__(**kwargs)
        if int(num_references) < 1 or int(dim) < 1 or int(chunk_size) < 1:
            raise ValueError(f"num_references, dim and chunk_size must be >= 1; received "
                             f"{num_references!r}, {dim!r} and {chunk_size!r}.")
        self.num_references, self.dim = int(num_references), int(dim)
        self.chunk_size = int(chunk_size)

    def build(self, input_shape):
        self.references = self.add_weight(shape=(self.num_references, self.dim),
                                          initializer="zeros", trainable=False,
                                          name="references")
        self.alpha = self.add_weight(shape=(self.num_references,), initializer="zeros",
                                     trainable=False, name="alpha")
        self.beta = self.add_weight(shape=(self.num_references,), initializer="ones",
                                    trainable=False, name="beta")

    def call(self, embeddings):
        # 1e-12 on the norm, as the NumPy length normalisation of the fit.
        x = embeddings / ops.maximum(ops.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        # alpha - beta <x, r> with <x, r> = (1 + |r|^2 - |x - r|^2) / 2 for a
        # unit x: the per-reference constant plus beta |x - r|^2 / 2. Not as
        # the dot product: with the distance modes (alpha = beta) and
        # embeddings that lie close together, alpha - beta <x, r> keeps only
        # the dot product's float32 rounding, which differs between CPUs,
        # batch shapes and kernels, and the local density's 1 / rho scales
        # that error up (scores moved by 0.9 % with oneDNN off).
        constant = self.alpha - 0.5 * self.beta * (
            1.0 + ops.sum(ops.square(self.references), axis=-1))
        centre = ops.mean(self.references, axis=0, keepdims=True)
        lowest = None
        for start, stop in reference_chunks(self.num_references, self.chunk_size):
            values = constant[None, start:stop] + 0.5 * self.beta[None, start:stop] * (
                _squared_distances(x, self.references[start:stop], centre))
            values = ops.min(values, axis=-1)
            lowest = values if lowest is None else ops.minimum(lowest, values)
        return lowest

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(num_references=self.num_references, dim=self.dim,
                      chunk_size=self.chunk_size)
        return config
