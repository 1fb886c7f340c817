"""PNG plots: training curves, t-SNE projections and RISE maps."""

from pathlib import Path

import numpy as np


def pyplot():
    """`matplotlib.pyplot` on the non-interactive Agg backend."""
    import matplotlib  # lazy: importing this module must not switch the user's backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    return plt


def save_figure(fig, path, close=True):
    """Writes a figure as a PNG atomically (a temporary file, then a rename)
    and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    if close:
        pyplot().close(fig)


_pyplot = pyplot


def _save(fig, path):
    save_figure(fig, path, close=False)


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


def plot_detector_bars(per_machine, summary, path):
    """The GAN paper's Figure 6: AUC and pAUC bars per machine type.

    One panel per condition (Fig. 6a-c) with AUC and pAUC per machine type,
    and a last panel (Fig. 6d) with each condition's test-size-weighted
    average and standard deviation as error bars.

    Args:
        per_machine: DataFrame with condition, machine_type, AUC, pAUC (0-1).
        summary: DataFrame from `comparison.table6` (percent).
        path: PNG path.
    """
    plt = _pyplot()
    conditions = list(dict.fromkeys(per_machine["condition"]))
    fig, axes = plt.subplots(1, len(conditions) + 1,
                             figsize=(4.2 * (len(conditions) + 1), 3.8), squeeze=False)
    width = 0.38
    for ax, condition in zip(axes[0], conditions):
        part = per_machine[per_machine["condition"] == condition].sort_values("machine_type")
        x = np.arange(len(part))
        ax.bar(x - width / 2, 100 * part["AUC"], width, label="AUC")
        ax.bar(x + width / 2, 100 * part["pAUC"], width, label="pAUC")
        ax.set_xticks(x, part["machine_type"], rotation=30)
        ax.set_ylim(0, 100)
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.set_title(condition)
        ax.set_ylabel("%")
    ax = axes[0][-1]
    x = np.arange(len(summary))
    ax.bar(x - width / 2, summary["AUC mean"], width, yerr=summary["AUC std"], capsize=3,
           label="AUC")
    ax.bar(x + width / 2, summary["pAUC mean"], width, yerr=summary["pAUC std"], capsize=3,
           label="pAUC")
    ax.set_xticks(x, summary["condition"], rotation=30)
    ax.set_ylim(0, 100)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_title("weighted average ± std")
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
