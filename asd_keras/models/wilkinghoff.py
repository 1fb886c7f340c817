"""Wilkinghoff's angular-margin embedding system (ICASSP 2023 / TASLP).

A two-branch CNN maps the raw waveform to a 256-d embedding: the
linear-magnitude spectrogram feeds a ResNet-like 2-D branch, the magnitude
spectrum of the whole clip a Conv1D + dense branch (reference
wilkinghoff.md §3). It is trained on an auxiliary classification task
(machine type, section, attributes, domain) with a (sub-cluster) AdaCos,
ArcFace, softmax or compactness head, with mixup, one model for all machine
types. Clips are scored per section by a reusable embedding backend
(`asd_keras.scoring.embedding`); R independently trained runs are summed.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import resolve_config
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.layouts import require_split
from asd_keras.data.labels import ClassEncoder
from asd_keras.data.labels import GRANULARITIES
from asd_keras.data.labels import section_keys
from asd_keras.layers.heads import SCALE_RULES
from asd_keras.layers.mixup import LABEL_RULES
from asd_keras.models.common import JIT_CHOICES
from asd_keras.models.common import resolve_jit_compile
from asd_keras.scoring.embedding import BACKENDS
from asd_keras.scoring.embedding import DISTANCES
from asd_keras.scoring.embedding import KMEANS_DOMAINS
from asd_keras.scoring.embedding import backend_from_config
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import load_keras_model

BLOCK2_BN = ("shortcut", "residual")
BRANCHES = ("both", "spectrogram", "spectrum")
LOSSES = ("sc_adacos", "adacos", "arcface", "softmax", "compactness",
          "compactness_cce")
LENGTH_POLICIES = ("truncate", "pad", "tile_crop")


def keras_numpy(tensor):
    import keras

    return keras.ops.convert_to_numpy(tensor)


def _conv_kwargs(l2):
    import keras

    return {"use_bias": False,
            "kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}


def spectrum_encoder(num_bins, embedding_dim=128, l2=1e-5, name="spectrum_encoder"):
    """The full-clip spectrum branch: Conv1D stack and dense layers.

    Conv1D (128, 256/64) -> (128, 64/32) -> (128, 16/4), each with ReLU and
    no BN, flatten, 4 x [Dense 128 -> BN -> ReLU], linear Dense
    `embedding_dim` named `emb_fft` (reference wilkinghoff.md §3).

    Args:
        num_bins: int. Spectrum length (`samples // 2`).
        embedding_dim: int. Defaults to `128`.
        l2: float. Kernel L2 factor. Defaults to `1e-5`.

    Returns:
        keras.Model `(batch, num_bins)` -> `(batch, embedding_dim)`.
    """
    import keras
    from keras import layers

    kw = _conv_kwargs(l2)
    inputs = keras.Input((num_bins,), name="spectrum")
    x = layers.Reshape((num_bins, 1), name="spectrum_channel")(inputs)
    for i, (kernel, stride) in enumerate(((256, 64), (64, 32), (16, 4))):
        x = layers.Conv1D(128, kernel, strides=stride, padding="same",
                          name=f"fft_conv{i + 1}", **kw)(x)
        x = layers.ReLU(name=f"fft_relu{i + 1}")(x)
    x = layers.Flatten(name="fft_flatten")(x)
    for i in range(4):
        x = layers.Dense(128, name=f"fft_dense{i + 1}", **kw)(x)
        x = layers.BatchNormalization(name=f"fft_bn{i + 1}")(x)
        x = layers.ReLU(name=f"fft_dense_relu{i + 1}")(x)
    outputs = layers.Dense(embedding_dim, name="emb_fft", **kw)(x)
    return keras.Model(inputs, outputs, name=name)


def spectrogram_encoder(num_frames, num_bins=513, embedding_dim=128, l2=1e-5,
                        block2_bn="shortcut", name="spectrogram_encoder"):
    """The spectrogram branch: temporal mean normalisation, per-frequency BN
    and a ResNet-like 2-D CNN (reference wilkinghoff.md §3).

    Args:
        num_frames: int. STFT frames (311 for 10 s at 16 kHz).
        num_bins: int. Frequency bins. Defaults to `513`.
        embedding_dim: int. Defaults to `128`.
        l2: float. Kernel L2 factor.
        block2_bn: str. `"shortcut"` (default): the published code, whose
            first residual unit of block 2 has no BN on its residual path
            and a BN on the shortcut; `"residual"`: the January 2024 fix
            (commit fa05253), BN on the residual path (reference §3 "BN bug
            history"). The parameter count is the same.

    Returns:
        keras.Model `(batch, num_frames, num_bins)` -> `(batch, embedding_dim)`.
    """
    import keras
    from keras import layers

    from asd_keras.layers import TemporalMeanNormalization

    if block2_bn not in BLOCK2_BN:
        raise ValueError(f"block2_bn must be one of {BLOCK2_BN}; received {block2_bn!r}.")
    kw = _conv_kwargs(l2)

    def conv(x, filters, name, kernel=3, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same",
                             name=name, **kw)(x)

    def bn(x, name):
        return layers.BatchNormalization(name=name)(x)

    def relu(x, name):
        return layers.ReLU(name=name)(x)

    def unit(x, filters, name):
        r = conv(relu(x, f"{name}_relu1"), filters, f"{name}_conv1")
        r = relu(bn(r, f"{name}_bn"), f"{name}_relu2")
        r = conv(r, filters, f"{name}_conv2")
        return layers.Add(name=f"{name}_add")([x, r])

    inputs = keras.Input((num_frames, num_bins), name="spectrogram")
    x = layers.Reshape((num_frames, num_bins, 1), name="spectrogram_channel")(inputs)
    x = TemporalMeanNormalization(axis=1, name="temporal_mean_norm")(x)
    x = layers.BatchNormalization(axis=-2, name="frequency_bn")(x)
    x = conv(x, 16, "block1_conv", kernel=7, strides=2)
    x = relu(bn(x, "block1_bn"), "block1_relu")
    x = layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)

    # Block 2, unit a.
    r = conv(relu(x, "block2a_relu1"), 16, "block2a_conv1")
    if block2_bn == "residual":
        r = bn(r, "block2a_bn")
    else:
        x = bn(x, "block2a_bn")  # the published code's BN on the shortcut
    r = conv(relu(r, "block2a_relu2"), 16, "block2a_conv2")
    x = layers.Add(name="block2a_add")([x, r])
    x = bn(x, "block2_bn")
    # Block 2, unit b: ReLU before BN, as the reference.
    r = conv(relu(x, "block2b_relu1"), 16, "block2b_conv1")
    r = bn(relu(r, "block2b_relu2"), "block2b_bn")
    r = conv(r, 16, "block2b_conv2")
    x = layers.Add(name="block2b_add")([x, r])

    for block, filters in ((3, 32), (4, 64), (5, 128)):
        prefix = f"block{block}"
        x = bn(x, f"{prefix}_in_bn")
        r = conv(relu(x, f"{prefix}a_relu1"), filters, f"{prefix}a_conv1", strides=2)
        r = relu(bn(r, f"{prefix}a_bn"), f"{prefix}a_relu2")
        r = conv(r, filters, f"{prefix}a_conv2")
        s = layers.MaxPooling2D(2, padding="same", name=f"{prefix}_shortcut_pool")(x)
        s = layers.Conv2D(filters, 1, padding="same", name=f"{prefix}_shortcut_conv", **kw)(s)
        x = layers.Add(name=f"{prefix}a_add")([s, r])
        x = bn(x, f"{prefix}_mid_bn")
        x = unit(x, filters, f"{prefix}b")

    # Max over the whole time axis.
    x = layers.MaxPooling2D((x.shape[1], 1), padding="same", name="time_pool")(x)
    x = layers.Flatten(name="mel_flatten")(x)
    x = bn(x, "mel_flatten_bn")
    outputs = layers.Dense(embedding_dim, name="emb_mel", **kw)(x)
    return keras.Model(inputs, outputs, name=name)


def wilkinghoff_embedding_model(num_samples=160000, embedding_dim=128, l2=1e-5,
                                block2_bn="shortcut", branches="both",
                                name="wilkinghoff_embedding"):
    """The embedding model: raw waveform to the concatenated embedding.

    Args:
        num_samples: int. Clip length in samples (160000 for 10 s).
        embedding_dim: int. Size of each branch's embedding. Defaults to 128.
        l2: float. Kernel L2 factor. Defaults to `1e-5`.
        block2_bn: str. See `spectrogram_encoder`.
        branches: str. `"both"` (the system), `"spectrogram"` (the
            spectrogram-only variant used for RISE) or `"spectrum"`.

    Returns:
        keras.Model `(batch, num_samples)` -> `(batch, 2 * embedding_dim)`
        (`embedding_dim` for one branch). The branches are the nested models
        `spectrum_encoder` and `spectrogram_encoder`.

    Example:
    >>> wilkinghoff_embedding_model(160000).count_params()  # doctest: +SKIP
    """
    import keras

    from asd_keras.layers import ClipSpectrum
    from asd_keras.layers import LinearSpectrogram

    if branches not in BRANCHES:
        raise ValueError(f"branches must be one of {BRANCHES}; received {branches!r}.")
    frames = 1 + (int(num_samples) - 1024) // 512
    if frames < 16:
        raise ValueError(
            f"num_samples={num_samples} gives {frames} STFT frames; the "
            "spectrogram branch needs at least 16 (8704 samples)."
        )
    waveform = keras.Input((int(num_samples),), name="waveform")
    outputs = []
    if branches in ("both", "spectrum"):
        spectrum = ClipSpectrum(name="clip_spectrum")(waveform)
        outputs.append(spectrum_encoder(int(num_samples) // 2, embedding_dim, l2)(spectrum))
    if branches in ("both", "spectrogram"):
        spectrogram = LinearSpectrogram(1024, 512, name="linear_spectrogram")(waveform)
        outputs.append(spectrogram_encoder(frames, 513, embedding_dim, l2,
                                           block2_bn)(spectrogram))
    if len(outputs) == 2:
        embedding = keras.layers.Concatenate(name="embedding")(outputs)
    else:
        embedding = keras.layers.Identity(name="embedding")(outputs[0])
    return keras.Model(waveform, embedding, name=name)


def build_head(loss, num_classes, config, seed=None):
    """The head layer and Keras loss for a `loss` name (see `LOSSES`)."""
    from asd_keras import layers
    from asd_keras import losses

    if loss == "sc_adacos":
        head = layers.SubClusterAdaCos(
            num_classes, int(config["num_subclusters"]),
            bool(config["trainable_centers"]), config["scale_rule"], seed, name="head")
        return head, losses.MixupCrossEntropy()
    if loss == "adacos":
        head = layers.AdaCos(num_classes, bool(config["trainable_centers"]),
                             config["scale_rule"], seed, name="head")
        return head, losses.MixupCrossEntropy()
    if loss == "arcface":
        head = layers.ArcFace(num_classes, float(config["arcface_scale"]),
                              float(config["arcface_margin"]), seed=seed, name="head")
        return head, losses.MixupCrossEntropy()
    if loss == "softmax":
        return (layers.SoftmaxHead(num_classes, float(config["l2"]), seed, name="head"),
                losses.MixupCrossEntropy())
    if loss == "compactness":
        return (layers.CompactnessHead(num_classes, False, seed=seed, name="head"),
                losses.CompactnessLoss())
    if loss == "compactness_cce":
        return (layers.CompactnessHead(num_classes, True, float(config["l2"]), seed,
                                       name="head"),
                losses.CompactnessCrossEntropy(float(config["cce_weight"])))
    raise ValueError(f"loss must be one of {LOSSES}; received {loss!r}.")


def training_model(embedding_model, head, num_classes, mixup=None):
    """Wraps an embedding model for training: inputs `{"waveform", "label"}`.

    Args:
        embedding_model: keras.Model waveform -> embedding.
        head: a head layer of `asd_keras.layers.heads`.
        num_classes: int.
        mixup: `asd_keras.layers.Mixup` or None.

    Returns:
        keras.Model whose output is the head's stacked output.
    """
    import keras

    waveform = keras.Input(embedding_model.input_shape[1:], name="waveform")
    label = keras.Input((num_classes,), name="label")
    x, y = (mixup([waveform, label]) if mixup is not None else (waveform, label))
    outputs = head([embedding_model(x), y])
    return keras.Model({"waveform": waveform, "label": label}, outputs,
                       name="wilkinghoff_training")


DEFAULTS = {
    "variant": "paper",
    "loss": "sc_adacos",
    "classes": "attribute",
    "domain_in_class": True,
    "num_subclusters": 16,
    "trainable_centers": False,
    "scale_rule": "reference",
    "arcface_scale": 30.0,
    "arcface_margin": 0.5,
    "cce_weight": 1.0,
    "mixup_probability": 1.0,
    "mixup_label": "max",
    "mixup_in": "model",
    "block2_bn": "shortcut",
    "branches": "both",
    "embedding_dim": 128,
    "l2": 1e-5,
    "epochs": 10,
    "batch_size": 64,
    "learning_rate": 1e-3,
    # "auto": from the training clips (see `WilkinghoffSystem.fit_clip_length`).
    "clip_seconds": "auto",
    "length_policy": "auto",
    "sample_rate": 16000,
    "channel": 0,
    "resample": False,
    "ensemble_size": 1,
    "backend": "kmeans",
    "kmeans_clusters": 16,
    "kmeans_n_init": 10,
    "kmeans_domains": "source",
    "distance": "negative_dot",
    "density_k": 1,
    "density_clusters": None,
    "threshold_quantile": 0.9,
    "monitor_compactness": True,
    "monitor_clips": 256,
    "score_batch_clips": 16,
    "pipeline_ram_mb": 256,
    "jit_compile": "auto",
    "seed": 1234,
    "deterministic": False,
}

# "paper": the TASLP text (k-means on the source domain only).
# "icassp2023": the ICASSP 2023 code, k-means on source and target (§6).
# "dcase2023": 18 s tiled clips, mixup p = 0.5 with convex labels (§1, §4).
VARIANTS = {
    "paper": {},
    "icassp2023": {"kmeans_domains": "all"},
    "dcase2023": {"clip_seconds": 18.0, "length_policy": "tile_crop",
                  "mixup_probability": 0.5, "mixup_label": "standard"},
}

# What each key of DEFAULTS accepts (`asd_keras.config.validate_config`).
SCHEMA = {
    "variant": choice(*VARIANTS),
    "loss": choice(*LOSSES),
    "classes": choice(*GRANULARITIES),
    "domain_in_class": boolean(),
    "num_subclusters": integer(min=1),
    "trainable_centers": boolean(),
    "scale_rule": choice(*SCALE_RULES),
    "arcface_scale": number(gt=0),
    "arcface_margin": number(min=0),
    "cce_weight": number(min=0),
    "mixup_probability": number(min=0, max=1),
    "mixup_label": choice(*LABEL_RULES),
    "mixup_in": choice("model", "pipeline"),
    "block2_bn": choice(*BLOCK2_BN),
    "branches": choice(*BRANCHES),
    "embedding_dim": integer(min=1),
    "l2": number(min=0),
    "epochs": integer(min=1),
    "batch_size": integer(min=1),
    "learning_rate": number(gt=0),
    "clip_seconds": number(gt=0, also=("auto",)),
    "length_policy": choice(*LENGTH_POLICIES, "auto"),
    "sample_rate": integer(min=1),
    "channel": choice(0, 1),
    "resample": boolean(),
    "ensemble_size": integer(min=1),
    "backend": choice(*BACKENDS),
    # None: every training embedding is a reference (no k-means).
    "kmeans_clusters": integer(min=1, optional=True),
    "kmeans_n_init": integer(min=1),
    "kmeans_domains": choice(*KMEANS_DOMAINS),
    "distance": choice(*DISTANCES),
    "density_k": integer(min=1),
    "density_clusters": integer(min=1, optional=True),
    "threshold_quantile": number(gt=0, lt=1),
    "monitor_compactness": boolean(),
    "monitor_clips": integer(min=1),
    "score_batch_clips": integer(min=1),
    "pipeline_ram_mb": integer(min=1),
    "jit_compile": choice(*JIT_CHOICES),
    "seed": integer(min=0, max=2**32 - 1),
    "deterministic": boolean(),
}


class WilkinghoffSystem:
    """Trains, scores and exports the angular-margin embedding system.

    Args:
        config: dict of overrides of `DEFAULTS` (`variant` picks a preset of
            `VARIANTS`).

    Example:
    >>> system = WilkinghoffSystem({"epochs": 2, "clip_seconds": 1.0})
    >>> system.fit(table, run_dir)  # doctest: +SKIP
    >>> scores = system.score(table)  # doctest: +SKIP
    """

    name = "wilkinghoff"

    def __init__(self, config=None):
        self.config = c = validate_config(
            resolve_config(DEFAULTS, dict(config or {}), VARIANTS), SCHEMA)
        self.num_samples = None
        self.data_choices = {}
        if c["clip_seconds"] != "auto":
            self.num_samples = int(round(float(c["clip_seconds"]) * int(c["sample_rate"])))
        self.backend_config = self._backend_config()
        # members[r] = {"groups": {group: embedding model}, "encoders": {...},
        #               "backend": fitted backend}
        self.members = []
        self.thresholds = {}

    def _backend_config(self):
        c = self.config
        base = {"kind": c["backend"], "n_init": int(c["kmeans_n_init"]),
                "seed": 0, "kmeans_domains": c["kmeans_domains"]}
        if c["backend"] == "kmeans":
            return {**base, "n_clusters": c["kmeans_clusters"], "distance": c["distance"]}
        if c["backend"] == "local_density":
            return {**base, "n_clusters": c["density_clusters"], "k": int(c["density_k"])}
        raise ValueError(
            f"backend must be 'kmeans' or 'local_density'; received {c['backend']!r}."
        )

    def fit_clip_length(self, paths):
        """Resolves `clip_seconds="auto"` / `length_policy="auto"` from clips.

        The model's input length is fixed, but DCASE 2023-2025 clip lengths
        vary by machine type (6-18 s). With `"auto"` the length is the
        longest training clip and shorter clips are tiled and cropped, as the
        DCASE 2023 system does (tiled to 18 s, the longest clip; reference
        wilkinghoff.md section 1); when every clip has the same length this
        is plain truncation, the ICASSP 2023 setting on DCASE 2022 (10 s).
        An explicit `length_policy="truncate"` with `clip_seconds="auto"`
        takes the shortest clip instead, so no clip is too short. The
        choice is stored in the configuration (so `config.yaml` holds
        numbers) and described in `data_choices`.

        Args:
            paths: the training clips.
        """
        from asd_keras.data.audio import inspect_audio

        c = self.config
        if c["clip_seconds"] != "auto" and c["length_policy"] != "auto":
            return
        info = inspect_audio(paths, progress=False)
        rate = int(c["sample_rate"])
        lengths = (info["frames"] * rate // info["sample_rate"]).to_numpy()
        shortest, longest = int(lengths.min()), int(lengths.max())
        reasons = []
        if c["clip_seconds"] == "auto":
            n = shortest if c["length_policy"] == "truncate" else longest
            c["clip_seconds"] = n / rate
            reasons.append(f"clip_seconds={n / rate:g} from the training clips "
                           f"({shortest / rate:g}-{longest / rate:g} s)")
        n = int(round(float(c["clip_seconds"]) * rate))
        if c["length_policy"] == "auto":
            c["length_policy"] = "truncate" if shortest >= n else "tile_crop"
            reasons.append(
                f"length_policy={c['length_policy']} (every clip holds at least "
                f"{n / rate:g} s)" if shortest >= n else
                f"length_policy=tile_crop (clips of {shortest / rate:g} s are shorter "
                f"than {n / rate:g} s)")
        self.num_samples = n
        self.data_choices = {"clip_seconds": c["clip_seconds"],
                             "length_policy": c["length_policy"],
                             "why": "; ".join(reasons)}
        print(f"Clip length: {self.data_choices['why']}.")

    def loader(self, training=False):
        c = self.config
        if self.num_samples is None or c["length_policy"] == "auto":
            raise ValueError(
                "clip_seconds/length_policy are 'auto' and no training clips have "
                "been seen yet; call fit() (or fit_clip_length(paths)) first, or set "
                "clip_seconds and length_policy.")
        policy = c["length_policy"]
        return AudioLoader(
            sample_rate=c["sample_rate"],
            channel=c["channel"],
            length=self.num_samples,
            length_policy=policy,
            resample=bool(c["resample"]),
            random_crop=training and policy == "tile_crop",
            min_samples=1,
        )

    def _groups(self, table):
        """Training groups: one for all clips, or one per section."""
        keys = section_keys(table)
        if self.config["classes"] == "per_section":
            return {key: table[keys == key] for key in sorted(keys.unique())}
        return {"all": table}

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------

    def training_dataset(self, paths, labels, num_classes, loader, shuffle=True, seed=0,
                         batch=None):
        """The `model.fit` pipeline: `({"waveform", "label"}, one_hot)` batches.

        File names are shuffled (cheap), clips decoded in parallel from disk
        with the length policy, one-hot labels attached, batched, mixed up
        here when `mixup_in="pipeline"`, and prefetched within
        `pipeline_ram_mb`. Nothing is cached, so memory does not grow with
        the number of clips.

        Args:
            paths: list of str.
            labels: int class indices aligned with `paths`.
            num_classes: int.
            loader: a `check`-ed `AudioLoader` (see `loader(training=True)`).
            shuffle: bool. Shuffle every epoch (and apply pipeline mixup).
            seed: int.
            batch: int, optional. Defaults to `batch_size`.
        """
        import tensorflow as tf

        from asd_keras.layers.mixup import mixup_dataset

        c = self.config
        ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int32)))
        if shuffle:
            # Shuffling file names is cheap; audio streams from disk.
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def load(path, label):
            waveform = loader.load(path)
            waveform = tf.ensure_shape(waveform, [self.num_samples])
            one_hot = tf.one_hot(label, num_classes)
            return {"waveform": waveform, "label": one_hot}, one_hot

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch or int(c["batch_size"]))
        if shuffle and c["mixup_in"] == "pipeline":
            ds = mixup_dataset(ds, float(c["mixup_probability"]), c["mixup_label"], seed)
        return self._bounded(ds.prefetch(tf.data.AUTOTUNE))

    def _waveform_dataset(self, paths, loader):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(list(paths))
        ds = ds.map(lambda p: tf.ensure_shape(loader.load(p), [self.num_samples]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return self._bounded(
            ds.batch(int(self.config["score_batch_clips"])).prefetch(tf.data.AUTOTUNE))

    def _bounded(self, ds):
        """Caps what tf.data's autotuner may buffer (`pipeline_ram_mb`).

        Unbounded, the autotuner grows its prefetch buffers of 10 s clips
        over the steps of an epoch, so peak memory creeps up with the
        number of clips even though nothing is cached.
        """
        import tensorflow as tf

        options = tf.data.Options()
        options.autotune.ram_budget = int(self.config["pipeline_ram_mb"]) * 2**20
        return ds.with_options(options)

    def _fit_group(self, group_name, group, loaders, run_dir, member, seed, verbose):
        import keras

        from asd_keras.evaluation.compactness import CompactnessMonitor
        from asd_keras.layers import Mixup

        c = self.config
        keras.utils.set_random_seed(seed)
        encoder = ClassEncoder(c["classes"], bool(c["domain_in_class"])).fit(group)
        labels = encoder.transform(group)
        embedding_model = wilkinghoff_embedding_model(
            self.num_samples, int(c["embedding_dim"]), float(c["l2"]),
            c["block2_bn"], c["branches"])
        head, loss = build_head(c["loss"], encoder.num_classes, c, seed)
        mixup = None
        if c["mixup_in"] == "model" and float(c["mixup_probability"]) > 0:
            mixup = Mixup(float(c["mixup_probability"]), c["mixup_label"], seed,
                          name="mixup")
        model = training_model(embedding_model, head, encoder.num_classes, mixup)
        model.compile(optimizer=keras.optimizers.Adam(float(c["learning_rate"])),
                      loss=loss, jit_compile=resolve_jit_compile(c["jit_compile"]))
        paths = list(group["path"])
        train_ds = self.training_dataset(paths, labels, encoder.num_classes,
                                         loaders["train"], True, seed)
        callbacks = []
        monitor = None
        if c["monitor_compactness"]:
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.permutation(len(paths))[: int(c["monitor_clips"])])
            monitor = CompactnessMonitor(
                embedding_model, head,
                self._waveform_dataset([paths[i] for i in pick], loaders["eval"]),
                labels[pick])
            callbacks.append(monitor)
        history = model.fit(train_ds, epochs=int(c["epochs"]), verbose=verbose,
                            callbacks=callbacks, shuffle=False)  # tf.data shuffles
        frame = pd.DataFrame(history.history)
        frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
        if monitor is not None:
            frame = pd.concat([pd.DataFrame(monitor.records[:1]), frame],
                              ignore_index=True)
        atomic_write_dataframe(
            Path(run_dir) / "history" / f"member{member}_{group_name}.csv", frame)
        return embedding_model, encoder

    def fit(self, table, run_dir, verbose=1):
        """Trains `ensemble_size` runs on the table's training clips.

        One model covers every machine type in the table (one per section
        for `classes="per_section"`); pass dev and eval tables together to
        use both training sets, as the reference does.

        Args:
            table: DataFrame from `read_dataset` (its train split is used).
            run_dir: Path. Folder for models, histories and scores.
            verbose: int. Keras `fit` verbosity.
        """
        run_dir = Path(run_dir)
        train = require_split(table, "train")
        self.fit_clip_length(train["path"])
        # check() also picks the decoder, so the checked loaders are reused.
        loaders = {"train": self.loader(training=True), "eval": self.loader()}
        loaders["train"].check(train["path"])
        loaders["eval"].check(train["path"], progress=False)
        self.members = []
        for member in range(int(self.config["ensemble_size"])):
            seed = int(self.config["seed"]) + member
            groups, encoders = {}, {}
            for group_name, group in self._groups(train).items():
                print(f"Training member {member + 1}/{self.config['ensemble_size']}"
                      f" ({group_name}) on {len(group)} clips, "
                      f"loss={self.config['loss']}, classes={self.config['classes']}")
                groups[group_name], encoders[group_name] = self._fit_group(
                    group_name, group, loaders, run_dir, member, seed, verbose)
            self.members.append({"groups": groups, "encoders": encoders})
        train_embeddings = self.embed(train)
        for member, embeddings in zip(self.members, train_embeddings):
            member["backend"] = backend_from_config(self.backend_config).fit(
                embeddings, section_keys(train).to_numpy(),
                train["domain"].to_numpy())
        train_scores = self._cross_fitted_scores(train, train_embeddings)
        q = 100.0 * float(self.config["threshold_quantile"])
        self.thresholds = {
            key: float(np.percentile(train_scores["score"].to_numpy()[idx], q))
            for key, idx in train_scores.groupby("section_key").indices.items()
        }
        self.save(run_dir, train_embeddings=train_embeddings)
        atomic_write_dataframe(
            run_dir / "train_scores.csv",
            pd.concat([train[["machine_type", "section", "domain", "file_name"]]
                       .reset_index(drop=True),
                       train_scores[["score"]].rename(columns={"score": "cross_fitted_score"})],
                      axis=1))
        return self

    # ------------------------------------------------------------------
    # Embeddings and scores
    # ------------------------------------------------------------------

    def features(self, table, verbose=0):
        """Per-clip features of any rows: the first member's embeddings
        (what `asd-keras probe` scores with the linear probe and global MD)."""
        return self.embed(table, verbose)[0]

    def embed(self, table, verbose=0):
        """Embeddings of every row, one `(rows, dim)` array per member."""
        loader = self.loader()
        loader.check(table["path"], progress=False)
        keys = section_keys(table).to_numpy()
        out = []
        for member in self.members:
            if "all" not in member["groups"]:
                missing = sorted(set(keys) - set(member["groups"]))
                if missing:
                    raise ValueError(
                        f"The run has no per-section model for {missing}; "
                        f"trained sections: {sorted(member['groups'])}.")
            embeddings = None
            for group_name, model in member["groups"].items():
                rows = np.ones(len(table), bool) if group_name == "all" else keys == group_name
                if not rows.any():
                    continue
                values = model.predict(
                    self._waveform_dataset(table["path"].to_numpy()[rows], loader),
                    verbose=verbose)
                if embeddings is None:
                    embeddings = np.zeros((len(table), values.shape[1]), np.float32)
                embeddings[rows] = values
            out.append(embeddings)
        return out

    def _scores_from_embeddings(self, table, embeddings):
        keys = section_keys(table).to_numpy()
        total = np.zeros(len(table))
        source = np.zeros(len(table))
        target = np.zeros(len(table))
        for member, values in zip(self.members, embeddings):
            scores, per_domain = member["backend"].score(values, keys, per_domain=True)
            total += scores
            source += per_domain["source"]
            target += per_domain["target"]
        if not np.isfinite(total).all():
            bad = table["path"].to_numpy()[~np.isfinite(total)][0]
            raise ValueError(f"Non-finite score for '{bad}'; check the clip and the run.")
        return pd.DataFrame({"section_key": keys, "score": total,
                             "score_source": source, "score_target": target})

    def _cross_fitted_scores(self, train, embeddings, folds=2):
        """Training scores for the decision threshold, by cross-fitting.

        Scored against references fitted on the other fold, because a clip
        scored against references built from itself (a target clip is its
        own reference) gets an optimistic score and a threshold below every
        test clip.
        """
        keys = section_keys(train).to_numpy()
        domains = train["domain"].to_numpy()
        fold = np.zeros(len(train), int)
        for key in np.unique(keys):
            for domain in pd.unique(domains[keys == key]):
                rows = np.flatnonzero((keys == key) & (domains == domain))
                fold[rows] = np.arange(len(rows)) % folds
        total = np.zeros(len(train))
        for member, values in zip(self.members, embeddings):
            for f in range(folds):
                fit_rows, score_rows = fold != f, fold == f
                backend = backend_from_config(self.backend_config).fit(
                    values[fit_rows], keys[fit_rows], domains[fit_rows])
                total[score_rows] += backend.score(values[score_rows], keys[score_rows])
        return pd.DataFrame({"section_key": keys, "score": total})

    def score(self, table):
        """Scores every test clip of the table (ensemble sum over members).

        Returns:
            DataFrame of the test rows with `score`, `score_source`,
            `score_target` (the minimum over each domain's references, summed
            over members) and `decision` (score above the section's
            `threshold_quantile` of the cross-fitted training scores).
        """
        test = require_split(table, "test").copy()
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        result = self._scores_from_embeddings(test, self.embed(test))
        for column in ("score", "score_source", "score_target"):
            test[column] = result[column].to_numpy()
        thresholds = result["section_key"].map(self.thresholds).to_numpy(float)
        test["decision"] = (test["score"].to_numpy() > thresholds).astype(int)
        return test

    def spectrogram_scorer(self, machine_type, section, member=0):
        """Functions for explaining a spectrogram-only model (RISE, Fig. 4).

        Needs `branches="spectrogram"`, so the score depends on the
        spectrogram alone.

        Returns:
            (spectrogram_fn, score_fn): `spectrogram_fn(path)` gives the
            linear-magnitude spectrogram `(frames, 513)` of a clip after the
            length policy; `score_fn(spectrograms)` scores a batch
            `(batch, frames, 513)` with the member's backend for the section.
        """
        from asd_keras.layers import LinearSpectrogram

        if self.config["branches"] != "spectrogram":
            raise ValueError(
                "spectrogram_scorer needs a spectrogram-only model; train with "
                f"branches=spectrogram (this run has branches={self.config['branches']!r}).")
        key = f"{machine_type}_{section}"
        entry = self.members[member]
        model = entry["groups"].get("all", entry["groups"].get(key))
        if model is None:
            raise ValueError(f"The run has no model for section {key!r}.")
        encoder = model.get_layer("spectrogram_encoder")
        stft = LinearSpectrogram(1024, 512)
        loader = self.loader()

        def spectrogram_fn(path):
            loader.check([str(path)], progress=False)
            waveform = loader.load(str(path))
            return keras_numpy(stft(waveform[None]))[0]

        def score_fn(spectrograms):
            embeddings = encoder.predict(np.asarray(spectrograms, np.float32), verbose=0,
                                         batch_size=int(self.config["score_batch_clips"]))
            return entry["backend"].score(embeddings, [key] * len(embeddings))

        return spectrogram_fn, score_fn

    # ------------------------------------------------------------------
    # Persistence and export
    # ------------------------------------------------------------------

    def save(self, run_dir, train_embeddings=None):
        run_dir = Path(run_dir)
        for r, member in enumerate(self.members):
            folder = run_dir / "members" / f"member{r}"
            folder.mkdir(parents=True, exist_ok=True)
            for group_name, model in member["groups"].items():
                model.save(folder / f"{group_name}.keras")
            member["backend"].save(folder / "backend.npz")
            atomic_write_text(folder / "classes.json", json.dumps(
                {g: e.get_config() for g, e in member["encoders"].items()}, indent=1))
            if train_embeddings is not None:
                np.save(folder / "train_embeddings.npy", train_embeddings[r])
        atomic_write_text(run_dir / "members" / "thresholds.json",
                          json.dumps(self.thresholds, indent=1))

    @classmethod
    def load(cls, run_dir, config):
        # Registers the custom layers for deserialisation.
        import asd_keras.layers  # noqa: F401

        system = cls(config)
        root = Path(run_dir) / "members"
        folders = sorted(root.glob("member*"), key=lambda p: int(p.name[6:]))
        if not folders:
            raise FileNotFoundError(
                f"No trained members in '{root}'. Is '{run_dir}' a finished "
                "'asd-keras train --system wilkinghoff' run?")
        for folder in folders:
            classes = json.loads((folder / "classes.json").read_text())
            system.members.append({
                "groups": {g: load_keras_model(folder / f"{g}.keras")
                           for g in classes},
                "encoders": {g: ClassEncoder.from_config(v) for g, v in classes.items()},
                "backend": backend_from_config(system.backend_config)
                .load_tables(folder / "backend.npz"),
            })
        system.thresholds = json.loads((root / "thresholds.json").read_text())
        return system

    def _fix_length(self, waveform):
        """The length policy on a batch `(clips, samples)`, no random crop."""
        import tensorflow as tf

        n = self.num_samples
        policy = self.config["length_policy"]
        if policy == "truncate":
            tf.debugging.assert_greater_equal(
                tf.shape(waveform)[1], n,
                message=f"Clips must hold at least {n} samples (length_policy=truncate).")
            return waveform[:, :n]
        if policy == "pad":
            waveform = waveform[:, :n]
            return tf.pad(waveform, [[0, 0], [0, n - tf.shape(waveform)[1]]])
        length = tf.shape(waveform)[1]
        repeats = (n + length - 1) // length
        return tf.tile(waveform, [1, repeats])[:, :n]

    def export(self, out_dir):
        """Writes a SavedModel mapping raw waveforms of a section to scores.

        `serving_default(waveform, machine_type, section)`: float32
        waveforms `(clips, samples)` at the run's sample rate (any length;
        the run's length policy is applied without random cropping) and
        scalar strings such as `"fan"` and `"00"`. Returns `anomaly_score`
        (float32, the ensemble sum) and `decision` (int32), both `(clips,)`.
        The embedding models and every member's reference table are inside.
        """
        import keras
        import tensorflow as tf

        sections = sorted(self.thresholds)
        names = tf.constant(sections)
        thresholds = tf.constant([self.thresholds[s] for s in sections], tf.float32)
        archive = keras.export.ExportArchive()
        members = []
        for member in self.members:
            for model in member["groups"].values():
                archive.track(model)
            refs, alpha, beta = member["backend"].padded_tables(sections)
            group_names = sorted(member["groups"])
            group_of_section = [
                group_names.index("all" if "all" in member["groups"] else s)
                for s in sections]
            members.append((
                [member["groups"][g] for g in group_names],
                tf.constant(refs), tf.constant(alpha), tf.constant(beta),
                tf.constant(group_of_section, tf.int32)))
        fix_length = self._fix_length

        def serve(waveform, machine_type, section):
            key = tf.strings.join([machine_type, section], separator="_")
            matches = tf.where(tf.equal(names, key))
            tf.debugging.Assert(
                tf.size(matches) == 1, ["Unknown section", key, "; known:", names])
            index = tf.cast(tf.reshape(matches, [-1])[0], tf.int32)
            waveform = fix_length(waveform)
            total = tf.zeros(tf.shape(waveform)[:1], tf.float32)
            for models, refs, alpha, beta, groups in members:
                if len(models) == 1:
                    embedding = models[0](waveform, training=False)
                else:
                    embedding = tf.switch_case(
                        groups[index],
                        [lambda m=m: m(waveform, training=False) for m in models])
                embedding = tf.math.l2_normalize(embedding, axis=1, epsilon=1e-24)
                values = alpha[index][None, :] - beta[index][None, :] * tf.matmul(
                    embedding, refs[index], transpose_b=True)
                total += tf.reduce_min(values, axis=1)
            return {"anomaly_score": total,
                    "decision": tf.cast(total > thresholds[index], tf.int32)}

        archive.add_endpoint(
            "serve", serve,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([], tf.string, name="machine_type"),
                tf.TensorSpec([], tf.string, name="section"),
            ])
        archive.write_out(str(out_dir), verbose=False)
        return {"sections": sections, "sample_rate": self.config["sample_rate"],
                "channel": self.config["channel"], "num_samples": self.num_samples,
                "length_policy": self.config["length_policy"],
                "ensemble_size": len(self.members)}
