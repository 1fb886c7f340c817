"""Coreset selection of memory-bank references.

PatchCore ("Towards total recall in industrial anomaly detection", Roth et
al. 2022) keeps a subset of its memory bank chosen by greedy k-centre
selection: each new reference is the point farthest from those chosen so
far, so the subset covers the bank with the smallest radius a greedy rule
can give (within twice the optimum). PRPS (Kim et al., DCASE 2026, §2.2)
cites it for its 128 prototypes.
"""

import numpy as np
from sklearn.random_projection import GaussianRandomProjection


def greedy_k_center(points, count, start="mean", projection_dim=0, seed=0):
    """Indices of `count` points chosen by greedy k-centre selection.

    Args:
        points: `(n, dim)` array.
        count: int. Points to choose (at most `n`; fewer points give all).
        start: `"mean"`: the first point is the one nearest to the mean of
            all points (the PRPS authors' code); `"random"`: a random one
            (PatchCore's code).
        projection_dim: int. When > 0 and smaller than `dim`, distances are
            measured after a Gaussian random projection to this many
            dimensions (scikit-learn's `GaussianRandomProjection`), as
            PatchCore and the PRPS code do to save time; 0 measures them in
            the original space.
        seed: int. Seeds the projection and the random start.

    Returns:
        int64 array `(min(count, n),)`, in the order chosen (fewer when the
        points hold fewer distinct values).
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (n, dim) array; received shape "
                         f"{points.shape}.")
    if int(count) < 1:
        raise ValueError(f"count must be >= 1; received {count!r}.")
    if start not in ("mean", "random"):
        raise ValueError(f"start must be 'mean' or 'random'; received {start!r}.")
    if 0 < int(projection_dim) < points.shape[1]:
        points = GaussianRandomProjection(int(projection_dim),
                                          random_state=int(seed)).fit_transform(points)
    count = min(int(count), len(points))
    if start == "mean":
        first = int(np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1)))
    else:
        first = int(np.random.default_rng(seed).integers(len(points)))
    chosen = [first]
    nearest = ((points - points[first]) ** 2).sum(axis=1)
    for _ in range(count - 1):
        index = int(np.argmax(nearest))
        if nearest[index] <= 0:
            break  # every point coincides with a chosen one
        chosen.append(index)
        nearest = np.minimum(nearest, ((points - points[index]) ** 2).sum(axis=1))
    return np.asarray(chosen, np.int64)
