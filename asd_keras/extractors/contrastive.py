"""Shin & Lee's contrastive proxy task: SimCLR and SimSiam on log-mel spectrograms.

The study (paper §III-E, Table V) trains a ResNet on two augmented views of
each normal training clip, with a projection MLP of two hidden
Linear-BatchNorm-ReLU layers and a linear output of 128 units; SimCLR pulls
the two views' projections together against the other clips of the batch
(NT-Xent), SimSiam predicts one view's projection from the other's
(negative cosine similarity with a stop-gradient, no negatives) through a
`Linear-BN-ReLU-Linear` predictor. Both frameworks use the paper's head
(SimSiam's own projector has three layers and a BatchNorm on its output;
the paper describes one head for both, which is followed here). The
projection head (and SimSiam's predictor) is discarded: the feature for
anomaly detection is the pooled backbone output (`embedding`, 512-d for
ResNet-18/34, 2048-d for ResNet-50/101/152). The common protocol (10-s
clips, AdamW, StepLR, 200 epochs, the epoch of lowest training loss) is
`SpectrogramModelExtractor`'s.

A view is `WhiteNoise` on the waveform, the encoder's log-mel layer, then
`TimeStretch`, `PitchShift`, `TimeMasking` and `FrequencyMasking` on the
log-mel (`asd_keras.layers.augment`). The paper names these five and gives
no magnitudes; the defaults below are assumptions, each documented on its
key, and a magnitude of 0 (or `white_noise=False`) leaves an augmentation
out. Each view has its own layer instances with their own seeds, so the two
views of a clip always get independent draws.

`proxy_metrics` gives the study's contrastive proxy metrics (§IV-C4, Eqs.
9-10, Wang & Isola 2020) on L2-normalised backbone features: `alignment`
(alpha = 2) of two augmented views of every test clip and `uniformity`
(t = 2) of the test clips' un-augmented features.
"""

import random

import keras
import numpy as np

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.evaluation.proxy import alignment
from asd_keras.evaluation.proxy import uniformity
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.spectrogram import SpectrogramModelExtractor
from asd_keras.extractors.spectrogram import spectrogram_model_schema
from asd_keras.layers.augment import FrequencyMasking
from asd_keras.layers.augment import PitchShift
from asd_keras.layers.augment import TimeMasking
from asd_keras.layers.augment import TimeStretch
from asd_keras.layers.augment import WhiteNoise
from asd_keras.losses.contrastive import NTXent
from asd_keras.losses.contrastive import SimSiamLoss

FRAMEWORKS = ("simclr", "simsiam")
# The order in which a view applies them (and draws their seeds): noise on
# the waveform; then the log-mel ones, stretch and shift before the masks so
# that the masked bands keep the widths drawn for them.
AUGMENTATIONS = ("white_noise", "time_stretch", "pitch_shift", "time_masking",
                 "frequency_masking")
# Seeds the augmentations of `proxy_metrics`' positive pairs. One constant
# for every model, rather than the model's seed, so that every configuration
# of a study is measured on the same random views of the same test clips.
PROXY_SEED = "contrastive-proxy-views"


def _schema():
    return {
        **spectrogram_model_schema(),
        "framework": choice(*FRAMEWORKS),
        "temperature": number(gt=0),
        "projection_dim": integer(min=1),
        "projection_hidden": integer(min=1, optional=True),
        "predictor_hidden": integer(min=1, optional=True),
        "white_noise": boolean(),
        "noise_min_snr_db": number(),
        "noise_max_snr_db": number(),
        "time_stretch_rate": number(min=0, lt=1),
        "pitch_shift_bins": integer(min=0),
        "time_mask_fraction": number(min=0, max=1),
        "time_masks": integer(min=0),
        "freq_mask_bins": integer(min=0),
        "freq_masks": integer(min=0),
    }


def view_seeds(key):
    """Two lists of layer seeds (one per view, one per `AUGMENTATIONS` entry)
    drawn from a generator seeded by `key` (int or str).

    Every augmentation gets a seed whether it is enabled or not, so turning
    one off leaves the draws of the others unchanged.
    """
    rng = random.Random(key)
    return [[rng.randrange(2**31 - 1) for _ in AUGMENTATIONS] for _ in range(2)]


@register_extractor("contrastive")
class ContrastiveExtractor(SpectrogramModelExtractor):
    """A ResNet trained by SimCLR or SimSiam; its pooled output is the feature.

    Args:
        framework: str. `"simclr"` (NT-Xent) or `"simsiam"` (negative
            cosine similarity with a predictor). Defaults to `"simclr"`.
        temperature: float > 0. NT-Xent temperature (SimCLR only).
            Defaults to `0.5` (assumption: SimCLR's small-batch setting; see
            `asd_keras.losses.contrastive`).
        projection_dim: int. Output size of the projection MLP. Defaults to
            `128` (paper §III-E).
        projection_hidden: int or None. Width of its two hidden layers;
            None (default) is the backbone's feature size, 512 or 2048
            (assumption: SimCLR's projection keeps the encoder's width).
        predictor_hidden: int or None. Bottleneck of SimSiam's predictor
            `Linear-BN-ReLU-Linear`; None (default) is `projection_dim // 4`
            (assumption: SimSiam's 2048 -> 512 -> 2048 ratio).
        white_noise: bool. Add white noise to the waveform. Defaults to
            `True`.
        noise_min_snr_db: float. The noise's SNR is
            uniform in this range. Defaults to `10.0` and `30.0`
            (assumption: audible but below the machine sound; DCASE clips
            already carry factory noise).
        noise_max_snr_db: see `noise_min_snr_db`.
        time_stretch_rate: float in `[0, 1)`. Rates are uniform in
            `[1 - r, 1 + r]`; 0 disables. Defaults to `0.2` (assumption:
            audiomentations' 0.8-1.25 range).
        pitch_shift_bins: int. Largest shift along the mel axis, in bins;
            0 disables. Defaults to `5` (assumption: about +-2 semitones
            above 1 kHz with 128 Slaney mels at 16 kHz, 2.4 bins per
            semitone). Must be below `n_mels`.
        time_mask_fraction: float in `[0, 1]`. Largest time mask as a share
            of the clip's frames (rounded); 0 disables. Defaults to `0.1`
            (assumption: 31 frames, 1 s, of a 10-s clip, SpecAugment's T of
            1 s).
        time_masks: int. Time masks per view; 0 disables. Defaults to `2`
            (SpecAugment's double masking policies).
        freq_mask_bins: int. Largest frequency mask in mel bins; 0
            disables. Defaults to `16` (assumption: an eighth of 128 mels,
            milder than SpecAugment's 27 of 80, because machine sounds carry
            their identity in narrow bands). At most `n_mels`.
        freq_masks: int. Frequency masks per view; 0 disables. Defaults to
            `2`.
        depth: int. ResNet depth, one of 18, 34, 50, 101, 152. Defaults to
            `18`.
        epochs: int. Defaults to `200` (paper §III-A).
        batch_size: int. Clips per step (each gives two views). Defaults to
            `32` (assumption; the paper gives none).
        learning_rate: float. AdamW. Defaults to `1e-3` and
            `1e-2` (assumption: PyTorch's AdamW default decay).
        weight_decay: see `learning_rate`.
        lr_step_epochs: StepLR. Defaults to `50` and `0.1`
            (assumption).
        lr_gamma: see `lr_step_epochs`.
        select: `"min_loss"` (paper: the epoch of lowest training loss) or
            `"last"`.
        clip_seconds: float. Defaults to `10.0` (paper §III-A).
        length_policy: `"truncate"`, `"pad"` or `"tile_crop"` (default; a
            random crop of the tiled clip in training).
        sample_rate: the log-mel front end (paper: 16 kHz, n_fft 1024, hop 512,
            128 mels).
        channel: see `sample_rate`.
        resample: see `sample_rate`.
        n_fft: see `sample_rate`.
        hop_length: see `sample_rate`.
        n_mels: see `sample_rate`.
        log_mode: see `sample_rate`.
        pad_mode: see `sample_rate`.
        score_batch_clips: int. Clips per feature batch. Defaults to `16`.
        pipeline_ram_mb: int. RAM budget of the tf.data autotuner.
        jit_compile: `"auto"` (XLA on GPU only), True or False.
        dtype_policy: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (loss-scaled; for GPUs): the precision of the trained networks
            (`asd_keras.models.precision`); the front end, the heads and the
            embedding stay float32.
        run_eagerly: bool. Train and embed without tracing a graph: on a
            CPU with few clips, tracing a deep ResNet's training step (or
            its predict step) costs more than the work itself.
        seed: int. Seeds the weights, the shuffle and the training views.
    """

    description = "Contrastive embedding"

    def __init__(self, framework="simclr", temperature=0.5, projection_dim=128,
                 projection_hidden=None, predictor_hidden=None, white_noise=True,
                 noise_min_snr_db=10.0, noise_max_snr_db=30.0, time_stretch_rate=0.2,
                 pitch_shift_bins=5, time_mask_fraction=0.1, time_masks=2,
                 freq_mask_bins=16, freq_masks=2, depth=18, epochs=200, batch_size=32,
                 learning_rate=1e-3, weight_decay=1e-2, lr_step_epochs=50, lr_gamma=0.1,
                 select="min_loss", clip_seconds=10.0, length_policy="tile_crop",
                 sample_rate=16000, channel=0, resample=False, n_fft=1024, hop_length=512,
                 n_mels=128, log_mode="max", pad_mode="constant", score_batch_clips=16,
                 pipeline_ram_mb=1024, jit_compile="auto", dtype_policy="float32",
                 run_eagerly=False, seed=0):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self._configure(config, _schema())
        c = self.config
        if c["noise_max_snr_db"] < c["noise_min_snr_db"]:
            raise ValueError(f"noise_max_snr_db must be >= noise_min_snr_db "
                             f"({c['noise_min_snr_db']}); received {c['noise_max_snr_db']!r}.")
        if c["pitch_shift_bins"] >= c["n_mels"]:
            raise ValueError(f"pitch_shift_bins must be below n_mels ({c['n_mels']}); "
                             f"received {c['pitch_shift_bins']!r}.")
        if c["freq_mask_bins"] > c["n_mels"]:
            raise ValueError(f"freq_mask_bins must be at most n_mels ({c['n_mels']}); "
                             f"received {c['freq_mask_bins']!r}.")

    # -- augmentations ---------------------------------------------------

    def augmentation_layers(self, seeds, name):
        """The enabled augmentations of one view, as new layers.

        Args:
            seeds: list of int, one per `AUGMENTATIONS` entry (`view_seeds`).
            name: str. Prefix of the layer names.

        Returns:
            (waveform layers, log-mel layers): lists in the order of
            application.
        """
        c = self.config
        seed = dict(zip(AUGMENTATIONS, seeds))
        waveform = []
        if c["white_noise"]:
            waveform.append(WhiteNoise(c["noise_min_snr_db"], c["noise_max_snr_db"],
                                       seed=seed["white_noise"], name=f"{name}_white_noise"))
        log_mel = []
        if c["time_stretch_rate"] > 0:
            log_mel.append(TimeStretch(c["time_stretch_rate"], seed=seed["time_stretch"],
                                       name=f"{name}_time_stretch"))
        if c["pitch_shift_bins"] > 0:
            log_mel.append(PitchShift(c["pitch_shift_bins"], seed=seed["pitch_shift"],
                                      name=f"{name}_pitch_shift"))
        time_width = int(round(c["time_mask_fraction"] * self.num_frames))
        if time_width > 0 and c["time_masks"] > 0:
            log_mel.append(TimeMasking(time_width, c["time_masks"], seed=seed["time_masking"],
                                       name=f"{name}_time_masking"))
        if c["freq_mask_bins"] > 0 and c["freq_masks"] > 0:
            log_mel.append(FrequencyMasking(c["freq_mask_bins"], c["freq_masks"],
                                            seed=seed["frequency_masking"],
                                            name=f"{name}_frequency_masking"))
        return waveform, log_mel

    # -- training --------------------------------------------------------

    def _mlp(self, name, input_dim, hidden, hidden_layers, output_dim):
        """`hidden_layers` x (Linear-BN-ReLU), then a Linear to `output_dim`."""
        layers = [keras.Input((input_dim,), name=f"{name}_input")]
        for i in range(1, hidden_layers + 1):
            # No bias: the BatchNormalization's offset replaces it (as in
            # SimSiam's reference code).
            layers += [keras.layers.Dense(hidden, use_bias=False, name=f"{name}_dense{i}"),
                       keras.layers.BatchNormalization(name=f"{name}_bn{i}"),
                       keras.layers.ReLU(name=f"{name}_relu{i}")]
        layers.append(keras.layers.Dense(output_dim, name=f"{name}_output"))
        return keras.Sequential(layers, name=name)

    def _build_training_model(self, encoder, table):
        """Two augmented views through the shared backbone and heads; the
        output stacks `[z1, z2]` (SimCLR) or `[p1, p2, z1, z2]` (SimSiam)
        on axis 1, as the losses expect."""
        c = self.config
        log_mel = encoder.get_layer("log_mel")
        backbone = encoder.get_layer("backbone")
        feature_dim = int(backbone.output.shape[-1])
        dim = int(c["projection_dim"])
        projector = self._mlp("projector", feature_dim, c["projection_hidden"] or feature_dim,
                              2, dim)
        predictor = None
        if c["framework"] == "simsiam":
            predictor = self._mlp("predictor", dim, c["predictor_hidden"] or max(1, dim // 4),
                                  1, dim)
        waveform = keras.Input((self.num_samples,), name="waveform")
        projections, predictions = [], []
        for view, seeds in enumerate(view_seeds(f"contrastive-views-{c['seed']}"), start=1):
            wave_layers, mel_layers = self.augmentation_layers(seeds, f"view{view}")
            x = waveform
            for layer in wave_layers:
                x = layer(x)
            x = log_mel(x)
            for layer in mel_layers:
                x = layer(x)
            z = projector(backbone(x))
            projections.append(z)
            if predictor is not None:
                predictions.append(predictor(z))
        outputs = keras.ops.stack(predictions + projections, axis=1)
        model = keras.Model(waveform, outputs, name=f"contrastive_{c['framework']}")
        loss = (NTXent(c["temperature"]) if c["framework"] == "simclr" else SimSiamLoss())
        dataset = self.training_dataset([str(p) for p in table["path"]], None, c["seed"])
        return model, loss, dataset

    # -- proxy task --------------------------------------------------------

    def augmented_views(self, paths, seed=PROXY_SEED):
        """Backbone features of two independently augmented views of each clip.

        The views are made by new augmentation layers seeded from `seed`
        (the training's magnitudes) and the backbone runs in inference mode,
        so the result depends only on the clips, the weights, `seed` and
        `score_batch_clips` (the random draws are made per batch).

        Args:
            paths: list of str. Clips.
            seed: int or str. Seeds the views (`view_seeds`).

        Returns:
            (view 1, view 2): float32 arrays `(clips, dim)`.
        """
        self._check_fitted()
        log_mel = self.encoder.get_layer("log_mel")
        backbone = self.encoder.get_layer("backbone")
        views = [self.augmentation_layers(s, f"proxy_view{v}")
                 for v, s in enumerate(view_seeds(seed), start=1)]
        features = ([], [])
        # Eager calls: `training=True` switches on the augmentations alone,
        # whereas a Keras model would also put the backbone's BatchNorm
        # layers in training mode.
        for batch in self.waveform_dataset(list(paths)):
            for out, (wave_layers, mel_layers) in zip(features, views):
                x = batch
                for layer in wave_layers:
                    x = layer(x, training=True)
                x = log_mel(x)
                for layer in mel_layers:
                    x = layer(x, training=True)
                out.append(np.asarray(backbone(x, training=False), np.float32))
        dim = int(backbone.output.shape[-1])
        return tuple(np.concatenate(out) if out else np.zeros((0, dim), np.float32)
                     for out in features)

    def proxy_metrics(self, train, test, verbose=0):
        """The contrastive proxy metrics (paper §IV-C4, Eqs. 9-10).

        `alignment` (alpha = 2): the mean squared distance between the
        L2-normalised backbone features of two augmented views of each test
        clip (`augmented_views` with the fixed `PROXY_SEED`, so every model
        sees the same views). `uniformity` (t = 2): the log mean of
        `exp(-2 ||f(x) - f(y)||^2)` over all pairs of the test clips'
        un-augmented, L2-normalised features (`transform`). Both use every
        labelled test clip, normal and anomalous (assumption: the paper
        evaluates on "the test set"; the feature space is judged on the
        clips it has to score).

        Args:
            train: unused.
            test: DataFrame of the test clips (at least two).
            verbose: int.

        Returns:
            dict with `alignment` (in [0, 4]) and `uniformity` (in [-4, 0]).
        """
        del train
        if len(test) < 2:
            raise ValueError(f"uniformity needs at least two test clips; received "
                             f"{len(test)}.")
        paths = [str(p) for p in test["path"]]
        view1, view2 = self.augmented_views(paths)
        features = self.embed(paths, verbose)
        return {"alignment": alignment(view1, view2, alpha=2),
                "uniformity": uniformity(features, t=2)}
