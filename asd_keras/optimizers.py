"""AdamW variants: per-layer learning rates, and a lean graph for deep networks.

- `LayerwiseAdamW`: per-layer learning rates (layer-wise learning-rate decay).
- `LeanAdamW`: Keras' AdamW, with the step's scalars computed once per step
  instead of once per variable, so a traced training step of a network with
  hundreds of variables (a ResNet-152 classifier has 467) stays small.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="asd_keras")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is scaled per layer.

    Layer-wise learning-rate decay (BEiT, data2vec and EAT fine-tuning):
    block `i` of `L` learns at `decay ** (L - i)` times the base rate, so the
    pre-trained lower layers move least. Gradient scaling cannot do this
    under Adam, whose update is invariant to the gradient's scale, so the
    scale multiplies the learning rate in `update_step`.

    Args:
        layer_scales: dict `{layer name: scale}`. A variable takes the scale
            of the first component of its path (`"blocks_3_attn/kernel"`)
            that is a key; others learn at the base rate. A scale of 0
            freezes a layer's weights (its weight decay included).
        **kwargs: `keras.optimizers.AdamW` arguments.
    """

    def __init__(self, layer_scales=None, **kwargs):
        super().__init__(**kwargs)
        self.layer_scales = {str(k): float(v) for k, v in (layer_scales or {}).items()}
        bad = {k: v for k, v in self.layer_scales.items() if v < 0}
        if bad:
            raise ValueError(f"layer_scales must be >= 0; received {bad}.")
        self._scales = []

    def scale_of(self, path):
        """The learning-rate scale of a variable path."""
        for part in str(path).split("/"):
            if part in self.layer_scales:
                return self.layer_scales[part]
        return 1.0

    def build(self, var_list):
        super().build(var_list)
        self._scales = [self.scale_of(v.path) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        if scale == 0.0:
            return
        super().update_step(gradient, variable,
                            learning_rate if scale == 1.0 else learning_rate * scale)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not any(s == 0.0 for s in self._scales):
            return super()._apply_weight_decay(variables)
        # Frozen (scale 0) layers take no weight decay either.
        return super()._apply_weight_decay(
            [v for v in variables if self.scale_of(v.path) != 0.0])

    def get_config(self):
        config = super().get_config()
        config["layer_scales"] = dict(self.layer_scales)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class LeanAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` whose per-step scalars are computed once a step.

    Keras' Adam recomputes, for every variable, the step count, both
    `beta ** step` powers and the bias-corrected rate, and AdamW's weight
    decay evaluates the learning-rate schedule again for every variable. In
    a traced training step that is about 45 graph ops a variable: 59 % of a
    ResNet-50 classifier step's ops (7248 of 12315), each of which Python
    tracing and Grappler process one by one. Here the rate (schedule included) and the
    bias-corrected rate `lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)` are
    computed once at the start of `apply`, and every variable's update reuses
    them; the arithmetic is Keras' own, in the same order, so the updates
    are the same numbers. A `learning_rate` argument other than the step's
    own (a subclass scaling it per layer) falls back to Keras' update.

    Args:
        *args: `keras.optimizers.AdamW` arguments (AMSGrad included).
        **kwargs: `keras.optimizers.AdamW` arguments (AMSGrad included).

    Example:
    >>> optimizer = LeanAdamW(learning_rate=1e-3, weight_decay=1e-2)
    >>> model.compile(optimizer=optimizer, loss="mse")  # doctest: +SKIP
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._step_scalars = None

    def _backend_apply_gradients(self, grads, trainable_variables):
        learning_rate = super()._get_current_learning_rate()
        lr = ops.cast(learning_rate, "float32")
        local_step = ops.cast(self.iterations + 1, "float32")
        beta_1_power = ops.power(ops.cast(self.beta_1, "float32"), local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, "float32"), local_step)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        # Held for this step only: `_get_current_learning_rate` (weight decay,
        # `_backend_update_step`) and `update_step` read them back.
        self._step_scalars = {
            "learning_rate": learning_rate, "alpha": alpha,
            # Python floats would become one constant op per variable.
            "one_minus_beta_1": ops.convert_to_tensor(1 - self.beta_1, "float32"),
            "one_minus_beta_2": ops.convert_to_tensor(1 - self.beta_2, "float32"),
            "epsilon": ops.convert_to_tensor(self.epsilon, "float32")}
        try:
            return super()._backend_apply_gradients(grads, trainable_variables)
        finally:
            self._step_scalars = None

    def _get_current_learning_rate(self):
        if self._step_scalars is not None:
            return self._step_scalars["learning_rate"]
        return super()._get_current_learning_rate()

    def update_step(self, gradient, variable, learning_rate):
        scalars = self._step_scalars
        if scalars is None or learning_rate is not scalars["learning_rate"]:
            return super().update_step(gradient, variable, learning_rate)
        gradient = ops.cast(gradient, variable.dtype)
        alpha, one_minus_beta_1, one_minus_beta_2, epsilon = (
            ops.cast(scalars[k], variable.dtype)
            for k in ("alpha", "one_minus_beta_1", "one_minus_beta_2", "epsilon"))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        # Keras' Adam.update_step from here on, term for term.
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus_beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v),
                                        one_minus_beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha),
                                             ops.add(ops.sqrt(v), epsilon)))


@keras.saving.register_keras_serializable(package="asd_keras")
class PerUpdateSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule counted in optimizer updates under gradient
    accumulation.

    A Keras 3 optimizer built with `gradient_accumulation_steps=k` applies
    one update every `k` calls, and its `iterations` counts updates, but it
    evaluates a schedule at its call counter (Keras 3.15:
    `_get_current_learning_rate` reads `_iterations`), so a warm-up or decay
    written in updates would run `k` times too fast. The update `u`
    (0-based) is applied at call `u k + k - 1`, where this schedule gives
    `schedule((u k + k - 1) // k) = schedule(u)`: the rate the update has
    without accumulation. AdamW's weight decay reads the same rate; Adam's
    bias correction already counts updates (`iterations`).

    Args:
        schedule: `keras.optimizers.schedules.LearningRateSchedule`, in
            optimizer updates.
        steps: int >= 1. The optimizer's `gradient_accumulation_steps`.

    Example:
    >>> cosine = keras.optimizers.schedules.CosineDecay(1e-4, 1000)
    >>> optimizer = keras.optimizers.AdamW(
    ...     PerUpdateSchedule(cosine, 4), gradient_accumulation_steps=4)
    """

    def __init__(self, schedule, steps):
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError("schedule must be a keras.optimizers.schedules."
                             f"LearningRateSchedule; received {schedule!r}.")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer; received {steps!r}.")
        self.schedule = schedule
        self.steps = steps

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.steps))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "steps": self.steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
