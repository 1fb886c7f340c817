"""PNG plots: training curves, t-SNE projections and RISE maps."""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Writes atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)


def plot_training_curves(histories, path, columns=("loss", "intra_compactness",
                                                    "inter_compactness")):
    """One panel per history: each column against the epoch.

    Args:
        histories: dict title -> DataFrame with `epoch` and the columns.
        path: PNG path.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.6),
                             squeeze=False)
    for ax, (title, frame) in zip(axes[0], histories.items()):
        for column in columns:
            if column in frame:
                ax.plot(frame["epoch"], frame[column], marker="o", label=column)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_tsne(panels, path):
    """Scatter plots of normal vs anomalous projections.

    Args:
        panels: dict title -> (points `(n, 2)`, labels `(n,)` 0/1).
        path: PNG path.
    """
    plt = _pyplot()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, (points, labels)) in zip(axes.flat, panels.items()):
        labels = np.asarray(labels)
        ax.scatter(*points[labels == 0].T, s=6, c="tab:blue", label="normal")
        ax.scatter(*points[labels == 1].T, s=6, c="tab:red", label="anomalous")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_importance(rows, path):
    """Rows of [log spectrogram, importance maps...] side by side.

    Args:
        rows: list of (title, spectrogram `(time, freq)`, dict name -> map).
        path: PNG path.
    """
    plt = _pyplot()
    width = 1 + max(len(maps) for _, _, maps in rows)
    fig, axes = plt.subplots(len(rows), width, figsize=(4 * width, 3.2 * len(rows)),
                             squeeze=False)
    for r, (title, spectrogram, maps) in enumerate(rows):
        ax = axes[r][0]
        ax.imshow(np.log10(np.maximum(spectrogram, 1e-6)).T, origin="lower",
                  aspect="auto", cmap="magma")
        ax.set_title(f"{title}\nlog spectrogram", fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("bin")
        for c, (name, importance) in enumerate(maps.items(), start=1):
            ax = axes[r][c]
            # Each map on its own colour scale, as the paper's Fig. 4.
            ax.imshow(importance.T, origin="lower", aspect="auto", cmap="viridis")
            ax.set_title(f"RISE: {name}", fontsize=9)
            ax.set_xlabel("frame")
        for c in range(1 + len(maps), width):
            axes[r][c].axis("off")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
