"""Optimizers with per-layer learning rates (layer-wise learning-rate decay)."""

import keras


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
