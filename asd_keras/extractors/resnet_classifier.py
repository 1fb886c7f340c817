"""Shin & Lee's classification proxy task: a ResNet trained to tell sections apart.

Paper §III-C: a ResNet-18/34/50/101/152 backbone on a clip's log-mel
spectrogram (§III-A: 16 kHz, 10 s, 128 mels, n_fft 1024, hop 512) is
trained to classify the machine ID (the section; attributes are excluded on
purpose) with cross-entropy (a linear layer to class logits) or ArcFace (an
additive angular margin head). The head serves the proxy task only; anomaly
detection uses the backbone output (feature set `embedding`, 512-d for
ResNet-18/34, 2048-d for ResNet-50/101/152). Training follows the study's
common protocol (AdamW, StepLR, 200 epochs, the epoch of lowest training
loss; `asd_keras.extractors.spectrogram`).

The proxy metric (§IV-C2, Table III) is the macro-F1 of classifying test
clips into the training classes: the trained softmax layer's argmax for
cross-entropy; for ArcFace, which gives no class probabilities, a single
linear classifier fitted on the frozen embeddings of the training clips.

Assumptions where the paper is silent: batch size 32, learning rate 1e-3,
weight decay 1e-2 (PyTorch `AdamW`'s default), the rate multiplied by 0.1
(PyTorch `StepLR`'s default gamma) every 50 epochs, clips tiled and
randomly cropped to 10 s in training (`length_policy="tile_crop"`; DCASE
2022 clips are 10 s, so this is plain truncation there), ArcFace s = 30 and
m = 0.5 (the ArcFace paper's values), the linear layer initialised as
PyTorch's `nn.Linear`, and the ArcFace probe classifier as in
`_probe_classifier`.
"""

import json
import logging
import math
from pathlib import Path

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from asd_keras.config import choice
from asd_keras.config import number
from asd_keras.data.labels import ClassEncoder
from asd_keras.data.labels import class_keys
from asd_keras.evaluation.proxy import macro_f1
from asd_keras.extractors.base import register_extractor
from asd_keras.extractors.spectrogram import SpectrogramModelExtractor
from asd_keras.extractors.spectrogram import spectrogram_model_schema
from asd_keras.extractors.spectrogram import write_json
from asd_keras.layers import ArcFace
from asd_keras.losses import MixupCrossEntropy
from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import load_keras_model

logger = logging.getLogger(__name__)

LOSSES = ("ce", "arcface")
# "one" and "per_section" give every model a single class, which a
# classifier cannot learn from (its loss is zero from the start). "auto"
# is resolved from the training clips (`resolve_classes`).
CLASS_GRANULARITIES = ("auto", "section", "machine_type", "attribute")
CLASSES_FILE = "classes.json"
CLASSIFIER_FILE = "classifier.keras"
# The ArcFace proxy metric's linear classifier (`_probe_classifier`).
PROBE_C = 1.0
PROBE_MAX_ITER = 1000


def _schema():
    return {
        **spectrogram_model_schema(),
        "loss": choice(*LOSSES),
        "classes": choice(*CLASS_GRANULARITIES),
        "arcface_scale": number(gt=0),
        "arcface_margin": number(min=0, max=math.pi / 2),
    }


def _probe_classifier(seed):
    """The linear classifier of the ArcFace proxy metric.

    The paper trains "a single linear classifier" on the frozen features
    (§IV-C2) without giving its settings. Here: features standardised with
    the training clips' mean and std, then scikit-learn's multinomial
    `LogisticRegression` (softmax cross-entropy, L-BFGS to convergence, L2
    strength `C=1.0`), the linear probe's settings
    (`asd_keras.backends.linear_probe`). Standardising is an affine map, so
    the whole is still one linear layer on the raw features.
    """
    return make_pipeline(StandardScaler(),
                         LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER,
                                            random_state=seed))


@register_extractor("resnet_classifier")
class ResNetClassifierExtractor(SpectrogramModelExtractor):
    """Backbone features of a ResNet trained to classify sections (§III-C).

    Args:
        loss: str. `"ce"`: a linear layer (with bias) and softmax
            cross-entropy; `"arcface"`: the `ArcFace` head (trainable
            centres) and cross-entropy on its margin logits.
        classes: str. The class of a clip (`asd_keras.data.labels`):
            `"auto"` (default; `resolve_classes`: sections where every
            machine type has several, as the paper's machine IDs on DCASE
            2020-2022, else attributes, as DCASE 2023+ has one section per
            machine type), `"section"`, `"machine_type"` (needs
            `extractor_grouping=all`, or there is one class per model) or
            `"attribute"` (section, attributes and domain, as the
            `classifier_embedding` extractor's default).
        arcface_scale: float s. Defaults to `30.0`.
        arcface_margin: float m in radians, in [0, pi/2]. Defaults to `0.5`.
        depth: int. ResNet depth, one of 18, 34, 50, 101, 152.
        epochs: int. Training length and batch.
        batch_size: int. Training length and batch.
        learning_rate: float. AdamW.
        weight_decay: float. AdamW.
        lr_step_epochs: StepLR (rate times `lr_gamma` every
            `lr_step_epochs` epochs).
        lr_gamma: see `lr_step_epochs`.
        select: str. `"min_loss"` (the weights of the lowest-loss epoch) or
            `"last"`.
        clip_seconds: float. The network's input length.
        length_policy: str. `"truncate"`, `"pad"` or `"tile_crop"`.
        sample_rate: audio loading.
        channel: audio loading.
        resample: audio loading.
        n_fft: the log-mel front end.
        hop_length: the log-mel front end.
        n_mels: the log-mel front end.
        log_mode: the log-mel front end.
        pad_mode: the log-mel front end.
        score_batch_clips: int. Clips per `transform` batch.
        pipeline_ram_mb: int. tf.data autotuner memory budget.
        jit_compile: `"auto"` (XLA on GPU only), True or False.
        dtype_policy: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (loss-scaled; for GPUs): the precision of the trained networks
            (`asd_keras.models.precision`); the front end, the heads and the
            embedding stay float32.
        run_eagerly: bool. Train and embed without tracing a graph: on a
            CPU with few clips, tracing a deep ResNet's training step (or
            its predict step) costs more than the work itself.
        seed: int. Seeds the backbone, the head and the shuffles.

    Example:
    >>> extractor = ResNetClassifierExtractor(loss="arcface", depth=34)
    >>> history = extractor.fit(train, TrainingContext())  # doctest: +SKIP
    >>> extractor.proxy_metrics(train, test)  # doctest: +SKIP
    {'macro_f1': 0.98}
    """

    def __init__(self, loss="ce", classes="auto", arcface_scale=30.0,
                 arcface_margin=0.5, depth=18, epochs=200, batch_size=32,
                 learning_rate=1e-3, weight_decay=1e-2, lr_step_epochs=50, lr_gamma=0.1,
                 select="min_loss", clip_seconds=10.0, length_policy="tile_crop",
                 sample_rate=16000, channel=0, resample=False, n_fft=1024, hop_length=512,
                 n_mels=128, log_mode="max", pad_mode="constant", score_batch_clips=16,
                 pipeline_ram_mb=256, jit_compile="auto", dtype_policy="float32",
                 run_eagerly=False, seed=0):
        config = {k: v for k, v in locals().items() if k != "self"}
        self._configure(config, _schema())
        self.class_encoder = None
        # CE only: the trained linear layer, embedding -> probabilities.
        self.classifier = None
        self.data_choices = {}

    # -- training ----------------------------------------------------------

    def resolve_classes(self, table):
        """Resolves `classes="auto"` from the training clips of `table`.

        Sections (the paper's machine IDs) when every machine type in
        `table` has more than one section (DCASE 2020-2022); otherwise the
        attribute classes (section, attributes and domain), since a single
        section per machine type (DCASE 2023 and later) gives a model of one
        machine type a single class. The choice replaces `"auto"` in the
        configuration, and `data_choices` says why (recorded in the run's
        run.json, as the Wilkinghoff clip length).
        """
        c = self.config
        if c["classes"] != "auto":
            return
        sections = table.groupby("machine_type")["section"].nunique()
        few = sorted(sections.index[sections < 2].astype(str))
        if few:
            c["classes"] = "attribute"
            why = (f"classes=attribute: machine type(s) {few} have a single section in "
                   "the training clips (DCASE 2023+), so sections cannot be told apart")
        else:
            c["classes"] = "section"
            low, high = int(sections.min()), int(sections.max())
            why = (f"classes=section: every machine type has several sections "
                   f"({low if low == high else f'{low}-{high}'}; the paper's machine IDs)")
        self.data_choices = {"classes": c["classes"], "why": why}
        logger.info("Classes: %s.", why)

    def _build_training_model(self, encoder, table):
        c = self.config
        seed = int(c["seed"])
        self.resolve_classes(table)
        classes = ClassEncoder(c["classes"]).fit(table)
        if classes.num_classes < 2:
            chosen = f" ({self.data_choices['why']})" if self.data_choices else ""
            raise ValueError(
                f"classes={c['classes']!r}{chosen} gives {classes.num_classes} class "
                f"({classes.classes}) in these {len(table)} training clips; a classifier "
                "needs at least 2. Train on more sections (e.g. extractor_grouping="
                "machine_type with classes=section), or extractor_grouping=all with "
                "classes=machine_type.")
        num_classes = classes.num_classes
        logger.info("loss=%s, classes=%s (%d).", c["loss"], c["classes"], num_classes)
        one_hot = np.eye(num_classes, dtype=np.float32)[classes.transform(table)]
        dataset = self.training_dataset(list(table["path"]), one_hot, seed)
        waveform = keras.Input(encoder.input_shape[1:], name="waveform")
        if c["loss"] == "ce":
            embedding = keras.Input(encoder.output_shape[1:], name="embedding")
            # PyTorch's nn.Linear initialisation, U(+-1/sqrt(fan_in)) for the
            # kernel and the bias, as the backbone copies torchvision's. A
            # softmax in float32 under any dtype policy (Keras' mixed
            # precision guide): 16-bit probabilities round small classes to 0.
            bound = 1.0 / math.sqrt(encoder.output_shape[-1])
            dense = keras.layers.Dense(
                num_classes, activation="softmax", name="logits", dtype="float32",
                kernel_initializer=keras.initializers.VarianceScaling(
                    1.0 / 3.0, "fan_in", "uniform", seed=seed),
                bias_initializer=keras.initializers.RandomUniform(-bound, bound,
                                                                  seed=seed + 1))
            classifier = keras.Model(embedding, dense(embedding), name="classifier")
            model = keras.Model(waveform, classifier(encoder(waveform)),
                                name="resnet_classifier_ce")
            loss = keras.losses.CategoricalCrossentropy()
        else:
            # The margin needs the target class, so the label is a model input
            # (as in asd_keras.models.wilkinghoff.training_model) and the loss
            # reads it back from the head's stacked output.
            label = keras.Input((num_classes,), name="label")
            head = ArcFace(num_classes, float(c["arcface_scale"]), float(c["arcface_margin"]),
                           seed=seed, name="arcface")
            model = keras.Model({"waveform": waveform, "label": label},
                                head([encoder(waveform), label]),
                                name="resnet_classifier_arcface")
            loss = MixupCrossEntropy()
            classifier = None
            dataset = dataset.map(lambda x, y: ({"waveform": x, "label": y}, y))
        self.class_encoder, self.classifier = classes, classifier
        return model, loss, dataset

    # -- proxy task --------------------------------------------------------

    def class_indices(self, table, what="test"):
        """`(clips,)` int class indices of the rows of `table`.

        Raises:
            ValueError: naming the clips whose class was not trained on.
        """
        self._check_fitted()
        encoder = self.class_encoder
        keys = class_keys(table, encoder.granularity, encoder.domain_flag)
        unknown = ~keys.isin(encoder.classes).to_numpy()
        if unknown.any():
            clips = [Path(p).name for p in table["path"].to_numpy()[unknown][:3]]
            raise ValueError(
                f"{int(unknown.sum())} {what} clip(s), e.g. {clips}, belong to classes "
                f"{sorted(set(keys[unknown]))[:5]} that the model was not trained on "
                f"(trained {encoder.granularity} classes: {encoder.classes}). Pass only "
                "clips of the trained classes.")
        return encoder.transform(table)

    def predict_classes(self, train, test, verbose=0):
        """Predicted and true class indices of the test clips (§IV-C2).

        CE: the argmax of the trained softmax layer. ArcFace: a linear
        classifier (`_probe_classifier`) fitted on the frozen embeddings of
        the `train` clips.

        Returns:
            (predicted, true): two `(clips,)` int arrays.
        """
        self._check_fitted()
        test = test.reset_index(drop=True)
        if len(test) == 0:
            raise ValueError("proxy_metrics needs at least one test clip; received none.")
        true = self.class_indices(test, "test")
        features = self.embed([str(p) for p in test["path"]], verbose)
        if self.config["loss"] == "ce":
            if self.config["run_eagerly"]:
                probabilities = np.asarray(self.classifier(features, training=False))
            else:
                probabilities = self.classifier.predict(
                    features, batch_size=int(self.config["score_batch_clips"]),
                    verbose=verbose)
            return np.argmax(probabilities, axis=-1), true
        train = train.reset_index(drop=True)
        labels = self.class_indices(train, "training")
        if len(np.unique(labels)) < 2:
            raise ValueError(f"The linear classifier needs training clips of at least 2 "
                             f"classes; received {len(train)} clip(s) of "
                             f"{len(np.unique(labels))}.")
        probe = _probe_classifier(int(self.config["seed"])).fit(
            self.embed([str(p) for p in train["path"]], verbose), labels)
        return probe.predict(features).astype(np.int64), true

    def proxy_metrics(self, train, test, verbose=0):
        """`{"macro_f1": ...}` of classifying the test clips (paper Eq. 7).

        The macro average runs over the classes that are true or predicted
        for some test clip (`sklearn.metrics.f1_score(average="macro")`), so a
        test clip predicted as a training-only section counts against it.

        Args:
            train: DataFrame of the training clips (used by ArcFace only).
            test: DataFrame of the test clips; every clip's class must have
                been trained on (a ValueError names those that were not).
            verbose: int.
        """
        predicted, true = self.predict_classes(train, test, verbose)
        return {"macro_f1": macro_f1(true, predicted)}

    # -- persistence -------------------------------------------------------

    def _save_extra(self, folder):
        write_json(folder / CLASSES_FILE, self.class_encoder.get_config())
        if self.classifier is not None:
            with atomic_path(folder / CLASSIFIER_FILE, suffix=".keras") as tmp:
                self.classifier.save(tmp)

    def _load_extra(self, folder):
        self.class_encoder = ClassEncoder.from_config(
            json.loads((folder / CLASSES_FILE).read_text()))
        self.classifier = (load_keras_model(folder / CLASSIFIER_FILE)
                           if self.config["loss"] == "ce" else None)
