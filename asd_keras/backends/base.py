"""The scoring-backend protocol: per-clip features to anomaly scores.

A backend is fitted on the features of normal training clips and then
scores any clips; a higher score means more anomalous. Fitting may use
NumPy, scikit-learn or SciPy (k-means, covariance estimators, neighbour
searches), but the scoring formula is written once, as a Keras layer over
the fitted arrays (`scoring_layer`): `score` runs that layer in-process and
an exported SavedModel runs the same layer, so there is no NumPy twin of a
formula.

Metadata is a `pandas.DataFrame` aligned row by row with the features. The
columns a backend may read:

- `domain`: `"source"` or `"target"` (training clips; a backend that needs
  it says so in `required_columns`);
- `section`: str;
- `label`: 0 normal, 1 anomalous (only evaluation protocols such as the
  linear probe read labels; they set `uses_test_labels = True`).

Subclasses implement `_fit_arrays`, `scoring_layer` and keep their
constructor arguments plain (int, float, str, bool), returned by
`get_config`. The base class validates inputs and owns persistence:
`save(folder)` writes `backend.json` (name and config) and `arrays.npz`
atomically, and `load_backend(folder)` rebuilds any registered backend.
"""

import abc
import json
from pathlib import Path

import keras
import numpy as np

from asd_keras.utils.io import atomic_path
from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.registry import Registry

BACKENDS = Registry("backend")
register_backend = BACKENDS.register
CONFIG_FILE = "backend.json"
ARRAYS_FILE = "arrays.npz"


def get_backend(name, **config):
    """A new, unfitted backend from its registry name and config keys."""
    return BACKENDS.create(name, **config)


def check_features(features, what="features"):
    """`features` as a finite float32 `(clips, dim)` array, or a clear error."""
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty (clips, dim) array; received "
                         f"shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{what} must be numeric; received dtype {array.dtype}.")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"{what} hold NaN or infinite values in {int(bad.sum())} "
                         f"clip(s), rows {rows}; check the extractor's input audio.")
    return array


class ScoringBackend(abc.ABC):
    """Base class of the scoring backends (see the module docstring).

    Class attributes:
        name: str. Registry name (set by `register_backend`).
        required_columns: tuple of str. Metadata columns `fit` needs.
        uses_test_labels: bool. True for evaluation protocols that are fitted
            on labelled test clips; such a backend is never a detector.
        fits_on_frames: bool. The backend prefers frame-level features
            (`fit_frames`) when the extractor gives them; it still fits on
            clip features otherwise.
        memorises_training: bool. The fitted state holds training clips
            themselves (memory banks), so a training clip scores against
            itself; the system then fits thresholds on cross-fitted scores.
        paired_features: bool. The features are `[near | far]` halves of a
            two-channel extractor (`serving_channels == 2`), which the
            system checks when it is built.
    """

    name = None
    required_columns = ()
    uses_test_labels = False
    fits_on_frames = False
    memorises_training = False
    paired_features = False

    def __init__(self):
        self.arrays = None
        self._layer = None

    # -- to implement ---------------------------------------------------------

    @abc.abstractmethod
    def _fit_arrays(self, features, metadata):
        """Returns the fitted state as a dict of NumPy arrays."""

    @abc.abstractmethod
    def scoring_layer(self):
        """A Keras layer `(batch, dim) -> (batch,)` holding `self.arrays`."""

    def get_config(self):
        """The constructor arguments, JSON-serialisable."""
        return {}

    # -- shared ----------------------------------------------------------------

    @property
    def fitted(self):
        """Whether `fit` has run (or arrays were loaded), so `score` can be called."""
        return self.arrays is not None

    def _check_metadata(self, metadata, n, columns):
        if metadata is None:
            if columns:
                raise ValueError(f"Backend {self.name!r} needs metadata with the "
                                 f"columns {list(columns)}; received None.")
            return None
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows but the features "
                             f"have {n} clips; they must be aligned row by row.")
        missing = [c for c in columns if c not in metadata.columns]
        if missing:
            raise ValueError(f"Backend {self.name!r} needs the metadata columns "
                             f"{missing}; received columns {list(metadata.columns)}.")
        if "domain" in columns:
            domains = set(metadata["domain"].astype(str))
            if not domains <= {"source", "target"}:
                raise ValueError("metadata 'domain' must hold 'source' or 'target'; "
                                 f"received {sorted(domains)}.")
        return metadata.reset_index(drop=True)

    def fit(self, features, metadata=None):
        """Fits the backend on the features of normal training clips.

        Args:
            features: `(clips, dim)` array.
            metadata: DataFrame aligned with `features`, with at least
                `required_columns`.

        Returns:
            self.
        """
        features = check_features(features)
        metadata = self._check_metadata(metadata, len(features), self.required_columns)
        arrays = self._fit_arrays(features, metadata)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self._layer = None
        return self

    def _fit_frames(self, batches, metadata):
        """Returns the fitted state from frame-level batches (see `fit_frames`)."""
        raise ValueError(f"Backend {self.name!r} does not fit on frame-level features.")

    def fit_frames(self, batches, metadata=None):
        """Fits the backend on frame-level features of normal training clips.

        Args:
            batches: iterable of `(values, rows)`: `values` `(n, k, dim)`
                frame-level features, `rows` `(n,)` the metadata rows of the
                clips they come from.
            metadata: DataFrame with one row per clip.

        Returns:
            self.
        """
        if metadata is None:
            raise ValueError(f"Backend {self.name!r} needs the clips' metadata to fit "
                             "on frames; received None.")
        metadata = self._check_metadata(metadata, len(metadata), self.required_columns)
        arrays = self._fit_frames(batches, metadata)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self._layer = None
        return self

    def layer(self):
        """The fitted scoring layer (built once and reused)."""
        if not self.fitted:
            raise ValueError(f"Backend {self.name!r} is not fitted; call fit() or "
                             "load_backend() first.")
        if self._layer is None:
            self._layer = self.scoring_layer()
        return self._layer

    def score(self, features, metadata=None, batch_size=4096):
        """Anomaly scores of clips (higher = more anomalous).

        Args:
            features: `(clips, dim)` array with the training features' dim.
            metadata: unused by detectors; accepted so that every backend
                has one signature.
            batch_size: int. Clips per call of the scoring layer.

        Returns:
            float64 array `(clips,)`.
        """
        del metadata
        features = check_features(features)
        layer = self.layer()
        expected = self.input_dim
        if expected is not None and features.shape[1] != expected:
            raise ValueError(f"Backend {self.name!r} was fitted on {expected}-dim "
                             f"features; received {features.shape[1]}-dim ones.")
        out = [keras.ops.convert_to_numpy(layer(features[i:i + batch_size]))
               for i in range(0, len(features), batch_size)]
        return np.concatenate(out).astype(np.float64)

    @property
    def input_dim(self):
        """Feature size the backend was fitted on (None if unknown)."""
        return None

    def save(self, folder):
        """Writes `backend.json` and `arrays.npz` into `folder` atomically."""
        if not self.fitted:
            raise ValueError(f"Backend {self.name!r} is not fitted; nothing to save.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ARRAYS_FILE, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self.arrays)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(
            {"name": self.name, "config": self.get_config()}, indent=2, sort_keys=True))


def load_backend(folder):
    """A fitted backend from a folder written by `ScoringBackend.save`.

    Raises:
        FileNotFoundError: when `backend.json` or `arrays.npz` is missing.
        ValueError: for an unknown backend name or a damaged file.
    """
    folder = Path(folder)
    for file in (CONFIG_FILE, ARRAYS_FILE):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"No {file} in {str(folder)!r}; is it a folder "
                                    "written by ScoringBackend.save?")
    try:
        record = json.loads((folder / CONFIG_FILE).read_text())
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as error:
        raise ValueError(f"The backend files in {str(folder)!r} are damaged ({error}); "
                         "refit the backend.") from error
    backend = get_backend(record["name"], **record["config"])
    backend.arrays = arrays
    return backend
