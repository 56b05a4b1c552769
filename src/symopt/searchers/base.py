"""The ask/tell interface of every searcher, and what it exchanges.

In the style of evosax, a searcher object holds only static configuration
(sizes, rates, its :class:`~symopt.spaces.base.Space`); everything that
changes lives in an immutable state that each call returns anew::

    state = searcher.init(seed)
    while not done:
        state, candidates = searcher.ask(state)
        fitness = ...                       # one float per candidate
        state = searcher.tell(state, candidates, fitness)

Contract (the resumable run loop relies on it):

* Pure and deterministic: the same seed and the same fitness values give the
  same candidates, ids and states. Randomness comes from
  ``np.random.default_rng((seed, generation, salt))`` style generators
  derived from the state, never from global state.
* Every candidate gets a unique integer ``id`` from the state's counter;
  ``parents`` are ids of earlier candidates (empty for sampled or zoo-seeded
  ones), so the archive can draw lineages.
* ``ask`` returns only *new* candidates to measure; survivors/elites kept by
  the searcher keep their earlier fitness and are not asked again.
* ``tell`` takes one fitness per asked candidate, higher is better.
  ``-inf`` marks a candidate rejected before training; NaN counts as -inf.
  A searcher never picks a -inf parent while a finite one exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

ORIGINS = ("seed", "sample", "mutation", "crossover")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One proposed genome, with its identity and provenance."""

    id: int
    genome: Any
    parents: tuple[int, ...] = ()
    origin: str = "sample"  # one of ORIGINS
    generation: int = 0


@runtime_checkable
class Searcher(Protocol):
    """ask/tell over an immutable state (see the module docstring)."""

    def init(self, seed: int) -> Any:
        """The initial state."""

    def ask(self, state: Any) -> tuple[Any, list[Candidate]]:
        """The next candidates to measure, and the state that remembers them."""

    def tell(self, state: Any, candidates: list[Candidate], fitness: np.ndarray) -> Any:
        """The state after measuring ``candidates`` (same order as asked)."""

    def best(self, state: Any) -> tuple[Candidate, float] | None:
        """The best candidate told so far and its fitness (None before any)."""

    @property
    def children_per_generation(self) -> int:
        """How many candidates each ask after the first returns (the first
        returns ``population_size``)."""
