"""Classification heads on an embedding: (sub-cluster) AdaCos, ArcFace,
softmax and compactness.

Every head is called on `[embedding, labels]` (labels are the possibly
mixed-up targets) and returns the per-class output stacked with the labels,
shape `(batch, classes, channels)`, so the loss reads the mixed targets from
`y_pred` as the reference does (reference wilkinghoff.md §3 "Output and loss
head"):

- angular and softmax heads: channel 0 = class probabilities,
  channel 1 = targets;
- `CompactnessHead`: channel 0 = squared distances to the class centres,
  channel 1 = targets, channel 2 (with a classifier) = softmax probabilities.

Each head exposes `class_centers()` -> `(classes, centres per class, dim)`
unit vectors, used by the compactness monitor.
"""

import math

import keras
import numpy as np
from keras import ops

from asd_keras.features.precision import Float32Layer

EPSILON = 1e-7
SCALE_RULES = ("reference", "adacos")


def _unit(x, axis=-1):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-24))


def _stack(outputs, labels):
    return ops.stack([outputs, ops.cast(labels, outputs.dtype)], axis=-1)


def initial_adacos_scale(num_centres):
    """`sqrt(2) * ln(num_centres - 1)`, the AdaCos starting scale."""
    if num_centres < 2:
        raise ValueError(
            "AdaCos needs at least 2 centres in all (classes x sub-clusters); "
            f"received {num_centres}. Use more classes or sub-clusters."
        )
    return math.sqrt(2.0) * math.log(num_centres - 1)


def adaptive_scale(scale, cosines, labels, num_subclusters, rule="reference"):
    """The per-batch AdaCos scale update.

    Args:
        scale: scalar, the current scale `s`.
        cosines: `(batch, classes * K)` cosines to the centres, class-major.
        labels: `(batch, classes)` (mixed) targets.
        num_subclusters: int K.
        rule: `"reference"`: Wilkinghoff's SCAdaCos (reference
            wilkinghoff.md §4 "Scale s"): `M = max s*cos` over batch and
            centres, `B = mean_i sum_j exp(s*cos_ij - M)` over ALL centres,
            `theta_class = sum_j y_rep*theta * count_nonzero(y)`,
            `theta_med` its upper median, `s' = (M + ln B) / cos(min(pi/4,
            theta_med)) + eps`. `"adacos"`: the AdaCos paper (Definition 3):
            `B` sums over the centres of the other classes only and
            `theta_med` is the median angle to the own class (label-weighted
            mean over mixed classes and sub-clusters).

    Returns:
        The new scale (a scalar tensor).
    """
    theta = ops.arccos(ops.clip(cosines, -1.0 + EPSILON, 1.0 - EPSILON))
    repeated = ops.repeat(labels, num_subclusters, axis=-1)
    quarter = math.pi / 4.0
    if rule == "reference":
        logits = scale * cosines
        top = ops.max(logits)
        b_avg = ops.mean(ops.sum(ops.exp(logits - top), axis=-1))
        nonzero = ops.cast(ops.count_nonzero(labels, axis=-1), cosines.dtype)
        theta_class = ops.sum(repeated * theta, axis=-1) * nonzero
        median = ops.quantile(theta_class, 0.5, method="nearest")
        return (top + ops.log(b_avg)) / ops.cos(ops.minimum(quarter, median)) + EPSILON
    others = ops.cast(ops.equal(repeated, 0.0), cosines.dtype)
    b_avg = ops.mean(ops.sum(others * ops.exp(scale * cosines), axis=-1))
    theta_own = ops.sum(repeated * theta, axis=-1) / ops.maximum(
        ops.sum(repeated, axis=-1), EPSILON
    )
    median = ops.quantile(theta_own, 0.5, method="nearest")
    return ops.log(b_avg) / ops.cos(ops.minimum(quarter, median))


@keras.saving.register_keras_serializable(package="asd_keras")
class SubClusterAdaCos(Float32Layer):
    """Sub-cluster AdaCos head (Wilkinghoff's SCAdaCos).

    `classes x num_subclusters` centres, glorot-uniform and fixed by default;
    cosines scaled by an adaptive `s` that is updated from every training
    batch before it is used (reference wilkinghoff.md §4); softmax over all
    centres summed over each class's sub-clusters.

    Args:
        num_classes: int.
        num_subclusters: int K. Defaults to `16`; `1` gives AdaCos.
        trainable_centers: bool. Defaults to False (fixed random centres).
        scale_rule: str. `"reference"` or `"adacos"`, see `adaptive_scale`.
        seed: int or None. Seed of the centre initialiser.
    """

    def __init__(self, num_classes, num_subclusters=16, trainable_centers=False,
                 scale_rule="reference", seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1 or int(num_subclusters) < 1:
            raise ValueError(
                "num_classes and num_subclusters must be >= 1; received "
                f"{num_classes!r} and {num_subclusters!r}."
            )
        if scale_rule not in SCALE_RULES:
            raise ValueError(
                f"scale_rule must be one of {SCALE_RULES}; received {scale_rule!r}."
            )
        self.num_classes = int(num_classes)
        self.num_subclusters = int(num_subclusters)
        self.trainable_centers = bool(trainable_centers)
        self.scale_rule = scale_rule
        self.seed = seed
        self.initial_scale = initial_adacos_scale(self.num_classes * self.num_subclusters)

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.centers = self.add_weight(
            name="centers",
            shape=(dim, self.num_classes * self.num_subclusters),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
            trainable=self.trainable_centers,
        )
        self.scale = self.add_weight(
            name="scale",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_scale),
            trainable=False,
        )

    def cosines(self, embeddings):
        """Cosine of each embedding with every sub-cluster centre.

        Args:
            embeddings: `(batch, dim)` embeddings.

        Returns:
            `(batch, classes * sub-clusters)` cosines.
        """
        return ops.matmul(_unit(embeddings), _unit(self.centers, axis=0))

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        labels = ops.cast(labels, embeddings.dtype)
        cosines = self.cosines(embeddings)
        if training:
            # The current batch already uses the updated scale (reference §4).
            self.scale.assign(ops.stop_gradient(adaptive_scale(
                self.scale, cosines, labels, self.num_subclusters, self.scale_rule
            )))
        probabilities = ops.softmax(self.scale * cosines, axis=-1)
        probabilities = ops.sum(
            ops.reshape(probabilities, (-1, self.num_classes, self.num_subclusters)),
            axis=-1,
        )
        return _stack(probabilities, labels)

    def class_centers(self):
        """The class centres as unit vectors, for the compactness statistics.

        Returns:
            A NumPy array `(classes, centres per class, dim)`.
        """
        centres = keras.ops.convert_to_numpy(self.centers).T
        centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        return centres.reshape(self.num_classes, self.num_subclusters, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes, 2)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_subclusters=self.num_subclusters,
            trainable_centers=self.trainable_centers,
            scale_rule=self.scale_rule,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class AdaCos(SubClusterAdaCos):
    """AdaCos: one centre per class (`SubClusterAdaCos` with K = 1)."""

    def __init__(self, num_classes, trainable_centers=False, scale_rule="reference",
                 seed=None, **kwargs):
        kwargs.pop("num_subclusters", None)
        super().__init__(num_classes, 1, trainable_centers, scale_rule, seed, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("num_subclusters")
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class ArcFace(Float32Layer):
    """ArcFace head: `s * cos(theta + m * y_j)` logits (Definition 2).

    The margin is weighted by each class's (mixed) target, which is the
    standard ArcFace for one-hot targets.

    Args:
        num_classes: int.
        scale: float s. Defaults to `30.0`.
        margin: float m in radians. Defaults to `0.5`.
        trainable_centers: bool. Defaults to True, as the reference's
            ArcFace (reference wilkinghoff.md §4 "ArcFace").
        seed: int or None.
    """

    def __init__(self, num_classes, scale=30.0, margin=0.5, trainable_centers=True,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(margin) <= math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2]; received {margin!r}.")
        if float(scale) <= 0:
            raise ValueError(f"scale must be positive; received {scale!r}.")
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.margin = float(margin)
        self.trainable_centers = bool(trainable_centers)
        self.seed = seed

    def build(self, input_shape):
        self.centers = self.add_weight(
            name="centers",
            shape=(input_shape[0][-1], self.num_classes),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
            trainable=self.trainable_centers,
        )

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        labels = ops.cast(labels, embeddings.dtype)
        cosines = ops.matmul(_unit(embeddings), _unit(self.centers, axis=0))
        theta = ops.arccos(ops.clip(cosines, -1.0 + EPSILON, 1.0 - EPSILON))
        logits = self.scale * ops.cos(theta + self.margin * labels)
        return _stack(ops.softmax(logits, axis=-1), labels)

    def class_centers(self):
        """The class centres as unit vectors, for the compactness statistics.

        Returns:
            A NumPy array `(classes, centres per class, dim)`.
        """
        centres = keras.ops.convert_to_numpy(self.centers).T
        return (centres / np.linalg.norm(centres, axis=1, keepdims=True))[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes, 2)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, scale=self.scale,
                      margin=self.margin, trainable_centers=self.trainable_centers,
                      seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class SoftmaxHead(Float32Layer):
    """Plain softmax classifier: bias-free dense layer and softmax.

    Args:
        num_classes: int.
        l2: float. Kernel L2 factor. Defaults to `1e-5`.
        seed: int or None.
    """

    def __init__(self, num_classes, l2=1e-5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.l2 = float(l2)
        self.seed = seed

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[0][-1], self.num_classes),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
            regularizer=keras.regularizers.L2(self.l2) if self.l2 else None,
        )

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        probabilities = ops.softmax(ops.matmul(embeddings, self.kernel), axis=-1)
        return _stack(probabilities, labels)

    def class_centers(self):
        """The class centres as unit vectors, for the compactness statistics.

        Returns:
            A NumPy array `(classes, centres per class, dim)`.
        """
        centres = keras.ops.convert_to_numpy(self.kernel).T
        return (centres / np.linalg.norm(centres, axis=1, keepdims=True))[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes, 2)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, l2=self.l2, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class CompactnessHead(Float32Layer):
    """Intra-class compactness head: fixed centres on the unit sphere.

    Outputs the squared Euclidean distances `||x/|x| - c_j||^2` between the
    normalised embedding and every class centre (Definition 1 of the paper,
    one centre per class; the centres are random and fixed, never at the
    network's zero output, so the constant solution is not optimal). With
    `with_classifier=True` it also outputs the softmax probabilities of a
    bias-free dense classifier (the compactness + descriptiveness
    combination).

    Args:
        num_classes: int.
        with_classifier: bool. Defaults to False.
        l2: float. Classifier kernel L2 factor.
        seed: int or None.
    """

    def __init__(self, num_classes, with_classifier=False, l2=1e-5, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.with_classifier = bool(with_classifier)
        self.l2 = float(l2)
        self.seed = seed

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.centers = self.add_weight(
            name="centers",
            shape=(dim, self.num_classes),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
            trainable=False,
        )
        if self.with_classifier:
            self.kernel = self.add_weight(
                name="kernel",
                shape=(dim, self.num_classes),
                initializer=keras.initializers.GlorotUniform(
                    seed=None if self.seed is None else self.seed + 1),
                regularizer=keras.regularizers.L2(self.l2) if self.l2 else None,
            )

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        labels = ops.cast(labels, embeddings.dtype)
        cosines = ops.matmul(_unit(embeddings), _unit(self.centers, axis=0))
        # Lemma 5: for unit vectors ||x - c||^2 = 2 - 2 cos(x, c).
        distances = 2.0 - 2.0 * cosines
        channels = [distances, labels]
        if self.with_classifier:
            channels.append(ops.softmax(ops.matmul(embeddings, self.kernel), axis=-1))
        return ops.stack(channels, axis=-1)

    def class_centers(self):
        """The class centres as unit vectors, for the compactness statistics.

        Returns:
            A NumPy array `(classes, centres per class, dim)`.
        """
        centres = keras.ops.convert_to_numpy(self.centers).T
        return (centres / np.linalg.norm(centres, axis=1, keepdims=True))[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes, 3 if self.with_classifier else 2)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes,
                      with_classifier=self.with_classifier, l2=self.l2,
                      seed=self.seed)
        return config
