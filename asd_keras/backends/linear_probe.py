"""The linear probe of Shin & Lee (paper §IV-B, eqs. 1-3): an evaluation
protocol of a representation, never a detector.

One linear layer `z = W h + b` on frozen features `h`, trained with softmax
cross-entropy on the normal/anomalous labels of labelled TEST clips; the
score of a clip is p(anomalous). Because it learns from test labels it sets
`uses_test_labels = True`, and `asd-keras probe` writes AUC tables only.

- `in_domain_probe`: per section, a stratified 50/50 split of its labelled
  clips (train on one half, score the other);
- `out_domain_probe`: leave one section out, train on the other sections.

Assumptions (the paper does not give them): features are standardised with
the probe's training mean and std; the linear layer is fitted to convergence
by scikit-learn's `LogisticRegression` (L-BFGS, L2 strength `c=1.0`), which
for two classes is the softmax layer of eqs. 1-3 with one logit fixed at 0.
A few gradient steps on the ~50 clips of a section's half (one batch per
epoch) left the layer near its random start, so SGD training is not used;
`c` sets the regularisation (large values: nearly none). One split per
section, drawn with `seed`.
"""

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from asd_keras.backends.base import ScoringBackend
from asd_keras.backends.base import check_features
from asd_keras.backends.base import register_backend
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.evaluation.metrics import auc


@register_backend("linear_probe")
class LinearProbeBackend(ScoringBackend):
    """Linear classifier on standardised features; score = p(anomalous).

    Args:
        c: float. Inverse L2 strength of `LogisticRegression`. Defaults to 1.0.
        max_iter: int. L-BFGS iterations. Defaults to 1000.
    """

    required_columns = ("label",)
    uses_test_labels = True

    def __init__(self, c=1.0, max_iter=1000):
        super().__init__()
        config = validate_config({"c": c, "max_iter": max_iter},
                                 {"c": number(gt=0), "max_iter": integer(min=1)})
        self.c, self.max_iter = config["c"], config["max_iter"]

    def _fit_arrays(self, features, metadata):
        labels = pd.to_numeric(metadata["label"], errors="coerce").to_numpy()
        if np.isnan(labels).any() or set(np.unique(labels)) != {0, 1}:
            raise ValueError("The linear probe needs both normal (0) and anomalous (1) "
                             f"labels and no missing ones; received {sorted(set(labels))}.")
        mean = features.mean(axis=0)
        std = np.maximum(features.std(axis=0), 1e-6)
        fitted = LogisticRegression(C=self.c, max_iter=self.max_iter).fit(
            (features - mean) / std, labels.astype(int))
        # Two-logit form of eq. 1: z = [0, w.h + b].
        kernel = np.zeros((features.shape[1], 2), np.float32)
        kernel[:, 1] = fitted.coef_[0]
        bias = np.array([0.0, fitted.intercept_[0]], np.float32)
        return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
                "kernel": kernel, "bias": bias}

    def scoring_layer(self):
        a = self.arrays
        mean, std, kernel, bias = a["mean"], a["std"], a["kernel"], a["bias"]
        # Eq. 3: softmax over the two logits, the anomalous class's probability.
        return keras.layers.Lambda(lambda h: keras.ops.softmax(
            keras.ops.matmul((h - mean) / std, kernel) + bias, axis=-1)[:, 1],
            name="linear_probe")

    @property
    def input_dim(self):
        return int(self.arrays["mean"].shape[0])

    def get_config(self):
        return {"c": self.c, "max_iter": self.max_iter}


def _check(features, metadata):
    features = check_features(features)
    if len(metadata) != len(features):
        raise ValueError(f"metadata has {len(metadata)} rows but the features have "
                         f"{len(features)} clips.")
    metadata = metadata.reset_index(drop=True).copy()
    metadata["section"] = metadata["section"].astype(str)
    for section, rows in metadata.groupby("section"):
        if set(rows["label"].astype(int)) != {0, 1}:
            raise ValueError(f"Section {section!r} needs normal and anomalous labelled "
                             f"clips for the probe; it has labels {sorted(set(rows['label']))}.")
    return features, metadata


def in_domain_probe(features, metadata, seed=0, **backend_kwargs):
    """Per section: train on a stratified half, AUC on the other half.

    Returns:
        DataFrame with `section`, `n_train`, `n_test`, `auc`.
    """
    features, metadata = _check(features, metadata)
    rows = []
    for section, group in metadata.groupby("section"):
        index = group.index.to_numpy()
        fit_rows, test_rows = train_test_split(index, test_size=0.5, random_state=seed,
                                               stratify=group["label"].astype(int))
        probe = LinearProbeBackend(**backend_kwargs).fit(
            features[fit_rows], metadata.loc[fit_rows])
        labels = metadata.loc[test_rows, "label"].astype(int).to_numpy()
        rows.append({"section": section, "n_train": len(fit_rows), "n_test": len(test_rows),
                     "auc": auc(labels, probe.score(features[test_rows]),
                                what=f"LP in-domain AUC of section {section}")})
    return pd.DataFrame(rows)


def out_domain_probe(features, metadata, seed=0, **backend_kwargs):
    """Leave one section out: train on the others, AUC on it, for every section.

    Returns:
        DataFrame with `section`, `n_train`, `n_test`, `auc`.
    """
    features, metadata = _check(features, metadata)
    sections = sorted(metadata["section"].unique())
    if len(sections) < 2:
        raise ValueError(f"The out-domain probe needs at least 2 sections; received "
                         f"{sections}.")
    rows = []
    for section in sections:
        held = (metadata["section"] == section).to_numpy()
        probe = LinearProbeBackend(**backend_kwargs).fit(
            features[~held], metadata[~held])
        labels = metadata.loc[held, "label"].astype(int).to_numpy()
        rows.append({"section": section, "n_train": int((~held).sum()),
                     "n_test": int(held.sum()),
                     "auc": auc(labels, probe.score(features[held]),
                                what=f"LP out-domain AUC of section {section}")})
    return pd.DataFrame(rows)
