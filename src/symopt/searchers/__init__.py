"""Searchers over any search space, as ask/tell over immutable states.

The public surface, re-exported one name at a time::

    searcher = symopt.searchers.get("ga", space, population_size=50)
    state = searcher.init(seed=0)
    state, candidates = searcher.ask(state)
    state = searcher.tell(state, candidates, fitness)
    candidate, fitness = searcher.best(state)

``base`` states the contract; ``selection`` and ``state`` hold what the
searchers share; ``multifidelity`` promotes candidates across stages.
"""

from __future__ import annotations

from typing import Any

from symopt.registry import Registry
from symopt.searchers.base import ORIGINS, Candidate, Searcher
from symopt.searchers.evolution import RegularizedEvolution
from symopt.searchers.genetic import MARFINETZ_SEEDS, GeneticAlgorithm
from symopt.searchers.multifidelity import HalvingResult, Stage, successive_halving
from symopt.searchers.particle import ParticleGA
from symopt.searchers.random_search import RandomSearch
from symopt.searchers.selection import clean_fitness, rank, tournament
from symopt.searchers.state import SearchState

SEARCHERS: Registry[type] = Registry("searcher", {
    "ga": GeneticAlgorithm,
    "particle_ga": ParticleGA,
    "regularized_evolution": RegularizedEvolution,
    "random": RandomSearch,
})
"""Searcher classes by the name a config uses."""


def names() -> list[str]:
    """The registered searcher names."""
    return SEARCHERS.names()


def get(name: str, space: Any, **config: Any) -> Searcher:
    """The searcher ``name`` over ``space``, configured by keyword.

    Args:
        name: one of :func:`names`.
        space: the search space.
        **config: the searcher's fields (``population_size=...``, ...).

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a
            field the searcher does not have or rejects.
    """
    cls = SEARCHERS.get(name)
    try:
        return cls(space, **config)
    except TypeError as error:  # an unknown or missing field
        raise ValueError(f"searcher {name!r}: {error}") from None


__all__ = [
    "ORIGINS",
    "MARFINETZ_SEEDS",
    "SEARCHERS",
    "Candidate",
    "GeneticAlgorithm",
    "HalvingResult",
    "ParticleGA",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchState",
    "Searcher",
    "Stage",
    "clean_fitness",
    "get",
    "names",
    "rank",
    "successive_halving",
    "tournament",
]
