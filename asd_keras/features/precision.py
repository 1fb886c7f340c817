"""The base of the layers that compute in float32 under any dtype policy."""

import keras


class Float32Layer(keras.layers.Layer):
    """A `keras.layers.Layer` whose dtype defaults to float32, not the global policy.

    Built inside a mixed-precision network (`dtype_policy="mixed_bfloat16"`
    or `"mixed_float16"`, `asd_keras.models.precision`), such a layer casts
    its 16-bit inputs to float32 (Keras' autocast) and computes in float32.
    It is the base of the layers that break or lose too much in 16 bits:

    - waveform layers (mixup, white noise, length policies, segmenting): a
      16-bit waveform keeps 8 (bfloat16) or 11 (float16) bits per sample;
    - spectral front ends: TensorFlow's STFT and FFT kernels take float32
      only, and a power spectrum spans more decades than 16 bits resolve
      before its logarithm;
    - statistics (normalisation means, variances, pooled statistics):
      differences of close sums cancel;
    - angular-margin heads: `arccos` of cosines near 1 and logits scaled by
      30 or more.

    A `dtype` passed by the caller (or stored in a saved config) wins.
    """

    def __init__(self, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
