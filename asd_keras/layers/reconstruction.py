"""Reconstruction residuals of a vector autoencoder over a clip's frames."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="asd_keras")
class FrameReconstruction(keras.layers.Layer):
    """Runs a vector autoencoder on every frame vector of a clip; summarises
    the residuals per clip.

    With residual `r_t = x_t - AE(x_t)` of each stacked vector `t`:

    - `squared_error`: the clip mean of `r_t ** 2`, element-wise, `(batch,
      dim)`; its mean over `dim` is the MSE score of the DCASE baselines
      (reference dcase.md 2.4);
    - `residual`: the clip mean of the residual chunks, `r_t` cut into
      `dim // chunk_dim` chunks of `chunk_dim` values (one per context
      frame), `(batch, chunk_dim)`: the vector that MAHALA scores
      (reference dcase.md 3);
    - `absolute_error`: the clip mean of `|r_t|`, element-wise, `(batch,
      dim)`: Shin & Lee's element-wise reconstruction error (their AE is
      trained with the MAE, paper Table I); its mean over `dim` is the
      clip's MAE (Eq. 6) over the stacked vectors.

    Args:
        autoencoder: `keras.Model` from `(n, dim)` to `(n, dim)`.
        chunk_dim: int. Chunk size (`n_mels`); must divide `dim`.

    Call arguments:
        vectors: float tensor `(batch, vectors, dim)`.

    Returns:
        dict with `squared_error` and `absolute_error` `(batch, dim)` and
        `residual` `(batch, chunk_dim)`.
    """

    def __init__(self, autoencoder, chunk_dim: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(autoencoder, dict):
            autoencoder = keras.saving.deserialize_keras_object(autoencoder)
        self.autoencoder = autoencoder
        self.dim = int(autoencoder.output_shape[-1])
        if int(chunk_dim) < 1 or self.dim % int(chunk_dim):
            raise ValueError(f"chunk_dim must divide the autoencoder's size {self.dim}; "
                             f"received {chunk_dim!r}.")
        self.chunk_dim = int(chunk_dim)

    def call(self, vectors):
        shape = ops.shape(vectors)
        flat = ops.reshape(vectors, (-1, self.dim))
        residual = flat - self.autoencoder(flat, training=False)
        residual = ops.reshape(residual, (shape[0], -1, self.dim))
        chunks = ops.reshape(residual, (shape[0], -1, self.chunk_dim))
        return {"squared_error": ops.mean(ops.square(residual), axis=1),
                "residual": ops.mean(chunks, axis=1),
                "absolute_error": ops.mean(ops.abs(residual), axis=1)}

    def compute_output_shape(self, input_shape):
        return {"squared_error": (input_shape[0], self.dim),
                "residual": (input_shape[0], self.chunk_dim),
                "absolute_error": (input_shape[0], self.dim)}

    def get_config(self):
        config = super().get_config()
        config.update(autoencoder=keras.saving.serialize_keras_object(self.autoencoder),
                      chunk_dim=self.chunk_dim)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class FeatureMean(keras.layers.Layer):
    """The mean over the last axis: `(batch, dim)` to `(batch,)`.

    The MSE score of the DCASE autoencoders when given the clip-mean
    squared residuals (`FrameReconstruction`'s `squared_error`).
    """

    def call(self, features):
        return ops.mean(features, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])
