"""The fused strategy: one Pallas kernel over (run, parameter block), its body and launch.

This module owns the population engine's ``"fused"`` strategy: what the
kernel computes for one run over one block of its weights (:func:`_block_step`,
over the value table of :mod:`symopt.population.table`), and how it runs on
each backend: the grid, the block layout, where the per-run scalars live, and
whether an output block the kernel leaves unwritten keeps its old value. A
run's moment EMAs, graph, momentum and update are one pass over its arrays,
where the vmap strategy makes a pass per operation; only clipping by global
norm (a reduction over the whole run) is computed before the kernel, by XLA.
Where the kernel does not compile for a backend and program shape,
:func:`update` warns (once per shape and dtype) and returns None, and the
optimizer steps with the vmap strategy instead.

Every array the step reads or writes over the weights is ``[R, ..., Lp]``
(runs first, the flattened weights last, padded to whole blocks) and is seen
by the kernel as ``[..., rows, LANES]`` blocks. The grid is
``(Lp / block, R)``: program ``(j, r)`` reads block ``j`` of run ``r`` of
each input once, runs the body and writes each output block once. A block
belongs to one run, so the body branches on that run's scalars (``lax.cond``
and ``switch`` on scalars: a real branch on every backend) instead of
computing every operator and selecting, as the vmap strategy must. A block
knows where it starts (:meth:`Block.elements`), so counter-based random
draws are hashed in the kernel where they are read, never stored.

Backends:

* GPU: Pallas's Triton backend. Per-run scalar tables are whole arrays read
  one element at a time (loaded scalars); outputs alias their inputs, so a
  block the body does not write keeps its old value and an unused moment or
  state costs no memory traffic (``Block.lazy``).
* TPU: Mosaic, the scalar tables in SMEM. Mosaic copies every output block
  back whether or not it was written, so the body computes and writes every
  output (``Block.lazy`` is False).
* CPU: the same kernel in Pallas's interpret mode, for tests (slow: never a
  speed figure).
"""


from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pl_tpu
from jax.experimental.pallas import triton as pl_triton

from symopt import draws as draws_lib
from symopt import step as step_lib
from symopt.population.packing import Layout, Packed, pack_records
from symopt.population.state import (
    Moments,
    PopulationState,
    RunArrays,
    RunFloats,
    RunInts,
    betas,
)
from symopt.population.table import (
    RunContext,
    node_value,
    reads,
    slot_branches,
)
from symopt.program import Program, ProgramShape

LANES = 128
"""The minor dimension of a block (a TPU vector register's lanes)."""

BLOCK_ROWS = {"gpu": 4, "tpu": 8, "cpu": 8}
"""Rows of :data:`LANES` elements per block, by platform. On a GPU every
value of the graph's table lives in registers for the whole block, so a
block is kept small; a TPU block is one (8, 128) tile per value."""

LAZY = {"gpu": True, "tpu": False, "cpu": True}
"""Whether an output block the body leaves unwritten keeps its input's value
(:attr:`Block.lazy`), by platform: not on TPU, whose pipeline copies every
output block back."""

NUM_WARPS = 4
"""Warps of a Triton program (one block)."""

NATIVE = ("gpu", "tpu")
"""Platforms where the kernel compiles; on CPU it runs interpreted."""

_LOWERING_PLATFORM = {"gpu": "cuda", "tpu": "tpu", "cpu": "cpu"}


def platform() -> str:
    """The platform the kernel is built for: JAX's default backend."""
    return jax.default_backend()


def block_size(platform: str) -> int:
    """Elements of the weights per block on ``platform``."""
    return BLOCK_ROWS.get(platform, BLOCK_ROWS["cpu"]) * LANES


def padded_length(length: int, platform: str) -> int:
    """``length`` rounded up to whole blocks: the fused strategy's arrays over
    the weights have this many columns (the padding is zeros)."""
    block = block_size(platform)
    return max(1, -(-length // block)) * block


class Block(NamedTuple):
    """What the body knows of the block it steps: its run's index (for the
    scalar tables), where it starts in the run's weights, the shape and dtype
    of its values, and ``lazy``: whether an output block left unwritten keeps
    its input's value (then :meth:`where` and :meth:`when` are real
    branches)."""

    run: Any
    start: Any
    shape: tuple[int, ...]
    dtype: Any
    lazy: bool

    def elements(self) -> jax.Array:
        """The uint32 indices of the block's values in its run's weights."""
        rows, lanes = (jax.lax.broadcasted_iota(jnp.uint32, self.shape, axis) for axis in (0, 1))
        return jnp.asarray(self.start).astype(jnp.uint32) + rows * jnp.uint32(LANES) + lanes

    def scalar(self, ref, k: int) -> jax.Array:
        """Column ``k`` of this run's row of a scalar table."""
        return ref[self.run, k]

    def where(self, flag, fn: Callable[[], jax.Array]) -> jax.Array:
        """``fn()`` where ``flag`` is set, else zeros; ``fn()`` always when
        not lazy (every output must then be written with its value)."""
        if not self.lazy:
            return fn()
        return jax.lax.cond(flag, fn, lambda: jnp.zeros(self.shape, self.dtype))

    def when(self, flag, fn: Callable[[], None]) -> None:
        """Runs ``fn`` (which writes outputs) where ``flag`` is set; always
        when not lazy."""
        if not self.lazy:
            fn()
        else:
            jax.lax.cond(flag, fn, lambda: None)


def _compiler_params(platform: str):
    if platform == "gpu":
        return pl_triton.CompilerParams(num_warps=NUM_WARPS, num_stages=1)
    if platform == "tpu":
        return pl_tpu.CompilerParams(dimension_semantics=("parallel", "parallel"))
    return None


def _table_spec(platform: str) -> pl.BlockSpec:
    """A per-run scalar table: the whole array, indexed by run."""
    if platform == "tpu":
        return pl.BlockSpec(memory_space=pl_tpu.SMEM)
    return pl.BlockSpec()


def run_blocks(
    body: Callable[..., None],
    tables: Sequence[jax.Array],
    inputs: Sequence[jax.Array],
    outputs: Sequence[jax.ShapeDtypeStruct],
    aliases: dict[int, int],
    platform: str,
) -> list[jax.Array]:
    """One ``pallas_call`` of ``body`` over every (run, block): the launch.

    Args:
      body: ``body(block, table_refs, input_refs, output_refs)``, the step of
        one block (:class:`Block`); refs of arrays over the weights are
        ``[..., rows, LANES]`` blocks, those of the tables whole ``[R, N]``
        arrays (read with :meth:`Block.scalar`).
      tables: per-run scalar tables, ``[R, N]`` each (any 32-bit dtype).
      inputs: ``[R, ..., Lp]`` arrays, ``Lp`` a multiple of
        :func:`block_size`.
      outputs: the shapes and dtypes of the ``[R, ..., Lp]`` outputs.
      aliases: ``{input index: output index}``: outputs that update an input
        in place (and keep its value where the body does not write them).
      platform: ``"gpu"``, ``"tpu"`` or ``"cpu"`` (interpret mode).

    Returns:
      The outputs, ``[R, ..., Lp]`` each.
    """
    runs, length = inputs[0].shape[0], inputs[0].shape[-1]
    rows = BLOCK_ROWS.get(platform, BLOCK_ROWS["cpu"])
    if length % (rows * LANES):
        raise ValueError(f"the weights' length {length} is not a multiple of the block "
                         f"({rows * LANES}): pad it to fused.padded_length")

    def tiled(shape):  # [R, ..., Lp] -> [R, ..., Lp / LANES, LANES]
        return (*shape[:-1], shape[-1] // LANES, LANES)

    def spec(shape):
        lead = len(shape) - 2
        return pl.BlockSpec((None, *shape[1:-1], rows, LANES),
                            lambda j, r, lead=lead: (r, *(0,) * lead, j, 0))

    def kernel(*refs):
        table_refs = refs[:len(tables)]
        input_refs = refs[len(tables):len(tables) + len(inputs)]
        output_refs = refs[len(tables) + len(inputs):]
        block = Block(run=pl.program_id(1), start=pl.program_id(0) * (rows * LANES),
                      shape=(rows, LANES), dtype=inputs[0].dtype, lazy=LAZY.get(platform, True))
        body(block, table_refs, input_refs, output_refs)

    out = pl.pallas_call(
        kernel,
        grid=(length // (rows * LANES), runs),  # blocks first: a GPU's grid_y is small
        in_specs=[_table_spec(platform)] * len(tables) + [spec(x.shape) for x in inputs],
        out_specs=[spec(o.shape) for o in outputs],
        out_shape=[jax.ShapeDtypeStruct(tiled(o.shape), o.dtype) for o in outputs],
        input_output_aliases={len(tables) + i: o for i, o in aliases.items()},
        compiler_params=_compiler_params(platform),
        interpret=platform not in NATIVE,
        name="symopt_fused_step",
    )(*tables, *(x.reshape(tiled(x.shape)) for x in inputs))
    return [x.reshape(o.shape) for x, o in zip(out, outputs, strict=True)]


def compiles(fn: Callable[..., Any], args: Sequence[jax.ShapeDtypeStruct],
             platform: str) -> str | None:
    """None if ``fn(*args)`` (which launches the kernel) compiles for
    ``platform``, else the error's first line.

    A platform other than the default backend is only lowered (the Triton
    and Mosaic lowerings run in Python, with no device: where an operation
    or a block shape the backend lacks shows).
    """
    try:
        traced = jax.jit(fn).trace(*args)
        if platform == jax.default_backend():
            traced.lower().compile()
        else:
            traced.lower(lowering_platforms=(_LOWERING_PLATFORM.get(platform, platform),))
    except Exception as e:  # noqa: BLE001 (Triton, Mosaic and XLA raise unrelated types)
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[0] if lines else ''}"
    return None


# --------------------------------------------------------------------------
# The kernel's body: one run's step over one block.


class _Reads(NamedTuple):
    """Per run, 0 or 1: does its step read the weights (an operand or weight
    decay), m, v, gamma? A lazy kernel loads only what its run reads."""

    w: Any
    m: Any
    v: Any
    gamma: Any


class _Ints(NamedTuple):
    """The kernel's integer scalars of a run."""

    run: RunInts
    momentum: jax.Array  # [R] MOMENTUM_TYPES index
    reads: _Reads


class _Floats(NamedTuple):
    """The kernel's float scalars of a run: the rest of the step's."""

    run: RunFloats
    betas: Moments
    momentum: jax.Array  # [R] the trace's decay
    weight_decay: jax.Array
    learning_rate: jax.Array  # [R] times the schedule


class _TableRow:
    """Columns ``start .. start + size`` of one run's row of a scalar table
    (a kernel ref), each loaded when indexed with a Python int."""

    def __init__(self, block: Block, ref, start: int, size: int):
        self._block, self._ref, self._start, self._size = block, ref, start, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: int) -> jax.Array:
        if not 0 <= i < self._size:
            raise IndexError(i)
        return self._block.scalar(self._ref, self._start + i)


def _load_row(block: Block, ref, layout: Layout):
    """One run's record (packed with ``layout``) from a kernel's scalar
    table: scalar fields loaded, vector fields as :class:`_TableRow`."""
    return layout.treedef.unflatten([
        block.scalar(ref, start) if scalar else _TableRow(block, ref, start, size)
        for start, size, scalar in layout.leaves])


def _switch_read(entries: Sequence[jax.Array], i) -> jax.Array:
    """``entries[i]`` for a scalar ``i``: a branch per entry (a kernel has no
    dynamic indexing into values)."""
    return jax.lax.switch(i, [lambda e=e: e for e in entries])


def _block_moments(block: Block, flags: _Reads, g: jax.Array, inputs, outputs,
                   decays: Moments) -> Moments:
    """The block's moment EMAs, each updated (and written in place) where its
    run reads it; zeros for the others in a lazy block."""

    def moment(flag, ref, out, power, beta):
        def update():
            new = step_lib.ema(jnp, ref[...], power(), beta)
            out[...] = new
            return new

        return block.where(flag, update)

    return Moments(*(moment(*args) for args in zip(
        (flags.m, flags.v, flags.gamma), inputs[2:5], outputs[1:4],
        (lambda: g, lambda: g * g, lambda: g * g * g), decays, strict=True)))


def _block_table(shape: ProgramShape, block: Block, run: RunInts, floats: RunFloats,
                 ctx: RunContext, uniform, states_ref) -> list[jax.Array]:
    """The block's value table: a list of block values, filled slot by slot
    and node by node (statically unrolled, each a real branch on the run's
    scalars); the entries the run's graph lacks are zeros. ``uniform`` makes
    the dropout draw, in the dropout branches only."""
    zeros = jnp.zeros(block.shape, block.dtype)
    table = [jax.lax.cond(k < run.num_operands, lambda k=k: jax.lax.switch(
        run.operands[k], slot_branches(ctx, floats.scalars.decays[k])),
        lambda: zeros) for k in range(shape.max_operands)]
    table += [jnp.broadcast_to(floats.constants[j], block.shape).astype(block.dtype)
              for j in range(shape.max_constants)]
    table += [block.where(j < run.num_states, lambda j=j: states_ref[j])
              for j in range(shape.max_states)]
    expr = run.update
    for j in range(shape.max_nodes):
        read = functools.partial(_switch_read, tuple(table))
        table.append(jax.lax.cond(j < expr.length, lambda j=j, read=read: node_value(
            read, expr.left[j], expr.right[j], expr.op[j], expr.a[j], expr.b[j],
            uniform), lambda: zeros))
    return table


def _block_step(layout: Packed, shape: ProgramShape, block: Block, tables, inputs,
                outputs) -> None:
    """The kernel's body: one run's whole step over one block.

    Reads the block of ``inputs`` (g clipped, w, m, v, gamma, trace, then
    the states [S, ...] where the shape has states) and writes ``outputs``
    (the update, m, v, gamma, trace, states), the moments and states in
    place. ``tables`` are the runs' packed ints and floats and their draws'
    streams (:func:`symopt.draws.step_stream`, [R, 1]): a block that reads
    noise or dropout draws hashes its own elements, so no draw is stored. A
    lazy block loads and stores only what its run's graph uses.
    """
    ints, floats = _load_row(block, tables[0], layout.ints), _load_row(
        block, tables[1], layout.floats)
    stream = block.scalar(tables[2], 0)
    g_ref, w_ref, trace_ref = inputs[0], inputs[1], inputs[5]
    u_ref, trace_out = outputs[0], outputs[4]
    g = g_ref[...]
    flags = jax.tree.map(lambda flag: flag != 0, ints.reads)
    m, v, gamma = _block_moments(block, flags, g, inputs, outputs, floats.betas)
    w = block.where(flags.w, lambda: w_ref[...])

    def units(lane):
        return draws_lib.element_units(jnp, block.elements(), stream, lane, block.dtype)

    arrays = RunArrays(g=g, w=w, m=m, v=v, gamma=gamma, uniform=lambda: units(
        draws_lib.UNIFORM_LANE), noise=lambda: draws_lib.normal_units(
            jnp, units(draws_lib.NOISE_LANE), block.dtype))
    ctx = RunContext(arrays, None, floats.run.scalars, floats.run.eps)
    run = ints.run
    table = _block_table(shape, block, run, floats.run, ctx, arrays.uniform,
                         inputs[6] if shape.max_states else None)
    for j in range(shape.max_states):
        new = _switch_read(table, run.states[j])
        block.when(j < run.num_states, lambda j=j, new=new: outputs[5].__setitem__(j, new))
    kind = ints.momentum
    trace = block.where(kind > 0, lambda: trace_ref[...])
    direction, trace = step_lib.momentum(jnp, kind, floats.momentum,
                                         _switch_read(table, run.update.root), trace)
    block.when(kind > 0, lambda: trace_out.__setitem__(Ellipsis, trace))
    u = step_lib.scaled_update(jnp, direction, w, floats.weight_decay, floats.learning_rate)
    u_ref[...] = u.astype(u_ref.dtype)


# --------------------------------------------------------------------------
# The strategy's step of all runs.


def _step(layout: Packed, shape: ProgramShape, target: str, packed: Packed,
          g: jax.Array, w: jax.Array, state: PopulationState):
    """Every run's step on ``target``: ``(update, m, v, gamma, trace,
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
    out = run_blocks(functools.partial(_block_step, layout, shape), (*packed, streams),
                     inputs, outputs, aliases, target)
    return (*out[:5], out[5] if shape.max_states else state.states)


def update(shape: ProgramShape, rows: Program, run_ints: RunInts, run_floats: RunFloats,
           lr: jax.Array, g: jax.Array, w: jax.Array, state: PopulationState):
    """The fused strategy's update: ``(update [R, Lp], new state)``, or None
    where its kernel does not compile, or where the program shape has the
    per-leaf operators (``leaf_ops``), which a block of weights cannot compute:
    the caller then steps with vmap.
    ``rows`` is the program with a row per run; ``g`` and ``w`` are every
    run's (clipped) gradient and weights."""
    if shape.leaf_ops:
        # A block sees a slice of one run's weights, not its leaves: a
        # population that may use the per-leaf operators steps with vmap.
        return None
    h, target = rows.hparams, platform()
    flags = _Reads(reads(rows.operands, rows.num_operands, "w") | (h.weight_decay != 0),
                   *(reads(rows.operands, rows.num_operands, f) for f in Moments._fields))
    packed, layout = pack_records(
        _Ints(run=run_ints, momentum=rows.momentum,
              reads=jax.tree.map(lambda x: x.astype(jnp.int32), flags)),
        _Floats(run=run_floats, betas=betas(h), momentum=h.momentum,
                weight_decay=h.weight_decay, learning_rate=lr), g.dtype)
    if target in NATIVE and _compile_error(layout, shape, g.dtype, target, block_size(target),
                                           LAZY.get(target, True)):
        return None
    u, m, v, gamma, trace, states = _step(layout, shape, target, packed, g, w, state)
    return u, PopulationState(state.count + 1, m, v, gamma, states, trace, state.key)


@functools.cache
def _compile_error(layout: Packed, shape: ProgramShape, dtype, target: str,
                   rows: int, lazy: bool) -> str | None:
    """Why the kernel does not compile for ``target`` (None if it does),
    checked once on one run of one block (a second compile of the kernel,
    once per process); warns when it does not."""
    del rows, lazy  # the kernel's, in the cache key
    length = block_size(target)
    struct = lambda *s, dtype=dtype: jax.ShapeDtypeStruct(s, dtype)  # noqa: E731
    ints, floats = (struct(1, leaves[-1][0] + leaves[-1][1], dtype=d) for leaves, d in (
        (layout.ints.leaves, jnp.int32), (layout.floats.leaves, dtype)))
    state = PopulationState(struct(1, dtype=jnp.int32), *[struct(1, length)] * 3,
                            struct(1, shape.max_states, length), struct(1, length),
                            struct(1, 2, dtype=jnp.uint32))
    error = compiles(lambda *args: _step(layout, shape, target, *args),
                     (Packed(ints, floats), struct(1, length), struct(1, length), state), target)
    if error is not None:
        warnings.warn(f"symopt: the fused population step does not compile on {target} "
                      f"for {shape} in {jnp.dtype(dtype).name} ({error}); stepping with the "
                      f"vmap strategy instead", RuntimeWarning, stacklevel=2)
    return error
