"""RISE importance maps for spectrogram inputs (paper §IV-E, Fig. 4).

Randomised input sampling for explanation (Petsiuk et al., 2018) masks
random parts of the input, scores every masked input and averages the masks
weighted by their scores. For spectrograms the paper draws separate time
and frequency masks (each step or bin masked with probability 0.25), small
masks that are up-sampled and randomly shifted before cropping, and
multiplies them, so the search space is 2^(time cells + frequency cells).
"""

import math

import numpy as np

from asd_keras.utils.progress import progress_bar


def _upsampled(rng, count, cells, length, keep_probability):
    """`count` 1-D masks: `cells` Bernoulli cells, linearly up-sampled to
    `(cells + 1) * cell` and cropped to `length` at a random shift."""
    cell = math.ceil(length / cells)
    grid = (rng.random((count, cells + 1)) < keep_probability).astype(np.float32)
    positions = (np.arange((cells + 1) * cell) + 0.5) / cell - 0.5
    knots = np.arange(cells + 1)
    shifts = rng.integers(0, cell, count)
    out = np.empty((count, length), np.float32)
    for i in range(count):
        smooth = np.interp(positions, knots, grid[i])
        out[i] = smooth[shifts[i]: shifts[i] + length]
    return out


def rise_masks(count, shape, time_cells=20, freq_cells=34, mask_probability=0.25,
               seed=0):
    """Random separable masks `(count, time, freq)` in [0, 1].

    Args:
        count: int. Number of masks.
        shape: (time, freq) of the spectrogram.
        time_cells: int. Cells of the small time mask (paper: 20).
        freq_cells: int. Cells of the small frequency mask (paper: 34).
        mask_probability: float. Chance that a cell is masked (paper: 0.25).
        seed: int.
    """
    if not 0.0 <= mask_probability < 1.0:
        raise ValueError(
            f"mask_probability must be in [0, 1); received {mask_probability!r}.")
    time, freq = shape
    if time_cells < 1 or freq_cells < 1 or time_cells > time or freq_cells > freq:
        raise ValueError(
            f"time_cells={time_cells} and freq_cells={freq_cells} must be between 1 "
            f"and the spectrogram's shape {shape}.")
    rng = np.random.default_rng(seed)
    keep = 1.0 - mask_probability
    masks_t = _upsampled(rng, count, time_cells, time, keep)
    masks_f = _upsampled(rng, count, freq_cells, freq, keep)
    return masks_t[:, :, None] * masks_f[:, None, :]


def importance_map(score_fn, spectrogram, num_masks=4000, batch_size=64,
                   time_cells=20, freq_cells=34, mask_probability=0.25, seed=0,
                   centre=True, progress=True):
    """RISE importance map of `score_fn` around one spectrogram.

    Args:
        score_fn: callable mapping a batch of spectrograms `(batch, time,
            freq)` to anomaly scores `(batch,)`.
        spectrogram: array `(time, freq)`.
        num_masks: int. Masks evaluated (the paper uses 640,000).
        batch_size: int. Masked spectrograms scored per call.
        time_cells: see `rise_masks`.
        freq_cells: see `rise_masks`.
        mask_probability: see `rise_masks`.
        seed: see `rise_masks`.
        centre: bool. Subtract the mean score over all masks first. Anomaly
            scores such as negative cosines carry a large constant offset;
            uncentred, `offset * sum_i M_i` imprints the random mask pattern
            on the map and hides the clip's own structure. Centring leaves
            the score-mask covariance, which RISE estimates.
        progress: bool.

    Returns:
        `(time, freq)` array `sum_i (score_i - c) * M_i / (num_masks * E[M])`
        with `c` the mean score (0 without centring) and
        `E[M] = (1 - mask_probability)^2`: high values mark regions whose
        presence raises the anomaly score.
    """
    spectrogram = np.asarray(spectrogram, np.float32)
    if spectrogram.ndim != 2:
        raise ValueError(
            f"spectrogram must be (time, freq); received shape {spectrogram.shape}.")
    total = np.zeros(spectrogram.shape, np.float64)
    mask_sum = np.zeros(spectrogram.shape, np.float64)
    score_sum = 0.0
    batches = range(0, int(num_masks), int(batch_size))
    for number, start in enumerate(progress_bar(batches, desc="RISE", unit="batch",
                                                enabled=progress, leave=False)):
        count = min(int(batch_size), int(num_masks) - start)
        masks = rise_masks(count, spectrogram.shape, time_cells, freq_cells,
                           mask_probability, seed=seed + number)
        scores = np.asarray(score_fn(spectrogram[None] * masks), np.float64)
        if scores.shape != (count,) or not np.isfinite(scores).all():
            raise ValueError(
                f"score_fn must return {count} finite scores; received shape "
                f"{scores.shape}.")
        total += np.tensordot(scores, masks, axes=1)
        mask_sum += masks.sum(axis=0)
        score_sum += scores.sum()
    if centre:
        # sum_i (s_i - mean) M_i, accumulated in one pass.
        total -= (score_sum / int(num_masks)) * mask_sum
    return total / (int(num_masks) * (1.0 - mask_probability) ** 2)
