"""Frozen pretrained encoders (BEATs, EAT) scored by kNN memory banks.

GenRep's recipe (reference methods.md §B): pooled embeddings of a frozen
encoder layer (the `frozen_encoder` extractor: `encoder`, `preset`,
`layer`, `pooling`, `channel`), one source and one target memory bank per
section (the `knn` backend: `k`, `domains`, `memmixup_neighbours`,
`memmixup_alpha`, `local_density`), the minimum of the two distances as
the score. `backend=mahalanobis` gives Shin & Lee's scoring of the same
features, and `asd-keras probe` their linear probe.

    asd-keras train --system frozen_encoder encoder=beats preset=PRESET_DIR \\
        layer=4 pooling=band_mean backend=knn --data DEV --out RUN
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("frozen_encoder")
class FrozenEncoderSystem(AnomalySystem):
    """Frozen BEATs/EAT embeddings, kNN memory banks per section."""

    DEFAULTS = {"extractor": "frozen_encoder", "backend": "knn", "grouping": "section"}
