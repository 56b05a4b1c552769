"""The held-out report: ratios between optimizers and the tables of summary.md."""

from __future__ import annotations

import pytest

from symopt import fitness, heldout


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


def test_the_baselines_are_known_and_adamw_cosine_warms_up_over_five_percent():
    assert set(heldout.BASELINES) == {"adam", "adamw_cosine", "lion", "terms_ga"}
    graph = heldout.BASELINES["adamw_cosine"](400)
    assert (graph.schedule.kind, graph.schedule.warmup_steps) == ("cosine", 20)
