"""The population's optax transformation: what every strategy's step shares.

:func:`optimizer` turns an encoded population into one optax transformation
over a batch of runs. Only a graph's direction differs from run to run, so
only it is stepped by the chosen strategy (:mod:`~symopt.population.loop`,
:mod:`~symopt.population.vmap`, :mod:`~symopt.population.fused`); clipping,
the moment EMAs, bias correction, momentum and the update are computed here
over all runs at once, in a few wide passes (the fused kernel computes them
itself, block by block).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from symopt import draws as draws_lib
from symopt import step as step_lib
from symopt import tables as tables_lib
from symopt.population import fused, loop, vmap
from symopt.population.packing import (
    WeightLayout,
    flat_length,
    flatten,
    leaf_shapes,
    pack_records,
    unflatten,
)
from symopt.population.state import (
    Moments,
    PopulationState,
    RunArrays,
    RunFloats,
    RunInts,
    RunScalars,
    betas,
)
from symopt.population.strategy import resolve_strategy
from symopt.population.table import leaf_use, uses_moments
from symopt.program import Program, ProgramShape


class _Engine(NamedTuple):
    """What every step of one optimizer reads, fixed when it is made."""

    shape: ProgramShape
    total_steps: int
    runs_per_candidate: int
    strategy: str  # resolved: "loop", "vmap" or "fused"
    rows: Program  # the program with a row per run
    seeds: jax.Array  # int32 [R]
    tables: tables_lib.StepTables
    moments: Moments  # does any graph read m, v, gamma? (bools)
    leaf_uses: jax.Array | None  # which per-leaf operators each node needs ([N, K]; leaf_ops)
    clips_norm: jax.Array  # does any graph clip by global norm? (bool)
    layout: WeightLayout | None  # where the weights are passed flat, their layout


def _step_tables(program: Program, total_steps: int,
                 scalars: tables_lib.StepTables | None) -> tables_lib.StepTables:
    """``scalars``, checked against the program, or the tables tabulated in the graph."""
    if scalars is None:
        return tables_lib.step_tables(program, total_steps, xp=jnp)
    if tuple(scalars.schedule.shape) != (total_steps, program.size):
        raise ValueError(f"the step tables are for {tuple(scalars.schedule.shape)} (steps, "
                         f"graphs); this optimizer needs "
                         f"tables.step_tables(program, {total_steps})")
    return scalars


def _run_scalars(tables: tables_lib.StepTables, step: jax.Array, runs_per_candidate: int,
                 hparams, total_steps: int) -> RunScalars:
    """The scalars of every run at its candidate's ``step`` [P]."""
    now = tables_lib.at_step(tables, step, jnp)
    per_run = lambda x: jnp.repeat(x, runs_per_candidate, axis=0)  # noqa: E731
    t = per_run(step).astype(hparams.learning_rate.dtype)
    bias = Moments(*(jnp.where(hparams.bias_correction > 0,
                               step_lib.bias_correction(jnp, beta, t), 1.0)
                     for beta in betas(hparams)))
    return RunScalars(step=t, frac=t / total_steps, schedule=per_run(now.schedule),
                      decays=per_run(now.decays), bias=bias)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _draws(kind: str, words: jax.Array, counts: jax.Array, length: int, dtype) -> jax.Array:
    """Noise or uniform samples [runs, L]: all weights in one draw, the same
    numbers as to_optax draws leaf by leaf.

    Jitted so that its trace is made once and reused: the loop strategy
    calls it in every operand and operator branch that reads a draw."""
    draw = draws_lib.noise_draws if kind == "noise" else draws_lib.uniform_draws
    return jax.vmap(lambda w, c: draw(jnp, w, c, 0, (length,), dtype))(words, counts)


def _clip(when, clips_norm, hparams, g: jax.Array) -> jax.Array:
    """Every run's gradient [R, L] clipped by its global norm, then by value.

    Only the norms are a pass of their own (a reduction, and only where some
    run clips by norm): the scaling and the clip by value are element-wise,
    so XLA fuses them into the pass that makes ``g`` (the concatenation of
    the leaves' gradients) rather than writing a clipped copy."""
    clip_norm = hparams.clip_norm[:, None]
    factor = when(clips_norm,
                  lambda g: step_lib.norm_clip_factor(jnp, g, clip_norm).astype(g.dtype),
                  lambda g: jnp.ones((g.shape[0], 1), g.dtype), g)
    return step_lib.clip_by_value(jnp, g * factor, hparams.clip_value[:, None])


def _moments(when, used: Moments, state: PopulationState, g: jax.Array,
             decays: Moments) -> Moments:
    """The moment EMAs after this step's gradient. A moment nobody reads is
    not updated, and its power of g is not formed (inside the branch: as an
    operand of the loop strategy's cond it would be computed every step)."""
    powers = (lambda g: g, lambda g: g * g, lambda g: g * g * g)
    return Moments(*(
        when(flag, lambda old, g, b, power=power: step_lib.ema(jnp, old, power(g), b[:, None]),
             lambda old, g, b: old, old, g, beta)
        for flag, old, power, beta in zip(used, (state.m, state.v, state.gamma), powers, decays,
                                          strict=True)))


def _directions(engine: _Engine, run_ints: RunInts, run_floats: RunFloats,
                arrays: RunArrays, state: PopulationState, leaves):
    """Every run's update direction [R, L] and new states [R, S, L], stepped
    by the loop or the vmap strategy (also fused's fallback); ``leaves`` are
    one run's leaf shapes."""
    g = arrays.g
    length = g.shape[1]
    packed, layout = pack_records(run_ints, run_floats, g.dtype)
    if engine.strategy == "loop":
        return loop.directions(packed, layout, engine.shape, arrays, state.states,
                               engine.runs_per_candidate, state.key, state.count,
                               lambda *args: _draws(*args, length, g.dtype), leaves)
    arrays = arrays._replace(**{kind: _draws(kind, state.key, state.count, length, g.dtype)
                                for kind in ("noise", "uniform")})
    return vmap.directions(packed, layout, engine.shape, arrays, state.states, leaves,
                           engine.leaf_uses)


def padded_length(length: int, strategy: str) -> int:
    """The columns of the engine's arrays over ``length`` weights: padded to
    whole blocks in the fused strategy."""
    return fused.padded_length(length, fused.platform()) if strategy == "fused" else length


def weight_layout(params, strategy: str = "auto") -> WeightLayout:
    """How a training loop that keeps one run's weights ``params`` (a pytree
    of arrays or ``jax.ShapeDtypeStruct``) flat lays them out for the
    optimizer of ``strategy``: pass it as :func:`optimizer`'s ``layout``."""
    layout = WeightLayout.of(params)
    return layout._replace(length=padded_length(layout.length, resolve_strategy(strategy)))


def _check_flat(engine: _Engine, x: jax.Array, name: str) -> None:
    if not isinstance(x, jax.Array | jax.ShapeDtypeStruct) or x.ndim != 2 or (
            x.shape[1] != engine.layout.length):
        raise ValueError(f"with a layout the {name} are one [runs, {engine.layout.length}] "
                         f"array (layout.flatten(tree)), got {jax.tree.map(jnp.shape, x)}")


def _init(engine: _Engine, params) -> PopulationState:
    """Zero moments, states and trace over the flattened weights (padded to
    whole blocks in the fused strategy), and each run's seed words."""
    if engine.layout is not None:
        _check_flat(engine, params, "params")
        flat = params
    else:
        flat = flatten(params, padded_length(flat_length(params), engine.strategy))
    zeros = jnp.zeros_like(flat)
    keys = jax.vmap(draws_lib.seed_words)(engine.seeds)
    runs = engine.rows.num_operands.shape[0]
    return PopulationState(jnp.zeros(runs, jnp.int32), zeros, zeros, zeros,
                           jnp.zeros((runs, engine.shape.max_states, flat.shape[1]), flat.dtype),
                           zeros, keys)


def _update(engine: _Engine, updates, state: PopulationState, params):
    """One step of every run: ``(updates, new state)``."""
    h, rpc = engine.rows.hparams, engine.runs_per_candidate
    when = loop.when if engine.strategy == "loop" else vmap.always
    if engine.layout is None:
        length = state.m.shape[1]  # padded to whole blocks in the fused strategy
        g, w, leaves = flatten(updates, length), flatten(params, length), leaf_shapes(updates)
        tree = functools.partial(unflatten, like=updates)
    else:
        _check_flat(engine, updates, "gradients")
        g, w, leaves, tree = updates, params, engine.layout.shapes, lambda u: u
    g = _clip(when, engine.clips_norm, h, g)
    # Runs of one candidate step together; a run whose state its caller
    # froze (a training loop may keep a diverged run's) must not hold back
    # its candidate's live runs (its update is dropped).
    step = state.count.reshape(-1, rpc).max(axis=1)
    scalars = _run_scalars(engine.tables, step, rpc, h, engine.total_steps)
    rows = engine.rows
    run_ints = RunInts(operands=rows.operands, num_operands=rows.num_operands,
                       num_constants=rows.num_constants, num_states=rows.num_states,
                       update=rows.update, states=rows.states)
    run_floats = RunFloats(constants=rows.constants, eps=h.eps,
                           scalars=scalars._replace(schedule=None))
    lr = h.learning_rate * scalars.schedule
    if engine.strategy == "fused":
        stepped = fused.update(engine.shape, rows, run_ints, run_floats, lr, g, w, state)
        if stepped is not None:
            return tree(stepped[0]), stepped[1]
    m, v, gamma = _moments(when, engine.moments, state, g, betas(h))
    direction, new_states = _directions(engine, run_ints, run_floats,
                                        RunArrays(g=g, w=w, m=m, v=v, gamma=gamma), state,
                                        leaves)
    # Momentum and the update, over all runs at once: a few wide passes
    # rather than a candidate's dozen row passes each.
    direction, trace = step_lib.momentum(jnp, rows.momentum[:, None], h.momentum[:, None],
                                         direction, state.trace)
    u = step_lib.scaled_update(jnp, direction, w, h.weight_decay[:, None], lr[:, None])
    u = u.astype(g.dtype)
    return tree(u), PopulationState(state.count + 1, m, v, gamma, new_states,
                                                  trace, state.key)


def optimizer(
    program: Program,
    shape: ProgramShape,
    total_steps: int,
    *,
    runs_per_candidate: int = 1,
    seeds: jax.Array | Sequence[int] | None = None,
    strategy: str = "auto",
    scalars: tables_lib.StepTables | None = None,
    layout: WeightLayout | None = None,
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
      strategy: ``"loop"``, ``"vmap"``, ``"fused"`` or ``"auto"`` (see
        :mod:`symopt.population`). ``"fused"`` on CPU runs its kernel in
        Pallas's interpret mode (for tests; slow).
      scalars: the step tables, ``tables.step_tables(program, total_steps)``,
        made outside the traced function to spare its compile; by default
        tabulated in the graph. Past ``total_steps``, the schedules and decays
        hold their last step's value.
      layout: where the training loop keeps the weights flat
        (:func:`weight_layout` of one run's params): then the params,
        gradients and updates are [R, layout.length] arrays, and no step
        flattens or unflattens them.

    Returns:
      An optax transformation whose params, gradients and updates are pytrees
      of [R, ...] arrays, or [R, L] arrays with a ``layout``.
    """
    strategy = resolve_strategy(strategy)
    runs = program.size * runs_per_candidate
    rows = jax.tree.map(lambda x: jnp.repeat(x, runs_per_candidate, axis=0), program)
    h = rows.hparams
    engine = _Engine(
        shape=shape, total_steps=total_steps, runs_per_candidate=runs_per_candidate,
        strategy=strategy, rows=rows,
        seeds=jnp.zeros(runs, jnp.int32) if seeds is None else jnp.asarray(seeds, jnp.int32),
        tables=_step_tables(program, total_steps, scalars), moments=uses_moments(program),
        leaf_uses=leaf_use(program.update) if shape.leaf_ops else None,
        clips_norm=jnp.any(h.clip_norm > 0), layout=layout)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("symopt optimizers need params: call update(grads, state, params)")
        return _update(engine, updates, state, params)

    return optax.GradientTransformationExtraArgs(functools.partial(_init, engine), update_fn)
