"""Expression trees as nested tuples: the genomes of the ``autolr`` space.

A tree is a leaf (a variable name, or a float constant) or a node
``(head, *children)``. One node kind is special: ``("if", var, cmp, const,
then, else)``, a condition on a variable and two subtrees (the dynamic
learning-rate policies); its condition is not a subtree. These functions
walk, measure, edit and serialise trees without knowing what the heads mean,
which the space (:mod:`symopt.spaces.autolr`) decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Tree = Any
"""A leaf (a variable name, or a float constant) or ``(head, *children)``."""


def is_node(tree: Tree) -> bool:
    """Whether ``tree`` is a node (a tuple) rather than a leaf."""
    return isinstance(tree, tuple)


def child_slots(node: tuple) -> list[tuple[int, str]]:
    """``(index, symbol)`` of a node's subtrees; an if node's condition is not one."""
    if node[0] == "if":
        return [(4, "policy"), (5, "policy")]
    return [(i, "expr") for i in range(1, len(node))]


def positions(
    tree: Tree, symbol: str, path: tuple[int, ...] = (), depth: int = 0
) -> Iterator[tuple[tuple[int, ...], Tree, str, int]]:
    """Every subtree as ``(path, subtree, symbol, depth)``, pre-order."""
    yield path, tree, symbol, depth
    if is_node(tree):
        for i, child_symbol in child_slots(tree):
            yield from positions(tree[i], child_symbol, (*path, i), depth + 1)


def replace(tree: Tree, path: tuple[int, ...], new: Tree) -> Tree:
    """``tree`` with the subtree at ``path`` (child indices, from the root) replaced by ``new``."""
    if not path:
        return new
    i = path[0]
    return (*tree[:i], replace(tree[i], path[1:], new), *tree[i + 1 :])


def depth(tree: Tree) -> int:
    """Nesting of operator nodes (a leaf has depth 0)."""
    if not is_node(tree):
        return 0
    return 1 + max([depth(tree[i]) for i, _ in child_slots(tree)])


def size(tree: Tree) -> int:
    """Operator (and if) nodes."""
    return sum(1 for _, sub, _, _ in positions(tree, "") if is_node(sub))


def leaves(tree: Tree) -> Iterator[Tree]:
    """The leaves, pre-order, and each if node's condition constant."""
    for _, sub, _, _ in positions(tree, ""):
        if not is_node(sub):
            yield sub
        elif sub[0] == "if":
            yield sub[3]


def to_json(tree: Tree) -> Any:
    """The tree as nested JSON lists."""
    return [to_json(x) for x in tree] if is_node(tree) else tree


def from_json(data: Any, where: str) -> Tree:
    """The tree of :func:`to_json`'s output (integers as floats); ValueError at ``where``."""
    if isinstance(data, list):
        if not data or not isinstance(data[0], str):
            raise ValueError(f"{where}: a node must start with its operator name, got {data!r}")
        return (data[0], *(from_json(x, f"{where}[{i + 1}]") for i, x in enumerate(data[1:])))
    if isinstance(data, bool) or not isinstance(data, (str, int, float)):
        raise ValueError(f"{where}: expected a name, a number or a list, got {data!r}")
    return data if isinstance(data, str) else float(data)
