"""Registries fill themselves: a component package imports each of its files."""

import sys

import pytest

from asd_keras.utils.registry import Registry
from asd_keras.utils.registry import import_submodules


def test_a_new_file_in_a_component_package_is_registered(tmp_path, monkeypatch):
    package = tmp_path / "my_components"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from asd_keras.utils.registry import Registry, import_submodules\n"
        "THINGS = Registry('thing')\n"
        "MODULES = import_submodules(__name__, __path__)\n")
    for name in ("alpha", "beta"):
        (package / f"{name}.py").write_text(
            "from my_components import THINGS\n"
            f"@THINGS.register({name!r})\n"
            f"class {name.title()}:\n    pass\n")
    (package / "_private.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import my_components

        assert my_components.MODULES == ["alpha", "beta"]
        assert my_components.THINGS.names() == ["alpha", "beta"]
        assert my_components.THINGS.get("beta").name == "beta"
    finally:
        for name in [m for m in sys.modules if m.startswith("my_components")]:
            del sys.modules[name]


def test_the_registry_names_the_known_entries_and_refuses_a_second_owner():
    things = Registry("thing")

    @things.register("one")
    class One:
        pass

    with pytest.raises(ValueError, match=r"Unknown thing 'two'; known things: \['one'\]"):
        things.get("two")
    with pytest.raises(ValueError, match="already registered"):
        things.register("one")(type("Other", (), {}))
    assert things.create("one").name == "one"


def test_every_shipped_component_is_registered():
    from asd_keras.backends import BACKENDS
    from asd_keras.extractors import EXTRACTORS
    from asd_keras.systems import SYSTEMS

    assert {"wilkinghoff", "dense_ae", "eat_simam", "residual_view"} <= set(SYSTEMS)
    assert {"classifier_embedding", "frozen_encoder", "separation"} <= set(EXTRACTORS)
    assert {"mahalanobis", "knn", "residual_knn"} <= set(BACKENDS)
