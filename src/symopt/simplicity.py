"""Simplicity: how complex an optimizer graph is, and choosing the simpler of near-equals.

This module owns the search's preference for simple optimizers, in one place:

* :func:`complexity`: a structural measure of a :class:`~symopt.graph.Graph`,
  counted on its canonical form with dead code removed, so that two graphs
  that compute the same thing in the same way measure the same, and unused
  nodes never count.
* :func:`pareto_front`: the fitness/complexity trade-off of a population.
* :func:`prefer_simpler`: which candidate to keep when several are about as
  good (Occam's razor: a simpler optimizer is more likely to transfer to other
  tasks, and easier to read and trust).
* :func:`simplified_equation`: the update equation after a sympy
  simplification bounded by work, on one line, for reports of the chosen
  optimizer.

Why here and not in :mod:`symopt.graph` or :mod:`symopt.symbolic`: those modules
describe one graph faithfully (its structure, its exact equations); this one
holds judgements about graphs (what counts as complex, how much fitness a
simpler graph may give up), which the search's selection, archive and reports
share and may tune, without touching the graph format or the printed forms.

What :func:`complexity` counts (on the canonical form, see :class:`Complexity`):
each non-identity operator that can affect the update, each distinct operand
and constant read, each recurrent state read, the operators built into the
composite operands read (``adam`` is ``m/(sqrt(v) + eps)``), and the
per-parameter buffers the optimizer keeps besides its states (moment EMAs and
the momentum buffer). Hyperparameter values, bias correction, weight decay,
clipping and the closed-form schedule kinds are settings, not structure, and
do not count; a ``graph`` schedule's expression does. A per-leaf operator
(``orth``, ``rms_rows``, ``trust``, ``if_matrix``, ...) counts as one operator,
like any other; :func:`simplified_equation` keeps it as the opaque function
:mod:`symopt.symbolic` writes, rewriting only around it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import sympy

from symopt import graph as graph_lib
from symopt import ops, symbolic
from symopt.graph import Expr, Graph

MOMENTS = frozenset({"m", "v", "gamma"})
"""The moment EMAs an operand may need (``ops.Operand.needs``): one buffer each."""

SIMPLIFY_WORK = 600
"""The tree nodes that the rewrites (:data:`REWRITES`) of one graph's
equations may read in all: a rewrite starts only if its input fits in what
is left, and an equation no rewrite shrank is printed as it is. Bounding the
work rather than the time keeps :func:`simplified_equation` fast on random
graphs (sympy's ``cancel`` and ``radsimp`` slow down with the size of their
input) and its result the same on every machine."""


class Complexity(NamedTuple):
    """The complexity of a graph (see :func:`complexity`); lower is simpler.

    ``total = operators + operands + states + builtins + buffers``; ``nodes``
    is reported but not added, since ``operators`` already counts what the
    nodes do (an identity-like node such as ``keep_left(x, y)`` adds nothing).
    """

    nodes: int  # active hidden nodes of the update (reaching the root, or a state read)
    operators: int  # non-identity unary and binary operators: update, decays, schedule
    operands: int  # distinct operands and constants read, anywhere in the graph
    states: int  # recurrent states s_i read
    builtins: int  # operators inside the composite operands read (sympy.count_ops)
    buffers: int  # moment EMAs (m, v, gamma) the operands need, plus a momentum buffer
    total: int  # the sum above: the single number the search ranks by


class _Reached(NamedTuple):
    """What :func:`_reach` finds from a root."""

    nodes: frozenset[int]  # the active node indices
    leaves: frozenset[str]  # operands, constants and states read
    operators: int  # non-identity operators of the active nodes, on live inputs


def _reach(expr: Expr, root: str, states: Sequence[str] = ()) -> _Reached:
    """The part of ``expr`` that can affect ``root``, following states.

    Reading state ``s_i`` makes ``states[i]`` a root as well (its value is the
    state's next value). An identity-like binary operator (``keep_left``)
    returns its left input: its right input, and its right unary, are dead.

    Args:
      expr: the expression (update, decay or schedule sub-graph).
      root: the reference whose value matters.
      states: the graph's state references (only for the update).

    Returns:
      The active nodes, the leaves read and the operators counted.
    """
    active: set[int] = set()
    leaves: set[str] = set()
    operators = 0
    stack = [root]
    while stack:
        ref = stack.pop()
        i = graph_lib.node_index(ref)
        if i is None:
            if ref not in leaves:
                leaves.add(ref)
                if (j := graph_lib.state_index(ref)) is not None:
                    stack.append(states[j])
            continue
        if i in active:
            continue
        active.add(i)
        node = expr.nodes[i]
        binary = ops.BINARY[node.op]
        inputs = [(node.left, node.a)] if binary.identity_like else [
            (node.left, node.a), (node.right, node.b)]
        operators += not binary.identity_like
        for unary, ref_in in inputs:
            operators += not ops.UNARY[unary].identity_like
            stack.append(ref_in)
    return _Reached(frozenset(active), frozenset(leaves), operators)


@functools.cache
def _builtin_operators(operand: str) -> int:
    """The operators of an operand's own formula (``adam``: 4, ``g``: 0)."""
    return int(sympy.count_ops(ops.OPERANDS[operand].sympy))


def complexity(graph: Graph) -> Complexity:
    """The structural complexity of ``graph``; lower is simpler.

    Counted on :func:`symopt.graph.canonical` (equal sub-expressions shared,
    dead nodes dropped) and past that only what can affect the update: a
    state nobody reads, the dead input of ``keep_left`` and decays on operands
    not read do not count. Zoo examples: SGD 1 (``g``), momentum 2, Adam 7
    (``adam``: 1 operand, 4 built-in operators, 2 moment buffers), Lion 13.

    Args:
      graph: a valid graph within the :func:`symopt.graph.validate` limits.

    Returns:
      A :class:`Complexity`; its ``total`` is
      ``operators + operands + states + builtins + buffers``.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    g = graph_lib.canonical(graph)
    update = _reach(g.update, g.update.root, g.states)
    leaves = set(update.leaves)
    operators = update.operators
    subgraphs = [expr for name, expr in g.decays if name in update.leaves]
    if g.schedule.kind == "graph":
        subgraphs.append(g.schedule.expr)
    for expr in subgraphs:
        reached = _reach(expr, expr.root)
        leaves |= reached.leaves
        operators += reached.operators
    states = {r for r in leaves if graph_lib.state_index(r) is not None}
    operands = leaves - states
    named = [r for r in operands if r in ops.OPERANDS]  # not the constants
    builtins = sum(_builtin_operators(r) for r in named)
    moments = set().union(*(ops.OPERANDS[r].needs & MOMENTS for r in named))
    buffers = len(moments) + (g.momentum != "none")
    return Complexity(
        nodes=len(update.nodes),
        operators=operators,
        operands=len(operands),
        states=len(states),
        builtins=builtins,
        buffers=buffers,
        total=operators + len(operands) + len(states) + builtins + buffers,
    )


# --------------------------------------------------------------------------
# Choosing among candidates.


def _is_finite(value: float | None) -> bool:
    """Whether ``value`` is a finite number (None, NaN and +-inf are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _check_lengths(fitness: Sequence[float | None], complexity: Sequence[int]) -> None:
    if len(fitness) != len(complexity):
        raise ValueError(
            f"fitness and complexity differ in length: {len(fitness)} != {len(complexity)}")


def pareto_front(fitness: Sequence[float | None], complexity: Sequence[int]) -> list[int]:
    """The indices of the non-dominated candidates, simplest first.

    Higher fitness is better, lower complexity is better; a candidate is
    dominated when another is at least as good in both and better in one.
    Only finite fitness counts: None, NaN and +-inf are never on the front.
    Of equal points (same fitness, same complexity) only the first index is
    kept. Along the returned front complexity rises and fitness rises strictly.

    Args:
      fitness: one fitness per candidate (higher is better).
      complexity: one complexity per candidate, e.g. ``complexity(g).total``.

    Returns:
      The front's indices, sorted by complexity ascending (empty if no
      fitness is finite).

    Raises:
      ValueError: if the two sequences differ in length.
    """
    _check_lengths(fitness, complexity)
    finite = [i for i, f in enumerate(fitness) if _is_finite(f)]
    finite.sort(key=lambda i: (complexity[i], -float(fitness[i]), i))
    front: list[int] = []
    for i in finite:
        if not front or float(fitness[i]) > float(fitness[front[-1]]):
            front.append(i)
    return front


def prefer_simpler(
    fitness: Sequence[float | None], complexity: Sequence[int], tolerance: float
) -> int:
    """The candidate to keep when near-equal fitness is resolved to the simpler.

    The candidates within ``tolerance`` of the best finite fitness ``f*``
    (fitness at least ``f* - tolerance * |f*|``) compete on complexity: the
    lowest wins, then the higher fitness, then the lower index. With
    ``tolerance`` 0 this is the argmax of fitness (equal best fitnesses go to
    the simpler).

    Args:
      fitness: one fitness per candidate (higher is better); None, NaN and
        +-inf are never chosen.
      complexity: one complexity per candidate, e.g. ``complexity(g).total``.
      tolerance: the relative fitness a simpler candidate may give up, e.g.
        0.01 for 1%; at least 0.

    Returns:
      The index of the chosen candidate.

    Raises:
      ValueError: if no fitness is finite, the lengths differ or
        ``tolerance`` is negative or not a number.
    """
    _check_lengths(fitness, complexity)
    if not (_is_finite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance: expected a finite number >= 0, got {tolerance!r}")
    finite = [i for i, f in enumerate(fitness) if _is_finite(f)]
    if not finite:
        raise ValueError(
            f"prefer_simpler: no finite fitness among {len(fitness)} candidates")
    best = max(float(fitness[i]) for i in finite)
    threshold = best - tolerance * abs(best)
    near = [i for i in finite if float(fitness[i]) >= threshold]
    return min(near, key=lambda i: (complexity[i], -float(fitness[i]), i))


# --------------------------------------------------------------------------
# The simplified equation.


def _measure(expr: sympy.Basic) -> int:
    """How complex ``expr`` looks: its operations, ``sympy.simplify``'s measure.

    AddSign's ``g*(sign(g)*sign(m) + 1)`` and ``g*sign(g)*sign(m) + g`` both
    count 5, so the form that came first is kept; tree size (9 nodes against
    8) would expand it.
    """
    return int(sympy.count_ops(expr))


REWRITES: tuple[Callable[[sympy.Expr], sympy.Expr], ...] = (
    sympy.factor_terms,
    sympy.powsimp,
    sympy.together,
    sympy.cancel,
    sympy.expand,
    sympy.radsimp,
)
"""Cheap sympy rewrites, cheapest first, each kept only where it shrinks the
expression. ``sympy.simplify`` is not among them: on random graphs it can
take seconds, raise, or return a larger form."""


def _simplify(expr: sympy.Expr, work: int) -> tuple[sympy.Expr | None, int]:
    """``expr`` shrunk by :data:`REWRITES` in turn (None if none shrank it), and
    the work left.

    A rewrite costs the tree nodes of its input, and starts only if that fits
    in ``work``; one that raises is skipped.
    """
    best, best_measure = expr, _measure(expr)
    for rewrite in REWRITES:
        cost = symbolic.tree_size(best)
        if cost > work:
            continue
        work -= cost
        try:
            candidate = rewrite(best)
            measure = _measure(candidate)
        except Exception:  # noqa: BLE001 (sympy raises TypeError etc. on odd inputs)
            continue
        if measure < best_measure:
            best, best_measure = candidate, measure
    return (None if best is expr else best), work


def _rounded(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with its long Floats printing :data:`symbolic.SIGNIFICANT_DIGITS` digits.

    A rewrite's arithmetic makes long numbers (``1/1.0036`` is
    ``0.996412913511359``), and ``symopt.to_sympy`` leaves some unrounded in
    expressions with ``Max``/``Min``. ``expr`` itself where none is long.
    """
    digits = symbolic.SIGNIFICANT_DIGITS
    long = {
        f: sympy.Float(f, digits)
        for f in expr.atoms(sympy.Float)
        if math.isfinite(f) and float(f"{float(f):.{digits}g}") != float(f)
    }
    return expr.xreplace(long) if long else expr


def _line(equation: str, expr: sympy.Expr, simplified: sympy.Expr | None) -> str:
    """``equation`` (``lhs rel rhs`` of :func:`symopt.to_text`, the form of ``expr``)
    with the rounded ``simplified`` (or ``expr``) as its right-hand side."""
    try:
        rounded = _rounded(expr if simplified is None else simplified)
        if rounded is expr:
            return equation
        lhs, relation, _ = equation.split(" ", 2)
        return f"{lhs} {relation} {sympy.sstr(rounded, full_prec=False)}"
    except Exception:  # noqa: BLE001 (rebuilding and printing re-evaluate parts: may raise)
        return equation


@functools.lru_cache(maxsize=1024)
def _simplified_equation(graph: Graph, work: int) -> str:
    """:func:`simplified_equation` for a validated graph, cached (Graphs are hashable)."""
    form = symbolic.to_sympy(graph)
    text = symbolic.to_text(graph)
    # to_text writes "h_k = ...; d = ...; s_i <- ...; settings", in the order
    # of form.intermediates, form.direction, form.states.
    *equations, settings = text.split("; ")
    exprs = [value for _, value in form.intermediates] + [form.direction, *form.states]
    if len(equations) != len(exprs):  # not to_text's layout: keep it as it is
        return text
    lines = []
    for equation, expr in zip(equations, exprs, strict=True):
        simplified, work = _simplify(expr, work)
        lines.append(_line(equation, expr, simplified))
    return "; ".join([*lines, settings])


def simplified_equation(graph: Graph, *, work: int | None = None) -> str:
    """The optimizer on one line, its equations simplified with sympy.

    :func:`symopt.to_text`'s line (named nodes ``h_k``, direction ``d``,
    states ``s_i``, then learning rate, weight decay, schedule and momentum)
    with each equation replaced by the smallest form that cheap sympy
    rewrites (:data:`REWRITES`: ``factor_terms``, ``powsimp``, ``together``,
    ``cancel``, ``expand``, ``radsimp``) reach, where one is smaller. The
    rewrites read at most ``work`` tree nodes in all, so a large graph comes
    out less simplified, or as :func:`symopt.to_text` prints it, rather than
    slowly; the result depends on the graph alone. Results are cached per
    graph and ``work``.

    Args:
      graph: a valid graph.
      work: the bound on the rewrites' work (None: :data:`SIMPLIFY_WORK`).

    Returns:
      One line of plain text, e.g. ``d = m/(epsilon + sqrt(v)); lr=0.001,
      schedule=constant, momentum=none``.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    symbolic.to_sympy(graph)  # raises GraphError where to_text would print it
    return _simplified_equation(graph, SIMPLIFY_WORK if work is None else int(work))

