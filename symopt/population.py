"""A population of graphs as one array program, and its interpreter.

:func:`encode` turns P graphs into a :class:`Program`: fixed-size integer and
float arrays (operator ids, input indices, constants, hyperparameters,
schedule parameters) with a leading population axis, padded to the sizes of a
:class:`ProgramShape`. :func:`interpret` turns one row of a Program (inside
``jax.vmap``) into an optax transformation. One compiled program therefore
trains any mix of graphs of that shape: a new generation is new *data* for
the same executable, never a recompile. The interpreter agrees with
:func:`symopt.to_optax` of each graph to float tolerance
(``tests/test_population.py``), because both read the same operator table
(:mod:`symopt.ops`), schedule formulas and step order (:mod:`symopt.compile`).

Design, and why (``lax.switch`` under ``vmap`` computes every branch):

* **Inputs are gathered, not switched.** Every value a node may read
  (operands, constants, recurrent states, earlier nodes) lives in one table
  of shape ``[M, *leaf]``; a node input is ``table[index]``, one gather,
  instead of an M-way select that would cost M operations per element.
* **Operators are switched.** A node computes every unary operator on its two
  gathered inputs and every binary operator on the results, then selects by
  id. All of them are cheap elementwise operations with the safety of
  :func:`symopt.ops.bounded_fn`, and XLA fuses a node into one loop; the cost
  is ~40 flops per element per node, independent of the mix.
* **Each operand is computed once per step** and shared by all node inputs;
  moment EMAs are always kept (three multiply-adds), so the program does not
  depend on which graphs use them.
* **Noise is skipped when nobody uses it.** Random operands and dropout need
  random numbers per element, the most expensive thing in a step. A
  population-wide flag (not vmapped) guards them with ``lax.cond``, which
  stays a real branch under ``vmap`` because its predicate is unbatched.
* **Scalar sub-graphs** (decays, schedule graphs) are interpreted on
  scalars: all branches, negligible cost.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from symopt import compile as compile_lib
from symopt import graph as graph_lib
from symopt import ops
from symopt.graph import Expr, Graph

UNARY_NAMES = tuple(ops.UNARY)
BINARY_NAMES = tuple(ops.BINARY)
OPERAND_NAMES = ops.TENSOR_OPERANDS
SCALAR_NAMES = ops.SCALAR_OPERANDS
SCHEDULE_KINDS = graph_lib.SCHEDULE_KINDS
MOMENTUM_TYPES = graph_lib.MOMENTUM_TYPES
_KEEP_LEFT = BINARY_NAMES.index("keep_left")
_IDENTITY = UNARY_NAMES.index("identity")
_ONE = SCALAR_NAMES.index("one")


@dataclasses.dataclass(frozen=True)
class ProgramShape:
    """The padded sizes of a Program; one compile serves one shape."""

    max_nodes: int = 12
    max_constants: int = 4
    max_states: int = 2
    max_decay_nodes: int = 3
    max_schedule_nodes: int = 3

    @classmethod
    def fitting(cls, graphs: Sequence[Graph], minimum: ProgramShape | None = None) -> ProgramShape:
        """The smallest shape (at least ``minimum``) that holds ``graphs``."""
        base = minimum or cls(0, 0, 0, 0, 0)
        sizes = [
            (
                len(g.update.nodes),
                len(g.constants),
                len(g.states),
                max([len(e.nodes) for _, e in g.decays], default=0),
                len(g.schedule.expr.nodes) if g.schedule.expr is not None else 0,
            )
            for g in graphs
        ]
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{
            f: max([getattr(base, f)] + [s[i] for s in sizes]) for i, f in enumerate(fields)
        })


class ExprArrays(NamedTuple):
    """A DAG as arrays; node ``j``'s value is ``op(left(v[a]), right(v[b]))``."""

    left: jax.Array  # int32 [..., N] unary ids
    right: jax.Array  # int32 [..., N]
    op: jax.Array  # int32 [..., N] binary ids
    a: jax.Array  # int32 [..., N] value-table indices
    b: jax.Array  # int32 [..., N]
    root: jax.Array  # int32 [...]


class Program(NamedTuple):
    """P graphs as arrays with a leading population axis (a pytree)."""

    update: ExprArrays  # [P, N] over the tensor value table
    states: jax.Array  # int32 [P, S]: value-table index of each new state
    constants: jax.Array  # float [P, C] (float32 unless encoded otherwise)
    decays: ExprArrays  # [P, K, Nd] over the scalar value table, one per operand
    schedule_expr: ExprArrays  # [P, Ns] over the scalar value table
    schedule_kind: jax.Array  # int32 [P]
    schedule: dict[str, jax.Array]  # warmup_steps, alpha, decay_rate, steps, cycles: [P]
    momentum: jax.Array  # int32 [P]
    hparams: dict[str, jax.Array]  # float [P] each; bias_correction as 0/1

    @property
    def size(self) -> int:
        return int(self.momentum.shape[0])


def tensor_table_size(shape: ProgramShape) -> int:
    return len(OPERAND_NAMES) + shape.max_constants + shape.max_states + shape.max_nodes


def _tensor_index(ref: str, shape: ProgramShape) -> int:
    k = len(OPERAND_NAMES)
    if (i := graph_lib.node_index(ref)) is not None:
        return k + shape.max_constants + shape.max_states + i
    if (i := graph_lib.constant_index(ref)) is not None:
        return k + i
    if (i := graph_lib.state_index(ref)) is not None:
        return k + shape.max_constants + i
    return OPERAND_NAMES.index(ref)


def _scalar_index(ref: str, shape: ProgramShape) -> int:
    k = len(SCALAR_NAMES)
    if (i := graph_lib.node_index(ref)) is not None:
        return k + shape.max_constants + i
    if (i := graph_lib.constant_index(ref)) is not None:
        return k + i
    return SCALAR_NAMES.index(ref)


def _encode_expr(expr: Expr | None, size: int, index, default_root: int) -> list[np.ndarray]:
    """Lists [left, right, op, a, b] of length ``size`` and the root; unused
    slots are ``keep_left(identity(v[0]), .)``, cheap and unread."""
    cols = [np.full(size, _IDENTITY), np.full(size, _IDENTITY), np.full(size, _KEEP_LEFT),
            np.zeros(size), np.zeros(size)]
    if expr is None:
        return [*cols, np.asarray(default_root)]
    for j, n in enumerate(expr.nodes):
        cols[0][j] = UNARY_NAMES.index(n.left)
        cols[1][j] = UNARY_NAMES.index(n.right)
        cols[2][j] = BINARY_NAMES.index(n.op)
        cols[3][j] = index(n.a)
        cols[4][j] = index(n.b)
    return [*cols, np.asarray(index(expr.root))]


def _stack_exprs(rows: list[list[np.ndarray]]) -> ExprArrays:
    return ExprArrays(*(jnp.asarray(np.stack([r[i] for r in rows]), jnp.int32) for i in range(6)))


_HPARAMS = tuple(f.name for f in dataclasses.fields(graph_lib.Hyperparams))
_SCHEDULE_FIELDS = ("warmup_steps", "alpha", "decay_rate", "steps", "cycles")


def encode(
    graphs: Sequence[Graph], shape: ProgramShape | None = None, *, dtype=jnp.float32
) -> Program:
    """Encodes ``graphs`` as one Program (padded to ``shape``, by default the
    smallest that fits; floats as ``dtype``). Raises GraphError for an invalid
    graph or one that does not fit ``shape``."""
    if not graphs:
        raise ValueError("encode needs at least one graph")
    shape = shape or ProgramShape.fitting(graphs)
    update, decays, schedule_exprs, states, constants = [], [], [], [], []
    for i, graph in enumerate(graphs):
        graph_lib.validate(
            graph,
            max_nodes=shape.max_nodes,
            max_subgraph_nodes=max(shape.max_decay_nodes, shape.max_schedule_nodes),
            max_states=shape.max_states,
            max_constants=shape.max_constants,
        )
        _check_fits(graph, shape, i)
        t_index = lambda r: _tensor_index(r, shape)  # noqa: E731
        s_index = lambda r: _scalar_index(r, shape)  # noqa: E731
        update.append(_encode_expr(graph.update, shape.max_nodes, t_index, 0))
        decay_map = graph.decay_map
        decays.append([
            _encode_expr(decay_map.get(name), shape.max_decay_nodes, s_index, _ONE)
            for name in OPERAND_NAMES
        ])
        sched = graph.schedule.expr if graph.schedule.kind == "graph" else None
        schedule_exprs.append(_encode_expr(sched, shape.max_schedule_nodes, s_index, _ONE))
        own = [_tensor_index(f"s{j}", shape) for j in range(shape.max_states)]
        states.append([t_index(r) for r in graph.states] + own[len(graph.states):])
        constants.append(list(graph.constants) + [0.0] * (shape.max_constants - len(graph.constants)))
    decay_rows = [
        [np.stack([d[k][i] for k in range(len(OPERAND_NAMES))]) for i in range(6)] for d in decays
    ]
    return Program(
        update=_stack_exprs(update),
        states=jnp.asarray(np.array(states, dtype=np.int64).reshape(len(graphs), -1), jnp.int32),
        constants=jnp.asarray(np.array(constants, dtype=np.float64).reshape(len(graphs), -1),
                              dtype),
        decays=_stack_exprs(decay_rows),
        schedule_expr=_stack_exprs(schedule_exprs),
        schedule_kind=jnp.asarray([SCHEDULE_KINDS.index(g.schedule.kind) for g in graphs],
                                  jnp.int32),
        schedule={f: jnp.asarray([float(getattr(g.schedule, f)) for g in graphs], dtype)
                  for f in _SCHEDULE_FIELDS},
        momentum=jnp.asarray([MOMENTUM_TYPES.index(g.momentum) for g in graphs], jnp.int32),
        hparams={f: jnp.asarray([float(getattr(g.hparams, f)) for g in graphs], dtype)
                 for f in _HPARAMS},
    )


def _check_fits(graph: Graph, shape: ProgramShape, i: int) -> None:
    for name, expr in graph.decays:
        if len(expr.nodes) > shape.max_decay_nodes:
            raise graph_lib.GraphError(
                f"graphs[{i}].decays.{name}.nodes: {len(expr.nodes)} nodes exceed the program's "
                f"max_decay_nodes {shape.max_decay_nodes}"
            )
    expr = graph.schedule.expr
    if expr is not None and len(expr.nodes) > shape.max_schedule_nodes:
        raise graph_lib.GraphError(
            f"graphs[{i}].schedule.expr.nodes: {len(expr.nodes)} nodes exceed the program's "
            f"max_schedule_nodes {shape.max_schedule_nodes}"
        )


def program_row(program: Program, i: int) -> Program:
    """Row ``i`` of a program (the layout :func:`interpret` takes)."""
    return jax.tree.map(lambda x: x[i], program)


# --------------------------------------------------------------------------
# Interpretation (one row; vmap over the population).


def _switch(index: jax.Array, branches: list[jax.Array]) -> jax.Array:
    """``branches[index]``: all are computed already, so a select."""
    return jax.lax.select_n(jnp.clip(index, 0, len(branches) - 1), *branches)


def _unary_all(x: jax.Array, uniform: jax.Array) -> list[jax.Array]:
    return [ops.bounded_fn(name, 1)(jnp, x, uniform) for name in UNARY_NAMES]


def _eval_node(table, left, right, op, a, b, uniform):
    x = jax.lax.dynamic_index_in_dim(table, a, keepdims=False)
    y = jax.lax.dynamic_index_in_dim(table, b, keepdims=False)
    x = _switch(left, _unary_all(x, uniform))
    y = _switch(right, _unary_all(y, uniform))
    outs = [ops.bounded_fn(name, 2)(jnp, x, y, uniform) for name in BINARY_NAMES]
    return _switch(op, outs)


def _eval_nodes(table: jax.Array, expr: ExprArrays, first: int, uniform: jax.Array) -> jax.Array:
    """Fills ``table[first + j]`` with node ``j``'s value, for every node.

    A ``fori_loop``, not a Python loop: the node body is compiled once, so
    compile time does not grow with the number of node slots.
    """

    def body(j, table):
        value = _eval_node(table, expr.left[j], expr.right[j], expr.op[j], expr.a[j], expr.b[j],
                           uniform)
        return jax.lax.dynamic_update_index_in_dim(table, value, first + j, 0)

    return jax.lax.fori_loop(0, expr.op.shape[-1], body, table)


def _eval_scalar_expr(expr: ExprArrays, leaves: jax.Array, n: int) -> jax.Array:
    """A scalar DAG over ``leaves`` (scalar operands then constants)."""
    table = jnp.concatenate([leaves, jnp.zeros(n, leaves.dtype)])
    table = _eval_nodes(table, expr, leaves.shape[0], jnp.ones(()))
    return jax.lax.dynamic_index_in_dim(table, expr.root, keepdims=False)


class PopulationState(NamedTuple):
    """Optimizer state of one candidate (all moments kept: see the module doc)."""

    count: jax.Array  # int32
    m: Any
    v: Any
    gamma: Any
    states: Any  # pytree of leaves shaped [S, *leaf]
    trace: Any
    key: jax.Array  # uint32 key data


def uses_random(program: Program) -> jax.Array:
    """Population-wide flag: does any graph read noise or dropout? (bool)."""
    random_ops = jnp.asarray([UNARY_NAMES.index(n) for n, o in ops.UNARY.items() if o.random])
    random_operands = jnp.asarray([OPERAND_NAMES.index(n) for n in OPERAND_NAMES
                                   if "noise" in ops.OPERANDS[n].needs])
    u = program.update
    uses_op = jnp.isin(u.left, random_ops) | jnp.isin(u.right, random_ops)
    uses_operand = jnp.isin(u.a, random_operands) | jnp.isin(u.b, random_operands)
    return jnp.any(uses_op | uses_operand)


def interpret(
    row: Program,
    shape: ProgramShape,
    total_steps: int,
    *,
    random: jax.Array | bool = True,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """One graph of a Program (a row, possibly traced) as an optax transformation.

    Args:
      row: one row of a :class:`Program` (``program_row``, or the per-candidate
        slice inside ``jax.vmap``).
      shape: the program's :class:`ProgramShape`.
      total_steps: ``T`` of the schedule and decays.
      random: population-wide flag (:func:`uses_random`, unbatched): when
        False the noise and dropout draws are skipped at run time.
      seed: seed of the noise (as :func:`symopt.to_optax`'s).
    """
    h = row.hparams
    n_nodes, n_const, n_states = shape.max_nodes, shape.max_constants, shape.max_states

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        states = jax.tree.map(lambda w: jnp.zeros((n_states, *w.shape), w.dtype), params)
        key = jax.random.key_data(jax.random.key(seed))
        return PopulationState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros(), states,
                               zeros(), key)

    def step_scalars(count):
        t = count.astype(h["learning_rate"].dtype)
        frac = t / total_steps
        ctx = ops.StepContext(None, None, None, None, None, None, None, t, frac)
        scalar_ops = jnp.stack([ops.OPERANDS[n].fn(jnp, ctx) * jnp.ones(()) for n in SCALAR_NAMES])
        leaves = jnp.concatenate([scalar_ops, row.constants])
        decay = jax.vmap(lambda e: _eval_scalar_expr(e, leaves, shape.max_decay_nodes))(row.decays)
        s = row.schedule
        sched = types.SimpleNamespace(**{k: s[k] for k in _SCHEDULE_FIELDS})
        u = compile_lib.schedule_fraction(jnp, t, s["warmup_steps"], total_steps)
        ctx_u = ops.StepContext(None, None, None, None, None, None, None, t, u)
        u_ops = jnp.stack([ops.OPERANDS[n].fn(jnp, ctx_u) * jnp.ones(()) for n in SCALAR_NAMES])
        graph_mult = _eval_scalar_expr(
            row.schedule_expr, jnp.concatenate([u_ops, row.constants]), shape.max_schedule_nodes
        )
        kinds = [compile_lib.SCHEDULE_FORMULAS[k](jnp, u, sched) if k != "graph" else graph_mult
                 for k in SCHEDULE_KINDS]
        mult = _switch(row.schedule_kind, kinds)
        mult = jnp.where(s["warmup_steps"] > 0,
                         compile_lib.with_warmup(jnp, t, s["warmup_steps"], mult), mult)
        bc = {}
        for name, beta in (("m", h["beta1"]), ("v", h["beta2"]), ("gamma", h["beta3"])):
            bc[name] = jnp.where(h["bias_correction"] > 0, 1 - beta ** (t + 1), 1.0)
        return t, frac, decay, mult, bc

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        clip_norm = h["clip_norm"]
        norm = optax.global_norm(updates)
        factor = jnp.where((clip_norm > 0) & (norm > clip_norm),
                           clip_norm / jnp.maximum(norm, ops.TINY), 1.0)
        updates = jax.tree.map(lambda g: jnp.where(clip_norm > 0, g * factor, g), updates)
        t, frac, decay, mult, bc = step_scalars(state.count)
        key, step_key = jax.random.split(jax.random.wrap_key_data(state.key))
        flat_g, treedef = jax.tree.flatten(updates)
        leaves = zip(flat_g, *(treedef.flatten_up_to(x) for x in
                               (params, state.m, state.v, state.gamma, state.states, state.trace)))
        outs = []
        for i, (g, w, m, v, gamma, st, trace) in enumerate(leaves):
            def draw(i=i, g=g):
                k_noise, k_unif = jax.random.split(jax.random.fold_in(step_key, i))
                return (jax.random.normal(k_noise, g.shape, g.dtype),
                        jax.random.uniform(k_unif, g.shape, g.dtype))

            noise, uniform = jax.lax.cond(
                random, draw, lambda g=g: (jnp.zeros_like(g), jnp.zeros_like(g))
            )
            outs.append(_leaf(g, w, m, v, gamma, st, trace, noise, uniform, t, frac, decay, mult,
                              bc))
        u, m, v, gamma, st, trace = (treedef.unflatten(list(x)) for x in zip(*outs))
        new_state = PopulationState(optax.safe_increment(state.count), m, v, gamma, st, trace,
                                    jax.random.key_data(key))
        return u, new_state

    def _leaf(g, w, m, v, gamma, st, trace, noise, uniform, t, frac, decay, mult, bc):
        c = h["clip_value"]
        g = jnp.where(c > 0, jnp.clip(g, -c, c), g)
        m = compile_lib._ema(jnp, m, g, h["beta1"])
        v = compile_lib._ema(jnp, v, g * g, h["beta2"])
        gamma = compile_lib._ema(jnp, gamma, g * g * g, h["beta3"])
        ctx = ops.StepContext(g, w, m / bc["m"], v / bc["v"], gamma / bc["gamma"], noise,
                              h["eps"], t, frac)
        operands = [
            ops.sanitize(jnp, jnp.broadcast_to(ops.OPERANDS[n].fn(jnp, ctx), g.shape) * decay[k])
            for k, n in enumerate(OPERAND_NAMES)
        ]
        consts = [jnp.broadcast_to(row.constants[j], g.shape) for j in range(n_const)]
        table = jnp.stack([*operands, *consts, *st, *[jnp.zeros_like(g)] * n_nodes])
        table = _eval_nodes(table, row.update, len(OPERAND_NAMES) + n_const + n_states, uniform)
        direction = jax.lax.dynamic_index_in_dim(table, row.update.root, keepdims=False)
        new_st = jnp.take(table, row.states, axis=0)
        beta = h["momentum"]
        new_trace = direction + beta * trace
        direction = _switch(row.momentum, [direction, new_trace, direction + beta * new_trace])
        new_trace = jnp.where(row.momentum > 0, new_trace, trace)
        direction = direction + h["weight_decay"] * w
        update = -(h["learning_rate"] * mult) * direction
        return update.astype(g.dtype), m, v, gamma, new_st, new_trace

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
