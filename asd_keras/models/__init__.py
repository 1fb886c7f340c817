"""Anomaly detection systems, one module per system family."""

from asd_keras.models.dense_ae import DenseAutoencoderSystem
from asd_keras.models.dense_ae import dense_autoencoder

SYSTEMS = {DenseAutoencoderSystem.name: DenseAutoencoderSystem}


def get_system(name):
    """Returns the system class registered under `name`."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ValueError(
            f"Unknown system {name!r}; available: {sorted(SYSTEMS)}."
        ) from None
