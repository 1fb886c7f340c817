"""Selective Mahalanobis ("MAHALA") scoring of reconstruction residuals.

Reference dcase.md section 3 (the 2023+ baseline): 640-d residuals are cut
into 128-d chunks (one per context frame); a covariance per domain is
accumulated over batches, each batch centred by its own mean, and divided by
(number of 640-d vectors - 1); a clip's score per domain is the Mahalanobis
norm of its mean residual chunk, and the final score is the minimum over the
two domains.
"""

import numpy as np


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
        """Adds one batch of 640-d residuals with their domain flags."""
        residuals = np.asarray(residuals, dtype=np.float64)
        is_target = np.asarray(is_target, dtype=bool)
        if residuals.ndim != 2 or residuals.shape[1] % self.chunk_dim:
            raise ValueError(
                "residuals must be (batch, k * chunk_dim); received shape "
                f"{residuals.shape} with chunk_dim={self.chunk_dim}."
            )
        for domain in (0, 1):
            part = residuals[is_target == bool(domain)]
            if len(part) == 0:
                continue
            chunks = part.reshape(-1, self.chunk_dim)
            centred = chunks - chunks.mean(axis=0, keepdims=True)
            self._sums[domain] += centred.T @ centred
            self._counts[domain] += len(part)

    def covariances(self):
        """(2, d, d) source and target covariances.

        Without target vectors the target covariance is the source one, as
        in the baseline.
        """
        if self._counts[0] < 2:
            raise ValueError(
                "MAHALA needs at least 2 source-domain training vectors; "
                f"received {self._counts[0]}."
            )
        covs = np.empty_like(self._sums)
        covs[0] = self._sums[0] / (self._counts[0] - 1)
        if self._counts[1] >= 2:
            covs[1] = self._sums[1] / (self._counts[1] - 1)
        else:
            covs[1] = covs[0]
        return covs

    def inverses(self):
        """(2, d, d) inverse covariances, float32."""
        covs = self.covariances()
        try:
            inverses = np.linalg.inv(covs)
        except np.linalg.LinAlgError:
            raise ValueError(
                "A residual covariance is singular (too few or identical "
                "training clips). Train on more clips or use score=mse."
            ) from None
        return inverses.astype(np.float32)


def mahalanobis_scores(mean_chunks, inverses):
    """Min over domains of d^T inv d, for clip-mean residual chunks.

    Args:
        mean_chunks: (clips, d) array.
        inverses: (domains, d, d) array.

    Returns:
        (clips,) array.
    """
    per_domain = np.einsum("bi,kij,bj->bk", mean_chunks, inverses, mean_chunks)
    return per_domain.min(axis=1)
