"""kNN memory-bank backend: GenRep's banks and MemMixup, optional local density.

- Banks (reference methods.md §B): a source bank of the source-domain
  training clips and a target bank of the target-domain ones; a clip's score
  is the minimum over the domains of the mean distance to its `k` nearest
  references (`domains="both"`), or one bank of all clips (`"pooled"`).
- MemMixup (§B): for each target training clip `t`, its `memmixup_neighbours`
  nearest source clips `s` (Euclidean) give `alpha * t + (1 - alpha) * s`,
  added to the target bank; the originals stay. GenRep's best setting is
  990 neighbours with alpha 0.9.
- Local density (§F, "Keeping the balance"): each reference's density is the
  mean distance to its `density_k` nearest other references among all
  references of both domains; distances are divided by it (`"ratio"`) or
  reduced by it (`"difference"`) before the minimum.
- GenRep's per-domain z-normalisation uses the TEST clips' own statistics,
  so it is transductive: it is not part of `score`; `domain_distances` and
  `transductive_domain_zscore` reproduce it for comparisons, labelled as such.

Memory: fitting measures distances in row blocks of at most
`FIT_CHUNK_VALUES` float64 (32 MB, whatever the bank size; the square
matrix of a 7,000-clip bank and its sorted copy were 0.8 GB) and scoring
compares `chunk_size` references at a time (`asd_keras.layers.knn`); what
grows with the clips is the fitted banks themselves, `references x dim`
float32.
"""

import keras
import numpy as np
from scipy.spatial.distance import cdist

from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import check_features
from asd_keras.backends.base import register_backend
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.layers.knn import METRICS
from asd_keras.layers.knn import NORMALISATIONS
from asd_keras.layers.knn import NearestNeighbourDistance

DOMAINS = ("both", "pooled")
SCHEMA = {"k": integer(min=1), "metric": choice(*METRICS), "domains": choice(*DOMAINS),
          "memmixup_neighbours": integer(min=0), "memmixup_alpha": number(gt=0, max=1),
          "local_density": choice(*NORMALISATIONS), "density_k": integer(min=1)}
# Distances held at once while fitting: 2**22 float64 (32 MB).
FIT_CHUNK_VALUES = 2**22


def _distances(x, y, metric):
    if metric == "cosine":
        return 0.5 * cdist(x, y, "cosine")  # scipy's cosine distance is 1 - cos
    return cdist(x, y, "euclidean")


def fit_chunk_rows(columns):
    """Rows of a `(rows, columns)` block of at most `FIT_CHUNK_VALUES`."""
    return max(1, FIT_CHUNK_VALUES // max(1, int(columns)))


def nearest_indices(x, y, count, chunk_rows=None):
    """Indices `(len(x), count)` of each row's `count` nearest rows of `y`
    (Euclidean, nearest first), `chunk_rows` rows of `x` at a time (None:
    `fit_chunk_rows(len(y))`)."""
    chunk_rows = chunk_rows or fit_chunk_rows(len(y))
    return np.concatenate([
        np.argsort(_distances(x[i:i + chunk_rows], y, "euclidean"), axis=1)[:, :count]
        for i in range(0, len(x), chunk_rows)])


def reference_density(points, k, metric, chunk_rows=None):
    """Each point's mean distance to its `k` nearest other points `(n,)`,
    `chunk_rows` rows of the distance matrix at a time (None:
    `fit_chunk_rows(len(points))`; methods.md §F).

    Column 0 of each sorted row is the point's distance to itself (§F drops
    it); the `k + 1` smallest are picked by partition and then sorted, the
    same values in the same order as a full sort.
    """
    chunk_rows = chunk_rows or fit_chunk_rows(len(points))
    out = np.empty(len(points))
    for i in range(0, len(points), chunk_rows):
        d = _distances(points[i:i + chunk_rows], points, metric)
        smallest = np.sort(np.partition(d, k, axis=1)[:, :k + 1], axis=1)
        out[i:i + chunk_rows] = smallest[:, 1:k + 1].mean(axis=1)
    return out


@register_backend("knn")
class KNNBackend(ScoringBackend):
    """Memory banks scored by the mean distance to the k nearest references.

    Args:
        k: int. Neighbours averaged. Defaults to 1 (GenRep's `top_k`).
        metric: str. `"euclidean"` (GenRep) or `"cosine"` (0.5 (1 - cos)).
        domains: str. `"both"`: source and target banks, minimum over them;
            `"pooled"`: one bank.
        memmixup_neighbours: int. Source neighbours mixed with each target
            clip (0: off).
        memmixup_alpha: float in (0, 1]. Weight of the target clip.
        local_density: str. `"none"`, `"ratio"` or `"difference"`.
        density_k: int. Neighbours of a reference's density.
    """

    memorises_training = True

    def __init__(self, k=1, metric="euclidean", domains="both", memmixup_neighbours=0,
                 memmixup_alpha=0.9, local_density="none", density_k=1):
        super().__init__()
        c = validate_config(
            {"k": k, "metric": metric, "domains": domains,
             "memmixup_neighbours": memmixup_neighbours, "memmixup_alpha": memmixup_alpha,
             "local_density": local_density, "density_k": density_k}, SCHEMA)
        self.k, self.metric, self.domains = c["k"], c["metric"], c["domains"]
        self.memmixup_neighbours = c["memmixup_neighbours"]
        self.memmixup_alpha = c["memmixup_alpha"]
        self.local_density, self.density_k = c["local_density"], c["density_k"]

    @property
    def required_columns(self):
        """Metadata columns `fit` and `score` need.

        `domain` when source and target banks are kept apart, else none.
        """
        return ("domain",) if self.domains == "both" else ()

    def _banks(self, features, metadata):
        if self.domains == "pooled":
            return {"pooled": features}
        domains = metadata["domain"].astype(str).to_numpy()
        source, target = features[domains == "source"], features[domains == "target"]
        if len(source) == 0:
            raise ValueError("domains='both' needs source-domain training clips; none "
                             "were given (use domains='pooled').")
        if self.memmixup_neighbours and len(target):
            ks = min(self.memmixup_neighbours, len(source))
            nearest = nearest_indices(target, source, ks)
            mixed = (self.memmixup_alpha * target[:, None, :]
                     + (1 - self.memmixup_alpha) * source[nearest])
            target = np.concatenate([target, mixed.reshape(-1, features.shape[1])])
        return {"source": source, "target": target} if len(target) else {"source": source}

    def _fit_arrays(self, features, metadata):
        banks = self._banks(features, metadata)
        for name, bank in banks.items():
            if len(bank) < self.k:
                raise ValueError(f"The {name} bank holds {len(bank)} clip(s), fewer than "
                                 f"k={self.k}.")
        arrays = {}
        if self.local_density != "none":
            everything = np.concatenate(list(banks.values()))
            if len(everything) <= self.density_k:
                raise ValueError(f"Local density needs more than density_k={self.density_k} "
                                 f"references; the banks hold {len(everything)}.")
            density = np.maximum(reference_density(everything, self.density_k, self.metric),
                                 1e-12)
            start = 0
            for name, bank in banks.items():
                arrays[f"{name}_density"] = density[start:start + len(bank)]
                start += len(bank)
        for name, bank in banks.items():
            arrays[f"{name}_bank"] = bank.astype(np.float32, copy=False)
            arrays.setdefault(f"{name}_density", np.ones(len(bank)))
            arrays[f"{name}_density"] = arrays[f"{name}_density"].astype(np.float32)
        return arrays

    def _bank_names(self):
        return [n for n in ("pooled", "source", "target") if f"{n}_bank" in self.arrays]

    def _bank_layer(self, name):
        bank = self.arrays[f"{name}_bank"]
        layer = NearestNeighbourDistance(len(bank), bank.shape[1], self.k, self.metric,
                                         self.local_density, name=f"knn_{name}")
        layer.build((None, bank.shape[1]))
        layer.bank.assign(bank)
        layer.density.assign(self.arrays[f"{name}_density"])
        return layer

    def scoring_layer(self):
        dim = self.input_dim
        inputs = keras.Input((dim,))
        distances = [self._bank_layer(n)(inputs) for n in self._bank_names()]
        output = distances[0]
        for other in distances[1:]:
            output = keras.ops.minimum(output, other)
        return keras.Model(inputs, output, name="knn_scorer")

    @property
    def input_dim(self):
        return int(self.arrays[f"{self._bank_names()[0]}_bank"].shape[1])

    def domain_distances(self, features):
        """Each bank's kNN distance per clip: dict bank name -> `(clips,)`."""
        features = check_features(features)
        return {n: keras.ops.convert_to_numpy(self._bank_layer(n)(features)).astype(float)
                for n in self._bank_names()}

    def get_config(self):
        return {"k": self.k, "metric": self.metric, "domains": self.domains,
                "memmixup_neighbours": self.memmixup_neighbours,
                "memmixup_alpha": self.memmixup_alpha,
                "local_density": self.local_density, "density_k": self.density_k}


def transductive_domain_zscore(distances):
    """GenRep's domain normalisation: `min_d (x_d - mean_d) / std_d` with each
    bank's statistics taken over the scored (test) clips themselves,
    population std (reference methods.md §B). Transductive: it uses the test
    set, so it is never part of a backend's `score`.

    Args:
        distances: dict bank name -> `(clips,)` array (`KNNBackend.domain_distances`).

    Returns:
        `(clips,)` array.
    """
    z = [(d - d.mean()) / max(d.std(), 1e-12) for d in distances.values()]
    return np.min(np.stack(z), axis=0)
