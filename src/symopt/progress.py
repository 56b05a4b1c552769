"""A search's progress lines: one per generation, with the time left.

The time left is the mean time of the generations that trained anything,
each less the time JAX spent compiling in it (a later generation does not
compile again), times the generations left. JAX reports its compile time
through its monitoring events: :func:`compile_seconds` counts them from the
first call on, listening only once it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from symopt import records
from symopt.archive import CandidateRecord

_COMPILING = [0.0]
_LISTENING = [False]


def _count_compile(event: str, seconds: float, **kwargs: Any) -> None:
    if event.startswith("/jax/core/compile/"):
        _COMPILING[0] += seconds


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling with JAX
    (its monitoring events) since the first call."""
    if not _LISTENING[0]:
        jax.monitoring.register_event_duration_secs_listener(_count_compile)
        _LISTENING[0] = True
    return _COMPILING[0]


def eta(times: Sequence[float], remaining: int) -> float | None:
    """Seconds left: ``remaining`` generations at the mean of ``times``, the
    measured seconds of the generations that trained anything, each less the
    time JAX spent compiling in it."""
    return float(np.mean(times)) * remaining if times else None


def format_seconds(seconds: float) -> str:
    """``42s`` or ``3m07s``."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def line(gen: int, generations: int, generation: Sequence[CandidateRecord], trained: int,
         best: CandidateRecord, seconds: float, left: float | None) -> str:
    """Generation ``gen``'s two progress lines: fitness, counts, rate and the
    time left, then the best candidate's equation."""
    values = [r.fitness for r in generation if r.status == "evaluated" and r.fitness is not None]
    rejected = sum(r.status == "rejected" for r in generation)
    duplicates = sum(r.status == "duplicate" for r in generation)
    median = f"{np.median(values):.4f}" if values else "-"
    rate = f"{trained / seconds:.1f}" if trained and seconds > 0 else "-"
    return (f"gen {gen + 1}/{generations}  best {records.fitness_text(best)}  "
            f"median {median}  trained {trained} ({rate}/s)  rejected {rejected}  "
            f"duplicates {duplicates}  eta {format_seconds(left) if left is not None else '-'}"
            f"\n  best #{best.id}: {records.equation(best)}")
