"""The GAN anomaly detectors as a trained extractor: clips to raw clip scores.

The extractor trains one detector (`asd_keras.models.gan`: GANomaly,
Skip-GANomaly or EGBAD, chosen by `detector`) on the stacked log-mel vectors
of its training clips, the audio adaptation of de Oliveira Neto, Guedes &
Figueiredo (paper §3), and describes every clip by one feature:

- `score` `(clips, 1)`: the clip's raw anomaly score, the mean (or max,
  `aggregation`) of the detector's per-vector scores (`VectorScores`).

The `feature_mean` backend turns it into the system's score, raw or min-max
scaled with the training range (`normalize=minmax_train`). The presets
`ganomaly`, `skip_ganomaly` and `egbad` train one extractor per machine type
(`extractor_grouping=machine_type`).

Defaults follow the paper's common settings (§5.3: lr 2e-4, latent 8, Glorot
uniform, no dropout, decay rate 0.5) and its most frequent Table 4 row (10
epochs, 3 hidden layers, batch 16, weights 1/50/1). Keys a detector has no
use for are ignored by it (the loss weights by EGBAD, `score_degree` by
GANomaly...); None (`"default"` for `reinit_threshold`) keeps the
detector's own default.
"""

import keras

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.data.pipelines import vector_dataset
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.common import log_mel_schema
from asd_keras.extractors.vectors import VectorModelExtractor
from asd_keras.layers.detectors import AGGREGATIONS
from asd_keras.layers.detectors import VectorScores
from asd_keras.models.blocks import INITIALIZERS
from asd_keras.models.gan import ADVERSARIAL
from asd_keras.models.gan import DETECTORS
from asd_keras.models.gan import EGBAD
from asd_keras.models.gan import STEP_ORDERS
from asd_keras.models.gan import GANomaly
from asd_keras.models.gan import SkipGANomaly
from asd_keras.models.gan import default_optimizer
from asd_keras.models.precision import dtype_policy_scope
from asd_keras.models.precision import loss_scaled
from asd_keras.models.precision import precision_schema
from asd_keras.models.precision import resolve_jit_compile

DETECTOR_NAMES = ("ganomaly", "skip_ganomaly", "egbad")
# Feature settings of the DCASE baselines (reference dcase.md 2.1, 2.6); they
# fill `log_mode` and `pad_mode` when these are None.
VARIANTS = {
    "dcase2020": {"log_mode": "offset", "pad_mode": "reflect"},
    "dcase2021": {"log_mode": "max", "pad_mode": "reflect"},
    "dcase2022": {"log_mode": "max", "pad_mode": "constant"},
    "dcase2023": {"log_mode": "max", "pad_mode": "constant"},
}
SETS = ("score",)
# Under MirroredStrategy the two optimizers' all-reduces of one step fail
# ("Shape mismatch in the collective instance", TF 2.21, two logical CPUs).
NO_DISTRIBUTE = ("The GAN detectors train with two optimizers in one custom train_step, "
                 "which does not run under tf.distribute (its gradient all-reduces "
                 "fail); use distribute=none.")


def _schema():
    schema = {
        "detector": choice(*DETECTOR_NAMES),
        "variant": choice(*VARIANTS),
        "hidden_units": integer(min=1),
        "latent_dim": integer(min=1),
        "num_hidden_layers": integer(min=1),
        "dropout": number(min=0, lt=1),
        "initializer": choice(*INITIALIZERS),
        "epochs": integer(min=1),
        "batch_size": integer(min=1),
        "learning_rate": number(gt=0),
        "beta_1": number(min=0, lt=1),
        "w_adv": number(min=0),
        "w_con": number(min=0),
        "w_enc": number(min=0),
        "adversarial": choice(*ADVERSARIAL, optional=True),
        "step_order": choice(*STEP_ORDERS, optional=True),
        "reinit_threshold": number(min=0, optional=True, also=("default",)),
        "discriminator_latent_term": boolean(),
        "score_weight": number(min=0, max=1, optional=True),
        "score_degree": integer(min=1),
        "score_method": choice("fm", "cross-e"),
        "aggregation": choice(*AGGREGATIONS),
        **precision_schema(),
        **log_mel_schema(),
    }
    return schema


@register_extractor("gan")
class AdversarialExtractor(VectorModelExtractor):
    """Raw clip scores of a GAN detector (GANomaly, Skip-GANomaly, EGBAD).

    Args:
        detector: str. `"ganomaly"`, `"skip_ganomaly"` or `"egbad"`.
        variant: str. Baseline year (`VARIANTS`): fills `log_mode` and
            `pad_mode` when they are None. Defaults to `"dcase2020"`.
        hidden_units:
            the sub-networks (`asd_keras.models.blocks`).
        latent_dim: see `hidden_units`.
        num_hidden_layers: see `hidden_units`.
        dropout: see `hidden_units`.
        initializer: see `hidden_units`.
        epochs: int. Training schedule (vectors per step).
        batch_size: int. Training schedule (vectors per step).
        learning_rate: float. Adam of both optimizers (beta_1 is the
            paper's "exponential decay rate", 0.5 in all three originals).
        beta_1: see `learning_rate`.
        w_adv: float. Generator loss weights (GANomaly and
            Skip-GANomaly).
        w_con: see `w_adv`.
        w_enc: see `w_adv`.
        adversarial: `"feature_matching"`, `"bce"` or None (the detector's
            default).
        step_order: `"generator_first"`, `"discriminator_first"` or None.
        reinit_threshold: float, None (never) or `"default"` (1e-5 for
            GANomaly and Skip-GANomaly, never for EGBAD).
        discriminator_latent_term: bool. Skip-GANomaly's D-loss quirk.
        score_weight: float or None (0.9 Skip-GANomaly, 0.1 EGBAD).
        score_degree: int. EGBAD's norm degree.
        score_method: `"fm"` or `"cross-e"` (EGBAD).
        aggregation: `"mean"` or `"max"` of a clip's vector scores.
        sample_rate: the log-mel front end.
        channel: the log-mel front end.
        resample: the log-mel front end.
        n_fft: the log-mel front end.
        hop_length: the log-mel front end.
        n_mels: the log-mel front end.
        n_frames: the log-mel front end.
        power: the log-mel front end.
        log_mode: the log-mel front end.
        pad_mode: the log-mel front end.
        cache: `"disk"`, `"memory"` or `"none"`: where the training features
            are cached after the first epoch.
        shuffle_clips: int. The two shuffle buffers of
            `vector_dataset`.
        shuffle_vectors: see `shuffle_clips`.
        score_batch_clips: int. Clips per `transform` call.
        jit_compile: `"auto"` (XLA on GPU only), True or False: the custom
            two-optimizer `train_step` compiles with XLA too.
        dtype_policy: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (both optimizers loss-scaled; for GPUs): the sub-networks'
            precision (`asd_keras.models.precision`); their outputs, the
            losses and the scores stay float32.
        seed: int. Set before the detector is built; seeds the shuffles, the
            latent noise and the discriminator re-initialisation.
    """

    VARIANTS = VARIANTS
    SETS = SETS
    description = "GAN scores"

    def __init__(self, detector="ganomaly", variant="dcase2020", hidden_units=128,
                 latent_dim=8, num_hidden_layers=3, dropout=0.0,
                 initializer="glorot_uniform", epochs=10, batch_size=16,
                 learning_rate=2e-4, beta_1=0.5, w_adv=1.0, w_con=50.0, w_enc=1.0,
                 adversarial=None, step_order=None, reinit_threshold="default",
                 discriminator_latent_term=True, score_weight=None, score_degree=1,
                 score_method="fm", aggregation="mean", sample_rate=16000, channel=0,
                 resample=False, n_fft=1024, hop_length=512, n_mels=128, n_frames=5,
                 power=2.0, log_mode=None, pad_mode=None, cache="disk", shuffle_clips=32,
                 shuffle_vectors=8192, score_batch_clips=8, jit_compile="auto",
                 dtype_policy="float32", seed=0):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self._configure(config, _schema())

    def build_detector(self, name=None):
        """A fresh, compiled detector of this configuration.

        Args:
            name: str or None. The model's name (None: the detector's name).

        Returns:
            `asd_keras.models.gan.AdversarialDetector` of the configured
            `dtype_policy`, compiled with two Adam optimizers (loss-scaled
            under `mixed_float16`) and `jit_compile`.
        """
        c = self.config
        kwargs = dict(input_dim=self.frontend.vector_dim, hidden_units=c["hidden_units"],
                      latent_dim=c["latent_dim"], num_hidden_layers=c["num_hidden_layers"],
                      dropout=c["dropout"], initializer=c["initializer"], seed=c["seed"],
                      name=name or c["detector"])
        if c["step_order"] is not None:
            kwargs["step_order"] = c["step_order"]
        if c["reinit_threshold"] != "default":
            kwargs["reinit_threshold"] = c["reinit_threshold"]
        cls = DETECTORS[c["detector"]]
        if cls in (GANomaly, SkipGANomaly):
            kwargs.update(w_adv=c["w_adv"], w_con=c["w_con"], w_enc=c["w_enc"])
            if c["adversarial"] is not None:
                kwargs["adversarial"] = c["adversarial"]
        if cls is SkipGANomaly:
            kwargs["discriminator_latent_term"] = c["discriminator_latent_term"]
        if cls in (SkipGANomaly, EGBAD) and c["score_weight"] is not None:
            kwargs["score_weight"] = c["score_weight"]
        if cls is EGBAD:
            kwargs.update(score_degree=c["score_degree"], score_method=c["score_method"])
        policy = c["dtype_policy"]
        with dtype_policy_scope(policy):
            model = cls(**kwargs)
        model.compile(
            generator_optimizer=loss_scaled(
                default_optimizer(c["learning_rate"], c["beta_1"]), policy),
            discriminator_optimizer=loss_scaled(
                default_optimizer(c["learning_rate"], c["beta_1"]), policy),
            jit_compile=resolve_jit_compile(c["jit_compile"]))
        return model

    # -- training --------------------------------------------------------

    def fit(self, table, context, name="gan"):
        """Trains the detector on the clips of `table` (all normal).

        Args:
            table: DataFrame of training rows with `path`.
            context: `asd_keras.utils.training.TrainingContext`.
            name: str. Names the model, the history, backup and TensorBoard
                files (the model is `<detector>_<name>`).

        Returns:
            history DataFrame.
        """
        c = self.config
        if context.strategy is not None:
            raise ValueError(NO_DISTRIBUTE)
        loader = self.loader()
        paths = sorted(table["path"])
        num_vectors = int(sum(self._count_vectors(paths, loader).values()))
        # Seeded right before the detector is built, as the paper's setup
        # (and the pinned regression scores) expect.
        keras.utils.set_random_seed(c["seed"])
        with self._training_cache(context) as cache:
            with context.scope():
                model = self.build_detector(f"{c['detector']}_{name}")
            dataset = vector_dataset(
                paths, loader, self.frontend, c["batch_size"], shuffle=True, seed=c["seed"],
                cache=cache("train"), clip_buffer=c["shuffle_clips"],
                vector_buffer=c["shuffle_vectors"], autoencoder_targets=False,
                num_vectors=num_vectors)
            history = context.fit(model, dataset, name, c["epochs"],
                                  shuffle=False)  # the pipeline shuffles
        self.model = model
        return history

    # -- features --------------------------------------------------------

    def _vector_features(self, vectors):
        """`{"score": (batch, 1)}`: each clip's raw anomaly score."""
        return {"score": VectorScores(self.model, self.config["aggregation"])(vectors)}
