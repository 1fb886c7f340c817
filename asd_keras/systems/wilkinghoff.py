"""Wilkinghoff's angular-margin embedding system (ICASSP 2023 / TASLP) as a preset.

One two-branch embedding network for every machine type (the
`classifier_embedding` extractor), trained to classify machine type,
section, attributes and domain with sub-cluster AdaCos and mixup; each
section's clips are scored by the `kmeans` backend (k-means centroids of
the source embeddings plus every target embedding, minimum cosine score),
or `backend=local_density` (reference methods.md §F) or any other backend
(`backend=knn`). `ensemble_size` independently trained members are summed.
The decision threshold is the `threshold_quantile` percentile of
cross-fitted training scores per section (a target clip would otherwise be
its own reference).

`variant` picks the defaults of a published version (the user's own keys
override them): `paper` (TASLP: k-means on the source domain),
`icassp2023` (its code: k-means on source and target, wilkinghoff.md §6),
`dcase2023` (18 s tiled clips, mixup p = 0.5 with convex labels, §1, §4).
`classes=per_section` trains one single-class network per section.
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("wilkinghoff")
class WilkinghoffSystem(AnomalySystem):
    """Angular-margin embeddings scored per section by k-means references."""

    DEFAULTS = {"extractor": "classifier_embedding", "backend": "kmeans",
                "extractor_grouping": "all", "grouping": "section",
                "threshold": "percentile", "threshold_quantile": 0.9,
                "threshold_scores": "cross_fitted", "variant": "paper", "seed": 1234}
    VARIANTS = {"variant": {
        "paper": {},
        "icassp2023": {"kmeans_domains": "all"},
        "dcase2023": {"clip_seconds": 18.0, "length_policy": "tile_crop",
                      "mixup_probability": 0.5, "mixup_label": "standard"},
    }}
    IMPLIES = {"classes": {"per_section": {"extractor_grouping": "section"}}}
