"""A per-vector anomaly detector run over a clip's frame vectors."""

import keras
from keras import ops

AGGREGATIONS = ("mean", "max")


@keras.saving.register_keras_serializable(package="asd_keras")
class VectorScores(keras.layers.Layer):
    """Scores every frame vector of a clip with a detector; aggregates per clip.

    The GAN detectors (`asd_keras.models.gan`) give one anomaly score per
    stacked log-mel vector; a clip's score is the mean (the paper's "average
    error", default) or the maximum of its vectors' scores.

    Args:
        detector: `keras.Model` from `(n, dim)` vectors to `(n,)` scores, run
            in inference mode.
        aggregation: str. `"mean"` or `"max"` over the clip's vectors.

    Call arguments:
        vectors: float tensor `(batch, vectors, dim)`.

    Returns:
        float tensor `(batch, 1)`: the clip scores.
    """

    def __init__(self, detector, aggregation: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if isinstance(detector, dict):
            detector = keras.saving.deserialize_keras_object(detector)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; received "
                             f"{aggregation!r}.")
        self.detector = detector
        self.aggregation = str(aggregation)

    def call(self, vectors):
        shape = ops.shape(vectors)
        flat = ops.reshape(vectors, (-1, vectors.shape[-1]))
        scores = ops.reshape(self.detector(flat, training=False), (shape[0], shape[1]))
        if self.aggregation == "max":
            return ops.max(scores, axis=1, keepdims=True)
        return ops.mean(scores, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(detector=keras.saving.serialize_keras_object(self.detector),
                      aggregation=self.aggregation)
        return config
