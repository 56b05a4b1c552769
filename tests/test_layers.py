"""The module map: each module's layer follows from its imports, the modules
import each other without a cycle, the encoding layer needs no JAX, and no
module, test or experiment reads another module's private names.

Imports are read from the source with ``ast`` (those inside functions
included), so a lazy import cannot hide a dependency. A module's layer is 1
if it imports no symopt module, else one more than the highest layer it
imports; a package's modules count as the package (``spaces``), the top
package ``symopt/__init__.py`` as ``__init__``. :data:`LAYERS` writes the
layers down for readers, and a test fails when it differs from what the
imports give. After moving modules, print the derived table with::

    python tests/test_layers.py

and paste it over :data:`LAYERS` (docs/modules.md's table follows it).
"""

from __future__ import annotations

import ast
import pathlib
import textwrap

import pytest

import symopt

ROOT = pathlib.Path(symopt.__file__).parent
MODULES = {
    "symopt." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted(ROOT.rglob("*.py"))
}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}

JAX_FREE = ("symopt.ops", "symopt.graph", "symopt.program", "symopt.schedules", "symopt.step",
            "symopt.symbolic", "symopt.zoo", "symopt.interpret", "symopt.integrity",
            "symopt.embed")
"""The graph, its tables and its encoding: importable where JAX is not."""

LAYERS = {
    1: ("budget", "draws", "fitness", "ops", "registry", "schedules"),
    2: ("embed", "graph", "step", "tasks"),
    3: ("archive", "interpret", "program", "symbolic", "zoo"),
    4: ("comparisons", "export", "integrity", "tables", "transform", "viz"),
    5: ("population", "simplicity", "spaces"),
    6: ("novelty", "records"),
    7: ("progress", "searchers"),
    8: ("evaluate",),
    9: ("measure",),
    10: ("config", "heldout"),
    11: ("build", "cli", "comparison_cache", "workdir"),
    12: ("report", "transfer"),
    13: ("run",),
    14: ("__init__", "main"),
}
"""Each module's layer, lowest first: 1 for a module that imports no symopt
module, else one more than the highest layer among its imports (a package's
modules share the package's layer). Derived from the imports, and checked
against them: see the module docstring to regenerate it."""


def _parse_imports(source: str, name: str) -> tuple[set[str], set[str]]:
    """The symopt modules that the source of module ``name`` imports, and the
    third-party top-level ones."""
    package = name if name in PACKAGES else name.rpartition(".")[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    ours.add(alias.name)
                else:
                    theirs.add(alias.name.split(".")[0])
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
    # "symopt" itself: a name re-exported by the top package, which every module may use.
    return ours - {name, "symopt"}, theirs


def _imports(name: str) -> tuple[set[str], set[str]]:
    """:func:`_parse_imports` of module ``name``'s file."""
    return _parse_imports(MODULES[name].read_text(), name)


GRAPH = {name: _imports(name)[0] for name in MODULES if name != "symopt"}


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for m in GRAPH.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _unit(name: str) -> str:
    """The name of module ``name`` in :data:`LAYERS`."""
    return "__init__" if name == "symopt" else name.removeprefix("symopt.").split(".")[0]


def _unit_imports() -> dict[str, set[str]]:
    """Each unit of :data:`LAYERS` -> the other units its modules import."""
    units: dict[str, set[str]] = {}
    for name in MODULES:
        units.setdefault(_unit(name), set()).update(_unit(m) for m in _imports(name)[0])
    return {unit: deps - {unit} for unit, deps in units.items()}


def derived_layers(units: dict[str, set[str]]) -> dict[str, int]:
    """Each unit's layer from its imports (see :data:`LAYERS`).

    Raises:
      ValueError: units that import each other (a cycle has no layers).
    """
    layers: dict[str, int] = {}

    def layer(unit: str, path: tuple[str, ...]) -> int:
        if unit in path:
            cycle = " -> ".join([*path[path.index(unit):], unit])
            raise ValueError(f"modules import each other, so they have no layers: {cycle}")
        if unit not in layers:
            layers[unit] = 1 + max((layer(d, (*path, unit)) for d in units[unit]), default=0)
        return layers[unit]

    for unit in sorted(units):
        layer(unit, ())
    return layers


def table_source(layers: dict[str, int]) -> str:
    """``layers`` as the source of :data:`LAYERS`, one line (or more) a layer."""
    lines = ["LAYERS = {"]
    for k in sorted(set(layers.values())):
        names = [f'"{u}"' for u in sorted(u for u, n in layers.items() if n == k)]
        row = f"{k}: ({', '.join(names)}{',' if len(names) == 1 else ''}),"
        wrapped = textwrap.wrap(row, width=96, subsequent_indent=" " * (len(str(k)) + 3))
        lines += [f"    {line}" for line in wrapped]
    return "\n".join([*lines, "}"])


def test_each_declared_layer_is_the_one_its_imports_give():
    units = _unit_imports()
    derived = derived_layers(units)
    declared = {unit: k for k, names in LAYERS.items() for unit in names}
    problems = []
    for unit in sorted(derived.keys() | declared.keys()):
        if unit not in derived:
            problems.append(f"{unit}: declared at layer {declared[unit]}, but no module has it")
            continue
        top = max(units[unit], key=lambda d: (derived[d], d), default=None)
        why = "it imports no symopt module" if top is None else (
            f"its highest import is {top} at layer {derived[top]}")
        if unit not in declared:
            problems.append(f"{unit}: not declared; derived layer {derived[unit]} ({why})")
        elif declared[unit] != derived[unit]:
            problems.append(f"{unit}: declared layer {declared[unit]}, derived layer "
                            f"{derived[unit]} ({why})")
    assert not problems, "\n".join(
        [*problems, "the derived table (python tests/test_layers.py prints it):",
         table_source(derived)])


def test_a_cycle_between_packages_has_no_layers():
    with pytest.raises(ValueError, match="a -> b -> a"):
        derived_layers({"a": {"b"}, "b": {"a"}, "c": set()})
    assert derived_layers({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == {"a": 2, "b": 1, "c": 3}


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


def test_the_import_parser_reads_every_form_of_import():
    # The checks above are only as good as this parser.
    source = textwrap.dedent("""
        import symopt.graph
        import numpy as np
        from symopt import ops, zoo as z
        from symopt import Graph
        from symopt.spaces.base import Space
        from . import base
        from .nos import NosSpace

        def later():
            from symopt import archive
            import jax.numpy
    """)
    ours, theirs = _parse_imports(source, "symopt.spaces.terms")
    assert ours == {"symopt.graph", "symopt.ops", "symopt.zoo", "symopt.spaces.base",
                    "symopt.spaces.nos", "symopt.archive"}
    assert theirs == {"numpy", "jax"}


def test_the_module_map_sees_the_known_imports():
    assert "symopt.graph" in GRAPH["symopt.zoo"]
    assert "symopt.ops" in GRAPH["symopt.graph"]
    assert "symopt.registry" in _closure("symopt.searchers")
    assert {"jax", "flax"} <= _imports("symopt.tasks.base")[1]


if __name__ == "__main__":
    print(table_source(derived_layers(_unit_imports())))
