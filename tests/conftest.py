import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from asd_keras.data.synthetic import SynthConfig  # noqa: E402
from asd_keras.data.synthetic import generate  # noqa: E402
from asd_keras.data.synthetic import synthetic_data_root  # noqa: E402


def make_synthetic(root, layout="dcase2022", **kwargs):
    settings = dict(
        layout=layout,
        machine_types=("fan", "valve"),
        seconds=1.0,
        train=6,
        target_train=2,
        test=2,
        seed=3,
        eval=True,
    )
    settings.update(kwargs)
    generate(root, SynthConfig(**settings), progress=False)
    return root


def make_tiny_dev(root):
    """One machine type (fan), 1 s DCASE 2020-layout clips, no eval data: a
    few hundred log-mel vectors, a few steps per epoch. Returns dev_data."""
    root = make_synthetic(root, "dcase2020", machine_types=("fan",), train=3,
                          target_train=1, test=1, eval=False)
    return synthetic_data_root(root, "dcase2020", "dev")


@pytest.fixture(scope="session")
def synthetic_sets(tmp_path_factory):
    """Tiny datasets of every layout, with eval data and ground truth."""
    base = tmp_path_factory.mktemp("synthetic")
    sets = {}
    for layout in ("dcase2020", "dcase2021", "dcase2022", "dcase2023", "dcase2026"):
        root = make_synthetic(base / layout, layout)
        sets[layout] = {
            "root": root,
            "dev": synthetic_data_root(root, layout, "dev"),
            "eval": synthetic_data_root(root, layout, "eval"),
            "ground_truth": root / "ground_truth",
        }
    return sets
