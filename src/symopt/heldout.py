"""Held-out test tasks: the search's best next to tuned baselines, as found and lr-tuned.

The last step of a search's funnel (search tasks drive evolution, validation
tasks choose the winner, test tasks only report). Each optimizer, found or
baseline, is trained on each test task at every learning-rate multiplier of
its own rate, all of them as rows of one compiled program per task. Two
figures come out per optimizer and task:

* *as found*: the run at multiplier 1, the optimizer exactly as archived;
* *lr-tuned*: the multiplier with the lowest validation loss on that task
  (mean over seeds), reported on its test split. The test split never
  chooses anything.

The per-task part, every optimizer at every multiplier and each one's
val-best, is :func:`sweep`, which :mod:`symopt.transfer` shares under its
configured metric. Scores here are :mod:`symopt.fitness`'s clipped final
losses, so a diverged run counts with the task's worst loss. :func:`ratio`
compares two optimizers by the geometric mean over tasks of their loss
ratios (above 1: the first has the lower loss). The baselines are Adam, AdamW with a linear warmup over 5%
of the steps and cosine decay, Lion and Marfinetz 2025's terms-GA optimizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from symopt import evaluate, fitness, zoo
from symopt import graph as graph_lib
from symopt.graph import Graph, Schedule
from symopt.program import ProgramShape

WARMUP_FRACTION = 0.05  # adamw_cosine's linear warmup, as a fraction of the steps


def _adamw_cosine(steps: int) -> Graph:
    warmup = max(1, int(round(WARMUP_FRACTION * steps)))
    return graph_lib.validate(zoo.adamw().replace(
        schedule=Schedule(kind="cosine", warmup_steps=warmup)))


BASELINES: dict[str, Callable[[int], Graph]] = {
    "adam": lambda steps: zoo.adam(),
    "adamw_cosine": _adamw_cosine,
    "lion": lambda steps: zoo.lion(),
    "terms_ga": lambda steps: zoo.terms_ga(),
}
"""Baseline name -> the graph for a task of ``steps`` steps."""


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        return cls(**{**data, "found": tuple(data["found"]), "tuned": tuple(data["tuned"])})


def shape_for(graphs: Sequence[Graph], base: ProgramShape | None = None) -> ProgramShape:
    """``base`` (default: the default shape) grown to hold every (canonical) graph."""
    canon = [graph_lib.canonical(g) for g in graphs]
    base = base or ProgramShape()
    return dataclasses.replace(
        base,
        max_nodes=max([base.max_nodes] + [len(g.update.nodes) for g in canon]),
        max_operands=max([base.max_operands] + [len(graph_lib.used_operands(g)) for g in canon]),
        max_constants=max([base.max_constants] + [len(g.constants) for g in canon]),
        max_states=max([base.max_states] + [len(g.states) for g in canon]),
        max_decay_nodes=max([base.max_decay_nodes] + [
            len(e.nodes) for g in canon for e in g.decay_map.values()]),
    )


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Optimizers x learning-rate multipliers on one task, scored under ``metric``.

    Arrays are indexed ``[optimizer, multiplier, ...]`` in the order given;
    values are :func:`symopt.fitness.runs` (a clipped loss or a fitness).
    """

    metric: str
    multipliers: tuple[float, ...]
    learning_rates: np.ndarray  # [N, K] each optimizer's rate times each multiplier
    val: np.ndarray  # [N, K] val split, mean over seeds
    test: np.ndarray  # [N, K, S] test split, per seed
    chosen: np.ndarray  # [N] index of the val-best multiplier (ties: the first)
    diverged: np.ndarray  # [N, K, S] bool
    test_accuracy: np.ndarray  # [N, K, S] NaN for tasks without classes
    curves: np.ndarray  # [N, K, S, points] training loss at evaluate.curve_steps


def sweep(optimizers: Sequence[Graph], task: Any, multipliers: Sequence[float], *,
          metric: str, shape: ProgramShape | None = None, chunk_size: int = 0,
          strategy: str = "auto") -> Sweep:
    """Trains every optimizer at every multiple of its learning rate on ``task``
    and picks each one's multiplier on the val split (the test split picks nothing).

    The rates are rows of one compiled program (:func:`symopt.evaluate.at_multipliers`).

    Args:
      optimizers: graphs, each at its own learning rate.
      task: the task.
      multipliers: learning-rate multipliers.
      metric: :data:`symopt.fitness.METRICS`; chooses the multiplier and scores the runs.
      shape: the program shape (default: :func:`shape_for` the optimizers).
      chunk_size: runs per compiled program (0: all of them). Callers sweeping
        several populations on one task keep ``shape`` and ``chunk_size`` fixed
        so that every sweep reuses one compile.
      strategy: the population optimizer's strategy.
    """
    multipliers = tuple(float(m) for m in multipliers)
    runs = evaluate.at_multipliers(optimizers, multipliers)
    metrics, curves = evaluate.evaluate_graphs(
        runs, task, shape=shape or shape_for(optimizers), chunk_size=chunk_size or len(runs),
        strategy=strategy, curves=True)

    def grid(x) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(len(optimizers), len(multipliers), *x.shape[1:])

    val = grid(fitness.task_values(metrics, "val", metric))
    return Sweep(
        metric=metric, multipliers=multipliers,
        learning_rates=grid([g.hparams.learning_rate for g in runs]),
        val=val, test=grid(fitness.runs(metrics, "test", metric)),
        chosen=np.array([fitness.best_index(metric, v) for v in val], int),
        diverged=grid(metrics.diverged), test_accuracy=grid(metrics.test_accuracy),
        curves=grid(curves))


def evaluate_task(optimizers: Mapping[str, Graph], task: Any, multipliers: Sequence[float], *,
                  shape: ProgramShape | None = None, strategy: str = "auto") -> list[Result]:
    """Every optimizer as found and lr-tuned on ``task``: one :func:`sweep` under ``"loss"``.

    Args:
      optimizers: graphs by name, each at its own (as found) learning rate.
      task: a test task.
      multipliers: learning-rate multipliers; must include 1.0 (as found).
      shape: the program shape (default: :func:`shape_for` the optimizers).
      strategy: the population optimizer's strategy.

    Returns:
      One :class:`Result` per optimizer, in order.
    """
    multipliers = tuple(float(m) for m in multipliers)
    if 1.0 not in multipliers:
        raise ValueError(f"multipliers must include 1.0 (as found), got {multipliers}")
    s = sweep(list(optimizers.values()), task, multipliers, metric="loss", shape=shape,
              strategy=strategy)
    found = multipliers.index(1.0)
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
        ))
    return out


def evaluate_all(found: Mapping[str, Graph], baselines: Sequence[str], task_list: Sequence[Any],
                 multipliers: Sequence[float], *, strategy: str = "auto",
                 log: Callable[[str], None] = print) -> list[Result]:
    """:func:`evaluate_task` on every test task for ``found`` and the named baselines."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; known: {', '.join(BASELINES)}")
    clash = sorted(set(found) & set(baselines))
    if clash:
        raise ValueError(f"optimizer names {clash} clash with the baselines")
    results = []
    for task in task_list:
        named = {**found, **{b: BASELINES[b](task.steps) for b in baselines}}
        log(f"test: {len(named)} optimizers x {len(multipliers)} learning rates on {task.name} "
            f"({task.steps} steps, {task.seeds} seeds)")
        results += evaluate_task(named, task, multipliers, strategy=strategy)
    return results


def ratio(results: Sequence[Result], a: str, b: str, *, a_tuned: bool,
          b_tuned: bool = True) -> float:
    """How much lower ``a``'s test loss is than ``b``'s: :func:`symopt.fitness.aggregate`
    under ``"loss"`` of ``a``'s mean loss over seeds with ``b``'s as the
    baseline, over the tasks both ran (the geometric mean of clipped
    ``loss_b / loss_a``). Above 1: ``a`` is better."""
    by_key = {(r.optimizer, r.task): r for r in results}
    tasks_a = {r.task for r in results if r.optimizer == a}
    tasks_b = {r.task for r in results if r.optimizer == b}
    common = sorted(tasks_a & tasks_b)
    if not common:
        raise ValueError(f"{a!r} and {b!r} share no test task")

    def mean(name: str, t: str, tuned: bool) -> float:
        r = by_key[name, t]
        return float(np.mean(r.tuned if tuned else r.found))

    return float(fitness.aggregate({t: np.array([mean(a, t, a_tuned)]) for t in common},
                                   {t: mean(b, t, b_tuned) for t in common}, "loss")[0])


def table(results: Sequence[Result], optimizers: Sequence[str]) -> list[str]:
    """Markdown: optimizer x task, test loss mean +- std over seeds, as found / lr-tuned."""
    task_names = list(dict.fromkeys(r.task for r in results))
    by_key = {(r.optimizer, r.task): r for r in results}
    lines = ["| optimizer | " + " | ".join(task_names) + " |",
             "|---|" + "---|" * len(task_names)]
    for name in optimizers:
        cells = []
        for t in task_names:
            r = by_key.get((name, t))
            cells.append("-" if r is None else f"{_pm(r.found)}{_dagger(r.found_diverged)} / "
                                               f"{_pm(r.tuned)}{_dagger(r.tuned_diverged)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def ratio_lines(results: Sequence[Result], winner: str, baselines: Sequence[str]) -> list[str]:
    """Markdown: the winner's ratio to each baseline (tuned), as found and lr-tuned."""
    lines = ["| winner vs (lr-tuned) | as found | lr-tuned |", "|---|---|---|"]
    for b in baselines:
        lines.append(f"| {b} | {ratio(results, winner, b, a_tuned=False):.3f} | "
                     f"{ratio(results, winner, b, a_tuned=True):.3f} |")
    return lines


def _pm(values: Sequence[float]) -> str:
    mean, std = fitness.mean_std(np.asarray(values))
    return f"{mean:.4g} ± {std:.2g}"


def _dagger(diverged: int) -> str:
    return f" ({diverged} diverged)" if diverged else ""


def _mean_or_none(values: np.ndarray) -> float | None:
    return None if np.all(np.isnan(values)) else float(np.nanmean(values))
