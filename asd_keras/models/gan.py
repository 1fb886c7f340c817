"""GAN anomaly detectors on stacked log-mel vectors: GANomaly, Skip-GANomaly, EGBAD.

The audio adaptations of de Oliveira Neto, Guedes & Figueiredo (paper §3):
fully connected sub-networks (`asd_keras.models.blocks`) of 128-unit
`Dense -> BN -> ReLU` layers with a latent size of 8, trained on the 640-dim
vectors of the DCASE baseline. Each detector is a `keras.Model` subclass with
its own `train_step` (TensorFlow backend) and two optimizers; its `call`
returns one anomaly score per input vector.

Where the paper and the original code differ, both exist as options
(reference methods.md §A):
- `adversarial`: `"feature_matching"` (GANomaly code since 2019) or `"bce"`
  (the paper's Eq. 5, Skip-GANomaly code, GANomaly code before 2019);
- `step_order`: `"generator_first"` (GANomaly and Skip-GANomaly code) or
  `"discriminator_first"` (EGBAD code, GANomaly before 2019).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from asd_keras.losses.adversarial import adversarial_crossentropy
from asd_keras.losses.adversarial import feature_matching
from asd_keras.losses.adversarial import l1_reconstruction
from asd_keras.losses.adversarial import latent_l2
from asd_keras.models.blocks import dense_decoder
from asd_keras.models.blocks import dense_discriminator
from asd_keras.models.blocks import dense_encoder
from asd_keras.models.blocks import dense_unet
from asd_keras.scoring.gan import egbad_crossentropy_score
from asd_keras.scoring.gan import egbad_score
from asd_keras.scoring.gan import ganomaly_score
from asd_keras.scoring.gan import skip_ganomaly_score
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.io import load_keras_model

ADVERSARIAL = ("feature_matching", "bce")
STEP_ORDERS = ("generator_first", "discriminator_first")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; received {value!r}.")
    return value


def default_optimizer(learning_rate=2e-4, beta_1=0.5):
    """Adam with beta1 = 0.5, the optimiser of all three originals (reference §A)."""
    return keras.optimizers.Adam(learning_rate, beta_1=beta_1)


class AdversarialDetector(keras.Model):
    """Shared machinery: two optimizers, loss trackers, discriminator re-init.

    Subclasses build their sub-networks in `__init__` (Functional models from
    `asd_keras.models.blocks`), list them in `generator_networks`, and
    implement `generator_and_discriminator_losses` and `call`.

    Args:
        input_dim: int. Size of a stacked log-mel vector. Defaults to 640.
        hidden_units: int. Width of every hidden layer. Defaults to 128.
        latent_dim: int. Defaults to 8.
        num_hidden_layers: int. Hidden layers per sub-network (3 or 4 in the
            paper's grid). Defaults to 3.
        dropout: float. Dropout after hidden layers. Defaults to 0.
        initializer: `"glorot_uniform"` or `"random_normal"` (N(0, 0.02)).
        step_order: see the module docstring.
        reinit_threshold: float or None. Re-initialise the discriminator
            when its loss falls below this value (1e-5 in the GANomaly and
            Skip-GANomaly code); None never does.
        seed: int or None. Seed of the latent noise and the re-initialisation.
    """

    loss_names = ("g_loss", "d_loss")
    generator_network_names = ()

    def __init__(self, input_dim=640, hidden_units=128, latent_dim=8, num_hidden_layers=3,
                 dropout=0.0, initializer="glorot_uniform", step_order="generator_first",
                 reinit_threshold=1e-5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.hidden_units = int(hidden_units)
        self.latent_dim = int(latent_dim)
        self.num_hidden_layers = int(num_hidden_layers)
        self.dropout = float(dropout)
        self.initializer = initializer
        self.step_order = _choice("step_order", step_order, STEP_ORDERS)
        self.reinit_threshold = None if reinit_threshold is None else float(reinit_threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        self.reinit_tracker = keras.metrics.Sum(name="d_reinits")

    # Sub-network helpers -------------------------------------------------

    def _sizes(self):
        return dict(hidden_units=self.hidden_units, num_hidden_layers=self.num_hidden_layers,
                    dropout=self.dropout, initializer=self.initializer)

    @property
    def generator_networks(self):
        """Every sub-network the generator optimizer trains."""
        return [getattr(self, name) for name in self.generator_network_names]

    def generator_variables(self):
        return [v for net in self.generator_networks for v in net.trainable_variables]

    def build(self, input_shape=None):
        # The sub-networks are Functional models, built on creation.
        self.built = True

    # Training ------------------------------------------------------------

    def compile(self, generator_optimizer=None, discriminator_optimizer=None, **kwargs):
        """Configures the two optimizers (default: Adam(2e-4, beta_1=0.5) each).

        Args:
            generator_optimizer: keras optimizer for the generator side
                (every network but the discriminator).
            discriminator_optimizer: keras optimizer for the discriminator.
            **kwargs: passed to `keras.Model.compile` (e.g. `run_eagerly`).
        """
        kwargs.setdefault("jit_compile", False)
        generator_optimizer = generator_optimizer or default_optimizer()
        discriminator_optimizer = discriminator_optimizer or default_optimizer()
        super().compile(optimizer=generator_optimizer, **kwargs)
        self.discriminator_optimizer = discriminator_optimizer
        # Built now so that BackupAndRestore can restore their slots on resume.
        self.optimizer.build(self.generator_variables())
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {
            "generator_optimizer": keras.optimizers.serialize(self.optimizer),
            "discriminator_optimizer": keras.optimizers.serialize(
                self.discriminator_optimizer),
        }

    def compile_from_config(self, config):
        self.compile(
            generator_optimizer=keras.optimizers.deserialize(config["generator_optimizer"]),
            discriminator_optimizer=keras.optimizers.deserialize(
                config["discriminator_optimizer"]),
        )

    @property
    def metrics(self):
        return [*self.trackers.values(), self.reinit_tracker]

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        x = ops.convert_to_tensor(x, "float32")
        if self.step_order == "discriminator_first":
            with tf.GradientTape() as tape:
                _, d_loss = self.generator_and_discriminator_losses(x, training=True)
            self._apply(self.discriminator_optimizer, tape, d_loss,
                        self.discriminator.trainable_variables)
            with tf.GradientTape() as tape:
                losses, _ = self.generator_and_discriminator_losses(x, training=True)
            self._apply(self.optimizer, tape, losses["g_loss"], self.generator_variables())
        else:
            # One forward pass gives both losses: the discriminator is not
            # changed by the generator step, and its loss sees the detached
            # fake of the same pass, as `optimize_params` (reference A1).
            with tf.GradientTape(persistent=True) as tape:
                losses, d_loss = self.generator_and_discriminator_losses(x, training=True)
            self._apply(self.optimizer, tape, losses["g_loss"], self.generator_variables())
            self._apply(self.discriminator_optimizer, tape, d_loss,
                        self.discriminator.trainable_variables)
            del tape
        losses["d_loss"] = d_loss
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        if self.reinit_threshold is not None:
            self.maybe_reinitialize_discriminator(d_loss)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        losses, d_loss = self.generator_and_discriminator_losses(
            ops.convert_to_tensor(x, "float32"), training=False)
        losses["d_loss"] = d_loss
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: t.result() for name, t in self.trackers.items()}

    @staticmethod
    def _apply(optimizer, tape, loss, variables):
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))

    def maybe_reinitialize_discriminator(self, d_loss):
        """Re-draws every discriminator weight when `d_loss < reinit_threshold`.

        The GANomaly code's `reinit_d` (reference A1): a discriminator that
        wins outright gives the generator no gradient, so it starts again.
        """
        triggered = d_loss < self.reinit_threshold
        tf.cond(triggered, self.reinitialize_discriminator, tf.no_op)
        self.reinit_tracker.update_state(ops.cast(triggered, "float32"))
        return triggered

    def reinitialize_discriminator(self):
        """Fresh weights for the discriminator (kernels from their initialiser)."""
        assigns = []
        for layer in self.discriminator.layers:
            if isinstance(layer, keras.layers.Dense):
                init = layer.kernel_initializer
                cfg = {**init.get_config(), "seed": self.seed_generator}
                fresh = init.__class__(**cfg)
                assigns.append(layer.kernel.assign(fresh(layer.kernel.shape, "float32")))
                if layer.use_bias:
                    assigns.append(layer.bias.assign(ops.zeros_like(layer.bias)))
            elif isinstance(layer, keras.layers.BatchNormalization):
                for var, value in ((layer.gamma, 1.0), (layer.beta, 0.0),
                                   (layer.moving_mean, 0.0), (layer.moving_variance, 1.0)):
                    assigns.append(var.assign(ops.full(var.shape, value, "float32")))
        with tf.control_dependencies(assigns):
            return tf.no_op()

    # Scoring -------------------------------------------------------------

    def score_vectors(self, x):
        """Per-vector anomaly scores `(batch,)` in inference mode."""
        return self(x, training=False)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim, hidden_units=self.hidden_units,
            latent_dim=self.latent_dim, num_hidden_layers=self.num_hidden_layers,
            dropout=self.dropout, initializer=self.initializer,
            step_order=self.step_order, reinit_threshold=self.reinit_threshold,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class GANomaly(AdversarialDetector):
    """GANomaly: encoder -> decoder -> encoder, and a discriminator.

    Generator loss `w_adv * adversarial + w_con * L1(x, x_hat) + w_enc *
    mean((z - z_hat)^2)`; discriminator loss `0.5 * (BCE(D(x), 1) +
    BCE(D(x_hat), 0))`; score `mean((z - z_hat)^2)` (reference A1).

    Args:
        w_adv, w_con, w_enc: float. Loss weights (code defaults 1, 50, 1).
        adversarial: `"feature_matching"` (code, default) or `"bce"` (paper
            Eq. 5: `BCE(D(x_hat), 1)`).
        **kwargs: see `AdversarialDetector`.

    Example:
    >>> model = GANomaly(input_dim=640)
    >>> model.compile()
    >>> model.fit(vectors, epochs=10)  # doctest: +SKIP
    >>> scores = model.predict(vectors)  # one score per vector
    """

    loss_names = ("g_loss", "d_loss", "adv_loss", "con_loss", "enc_loss")
    generator_network_names = ("encoder", "decoder", "reencoder")

    def __init__(self, w_adv=1.0, w_con=50.0, w_enc=1.0, adversarial="feature_matching",
                 **kwargs):
        super().__init__(**kwargs)
        self.w_adv, self.w_con, self.w_enc = float(w_adv), float(w_con), float(w_enc)
        self.adversarial = _choice("adversarial", adversarial, ADVERSARIAL)
        sizes = self._sizes()
        self.encoder = dense_encoder(self.input_dim, latent_dim=self.latent_dim,
                                     name="encoder", **sizes)
        self.decoder = dense_decoder(self.latent_dim, output_dim=self.input_dim,
                                     name="decoder", **sizes)
        self.reencoder = dense_encoder(self.input_dim, latent_dim=self.latent_dim,
                                       name="reencoder", **sizes)
        self.discriminator = dense_discriminator(self.input_dim, name="discriminator",
                                                 **sizes)
        self.build()


    def generate(self, x, training=False):
        z = self.encoder(x, training=training)
        x_hat = self.decoder(z, training=training)
        z_hat = self.reencoder(x_hat, training=training)
        return z, x_hat, z_hat

    def generator_and_discriminator_losses(self, x, training=True):
        z, x_hat, z_hat = self.generate(x, training)
        real = self.discriminator(x, training=training)
        fake = self.discriminator(x_hat, training=training)
        if self.adversarial == "feature_matching":
            adv = feature_matching(real["features"], fake["features"])
        else:
            adv = adversarial_crossentropy(fake["logit"], real=True)
        con = l1_reconstruction(x, x_hat)
        enc = latent_l2(z, z_hat)
        g_loss = self.w_adv * adv + self.w_con * con + self.w_enc * enc
        detached = self.discriminator(ops.stop_gradient(x_hat), training=training)
        d_loss = 0.5 * (adversarial_crossentropy(real["logit"], real=True)
                        + adversarial_crossentropy(detached["logit"], real=False))
        return {"g_loss": g_loss, "adv_loss": adv, "con_loss": con, "enc_loss": enc}, d_loss

    def call(self, inputs, training=False):
        z, _, z_hat = self.generate(inputs, training)
        return ganomaly_score(z, z_hat)

    def get_config(self):
        config = super().get_config()
        config.update(w_adv=self.w_adv, w_con=self.w_con, w_enc=self.w_enc,
                      adversarial=self.adversarial)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class SkipGANomaly(AdversarialDetector):
    """Skip-GANomaly: a U-Net-like dense generator and a feature discriminator.

    Generator loss `w_adv * BCE(D(x_hat), 1) + w_con * L1(x, x_hat) + w_enc *
    mean((f(x) - f(x_hat))^2)` (`w_enc` is the code's `w_lat`); discriminator
    loss `BCE(D(x), 1) + BCE(D(x_hat), 0)`, plus the weighted latent term
    when `discriminator_latent_term` (as the code does, reference A2). Score
    `score_weight * mean((x - x_hat)^2) + (1 - score_weight) *
    mean((f(x) - f(x_hat))^2)` with `score_weight` = lambda = 0.9.

    The code's input noise (`input + noise`, an uninitialised buffer that is
    in practice zero) is left out.

    Args:
        w_adv, w_con, w_enc: float. Loss weights (code defaults 1, 50, 1).
        adversarial: `"bce"` (code and paper, default) or
            `"feature_matching"`.
        discriminator_latent_term: bool. Add `w_enc * latent` to the
            discriminator loss, as the code. Defaults to True.
        score_weight: float. Lambda of the score. Defaults to 0.9.
        **kwargs: see `AdversarialDetector`.
    """

    loss_names = ("g_loss", "d_loss", "adv_loss", "con_loss", "enc_loss")
    generator_network_names = ("generator",)

    def __init__(self, w_adv=1.0, w_con=50.0, w_enc=1.0, adversarial="bce",
                 discriminator_latent_term=True, score_weight=0.9, **kwargs):
        super().__init__(**kwargs)
        self.w_adv, self.w_con, self.w_enc = float(w_adv), float(w_con), float(w_enc)
        self.adversarial = _choice("adversarial", adversarial, ADVERSARIAL)
        self.discriminator_latent_term = bool(discriminator_latent_term)
        self.score_weight = float(score_weight)
        sizes = self._sizes()
        self.generator = dense_unet(self.input_dim, latent_dim=self.latent_dim,
                                    name="generator", **sizes)
        # D is the dense encoder down to the latent size, then a logit (A2).
        self.discriminator = dense_discriminator(self.input_dim, feature_dim=self.latent_dim,
                                                 name="discriminator", **sizes)
        self.build()


    def generator_and_discriminator_losses(self, x, training=True):
        x_hat = self.generator(x, training=training)
        real = self.discriminator(x, training=training)
        fake = self.discriminator(x_hat, training=training)
        lat = latent_l2(real["features"], fake["features"])
        if self.adversarial == "bce":
            adv = adversarial_crossentropy(fake["logit"], real=True)
        else:
            adv = lat
        con = l1_reconstruction(x, x_hat)
        g_loss = self.w_adv * adv + self.w_con * con + self.w_enc * lat
        detached = self.discriminator(ops.stop_gradient(x_hat), training=training)
        d_loss = (adversarial_crossentropy(real["logit"], real=True)
                  + adversarial_crossentropy(detached["logit"], real=False))
        if self.discriminator_latent_term:
            d_loss = d_loss + self.w_enc * lat
        return {"g_loss": g_loss, "adv_loss": adv, "con_loss": con, "enc_loss": lat}, d_loss

    def call(self, inputs, training=False):
        x_hat = self.generator(inputs, training=training)
        real = self.discriminator(inputs, training=training)["features"]
        fake = self.discriminator(x_hat, training=training)["features"]
        return skip_ganomaly_score(inputs, x_hat, real, fake, self.score_weight)

    def get_config(self):
        config = super().get_config()
        config.update(w_adv=self.w_adv, w_con=self.w_con, w_enc=self.w_enc,
                      adversarial=self.adversarial,
                      discriminator_latent_term=self.discriminator_latent_term,
                      score_weight=self.score_weight)
        return config


@keras.saving.register_keras_serializable(package="asd_keras")
class EGBAD(AdversarialDetector):
    """EGBAD: a BiGAN with encoder E, generator G and a joint D(x, z).

    Losses (sigmoid cross-entropy, reference A3): D `BCE(D(x, E(x)), 1) +
    BCE(D(G(z), z), 0)`; G `BCE(D(G(z), z), 1)`; E `BCE(D(x, E(x)), 0)`, G
    and E stepped together by the generator optimizer after the
    discriminator (`step_order="discriminator_first"`). No re-initialisation
    by default (the code has none).

    Score `(1 - w) * ||x - G(E(x))||_d + w * ||f(x, E(x)) - f(G(E(x)),
    E(x))||_d` (`score_method="fm"`) or with `BCE(D(G(E(x)), E(x)), 1)` as
    the second term (`"cross-e"`); w = `score_weight` = 0.1, d =
    `score_degree` = 1.

    Args:
        score_weight: float. Defaults to 0.1.
        score_degree: int. Norm degree. Defaults to 1.
        score_method: `"fm"` or `"cross-e"`.
        **kwargs: see `AdversarialDetector`.
    """

    loss_names = ("g_loss", "d_loss", "gen_loss", "enc_loss")
    generator_network_names = ("encoder", "generator")

    def __init__(self, score_weight=0.1, score_degree=1, score_method="fm",
                 step_order="discriminator_first", reinit_threshold=None, **kwargs):
        super().__init__(step_order=step_order, reinit_threshold=reinit_threshold, **kwargs)
        self.score_weight = float(score_weight)
        self.score_degree = int(score_degree)
        if self.score_degree < 1:
            raise ValueError(f"score_degree must be >= 1; received {score_degree!r}.")
        self.score_method = _choice("score_method", score_method, ("fm", "cross-e"))
        sizes = self._sizes()
        self.encoder = dense_encoder(self.input_dim, latent_dim=self.latent_dim,
                                     name="encoder", **sizes)
        self.generator = dense_decoder(self.latent_dim, output_dim=self.input_dim,
                                       name="generator", **sizes)
        self.discriminator = dense_discriminator(self.input_dim, latent_dim=self.latent_dim,
                                                 name="discriminator", **sizes)
        self.build()


    def generator_and_discriminator_losses(self, x, training=True):
        batch = ops.shape(x)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        z_enc = self.encoder(x, training=training)
        x_gen = self.generator(z, training=training)
        real = self.discriminator([x, z_enc], training=training)["logit"]
        fake = self.discriminator([x_gen, z], training=training)["logit"]
        d_loss = (adversarial_crossentropy(real, real=True)
                  + adversarial_crossentropy(fake, real=False))
        gen = adversarial_crossentropy(fake, real=True)
        enc = adversarial_crossentropy(real, real=False)
        return {"g_loss": gen + enc, "gen_loss": gen, "enc_loss": enc}, d_loss

    def call(self, inputs, training=False):
        z = self.encoder(inputs, training=training)
        x_hat = self.generator(z, training=training)
        fake = self.discriminator([x_hat, z], training=training)
        if self.score_method == "cross-e":
            return egbad_crossentropy_score(inputs, x_hat, fake["logit"],
                                            self.score_weight, self.score_degree)
        real = self.discriminator([inputs, z], training=training)["features"]
        return egbad_score(inputs, x_hat, real, fake["features"],
                           self.score_weight, self.score_degree)

    def get_config(self):
        config = super().get_config()
        config.update(score_weight=self.score_weight, score_degree=self.score_degree,
                      score_method=self.score_method)
        return config


DETECTORS = {"ganomaly": GANomaly, "skip_ganomaly": SkipGANomaly, "egbad": EGBAD}


# ----------------------------------------------------------------------
# The system: one detector per machine type on streaming log-mel vectors
# ----------------------------------------------------------------------

# Defaults follow the paper's common settings (§5.3: lr 2e-4, latent 8,
# Glorot uniform, no dropout, decay rate 0.5) and its most frequent Table 4
# row (10 epochs, 3 hidden layers, batch 16, weights 1/50/1).
GAN_DEFAULTS = {
    "variant": "dcase2020",
    "hidden_units": 128,
    "latent_dim": 8,
    "num_hidden_layers": 3,
    "dropout": 0.0,
    "initializer": "glorot_uniform",
    "epochs": 10,
    "batch_size": 16,
    "learning_rate": 2e-4,
    # Adam's "exponential decay rate for the first moment" (the paper's
    # "Exponential Decay Rate" of Table 3; 0.5 in all three originals).
    "beta_1": 0.5,
    "w_adv": 1.0,
    "w_con": 50.0,
    "w_enc": 1.0,
    "adversarial": None,  # None: the detector's own default
    "step_order": None,
    "reinit_threshold": "default",  # "default": 1e-5 (GANomaly, Skip), none (EGBAD)
    "discriminator_latent_term": True,
    "score_weight": None,  # None: 0.9 (Skip-GANomaly) or 0.1 (EGBAD)
    "score_degree": 1,
    "score_method": "fm",
    "aggregation": "mean",
    "normalize": "none",
    "threshold_quantile": 0.9,
    # Per-machine-type overrides, e.g. {"fan": {"epochs": 30}} (Tables 4-5).
    "machine_overrides": {},
    "sample_rate": 16000,
    "channel": 0,
    "resample": False,
    "n_fft": 1024,
    "hop_length": 512,
    "n_mels": 128,
    "n_frames": 5,
    "power": 2.0,
    "log_mode": "offset",
    "pad_mode": "reflect",
    "cache": "disk",
    "shuffle_clips": 32,
    "shuffle_vectors": 8192,
    "score_batch_clips": 8,
    "seed": 0,
    "deterministic": False,
}

# Feature settings of the DCASE baselines (reference dcase.md 2.1, 2.6).
GAN_VARIANTS = {
    "dcase2020": {"log_mode": "offset", "pad_mode": "reflect"},
    "dcase2021": {"log_mode": "max", "pad_mode": "reflect"},
    "dcase2022": {"log_mode": "max", "pad_mode": "constant"},
    "dcase2023": {"log_mode": "max", "pad_mode": "constant"},
}


def _gan_schema():
    from asd_keras.config import boolean
    from asd_keras.config import choice
    from asd_keras.config import integer
    from asd_keras.config import mapping
    from asd_keras.config import number
    from asd_keras.models.blocks import INITIALIZERS
    from asd_keras.models.common import log_mel_schema
    from asd_keras.scoring.gan import AGGREGATIONS
    from asd_keras.scoring.gan import NORMALIZATIONS

    return {
        "variant": choice(*GAN_VARIANTS),
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
        "normalize": choice(*NORMALIZATIONS),
        "threshold_quantile": number(gt=0, lt=1),
        # Each machine type's dict is checked against this schema too.
        "machine_overrides": mapping(),
        **log_mel_schema(),
    }


# What each key of GAN_DEFAULTS accepts (`asd_keras.config.validate_config`).
GAN_SCHEMA = _gan_schema()

_PER_MACHINE_KEYS = ("hidden_units", "latent_dim", "num_hidden_layers", "dropout",
                     "initializer", "epochs", "batch_size", "learning_rate", "beta_1",
                     "w_adv", "w_con", "w_enc", "adversarial", "step_order",
                     "reinit_threshold", "discriminator_latent_term", "score_weight",
                     "score_degree", "score_method", "aggregation", "seed")


class GANSystem:
    """Trains, scores and exports one GAN detector per machine type.

    The paper's protocol (§3): a model per machine type, trained on the
    normal training clips' 640-dim stacked log-mel vectors; a clip's score
    is the mean (or max) of its vectors' scores. Subclasses pick the
    detector (`ganomaly`, `skip_ganomaly`, `egbad`).

    Args:
        config: dict of overrides of `GAN_DEFAULTS`.

    Example:
    >>> system = GANomalySystem({"epochs": 2})
    >>> system.fit(table, run_dir)  # doctest: +SKIP
    >>> scores = system.score(table)  # doctest: +SKIP
    """

    name = None
    resumable = True

    def __init__(self, config=None):
        from asd_keras.config import resolve_config
        from asd_keras.config import validate_config
        from asd_keras.features.spectral import LogMelFrontend

        c = validate_config(
            resolve_config(GAN_DEFAULTS, dict(config or {}), GAN_VARIANTS), GAN_SCHEMA)
        overrides = {}
        for machine_type, keys in c["machine_overrides"].items():
            if not isinstance(keys, dict):
                raise ValueError(
                    f"machine_overrides[{machine_type!r}] must be a mapping of keys to "
                    f"values (e.g. {{epochs: 30}}); received {keys!r}.")
            unknown = sorted(set(keys) - set(_PER_MACHINE_KEYS))
            if unknown:
                raise ValueError(
                    f"machine_overrides[{machine_type!r}] has key(s) {unknown} that "
                    f"cannot differ per machine type; allowed: {list(_PER_MACHINE_KEYS)}.")
            overrides[machine_type] = validate_config(
                keys, GAN_SCHEMA, prefix=f"machine_overrides.{machine_type}.")
        self.config = c = {**c, "machine_overrides": overrides}
        self.frontend = LogMelFrontend(
            sample_rate=c["sample_rate"], n_fft=c["n_fft"], hop_length=c["hop_length"],
            n_mels=c["n_mels"], n_frames=c["n_frames"], power=c["power"],
            log_mode=c["log_mode"], pad_mode=c["pad_mode"])
        self.models = {}
        self.scoring = {}

    def machine_config(self, machine_type):
        """The configuration with the machine type's overrides applied."""
        overrides = self.config["machine_overrides"].get(machine_type, {}) if machine_type else {}
        return {**self.config, **overrides}

    def detector(self, machine_type=None, input_dim=None):
        """A fresh, compiled detector for a machine type."""
        c = self.machine_config(machine_type)
        kwargs = dict(
            input_dim=input_dim or int(c["n_mels"]) * int(c["n_frames"]),
            hidden_units=c["hidden_units"], latent_dim=c["latent_dim"],
            num_hidden_layers=c["num_hidden_layers"], dropout=c["dropout"],
            initializer=c["initializer"], seed=int(c["seed"]),
            name=f"{self.name}_{machine_type}" if machine_type else self.name,
        )
        if c["step_order"] is not None:
            kwargs["step_order"] = c["step_order"]
        if c["reinit_threshold"] != "default":
            kwargs["reinit_threshold"] = c["reinit_threshold"]
        cls = DETECTORS[self.name]
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
        model = cls(**kwargs)  # the blocks reject a bad initializer by name
        model.compile(
            generator_optimizer=default_optimizer(float(c["learning_rate"]), float(c["beta_1"])),
            discriminator_optimizer=default_optimizer(float(c["learning_rate"]),
                                                      float(c["beta_1"])))
        return model

    def loader(self):
        from asd_keras.data.audio import AudioLoader

        return AudioLoader(
            sample_rate=self.config["sample_rate"], channel=self.config["channel"],
            resample=bool(self.config["resample"]),
            min_samples=max(self.frontend.n_fft, self.frontend.min_samples))

    # Training ------------------------------------------------------------

    def fit(self, table, run_dir, verbose=1, checkpoint_dir=None):
        """Trains one detector per machine type on the table's train split.

        Args:
            table: DataFrame from `read_dataset`.
            run_dir: Path. Folder for models, histories and caches.
            verbose: int. Keras `fit` verbosity.
            checkpoint_dir: Path or None. When given, every epoch is backed up
                there (`asd_keras.utils.checkpoints.AtomicBackupAndRestore`:
                atomic writes, the previous backup kept as a fall-back) and
                finished machine types are kept, so a repeated call resumes
                where an interrupted one stopped.

        Returns:
            dict machine type -> training history DataFrame.
        """
        from asd_keras.models.common import training_split

        run_dir = Path(run_dir)
        loader = self.loader()
        train = training_split(table, run_dir, loader)
        histories = {}
        for machine_type, group in train.groupby("machine_type"):
            done = Path(checkpoint_dir) / machine_type / "done" if checkpoint_dir else None
            if done is not None and (done / "scoring.json").is_file():
                print(f"'{machine_type}': finished in an earlier attempt; reusing "
                      f"'{done}'.")
                self._load_one(machine_type, done / "model.keras", done / "scoring.json")
                self.scoring[machine_type]["train_scores"] = pd.read_csv(
                    done / "train_scores.csv")
                histories[machine_type] = pd.read_csv(done / "history.csv")
                continue
            print(f"Training {self.name} for '{machine_type}' on {len(group)} clips")
            histories[machine_type] = self._fit_one(
                machine_type, group, loader, run_dir, verbose,
                Path(checkpoint_dir) / machine_type if checkpoint_dir else None)
            if done is not None:
                self._save_one(machine_type, done, histories[machine_type])
        for machine_type, history in histories.items():
            atomic_write_dataframe(run_dir / "history" / f"{machine_type}.csv", history)
        self.save(run_dir)
        return histories

    def _fit_one(self, machine_type, group, loader, run_dir, verbose, checkpoint_dir):
        from asd_keras.data.pipelines import vector_dataset
        from asd_keras.utils.checkpoints import AtomicBackupAndRestore
        from asd_keras.utils.runs import set_seed

        c = self.machine_config(machine_type)
        set_seed(c["seed"])
        paths = sorted(group["path"])
        frames = loader.check(paths, progress=False)["frames"]
        num_vectors = int(sum(self.frontend.num_vectors(f) for f in frames))
        cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=run_dir))
        cache = {"disk": cache_root / "train", "memory": "memory"}.get(c["cache"])
        model = self.detector(machine_type, self.frontend.vector_dim)
        history_path = cache_root / "history.csv"
        callbacks = []
        if checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            history_path = checkpoint_dir / "history.csv"
        # CSVLogger before the backup: a crash between the two repeats an
        # epoch (deduplicated below) rather than losing its row.
        callbacks.append(keras.callbacks.CSVLogger(str(history_path), append=True))
        if checkpoint_dir is not None:
            # Keras' own callback overwrites its backup in place, so Ctrl-C
            # during a save left a file that no later run could load.
            callbacks.append(AtomicBackupAndRestore(checkpoint_dir / "backup",
                                                    delete_checkpoint=False))
        try:
            ds = vector_dataset(
                paths, loader, self.frontend, int(c["batch_size"]), shuffle=True,
                seed=int(c["seed"]), cache=cache, clip_buffer=c["shuffle_clips"],
                vector_buffer=c["shuffle_vectors"], autoencoder_targets=False,
                num_vectors=num_vectors)
            model.fit(ds, epochs=int(c["epochs"]), verbose=verbose, callbacks=callbacks,
                      shuffle=False)
            history = pd.read_csv(history_path)
        finally:
            shutil.rmtree(cache_root, ignore_errors=True)
        history = history.drop_duplicates("epoch", keep="last")
        history["epoch"] = history["epoch"] + 1
        self.models[machine_type] = model
        self.scoring[machine_type] = self._fit_scoring(machine_type, group, loader)
        return history.reset_index(drop=True)

    def _fit_scoring(self, machine_type, group, loader):
        """Decision threshold and min-max range from the training clips' scores."""
        from asd_keras.scoring.threshold import gamma_threshold

        raw = self._raw_scores(machine_type, list(group["path"]), loader,
                               desc=f"Training scores ({machine_type})")
        return {
            "threshold": gamma_threshold(raw, self.config["threshold_quantile"]),
            "train_min": float(raw.min()),
            "train_max": float(raw.max()),
            "train_scores": pd.DataFrame({"file_name": group["file_name"].to_numpy(),
                                          "score_raw": raw}),
        }

    # Scoring -------------------------------------------------------------

    def score_function(self, machine_type):
        """tf.function: float32 waveforms `(clips, samples)` -> raw clip scores `(clips,)`."""
        from asd_keras.scoring.gan import aggregate

        model = self.models[machine_type]
        frontend = self.frontend
        how = self.machine_config(machine_type)["aggregation"]

        @tf.function(reduce_retracing=True)
        def score(waveforms):
            vectors = frontend.vectors(waveforms)
            clips, steps = tf.shape(vectors)[0], tf.shape(vectors)[1]
            flat = tf.reshape(vectors, [-1, frontend.vector_dim])
            per_vector = tf.reshape(model(flat, training=False), [clips, steps])
            return aggregate(per_vector, how)

        return score

    def _raw_scores(self, machine_type, paths, loader, desc="Scoring"):
        from asd_keras.models.common import score_clips

        fn = self.score_function(machine_type)
        result = score_clips(paths, loader, lambda w: {"score_raw": fn(w)}, ["score_raw"],
                             self.config["score_batch_clips"], desc)
        return result["score_raw"].astype(np.float64)

    def score(self, table):
        """Scores every test clip of the table.

        Returns:
            DataFrame of the test rows with `score` (after the configured
            normalisation), `score_raw` and `decision` (raw score above the
            gamma threshold of the training scores).
        """
        from asd_keras.data.layouts import require_split
        from asd_keras.scoring.gan import minmax

        test = require_split(table, "test").copy()
        missing = sorted(set(test["machine_type"]) - set(self.models))
        if missing:
            raise ValueError(
                f"The run has no model for machine type(s) {missing} (trained: "
                f"{sorted(self.models)}). Train on them, or score a data folder "
                "without them.")
        loader = self.loader()
        parts = []
        for machine_type, group in test.groupby("machine_type"):
            state = self.scoring[machine_type]
            raw = self._raw_scores(machine_type, list(group["path"]), loader,
                                   desc=f"Scoring {machine_type}")
            group = group.copy()
            group["score_raw"] = raw
            normalize = self.config["normalize"]
            if normalize == "minmax_train":
                group["score"] = minmax(raw, state["train_min"], state["train_max"])
            elif normalize == "minmax_test":
                group["score"] = minmax(raw)
            else:
                group["score"] = raw
            group["decision"] = (raw > state["threshold"]).astype(int)
            parts.append(group)
        return pd.concat(parts).loc[test.index]

    # Persistence and export ----------------------------------------------

    def _save_one(self, machine_type, folder, history=None):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.scoring[machine_type]
        tmp = folder / ".model.keras.tmp.keras"
        self.models[machine_type].save(tmp)
        os.replace(tmp, folder / "model.keras")
        atomic_write_dataframe(folder / "train_scores.csv", state["train_scores"])
        if history is not None:
            atomic_write_dataframe(folder / "history.csv", history)
        # Written last: its presence marks the machine type as finished.
        atomic_write_text(folder / "scoring.json", json.dumps(
            {k: state[k] for k in ("threshold", "train_min", "train_max")}, indent=2))

    def _load_one(self, machine_type, model_path, scoring_path):
        self.models[machine_type] = load_keras_model(model_path)
        self.scoring[machine_type] = json.loads(Path(scoring_path).read_text())

    def save(self, run_dir):
        """Writes `models/<machine type>/{model.keras, scoring.json, train_scores.csv}`."""
        for machine_type in self.models:
            self._save_one(machine_type, Path(run_dir) / "models" / machine_type)

    @classmethod
    def load(cls, run_dir, config):
        system = cls(config)
        folder = Path(run_dir) / "models"
        found = sorted(p.parent for p in folder.glob("*/scoring.json"))
        if not found:
            raise FileNotFoundError(
                f"No trained models in '{folder}'. Is '{run_dir}' a finished "
                "'asd-keras train' run?")
        for path in found:
            system._load_one(path.name, path / "model.keras", path / "scoring.json")
        return system

    def export(self, out_dir):
        """Writes a SavedModel mapping raw waveforms to anomaly scores.

        `serving_default(waveform, machine_type)`: float32 waveforms `(clips,
        samples)` at the run's sample rate and a scalar machine type string ->
        `anomaly_score` (float32; min-max scaled with the training range when
        `normalize=minmax_train`, raw otherwise, since the test-set scaling of
        the originals needs the whole test set) and `decision` (int32).
        """
        from asd_keras.models.common import machine_type_endpoint

        machine_types = sorted(self.models)
        archive = keras.export.ExportArchive()
        functions, thresholds = [], []
        scaled = self.config["normalize"] == "minmax_train"
        for machine_type in machine_types:
            archive.track(self.models[machine_type])
            state = self.scoring[machine_type]
            fn = self.score_function(machine_type)
            threshold = state["threshold"]
            if scaled:
                low = float(state["train_min"])
                span = float(state["train_max"]) - low
                span = span if span > 0 else 1.0
                fn = (lambda f, lo, sp: lambda w: (f(w) - lo) / sp)(fn, low, span)
                threshold = (threshold - low) / span
            functions.append(fn)
            thresholds.append(threshold)
        archive.add_endpoint(
            "serve", machine_type_endpoint(machine_types, functions, thresholds),
            input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                             tf.TensorSpec([], tf.string, name="machine_type")])
        archive.write_out(str(out_dir), verbose=False)
        return {"machine_types": machine_types, "sample_rate": self.config["sample_rate"],
                "channel": self.config["channel"],
                "score": "minmax_train" if scaled else "raw"}


class GANomalySystem(GANSystem):
    name = "ganomaly"


class SkipGANomalySystem(GANSystem):
    name = "skip_ganomaly"


class EGBADSystem(GANSystem):
    name = "egbad"
