"""The anomaly system: one feature extractor composed with one scoring backend.

`AnomalySystem` is the shared system layer: it owns fit, score, save, load
and export, so a family only contributes an extractor, a backend and a named
preset (`register_system`). Its configuration is flat, as on the command
line (`asd-keras train --system logmel_stats backend=knn k=3`):

- the system's own keys (`configuration.SYSTEM_DEFAULTS`): `extractor`, `backend`,
  `extractor_grouping`, `grouping`, `feature_set`, `ensemble_size`,
  `threshold`, `threshold_quantile`, `threshold_scores`,
  `machine_overrides`, `seed`, `deterministic`, `tensorboard`,
  `distribute`;
- a preset's named options (`OPTIONS`, e.g. the dense AE's `score=mahala`),
  each value standing for a set of other keys;
- every other key goes to the extractor or the backend whose constructor
  takes it (a key both take, or none, is an error naming the key);
- `machine_overrides` (`{fan: {epochs: 30}}`) changes extractor or backend
  keys for one machine type's groups (extractor keys need an
  `extractor_grouping` of `machine_type` or `section`).

The run folder (one layout for every system):

    members/member<r>/extractors/<group>/   FeatureExtractor.save
    members/member<r>/backends/<group>/     ScoringBackend.save
    history/<member>_<group>.csv            training histories (trained extractors)
    tensorboard/<member>_<group>/           with tensorboard=true
    thresholds.json                         group -> decision threshold
    train_scores.csv                        training clips' scores

Each ensemble member fits one extractor per `extractor_grouping` group (all
clips, each machine type or each section) and one backend per `grouping`
group, which must be as fine or finer. A clip's score is the sum over
members of its group's backend score, as the Wilkinghoff ensembles.

The decision threshold of a group is fitted on its training clips' scores.
A backend that keeps the training clips themselves as references (kNN
banks, k-means with every target clip) scores a training clip against
itself; `threshold_scores=cross_fitted` (the default for such backends,
`auto`) scores each half of a group's training clips, split within each
domain, with the backend fitted on the other half instead.

`fit` takes Keras callbacks and a checkpoint folder: finished extractors
are kept there and an unfinished Keras training is backed up every epoch,
so a repeated `fit` after an interruption resumes where it stopped.

`AnomalySystem` delegates the steps to helper modules of this package:
`configuration` (resolving the keys), `fitting` (one member's models group
by group), `features` (clips through their group's extractor), `threshold`,
`persistence` (the run folder's models) and `export` (the SavedModel).
"""

import contextlib
from pathlib import Path

import numpy as np

from asd_keras.backends import BACKENDS
from asd_keras.data.layouts import require_split
from asd_keras.extractors import EXTRACTORS
from asd_keras.systems.configuration import resolve
from asd_keras.systems.export import export_system
from asd_keras.systems.features import group_features
from asd_keras.systems.fitting import cross_fitted_scores
from asd_keras.systems.fitting import fit_backend
from asd_keras.systems.fitting import fit_extractor
from asd_keras.systems.groups import group_keys
from asd_keras.systems.groups import machine_type_of
from asd_keras.systems.members import Member
from asd_keras.systems.persistence import load_members
from asd_keras.systems.persistence import save_members
from asd_keras.systems.threshold import group_threshold
from asd_keras.utils.io import atomic_write_dataframe
from asd_keras.utils.registry import Registry
from asd_keras.utils.registry import defaults
from asd_keras.utils.training import TrainingContext

SYSTEMS = Registry("system")


def register_system(name):
    """Class decorator registering a preset (a subclass with `DEFAULTS`)."""
    return SYSTEMS.register(name)


class AnomalySystem:
    """Extractor x backend x groupings x ensemble x threshold rule.

    Presets subclass it with `DEFAULTS` (values of the system keys and of
    the component keys), optionally `OPTIONS` (`{key: {value: {other
    keys}}}`: a named choice standing for several keys), `VARIANTS`
    (`{key: {value: {other keys}}}` like `OPTIONS`, but the keys are
    defaults that the user's own keys override: a published variant) and
    `IMPLIES` (`{component key: {value: {system keys}}}`: a component value
    that fixes system keys, such as one model per section), and register
    with `register_system`.

    Args:
        config: dict of flat configuration keys (see the module docstring).
    """

    name = None
    DEFAULTS = {}
    OPTIONS = {}
    VARIANTS = {}
    IMPLIES = {}

    def __init__(self, config=None):
        resolved = resolve(self, config)
        self.extractor_config = resolved.extractor_config
        self.backend_config = resolved.backend_config
        self.config = resolved.system
        self._check_overrides(resolved.extractor_keys, resolved.backend_keys)
        # Built once now: the components validate their own values before
        # any audio is read, and the run records every resolved value.
        extractor = self._new_extractor(0)
        backend = self._new_backend(0)
        if backend.uses_test_labels:
            raise ValueError(
                f"Backend {self.config['backend']!r} is an evaluation protocol fitted on "
                "labelled test clips, not a detector: a system trains on normal clips "
                "only. Evaluate a trained run's features with it through 'asd-keras "
                "probe', or choose a detector backend ('asd-keras systems' lists them).")
        if backend.paired_features and extractor.serving_channels != 2:
            raise ValueError(
                f"Backend {self.config['backend']!r} scores paired near/far features; the "
                f"extractor {self.config['extractor']!r} must give both microphones: set "
                "channel=both (DCASE 2026 two-channel clips).")
        components = {**extractor.get_config(), **backend.get_config()}
        components.pop("seed", None)  # the system's seed (+ member) is used
        self.config = {**resolved.options, **resolved.system, **components}
        self.members = []
        self.thresholds = {}
        self.data_choices = {}
        self._feature_cache = None

    def _check_overrides(self, extractor_keys, backend_keys):
        """Validates `machine_overrides` by building each machine type's
        components (errors name the machine type and the key)."""
        for machine_type, keys in self.config["machine_overrides"].items():
            where = f"machine_overrides[{machine_type!r}]"
            if not isinstance(keys, dict):
                raise ValueError(f"{where} must be a mapping of keys to values (e.g. "
                                 f"{{epochs: 30}}); received {keys!r}.")
            unknown = sorted(k for k in keys if k == "seed" or (
                k not in extractor_keys and k not in backend_keys))
            if unknown:
                raise ValueError(f"{where} has key(s) {unknown} that are not keys of the "
                                 f"extractor {self.config['extractor']!r} or the backend "
                                 f"{self.config['backend']!r} (the seed is one per run).")
            for grouping, component, component_keys in (
                    ("extractor_grouping", "extractor", extractor_keys),
                    ("grouping", "backend", backend_keys)):
                if self.config[grouping] == "all" and any(k in component_keys for k in keys):
                    raise ValueError(f"{where} changes {component} keys, but {grouping}='all' "
                                     f"fits one {component} for every machine type; use "
                                     f"{grouping}=machine_type.")
            try:
                self._new_extractor(0, machine_type)
                self._new_backend(0, machine_type)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from error

    def _overrides(self, group, keys):
        """The machine_overrides of the machine type a group belongs to."""
        overrides = self.config["machine_overrides"]
        machine_type = machine_type_of(group)
        return {k: v for k, v in overrides.get(machine_type, {}).items() if k in keys}

    @property
    def resumable(self):
        """Whether `fit` trains anything that a checkpoint folder can resume."""
        return bool(EXTRACTORS.get(self.config["extractor"]).trainable)

    @staticmethod
    def _seeded(config, keys, seed):
        return {**config, "seed": seed} if "seed" in keys else config

    def _new_extractor(self, member, group=None):
        keys = defaults(EXTRACTORS.get(self.config["extractor"]))
        config = {**self.extractor_config, **self._overrides(group, keys)}
        return EXTRACTORS.create(self.config["extractor"], **self._seeded(
            config, keys, self.config["seed"] + member))

    def _new_backend(self, member, group=None):
        keys = defaults(BACKENDS.get(self.config["backend"]))
        config = {**self.backend_config, **self._overrides(group, keys)}
        return BACKENDS.create(self.config["backend"], **self._seeded(
            config, keys, self.config["seed"] + member))

    def _transform(self, extractors, table, verbose):
        """The chosen feature set of every row, each row by its group's extractor."""
        return group_features(extractors, table, self.config, self._feature_cache, verbose)

    @contextlib.contextmanager
    def caching_features(self):
        """Within the block, each clip's features are computed once.

        The features of a clip (by path) from the extractors of a fit or of
        the first member are kept and reused by `fit`, `features` and
        `score` until the block ends, so that an evaluation reading the
        same clips several times (`asd-keras probe` after training, the
        proxy study's probe and figure files) runs the networks once. Use it
        only while the clips on disk do not change.
        """
        previous = self._feature_cache
        self._feature_cache = {} if previous is None else previous
        try:
            yield self
        finally:
            self._feature_cache = previous

    # -- fit ---------------------------------------------------------------

    def fit(self, table, run_dir, verbose=1, callbacks=None, checkpoint_dir=None):
        """Fits every member's extractors and backends; writes the run.

        Args:
            table: DataFrame from `read_dataset` (its train split is used).
            run_dir: str or Path. The run folder.
            verbose: int. Keras `fit` verbosity and progress bars.
            callbacks: list of `keras.callbacks.Callback` for every Keras
                training of the extractors.
            checkpoint_dir: str or Path, optional. Finished extractors and
                epoch backups go there; a repeated `fit` with the same folder
                resumes from them.

        Returns:
            DataFrame of the training clips with their `score` and `group`.
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        train = require_split(table, "train").reset_index(drop=True)
        # A misspelt machine type would otherwise be ignored without a word.
        held = sorted(train["machine_type"].astype(str).unique())
        unknown = sorted(set(self.config["machine_overrides"]) - set(held))
        if unknown:
            raise ValueError(f"machine_overrides names the machine type(s) {unknown}, which "
                             f"the training data does not hold; its machine types are {held}. "
                             "Fix the name(s), or drop those entries.")
        extractor_groups = group_keys(train, self.config["extractor_grouping"])
        groups = group_keys(train, self.config["grouping"])
        checkpoints = None if checkpoint_dir is None else Path(checkpoint_dir)
        context = TrainingContext(
            run_dir, callbacks, self.config["tensorboard"],
            None if checkpoints is None else checkpoints / "training",
            self.config["distribute"], verbose)
        total = np.zeros(len(train))
        self.members = []
        for member in range(self.config["ensemble_size"]):
            extractors = {}
            for group in sorted(extractor_groups.unique()):
                rows = train[(extractor_groups == group).to_numpy()]
                extractors[group] = fit_extractor(self, member, group, rows, context,
                                                  checkpoints, train)
            features = self._transform(extractors, train, verbose)
            backends = {}
            for group in sorted(groups.unique()):
                rows = (groups == group).to_numpy()
                owner = extractors[extractor_groups[rows].iloc[0]]
                backends[group] = fit_backend(self, member, group, owner, train[rows],
                                              features[rows])
                total[rows] += self._training_scores(member, group, backends[group],
                                                     train[rows], features[rows])
            self.members.append(Member(extractors, backends))
        self.thresholds = {group: self._threshold(total[(groups == group).to_numpy()], group)
                           for group in sorted(groups.unique())}
        self.save(run_dir)
        result = train[["machine_type", "section", "domain", "file_name"]].copy()
        result["group"], result["score"] = groups.to_numpy(), total
        atomic_write_dataframe(run_dir / "train_scores.csv", result)
        return result

    @property
    def cross_fitted(self):
        """Whether thresholds are fitted on cross-fitted training scores."""
        rule = self.config["threshold_scores"]
        if rule == "auto":
            return bool(BACKENDS.get(self.config["backend"]).memorises_training)
        return rule == "cross_fitted"

    def _training_scores(self, member, group, backend, rows, features, folds=2):
        """The scores the threshold is fitted on: the fitted backend's, or
        each fold's under a backend fitted on the other folds (the folds
        alternate within each domain, so both hold every domain)."""
        if not self.cross_fitted:
            return backend.score(features)
        return cross_fitted_scores(group, rows, features,
                                   lambda: self._new_backend(member, group), folds)

    def _threshold(self, scores, group):
        return group_threshold(scores, group, self.config["threshold"],
                               self.config["threshold_quantile"])

    def features(self, table, verbose=0):
        """Per-clip features of any rows from the first member's extractors
        (what `asd-keras probe` scores)."""
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        return self._transform(self.members[0].extractors, table.reset_index(drop=True),
                               verbose)

    def extractor_for(self, machine_type=None, section=None, member=0):
        """The trained extractor that serves clips of `machine_type` (and
        `section`) under this system's `extractor_grouping`.

        Raises:
            ValueError: the system is not trained, or has no extractor for
                that group (the message lists the trained groups).
        """
        return self._member(member).extractor_for(self.config["extractor_grouping"],
                                                  machine_type, section)

    def backend_for(self, machine_type=None, section=None, member=0):
        """The fitted backend that scores clips of `machine_type` (and
        `section`) under this system's `grouping`.

        Raises:
            ValueError: the system is not trained, or has no backend for that
                group (the message lists the trained groups).
        """
        return self._member(member).backend_for(self.config["grouping"], machine_type, section)

    def _member(self, index):
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        if not 0 <= int(index) < len(self.members):
            raise ValueError(f"member must be in [0, {len(self.members)}); received {index!r}.")
        return self.members[int(index)]

    # -- score -------------------------------------------------------------

    def score(self, table, verbose=0):
        """Scores the test clips; returns their rows with `score` and `decision`."""
        if not self.members:
            raise ValueError("The system is not trained; call fit() or load().")
        test = require_split(table, "test").reset_index(drop=True)
        groups = group_keys(test, self.config["grouping"])
        unseen = sorted(set(groups) - set(self.thresholds))
        if unseen:
            raise ValueError(f"No trained model for {unseen} (grouping="
                             f"{self.config['grouping']!r}); trained groups: "
                             f"{sorted(self.thresholds)}. Train on them, or score a data "
                             "folder without them.")
        total = np.zeros(len(test))
        for member in self.members:
            features = self._transform(member.extractors, test, verbose)
            for group in groups.unique():
                rows = (groups == group).to_numpy()
                total[rows] += member.backends[group].score(features[rows])
        if not np.isfinite(total).all():
            bad = test["path"].to_numpy()[~np.isfinite(total)][0]
            raise ValueError(f"Non-finite score for '{bad}'; check the clip and the run.")
        test["score"] = total
        threshold = groups.map(self.thresholds).to_numpy(float)
        test["decision"] = (total > threshold).astype(int)
        return test

    # -- persistence -------------------------------------------------------

    def save(self, run_dir):
        """Writes the members' models and the thresholds into the run folder
        (`asd_keras.systems.persistence`)."""
        save_members(run_dir, self.members, self.thresholds)

    @classmethod
    def load(cls, run_dir, config):
        """A system of `config` with the members and thresholds that `fit`
        wrote into `run_dir`.

        Raises:
            FileNotFoundError: `run_dir` is not a finished run.
        """
        system = cls(config)
        system.members, system.thresholds = load_members(run_dir, cls.name)
        return system

    # -- export ------------------------------------------------------------

    def export(self, out_dir):
        """Writes a SavedModel from raw waveforms to anomaly scores.

        `serving_default` takes float32 waveforms `(clips, samples)` and, as
        the groupings need them, scalar strings `machine_type` (e.g. `"fan"`)
        and `section` (e.g. `"00"`); it returns `anomaly_score` (float32)
        and `decision` (int32), both `(clips,)`, and rejects bad inputs
        (`asd_keras.systems.export`). The extractors' serving models and
        the backends' scoring layers are the very objects `score` uses.

        Returns:
            dict: the manifest (inputs, waveform shape, groups...).
        """
        return export_system(self, out_dir)
