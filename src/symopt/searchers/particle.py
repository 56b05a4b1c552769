"""The mutation-only, particle-based GA (Morgan & Hougen 2024).

This module owns :class:`ParticleGA`. ``population_size`` particles each hold
a position (a told candidate and its fitness). The first round asks for the
positions themselves (zoo seeds, then samples). Every later round asks for
all ``population_size * children_per_particle`` children at once, so the
whole round is one batch for the vmapped evaluator:

* a particle with finite fitness proposes ``children_per_particle`` mutants
  of its position (``parents = (position id,)``);
* a particle at ``-inf`` (its position was rejected or diverged) has nothing
  worth mutating: it proposes ``children_per_particle`` fresh samples
  instead, so a ``-inf`` candidate is never a parent.

The move rule, on ``tell``: particle ``i``'s children are the ``i``-th
block of ``children_per_particle`` asked candidates; its best child (highest
fitness, ties to the lower id) replaces its position if and only if the
child's fitness is *strictly* greater than the position's. Otherwise the
particle stays, keeping its earlier fitness. A ``-inf`` child never moves a
particle. There is no crossover and no interaction between particles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from symopt.searchers import selection
from symopt.searchers.state import (
    AskTell,
    Proposal,
    SearchState,
    normalize_seed_names,
    progress_at,
    require,
)


@dataclasses.dataclass(frozen=True)
class ParticleGA(AskTell):
    """Mutation-only particle GA (see the module docstring for the exact rule).

    Attributes:
        space: the search space.
        population_size: the number of particles.
        children_per_particle: mutants each particle proposes per round.
        generations: the planned number of rounds, for the mutation
            ``progress`` (``None``: progress stays 0).
        seed_names: zoo names for the first positions (``None``: the space's
            default seeds; ``()``: none).
    """

    space: Any
    population_size: int = 16
    children_per_particle: int = 4
    generations: int | None = None
    seed_names: Sequence[str] | None = None

    def __post_init__(self):
        name = type(self).__name__
        require(self.population_size >= 1, name, "population_size", "must be >= 1")
        require(self.children_per_particle >= 1, name, "children_per_particle", "must be >= 1")
        require(
            self.generations is None or self.generations >= 1,
            name,
            "generations",
            "must be >= 1 or None",
        )
        object.__setattr__(self, "seed_names", normalize_seed_names(self.seed_names))

    @property
    def children_per_generation(self) -> int:
        """Candidates each ask after the first returns: every particle's children."""
        return self.population_size * self.children_per_particle

    def _breed(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        progress = progress_at(state.generation - 1, self.generations)
        children = []
        for particle, fitness in zip(state.population, state.fitness, strict=True):
            for _ in range(self.children_per_particle):
                if np.isfinite(fitness):
                    genome = self.space.mutate(rng, particle.genome, progress=progress)
                    children.append(Proposal(genome, (particle.id,), "mutation"))
                else:
                    children.append(Proposal(self.space.sample(rng), (), "sample"))
        return children

    def _survive(self, state, told, fitness):
        """Each particle moves to its best child if that child is strictly better."""
        k = self.children_per_particle
        population, population_fitness = [], []
        for i, (particle, current) in enumerate(zip(state.population, state.fitness, strict=True)):
            block = slice(i * k, (i + 1) * k)
            j = int(selection.rank(fitness[block], [c.id for c in told[block]])[0])
            child, child_fitness = told[block][j], fitness[block][j]
            if child_fitness > current:
                particle, current = child, child_fitness
            population.append(particle)
            population_fitness.append(current)
        return population, population_fitness
