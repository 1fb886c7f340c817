"""Figures of Shin & Lee's proxy-task study: proxy performance against ASD
AUC (Figs. 2-4) and 2-D projections of learned features (Fig. 5)."""

import warnings

import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from asd_keras.visualisation.plots import _pyplot
from asd_keras.visualisation.plots import _save

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
ASD_LABELS = {
    "lp_in_domain_auc": "In-domain LP",
    "lp_out_domain_auc": "Out-domain LP",
    "md_auc": "MD",
}


def normalise_proxy(values, lower_is_better, better_up=True):
    """Min-max normalisation of one family's proxy metric to [0, 1].

    Args:
        values: `(n,)` the family's proxy metric, one value per configuration.
        lower_is_better: bool. Direction of the metric.
        better_up: bool. If True, lower-is-better metrics are flipped so that
            1 is always the best configuration; if False, 1 is always the
            largest value (the raw direction, as Table VII's signs).

    Returns:
        `(n,)` floats. A constant metric has no range and gives 0.5 for every
        configuration, so that its points stay in the middle of the plot.
    """
    values = np.asarray(values, dtype=np.float64)
    spread = np.ptp(values) if values.size else 0.0
    if spread == 0:
        return np.full(values.shape, 0.5)
    scaled = (values - values.min()) / spread
    return 1.0 - scaled if (better_up and lower_is_better) else scaled


def _significant(correlations, family, asd_col):
    """(rho, mark, significant) of a family's Table VII cell, or None."""
    if correlations is None:
        return None
    cell = correlations[(correlations["family"] == family)
                        & (correlations["asd_metric"] == asd_col)]
    if cell.empty or not np.isfinite(cell["rho"].iloc[0]):
        return None
    rho, p = float(cell["rho"].iloc[0]), float(cell["p"].iloc[0])
    mark = cell["mark"].iloc[0] if "mark" in cell else ""
    return rho, mark if isinstance(mark, str) else "", p < 0.05


def plot_proxy_vs_asd(configurations, families, asd_col, path, correlations=None,
                      better_up=True):
    """Normalised proxy performance against an ASD AUC (paper Figs. 2-4).

    One point per configuration: x is the ASD AUC in %, y the family's
    Table VII proxy metric min-max normalised within the family. By default
    (`better_up=True`) lower-is-better metrics (MAE, uniformity, ...) are
    flipped so that y = 1 is always the family's best configuration: the
    paper's y-axis is "normalized proxy task performance", and with this
    orientation a rising cloud means better proxy goes with better ASD for
    every family alike. `better_up=False` keeps the raw direction, so slopes
    have the signs of Table VII's rho. The legend always shows Table VII's
    (unflipped) rho and its significance mark.

    A dashed least-squares line (`numpy.polyfit`, degree 1) is drawn for each
    family whose Spearman correlation with `asd_col` has p < 0.05 in
    `correlations`; the paper draws these lines the same way.

    Args:
        configurations: DataFrame, one row per configuration, with `family`,
            `asd_col` (a fraction in [0, 1]) and each family's proxy metric.
        families: list of dicts (the `families` of study.json), each with
            `name`, `label`, `proxy_metric` and `lower_is_better`
            ({metric: bool}); plotted in this order.
        asd_col: str, the ASD column on the x-axis, e.g. "md_auc".
        path: PNG path.
        correlations: optional DataFrame with `family`, `asd_metric`, `rho`,
            `p` and `mark` (the rows of table7.csv). None: no trend lines
            and no rho in the legend.
        better_up: bool. See above.

    Raises:
        ValueError: if a column is missing from `configurations`.
    """
    needed = ["family", asd_col] + [f["proxy_metric"] for f in families]
    missing = sorted({c for c in needed if c not in configurations.columns})
    if missing:
        raise ValueError(
            f"plot_proxy_vs_asd: column(s) {missing} are not in the "
            f"configurations; it has {list(configurations.columns)}.")
    plt = _pyplot()
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, family in enumerate(families):
        metric = family["proxy_metric"]
        part = configurations[configurations["family"] == family["name"]]
        part = part[np.isfinite(part[metric]) & np.isfinite(part[asd_col])]
        if part.empty:
            continue
        x = 100.0 * part[asd_col].to_numpy(np.float64)
        y = normalise_proxy(part[metric], family["lower_is_better"][metric], better_up)
        colour = colours(i % 10)
        label = family.get("label", family["name"])
        cell = _significant(correlations, family["name"], asd_col)
        if cell is not None:
            label += f" (ρ = {cell[0]:.2f}{cell[1]})"
        ax.scatter(x, y, marker=MARKERS[i % len(MARKERS)], color=colour, s=36,
                   label=label, zorder=3)
        if cell is not None and cell[2] and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            line_x = np.array([x.min(), x.max()])
            ax.plot(line_x, slope * line_x + intercept, ls="--", color=colour, lw=1.2)
    name = ASD_LABELS.get(asd_col, asd_col)
    ax.set_xlabel(f"{name} AUC (%)")
    ax.set_ylabel("normalised proxy performance (1 = best)" if better_up
                  else "normalised proxy metric (1 = largest)")
    ax.set_ylim(-0.08, 1.08)
    ax.set_title(f"Proxy task vs {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    plt.close(fig)


def _check_panel(label, features, labels):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if features.ndim != 2 or features.shape[0] < 4 or features.shape[1] < 2:
        raise ValueError(
            f"plot_feature_projections: panel {label!r} needs a (clips, dim) "
            f"array of at least 4 clips and 2 dimensions; received shape "
            f"{features.shape}.")
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"plot_feature_projections: panel {label!r} has {features.shape[0]} "
            f"feature rows but labels of shape {labels.shape}.")
    if not np.all(np.isfinite(features)):
        raise ValueError(
            f"plot_feature_projections: panel {label!r} has "
            f"{int(np.sum(~np.isfinite(features)))} NaN or infinite feature "
            "value(s); fix the model that produced them.")
    return features, labels


def _umap_points(umap, features, n_neighbors, seed):
    """2-D UMAP of `features`, its neighbour graph from sklearn's exact kNN.

    Below 4096 rows UMAP finds exact neighbours itself, but with a parallel
    numba kernel compiled anew in every process: the first figure of a
    process took 19 s on 2 cores that way and 11 s with sklearn's exact
    search, which gives the same neighbours (each row first, at distance 0,
    as UMAP expects).
    """
    distances, indices = NearestNeighbors(n_neighbors=n_neighbors).fit(
        features).kneighbors(features)
    with warnings.catch_warnings():
        # Without a search index UMAP cannot `transform` new points; only the
        # fitted points are drawn.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return umap.UMAP(n_neighbors=n_neighbors, random_state=seed, n_jobs=1,
                         precomputed_knn=(indices, distances, None)).fit_transform(features)


def plot_feature_projections(panels, path, seed=0):
    """UMAP and t-SNE projections of test features (paper Fig. 5).

    One row per panel, UMAP on the left and t-SNE on the right, normal clips
    as blue dots and anomalous ones as red crosses; each title gives the
    family and the features' MD AUC, so the picture can be held against the
    number (the paper's point: the two need not agree).

    The raw features are projected. `evaluation.embedding_space
    .tsne_projection` is not used because it first L2-normalises the rows,
    which suits angular embeddings but discards the norm that carries the
    anomaly signal of, e.g., an AE's reconstruction errors. The t-SNE
    perplexity is clamped to (clips - 1) / 3 (sklearn needs it below the
    number of clips), and UMAP's `n_neighbors` to clips - 1.

    Args:
        panels: sequence of (label, features `(clips, dim)`, labels
            `(clips,)` 0 normal / 1 anomalous, md_auc fraction or NaN).
        path: PNG path.
        seed: int. Random state of UMAP and t-SNE.

    Raises:
        ValueError: on no panels, fewer than 4 clips or 2 dimensions,
            labels that do not match the features, or NaN/inf features.
    """
    import umap  # lazy: takes seconds to import and compiles with numba

    if not panels:
        raise ValueError("plot_feature_projections: received no panels.")
    checked = [(label, *_check_panel(label, f, y), md) for label, f, y, md in panels]
    plt = _pyplot()
    fig, axes = plt.subplots(len(checked), 2, figsize=(8.4, 4.0 * len(checked)),
                             squeeze=False)
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for row, (label, features, labels, md_auc) in zip(axes, checked):
        n = len(features)
        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3.0), init="pca",
                    random_state=seed)
        # One OpenMP thread: on a busy 2-core machine sklearn's threads spin
        # and t-SNE of 30 clips took 9.7 s of CPU against 0.14 s on one
        # thread (600 clips: 29 s against 5.6 s).
        with threadpool_limits(limits=1, user_api="openmp"):
            tsne_points = tsne.fit_transform(features)
        projections = {
            "UMAP": _umap_points(umap, features, min(15, n - 1), seed),
            "t-SNE": tsne_points,
        }
        md = "n/a" if md_auc is None or not np.isfinite(md_auc) else f"{100 * md_auc:.1f} %"
        for ax, (method, points) in zip(row, projections.items()):
            ax.scatter(*points[labels == 0].T, s=10, c="tab:blue", marker="o",
                       label="normal")
            ax.scatter(*points[labels == 1].T, s=18, c="tab:red", marker="x",
                       label="anomalous")
            ax.set_title(f"({next(letters)}) {label}: {method}\nMD AUC {md}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
