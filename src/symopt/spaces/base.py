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

import dataclasses
import math
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


def choice(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    """One of ``items``, uniformly, from one ``rng.integers`` draw (where
    ``rng.choice`` would turn a sequence of tuples into an array)."""
    return items[int(rng.integers(len(items)))]


def check_fields(space: Any) -> None:
    """Raises ValueError naming the first of a space's option fields whose
    value cannot work: a number that is not finite (or not a number), an
    integer field given a float, a probability (a field named ``p_*``)
    outside [0, 1], or a range (a ``tuple[float, float]`` field) that is not
    two finite numbers in order. Each space calls it first in its
    ``__post_init__`` and then checks what is particular to it."""
    for field in dataclasses.fields(space):
        value, where = getattr(space, field.name), f"{type(space).__name__}.{field.name}"
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        if kind in ("float", "int") or field.name.startswith("p_"):
            _check_number(value, where, integer=kind == "int")
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}: a probability must be in [0, 1], got {value!r}")
        elif kind in ("tuple[float, float]", "tuple[int, int]"):
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"{where}: expected a (low, high) pair, got {value!r}")
            for x in value:
                _check_number(x, where, integer=kind == "tuple[int, int]")
            if value[0] > value[1]:
                raise ValueError(f"{where}: low {value[0]!r} is above high {value[1]!r}")


def _check_number(value: Any, where: str, *, integer: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (integer and not isinstance(value, int)):
        expected = "an integer" if integer else "a finite number"
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
