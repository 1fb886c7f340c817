"""Shin & Lee's classification proxy task as presets: ResNet features, global MD.

A ResNet (`resnet_classifier` extractor, ResNet-18 by default, `depth=`
34/50/101/152 for the other rows of Table III) is trained per machine type
to classify the clips into the type's sections (paper §III-C; Fig. 1: six
sections of normal training clips per type; `classes=auto` takes the
attribute classes instead where a machine type has a single section, as in
DCASE 2023 and later, and the run's run.json records the choice), with
cross-entropy
(`resnet_ce`) or ArcFace (`resnet_arcface`). The heads are discarded: each
clip is described by the backbone output, and one Mahalanobis model per
machine type, fitted on all its normal training clips without domain labels,
scores it (§IV-B2, Eq. 5). `asd-keras probe` gives the paper's
linear-probe and MD AUCs of the same features; `backend=knn` (or any other
backend) swaps the scorer. The loss is fixed by the preset's name.
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system

_DEFAULTS = {"extractor": "resnet_classifier", "backend": "mahalanobis",
             "extractor_grouping": "machine_type", "grouping": "machine_type"}


@register_system("resnet_ce")
class ResNetCrossEntropySystem(AnomalySystem):
    """ResNet trained with cross-entropy on sections or attributes; MD per machine type."""

    DEFAULTS = {**_DEFAULTS, "loss": "ce"}
    # A one-value option: `loss` may be given, but only as the preset's own.
    OPTIONS = {"loss": {"ce": {"loss": "ce"}}}


@register_system("resnet_arcface")
class ResNetArcFaceSystem(AnomalySystem):
    """ResNet trained with ArcFace on sections or attributes; MD per machine type."""

    DEFAULTS = {**_DEFAULTS, "loss": "arcface"}
    OPTIONS = {"loss": {"arcface": {"loss": "arcface"}}}
