"""SimAM: parameter-free attention from an energy function (Yang et al. 2021).

Reference methods.md §D (ZjjConan/SimAM `simam_module.py`): per channel,
over a spatial map with `n = H W - 1`,

    d = (x - mean)^2,  v = sum(d) / n,
    out = x * sigmoid(d / (4 (v + lambda)) + 0.5),  lambda = 1e-4.

`"global"` takes the statistics over the whole map (the original);
`"local"` takes them independently in non-overlapping `tile x tile`
tiles ("An Enhanced Audio Feature Tailored for Anomalous Sound Detection
Based on Pre-trained Models", DCASE 2024, applies both to filter-bank maps
with 32 x 32 tiles). Edge tiles, where a side is not a multiple of `tile`,
are the partial tiles that remain; each uses its own element count (`n` is
its count minus one, at least 1, so a one-element tile keeps its value
times sigmoid(0.5)).
"""

import keras
from keras import ops

from asd_keras.features.precision import Float32Layer

MODES = ("global", "local")


@keras.saving.register_keras_serializable(package="asd_keras")
class SimAM(Float32Layer):
    """Parameter-free SimAM attention over a time x frequency map.

    Args:
        mode: str. `"global"` (statistics over the whole map) or `"local"`
            (per `tile x tile` tile).
        tile: int. Tile side of `"local"` (32 in the enhanced-feature EAT
            paper).
        lam: float. The energy function's lambda (1e-4, SimAM's default).

    Call arguments:
        inputs: float tensor `(batch, H, W)` (one channel, e.g. filter
            banks `(batch, frames, bins)`) or `(batch, H, W, C)`; `"local"`
            needs static `H` and `W`.

    Returns:
        A tensor of the input's shape.
    """

    def __init__(self, mode: str = "global", tile: int = 32, lam: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; received {mode!r}.")
        if int(tile) < 1 or float(lam) <= 0:
            raise ValueError(f"tile must be >= 1 and lam > 0; received tile={tile!r}, "
                             f"lam={lam!r}.")
        self.mode, self.tile, self.lam = mode, int(tile), float(lam)

    def build(self, input_shape):
        if self.mode == "local" and (input_shape[1] is None or input_shape[2] is None):
            raise ValueError("SimAM mode='local' needs static height and width (e.g. a "
                             f"fixed number of frames); received shape {input_shape}.")
        super().build(input_shape)

    def _global(self, x):
        # x: (batch, H, W, C); statistics over H and W.
        count = ops.cast(ops.shape(x)[1] * ops.shape(x)[2], x.dtype)
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        d = ops.square(x - mean)
        v = ops.sum(d, axis=(1, 2), keepdims=True) / ops.maximum(count - 1.0, 1.0)
        return x * ops.sigmoid(d / (4.0 * (v + self.lam)) + 0.5)

    def _local(self, x):
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise ValueError("SimAM mode='local' needs static height and width (e.g. a "
                             f"fixed number of frames); received shape {x.shape}.")
        t = self.tile
        rows, cols = -(-h // t), -(-w // t)
        pad = [[0, 0], [0, rows * t - h], [0, cols * t - w], [0, 0]]
        padded = ops.pad(x, pad)
        mask = ops.pad(ops.ones((1, h, w, 1), x.dtype), pad)

        def tiles(values):
            shape = ops.shape(values)
            return ops.reshape(values, (shape[0], rows, t, cols, t, shape[-1]))

        def per_tile_sum(values):
            return ops.sum(tiles(values), axis=(2, 4), keepdims=True)

        count = per_tile_sum(mask)
        mean = per_tile_sum(padded) / count
        d = ops.square(tiles(padded) - mean) * tiles(mask)
        v = per_tile_sum(d) / ops.maximum(count - 1.0, 1.0)
        out = tiles(padded) * ops.sigmoid(d / (4.0 * (v + self.lam)) + 0.5)
        shape = ops.shape(padded)
        out = ops.reshape(out, shape)
        return out[:, :h, :w, :]

    def call(self, inputs):
        squeeze = len(inputs.shape) == 3
        x = inputs[..., None] if squeeze else inputs
        out = self._global(x) if self.mode == "global" else self._local(x)
        return out[..., 0] if squeeze else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, tile=self.tile, lam=self.lam)
        return config
