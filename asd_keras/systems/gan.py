"""The GAN detectors of de Oliveira Neto, Guedes & Figueiredo as presets.

One detector per machine type (`gan` extractor: GANomaly, Skip-GANomaly or
EGBAD on stacked log-mel vectors, paper §3); a clip's score is the mean of
its vectors' scores, raw or min-max scaled with the training range
(`feature_mean` backend, `normalize=none|minmax_train`); the decision
threshold is the gamma fit of the training scores per machine type.
Per-machine-type hyper-parameters (the paper's Tables 4-5, or what
`asd-keras search` chose) go through `machine_overrides`, e.g.
`{fan: {epochs: 30}}`.
"""

from asd_keras.extractors.gan import NO_DISTRIBUTE
from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


class GANDetectorSystem(AnomalySystem):
    """Base preset of the three GAN detectors; `DETECTOR` names the detector."""

    DETECTOR = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.DEFAULTS = {"extractor": "gan", "detector": cls.DETECTOR,
                        "extractor_grouping": "machine_type", "grouping": "machine_type",
                        "backend": "feature_mean", "feature_set": "score",
                        "threshold": "gamma", "threshold_quantile": 0.9, "seed": 0}

    def __init__(self, config=None):
        detector = (config or {}).get("detector", self.DETECTOR)
        if detector != self.DETECTOR:
            raise ValueError(f"System {self.name!r} trains the {self.DETECTOR!r} detector; "
                             f"received detector={detector!r}. Choose the system "
                             f"{detector!r} instead.")
        super().__init__(config)
        if self.config["extractor"] == "gan" and self.config["distribute"] != "none":
            raise ValueError(NO_DISTRIBUTE)


@register_system("ganomaly")
class GANomalySystem(GANDetectorSystem):
    """GANomaly (encoder-decoder-encoder + discriminator), one per machine type."""

    DETECTOR = "ganomaly"


@register_system("skip_ganomaly")
class SkipGANomalySystem(GANDetectorSystem):
    """Skip-GANomaly (skip-connected generator + discriminator), one per machine type."""

    DETECTOR = "skip_ganomaly"


@register_system("egbad")
class EGBADSystem(GANDetectorSystem):
    """EGBAD (BiGAN: encoder, generator, joint discriminator), one per machine type."""

    DETECTOR = "egbad"
