"""Fitness: from the metrics of trained runs to one number per candidate.

This module owns how a run is scored, how a task's scores are normalised by a
reference, how tasks and learning-rate multipliers are aggregated, and how a
tuned reference is chosen. It is pure NumPy over :class:`~symopt.evaluate.RunMetrics`
arrays ``[P, S]`` (candidates x seeds), so every reader of an archive can
recompute a score.

Two metrics (``evaluation.metric``), each a :class:`Metric` object that holds
every fork on which is better:

* ``"loss"`` (the default of ``experiments/generalize.py``): a run's score on
  a task is its final loss on the split (``val`` while searching, ``test``
  for reports), clipped as ``learned_optimization`` does: the ceiling is
  ``LOSS_CEILING x`` the run's loss at step 0 (for a classifier, about
  ``1.5 * log(num_classes)``), and a diverged, NaN or infinite run gets the
  ceiling, so no NaN or inf ever reaches an aggregate. The final loss is used
  rather than the area under the training curve because the loss on held-out
  data is what a user of the optimizer keeps, and because it does not
  saturate as accuracy does near 97%. A task's normalised score is the
  reference's loss divided by the candidate's, clipped to ``[1/RATIO_CLIP,
  RATIO_CLIP]``, and tasks are aggregated by the geometric mean: 1.0 is as
  good as the reference (Adam with its learning rate tuned per task), 1.1 is a
  loss 10% lower on the geometric average, and no single task can dominate.
* ``"accuracy"``: Marfinetz 2025's formula, ``accuracy + 0.05 * max(0, 1 -
  mean training loss over the last 50 steps)``, -1 for a diverged run; tasks
  without classes score the orders of magnitude by which the loss fell, over
  10. Tasks are averaged and divided by the reference's average, as the paper
  does. The published protocols' configs use it.

Learning-rate multipliers: a candidate trained at several multipliers of its
own learning rate gets one aggregate per multiplier; :func:`over_multipliers`
combines them (``"best"``, or ``"mean"``, which rewards robustness to the
learning rate) and names the best multiplier, which the search writes back
into the genome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

LR_AGGREGATES = ("best", "mean")

FITNESS_TAIL = 50  # steps of training loss averaged into the accuracy formula
LOSS_BONUS = 0.05
DIVERGED_FITNESS = -1.0
LOG_RANGE = 10.0  # orders of magnitude of loss decrease worth an accuracy-fitness of 1

LOSS_CEILING = 1.5
"""A run's loss is clipped at this multiple of its loss at step 0."""
RATIO_CLIP = 10.0
"""A task's normalised loss score is clipped to [1/RATIO_CLIP, RATIO_CLIP]."""


class Reference(NamedTuple):
    """The tuned reference of one task (Adam, which normalises fitness): its
    value and the learning rate that gave it; where it was tuned, the rates
    tried (ascending, extensions past the grid's edges included) and whether
    the best is still the smallest or largest of them
    (:func:`symopt.measure.tune_reference`)."""

    value: float
    learning_rate: float
    learning_rates: tuple[float, ...] = ()
    edge: bool = False


# --------------------------------------------------------------------------
# Per run.


def accuracy_runs(metrics: Any, split: str = "val") -> np.ndarray:
    """Marfinetz 2025's fitness of each run, [P, S] (higher is better).

    ``split`` picks the accuracy: ``"val"`` while searching (the test split
    stays unseen), ``"test"`` for final reports.
    """
    accuracy = getattr(metrics, f"{split}_accuracy")
    bonus = LOSS_BONUS * np.maximum(0.0, 1.0 - metrics.train_loss)
    classified = accuracy + bonus
    with np.errstate(all="ignore"):
        ratio = np.log10(np.maximum(metrics.initial_loss, 1e-30)
                         / np.maximum(getattr(metrics, f"{split}_loss"), 1e-30))
    objective = np.clip(ratio / LOG_RANGE, -1.0, 1.0)
    fit = np.where(np.isnan(accuracy), objective, classified)
    bad = metrics.diverged | ~np.isfinite(fit)
    return np.where(bad, DIVERGED_FITNESS, fit)


def loss_runs(metrics: Any, split: str = "val") -> np.ndarray:
    """The clipped final loss of each run on ``split``, [P, S] (lower is better).

    A diverged or non-finite run gets its ceiling (``LOSS_CEILING`` times its
    step-0 loss); a run whose step-0 loss is itself not finite gets the
    largest finite ceiling of the task, or 1e30.
    """
    loss = np.asarray(getattr(metrics, f"{split}_loss"), np.float64)
    initial = np.asarray(metrics.initial_loss, np.float64)
    with np.errstate(all="ignore"):
        ceiling = LOSS_CEILING * np.abs(initial)
    finite = np.isfinite(ceiling)
    fallback = float(ceiling[finite].max()) if finite.any() else 1e30
    ceiling = np.where(finite, ceiling, fallback)
    bad = np.asarray(metrics.diverged, bool) | ~np.isfinite(loss)
    return np.where(bad, ceiling, np.clip(np.nan_to_num(loss), 0.0, ceiling))


# --------------------------------------------------------------------------
# The metric: the one place that knows whether lower or higher is better.


@dataclasses.dataclass(frozen=True)
class Metric:
    """How runs are scored and compared: ``"loss"`` or ``"accuracy"``.

    Every fork on the metric lives here, so the layers above hold a
    ``Metric`` and ask it rather than compare its name. :func:`get` returns
    one by name; :data:`METRICS` lists the names.
    """

    name: str
    lower_is_better: bool
    run_values: Callable[[Any, str], np.ndarray]  # (metrics, split) -> [P, S]
    search_text: str  # what a search's fitness is, for reports ({split} is the split)
    value_text: str  # what one task's value is, for tables
    aggregate_text: str  # what the aggregate over tasks is, for tables

    def runs(self, metrics: Any, split: str) -> np.ndarray:
        """Each run's value, [P, S]: a clipped loss or a fitness."""
        return self.run_values(metrics, split)

    def task_values(self, metrics: Any, split: str) -> np.ndarray:
        """Each candidate's value on a task: the mean over seeds, [P]."""
        return self.runs(metrics, split).mean(axis=1)

    def best_index(self, values: Sequence[float]) -> int:
        """The index of the best value (ties: the first)."""
        values = np.asarray(values, np.float64)
        return int(np.argmin(values) if self.lower_is_better else np.argmax(values))

    def task_scores(self, values: np.ndarray, reference: float) -> np.ndarray:
        """One task's normalised scores (1.0 = the reference; higher is better).

        Loss: ``reference / value`` clipped to ``[1/RATIO_CLIP, RATIO_CLIP]``;
        accuracy: ``value / reference``.
        """
        values = np.asarray(values, np.float64)
        if not self.lower_is_better:
            return values / reference
        with np.errstate(all="ignore"):
            ratio = np.where(values > 0, reference / np.maximum(values, 1e-300), RATIO_CLIP)
        return np.clip(np.nan_to_num(ratio, nan=1.0 / RATIO_CLIP), 1.0 / RATIO_CLIP, RATIO_CLIP)

    def aggregate(self, per_task: Mapping[str, np.ndarray],
                  reference: Mapping[str, float]) -> np.ndarray:
        """Fitness over tasks, normalised by the reference (1.0: as good).

        Loss: the geometric mean over tasks of :meth:`task_scores`; accuracy:
        the mean over tasks divided by the reference's mean (Marfinetz 2025's
        best found optimizer scores 1.026).

        Raises:
          ValueError: a task without a reference value, or (accuracy) a
            reference mean that is not positive.
        """
        names = sorted(per_task)
        missing = [n for n in names if n not in reference]
        if missing:
            raise ValueError(f"no reference value for tasks {missing}")
        if self.lower_is_better:
            logs = [np.log(self.task_scores(per_task[n], reference[n])) for n in names]
            return np.exp(np.mean(logs, axis=0))
        mean = np.mean([per_task[n] for n in names], axis=0)
        base = float(np.mean([reference[n] for n in names]))
        if not np.isfinite(base) or base <= 0:
            raise ValueError(f"reference fitness {base} must be positive to normalise by")
        return mean / base

    def mean_over_multipliers(self, values: np.ndarray, finite: np.ndarray) -> np.ndarray:
        """The mean of [P, K] aggregates over the finite columns: geometric for
        the loss (scores are ratios), arithmetic for accuracy (whose diverged
        runs score -1)."""
        count = np.maximum(finite.sum(axis=1), 1)
        if self.lower_is_better:
            logs = np.where(finite, np.log(np.maximum(np.where(finite, values, 1.0),
                                                      1.0 / RATIO_CLIP)), 0.0)
            return np.exp(logs.sum(axis=1) / count)
        return np.where(finite, np.maximum(values, DIVERGED_FITNESS), 0.0).sum(axis=1) / count

    def choose(self, values: Sequence[float], learning_rates: Sequence[float]) -> Reference:
        """The best of an optimizer's values over a learning-rate grid (ties: the first)."""
        i = self.best_index(values)
        return Reference(float(np.asarray(values)[i]), float(learning_rates[i]))


LOSS = Metric(
    "loss", lower_is_better=True, run_values=lambda m, split: loss_runs(m, split),
    search_text=("the geometric mean over search tasks of Adam's final {split} loss divided by "
                 "the candidate's (losses clipped; a diverged run scores the worst)"),
    value_text="Test loss (final loss clipped as symopt.fitness clips, lower is better)",
    aggregate_text=("geometric mean over the tasks reached of Adam's test loss divided by the "
                    "optimizer's, each ratio clipped"))
ACCURACY = Metric(
    "accuracy", lower_is_better=False, run_values=lambda m, split: accuracy_runs(m, split),
    search_text=("the mean over search tasks of Marfinetz 2025's accuracy formula ({split} "
                 "split), divided by Adam's"),
    value_text="Test fitness (Marfinetz 2025's formula, higher is better)",
    aggregate_text=("mean test fitness over the tasks reached, divided by Adam's on the same "
                    "tasks"))
_BY_NAME = {m.name: m for m in (LOSS, ACCURACY)}
METRICS = tuple(_BY_NAME)
"""The metrics' names (``evaluation.metric``)."""


def get(metric: str | Metric) -> Metric:
    """The :class:`Metric` named ``metric`` (a Metric is returned as it is)."""
    if isinstance(metric, Metric):
        return metric
    if metric not in _BY_NAME:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return _BY_NAME[metric]


# The module-level forms take a Metric or its name.


def runs(metrics: Any, split: str, metric: str | Metric) -> np.ndarray:
    """Each run's value under ``metric``, [P, S]: a loss or a fitness."""
    return get(metric).runs(metrics, split)


def task_values(metrics: Any, split: str, metric: str | Metric) -> np.ndarray:
    """Each candidate's value on the task: the mean over seeds, [P]."""
    return get(metric).task_values(metrics, split)


def best_index(metric: str | Metric, values: Sequence[float]) -> int:
    """The index of the best value (ties: the first)."""
    return get(metric).best_index(values)


def task_scores(values: np.ndarray, reference: float, metric: str | Metric) -> np.ndarray:
    """:meth:`Metric.task_scores`."""
    return get(metric).task_scores(values, reference)


def aggregate(per_task: Mapping[str, np.ndarray], reference: Mapping[str, float],
              metric: str | Metric = "accuracy") -> np.ndarray:
    """:meth:`Metric.aggregate`: fitness over tasks, normalised by the reference."""
    return get(metric).aggregate(per_task, reference)


def over_multipliers(per_multiplier: np.ndarray, how: str,
                     metric: str | Metric) -> tuple[np.ndarray, np.ndarray]:
    """Combines a candidate's aggregates at each learning-rate multiplier.

    Args:
      per_multiplier: [P, K] aggregates (higher is better), one column per
        multiplier; a non-finite entry is a multiplier that was not available
        (it is never chosen and not averaged).
      how: ``"best"``, the best column; ``"mean"``, the geometric mean over
        columns for ``"loss"`` (the arithmetic mean for ``"accuracy"``, whose
        diverged runs score -1), which rewards an optimizer that works over the
        whole range of learning rates.
      metric: the fitness metric.

    Returns:
      ``(fitness [P], best multiplier index [P])``; ties pick the first column.
    """
    if how not in LR_AGGREGATES:
        raise ValueError(f"lr aggregate must be one of {LR_AGGREGATES}, got {how!r}")
    values = np.asarray(per_multiplier, np.float64)
    finite = np.isfinite(values)
    clean = np.where(finite, values, -np.inf)
    chosen = np.argmax(clean, axis=1)
    if how == "best":
        return clean[np.arange(len(clean)), chosen], chosen
    mean = get(metric).mean_over_multipliers(values, finite)
    return np.where(finite.any(axis=1), mean, -np.inf), chosen


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over the last axis, as floats."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std())


def reference_grid(evaluation: Any) -> list[float]:
    """The learning rates the reference (Adam) is tuned over:
    ``reference_learning_rate`` times each of ``reference_lr_multipliers`` (an
    ``evaluation`` config section)."""
    return [evaluation.reference_learning_rate * m
            for m in evaluation.reference_lr_multipliers]
