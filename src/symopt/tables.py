"""Step tables: every graph's schedule and decay multipliers at every step.

This module owns :func:`step_tables`. A graph's learning-rate schedule and its
operand decays depend on the step alone, not on the weights, so the
population engine (:mod:`symopt.population`) reads them from tables over
``T`` steps and ``P`` graphs made once per training instead of computing them
in every step (where, vmapped, each would be a switch over every operator).
The tables are built with NumPy on the host, so they cost no compile; the
same code runs over ``jax.numpy`` inside a traced function. The formulas are
:func:`symopt.to_optax`'s: the schedule kinds and warmup of
:mod:`symopt.schedules`, the operators and scalar operands of :mod:`symopt.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from symopt import ops, schedules
from symopt.program import (
    BINARY_NAMES,
    SCALAR_NAMES,
    SCHEDULE_KINDS,
    UNARY_NAMES,
    ExprArrays,
    Program,
)

Array = Any


class StepTables(NamedTuple):
    """The per-step multipliers of P graphs over ``T`` steps: ``T * P * (K + 1)``
    numbers, small next to the weights they scale. :func:`at_step` reads one
    row per graph."""

    schedule: Array  # [T, P]: learning-rate multiplier of the graph's schedule
    decays: Array  # [T, P, K]: decay multiplier of each operand slot


def step_tables(program: Program, total_steps: int, xp=np) -> StepTables:
    """Tabulates the schedule and decay multipliers of every graph at steps
    ``0 .. total_steps - 1`` (the formulas of :func:`symopt.to_optax`).

    ``xp=np`` (default) computes them on the host with no compile; ``xp=jnp``
    inside a traced function (the program may then be traced).
    """
    if xp is np:
        with np.errstate(all="ignore"):  # the unchosen operators may overflow
            return _tabulate(np, jax.tree.map(np.asarray, program), total_steps)
    return _tabulate(xp, program, total_steps)


def at_step(tables: StepTables, step: Array, xp=np) -> StepTables:
    """Each graph's multipliers at its own ``step`` ([P] ints): ``schedule``
    [P] and ``decays`` [P, K], held at the last row past ``T``
    (:func:`symopt.schedules.held_step`)."""
    total_steps = tables.schedule.shape[0]
    row = (schedules.held_step(xp, step, total_steps), xp.arange(step.shape[0]))
    return StepTables(schedule=tables.schedule[row], decays=tables.decays[row])


def _select(xp, values: Sequence[Array], index: Array) -> Array:
    """``values[index]`` elementwise as a chain of selects: an unchosen
    value's NaN never leaks, and under jit it fuses into one kernel."""
    out = values[0]
    for k in range(1, len(values)):
        out = xp.where(index == k, values[k], out)
    return out


def _scalar_exprs(xp, expr: ExprArrays, leaves: Sequence[Array]) -> Array:
    """Scalar DAGs over ``leaves`` (scalar operands then constants), batched
    over any leading axes: every operator on every node, the used one selected."""
    table = list(leaves)
    one = xp.ones_like(table[0])  # the dropout draw: keep everything

    def unary(index, x):
        return _select(xp, [x if name in ops.LEAF_OPERATORS else ops.bounded_fn(name, 1)(
            xp, x, one) for name in UNARY_NAMES], index)

    for j in range(expr.op.shape[-1]):
        x = unary(expr.left[..., j], _select(xp, table, expr.a[..., j]))
        y = unary(expr.right[..., j], _select(xp, table, expr.b[..., j]))
        # A per-leaf operator is never in a scalar sub-graph (graph.validate):
        # its entry is a placeholder.
        binary = [x if name in ops.LEAF_OPERATORS else ops.bounded_fn(name, 2)(xp, x, y, None)
                  for name in BINARY_NAMES]
        table.append(_select(xp, binary, expr.op[..., j]))
    return _select(xp, table, expr.root)


def _scalar_leaves(xp, program: Program, t: Array, frac: Array, shape) -> list[Array]:
    """The scalar operands at ``t``, ``frac`` ([T, P]), then the constants,
    each broadcast to ``shape`` ([T, P] or [T, P, K])."""
    ctx = ops.StepContext(step=t, frac=frac)
    values = [ops.OPERANDS[n].fn(xp, ctx) * xp.ones_like(t) for n in SCALAR_NAMES]
    values += [xp.broadcast_to(program.constants[:, i], t.shape)
               for i in range(program.constants.shape[1])]
    extra = (1,) * (len(shape) - t.ndim)
    return [xp.broadcast_to(v.reshape(v.shape + extra), shape) for v in values]


def _host_exprs(program: Program, expr: ExprArrays, rows: tuple[np.ndarray, ...],
                t: np.ndarray, frac: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """NumPy: ``fill`` ([T, ...]) with the scalar DAGs at ``expr[rows]`` put in,
    each computed over its used nodes only: most operands of a population have
    no decay, and an empty DAG would otherwise cost as much as a used one."""
    if rows[0].size == 0:
        return fill
    used = int(expr.length[rows].max())
    picked = ExprArrays(*(f[rows][..., :used] if f.ndim > len(rows) else f[rows] for f in expr))
    columns = program._replace(constants=program.constants[rows[0]])
    t, frac = t[:, rows[0]], frac[:, rows[0]]
    fill[(slice(None), *rows)] = _scalar_exprs(
        np, picked, _scalar_leaves(np, columns, t, frac, t.shape))
    return fill


def _tabulate(xp, program: Program, total_steps: int) -> StepTables:
    dtype = program.constants.dtype
    t = xp.broadcast_to(xp.arange(total_steps, dtype=dtype)[:, None],
                        (total_steps, program.size))
    frac = t / total_steps
    slots = (total_steps, *program.operands.shape)
    s = program.schedule
    u = schedules.schedule_fraction(xp, t, s.warmup_steps, total_steps)
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
    piece = schedules.piecewise_index(xp, u, s.num_values)
    special = {
        "graph": graph_schedule,
        "piecewise": lambda: _select(xp, list(program.schedule_values.T), piece),
    }
    formula = lambda k: schedules.SCHEDULE_FORMULAS[k](xp, u, s)  # noqa: E731
    mult = _select(xp, [special[k]() if k in special else formula(k) for k in SCHEDULE_KINDS],
                   program.schedule_kind)
    mult = schedules.with_warmup(xp, t, s.warmup_steps, mult)  # no warmup: mult (t >= 0)
    return StepTables(schedule=mult.astype(dtype), decays=decays.astype(dtype))
