"""The ``Space`` interface every search space implements.

A space says which optimizers may exist and how evolution moves between
them. It works on its own *genome* type (a ``Graph`` for ``nos``, a term list
plus scalars and flags for ``terms``, grammar trees for ``autolr``) and maps
each genome to the :class:`~symopt.graph.Graph` that is checked, trained and
archived. Genomes are immutable and hashable, and round-trip through JSON so
that the archive can store them and a killed search can resume.

All randomness comes from the ``np.random.Generator`` passed in, so that a
search with a fixed seed is reproducible (the resume test relies on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from symopt.graph import Graph
from symopt.program import ProgramShape

Genome = Any
"""A space's genotype: immutable, hashable, JSON round-trippable."""


@runtime_checkable
class Space(Protocol):
    """Sample / mutate / crossover over genomes, and genome -> Graph."""

    name: str

    def sample(self, rng: np.random.Generator) -> Genome:
        """A random genome of the space."""

    def mutate(self, rng: np.random.Generator, genome: Genome, *, progress: float = 0.0) -> Genome:
        """A mutated copy; ``progress`` in [0, 1] is the fraction of the search done
        (spaces with decaying mutation rates read it)."""

    def crossover(self, rng: np.random.Generator, a: Genome, b: Genome) -> Genome:
        """A child combining two parents."""

    def seeds(self, names: Sequence[str] | None = None) -> dict[str, Genome]:
        """Zoo optimizers written as genomes of this space, by zoo name.

        ``names=None`` gives the space's default seeds; a name the space
        cannot express raises ``ValueError`` naming it.
        """

    def to_graph(self, genome: Genome) -> Graph:
        """The optimizer a genome encodes (a valid Graph)."""

    def scale_learning_rate(self, genome: Genome, factor: float) -> Genome | None:
        """The genome with its learning rate multiplied by ``factor``, or None
        where the space cannot express that rate (outside its range, or a space
        whose genomes have no learning rate). The search writes the best
        learning-rate multiplier of each candidate back through it."""

    def to_json(self, genome: Genome) -> dict[str, Any]:
        """A JSON-able dict; ``from_json(to_json(x)) == x``."""

    def from_json(self, data: dict[str, Any]) -> Genome:
        """The genome of :meth:`to_json`'s output."""

    def program_shape(self) -> ProgramShape:
        """A ProgramShape large enough for every graph :meth:`to_graph` returns,
        so that one compile serves the whole search."""
