"""Held-out test tasks: the search's best next to tuned comparisons, as found and lr-tuned.

The last step of a search's funnel (search tasks drive evolution, validation
tasks choose the winner, test tasks only report). Each optimizer, found or
comparison, is trained on each test task at every learning-rate multiplier of
its own rate, all of them as rows of one compiled program per task. Two
figures come out per optimizer and task:

* *as found*: the run at multiplier 1, the optimizer exactly as archived;
* *lr-tuned*: the multiplier with the lowest validation loss on that task
  (mean over seeds), reported on its test split. The test split never
  chooses anything. Where that multiplier is the smallest or the largest of
  the grid, the sweep goes on past that edge (:func:`symopt.measure.sweep`,
  at most :data:`symopt.measure.MAX_EXTENSIONS` rounds); each result holds
  the multipliers its optimizer was tuned over and whether its pick is still
  at an edge (``edge``), which :func:`table` marks with :data:`EDGE_MARK`.

The per-task part, every optimizer at every multiplier and each one's
val-best, is :func:`symopt.measure.sweep`, which :mod:`symopt.transfer`
shares under its configured metric. Scores here are :mod:`symopt.fitness`'s clipped final
losses, so a diverged run counts with the task's worst loss. :func:`ratio`
compares two optimizers by the geometric mean over tasks of their loss
ratios (above 1: the first has the lower loss). The comparisons
(:data:`COMPARISONS`) are Adam at a constant rate; AdamW, Lion and Muon with a
linear warmup over 5% of the steps and cosine decay; schedule-free AdamW
(measured at its evaluation params) and Marfinetz 2025's terms-GA optimizer.
Muon and schedule-free AdamW are optax's own, trained through the optax path;
the others are graphs, trained in the found optimizers' population.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from symopt import comparisons, fitness, measure
from symopt.comparisons import Optimizer
from symopt.evaluate import Trainer
from symopt.graph import Graph
from symopt.program import ProgramShape


class ResultCache(Protocol):
    """Where comparisons' results measured before are kept
    (:class:`symopt.comparison_cache.ComparisonCache`)."""

    directory: Any

    def get(self, task: str, comparison: str) -> Result | None: ...

    def put(self, result: Result) -> None: ...

COMPARISONS = comparisons.COMPARISONS
"""The optimizers the test tasks compare the winner with (``test.comparisons``),
defined in :mod:`symopt.comparisons`."""


@dataclasses.dataclass(frozen=True)
class Result:
    """One optimizer on one test task."""

    optimizer: str
    task: str
    learning_rate: float  # as found
    tuned_learning_rate: float  # chosen on the task's validation split
    found: tuple[float, ...]  # clipped test loss per seed, as found
    tuned: tuple[float, ...]  # clipped test loss per seed, lr-tuned
    found_diverged: int  # seeds that diverged, as found
    tuned_diverged: int
    found_accuracy: float | None = None  # mean test accuracy (classifiers)
    tuned_accuracy: float | None = None
    multipliers: tuple[float, ...] = ()  # the rates tuned over; () in results stored before
    edge: bool = False  # the lr-tuned pick is still the smallest or largest of ``multipliers``

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """A stored result; one stored by an earlier version (no ``multipliers``
        or ``edge``) loads with ``()`` and False."""
        return cls(**{**data, "found": tuple(data["found"]), "tuned": tuple(data["tuned"]),
                      "multipliers": tuple(data.get("multipliers", ())),
                      "edge": bool(data.get("edge", False))})


EDGE_MARK = "‡"
"""Marks an lr-tuned cell whose rate is still at an edge of the rates tried."""


def evaluate_task(optimizers: Mapping[str, Optimizer], task: Any,
                  multipliers: Sequence[float], *,
                  shape: ProgramShape | None = None,
                  trainer: Trainer | None = None) -> list[Result]:
    """Every optimizer as found and lr-tuned on ``task``: one
    :func:`symopt.measure.sweep` under the loss, extended past the grid's
    edges.

    Args:
      optimizers: graphs or optax optimizers by name, each at its own (as
        found) learning rate.
      task: a test task.
      multipliers: learning-rate multipliers; must include 1.0 (as found). An
        optimizer whose val-best is at an edge is tuned past it as well.
      shape: the graphs' program shape (default: :func:`symopt.measure.shape_for`
        them).
      trainer: the strategy and devices (default: every row in one program).

    Returns:
      One :class:`Result` per optimizer, in order.
    """
    multipliers = tuple(float(m) for m in multipliers)
    if 1.0 not in multipliers:
        raise ValueError(f"multipliers must include 1.0 (as found), got {multipliers}")
    s = measure.sweep(list(optimizers.values()), task, multipliers, metric=fitness.LOSS,
                      shape=shape, trainer=(trainer or Trainer()).with_chunk(0))
    found = s.multipliers.index(1.0)
    out = []
    for i, name in enumerate(optimizers):
        tuned = int(s.chosen[i])
        out.append(Result(
            optimizer=name, task=task.name, learning_rate=float(s.learning_rates[i, found]),
            tuned_learning_rate=float(s.learning_rates[i, tuned]),
            found=tuple(float(x) for x in s.test[i, found]),
            tuned=tuple(float(x) for x in s.test[i, tuned]),
            found_diverged=int(s.diverged[i, found].sum()),
            tuned_diverged=int(s.diverged[i, tuned].sum()),
            found_accuracy=_mean_or_none(s.test_accuracy[i, found]),
            tuned_accuracy=_mean_or_none(s.test_accuracy[i, tuned]),
            multipliers=s.tuned_over(i),
            edge=bool(s.edge[i]),
        ))
    return out


def evaluate_all(found: Mapping[str, Graph], comparisons: Sequence[str],
                 task_list: Sequence[Any], multipliers: Sequence[float], *,
                 trainer: Trainer | None = None,
                 log: Callable[[str], None] = print,
                 cache: ResultCache | None = None) -> list[Result]:
    """:func:`evaluate_task` on every test task for ``found`` and the named
    comparisons, in that order per task. A comparison that ``cache`` holds for
    a task is not trained again (:mod:`symopt.comparison_cache`); one it lacks
    is trained with the found optimizers and kept there."""
    for b in comparisons:
        COMPARISONS.get(b)  # an unknown name is a ValueError naming the known ones
    clash = sorted(set(found) & set(comparisons))
    if clash:
        raise ValueError(f"optimizer names {clash} clash with the comparisons")
    results = []
    for task in task_list:
        stored = {b: r for b in comparisons
                  if cache is not None and (r := cache.get(task.name, b)) is not None}
        named = {**found, **{b: COMPARISONS[b](task.steps) for b in comparisons
                             if b not in stored}}
        log(f"test: {len(named)} optimizers x {len(multipliers)} learning rates on {task.label} "
            f"({task.steps} steps, {task.seeds} seeds)"
            + (f"; {', '.join(stored)} as measured before ({cache.directory})" if stored else ""))
        trained = {r.optimizer: r for r in (
            evaluate_task(named, task, multipliers, trainer=trainer) if named else ())}
        if cache is not None:
            for b in comparisons:
                if b in trained:
                    cache.put(trained[b])
        done = [r for name in [*found, *comparisons]
                if (r := trained.get(name) or stored.get(name)) is not None]
        extended = [r.optimizer for r in done if len(r.multipliers) > len(set(multipliers))]
        if extended:
            log(f"test: {task.label}: tuned past the grid's edge: {', '.join(extended)}"
                + (f"; still at an edge: {', '.join(r.optimizer for r in edges(done))}"
                   if edges(done) else ""))
        results += done
    return results


def ratio(results: Sequence[Result], a: str, b: str, *, a_tuned: bool,
          b_tuned: bool = True) -> float:
    """How much lower ``a``'s test loss is than ``b``'s: :func:`symopt.fitness.aggregate`
    under ``"loss"`` of ``a``'s mean loss over seeds with ``b``'s as the
    baseline, over the tasks both ran (the geometric mean of clipped
    ``loss_b / loss_a``). Above 1: ``a`` is better."""
    return ratio_to_best(results, a, [b], a_tuned=a_tuned, b_tuned=b_tuned)


def ratio_to_best(results: Sequence[Result], a: str, others: Sequence[str], *,
                  a_tuned: bool, b_tuned: bool = True) -> float:
    """:func:`ratio` of ``a`` to the best of ``others`` on each task (the lowest
    mean loss of any of them there), over the tasks all of them ran. Above 1:
    ``a`` beats every one of them on the geometric mean, task by task."""
    by_key = {(r.optimizer, r.task): r for r in results}
    common = sorted(set.intersection(*({r.task for r in results if r.optimizer == n}
                                       for n in (a, *others))))
    if not common:
        raise ValueError(f"{a!r} and {', '.join(map(repr, others))} share no test task")

    def mean(name: str, t: str, tuned: bool) -> float:
        r = by_key[name, t]
        return float(np.mean(r.tuned if tuned else r.found))

    best = {t: min(mean(b, t, b_tuned) for b in others) for t in common}
    return float(fitness.aggregate({t: np.array([mean(a, t, a_tuned)]) for t in common},
                                   best, "loss")[0])


def table(results: Sequence[Result], optimizers: Sequence[str],
          labels: Mapping[str, str] | None = None, *,
          task_labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown: optimizer x task, test loss mean +- std over seeds, as found /
    lr-tuned; an lr-tuned cell whose rate is still at an edge of the rates
    tried ends in :data:`EDGE_MARK`. ``labels`` names rows (default: the
    optimizer's name), ``task_labels`` columns (a task's name -> its
    :attr:`symopt.tasks.Task.label`; default: the name)."""
    task_names = list(dict.fromkeys(r.task for r in results))
    by_key = {(r.optimizer, r.task): r for r in results}
    labels, task_labels = labels or {}, task_labels or {}
    lines = ["| optimizer | " + " | ".join(task_labels.get(t, t) for t in task_names) + " |",
             "|---|" + "---|" * len(task_names)]
    for name in optimizers:
        cells = []
        for t in task_names:
            r = by_key.get((name, t))
            cells.append("-" if r is None else f"{_pm(r.found)}{_dagger(r.found_diverged)} / "
                                               f"{_pm(r.tuned)}{_dagger(r.tuned_diverged)}"
                                               f"{' ' + EDGE_MARK if r.edge else ''}")
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def edges(results: Sequence[Result], optimizers: Sequence[str] | None = None) -> list[Result]:
    """The results (of ``optimizers``, default all) whose lr-tuned rate is
    still at an edge of the rates tried."""
    return [r for r in results if r.edge and (optimizers is None or r.optimizer in optimizers)]


def edge_line(results: Sequence[Result], optimizers: Sequence[str] | None = None, *,
              task_labels: Mapping[str, str] | None = None) -> str:
    """One markdown line naming the lr-tuned picks still at an edge, by
    optimizer (tasks shown by ``task_labels``, as in :func:`table`), or ``""``."""
    task_labels = task_labels or {}
    by_optimizer: dict[str, list[str]] = {}
    for r in edges(results, optimizers):
        tried = (f" ({'largest' if _is_top(r) else 'smallest'} of x{min(r.multipliers):.3g}-"
                 f"x{max(r.multipliers):.3g})" if r.multipliers else "")
        by_optimizer.setdefault(r.optimizer, []).append(
            f"{task_labels.get(r.task, r.task)} x{r.tuned_learning_rate / r.learning_rate:.3g}"
            f"{tried}")
    if not by_optimizer:
        return ""
    picks = "; ".join(f"{name} on {', '.join(p)}" for name, p in by_optimizer.items())
    return (f"{EDGE_MARK} lr-tuned at an edge of the rates tried, after extending the grid past "
            f"it (at most {measure.MAX_EXTENSIONS} steps): a rate further out may do better, so "
            f"this figure is not a tuned one. {picks}.")


def _is_top(r: Result) -> bool:
    return bool(r.multipliers) and r.tuned_learning_rate >= r.learning_rate * max(r.multipliers) * (
        1 - 1e-9)


def ratio_lines(results: Sequence[Result], winner: str,
                comparisons: Sequence[str]) -> list[str]:
    """Markdown: the winner's ratio to each comparison (tuned), as found and lr-tuned."""
    lines = ["| winner vs (lr-tuned) | as found | lr-tuned |", "|---|---|---|"]
    for b in comparisons:
        lines.append(f"| {b} | {ratio(results, winner, b, a_tuned=False):.3f} | "
                     f"{ratio(results, winner, b, a_tuned=True):.3f} |")
    if len(comparisons) > 1:
        lines.append(
            f"| the best of them on each task | "
            f"{ratio_to_best(results, winner, comparisons, a_tuned=False):.3f} | "
            f"{ratio_to_best(results, winner, comparisons, a_tuned=True):.3f} |")
    return lines


def _pm(values: Sequence[float]) -> str:
    mean, std = fitness.mean_std(np.asarray(values))
    return f"{mean:.4g} ± {std:.2g}"


def _dagger(diverged: int) -> str:
    return f" ({diverged} diverged)" if diverged else ""


def _mean_or_none(values: np.ndarray) -> float | None:
    return None if np.all(np.isnan(values)) else float(np.nanmean(values))
