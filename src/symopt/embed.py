"""``embed``: symopt's pieces as standalone JAX source, for exported modules.

An exported module (:mod:`symopt.export`) writes nothing of the step a
second time. Each operator and operand brings its ``jax.numpy`` source as a
column of the operator table (:mod:`symopt.ops`), which :func:`unary_source`,
:func:`binary_source` and :func:`operand_source` fill in, with the
protections the optimizer applies (``_clip_big`` where an operator can
overflow). The shared functions (moments, bias correction, schedules, the
step held past ``T``, the noise hash, the protections) are symopt's own
functions, copied by their source with the symopt functions they call
(:func:`embedded_source`). So an exported module computes what
:func:`symopt.to_optax` computes by construction, and this module owns only
that translation; :mod:`symopt.export` assembles the module.

The per-leaf operators (``orth``, ``leaf_rms``, ``trust``, ... of
:data:`symopt.ops.LEAF_OPERATORS`) are functions of :mod:`symopt.ops` that
their ``source`` column calls: :func:`operator_functions` names them, so that
the module embeds them (with ``as_matrix``, ``_scaled_norm`` and the
Newton-Schulz constants they read) only when a graph uses them, and the
templates call them by their embedded names (``_orth(jnp, x)``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from symopt import ops

_CONTEXT = ("g", "w", "m", "v", "gamma", "noise", "eps", "step", "frac")


# --------------------------------------------------------------------------
# symopt's functions, embedded by their source.


def embedded_name(fn: Callable[..., Any]) -> str:
    """The name of a symopt function in an exported module: ``_`` + its name."""
    return "_" + fn.__name__.lstrip("_")


def _arguments(tree: ast.FunctionDef) -> set[str]:
    return {a.arg for a in tree.args.args + tree.args.kwonlyargs}


@functools.cache
def _source(fn: Callable[..., Any]) -> str:
    return textwrap.dedent(inspect.getsource(fn))


def _with_callees(
    roots: Iterable[Callable[..., Any]],
) -> Iterator[tuple[Callable[..., Any], ast.FunctionDef]]:
    """``roots`` and the symopt functions they call, transitively, each once
    and breadth first, with its parsed source."""
    queue, seen = list(roots), set()
    while queue:
        fn = queue.pop(0)
        if fn.__name__ in seen:
            continue
        seen.add(fn.__name__)
        tree = ast.parse(_source(fn)).body[0]
        yield fn, tree
        local = _arguments(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in local:
                value = fn.__globals__.get(node.id)
                if inspect.isfunction(value) and value.__module__.startswith("symopt."):
                    queue.append(value)


def embedded_source(roots: Iterable[Callable[..., Any]]) -> tuple[str, dict[str, Any]]:
    """The source of ``roots`` and of the symopt functions they call.

    Each function keeps its code and the first paragraph of its docstring;
    it is renamed by :func:`embedded_name` (calls included), and loses its
    annotations. Returns the source and the module-level constants the
    functions read (name -> value: numbers, and tuples of numbers such as
    ``NS_COEFFICIENTS``).
    """
    source, constants = _embedded_source(tuple(roots))
    return source, dict(constants)


@functools.lru_cache(maxsize=256)
def _embedded_source(roots: tuple[Callable[..., Any], ...]) -> tuple[str, dict[str, Any]]:
    """:func:`embedded_source`, cached: exported modules embed a few sets of
    functions, and reading and parsing their source dominates an export."""
    found: dict[str, tuple[Callable[..., Any], ast.FunctionDef]] = {}
    constants: dict[str, Any] = {}
    for fn, tree in _with_callees(roots):
        found[fn.__name__] = (fn, tree)
        local = _arguments(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in local:
                value = fn.__globals__.get(node.id)
                if _is_number(value) or (isinstance(value, tuple) and value
                                         and all(_is_number(v) for v in value)):
                    constants[node.id] = value
    names = {name: embedded_name(fn) for name, (fn, _) in found.items()}

    sources = []
    for name, (_, tree) in found.items():
        local = _arguments(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in local:
                node.id = names.get(node.id, node.id)
        tree.name = names[name]
        for arg in tree.args.args + tree.args.kwonlyargs:
            arg.annotation = None
        tree.returns = None
        doc = ast.get_docstring(tree)
        if doc is not None:
            first = doc.split("\n\n")[0].replace("\n", "\n    ")
            tree.body[0] = ast.Expr(ast.Constant(first))
        sources.append(ast.unparse(tree))
    return "\n\n\n".join(sources), constants


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def attributes_read(fn: Callable[..., Any], name: str) -> list[str]:
    """The attributes of argument ``name`` that ``fn`` and the symopt functions
    it calls read, in order of first use (``s.alpha`` -> ``alpha``)."""
    found: list[str] = []
    for _, tree in _with_callees([fn]):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == name and node.attr not in found):
                found.append(node.attr)
    return found


# --------------------------------------------------------------------------
# Sources of the table's operators and operands.


def _is_atom(src: str) -> bool:
    """Whether ``src`` needs no parentheses as an operand of ``*`` or ``-``."""
    if re.fullmatch(r"-?[A-Za-z_][A-Za-z_0-9.]*", src):
        return True
    if not re.match(r"[A-Za-z_][A-Za-z_0-9.]*\(", src) or not src.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(src):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and "(" in src[: i + 1]:
            return i == len(src) - 1
    return False


def _paren(src: str) -> str:
    return src if _is_atom(src) else f"({src})"


_CLIP_BIG = embedded_name(ops.clip_big)


@functools.cache
def _template(name: str, arity: int) -> tuple[str, tuple[Callable[..., Any], ...]]:
    """The operator's ``source`` with the :mod:`symopt.ops` functions it calls
    renamed by :func:`embedded_name`, and those functions."""
    template = ops.operator(name, arity).source
    called = []
    for call in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", template):
        fn = getattr(ops, call, None)
        if inspect.isfunction(fn) and fn.__module__ == ops.__name__ and fn not in called:
            called.append(fn)
            template = re.sub(rf"(?<![\w.]){call}\(", f"{embedded_name(fn)}(", template)
    return template, tuple(called)


def operator_functions(name: str, arity: int) -> tuple[Callable[..., Any], ...]:
    """The :mod:`symopt.ops` functions that operator ``name``'s source calls by
    name (a per-leaf operator's function, e.g. ``ops.orth``), for
    :func:`embedded_source`; empty for the element-wise operators, whose
    sources are ``jax.numpy`` expressions."""
    return _template(name, arity)[1]


def unary_source(name: str, x: str, *, uniform: str = "uniform") -> str:
    """Source of ``ops.bounded_fn(name, 1)(jnp, x, uniform)``: the operator,
    then ``_clip_big`` where it can overflow (``Op.bounded`` is False). A
    per-leaf operator's ``x`` must be the whole leaf (see
    :func:`symopt.interpret.leaf_direction`)."""
    src = _template(name, 1)[0].format(x=_paren(x), uniform=uniform)
    return src if ops.UNARY[name].bounded else f"{_CLIP_BIG}(jnp, {src})"


def binary_source(name: str, a: str, b: str) -> str:
    """Source of ``ops.bounded_fn(name, 2)(jnp, a, b, None)`` (see :func:`unary_source`)."""
    src = _template(name, 2)[0].format(a=_paren(a), b=_paren(b))
    return src if ops.BINARY[name].bounded else f"{_CLIP_BIG}(jnp, {src})"


def operand_source(name: str, **context: str) -> str:
    """Source of operand ``name``; ``context`` names the step-context variables."""
    names = {field: context.get(field, field) for field in _CONTEXT}
    return ops.OPERANDS[name].source.format(**names)
