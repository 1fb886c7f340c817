"""Mahalanobis distance to the nearest of several Gaussian components."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="asd_keras")
class MahalanobisDistance(keras.layers.Layer):
    """Minimum (squared) Mahalanobis distance over components.

    `d_c(x) = (x - mu_c)^T P_c (x - mu_c)` with each component's mean `mu_c`
    and precision matrix `P_c`, non-trainable weights set after fitting
    (`asd_keras.backends.mahalanobis`). The output is `min_c d_c(x)`, or its
    square root when `squared=False`.

    Args:
        num_components: int. Number of (mean, precision) pairs, e.g. 1 for
            the global MD, 2 for source and target domains.
        dim: int. Feature size.
        squared: bool. Return the squared distance. Defaults to `True`.

    Call arguments:
        features: float tensor `(batch, dim)`.

    Returns:
        float tensor `(batch,)`.
    """

    def __init__(self, num_components: int, dim: int, squared: bool = True, **kwargs):
        super().__init__(**kwargs)
        if int(num_components) < 1 or int(dim) < 1:
            raise ValueError(f"num_components and dim must be >= 1; received "
                             f"{num_components!r} and {dim!r}.")
        self.num_components = int(num_components)
        self.dim = int(dim)
        self.squared = bool(squared)

    def build(self, input_shape):
        self.means = self.add_weight(shape=(self.num_components, self.dim),
                                     initializer="zeros", trainable=False, name="means")
        self.precisions = self.add_weight(
            shape=(self.num_components, self.dim, self.dim), initializer="zeros",
            trainable=False, name="precisions")

    def call(self, features):
        centred = ops.expand_dims(features, 1) - ops.expand_dims(self.means, 0)  # (b, c, d)
        projected = ops.einsum("bcd,cde->bce", centred, self.precisions)
        distances = ops.sum(projected * centred, axis=-1)
        # Rounding can give tiny negatives for a point on the mean.
        distances = ops.min(ops.maximum(distances, 0.0), axis=1)
        return distances if self.squared else ops.sqrt(distances)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(num_components=self.num_components, dim=self.dim,
                      squared=self.squared)
        return config
