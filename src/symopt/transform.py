"""``to_optax``: a Graph as a specialised ``optax.GradientTransformation``.

This module owns only the optax adapter. :func:`to_optax` is an
``optax.chain`` in optax's own form: the graph's direction
(:func:`scale_by_graph`), then ``optax.trace`` (momentum),
``optax.add_decayed_weights`` and ``optax.scale_by_learning_rate`` with the
graph's schedule. The step's meaning lives in :mod:`symopt.interpret`, over an
array namespace: :func:`scale_by_graph` runs its
:func:`~symopt.interpret.leaf_direction` with ``jax.numpy``, leaf by leaf, and
adds what optax needs (the state as params-shaped trees, the step count, the
seed words of the random draws). The direction is unrolled in Python when the
update is traced: only the operands, moment EMAs and nodes that the graph uses
are computed and stored, so under ``jax.jit`` a compiled graph costs what the
same optimizer written by hand costs. The rest of the chain computes what
:func:`~symopt.interpret.leaf_update` adds with :mod:`symopt.step`, in optax's
own parts (tests/test_interpret.py checks the two agree, the zoo tests check
the chain against optax's optimizers).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from symopt import graph as graph_lib
from symopt import step as step_lib
from symopt.draws import noise_draws, seed_words, uniform_draws
from symopt.graph import Graph
from symopt.interpret import LeafState, held_schedule, leaf_direction, plan, step_scalars


class SymoptState(NamedTuple):
    """State of :func:`scale_by_graph`, in optax's form: each field but ``count``
    and ``key`` is a params-shaped tree (or a tuple of them), and a field the
    graph does not use is the empty tuple ``()``, as in ``ScaleByAdamState(count,
    mu, nu)``. So ``optax.tree_utils.tree_get(state, "m")`` finds the first
    moment, and Flax NNX, orbax and sharding see arrays with their parameter's
    shape."""

    count: jax.Array  # int32 scalar, steps taken
    m: Any  # EMA of g, params-shaped (or ())
    v: Any  # EMA of g**2
    gamma: Any  # EMA of g**3
    states: tuple[Any, ...]  # one params-shaped tree per recurrent state of the graph
    key: Any  # uint32[2] seed words of the noise/dropout draws (see noise_draws), or ()


_MOMENTS = ("m", "v", "gamma")  # SymoptState's params-shaped fields, one each


def scale_by_graph(graph: Graph, total_steps: int | None = None, *,
                   seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """The graph's direction as an optax transformation: clipping by value, the
    moment EMAs and the update graph (:func:`leaf_direction`), leaf by leaf.

    Args:
      graph: a valid :class:`symopt.Graph`.
      total_steps: ``T``, which the decay operands (functions of ``t/T``) use;
        None: the length the graph was found at (as :func:`to_optax`).
      seed: seed of the noise and dropout operators, when the graph has them.

    Returns:
      A transformation whose ``update`` needs ``params`` (the weights are
      operands) and returns the direction, before momentum, weight decay and
      the learning rate (:func:`to_optax` chains those).
    """
    graph_lib.validate(graph)
    return _scale_by_graph(graph, graph_lib.total_steps_for(graph, total_steps), seed)


def _scale_by_graph(graph: Graph, total_steps: int,
                    seed: int) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_graph` at a resolved ``T``."""
    p = plan(graph)
    random = bool(p.needs & {"noise", "uniform"})
    used = {m: m in p.needs for m in _MOMENTS}

    def init_fn(params):
        def zeros():
            return jax.tree.map(jnp.zeros_like, params)

        return SymoptState(
            count=jnp.zeros([], jnp.int32),
            **{f: zeros() if used[f] else () for f in _MOMENTS},
            states=tuple(zeros() for _ in graph.states),
            key=seed_words(seed) if random else (),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        scalars = step_scalars(p, jnp, state.count, total_steps)
        flat_g, treedef = jax.tree.flatten(updates)
        flat_w = treedef.flatten_up_to(params)
        none = [None] * len(flat_g)
        flat = {f: treedef.flatten_up_to(getattr(state, f)) if used[f] else none
                for f in _MOMENTS}
        flat_states = [treedef.flatten_up_to(tree) for tree in state.states]
        out_d, out_s = [], []
        offset = 0  # of the leaf's draws in the flattened parameters
        for i, (g, w) in enumerate(zip(flat_g, flat_w, strict=True)):
            noise = uniform = None
            if "noise" in p.needs:
                noise = noise_draws(jnp, state.key, state.count, offset, g.shape, g.dtype)
            if "uniform" in p.needs:
                uniform = uniform_draws(jnp, state.key, state.count, offset, g.shape, g.dtype)
            leaf = LeafState(**{f: flat[f][i] for f in _MOMENTS},
                             states=tuple(s[i] for s in flat_states), trace=None)
            d, leaf = leaf_direction(p, jnp, g, w, leaf, scalars, noise=noise, uniform=uniform)
            offset += g.size
            out_d.append(d)
            out_s.append(leaf)

        def tree(field):
            return treedef.unflatten([getattr(s, field) for s in out_s]) if used[field] else ()

        new_state = SymoptState(
            count=optax.safe_increment(state.count),
            **{f: tree(f) for f in _MOMENTS},
            states=tuple(treedef.unflatten([s.states[j] for s in out_s])
                         for j in range(len(graph.states))),
            key=state.key,
        )
        return treedef.unflatten(out_d), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def to_optax(
    graph: Graph,
    learning_rate: float | jax.Array | optax.Schedule | None = None,
    total_steps: int | None = None,
    *,
    weight_decay: float | jax.Array | None = None,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Compiles ``graph`` into an optax optimizer: its direction
    (:func:`scale_by_graph`), then optax's own momentum, decoupled weight decay
    and learning rate times the graph's schedule.

    Args:
      graph: a valid :class:`symopt.Graph`.
      learning_rate: base learning rate (default: ``graph.hparams``); may be a
        traced value, so it works with ``optax.inject_hyperparams`` and vmap,
        or an optax schedule (a function of the step count). The graph's own
        schedule multiplies it either way: to use only yours, pass
        ``graph.replace(schedule=symopt.Schedule())``.
      total_steps: ``T``, the length of training that the schedule and the
        decay operands (functions of ``t/T``) are laid over. None: the length
        the graph was found at (``graph.total_steps``, which ``best.json``
        records), else 10,000. A length more than 2x from the found one, or
        none known, is a :class:`symopt.graph.TrainingLengthWarning` (once)
        where the graph has a schedule or reads ``t/T``: pass the number of
        steps you train for.
      weight_decay: decoupled weight decay (default: ``graph.hparams``).
      seed: seed of the noise and dropout operators, when the graph has them.

    Returns:
      ``optax.chain(clip_by_global_norm, scale_by_graph, trace,
      add_decayed_weights, scale_by_learning_rate)``, each part only where the
      graph has it: an ``optax.GradientTransformationExtraArgs`` whose
      ``update`` needs ``params`` (the weights are operands).

    Example:
      >>> import jax.numpy as jnp, symopt
      >>> tx = symopt.to_optax(symopt.zoo.adam(), learning_rate=1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update(params, tx.init(params), params)
    """
    graph_lib.validate(graph)
    total_steps = graph_lib.total_steps_for(graph, total_steps)
    h = graph.hparams
    lr = h.learning_rate if learning_rate is None else learning_rate
    wd = h.weight_decay if weight_decay is None else weight_decay

    def step_size(count):
        base = lr(count) if callable(lr) else lr
        return base * held_schedule(graph, jnp, jnp.asarray(count, float), total_steps)

    parts = [optax.clip_by_global_norm(h.clip_norm)] if h.clip_norm else []
    parts.append(_scale_by_graph(graph, total_steps, seed))
    if graph.momentum != "none":
        parts.append(optax.trace(decay=h.momentum, nesterov=graph.momentum == "nesterov"))
    if step_lib.adds_weight_decay(wd):
        parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale_by_learning_rate(step_size))
    return optax.chain(*parts)
