import numpy as np
import pytest
from scipy import stats

from asd_keras.backends import get_backend
from asd_keras.backends.mahalanobis import ResidualCovariance
from asd_keras.systems.threshold import gamma_threshold


def test_gamma_threshold_is_the_fitted_quantile():
    scores = np.random.default_rng(0).gamma(3.0, 2.0, 500) + 1.0
    a, loc, scale = stats.gamma.fit(scores)
    assert gamma_threshold(scores) == pytest.approx(stats.gamma.ppf(0.9, a, loc, scale))
    assert np.mean(scores > gamma_threshold(scores)) == pytest.approx(0.1, abs=0.04)
    with pytest.raises(ValueError, match="at least 3"):
        gamma_threshold([1.0])
    with pytest.raises(ValueError, match="quantile"):
        gamma_threshold(scores, 1.5)


def test_covariance_is_batch_centred_and_divided_by_vectors():
    rng = np.random.default_rng(2)
    d = 4
    batches = [rng.normal(size=(6, 2 * d)) for _ in range(3)]
    flags = [np.array([0, 0, 1, 0, 1, 0]) for _ in range(3)]
    acc = ResidualCovariance(d)
    for b, f in zip(batches, flags):
        acc.update(b, f)
    # By hand: per batch and domain, centre chunks by their mean.
    sums = np.zeros((2, d, d))
    counts = [0, 0]
    for b, f in zip(batches, flags):
        for dom in (0, 1):
            chunks = b[f == dom].reshape(-1, d)
            c = chunks - chunks.mean(0)
            sums[dom] += c.T @ c
            counts[dom] += int(np.sum(f == dom))
    expected = np.stack([sums[0] / (counts[0] - 1), sums[1] / (counts[1] - 1)])
    np.testing.assert_allclose(acc.covariances(), expected)


def test_target_covariance_falls_back_to_source():
    acc = ResidualCovariance(3)
    acc.update(np.random.default_rng(0).normal(size=(20, 6)), np.zeros(20))
    covs = acc.covariances()
    np.testing.assert_array_equal(covs[0], covs[1])


def test_score_equals_mean_of_reference_quadratic_form():
    """The baseline averages every entry of D inv D^T (reference 3)."""
    rng = np.random.default_rng(3)
    d = 5
    a = rng.normal(size=(d, d))
    inverses = np.stack([a @ a.T + d * np.eye(d), np.eye(d)])
    clip = rng.normal(size=(7 * 2, d))  # 7 vectors of 2 chunks
    reference = [np.mean(clip @ inv @ clip.T) for inv in inverses]
    backend = get_backend("mahala")
    backend.arrays = {"means": np.zeros((2, d), np.float32),
                      "precisions": inverses.astype(np.float32)}
    ours = backend.score(clip.mean(0, keepdims=True))
    assert ours[0] == pytest.approx(min(reference), rel=1e-5)
