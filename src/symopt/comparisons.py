"""The comparisons: the optimizers a search's winner is reported next to.

This module owns :data:`COMPARISONS`, the registry that ``test.comparisons``
names: each entry builds, for a task of a given number of steps, the
optimizer as its authors recommend training it, so that beating it means
something. :mod:`symopt.heldout` trains them next to the found optimizers.
"""

from __future__ import annotations

from collections.abc import Callable

from symopt import zoo
from symopt.graph import Graph, Schedule, validate
from symopt.registry import Registry

WARMUP_FRACTION = 0.05
"""``adamw_cosine``'s linear warmup, as a fraction of the steps."""


def adamw_cosine(steps: int) -> Graph:
    """AdamW with a linear warmup over :data:`WARMUP_FRACTION` of ``steps``
    and cosine decay: the schedule its authors recommend."""
    warmup = max(1, int(round(WARMUP_FRACTION * steps)))
    return validate(zoo.adamw().replace(schedule=Schedule(kind="cosine", warmup_steps=warmup)))


COMPARISONS: Registry[Callable[[int], Graph]] = Registry("comparison", [
    ("adam", lambda steps: zoo.adam()),
    ("adamw_cosine", adamw_cosine),
    ("lion", lambda steps: zoo.lion()),
    ("terms_ga", lambda steps: zoo.terms_ga()),
])
"""The optimizers a search's test tasks report its winner next to
(``test.comparisons``): name -> the graph for a task of ``steps`` steps."""

