"""The DCASE dense autoencoder baseline (2020-2026) as a preset.

One autoencoder per machine type (`dense_ae` extractor) trained on stacked
log-mel vectors; a clip's score is its mean squared reconstruction error
(`score=mse`: the `feature_mean` backend on the clip-mean squared residual)
or the selective Mahalanobis distance of its mean residual chunk
(`score=mahala`: the `mahala` backend, covariances per domain from the
frame-level residuals, reference dcase.md 3), or its mean absolute error
(`score=mae`, with `loss=mae` the AE of Shin & Lee's proxy study); the
decision threshold is the gamma fit of the training scores per machine type
(dcase.md 2.5).
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


@register_system("dense_ae")
class DenseAutoencoderSystem(AnomalySystem):
    """DCASE dense autoencoder, one per machine type; MSE or MAHALA score."""

    DEFAULTS = {"extractor": "dense_ae", "extractor_grouping": "machine_type",
                "grouping": "machine_type", "score": "mse", "seed": 13711}
    OPTIONS = {"score": {
        "mse": {"backend": "feature_mean", "feature_set": "squared_error"},
        "mahala": {"backend": "mahala", "feature_set": "residual"},
        # Shin & Lee's AE (train with loss=mae): the clip's MAE.
        "mae": {"backend": "feature_mean", "feature_set": "absolute_error"},
    }}
