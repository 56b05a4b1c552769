"""The vmap strategy (auto's choice on GPU and TPU): ``jax.vmap`` over runs.

Under ``vmap`` a ``lax.switch`` on a batched index computes all its branches
and selects: more flops than the loop strategy's real branches, but in a few
wide kernels, with no ``lax.cond`` and no loop whose trip count differs per
run. On an accelerator such a loop waits on the host at every iteration,
which costs more than the branches it would skip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symopt.population.packing import Packed, leaf_applier
from symopt.population.state import RunArrays
from symopt.population.table import eval_nodes, operand_value, run_fields, slot_value
from symopt.program import OPERAND_NAMES, ProgramShape

_NODE_UNROLL = 2
"""Node-loop iterations per trip: on an accelerator each trip costs a host
round-trip, and each unrolled iteration costs compile time; this is where
more unrolling stops paying for its compile (docs/benchmarks.md, "vmap
unroll")."""


def always(flag, fn, otherwise, *args):
    """``fn(*args)`` whatever ``flag``: the vmap strategy's. On an
    accelerator a ``lax.cond`` costs more than the work it would skip, which
    is a few elementwise passes."""
    del flag, otherwise
    return fn(*args)


def _run_step(packed: Packed, layout: Packed, shape: ProgramShape, arrays: RunArrays, states,
              by_leaf=None, leaf_uses=None):
    """One run's step (arrays of one run: ``states`` [S, L]), with no loop
    whose trip count differs per run.

    Every switch computes all its branches, so each operand is computed once
    and the slots gather from them; constants and states are concatenated
    into the table, and the node loop runs a static ``shape.max_nodes``
    iterations (unrolled by ``_NODE_UNROLL``). Returns ``(direction,
    states)``.
    """
    ints, floats, ctx = run_fields(packed, layout, arrays, None)
    g = ctx.g
    every = jnp.stack([operand_value(name, ctx) for name in OPERAND_NAMES])
    slots = slot_value(every[ints.operands], floats.scalars.decays[:, None])
    constants = jnp.broadcast_to(floats.constants[:, None], (shape.max_constants, *g.shape))
    nodes = jnp.zeros((shape.max_nodes, *g.shape), g.dtype)
    table = jnp.concatenate([slots, constants.astype(g.dtype), states, nodes])
    table = eval_nodes(table, ints.update, shape.table_size - shape.max_nodes, ctx.uniform,
                       shape.max_nodes, _NODE_UNROLL, by_leaf, leaf_uses=leaf_uses)
    return table[ints.update.root], table[ints.states]


def directions(packed: Packed, layout: Packed, shape: ProgramShape, arrays: RunArrays,
               states: jax.Array, leaves: tuple[tuple[int, ...], ...] = (),
               leaf_uses: jax.Array | None = None):
    """Every run's update direction [R, L] and new states [R, S, L]:
    ``arrays`` hold every run's rows, its draws included; ``leaves`` are the
    shapes of one run's leaves, which the per-leaf operators read (where
    ``shape.leaf_ops``). ``leaf_uses`` (:func:`~symopt.population.table.leaf_use`
    of the population, made once with the optimizer) tells which per-leaf
    operators each node needs: one is computed at a node only where some run
    uses it there (a real branch outside the ``vmap``), so a population that
    does not read ``orth`` pays nothing for it."""
    by_leaf = leaf_applier(leaves) if shape.leaf_ops else None
    return jax.vmap(lambda pk, arrays, st: _run_step(pk, layout, shape, arrays, st, by_leaf,
                                                     leaf_uses))(packed, arrays, states)
