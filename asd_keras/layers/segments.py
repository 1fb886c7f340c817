"""Segment-wise processing of clips and pooling of feature maps.

Networks that cannot see a whole clip at once (the separator of the
source-separation proxy task works on 2-second segments, Shin & Lee §III-D)
split each clip into segments, describe each segment, and aggregate the
segments' vectors into one clip vector. `SplitSegments` and
`MergeSegments` do the two reshapes inside a Functional model, so an
exported model maps a clip to its vector in one call; `PooledFeatureMaps`
turns a list of `(batch, time, freq, channels)` feature maps (the
separator's extraction points) into one vector per example.
"""

import keras
from keras import ops

from asd_keras.features.precision import Float32Layer

AGGREGATIONS = ("mean", "max")
POOLINGS = ("frequency", "channel", "frequency_mean")


@keras.saving.register_keras_serializable(package="asd_keras")
class SplitSegments(Float32Layer):
    """`(batch, samples)` -> `(batch * segments, segment_length)`.

    The clip is cut into `samples // segment_length` consecutive segments;
    a tail shorter than one segment is dropped (clips are brought to a
    whole number of segments before, e.g. by `FixedLength`).

    Args:
        segment_length: int. Samples per segment.
    """

    def __init__(self, segment_length: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(segment_length, bool) or int(segment_length) < 1:
            raise ValueError(f"segment_length must be >= 1; received {segment_length!r}.")
        self.segment_length = int(segment_length)

    def call(self, waveform):
        count = ops.shape(waveform)[1] // self.segment_length
        kept = waveform[:, :count * self.segment_length]
        return ops.reshape(kept, (-1, self.segment_length))

    def compute_output_shape(self, input_shape):
        return (None, self.segment_length)

    def get_config(self):
        config = super().get_config()
        config.update(segment_length=self.segment_length)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class MergeSegments(Float32Layer):
    """`(batch * segments, dim)` -> `(batch, dim)`: each clip's segments
    aggregated, the inverse grouping of `SplitSegments`.

    Args:
        num_segments: int. Segments per clip.
        aggregation: str. `"mean"` or `"max"` over the segments.
    """

    def __init__(self, num_segments: int, aggregation: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_segments, bool) or int(num_segments) < 1:
            raise ValueError(f"num_segments must be >= 1; received {num_segments!r}.")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; received "
                             f"{aggregation!r}.")
        self.num_segments = int(num_segments)
        self.aggregation = aggregation

    def call(self, values):
        grouped = ops.reshape(values, (-1, self.num_segments, ops.shape(values)[-1]))
        if self.aggregation == "max":
            return ops.max(grouped, axis=1)
        return ops.mean(grouped, axis=1)

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(num_segments=self.num_segments, aggregation=self.aggregation)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class PooledFeatureMaps(Float32Layer):
    """A list of `(batch, time, freq, channels)` maps -> one `(batch, dim)` vector.

    Each map is pooled, and the pooled vectors are concatenated in list
    order. Shin & Lee (§III-D) apply "channel-wise average pooling ... to
    each extraction point" and concatenate the pooled vectors "along the
    time axis"; the layout is open, so three readings are offered:

    - `"frequency"` (default): each map averaged over channels and time,
      a frequency profile of `freq` values; dim = points x freq;
    - `"channel"`: each map averaged over time and frequency (global
      average pooling per channel); dim = points x channels;
    - `"frequency_mean"`: the channel-averaged maps joined along time and
      averaged over it: the mean of the points' frequency profiles; dim =
      freq.

    Args:
        pooling: str. One of `"frequency"`, `"channel"`, `"frequency_mean"`.
    """

    def __init__(self, pooling: str = "frequency", **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; received {pooling!r}.")
        self.pooling = pooling

    def call(self, maps):
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        if self.pooling == "channel":
            return ops.concatenate([ops.mean(m, axis=(1, 2)) for m in maps], axis=-1)
        profiles = [ops.mean(m, axis=(1, 3)) for m in maps]
        if self.pooling == "frequency_mean":
            return ops.mean(ops.stack(profiles, axis=1), axis=1)
        return ops.concatenate(profiles, axis=-1)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else [input_shape]
        if self.pooling == "channel":
            return (shapes[0][0], sum(s[3] for s in shapes))
        if self.pooling == "frequency_mean":
            return (shapes[0][0], shapes[0][2])
        return (shapes[0][0], sum(s[2] for s in shapes))

    def get_config(self):
        config = super().get_config()
        config.update(pooling=self.pooling)
        return config
