"""The learning-rate sweep: every optimizer at every multiple of its learning rate.

One sweep serves every caller that trains optimizers to compare them:

* the search scores candidates (:func:`measure_candidates`): each candidate
  at ``evaluation.lr_multipliers`` on every search task, aggregated over
  tasks against the reference at each multiplier, the best (or mean)
  multiplier kept;
* the reference that normalises fitness, Adam, is tuned over a grid of
  learning rates (:func:`tune_reference`), with native ``optax.adam``;
* the test tasks and the transfer report pick each optimizer's multiplier on
  a task's validation split and report its test split (:func:`sweep`).

Every rate of every graph is a row of one compiled program
(:func:`symopt.evaluate.at_multipliers`), trained by one
:class:`symopt.evaluate.Trainer`, so a sweep costs one compile per task and
population shape, never one per learning rate. An optimizer optax ships (a
:class:`symopt.comparisons.OptaxOptimizer`) trains all its rates as rows of
its own program, through the same trainer's optax path.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from symopt import comparisons, evaluate, fitness, records
from symopt import graph as graph_lib
from symopt import program as program_lib
from symopt.comparisons import Optimizer
from symopt.evaluate import RunMetrics, Trainer
from symopt.fitness import Metric
from symopt.graph import Graph
from symopt.program import ProgramShape

METRIC_FIELDS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
"""The per-task metrics a measured candidate's record keeps (means over seeds)."""


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
        leaf_ops=base.leaf_ops or any(program_lib.uses_leaf_ops(g) for g in canon),
    )


# --------------------------------------------------------------------------
# One task.


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Optimizers x learning-rate multipliers on one task, scored under ``metric``.

    Arrays are indexed ``[optimizer, multiplier, ...]`` in the order given;
    values are the metric's (a clipped loss or a fitness). ``metrics`` holds
    the raw runs, row ``i * K + j`` for optimizer ``i`` at multiplier ``j``.
    Each derived array is computed once, on first use: callers read them
    optimizer by optimizer.
    """

    metric: Metric
    multipliers: tuple[float, ...]
    learning_rates: np.ndarray  # [N, K] each optimizer's rate times each multiplier
    metrics: RunMetrics  # [N * K, S]
    _runs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False,
                                                      compare=False)

    def _grid(self, x) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(-1, len(self.multipliers), *x.shape[1:])

    def runs(self, split: str) -> np.ndarray:
        """[N, K, S] each run's value on ``split``."""
        if split not in self._runs:
            self._runs[split] = self._grid(self.metric.runs(self.metrics, split))
        return self._runs[split]

    def values(self, split: str) -> np.ndarray:
        """[N, K] the mean over seeds on ``split``."""
        return self.runs(split).mean(axis=-1)

    @functools.cached_property
    def val(self) -> np.ndarray:
        """[N, K] the validation split, mean over seeds."""
        return self.values("val")

    @functools.cached_property
    def test(self) -> np.ndarray:
        """[N, K, S] the test split, per seed."""
        return self.runs("test")

    @functools.cached_property
    def chosen(self) -> np.ndarray:
        """[N] the index of each optimizer's val-best multiplier (ties: the first)."""
        return np.array([self.metric.best_index(v) for v in self.val], int)

    @functools.cached_property
    def diverged(self) -> np.ndarray:
        """[N, K, S] bool."""
        return self._grid(self.metrics.diverged)

    @functools.cached_property
    def test_accuracy(self) -> np.ndarray:
        """[N, K, S]; NaN for tasks without classes."""
        return self._grid(self.metrics.test_accuracy)

    @functools.cached_property
    def curves(self) -> np.ndarray:
        """[N, K, S, points] training loss at :func:`symopt.evaluate.curve_steps`."""
        return self._grid(self.metrics.loss_curve)


def sweep(optimizers: Sequence[Optimizer], task: Any, multipliers: Sequence[float], *,
          metric: str | Metric, trainer: Trainer | None = None,
          shape: ProgramShape | None = None) -> Sweep:
    """Trains every optimizer at every multiple of its learning rate on ``task``.

    The graphs' rows are one population (one compiled program per chunk);
    each :class:`~symopt.comparisons.OptaxOptimizer` trains its rows through
    the optax path, measured at its ``eval_params``. Either way the rows are
    the same multiples of the optimizer's rate, on the same seeds and batches.

    Args:
      optimizers: graphs or optax optimizers, each at its own learning rate.
      task: the task.
      multipliers: learning-rate multipliers.
      metric: scores the runs and picks :attr:`Sweep.chosen`.
      trainer: strategy, rows per compiled program and devices (default: all
        rows in one program, every device). Callers that
        sweep several populations on one task keep ``shape`` and the
        trainer's ``chunk_size`` fixed so that every sweep reuses one compile.
      shape: the program shape of the graphs (default: :func:`shape_for` them).
    """
    trainer = trainer or Trainer()
    multipliers = tuple(float(m) for m in multipliers)
    rates = np.array([[comparisons.learning_rate(o) * m for m in multipliers]
                      for o in optimizers]).reshape(-1, len(multipliers))
    graphs = [o for o in optimizers if isinstance(o, Graph)]
    metrics = trainer.graphs(evaluate.at_multipliers(graphs, multipliers), task,
                             shape=shape or shape_for(graphs))
    if len(graphs) < len(optimizers):  # optax rows: each optimizer's block in its place
        graph_blocks = iter(_blocks(metrics, len(multipliers)))
        metrics = _concatenate([
            next(graph_blocks) if isinstance(o, Graph) else trainer.optax(
                o.make, (jnp.asarray(row),), task, eval_params=o.eval_params)
            for o, row in zip(optimizers, rates, strict=True)])
    return Sweep(fitness.get(metric), multipliers, rates, metrics)


def _blocks(metrics: RunMetrics, k: int) -> list[RunMetrics]:
    """Graph-major ``metrics``, ``k`` rows per graph, as one block per graph."""
    return [RunMetrics(*(x[i:i + k] for x in metrics)) for i in range(0, len(metrics.diverged), k)]


def _concatenate(parts: Sequence[RunMetrics]) -> RunMetrics:
    return RunMetrics(*(np.concatenate(xs) for xs in zip(*parts, strict=True)))


class ReferenceDiverged(ValueError):
    """The reference diverged at every learning rate of its grid on a task, so
    it cannot normalise fitness there. The message is one line."""


def tune_reference(task: Any, learning_rates: Sequence[float], split: str,
                   metric: str | Metric, trainer: Trainer | None = None) -> fitness.Reference:
    """Adam on ``task`` (native ``optax.adam``, same loop and seeds as the
    candidates) at each learning rate, all in one program; the best value.

    Raises:
      ReferenceDiverged: every learning rate diverged.
    """
    metric, trainer = fitness.get(metric), trainer or Trainer()
    metrics = trainer.optax(optax.adam, (jnp.asarray(learning_rates),), task)
    best = metric.choose(metric.task_values(metrics, split), learning_rates)
    chosen = list(learning_rates).index(best.learning_rate)
    if np.asarray(metrics.diverged)[chosen].all() or not math.isfinite(best.value):
        rates = ", ".join(f"{lr:g}" for lr in learning_rates)
        raise ReferenceDiverged(f"Adam diverged on {task.name} at every learning rate tried "
                                f"({rates}), so it cannot normalise the fitness")
    return best


# --------------------------------------------------------------------------
# Candidates over the search tasks.


@dataclasses.dataclass(frozen=True)
class Measured:
    """What training a list of graphs on some tasks gave, per graph."""

    fitness: np.ndarray  # [n] aggregate over tasks (and learning-rate multipliers)
    multiplier: np.ndarray  # [n] the chosen learning-rate multiplier
    details: list[dict[str, Any]]  # per graph: task -> metrics at the chosen multiplier
    diverged: np.ndarray  # [n] every seed diverged on some task, at the chosen multiplier


def measure_candidates(graphs: Sequence[Graph], task_list: Sequence[Any],
                       reference: Mapping[str, float], *, multipliers: Sequence[float],
                       metric: str | Metric, split: str, lr_aggregate: str,
                       trainer: Trainer, shape: ProgramShape,
                       allowed: np.ndarray | None = None) -> Measured:
    """Trains ``graphs`` at each multiplier on ``task_list`` (one :func:`sweep`
    per task) and scores them against ``reference``.

    A graph's fitness at a multiplier is :meth:`Metric.aggregate` over the
    tasks; :func:`symopt.fitness.over_multipliers` combines the multipliers
    (``lr_aggregate``) and names the best. ``allowed`` [n, k] masks
    multipliers that may not be chosen (a rate the genome cannot express).
    The trainer's ``chunk_size`` counts rows: a chunk of c graphs is c * k rows.
    """
    metric = fitness.get(metric)
    multipliers = tuple(float(m) for m in multipliers)
    n, k = len(graphs), len(multipliers)
    sweeps = {task.name: sweep(graphs, task, multipliers, metric=metric, trainer=trainer,
                               shape=shape) for task in task_list}
    values = {t: s.values(split) for t, s in sweeps.items()}  # [n, k] each
    per_multiplier = np.stack(
        [metric.aggregate({t: v[:, j] for t, v in values.items()}, reference)
         for j in range(k)], axis=1) if n else np.zeros((0, k))
    if allowed is not None:
        per_multiplier = np.where(allowed, per_multiplier, -np.inf)
    fit, chosen = fitness.over_multipliers(per_multiplier, lr_aggregate, metric)
    details, diverged = [], np.zeros(n, bool)
    for i in range(n):
        j = int(chosen[i])
        detail = {name: _task_metrics(s, i, j, split, reference[name])
                  for name, s in sweeps.items()}
        detail[records.LEARNING_RATE] = records.learning_rate_metrics(multipliers[j],
                                                                      per_multiplier[i])
        details.append(detail)
        diverged[i] = any(s.diverged[i, j].all() for s in sweeps.values())
    return Measured(fit, np.asarray(multipliers)[chosen] if n else np.zeros(0), details,
                    diverged)


def _task_metrics(s: Sweep, i: int, j: int, split: str, reference: float) -> dict[str, Any]:
    """Graph ``i`` at multiplier ``j`` on one task, as its record keeps it."""
    row = i * len(s.multipliers) + j
    out = {}
    for f in METRIC_FIELDS:
        x = getattr(s.metrics, f)[row]
        out[f] = None if np.all(np.isnan(x)) else float(np.nanmean(x))
    values = s.runs(split)[i, j]
    out["value"] = float(values.mean())  # the metric's value: a clipped loss or a fitness
    out["normalized"] = float(s.metric.task_scores(values.mean(), reference))
    out["value_per_seed"] = [float(x) for x in values]
    out["diverged"] = int(s.metrics.diverged[row].sum())
    return out
