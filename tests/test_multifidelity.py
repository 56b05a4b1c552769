"""Specifications of successive halving (``symopt.searchers.multifidelity``):
which candidates each stage measures, promotes and ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symopt.searchers import Stage, successive_halving


def by_value(values):
    """An ``evaluate`` returning ``values[id]`` at every stage, logging its calls."""
    calls = []

    def evaluate(ids, stage):
        calls.append((ids, stage.name))
        return [values[i] for i in ids]

    return evaluate, calls


def test_successive_halving_keeps_the_best_fraction_then_count():
    values = {i: float(i) for i in range(8)}
    evaluate, calls = by_value(values)
    result = successive_halving(range(8), [Stage("a", 0.5), Stage("b", 2), Stage("c", 1)], evaluate)
    assert calls == [(tuple(range(8)), "a"), ((7, 6, 5, 4), "b"), ((7, 6), "c")]
    assert result.survivors == ((7, 6, 5, 4), (7, 6), (7,))
    assert result.ranking == (7, 6, 5, 4, 3, 2, 1, 0)
    assert result.fitness_of(5) == {"a": 5.0, "b": 5.0}
    assert np.isnan(result.fitness[0, 1])


def test_successive_halving_fraction_rounds_up():
    evaluate, _ = by_value({i: float(i) for i in range(10)})
    result = successive_halving(range(10), [Stage("a", 0.3), Stage("b", 0.5)], evaluate)
    assert result.survivors == ((9, 8, 7), (9, 8))


def test_successive_halving_never_promotes_failed_candidates():
    values = {0: np.nan, 1: -np.inf, 2: 0.5, 3: np.inf, 4: 0.1}
    evaluate, calls = by_value(values)
    result = successive_halving(range(5), [Stage("a", 4), Stage("b", 1.0)], evaluate)
    assert result.survivors == ((2, 4), (2, 4))
    assert calls[1] == ((2, 4), "b")
    assert result.fitness_of(0) == {"a": -np.inf}
    assert result.ranking[:2] == (2, 4)
    assert set(result.ranking[2:]) == {0, 1, 3}


def test_successive_halving_breaks_ties_by_id():
    evaluate, _ = by_value({5: 1.0, 3: 1.0, 9: 1.0, 1: 0.0})
    result = successive_halving([9, 5, 1, 3], [Stage("a", 2)], evaluate)
    assert result.survivors == ((3, 5),)
    assert result.ranking == (3, 5, 9, 1)


def test_successive_halving_ranks_deeper_stages_first_and_failures_last():
    stage_values = {"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {1: 0.1, 2: np.nan}}
    result = successive_halving(
        [0, 1, 2],
        [Stage("a", 2), Stage("b", 1)],
        lambda ids, stage: [stage_values[stage.name][i] for i in ids],
    )
    assert result.ranking == (1, 0, 2)


def test_successive_halving_stops_when_nothing_survives():
    evaluate, calls = by_value({0: np.nan, 1: np.nan})
    result = successive_halving([0, 1], [Stage("a"), Stage("b")], evaluate)
    assert len(calls) == 1
    assert result.survivors == ((), ())


@pytest.mark.parametrize("keep", [0, 0.0, 1.5, -2, True, "half"])
def test_stage_rejects_bad_keep(keep):
    with pytest.raises(ValueError, match="keep"):
        Stage("a", keep)


def test_successive_halving_checks_its_inputs():
    evaluate, _ = by_value({0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match="unique"):
        successive_halving([0, 0], [Stage("a")], evaluate)
    with pytest.raises(ValueError, match="stage"):
        successive_halving([0, 1], [], evaluate)
    with pytest.raises(ValueError, match="returned 1 values"):
        successive_halving([0, 1], [Stage("a")], lambda ids, stage: [1.0])


def test_halving_result_is_read_only():
    evaluate, _ = by_value({0: 1.0})
    result = successive_halving([0], [Stage("a")], evaluate)
    with pytest.raises(ValueError):
        result.fitness[0, 0] = 2.0
    assert math.isclose(result.fitness[0, 0], 1.0)
