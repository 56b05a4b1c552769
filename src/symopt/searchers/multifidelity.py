"""Multi-fidelity selection: successive halving / progressive elimination.

This module owns :func:`successive_halving`, a pure function over an
``evaluate`` callback, and its :class:`Stage` and :class:`HalvingResult`.
Candidates are measured on a sequence of ever more expensive stages (more
steps, larger models or datasets) and only the best fraction moves on: the
progressive elimination protocol of Morgan & Hougen 2024 (CIFAR-10 surrogate,
then CIFAR-100, TinyImageNet, fine-tuning), the funnel
selection of Chen et al. 2023, and successive halving
(Jamieson & Talwalkar 2016) when every stage keeps one half.

Rules:

* fitness is cleaned with :func:`symopt.searchers.selection.clean_fitness`
  (NaN and inf become ``-inf``); a ``-inf`` candidate is never promoted, so a
  stage may keep fewer than its ``keep`` says;
* survivors are the best by fitness, ties to the lower id
  (:func:`symopt.searchers.selection.rank`), and are measured on the next stage
  in that order;
* the final ranking orders every id by: finite fitness at the last stage it
  was measured on first, then the number of stages it reached, then that
  fitness, then the lower id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from symopt.searchers import selection


@dataclasses.dataclass(frozen=True)
class Stage:
    """One fidelity level and how many of its candidates go on to the next.

    Attributes:
        name: the stage's name, e.g. a task name (passed on to ``evaluate``).
        keep: a float in (0, 1] is the fraction kept (rounded up, at least
            one); an int >= 1 is the number kept. The last stage's ``keep``
            gives :attr:`HalvingResult.survivors`'s last entry (the winners).
    """

    name: str
    keep: float | int = 0.5

    def __post_init__(self):
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
            raise ValueError(f"Stage.keep: expected a fraction or a count, got {keep!r}")
        if isinstance(keep, (float, np.floating)) and not 0.0 < keep <= 1.0:
            raise ValueError(f"Stage.keep: a fraction must be in (0, 1], got {keep}")
        if isinstance(keep, (int, np.integer)) and keep < 1:
            raise ValueError(f"Stage.keep: a count must be >= 1, got {keep}")

    def num_kept(self, num_measured: int) -> int:
        """How many of ``num_measured`` candidates this stage promotes at most."""
        if isinstance(self.keep, (float, np.floating)):
            return min(num_measured, max(1, math.ceil(self.keep * num_measured - 1e-9)))
        return min(num_measured, int(self.keep))


@dataclasses.dataclass(frozen=True)
class HalvingResult:
    """What :func:`successive_halving` measured and decided.

    Attributes:
        ids: the candidate ids, in the order given.
        stages: the stages, in order.
        fitness: ``(len(ids), len(stages))`` float array; row ``i`` is
            ``ids[i]``'s cleaned fitness per stage, NaN where it was not
            measured (``-inf`` where it failed).
        survivors: per stage, the ids it promoted, best first.
        ranking: every id, best first (see the module docstring).
    """

    ids: tuple[int, ...]
    stages: tuple[Stage, ...]
    fitness: np.ndarray
    survivors: tuple[tuple[int, ...], ...]
    ranking: tuple[int, ...]

    def fitness_of(self, candidate_id: int) -> dict[str, float]:
        """``{stage name: fitness}`` for the stages ``candidate_id`` was measured on."""
        row = self.fitness[self.ids.index(candidate_id)]
        return {s.name: float(v) for s, v in zip(self.stages, row, strict=True) if not np.isnan(v)}


def successive_halving(
    ids: Sequence[int],
    stages: Sequence[Stage],
    evaluate: Callable[[tuple[int, ...], Stage], Sequence[float] | np.ndarray],
) -> HalvingResult:
    """Measures ``ids`` stage by stage, promoting the best of each stage.

    Args:
        ids: unique candidate ids (e.g. ``Candidate.id``).
        stages: the stages, cheapest first.
        evaluate: ``evaluate(ids, stage)`` returns one fitness per id (higher
            is better; NaN/inf count as failures). It is called once per stage
            that has candidates, with the survivors of the previous stage.

    Returns:
        A :class:`HalvingResult`.

    Example:
        >>> stages = [Stage("small", keep=0.5), Stage("large", keep=1)]
        >>> result = successive_halving([3, 1, 2, 0], stages,
        ...                             lambda ids, stage: [float(i) for i in ids])
        >>> result.survivors, result.ranking
        (((3, 2), (3,)), (3, 2, 1, 0))
    """
    ids = tuple(int(i) for i in ids)
    stages = tuple(stages)
    if len(set(ids)) != len(ids):
        raise ValueError("successive_halving: ids must be unique")
    if not stages:
        raise ValueError("successive_halving: need at least one stage")
    row = {candidate_id: i for i, candidate_id in enumerate(ids)}
    table = np.full((len(ids), len(stages)), np.nan)
    survivors: list[tuple[int, ...]] = []
    current = ids
    for s, stage in enumerate(stages):
        if not current:
            survivors.append(())
            continue
        values = selection.clean_fitness(evaluate(current, stage))
        if len(values) != len(current):
            raise ValueError(
                f"successive_halving: evaluate returned {len(values)} values "
                f"for {len(current)} ids at stage {stage.name!r}"
            )
        table[[row[i] for i in current], s] = values
        order = selection.rank(values, current)[: stage.num_kept(len(current))]
        current = tuple(current[i] for i in order if np.isfinite(values[i]))
        survivors.append(current)
    table.setflags(write=False)
    return HalvingResult(
        ids=ids,
        stages=stages,
        fitness=table,
        survivors=tuple(survivors),
        ranking=_final_ranking(ids, table),
    )


def _final_ranking(ids: tuple[int, ...], table: np.ndarray) -> tuple[int, ...]:
    measured = ~np.isnan(table)
    depth = measured.sum(axis=1)
    last = np.array([table[i, d - 1] if d else -np.inf for i, d in enumerate(depth)])
    finite = np.isfinite(last)
    # lexsort: the last key is the primary one.
    order = np.lexsort((np.asarray(ids), -np.where(finite, last, 0.0), -depth, ~finite))
    return tuple(ids[i] for i in order)
