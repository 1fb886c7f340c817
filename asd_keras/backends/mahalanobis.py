"""Mahalanobis-distance backends: global (one Gaussian) and per domain.

- `mahalanobis`: one mean and covariance over all normal training features,
  no domain labels: the global MD of Shin & Lee's proxy-task study.
- `mahalanobis_domain`: one mean and covariance per domain (source,
  target); the score is the minimum over domains, the rule of the DCASE
  baselines' MAHALA score applied to clip features.

The covariance estimator comes from scikit-learn. The default is
Ledoit-Wolf shrinkage (`sklearn.covariance.LedoitWolf`): clip features often
have more dimensions than there are clips (e.g. 768-dim embeddings of ~1000
clips, or 10 target clips per section), where the empirical covariance is
singular; the shrunk one is always well conditioned. `oas` is the Oracle
Approximating Shrinkage estimator, `empirical` the plain maximum-likelihood
covariance with a pseudo-inverse precision (sklearn's `EmpiricalCovariance`).
"""

import abc

import numpy as np

from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import register_backend

COVARIANCES = ("ledoit_wolf", "oas", "empirical")


def _estimator(name):
    from sklearn import covariance

    return {"ledoit_wolf": covariance.LedoitWolf, "oas": covariance.OAS,
            "empirical": covariance.EmpiricalCovariance}[name]()


class _MahalanobisBase(ScoringBackend):
    def __init__(self, covariance="ledoit_wolf", squared=True):
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}; received "
                             f"{covariance!r}.")
        self.covariance = covariance
        self.squared = bool(squared)

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
        from asd_keras.layers.mahalanobis import MahalanobisDistance

        means, precisions = self.arrays["means"], self.arrays["precisions"]
        layer = MahalanobisDistance(len(means), means.shape[1], self.squared)
        layer.build((None, means.shape[1]))
        layer.means.assign(means)
        layer.precisions.assign(precisions)
        return layer

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
