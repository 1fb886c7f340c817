"""Every system's scores on a tiny dataset stay what they were when pinned
(tests/regression_cases.py; re-pin with tools/pin_regression_scores.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.regression_cases import ATOL_SHARE
from tests.regression_cases import CASES
from tests.regression_cases import RTOL
from tests.regression_cases import make_data
from tests.regression_cases import run_case

PINNED = json.loads((Path(__file__).parent / "data" / "regression_scores.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("regression"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_match_the_pinned_ones(name, data, tmp_path):
    pinned = PINNED["scores"][name]
    got = run_case(name, data, tmp_path)
    assert sorted(got) == sorted(pinned)
    keys = sorted(pinned)
    expected = np.array([pinned[k] for k in keys])
    np.testing.assert_allclose([got[k] for k in keys], expected, rtol=RTOL,
                               atol=ATOL_SHARE * np.abs(expected).max(), err_msg=name)
