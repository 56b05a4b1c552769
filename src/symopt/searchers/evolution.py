"""Regularized (aging) evolution (Real et al. 2019; as used by Chen et al. 2023).

This module owns :class:`RegularizedEvolution`. The population is a FIFO
queue of told candidates with their fitness, oldest first
(``SearchState.population``):

* the first ``ask`` returns ``population_size`` candidates: the zoo seeds,
  then either samples (``init_fill="sample"``) or mutants of the seeds in
  turn (``init_fill="mutate"``: a warm start, as Lion's search starts from
  AdamW);
* every later ``ask`` returns ``batch_size`` children, each a mutant of the
  winner of a tournament of ``sample_size`` members drawn without
  replacement (:func:`symopt.searchers.selection.tournament`);
* ``tell`` appends the children and removes the oldest members to keep
  ``population_size``: a member dies of age, not of low fitness, which is
  what regularizes the search (Real et al. 2019). ``batch_size > 1`` is the
  asynchronous-workers setting of the paper made synchronous;
* with ``niche_size = k > 0``, members are grouped into niches by
  :func:`symopt.graph.structure_key` (one program at any hyperparameters,
  constants or schedule) and a niche holds at most ``k`` of them: when a tell
  overfills one, its worst members (ties: the oldest) die first, then the
  oldest overall as before. Without it, the mutants of a good seed (AdamW at
  other betas or rates) soon fill the whole population and the search
  re-tunes that seed; with it, other programs keep their places while they
  improve. With ``niches="behaviour"``, every member the novelty test
  (:func:`symopt.novelty.nearest`) judges a re-tuning of one zoo optimizer
  shares that optimizer's niche, whatever its structure: AdamW with a
  clipped update or a dead term is still AdamW, and at most ``niche_size``
  such members hold places, so the rest of the population is programs that
  behave unlike any known optimizer. The zoo seeds get no privilege either
  way: they age like everyone;
* with ``retries = r > 0``, a child that computes what a living member or an
  earlier child of the same ask computes (the same
  :func:`symopt.integrity.fingerprint`, for a space of graphs; else the same
  genome) is mutated again from the same parent, up to ``r`` times. A strong
  parent wins most tournaments, and most of its mutations either repeat its
  small discrete neighbourhood (a momentum type, a schedule kind) or touch
  only what its update never reads (a dead state); those copies cost no
  training (the run's fingerprint cache) but take the places of new
  programs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from symopt import graph as graph_lib
from symopt import integrity, novelty
from symopt.archive import to_jsonable
from symopt.searchers import selection
from symopt.searchers.state import (
    AskTell,
    Proposal,
    SearchState,
    first_proposals,
    normalize_seed_names,
    population_arrays,
    progress_at,
    require,
)

INIT_FILLS = ("sample", "mutate")
NICHES = ("structure", "behaviour")


@dataclasses.dataclass(frozen=True)
class RegularizedEvolution(AskTell):
    """Aging evolution over a FIFO population (see the module docstring).

    Attributes:
        space: the search space.
        population_size: members kept alive (``P`` in Real et al.).
        sample_size: tournament size (``S`` in Real et al.).
        batch_size: children per ask, all measured in parallel.
        generations: the planned number of rounds, for the mutation
            ``progress`` (``None``: progress stays 0).
        seed_names: zoo names in the first population (``None``: the space's
            default seeds; ``()``: none), e.g. ``("adamw",)`` as in Lion.
        init_fill: how the rest of the first population is made, one of
            ``INIT_FILLS``.
        niche_size: the most members one program structure may hold (0:
            no limit, the published algorithm).
        retries: how often a child that repeats a living member or an
            earlier child of its ask is mutated again (0: never).
        niches: what a niche is, one of ``NICHES``: ``"structure"`` (the
            program without its numbers) or ``"behaviour"`` (re-tunings of one
            zoo optimizer share a niche; other programs by structure).
    """

    space: Any
    population_size: int = 100
    sample_size: int = 25
    batch_size: int = 16
    generations: int | None = None
    seed_names: Sequence[str] | None = None
    init_fill: str = "sample"
    niche_size: int = 0
    retries: int = 0
    niches: str = "structure"

    def __post_init__(self):
        name = type(self).__name__
        require(self.population_size >= 1, name, "population_size", "must be >= 1")
        require(
            1 <= self.sample_size <= self.population_size,
            name,
            "sample_size",
            f"must be in [1, population_size={self.population_size}], got {self.sample_size}",
        )
        require(
            1 <= self.batch_size <= self.population_size,
            name,
            "batch_size",
            f"must be in [1, population_size={self.population_size}], got {self.batch_size}",
        )
        require(
            self.generations is None or self.generations >= 1,
            name,
            "generations",
            "must be >= 1 or None",
        )
        require(
            self.init_fill in INIT_FILLS,
            name,
            "init_fill",
            f"must be one of {', '.join(INIT_FILLS)}, got {self.init_fill!r}",
        )
        require(
            isinstance(self.niche_size, (int, np.integer)) and self.niche_size >= 0,
            name,
            "niche_size",
            f"must be an integer >= 0 (0: no niches), got {self.niche_size!r}",
        )
        require(
            self.niches in NICHES,
            name,
            "niches",
            f"must be one of {', '.join(NICHES)}, got {self.niches!r}",
        )
        require(
            isinstance(self.retries, (int, np.integer)) and self.retries >= 0,
            name,
            "retries",
            f"must be an integer >= 0, got {self.retries!r}",
        )
        object.__setattr__(self, "seed_names", normalize_seed_names(self.seed_names))

    def _first(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        return first_proposals(
            self.space,
            rng,
            self.seed_names,
            self.population_size,
            next_id=state.next_id,
            fill=self.init_fill,
        )

    @property
    def children_per_generation(self) -> int:
        """Candidates each ask after the first returns."""
        return self.batch_size

    def _breed(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        fitness, ids = population_arrays(state)
        progress = progress_at(state.generation - 1, self.generations)
        children = []
        seen = ({_genome_key(self.space, c.genome) for c in state.population}
                if self.retries else set())
        for _ in range(self.batch_size):
            parent = state.population[selection.tournament(rng, fitness, ids, self.sample_size)]
            for _ in range(self.retries + 1):
                genome = self.space.mutate(rng, parent.genome, progress=progress)
                key = _genome_key(self.space, genome) if self.retries else None
                if key not in seen:
                    break
            seen.add(key)
            children.append(Proposal(genome, (parent.id,), "mutation"))
        return children

    def _survive(self, state, told, fitness):
        """Append the children; an overfull niche loses its worst, then the
        oldest members die to keep ``population_size``."""
        population, values = state.population + told, state.fitness + fitness
        if self.niche_size:
            keep = self._niche_survivors(population, values)
            population = tuple(population[i] for i in keep)
            values = tuple(values[i] for i in keep)
        return population[-self.population_size :], values[-self.population_size :]

    def _niche_survivors(self, population, values) -> list[int]:
        """Indices (in age order) of the members their niches keep: the
        ``niche_size`` best of each, ties to the younger."""
        niches: dict[str, list[int]] = {}
        for i, c in enumerate(population):
            key = niche_key(self.space, c.genome, self.niches)
            niches.setdefault(key, []).append(i)
        keep = []
        for members in niches.values():
            ranked = sorted(members, key=lambda i: (-_finite(values[i]), -i))
            keep += ranked[: self.niche_size]
        return sorted(keep)


def niche_key(space: Any, genome: Any, niches: str = "structure") -> Any:
    """``genome``'s niche: ``space.niche(genome)`` where the space defines one,
    else the :func:`~symopt.graph.structure_key` of its graph; with
    ``niches="behaviour"``, ``re-tuning of <name>`` for a graph the novelty test
    judges a re-tuning of a zoo optimizer."""
    niche = getattr(space, "niche", None)
    if niche is not None:
        return niche(genome)
    graph = space.to_graph(genome)
    if niches == "behaviour":
        judged = _verdict(graph)
        if judged != "new":
            return judged
    return graph_lib.structure_key(graph)


@functools.lru_cache(maxsize=4096)
def _verdict(graph: Any) -> str:
    try:
        return novelty.verdict(novelty.nearest(graph))
    except (ValueError, ArithmeticError):  # a graph the probe cannot run
        return "new"


def _genome_key(space: Any, genome: Any) -> str:
    """What a genome computes: the fingerprint of its graph where the space
    has graphs, else its JSON form, else its repr."""
    to_graph = getattr(space, "to_graph", None)
    if to_graph is not None:
        try:
            return integrity.fingerprint(to_graph(genome))
        except (ValueError, ArithmeticError):  # a graph the probe cannot run: by its form
            pass
    to_json = getattr(space, "to_json", None)
    return repr(genome) if to_json is None else json.dumps(to_jsonable(to_json(genome)),
                                                          sort_keys=True)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf
