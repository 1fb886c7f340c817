"""Mahalanobis-distance backends: global (one Gaussian) and per domain.

- `mahalanobis`: one mean and covariance over all normal training features,
  no domain labels: the global MD of Shin & Lee's proxy-task study.
- `mahalanobis_domain`: one mean and covariance per domain (source,
  target); the score is the minimum over domains, the rule of the DCASE
  baselines' MAHALA score applied to clip features.

- `mahala`: the DCASE 2023+ baseline's selective Mahalanobis score
  (reference dcase.md 3), reproduced with its quirks: zero-mean residual
  chunks, covariances accumulated over shuffled batches of frame-level
  residuals, each batch centred by its own mean, divided by the number of
  stacked vectors, plain inverses; the minimum over the two domains.

The covariance estimator of the first two comes from scikit-learn. The default is
Ledoit-Wolf shrinkage (`sklearn.covariance.LedoitWolf`): clip features often
have more dimensions than there are clips (e.g. 768-dim embeddings of ~1000
clips, or 10 target clips per section), where the empirical covariance is
singular; the shrunk one is always well conditioned. `oas` is the Oracle
Approximating Shrinkage estimator, `empirical` the plain maximum-likelihood
covariance with a pseudo-inverse precision (sklearn's `EmpiricalCovariance`).
"""

import abc

import keras
import numpy as np
from sklearn.covariance import OAS
from sklearn.covariance import EmpiricalCovariance
from sklearn.covariance import LedoitWolf

from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import register_backend
from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import validate_config
from asd_keras.layers.mahalanobis import MahalanobisDistance
from asd_keras.layers.reconstruction import FeatureMean
from asd_keras.utils.progress import progress_bar

COVARIANCES = ("ledoit_wolf", "oas", "empirical")
NORMALIZATIONS = ("none", "minmax_train")


def _estimator(name):
    return {"ledoit_wolf": LedoitWolf, "oas": OAS, "empirical": EmpiricalCovariance}[name]()


def _distance_layer(arrays, squared):
    """A `MahalanobisDistance` layer holding fitted means and precisions."""
    means, precisions = arrays["means"], arrays["precisions"]
    layer = MahalanobisDistance(len(means), means.shape[1], squared)
    layer.build((None, means.shape[1]))
    layer.means.assign(means)
    layer.precisions.assign(precisions)
    return layer


class _MahalanobisBase(ScoringBackend):
    def __init__(self, covariance="ledoit_wolf", squared=True):
        super().__init__()
        c = validate_config({"covariance": covariance, "squared": squared},
                            {"covariance": choice(*COVARIANCES), "squared": boolean()})
        self.covariance, self.squared = c["covariance"], c["squared"]

    @abc.abstractmethod
    def _components(self, features, metadata):
        """List of (name, features) to fit one Gaussian each."""

    def _fit_arrays(self, features, metadata):
        means, precisions = [], []
        for name, rows in self._components(features, metadata):
            if len(rows) < 2:
                raise ValueError(f"The {name} has {len(rows)} training clip(s); a "
                                 "covariance needs at least 2.")
            estimator = _estimator(self.covariance).fit(rows.astype(np.float64))
            means.append(estimator.location_)
            precisions.append(estimator.get_precision())
        return {"means": np.asarray(means, np.float32),
                "precisions": np.asarray(precisions, np.float32)}

    def scoring_layer(self):
        return _distance_layer(self.arrays, self.squared)

    @property
    def input_dim(self):
        return int(self.arrays["means"].shape[1])

    def get_config(self):
        return {"covariance": self.covariance, "squared": self.squared}


@register_backend("mahalanobis")
class MahalanobisBackend(_MahalanobisBase):
    """Global Mahalanobis distance: one Gaussian over all training clips.

    Args:
        covariance: str. `"ledoit_wolf"` (default), `"oas"` or `"empirical"`.
        squared: bool. Score with the squared distance. Defaults to `True`.
    """

    def _components(self, features, metadata):
        return [("training set", features)]


@register_backend("mahalanobis_domain")
class DomainMahalanobisBackend(_MahalanobisBase):
    """Per-domain Mahalanobis distance, minimum over the domains present.

    Args:
        covariance: str. `"ledoit_wolf"` (default), `"oas"` or `"empirical"`.
        squared: bool. Score with the squared distance. Defaults to `True`.
    """

    required_columns = ("domain",)

    def _components(self, features, metadata):
        domains = metadata["domain"].astype(str).to_numpy()
        return [(f"{d} domain", features[domains == d])
                for d in ("source", "target") if (domains == d).any()]


@register_backend("mahala")
class SelectiveMahalanobisBackend(ScoringBackend):
    """The DCASE baselines' MAHALA: min over domains of d^T inv(S_domain) d.

    Fitted on frame-level residual chunks when the extractor gives them
    (`dense_ae`), otherwise on the clip features themselves (each clip one
    "vector"). Scores the clip-mean feature `d` against each domain's
    zero-mean Gaussian (reference dcase.md 3).
    """

    required_columns = ("domain",)
    fits_on_frames = True

    def _fit_frames(self, batches, metadata):
        is_target = (metadata["domain"].astype(str) == "target").to_numpy()
        accumulator = None
        for values, rows in progress_bar(batches, desc="MAHALA covariance", unit="batch",
                                         leave=False):
            values = np.asarray(values)
            if accumulator is None:
                accumulator = ResidualCovariance(values.shape[-1])
            accumulator.update(values.reshape(len(values), -1), is_target[rows])
        if accumulator is None:
            raise ValueError("MAHALA received no training features.")
        inverses = accumulator.inverses()
        return {"means": np.zeros(inverses.shape[:2], np.float32), "precisions": inverses}

    def _fit_arrays(self, features, metadata):
        return self._fit_frames([(features[:, None, :], np.arange(len(features)))],
                                metadata)

    def scoring_layer(self):
        # Squared, as the baseline's d^T inv(S) d.
        return _distance_layer(self.arrays, squared=True)

    @property
    def input_dim(self):
        return int(self.arrays["means"].shape[1])


class ResidualCovariance:
    """Accumulates the per-domain residual covariance of the 2023+ baseline.

    Args:
        chunk_dim: int. Size of one residual chunk (`n_mels`, 128).

    Example:
    >>> acc = ResidualCovariance(128)
    >>> acc.update(residual_batch, is_target_batch)  # doctest: +SKIP
    >>> inverses = acc.inverses()  # (2, 128, 128): source, target
    """

    def __init__(self, chunk_dim=128):
        self.chunk_dim = int(chunk_dim)
        self._sums = np.zeros((2, self.chunk_dim, self.chunk_dim))
        self._counts = np.zeros(2, dtype=np.int64)

    def update(self, residuals, is_target):
        """Adds one batch of residual vectors (`k * chunk_dim` values each)
        with their domain flags."""
        residuals = np.asarray(residuals, dtype=np.float64)
        is_target = np.asarray(is_target, dtype=bool)
        if residuals.ndim != 2 or residuals.shape[1] % self.chunk_dim:
            raise ValueError(
                "residuals must be (batch, k * chunk_dim); received shape "
                f"{residuals.shape} with chunk_dim={self.chunk_dim}.")
        for domain in (0, 1):
            part = residuals[is_target == bool(domain)]
            if len(part) == 0:
                continue
            chunks = part.reshape(-1, self.chunk_dim)
            centred = chunks - chunks.mean(axis=0, keepdims=True)
            self._sums[domain] += centred.T @ centred
            # Counts stacked vectors, not chunks: the baseline's divisor.
            self._counts[domain] += len(part)

    def covariances(self):
        """(2, d, d) source and target covariances.

        Without target vectors the target covariance is the source one, as
        in the baseline.
        """
        if self._counts[0] < 2:
            raise ValueError("MAHALA needs at least 2 source-domain training vectors; "
                             f"received {self._counts[0]}.")
        covs = np.empty_like(self._sums)
        covs[0] = self._sums[0] / (self._counts[0] - 1)
        if self._counts[1] >= 2:
            covs[1] = self._sums[1] / (self._counts[1] - 1)
        else:
            covs[1] = covs[0]
        return covs

    def inverses(self):
        """(2, d, d) inverse covariances, float32."""
        try:
            inverses = np.linalg.inv(self.covariances())
        except np.linalg.LinAlgError:
            raise ValueError(
                "A residual covariance is singular (too few or identical training "
                "clips). Train on more clips or use score=mse.") from None
        return inverses.astype(np.float32)


@register_backend("feature_mean")
class FeatureMeanBackend(ScoringBackend):
    """The mean of a clip's feature vector as its score, optionally min-max scaled.

    With the `dense_ae` extractor's `squared_error` features this is the
    DCASE baselines' MSE score (reference dcase.md 2.4); with the `gan`
    extractor's one-value `score` features it is the detector's raw clip
    score.

    Args:
        normalize: str. `"none"` (default): the mean itself. `"minmax_train"`:
            `(mean - train_min) / (train_max - train_min)` with the smallest
            and largest mean of the training clips, so the training scores
            span 0 to 1 (a constant training score only shifts the scores:
            span 1). A monotone map per fitted group: AUC and pAUC within the
            group are unchanged.
    """

    def __init__(self, normalize="none"):
        super().__init__()
        self.normalize = validate_config({"normalize": normalize},
                                         {"normalize": choice(*NORMALIZATIONS)})["normalize"]

    def _fit_arrays(self, features, metadata):
        arrays = {"dim": np.asarray(features.shape[1], np.int64)}
        if self.normalize == "minmax_train":
            # The training values as the scoring layer computes them.
            means = keras.ops.convert_to_numpy(FeatureMean()(features)).astype(np.float64)
            arrays.update(low=np.asarray(means.min()), high=np.asarray(means.max()))
        return arrays

    def scoring_layer(self):
        mean = FeatureMean()
        if self.normalize == "none":
            mean.build((None, self.input_dim))  # export tracks built layers only
            return mean
        low, high = float(self.arrays["low"]), float(self.arrays["high"])
        span = high - low if high > low else 1.0
        # Shift, then scale: (x - low) / span keeps the precision of scores
        # far from zero that x / span - low / span would lose in float32.
        features = keras.Input((self.input_dim,))
        shifted = keras.layers.Rescaling(1.0, offset=-low, name="minus_train_min")(
            mean(features))
        scaled = keras.layers.Rescaling(1.0 / span, name="over_train_span")(shifted)
        return keras.Model(features, scaled, name="feature_mean_minmax_train")

    @property
    def input_dim(self):
        return int(self.arrays["dim"])

    def get_config(self):
        return {"normalize": self.normalize}
