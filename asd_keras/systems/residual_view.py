"""Noise-aware two-channel detection: Residual View memory banks with PRPS.

Kim et al., "Residual View and Prototype Selection for Noise-Aware
Anomalous Sound Detection" (DCASE 2026 Task 2 technical report): a frozen
encoder embeds the near and the far microphone of every clip with the same
preset, layer and pooling (the `frozen_encoder` extractor with
`channel=both`; GenRep's band-preserving temporal mean, `band_mean`), and
the `residual_knn` backend scores `f_near - alpha * f_far` against GenRep
memory banks per section (MemMixup 0.9, K = 1), with the PRPS prototype
branch (`prps`, 128 prototypes). The report's submitted System 1 is the
default (`alpha=0.5 prps=true`); `prps=false` is its System 3 and
`alpha=0` the near-only reference. Any two-channel extractor works:
`extractor=logmel_stats` or `extractor=classifier_embedding` (the trained
Wilkinghoff embedding, trained on the near channel), each with
`channel=both`.

    asd-keras train --system residual_view encoder=beats preset=PRESET_DIR \\
        alpha=0.5 prps=true --data DEV --out RUN
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("residual_view")
class ResidualViewSystem(AnomalySystem):
    """Frozen two-channel embeddings, Residual View kNN banks + PRPS per section."""

    DEFAULTS = {"extractor": "frozen_encoder", "backend": "residual_knn",
                "grouping": "section", "channel": "both", "pooling": "band_mean",
                "alpha": 0.5, "prps": True}
