"""The generalization protocol: task roles, tuned baselines, learning-rate multipliers,
the validation funnel and the held-out test report."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import symopt
from symopt import build, heldout, measure, tasks, zoo
from symopt import config as config_lib
from symopt import records as records_lib
from symopt import run as run_lib
from symopt.archive import Archive

from helpers import backend_compiles, tiny_config


def protocol_config(test: str = "quadratic"):
    config = tiny_config()
    config.search.generations = 2  # 16 candidates: the funnel's top 3 and 2 are among them
    config.elimination.tasks = "logistic"
    config.elimination.top_k = 3
    config.elimination.steps = 20
    config.elimination.seeds = 1
    config.tasks.test = test
    config.test.steps = 20
    config.test.seeds = 2
    config.test.top_k = 2
    config.test.lr_multipliers = (0.3, 1.0, 3.0)
    return config


# The tests of this one protocol run (a search, elimination and a test stage against
# every comparison: about a minute on 2 quiet cores) are under `pytest -m slow`. By
# default each stage runs elsewhere: a search end to end (tests/test_run.py), a search's
# elimination (tests/test_progress.py), a search's test stage and its lengths
# (tests/test_attacks_length.py) and the comparisons' sweeps (tests/test_heldout.py,
# tests/test_comparison_cache.py); the multipliers and duplicates below.
@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("protocol")
    lines: list[str] = []
    result = run_lib.run(protocol_config(), workdir, log=lines.append)
    return result, lines


@pytest.mark.slow  # the protocol run, above
def test_the_summary_reports_validation_test_tables_ratios_and_hall_of_fame(protocol):
    result, _ = protocol
    summary = open(os.path.join(result.workdir, "summary.md")).read()
    for heading in ("## Validation", "## Test tasks", "## Hall of fame"):
        assert heading in summary
    for name in ("best", *heldout.COMPARISONS):
        assert f"| {name} | " in summary
    tested = summary[summary.index("## Test tasks"):summary.index("## Hall of fame")]
    for name in ("muon", "schedule_free_adamw"):  # optax's own: a test-table row and a ratio row
        rows = [line for line in tested.splitlines() if line.startswith(f"| {name} | ")]
        assert len(rows) == 2 and " ± " in rows[0] and float(rows[1].split("|")[2]) > 0
    assert "Not in the stored test results" not in summary
    assert "lr-tuned (multipliers 0.3, 1, 3 of the optimizer's own rate" in summary
    assert "| winner vs (lr-tuned) | as found | lr-tuned |" in summary
    assert " ± " in summary
    with Archive.open(result.workdir) as archive:
        stored = archive.get_meta("test_results")
        fame = archive.get_meta("hall_of_fame")
    assert stored["winner"] == result.best.id
    assert {r["optimizer"] for r in stored["results"]} >= {"best", *heldout.COMPARISONS}
    assert fame and [h["complexity"] for h in fame] == sorted(h["complexity"] for h in fame)


# Each case runs the protocol again: without test tasks and with other test tasks,
# both under `pytest -m slow` with the protocol run, above.
@pytest.mark.slow
@pytest.mark.parametrize("test", ["", "rosenbrock"],
                         ids=["none", "rosenbrock"])
def test_the_winner_is_chosen_before_and_without_the_test_tasks(protocol, test, tmp_path):
    result, lines = protocol
    winner_line = next(i for i, line in enumerate(lines) if line.startswith("elimination: winner"))
    assert all(not line.startswith("test:") for line in lines[:winner_line])
    other = run_lib.run(protocol_config(test=test), tmp_path / (test or "none"),
                        log=lambda _: None)
    assert other.best.id == result.best.id
    assert other.best_graph == result.best_graph


@pytest.mark.slow  # the protocol run, above
def test_the_tuned_reference_and_test_results_are_stored_and_reused_on_resume(
        protocol, monkeypatch):
    result, _ = protocol
    with Archive.open(result.workdir) as archive:
        baseline = archive.get_meta("baseline")
        rates = archive.get_meta("baseline_learning_rates")
        tried = archive.get_meta("baseline_tried")
    assert set(baseline) == set(rates) == {"digits_mlp"}
    # The grid 0.3-3e-3, extended past an edge while the best is at it.
    assert rates["digits_mlp"] in tried["digits_mlp"]["learning_rates"]
    np.testing.assert_allclose(sorted(tried["digits_mlp"]["learning_rates"])[:3],
                               [3e-4, 1e-3, 3e-3])

    def untrainable(*args, **kwargs):
        raise AssertionError("trained again on resume")

    monkeypatch.setattr(measure, "tune_reference", untrainable)
    monkeypatch.setattr(heldout, "evaluate_all", untrainable)
    resumed = run_lib.run(protocol_config(), result.workdir, log=lambda _: None)
    assert resumed.evaluated_now == 0
    assert resumed.best_graph == result.best_graph


@pytest.mark.slow  # the protocol run, above
def test_an_archive_stored_before_a_comparison_was_added_resumes_and_says_what_it_lacks(
        protocol, tmp_path, monkeypatch):
    result, _ = protocol
    workdir = tmp_path / "older"
    shutil.copytree(result.workdir, workdir)
    new = ("muon", "schedule_free_adamw")
    with Archive.open(workdir) as archive:  # as the code before them stored it
        stored = archive.config()
        stored["test"]["comparisons"] = "adam,adamw_cosine,lion,terms_ga"
        archive.set_config(stored, replace=True)
        test_results = archive.get_meta("test_results")
        test_results["results"] = [{k: v for k, v in r.items() if k != "multipliers"}
                                   for r in test_results["results"] if r["optimizer"] not in new]
        archive.put_meta("test_results", test_results)

    def untrainable(*args, **kwargs):
        raise AssertionError("trained again on resume")

    monkeypatch.setattr(heldout, "evaluate_all", untrainable)
    resumed = run_lib.run(protocol_config(), workdir, log=lambda _: None)
    assert resumed.evaluated_now == 0 and resumed.best.id == result.best.id
    summary = open(os.path.join(workdir, "summary.md")).read()
    assert "| muon | " not in summary and "| lion | " in summary
    assert ("Not in the stored test results (they ran before `test.comparisons` named them): "
            "muon, schedule_free_adamw.") in summary
    assert "lr-tuned (multipliers an earlier version did not record of" in summary


@pytest.mark.slow  # the protocol run, above
def test_the_best_multiplier_is_written_back_into_genome_and_graph(protocol):
    result, _ = protocol
    space = symopt.spaces.get("nos", max_nodes=4)
    with Archive.open(result.workdir) as archive:
        records = archive.records(status=("evaluated", "diverged"))
    assert {records_lib.multiplier(r) for r in records} <= {0.5, 1.0, 2.0}
    for r in records:
        genome = space.from_json(r.genome)
        assert space.to_graph(genome).hparams.learning_rate == pytest.approx(
            r.graph["hparams"]["learning_rate"])
    assert result.best_graph == symopt.graph.from_dict(result.best.graph)  # as archived
    assert symopt.load(os.path.join(result.workdir, "best.json")) == result.best_graph


def _measure(graphs, task_list, reference, shape, config):
    """The search's measurement of ``graphs``, two candidates per compiled program."""
    ev = config.evaluation
    trainer = build.trainer(config).with_chunk(2 * len(ev.lr_multipliers))
    return measure.measure_candidates(
        graphs, task_list, reference, multipliers=ev.lr_multipliers, metric=ev.metric,
        split=ev.split, lr_aggregate=ev.lr_aggregate, trainer=trainer, shape=shape)


def test_the_multipliers_are_rows_of_one_compiled_program():
    config = tiny_config()
    task = tasks.get("quadratic", steps=13, seeds=1)  # a task no other test compiles
    shape = symopt.spaces.get("nos", max_nodes=4).program_shape()
    _measure([zoo.sgd(), zoo.adam()], [task], {task.name: 1.0}, shape, config)
    before = backend_compiles()
    # Other graphs at other rates: rows of the program already compiled.
    config.evaluation.lr_multipliers = (0.25, 1.0, 4.0)
    measured = _measure([zoo.lion(), zoo.rmsprop()], [task], {task.name: 1.0}, shape, config)
    assert backend_compiles() == before
    per = measured.details[0]["learning_rate"]["fitness_per_multiplier"]
    assert len(per) == len(config.evaluation.lr_multipliers)
    assert len(set(per)) == len(per), "each multiplier trained its own rows"


def test_a_diverging_candidate_costs_one_score_never_the_run():
    config = tiny_config()
    task = tasks.get("digits_mlp", steps=20, seeds=1, hidden=8)
    shape = symopt.spaces.get("nos", max_nodes=4).program_shape()
    exploding = zoo.sgd(learning_rate=1e6)
    measured = _measure([zoo.adam(), exploding], [task], {task.name: 0.5}, shape, config)
    assert np.isfinite(measured.fitness).all()
    assert measured.diverged.tolist() == [False, True]
    worst = measured.details[1]["digits_mlp"]
    assert worst["diverged"] == 1 and measured.fitness[1] < measured.fitness[0]
    assert measured.fitness[1] == pytest.approx(0.5 / worst["value"])  # its clipped loss


@pytest.mark.parametrize(("change", "message"), [
    ({"tasks.search": "digits_mlp", "tasks.test": "digits_mlp"},
     "config.tasks.test: task 'digits_mlp' is already a search task"),
    ({"elimination.tasks": "logistic", "tasks.test": "logistic"},
     "config.tasks.test: task 'logistic' is already a validation task"),
    ({"elimination.tasks": "digits_mlp"},
     "config.elimination.tasks: task 'digits_mlp' is already a search task"),
])
def test_a_task_in_two_roles_is_a_one_line_config_error(change, message):
    config = tiny_config()
    for key, value in change.items():
        section, name = key.split(".")
        config[section][name] = value
    with pytest.raises(config_lib.ConfigError, match=message) as error:
        config_lib.validate(config)
    assert "\n" not in str(error.value)


def test_the_published_protocol_may_remeasure_its_search_tasks_when_it_says_so():
    config = tiny_config()
    config.elimination.tasks = "digits_mlp"
    config.elimination.on_search_tasks = True
    config_lib.validate(config)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("lr_multipliers", (0.5, 2.0), "must include 1.0"),
    ("lr_multipliers", (), "non-empty tuple"),
    ("reference_lr_multipliers", (0.0, 1.0), "numbers > 0"),
    ("lr_aggregate", "median", "'best' or 'mean'"),
    ("metric", "speed", "'loss' or 'accuracy'"),
])
def test_bad_evaluation_values_are_one_line_config_errors(key, value, message):
    config = tiny_config()
    config.evaluation[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


def test_a_duplicate_is_written_back_with_its_originals_rate_and_replays_on_resume(tmp_path):
    config = tiny_config()
    config.search.generations, config.search.seed = 8, 1  # one duplicate, of a 2x original
    first = run_lib.run(config, tmp_path, log=lambda _: None)
    with Archive.open(tmp_path) as archive:
        copy = archive.records(status="duplicate")[0]
        original = archive.get(copy.duplicate_of)
    multiplier = records_lib.multiplier(original)
    assert multiplier != 1.0, "the rate written back must differ for this test to bite"
    assert copy.graph["hparams"]["learning_rate"] == pytest.approx(
        original.graph["hparams"]["learning_rate"])
    resumed = run_lib.run(config, tmp_path, log=lambda _: None)  # replays every candidate
    assert resumed.evaluated_now == 0 and resumed.best.id == first.best.id
