"""The fused strategy's kernel launch: one Pallas call over (run, parameter block).

This module owns how the population engine's ``"fused"`` strategy
(:mod:`symopt.population`, which owns what the kernel computes) runs on each
backend: the grid, the block layout, where the per-run scalars live, and
whether an output block the kernel leaves unwritten keeps its old value.

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

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pl_tpu
from jax.experimental.pallas import triton as pl_triton

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
    """One ``pallas_call`` of ``body`` over every (run, block).

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
    return [x.reshape(o.shape) for x, o in zip(out, outputs)]


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
