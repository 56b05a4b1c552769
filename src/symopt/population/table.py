"""One run's graph, evaluated over its table of values: what the three strategies share.

A run's update direction is its graph evaluated over a *value table*: its
operand slots (each operand times its decay), its constants, its recurrent
states, then its nodes, each node reading two earlier entries. Operands read
the run's step context (:class:`RunContext`: gradient, weights, moments,
draws, step), and a run's operands and operators are picked with
``lax.switch`` on its integer fields. The strategies differ in how they hold
the table and loop over it (:mod:`~symopt.population.loop`,
:mod:`~symopt.population.vmap`, :mod:`~symopt.population.fused`); the values
themselves are computed here, with the operators and operands of
:mod:`symopt.ops`, so every strategy computes the same ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from symopt import ops
from symopt.population.packing import Packed, row, unpack
from symopt.population.state import Moments, RunArrays, RunFloats, RunInts, RunScalars
from symopt.program import BINARY_NAMES, OPERAND_NAMES, UNARY_NAMES, ExprArrays, Program


def reads(operands: jax.Array, num_operands: jax.Array, field: str) -> jax.Array:
    """Per graph (or run): does an operand slot in use read the step context's
    ``field`` (:attr:`symopt.ops.Operand.reads`)? ``[P]`` bools."""
    slot_used = jnp.arange(operands.shape[-1]) < num_operands[:, None]
    ids = [i for i, n in enumerate(OPERAND_NAMES) if field in ops.OPERANDS[n].reads]
    return jnp.any(jnp.isin(operands, jnp.asarray(ids)) & slot_used, axis=-1)


def uses_moments(program: Program) -> Moments:
    """Population-wide flags: does any graph read m, v, gamma? (bools)."""
    return Moments(*(jnp.any(reads(program.operands, program.num_operands, moment))
                     for moment in Moments._fields))


class RunContext:
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
            x = row(x, self._r)
        if name in Moments._fields:
            x = x / getattr(self._bias, name)
        return x


def run_fields(packed: Packed, layout: Packed, arrays: RunArrays,
               r) -> tuple[RunInts, RunFloats, RunContext]:
    """One run's ints and floats (from its ``packed`` rows), and its context
    over ``arrays``: row ``r`` of them, or all of them where ``r`` is None."""
    ints, floats = unpack(packed.ints, layout.ints), unpack(packed.floats, layout.floats)
    return ints, floats, RunContext(arrays, r, floats.scalars, floats.eps)


def operand_value(name: str, ctx: RunContext) -> jax.Array:
    """Operand ``name`` over the run's weights (a scalar operand broadcast)."""
    g = ctx.g
    return jnp.broadcast_to(ops.OPERANDS[name].fn(jnp, ctx), g.shape).astype(g.dtype)


def slot_value(operand: jax.Array, decay: jax.Array) -> jax.Array:
    """An operand slot's table entry: the operand times its decay, sanitized."""
    return ops.sanitize(jnp, operand * decay)


def slot_branches(ctx: RunContext, decay: jax.Array) -> list:
    """One function per operand (in :data:`OPERAND_NAMES` order): its slot's
    entry (:func:`slot_value`), the branches a slot's ``lax.switch`` picks
    from; where the branches are real (the loop and fused strategies), the
    decay and the sanitizing join the operand's own pass."""
    return [lambda name=name: slot_value(operand_value(name, ctx), decay)
            for name in OPERAND_NAMES]


def leaf_use(expr: ExprArrays) -> jax.Array:
    """Which per-leaf operators some graph uses at each node: [N, K] bools over
    ``expr``'s [P, N] arrays (K: :data:`LEAF_NAMES`). Unbatched, so under
    ``vmap`` a per-leaf branch can be a real branch that no run pays for at a
    node where none uses it (:func:`node_value`'s ``leaf_used``)."""
    unary = {name: UNARY_NAMES.index(name) for name in LEAF_NAMES if name in UNARY_NAMES}
    binary = {name: BINARY_NAMES.index(name) for name in LEAF_NAMES if name in BINARY_NAMES}
    used = [(expr.left == unary[name]) | (expr.right == unary[name]) if name in unary
            else expr.op == binary[name] for name in LEAF_NAMES]
    return jnp.any(jnp.stack(used, axis=-1), axis=0)


LEAF_NAMES = tuple(sorted(ops.LEAF_OPERATORS))
"""The per-leaf operators' names, the columns of :func:`leaf_use`."""


def node_value(read, left, right, op, a, b, uniform, by_leaf=None, branch_reads=False,
               leaf_used=None):
    """``op(left(read(a)), right(read(b)))`` with switched operators, where
    ``read(i)`` is entry ``i`` of the run's value table.

    ``uniform`` is the dropout draw, or a function returning it: then only a
    dropout branch draws it, so a run without dropout never pays for it.
    ``by_leaf(f, *args)`` applies a per-leaf operator over the run's leaves
    (:func:`symopt.ops.by_leaf`); where it is None (a program shape without
    ``leaf_ops``) their branches are placeholders that no program picks.
    ``branch_reads``: read the table inside each unary operator's branch,
    where a switch is a real branch (the loop strategy), so that the read
    fuses into the operator's pass instead of copying the entry first; under
    ``vmap``, which computes every branch, the entry is read once, outside.
    ``leaf_used(name)``: an unbatched flag, whether any run uses the per-leaf
    operator ``name`` at this node (a row of :func:`leaf_use`). Under
    ``vmap`` a switch on a batched index batches everything its branches
    read, a flag too, and computes every branch; so with ``leaf_used`` the
    per-leaf operators are taken out of the switches (placeholders there)
    and each is computed after them, under a real branch on its flag, where
    some run needs it.
    """
    draw = uniform if callable(uniform) else lambda: uniform
    leaf_fns = {}
    gate = by_leaf is not None and leaf_used is not None and not branch_reads

    def unary_fn(name):
        fn = ops.bounded_fn(name, 1)
        if name in ops.LEAF_OPERATORS:
            leaf_fns[name] = lambda x: by_leaf(lambda x: fn(jnp, x, None), x)
            # A placeholder no program picks, or one whose value is replaced below.
            return (lambda x: x) if by_leaf is None or gate else leaf_fns[name]
        return lambda x: fn(jnp, x, draw() if ops.UNARY[name].random else None)

    def binary_fn(name):
        fn = ops.bounded_fn(name, 2)
        if name in ops.LEAF_OPERATORS:
            leaf_fns[name] = lambda x, y: by_leaf(lambda x, y: fn(jnp, x, y, None), x, y)
            return (lambda x, y: x) if by_leaf is None or gate else leaf_fns[name]
        return lambda x, y: fn(jnp, x, y, None)

    unary = [unary_fn(name) for name in UNARY_NAMES]
    binary = [binary_fn(name) for name in BINARY_NAMES]

    def gated(value, index, names, name, *args):
        """``value``, or where ``index`` picks per-leaf operator ``name``, its
        value over ``args``: computed only where some run uses it here."""
        picked = lambda value: jnp.where(index == names.index(name),  # noqa: E731
                                         leaf_fns[name](*args), value)
        return jax.lax.cond(leaf_used(name), picked, lambda value: value, value)

    if branch_reads:
        x, y = (jax.lax.switch(index, [lambda i, f=f: f(read(i)) for f in unary], entry)
                for index, entry in ((left, a), (right, b)))
    else:
        inputs = read(a), read(b)
        x, y = jax.lax.switch(left, unary, inputs[0]), jax.lax.switch(right, unary, inputs[1])
        if gate:
            for name in sorted(ops.LEAF_OPERATORS & set(UNARY_NAMES)):
                x = gated(x, left, UNARY_NAMES, name, inputs[0])
                y = gated(y, right, UNARY_NAMES, name, inputs[1])
    out = jax.lax.switch(op, binary, x, y)
    if gate:
        for name in sorted(ops.LEAF_OPERATORS & set(BINARY_NAMES)):
            out = gated(out, op, BINARY_NAMES, name, x, y)
    return out


def eval_nodes(table, expr: ExprArrays, first: int, uniform, length=None,
               unroll: int = 1, by_leaf=None, branch_reads=False,
               leaf_uses=None) -> jax.Array:
    """Fills ``table[first + j]`` with node ``j``'s value for the used nodes
    (or the first ``length``); ``by_leaf`` and ``branch_reads`` as in
    :func:`node_value`; ``leaf_uses``: :func:`leaf_use` of the population."""

    def body(j, table):
        used = None if leaf_uses is None else (
            lambda name: row(leaf_uses, j)[LEAF_NAMES.index(name)])
        value = node_value(functools.partial(row, table), expr.left[j], expr.right[j],
                           expr.op[j], expr.a[j], expr.b[j], uniform, by_leaf, branch_reads,
                           used)
        return jax.lax.dynamic_update_index_in_dim(table, value, first + j, 0)

    length = expr.length if length is None else length
    return jax.lax.fori_loop(0, length, body, table, unroll=unroll)
