"""Fitness: clipped losses, normalisation by a baseline, aggregation over tasks and rates."""

from __future__ import annotations

import numpy as np
import pytest

from symopt import fitness
from symopt.evaluate import RunMetrics


def _metrics(val_loss, *, initial=2.0, diverged=None) -> RunMetrics:
    val_loss = np.asarray(val_loss, np.float64)
    shape = val_loss.shape
    return RunMetrics(
        train_loss=np.ones(shape), initial_loss=np.full(shape, initial), val_loss=val_loss,
        val_accuracy=np.full(shape, np.nan), test_loss=val_loss * 2,
        test_accuracy=np.full(shape, np.nan),
        diverged=np.zeros(shape, bool) if diverged is None else np.asarray(diverged),
        diverged_step=np.full(shape, -1))


def test_a_diverged_or_non_finite_run_gets_the_ceiling_and_never_nan():
    m = _metrics([[0.5, np.nan], [np.inf, 0.1], [0.2, 0.3]],
                 diverged=[[False, False], [False, True], [False, False]])
    losses = fitness.loss_runs(m)
    assert np.isfinite(losses).all()
    ceiling = fitness.LOSS_CEILING * 2.0
    np.testing.assert_allclose(losses, [[0.5, ceiling], [ceiling, ceiling], [0.2, 0.3]])


def test_losses_above_the_ceiling_are_clipped_to_it():
    np.testing.assert_allclose(fitness.loss_runs(_metrics([[100.0]])), [[3.0]])


def test_a_non_finite_initial_loss_falls_back_to_the_tasks_largest_ceiling():
    m = _metrics([[np.nan, 0.5]])
    m = m._replace(initial_loss=np.array([[np.nan, 4.0]]))
    np.testing.assert_allclose(fitness.loss_runs(m), [[6.0, 0.5]])


def test_the_test_split_is_read_for_reports():
    np.testing.assert_allclose(fitness.loss_runs(_metrics([[0.5]]), "test"), [[1.0]])


def test_loss_aggregate_is_the_geometric_mean_of_baseline_over_candidate_losses():
    per_task = {"a": np.array([0.5, 1.0]), "b": np.array([2.0, 1.0])}
    baseline = {"a": 1.0, "b": 1.0}
    np.testing.assert_allclose(fitness.aggregate(per_task, baseline, "loss"), [1.0, 1.0])
    per_task = {"a": np.array([0.5]), "b": np.array([0.5])}
    np.testing.assert_allclose(fitness.aggregate(per_task, baseline, "loss"), [2.0])


def test_one_task_cannot_dominate_the_loss_aggregate():
    scores = fitness.task_scores(np.array([1e-12, 1e12, 0.0]), 1.0, "loss")
    np.testing.assert_allclose(scores, [fitness.RATIO_CLIP, 1 / fitness.RATIO_CLIP,
                                        fitness.RATIO_CLIP])


def test_accuracy_aggregate_is_normalised_by_the_baseline_mean():
    per_task = {"a": np.array([0.9, 0.45]), "b": np.array([0.5, 0.25])}
    np.testing.assert_allclose(fitness.aggregate(per_task, {"a": 0.9, "b": 0.5}), [1.0, 0.5])


def test_a_task_without_a_reference_is_an_error():
    with pytest.raises(ValueError, match="reference"):
        fitness.aggregate({"a": np.ones(1), "b": np.ones(1)}, {"a": 1.0}, "loss")


def test_an_unknown_metric_is_an_error():
    with pytest.raises(ValueError, match="metric"):
        fitness.runs(_metrics([[1.0]]), "val", "speed")


@pytest.mark.parametrize("metric", fitness.METRICS)
def test_best_over_multipliers_takes_the_best_column_and_names_it(metric):
    per = np.array([[0.8, 1.2, 1.1], [1.0, 0.9, 0.7]])
    fit, chosen = fitness.over_multipliers(per, "best", metric)
    np.testing.assert_allclose(fit, [1.2, 1.0])
    np.testing.assert_array_equal(chosen, [1, 0])


def test_mean_over_multipliers_rewards_robustness_to_the_learning_rate():
    robust = [1.0, 1.0, 1.0]
    brittle = [0.1, 1.2, 0.1]  # best at one rate, diverged at its neighbours
    fit, chosen = fitness.over_multipliers(np.array([robust, brittle]), "mean", "loss")
    assert fit[0] > fit[1]
    np.testing.assert_allclose(fit[1], (0.1 * 1.2 * 0.1) ** (1 / 3))
    np.testing.assert_array_equal(chosen, [0, 1])


@pytest.mark.parametrize("how", fitness.LR_AGGREGATES)
def test_an_unavailable_multiplier_is_never_chosen_nor_averaged(how):
    fit, chosen = fitness.over_multipliers(np.array([[-np.inf, 1.0, 2.0]]), how, "loss")
    assert chosen[0] == 2
    np.testing.assert_allclose(fit, [2.0 if how == "best" else np.sqrt(2.0)])


def test_the_reference_is_the_best_value_over_its_learning_rates():
    best = fitness.LOSS.choose([0.5, 0.3, 0.4], [1e-4, 1e-3, 1e-2])
    assert best == fitness.Reference(0.3, 1e-3)
    best = fitness.get("accuracy").choose([0.5, 0.3, 0.9], [1e-4, 1e-3, 1e-2])
    assert best == fitness.Reference(0.9, 1e-2)
    # choose alone records no grid and no edge: measure.tune_reference adds them
    assert best.learning_rates == () and best.edge is False
