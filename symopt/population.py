"""The population optimizer: one optax transformation that steps many graphs at once.

:func:`optimizer` turns a :class:`~symopt.program.Program` (P graphs as arrays,
:func:`encode`) into one optax transformation over a *batch of runs* (pytrees
with a leading axis R; run ``r`` uses candidate ``r // runs_per_candidate``).
Its updates agree with :func:`symopt.to_optax` of each graph
(``tests/test_population.py``): both read the same operator table
(:mod:`symopt.ops`), schedules (:mod:`symopt.schedules`) and the shared parts
of the step (:mod:`symopt.step`). :func:`step_scalars` tabulates the schedules and
decays, which depend on the step alone, once per training on the host.

A run's step picks its operand kinds and its unary and binary operators with
``lax.switch``. Runs are stepped in one of two ways (``strategy``):

* ``"loop"`` (the default on CPU): a ``fori_loop`` over runs, and within a run
  loops over its operand slots and active nodes. Each switch is a real branch,
  so a run pays only for the operators its graph uses.
* ``"vmap"`` (the default on GPU/TPU): ``jax.vmap`` over runs, under which a
  switch computes all its branches and selects: more flops, but a few wide
  kernels per node, with no loop whose trip count differs per run (under
  ``vmap`` such a loop waits on the host at every iteration). Every operand is
  computed once and the slots gather from them; the node loop runs a static
  ``max_nodes`` iterations, unrolled by ``_NODE_UNROLL``.

Either way a node reads from a small per-run table of the graph's operand
slots, constants, recurrent states and nodes. Moment EMAs, clipping, bias
correction, momentum and the update itself are computed over all runs at once,
outside the per-run step, which yields the graph's direction only. Noise and
dropout are drawn over all of a run's weights at once with the numbers
``to_optax`` draws leaf by leaf (counter-based: :func:`symopt.compile.noise_draws`).
docs/benchmarks.md has the measurements behind these choices.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from symopt import compile as compile_lib
from symopt import ops, schedules
from symopt import step as step_lib
from symopt.program import (
    BINARY_NAMES,
    OPERAND_NAMES,
    SCALAR_NAMES,
    SCHEDULE_FIELDS,
    SCHEDULE_KINDS,
    UNARY_NAMES,
    ExprArrays,
    Program,
    ProgramShape,
    encode,  # re-exported: population.encode(graphs) is the engine's entry point
)

STRATEGIES = ("auto", "loop", "vmap")
# Node-loop iterations per trip in the vmap strategy. Measured on an H100
# (P=64, 1,898 weights; us per candidate-step / compile s): 1: 3.6-4.5 / 1.4,
# 2: 1.8 / 2.3, 4: 1.7 / 3.0, 8: 1.6 / 4.5, fully unrolled: 2.0 / 15.5.
_NODE_UNROLL = 2


def uses_moments(program: Program) -> dict[str, jax.Array]:
    """Population-wide flags: does any graph read m, v, gamma? (bools)."""
    slot_used = jnp.arange(program.operands.shape[-1]) < program.num_operands[:, None]
    flags = {}
    for moment in ("m", "v", "gamma"):
        ids = [OPERAND_NAMES.index(n) for n in OPERAND_NAMES if moment in ops.OPERANDS[n].needs]
        flags[moment] = jnp.any(jnp.isin(program.operands, jnp.asarray(ids)) & slot_used)
    return flags


# --------------------------------------------------------------------------
# One run's step.


def _row(x: jax.Array, i) -> jax.Array:
    """``x[i]`` for a traced ``i``: the primitive itself, which traces in a
    fraction of the time of NumPy-style indexing (the loop strategy indexes
    per run hundreds of times while its program is traced)."""
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False)


def _node_value(table, left, right, op, a, b, uniform):
    """``op(left(table[a]), right(table[b]))`` with switched operators.

    ``uniform`` is the dropout draw, or a function returning it: then only a
    dropout branch draws it, so a run without dropout never pays for it.
    """
    draw = uniform if callable(uniform) else lambda: uniform
    read = functools.partial(_row, table)
    unary = [lambda i, name=name: ops.bounded_fn(name, 1)(
        jnp, read(i), draw() if ops.UNARY[name].random else None) for name in UNARY_NAMES]
    binary = [lambda x, y, name=name: ops.bounded_fn(name, 2)(jnp, x, y, None)
              for name in BINARY_NAMES]
    x = jax.lax.switch(left, unary, a)
    y = jax.lax.switch(right, unary, b)
    return jax.lax.switch(op, binary, x, y)


def _eval_nodes(table, expr: ExprArrays, first: int, uniform, length=None,
                unroll: int = 1) -> jax.Array:
    """Fills ``table[first + j]`` with node ``j``'s value for the used nodes
    (or the first ``length``)."""

    def body(j, table):
        value = _node_value(table, expr.left[j], expr.right[j], expr.op[j], expr.a[j],
                            expr.b[j], uniform)
        return jax.lax.dynamic_update_index_in_dim(table, value, first + j, 0)

    length = expr.length if length is None else length
    return jax.lax.fori_loop(0, length, body, table, unroll=unroll)


class StepScalars(NamedTuple):
    """The per-step multipliers of P graphs, tabulated over ``total_steps``.

    They depend on the step alone, not on the weights, so they are computed
    once for the whole training rather than inside every step (by default in
    NumPy: no XLA compile at all; under ``vmap`` they were switches over every
    operator, the largest part of the population program's compile time).
    Their size is ``T * P * (K + 1)`` numbers: 2.3 MB for 500 steps of 128
    graphs with 8 operand slots.
    """

    schedule: Any  # [T, P]: learning-rate multiplier of the graph's schedule
    decays: Any  # [T, P, K]: decay multiplier of each operand slot


def _select(xp, values: Sequence[Any], index) -> Any:
    """``values[index]`` elementwise as a chain of selects: an unchosen
    value's NaN never leaks, and under jit it fuses into one kernel."""
    out = values[0]
    for k in range(1, len(values)):
        out = xp.where(index == k, values[k], out)
    return out


def _scalar_exprs(xp, expr: ExprArrays, leaves: Sequence[Any]) -> Any:
    """Scalar DAGs over ``leaves`` (scalar operands then constants), batched
    over any leading axes: every operator on every node, the used one selected."""
    table = list(leaves)
    one = xp.ones_like(table[0])  # the dropout draw: keep everything

    def unary(index, x):
        return _select(xp, [ops.bounded_fn(name, 1)(xp, x, one) for name in UNARY_NAMES], index)

    for j in range(expr.op.shape[-1]):
        x = unary(expr.left[..., j], _select(xp, table, expr.a[..., j]))
        y = unary(expr.right[..., j], _select(xp, table, expr.b[..., j]))
        binary = [ops.bounded_fn(name, 2)(xp, x, y, None) for name in BINARY_NAMES]
        table.append(_select(xp, binary, expr.op[..., j]))
    return _select(xp, table, expr.root)


def _scalar_leaves(xp, program: Program, t, frac, shape) -> list[Any]:
    """The scalar operands at ``t``, ``frac`` ([T, P]), then the constants,
    each broadcast to ``shape`` ([T, P] or [T, P, K])."""
    ctx = ops.StepContext(step=t, frac=frac)
    values = [ops.OPERANDS[n].fn(xp, ctx) * xp.ones_like(t) for n in SCALAR_NAMES]
    values += [xp.broadcast_to(program.constants[:, i], t.shape)
               for i in range(program.constants.shape[1])]
    extra = (1,) * (len(shape) - t.ndim)
    return [xp.broadcast_to(v.reshape(v.shape + extra), shape) for v in values]


def step_scalars(program: Program, total_steps: int, xp=np) -> StepScalars:
    """Tabulates the schedule and decay multipliers of every graph at steps
    ``0 .. total_steps - 1`` (the formulas of :func:`symopt.to_optax`).

    ``xp=np`` (default) computes them on the host with no compile; ``xp=jnp``
    inside a traced function (the program may then be traced).
    """
    if xp is np:
        with np.errstate(all="ignore"):  # the unchosen operators may overflow
            return _tabulate(np, jax.tree.map(np.asarray, program), total_steps)
    return _tabulate(xp, program, total_steps)


def _host_exprs(program: Program, expr: ExprArrays, rows: tuple[np.ndarray, ...], t, frac,
                fill: np.ndarray) -> np.ndarray:
    """NumPy: ``fill`` ([T, ...]) with the scalar DAGs at ``expr[rows]`` put in,
    each computed over its used nodes only. On the host the population's
    many empty DAGs (most operands have no decay) would otherwise cost as
    much as the used ones: 0.4 -> 0.04 s for 500 steps of 64 graphs."""
    if rows[0].size == 0:
        return fill
    used = int(expr.length[rows].max())
    picked = ExprArrays(*(f[rows][..., :used] if f.ndim > len(rows) else f[rows] for f in expr))
    columns = program._replace(constants=program.constants[rows[0]])
    t, frac = t[:, rows[0]], frac[:, rows[0]]
    fill[(slice(None), *rows)] = _scalar_exprs(
        np, picked, _scalar_leaves(np, columns, t, frac, t.shape))
    return fill


def _tabulate(xp, program: Program, total_steps: int) -> StepScalars:
    dtype = program.constants.dtype
    size = program.momentum.shape[0]
    t = xp.broadcast_to(xp.arange(total_steps, dtype=dtype)[:, None], (total_steps, size))
    frac = t / total_steps
    slots = (total_steps, *program.operands.shape)
    s = program.schedule
    u = schedules.schedule_fraction(xp, t, s["warmup_steps"], total_steps)
    graph_kind = SCHEDULE_KINDS.index("graph")
    if xp is np:  # only the DAGs in use, each over its used nodes
        decays = _host_exprs(program, program.decays, np.nonzero(program.decays.length > 0), t,
                             frac, np.ones(slots, dtype))
        graph_schedule = lambda: _host_exprs(  # noqa: E731
            program, program.schedule_expr, np.nonzero(program.schedule_kind == graph_kind), t,
            u, np.ones(t.shape, dtype))
    else:
        decays = _scalar_exprs(xp, program.decays, _scalar_leaves(xp, program, t, frac, slots))
        graph_schedule = lambda: _scalar_exprs(  # noqa: E731
            xp, program.schedule_expr, _scalar_leaves(xp, program, t, u, t.shape))
    fields = types.SimpleNamespace(**{k: s[k] for k in SCHEDULE_FIELDS})
    piece = schedules.piecewise_index(xp, u, s["num_values"])
    special = {
        "graph": graph_schedule,
        "piecewise": lambda: _select(xp, list(program.schedule_values.T), piece),
    }
    formula = lambda k: schedules.SCHEDULE_FORMULAS[k](xp, u, fields)  # noqa: E731
    mult = _select(xp, [special[k]() if k in special else formula(k) for k in SCHEDULE_KINDS],
                   program.schedule_kind)
    mult = xp.where(s["warmup_steps"] > 0,
                    schedules.with_warmup(xp, t, s["warmup_steps"], mult), mult)
    return StepScalars(schedule=mult.astype(dtype), decays=decays.astype(dtype))


def _run_scalars(table: StepScalars, step, runs_per_candidate: int, hparams,
                 total_steps: int) -> dict[str, jax.Array]:
    """The per-run scalars at each candidate's ``step`` [P]: the tabulated
    schedule [R] and decays [R, K], the step, its fraction of ``T`` and the
    bias corrections [R]."""
    row = (schedules.held_step(jnp, step, total_steps), jnp.arange(step.shape[0]))
    per_run = lambda x: jnp.repeat(x, runs_per_candidate, axis=0)  # noqa: E731
    t = per_run(step).astype(hparams["learning_rate"].dtype)
    out = {"t": t, "frac": t / total_steps, "schedule": per_run(table.schedule[row]),
           "decays": per_run(table.decays[row])}
    for name, beta in (("m", hparams["beta1"]), ("v", hparams["beta2"]),
                       ("gamma", hparams["beta3"])):
        out[f"bc:{name}"] = jnp.where(hparams["bias_correction"] > 0,
                                      step_lib.bias_correction(jnp, beta, t), 1.0)
    return out


class _RunContext:
    """A StepContext for one run whose fields are read (sliced, bias-corrected)
    only when an operand asks for them: inside a switch branch, so a run pays
    for the base arrays its operands use."""

    def __init__(self, base: dict[str, jax.Array], r, scalars, eps):
        self._base, self._r, self._scalars = base, r, scalars
        self.eps, self.step, self.frac = eps, scalars["t"], scalars["frac"]

    def __getattr__(self, name: str) -> jax.Array:
        if name.startswith("_"):
            raise AttributeError(name)
        x = self._base[name]
        if callable(x):  # drawn on demand (the loop strategy's noise and dropout draws)
            x = x()
        elif self._r is not None:
            x = _row(x, self._r)
        if name in ("m", "v", "gamma"):
            x = x / self._scalars[f"bc:{name}"]
        return x


class _Packed(NamedTuple):
    """Per-run fields packed in one int and one float vector: the loop
    strategy then slices two arrays per run rather than dozens (each slice is
    an operation with a fixed cost on CPU)."""

    ints: jax.Array  # int32 [R, Ni]
    floats: jax.Array  # float [R, Nf]


def _pack(fields: list[tuple[str, jax.Array]],
          ) -> tuple[jax.Array, dict[str, tuple[int, int, bool]]]:
    """Concatenates [R] and [R, n] arrays; the layout maps a name to
    ``(start, size, is_scalar)``."""
    layout, parts, start = {}, [], 0
    for name, x in fields:
        scalar = x.ndim == 1
        x = x[:, None] if scalar else x
        layout[name] = (start, x.shape[1], scalar)
        parts.append(x)
        start += x.shape[1]
    return jnp.concatenate(parts, axis=1), layout


def _field(vector: jax.Array, layout, name: str) -> jax.Array:
    start, size, scalar = layout[name]
    return (jax.lax.index_in_dim(vector, start, keepdims=False) if scalar
            else jax.lax.slice_in_dim(vector, start, start + size))


def _run_fields(packed: _Packed, layout, base: dict[str, jax.Array], r):
    """Accessors of one run's packed ints and floats, and its StepContext."""
    i_layout, f_layout = layout
    ints = lambda name: _field(packed.ints, i_layout, name)  # noqa: E731
    floats = lambda name: _field(packed.floats, f_layout, name)  # noqa: E731
    scalars = {"t": floats("t"), "frac": floats("frac"),
               **{f"bc:{m}": floats(f"bc:{m}") for m in ("m", "v", "gamma")}}
    return ints, floats, _RunContext(base, r, scalars, floats("eps"))


def _operand_value(name: str, ctx: _RunContext) -> jax.Array:
    g = ctx.g
    return jnp.broadcast_to(ops.OPERANDS[name].fn(jnp, ctx), g.shape).astype(g.dtype)


def _run_step(packed: _Packed, layout, shape: ProgramShape, base: dict[str, jax.Array], r,
              states, table, directions):
    """One run's update direction in the loop strategy, with real branches.

    ``packed`` holds the runs' programs and per-step scalars (see
    :func:`_pack`), sliced to this run's; ``base`` the runs' gradients,
    weights, moments and draws. ``table`` is scratch space [table_size, L]
    whose contents do not matter (every entry a valid program reads is
    written first): the previous run's, to save zeroing it. ``r`` is this
    run's index into the arrays of all runs (``states`` [R, S, L] and
    ``directions`` [R, L]), which get this run's rows written in place and
    are returned as ``(directions, states, table)``: a state the graph does
    not have is neither read nor written.
    """
    I, F, ctx = _run_fields(packed, layout, base, r)  # noqa: E741
    g = ctx.g
    operand_fns = [lambda name=name: _operand_value(name, ctx) for name in OPERAND_NAMES]
    operands, decays = I("operands"), F("decays")
    put = jax.lax.dynamic_update_index_in_dim

    def fill_slot(k, table):
        value = jax.lax.switch(operands[k], operand_fns) * decays[k]
        return put(table, ops.sanitize(jnp, value), k, 0)

    table = jax.lax.fori_loop(0, I("num_operands"), fill_slot, table)
    # Only the constant and state rows the graph has, each written in place:
    # most graphs have none. (Measured with the momentum selects below: a
    # candidate-step 12% faster on CPU than writing every row and switching.)
    constants, start = F("constants"), shape.max_operands
    if shape.max_constants:
        table = jax.lax.fori_loop(0, I("num_constants"), lambda j, table: put(
            table, jnp.broadcast_to(constants[j], g.shape), start + j, 0), table)
    start += shape.max_constants
    if shape.max_states:
        table = jax.lax.fori_loop(0, I("num_states"), lambda j, table: put(
            table, _row(_row(states, r), j), start + j, 0), table)
    update = ExprArrays(*(I(f) for f in ExprArrays._fields))
    table = _eval_nodes(table, update, start + shape.max_states, lambda: ctx.uniform)
    state_rows = I("states")
    if shape.max_states:
        states = jax.lax.fori_loop(0, I("num_states"), lambda j, states: states.at[r, j].set(
            _row(table, state_rows[j])), states)
    return put(directions, _row(table, update.root), r, 0), states, table


def _vmap_step(packed: _Packed, layout, shape: ProgramShape, base: dict[str, jax.Array],
               states):
    """One run's step in the vmap strategy, with no loop whose trip count
    differs per run.

    Under ``vmap`` (arrays of one run: ``states`` [S, L])
    every switch computes all its branches and selects, so each operand is
    computed once and the slots gather from them; constants and states are
    concatenated into the table, and the node loop runs a static
    ``shape.max_nodes`` iterations (unrolled by ``_NODE_UNROLL``). A loop with
    a per-run trip count is a while loop on the device whose every iteration
    waits on the host (on an H100: ~0.8 ms a step for P=64 with such loops,
    measured). Returns ``(direction, states)``.
    """
    I, F, ctx = _run_fields(packed, layout, base, None)  # noqa: E741
    g = ctx.g
    every = jnp.stack([_operand_value(name, ctx) for name in OPERAND_NAMES])
    slots = ops.sanitize(jnp, every[I("operands")] * F("decays")[:, None])
    constants = jnp.broadcast_to(F("constants")[:, None], (shape.max_constants, *g.shape))
    nodes = jnp.zeros((shape.max_nodes, *g.shape), g.dtype)
    table = jnp.concatenate([slots, constants.astype(g.dtype), states, nodes])
    update = ExprArrays(*(I(f) for f in ExprArrays._fields))
    table = _eval_nodes(table, update, shape.table_size - shape.max_nodes, ctx.uniform,
                        shape.max_nodes, _NODE_UNROLL)
    return table[update.root], table[I("states")]


# --------------------------------------------------------------------------
# The optimizer over a batch of runs.


class PopulationState(NamedTuple):
    """Optimizer state of R runs; arrays over the flattened weights [R, L]."""

    count: jax.Array  # int32 [R]
    m: jax.Array  # [R, L]
    v: jax.Array
    gamma: jax.Array
    states: jax.Array  # [R, S, L]
    trace: jax.Array  # [R, L]
    key: jax.Array  # uint32 [R, 2] key data


def _flatten(tree) -> jax.Array:
    """A pytree of [R, ...] leaves as one [R, L] array."""
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)


def _unflatten(flat: jax.Array, like):
    leaves, treedef = jax.tree.flatten(like)
    sizes = np.cumsum([int(np.prod(x.shape[1:])) for x in leaves])[:-1]
    parts = jnp.split(flat, sizes, axis=1)
    return treedef.unflatten([p.reshape(x.shape).astype(x.dtype) for p, x in zip(parts, leaves)])


def _loop_over_candidates(packed: _Packed, layout, shape: ProgramShape,
                          base: dict[str, jax.Array], states: jax.Array,
                          runs_per_candidate: int, seed_words: jax.Array, counts: jax.Array,
                          draws):
    """The loop strategy: a ``fori_loop`` over candidates, each step covering
    all of the candidate's runs at once (its S runs' [L] rows side by side as
    one [S*L] row: same program, same scalars), so that the per-operation cost
    of the switches is paid once per candidate rather than once per run.

    Noise and dropout draws (``draws(kind, seed_words, counts)``, [S, L])
    are made inside the operand and operator branches that read them, so
    only candidates that use them pay for random numbers."""
    s = runs_per_candidate
    runs, length = base["g"].shape
    group = lambda x: x.reshape(runs // s, s * length)  # noqa: E731 ([R, L] -> [P, S*L])
    grouped = {k: group(v) for k, v in base.items()}
    words, counts = seed_words.reshape(runs // s, s, -1), counts.reshape(runs // s, s)
    num_states = states.shape[1]
    # Explicit sizes: with no states (num_states 0) a -1 cannot be inferred.
    states = states.reshape(runs // s, s, num_states, length).swapaxes(1, 2).reshape(
        runs // s, num_states, s * length)
    packed = _Packed(packed.ints[::s], packed.floats[::s])

    def body(p, acc):
        run_base = {**grouped, **{
            kind: lambda kind=kind: draws(kind, _row(words, p), _row(counts, p)).reshape(-1)
            for kind in ("noise", "uniform")}}
        directions, states, table = acc
        return _run_step(_Packed(_row(packed.ints, p), _row(packed.floats, p)), layout, shape,
                         run_base, p, states, table, directions)

    table = jnp.zeros((shape.table_size, s * length), base["g"].dtype)
    directions, states, _ = jax.lax.fori_loop(
        0, runs // s, body, (jnp.zeros_like(grouped["g"]), states, table))
    states = states.reshape(runs // s, num_states, s, length).swapaxes(1, 2).reshape(
        runs, num_states, length)
    return directions.reshape(runs, length), states


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _draws(kind: str, words: jax.Array, counts: jax.Array, length: int, dtype) -> jax.Array:
    """Noise or uniform samples [runs, L]: all weights in one draw, the same
    numbers as to_optax draws leaf by leaf (see compile.noise_draws).

    Jitted so that its trace is made once and reused: the loop strategy
    calls it in every operand and operator branch that reads a draw."""
    draw = compile_lib.noise_draws if kind == "noise" else compile_lib.uniform_draws
    return jax.vmap(lambda w, c: draw(jnp, w, c, 0, (length,), dtype))(words, counts)


def _when(flag, fn, otherwise, *args):
    """``fn(*args)`` where the unbatched ``flag`` is set, else
    ``otherwise(*args)``: a real branch (``lax.cond``), the loop strategy's
    way to skip population-wide work nobody needs."""
    return jax.lax.cond(flag, fn, otherwise, *args)


def _always(flag, fn, otherwise, *args):
    """``fn(*args)`` whatever ``flag``: the vmap strategy's. On an
    accelerator a ``lax.cond`` costs more than the work it would skip, which
    is a few elementwise passes (measured on an H100, P=64, 1,898 weights:
    5.2 -> 3.6 us per candidate-step without the step's five conds)."""
    del flag, otherwise
    return fn(*args)


def default_strategy() -> str:
    return "loop" if jax.default_backend() == "cpu" else "vmap"


def resolve_strategy(strategy: str) -> str:
    """``"loop"`` or ``"vmap"``: ``strategy``, with ``"auto"`` resolved for the
    default backend. Raises ValueError for an unknown one."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return default_strategy() if strategy == "auto" else strategy


def optimizer(
    program: Program,
    shape: ProgramShape,
    total_steps: int,
    *,
    runs_per_candidate: int = 1,
    seeds: jax.Array | Sequence[int] | None = None,
    strategy: str = "auto",
    scalars: StepScalars | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The population's optimizer over R = P * runs_per_candidate runs.

    Args:
      program: the encoded population.
      shape: the :class:`ProgramShape` it was encoded with.
      total_steps: ``T`` of the schedules and decays.
      runs_per_candidate: runs (seeds) per graph; run ``r`` uses candidate
        ``r // runs_per_candidate``.
      seeds: per-run seeds of the noise operands ([R]; default 0 for all, as
        :func:`symopt.to_optax`'s default).
      strategy: ``"loop"``, ``"vmap"`` or ``"auto"`` (see the module doc).
      scalars: ``step_scalars(program, total_steps)``, made outside the traced
        function to spare its compile; by default tabulated in the graph. Past
        ``total_steps``, the schedules and decays hold their last step's value.

    Returns:
      An optax transformation whose params, gradients and updates are pytrees
      of [R, ...] arrays.
    """
    strategy = resolve_strategy(strategy)
    when = _when if strategy == "loop" else _always
    runs = program.size * runs_per_candidate
    rows = jax.tree.map(lambda x: jnp.repeat(x, runs_per_candidate, axis=0), program)
    seeds = jnp.zeros(runs, jnp.int32) if seeds is None else jnp.asarray(seeds, jnp.int32)
    moments = uses_moments(program)
    h = rows.hparams
    if scalars is not None and tuple(scalars.schedule.shape) != (total_steps, program.size):
        raise ValueError(f"scalars are for {tuple(scalars.schedule.shape)} (steps, graphs); "
                         f"this optimizer needs step_scalars(program, {total_steps})")
    table = step_scalars(program, total_steps, xp=jnp) if scalars is None else scalars
    clips = jnp.any(h["clip_norm"] > 0) | jnp.any(h["clip_value"] > 0)

    def clip(g):
        g = compile_lib.clip_rows_by_norm(jnp, g, h["clip_norm"][:, None])
        c = h["clip_value"][:, None]
        return jnp.where(c > 0, jnp.clip(g, -c, c), g)

    def init_fn(params):
        flat = _flatten(params)
        zeros = jnp.zeros_like(flat)
        keys = jax.vmap(compile_lib.seed_words)(seeds)
        return PopulationState(jnp.zeros(runs, jnp.int32), zeros, zeros, zeros,
                               jnp.zeros((runs, shape.max_states, flat.shape[1]), flat.dtype),
                               zeros, keys)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        g = _flatten(updates)
        w = _flatten(params)
        g = when(clips, clip, lambda g: g, g)  # a pass over all runs, when any clips
        # A moment nobody reads is not updated.
        m, v, gamma = (
            when(moments[name],
                         lambda old, x, b: step_lib.ema(jnp, old, x, b[:, None]),
                         lambda old, x, b: old, old, x, h[beta])
            for name, old, x, beta in (("m", state.m, g, "beta1"), ("v", state.v, g * g, "beta2"),
                                       ("gamma", state.gamma, g * g * g, "beta3"))
        )
        # Runs of one candidate step together; a run whose state its caller
        # froze (a training loop may keep a diverged run's) must not hold back
        # its candidate's live runs (its update is dropped).
        step = state.count.reshape(-1, runs_per_candidate).max(axis=1)
        scalars = _run_scalars(table, step, runs_per_candidate, h, total_steps)
        base = {"g": g, "w": w, "m": m, "v": v, "gamma": gamma}
        u_expr = rows.update
        ints, i_layout = _pack([
            ("operands", rows.operands), ("num_operands", rows.num_operands),
            ("num_constants", rows.num_constants), ("num_states", rows.num_states),
            *((f, getattr(u_expr, f)) for f in ExprArrays._fields),
            ("states", rows.states)])
        floats, f_layout = _pack([
            ("constants", rows.constants), ("decays", scalars["decays"]), ("eps", h["eps"]),
            *((k, scalars[k]) for k in ("t", "frac", "bc:m", "bc:v", "bc:gamma"))])
        packed, layout = _Packed(ints, floats.astype(g.dtype)), (i_layout, f_layout)
        if strategy == "vmap":
            base = {**base, **{kind: _draws(kind, state.key, state.count, *g.shape[1:], g.dtype)
                               for kind in ("noise", "uniform")}}
            direction, new_states = jax.vmap(
                lambda pk, base, st: _vmap_step(pk, layout, shape, base, st)
            )(packed, base, state.states)
        else:
            direction, new_states = _loop_over_candidates(
                packed, layout, shape, base, state.states, runs_per_candidate,
                state.key, state.count, lambda *args: _draws(*args, *g.shape[1:], g.dtype))
        # Momentum and the update, over all runs at once: a few wide passes
        # rather than a candidate's dozen row passes each.
        direction, trace = step_lib.momentum(jnp, rows.momentum[:, None], h["momentum"][:, None],
                                             direction, state.trace)
        lr = (h["learning_rate"] * scalars["schedule"])[:, None]
        u = step_lib.scaled_update(jnp, direction, w, h["weight_decay"][:, None], lr)
        u = u.astype(g.dtype)
        new_state = PopulationState(state.count + 1, m, v, gamma, new_states, trace, state.key)
        return _unflatten(u, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
