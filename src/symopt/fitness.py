"""Fitness: from the metrics of trained runs to one number per candidate.

This module owns how a run is scored, how a task's scores are normalised by a
baseline, how tasks and learning-rate multipliers are aggregated, and how a
tuned baseline is chosen. It is pure NumPy over :class:`~symopt.evaluate.RunMetrics`
arrays ``[P, S]`` (candidates x seeds), so every reader of an archive can
recompute a score.

Two metrics (``evaluation.metric``):

* ``"loss"`` (the default of ``experiments/generalize.py``): a run's score on
  a task is its final loss on the split (``val`` while searching, ``test``
  for reports), clipped as ``learned_optimization`` does: the ceiling is
  ``LOSS_CEILING x`` the run's loss at step 0 (for a classifier, about
  ``1.5 * log(num_classes)``), and a diverged, NaN or infinite run gets the
  ceiling, so no NaN or inf ever reaches an aggregate. The final loss is used
  rather than the area under the training curve because the loss on held-out
  data is what a user of the optimizer keeps, and because it does not
  saturate as accuracy does near 97%. A task's normalised score is the
  baseline's loss divided by the candidate's, clipped to ``[1/RATIO_CLIP,
  RATIO_CLIP]``, and tasks are aggregated by the geometric mean: 1.0 is as
  good as the baseline (Adam with its learning rate tuned per task), 1.1 is a
  loss 10% lower on the geometric average, and no single task can dominate.
* ``"accuracy"``: Marfinetz 2025's formula, ``accuracy + 0.05 * max(0, 1 -
  mean training loss over the last 50 steps)``, -1 for a diverged run; tasks
  without classes score the orders of magnitude by which the loss fell, over
  10. Tasks are averaged and divided by the baseline's average, as the paper
  does. The published protocols' configs use it.

Learning-rate multipliers: a candidate trained at several multipliers of its
own learning rate gets one aggregate per multiplier; :func:`over_multipliers`
combines them (``"best"``, or ``"mean"``, which rewards robustness to the
learning rate) and names the best multiplier, which the search writes back
into the genome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

METRICS = ("loss", "accuracy")
LR_AGGREGATES = ("best", "mean")

FITNESS_TAIL = 50  # steps of training loss averaged into the accuracy formula
LOSS_BONUS = 0.05
DIVERGED_FITNESS = -1.0
LOG_RANGE = 10.0  # orders of magnitude of loss decrease worth an accuracy-fitness of 1

LOSS_CEILING = 1.5
"""A run's loss is clipped at this multiple of its loss at step 0."""
RATIO_CLIP = 10.0
"""A task's normalised loss score is clipped to [1/RATIO_CLIP, RATIO_CLIP]."""


class Baseline(NamedTuple):
    """The tuned baseline of one task: its value and the learning rate that gave it."""

    value: float
    learning_rate: float


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


def runs(metrics: Any, split: str, metric: str) -> np.ndarray:
    """Each run's value under ``metric``, [P, S]: a loss (``"loss"``) or a fitness."""
    _check_metric(metric)
    return loss_runs(metrics, split) if metric == "loss" else accuracy_runs(metrics, split)


def task_values(metrics: Any, split: str, metric: str) -> np.ndarray:
    """Each candidate's value on the task: the mean over seeds, [P]."""
    return runs(metrics, split, metric).mean(axis=1)


def best_index(metric: str, values: Sequence[float]) -> int:
    """The index of the best value (ties: the first)."""
    values = np.asarray(values, np.float64)
    _check_metric(metric)
    return int(np.argmin(values) if metric == "loss" else np.argmax(values))


# --------------------------------------------------------------------------
# Normalisation and aggregation.


def task_scores(values: np.ndarray, baseline: float, metric: str) -> np.ndarray:
    """One task's normalised scores (1.0 = the baseline; higher is better).

    ``"loss"``: ``baseline / value`` clipped to ``[1/RATIO_CLIP, RATIO_CLIP]``;
    ``"accuracy"``: ``value / baseline``.
    """
    values = np.asarray(values, np.float64)
    if metric == "accuracy":
        return values / baseline
    _check_metric(metric)
    with np.errstate(all="ignore"):
        ratio = np.where(values > 0, baseline / np.maximum(values, 1e-300), RATIO_CLIP)
    return np.clip(np.nan_to_num(ratio, nan=1.0 / RATIO_CLIP), 1.0 / RATIO_CLIP, RATIO_CLIP)


def aggregate(per_task: Mapping[str, np.ndarray], baseline: Mapping[str, float],
              metric: str = "accuracy") -> np.ndarray:
    """Fitness over tasks, normalised by the baseline: 1.0 is as good as the baseline.

    ``per_task`` maps task names to :func:`task_values` arrays [P]; ``baseline``
    maps the same names to the baseline's value on them. ``"loss"``: the
    geometric mean over tasks of :func:`task_scores`; ``"accuracy"``: the mean
    over tasks divided by the baseline's mean (Marfinetz 2025's best found
    optimizer scores 1.026).

    Raises:
      ValueError: a task without a baseline value, or (``"accuracy"``) a
        baseline mean that is not positive.
    """
    _check_metric(metric)
    names = sorted(per_task)
    missing = [n for n in names if n not in baseline]
    if missing:
        raise ValueError(f"no baseline value for tasks {missing}")
    if metric == "loss":
        logs = [np.log(task_scores(per_task[n], baseline[n], metric)) for n in names]
        return np.exp(np.mean(logs, axis=0))
    mean = np.mean([per_task[n] for n in names], axis=0)
    base = float(np.mean([baseline[n] for n in names]))
    if not np.isfinite(base) or base <= 0:
        raise ValueError(f"baseline fitness {base} must be positive to normalise by")
    return mean / base


def over_multipliers(per_multiplier: np.ndarray, how: str,
                     metric: str) -> tuple[np.ndarray, np.ndarray]:
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
    if metric == "loss":
        logs = np.where(finite, np.log(np.maximum(np.where(finite, values, 1.0),
                                                  1.0 / RATIO_CLIP)), 0.0)
        mean = np.exp(logs.sum(axis=1) / np.maximum(finite.sum(axis=1), 1))
    else:
        kept = np.where(finite, np.maximum(values, DIVERGED_FITNESS), 0.0)
        mean = kept.sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return np.where(finite.any(axis=1), mean, -np.inf), chosen


def choose_baseline(values: Sequence[float], learning_rates: Sequence[float],
                    metric: str) -> Baseline:
    """The best of a baseline's values over a learning-rate grid (ties: the first)."""
    i = best_index(metric, values)
    return Baseline(float(np.asarray(values)[i]), float(learning_rates[i]))


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over the last axis, as floats."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std())


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def baseline_grid(evaluation: Any) -> list[float]:
    """The learning rates the baseline is tuned over: ``baseline_learning_rate``
    times each of ``baseline_lr_multipliers`` (an ``evaluation`` config section)."""
    return [evaluation.baseline_learning_rate * m for m in evaluation.baseline_lr_multipliers]
