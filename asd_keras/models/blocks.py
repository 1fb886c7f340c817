"""Fully connected building blocks shared by the dense autoencoder and GANs.

The DCASE dense autoencoder (reference dcase.md 2.2) and the audio GANs of de
Oliveira Neto et al. (paper §3.2: fully connected networks of 128-unit
`Dense -> BatchNorm -> ReLU` layers on 640-dim stacked log-mel vectors,
latent size 8) are built from the same `dense_block`. The builders return
Functional `keras.Model`s, so the GAN models of `asd_keras.models.gan` nest
them as sub-networks. Built under a mixed dtype policy, a sub-network's
outputs are cast to float32 (`asd_keras.models.precision.float32_output`),
for the losses and scores computed from them.
"""

import keras

from asd_keras.config import check_integer
from asd_keras.models.precision import float32_output

INITIALIZERS = ("glorot_uniform", "random_normal")


def kernel_initializer(name, seed=None):
    """The weight initialiser of the hyper-parameter grid (paper Table 3).

    `"random_normal"` is N(0, 0.02), the `weights_init` of the GANomaly and
    Skip-GANomaly code (reference methods.md A1), not Keras' default 0.05.
    """
    if name == "glorot_uniform":
        return keras.initializers.GlorotUniform(seed=seed)
    if name == "random_normal":
        return keras.initializers.RandomNormal(0.0, 0.02, seed=seed)
    raise ValueError(
        f"kernel_initializer must be one of {INITIALIZERS}; received {name!r}."
    )


def dense_block(x, units, name, batch_norm=True, activation="relu", dropout=0.0,
                initializer="glorot_uniform"):
    """`Dense -> [BatchNorm] -> activation -> [Dropout]`, layers named `{name}_*`.

    Args:
        x: Keras tensor.
        units: int.
        name: str. Prefix of the layer names (`{name}_dense`, `{name}_bn`,
            `{name}_relu` or `{name}_leaky_relu`, `{name}_dropout`).
        batch_norm: bool.
        activation: `"relu"`, `"leaky_relu"` (slope 0.2, as the DCGAN
            discriminators) or `None`.
        dropout: float in [0, 1).
        initializer: str, see `kernel_initializer`.

    Returns:
        Keras tensor.
    """
    x = keras.layers.Dense(
        units, kernel_initializer=kernel_initializer(initializer), name=f"{name}_dense"
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation == "relu":
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    elif activation == "leaky_relu":
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_leaky_relu")(x)
    elif activation is not None:
        raise ValueError(
            f"activation must be 'relu', 'leaky_relu' or None; received {activation!r}."
        )
    if dropout:
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); received {dropout!r}.")
        x = keras.layers.Dropout(float(dropout), name=f"{name}_dropout")(x)
    return x


def dense_stack(x, units, count, name, dropout=0.0, initializer="glorot_uniform"):
    """`count` dense blocks of `units`, named `{name}_0`, `{name}_1`, ...

    Returns:
        (last tensor, list of every block's output).
    """
    outputs = []
    for i in range(int(count)):
        x = dense_block(x, units, f"{name}_{i}", dropout=dropout, initializer=initializer)
        outputs.append(x)
    return x, outputs


def _check_sizes(**sizes):
    for key, value in sizes.items():
        check_integer(key, value, 1)


def dense_encoder(input_dim=640, hidden_units=128, latent_dim=8, num_hidden_layers=3,
                  dropout=0.0, initializer="glorot_uniform", name="encoder"):
    """`[Dense(h) -> BN -> ReLU] x L -> Dense(latent) -> BN -> ReLU`.

    The latent block keeps BN and ReLU: in the paper's networks every layer
    but the decoder output has them (paper §3.2, Figure 3).

    Returns:
        Functional keras.Model `(batch, input_dim) -> (batch, latent_dim)`.
    """
    _check_sizes(input_dim=input_dim, hidden_units=hidden_units, latent_dim=latent_dim,
                 num_hidden_layers=num_hidden_layers)
    inputs = keras.Input(shape=(int(input_dim),), name=f"{name}_input")
    x, _ = dense_stack(inputs, hidden_units, num_hidden_layers, name, dropout, initializer)
    z = dense_block(x, latent_dim, f"{name}_latent", initializer=initializer)
    return keras.Model(inputs, float32_output(z, f"{name}_float32"), name=name)


def dense_decoder(latent_dim=8, hidden_units=128, output_dim=640, num_hidden_layers=3,
                  dropout=0.0, initializer="glorot_uniform", name="decoder"):
    """`[Dense(h) -> BN -> ReLU] x L -> Dense(output)` with a linear output.

    Returns:
        Functional keras.Model `(batch, latent_dim) -> (batch, output_dim)`.
    """
    _check_sizes(latent_dim=latent_dim, hidden_units=hidden_units, output_dim=output_dim,
                 num_hidden_layers=num_hidden_layers)
    inputs = keras.Input(shape=(int(latent_dim),), name=f"{name}_input")
    x, _ = dense_stack(inputs, hidden_units, num_hidden_layers, name, dropout, initializer)
    outputs = keras.layers.Dense(
        int(output_dim), kernel_initializer=kernel_initializer(initializer),
        name=f"{name}_output")(x)
    return keras.Model(inputs, float32_output(outputs, f"{name}_float32"), name=name)


def dense_unet(input_dim=640, hidden_units=128, latent_dim=8, num_hidden_layers=3,
               dropout=0.0, initializer="glorot_uniform", name="generator"):
    """Encoder-decoder with skip concatenations between mirrored layers.

    The fully connected form of Skip-GANomaly's U-Net generator (paper §3.2.3,
    Figure 5): decoder layer i receives the concatenation of decoder layer
    i-1 and encoder layer L-1-i, so every encoder layer is copied to its
    mirror.

    Returns:
        Functional keras.Model `(batch, input_dim) -> (batch, input_dim)`.
    """
    _check_sizes(input_dim=input_dim, hidden_units=hidden_units, latent_dim=latent_dim,
                 num_hidden_layers=num_hidden_layers)
    inputs = keras.Input(shape=(int(input_dim),), name=f"{name}_input")
    x, skips = dense_stack(inputs, hidden_units, num_hidden_layers, f"{name}_down", dropout,
                           initializer)
    x = dense_block(x, latent_dim, f"{name}_latent", initializer=initializer)
    for i, skip in enumerate(reversed(skips)):
        x = dense_block(x, hidden_units, f"{name}_up_{i}", dropout=dropout,
                        initializer=initializer)
        x = keras.layers.Concatenate(name=f"{name}_skip_{i}")([x, skip])
    outputs = keras.layers.Dense(
        int(input_dim), kernel_initializer=kernel_initializer(initializer),
        name=f"{name}_output")(x)
    return keras.Model(inputs, float32_output(outputs, f"{name}_float32"), name=name)


def dense_discriminator(input_dim=640, hidden_units=128, num_hidden_layers=3,
                        feature_dim=None, latent_dim=None, dropout=0.0,
                        initializer="glorot_uniform", name="discriminator"):
    """A discriminator that returns its logit and its feature layer.

    Three forms, all `[Dense(h) -> BN -> ReLU] x L` on the input vector:
    - `feature_dim=None, latent_dim=None`: the features are the last hidden
      layer (GANomaly: every layer but the classifier, reference A1);
    - `feature_dim=k`: one more block of k units gives the features
      (Skip-GANomaly: the DCGAN encoder down to nz channels, reference A2);
    - `latent_dim=k`: a second input z goes through its own block, and
      `concat(x-branch, z-branch) -> Dense(h) -> BN -> ReLU` gives the
      features (EGBAD's joint D(z, x), reference A3).
    The logit is `Dense(1)` on the features (the sigmoid lives in the loss).

    Returns:
        Functional keras.Model `x` (or `[x, z]`) -> `{"logit": (batch, 1),
        "features": (batch, d)}`.
    """
    _check_sizes(input_dim=input_dim, hidden_units=hidden_units,
                 num_hidden_layers=num_hidden_layers)
    x_in = keras.Input(shape=(int(input_dim),), name=f"{name}_input")
    x, _ = dense_stack(x_in, hidden_units, num_hidden_layers, name, dropout, initializer)
    inputs = x_in
    if latent_dim is not None:
        z_in = keras.Input(shape=(int(latent_dim),), name=f"{name}_latent_input")
        z = dense_block(z_in, hidden_units, f"{name}_z", dropout=dropout,
                        initializer=initializer)
        x = keras.layers.Concatenate(name=f"{name}_joint")([x, z])
        x = dense_block(x, hidden_units, f"{name}_features", dropout=dropout,
                        initializer=initializer)
        inputs = [x_in, z_in]
    elif feature_dim is not None:
        x = dense_block(x, int(feature_dim), f"{name}_features", initializer=initializer)
    logit = keras.layers.Dense(1, kernel_initializer=kernel_initializer(initializer),
                               name=f"{name}_logit")(x)
    outputs = float32_output({"logit": logit, "features": x}, f"{name}_float32")
    return keras.Model(inputs, outputs, name=name)
