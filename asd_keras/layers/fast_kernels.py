"""Keras layers with the math of `Conv2D` and `BatchNormalization`, computed
by faster CPU kernels.

Profiling the Wilkinghoff network's training step on a 2-core CPU
(benchmarks/bench_wilkinghoff.py, `--kernels`) showed two avoidable costs:

- Keras 3's `BatchNormalization` computes batch moments and the
  normalisation as separate element-wise ops (and differentiates them op by
  op), where TensorFlow has one fused kernel (`FusedBatchNormV3`, oneDNN's
  on x86) for the forward and one for the backward pass.
- The first convolution sees a single-channel spectrogram (7 x 7 kernel,
  stride 2); oneDNN's kernels for one input channel, and above all their
  gradients, run far below the speed of the rest of the network. A strided
  convolution equals a stride-1 convolution of the input's polyphase
  components (space-to-depth), which has `stride**2` channels.

Both compute the same function (differences are float rounding, about
1e-6 relative), keep the weights, names and configuration of the Keras
layers, and load into plain `Conv2D` / `BatchNormalization` layers and back.
"""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="asd_keras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training pass uses TensorFlow's
    fused kernel.

    In training, on the TensorFlow backend, for float32 inputs whose axes
    after `axis` all have size 1 (channels last; `(batch, frames, bins, 1)`
    with `axis=-2`), the batch statistics and the normalisation come from
    `FusedBatchNormV3`; the moving averages are updated with the biased
    batch variance, exactly as the Keras layer does. Everything else
    (inference, masks, renorm, synchronized statistics, other backends or
    dtypes) is the Keras layer's own code, so inference is unchanged.
    Takes the arguments of `keras.layers.BatchNormalization`.
    """

    def _fused_shape(self, inputs):
        """The 4-D channels-last shape for the fused kernel, or None."""
        shape = inputs.shape
        axis = self.axis if self.axis >= 0 else self.axis + len(shape)
        if len(shape) < 2 or axis == 0 or shape[axis] is None:
            return None
        if any(size != 1 for size in shape[axis + 1:]):
            return None
        if len(shape) == 4 and axis == 3:
            return ()  # already (batch, height, width, channels)
        return (-1, 1, int(shape[axis]))

    def call(self, inputs, training=None, mask=None):
        fused = None
        if (training and self.trainable and mask is None and not self.renorm
                and not self.synchronized and keras.backend.backend() == "tensorflow"
                and keras.backend.standardize_dtype(inputs.dtype) == "float32"):
            fused = self._fused_shape(inputs)
        if fused is None:
            return super().call(inputs, training=training, mask=mask)
        shape = tf.shape(inputs)
        channels = int(inputs.shape[self.axis])
        x = inputs if fused == () else tf.reshape(
            inputs, tf.concat([shape[:1], tf.constant(fused, tf.int32)], 0))
        gamma = self.gamma if self.scale else tf.ones([channels], inputs.dtype)
        beta = self.beta if self.center else tf.zeros([channels], inputs.dtype)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the Bessel-corrected variance for the moving
        # average; Keras averages the biased one (0 for a single value).
        count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels, inputs.dtype)
        variance = tf.where(count > 1, variance * (count - 1) / tf.maximum(count, 1), 0.0)
        self.moving_mean.assign(self.moving_mean * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        return y if fused == () else tf.reshape(y, shape)


def _phase_geometry(size, kernel, stride):
    """`(outputs, pad_before, pad_after, taps)` of one axis of a strided
    "same" convolution computed on polyphase components."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    taps = -(-kernel // stride)
    before = total // 2
    return outputs, before, (outputs + taps - 1) * stride - size - before, taps


@keras.saving.register_keras_serializable(package="asd_keras")
class PolyphaseConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose strided "same" convolution runs on the
    input's polyphase components.

    With strides `(sy, sx)`, the padded input is split into its `sy * sx`
    phases (space-to-depth) and convolved at stride 1 with the kernel
    zero-padded to a multiple of the strides and split the same way: the
    same sums in another order. For one input channel (the spectrogram)
    the phases give the convolution `sy * sx` channels, on which oneDNN's
    kernels and their gradients are faster (benchmarks/bench_wilkinghoff.py
    `--kernels`). Other settings (stride 1, "valid" padding, dilation,
    groups, channels first) are `Conv2D`'s own code. Takes the arguments of
    `keras.layers.Conv2D`; the kernel has `Conv2D`'s shape.
    """

    def _polyphase(self, inputs):
        return (self.padding == "same" and self.data_format == "channels_last"
                and self.groups == 1 and tuple(self.dilation_rate) == (1, 1)
                and tuple(self.strides) != (1, 1) and inputs.shape[1] is not None
                and inputs.shape[2] is not None)

    def convolution_op(self, inputs, kernel):
        if not self._polyphase(inputs):
            return super().convolution_op(inputs, kernel)
        (sy, sx), (ky, kx) = self.strides, self.kernel_size
        rows, top, bottom, qy = _phase_geometry(int(inputs.shape[1]), ky, sy)
        cols, left, right, qx = _phase_geometry(int(inputs.shape[2]), kx, sx)
        channels = int(inputs.shape[3])
        x = ops.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]])
        x = ops.reshape(x, (-1, rows + qy - 1, sy, cols + qx - 1, sx, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)),
                        (-1, rows + qy - 1, cols + qx - 1, sy * sx * channels))
        k = ops.pad(kernel, [[0, qy * sy - ky], [0, qx * sx - kx], [0, 0], [0, 0]])
        k = ops.reshape(k, (qy, sy, qx, sx, channels, self.filters))
        k = ops.reshape(ops.transpose(k, (0, 2, 1, 3, 4, 5)),
                        (qy, qx, sy * sx * channels, self.filters))
        return ops.conv(x, k, strides=1, padding="valid", data_format="channels_last")

