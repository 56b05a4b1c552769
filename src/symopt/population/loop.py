"""The loop strategy (auto's choice on CPU): a ``fori_loop`` over candidates.

Each candidate's step loops over its operand slots and active nodes, and
each ``lax.switch`` is a real branch: a run pays only for the operators and
operands its graph uses, and draws noise and dropout numbers only where a
branch reads them. On CPU that beats computing every branch; on an
accelerator each iteration of a loop whose trip count differs per run waits
on the host, which is why accelerators use the vmap or fused strategies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from symopt.population.packing import Packed, leaf_applier, row
from symopt.population.state import RunArrays
from symopt.population.table import eval_nodes, run_fields, slot_branches
from symopt.program import ProgramShape


def when(flag, fn, otherwise, *args):
    """``fn(*args)`` where the unbatched ``flag`` is set, else
    ``otherwise(*args)``: a real branch (``lax.cond``), the loop strategy's
    way to skip population-wide work nobody needs."""
    return jax.lax.cond(flag, fn, otherwise, *args)


def _run_step(packed: Packed, layout: Packed, shape: ProgramShape, arrays: RunArrays, r,
              states, table, directions, by_leaf=None):
    """One run's update direction, with real branches.

    ``packed`` holds the run's graph and scalars
    (:func:`symopt.population.packing.pack`); ``arrays`` the runs'
    gradients, weights, moments and draws. ``table`` is scratch space
    [table_size, L] whose contents do not matter (every entry a valid program
    reads is written first): the previous run's, to save zeroing it. ``r`` is
    this run's index into the arrays of all runs (``states`` [R, S, L] and
    ``directions`` [R, L]), which get this run's rows written in place and
    are returned as ``(directions, states, table)``: a state the graph does
    not have is neither read nor written.
    """
    ints, floats, ctx = run_fields(packed, layout, arrays, r)
    g = ctx.g
    decays = floats.scalars.decays
    put = jax.lax.dynamic_update_index_in_dim

    def fill_slot(k, table):
        return put(table, jax.lax.switch(ints.operands[k], slot_branches(ctx, decays[k])), k, 0)

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
            table, row(row(states, r), j), start + j, 0), table)
    update = ints.update
    table = eval_nodes(table, update, start + shape.max_states, lambda: ctx.uniform,
                       by_leaf=by_leaf, branch_reads=True)
    if shape.max_states:
        states = jax.lax.fori_loop(0, ints.num_states, lambda j, states: states.at[r, j].set(
            row(table, ints.states[j])), states)
    return put(directions, row(table, update.root), r, 0), states, table


def directions(packed: Packed, layout: Packed, shape: ProgramShape, arrays: RunArrays,
               states: jax.Array, runs_per_candidate: int, seed_words: jax.Array,
               counts: jax.Array, draws, leaves: tuple[tuple[int, ...], ...] = ()):
    """Every run's update direction [R, L] and new states [R, S, L].

    The loop is over candidates, each step covering all of the candidate's
    runs at once (its S runs' [L] rows side by side as one [S*L] row: same
    program, same scalars), so that the per-operation cost of the switches
    is paid once per candidate rather than once per run.

    Noise and dropout draws (``draws(kind, seed_words, counts)``, [S, L])
    are made inside the operand and operator branches that read them, so
    only candidates that use them pay for random numbers. ``leaves`` are the
    shapes of one run's leaves, which the per-leaf operators read (where
    ``shape.leaf_ops``)."""
    s = runs_per_candidate
    runs, length = arrays.g.shape
    group = lambda x: x.reshape(runs // s, s * length)  # noqa: E731 ([R, L] -> [P, S*L])
    grouped = jax.tree.map(group, arrays)
    words, counts = seed_words.reshape(runs // s, s, -1), counts.reshape(runs // s, s)
    num_states = states.shape[1]
    # Explicit sizes: with no states (num_states 0) a -1 cannot be inferred.
    states = states.reshape(runs // s, s, num_states, length).swapaxes(1, 2).reshape(
        runs // s, num_states, s * length)
    packed = Packed(packed.ints[::s], packed.floats[::s])
    by_leaf = leaf_applier(leaves, s) if shape.leaf_ops else None

    def body(p, acc):
        run_arrays = grouped._replace(**{
            kind: lambda kind=kind: draws(kind, row(words, p), row(counts, p)).reshape(-1)
            for kind in ("noise", "uniform")})
        out, states, table = acc
        return _run_step(Packed(row(packed.ints, p), row(packed.floats, p)), layout, shape,
                         run_arrays, p, states, table, out, by_leaf)

    table = jnp.zeros((shape.table_size, s * length), arrays.g.dtype)
    out, states, _ = jax.lax.fori_loop(
        0, runs // s, body, (jnp.zeros_like(grouped.g), states, table))
    states = states.reshape(runs // s, num_states, s, length).swapaxes(1, 2).reshape(
        runs, num_states, length)
    return out.reshape(runs, length), states
