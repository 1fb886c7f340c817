"""Every public name of `asd_keras` has a docstring (read with `ast`, in a second).

Public: a module-level function or class whose name does not start with an
underscore, in a module whose path has no private part, and the public
methods of such a class. A method that overrides one documented elsewhere
keeps that documentation and is not counted: the Keras layer, model,
optimizer and callback protocol (`call`, `build`, `get_config`, ...), whose
contract Keras documents, and a method documented on a base class defined in
`asd_keras` (resolved by name, through the whole chain of bases).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "asd_keras"

# Methods whose contract Keras documents (keras.layers.Layer, keras.Model,
# keras.optimizers.Optimizer, keras.callbacks.Callback): restating it on each
# override would say nothing the Keras reference does not.
KERAS_PROTOCOL = frozenset({
    "build", "call", "compute_output_shape", "compute_output_spec",
    "compute_mask", "get_config", "from_config", "get_build_config",
    "build_from_config", "get_compile_config", "compile_from_config",
    "train_step", "test_step", "predict_step", "update_step", "metrics",
    "convolution_op",
})


def _is_public_module(path, package):
    parts = path.relative_to(package.parent).with_suffix("").parts
    return not any(part.startswith("_") and part != "__init__" for part in parts)


def _functions(body):
    return [node for node in body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _base_names(node):
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _read_classes(paths):
    """Every class of the package by name: its bases and documented methods."""
    classes = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                entry = classes.setdefault(node.name, {"bases": set(), "documented": set()})
                entry["bases"].update(_base_names(node))
                entry["documented"].update(
                    f.name for f in _functions(node.body) if ast.get_docstring(f))
    return classes


def _documented_on_a_base(class_node, method, classes):
    seen, todo = set(), list(_base_names(class_node))
    while todo:
        name = todo.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        if method in classes[name]["documented"]:
            return True
        todo.extend(classes[name]["bases"])
    return False


def undocumented(package=PACKAGE):
    """`file:line name` of every public name of `package` without a docstring."""
    paths = sorted(p for p in package.rglob("*.py") if _is_public_module(p, package))
    classes = _read_classes(paths)
    missing = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(package.parent)
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                missing.append(f"{where}:{node.lineno} {node.name}")
            if not isinstance(node, ast.ClassDef):
                continue
            for method in _functions(node.body):
                if method.name.startswith("_") or ast.get_docstring(method):
                    continue
                if method.name in KERAS_PROTOCOL or method.name.startswith("on_"):
                    continue
                if _documented_on_a_base(node, method.name, classes):
                    continue
                missing.append(f"{where}:{method.lineno} {node.name}.{method.name}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = undocumented()
    assert not missing, (
        f"{len(missing)} public names without a docstring (write a Google-style "
        "one):\n" + "\n".join(missing))


def test_the_check_finds_an_undocumented_function_and_method(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Package."""\n')
    (package / "mod.py").write_text(
        '"""Module."""\n'
        "class Base:\n"
        '    """Base."""\n'
        "    def run(self):\n"
        '        """Runs."""\n'
        "class Child(Base):\n"
        '    """Child."""\n'
        "    def run(self):\n"
        "        return 1\n"
        "    def other(self):\n"
        "        return 2\n"
        "    def call(self, x):\n"
        "        return x\n"
        "def public():\n"
        "    return 3\n"
        "def _private():\n"
        "    return 4\n")
    (package / "_hidden.py").write_text("def public():\n    return 5\n")
    assert undocumented(package) == ["pkg/mod.py:10 Child.other", "pkg/mod.py:14 public"]
