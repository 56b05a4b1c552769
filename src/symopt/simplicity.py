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
* :func:`prune`: the graph with every part that is constant, or equal to
  one of its inputs, where optimizers run (on a fixed probe of realistic
  gradients, weights, moments and ``t/T``) replaced by that constant or input,
  each replacement kept only where the whole optimizer's updates, schedule and
  decays stay within :data:`PRUNE_TOLERANCE` of what they were.
* :func:`simplified_equation` and :func:`simplified_latex`: the pruned
  graph's equations after a sympy simplification bounded by work, for reports
  of the chosen optimizer; :func:`identity_key`: one key for candidates that
  prune to the same optimizer, so that a table can merge them into one row.

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

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import sympy

from symopt import graph as graph_lib
from symopt import integrity, interpret, ops, symbolic
from symopt import step as step_lib
from symopt.graph import Expr, Graph, Node

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
# Pruning: parts that are constant, or equal to one of their inputs, where
# optimizers run.

PRUNE_TOLERANCE = 1e-3
"""The relative change :func:`prune` may make: each leaf's update at each probe
step within this fraction of its largest element, and the schedule and decay
curves within this fraction of their values, point by point. ``(t/T)^{1e-5}``
differs from 1 by at most 7e-4 (at ``t = 0``, where ``0^{1e-5}`` is
``TINY^{1e-5}``), so it prunes to 1."""
PRUNE_STEPS = 16
"""Steps of the pruning probe, with ``T`` the same: ``t/T`` runs over [0, 1)."""
PRUNE_LEAVES = ((4, 5), (5,))
"""The leaves each probe row holds, end to end: a matrix and a vector, which the
per-leaf operators read one by one (as :data:`symopt.integrity.PROBE_LEAVES`)."""
PRUNE_SIZE = sum(math.prod(shape) for shape in PRUNE_LEAVES)
PRUNE_CURVE_STEPS = 1000
"""``T`` of the long run over which the schedule and the decays are compared."""
PRUNE_CURVE_POINTS = 101
_ABSOLUTE = 1e-30  # a difference this small is no difference
_MAX_ROUNDS = 16  # every round removes something, so this is a safety bound only


class _PruneProbe(NamedTuple):
    """The pruning probe's inputs, all ``[steps, rows, PRUNE_SIZE]`` (the draws
    ``[steps, 1, PRUNE_SIZE]``, the same in every row)."""

    grads: np.ndarray
    weights: np.ndarray
    noise: np.ndarray
    uniform: np.ndarray


def _prune_probe() -> _PruneProbe:
    """Four rows at the scales where optimizers run: gradients from 1e-6 to 3
    (spread over a row's elements, forwards and backwards, and rows of 1e-3,
    with a dead unit's zeros, and 0.1), each with a persistent mean so that
    the moments are not noise alone; weights of scale 1, 0.1 and 3, and
    weights that start at 0 (as biases do), each drifting from step to step."""
    rng = np.random.default_rng(20250611)
    steps, size = PRUNE_STEPS, PRUNE_SIZE
    spread = np.geomspace(1e-6, 3.0, size)
    g_scale = np.stack([spread, spread[::-1], np.full(size, 1e-3), np.full(size, 0.1)])
    rows = len(g_scale)
    mean = rng.standard_normal((rows, size))
    grads = g_scale * (0.5 * mean + rng.standard_normal((steps, rows, size)))
    grads[:, 2, [4, 9, 14, 19, 24]] = 0.0  # a dead unit: a column of the matrix, its bias
    w_scale = np.array([1.0, 0.1, 3.0, 0.01])[:, None]
    w0 = w_scale * rng.standard_normal((rows, size))
    w0[-1] = 0.0  # zero-initialised, as biases are
    weights = w0 + np.cumsum(0.01 * w_scale * rng.standard_normal((steps, rows, size)), axis=0)
    return _PruneProbe(grads, weights, rng.standard_normal((steps, 1, size)),
                       rng.random((steps, 1, size)))


_PROBE = _prune_probe()


def _map_rows(fn, leaves: list[np.ndarray]) -> np.ndarray:
    """``fn`` over the leading (probe row) axis of ``leaves``."""
    return np.stack([fn(*(leaf[r] for leaf in leaves)) for r in range(leaves[0].shape[0])])


def _by_leaf(fn, *args: np.ndarray) -> np.ndarray:
    """A per-leaf operator's ``fn`` applied to each probe row's leaves."""
    rows = tuple(np.broadcast_to(x, _PROBE.grads.shape[1:]) for x in args)
    return ops.by_leaf(np, fn, rows, PRUNE_LEAVES, _map_rows)


def _run(graph: Graph, observe: tuple[str, ...] = (),
         extra: tuple[Node, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """``graph``'s updates on the probe, teacher-forced (``[steps, rows, size]``),
    and the values of the references ``observe`` at each step
    (``[len(observe), steps, rows, size]``).

    The references are observed as extra recurrent states that nothing reads;
    ``extra`` nodes, appended to the update, may be observed too.
    """
    probe = _PROBE
    run = graph.replace(update=Expr(graph.update.nodes + extra, graph.update.root),
                        states=graph.states + observe)
    p = interpret.plan(run)
    h = graph.hparams
    state = interpret.init_leaf(p, probe.weights[0], np)
    updates = np.empty_like(probe.grads)
    observed = np.empty((len(observe), *probe.grads.shape))
    first = len(graph.states)
    with np.errstate(all="ignore"):  # overflow is expected, and sanitized
        for k in range(PRUNE_STEPS):
            scalars = interpret.step_scalars(p, np, float(k), PRUNE_STEPS)
            g = probe.grads[k]
            if h.clip_norm:
                g = step_lib.clip_rows_by_norm(np, g, h.clip_norm)
            noise = probe.noise[k] + 0 * g if "noise" in p.needs else None
            uniform = probe.uniform[k] + 0 * g if "uniform" in p.needs else None
            updates[k], state = interpret.leaf_update(
                p, np, g, probe.weights[k], state, scalars, h.learning_rate, h.weight_decay,
                noise=noise, uniform=uniform, by_leaf=_by_leaf)
            for j in range(len(observe)):
                observed[j, k] = state.states[first + j]
    return updates, observed


def _curve_steps() -> np.ndarray:
    return np.linspace(0, PRUNE_CURVE_STEPS - 1, PRUNE_CURVE_POINTS).round()


class _Signature(NamedTuple):
    """What pruning must keep: the probe's updates, and the schedule and decay
    curves of a long run (by name: ``schedule``, ``decay <operand>``)."""

    updates: np.ndarray
    curves: dict[str, np.ndarray]


def _signature(graph: Graph) -> _Signature:
    updates, _ = _run(graph)
    at = _curve_steps()
    with np.errstate(all="ignore"):
        table = interpret.step_scalars(interpret.plan(graph), np, at, PRUNE_CURVE_STEPS)
    curves = {"schedule": np.broadcast_to(table.schedule, at.shape)}
    curves |= {f"decay {k}": np.broadcast_to(v, at.shape) for k, v in table.decays.items()}
    return _Signature(updates, curves)


def _leaf_max(x: np.ndarray) -> np.ndarray:
    """The largest magnitude of each leaf of ``x`` (``[..., PRUNE_SIZE]`` ->
    ``[..., leaves]``)."""
    out, start = [], 0
    for shape in PRUNE_LEAVES:
        size = math.prod(shape)
        out.append(np.max(np.abs(x[..., start:start + size]), axis=-1))
        start += size
    return np.stack(out, axis=-1)


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=ops.BIG,
                         neginf=-ops.BIG)


def _tensors_close(new: np.ndarray, reference: np.ndarray) -> bool:
    """Each leaf of ``new`` within :data:`PRUNE_TOLERANCE` of the same leaf of
    ``reference``, relative to that leaf's largest element."""
    new, reference = _finite(new), _finite(reference)
    with np.errstate(all="ignore"):
        return bool(np.all(_leaf_max(new - reference)
                           <= PRUNE_TOLERANCE * _leaf_max(reference) + _ABSOLUTE))


def _points_close(new: np.ndarray, reference: np.ndarray) -> bool:
    """``new`` within :data:`PRUNE_TOLERANCE` of ``reference`` at every point."""
    new, reference = _finite(new), _finite(reference)
    with np.errstate(all="ignore"):
        return bool(np.all(np.abs(new - reference)
                           <= PRUNE_TOLERANCE * np.abs(reference) + _ABSOLUTE))


def _keeps(graph: Graph, reference: _Signature) -> bool:
    """Whether ``graph`` computes what ``reference`` recorded, within tolerance
    (the decays of operands that ``graph`` no longer reads do not count)."""
    try:
        signature = _signature(graph)
    except Exception:  # noqa: BLE001 (a rewrite that cannot run is not kept)
        return False
    return _tensors_close(signature.updates, reference.updates) and all(
        _points_close(signature.curves[k], reference.curves[k])
        for k in signature.curves.keys() & reference.curves.keys())


def _alias(ref: str) -> Node:
    """A node whose value is ``ref``'s (inlined by :func:`_compact`)."""
    return Node("keep_left", "identity", ref, "identity", ref)


def _is_alias(node: Node) -> bool:
    return node.op == "keep_left" and node.left == "identity"


def _with_constant(graph: Graph, value: float) -> tuple[Graph, str] | None:
    """``graph`` and a reference to ``value``: the operand ``one``, a constant
    of that value, or a new constant (in an unused slot where the graph has
    :data:`symopt.graph.MAX_CONSTANTS`); None if there is no room."""
    if value == 1.0:
        return graph, "one"
    used = graph_lib.used_operands(graph)
    for j, c in enumerate(graph.constants):
        if c == value and f"c{j}" in used:
            return graph, f"c{j}"
    free = [j for j in range(len(graph.constants)) if f"c{j}" not in used]
    if free:
        j = free[0]
        constants = graph.constants[:j] + (value,) + graph.constants[j + 1:]
    elif len(graph.constants) < graph_lib.MAX_CONSTANTS:
        j, constants = len(graph.constants), graph.constants + (value,)
    else:
        return None
    return graph.replace(constants=constants), f"c{j}"


def _constant_value(x: np.ndarray, close: Callable[[np.ndarray, np.ndarray], bool]
                    ) -> float | None:
    """The one value ``x`` takes within tolerance (rounded to
    :data:`symopt.symbolic.SIGNIFICANT_DIGITS`), or None."""
    x = _finite(x)
    value = float(f"{float(np.median(x)):.{symbolic.SIGNIFICANT_DIGITS}g}")
    return value if close(np.full_like(x, value), x) else None


Rewrite = Callable[[Graph], Graph | None]


def _rewrites(node: Node, values: Callable[[str], np.ndarray],
              unary: Callable[[str, str], np.ndarray],
              close: Callable[[np.ndarray, np.ndarray], bool],
              replace: Callable[[Graph, Node], Graph]) -> list[Rewrite]:
    """The rewrites of ``node`` that its values on the probe allow, most
    simplifying first: the node as a constant, as one of its inputs (before
    or after its unary operator), then a unary operator as the identity or its
    output as a constant. ``values(ref)`` and ``unary(op, ref)`` are values on
    the probe; ``replace(graph, new)`` puts ``new`` in ``node``'s place."""
    sides = [(node.left, node.a)] if node.op == "keep_left" else [
        (node.left, node.a), (node.right, node.b)]
    value = unary(*sides[0]) if node.op == "keep_left" else values("self")
    found: list[Rewrite] = []

    def to_constant(x: np.ndarray, build: Callable[[str], Node]) -> None:
        c = _constant_value(x, close)
        if c is None:
            return

        def rewrite(graph: Graph) -> Graph | None:
            made = _with_constant(graph, c)
            return None if made is None else replace(made[0], build(made[1]))

        found.append(rewrite)

    to_constant(value, _alias)
    for _, ref in sides:
        if close(value, values(ref)):
            found.append(lambda graph, ref=ref: replace(graph, _alias(ref)))
    if node.op != "keep_left":
        for op, ref in sides:
            if op != "identity" and close(value, unary(op, ref)):
                found.append(lambda graph, op=op, ref=ref: replace(
                    graph, Node("keep_left", op, ref, "identity", ref)))
    for side, (op, ref) in enumerate(sides):
        if op == "identity":
            continue
        output = unary(op, ref)

        def build(new_ref: str, side: int = side) -> Node:
            if side == 0:
                return Node(node.op, "identity", new_ref, node.right,
                            new_ref if node.op == "keep_left" else node.b)
            return Node(node.op, node.left, node.a, "identity", new_ref)

        if close(output, values(ref)):
            found.append(lambda graph, build=build, ref=ref: replace(graph, build(ref)))
        else:
            to_constant(output, build)
    return found


def _replace_node(expr: Expr, i: int, new: Node) -> Expr:
    return Expr(expr.nodes[:i] + (new,) + expr.nodes[i + 1:], expr.root)


def _prune_update(graph: Graph, reference: _Signature) -> tuple[Graph, bool]:
    """One top-down pass over the update's active nodes."""
    update = graph.update
    active = sorted(graph_lib.active_nodes(update, graph.states), reverse=True)
    observe: list[str] = []
    extra: list[Node] = []
    unary_refs: dict[tuple[str, str], str] = {}
    for i in active:
        node = update.nodes[i]
        observe += [graph_lib.node_ref(i), node.a, node.b]
        for op, ref in ((node.left, node.a), (node.right, node.b)):
            if op != "identity" and (op, ref) not in unary_refs:
                extra.append(Node("keep_left", op, ref, "identity", ref))
                unary_refs[op, ref] = graph_lib.node_ref(len(update.nodes) + len(extra) - 1)
    observe = list(dict.fromkeys([*observe, *unary_refs.values()]))
    try:
        _, observed = _run(graph, tuple(observe), tuple(extra))
    except Exception:  # noqa: BLE001 (a graph the probe cannot run is left as it is)
        return graph, False
    table = dict(zip(observe, observed, strict=True))
    changed = False
    for i in active:
        if i not in graph_lib.active_nodes(graph.update, graph.states):
            continue  # a rewrite above made it dead
        node = graph.update.nodes[i]
        if _is_alias(node):
            continue

        def values(ref: str, i: int = i) -> np.ndarray:
            return table[graph_lib.node_ref(i) if ref == "self" else ref]

        def unary(op: str, ref: str) -> np.ndarray:
            return table[unary_refs[op, ref]] if op != "identity" else table[ref]

        def replace(g: Graph, new: Node, i: int = i) -> Graph:
            return g.replace(update=_replace_node(g.update, i, new))

        kept = _first_kept(graph, _rewrites(node, values, unary, _tensors_close, replace),
                           reference)
        if kept is not None:
            graph, changed = kept, True
    return graph, changed


def _first_kept(graph: Graph, rewrites, reference: _Signature) -> Graph | None:
    """The first of ``rewrites`` of ``graph`` that computes what ``reference``
    says the graph computed (:func:`_keeps`), or None."""
    for rewrite in rewrites:
        candidate = rewrite(graph)
        if candidate is not None and _keeps(candidate, reference):
            return candidate
    return None


def _scalar_table(graph: Graph, expr: Expr) -> tuple[dict[str, np.ndarray], Callable]:
    """The values of ``expr``'s references over ``t/T`` in [0, 1), and a function
    of the values of ``unary(ref)``."""
    at = _curve_steps()
    frac = at / PRUNE_CURVE_STEPS
    ctx = ops.StepContext(step=at, frac=frac)

    def lookup(ref: str) -> np.ndarray:
        j = graph_lib.constant_index(ref)
        value = graph.constants[j] if j is not None else ops.OPERANDS[ref].fn(np, ctx)
        return np.broadcast_to(np.asarray(value, dtype=float), frac.shape)

    with np.errstate(all="ignore"):
        table = interpret.evaluate_expr(expr, lookup, np)

    def values(ref: str) -> np.ndarray:
        return table[ref] if ref in table else lookup(ref)

    def unary(op: str, ref: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            return ops.bounded_fn(op, 1)(np, values(ref), None)

    return values, unary


def _prune_scalar(graph: Graph, reference: _Signature, get: Callable[[Graph], Expr],
                  put: Callable[[Graph, Expr], Graph]) -> tuple[Graph, bool]:
    """One top-down pass over a scalar sub-graph (a decay or the schedule's)."""
    expr = get(graph)
    try:
        values_of, unary = _scalar_table(graph, expr)
    except Exception:  # noqa: BLE001
        return graph, False
    changed = False
    for i in sorted(graph_lib.active_nodes(expr), reverse=True):
        if i not in graph_lib.active_nodes(get(graph)):
            continue
        node = get(graph).nodes[i]
        if _is_alias(node):
            continue

        def values(ref: str, i: int = i) -> np.ndarray:
            return values_of(graph_lib.node_ref(i) if ref == "self" else ref)

        def replace(g: Graph, new: Node, i: int = i) -> Graph:
            return put(g, _replace_node(get(g), i, new))

        kept = _first_kept(graph, _rewrites(node, values, unary, _points_close, replace),
                           reference)
        if kept is not None:
            graph, changed = kept, True
    return graph, changed


def _prune_pass(graph: Graph, reference: _Signature) -> tuple[Graph, bool]:
    """One pass over the update, then each decay read, then a graph schedule."""
    graph, changed = _prune_update(graph, reference)
    used = graph_lib.used_operands(graph)
    for name in [n for n, _ in graph.decays if n in used]:

        def get(g: Graph, name: str = name) -> Expr:
            return dict(g.decays)[name]

        def put(g: Graph, e: Expr, name: str = name) -> Graph:
            return g.replace(decays=tuple((n, e if n == name else x) for n, x in g.decays))

        graph, done = _prune_scalar(graph, reference, get, put)
        changed |= done
    if graph.schedule.kind == "graph":
        graph, done = _prune_scalar(
            graph, reference, lambda g: g.schedule.expr,
            lambda g, e: g.replace(schedule=dataclasses.replace(g.schedule, expr=e)))
        changed |= done
    return graph, changed


def _inline(expr: Expr, extra_roots: tuple[str, ...] = ()) -> tuple[Expr, tuple[str, ...]]:
    """``expr`` with every reference to an alias node (``keep_left(x, .)`` with an
    identity left) replaced by what it aliases; the aliases are then dead."""
    alias: dict[str, str] = {}
    built = []
    for i, n in enumerate(expr.nodes):
        node = Node(n.op, n.left, alias.get(n.a, n.a), n.right, alias.get(n.b, n.b))
        if _is_alias(node):
            alias[graph_lib.node_ref(i)] = node.a
        built.append(node)
    return (Expr(tuple(built), alias.get(expr.root, expr.root)),
            tuple(alias.get(r, r) for r in extra_roots))


def _compact(graph: Graph) -> Graph:
    """``graph`` with its aliases inlined, in canonical form (dead nodes and
    unused constants dropped) where it is within the search limits."""
    update, states = _inline(graph.update, graph.states)
    decays = tuple((name, _inline(expr)[0]) for name, expr in graph.decays)
    schedule = graph.schedule
    if schedule.kind == "graph":
        schedule = dataclasses.replace(schedule, expr=_inline(schedule.expr)[0])
    graph = graph.replace(update=update, states=states, decays=decays, schedule=schedule)
    try:
        return graph_lib.canonical(graph)
    except graph_lib.GraphError:  # past the search limits: kept as it is
        return graph


@functools.lru_cache(maxsize=1024)
def _pruned(graph: Graph) -> Graph:
    """:func:`prune` for a validated graph, cached (Graphs are hashable)."""
    current = graph_lib.without_dead_states(graph)
    if current is not graph:
        current = graph_lib.canonical(current)
    for _ in range(_MAX_ROUNDS):
        reference = _signature(current)
        candidate, changed = _prune_pass(current, reference)
        if not changed:
            break
        current = _compact(candidate)
    compacted = _compact(current)  # aliases inlined: a state only they read is dead
    live = graph_lib.without_dead_states(compacted)
    if live is not compacted:
        return _pruned(_compact(live))
    return current


def prune(graph: Graph) -> Graph:
    """``graph`` without the parts that do nothing where optimizers run.

    A part is a hidden node, or a unary operator inside one, of the update
    or of a scalar sub-graph (a decay read, a ``graph`` schedule). Where its
    value on a fixed probe (:data:`PRUNE_STEPS` steps over ``t/T`` in [0, 1),
    gradients from 1e-6 to 3, weights from 0 to 3, the moment EMAs they
    give; the scalar sub-graphs over ``t/T`` in [0, 1)) is one constant, or
    equals one of its inputs, it is replaced by that constant or input: so
    ``clip_{1e-4}(1 - 1e-4 w)`` becomes the constant 1e-4 and
    ``g (t/T)^{clip_{1e-5}(1)}`` becomes ``g``. States the update never
    reads go, before and after the passes
    (:func:`symopt.graph.without_dead_states`). A replacement is kept only
    where the whole optimizer still computes what it did: each leaf's update
    at each probe step within :data:`PRUNE_TOLERANCE` of its largest element,
    and the schedule and decay curves of a long run within that fraction at
    every point. Parts are tried from the root down, and passes repeat until
    one changes nothing; each pass is compared with the graph it started from.

    The result is in canonical form (:func:`symopt.graph.canonical`) where
    something was pruned, else ``graph`` itself, and ``prune(prune(g)) ==
    prune(g)``. Hyperparameters, momentum and the schedule's kind are kept.
    Results are cached per graph.

    Args:
      graph: a valid graph (any size, as :func:`symopt.to_sympy` takes).

    Returns:
      The pruned graph.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    symbolic.to_sympy(graph)  # validates, without the search limits
    return _pruned(graph)


def identity_key(graph: Graph) -> str:
    """One key for candidates that are the same optimizer once pruned: the
    functional fingerprint (:func:`symopt.integrity.fingerprint`) of
    :func:`prune`'s graph, 16 hex characters. Tables merge the rows of equal
    keys; hyperparameters (learning rate included) are part of the key.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    return integrity.fingerprint(prune(graph))


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
    """The optimizer on one line, pruned (:func:`prune`) and its equations
    simplified with sympy.

    :func:`symopt.to_text`'s line of the pruned graph (named nodes ``h_k``, direction ``d``,
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
    pruned = prune(graph)  # raises GraphError where to_text would print it
    return _simplified_equation(pruned, SIMPLIFY_WORK if work is None else int(work))


def simplified_latex(graph: Graph) -> str:
    """:func:`symopt.to_latex` of the pruned graph (:func:`prune`): the aligned
    LaTeX block of the optimizer without its parts that do nothing.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    return symbolic.to_latex(prune(graph))

