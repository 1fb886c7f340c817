"""Embeddings of a pre-trained EAT fine-tuned on an auxiliary classification task.

The extractor of "An Enhanced Audio Feature Tailored for Anomalous Sound
Detection Based on Pre-trained Models" (Zhong et al., DCASE 2024; methods.md
§G): EAT, initialised from a preset (a converted checkpoint, `asd-keras
convert`) or from random weights (a named configuration; labelled as such
in `data_choices`), with a swappable filter bank (mel, linear, gammatone),
parameter-free SimAM on the filter banks, attentive statistics pooling and
a projection to the embedding (`asd_keras.models.encoder_finetuning`), is
fine-tuned to classify machine type, section and attributes with ArcFace,
mixup and SpecAugment, on the streaming `tf.data` pipeline of the
`classifier_embedding` extractor (the same clip lengths, label classes,
heads, mixup, resume and two-channel handling; this class changes only the
network and the optimizer). Every clip is then described by its embedding
(feature set `embedding`).

Small data: `layer_decay` (< 1) lowers the learning rate of block `i` of
`L` to `layer_decay ** (L - i)` times the base rate (EAT's own fine-tuning
recipe), and `frozen_blocks` freezes the patch embedding and the first
blocks outright.

Memory (assumption, experiments/eat_simam/README.md "Memory"): fine-tuning
EAT-base on 10 s clips keeps about 0.68 GB of activations per clip for the
backward pass (505 tokens x 12 blocks; each block's attention
probabilities, 12 x 505^2 floats, are 12 MB of it, its MLP's hidden layer
before and after GELU another 12 MB), so a step of the paper's batch of
32 needs about 24 GB of host memory (benchmarks/bench_eat_simam_memory.py:
5.3 GB at 4 clips, 8.0 GB at 8, extrapolated; 10.0 GB as 4 micro-batches
of 8). `gradient_accumulation_steps=k` splits every batch
of `batch_size` clips into `k` micro-batches that run one after another
(`asd_keras.data.pipelines.micro_batches`) and applies one optimizer update
per batch from the mean of their gradients (the Keras optimizer's
`gradient_accumulation_steps`, the schedule counted in updates by
`PerUpdateSchedule`, one training-function call per update through
`steps_per_execution`). Each clip's loss keeps the weight it has in the
whole batch, so the update is that of the batch of `batch_size` (the last,
smaller batch of an epoch included), with these exceptions: mixup inside
the model (`mixup_in="model"`) pairs every clip with one of its own
micro-batch (the batches are shuffled, so the pairs are as random;
`mixup_in="pipeline"` mixes over the whole batch); the AdaCos heads'
adaptive scale, which the `arcface` loss of this system does not have,
would follow each micro-batch; and under `dtype_policy="mixed_float16"` a
micro-batch whose scaled gradients overflow is skipped by the loss scaling
and the next one takes its place in the window. EAT has no batch
normalisation (layer norms only), and SimAM, the filter banks, SpecAugment
and pooling work per clip. The alternatives: rematerialising the blocks
(`keras.RematScope`) keeps the batch whole at the price of a second forward
pass through them in every step; `dtype_policy="mixed_bfloat16"` stores
the activations in half the bytes but changes the arithmetic.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import string
from asd_keras.config import validate_config
from asd_keras.data.pipelines import micro_batches
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
from asd_keras.extractors.classifier_embedding import training_schema
from asd_keras.features.filterbanks import FILTER_BANKS
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.audio_encoders import preset_info
from asd_keras.models.audio_encoders import transfer_weights
from asd_keras.models.encoder_finetuning import POOLINGS
from asd_keras.models.encoder_finetuning import SIMAM_MODES
from asd_keras.models.encoder_finetuning import block_index
from asd_keras.models.encoder_finetuning import eat_embedding_model
from asd_keras.optimizers import LayerwiseAdamW
from asd_keras.optimizers import PerUpdateSchedule

logger = logging.getLogger(__name__)

NORMALISATIONS = ("auto", "preset", "estimate")
LR_SCHEDULES = ("cosine", "constant")


def _schema():
    return {
        **training_schema(),
        "preset": string(),
        "num_frames": integer(min=1, also=("auto",)),
        "filter_bank": choice(*FILTER_BANKS),
        "low_freq": number(min=0),
        "high_freq": number(),
        "normalisation": choice(*NORMALISATIONS),
        "norm_clips": integer(min=1),
        "simam": choice(*SIMAM_MODES),
        "simam_tile": integer(min=1),
        "pooling": choice(*POOLINGS),
        "attention_dim": integer(min=1),
        "time_masks": integer(min=0),
        "time_mask_width": integer(min=0),
        "freq_masks": integer(min=0),
        "freq_mask_width": integer(min=0),
        "frozen_blocks": integer(min=0),
        "layer_decay": number(gt=0, max=1),
        "weight_decay": number(min=0),
        "lr_schedule": choice(*LR_SCHEDULES),
        "warmup_epochs": number(min=0),
        "gradient_accumulation_steps": integer(min=1),
        "sample_rate": choice(16000),  # EAT's front end is 16 kHz only
    }


@register_extractor("finetuned_encoder")
class FinetunedEncoderExtractor(ClassifierEmbeddingExtractor):
    """A pre-trained EAT fine-tuned with ArcFace on the clips' metadata.

    Args:
        preset: str. A named EAT configuration of
            `asd_keras.models.audio_encoders.PRESETS` (random weights:
            `eat_small`, the CPU size; `eat_base`, the paper's 90 M
            parameters) or a preset folder of `asd-keras convert` (the
            pre-trained weights).
        num_frames: int or `"auto"`. Frames EAT sees (a multiple of 16);
            `"auto"`: the clip's frames rounded up to a multiple of 16.
        filter_bank: str. `"linear"` (m-FB: 128 triangles evenly spaced in
            Hz, the paper's), `"mel"` (o-FB: Kaldi's mel bank, EAT's
            pre-training) or `"gammatone"` (g-FB, ERB-spaced).
        low_freq: float. Filter-bank edges in Hz (`high_freq <=
            0`: an offset from Nyquist). The paper's m-FB edges are unknown;
            20 Hz (Kaldi's low edge) to 8 kHz is assumed.
        high_freq: see `low_freq`.
        normalisation: str. `"auto"`: AudioSet's constants for the mel bank
            (what the preset was pre-trained on), the mean and std
            re-estimated on the training clips for the other banks;
            `"preset"` or `"estimate"` force one.
        norm_clips: int. Training clips the estimate reads.
        simam: str. `"none"`, `"global"` or `"local"` SimAM on the filter
            banks before the patch embedding.
        simam_tile: int. Tile side of local SimAM (32).
        pooling: str. `"asp"` (attentive statistics pooling of the patch
            tokens, the paper's), `"cls"` or `"mean"`.
        attention_dim: int. Hidden size of attentive statistics pooling.
        embedding_dim: int. The embedding's size.
        time_masks: int.
            SpecAugment on the filter banks (width 0 turns one off).
        time_mask_width: see `time_masks`.
        freq_masks: see `time_masks`.
        freq_mask_width: see `time_masks`.
        frozen_blocks: int. Freezes the patch embedding and the first
            `frozen_blocks` transformer blocks (0: none).
        layer_decay: float in (0, 1]. Layer-wise learning-rate decay (1:
            one rate for all).
        weight_decay: float. AdamW's decoupled weight decay.
        lr_schedule: str. `"cosine"`: linear warm-up over `warmup_epochs`
            to `learning_rate`, then cosine decay to 1 % of it by the last
            epoch (EAT's fine-tuning schedule); `"constant"`.
        warmup_epochs: float. Warm-up length of `"cosine"`; transformers
            trained without one tend to collapse to one embedding.
        gradient_accumulation_steps: int. Micro-batches per batch: every
            batch of `batch_size` clips runs as this many micro-batches of
            about `batch_size / k` clips, with one optimizer update per
            batch from their averaged gradients, so the training step is
            that of `batch_size` at a `k`-th of the activation memory (see
            the module docstring for the exceptions). `epochs`,
            `warmup_epochs` and the schedule count batches of
            `batch_size`, as with 1 (no accumulation, the default). At most
            `batch_size`.
        loss: the classification head and its classes, as the
            `classifier_embedding` extractor (ArcFace on machine type +
            section + attributes by default). The paper's ArcFace scale and
            margin are unknown; 16 and 0.2 are the defaults because the
            common 30 and 0.5 made EAT collapse to one embedding (a flat
            loss) from random weights on the synthetic data, while 16 and
            0.2 trained (experiments/eat_simam/README.md).
        classes: see `loss`.
        domain_in_class: see `loss`.
        num_subclusters: see `loss`.
        trainable_centers: see `loss`.
        scale_rule: see `loss`.
        arcface_scale: see `loss`.
        arcface_margin: see `loss`.
        cce_weight: see `loss`.
        l2: see `loss`.
        mixup_probability: as the `classifier_embedding` extractor (EAT
            takes 16 kHz audio only).
        mixup_label: see `mixup_probability`.
        mixup_in: see `mixup_probability`.
        epochs: see `mixup_probability`.
        batch_size: see `mixup_probability`.
        learning_rate: see `mixup_probability`.
        clip_seconds: see `mixup_probability`.
        length_policy: see `mixup_probability`.
        sample_rate: see `mixup_probability`.
        channel: see `mixup_probability`.
        resample: see `mixup_probability`.
        monitor_compactness: see `mixup_probability`.
        monitor_clips: see `mixup_probability`.
        score_batch_clips: see `mixup_probability`.
        pipeline_ram_mb: see `mixup_probability`.
        jit_compile: see `mixup_probability`.
        dtype_policy: see `mixup_probability`.
        seed: see `mixup_probability`.
    """

    network_name = "eat"

    def __init__(self, preset="eat_small", num_frames="auto", filter_bank="linear",
                 low_freq=20.0, high_freq=0.0, normalisation="auto", norm_clips=256,
                 simam="local", simam_tile=32, pooling="asp", attention_dim=128,
                 embedding_dim=256, time_masks=1, time_mask_width=40, freq_masks=1,
                 freq_mask_width=16, frozen_blocks=0, layer_decay=0.75, weight_decay=0.01,
                 lr_schedule="cosine", warmup_epochs=1.0, gradient_accumulation_steps=1,
                 loss="arcface", classes="attribute", domain_in_class=False,
                 num_subclusters=16, trainable_centers=False, scale_rule="reference",
                 arcface_scale=16.0, arcface_margin=0.2, cce_weight=1.0, l2=0.0,
                 mixup_probability=0.5, mixup_label="standard", mixup_in="model", epochs=10,
                 batch_size=16, learning_rate=1e-4, clip_seconds="auto",
                 length_policy="auto", sample_rate=16000, channel=0, resample=False,
                 monitor_compactness=False, monitor_clips=256, score_batch_clips=16,
                 pipeline_ram_mb=256, jit_compile="auto", dtype_policy="float32",
                 seed=1234):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.config = validate_config(config, _schema())
        info = preset_info(self.config["preset"])  # a bad preset fails now, not after loading
        steps, batch = self.config["gradient_accumulation_steps"], self.config["batch_size"]
        if steps > batch:
            raise ValueError(f"gradient_accumulation_steps={steps} exceeds batch_size={batch}: "
                             "every micro-batch would be empty or hold one clip at most; use "
                             f"at most {batch} (a divisor of it gives equal micro-batches).")
        if info["encoder"] != "eat":
            raise ValueError(f"preset {self.config['preset']!r} is a {info['encoder']} "
                             "encoder; the finetuned_encoder extractor fine-tunes EAT (a named "
                             "EAT configuration such as 'eat_small' or an EAT preset folder).")
        self.model = None
        self.encoder = None
        self.data_choices = {}

    @property
    def pretrained(self):
        """Whether the preset holds converted (pretrained) weights rather than random ones."""
        return preset_info(self.config["preset"])["pretrained"]

    @property
    def weights_note(self):
        """Where the initial weights came from, for reports."""
        info = preset_info(self.config["preset"])
        if info["pretrained"]:
            return f"fine-tuned from {info['source']}"
        return (f"random initial weights (named configuration {self.config['preset']!r}; "
                "no checkpoint)")

    # -- memory: micro-batches ------------------------------------------------

    def micro_batches_per_update(self):
        """`gradient_accumulation_steps`: pipeline elements per update."""
        return int(self.config["gradient_accumulation_steps"])

    def training_dataset(self, paths, labels, num_classes, loader, shuffle=True, seed=0):
        """The `classifier_embedding` pipeline, each batch of `batch_size`
        split into `gradient_accumulation_steps` weighted micro-batches
        (`micro_batches`; mixup in the pipeline happens before the split)."""
        ds = super().training_dataset(paths, labels, num_classes, loader, shuffle, seed)
        steps = self.micro_batches_per_update()
        if steps == 1:
            return ds
        # The batches' memory budget (`classifier_pipelines.bounded_pipeline`)
        # carries over to the split.
        return micro_batches(ds, steps).prefetch(tf.data.AUTOTUNE)

    # -- network -----------------------------------------------------------

    def _normalisation(self, paths, loader, encoder_config):
        """`(norm_mean, norm_std)` of the filter banks and why."""
        c = self.config
        rule = c["normalisation"]
        if rule == "auto":
            rule = "preset" if c["filter_bank"] == "mel" else "estimate"
        if rule == "preset":
            return (float(encoder_config.get("norm_mean", -4.268)),
                    float(encoder_config.get("norm_std", 4.569)),
                    "the preset's (AudioSet) constants")
        # The log energies themselves (mean 0, 2 std = 1 leaves them as they
        # are), over the clips' own frames: padding frames are not data.
        fbank = KaldiFbank(window_type="hanning", num_mel_bins=int(
            encoder_config.get("num_mel_bins", 128)), subtract_waveform_mean=True,
            low_freq=float(c["low_freq"]), high_freq=float(c["high_freq"]),
            filter_bank=c["filter_bank"], norm_mean=0.0, norm_std=0.5)
        pick = np.sort(np.random.default_rng(int(c["seed"])).permutation(len(paths))[
            :int(c["norm_clips"])])
        total, squares, count = 0.0, 0.0, 0
        for batch in self.waveform_dataset([paths[i] for i in pick], loader):
            values = keras.ops.convert_to_numpy(fbank(batch)).astype(np.float64)
            total += values.sum()
            squares += np.square(values).sum()
            count += values.size
        mean = total / count
        std = float(np.sqrt(max(squares / count - mean * mean, 1e-12)))
        return (float(mean), std,
                f"estimated on {len(pick)} training clips ({c['filter_bank']} bank)")

    def build_network(self, paths, loader):
        """EAT with the configured front end, SimAM and pooling; a preset
        folder's weights are copied in by layer name."""
        c = self.config
        info = preset_info(c["preset"])
        encoder_config = dict(info["config"])
        norm_mean, norm_std, why = self._normalisation(paths, loader, encoder_config)
        for key in ("norm_mean", "norm_std", "num_classes"):
            encoder_config.pop(key, None)
        encoder_config["num_frames"] = None if c["num_frames"] == "auto" else c["num_frames"]
        seed = int(c["seed"])
        keras.utils.set_random_seed(seed)
        network = eat_embedding_model(
            self.num_samples, encoder_config, c["filter_bank"], norm_mean, norm_std,
            float(c["low_freq"]), float(c["high_freq"]), c["simam"], int(c["simam_tile"]),
            int(c["time_masks"]), int(c["time_mask_width"]), int(c["freq_masks"]),
            int(c["freq_mask_width"]), c["pooling"], int(c["attention_dim"]),
            int(c["embedding_dim"]), seed)
        if info["pretrained"]:
            encoder, _ = load_encoder(c["preset"], seed)
            copied = transfer_weights(encoder, network)
            logger.info("Copied the weights of %d EAT layers from %s.", len(copied),
                        info["source"])
            del encoder
        num_layers = max(b for b in map(block_index, (lay.name for lay in network.layers))
                         if b is not None) + 1
        if int(c["frozen_blocks"]) > num_layers:
            raise ValueError(f"frozen_blocks={c['frozen_blocks']} exceeds the preset's "
                             f"{num_layers} transformer blocks.")
        for layer in network.layers:
            index = block_index(layer.name)
            if index is not None and index < int(c["frozen_blocks"]):
                layer.trainable = False
        self._num_layers, self._num_clips = num_layers, max(len(paths), 1)
        self.data_choices.update({
            "weights": self.weights_note,
            "encoder_weights": "pretrained" if info["pretrained"] else "random weights",
            "norm_mean": norm_mean, "norm_std": norm_std,
            "normalisation": why, "num_frames": int(network.get_layer("fbank").num_frames)})
        logger.info("EAT fine-tuning: %s; filter bank %s, normalisation %s (mean %.3f, std "
                    "%.3f), SimAM %s.", self.data_choices["weights"], c["filter_bank"], why,
                    norm_mean, norm_std, c["simam"])
        return network

    def optimizer(self, embedding_model):
        """AdamW with layer-wise learning-rate decay: block `i` (0-based) of
        `L` at `layer_decay ** (L - i)`, the patch embedding, positions, CLS
        and first norm at `layer_decay ** (L + 1)`, the pooling and
        projection at the base rate."""
        c = self.config
        decay = float(c["layer_decay"])
        scales = {}
        if decay < 1.0:
            for layer in embedding_model.layers:
                index = block_index(layer.name)
                if index is not None:
                    scales[layer.name] = decay ** (self._num_layers - index)
        rate = float(c["learning_rate"])
        if c["lr_schedule"] == "cosine":
            steps = -(-self._num_clips // int(c["batch_size"])) * int(c["epochs"])
            warmup = min(int(round(float(c["warmup_epochs"]) * steps / int(c["epochs"]))),
                         steps - 1)
            rate = keras.optimizers.schedules.CosineDecay(
                0.0 if warmup else rate, max(steps - warmup, 1), alpha=0.01,
                warmup_target=rate if warmup else None, warmup_steps=warmup)
        accumulate = self.micro_batches_per_update()
        if accumulate > 1 and c["lr_schedule"] == "cosine":
            rate = PerUpdateSchedule(rate, accumulate)
        return LayerwiseAdamW(scales, learning_rate=rate,
                              weight_decay=float(c["weight_decay"]),
                              gradient_accumulation_steps=accumulate if accumulate > 1 else None)

    def enhancement_maps(self, paths):
        """The filter banks before and after SimAM for a few clips.

        Returns:
            dict `"fbank"` and `"enhanced"`, each `(clips, frames, bins)`
            (`"enhanced"` equals `"fbank"` without SimAM).
        """
        self._check_fitted()
        fbank = self.model.get_layer("fbank").output
        names = [layer.name for layer in self.model.layers]
        enhanced = self.model.get_layer("simam").output if "simam" in names else fbank
        probe = keras.Model(self.model.input, {"fbank": fbank, "enhanced": enhanced})
        loader = self.loader()
        loader.check([str(p) for p in paths], progress=False)
        values = probe.predict(self.waveform_dataset([str(p) for p in paths], loader),
                               verbose=0)
        return {k: np.asarray(v) for k, v in values.items()}

    def spectrogram_functions(self):
        raise ValueError("spectrogram_functions explains Wilkinghoff's spectrogram branch; "
                         "the finetuned_encoder extractor has none (use enhancement_maps for "
                         "its filter banks).")
