"""Residual View memory banks with PRPS (Kim et al., DCASE 2026).

The backend of noise-aware two-channel detection ("Residual View and
Prototype Selection for Noise-Aware Anomalous Sound Detection", DCASE 2026
Task 2 technical report; the authors' code `UTurtle/residual_view_dcase2026
_task2`, `run_projection_select.py`). Its features are paired: `[f_near |
f_far]`, the near and the far microphone's embeddings of one clip from the
same encoder, layer and pooling (an extractor with `channel=both`).

- Residual View (§2.1): every clip, training or test, becomes `f_res =
  f_near - alpha * f_far` (`asd_keras.layers.channels`).
- Memory banks (GenRep, methods.md §B; the `knn` backend): a source bank of
  the source training residuals and a target bank of the target training
  residuals plus their MemMixup mixtures (`memmixup_alpha` 0.9, each target
  clip with its `memmixup_neighbours` nearest source clips); the score is
  the distance to the nearest reference (K = 1), the minimum over the two
  banks. With K = 1 this equals the authors' one pooled bank of every
  training residual and the mixtures.
- No domain normalisation: the report avoids test-set statistics.
  `transductive_scores` gives GenRep's per-domain z-score for comparisons,
  labelled as transductive.
- PRPS (§2.2, `prps=True`): the projection-residual key `q = f_near -
  P_far(f_near)` of the training clips (both domains, no mixtures) selects
  `prototypes` (128) of them by greedy k-centre selection, our reading of
  the report's "inspired by memory-bank coreset selection" [PatchCore],
  confirmed by the authors' code (first point nearest to the mean, a
  Gaussian random projection to 256 dimensions first). The selected clips'
  residuals form a prototype bank; the final score is the mean of the
  full-bank score and the prototype-bank score (both raw distances).
"""

import keras
import numpy as np

from asd_keras.backends.base import check_features
from asd_keras.backends.base import register_backend
from asd_keras.backends.coreset import greedy_k_center
from asd_keras.backends.knn import KNNBackend
from asd_keras.backends.knn import transductive_domain_zscore
from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.layers.channels import ResidualView
from asd_keras.layers.channels import projection_residual
from asd_keras.layers.channels import residual_view
from asd_keras.layers.channels import split_channels
from asd_keras.layers.knn import NearestNeighbourDistance

PROTOTYPE_KEYS = ("projection", "residual", "near")


def _numpy(values):
    return np.asarray(keras.ops.convert_to_numpy(values))


@register_backend("residual_knn")
class ResidualKNNBackend(KNNBackend):
    """kNN memory banks over the Residual View of paired near/far features.

    Args:
        alpha: float. `f_res = f_near - alpha * f_far` (the report: 0.5;
            0 scores the near channel alone).
        prps: bool. Add the prototype branch (PRPS).
        prototypes: int. Prototypes PRPS selects (128; all training clips
            when a group has fewer).
        prototype_key: str. The space the prototypes are selected in:
            `"projection"` (the report's projection-residual key),
            `"residual"` (the Residual View itself) or `"near"`.
        projection_dim: int. Gaussian random projection of the key before
            the k-centre selection (the authors' code: 256); 0, or a key of
            at most this size, selects in the key space itself.
        seed: int. Seeds the random projection.
        k: the `knn` backend's (the report: K =
            1, Euclidean, MemMixup with alpha 0.9 and 990 neighbours, no
            local density). The prototype branch uses raw distances.
        metric: see `k`.
        domains: see `k`.
        memmixup_neighbours: see `k`.
        memmixup_alpha: see `k`.
        local_density: see `k`.
        density_k: see `k`.
    """

    # The features are [f_near | f_far] of a two-channel extractor.
    paired_features = True

    def __init__(self, alpha=0.5, prps=False, prototypes=128, prototype_key="projection",
                 projection_dim=256, k=1, metric="euclidean", domains="both",
                 memmixup_neighbours=990, memmixup_alpha=0.9, local_density="none",
                 density_k=1, seed=0):
        super().__init__(k=k, metric=metric, domains=domains,
                         memmixup_neighbours=memmixup_neighbours,
                         memmixup_alpha=memmixup_alpha, local_density=local_density,
                         density_k=density_k)
        c = validate_config(
            {"alpha": alpha, "prps": prps, "prototypes": prototypes,
             "prototype_key": prototype_key, "projection_dim": projection_dim, "seed": seed},
            {"alpha": number(), "prps": boolean(), "prototypes": integer(min=1),
             "prototype_key": choice(*PROTOTYPE_KEYS), "projection_dim": integer(min=0),
             # NumPy's seeds are 32-bit unsigned.
             "seed": integer(min=0, max=2**32 - 1)})
        self.alpha, self.prps = c["alpha"], c["prps"]
        self.prototypes, self.prototype_key = c["prototypes"], c["prototype_key"]
        self.projection_dim, self.seed = c["projection_dim"], c["seed"]

    def residual(self, features):
        """The Residual View `(clips, dim)` of paired features `(clips, 2 dim)`."""
        return _numpy(residual_view(check_features(features), self.alpha))

    def _key(self, features):
        """The PRPS selection key of `prototype_key` "projection" or "near"."""
        if self.prototype_key == "projection":
            return _numpy(projection_residual(features.astype(np.float64)))
        return split_channels(features)[0]  # "near"

    def _fit_arrays(self, features, metadata):
        if features.shape[1] % 2:
            raise ValueError(
                f"Backend 'residual_knn' needs paired [near | far] features of even size "
                f"from a two-channel extractor (channel=both); received size "
                f"{features.shape[1]}.")
        residual = self.residual(features)
        arrays = super()._fit_arrays(residual, metadata)
        if self.prps:
            key = residual if self.prototype_key == "residual" else self._key(features)
            chosen = greedy_k_center(key, self.prototypes, start="mean",
                                     projection_dim=self.projection_dim, seed=self.seed)
            arrays["prototypes_bank"] = residual[chosen].astype(np.float32)
            arrays["prototype_indices"] = chosen
        return arrays

    @property
    def input_dim(self):
        return 2 * super().input_dim

    def _prototype_layer(self):
        bank = self.arrays["prototypes_bank"]
        layer = NearestNeighbourDistance(len(bank), bank.shape[1], min(self.k, len(bank)),
                                         self.metric, name="knn_prototypes")
        layer.build((None, bank.shape[1]))
        layer.bank.assign(bank)
        return layer

    def scoring_layer(self):
        inputs = keras.Input((self.input_dim,))
        residual = ResidualView(self.alpha, name="residual_view")(inputs)
        distances = [self._bank_layer(n)(residual) for n in self._bank_names()]
        output = distances[0]
        for other in distances[1:]:
            output = keras.ops.minimum(output, other)
        if self.prps:
            # The mean of the full-bank and the prototype-bank scores (§2.2).
            output = 0.5 * (output + self._prototype_layer()(residual))
        return keras.Model(inputs, output, name="residual_knn_scorer")

    def domain_distances(self, features):
        """Each bank's kNN distance per clip in the residual space."""
        return super().domain_distances(self.residual(features))

    def prototype_distances(self, features):
        """The prototype branch's distance per clip `(clips,)` (PRPS only)."""
        if not self.prps:
            raise ValueError("prototype_distances needs a backend fitted with prps=true.")
        return keras.ops.convert_to_numpy(
            self._prototype_layer()(self.residual(features))).astype(float)

    def transductive_scores(self, features):
        """GenRep's per-domain z-score of the bank distances, with each bank's
        statistics taken over the scored clips themselves (and, with PRPS, the
        prototype branch z-scored the same way before the mean).
        Transductive: it uses the test set, so it is never `score`."""
        banks = transductive_domain_zscore(self.domain_distances(features))
        if not self.prps:
            return banks
        proto = self.prototype_distances(features)
        proto = (proto - proto.mean()) / max(proto.std(), 1e-12)
        return 0.5 * (banks + proto)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "prps": self.prps,
                "prototypes": self.prototypes, "prototype_key": self.prototype_key,
                "projection_dim": self.projection_dim, "seed": self.seed}
