"""The parts of an optimizer step that every graph shares, written once over
an array namespace ``xp``.

A step is: clip the gradient (by global norm, then by value); update the
moment EMAs and bias-correct them; evaluate the graph's direction
(:mod:`symopt.interpret`, per graph); apply momentum; add decoupled weight
decay; scale by ``-learning_rate x schedule``.
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

from symopt.ops import TINY

Array = Any


def clip_by_value(xp, g: Array, clip_value: Array) -> Array:
    """``g`` clipped to [-clip_value, clip_value] element-wise; 0 means no clipping
    (a Python 0 skips the work, an array of per-run values selects)."""
    if isinstance(clip_value, (int, float)):
        return xp.clip(g, -clip_value, clip_value) if clip_value else g
    return xp.where(clip_value > 0, xp.clip(g, -clip_value, clip_value), g)


def norm_clip_factor(xp, g: Array, clip_norm: Array) -> Array:
    """What each row of ``g`` ([runs, L]) is scaled by to clip it to global
    norm ``clip_norm`` ([runs, 1]; 0: no clipping, a factor of 1)."""
    norm = xp.sqrt(xp.sum(g * g, axis=-1, keepdims=True))
    return xp.where(clip_norm > 0, xp.minimum(1.0, clip_norm / xp.maximum(norm, TINY)), 1.0)


def clip_rows_by_norm(xp, g: Array, clip_norm: Array) -> Array:
    """Each row of ``g`` ([runs, L]) scaled to global norm at most ``clip_norm``
    (0: no clipping): ``optax.clip_by_global_norm`` over flattened runs, as
    the population and the NumPy check apply it."""
    return g * norm_clip_factor(xp, g, clip_norm)


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
