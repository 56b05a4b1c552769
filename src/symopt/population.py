"""The population engine: one optax transformation that steps many graphs at once.

This module owns :func:`optimizer`, which turns P graphs encoded as arrays
(:mod:`symopt.program`) into one optax transformation over a *batch of runs*
(pytrees with a leading axis R; run ``r`` uses candidate ``r //
runs_per_candidate``), and the two JAX strategies that step them. Its updates
are those of :func:`symopt.to_optax` of each graph
(``tests/test_population.py``) because it reads the same definitions: the
operators and operands (:mod:`symopt.ops`), the parts of the step every graph
shares (:mod:`symopt.step`), the schedules and decays, tabulated per step
(:mod:`symopt.tables`), and the random draws (:mod:`symopt.draws`).

Only a graph's direction differs from run to run, so only it is computed per
run: the run's step picks its operands and operators with ``lax.switch`` and
reads them from a small table of its operand slots, constants, recurrent
states and nodes. Clipping, the moment EMAs, bias correction, momentum and the
update are computed over all runs at once, in a few wide passes. The runs are
stepped in one of three ways (``strategy``):

* ``"loop"`` (the default on CPU): a ``fori_loop`` over candidates, then over
  the operand slots and active nodes of the candidate's graph. Each switch is
  a real branch, so a run pays only for the operators its graph uses.
* ``"vmap"`` (the default on GPU/TPU: :data:`ACCELERATOR_STRATEGY`):
  ``jax.vmap`` over runs, where a switch computes all its branches and
  selects: more flops, in a few wide kernels, and no ``lax.cond`` and no loop
  whose trip count differs per run, which on an accelerator waits on the host
  at every iteration.
* ``"fused"`` (chosen with ``strategy="fused"``; ``auto`` will pick it on
  GPU/TPU once it is measured there): one Pallas kernel (:mod:`symopt.fused`)
  over (run, parameter block). A block belongs to one run, so its switches
  are real branches on that run's scalars, and it reads the run's gradient,
  weights, moments, trace and states once and writes the update, moments,
  trace and states once, in place (on GPU only those its graph uses): the
  moment EMAs, the graph, momentum and the update in one pass over the run's
  arrays, where vmap makes a pass per operation. Noise and dropout draws are
  hashed inside the kernel, where a block reads them; only clipping by global
  norm (a reduction over the run) is computed before it, by XLA. Where the
  kernel does not compile for a backend and program shape, the step falls
  back to ``"vmap"`` with a warning (once per shape and dtype). On CPU it runs
  in Pallas's interpret mode, for the tests.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from symopt import draws as draws_lib
from symopt import fused, ops
from symopt import step as step_lib
from symopt import tables as tables_lib
from symopt.program import (
    BINARY_NAMES,
    OPERAND_NAMES,
    STRATEGIES,
    UNARY_NAMES,
    ExprArrays,
    Program,
    ProgramShape,
)

# Node-loop iterations per trip in the vmap strategy: on accelerators each trip
# costs a host round-trip, and each unrolled iteration costs compile time; 2
# is where the step stops getting faster (docs/benchmarks.md, "vmap unroll").
_NODE_UNROLL = 2


class Moments(NamedTuple):
    """One value for each moment EMA: ``m`` (of g, with beta1), ``v`` (of
    g**2, beta2) and ``gamma`` (of g**3, beta3)."""

    m: Any
    v: Any
    gamma: Any


class RunScalars(NamedTuple):
    """The step-dependent scalars of every run at its candidate's step: what
    :class:`symopt.compile.StepScalars` is to one graph, over runs."""

    step: jax.Array  # [R] t, 0-based, as a float
    frac: jax.Array  # [R] t / T
    schedule: jax.Array  # [R] learning-rate multiplier (held past T)
    decays: jax.Array  # [R, K] decay multiplier of each operand slot (held past T)
    bias: Moments  # [R] each: 1 - beta**(t+1), or 1 where not bias-corrected


class RunArrays(NamedTuple):
    """What a run's operands read over the weights: [R, L] arrays (one run's
    rows inside the step). The moments are not bias-corrected. ``noise`` and
    ``uniform`` are the draws, or functions making them on demand."""

    g: Any
    w: Any
    m: Any
    v: Any
    gamma: Any
    noise: Any = None
    uniform: Any = None


class RunInts(NamedTuple):
    """The integer fields of a run's graph (:class:`Program`'s, per run)."""

    operands: jax.Array  # [R, K]
    num_operands: jax.Array  # [R]
    num_constants: jax.Array  # [R]
    num_states: jax.Array  # [R]
    update: ExprArrays  # [R, N]
    states: jax.Array  # [R, S]


class RunFloats(NamedTuple):
    """The float fields of a run's step."""

    constants: jax.Array  # [R, C]
    eps: jax.Array  # [R]
    scalars: RunScalars  # its schedule None: it scales the update, outside the step


def _betas(hparams) -> Moments:
    return Moments(hparams.beta1, hparams.beta2, hparams.beta3)


def _reads(operands: jax.Array, num_operands: jax.Array, field: str) -> jax.Array:
    """Per graph (or run): does an operand slot in use read the step context's
    ``field`` (its source has the placeholder)? ``[P]`` bools."""
    slot_used = jnp.arange(operands.shape[-1]) < num_operands[:, None]
    ids = [i for i, n in enumerate(OPERAND_NAMES) if f"{{{field}}}" in ops.OPERANDS[n].source]
    return jnp.any(jnp.isin(operands, jnp.asarray(ids)) & slot_used, axis=-1)


def uses_moments(program: Program) -> Moments:
    """Population-wide flags: does any graph read m, v, gamma? (bools)."""
    return Moments(*(jnp.any(_reads(program.operands, program.num_operands, moment))
                     for moment in Moments._fields))


def _run_scalars(tables: tables_lib.StepTables, step: jax.Array, runs_per_candidate: int,
                 hparams, total_steps: int) -> RunScalars:
    """The scalars of every run at its candidate's ``step`` [P]."""
    now = tables_lib.at_step(tables, step, jnp)
    per_run = lambda x: jnp.repeat(x, runs_per_candidate, axis=0)  # noqa: E731
    t = per_run(step).astype(hparams.learning_rate.dtype)
    bias = Moments(*(jnp.where(hparams.bias_correction > 0,
                               step_lib.bias_correction(jnp, beta, t), 1.0)
                     for beta in _betas(hparams)))
    return RunScalars(step=t, frac=t / total_steps, schedule=per_run(now.schedule),
                      decays=per_run(now.decays), bias=bias)


# --------------------------------------------------------------------------
# One run's step.


def _row(x: jax.Array, i) -> jax.Array:
    """``x[i]`` for a traced ``i``: the primitive itself, which traces in a
    fraction of the time of NumPy-style indexing (the loop strategy indexes
    per run hundreds of times while its program is traced)."""
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False)


def _node_value(read, left, right, op, a, b, uniform):
    """``op(left(read(a)), right(read(b)))`` with switched operators, where
    ``read(i)`` is entry ``i`` of the run's value table.

    ``uniform`` is the dropout draw, or a function returning it: then only a
    dropout branch draws it, so a run without dropout never pays for it.
    """
    draw = uniform if callable(uniform) else lambda: uniform
    unary = [lambda x, name=name: ops.bounded_fn(name, 1)(
        jnp, x, draw() if ops.UNARY[name].random else None) for name in UNARY_NAMES]
    binary = [lambda x, y, name=name: ops.bounded_fn(name, 2)(jnp, x, y, None)
              for name in BINARY_NAMES]
    x = jax.lax.switch(left, unary, read(a))
    y = jax.lax.switch(right, unary, read(b))
    return jax.lax.switch(op, binary, x, y)


def _eval_nodes(table, expr: ExprArrays, first: int, uniform, length=None,
                unroll: int = 1) -> jax.Array:
    """Fills ``table[first + j]`` with node ``j``'s value for the used nodes
    (or the first ``length``)."""

    def body(j, table):
        value = _node_value(functools.partial(_row, table), expr.left[j], expr.right[j],
                            expr.op[j], expr.a[j], expr.b[j], uniform)
        return jax.lax.dynamic_update_index_in_dim(table, value, first + j, 0)

    length = expr.length if length is None else length
    return jax.lax.fori_loop(0, length, body, table, unroll=unroll)


class _RunContext:
    """A :class:`symopt.ops.StepContext` for one run whose arrays are read
    (sliced, bias-corrected) only when an operand asks for them: inside a
    switch branch, so a run pays for the arrays its operands use."""

    def __init__(self, arrays: RunArrays, r, scalars: RunScalars, eps):
        self._arrays, self._r, self._bias = arrays, r, scalars.bias
        self.eps, self.step, self.frac = eps, scalars.step, scalars.frac

    def __getattr__(self, name: str) -> jax.Array:
        if name.startswith("_"):
            raise AttributeError(name)
        x = getattr(self._arrays, name)
        if callable(x):  # drawn on demand (the loop strategy's noise and dropout draws)
            x = x()
        elif self._r is not None:
            x = _row(x, self._r)
        if name in Moments._fields:
            x = x / getattr(self._bias, name)
        return x


class _Packed(NamedTuple):
    """Every run's :class:`RunInts` and :class:`RunFloats` packed in one int
    and one float array (or the layouts of the two): the loop strategy then
    slices two arrays per run rather than dozens (each slice is an operation
    with a fixed cost on CPU)."""

    ints: Any  # int32 [R, Ni]
    floats: Any  # float [R, Nf]


class _Layout(NamedTuple):
    """Where each leaf of a packed record lies: ``(start, size, is_scalar)``."""

    treedef: Any
    leaves: tuple[tuple[int, int, bool], ...]


def _pack(record) -> tuple[jax.Array, _Layout]:
    """A record of [R] and [R, n] arrays as one [R, N] array."""
    leaves, treedef = jax.tree.flatten(record)
    parts, layout, start = [], [], 0
    for x in leaves:
        scalar = x.ndim == 1
        x = x[:, None] if scalar else x
        layout.append((start, x.shape[1], scalar))
        parts.append(x)
        start += x.shape[1]
    return jnp.concatenate(parts, axis=1), _Layout(treedef, tuple(layout))


def _unpack(vector: jax.Array, layout: _Layout):
    """One run's record from its packed ``vector``."""
    return layout.treedef.unflatten([
        jax.lax.index_in_dim(vector, start, keepdims=False) if scalar
        else jax.lax.slice_in_dim(vector, start, start + size)
        for start, size, scalar in layout.leaves])


def _run_fields(packed: _Packed, layout: _Packed, arrays: RunArrays,
                r) -> tuple[RunInts, RunFloats, _RunContext]:
    """One run's ints and floats, and its StepContext."""
    ints, floats = _unpack(packed.ints, layout.ints), _unpack(packed.floats, layout.floats)
    return ints, floats, _RunContext(arrays, r, floats.scalars, floats.eps)


def _operand_value(name: str, ctx: _RunContext) -> jax.Array:
    g = ctx.g
    return jnp.broadcast_to(ops.OPERANDS[name].fn(jnp, ctx), g.shape).astype(g.dtype)


def _slot_value(operand: jax.Array, decay: jax.Array) -> jax.Array:
    """An operand slot's table entry: the operand times its decay, sanitized."""
    return ops.sanitize(jnp, operand * decay)


def _run_step(packed: _Packed, layout: _Packed, shape: ProgramShape, arrays: RunArrays, r,
              states, table, directions):
    """One run's update direction in the loop strategy, with real branches.

    ``packed`` holds the run's graph and scalars (see :func:`_pack`);
    ``arrays`` the runs' gradients, weights, moments and draws. ``table`` is
    scratch space [table_size, L] whose contents do not matter (every entry a
    valid program reads is written first): the previous run's, to save
    zeroing it. ``r`` is this run's index into the arrays of all runs
    (``states`` [R, S, L] and ``directions`` [R, L]), which get this run's
    rows written in place and are returned as ``(directions, states,
    table)``: a state the graph does not have is neither read nor written.
    """
    ints, floats, ctx = _run_fields(packed, layout, arrays, r)
    g = ctx.g
    operand_fns = [lambda name=name: _operand_value(name, ctx) for name in OPERAND_NAMES]
    decays = floats.scalars.decays
    put = jax.lax.dynamic_update_index_in_dim

    def fill_slot(k, table):
        return put(table, _slot_value(jax.lax.switch(ints.operands[k], operand_fns), decays[k]),
                   k, 0)

    table = jax.lax.fori_loop(0, ints.num_operands, fill_slot, table)
    # Only the constant and state rows the graph has, each written in place:
    # most graphs have none.
    start = shape.max_operands
    if shape.max_constants:
        table = jax.lax.fori_loop(0, ints.num_constants, lambda j, table: put(
            table, jnp.broadcast_to(floats.constants[j], g.shape), start + j, 0), table)
    start += shape.max_constants
    if shape.max_states:
        table = jax.lax.fori_loop(0, ints.num_states, lambda j, table: put(
            table, _row(_row(states, r), j), start + j, 0), table)
    update = ints.update
    table = _eval_nodes(table, update, start + shape.max_states, lambda: ctx.uniform)
    if shape.max_states:
        states = jax.lax.fori_loop(0, ints.num_states, lambda j, states: states.at[r, j].set(
            _row(table, ints.states[j])), states)
    return put(directions, _row(table, update.root), r, 0), states, table


def _vmap_step(packed: _Packed, layout: _Packed, shape: ProgramShape, arrays: RunArrays,
               states):
    """One run's step in the vmap strategy (arrays of one run: ``states``
    [S, L]), with no loop whose trip count differs per run.

    Under ``vmap`` every switch computes all its branches and selects, so each
    operand is computed once and the slots gather from them; constants and
    states are concatenated into the table, and the node loop runs a static
    ``shape.max_nodes`` iterations (unrolled by ``_NODE_UNROLL``). Returns
    ``(direction, states)``.
    """
    ints, floats, ctx = _run_fields(packed, layout, arrays, None)
    g = ctx.g
    every = jnp.stack([_operand_value(name, ctx) for name in OPERAND_NAMES])
    slots = _slot_value(every[ints.operands], floats.scalars.decays[:, None])
    constants = jnp.broadcast_to(floats.constants[:, None], (shape.max_constants, *g.shape))
    nodes = jnp.zeros((shape.max_nodes, *g.shape), g.dtype)
    table = jnp.concatenate([slots, constants.astype(g.dtype), states, nodes])
    table = _eval_nodes(table, ints.update, shape.table_size - shape.max_nodes, ctx.uniform,
                        shape.max_nodes, _NODE_UNROLL)
    return table[ints.update.root], table[ints.states]


# --------------------------------------------------------------------------
# The fused strategy: one run's step over one parameter block, as the body of
# the Pallas kernel that symopt.fused launches over (run, block).


class _Reads(NamedTuple):
    """Per run, 0 or 1: does its step read the weights (an operand or weight
    decay), m, v, gamma? A lazy kernel loads only what its run reads."""

    w: Any
    m: Any
    v: Any
    gamma: Any


class _FusedInts(NamedTuple):
    """The fused kernel's integer scalars of a run."""

    run: RunInts
    momentum: jax.Array  # [R] MOMENTUM_TYPES index
    reads: _Reads


class _FusedFloats(NamedTuple):
    """The fused kernel's float scalars of a run: the rest of the step's."""

    run: RunFloats
    betas: Moments
    momentum: jax.Array  # [R] the trace's decay
    weight_decay: jax.Array
    learning_rate: jax.Array  # [R] times the schedule


class _TableRow:
    """Columns ``start .. start + size`` of one run's row of a scalar table
    (a kernel ref), each loaded when indexed with a Python int."""

    def __init__(self, block: fused.Block, ref, start: int, size: int):
        self._block, self._ref, self._start, self._size = block, ref, start, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: int) -> jax.Array:
        if not 0 <= i < self._size:
            raise IndexError(i)
        return self._block.scalar(self._ref, self._start + i)


def _load_row(block: fused.Block, ref, layout: _Layout):
    """One run's record (:func:`_pack`'s layout) from a kernel's scalar table:
    scalar fields loaded, vector fields as :class:`_TableRow`."""
    return layout.treedef.unflatten([
        block.scalar(ref, start) if scalar else _TableRow(block, ref, start, size)
        for start, size, scalar in layout.leaves])


def _switch_read(entries: Sequence[jax.Array], i) -> jax.Array:
    """``entries[i]`` for a scalar ``i``: a branch per entry (a kernel has no
    dynamic indexing into values)."""
    return jax.lax.switch(i, [lambda e=e: e for e in entries])


def _fused_block(layout: _Packed, shape: ProgramShape, block: fused.Block, tables, inputs,
                 outputs) -> None:
    """The fused kernel's body: one run's whole step over one block.

    Reads the block of ``inputs`` (g clipped, w, m, v, gamma, trace, then
    the states [S, ...] where the shape has states) and writes ``outputs``
    (the update, m, v, gamma, trace, states), the moments and states in
    place. ``tables`` are the runs' packed ints and floats and their draws'
    streams (:func:`symopt.draws.step_stream`, [R, 1]): a block that reads
    noise or dropout draws hashes its own elements, so no draw is stored.
    The value table is a list of block values, filled slot by slot and node
    by node (statically unrolled, each a real branch on the run's scalars);
    a lazy block loads and stores only what its run's graph uses.
    """
    ints, floats = _load_row(block, tables[0], layout.ints), _load_row(
        block, tables[1], layout.floats)
    stream = block.scalar(tables[2], 0)
    g_ref, w_ref, m_ref, v_ref, gamma_ref, trace_ref = inputs[:6]
    u_ref, m_out, v_out, gamma_out, trace_out = outputs[:5]
    g = g_ref[...]
    reads = jax.tree.map(lambda flag: flag != 0, ints.reads)

    def moment(flag, ref, out, x, beta):
        def update():
            new = step_lib.ema(jnp, ref[...], x(), beta)
            out[...] = new
            return new

        return block.where(flag, update)

    m, v, gamma = (moment(*args) for args in zip(
        (reads.m, reads.v, reads.gamma), (m_ref, v_ref, gamma_ref), (m_out, v_out, gamma_out),
        (lambda: g, lambda: g * g, lambda: g * g * g), floats.betas))
    w = block.where(reads.w, lambda: w_ref[...])

    def units(lane):
        return draws_lib.element_units(jnp, block.elements(), stream, lane, block.dtype)

    arrays = RunArrays(g=g, w=w, m=m, v=v, gamma=gamma, uniform=lambda: units(
        draws_lib.UNIFORM_LANE), noise=lambda: draws_lib.normal_units(
            jnp, units(draws_lib.NOISE_LANE), block.dtype))
    ctx = _RunContext(arrays, None, floats.run.scalars, floats.run.eps)
    run = ints.run
    zeros = jnp.zeros(block.shape, block.dtype)
    operand_fns = [lambda name=name: _operand_value(name, ctx) for name in OPERAND_NAMES]
    table = [jax.lax.cond(k < run.num_operands, lambda k=k: _slot_value(
        jax.lax.switch(run.operands[k], operand_fns), floats.run.scalars.decays[k]),
        lambda: zeros) for k in range(shape.max_operands)]
    table += [jnp.broadcast_to(floats.run.constants[j], block.shape).astype(block.dtype)
              for j in range(shape.max_constants)]
    states_ref = inputs[6] if shape.max_states else None
    table += [block.where(j < run.num_states, lambda j=j: states_ref[j])
              for j in range(shape.max_states)]
    expr = run.update
    for j in range(shape.max_nodes):
        read = functools.partial(_switch_read, tuple(table))
        table.append(jax.lax.cond(j < expr.length, lambda j=j, read=read: _node_value(
            read, expr.left[j], expr.right[j], expr.op[j], expr.a[j], expr.b[j],
            arrays.uniform), lambda: zeros))
    for j in range(shape.max_states):
        new = _switch_read(table, run.states[j])
        block.when(j < run.num_states, lambda j=j, new=new: outputs[5].__setitem__(j, new))
    kind = ints.momentum
    trace = block.where(kind > 0, lambda: trace_ref[...])
    direction, trace = step_lib.momentum(jnp, kind, floats.momentum,
                                         _switch_read(table, expr.root), trace)
    block.when(kind > 0, lambda: trace_out.__setitem__(Ellipsis, trace))
    u = step_lib.scaled_update(jnp, direction, w, floats.weight_decay, floats.learning_rate)
    u_ref[...] = u.astype(u_ref.dtype)


def _fused_step(layout: _Packed, shape: ProgramShape, platform: str, packed: _Packed,
                g: jax.Array, w: jax.Array, state: PopulationState):
    """The fused strategy's step of all runs: ``(update, m, v, gamma, trace,
    states)``, [R, Lp] each ([R, S, Lp] the states)."""
    like = jax.ShapeDtypeStruct(g.shape, g.dtype)
    streams = jax.vmap(lambda key, count: draws_lib.step_stream(jnp, key, count))(
        state.key, state.count)
    inputs = [g, w, state.m, state.v, state.gamma, state.trace]
    outputs = [like] * 5
    aliases = {2: 1, 3: 2, 4: 3, 5: 4}
    if shape.max_states:
        inputs.append(state.states)
        outputs.append(jax.ShapeDtypeStruct(state.states.shape, state.states.dtype))
        aliases[6] = 5
    out = fused.run_blocks(functools.partial(_fused_block, layout, shape), (*packed, streams),
                           inputs, outputs, aliases, platform)
    return (*out[:5], out[5] if shape.max_states else state.states)


def _fused_update(shape: ProgramShape, rows: Program, run_ints: RunInts,
                  run_floats: RunFloats, lr: jax.Array, g: jax.Array, w: jax.Array,
                  state: PopulationState):
    """The fused strategy's update: ``(update [R, Lp], new state)``, or None
    where its kernel does not compile (the caller then steps with vmap).
    ``g`` and ``w`` are every run's (clipped) gradient and weights."""
    h, platform = rows.hparams, fused.platform()
    reads = _Reads(_reads(rows.operands, rows.num_operands, "w") | (h.weight_decay != 0),
                   *(_reads(rows.operands, rows.num_operands, f) for f in Moments._fields))
    ints, i_layout = _pack(_FusedInts(run=run_ints, momentum=rows.momentum,
                                      reads=jax.tree.map(lambda x: x.astype(jnp.int32), reads)))
    floats, f_layout = _pack(_FusedFloats(run=run_floats, betas=_betas(h), momentum=h.momentum,
                                          weight_decay=h.weight_decay, learning_rate=lr))
    layout, dtype = _Packed(i_layout, f_layout), g.dtype
    if platform in fused.NATIVE and _fused_error(layout, shape, dtype, platform,
                                                 fused.block_size(platform),
                                                 fused.LAZY.get(platform, True)):
        return None
    u, m, v, gamma, trace, states = _fused_step(layout, shape, platform,
                                                _Packed(ints, floats.astype(dtype)), g, w, state)
    return u, PopulationState(state.count + 1, m, v, gamma, states, trace, state.key)


@functools.cache
def _fused_error(layout: _Packed, shape: ProgramShape, dtype, platform: str,
                 rows: int, lazy: bool) -> str | None:
    """Why the fused kernel does not compile for ``platform`` (None if it
    does), checked once on one run of one block (a second compile of the
    kernel, once per process); warns when it does not."""
    del rows, lazy  # the kernel's, in the cache key
    length = fused.block_size(platform)
    struct = lambda *s, dtype=dtype: jax.ShapeDtypeStruct(s, dtype)  # noqa: E731
    ints, floats = (struct(1, leaves[-1][0] + leaves[-1][1], dtype=d) for leaves, d in (
        (layout.ints.leaves, jnp.int32), (layout.floats.leaves, dtype)))
    state = PopulationState(struct(1, dtype=jnp.int32), *[struct(1, length)] * 3,
                            struct(1, shape.max_states, length), struct(1, length),
                            struct(1, 2, dtype=jnp.uint32))
    error = fused.compiles(lambda *args: _fused_step(layout, shape, platform, *args),
                           (_Packed(ints, floats), struct(1, length), struct(1, length), state),
                           platform)
    if error is not None:
        warnings.warn(f"symopt: the fused population step does not compile on {platform} "
                      f"for {shape} in {jnp.dtype(dtype).name} ({error}); stepping with the "
                      f"vmap strategy instead", RuntimeWarning, stacklevel=2)
    return error


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


def _flatten(tree, length: int | None = None) -> jax.Array:
    """A pytree of [R, ...] leaves as one [R, L] array, zero-padded to
    ``length`` columns when given."""
    leaves = [x.reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)]
    size = sum(x.shape[1] for x in leaves)
    if length is not None and length > size:
        leaves.append(jnp.zeros((leaves[0].shape[0], length - size), leaves[0].dtype))
    return jnp.concatenate(leaves, axis=1)


def _unflatten(flat: jax.Array, like):
    """``flat`` [R, L or more] as a pytree like ``like`` (padding dropped)."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = np.cumsum([int(np.prod(x.shape[1:])) for x in leaves])
    parts = jnp.split(flat, sizes, axis=1)
    return treedef.unflatten([p.reshape(x.shape).astype(x.dtype) for p, x in zip(parts, leaves)])


def _flat_length(tree) -> int:
    return sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(tree))


def _loop_over_candidates(packed: _Packed, layout: _Packed, shape: ProgramShape,
                          arrays: RunArrays, states: jax.Array, runs_per_candidate: int,
                          seed_words: jax.Array, counts: jax.Array, draws):
    """The loop strategy: a ``fori_loop`` over candidates, each step covering
    all of the candidate's runs at once (its S runs' [L] rows side by side as
    one [S*L] row: same program, same scalars), so that the per-operation cost
    of the switches is paid once per candidate rather than once per run.

    Noise and dropout draws (``draws(kind, seed_words, counts)``, [S, L])
    are made inside the operand and operator branches that read them, so
    only candidates that use them pay for random numbers."""
    s = runs_per_candidate
    runs, length = arrays.g.shape
    group = lambda x: x.reshape(runs // s, s * length)  # noqa: E731 ([R, L] -> [P, S*L])
    grouped = jax.tree.map(group, arrays)
    words, counts = seed_words.reshape(runs // s, s, -1), counts.reshape(runs // s, s)
    num_states = states.shape[1]
    # Explicit sizes: with no states (num_states 0) a -1 cannot be inferred.
    states = states.reshape(runs // s, s, num_states, length).swapaxes(1, 2).reshape(
        runs // s, num_states, s * length)
    packed = _Packed(packed.ints[::s], packed.floats[::s])

    def body(p, acc):
        run_arrays = grouped._replace(**{
            kind: lambda kind=kind: draws(kind, _row(words, p), _row(counts, p)).reshape(-1)
            for kind in ("noise", "uniform")})
        directions, states, table = acc
        return _run_step(_Packed(_row(packed.ints, p), _row(packed.floats, p)), layout, shape,
                         run_arrays, p, states, table, directions)

    table = jnp.zeros((shape.table_size, s * length), arrays.g.dtype)
    directions, states, _ = jax.lax.fori_loop(
        0, runs // s, body, (jnp.zeros_like(grouped.g), states, table))
    states = states.reshape(runs // s, num_states, s, length).swapaxes(1, 2).reshape(
        runs, num_states, length)
    return directions.reshape(runs, length), states


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _draws(kind: str, words: jax.Array, counts: jax.Array, length: int, dtype) -> jax.Array:
    """Noise or uniform samples [runs, L]: all weights in one draw, the same
    numbers as to_optax draws leaf by leaf.

    Jitted so that its trace is made once and reused: the loop strategy
    calls it in every operand and operator branch that reads a draw."""
    draw = draws_lib.noise_draws if kind == "noise" else draws_lib.uniform_draws
    return jax.vmap(lambda w, c: draw(jnp, w, c, 0, (length,), dtype))(words, counts)


def _when(flag, fn, otherwise, *args):
    """``fn(*args)`` where the unbatched ``flag`` is set, else
    ``otherwise(*args)``: a real branch (``lax.cond``), the loop strategy's
    way to skip population-wide work nobody needs."""
    return jax.lax.cond(flag, fn, otherwise, *args)


def _always(flag, fn, otherwise, *args):
    """``fn(*args)`` whatever ``flag``: the vmap strategy's. On an
    accelerator a ``lax.cond`` costs more than the work it would skip, which
    is a few elementwise passes."""
    del flag, otherwise
    return fn(*args)


ACCELERATOR_STRATEGY = "vmap"
"""What ``"auto"`` picks on GPU and TPU. ``"vmap"`` until the fused kernel's
updates and speed have been checked on a real GPU (so far it is tested in
Pallas interpret mode and lowered for Triton and Mosaic); ``evaluation.strategy=fused``
selects it, falling back to ``"vmap"`` where its kernel does not compile."""


def default_strategy() -> str:
    """``"loop"`` on CPU; on an accelerator :data:`ACCELERATOR_STRATEGY`, or
    ``"vmap"`` where the fused kernel has no native backend."""
    backend = jax.default_backend()
    if backend == "cpu":
        return "loop"
    if ACCELERATOR_STRATEGY == "fused" and backend not in fused.NATIVE:
        return "vmap"
    return ACCELERATOR_STRATEGY


def resolve_strategy(strategy: str) -> str:
    """``"loop"``, ``"vmap"`` or ``"fused"``: ``strategy``, with ``"auto"``
    resolved for the default backend. Raises ValueError for an unknown one."""
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
    scalars: tables_lib.StepTables | None = None,
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
      strategy: ``"loop"``, ``"vmap"``, ``"fused"`` or ``"auto"`` (see the
        module doc). ``"fused"`` on CPU runs its kernel in Pallas's interpret
        mode (for tests; slow).
      scalars: the step tables, ``tables.step_tables(program, total_steps)``,
        made outside the traced function to spare its compile; by default
        tabulated in the graph. Past ``total_steps``, the schedules and decays
        hold their last step's value.

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
        raise ValueError(f"the step tables are for {tuple(scalars.schedule.shape)} (steps, "
                         f"graphs); this optimizer needs "
                         f"tables.step_tables(program, {total_steps})")
    tables = tables_lib.step_tables(program, total_steps, xp=jnp) if scalars is None else scalars
    clips = jnp.any(h.clip_norm > 0) | jnp.any(h.clip_value > 0)

    def clip(g):
        g = step_lib.clip_rows_by_norm(jnp, g, h.clip_norm[:, None])
        return step_lib.clip_by_value(jnp, g, h.clip_value[:, None])

    def init_fn(params):
        length = _flat_length(params)
        if strategy == "fused":
            length = fused.padded_length(length, fused.platform())
        flat = _flatten(params, length)
        zeros = jnp.zeros_like(flat)
        keys = jax.vmap(draws_lib.seed_words)(seeds)
        return PopulationState(jnp.zeros(runs, jnp.int32), zeros, zeros, zeros,
                               jnp.zeros((runs, shape.max_states, flat.shape[1]), flat.dtype),
                               zeros, keys)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        length = state.m.shape[1]  # padded to whole blocks in the fused strategy
        g = _flatten(updates, length)
        w = _flatten(params, length)
        g = when(clips, clip, lambda g: g, g)  # a pass over all runs, when any clips
        # Runs of one candidate step together; a run whose state its caller
        # froze (a training loop may keep a diverged run's) must not hold back
        # its candidate's live runs (its update is dropped).
        step = state.count.reshape(-1, runs_per_candidate).max(axis=1)
        scalars = _run_scalars(tables, step, runs_per_candidate, h, total_steps)
        run_ints = RunInts(operands=rows.operands, num_operands=rows.num_operands,
                           num_constants=rows.num_constants, num_states=rows.num_states,
                           update=rows.update, states=rows.states)
        run_floats = RunFloats(constants=rows.constants, eps=h.eps,
                               scalars=scalars._replace(schedule=None))
        lr = h.learning_rate * scalars.schedule
        draws = lambda: RunArrays(g, w, None, None, None, **{  # noqa: E731
            kind: _draws(kind, state.key, state.count, length, g.dtype)
            for kind in ("noise", "uniform")})
        if strategy == "fused":
            stepped = _fused_update(shape, rows, run_ints, run_floats, lr, g, w, state)
            if stepped is not None:
                return _unflatten(stepped[0], updates), stepped[1]
        # A moment nobody reads is not updated, and its power of g is not
        # formed (inside the branch: as an operand of the loop strategy's
        # cond it would be computed every step).
        m, v, gamma = (
            when(used, lambda old, g, b, power=power: step_lib.ema(jnp, old, power(g), b[:, None]),
                 lambda old, g, b: old, old, g, beta)
            for used, old, power, beta in zip(
                moments, (state.m, state.v, state.gamma),
                (lambda g: g, lambda g: g * g, lambda g: g * g * g), _betas(h))
        )
        arrays = RunArrays(g=g, w=w, m=m, v=v, gamma=gamma)
        ints, i_layout = _pack(run_ints)
        floats, f_layout = _pack(run_floats)
        packed, layout = _Packed(ints, floats.astype(g.dtype)), _Packed(i_layout, f_layout)
        if strategy != "loop":  # vmap, or fused falling back to it
            arrays = draws()._replace(m=m, v=v, gamma=gamma)
            direction, new_states = jax.vmap(
                lambda pk, arrays, st: _vmap_step(pk, layout, shape, arrays, st)
            )(packed, arrays, state.states)
        else:
            direction, new_states = _loop_over_candidates(
                packed, layout, shape, arrays, state.states, runs_per_candidate,
                state.key, state.count, lambda *args: _draws(*args, *g.shape[1:], g.dtype))
        # Momentum and the update, over all runs at once: a few wide passes
        # rather than a candidate's dozen row passes each.
        direction, trace = step_lib.momentum(jnp, rows.momentum[:, None], h.momentum[:, None],
                                             direction, state.trace)
        u = step_lib.scaled_update(jnp, direction, w, h.weight_decay[:, None], lr[:, None])
        u = u.astype(g.dtype)
        new_state = PopulationState(state.count + 1, m, v, gamma, new_states, trace, state.key)
        return _unflatten(u, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
