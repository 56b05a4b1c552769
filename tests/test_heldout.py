"""The held-out report: the learning-rate sweep, ratios between optimizers and
the tables of summary.md."""

from __future__ import annotations

import numpy as np
import pytest

from symopt import evaluate, fitness, heldout, measure, tasks, zoo


def _result(optimizer: str, task: str, found: float, tuned: float) -> heldout.Result:
    return heldout.Result(optimizer=optimizer, task=task, learning_rate=1e-3,
                          tuned_learning_rate=3e-3, found=(found, found), tuned=(tuned, tuned),
                          found_diverged=0, tuned_diverged=0)


RESULTS = [
    _result("best", "a", found=0.5, tuned=0.4), _result("best", "b", found=2.0, tuned=1.0),
    _result("adam", "a", found=1.0, tuned=0.8), _result("adam", "b", found=1.0, tuned=1.0),
]


def test_ratio_is_the_geometric_mean_of_loss_ratios_above_one_when_better():
    # lr-tuned: adam/best = 0.8/0.4 = 2 on a, 1/1 = 1 on b -> sqrt(2).
    assert heldout.ratio(RESULTS, "best", "adam", a_tuned=True) == pytest.approx(2**0.5)
    # as found against tuned adam: 0.8/0.5 and 1/2 -> sqrt(0.8).
    assert heldout.ratio(RESULTS, "best", "adam", a_tuned=False) == pytest.approx(0.8**0.5)


def test_one_task_cannot_dominate_the_ratio():
    results = [_result("best", "a", 1e-12, 1e-12), _result("adam", "a", 1.0, 1.0)]
    assert heldout.ratio(results, "best", "adam", a_tuned=True) == pytest.approx(fitness.RATIO_CLIP)


def test_optimizers_without_a_common_task_have_no_ratio():
    with pytest.raises(ValueError, match="share no test task"):
        heldout.ratio([_result("best", "a", 1, 1), _result("adam", "b", 1, 1)], "best", "adam",
                      a_tuned=True)


def test_table_has_a_row_per_optimizer_and_a_column_per_task():
    lines = heldout.table(RESULTS, ["best", "adam"])
    assert lines[0] == "| optimizer | a | b |"
    assert lines[2].startswith("| best | 0.5 ± 0 / 0.4 ± 0 |")
    assert len(lines) == 4


def test_results_round_trip_through_the_archives_json():
    assert [heldout.Result.from_dict(r.to_dict()) for r in RESULTS] == RESULTS


def test_the_comparisons_are_known_and_adamw_cosine_warms_up_over_five_percent():
    assert set(heldout.COMPARISONS) == {"adam", "adamw_cosine", "lion", "terms_ga"}
    graph = heldout.COMPARISONS["adamw_cosine"](400)
    assert (graph.schedule.kind, graph.schedule.warmup_steps) == ("cosine", 20)


def test_a_sweep_is_graph_major_rows_of_one_program_each_picking_its_val_best(monkeypatch):
    task = tasks.get("quadratic", steps=10, seeds=2)
    graphs = [zoo.adam(), zoo.sgd()]
    multipliers = (0.5, 1.0, 2.0)
    shape = measure.shape_for(graphs)
    trained = []
    train = evaluate.evaluate_graphs

    def recorded(runs, *args, **kwargs):
        trained.append((len(runs), kwargs["chunk_size"]))
        return train(runs, *args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_graphs", recorded)
    forward = measure.sweep(graphs, task, multipliers, metric="loss", shape=shape)
    backward = measure.sweep(graphs[::-1], task, multipliers[::-1], metric="loss",
                             shape=shape)
    assert trained == [(6, 6), (6, 6)]  # every rate of every graph in one program
    np.testing.assert_allclose(backward.test[::-1, ::-1], forward.test, rtol=1e-5)
    np.testing.assert_allclose(forward.learning_rates, [
        [g.hparams.learning_rate * m for m in multipliers] for g in graphs])
    assert forward.test.shape == (2, 3, 2) and forward.curves.shape[:3] == (2, 3, 2)
    assert forward.chosen.tolist() == [int(np.argmin(v)) for v in forward.val]
    fitter = measure.sweep(graphs, task, multipliers, metric="accuracy", shape=shape)
    assert fitter.chosen.tolist() == [int(np.argmax(v)) for v in fitter.val]

    results = heldout.evaluate_task(dict(zip(["adam", "sgd"], graphs, strict=True)), task,
                                    multipliers, shape=shape)
    for i, r in enumerate(results):
        tuned = int(forward.chosen[i])
        assert r.found == pytest.approx(forward.test[i, 1].tolist(), rel=1e-5)
        assert r.tuned == pytest.approx(forward.test[i, tuned].tolist(), rel=1e-5)
        assert r.tuned_learning_rate == pytest.approx(forward.learning_rates[i, tuned])
        assert r.learning_rate == graphs[i].hparams.learning_rate


def test_the_as_found_rate_must_be_swept():
    with pytest.raises(ValueError, match="must include 1.0"):
        heldout.evaluate_task({"adam": zoo.adam()}, None, (0.5, 2.0))
