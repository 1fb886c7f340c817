"""Embeddings of a network trained on an auxiliary classification task.

The extractor trains Wilkinghoff's two-branch embedding network (`asd_keras.
models.wilkinghoff`) to classify its training clips into classes derived
from their metadata (machine type, section, attributes, domain;
`asd_keras.data.labels`) with a (sub-cluster) AdaCos, ArcFace, softmax or
compactness head and mixup, and describes every clip by its embedding
(feature set `embedding`). The network's input length is fixed: clips are
truncated, padded or tiled to `clip_seconds` (`length_policy`), resolved
from the training clips when `"auto"` (`data_choices` says what was chosen
and why).

With `channel="both"` (DCASE 2026 two-channel clips: channel 0 the near,
channel 1 the far microphone) one network serves both microphones: it is
trained on the near channel only, the one that carries the machine, and the
far channel is embedded by the same network, so that the two halves of the
feature vector `[near | far]` live in one embedding space (a backend can then
compare or subtract them, e.g. `f_near - alpha * f_far`).
"""

import importlib
import json
import logging
from pathlib import Path

import keras
import numpy as np

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import validate_config
from asd_keras.data.audio import AudioLoader
from asd_keras.data.audio import inspect_audio
from asd_keras.data.labels import GRANULARITIES
from asd_keras.data.labels import ClassEncoder
from asd_keras.extractors.base import FeatureExtractor
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.classifier_pipelines import training_batches
from asd_keras.extractors.classifier_pipelines import waveform_batches
from asd_keras.extractors.classifier_serving import paired_model
from asd_keras.extractors.classifier_serving import serving_model
from asd_keras.extractors.classifier_serving import spectrogram_functions
from asd_keras.extractors.classifier_training import train_classifier
from asd_keras.layers.heads import SCALE_RULES
from asd_keras.layers.mixup import LABEL_RULES
from asd_keras.models.precision import precision_schema
from asd_keras.models.wilkinghoff import BLOCK2_BN
from asd_keras.models.wilkinghoff import BRANCHES
from asd_keras.models.wilkinghoff import LOSSES
from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import load_keras_model

logger = logging.getLogger(__name__)

LENGTH_POLICIES = ("truncate", "pad", "tile_crop")


def training_schema():
    """The keys of the classification training every classifier-embedding
    extractor shares: head and classes, mixup, Adam(W) steps, clip length,
    audio, pipeline and seed."""
    return {
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
        "embedding_dim": integer(min=1),
        "l2": number(min=0),
        "epochs": integer(min=1),
        "batch_size": integer(min=1),
        "learning_rate": number(gt=0),
        "clip_seconds": number(gt=0, also=("auto",)),
        "length_policy": choice(*LENGTH_POLICIES, "auto"),
        "sample_rate": integer(min=1),
        "channel": choice(0, 1, "both"),
        "resample": boolean(),
        "monitor_compactness": boolean(),
        "monitor_clips": integer(min=1),
        "score_batch_clips": integer(min=1),
        "pipeline_ram_mb": integer(min=1),
        **precision_schema(),
        "seed": integer(min=0, max=2**32 - 1),
    }


def _schema():
    return {**training_schema(), "block2_bn": choice(*BLOCK2_BN),
            "branches": choice(*BRANCHES)}


@register_extractor("classifier_embedding")
class ClassifierEmbeddingExtractor(FeatureExtractor):
    """Embeddings of Wilkinghoff's angular-margin classification network.

    Args:
        loss: str. Head and loss (`asd_keras.models.wilkinghoff.LOSSES`):
            `"sc_adacos"` (sub-cluster AdaCos, the paper), `"adacos"`,
            `"arcface"`, `"softmax"`, `"compactness"`, `"compactness_cce"`.
        classes: str. Class granularity (`asd_keras.data.labels`);
            `"per_section"` trains one single-class model per section (the
            `wilkinghoff` preset then sets `extractor_grouping=section`).
        domain_in_class: bool. Attribute classes also split by domain.
        num_subclusters: the AdaCos heads.
        trainable_centers: the AdaCos heads.
        scale_rule: the AdaCos heads.
        arcface_scale: the ArcFace head.
        arcface_margin: the ArcFace head.
        cce_weight: float. Cross-entropy weight of `compactness_cce`.
        mixup_probability: mixup (reference wilkinghoff.md §4).
        mixup_label: mixup (reference wilkinghoff.md §4).
        mixup_in: `"model"` (a layer, as the reference) or `"pipeline"`.
        block2_bn: the network
            (`wilkinghoff_embedding_model`).
        branches: see `block2_bn`.
        embedding_dim: see `block2_bn`.
        l2: see `block2_bn`.
        epochs: Adam training.
        batch_size: Adam training.
        learning_rate: Adam training.
        clip_seconds: float or `"auto"`. The network's input length.
        length_policy: `"truncate"`, `"pad"`, `"tile_crop"` or `"auto"`.
        sample_rate: audio loading. `channel` is `0`
            (mono files; the near microphone of DCASE 2026), `1` (the far
            microphone) or `"both"`: the network is trained on channel 0
            only (one network for both microphones, trained on the channel
            that carries the machine), the far channel is embedded by the
            same network, and `embedding` is `[near | far]` (`2 *
            embedding_dim` values; `serving_model` then takes `(batch,
            samples, 2)` waveforms).
        channel: see `sample_rate`.
        resample: see `sample_rate`.
        monitor_compactness: log intra/inter-class
            compactness on a fixed subset of training clips every epoch (a
            diagnostic of the paper's Figs. 2-3, off by default: it embeds
            `monitor_clips` clips after every epoch, about a sixth of the
            demo's training time).
        monitor_clips: see `monitor_compactness`.
        score_batch_clips: int. Clips per `transform` batch.
        pipeline_ram_mb: int. Memory of the training pipeline: the decoded
            training clips are kept in memory when they fit (decoded once,
            not every epoch on the cores that train), else streamed from
            disk; the rest caps tf.data's prefetch buffers. Defaults to
            2048 MB (1,470 clips of 4 s take 359 MB; DCASE 2022's 42,000
            clips of 10 s, 25 GB, stream).
        jit_compile: `"auto"` (XLA on GPU only), True or False.
        dtype_policy: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (loss-scaled; for GPUs): the precision of the trained networks
            (`asd_keras.models.precision`); the front end, the heads and the
            embedding stay float32.
        seed: int. Seeds the network, the head, mixup and the shuffles.
    """

    trainable = True

    def __init__(self, loss="sc_adacos", classes="attribute", domain_in_class=True,
                 num_subclusters=16, trainable_centers=False, scale_rule="reference",
                 arcface_scale=30.0, arcface_margin=0.5, cce_weight=1.0,
                 mixup_probability=1.0, mixup_label="max", mixup_in="model",
                 block2_bn="shortcut", branches="both", embedding_dim=128, l2=1e-5,
                 epochs=10, batch_size=64, learning_rate=1e-3, clip_seconds="auto",
                 length_policy="auto", sample_rate=16000, channel=0, resample=False,
                 monitor_compactness=False, monitor_clips=256, score_batch_clips=16,
                 pipeline_ram_mb=2048, jit_compile="auto", dtype_policy="float32",
                 seed=1234):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.config = validate_config(config, _schema())
        self.model = None
        self.encoder = None
        self.data_choices = {}

    def get_config(self):
        return dict(self.config)

    @property
    def num_samples(self):
        """Samples of each training and scoring clip (`clip_seconds` at `sample_rate`).

        Raises:
            ValueError: `clip_seconds` or `length_policy` is still `"auto"` (the
                extractor has not seen its training clips yet).
        """
        c = self.config
        if c["clip_seconds"] == "auto" or c["length_policy"] == "auto":
            raise ValueError(
                "clip_seconds/length_policy are 'auto' and no training clips have been "
                "seen yet; fit the extractor first, or set clip_seconds and length_policy.")
        return int(round(float(c["clip_seconds"]) * int(c["sample_rate"])))

    def resolve_length(self, paths):
        """Resolves `clip_seconds="auto"` / `length_policy="auto"` from clips.

        The network's input length is fixed, but DCASE 2023-2025 clip
        lengths vary by machine type (6-18 s). With `"auto"` the length is
        the longest training clip and shorter clips are tiled and cropped,
        as the DCASE 2023 system does (tiled to 18 s, the longest clip;
        reference wilkinghoff.md §1); when every clip has the same length
        this is plain truncation, the ICASSP 2023 setting on DCASE 2022
        (10 s). An explicit `length_policy="truncate"` with
        `clip_seconds="auto"` takes the shortest clip instead, so no clip is
        too short. The numbers replace `"auto"` in the configuration, and
        `data_choices` says why.
        """
        c = self.config
        if c["clip_seconds"] != "auto" and c["length_policy"] != "auto":
            return
        info = inspect_audio(list(paths), progress=False)
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
                f"length_policy=truncate (every clip holds at least {n / rate:g} s)"
                if shortest >= n else
                f"length_policy=tile_crop (clips of {shortest / rate:g} s are shorter "
                f"than {n / rate:g} s)")
        self.data_choices = {"clip_seconds": c["clip_seconds"],
                             "length_policy": c["length_policy"],
                             "why": "; ".join(reasons)}
        logger.info("Clip length: %s.", self.data_choices["why"])

    @property
    def serving_channels(self):
        """Channels of the `serving_model` input: 2 for `"both"`, else 1."""
        return 2 if self.config["channel"] == "both" else 1

    def loader(self, training=False, channel=None):
        """The `AudioLoader` of the network's input.

        Args:
            training: bool. Random `tile_crop` offsets.
            channel: int, `"both"` or None. None: the channel the network
                sees, i.e. the configured one, or channel 0 (the near
                microphone, the training channel) for `channel="both"`, so
                that the training, monitoring and explaining pipelines get
                single-channel waveforms. `"both"` gives `(samples, 2)`.
        """
        c = self.config
        n = self.num_samples
        if channel is None:
            channel = 0 if c["channel"] == "both" else c["channel"]
        return AudioLoader(sample_rate=c["sample_rate"], channel=channel, length=n,
                           length_policy=c["length_policy"], resample=bool(c["resample"]),
                           random_crop=training and c["length_policy"] == "tile_crop",
                           min_samples=1)

    # -- pipelines ---------------------------------------------------------

    def training_dataset(self, paths, labels, num_classes, loader, shuffle=True, seed=0):
        """The `model.fit` pipeline: `({"waveform", "label"}, one_hot)` batches,
        from memory or streamed from disk
        (`asd_keras.extractors.classifier_pipelines.training_batches`);
        `data_choices["training_clips"]` says which way was taken.
        """
        return training_batches(self.config, self.num_samples, self.data_choices, paths,
                                labels, num_classes, loader, shuffle, seed)

    def waveform_dataset(self, paths, loader):
        """Batches of fixed-length waveforms `(batch, n)`, in order;
        `(batch, n, 2)` for a loader of `channel="both"`."""
        return waveform_batches(self.config, self.num_samples, paths, loader)

    # -- training ----------------------------------------------------------

    network_name = "wilkinghoff"

    def build_network(self, paths, loader):
        """The embedding network to train (waveform -> embedding); `paths`
        and `loader` give the training clips to a network that estimates
        something from them."""
        c = self.config
        return wilkinghoff_embedding_model(
            self.num_samples, int(c["embedding_dim"]), float(c["l2"]), c["block2_bn"],
            c["branches"])

    def micro_batches_per_update(self):
        """Pipeline elements per optimizer update: 1 (a subclass that
        accumulates gradients over micro-batches returns their number)."""
        return 1

    def optimizer(self, embedding_model):
        """The training optimizer (Adam at `learning_rate`)."""
        return keras.optimizers.Adam(float(self.config["learning_rate"]))

    def fit(self, table, context, name="classifier_embedding"):
        """Trains the network on the clips of `table` (all normal;
        `asd_keras.extractors.classifier_training`).

        Returns:
            history DataFrame (with the epoch-0 compactness when monitored).
        """
        self.model, self.encoder, history = train_classifier(self, table, context, name)
        return history

    # -- features ----------------------------------------------------------

    def _check_fitted(self):
        if self.model is None:
            raise ValueError("The classifier_embedding extractor is not trained; call fit() "
                             "or load it.")

    def transform(self, table, verbose=0):
        """`{"embedding": (clips, dim)}`; with `channel="both"` each clip's
        two channels are embedded by the same network, `[near | far]`.

        Raises:
            FileNotFoundError, ValueError: naming a missing, unreadable,
                wrongly sampled, single-channel (for channel 1 or `"both"`)
                or corrupt clip.
        """
        self._check_fitted()
        if len(table) == 0:
            dim = self.serving_channels * self.model.output_shape[-1]
            return {"embedding": np.zeros((0, dim), np.float32)}
        both = self.config["channel"] == "both"
        # One decoding pass: `(n, 2)` clips for "both".
        loader = self.loader(channel="both" if both else None)
        loader.check(list(table["path"]), progress=False)
        model = paired_model(self.model, self.num_samples) if both else self.model
        values = model.predict(self.waveform_dataset(table["path"], loader),
                               verbose=verbose)
        if both:
            values = values["embedding"]
        return {"embedding": np.asarray(values, np.float32)}

    def serving_model(self, num_samples=None):
        """Waveforms of any length `(batch, samples)` to `{"embedding"}`; the
        length policy is applied without the random training crop. With
        `channel="both"` the input is `(batch, samples, 2)` (near, far): the
        length policy and the network are applied to each channel, and the
        embeddings concatenated `[near | far]`."""
        self._check_fitted()
        return serving_model(self.model, self.num_samples, self.config["length_policy"],
                             self.config["channel"] == "both", num_samples)

    def spectrogram_functions(self):
        """Functions for explaining a spectrogram-only network (RISE, Fig. 4;
        `asd_keras.extractors.classifier_serving.spectrogram_functions`).

        Needs `branches="spectrogram"`, so the embedding depends on the
        spectrogram alone.

        Returns:
            (spectrogram_fn, embed_fn): `spectrogram_fn(path)` gives the
            linear-magnitude spectrogram `(frames, 513)` of a clip after the
            length policy; `embed_fn(spectrograms)` embeds a batch `(batch,
            frames, 513)`, so `backend.score(embed_fn(s))` scores it.
        """
        self._check_fitted()
        return spectrogram_functions(self.model, self.config, self.loader)

    # -- persistence -------------------------------------------------------

    def _save_weights(self, folder):
        self._check_fitted()
        with atomic_path(Path(folder) / "model.keras", suffix=".keras") as tmp:
            self.model.save(tmp)
        atomic_write_text(Path(folder) / "classes.json",
                          json.dumps(self.encoder.get_config(), indent=1))

    def _load_weights(self, folder):
        importlib.import_module("asd_keras.layers")  # registers the network's layers
        self.model = load_keras_model(Path(folder) / "model.keras")
        self.encoder = ClassEncoder.from_config(
            json.loads((Path(folder) / "classes.json").read_text()))
