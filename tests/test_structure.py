"""The source tree's shape: no private names reached across modules, no import cycles.

Walks every module of the project's packages (and the tests and benchmarks, for private names)
with :mod:`ast`, so it sees imports inside functions too, and fails naming the offending module
and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mmg_common", "devices", "calibration", "mmg_live", "trainer")
#: Folders whose modules must not reach into other modules' private names either.
SCRIPT_FOLDERS = ("tests", "benchmarks")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package this module belongs to (a package's ``__init__`` belongs to itself)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _project_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _script_modules() -> dict[str, Module]:
    out: dict[str, Module] = {}
    for folder in SCRIPT_FOLDERS:
        for path in sorted((REPO / folder).glob("*.py")):
            out[f"{folder}/{path.stem}"] = Module(path.stem, path, False)
    return out


MODULES = _project_modules()
SCRIPTS = _script_modules()
#: Top-level modules of the script folders, importable from each other (tests import helpers).
SCRIPT_NAMES = {m.name for m in SCRIPTS.values()}


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (itself, or the nearest enclosing module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _where(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(module: Module) -> tuple[set[str], list[str]]:
    """(project modules ``module`` imports, private names it takes from other modules)."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    targets: set[str] = set()
    private: list[str] = []
    module_aliases: dict[str, str] = {}  # local name -> project/script module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    targets.add(target)
                    if alias.asname or "." not in alias.name:
                        module_aliases[alias.asname or alias.name] = alias.name
                elif alias.name in SCRIPT_NAMES:
                    module_aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            from_project = _resolve(base) is not None
            if not (from_project or base in SCRIPT_NAMES):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    targets.add(full)
                    module_aliases[alias.asname or alias.name] = full
                elif from_project:
                    targets.add(_resolve(base))  # type: ignore[arg-type]
                if _is_private(alias.name):
                    private.append(f"{_where(module.path)}:{node.lineno} imports {alias.name} from {base}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and _is_private(node.attr)):
            private.append(f"{_where(module.path)}:{node.lineno} uses "
                           f"{module_aliases[node.value.id]}.{node.attr}")
    targets.discard(module.name)
    return targets, private


GRAPH = {name: _imports(module) for name, module in MODULES.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _related(a: str, b: str) -> bool:
    """Whether one package contains the other (a package and its subpackages are one family)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def test_modules_import_no_private_names_of_other_modules():
    offences = [line for _, private in GRAPH.values() for line in private]
    for module in SCRIPTS.values():
        offences += _imports(module)[1]
    assert not offences, "private names used across modules:\n" + "\n".join(offences)


def test_no_import_cycle_among_modules():
    cycles = _cycles({name: targets for name, (targets, _) in GRAPH.items()})
    assert not cycles, "import cycles among modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_among_packages():
    edges: dict[str, set[str]] = {}
    for name, (targets, _) in GRAPH.items():
        source = MODULES[name].package
        edges.setdefault(source, set())
        for target in targets:
            package = MODULES[target].package
            if not _related(source, package):
                edges[source].add(package)
    cycles = _cycles(edges)
    assert not cycles, "import cycles among packages:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_a_private_import_and_a_cycle(tmp_path):
    """The walkers themselves: a planted private import and a planted cycle are found."""
    a = Module("mmg_live.planted_a", tmp_path / "a.py", False)
    a.path.write_text("from mmg_live.cli import _private\nimport mmg_live.cli as cli\ncli._other()\n")
    private = _imports(a)[1]
    assert any("_private" in p for p in private) and any("mmg_live.cli._other" in p for p in private)
    assert _cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_walked(package):
    assert any(name == package or name.startswith(package + ".") for name in MODULES)
