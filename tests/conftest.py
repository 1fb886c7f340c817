import os
import signal

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


# The slowest modules, slowest first (`--durations=0` summed per file, a full
# run on 2026-12-07 beside other jobs: the order counts, not the seconds).
# `make test` hands whole files to
# its two workers in collection order, so starting with the longest ones
# keeps the two busy to the end instead of leaving one to finish a long file
# alone. Only the order changes; a module missing here runs after these.
# The first four hold most of the `slow` tests (make test-slow).
SLOWEST_FIRST = (
    "test_served_parity.py", "test_proxy_study.py", "test_gpu_check.py",
    "test_gradient_accumulation.py", "test_regression_scores.py",
    "test_resnet_classifier.py", "test_experiment_tools.py", "test_wilkinghoff.py",
    "test_eat_simam.py", "test_cli.py", "test_reproducibility.py",
    "test_separation_extractor.py", "test_frozen_encoder.py", "test_examples.py",
    "test_gan.py", "test_config_and_resume.py", "test_graph_mode.py", "test_runtime.py",
    "test_processes.py", "test_search.py", "test_faults.py", "test_gan_experiments.py",
    "test_native_logs.py", "test_contrastive_extractor.py",
)


@pytest.fixture(autouse=True)
def _sigint_handler_is_left_alone(request):
    """Fails a test that leaves this worker's Ctrl-C handler changed.

    Ctrl-C handling (`asd_keras.utils.interrupt`, the CLI, fresh processes)
    installs its handlers only over Python's own, so a handler leaked by one
    test would silently change what later tests on the same worker check.
    """
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"{request.node.nodeid} left the SIGINT handler {after!r} "
                    f"(was {before!r}); restored", pytrace=False)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), order[id(item)]))
