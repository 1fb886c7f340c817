"""Shin & Lee's contrastive proxy task (SimCLR, SimSiam) as presets.

One ResNet per machine type (the `contrastive` extractor, paper §III-E and
Fig. 1: trained on the normal clips of the machine type's six sections) is
trained on two augmented views of each clip, by SimCLR's NT-Xent loss
(`simclr`) or SimSiam's negative cosine similarity (`simsiam`); the
projection head is discarded and each clip is described by the pooled
backbone output. A clip's score is the global Mahalanobis distance of that
feature to its machine type's training features (paper §IV-B, the "MD"
column of Table V); `asd-keras probe` gives the linear-probe AUCs. The
decision threshold is the gamma fit of the training scores per machine type.
`depth` picks the ResNet (18, 34, 50, 101, 152: the rows of Table V); the
augmentation magnitudes are the extractor's keys.
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system

_PRESET = {"extractor": "contrastive", "backend": "mahalanobis",
           "extractor_grouping": "machine_type", "grouping": "machine_type"}


@register_system("simclr")
class SimCLRSystem(AnomalySystem):
    """SimCLR-trained ResNet per machine type; global Mahalanobis score."""

    DEFAULTS = {**_PRESET, "framework": "simclr"}
    # An option with one value: the preset fixes the framework, and
    # `framework=simsiam` is an error rather than a mislabelled run.
    OPTIONS = {"framework": {"simclr": {"framework": "simclr"}}}


@register_system("simsiam")
class SimSiamSystem(AnomalySystem):
    """SimSiam-trained ResNet per machine type; global Mahalanobis score."""

    DEFAULTS = {**_PRESET, "framework": "simsiam"}
    OPTIONS = {"framework": {"simsiam": {"framework": "simsiam"}}}
