"""How the population engine lays out its arrays: records packed, weights flattened.

Two layouts, both for speed of the traced step:

* A run's graph and scalars (:class:`~symopt.population.state.RunInts` and
  ``RunFloats``, dozens of small fields) are packed into one int and one
  float row per run (:func:`pack_records`): the loop strategy then slices two
  arrays per run instead of dozens (each slice an operation with a fixed cost
  on CPU), and the fused kernel reads them as two scalar tables.
* The params, gradients and updates (pytrees of [R, ...] leaves) are
  flattened into one [R, L] array (:func:`flatten`), so that every pass over
  the weights is one wide operation, whatever the model's leaves. A training
  loop that keeps them flat for the whole run (:class:`WeightLayout`; the
  population trainer of :mod:`symopt.evaluate` does) flattens once, before
  the first step, and shows the model its tree as a view of the buffer: the
  view splits it (``lax.split``), whose transpose concatenates the leaves'
  gradients straight into a flat buffer, so no step flattens the weights or
  unflattens the update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from symopt import ops


class Packed(NamedTuple):
    """Every run's int and float records packed as one int and one float
    array, or the :class:`Layout` of each."""

    ints: Any  # int32 [R, Ni]
    floats: Any  # float [R, Nf]


class Layout(NamedTuple):
    """Where each leaf of a packed record lies: ``(start, size, is_scalar)``."""

    treedef: Any
    leaves: tuple[tuple[int, int, bool], ...]


def row(x: jax.Array, i) -> jax.Array:
    """``x[i]`` for a traced ``i``: the primitive itself, which traces in a
    fraction of the time of NumPy-style indexing (the loop strategy indexes
    per run hundreds of times while its program is traced)."""
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False)


def pack(record) -> tuple[jax.Array, Layout]:
    """A record of [R] and [R, n] arrays as one [R, N] array."""
    leaves, treedef = jax.tree.flatten(record)
    parts, layout, start = [], [], 0
    for x in leaves:
        scalar = x.ndim == 1
        x = x[:, None] if scalar else x
        layout.append((start, x.shape[1], scalar))
        parts.append(x)
        start += x.shape[1]
    return jnp.concatenate(parts, axis=1), Layout(treedef, tuple(layout))


def pack_records(ints, floats, dtype) -> tuple[Packed, Packed]:
    """An int and a float record packed (the floats in ``dtype``), and their
    layouts: ``(packed, layout)``."""
    int_rows, int_layout = pack(ints)
    float_rows, float_layout = pack(floats)
    return Packed(int_rows, float_rows.astype(dtype)), Packed(int_layout, float_layout)


def unpack(vector: jax.Array, layout: Layout):
    """One run's record from its packed ``vector``."""
    return layout.treedef.unflatten([
        jax.lax.index_in_dim(vector, start, keepdims=False) if scalar
        else jax.lax.slice_in_dim(vector, start, start + size)
        for start, size, scalar in layout.leaves])


def flatten(tree, length: int | None = None) -> jax.Array:
    """A pytree of [R, ...] leaves as one [R, L] array, zero-padded to
    ``length`` columns when given."""
    leaves = [x.reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)]
    size = sum(x.shape[1] for x in leaves)
    if length is not None and length > size:
        leaves.append(jnp.zeros((leaves[0].shape[0], length - size), leaves[0].dtype))
    return jnp.concatenate(leaves, axis=1)


def unflatten(flat: jax.Array, like):
    """``flat`` [R, L or more] as a pytree like ``like`` (padding dropped)."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = np.cumsum([int(np.prod(x.shape[1:])) for x in leaves])
    parts = jnp.split(flat, sizes, axis=1)[:-1]  # the last part is the padding
    return treedef.unflatten([p.reshape(x.shape).astype(x.dtype)
                              for p, x in zip(parts, leaves, strict=True)])


def leaf_shapes(tree) -> tuple[tuple[int, ...], ...]:
    """The shape of each leaf of one run of a pytree of [R, ...] leaves, in
    :func:`flatten`'s order."""
    return tuple(tuple(x.shape[1:]) for x in jax.tree.leaves(tree))


def leaf_applier(shapes: tuple[tuple[int, ...], ...], runs: int = 1):
    """``by_leaf(f, *rows)``: a per-leaf operator ``f`` over flat rows laid out
    as :func:`flatten` lays out one run ([L]), or ``runs`` runs side by side
    ([runs * L], the loop strategy's candidate rows). See
    :func:`symopt.ops.by_leaf`."""

    def apply(fn, *rows):
        if runs == 1:
            return ops.by_leaf(jnp, fn, rows, shapes, lambda f, leaves: f(*leaves))
        split = tuple(x.reshape(runs, -1) for x in rows)
        return ops.by_leaf(jnp, fn, split, shapes, lambda f, leaves: jax.vmap(f)(*leaves)
                           ).reshape(-1)

    return apply


class WeightLayout(NamedTuple):
    """Where one run's weights lie in a flat row: the model's tree, its leaves'
    shapes and dtypes in :func:`flatten`'s order, and ``length``, the row's
    columns (the leaves' sizes, and zero padding where a strategy steps whole
    blocks)."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]
    length: int

    @classmethod
    def of(cls, tree, length: int | None = None) -> WeightLayout:
        """The layout of ``tree``, one run's weights (arrays or
        ``jax.ShapeDtypeStruct``), padded to ``length`` columns when given."""
        leaves, treedef = jax.tree.flatten(tree)
        shapes = tuple(tuple(x.shape) for x in leaves)
        size = sum(int(np.prod(s)) for s in shapes)
        if length is not None and length < size:
            raise ValueError(f"a row of {length} columns cannot hold {size} weights")
        return cls(treedef, shapes, tuple(x.dtype for x in leaves),
                   size if length is None else length)

    def flatten(self, tree) -> jax.Array:
        """A pytree of [R, ...] leaves laid out as [R, length] (done once, before training)."""
        return flatten(tree, self.length)

    def view(self, flat: jax.Array):
        """The tree whose leaves are the columns of ``flat`` ([..., length]:
        one run's row, or rows of runs): what a model reads, a split that
        XLA fuses into its consumers, and whose gradient is one flat array."""
        sizes = [int(np.prod(s)) for s in self.shapes]
        padding = self.length - sum(sizes)
        parts = jax.lax.split(flat, (*sizes, padding), axis=flat.ndim - 1)
        lead = flat.shape[:-1]
        return self.treedef.unflatten([
            part.reshape(lead + shape).astype(dtype)
            for part, shape, dtype in zip(parts[:-1], self.shapes, self.dtypes, strict=True)])


def flat_length(tree) -> int:
    """L: the weights of one run of a pytree of [R, ...] leaves."""
    return sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(tree))
