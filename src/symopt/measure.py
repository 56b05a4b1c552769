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

Past the edges: a tuned rate at the edge of its grid (the smallest or the
largest rate tried) says only that the best rate may lie further out, so
:func:`sweep` and :func:`tune_reference` extend such a grid past that edge,
one step at a time (the grid's own ratio at that edge, at least
:data:`MIN_EXTENSION_RATIO`), until the val-best rate is inside the rates
tried, for at most :data:`MAX_EXTENSIONS` rounds. Each round is one program
for every optimizer still at an edge. A diverged run scores the worst, so a
rate next to a divergent one is inside, not at an edge. What is still at an
edge after the cap is flagged (:attr:`Sweep.edge`, ``Reference.edge``). The
search's own candidates (:func:`measure_candidates`) keep their fixed grid.

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

from symopt import comparisons, fitness, records
from symopt import graph as graph_lib
from symopt import program as program_lib
from symopt.comparisons import Optimizer
from symopt.evaluate import RunMetrics, Trainer
from symopt.fitness import Metric
from symopt.graph import Graph
from symopt.program import ProgramShape
from symopt.tasks.base import UserCodeError

MAX_EXTENSIONS = 4
"""The most rounds by which :func:`sweep` and :func:`tune_reference` extend a
grid past an edge (4 steps of 3.16x: 100x past the grid)."""
MIN_EXTENSION_RATIO = 2.0
"""The least factor one extension round steps past an edge (a grid's own
spacing at that edge, where it is wider)."""

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

    Arrays are indexed ``[optimizer, multiplier, ...]``: the multipliers
    given, in their order, then those that extensions past an edge added
    (:data:`MAX_EXTENSIONS`). ``tried`` says which optimizer trained at which
    (None: every one at every one); a row not tried holds NaN, counts as
    diverged and is never chosen. Values are the metric's (a clipped loss or
    a fitness). ``metrics`` holds the raw runs, row ``i * K + j`` for
    optimizer ``i`` at multiplier ``j``. Each derived array is computed once,
    on first use: callers read them optimizer by optimizer.
    """

    metric: Metric
    multipliers: tuple[float, ...]
    learning_rates: np.ndarray  # [N, K] each optimizer's rate times each multiplier
    metrics: RunMetrics  # [N * K, S]
    tried: np.ndarray | None = None  # [N, K] bool; None: every row was trained
    extensions: int = 0  # the extension rounds that ran
    _runs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False,
                                                      compare=False)

    def _grid(self, x) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(-1, len(self.multipliers), *x.shape[1:])

    @functools.cached_property
    def was_tried(self) -> np.ndarray:
        """[N, K] bool: which optimizer trained at which multiplier."""
        if self.tried is not None:
            return np.asarray(self.tried, bool)
        return np.ones(self._grid(self.metrics.diverged).shape[:2], bool)

    def runs(self, split: str) -> np.ndarray:
        """[N, K, S] each run's value on ``split`` (NaN where not tried)."""
        if split not in self._runs:
            values = self._grid(self.metric.runs(self.metrics, split)).astype(np.float64)
            self._runs[split] = np.where(self.was_tried[..., None], values, np.nan)
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
        """[N] the index of each optimizer's val-best multiplier among those it
        tried (ties: the first)."""
        worst = np.inf if self.metric.lower_is_better else -np.inf
        val = np.where(self.was_tried, self.val, worst)
        return np.array([self.metric.best_index(v) for v in val], int)

    @functools.cached_property
    def edge_side(self) -> np.ndarray:
        """[N] -1 where an optimizer's val-best multiplier is the smallest it
        tried, +1 the largest, 0 inside (or it tried one rate only)."""
        grid = np.asarray(self.multipliers)
        out = np.zeros(len(self.chosen), int)
        for i, j in enumerate(self.chosen):
            own = grid[self.was_tried[i]]
            out[i] = _side(grid[j], own)
        return out

    @functools.cached_property
    def edge(self) -> np.ndarray:
        """[N] bool: the val-best multiplier is at an edge of those tried."""
        return self.edge_side != 0

    def tuned_over(self, i: int) -> tuple[float, ...]:
        """The multipliers optimizer ``i`` trained at, ascending."""
        return tuple(sorted(m for m, t in zip(self.multipliers, self.was_tried[i], strict=True)
                            if t))

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


def _side(chosen: float, tried: Sequence[float]) -> int:
    """-1: ``chosen`` is the smallest of ``tried``; +1: the largest; 0: inside,
    or ``tried`` holds one rate."""
    tried = np.asarray(tried, np.float64)
    if len(np.unique(tried)) < 2:
        return 0
    if chosen <= tried.min():
        return -1
    return 1 if chosen >= tried.max() else 0


def extension_ratios(grid: Sequence[float]) -> tuple[float, float] | None:
    """``(below, above)``: the factor one extension round steps past the
    smallest and the largest of ``grid`` (its own spacing at that edge, at
    least :data:`MIN_EXTENSION_RATIO`); None for a grid of one rate, which
    tunes nothing."""
    s = sorted(set(float(m) for m in grid))
    if len(s) < 2:
        return None
    return max(s[1] / s[0], MIN_EXTENSION_RATIO), max(s[-1] / s[-2], MIN_EXTENSION_RATIO)


def _next_rate(side: int, tried: Sequence[float], ratios: tuple[float, float]) -> float:
    """The rate one step past the edge ``side`` of ``tried``."""
    return max(tried) * ratios[1] if side > 0 else min(tried) / ratios[0]


def sweep(optimizers: Sequence[Optimizer], task: Any, multipliers: Sequence[float], *,
          metric: str | Metric, trainer: Trainer | None = None,
          shape: ProgramShape | None = None, extend: int = MAX_EXTENSIONS) -> Sweep:
    """Trains every optimizer at every multiple of its learning rate on ``task``,
    past the grid's edges where its val-best rate is at one.

    The graphs' rows are one population (one compiled program per chunk);
    each :class:`~symopt.comparisons.OptaxOptimizer` trains its rows through
    the optax path, measured at its ``eval_params``. Either way the rows are
    the same multiples of the optimizer's rate, on the same seeds and batches.
    Then, for at most ``extend`` rounds, every optimizer whose val-best
    multiplier is the smallest or the largest it tried trains one step past
    it (:func:`extension_ratios`); a round's graphs are one program, padded to
    one row per graph (or the trainer's chunk), so that every round of a task
    reuses one compile.

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
      extend: the most extension rounds (0: the grid as given).
    """
    trainer = trainer or Trainer()
    metric = fitness.get(metric)
    multipliers = tuple(float(m) for m in multipliers)
    graphs = [o for o in optimizers if isinstance(o, Graph)]
    shape = shape or shape_for(graphs)
    columns = list(multipliers)
    base = _train(optimizers, task, [columns] * len(optimizers), trainer, shape)
    got = [{j: _row(m, j) for j in range(len(columns))} for m in base]
    ratios = extension_ratios(multipliers)
    round_trainer = trainer if trainer.chunk_size else trainer.with_chunk(max(len(graphs), 1))
    rounds = 0
    while ratios is not None and rounds < extend:
        sides = _assemble(metric, optimizers, columns, got).edge_side
        if not sides.any():
            break
        wanted = [[_next_rate(int(side), [columns[j] for j in got[i]], ratios)] if side else []
                  for i, side in enumerate(sides)]
        trained = _train(optimizers, task, wanted, round_trainer, shape)
        for i, (rates, m) in enumerate(zip(wanted, trained, strict=True)):
            for k, rate in enumerate(rates):
                got[i][_column(columns, rate)] = _row(m, k)
        rounds += 1
    return _assemble(metric, optimizers, columns, got, rounds)


def _train(optimizers: Sequence[Optimizer], task: Any, rows: Sequence[Sequence[float]],
           trainer: Trainer, shape: ProgramShape) -> list[RunMetrics | None]:
    """Optimizer ``i`` at each multiplier of ``rows[i]``: the graphs' rows in
    one population, each optax optimizer's in its own program; per optimizer
    its metrics, ``[len(rows[i]), S]`` (None where ``rows[i]`` is empty)."""
    out: list[RunMetrics | None] = [None] * len(optimizers)
    graph_rows = [(i, o.with_hparams(learning_rate=o.hparams.learning_rate * m))
                  for i, o in enumerate(optimizers) if isinstance(o, Graph) for m in rows[i]]
    if graph_rows:
        metrics = trainer.graphs([g for _, g in graph_rows], task, shape=shape)
        start = 0
        for i, o in enumerate(optimizers):
            if isinstance(o, Graph) and rows[i]:
                k = len(rows[i])
                out[i] = RunMetrics(*(None if x is None else x[start:start + k]
                                      for x in metrics))
                start += k
    for i, o in enumerate(optimizers):
        if not isinstance(o, Graph) and rows[i]:
            rates = jnp.asarray([comparisons.learning_rate(o) * m for m in rows[i]])
            out[i] = trainer.optax(o.make, (rates,), task, eval_params=o.eval_params)
    return out


def _row(metrics: RunMetrics, j: int) -> RunMetrics:
    return RunMetrics(*(None if x is None else np.asarray(x)[j:j + 1] for x in metrics))


def _column(columns: list[float], rate: float) -> int:
    """The index of ``rate`` among ``columns``, appended where it is new."""
    for j, m in enumerate(columns):
        if math.isclose(m, rate, rel_tol=1e-9):
            return j
    columns.append(rate)
    return len(columns) - 1


def _untried(like: RunMetrics) -> RunMetrics:
    """A row shaped as ``like``'s, for a multiplier not tried: NaN, diverged."""
    def fill(x):
        if x is None:
            return None
        x = np.asarray(x)
        if x.dtype == bool:
            return np.ones_like(x)
        if np.issubdtype(x.dtype, np.integer):
            return np.full_like(x, -1)
        return np.full_like(x, np.nan)
    return RunMetrics(*(fill(x) for x in like))


def _assemble(metric: Metric, optimizers: Sequence[Optimizer], columns: Sequence[float],
              got: Sequence[Mapping[int, RunMetrics]], rounds: int = 0) -> Sweep:
    """The :class:`Sweep` of the rows in ``got`` (optimizer -> column -> row)."""
    like = next(iter(got[0].values())) if got and got[0] else None
    parts, tried = [], np.zeros((len(got), len(columns)), bool)
    for i, rows in enumerate(got):
        for j in range(len(columns)):
            tried[i, j] = j in rows
            parts.append(rows[j] if j in rows else _untried(like))
    rates = np.array([[comparisons.learning_rate(o) * m for m in columns]
                      for o in optimizers]).reshape(-1, len(columns))
    metrics = _concatenate(parts) if parts else RunMetrics(
        *(np.zeros((0, 0)) for _ in RunMetrics._fields))
    return Sweep(metric, tuple(columns), rates, metrics, None if tried.all() else tried,
                 rounds)


def _concatenate(parts: Sequence[RunMetrics]) -> RunMetrics:
    return RunMetrics(*(None if any(x is None for x in xs) else np.concatenate(xs)
                        for xs in zip(*parts, strict=True)))


class ReferenceDiverged(ValueError):
    """The reference diverged at every learning rate of its grid on a task, so
    it cannot normalise fitness there. The message is one line."""


def tune_reference(task: Any, learning_rates: Sequence[float], split: str,
                   metric: str | Metric, trainer: Trainer | None = None, *,
                   extend: int = MAX_EXTENSIONS) -> fitness.Reference:
    """Adam on ``task`` (native ``optax.adam``, same loop and seeds as the
    candidates) at each learning rate, all in one program; the best value.

    Where the best rate is the smallest or the largest tried, the grid is
    extended past it one step a round (:func:`extension_ratios`), for at most
    ``extend`` rounds, so that 1.0 is a tuned Adam. The result holds every
    rate tried and whether the best is still at an edge.

    Raises:
      ReferenceDiverged: every learning rate diverged.
      UserCodeError: the task's loss is NaN or inf before the first step at
        every seed (phase ``forward``): the model is at fault, not the rate.
    """
    metric, trainer = fitness.get(metric), trainer or Trainer()
    rates = [float(lr) for lr in learning_rates]
    metrics = trainer.optax(optax.adam, (jnp.asarray(rates),), task)
    initial = np.asarray(metrics.initial_loss)
    if not np.isfinite(initial).any():
        kind = "NaN" if np.isnan(initial).any() else "inf"
        raise UserCodeError(task.label, "forward", FloatingPointError(
            f"the model's loss at initialisation is {kind} at every seed, before any training "
            "step, so no learning rate can train it"))
    ratios = extension_ratios(rates)
    for _ in range(extend if ratios is not None else 0):
        best = metric.choose(metric.task_values(metrics, split), rates)
        side = _side(best.learning_rate, rates)
        if not side:
            break
        rates.append(_next_rate(side, rates, ratios))
        # The new rate in every row of the first program's shape: no new
        # compile, and rows enough for every device and process.
        padded = jnp.full((len(learning_rates),), rates[-1])
        extra = trainer.optax(optax.adam, (padded,), task)
        metrics = _concatenate([metrics, RunMetrics(*(None if x is None else np.asarray(x)[:1]
                                                      for x in extra))])
    best = metric.choose(metric.task_values(metrics, split), rates)
    chosen = rates.index(best.learning_rate)
    if np.asarray(metrics.diverged)[chosen].all() or not math.isfinite(best.value):
        tried = ", ".join(f"{lr:g}" for lr in sorted(rates))
        raise ReferenceDiverged(f"Adam diverged on {task.label} at every learning rate tried "
                                f"({tried}), so it cannot normalise the fitness")
    return best._replace(learning_rates=tuple(sorted(rates)),
                         edge=bool(_side(best.learning_rate, rates)))


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
                               shape=shape, extend=0) for task in task_list}
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
