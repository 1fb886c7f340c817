"""The runs layer: train -> record -> fit -> write, once, for the CLI, the
runners and the experiments.

- `read_tables`, `labelled_test`: the clips of one or more data folders,
  and the labelled test clips evaluations need (`runs.tables`);
- `new_system`, `fit_run`, `train_run`, `load_run`: the train -> record
  sequence, a run folder trained (resumably) and read back (`runs.training`);
- `score_run`, `export_run`, `evaluate_scores`: what a run produces
  (`runs.outputs`);
- `trial`: one trial of a runner, recorded after its fit (`runs.trials`).

It sits between `asd_keras.systems` and the CLI, `asd_keras.runners` and
`experiments/`; it imports nothing above it.
"""

from asd_keras.runs.outputs import evaluate_scores
from asd_keras.runs.outputs import export_run
from asd_keras.runs.outputs import read_scores_and_labels
from asd_keras.runs.outputs import score_run
from asd_keras.runs.tables import labelled_test
from asd_keras.runs.tables import read_tables
from asd_keras.runs.training import check_not_inside
from asd_keras.runs.training import fit_run
from asd_keras.runs.training import is_finished_run
from asd_keras.runs.training import load_run
from asd_keras.runs.training import new_system
from asd_keras.runs.training import train_run
from asd_keras.runs.trials import Trial
from asd_keras.runs.trials import trial
