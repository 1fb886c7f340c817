"""Frozen pretrained audio encoders (BEATs, EAT) as training-free extractors.

A clip goes through the encoder's own front end and transformer
(`asd_keras.models.audio_encoders`); the tokens of the chosen layer(s) are
pooled into one vector per clip (`TemporalPooling`: the proxy study's mean
over tokens, GenRep's band-preserving temporal mean, EAT's CLS token, GeM,
GWRP, RDP). Nothing is trained: GenRep (methods.md §B) and Wilkinghoff et
al. 2026 (§B2) score such embeddings with kNN memory banks, Shin & Lee with
Mahalanobis distance and linear probes.

Embeddings are cached on disk, one file per clip holding every layer's
pooled vector, keyed by the encoder's weights, the front-end settings, the
pooling and the clip file (path, size, modification time): a sweep over
layers or over a backend's parameters runs the encoder once per clip. Each
entry is checksummed (`asd_keras.extractors.embedding_cache`, which gives
the size per clip): a damaged one is named in a warning and encoded again.
Memory holds only the asked-for layers of the clips (each batch's every
layer goes to the cache as it is encoded), so a transform of N clips needs
`N x len(layer) x dim` floats, not every layer.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.pipelines import clip_dataset
from asd_keras.data.pipelines import progress_batches
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.embedding_cache import EmbeddingCache
from asd_keras.features.spectral_layers import FixedLength
from asd_keras.layers.pooling import POOLING_MODES
from asd_keras.layers.pooling import TemporalPooling
from asd_keras.models.audio_encoders import ENCODER_TYPES
from asd_keras.models.audio_encoders import PRESETS
from asd_keras.models.audio_encoders import encoder_defaults
from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.audio_encoders import preset_info

logger = logging.getLogger(__name__)

# The channel values of every extractor: 0 (near, and mono files), 1 (far) or
# "both". Runs written before the vocabulary was shared say "near"/"far".
CHANNELS = (0, 1, "both")
_OLD_CHANNEL_NAMES = {"near": 0, "far": 1}
DEFAULT_PRESETS = {"beats": "beats_iter3", "eat": "eat_base"}
CACHE_ENV = "ASD_KERAS_CACHE"
_LOADED = {}
# 2: entries carry a checksum (`EmbeddingCache`).
_CACHE_VERSION = 2


def default_cache_dir():
    """`$ASD_KERAS_CACHE/embeddings`, else `~/.cache/asd-keras/embeddings`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "asd-keras"
    return Path(root) / "embeddings"


@register_extractor("frozen_encoder")
class FrozenEncoderExtractor(FeatureExtractor):
    """Pooled token embeddings of a frozen BEATs or EAT encoder.

    Feature sets are named `layer_<i>`: `layer_0` is the input of the first
    transformer layer, `layer_i` the output of layer `i`.

    Args:
        encoder: str. `"beats"` or `"eat"`.
        preset: str or None. A named configuration (`beats_iter3`,
            `beats_iter3_plus`, `beats_iter3_plus_as2m`, `eat_base`,
            `eat_large`, ...; random weights) or a folder written by
            `asd-keras convert`. None: `beats_iter3` or `eat_base`.
        layer: int, list of int, or None. Layer(s) to give (None: the last).
        pooling: str. One of `TemporalPooling`'s modes: `"mean"`,
            `"band_mean"`, `"cls"` (EAT), `"max"`, `"gem"`, `"gwrp"`, `"rdp"`,
            `"rdp_gem"`.
        pooling_p: float. GeM exponent.
        pooling_r: float. GWRP decay.
        pooling_gamma: float. RDP exponent.
        channel: `0` (the near microphone; mono files), `1` (the far one)
            or `"both"` (the two channels' embeddings concatenated, near
            first). `"near"` and `"far"` are read as 0 and 1.
        clip_seconds: float or None. Zero-pad or cut clips to this length
            first (GenRep pads to 10 s); None keeps each clip's length (then
            clips are encoded one at a time).
        batch_size: int. Clips per encoder call.
        cache_dir: str. `"auto"` (`default_cache_dir()`), a folder, or
            `"none"` for no cache.
        weights_seed: int. Seed of a named configuration's random weights.
        preset_dir: str or None. A folder of converted presets: a named
            `preset` is then the subfolder of that name (which must exist),
            so that a study's configurations switch from random to converted
            weights with one setting.
        num_frames: int or None. Frames the front end pads or crops the
            filter banks to (a multiple of 16). None: the preset's (EAT: 1024
            = 10 s; BEATs: every frame, as the original). EAT uses 512 for
            5 s clips; short clips need fewer (112 for 1 s).
        jit_compile: bool or None. Encode with XLA. None: when clips have
            a fixed length (`clip_seconds`), as every batch then has one
            shape (the last is padded to `batch_size`). On 2 CPU cores XLA
            makes EAT-base 1.05x the PyTorch reference instead of 0.95x
            (`benchmarks/bench_encoders.py`).
        published_map: float or None. The encoder's published AudioSet-2M
            mAP, the proxy study's proxy metric (`proxy_metrics`); None: the
            named configuration's value (Shin & Lee Table VI).
        preset_fingerprint: str or None. Set on first use; a run whose
            preset folder has changed since then is refused.
    """

    trainable = False

    def __init__(self, encoder="beats", preset=None, layer=None, pooling="mean",
                 pooling_p=3.0, pooling_r=0.5, pooling_gamma=1.0, channel=0,
                 clip_seconds=10.0, batch_size=8, cache_dir="auto", weights_seed=0,
                 preset_dir=None, num_frames=None, jit_compile=None, published_map=None,
                 preset_fingerprint=None, sample_rate=16000):
        if isinstance(channel, str):
            channel = _OLD_CHANNEL_NAMES.get(channel, channel)
        checked = validate_config(
            {"encoder": encoder, "pooling": pooling, "pooling_p": pooling_p,
             "pooling_r": pooling_r, "pooling_gamma": pooling_gamma, "channel": channel,
             "clip_seconds": clip_seconds, "batch_size": batch_size,
             "weights_seed": weights_seed, "num_frames": num_frames,
             "jit_compile": jit_compile, "published_map": published_map,
             "sample_rate": sample_rate},
            {"encoder": choice(*ENCODER_TYPES), "pooling": choice(*POOLING_MODES),
             "pooling_p": number(), "pooling_r": number(), "pooling_gamma": number(),
             "channel": choice(*CHANNELS), "clip_seconds": number(gt=0, optional=True),
             "batch_size": integer(min=1), "weights_seed": integer(min=0),
             "num_frames": integer(min=16, optional=True),
             "jit_compile": choice(True, False, optional=True),
             "published_map": number(optional=True), "sample_rate": integer(min=1)})
        (pooling_p, pooling_r, pooling_gamma, channel, clip_seconds, batch_size, weights_seed,
         num_frames, published_map, sample_rate) = (checked[k] for k in (
             "pooling_p", "pooling_r", "pooling_gamma", "channel", "clip_seconds",
             "batch_size", "weights_seed", "num_frames", "published_map", "sample_rate"))
        if pooling == "cls" and encoder != "eat":
            raise ValueError("pooling='cls' needs an encoder with a CLS token (encoder=eat); "
                             f"received encoder={encoder!r}.")
        if num_frames is not None and num_frames % 16:
            raise ValueError("num_frames must be a positive multiple of 16 (the patch "
                             f"size) or null; received {num_frames!r}.")
        self.encoder = encoder
        self.preset = DEFAULT_PRESETS[encoder] if preset is None else str(preset)
        if self.preset in PRESETS and PRESETS[self.preset]["encoder"] != encoder:
            raise ValueError(f"preset {self.preset!r} is a {PRESETS[self.preset]['encoder']} "
                             f"configuration, not {encoder!r}.")
        self.preset_dir = None if preset_dir is None else str(
            Path(preset_dir).expanduser().resolve())
        self._named = self.preset if self.preset in PRESETS else None
        if self.preset_dir is not None and self._named is not None:
            folder = Path(self.preset_dir) / self.preset
            if not folder.is_dir() and PRESETS[self.preset]["checkpoint"] is None:
                raise FileNotFoundError(
                    f"preset_dir='{self.preset_dir}' has no preset '{self.preset}', and no "
                    f"official checkpoint exists for the named configuration "
                    f"{self.preset!r}; drop preset_dir for random weights.")
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"preset_dir='{self.preset_dir}' has no preset '{self.preset}'; convert "
                    f"the official checkpoint ({PRESETS[self.preset]['checkpoint']}) with "
                    f"'asd-keras convert --encoder {encoder} --checkpoint FILE --out "
                    f"{folder}', or drop preset_dir for random weights.")
            self.preset = str(folder)
        elif self.preset not in PRESETS:
            self.preset = str(Path(self.preset).expanduser().resolve())
        self.num_frames = None if num_frames is None else int(num_frames)
        self.jit_compile = None if jit_compile is None else bool(jit_compile)
        self.published_map = None if published_map is None else float(published_map)
        self.pooling = pooling
        self.pooling_p, self.pooling_r = float(pooling_p), float(pooling_r)
        self.pooling_gamma = float(pooling_gamma)
        self.channel = channel
        self.clip_seconds = None if clip_seconds is None else float(clip_seconds)
        self.batch_size = int(batch_size)
        self.cache_dir = str(cache_dir)
        self.weights_seed = int(weights_seed)
        self.sample_rate = int(sample_rate)
        self._info = self._preset_info()
        if self._info["encoder"] != encoder:
            raise ValueError(f"The preset '{self.preset}' holds a {self._info['encoder']} "
                             f"encoder; set encoder={self._info['encoder']}.")
        if preset_fingerprint is not None and preset_fingerprint != self._info["fingerprint"]:
            raise ValueError(
                f"The preset '{self.preset}' has changed since this extractor was fitted "
                f"(weights and configuration {self._info['fingerprint'][:12]}..., recorded "
                f"{preset_fingerprint[:12]}...). Retrain the run, or restore the preset.")
        self.preset_fingerprint = self._info["fingerprint"]
        self.num_layers = self._encoder_config()["num_layers"]
        layers = [self.num_layers] if layer is None else layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        for value in layers:
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= self.num_layers:
                raise ValueError(f"layer must be an integer in [0, {self.num_layers}] (or a "
                                 f"list of them) for this encoder; received {layer!r}.")
        if not layers:
            raise ValueError("layer must name at least one layer; received an empty list.")
        self.layer = layers[0] if len(layers) == 1 else layers
        self._layers = layers
        self._encoder = None
        self._models = {}
        self._runs = {}

    # -- configuration ------------------------------------------------------

    def _preset_info(self):
        info = preset_info(self.preset)
        if not info["pretrained"]:
            info["fingerprint"] = f"{info['fingerprint']}:seed{self.weights_seed}"
        return info

    def _encoder_config(self):
        return {**encoder_defaults(self.encoder), **self._info["config"]}

    @property
    def weights_note(self):
        """`"pretrained"` or `"random weights"`, for tables."""
        return "pretrained" if self.pretrained else "random weights"

    def proxy_metrics(self, train, test, verbose=0):
        """`{"as2m_map": ...}`: the published AudioSet-2M mAP of the encoder,
        the proxy metric of Shin & Lee's pretrained family (Table VI). It is
        a published number, not measured here.

        Raises:
            ValueError: when neither `published_map` nor the named
                configuration gives the value.
        """
        del train, test, verbose
        value = self.published_map
        if value is None:
            named = PRESETS.get(self._named or "")
            value = self._info.get("mAP") or (named or {}).get("mAP")
        if value is None:
            raise ValueError(f"No published AudioSet mAP for the preset '{self.preset}'; set "
                             "published_map=VALUE (e.g. 48.6 for BEATs iter3+).")
        return {"as2m_map": float(value)}

    @property
    def pretrained(self):
        """Whether the weights are converted ones (False: random weights)."""
        return bool(self._info["pretrained"])

    @property
    def feature_names(self):
        """Names of the feature sets `transform` returns: one `layer_<k>` per asked-for layer."""
        return [f"layer_{i}" for i in self._layers]

    @property
    def data_choices(self):
        """What the run records about the encoder.

        Pretrained or random weights, and the preset's source checkpoint.
        """
        return {"encoder_weights": "pretrained" if self.pretrained else "random weights",
                "preset_source": self._info["source"]}

    def get_config(self):
        return {"encoder": self.encoder, "preset": self.preset, "layer": self.layer,
                "pooling": self.pooling, "pooling_p": self.pooling_p,
                "pooling_r": self.pooling_r, "pooling_gamma": self.pooling_gamma,
                "channel": self.channel, "clip_seconds": self.clip_seconds,
                "batch_size": self.batch_size, "cache_dir": self.cache_dir,
                "weights_seed": self.weights_seed, "preset_dir": self.preset_dir,
                "num_frames": self.num_frames, "jit_compile": self.jit_compile,
                "published_map": self.published_map,
                "preset_fingerprint": self.preset_fingerprint,
                "sample_rate": self.sample_rate}

    # -- models ---------------------------------------------------------------

    def _load_encoder(self):
        if self._encoder is None:
            # One encoder per process and setting: a study's or a run's
            # per-group extractors share it (EAT-large is 1.2 GB).
            key = (self.preset_fingerprint, self.num_frames)
            if key not in _LOADED:
                overrides = {} if self.num_frames is None else {"num_frames": self.num_frames}
                _LOADED[key], _ = load_encoder(self.preset, seed=self.weights_seed,
                                               overrides=overrides)
            self._encoder = _LOADED[key]
        return self._encoder

    def _pooling_layer(self, name):
        encoder = self._load_encoder()
        return TemporalPooling(self.pooling, num_bands=encoder.num_bands,
                               num_extra_tokens=encoder.num_extra_tokens, p=self.pooling_p,
                               r=self.pooling_r, gamma=self.pooling_gamma, name=name)

    def _pooled_model(self, layers, num_samples=None):
        """Waveforms `(batch, samples[, 2])` to `{"layer_i": pooled}`."""
        key = (tuple(layers), num_samples)
        if key in self._models:
            return self._models[key]
        encoder = self._load_encoder()
        names = [f"layer_{i}" for i in layers]
        trunk = keras.Model(encoder.input, {n: encoder.output[n] for n in names},
                            name=f"{self.encoder}_trunk")
        both = self.channel == "both"
        waveform = keras.Input((num_samples, 2) if both else (num_samples,), name="waveform")
        channels = [waveform[..., 0], waveform[..., 1]] if both else [waveform]
        if self.clip_seconds is not None:
            length = FixedLength(int(round(self.clip_seconds * self.sample_rate)), "pad",
                                 name="clip_length")
            channels = [length(c) for c in channels]
        pooled = {n: [] for n in names}
        for channel in channels:
            tokens = trunk(channel)
            for n in names:
                pooled[n].append(tokens[n])
        outputs = {}
        for n in names:
            pool = self._pooling_layer(f"pool_{n}")
            parts = [pool(t) for t in pooled[n]]
            outputs[n] = (keras.layers.Concatenate(name=f"channels_{n}")(parts)
                          if len(parts) > 1 else parts[0])
        model = keras.Model(waveform, outputs, name=f"frozen_{self.encoder}")
        self._models[key] = model
        return model

    def loader(self):
        """The `AudioLoader` of `transform` (`clip_seconds` pads or cuts); its
        `min_samples`, one 25 ms filter-bank window, is also the shortest
        clip the SavedModel serves."""
        length = None if self.clip_seconds is None else int(round(self.clip_seconds
                                                                * self.sample_rate))
        return AudioLoader(self.sample_rate, channel=self.channel, length=length,
                           length_policy="none" if length is None else "pad",
                           min_samples=400)

    def serving_model(self, num_samples=None):
        """Waveforms to `{"layer_i": (batch, dim)}`; with `channel="both"`
        the input is `(batch, samples, 2)` (near, far)."""
        return self._pooled_model(self._layers, num_samples)

    @property
    def serving_channels(self):
        return 2 if self.channel == "both" else 1

    # -- features -------------------------------------------------------------

    def _cache_root(self):
        if self.cache_dir == "none":
            return None
        return default_cache_dir() if self.cache_dir == "auto" else Path(self.cache_dir)

    def _cache_keys(self, paths):
        settings = json.dumps({
            "version": _CACHE_VERSION, "weights": self.preset_fingerprint,
            "encoder": self.encoder, "channel": self.channel,
            "clip_seconds": self.clip_seconds, "sample_rate": self.sample_rate,
            "num_frames": self.num_frames,
            "pooling": [self.pooling, self.pooling_p, self.pooling_r, self.pooling_gamma],
            "keras": _keras_version()}, sort_keys=True)
        keys = []
        for path in paths:
            stat = os.stat(path)
            ident = f"{settings}|{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
            keys.append(hashlib.sha256(ident.encode()).hexdigest())
        return keys

    def transform(self, table, verbose=0):
        """`{"layer_i": (clips, dim)}` for the clips of `table["path"]`.

        Raises:
            FileNotFoundError, ValueError: naming a missing, unreadable,
                wrongly sampled, single-channel (for `far`/`both`) or
                corrupt clip.
        """
        paths = [str(p) for p in table["path"]]
        if not paths:
            dim = self._pooled_model(self._layers).output[self.feature_names[0]].shape[-1]
            return {n: np.zeros((0, dim), np.float32) for n in self.feature_names}
        loader = self.loader()
        loader.check(paths, progress=bool(verbose))
        root = self._cache_root()
        if root is None:
            values = self._encode(paths, loader, self._layers, verbose)
            return {f"layer_{i}": values[:, j] for j, i in enumerate(self._layers)}
        all_layers = list(range(self.num_layers + 1))
        keys = self._cache_keys(paths)
        cache = EmbeddingCache(root, len(all_layers))
        # Damaged entries come back as None (warned), and are encoded again.
        rows = cache.load_many(keys, paths, select=self._layers)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            logger.info("Encoding %d clips with %s (%s; %s); %d of %d from the cache.",
                        len(missing), self.encoder, self._info["source"], self.weights_note,
                        len(paths) - len(missing), len(paths))
            self._encode_into(rows, missing, keys, paths, cache, loader, all_layers, verbose)
            # Cached entries of another dimension than the encoder's own
            # (a cache shared across versions) are encoded again too.
            fresh = rows[missing[0]].shape
            cache.drop_other_shapes(rows, keys, paths, fresh)
            again = [i for i, row in enumerate(rows) if row is None]
            if again:
                self._encode_into(rows, again, keys, paths, cache, loader, all_layers,
                                  verbose)
        stacked = np.stack(rows)
        del rows
        return {f"layer_{i}": np.ascontiguousarray(stacked[:, j])
                for j, i in enumerate(self._layers)}

    def _encode_into(self, rows, indices, keys, paths, cache, loader, layers, verbose):
        """Encodes the clips `indices`: every layer of `layers` goes to the
        cache, the asked-for ones (`self._layers`) to `rows`."""

        def keep(start, values):
            # Each batch is cached as soon as it is encoded, so that an
            # interrupted run loses at most one batch.
            for j, value in enumerate(values):
                i = indices[start + j]
                if not np.isfinite(value).all():
                    raise ValueError(
                        f"The {self.encoder} encoder gives non-finite embeddings for "
                        f"'{paths[i]}'; check the clip (and the preset '{self.preset}').")
                rows[i] = value[self._layers]
                cache.store(keys[i], value)

        self._encode([paths[i] for i in indices], loader, layers, verbose, keep)

    def _encode(self, paths, loader, layers, verbose, on_batch=None):
        """`(clips, len(layers), dim)` float32 pooled embeddings; with
        `on_batch`, `on_batch(start, values)` gets each batch's instead and
        nothing is kept or returned."""
        model = self._pooled_model(layers)
        names = [f"layer_{i}" for i in layers]
        fixed = self.clip_seconds is not None
        jit = fixed if self.jit_compile is None else self.jit_compile
        key = tuple(layers)
        if key not in self._runs:
            # Kept, so that later calls (score after fit, probe) reuse the
            # traced (and compiled) graph.
            self._runs[key] = tf.function(lambda x: model(x, training=False),
                                          reduce_retracing=True, jit_compile=jit)
        run = self._runs[key]
        batch = self.batch_size if fixed else 1
        ds = clip_dataset(paths, loader).batch(batch).prefetch(tf.data.AUTOTUNE)
        parts, done = [], 0
        for waveform in progress_batches(ds, len(paths), f"{self.encoder} embeddings", verbose):
            count = int(waveform.shape[0])
            if jit and count < batch:
                # One shape for XLA: the last batch is padded with silence.
                waveform = tf.pad(waveform, [[0, batch - count]] + [[0, 0]] * (waveform.ndim - 1))
            out = run(waveform)
            values = np.stack([out[n].numpy()[:count] for n in names],
                              axis=1).astype(np.float32)
            if on_batch is None:
                parts.append(values)
            else:
                on_batch(done, values)
            done += count
        return None if on_batch is not None else np.concatenate(parts)


def _keras_version():
    return keras.__version__
