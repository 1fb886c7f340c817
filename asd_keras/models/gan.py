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

The `gan` extractor (`asd_keras.extractors.gan`) trains one of them
per machine type and the presets `ganomaly`, `skip_ganomaly` and `egbad`
(`asd_keras.systems.gan`) score with it.
"""

import keras
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
from asd_keras.models.precision import dtype_policy_scope
from asd_keras.models.gan_scores import egbad_crossentropy_score
from asd_keras.models.gan_scores import egbad_score
from asd_keras.models.gan_scores import ganomaly_score
from asd_keras.models.gan_scores import skip_ganomaly_score

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

    @property
    def input_dtype(self):
        """The input dtype: always float32, whatever the dtype policy (see the comment)."""
        # float32 under any policy: the sub-networks cast their own inputs,
        # and the scores' reconstruction terms take the float32 vectors, not
        # a 16-bit copy of them.
        return "float32"

    # Sub-network helpers -------------------------------------------------

    def _sizes(self):
        return dict(hidden_units=self.hidden_units, num_hidden_layers=self.num_hidden_layers,
                    dropout=self.dropout, initializer=self.initializer)

    @property
    def generator_networks(self):
        """Every sub-network the generator optimizer trains."""
        return [getattr(self, name) for name in self.generator_network_names]

    def generator_variables(self):
        """Trainable variables of every generator-side network.

        Returns:
            A list of variables, updated by the generator's optimizer.
        """
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
                `jit_compile` defaults to False: the step compiles with XLA
                (the `gan` extractor's `jit_compile` key), but on a CPU the
                XLA compilation costs more than a short training saves.
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
        d_opt, g_opt = self.discriminator_optimizer, self.optimizer
        # `scale_loss` keeps the loss unless the optimizer scales it (a
        # LossScaleOptimizer under mixed_float16), whose `apply_gradients`
        # then unscales the gradients, as Keras' own train_step.
        if self.step_order == "discriminator_first":
            with tf.GradientTape() as tape:
                _, d_loss = self.generator_and_discriminator_losses(x, training=True)
                scaled = d_opt.scale_loss(d_loss)
            self._apply(d_opt, tape, scaled, self.discriminator.trainable_variables)
            with tf.GradientTape() as tape:
                losses, _ = self.generator_and_discriminator_losses(x, training=True)
                scaled = g_opt.scale_loss(losses["g_loss"])
            self._apply(g_opt, tape, scaled, self.generator_variables())
        else:
            # One forward pass gives both losses: the discriminator is not
            # changed by the generator step, and its loss sees the detached
            # fake of the same pass, as `optimize_params` (reference A1).
            with tf.GradientTape(persistent=True) as tape:
                losses, d_loss = self.generator_and_discriminator_losses(x, training=True)
                g_scaled = g_opt.scale_loss(losses["g_loss"])
                d_scaled = d_opt.scale_loss(d_loss)
            self._apply(g_opt, tape, g_scaled, self.generator_variables())
            self._apply(d_opt, tape, d_scaled, self.discriminator.trainable_variables)
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
        w_adv: float. Loss weights (code defaults 1, 50, 1).
        w_con: float. Loss weights (code defaults 1, 50, 1).
        w_enc: float. Loss weights (code defaults 1, 50, 1).
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
        # Under the model's own policy, also when it is rebuilt from its config.
        with dtype_policy_scope(self.dtype_policy):
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
        """Encodes, reconstructs and re-encodes a batch of vectors.

        Args:
            x: `(batch, input_dim)` vectors.
            training: whether the sub-networks run in training mode.

        Returns:
            `(z, x_hat, z_hat)`: latent code, reconstruction and the
            reconstruction's latent code.
        """
        z = self.encoder(x, training=training)
        x_hat = self.decoder(z, training=training)
        z_hat = self.reencoder(x_hat, training=training)
        return z, x_hat, z_hat

    def generator_and_discriminator_losses(self, x, training=True):
        """The generator's losses and the discriminator's loss of one batch.

        Args:
            x: `(batch, input_dim)` float32 vectors.
            training: whether the sub-networks run in training mode.

        Returns:
            `(losses, d_loss)`: a dict of the generator's loss terms with their
            total under `"g_loss"`, and the discriminator's scalar loss.
        """
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
        w_adv: float. Loss weights (code defaults 1, 50, 1).
        w_con: float. Loss weights (code defaults 1, 50, 1).
        w_enc: float. Loss weights (code defaults 1, 50, 1).
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
        # Under the model's own policy, also when it is rebuilt from its config.
        with dtype_policy_scope(self.dtype_policy):
            sizes = self._sizes()
            self.generator = dense_unet(self.input_dim, latent_dim=self.latent_dim,
                                        name="generator", **sizes)
            # D is the dense encoder down to the latent size, then a logit (A2).
            self.discriminator = dense_discriminator(
                self.input_dim, feature_dim=self.latent_dim, name="discriminator", **sizes)
        self.build()


    def generator_and_discriminator_losses(self, x, training=True):
        """The generator's losses and the discriminator's loss of one batch.

        Args:
            x: `(batch, input_dim)` float32 vectors.
            training: whether the sub-networks run in training mode.

        Returns:
            `(losses, d_loss)`: a dict of the generator's loss terms with their
            total under `"g_loss"`, and the discriminator's scalar loss.
        """
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
        # Under the model's own policy, also when it is rebuilt from its config.
        with dtype_policy_scope(self.dtype_policy):
            sizes = self._sizes()
            self.encoder = dense_encoder(self.input_dim, latent_dim=self.latent_dim,
                                         name="encoder", **sizes)
            self.generator = dense_decoder(self.latent_dim, output_dim=self.input_dim,
                                           name="generator", **sizes)
            self.discriminator = dense_discriminator(
                self.input_dim, latent_dim=self.latent_dim, name="discriminator", **sizes)
        self.build()


    def generator_and_discriminator_losses(self, x, training=True):
        """The generator's losses and the discriminator's loss of one batch.

        Args:
            x: `(batch, input_dim)` float32 vectors.
            training: whether the sub-networks run in training mode.

        Returns:
            `(losses, d_loss)`: a dict of the generator's loss terms with their
            total under `"g_loss"`, and the discriminator's scalar loss.
        """
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
