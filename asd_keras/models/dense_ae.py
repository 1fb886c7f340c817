"""The DCASE dense autoencoder network (2020-2026).

`dense_autoencoder` builds the Functional model of reference dcase.md 2.2.
The `dense_ae` extractor (`asd_keras.extractors.dense_ae`) trains it and
the `dense_ae` system preset (`asd_keras.systems.dense_ae`) scores with it.
"""

import keras

from asd_keras.models.blocks import dense_block
from asd_keras.models.blocks import dense_stack
from asd_keras.models.precision import float32_output


def dense_autoencoder(
    input_dim=640,
    hidden_units=128,
    latent_dim=8,
    num_hidden_layers=4,
    name="dense_autoencoder",
):
    """The DCASE baseline autoencoder as a Functional `keras.Model`.

    `Input(d) -> [Dense(h) -> BN -> ReLU] x L -> Dense(latent) -> BN -> ReLU
    -> [Dense(h) -> BN -> ReLU] x L -> Dense(d)` with a linear output and
    Keras default initialisers and BatchNorm settings, as the Keras
    baselines (reference dcase.md 2.2). Built under a mixed dtype policy
    (`asd_keras.models.precision`), the output is cast to float32.

    Args:
        input_dim: int. Size of a stacked log-mel vector. Defaults to `640`.
        hidden_units: int. Width h of every hidden layer. Defaults to `128`.
        latent_dim: int. Bottleneck size. Defaults to `8`.
        num_hidden_layers: int. Hidden layers L on each side. Defaults to 4.
        name: str.

    Returns:
        keras.Model mapping `(batch, input_dim)` to `(batch, input_dim)`.

    Example:
    >>> model = dense_autoencoder()
    >>> model.count_params()
    269992
    """
    inputs = keras.Input(shape=(input_dim,), name="log_mel_vectors")
    x, _ = dense_stack(inputs, hidden_units, num_hidden_layers, "encoder")
    x = dense_block(x, latent_dim, "bottleneck")
    x, _ = dense_stack(x, hidden_units, num_hidden_layers, "decoder")
    outputs = keras.layers.Dense(input_dim, name="reconstruction")(x)
    # Under a mixed dtype policy the residuals and the loss need float32.
    outputs = float32_output(outputs, "reconstruction_float32")
    return keras.Model(inputs, outputs, name=name)
