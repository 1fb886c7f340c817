"""Shin & Lee's source-separation proxy task as a preset.

One CMGAN-style separator per machine type (the `separation` extractor,
paper §III-D and Fig. 1) is trained to pull the machine type's normal
sound out of mixtures with other machine types' clips, by negative SI-SDR.
Each clip is described by the channel-pooled maps of the dense encoder and
every conformer block (N + 1 extraction points), averaged over the clip's
2-second segments; one Mahalanobis model per machine type, fitted on all its
normal training clips, scores it (§IV-B2, the "MD" column of Table IV).
`asd-keras probe` gives the linear-probe AUCs of the same features.
`num_blocks` (0, 1, 2, 4) and `width` (64, 128) pick the row of Table IV.
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("separation")
class SeparationSystem(AnomalySystem):
    """Separator encoder features per machine type; global Mahalanobis score."""

    DEFAULTS = {"extractor": "separation", "backend": "mahalanobis",
                "extractor_grouping": "machine_type", "grouping": "machine_type"}
