"""The training length is part of a found optimizer (issue 24, section 8).

A found graph's schedule and ``t/T`` operands are laid over the length ``T``
it was trained at. ``best.json`` records it (``total_steps``, and the test
tasks' ``test_total_steps``); ``to_optax`` and the exported factory use it
when the caller gives none, and warn once when a caller's length is more than
2x away from it, or when no length is known, for a graph that reads ``T``.
The lengths say how a graph was measured, not what it computes: equality,
hashing, canonical form and fingerprints ignore them.
"""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import integrity, zoo
from symopt import run as run_lib
from symopt.graph import Schedule, TrainingLengthWarning

from helpers import tiny_config

STEPS = 40
"""Steps compared: enough for a cosine over 300 steps to leave one over 10,000."""


def _cosine(learning_rate: float, **lengths) -> symopt.Graph:
    """Adam with a cosine schedule; a rate of its own keeps the warn-once
    memory of one test from another's."""
    return zoo.adam(learning_rate=learning_rate).replace(schedule=Schedule("cosine"), **lengths)


def _updates(tx) -> list[np.ndarray]:
    params = {"w": jnp.linspace(-1.0, 1.0, 6)}
    state, out = tx.init(params), []
    update = jax.jit(tx.update)
    for i in range(STEPS):
        grads = {"w": jnp.sin(params["w"] * (i + 1))}
        updates, state = update(grads, state, params)
        out.append(np.asarray(updates["w"]))
    return out


def _length_warnings(caught) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, TrainingLengthWarning)]


def test_to_optax_without_a_length_lays_the_schedule_over_the_length_it_was_found_at():
    found = _cosine(1.1e-3, total_steps=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingLengthWarning)  # the found length: no warning
        ours = _updates(symopt.to_optax(found))
        np.testing.assert_allclose(ours, _updates(symopt.to_optax(found, total_steps=300)),
                                   rtol=0, atol=0)
    with pytest.warns(TrainingLengthWarning):  # what it was laid over before: 33x longer
        old = _updates(symopt.to_optax(found, total_steps=10_000))
    assert not np.allclose(ours[-1], old[-1])


def test_a_length_ten_times_the_found_one_warns_once():
    found = _cosine(1.2e-3, total_steps=300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            symopt.to_optax(found, total_steps=3000)
        symopt.to_optax(found, total_steps=500)  # within 2x: no warning
    (warning,) = _length_warnings(caught)
    assert "total_steps=300" in str(warning.message) and "3000" in str(warning.message)
    assert warning.filename == __file__  # it points at the caller's line


@pytest.mark.parametrize("graph", [zoo.adam(learning_rate=1.3e-3),
                                   zoo.lion(learning_rate=1.3e-4)], ids=["adam", "lion"])
def test_a_graph_without_schedule_or_t_does_not_warn(graph):
    assert not graph_lib.reads_total_steps(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingLengthWarning)
        symopt.to_optax(graph)
        symopt.to_optax(graph.replace(total_steps=300), total_steps=30_000)


@pytest.mark.parametrize("name", ["terms_ga", "driftprop"])
def test_zoo_graphs_that_read_t_over_T_count_as_reading_the_length(name):
    assert graph_lib.reads_total_steps(zoo.get(name))


def test_neither_a_recorded_nor_a_given_length_warns_for_a_graph_with_a_schedule():
    unknown = _cosine(1.4e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tx = symopt.to_optax(unknown)
        symopt.to_optax(unknown)
    (warning,) = _length_warnings(caught)
    assert "pass total_steps=" in str(warning.message)
    np.testing.assert_allclose(_updates(tx), _updates(
        symopt.to_optax(unknown, total_steps=graph_lib.DEFAULT_TOTAL_STEPS)), rtol=0, atol=0)


def test_best_json_round_trips_the_lengths_and_identity_ignores_them(tmp_path):
    plain = _cosine(1e-3)
    found = plain.replace(total_steps=300, test_total_steps=1000)
    path = tmp_path / "best.json"
    symopt.save(found, path)
    loaded = symopt.load(path)
    assert (loaded.total_steps, loaded.test_total_steps) == (300, 1000)
    assert json.loads(path.read_text())["total_steps"] == 300
    # The same program: ==, hash, canonical form, niche and fingerprint are the candidate's.
    assert loaded == plain and hash(loaded) == hash(plain) and len({loaded, plain}) == 1
    assert graph_lib.canonical(loaded) == graph_lib.canonical(plain)
    assert graph_lib.canonical(loaded).total_steps == 300  # kept through the canonical form
    assert graph_lib.structure_key(loaded) == graph_lib.structure_key(plain)
    assert integrity.fingerprint(loaded) == integrity.fingerprint(plain)
    # A graph without lengths (every archived candidate) keeps the dict it had.
    assert "total_steps" not in symopt.to_dict(plain)
    assert "test_total_steps" not in symopt.to_dict(plain)


def test_an_old_best_json_without_the_lengths_still_loads(tmp_path):
    path = tmp_path / "best.json"
    data = symopt.to_dict(zoo.terms_ga())
    assert "total_steps" not in data
    path.write_text(json.dumps(data))
    graph = symopt.load(path)
    assert graph == zoo.terms_ga() and graph.total_steps is None


@pytest.mark.parametrize("value", [0, -5, 2.5, "300", True, 2**31])
def test_a_bad_recorded_length_is_a_graph_error_naming_it(value):
    data = symopt.to_dict(zoo.adam())
    data["total_steps"] = value
    with pytest.raises(symopt.GraphError, match="^total_steps: expected an integer"):
        symopt.from_dict(data)


def test_a_search_records_the_lengths_it_found_and_tested_the_winner_at(tmp_path):
    config = tiny_config(search__generations=1, search__population_size=4,
                         evaluation__reference_lr_multipliers=(1.0,))  # Adam at one rate
    config.tasks.search = "quadratic"  # the cheapest tasks to compile
    config.tasks.options = {}
    config.tasks.steps = 15
    config.tasks.test = "rosenbrock"
    config.test.steps = 25
    config.test.comparisons = "adam"
    config.test.top_k = 1
    config.test.seeds = 1
    config.test.lr_multipliers = (1.0,)
    result = run_lib.run(config, tmp_path, log=lambda _: None)
    best = symopt.load(tmp_path / "best.json")
    assert (best.total_steps, best.test_total_steps) == (15, 25)
    assert result.best_graph.total_steps == 15
    assert run_lib.found_total_steps(config) == 15
    assert run_lib.found_total_steps(config.to_dict()) == 15  # an archive's stored config
