"""The module map: symopt's modules import each other without a cycle, the
encoding layer needs no JAX, and no module, test or experiment reads another
module's private names.

Read from the source with ``ast`` (imports inside functions included), so a
lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import symopt

ROOT = pathlib.Path(symopt.__file__).parent
MODULES = {
    "symopt." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted(ROOT.rglob("*.py"))
}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}

JAX_FREE = ("symopt.ops", "symopt.graph", "symopt.program", "symopt.schedules", "symopt.step",
            "symopt.symbolic", "symopt.zoo")
"""The graph, its tables and its encoding: importable where JAX is not."""


def _imports(name: str) -> tuple[set[str], set[str]]:
    """The symopt modules ``name`` imports, and the third-party top-level ones."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if name in PACKAGES else name.rpartition(".")[0]
    ours, theirs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name in MODULES else theirs).add(
                    alias.name if alias.name in MODULES else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if base.split(".")[0] != "symopt":
                theirs.add(base.split(".")[0])
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                ours.add(full if full in MODULES else base)
    ours.discard(name)
    return {m for m in ours if m not in PACKAGES or m != "symopt"}, theirs


GRAPH = {name: _imports(name)[0] for name in MODULES if name != "symopt"}


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for m in GRAPH.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


LAYERS = {
    1: ("ops", "draws"),
    2: ("graph", "schedules", "step"),
    3: ("symbolic", "program", "tables"),
    4: ("transform", "population", "fused", "integrity", "spaces", "zoo", "archive", "export"),
    5: ("tasks",),
    6: ("evaluate", "fitness", "viz", "simplicity", "heldout", "report", "config", "cli"),
    7: ("searchers",),
    8: ("run", "transfer"),
    9: ("main", "__init__"),
}
"""The module map's layers, lowest first: a module imports only from its own
layer or those below (a package's modules share its layer)."""


def _layer(name: str) -> int:
    top = name.removeprefix("symopt.").split(".")[0]
    (layer,) = [k for k, names in LAYERS.items() if top in names]
    return layer


def test_every_module_has_a_layer_and_imports_only_from_its_own_or_below():
    upward = [f"{m} ({_layer(m)}) -> {d} ({_layer(d)})" for m, deps in sorted(GRAPH.items())
              for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not upward, upward


def test_modules_import_each_other_without_a_cycle():
    cycles = sorted(name for name in GRAPH if name in _closure(name))
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("name", JAX_FREE)
def test_encoding_modules_need_no_jax(name):
    needing = sorted(m for m in {name, *_closure(name)} if m != "symopt"
                     and {"jax", "optax", "flax"} & _imports(m)[1])
    assert not needing, f"{name} imports JAX through {needing}"


REPO = ROOT.parent.parent
READERS = {**MODULES, **{str(p.relative_to(REPO)): p for p in sorted(
    [*(REPO / "tests").glob("*.py"), *(REPO / "experiments").glob("*.py")])}}
"""Every file that imports symopt: its modules, the tests and the experiments."""


def test_no_module_reads_another_modules_private_names():
    found = []
    for name, path in READERS.items():
        tree = ast.parse(path.read_text())
        aliases = {}  # local name -> symopt module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("symopt"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in MODULES:
                        aliases[alias.asname or alias.name] = full
                    elif alias.name.startswith("_"):
                        found.append(f"{name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and aliases[node.value.id] != name):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    assert not found, found


def test_the_module_map_sees_the_known_imports():
    # The checks above are only as good as this parser.
    assert "symopt.graph" in GRAPH["symopt.transform"]
    assert "symopt.ops" in GRAPH["symopt.graph"]
    assert "symopt.step" in _closure("symopt.population")
    assert "symopt.program" in _closure("symopt.population")
    assert "jax" in _imports("symopt.transform")[1]
