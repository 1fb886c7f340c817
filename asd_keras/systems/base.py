"""The anomaly system: one feature extractor composed with one scoring backend.

`AnomalySystem` is the shared system layer: it owns fit, score, save, load
and export, so a family only contributes an extractor, a backend and a named
preset (`register_system`). Its configuration is flat, as on the command
line (`asd-keras train --system logmel_stats backend=knn k=3`):

- the system's own keys (`SYSTEM_DEFAULTS`): `extractor`, `backend`,
  `grouping`, `feature_set`, `ensemble_size`, `threshold`,
  `threshold_quantile`, `seed`, `deterministic`;
- every other key goes to the extractor or the backend whose constructor
  takes it (a key both take, or none, is an error naming the key).

The run folder (one layout for every system):

    members/member<r>/extractor/            FeatureExtractor.save
    members/member<r>/backends/<group>/     ScoringBackend.save
    thresholds.json                         group -> decision threshold
    train_scores.csv                        training clips' scores

The extractor is fitted once per ensemble member on all training clips; the
backend once per member and group (`grouping`: one per machine type, per
section of a machine type, or one for all clips). A clip's score is the sum
over members of its group's backend score, as the Wilkinghoff ensembles.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from asd_keras.backends import BACKENDS
from asd_keras.backends import load_backend
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.config import boolean
from asd_keras.config import string
from asd_keras.config import validate_config
from asd_keras.data.layouts import require_split
from asd_keras.extractors import EXTRACTORS
from asd_keras.extractors import load_extractor
from asd_keras.scoring.threshold import gamma_threshold
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.registry import Registry
from asd_keras.utils.registry import defaults

SYSTEMS = Registry("system")
GROUPINGS = ("machine_type", "section", "all")
THRESHOLDS = ("gamma", "percentile")

SYSTEM_DEFAULTS = {
    "extractor": "logmel_stats",
    "backend": "mahalanobis",
    "grouping": "section",
    "feature_set": None,
    "ensemble_size": 1,
    "threshold": "gamma",
    "threshold_quantile": 0.9,
    "seed": 0,
    "deterministic": False,
}
SYSTEM_SCHEMA = {
    "extractor": string(),
    "backend": string(),
    "grouping": choice(*GROUPINGS),
    "feature_set": string(optional=True),
    "ensemble_size": integer(min=1),
    "threshold": choice(*THRESHOLDS),
    "threshold_quantile": number(gt=0, lt=1),
    "seed": integer(min=0),
    "deterministic": boolean(),
}


def register_system(name):
    """Class decorator registering a preset (a subclass with `DEFAULTS`)."""
    return SYSTEMS.register(name)


def _group_keys(table, grouping):
    if grouping == "all":
        return pd.Series("all", index=table.index)
    if grouping == "machine_type":
        return table["machine_type"].astype(str)
    return table["machine_type"].astype(str) + "_section_" + table["section"].astype(str)


def _metadata(table):
    """The backend metadata columns of a dataset table."""
    meta = pd.DataFrame({"domain": table["domain"].fillna("source").astype(str).to_numpy(),
                         "section": table["section"].astype(str).to_numpy()})
    if "label" in table.columns:
        meta["label"] = table["label"].to_numpy()
    return meta


class AnomalySystem:
    """Extractor x backend x grouping x ensemble x threshold rule.

    Presets subclass it with `DEFAULTS` (values of the system keys and of
    the component keys) and register with `register_system`.

    Args:
        config: dict of flat configuration keys (see the module docstring).
    """

    name = None
    DEFAULTS = {}
    resumable = False

    def __init__(self, config=None):
        user = dict(config or {})
        merged = {**SYSTEM_DEFAULTS, **self.DEFAULTS, **user}
        extractor_cls = EXTRACTORS.get(merged["extractor"])
        backend_cls = BACKENDS.get(merged["backend"])
        extractor_keys, backend_keys = defaults(extractor_cls), defaults(backend_cls)
        # Preset values meant for another extractor or backend (chosen by the
        # user) are dropped; the user's own keys must fit somewhere.
        components = {k: v for k, v in {**self.DEFAULTS, **user}.items()
                      if k not in SYSTEM_DEFAULTS and (
                          k in user or k in extractor_keys or k in backend_keys)}
        unknown = sorted(k for k in components
                         if k not in extractor_keys and k not in backend_keys)
        if unknown:
            raise ValueError(
                f"Unknown configuration key(s) {unknown} for system {self.name!r} with "
                f"extractor {merged['extractor']!r} and backend {merged['backend']!r}. "
                f"Valid keys: {sorted(set(SYSTEM_DEFAULTS) | set(extractor_keys) | set(backend_keys))}.")
        both = sorted(k for k in components if k in extractor_keys and k in backend_keys
                      and k != "seed")
        if both:
            raise ValueError(f"Configuration key(s) {both} are taken by both the extractor "
                             f"{merged['extractor']!r} and the backend {merged['backend']!r}.")
        system = validate_config({k: merged[k] for k in SYSTEM_DEFAULTS}, SYSTEM_SCHEMA)
        self.extractor_config = {k: v for k, v in components.items() if k in extractor_keys}
        self.backend_config = {k: v for k, v in components.items() if k in backend_keys}
        # Build once now: the components validate their own values before
        # any audio is read.
        EXTRACTORS.create(system["extractor"], **self._seeded(self.extractor_config,
                                                              extractor_keys, 0))
        BACKENDS.create(system["backend"], **self._seeded(self.backend_config,
                                                          backend_keys, 0))
        self.config = {**system, **self.extractor_config, **self.backend_config}
        self.members = []
        self.thresholds = {}
        self.data_choices = {}

    @staticmethod
    def _seeded(config, keys, seed):
        return {**config, "seed": seed} if "seed" in keys and "seed" not in config else config

    def _new_extractor(self, member):
        keys = defaults(EXTRACTORS.get(self.config["extractor"]))
        return EXTRACTORS.create(self.config["extractor"], **self._seeded(
            self.extractor_config, keys, self.config["seed"] + member))

    def _new_backend(self, member):
        keys = defaults(BACKENDS.get(self.config["backend"]))
        return BACKENDS.create(self.config["backend"], **self._seeded(
            self.backend_config, keys, self.config["seed"] + member))

    def _features(self, extractor, table, verbose):
        sets = extractor.transform(table, verbose=verbose)
        name = self.config["feature_set"]
        if name is None:
            if len(sets) != 1:
                raise ValueError(f"Extractor {self.config['extractor']!r} gives the feature "
                                 f"sets {sorted(sets)}; choose one with feature_set=NAME.")
            name = next(iter(sets))
        if name not in sets:
            raise ValueError(f"feature_set={name!r} is not one of the extractor's sets "
                             f"{sorted(sets)}.")
        return sets[name]

    # -- fit ---------------------------------------------------------------

    def fit(self, table, run_dir, verbose=1):
        """Fits every member's extractor and per-group backends; writes the run.

        Returns:
            DataFrame of the training clips with their `score` and `group`.
        """
        train = require_split(table, "train").reset_index(drop=True)
        groups = _group_keys(train, self.config["grouping"])
        total = np.zeros(len(train))
        self.members = []
        for member in range(self.config["ensemble_size"]):
            extractor = self._new_extractor(member)
            extractor.fit(train, run_dir, verbose=verbose)
            features = self._features(extractor, train, verbose)
            backends = {}
            for group in sorted(groups.unique()):
                rows = (groups == group).to_numpy()
                backend = self._new_backend(member).fit(features[rows],
                                                        _metadata(train[rows]))
                backends[group] = backend
                total[rows] += backend.score(features[rows])
            self.members.append({"extractor": extractor, "backends": backends})
        self.thresholds = {group: self._threshold(total[(groups == group).to_numpy()], group)
                           for group in sorted(groups.unique())}
        self.save(run_dir)
        result = train[["machine_type", "section", "domain", "file_name"]].copy()
        result["group"], result["score"] = groups.to_numpy(), total
        atomic_write_dataframe(Path(run_dir) / "train_scores.csv", result)
        return result

    def _threshold(self, scores, group):
        quantile = self.config["threshold_quantile"]
        if self.config["threshold"] == "percentile":
            return float(np.quantile(scores, quantile))
        if len(scores) < 3:
            raise ValueError(f"Group {group!r} has {len(scores)} training clip(s); the gamma "
                             "threshold needs at least 3 (or use threshold=percentile).")
        return gamma_threshold(scores, quantile)

    def features(self, table, verbose=0):
        """Per-clip features of any rows from the first member's extractor
        (what `asd-keras probe` scores)."""
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        return self._features(self.members[0]["extractor"], table.reset_index(drop=True),
                              verbose)

    # -- score -------------------------------------------------------------

    def score(self, table, verbose=0):
        """Scores the test clips; returns their rows with `score` and `decision`."""
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        test = require_split(table, "test").reset_index(drop=True)
        groups = _group_keys(test, self.config["grouping"])
        unseen = sorted(set(groups) - set(self.thresholds))
        if unseen:
            raise ValueError(f"No trained model for {unseen} (grouping="
                             f"{self.config['grouping']!r}); trained groups: "
                             f"{sorted(self.thresholds)}.")
        total = np.zeros(len(test))
        for member in self.members:
            features = self._features(member["extractor"], test, verbose)
            for group in groups.unique():
                rows = (groups == group).to_numpy()
                total[rows] += member["backends"][group].score(features[rows])
        test["score"] = total
        threshold = groups.map(self.thresholds).to_numpy(float)
        test["decision"] = (total > threshold).astype(int)
        return test

    # -- persistence -------------------------------------------------------

    def save(self, run_dir):
        root = Path(run_dir) / "members"
        for r, member in enumerate(self.members):
            member["extractor"].save(root / f"member{r}" / "extractor")
            for group, backend in member["backends"].items():
                backend.save(root / f"member{r}" / "backends" / group)
        atomic_write_text(Path(run_dir) / "thresholds.json",
                          json.dumps(self.thresholds, indent=1, sort_keys=True))

    @classmethod
    def load(cls, run_dir, config):
        system = cls(config)
        root = Path(run_dir) / "members"
        folders = sorted(root.glob("member*"), key=lambda p: int(p.name[6:]))
        if not folders or not (Path(run_dir) / "thresholds.json").is_file():
            raise FileNotFoundError(f"No trained members in '{root}' or no thresholds.json; "
                                    f"is '{run_dir}' a finished 'asd-keras train --system "
                                    f"{cls.name}' run?")
        for folder in folders:
            system.members.append({
                "extractor": load_extractor(folder / "extractor"),
                "backends": {p.name: load_backend(p)
                             for p in sorted((folder / "backends").iterdir())},
            })
        system.thresholds = json.loads((Path(run_dir) / "thresholds.json").read_text())
        return system

    # -- export ------------------------------------------------------------

    def export(self, out_dir):
        """Writes a SavedModel from raw waveforms to anomaly scores.

        `serving_default(waveform, machine_type, section)`: float32
        waveforms `(clips, samples)` and scalar strings such as `"fan"` and
        `"00"`; returns `anomaly_score` (float32) and `decision` (int32),
        both `(clips,)`. The extractor's serving model and the backends'
        scoring layers are the very objects `score` uses.
        """
        import keras
        import tensorflow as tf

        groups = sorted(self.thresholds)
        names = tf.constant(groups)
        thresholds = tf.constant([self.thresholds[g] for g in groups], tf.float32)
        grouping = self.config["grouping"]
        archive = keras.export.ExportArchive()
        members = []
        for member in self.members:
            model = member["extractor"].serving_model(None)
            layers = [member["backends"][g].layer() for g in groups]
            archive.track(model)
            for layer in layers:
                archive.track(layer)
            members.append((model, layers))
        feature_set = self.config["feature_set"]

        def serve(waveform, machine_type, section):
            if grouping == "all":
                key = tf.constant("all")
            elif grouping == "machine_type":
                key = machine_type
            else:
                key = tf.strings.join([machine_type, "_section_", section])
            matches = tf.where(tf.equal(names, key))
            tf.debugging.Assert(tf.size(matches) == 1,
                                ["Unknown machine type/section", key, "; known:", names])
            index = tf.cast(tf.reshape(matches, [-1])[0], tf.int32)
            total = tf.zeros(tf.shape(waveform)[:1], tf.float32)
            for model, layers in members:
                sets = model(waveform, training=False)
                features = sets[feature_set] if feature_set else next(iter(sets.values()))
                total += tf.switch_case(
                    index, [lambda lay=lay: tf.cast(lay(features), tf.float32)
                            for lay in layers])
            return {"anomaly_score": total,
                    "decision": tf.cast(total > thresholds[index], tf.int32)}

        archive.add_endpoint("serve", serve, input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([], tf.string, name="machine_type"),
            tf.TensorSpec([], tf.string, name="section"),
        ])
        archive.write_out(str(out_dir), verbose=False)
        return {"sections": groups, "grouping": grouping,
                "ensemble_size": len(self.members)}
