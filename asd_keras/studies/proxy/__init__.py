"""Shin & Lee's proxy-task study (paper §IV) and its three-stage report
(§VI-D), on one schema of files (`schema`):

- `study`: trains every family's configurations, probes them and writes
  `rows.csv`, `configurations.csv`, `study.json` and Fig. 5's features;
- `checks`: the checks of a study folder's files;
- `reading`: study folders into the report's tables;
- `verdicts`: Stage 1 (training health) and Stage 3 (Table VII);
- `report`: the report folder (tables, figures, `report.md`).
"""

from asd_keras.studies.proxy.reading import load_studies
from asd_keras.studies.proxy.reading import read_study
from asd_keras.studies.proxy.report import feature_panels
from asd_keras.studies.proxy.report import write_proxy_report
from asd_keras.studies.proxy.schema import ASD_COLUMNS
from asd_keras.studies.proxy.study import load_study_config
from asd_keras.studies.proxy.study import run_proxy_study
from asd_keras.studies.proxy.study import split_study_data
from asd_keras.studies.proxy.verdicts import correlation_verdicts
from asd_keras.studies.proxy.verdicts import training_health
