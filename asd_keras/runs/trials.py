"""One trial of a runner (study, search, comparison, proxy study): a system
trained into a trial folder, recorded after its fit, evaluated, and its
models kept or dropped."""

import contextlib
import dataclasses
import shutil
from pathlib import Path

from asd_keras.runs.training import fit_run
from asd_keras.utils.io import staged_dir


@dataclasses.dataclass
class Trial:
    """A trial being written.

    Attributes:
        folder: Path. The staged trial folder (renamed into place when the
            `trial` block ends without an error); the run is `folder/"run"`.
        seed: int. The seed the trial was trained with.
        system: the fitted `AnomalySystem`.
    """

    folder: Path
    seed: int
    system: object


@contextlib.contextmanager
def trial(folder, system, train, record, keep_models=False, cache_features=False):
    """Trains `system` on `train` into `folder/run` and yields the `Trial`
    for the runner's evaluation; the folder appears only when the block ends.

    `record` (the runner's fields: condition, trial number, ...) is written
    with the resolved configuration and the choices made from the data as
    `config.yaml` and `run.json` after the fit. A folder left by an
    interrupted trial is replaced.

    Args:
        folder: str or Path. The trial folder.
        system: unfitted `AnomalySystem`.
        train: dataset table it is trained on.
        record: dict of the runner's fields for the record.
        keep_models: bool. Keep the trained members in `folder/run`.
        cache_features: bool. Compute each clip's features once for the
            fit and the whole block (`AnomalySystem.caching_features`).
    """
    with staged_dir(folder, force=True, what="trial folder") as stage, \
            (system.caching_features() if cache_features else contextlib.nullcontext()):
        seed = fit_run(system, train, stage / "run", record, record_dir=stage)
        yield Trial(stage, seed, system)
        if not keep_models:
            shutil.rmtree(stage / "run" / "members", ignore_errors=True)
