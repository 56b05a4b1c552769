"""Learning-rate schedules and the behaviour past ``T``: closed forms over ``xp``.

This module owns the multiplier of each closed-form :class:`~symopt.graph.Schedule`
kind after warmup, the warmup itself, the ``piecewise`` kind and what every
step-dependent scalar does past ``total_steps``. Each function is written once
over an array namespace ``xp`` (NumPy, ``jax.numpy`` or, for printing, a sympy
namespace), so ``to_optax``, the population engine's host tables, the
integrity check and the symbolic printer all read the same formulas. The
``graph`` kind is an expression of the graph's own operators; it is evaluated
with the step (:func:`symopt.interpret.schedule_multiplier`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any


def constant(xp, u: Array, s: Any) -> Array:
    """1 throughout."""
    return xp.ones_like(u)


def cosine(xp, u: Array, s: Any) -> Array:
    """Half a cosine from 1 down to ``s.alpha``."""
    return s.alpha + (1 - s.alpha) * 0.5 * (1 + xp.cos(xp.pi * u))


def linear(xp, u: Array, s: Any) -> Array:
    """A straight line from 1 down to ``s.alpha``."""
    return 1 - (1 - s.alpha) * u


def exponential(xp, u: Array, s: Any) -> Array:
    """``s.decay_rate ** u``: from 1 down to ``s.decay_rate``."""
    return s.decay_rate**u


def staircase(xp, u: Array, s: Any) -> Array:
    """``s.steps`` equal stairs, each ``s.decay_rate`` times the one before."""
    return s.decay_rate ** xp.floor(xp.minimum(u * s.steps, s.steps - 1))


def restarts(xp, u: Array, s: Any) -> Array:
    """``s.cycles`` cosine cycles, each from 1 down to ``s.alpha``."""
    return cosine(xp, xp.mod(u * s.cycles, 1.0), s)


SCHEDULE_FORMULAS: dict[str, Callable[..., Array]] = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "exponential": exponential,
    "step": staircase,
    "restarts": restarts,
}
"""The multiplier of each closed-form schedule kind after warmup, at ``u`` in
[0, 1]; ``s`` has the :class:`~symopt.graph.Schedule` fields (floats, or arrays
in the population engine). The ``graph`` kind is evaluated by
:func:`symopt.interpret.evaluate_scalar`, ``piecewise`` by
:func:`piecewise_multiplier`."""


def piecewise_index(xp, u: Array, count: Array) -> Array:
    """``min(floor(u * count), count - 1)``, at least 0 (a float): the entry
    of a ``piecewise`` schedule's ``count`` values in force at ``u``."""
    return xp.maximum(xp.minimum(xp.floor(u * count), count - 1), 0)


def piecewise_multiplier(xp, u: Array, values: Array, count: Array) -> Array:
    """``values[piecewise_index(u, count)]``: the ``piecewise`` schedule.

    ``values`` may be padded beyond its first ``count`` entries.
    """
    values = xp.asarray(values, dtype=xp.result_type(u))
    return xp.take(values, piecewise_index(xp, u, count).astype("int32"))


def schedule_fraction(xp, step: Array, warmup: Array, total_steps: Array) -> Array:
    """``u = (t - W) / (T - W)``, clipped to [0, 1]: progress after warmup."""
    return xp.clip((step - warmup) / xp.maximum(total_steps - warmup, 1), 0.0, 1.0)


def with_warmup(xp, step: Array, warmup: Array, mult: Array) -> Array:
    """Linear warmup ``(t+1)/W`` for ``t < W``, then ``mult``."""
    return xp.where(step < warmup, (step + 1) / xp.maximum(warmup, 1), mult)


def held_step(xp, step: Array, total_steps: int | Array) -> Array:
    """The step the schedule and the decays are evaluated at: ``min(t, T - 1)``.

    Past ``total_steps`` they hold their value at the last step, ``t = T - 1``;
    everything else (the operands ``t`` and ``t/T``, the bias corrections)
    follows the true step. ``to_optax``, the population engine (whose host
    tables have ``T`` rows) and exported modules all read it here.
    """
    return xp.minimum(step, total_steps - 1)
