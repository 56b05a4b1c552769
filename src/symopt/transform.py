"""``to_optax``: a Graph as a specialised ``optax.GradientTransformation``.

:func:`to_optax` is an ``optax.chain`` in optax's own form: the graph's
direction (:func:`scale_by_graph`), then ``optax.trace`` (momentum),
``optax.add_decayed_weights`` and ``optax.scale_by_learning_rate`` with the
graph's schedule. The direction is unrolled in Python when the update is
traced: only the operands, moment EMAs and nodes that the graph uses are
computed and stored, so under ``jax.jit`` a compiled graph costs what the
same optimizer written by hand costs. :func:`leaf_direction` is written over
an array namespace ``xp``; :func:`leaf_update` adds the rest of the step from
:mod:`symopt.step` (the same arithmetic as the chain, which the zoo tests
check against optax) and is what the integrity check runs in NumPy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from symopt import graph as graph_lib
from symopt import ops
from symopt import step as step_lib
from symopt.draws import noise_draws, seed_words, uniform_draws
from symopt.schedules import (
    SCHEDULE_FORMULAS,
    held_step,
    piecewise_multiplier,
    schedule_fraction,
    with_warmup,
)
from symopt.graph import Expr, Graph, Schedule

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
) -> dict[str, Array]:
    """Values of ``expr``'s active nodes; ``lookup`` resolves non-node refs.

    ``lookup`` must return values in [-BIG, BIG] (sanitized); so are the node
    values. ``instructions`` may pass ``_instructions(expr, active)`` computed
    once (as :class:`Plan` does). Returns a dict from node refs (``"n3"``) to
    values.
    """
    values: dict[str, Array] = {}
    if instructions is None:
        instructions = _instructions(expr, tuple(sorted(graph_lib.active_nodes(expr))))
    for out, left, a, right, b, op in instructions:
        x = values[a] if a in values else lookup(a)
        if left is not None:
            x = left(xp, x, uniform)
        if op is not None:  # None: keep_left
            y = values[b] if b in values else lookup(b)
            if right is not None:
                y = right(xp, y, uniform)
            x = op(xp, x, y, uniform)
        values[out] = x
    return values


@functools.lru_cache(maxsize=4096)
def _instructions(expr: Expr, active: tuple[int, ...]) -> tuple[tuple[Any, ...], ...]:
    """The active nodes as ``(out, left, a, right, b, op)`` with resolved
    functions; ``None`` marks identity and keep_left, which are skipped (they
    are common, and Python overhead matters when the integrity check runs
    NumPy)."""

    def unary(name: str):
        return None if name == "identity" else ops.bounded_fn(name, 1)

    program = []
    for i in active:
        n = expr.nodes[i]
        op = None if n.op == "keep_left" else ops.bounded_fn(n.op, 2)
        program.append((graph_lib.node_ref(i), unary(n.left), n.a, unary(n.right), n.b, op))
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
) -> tuple[Array, LeafState]:
    """The graph's direction for one leaf: returns ``(direction, new_state)``.

    ``g`` is the gradient after global-norm clipping; it is clipped by value,
    the moment EMAs are updated (and bias-corrected for reading), and the
    update graph is evaluated; ``new_state`` keeps the trace as it was
    (momentum comes after, :func:`leaf_update`). Operands are sanitized (see
    :mod:`symopt.ops`) unless ``sanitize_operands`` is False, which callers
    may pass only when their inputs are known to be small and finite (the
    integrity check's probes), where it is the identity.
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

    values = evaluate_expr(gr.update, lookup, xp, uniform=uniform, instructions=p.instructions)

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
) -> tuple[Array, LeafState]:
    """One whole step for one leaf, as :func:`to_optax`'s chain computes it:
    :func:`leaf_direction`, momentum, decoupled weight decay and the scaled
    step (:mod:`symopt.step`). Returns ``(update, new_state)``; the integrity
    check runs it with NumPy."""
    gr = p.graph
    direction, state = leaf_direction(p, xp, g, w, state, scalars, noise=noise, uniform=uniform,
                                      sanitize_operands=sanitize_operands)
    trace = state.trace
    if gr.momentum != "none":
        kind = graph_lib.MOMENTUM_TYPES.index(gr.momentum)
        direction, trace = step_lib.momentum(xp, kind, gr.hparams.momentum, direction, trace)
    update = step_lib.scaled_update(xp, direction, w, weight_decay,
                                    learning_rate * scalars.schedule)
    return update.astype(g.dtype), state._replace(trace=trace)


# --------------------------------------------------------------------------
# optax.


class SymoptState(NamedTuple):
    """State of :func:`scale_by_graph`, in optax's form: each field but ``count``
    and ``key`` is a params-shaped tree (or a tuple of them), and a field the
    graph does not use is the empty tuple ``()``, as in ``ScaleByAdamState(count,
    mu, nu)``. So ``optax.tree_utils.tree_get(state, "m")`` finds the first
    moment, and Flax NNX, orbax and sharding see arrays with their parameter's
    shape."""

    count: jax.Array  # int32 scalar, steps taken
    m: Any  # EMA of g, params-shaped (or ())
    v: Any  # EMA of g**2
    gamma: Any  # EMA of g**3
    states: tuple[Any, ...]  # one params-shaped tree per recurrent state of the graph
    key: Any  # uint32[2] seed words of the noise/dropout draws (see noise_draws), or ()


_MOMENTS = ("m", "v", "gamma")  # SymoptState's params-shaped fields, one each


def scale_by_graph(graph: Graph, total_steps: int = 10_000, *,
                   seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """The graph's direction as an optax transformation: clipping by value, the
    moment EMAs and the update graph (:func:`leaf_direction`), leaf by leaf.

    Args:
      graph: a valid :class:`symopt.Graph`.
      total_steps: ``T``, which the decay operands (functions of ``t/T``) use.
      seed: seed of the noise and dropout operators, when the graph has them.

    Returns:
      A transformation whose ``update`` needs ``params`` (the weights are
      operands) and returns the direction, before momentum, weight decay and
      the learning rate (:func:`to_optax` chains those).
    """
    graph_lib.validate(graph)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    p = plan(graph)
    random = bool(p.needs & {"noise", "uniform"})
    used = {m: m in p.needs for m in _MOMENTS}

    def init_fn(params):
        def zeros():
            return jax.tree.map(jnp.zeros_like, params)

        return SymoptState(
            count=jnp.zeros([], jnp.int32),
            **{f: zeros() if used[f] else () for f in _MOMENTS},
            states=tuple(zeros() for _ in graph.states),
            key=seed_words(seed) if random else (),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        scalars = step_scalars(p, jnp, state.count, total_steps)
        flat_g, treedef = jax.tree.flatten(updates)
        flat_w = treedef.flatten_up_to(params)
        none = [None] * len(flat_g)
        flat = {f: treedef.flatten_up_to(getattr(state, f)) if used[f] else none
                for f in _MOMENTS}
        flat_states = [treedef.flatten_up_to(tree) for tree in state.states]
        out_d, out_s = [], []
        offset = 0  # of the leaf's draws in the flattened parameters
        for i, (g, w) in enumerate(zip(flat_g, flat_w, strict=True)):
            noise = uniform = None
            if "noise" in p.needs:
                noise = noise_draws(jnp, state.key, state.count, offset, g.shape, g.dtype)
            if "uniform" in p.needs:
                uniform = uniform_draws(jnp, state.key, state.count, offset, g.shape, g.dtype)
            leaf = LeafState(**{f: flat[f][i] for f in _MOMENTS},
                             states=tuple(s[i] for s in flat_states), trace=None)
            d, leaf = leaf_direction(p, jnp, g, w, leaf, scalars, noise=noise, uniform=uniform)
            offset += g.size
            out_d.append(d)
            out_s.append(leaf)

        def tree(field):
            return treedef.unflatten([getattr(s, field) for s in out_s]) if used[field] else ()

        new_state = SymoptState(
            count=optax.safe_increment(state.count),
            **{f: tree(f) for f in _MOMENTS},
            states=tuple(treedef.unflatten([s.states[j] for s in out_s])
                         for j in range(len(graph.states))),
            key=state.key,
        )
        return treedef.unflatten(out_d), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def to_optax(
    graph: Graph,
    learning_rate: float | jax.Array | optax.Schedule | None = None,
    total_steps: int = 10_000,
    *,
    weight_decay: float | jax.Array | None = None,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Compiles ``graph`` into an optax optimizer: its direction
    (:func:`scale_by_graph`), then optax's own momentum, decoupled weight decay
    and learning rate times the graph's schedule.

    Args:
      graph: a valid :class:`symopt.Graph`.
      learning_rate: base learning rate (default: ``graph.hparams``); may be a
        traced value, so it works with ``optax.inject_hyperparams`` and vmap,
        or an optax schedule (a function of the step count). The graph's own
        schedule multiplies it either way: to use only yours, pass
        ``graph.replace(schedule=symopt.Schedule())``.
      total_steps: ``T``, the length of training that the schedule and the
        decay operands (functions of ``t/T``) are laid over.
      weight_decay: decoupled weight decay (default: ``graph.hparams``).
      seed: seed of the noise and dropout operators, when the graph has them.

    Returns:
      ``optax.chain(clip_by_global_norm, scale_by_graph, trace,
      add_decayed_weights, scale_by_learning_rate)``, each part only where the
      graph has it: an ``optax.GradientTransformationExtraArgs`` whose
      ``update`` needs ``params`` (the weights are operands).

    Example:
      >>> import jax.numpy as jnp, symopt
      >>> tx = symopt.to_optax(symopt.zoo.adam(), learning_rate=1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update(params, tx.init(params), params)
    """
    graph_lib.validate(graph)
    h = graph.hparams
    lr = h.learning_rate if learning_rate is None else learning_rate
    wd = h.weight_decay if weight_decay is None else weight_decay

    def step_size(count):
        base = lr(count) if callable(lr) else lr
        return base * held_schedule(graph, jnp, jnp.asarray(count, float), total_steps)

    parts = [optax.clip_by_global_norm(h.clip_norm)] if h.clip_norm else []
    parts.append(scale_by_graph(graph, total_steps, seed=seed))
    if graph.momentum != "none":
        parts.append(optax.trace(decay=h.momentum, nesterov=graph.momentum == "nesterov"))
    if step_lib.adds_weight_decay(wd):
        parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale_by_learning_rate(step_size))
    return optax.chain(*parts)
