"""What an archived candidate means: its search fitness, chosen learning rate and equation.

The archive (:mod:`symopt.archive`) stores typed rows, :class:`CandidateRecord`
and :class:`StageResult`, and knows nothing of graphs or fitness. This module
owns what the search reads back from them, so that the search loop, the
funnel and the report agree on it without the search depending on the
report:

* :func:`search_fitness`: the number candidates are ranked by (``-inf`` where
  there is none: a rejected candidate);
* :func:`multiplier` and :func:`learning_rate_metrics`: where the chosen
  learning-rate multiplier lives in a record's metrics, written and read in
  one place;
* :func:`equation`: the record's graph as one line;
* :func:`is_measured`: whether a record was trained, so its fingerprint's
  repeats need not be;
* :func:`new_record`: a searcher's candidate and its graph as a record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from symopt import graph as graph_lib
from symopt import simplicity
from symopt.archive import CandidateRecord, StageResult

LEARNING_RATE = "learning_rate"
"""The key of a record's metrics that holds its learning-rate choice."""

MEASURED = ("evaluated", "diverged")
"""The statuses of a trained candidate."""


def learning_rate_metrics(multiplier: float,
                          fitness_per_multiplier: Sequence[float]) -> dict[str, Any]:
    """The metrics entry that records a learning-rate choice."""
    return {"multiplier": float(multiplier),
            "fitness_per_multiplier": [float(x) for x in fitness_per_multiplier]}


def multiplier(record: CandidateRecord | StageResult) -> float:
    """The learning-rate multiplier chosen for (and written back into) a record;
    1.0 where none was chosen (a rejected or duplicate candidate)."""
    return float((record.metrics or {}).get(LEARNING_RATE, {}).get("multiplier", 1.0))


def search_fitness(record: CandidateRecord | StageResult) -> float:
    """A record's fitness for ranking: ``-inf`` when it has none."""
    return -math.inf if record.fitness is None else float(record.fitness)


def fitness_text(record: CandidateRecord | StageResult | None) -> str:
    """A record's fitness to four decimals, or ``-`` when it has none."""
    return "-" if record is None or record.fitness is None else f"{record.fitness:.4f}"


def equation(record: CandidateRecord) -> str:
    """A record's graph as one line of text, simplified
    (:func:`symopt.simplicity.simplified_equation`: constant and near-identity
    parts pruned, so that what is reported is what the graph computes)."""
    return simplicity.simplified_equation(graph(record))


def graph(record: CandidateRecord) -> graph_lib.Graph:
    """A record's graph."""
    return graph_lib.from_dict(record.graph)


def is_measured(record: CandidateRecord) -> bool:
    """Whether ``record`` was trained, so that its fingerprint's repeats need not be."""
    return record.status in MEASURED and bool(record.fingerprint)


def new_record(space: Any, candidate: Any, graph: graph_lib.Graph, fingerprint: str | None, *,
               status: str, **fields: Any) -> CandidateRecord:
    """A searcher's ``candidate`` (:class:`symopt.searchers.Candidate`) of
    ``space``, with its graph, as an archive record."""
    return CandidateRecord(
        id=candidate.id, generation=candidate.generation, space=space.name,
        origin=candidate.origin, parents=candidate.parents,
        genome=space.to_json(candidate.genome), graph=graph_lib.to_dict(graph),
        fingerprint=fingerprint, status=status, **fields)
