"""The parts of an optimizer step that every graph shares, written once over ``xp``.

A step is: clip the gradient; update the moment EMAs and bias-correct them;
evaluate the graph's direction (:mod:`symopt.compile`, per graph); apply
momentum; add decoupled weight decay; scale by ``-learning_rate x schedule``.
Everything but the direction is the same for every graph, and lives here as
functions over an array namespace ``xp`` whose arguments may be Python
numbers or arrays: ``to_optax`` and the integrity check call them per leaf
(``jax.numpy`` and NumPy) with one graph's constants, and the population
engine calls them once over all runs with per-run arrays. So the
compiled optimizer, the NumPy check and the population cannot disagree on
them. Exported modules embed this module's source (:mod:`symopt.export`).
"""

from __future__ import annotations

from typing import Any

Array = Any


def ema(xp, old: Array, new: Array, beta: Array) -> Array:
    """The moment update ``(1 - beta) * new + beta * old``, in
    ``optax.tree.update_moment``'s order (so the zoo matches optax bit for bit)."""
    return (1 - beta) * new + beta * old


def bias_correction(xp, beta: Array, step: Array) -> Array:
    """``1 - beta ** (t + 1)``: an EMA at 0-based step ``t`` divided by it is unbiased."""
    return 1 - xp.asarray(beta, dtype=xp.result_type(step, float)) ** (step + 1)


def momentum(xp, kind: Array, beta: Array, direction: Array,
             trace: Array) -> tuple[Array, Array]:
    """``optax.trace``: ``(direction after momentum, new trace)``.

    ``kind`` is a :data:`symopt.graph.MOMENTUM_TYPES` index (or an array of them, one per run):
    the new trace is ``direction + beta * trace`` (kept as it was for ``none``);
    classical momentum steps along the new trace, Nesterov along ``direction +
    beta * new trace``.
    """
    new_trace = xp.where(kind > 0, direction + beta * trace, trace)
    out = xp.where(kind == 1, new_trace, xp.where(kind == 2, direction + beta * new_trace,
                                                   direction))
    return out, new_trace


def scaled_update(xp, direction: Array, w: Array, weight_decay: Array,
                  learning_rate: Array) -> Array:
    """``-learning_rate * (direction + weight_decay * w)``: decoupled weight decay
    (``optax.add_decayed_weights``), then the step (``optax.scale_by_learning_rate``).
    ``learning_rate`` already holds the schedule's multiplier; a weight decay of
    Python 0 adds nothing (not even ``0 * w``)."""
    if adds_weight_decay(weight_decay):
        direction = direction + weight_decay * w
    return -learning_rate * direction


def adds_weight_decay(weight_decay: Array) -> bool:
    """False only for a Python 0: then the step adds nothing, not even ``0 * w``
    (``to_optax`` leaves ``optax.add_decayed_weights`` out of its chain)."""
    return not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
