"""Random search: the baseline every evolutionary searcher must beat.

This module owns :class:`RandomSearch`: each round asks ``population_size``
genomes drawn with ``space.sample``; the first round starts with the zoo
seeds. Nothing is bred, so fitness only decides :meth:`best`. Bello et al.
(2017) and Real et al. (2019) both report random search as the control.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from symopt.searchers.state import AskTell, Proposal, SearchState, normalize_seed_names, require


@dataclasses.dataclass(frozen=True)
class RandomSearch(AskTell):
    """Independent samples of the space, ``population_size`` per round.

    Attributes:
        space: the search space.
        population_size: candidates per round.
        seed_names: zoo names in the first round (``None``: the space's default
            seeds; ``()``: none).
    """

    space: Any
    population_size: int = 50
    seed_names: Sequence[str] | None = None

    def __post_init__(self):
        require(self.population_size >= 1, type(self).__name__, "population_size", "must be >= 1")
        object.__setattr__(self, "seed_names", normalize_seed_names(self.seed_names))

    @property
    def children_per_generation(self) -> int:
        """Candidates each ask after the first returns."""
        return self.population_size

    def _breed(self, state: SearchState, rng: np.random.Generator) -> list[Proposal]:
        return [Proposal(self.space.sample(rng), (), "sample") for _ in range(self.population_size)]

    def _survive(self, state, told, fitness):
        """The population is the last round (the best is kept in ``state.best``)."""
        return told, fitness
