"""Configuration and command-line input that used to be silently misread.

A key given twice (on the command line or in a YAML file) used to take the
last value, a misspelt machine type in `machine_overrides` was ignored, and
`evaluate --scores FILE` said that the file did not exist. Each now stops
with an error naming the value and the fix, before any work is done.
"""

import pytest

from asd_keras.cli import main
from asd_keras.config import parse_overrides
from asd_keras.config import read_yaml_mapping
from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.systems import get_system
from tests.conftest import make_synthetic


def _run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """DCASE 2022 layout, fan and valve, two training clips per section."""
    root = make_synthetic(tmp_path_factory.mktemp("config_checks"), train=2,
                          target_train=1, test=1, eval=False)
    return synthetic_data_root(root, "dcase2022", "dev")


def test_a_key_given_twice_in_overrides_names_both_values():
    with pytest.raises(ValueError, match=r"'epochs' is given twice on the command line "
                                         r"\(epochs=1 and epochs=2\)"):
        parse_overrides(["epochs=1", "learning_rate=1e-3", "epochs=2"])
    with pytest.raises(ValueError, match=r"'epochs' is given twice .*\(epochs=1 and "
                                         r"--epochs 3\)"):
        parse_overrides(["epochs=1"], flags={"--epochs": 3})
    # An option not given (None) is no second value.
    assert parse_overrides(["epochs=1"], flags={"--epochs": None}) == {"epochs": 1}
    assert parse_overrides([], flags={"--epochs": 4}) == {"epochs": 4}
    with pytest.raises(ValueError, match=r"the key 'fan' is given twice \(global at line 1 "
                                         r"and local at line 1\)"):
        parse_overrides(["simam={default: none, fan: global, fan: local}"])


def test_a_key_given_twice_in_a_yaml_file_names_both_values_and_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 1\nlearning_rate: 1.0e-3\nepochs: 2\n")
    with pytest.raises(ValueError, match=r"'.*config.yaml' is not valid YAML at line 3, "
                                         r"column 1: the key 'epochs' is given twice \(1 at "
                                         r"line 1 and 2 at line 3\); keep one"):
        read_yaml_mapping(path)
    path.write_text("machine_overrides:\n  fan: {epochs: 1}\n  valve: {epochs: 3}\n"
                    "  fan:\n    epochs: 2\n")
    with pytest.raises(ValueError, match=r"the key 'fan' is given twice \(\{'epochs': 1\} "
                                         r"at line 2 and \{'epochs': 2\} at line 5\)"):
        read_yaml_mapping(path)
    # A merge key may be overridden on purpose: that is not a repeated key.
    path.write_text("base: &base {epochs: 1, seed: 3}\nrun:\n  <<: *base\n  epochs: 2\n")
    assert read_yaml_mapping(path)["run"] == {"epochs": 2, "seed": 3}


def test_cli_train_refuses_a_key_given_twice(dev, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run("train", "--system", "logmel_stats", "--data", dev, "--out", out,
                "n_mels=32", "n_mels=64") == 2
    err = capsys.readouterr().err
    assert "error: The key 'n_mels' is given twice on the command line (n_mels=32 and " \
           "n_mels=64); give it once." in err
    config = tmp_path / "config.yaml"
    config.write_text("n_mels: 32\nn_mels: 64\n")
    assert _run("train", "--system", "logmel_stats", "--data", dev, "--out", out,
                "--config", config) == 2
    err = capsys.readouterr().err
    assert f"'{config}' is not valid YAML at line 2" in err and "'n_mels' is given twice" in err
    assert _run("train", "--system", "dense_ae", "--data", dev, "--out", out, "--epochs", 1,
                "epochs=2") == 2
    assert "(epochs=2 and --epochs 1)" in capsys.readouterr().err
    assert not out.exists()


def test_machine_overrides_of_an_unknown_machine_type_are_refused(dev, tmp_path, capsys):
    table = read_dataset(dev)
    system = get_system("logmel_stats")({"n_mels": 32,
                                         "machine_overrides": {"fna": {"covariance": "oas"}}})
    with pytest.raises(ValueError, match=r"machine_overrides names the machine type\(s\) "
                                         r"\['fna'\], which the training data does not hold; "
                                         r"its machine types are \['fan', 'valve'\]"):
        system.fit(table, tmp_path / "run", verbose=0)
    out = tmp_path / "cli_run"
    assert _run("train", "--system", "logmel_stats", "--data", dev, "--out", out,
                "n_mels=32", "machine_overrides={Fan: {covariance: oas}}") == 2
    assert "['Fan'], which the training data does not hold" in capsys.readouterr().err
    assert not out.exists()
    # A known machine type is used.
    system = get_system("logmel_stats")({"n_mels": 32,
                                         "machine_overrides": {"fan": {"covariance": "oas"}}})
    system.fit(table, tmp_path / "known", verbose=0)
    backends = system.members[0].backends
    assert backends["fan_section_00"].covariance == "oas"
    assert backends["valve_section_00"].covariance == "ledoit_wolf"


def test_evaluate_with_a_score_file_says_it_wants_the_folder(dev, tmp_path, capsys):
    scores = tmp_path / "scores"
    scores.mkdir()
    file = scores / "scores.csv"
    file.write_text("machine_type,section,score\n")
    assert _run("evaluate", "--scores", file, "--data", dev) == 2
    err = capsys.readouterr().err
    assert f"'{file}' is a file; --scores expects the folder written by 'asd-keras " \
           f"score --out FOLDER'" in err
    assert f"Pass that folder, e.g. '{scores}'." in err and "does not exist" not in err
    assert _run("evaluate", "--scores", tmp_path / "missing", "--data", dev) == 2
    assert "does not exist" in capsys.readouterr().err
