"""The generational genetic algorithm (Marfinetz 2025).

This module owns :class:`GeneticAlgorithm`: tournament selection, elitism,
crossover then mutation, over any :class:`~symopt.spaces.base.Space`, as
ask/tell over a :class:`~symopt.searchers.state.SearchState`.

One generation, after the first (zoo seeds, then samples):

1. The ``elites`` best of the current population (ties: lower id) are carried
   over with their fitness; they are not asked again.
2. ``population_size - elites`` children are bred. Each child: parent ``a`` by
   tournament; with probability ``crossover_rate`` a second tournament parent
   ``b`` and ``space.crossover(a, b)``, which is then mutated with probability
   ``mutation_rate``; without crossover the child is always ``space.mutate(a)``
   (a child is never an unchanged copy, so no evaluation is spent twice).
3. ``space.mutate`` gets ``progress = gen / generations``, ``gen`` the 0-based
   index of the parents' generation, so a space with decaying mutation rates
   reproduces the reference's ``1 - 0.5 * gen / max_gen``.

The reference code (github.com/mmarfinetz/evo-optimizer) crosses every child
over and mutates it: ``crossover_rate = mutation_rate = 1``, the defaults here.
It re-evaluates elites every generation; here they keep their fitness, as the
ask/tell contract requires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from symopt.searchers import selection
from symopt.searchers.base import Candidate
from symopt.searchers.state import (
    AskTell,
    Proposal,
    SearchState,
    normalize_seed_names,
    population_arrays,
    progress_at,
    require,
)

MARFINETZ_SEEDS = ("sgd", "adam", "adamw", "rmsprop")
"""The zoo optimizers that seed the first population in Marfinetz 2025."""


@dataclasses.dataclass(frozen=True)
class GeneticAlgorithm(AskTell):
    """Generational GA with tournament selection and elitism (see the module docstring).

    Attributes:
        space: the search space.
        population_size: candidates per generation (elites included).
        generations: the planned number of generations; only sets the mutation
            ``progress`` (the run loop decides when to stop).
        tournament_size: contestants per tournament.
        elites: best candidates carried over unchanged each generation.
        crossover_rate: probability that a child is a crossover of two parents.
        mutation_rate: probability that a crossover child is also mutated.
        seed_names: zoo names seeding the first population (``None``: the
            space's default seeds; ``()``: none).

    Example:
        >>> ga = GeneticAlgorithm.marfinetz(space)  # doctest: +SKIP
        >>> state = ga.init(seed=0)  # doctest: +SKIP
        >>> state, candidates = ga.ask(state)  # doctest: +SKIP
    """

    space: Any
    population_size: int = 50
    generations: int = 50
    tournament_size: int = 4
    elites: int = 3
    crossover_rate: float = 1.0
    mutation_rate: float = 1.0
    seed_names: Sequence[str] | None = None

    def __post_init__(self):
        name = type(self).__name__
        require(self.population_size >= 1, name, "population_size", "must be >= 1")
        require(self.generations >= 1, name, "generations", "must be >= 1")
        require(self.tournament_size >= 1, name, "tournament_size", "must be >= 1")
        require(
            0 <= self.elites < self.population_size,
            name,
            "elites",
            f"must be in [0, population_size={self.population_size}), got {self.elites}",
        )
        require(0.0 <= self.crossover_rate <= 1.0, name, "crossover_rate", "must be in [0, 1]")
        require(0.0 <= self.mutation_rate <= 1.0, name, "mutation_rate", "must be in [0, 1]")
        object.__setattr__(self, "seed_names", normalize_seed_names(self.seed_names))

    @classmethod
    def marfinetz(cls, space: Any, **overrides: Any) -> GeneticAlgorithm:
        """The GA of Marfinetz 2025 ("Evolving Deep Learning Optimizers").

        Population 50, 50 generations, tournament 4, 3 elites, every child a
        crossover that is then mutated, first population seeded with SGD,
        Adam, AdamW and RMSProp. ``overrides`` replace any of these.
        """
        config = dict(
            population_size=50,
            generations=50,
            tournament_size=4,
            elites=3,
            crossover_rate=1.0,
            mutation_rate=1.0,
            seed_names=MARFINETZ_SEEDS,
        )
        config.update(overrides)
        return cls(space, **config)

    @property
    def children_per_generation(self) -> int:
        """Candidates each ask after the first returns: all but the elites."""
        return self.population_size - self.elites

    def _breed(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        fitness, ids = population_arrays(state)
        progress = progress_at(state.generation - 1, self.generations)

        def parent() -> Candidate:
            return state.population[selection.tournament(rng, fitness, ids, self.tournament_size)]

        children = []
        for _ in range(self.population_size - self.elites):
            a = parent()
            if rng.random() < self.crossover_rate:
                b = parent()
                genome = self.space.crossover(rng, a.genome, b.genome)
                if rng.random() < self.mutation_rate:
                    genome = self.space.mutate(rng, genome, progress=progress)
                parents = (a.id,) if a.id == b.id else (a.id, b.id)
                children.append(Proposal(genome, parents, "crossover"))
            else:
                genome = self.space.mutate(rng, a.genome, progress=progress)
                children.append(Proposal(genome, (a.id,), "mutation"))
        return children

    def _survive(self, state, told, fitness):
        """The elites of the old population, then the told children."""
        keep = selection.rank(*population_arrays(state))[: self.elites]
        population = [state.population[i] for i in keep] + list(told)
        return population, [state.fitness[i] for i in keep] + list(fitness)
