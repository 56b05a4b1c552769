"""The population engine's records: the optimizer state, and one step's inputs per run.

Every record is a NamedTuple, so a pytree: a strategy can ``vmap`` over it,
slice a run's row out of it or pack it (:mod:`symopt.population.packing`).
:class:`PopulationState` is what the optax transformation keeps between
steps; the ``Run*`` records are what a run's step reads: its scalars at the
step, its arrays over the weights, and its graph's integer and float fields.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from symopt.program import ExprArrays


class PopulationState(NamedTuple):
    """Optimizer state of R runs; arrays over the flattened weights [R, L]."""

    count: jax.Array  # int32 [R]
    m: jax.Array  # [R, L]
    v: jax.Array
    gamma: jax.Array
    states: jax.Array  # [R, S, L]
    trace: jax.Array  # [R, L]
    key: jax.Array  # uint32 [R, 2] key data


class Moments(NamedTuple):
    """One value for each moment EMA: ``m`` (of g, with beta1), ``v`` (of
    g**2, beta2) and ``gamma`` (of g**3, beta3)."""

    m: Any
    v: Any
    gamma: Any


class RunScalars(NamedTuple):
    """The step-dependent scalars of every run at its candidate's step: what
    :class:`symopt.interpret.StepScalars` is to one graph, over runs."""

    step: jax.Array  # [R] t, 0-based, as a float
    frac: jax.Array  # [R] t / T
    schedule: jax.Array  # [R] learning-rate multiplier (held past T)
    decays: jax.Array  # [R, K] decay multiplier of each operand slot (held past T)
    bias: Moments  # [R] each: 1 - beta**(t+1), or 1 where not bias-corrected


class RunArrays(NamedTuple):
    """What a run's operands read over the weights: [R, L] arrays (one run's
    rows inside the step). The moments are not bias-corrected. ``noise`` and
    ``uniform`` are the draws, or functions making them on demand."""

    g: Any
    w: Any
    m: Any
    v: Any
    gamma: Any
    noise: Any = None
    uniform: Any = None


class RunInts(NamedTuple):
    """The integer fields of a run's graph (:class:`symopt.program.Program`'s, per run)."""

    operands: jax.Array  # [R, K]
    num_operands: jax.Array  # [R]
    num_constants: jax.Array  # [R]
    num_states: jax.Array  # [R]
    update: ExprArrays  # [R, N]
    states: jax.Array  # [R, S]


class RunFloats(NamedTuple):
    """The float fields of a run's step."""

    constants: jax.Array  # [R, C]
    eps: jax.Array  # [R]
    scalars: RunScalars  # its schedule None: it scales the update, outside the step


def betas(hparams) -> Moments:
    """The moment EMAs' decays of ``hparams`` (a graph's or every run's)."""
    return Moments(hparams.beta1, hparams.beta2, hparams.beta3)
