"""Checks that asd_keras's packages import downward only, without circles.

Usage (from the repository root):
    python tools/check_layers.py [--root DIR] [--list-lazy]

The packages of `asd_keras/` form layers (docs/architecture.md); a
module may import its own layer and any lower one. Lowest first:

    1a  asd_keras (the package's __init__), config, utils
    1b  data, features, losses, optimizers
    1c  layers, evaluation, visualisation
    2   models
    3   extractors, backends
    4   systems
    5   runs
    6   runners, studies, cli, __main__

Layer 1 (the foundation) is ordered as the code is: `config` and `utils`
import no other package; `data` imports `utils`, `features` imports
`config`, `losses` and `optimizers` import nothing of asd_keras; `layers`
imports `config` and `features`, `evaluation` imports `data` and `utils`.
Two packages the drawing of docs/architecture.md leaves out are placed
here: `optimizers` (Keras optimizers the extractors train with; imports
nothing of asd_keras) beside `losses`, and `visualisation` (the studies' figures; imports only
itself) beside `evaluation`, whose numbers it draws. A module of no layer
(a new package) fails the check until it is placed in `LAYERS`.

The check reads every `.py` under `ROOT/asd_keras/` with `ast` (nothing is
imported) and collects every import of an asd_keras module: absolute and
relative, at module level and inside functions, `from P import name` counting
as an import of the submodule `P.name` when such a module exists and of `P`
otherwise. It fails (exit 1) on

- an upward import, wherever it sits (inside a function or under
  `if TYPE_CHECKING:` too): `FILE:LINE: MODULE (layer X) imports TARGET
  (layer Y)`;
- an import circle between modules: a cycle of the graph of the imports that
  run when a module is imported (module level, `if TYPE_CHECKING:` blocks
  excluded), each printed as `a -> b -> a` with the line of every step.
  Importing `P.m` runs `P/__init__.py` first, so an import of `P.m` from
  outside `P` also counts as an import of `P`; from inside `P` it does not
  (P is already being imported then). A module's explicit import of its own
  package's `__init__` (`from asd_keras.systems import X` in
  `asd_keras/systems/x.py`) is an edge like any other: it is a circle when
  that `__init__` imports the module back at module level, and works only
  because of the order of the `__init__`'s lines;
- a file that does not parse, an import of an asd_keras module that does
  not exist (a lazy one would fail only when its function runs), or a
  module that belongs to no layer.

It also reports, without failing, how many imports of asd_keras modules sit
inside functions and how many of those carry no comment on their line
(`--list-lazy` lists them with that comment, which says why each is lazy:
the import cost of TensorFlow in the command-line program, an optional
dependency, a circle). Imports built at run time
(`importlib.import_module` of a registered name) are not seen.

`--root DIR` checks `DIR/asd_keras/` instead of this repository's (the tests
point it at synthetic trees). Exit code: 0 when clean, 1 otherwise.
"""

import argparse
import ast
import io
import sys
import tokenize
from collections import defaultdict
from collections import deque
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "asd_keras"
ROOT = Path(__file__).resolve().parents[1]

# (label, members), lowest layer first. A member is a module or a package
# (and everything under it); the package's own __init__ ("asd_keras") is a
# member of its own only: it imports nothing of asd_keras, so every layer may
# import it (`from asd_keras import __version__`).
LAYERS = (
    ("1a", ("asd_keras", "asd_keras.config", "asd_keras.utils")),
    ("1b", ("asd_keras.data", "asd_keras.features", "asd_keras.losses", "asd_keras.optimizers")),
    ("1c", ("asd_keras.layers", "asd_keras.evaluation", "asd_keras.visualisation")),
    ("2", ("asd_keras.models",)),
    ("3", ("asd_keras.extractors", "asd_keras.backends")),
    ("4", ("asd_keras.systems",)),
    ("5", ("asd_keras.runs",)),
    ("6", ("asd_keras.runners", "asd_keras.studies", "asd_keras.cli", "asd_keras.__main__")),
)


@dataclass(frozen=True)
class Import:
    """One import of an asd_keras module.

    Attributes:
        source: the importing module's dotted name.
        path: the importing file, relative to the root.
        line: the import statement's line.
        target: the imported module's dotted name.
        lazy: inside a function (runs when the function is called).
        type_checking: under `if TYPE_CHECKING:` (never runs).
        comment: the comment at the end of the line, if any.
    """

    source: str
    path: str
    line: int
    target: str
    lazy: bool
    type_checking: bool
    comment: str = ""


def module_name(path, root):
    """The dotted module name of the file `path` under `root`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module):
    """(index, label) of the layer `module` belongs to, or None."""
    best = None
    for index, (label, members) in enumerate(LAYERS):
        for member in members:
            if member == PACKAGE:
                matches = module == PACKAGE
            else:
                matches = module == member or module.startswith(member + ".")
            if matches and (best is None or len(member) > best[0]):
                best = (len(member), index, label)
    return None if best is None else best[1:]


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _comments(text):
    """{line: comment text} of the source `text`."""
    found = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


class _Collector(ast.NodeVisitor):
    """Collects the import statements of one module with their context."""

    def __init__(self, module, is_package):
        self.module = module
        self.is_package = is_package
        self.found = []  # (line, absolute base or None, names or None, lazy, type_checking)
        self._depth = 0
        self._type_checking = 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node):
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _context(self):
        return self._depth > 0, self._type_checking > 0

    def visit_Import(self, node):
        for alias in node.names:
            self.found.append((node.lineno, alias.name, None, *self._context()))

    def visit_ImportFrom(self, node):
        if node.level:
            package = self.module.split(".")
            if not self.is_package:
                package = package[:-1]
            if node.level - 1 > len(package):
                return
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module
        names = [alias.name for alias in node.names]
        self.found.append((node.lineno, base, names, *self._context()))


def collect(root):
    """Every import of an asd_keras module under `root/asd_keras`.

    Returns:
        (imports, modules, errors): the list of `Import`s, {module: relative
        path} of every module, and the messages of files that do not parse
        and of imports of asd_keras modules that do not exist.
    """
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(path, root): path for path in files}
    imports, errors = [], []
    for path in files:
        source = module_name(path, root)
        relative = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text, filename=relative)
        except SyntaxError as error:
            errors.append(f"{relative}:{error.lineno}: does not parse: {error.msg}")
            continue
        collector = _Collector(source, path.name == "__init__.py")
        collector.visit(tree)
        comments = _comments(text)
        for line, base, names, lazy, type_checking in collector.found:
            if base is None or not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            if base not in modules:
                errors.append(f"{relative}:{line}: imports {base}, which is no module of "
                              f"{PACKAGE}/")
                continue
            if names is None:
                targets = [base]
            else:
                targets = []
                for name in names:
                    submodule = f"{base}.{name}"
                    targets.append(submodule if submodule in modules else base)
            for target in dict.fromkeys(targets):
                if target != source:
                    imports.append(Import(source, relative, line, target, lazy, type_checking,
                                          comments.get(line, "")))
    return imports, {m: p.relative_to(root).as_posix() for m, p in modules.items()}, errors


def upward_imports(imports):
    """Messages of the imports that point to a higher layer."""
    messages = []
    for imp in imports:
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is None or target is None or target[0] <= source[0]:
            continue
        where = " (inside a function)" if imp.lazy else ""
        where = " (under TYPE_CHECKING)" if imp.type_checking else where
        messages.append(
            f"{imp.path}:{imp.line}: {imp.source} (layer {source[1]}) imports "
            f"{imp.target} (layer {target[1]}){where}: upward import")
    return messages


def unplaced_modules(modules):
    """Messages of the modules that belong to no layer."""
    return [f"{path}: {module} belongs to no layer: place it in LAYERS of tools/check_layers.py"
            for module, path in sorted(modules.items()) if layer_of(module) is None]


def import_graph(imports):
    """{module: {imported module: the Import}} of the imports that run at import time.

    Module-level imports only, `if TYPE_CHECKING:` excluded. Importing
    `P.m` from outside the package `P` runs `P/__init__.py` first, so it
    adds an edge to `P` as well (marked by a `None` line in the Import).
    """
    graph = defaultdict(dict)
    for imp in imports:
        if imp.lazy or imp.type_checking:
            continue
        graph[imp.source].setdefault(imp.target, imp)
        parts = imp.target.split(".")
        for end in range(2, len(parts)):
            package = ".".join(parts[:end])
            if imp.source == package or imp.source.startswith(package + "."):
                continue  # the importer's own package: already being imported
            graph[imp.source].setdefault(
                package, Import(imp.source, imp.path, imp.line, package, False, False,
                                f"runs {package.replace('.', '/')}/__init__.py first"))
    return graph


def strongly_connected(graph):
    """The strongly connected components (Tarjan) with more than one module."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        while work:
            current, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter[0]
                    counter[0] += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[current] = min(low[current], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return components


def shortest_cycle(graph, component):
    """A shortest cycle through the first module of `component`, as a list."""
    members = set(component)
    start = component[0]
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor not in members:
                continue
            if successor == start:
                cycle = [node]
                while previous[cycle[-1]] is not None:
                    cycle.append(previous[cycle[-1]])
                return list(reversed(cycle)) + [start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return component + [start]


def circles(imports):
    """Messages of the import circles between modules."""
    graph = import_graph(imports)
    messages = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component)
        lines = [f"import circle: {' -> '.join(cycle)}"]
        for source, target in zip(cycle, cycle[1:]):
            imp = graph[source][target]
            note = f" ({imp.comment})" if imp.comment.startswith("runs ") else ""
            lines.append(f"    {imp.path}:{imp.line}: {source} imports {target}{note}")
        if len(component) > len(cycle) - 1:
            lines.append(f"    (the circle's modules: {', '.join(component)})")
        messages.append("\n".join(lines))
    return messages


def main(argv=None):
    """Runs the check; returns the exit code (0 clean, 1 violations)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT,
                        help=f"the directory holding {PACKAGE}/ (default: this repository)")
    parser.add_argument("--list-lazy", action="store_true",
                        help="list the function-level imports of asd_keras modules")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / PACKAGE).is_dir():
        print(f"check_layers: no {PACKAGE}/ under {root}", file=sys.stderr)
        return 1
    imports, modules, errors = collect(root)
    failures = errors + unplaced_modules(modules) + upward_imports(imports) + circles(imports)
    lazy = [imp for imp in imports if imp.lazy]
    if args.list_lazy:
        print(f"function-level imports of {PACKAGE} modules:")
        for imp in lazy:
            why = f"  # {imp.comment}" if imp.comment else ""
            print(f"  {imp.path}:{imp.line}: {imp.target}{why}")
    files = len({imp.path for imp in lazy})
    unexplained = sum(1 for imp in lazy if not imp.comment)
    print(f"check_layers: {len(modules)} modules, {len(imports)} imports of {PACKAGE} modules; "
          f"{len(lazy)} inside functions (in {files} files, {unexplained} without a comment "
          "saying why; --list-lazy lists them)")
    if failures:
        for message in failures:
            print(message)
        print(f"check_layers: FAILED, {len(failures)} problem(s)")
        return 1
    print("check_layers: OK (every import points to its own layer or a lower one; no circles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
