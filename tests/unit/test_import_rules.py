"""The package's import rules, read from its own source with :mod:`ast` (beside
``tests/integration/test_light_import.py``, which checks what importing costs).

The layers, bottom up: the core (plain library: potentials, data, metrics, ...), the
protocol contract (``protocols/base.py``), the protocol families (``protocols/<family>/``
behind one public module each), the report side, and the pytest layer (the plugin
boundary and the ready-made test modules ``*_tests.py``). The rules:

(a) no import circles among the package's modules, counting every import of an own module
    (top-level and inside functions);
(b) no private name (``_x``) crosses a module: neither imported from another own module
    nor reached as ``alias._x`` on an imported own module;
(c) only the pytest layer imports pytest;
(d) the core imports nothing from ``protocols/`` or the pytest layer, nor anything else
    above it: only core modules (so not through a flat module that does, as ``cost``
    with its protocol result);
(e) a family imports only ``protocols.base``, the core, its own submodules and other
    families' public modules (``protocols.<family>``, ``protocols.invariance``), and
    ``protocols.base`` imports only the core;
(f) own-module imports are at the top of the file, except in the plugin boundary and
    for the few lazy imports in :data:`LAZY_OWN_IMPORTS`, each kept for import speed.

The checker is plain functions over a package directory, so each rule is also shown to
fail on a small synthetic package.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "pytest_mlpval"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / PACKAGE

# -- the layers (short names: the module path below the package, "" for its __init__) ---

CORE = frozenset({
    "", "potentials", "data", "metrics", "evaluate", "campaign", "campaign_cache", "units",
    "fileio", "gap_xml", "loader_probe", "probe_child", "crystals", "crystal_specs",
    "references",
    "assertions", "results", "baseline", "subjects", "tolerance", "verdict", "card", "plots",
    "threads", "errors", "descriptors", "batching", "schedule", "check_cache",
    # the model-family loaders (their packages imported inside functions only)
    "loaders", "loaders.common", "loaders.chgnet", "loaders.sevennet", "loaders.mace",
    "loaders.nequip", "loaders.ace", "loaders.lammps",
})
# modules that may import pytest (besides the ready-made test modules, *_tests)
PYTEST_LAYER = frozenset({"plugin", "fixture", "session", "options", "markers", "hookspec",
                          "testing", "checks", "planning"})
# where own imports may stay inside functions (pytest loads the plugin on every run)
PLUGIN_BOUNDARY = frozenset({"plugin", "options", "markers", "hookspec", "session",
                             "fixture", "testing", "planning"})
# the other flat modules, above the core: the report side and the flat protocol helpers
ABOVE_CORE = frozenset({"report", "comparison", "cost", "strategies"})
PROTOCOLS = "protocols"
BASE = "protocols.base"
SINGLE_MODULE_FAMILIES = frozenset({"protocols.invariance"})

# Own-module imports kept inside functions outside the plugin boundary, each for import
# speed: (importing module, imported module) -> why it must stay lazy.
LAZY_OWN_IMPORTS: dict[tuple[str, str], str] = {}


def is_test_module(short: str) -> bool:
    """A ready-made test module (``physics_tests``, ``domain_tests``, ...)."""
    return short.rsplit(".", 1)[-1].endswith("_tests")


def in_pytest_layer(short: str) -> bool:
    return short in PYTEST_LAYER or is_test_module(short)


def in_plugin_boundary(short: str) -> bool:
    return short in PLUGIN_BOUNDARY or is_test_module(short) or short == ""


def family_of(short: str) -> str | None:
    """``protocols.<family>`` for a module of a family, None for any other module."""
    parts = short.split(".")
    if parts[0] != PROTOCOLS or len(parts) < 2 or short == BASE:
        return None
    return ".".join(parts[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- reading a package -----------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    """One import statement's use of an own module (or of pytest)."""

    target: str            # short name of the imported own module, or "pytest"
    names: tuple[str, ...]  # names taken from it (from-imports), () for a plain import
    line: int
    top_level: bool        # at module level (also inside a module-level if/try)


@dataclass
class Module:
    short: str
    path: Path
    imports: list[Import] = field(default_factory=list)
    private_uses: list[tuple[str, str, int]] = field(default_factory=list)  # (mod, name, line)


def _short_names(package_dir: Path) -> dict[str, Path]:
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


class _Reader(ast.NodeVisitor):
    def __init__(self, module: Module, package: str, shorts: set[str]):
        self.module, self.package, self.shorts = module, package, shorts
        self.depth = 0          # > 0 inside a function or class body
        self.bindings: dict[str, str] = {}   # local name -> own module (short name)

    # a short name for an absolute dotted name inside the package, or None
    def own(self, dotted: str) -> str | None:
        if dotted == self.package:
            return ""
        prefix = self.package + "."
        return dotted[len(prefix):] if dotted.startswith(prefix) else None

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        short = self.module.short
        is_package = self.module.path.name == "__init__.py"
        parts = [self.package, *short.split(".")] if short else [self.package]
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep])
        return f"{base}.{node.module}" if node.module else base

    def add(self, target: str, names: tuple[str, ...], node: ast.AST) -> None:
        self.module.imports.append(Import(target, names, node.lineno, self.depth == 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in ("pytest", "_pytest"):
                self.add("pytest", (), node)
                continue
            short = self.own(alias.name)
            if short is None:
                continue
            self.add(short, (), node)
            if alias.asname:
                self.bindings[alias.asname] = short
            else:  # `import pkg.a.b` binds pkg
                self.bindings[alias.name.split(".")[0]] = ""

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = self.absolute(node)
        if source.split(".")[0] in ("pytest", "_pytest"):
            self.add("pytest", (), node)
            return
        short = self.own(source)
        if short is None:
            return
        names = []
        for alias in node.names:
            sub = f"{short}.{alias.name}" if short else alias.name
            if sub in self.shorts:  # `from pkg.a import b` where b is a module
                self.add(sub, (), node)
                self.bindings[alias.asname or alias.name] = sub
            else:
                names.append(alias.name)
        if names:
            self.add(short, tuple(names), node)

    def _body(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _body

    def visit_Call(self, node: ast.Call) -> None:
        """``import_module("pkg.a")`` (or ``importlib.import_module``, ``__import__``)
        with a constant name imports like an import statement."""
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if (called in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            short = self.own(node.args[0].value)
            if short is not None and short in self.shorts:
                self.add(short, (), node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        value: ast.AST = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.bindings:
            module = self.bindings[value.id]
            for attr in reversed(chain):
                sub = f"{module}.{attr}" if module else attr
                if sub in self.shorts:
                    module = sub
                    continue
                if is_private(attr) and module != self.module.short:
                    self.module.private_uses.append((module, attr, node.lineno))
                break
            return  # the whole chain is read; do not read its parts again
        self.generic_visit(node)


def read_package(package_dir: Path, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of the package (by short name) with its imports of own modules and
    of pytest, and its uses of other modules' private names as ``alias._x``."""
    paths = _short_names(package_dir)
    modules = {}
    for short, path in paths.items():
        module = Module(short, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        _Reader(module, package, set(paths)).visit(tree)
        modules[short] = module
    return modules


def label(short: str) -> str:
    return short or "__init__"


# -- the rules: each returns its offences as readable lines ------------------------------

def import_circles(modules: dict[str, Module]) -> list[str]:
    """(a) Every circle of own-module imports, top-level or not (Tarjan's SCCs)."""
    graph = {name: sorted({i.target for i in m.imports if i.target in modules})
             for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    lines = []
    for component in sorted(found):
        members = set(component)
        edges = [f"{label(a)} -> {label(b)}" for a in component for b in graph[a]
                 if b in members]
        lines.append(f"{{{', '.join(map(label, component))}}}: {'; '.join(edges)}")
    return lines


def private_crossings(modules: dict[str, Module]) -> list[str]:
    """(b) Private names imported from, or read as attributes of, another own module."""
    lines = []
    for name, module in sorted(modules.items()):
        for imp in module.imports:
            for taken in imp.names:
                if is_private(taken) and imp.target != name:
                    lines.append(f"{label(name)}:{imp.line} imports {taken} from "
                                 f"{label(imp.target)}")
        for target, attr, line in module.private_uses:
            lines.append(f"{label(name)}:{line} uses {label(target)}.{attr}")
    return lines


def pytest_outside_layer(modules: dict[str, Module]) -> list[str]:
    """(c) Modules outside the pytest layer that import pytest."""
    return [f"{label(name)}:{imp.line} imports pytest"
            for name, module in sorted(modules.items()) if not in_pytest_layer(name)
            for imp in module.imports if imp.target == "pytest"]


def core_imports_above(modules: dict[str, Module], core=CORE) -> list[str]:
    """(d) Core modules importing own modules outside the core (protocols/, the pytest
    layer, the report side)."""
    return [f"{label(name)}:{imp.line} imports {label(imp.target)}"
            for name, module in sorted(modules.items()) if name in core
            for imp in module.imports if imp.target in modules and imp.target not in core]


def family_may_import(importer: str, target: str, core=CORE) -> bool:
    if target in core:
        return True
    if importer == BASE:
        return False
    family = family_of(importer)
    if target == BASE or family_of(target) == family:
        return True
    other = family_of(target)
    return other is not None and target == other  # another family's public module


def family_imports(modules: dict[str, Module], core=CORE) -> list[str]:
    """(e) Family modules (and protocols.base) importing what their layer may not."""
    return [f"{label(name)}:{imp.line} imports {label(imp.target)}"
            for name, module in sorted(modules.items())
            if family_of(name) is not None or name == BASE
            for imp in module.imports if imp.target in modules
            and not family_may_import(name, imp.target, core)]


def lazy_own_imports(modules: dict[str, Module]) -> dict[tuple[str, str], list[int]]:
    """Own-module imports inside functions or classes, outside the plugin boundary."""
    found: dict[tuple[str, str], list[int]] = {}
    for name, module in sorted(modules.items()):
        if in_plugin_boundary(name):
            continue
        for imp in module.imports:
            if imp.target in modules and not imp.top_level:
                found.setdefault((name, imp.target), []).append(imp.line)
    return found


def imports_not_at_top(modules: dict[str, Module], allowed=LAZY_OWN_IMPORTS) -> list[str]:
    """(f) Lazy own-module imports that are neither at the boundary nor allowed."""
    return [f"{label(a)}:{','.join(map(str, lines))} imports {label(b)} inside a function"
            for (a, b), lines in lazy_own_imports(modules).items() if (a, b) not in allowed]


def stale_allowances(modules: dict[str, Module], allowed=LAZY_OWN_IMPORTS) -> list[str]:
    """(f) Allowlisted lazy imports that no longer exist (or lack a reason)."""
    lazy = lazy_own_imports(modules)
    return [f"{label(a)} -> {label(b)}" + ("" if reason.strip() else " (no reason given)")
            for (a, b), reason in allowed.items() if (a, b) not in lazy or not reason.strip()]


def report(offences: list[str], rule: str) -> str:
    return f"{len(offences)} offence(s) of the rule {rule}:\n  " + "\n  ".join(offences)


# -- the package obeys the rules ---------------------------------------------------------

@pytest.fixture(scope="module")
def package() -> dict[str, Module]:
    return read_package(PACKAGE_DIR)


def test_the_reader_sees_the_package(package):
    """A guard for the checks below: they read real modules and real imports."""
    assert {"", "plugin", "campaign", BASE, "protocols.md"} <= set(package)
    assert any(i.target == "campaign_cache" for i in package["campaign"].imports)
    assert any(i.target == "pytest" for i in package["plugin"].imports)


def test_no_import_circles(package):
    circles = import_circles(package)
    assert not circles, report(circles, "(a) no import circles")


def test_no_private_name_crosses_a_module(package):
    crossings = private_crossings(package)
    assert not crossings, report(crossings, "(b) no private name crosses a module")


def test_only_the_pytest_layer_imports_pytest(package):
    offences = pytest_outside_layer(package)
    assert not offences, report(offences, "(c) only the pytest layer imports pytest")


def test_the_core_imports_nothing_above_it(package):
    offences = core_imports_above(package)
    assert not offences, report(offences, "(d) the core imports only the core (nothing "
                                          "from protocols/, the pytest layer or the report "
                                          "side)")


def test_families_import_only_base_core_and_public_modules(package):
    offences = family_imports(package)
    assert not offences, report(offences, "(e) a family imports only protocols.base, the "
                                          "core, its own submodules and other families' "
                                          "public modules")


def test_own_imports_are_at_the_top(package):
    offences = imports_not_at_top(package)
    assert not offences, report(offences, "(f) own-module imports at the top of the file")


def test_the_lazy_import_allowlist_has_no_stale_entries(package):
    stale = stale_allowances(package)
    assert not stale, report(stale, "(f): allowlisted lazy imports that no longer exist "
                                    "or give no reason")


def test_the_core_knows_the_physics_check_names_it_does_not_import():
    """tolerance.py (core) names the physics checks a tolerance may name, without
    importing protocols.invariance (rule d): the two lists must stay equal."""
    from pytest_mlpval.protocols.invariance import CHECKS
    from pytest_mlpval.tolerance import PHYSICS_CHECKS

    assert set(PHYSICS_CHECKS) == set(CHECKS)


def test_the_layers_name_existing_modules(package):
    """A renamed module must not silently leave its layer."""
    named = CORE | PYTEST_LAYER | ABOVE_CORE | {BASE} | SINGLE_MODULE_FAMILIES
    assert named <= set(package), sorted(named - set(package))


def test_every_flat_module_has_a_layer(package):
    """A new module outside protocols/ (a flat one or a loader) is placed in a layer here
    on purpose."""
    flat = {name for name in package if "." not in name or name.startswith("loaders.")}
    unplaced = flat - CORE - PYTEST_LAYER - ABOVE_CORE - {PROTOCOLS}
    assert not {name for name in unplaced if not is_test_module(name)}, sorted(unplaced)


# -- each rule can fail: a synthetic bad package -----------------------------------------

def make_package(root: Path, files: dict[str, str]) -> dict[str, Module]:
    package_dir = root / "pkg"
    for name, text in files.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for folder in {p.parent for p in package_dir.rglob("*.py")}:
        (folder / "__init__.py").touch()
    return read_package(package_dir, "pkg")


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "a.py": "from pkg.b import f\n",
        "b.py": "def f():\n    from pkg import a\n    return a\n",
        "c.py": "from . import a\n",
    })
    assert import_circles(modules) == ["{a, b}: a -> b; b -> a"]


def test_a_circle_through_import_module_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "a.py": "import importlib\nb = importlib.import_module('pkg.b')\n",
        "b.py": "from importlib import import_module\n\ndef f():\n"
                "    return import_module('pkg.a'), import_module('json')\n",
    })
    assert import_circles(modules) == ["{a, b}: a -> b; b -> a"]


def test_a_circle_through_a_family_public_module_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "protocols/md/__init__.py": "from pkg.protocols.md.run import *\n",
        "protocols/md/run.py": "from pkg.protocols.md.settings import S\n",
        "protocols/md/settings.py": "from pkg.protocols.md import run_md\n",
    })
    circle, = import_circles(modules)
    assert circle.startswith("{protocols.md, protocols.md.run, protocols.md.settings}")


def test_private_names_crossing_modules_are_found(tmp_path):
    modules = make_package(tmp_path, {
        "a.py": "_secret = 1\n__version__ = '1'\n",
        "b.py": """\
            from pkg.a import _secret, __version__
            import pkg.a as alias
            from pkg import a
            import pkg

            def f(x):
                return alias._secret, a._other, pkg.a._third, x._fine, a.__doc__
        """,
        "c.py": "_mine = 1\nimport pkg.c as me\nprint(me._mine)\n",
    })
    assert private_crossings(modules) == [
        "b:1 imports _secret from a", "b:7 uses a._secret", "b:7 uses a._other",
        "b:7 uses a._third"]


def test_pytest_outside_the_pytest_layer_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "metrics.py": "def f():\n    import pytest\n",
        "report.py": "from _pytest.config import Config\n",
        "plugin.py": "import pytest\n",
        "physics_tests.py": "import pytest\n",
    })
    assert pytest_outside_layer(modules) == ["metrics:2 imports pytest",
                                             "report:1 imports pytest"]


def test_the_core_importing_what_is_above_it_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "data.py": "from pkg.protocols.md import run_md\nfrom pkg import units\n",
        "units.py": "def f():\n    from pkg.markers import THRESHOLDS\n",
        "results.py": "import pkg\nfrom pkg.cost import scaling\nfrom pkg.data import x\n",
        "markers.py": "", "protocols/md/__init__.py": "run_md = 1\n",
        "cost.py": "from pkg.protocols.base import Result\n", "protocols/base.py": "",
    })
    core = frozenset({"", "data", "units", "results"})
    assert core_imports_above(modules, core) == ["data:1 imports protocols.md",
                                                 "results:2 imports cost",
                                                 "units:2 imports markers"]


def test_a_family_importing_past_public_modules_is_found(tmp_path):
    modules = make_package(tmp_path, {
        "protocols/base.py": "from pkg import data\nfrom pkg.protocols.md import x\n",
        "protocols/invariance.py": "",
        "protocols/md/__init__.py": "x = 1\n",
        "protocols/md/run.py": "from pkg.protocols.md.settings import S\n",
        "protocols/md/settings.py": "S = 1\n",
        "protocols/rss/__init__.py": "",
        "protocols/rss/search.py": """\
            from pkg.protocols import base, invariance
            from pkg.protocols.md import x
            from pkg import data, report
            from pkg.protocols.md.settings import S
            from pkg.protocols.rss.io import y
        """,
        "protocols/rss/io.py": "y = 1\n",
        "data.py": "", "report.py": "",
    })
    assert family_imports(modules, core=frozenset({"data"})) == [
        "protocols.base:2 imports protocols.md",
        "protocols.rss.search:3 imports report",
        "protocols.rss.search:4 imports protocols.md.settings"]


def test_own_imports_inside_functions_are_found(tmp_path):
    modules = make_package(tmp_path, {
        "data.py": """\
            import json
            from pkg import units
            try:
                from pkg.fileio import write
            except ImportError:
                pass

            def f():
                import numpy
                from pkg.metrics import rmse
                return rmse

            class C:
                from pkg import units as u
        """,
        "plugin.py": "def f():\n    from pkg import data\n",
        "domain_tests.py": "def f():\n    from pkg import data\n",
        "units.py": "", "fileio.py": "write = 1\n", "metrics.py": "rmse = 1\n",
    })
    assert imports_not_at_top(modules, allowed={}) == [
        "data:10 imports metrics inside a function", "data:14 imports units inside a function"]
    allowed = {("data", "metrics"): "speed", ("data", "units"): "speed"}
    assert imports_not_at_top(modules, allowed=allowed) == []
    assert stale_allowances(modules, allowed) == []
    allowed.update({("data", "fileio"): "speed", ("units", "data"): "speed",
                    ("domain_tests", "data"): "speed", ("data", "units"): " "})
    assert stale_allowances(modules, allowed) == [
        "data -> units (no reason given)", "data -> fileio", "units -> data",
        "domain_tests -> data"]
