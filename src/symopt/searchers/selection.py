"""Fitness cleaning, ranking and tournament selection, shared by every searcher.

One place decides how fitness values compare, so that the genetic algorithm,
the particle GA, regularized evolution and successive halving agree:

* :func:`clean_fitness` maps every non-finite value (NaN, +inf, -inf) to
  ``-inf``, the mark of a rejected or failed candidate (``search.base``).
* :func:`rank` orders candidates best first; equal fitness is broken by the
  lower id, so a ranking never depends on the order candidates were told.
* :func:`tournament` picks a parent (Goldberg & Deb 1991; Real et al. 2019):
  ``size`` contestants drawn without replacement, the best wins. While any
  candidate has finite fitness, contestants are drawn only from those, so a
  ``-inf`` candidate is never a parent while a finite one exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def clean_fitness(fitness: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fitness as a 1-D float64 array with every non-finite value set to ``-inf``.

    ``+inf`` is treated as a failure too: no trained optimizer earns it, so it
    can only come from a broken metric.

    Args:
        fitness: one value per candidate, higher is better.

    Returns:
        A new float64 array of the same length.

    >>> clean_fitness([0.5, float("nan"), float("inf")]).tolist()
    [0.5, -inf, -inf]
    """
    values = np.array(fitness, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"fitness: expected a 1-D sequence, got shape {values.shape}")
    values[~np.isfinite(values)] = -np.inf
    return values


def rank(fitness: Sequence[float] | np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Indices that order candidates best first; ties go to the lower id.

    Args:
        fitness: one value per candidate (cleaned with :func:`clean_fitness`).
        ids: the candidates' ids, same length.

    Returns:
        An int array: ``fitness[rank(...)[0]]`` is the best.

    >>> rank([1.0, 3.0, 3.0, float("nan")], [7, 9, 8, 1]).tolist()
    [2, 1, 0, 3]
    """
    values = clean_fitness(fitness)
    keys = np.asarray(ids)
    if keys.shape != values.shape:
        raise ValueError(f"ids: expected {len(values)} ids, got shape {keys.shape}")
    return np.lexsort((keys, -values))


def tournament(
    rng: np.random.Generator,
    fitness: Sequence[float] | np.ndarray,
    ids: Sequence[int] | np.ndarray,
    size: int,
) -> int:
    """The index of a tournament winner.

    Draws ``min(size, pool)`` contestants without replacement from the pool
    (the candidates with finite fitness, or everyone when none has one) and
    returns the best of them by :func:`rank`.

    Args:
        rng: the only source of randomness.
        fitness: one value per candidate, higher is better.
        ids: the candidates' ids (tie-break).
        size: the tournament size, at least 1.

    Returns:
        An index into ``fitness``.
    """
    values = clean_fitness(fitness)
    if len(values) == 0:
        raise ValueError("tournament: empty population")
    if size < 1:
        raise ValueError(f"tournament: size must be >= 1, got {size}")
    pool = np.flatnonzero(np.isfinite(values))
    if len(pool) == 0:
        pool = np.arange(len(values))
    contestants = rng.choice(pool, size=min(size, len(pool)), replace=False)
    keys = np.asarray(ids)
    return int(contestants[rank(values[contestants], keys[contestants])[0]])
