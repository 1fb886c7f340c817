"""Two-microphone embedding views (DCASE 2026 near and far channels).

A two-channel extractor (`channel="both"`) gives each clip one vector
`[f_near | f_far]`: the near microphone's embedding, then the far one's,
from the same encoder, layer and pooling. The views below turn such a
paired vector into the single vector a detector scores (Kim et al.,
"Residual View and Prototype Selection for Noise-Aware Anomalous Sound
Detection", DCASE 2026 technical report, §2):

- Residual View: `f_near - alpha * f_far`. The far microphone hears more of
  the hall and less of the machine, so subtracting a part of its embedding
  removes background that both microphones share; `alpha = 0` is the near
  channel alone, a negative `alpha` adds the far channel.
- projection residual: `f_near - (<f_near, f_far> / |f_far|^2) f_far`, the
  part of `f_near` orthogonal to `f_far`: the key PRPS selects prototypes
  with.
"""

import keras
from keras import ops


def split_channels(features):
    """`(near, far)` halves of paired features `(..., 2 * dim)`."""
    dim = features.shape[-1]
    if dim is None or dim % 2:
        raise ValueError("Paired near/far features need an even size (near half, then "
                         f"far half); received size {dim}. Use an extractor with "
                         "channel=both.")
    half = dim // 2
    return features[..., :half], features[..., half:]


def residual_view(features, alpha):
    """`f_near - alpha * f_far` of paired features `(..., 2 * dim)`."""
    near, far = split_channels(features)
    return near - alpha * far


def projection_residual(features, epsilon=1e-12):
    """The projection-residual key `f_near - P_far(f_near)` of paired
    features `(..., 2 * dim)`, with `P_far(x) = (<x, f_far> / (|f_far|^2 +
    epsilon)) f_far` (the report's eq. in §2.2; `epsilon` keeps a silent far
    channel finite, as the authors' code)."""
    near, far = split_channels(features)
    scale = ops.sum(near * far, axis=-1, keepdims=True) / (
        ops.sum(far * far, axis=-1, keepdims=True) + epsilon)
    return near - scale * far


@keras.saving.register_keras_serializable(package="asd_keras")
class ResidualView(keras.layers.Layer):
    """Residual View of paired near/far embeddings: `f_near - alpha * f_far`.

    Args:
        alpha: float. Share of the far embedding subtracted (the report
            fixes 0.5; 0 gives the near channel alone).

    Call arguments:
        features: float tensor `(batch, 2 * dim)`: `[f_near | f_far]`.

    Returns:
        float tensor `(batch, dim)`.

    Example:
    >>> layer = ResidualView(alpha=0.5)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.array([[1.0, 2.0, 4.0, 2.0]])))
    array([[-1.,  1.]], dtype=float32)
    """

    def __init__(self, alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, features):
        return residual_view(features, self.alpha)

    def compute_output_shape(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] % 2:
            raise ValueError("ResidualView needs paired features of even size; received "
                             f"shape {input_shape}.")
        return tuple(input_shape[:-1]) + (input_shape[-1] // 2,)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha)
        return config
