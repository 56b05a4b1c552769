"""The reference step: one optimizer step's meaning, written once over ``xp``.

This module owns what a graph computes at a step, as functions over an array
namespace ``xp`` (NumPy or ``jax.numpy``): :func:`plan` finds once what a
graph needs (its active nodes, operands, moments and decays);
:func:`evaluate_expr` and :func:`evaluate_scalar` evaluate the update graph
and its scalar sub-graphs; :func:`schedule_multiplier` and
:func:`step_scalars` give the schedule, decays and bias corrections of a
step; :func:`leaf_direction` is the graph's direction for one leaf and
:func:`leaf_update` the whole step, adding the parts every graph shares
(:mod:`symopt.step`).

The step is written once so that its readers cannot disagree: the integrity
check (:mod:`symopt.integrity`) runs it in NumPy on a few tiny arrays,
:func:`symopt.to_optax` (:mod:`symopt.transform`) traces it in JAX, unrolled
in Python so that only what the graph uses is computed, and the plots
(:mod:`symopt.viz`) and exported modules (:mod:`symopt.export`) read its
schedules and plan. It imports neither JAX nor optax, so what reads it in
NumPy loads without them: the noise and dropout draws come in as arrays
(:mod:`symopt.draws` makes them, and needs JAX).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from symopt import graph as graph_lib
from symopt import ops
from symopt import step as step_lib
from symopt.graph import Expr, Graph, Schedule
from symopt.schedules import (
    SCHEDULE_FORMULAS,
    held_step,
    piecewise_multiplier,
    schedule_fraction,
    with_warmup,
)

Array = Any


# --------------------------------------------------------------------------
# Static analysis: what a graph needs at each step.


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one graph computes per step, found once from its structure."""

    graph: Graph
    active: tuple[int, ...]  # active update nodes, in order
    operands: frozenset[str]  # every reference read by the active graph
    needs: frozenset[str]  # subset of {"m", "v", "gamma", "noise", "uniform"}
    decays: tuple[tuple[str, Expr], ...]  # decays on operands in use
    instructions: tuple[tuple[Any, ...], ...]  # the active update nodes, resolved


def plan(graph: Graph) -> Plan:
    """Works out the active nodes and the state a graph needs."""
    used = graph_lib.used_operands(graph)
    active = graph_lib.active_nodes(graph.update, graph.states)
    needs: set[str] = set()
    for name in used:
        if name in ops.OPERANDS:
            needs |= ops.OPERANDS[name].needs
    for i in active:
        node = graph.update.nodes[i]
        if ops.UNARY[node.left].random or ops.UNARY[node.right].random:
            needs.add("uniform")
    decays = tuple((n, e) for n, e in graph.decays if n in used)
    order = tuple(sorted(active))
    return Plan(graph, order, frozenset(used), frozenset(needs), decays,
                _instructions(graph.update, order))


# --------------------------------------------------------------------------
# The step, over ``xp``.


def evaluate_expr(
    expr: Expr, lookup: Callable[[str], Array], xp, *, uniform: Array | None = None,
    instructions: tuple[tuple[Any, ...], ...] | None = None,
    by_leaf: Callable[..., Array] | None = None,
) -> dict[str, Array]:
    """Values of ``expr``'s active nodes; ``lookup`` resolves non-node refs.

    ``lookup`` must return values in [-BIG, BIG] (sanitized); so are the node
    values. ``instructions`` may pass ``_instructions(expr, active)`` computed
    once (as :class:`Plan` does). ``by_leaf(f, *args)`` applies a per-leaf
    operator's ``f(*leaf_arrays)`` to the arrays at hand (:data:`ops.LEAF_OPERATORS`;
    :func:`leaf_direction` passes one for a single leaf, the integrity
    probe and the population engine for their layouts). Returns a dict from
    node refs (``"n3"``) to values.
    """
    values: dict[str, Array] = {}
    if instructions is None:
        instructions = _instructions(expr, tuple(sorted(graph_lib.active_nodes(expr))))

    def call(fn, leaf, *args):
        if leaf:
            if by_leaf is None:
                raise graph_lib.GraphError("a per-leaf operator needs the leaves (by_leaf)")
            return by_leaf(lambda *xs: fn(xp, *xs, None), *args)
        return fn(xp, *args, uniform)

    for out, left, a, right, b, op, leaf in instructions:
        x = values[a] if a in values else lookup(a)
        if left is not None:
            x = call(left, leaf[0], x)
        if op is not None:  # None: keep_left
            y = values[b] if b in values else lookup(b)
            if right is not None:
                y = call(right, leaf[1], y)
            x = call(op, leaf[2], x, y)
        values[out] = x
    return values


@functools.lru_cache(maxsize=4096)
def _instructions(expr: Expr, active: tuple[int, ...]) -> tuple[tuple[Any, ...], ...]:
    """The active nodes as ``(out, left, a, right, b, op, leaf)`` with resolved
    functions; ``None`` marks identity and keep_left, which are skipped (they
    are common, and Python overhead matters when the integrity check runs
    NumPy), and ``leaf`` flags the per-leaf operators of (left, right, op)."""

    def unary(name: str):
        return None if name == "identity" else ops.bounded_fn(name, 1)

    program = []
    for i in active:
        n = expr.nodes[i]
        op = None if n.op == "keep_left" else ops.bounded_fn(n.op, 2)
        leaf = (n.left in ops.LEAF_OPERATORS, n.right in ops.LEAF_OPERATORS,
                n.op in ops.LEAF_OPERATORS)
        program.append((graph_lib.node_ref(i), unary(n.left), n.a, unary(n.right), n.b, op,
                        leaf))
    return tuple(program)


def evaluate_scalar(expr: Expr, xp, step: Array, frac: Array, constants) -> Array:
    """A scalar sub-graph (decay or schedule) at training fraction ``frac``."""
    ctx = ops.StepContext(step=step, frac=frac)

    def lookup(ref: str) -> Array:
        j = graph_lib.constant_index(ref)
        if j is not None:
            return xp.asarray(constants[j], dtype=xp.result_type(frac))
        return ops.OPERANDS[ref].fn(xp, ctx)

    values = evaluate_expr(expr, lookup, xp)
    return values[expr.root] if expr.root in values else lookup(expr.root)


def schedule_multiplier(schedule: Schedule, xp, step: Array, total_steps: int, constants=()):
    """The learning-rate multiplier at 0-based ``step`` (see :class:`Schedule`).

    ``step`` and ``total_steps`` may be arrays of the same shape (the
    integrity check evaluates several runs' steps at once).
    """
    step = xp.asarray(step, dtype=float)
    u = schedule_fraction(xp, step, schedule.warmup_steps, total_steps)
    if schedule.kind == "graph":
        mult = evaluate_scalar(schedule.expr, xp, step, u, constants)
    elif schedule.kind == "piecewise":
        mult = piecewise_multiplier(xp, u, schedule.values, len(schedule.values))
    elif schedule.kind in SCHEDULE_FORMULAS:
        mult = SCHEDULE_FORMULAS[schedule.kind](xp, u, schedule)
    else:
        raise graph_lib.GraphError(f"schedule.kind: unknown {schedule.kind!r}")
    if schedule.warmup_steps:
        mult = with_warmup(xp, step, schedule.warmup_steps, mult)
    return mult


class LeafState(NamedTuple):
    """Per-leaf optimizer state; ``None`` where the graph does not need it."""

    m: Array | None
    v: Array | None
    gamma: Array | None
    states: tuple[Array, ...]
    trace: Array | None


def init_leaf(p: Plan, w: Array, xp) -> LeafState:
    zeros = lambda: xp.zeros_like(w)  # noqa: E731
    return LeafState(
        m=zeros() if "m" in p.needs else None,
        v=zeros() if "v" in p.needs else None,
        gamma=zeros() if "gamma" in p.needs else None,
        states=tuple(zeros() for _ in p.graph.states),
        trace=zeros() if p.graph.momentum != "none" else None,
    )


def held_schedule(graph: Graph, xp, step: Array, total_steps: int) -> Array:
    """The graph's learning-rate multiplier at ``step``, held past ``T``
    (:func:`symopt.schedules.held_step`)."""
    held = held_step(xp, step, total_steps)
    return schedule_multiplier(graph.schedule, xp, held, total_steps, graph.constants)


class StepScalars(NamedTuple):
    """What every leaf of one step shares: scalars, or arrays of steps."""

    step: Array  # t, 0-based, as a float
    frac: Array  # t / T
    schedule: Array  # the learning-rate multiplier (held past T)
    decays: dict[str, Array]  # operand name -> its decay's multiplier (held past T)
    bias: dict[str, Array]  # moment name -> 1 - beta**(t+1), where bias-corrected


def step_scalars(p: Plan, xp, step: Array, total_steps: int) -> StepScalars:
    """Per-step scalars shared by all leaves: schedule, decays, bias corrections."""
    g = p.graph
    h = g.hparams
    t = xp.asarray(step, dtype=float)
    held = held_step(xp, t, total_steps)
    betas = {"m": h.beta1, "v": h.beta2, "gamma": h.beta3}
    return StepScalars(
        step=t,
        frac=t / total_steps,
        schedule=held_schedule(g, xp, t, total_steps),
        decays={name: evaluate_scalar(expr, xp, held, held / total_steps, g.constants)
                for name, expr in p.decays},
        bias={m: step_lib.bias_correction(xp, beta, t) for m, beta in betas.items()
              if h.bias_correction and m in p.needs},
    )


def leaf_direction(
    p: Plan,
    xp,
    g: Array,
    w: Array,
    state: LeafState,
    scalars: StepScalars,
    *,
    noise: Array | None = None,
    uniform: Array | None = None,
    sanitize_operands: bool = True,
    by_leaf: Callable[..., Array] | None = None,
) -> tuple[Array, LeafState]:
    """The graph's direction for one leaf: returns ``(direction, new_state)``.

    ``g`` is the gradient after global-norm clipping; it is clipped by value,
    the moment EMAs are updated (and bias-corrected for reading), and the
    update graph is evaluated; ``new_state`` keeps the trace as it was
    (momentum comes after, :func:`leaf_update`). Operands are sanitized (see
    :mod:`symopt.ops`) unless ``sanitize_operands`` is False, which callers
    may pass only when their inputs are known to be small and finite (the
    integrity check's probes), where it is the identity. ``by_leaf`` applies
    the per-leaf operators (see :func:`evaluate_expr`); by default ``g`` is
    one leaf, and their inputs are broadcast to it.
    """
    gr = p.graph
    h = gr.hparams
    g = step_lib.clip_by_value(xp, g, h.clip_value)
    m = step_lib.ema(xp, state.m, g, h.beta1) if state.m is not None else None
    v = step_lib.ema(xp, state.v, g * g, h.beta2) if state.v is not None else None
    gamma = step_lib.ema(xp, state.gamma, g * g * g, h.beta3) if state.gamma is not None else None

    def corrected(x, name):
        return x / scalars.bias[name] if x is not None and name in scalars.bias else x

    ctx = ops.StepContext(
        g=g,
        w=w,
        m=corrected(m, "m"),
        v=corrected(v, "v"),
        gamma=corrected(gamma, "gamma"),
        noise=noise,
        eps=h.eps,
        step=scalars.step,
        frac=scalars.frac,
    )
    cache: dict[str, Array] = {}

    def lookup(ref: str) -> Array:
        if ref not in cache:
            j = graph_lib.constant_index(ref)
            if j is not None:
                value = xp.asarray(gr.constants[j], dtype=g.dtype)
            elif (j := graph_lib.state_index(ref)) is not None:
                value = state.states[j]
            else:
                value = ops.OPERANDS[ref].fn(xp, ctx)
                if ref in scalars.decays:
                    value = value * scalars.decays[ref]
            sanitize = sanitize_operands and j is None  # constants, states: in range
            cache[ref] = ops.sanitize(xp, value) if sanitize else value
        return cache[ref]

    if by_leaf is None:
        def by_leaf(fn, *args):
            return fn(*(broadcast_like(xp, x, g) for x in args))

    values = evaluate_expr(gr.update, lookup, xp, uniform=uniform, instructions=p.instructions,
                           by_leaf=by_leaf)

    def get(ref: str) -> Array:
        return broadcast_like(xp, values[ref] if ref in values else lookup(ref), g)

    direction = get(gr.update.root)
    new_states = tuple(get(r) for r in gr.states)
    return direction, LeafState(m, v, gamma, new_states, state.trace)


def broadcast_like(xp, x: Array, like: Array) -> Array:
    """``x`` with ``like``'s shape and dtype: a graph whose root is a scalar
    (a constant, ``t``) still gives one value per weight."""
    x = xp.broadcast_to(x, like.shape) if x.shape != like.shape else x
    return x.astype(like.dtype) if x.dtype != like.dtype else x


def leaf_update(
    p: Plan,
    xp,
    g: Array,
    w: Array,
    state: LeafState,
    scalars: StepScalars,
    learning_rate: Array,
    weight_decay: Array,
    *,
    noise: Array | None = None,
    uniform: Array | None = None,
    sanitize_operands: bool = True,
    by_leaf: Callable[..., Array] | None = None,
) -> tuple[Array, LeafState]:
    """One whole step for one leaf, as :func:`symopt.to_optax`'s chain computes it:
    :func:`leaf_direction`, momentum, decoupled weight decay and the scaled
    step (:mod:`symopt.step`). Returns ``(update, new_state)``; the integrity
    check runs it with NumPy."""
    gr = p.graph
    direction, state = leaf_direction(p, xp, g, w, state, scalars, noise=noise, uniform=uniform,
                                      sanitize_operands=sanitize_operands, by_leaf=by_leaf)
    trace = state.trace
    if gr.momentum != "none":
        kind = graph_lib.MOMENTUM_TYPES.index(gr.momentum)
        direction, trace = step_lib.momentum(xp, kind, gr.hparams.momentum, direction, trace)
    update = step_lib.scaled_update(xp, direction, w, weight_decay,
                                    learning_rate * scalars.schedule)
    return update.astype(g.dtype), state._replace(trace=trace)
