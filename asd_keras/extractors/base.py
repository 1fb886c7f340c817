"""The feature-extractor protocol: clips to per-clip feature vectors.

An extractor turns the clips of a dataset table (`asd_keras.data.layouts.
read_dataset`) into one or more named feature sets, each a `(clips, dim)`
float32 array (for example one set per encoder layer). Trained extractors
learn in `fit`; training-free and frozen ones ignore it. `serving_model`
gives a Keras model from a batch of waveforms to the same named features,
which the shared export composes with a backend's scoring layer, so that a
SavedModel computes exactly what `transform` computes.

Subclasses implement `transform`, `serving_model` and `get_config` (plain
constructor arguments), `loader` when their clips need more than one
sample, and for trained extractors `fit`, `_save_weights` and
`_load_weights`. A trained extractor builds its models inside
`context.scope()` and trains them with `context.fit` (`asd_keras.utils.
training.TrainingContext`), which adds the run's callbacks, TensorBoard,
resumable backups and the `tf.distribute` strategy. An extractor whose
features are clip means of frame-level values may also give those frames
(`frame_sets`, `frame_batches`) to backends that fit on frames.
`save(folder)` writes `extractor.json` atomically;
`load_extractor(folder)` rebuilds any registered extractor.
"""

import abc
import json
from pathlib import Path

from asd_keras.data.audio import AudioLoader
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.registry import Registry

EXTRACTORS = Registry("extractor")
register_extractor = EXTRACTORS.register
CONFIG_FILE = "extractor.json"


def get_extractor(name, **config):
    """A new, unfitted extractor from its registry name and config keys."""
    return EXTRACTORS.create(name, **config)


class FeatureExtractor(abc.ABC):
    """Base class of the feature extractors (see the module docstring).

    Class attributes:
        name: str. Registry name (set by `register_extractor`).
        trainable: bool. Whether `fit` learns anything.
        frame_sets: tuple of str. Feature sets `frame_batches` can give.
        uses_other_groups: bool. See below.

    Capabilities the system layer and the runners read (never probed):
    `serving_channels`, `weights_note`, `proxy_metrics`.
    """

    name = None
    trainable = False
    frame_sets = ()
    # What `fit` resolved from the training data and why (e.g. a clip
    # length), recorded in the run's run.json.
    data_choices = {}
    # Extractors that also learn from clips outside their group (the
    # separation task mixes a machine type's clips with other types') get
    # every training row of the run as `pool` in `fit`, and the proxy study
    # gives their `proxy_metrics` every labelled test row as `pool`.
    uses_other_groups = False

    @property
    def serving_channels(self):
        """Channels of a clip the features and the serving model take: 1, or
        2 for extractors that embed a two-microphone clip's near and far
        channels side by side (`channel="both"`), which backends of
        `paired_features` need."""
        return 1

    @property
    def weights_note(self):
        """Where pretrained initial weights came from, for tables (e.g.
        `"pretrained"`); None for extractors without pretrained weights."""
        return None

    def proxy_metrics(self, train, test, verbose=0):
        """The proxy-task metrics of Shin & Lee's study for this extractor's
        family (e.g. the AE's reconstruction error on normal test clips).

        Args:
            train: DataFrame of one machine type's training rows.
            test: DataFrame of its labelled test rows.
            verbose: int. Keras verbosity.

        Returns:
            dict of str -> float.

        Raises:
            ValueError: the extractor has no proxy task.
        """
        del train, test, verbose
        raise ValueError(f"Extractor {self.name!r} has no proxy task; the proxy study "
                         "takes the ae, classification, contrastive, separation and "
                         "pretrained families' extractors.")

    def fit(self, table, context, name=None):
        """Learns from the training clips of `table`; returns a history
        DataFrame or None. A no-op for training-free extractors.

        Args:
            table: DataFrame of the (normal) training rows.
            context: `TrainingContext` of the run.
            name: str. Unique name of this model within the run.

        Extractors with `uses_other_groups` also take `pool`: every
        training row of the run, the extractor's own group included.
        """
        del table, context, name
        return None

    def frame_batches(self, table, feature_set):
        """Batches `(values (n, k, dim), rows (n,))` of frame-level features
        whose clip means make `feature_set` (see `frame_sets`)."""
        raise ValueError(f"Extractor {self.name!r} gives no frame-level features "
                         f"(feature set {feature_set!r}).")

    @abc.abstractmethod
    def transform(self, table, verbose=0):
        """Named feature sets of the clips of `table`, in its row order.

        Returns:
            dict of str -> float32 array `(clips, dim)`.
        """

    @abc.abstractmethod
    def serving_model(self, num_samples=None):
        """A Keras model from `(batch, num_samples)` waveforms to the dict of
        named features that `transform` returns (`None`: any length, where
        the extractor allows it)."""

    def loader(self):
        """The `AudioLoader` that `transform` reads clips with.

        The exported SavedModel serves the clips it accepts: at least its
        `min_samples`, and the fixed length under `length_policy="truncate"`
        (`asd_keras.systems.export`). This default reads one channel of any
        length at the configured `sample_rate` (16 kHz without one).
        """
        return AudioLoader(sample_rate=self.get_config().get("sample_rate", 16000))

    def get_config(self):
        return {}

    def _save_weights(self, folder):
        """Trained extractors write their weights into `folder`."""

    def _load_weights(self, folder):
        """Trained extractors read what `_save_weights` wrote."""

    def save(self, folder):
        """Writes `extractor.json` (and any weights) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_weights(folder)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(
            {"name": self.name, "config": self.get_config()}, indent=2, sort_keys=True))


def load_extractor(folder):
    """An extractor from a folder written by `FeatureExtractor.save`.

    Raises:
        FileNotFoundError: when `extractor.json` is missing.
        ValueError: for an unknown extractor or a damaged file.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {CONFIG_FILE} in {str(folder)!r}; is it a folder "
                                "written by FeatureExtractor.save?")
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{str(path)!r} is damaged ({error}); retrain or re-save the "
                         "extractor.") from error
    extractor = get_extractor(record["name"], **record["config"])
    extractor._load_weights(folder)
    return extractor
