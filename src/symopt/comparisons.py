"""The comparisons: the optimizers a search's winner is reported next to.

This module owns :data:`COMPARISONS`, the registry that ``test.comparisons``
names: each entry builds, for a task of a given number of steps, the
optimizer as its authors recommend training it, so that beating it means
something. :mod:`symopt.heldout` trains them next to the found optimizers,
every one over the same learning-rate multipliers, chosen on validation.

A comparison is one of two kinds of :data:`Optimizer`:

* a :class:`~symopt.graph.Graph`, trained by the population engine with the
  found optimizers (Adam, AdamW, Lion, terms-GA);
* an :class:`OptaxOptimizer`, an optimizer optax ships trained through the
  optax path (:meth:`symopt.evaluate.Trainer.optax`): Muon and schedule-free
  AdamW. Schedule-free AdamW cannot be a graph: it keeps two sequences and is
  evaluated at other parameters than it trains at
  (``optax.contrib.schedule_free_eval_params``). Muon could be one
  (``zoo.muon``, with per-leaf operators), but a per-leaf operator in a
  population makes every row of its program take the per-leaf path
  (:func:`symopt.measure.shape_for`), the found optimizers' rows included;
  through optax, its Newton-Schulz iterations cost its own rows only, and it
  is ``optax.contrib.muon`` itself.

The schedules (:func:`warmup_cosine`): AdamW, Lion and Muon warm up linearly
over :data:`WARMUP_FRACTION` of the steps, then decay by a cosine to 0, as
their authors train them; schedule-free AdamW warms up as long and then holds
its rate (no decay: that is its point); Adam, the normaliser, keeps a constant
rate; terms-GA keeps its published schedule.

Weight decay is decoupled and scaled by the learning rate, as in optax
(``add_decayed_weights`` then the rate: ``w -= lr * (d + wd * w)``), so a
step shrinks the weights by ``lr * wd``. AdamW and schedule-free AdamW use
optax.adamw's default ``wd = 1e-4`` at their default rate 1e-3 and 2.5e-3.
Lion's paper trains at a rate 3-10x smaller than AdamW's with a weight decay
3-10x larger, so that ``lr * wd`` stays the same: Lion's rate here is 1e-4
(10x smaller) and its weight decay 1e-3 (10x larger), which are optax.lion's
defaults. Muon keeps optax.contrib.muon's (none).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from symopt import interpret, zoo
from symopt.graph import Graph, Schedule, validate
from symopt.registry import Registry

WARMUP_FRACTION = 0.05
"""The comparisons' linear warmup, as a fraction of the steps."""
ADAMW_WEIGHT_DECAY = zoo.adamw().hparams.weight_decay
"""AdamW's decoupled weight decay (optax.adamw's default), shared by schedule-free AdamW."""


@dataclasses.dataclass(frozen=True)
class OptaxOptimizer:
    """An optimizer optax ships, at one learning rate, trained through the optax
    path (:meth:`symopt.evaluate.Trainer.optax`).

    Attributes:
      make: learning rate -> the transformation. The same object for the same
        recipe and steps (the builders below cache it), so that every sweep of
        a task reuses one compiled program.
      learning_rate: the rate as found; a sweep trains its multiples.
      eval_params: ``(optimizer state, params) -> params`` the validation and
        test losses are measured at (None: the trained params).
    """

    make: Callable[[Any], optax.GradientTransformation]
    learning_rate: float
    eval_params: Callable[[Any, Any], Any] | None = None


Optimizer = Graph | OptaxOptimizer
"""What a comparison is: a graph or an optimizer optax ships."""


def learning_rate(optimizer: Optimizer) -> float:
    """``optimizer``'s learning rate as found."""
    if isinstance(optimizer, Graph):
        return optimizer.hparams.learning_rate
    return optimizer.learning_rate


def warmup_steps(steps: int) -> int:
    """The warmup of a task of ``steps`` steps: :data:`WARMUP_FRACTION` of them, at least 1."""
    return max(1, int(round(WARMUP_FRACTION * steps)))


def warmup_cosine(steps: int) -> Schedule:
    """Linear warmup over :func:`warmup_steps`, then cosine decay to 0."""
    return Schedule(kind="cosine", warmup_steps=warmup_steps(steps))


def scheduled(rate: Any, schedule: Schedule, steps: int) -> optax.Schedule:
    """``rate`` times ``schedule``'s multiplier, as an optax schedule: the
    multiplier a graph with that schedule applies
    (:func:`symopt.interpret.schedule_multiplier`)."""
    return lambda count: rate * interpret.schedule_multiplier(schedule, jnp, count, steps)


# --------------------------------------------------------------------------
# The comparisons.


def adam(steps: int) -> Graph:
    """Adam at a constant rate: the normaliser of every fitness."""
    return zoo.adam()


def adamw_cosine(steps: int) -> Graph:
    """AdamW with :func:`warmup_cosine`."""
    return validate(zoo.adamw().replace(schedule=warmup_cosine(steps)))


def lion(steps: int) -> Graph:
    """Lion (optax.lion's rate 1e-4 and weight decay 1e-3) with :func:`warmup_cosine`."""
    return validate(zoo.lion().replace(schedule=warmup_cosine(steps)))


def terms_ga(steps: int) -> Graph:
    """Marfinetz 2025's optimizer, with its published warmup and cosine decay."""
    return zoo.terms_ga()


MUON_LEARNING_RATE = zoo.muon().hparams.learning_rate
"""Muon's rate as found, 0.02, the zoo's (Jordan et al. 2024 train Muon's matrices at 0.02)."""


@functools.cache
def _muon(steps: int) -> Callable[[Any], optax.GradientTransformation]:
    schedule = warmup_cosine(steps)
    return lambda lr: optax.contrib.muon(scheduled(lr, schedule, steps))


def muon(steps: int) -> OptaxOptimizer:
    """``optax.contrib.muon`` with its defaults (orthogonalised Nesterov
    momentum on 2-D leaves, NAdam on the others, one rate) and
    :func:`warmup_cosine`."""
    return OptaxOptimizer(_muon(steps), MUON_LEARNING_RATE)


SCHEDULE_FREE_LEARNING_RATE = 2.5e-3
"""Schedule-free AdamW's rate as found (optax's default)."""


@functools.cache
def _schedule_free_adamw(steps: int) -> Callable[[Any], optax.GradientTransformation]:
    warmup = warmup_steps(steps)
    return lambda lr: optax.contrib.schedule_free_adamw(
        lr, warmup_steps=warmup, b1=0.9, weight_decay=ADAMW_WEIGHT_DECAY)


def schedule_free_adamw(steps: int) -> OptaxOptimizer:
    """``optax.contrib.schedule_free_adamw`` (Defazio et al. 2024) with a
    linear warmup over :func:`warmup_steps`, then a constant rate, b1 = 0.9
    and AdamW's weight decay; its losses are measured at
    ``optax.contrib.schedule_free_eval_params``."""
    return OptaxOptimizer(_schedule_free_adamw(steps), SCHEDULE_FREE_LEARNING_RATE,
                          eval_params=optax.contrib.schedule_free_eval_params)


COMPARISONS: Registry[Callable[[int], Optimizer]] = Registry("comparison", [
    ("adam", adam),
    ("adamw_cosine", adamw_cosine),
    ("lion", lion),
    ("terms_ga", terms_ga),
    ("muon", muon),
    ("schedule_free_adamw", schedule_free_adamw),
])
"""The optimizers a search's test tasks report its winner next to
(``test.comparisons``): name -> the optimizer for a task of ``steps`` steps."""
