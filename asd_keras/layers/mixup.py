"""Mixup of waveforms and class labels, as a layer or inside `tf.data`."""

import keras
import tensorflow as tf
from keras import ops

from asd_keras.features.precision import Float32Layer

LABEL_RULES = ("max", "standard")


def _check(probability, label_rule):
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(
            f"Mixup probability must be in [0, 1]; received {probability!r}."
        )
    if label_rule not in LABEL_RULES:
        raise ValueError(
            f"label_rule must be one of {LABEL_RULES}; received {label_rule!r}."
        )


def mix(inputs, labels, lam, label_rule="max"):
    """Mixes each sample with the batch-reversed partner.

    Args:
        inputs: tensor `(batch, ...)`.
        labels: tensor `(batch, classes)`.
        lam: tensor `(batch,)` of mixing weights of the sample itself (1 for
            a sample that is not mixed).
        label_rule: str. `"standard"`: `lam*y + (1-lam)*y_rev`. `"max"`: the
            reference's `max(lam*y, (1-lam)*y_rev)` (reference wilkinghoff.md
            §4 "Mixup"), which equals the standard label when the classes
            differ and gives `max(lam, 1-lam) < 1` when they agree.

    Returns:
        (mixed inputs, mixed labels).
    """
    lam = ops.cast(lam, inputs.dtype)
    shape = [-1] + [1] * (len(inputs.shape) - 1)
    lam_x = ops.reshape(lam, shape)
    mixed = lam_x * inputs + (1.0 - lam_x) * ops.flip(inputs, axis=0)
    lam_y = ops.reshape(ops.cast(lam, labels.dtype), (-1, 1))
    own = lam_y * labels
    partner = (1.0 - lam_y) * ops.flip(labels, axis=0)
    if label_rule == "max":
        return mixed, ops.maximum(own, partner)
    return mixed, own + partner


def draw_weights(uniform_lam, uniform_gate, probability):
    """Mixing weights from two uniform draws: `U(0,1)` where gated, else 1."""
    return ops.where(uniform_gate < probability, uniform_lam, ops.ones_like(uniform_lam))


@keras.saving.register_keras_serializable(package="asd_keras")
class Mixup(Float32Layer):
    """Mixup of a batch with its reverse, during training only.

    Each sample is mixed with probability `probability` using a weight
    `lam ~ U(0, 1)` (the reference's `alpha=1` branch; reference
    wilkinghoff.md §4 "Mixup"). At inference the inputs pass unchanged.

    Args:
        probability: float. Chance that a sample is mixed. Defaults to `1.0`.
        label_rule: str. `"max"` (reference) or `"standard"`.
        seed: int or None. Seed of the layer's random generator.

    Call arguments:
        inputs: list `[x, y]` with `x` `(batch, ...)` and one-hot `y`
            `(batch, classes)`.
        training: bool.

    Returns:
        list `[x_mixed, y_mixed]`.
    """

    def __init__(self, probability=1.0, label_rule="max", seed=None, **kwargs):
        super().__init__(**kwargs)
        _check(probability, label_rule)
        self.probability = float(probability)
        self.label_rule = label_rule
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        x, y = inputs
        if not training or self.probability == 0.0:
            return [x, y]
        batch = ops.shape(x)[:1]
        lam = keras.random.uniform(batch, seed=self.seed_generator)
        gate = keras.random.uniform(batch, seed=self.seed_generator)
        return list(mix(x, y, draw_weights(lam, gate, self.probability),
                        self.label_rule))

    def compute_output_shape(self, input_shape):
        return list(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, label_rule=self.label_rule,
                      seed=self.seed)
        return config


def mixup_dataset(dataset, probability=1.0, label_rule="max", seed=0):
    """Mixup inside `tf.data`: maps batches `({"waveform", "label"}, y)`.

    The same rule as `Mixup`, with stateless per-batch random draws so the
    pipeline is reproducible. The target `y` becomes the mixed label.
    """
    _check(probability, label_rule)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def apply(batch, pair):
        inputs, _ = batch
        x, y = inputs["waveform"], inputs["label"]
        n = tf.shape(x)[:1]
        pair = tf.cast(pair % (2**31 - 1), tf.int32)
        lam = tf.random.stateless_uniform(n, seed=pair)
        gate = tf.random.stateless_uniform(n, seed=pair[::-1])
        x, y = mix(x, y, draw_weights(lam, gate, probability), label_rule)
        return {"waveform": x, "label": y}, y

    return tf.data.Dataset.zip((dataset, seeds)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE
    )
