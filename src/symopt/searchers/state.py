"""The search state and the ask/tell bookkeeping every searcher shares.

This module owns what is the same for all searchers of ``symopt.searchers``:

* :class:`SearchState`, the immutable state (seed, generation, id counter,
  population with its fitness, the candidates asked but not yet told, the
  best candidate told so far), changed only with ``dataclasses.replace``;
* per-call random generators, ``np.random.default_rng((seed, generation,
  salt))`` (:func:`rng_for`), so a search is a pure function of its seed and
  the fitness values told;
* id allocation and the checks on ``tell`` (:class:`AskTell`);
* the first population: zoo seeds from ``space.seeds`` then samples
  (:func:`first_proposals`);
* one-line configuration errors (:func:`require`).

A searcher subclasses :class:`AskTell` and supplies only what differs: how
children are bred (``_breed``) and who survives a tell (``_survive``).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from symopt.searchers import selection
from symopt.searchers.base import Candidate


@dataclasses.dataclass(frozen=True)
class SearchState:
    """Everything a searcher remembers between calls (see ``search.base``).

    Attributes:
        seed: the search's seed.
        generation: the number of completed ask/tell rounds.
        next_id: the id the next candidate gets.
        population: the candidates the searcher currently breeds from.
        fitness: one cleaned fitness per ``population`` member.
        pending: the candidates of the last ``ask``, awaiting ``tell``.
        best: the best candidate told so far and its fitness (``None`` before
            any tell); ties keep the earlier one.
    """

    seed: int
    generation: int = 0
    next_id: int = 0
    population: tuple[Candidate, ...] = ()
    fitness: tuple[float, ...] = ()
    pending: tuple[Candidate, ...] = ()
    best: tuple[Candidate, float] | None = None


class Proposal(NamedTuple):
    """A child before it has an id: genome, parent ids, origin."""

    genome: Any
    parents: tuple[int, ...] = ()
    origin: str = "sample"


def require(ok: bool, owner: str, field: str, message: str) -> None:
    """Raises ``ValueError("<owner>.<field>: <message>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{owner}.{field}: {message}")


def rng_for(state: SearchState, salt: str) -> np.random.Generator:
    """The generator for one call: ``default_rng((seed, generation, crc32(salt)))``."""
    return np.random.default_rng((state.seed, state.generation, zlib.crc32(salt.encode())))


def progress_at(generation: int, horizon: int | None) -> float:
    """``generation / horizon`` clipped to [0, 1]; 0 when there is no horizon."""
    if not horizon:
        return 0.0
    return float(min(1.0, max(0.0, generation / horizon)))


def first_proposals(
    space: Any,
    rng: np.random.Generator,
    seed_names: Sequence[str] | None,
    size: int,
    *,
    next_id: int,
    fill: str = "sample",
) -> list[Proposal]:
    """The first population: zoo seeds, then ``size - len(seeds)`` more.

    Args:
        space: the search space.
        rng: the call's generator.
        seed_names: zoo names for ``space.seeds`` (``None``: the space's
            defaults; ``()``: no seeds). Seeds beyond ``size`` are dropped.
        size: the number of proposals.
        next_id: the id the first proposal will get (mutants name their seed).
        fill: ``"sample"`` fills with ``space.sample``; ``"mutate"`` fills with
            mutants of the seeds in turn (a warm start, as Lion's search starts
            from AdamW; Chen et al. 2023), or samples when there are no seeds.
    """
    seeds = (
        []
        if seed_names is not None and len(seed_names) == 0
        else list(space.seeds(seed_names).values())
    )
    seeds = seeds[:size]
    proposals = [Proposal(genome, (), "seed") for genome in seeds]
    for i in range(size - len(proposals)):
        if fill == "mutate" and seeds:
            j = i % len(seeds)
            genome = space.mutate(rng, seeds[j], progress=0.0)
            proposals.append(Proposal(genome, (next_id + j,), "mutation"))
        else:
            proposals.append(Proposal(space.sample(rng), (), "sample"))
    return proposals


def normalize_seed_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """``None`` stays ``None`` (the space's defaults); anything else a tuple.

    A single string is refused: it would otherwise read as one name per letter.
    """
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError(f"seed_names: expected a sequence of zoo names, got the string {names!r}")
    return tuple(names)


class AskTell:
    """ask/tell over :class:`SearchState`, for searchers that are frozen dataclasses.

    Subclasses have the fields ``space``, ``population_size`` and
    ``seed_names`` and implement :meth:`_breed` and :meth:`_survive`.
    The first ``ask`` (generation 0) returns :meth:`_first`'s population and
    the first ``tell`` makes it the population; later rounds breed from it.
    """

    space: Any
    population_size: int
    seed_names: tuple[str, ...] | None

    def init(self, seed: int) -> SearchState:
        """The initial state for ``seed`` (a non-negative integer)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        return SearchState(seed=int(seed))

    def ask(self, state: SearchState) -> tuple[SearchState, list[Candidate]]:
        """The next candidates to measure, and the state that remembers them."""
        if state.pending:
            raise ValueError(f"ask: {len(state.pending)} candidates asked before are not told yet")
        rng = rng_for(state, "ask")
        if state.generation == 0:
            proposals = self._first(state, rng)
        else:
            proposals = self._breed(state, rng)
        candidates = [
            Candidate(
                id=state.next_id + i,
                genome=p.genome,
                parents=tuple(p.parents),
                origin=p.origin,
                generation=state.generation,
            )
            for i, p in enumerate(proposals)
        ]
        state = dataclasses.replace(
            state, next_id=state.next_id + len(candidates), pending=tuple(candidates)
        )
        return state, candidates

    def tell(
        self, state: SearchState, candidates: Sequence[Candidate], fitness: Any
    ) -> SearchState:
        """The state after measuring the candidates of the last ``ask`` (same order).

        Raises:
            ValueError: ``candidates`` are not the pending ones, or the number
                of fitness values differs.
        """
        told = tuple(candidates)
        if not state.pending:
            raise ValueError("tell: nothing was asked (call ask first)")
        if [c.id for c in told] != [c.id for c in state.pending]:
            raise ValueError(
                f"tell: expected the {len(state.pending)} pending candidates "
                f"(ids {[c.id for c in state.pending][:8]}...), got ids "
                f"{[c.id for c in told][:8]}..."
            )
        values = selection.clean_fitness(fitness)
        if len(values) != len(told):
            raise ValueError(f"tell: {len(told)} candidates but {len(values)} fitness values")
        told_fitness = tuple(float(v) for v in values)
        if state.generation == 0:
            population, population_fitness = told, told_fitness
        else:
            population, population_fitness = self._survive(state, told, told_fitness)
        return dataclasses.replace(
            state,
            generation=state.generation + 1,
            population=tuple(population),
            fitness=tuple(population_fitness),
            pending=(),
            best=_better(state.best, told, told_fitness),
        )

    def best(self, state: SearchState) -> tuple[Candidate, float] | None:
        """The best candidate told so far and its fitness (``None`` before any)."""
        return state.best

    # -- what a searcher supplies ---------------------------------------------

    def _first(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        """The first population (zoo seeds, then samples)."""
        return first_proposals(
            self.space, rng, self.seed_names, self.population_size, next_id=state.next_id
        )

    def _breed(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        """The children of one round, bred from ``state.population``."""
        raise NotImplementedError

    def _survive(
        self,
        state: SearchState,
        told: tuple[Candidate, ...],
        fitness: tuple[float, ...],
    ) -> tuple[Sequence[Candidate], Sequence[float]]:
        """The next population and its fitness, after ``told`` were measured."""
        raise NotImplementedError


def population_arrays(state: SearchState) -> tuple[np.ndarray, np.ndarray]:
    """``(fitness, ids)`` of ``state.population`` as arrays, for selection."""
    return (
        np.asarray(state.fitness, dtype=np.float64),
        np.asarray([c.id for c in state.population], dtype=np.int64),
    )


def _better(
    best: tuple[Candidate, float] | None,
    told: tuple[Candidate, ...],
    fitness: tuple[float, ...],
) -> tuple[Candidate, float] | None:
    if not told:
        return best
    i = int(selection.rank(fitness, [c.id for c in told])[0])
    if best is None or fitness[i] > best[1]:
        return told[i], fitness[i]
    return best
