"""The layering and import-circle check of `tools/check_layers.py`: the real
tree passes; synthetic trees with an upward import (at module level, in a
function, relative), a circle or a package of no layer fail and name it."""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import check_layers  # noqa: E402


def _tree(root, files):
    """Writes `files` ({path under root: source}) and an empty `__init__.py`
    in every package folder that has none."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for folder in [root / "asd_keras", *(root / "asd_keras").rglob("*")]:
        if folder.is_dir() and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("")
    return root


def _check(root, capsys, *args):
    code = check_layers.main(["--root", str(root), *args])
    return code, capsys.readouterr().out


def test_the_real_tree_passes(capsys):
    code, out = _check(TOOLS.parent, capsys)
    assert code == 0, out
    assert "check_layers: OK" in out


def test_a_downward_tree_passes(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/config.py": "",
        "asd_keras/models/net.py": "from asd_keras.config import x\n",
        "asd_keras/systems/base.py": ("from asd_keras.models import net\n"
                                      "from ..models.net import y\n"),
        "asd_keras/cli/__init__.py": "import asd_keras.systems.base\n",
    })
    code, out = _check(root, capsys)
    assert code == 0, out


def test_an_upward_import_fails_and_names_the_file(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/systems/base.py": "X = 1\n",
        "asd_keras/models/net.py": "import numpy\n\nfrom asd_keras.systems.base import X\n",
    })
    code, out = _check(root, capsys)
    assert code == 1
    assert ("asd_keras/models/net.py:3: asd_keras.models.net (layer 2) imports "
            "asd_keras.systems.base (layer 4)") in out
    assert "FAILED, 1 problem" in out


def test_a_function_level_upward_import_is_caught(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/runs/trial.py": "",
        "asd_keras/layers/knn.py": ("def layer():\n"
                                    "    from asd_keras.runs import trial\n"
                                    "    return trial\n"),
    })
    code, out = _check(root, capsys)
    assert code == 1
    assert "asd_keras/layers/knn.py:2:" in out
    assert "imports asd_keras.runs.trial (layer 5) (inside a function)" in out


def test_relative_and_package_imports_resolve_to_their_modules(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/systems/base.py": "",
        "asd_keras/extractors/gan.py": ("from ..systems import base\n"
                                        "from asd_keras import systems\n"),
    })
    code, out = _check(root, capsys)
    assert code == 1
    assert "gan.py:1: asd_keras.extractors.gan (layer 3) imports asd_keras.systems.base" in out
    assert "gan.py:2: asd_keras.extractors.gan (layer 3) imports asd_keras.systems " in out


def test_an_import_circle_fails_and_names_both_modules(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/backends/knn.py": "from asd_keras.backends.kmeans import fit\n",
        "asd_keras/backends/kmeans.py": "from asd_keras.backends import knn\n\ndef fit(): ...\n",
    })
    code, out = _check(root, capsys)
    assert code == 1
    circle = next(line for line in out.splitlines() if line.startswith("import circle"))
    assert "asd_keras.backends.kmeans" in circle and "asd_keras.backends.knn" in circle
    assert "asd_keras/backends/knn.py:1: asd_keras.backends.knn imports " in out
    assert "asd_keras/backends/kmeans.py:1: asd_keras.backends.kmeans imports " in out


def test_imports_in_functions_or_for_type_checking_make_no_circle(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/backends/knn.py": "from asd_keras.backends.kmeans import fit\n",
        "asd_keras/backends/kmeans.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from asd_keras.backends.knn import KNN\n"
            "def fit():\n"
            "    from asd_keras.backends import knn  # lazy: a circle\n"),
    })
    code, out = _check(root, capsys, "--list-lazy")
    assert code == 0, out
    assert "asd_keras/backends/kmeans.py:5: asd_keras.backends.knn  # lazy: a circle" in out
    assert "1 inside functions (in 1 files, 0 without a comment" in out


def test_a_submodule_importing_its_package_init_back_is_a_circle(tmp_path, capsys):
    """`systems/__init__.py` imports `dense_ae`, which imports a name of the
    `__init__`: a circle (it works only by the order of the lines)."""
    files = {
        "asd_keras/systems/__init__.py": ("from asd_keras.systems.base import get_system\n"
                                          "from asd_keras.systems import dense_ae\n"),
        "asd_keras/systems/base.py": "def get_system(name): ...\n",
        "asd_keras/systems/dense_ae.py": "from asd_keras.systems import get_system\n",
    }
    code, out = _check(_tree(tmp_path / "a", files), capsys)
    assert code == 1
    assert ("import circle: asd_keras.systems -> asd_keras.systems.dense_ae -> "
            "asd_keras.systems") in out
    # Importing the sibling module instead is no circle: the package is
    # already being imported when its submodule runs.
    files["asd_keras/systems/dense_ae.py"] = "from asd_keras.systems.base import get_system\n"
    code, out = _check(_tree(tmp_path / "b", files), capsys)
    assert code == 0, out


def test_a_circle_through_another_package_init_is_found(tmp_path, capsys):
    """Importing `extractors.base` runs `extractors/__init__.py` first, which
    imports `extractors.gan`, which imports the importer back."""
    root = _tree(tmp_path, {
        "asd_keras/extractors/__init__.py": "from asd_keras.extractors import gan\n",
        "asd_keras/extractors/base.py": "",
        "asd_keras/extractors/gan.py": "from asd_keras.backends.knn import K\n",
        "asd_keras/backends/knn.py": "from asd_keras.extractors.base import B\nK = 1\n",
    })
    code, out = _check(root, capsys)
    assert code == 1
    assert "import circle:" in out
    assert "imports asd_keras.extractors (runs asd_keras/extractors/__init__.py first)" in out


def test_an_import_of_a_missing_module_fails(tmp_path, capsys):
    root = _tree(tmp_path, {
        "asd_keras/models/net.py": ("def build():\n"
                                    "    from asd_keras.models.gone import layer\n"),
    })
    code, out = _check(root, capsys)
    assert code == 1
    assert "asd_keras/models/net.py:2: imports asd_keras.models.gone, which is no module" in out


def test_a_package_of_no_layer_fails(tmp_path, capsys):
    root = _tree(tmp_path, {"asd_keras/plugins/thing.py": ""})
    code, out = _check(root, capsys)
    assert code == 1
    assert "asd_keras.plugins.thing belongs to no layer" in out


def test_a_file_that_does_not_parse_fails(tmp_path, capsys):
    root = _tree(tmp_path, {"asd_keras/config.py": "def broken(:\n"})
    code, out = _check(root, capsys)
    assert code == 1
    assert "asd_keras/config.py:1: does not parse" in out


def test_a_root_without_the_package_fails(tmp_path, capsys):
    assert check_layers.main(["--root", str(tmp_path)]) == 1
    assert "no asd_keras/" in capsys.readouterr().err
