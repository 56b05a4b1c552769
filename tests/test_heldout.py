"""The held-out report: the learning-rate sweep, ratios between optimizers and
the tables of summary.md."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from symopt import comparisons, evaluate, fitness, heldout, measure, tasks, zoo

from helpers import backend_compiles


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


def test_ratio_to_best_takes_the_best_comparison_on_each_task():
    results = RESULTS + [_result("lion", "a", found=1.0, tuned=0.2),
                         _result("lion", "b", found=1.0, tuned=2.0)]
    # best per task: lion 0.2 on a, adam 1.0 on b -> sqrt(0.2/0.4 * 1/1).
    assert heldout.ratio_to_best(results, "best", ["adam", "lion"], a_tuned=True) == (
        pytest.approx(0.5**0.5))
    assert heldout.ratio_to_best(results, "best", ["adam"], a_tuned=True) == pytest.approx(
        heldout.ratio(results, "best", "adam", a_tuned=True))
    assert "the best of them on each task" in "\n".join(
        heldout.ratio_lines(results, "best", ["adam", "lion"]))


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


def test_tables_and_log_lines_show_a_task_by_its_label_not_its_name(monkeypatch):
    labels = {"a": "cancer", "b": "wine"}  # module:function names -> their factories' names
    lines = heldout.table(RESULTS, ["best", "adam"], task_labels=labels)
    assert lines[0] == "| optimizer | cancer | wine |"
    at_edge = [dataclasses.replace(RESULTS[0], multipliers=(0.5, 1.0), edge=True)]
    assert "best on cancer x3" in heldout.edge_line(at_edge, task_labels=labels)
    monkeypatch.setattr(heldout, "evaluate_task", lambda *args, **kwargs: [])
    task = types.SimpleNamespace(name="mymod:make_task", label="cancer", steps=5, seeds=1)
    logged: list[str] = []
    heldout.evaluate_all({"best": zoo.get("adam")}, [], [task], (1.0,), log=logged.append)
    assert logged == ["test: 1 optimizers x 1 learning rates on cancer (5 steps, 1 seeds)"]


def test_results_round_trip_through_the_archives_json():
    assert [heldout.Result.from_dict(r.to_dict()) for r in RESULTS] == RESULTS


def test_the_comparisons_and_their_schedules():
    assert heldout.COMPARISONS.names() == ["adam", "adamw_cosine", "lion", "terms_ga", "muon",
                                           "schedule_free_adamw"]
    built = {name: make(400) for name, make in heldout.COMPARISONS.items()}
    for name in ("adamw_cosine", "lion"):  # warmup over 5% of the steps, then cosine
        schedule = built[name].schedule
        assert (schedule.kind, schedule.warmup_steps, schedule.alpha) == ("cosine", 20, 0.0)
    assert built["adam"] == zoo.adam()  # constant: the normaliser
    assert built["terms_ga"] == zoo.terms_ga()  # its published schedule
    # Lion's rate 10x smaller than AdamW's and its weight decay 10x larger: lr * wd the same.
    lion, adamw = built["lion"].hparams, built["adamw_cosine"].hparams
    assert lion.learning_rate * 10 == adamw.learning_rate
    assert lion.weight_decay == 10 * adamw.weight_decay
    assert built["lion"].replace(schedule=zoo.lion().schedule) == zoo.lion()
    for name in ("muon", "schedule_free_adamw"):
        assert isinstance(built[name], comparisons.OptaxOptimizer)
        assert built[name].make is heldout.COMPARISONS[name](400).make  # one compile per task
    assert built["muon"].eval_params is None
    assert built["schedule_free_adamw"].eval_params is optax.contrib.schedule_free_eval_params


def _updates(tx: optax.GradientTransformation, steps: int) -> list[dict]:
    """``tx``'s updates of a matrix and a vector over ``steps`` steps of fixed gradients."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda x: jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) - 2.0,
                         params)

    def step(state, _):
        updates, state = tx.update(grads, state, params)
        return state, updates

    stacked = jax.jit(lambda: jax.lax.scan(step, tx.init(params), length=steps)[1])()
    return [jax.tree.map(lambda x, t=t: x[t], stacked) for t in range(steps)]


def test_muon_is_optax_muon_with_warmup_and_cosine_decay():
    steps, lr = 40, 0.02  # warmup 2 steps: multipliers 1/2, 1, then the cosine
    ours = _updates(comparisons.muon(steps).make(lr), steps)
    plain = _updates(optax.contrib.muon(lr), steps)  # its updates are linear in the rate
    multipliers = [0.5, 1.0] + [0.5 * (1 + np.cos(np.pi * (t - 2) / 38)) for t in range(2, steps)]
    for t in (0, 1, 20, 39):
        jax.tree.map(lambda a, b, t=t: np.testing.assert_allclose(
            a, multipliers[t] * b, rtol=1e-5, atol=1e-9), ours[t], plain[t])


@pytest.mark.slow
def test_muon_through_optax_trains_as_the_zoos_muon_graph_with_the_same_schedule():
    task = tasks.get("logistic", steps=12, seeds=1)  # a matrix and a bias
    graph = zoo.muon().replace(schedule=comparisons.warmup_cosine(task.steps))
    s = measure.sweep([graph, comparisons.muon(task.steps)], task, (1.0, 3.0), metric="loss")
    np.testing.assert_allclose(s.learning_rates[0], s.learning_rates[1])
    np.testing.assert_allclose(s.curves[1], s.curves[0], rtol=2e-4)
    np.testing.assert_allclose(s.test[1], s.test[0], rtol=2e-4)


def test_schedule_free_adamw_warms_up_then_holds_its_rate_with_adamws_decay():
    steps, lr = 40, 1e-2
    ours = _updates(comparisons.schedule_free_adamw(steps).make(lr), 5)
    theirs = _updates(optax.contrib.schedule_free_adamw(
        lr, warmup_steps=2, b1=0.9, weight_decay=zoo.adamw().hparams.weight_decay), 5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, theirs)


def _optax_adam(learning_rate):
    return optax.adam(learning_rate)


# slow: two sweeps; by default an optax optimizer is swept with graphs at the same
# multipliers and extended past an edge as a graph is
# (test_an_optax_optimizer_is_extended_past_an_edge_as_a_graph_is).
@pytest.mark.slow
def test_a_sweep_keeps_optax_optimizers_in_their_place_at_the_same_multipliers():
    task = tasks.get("quadratic", steps=10, seeds=2)
    multipliers = (0.5, 1.0, 2.0)
    native = comparisons.OptaxOptimizer(_optax_adam, 1e-2)
    s = measure.sweep([zoo.adam(learning_rate=1e-2), native, zoo.sgd()], task, multipliers,
                      metric="loss", extend=0)
    np.testing.assert_allclose(s.learning_rates, [[5e-3, 1e-2, 2e-2]] * 2 + [[5e-3, 1e-2, 2e-2]])
    assert s.test.shape == (3, 3, 2) and s.curves.shape[:3] == (3, 3, 2)
    np.testing.assert_allclose(s.test[1], s.test[0], rtol=1e-4)  # zoo.adam is optax.adam
    assert not np.allclose(s.test[2], s.test[0], rtol=1e-2)
    alone = measure.sweep([native], task, multipliers, metric="loss", extend=0)
    np.testing.assert_allclose(alone.test[0], s.test[1], rtol=1e-6)


def test_an_optax_optimizer_is_measured_at_its_eval_params():
    task = tasks.get("quadratic", steps=10, seeds=2)
    rates = (jnp.asarray([1e-2, 1e-1]),)

    def at_zero(state, params):
        assert jax.tree.leaves(params)[0].ndim == 1  # one run's params
        return jax.tree.map(jnp.zeros_like, params)

    trained = evaluate.evaluate_baseline(_optax_adam, rates, task)
    zero = evaluate.evaluate_baseline(_optax_adam, rates, task, eval_params=at_zero)
    params, model_state = task.init(jax.random.key(0))
    loss_at_zero = task.eval_metrics(jax.tree.map(jnp.zeros_like, params), model_state,
                                     task.data(), "val")["loss"]
    np.testing.assert_allclose(zero.val_loss, np.full((2, 2), loss_at_zero), rtol=1e-6)
    np.testing.assert_allclose(zero.train_loss, trained.train_loss)  # training is the same
    assert not np.allclose(trained.val_loss, zero.val_loss)


def test_a_sweep_is_graph_major_rows_of_one_program_each_picking_its_val_best(monkeypatch):
    task = tasks.get("quadratic", steps=10, seeds=2)
    graphs = [zoo.adam(), zoo.sgd()]
    multipliers = (0.5, 1.0, 2.0)
    shape = measure.shape_for(graphs)
    trained = _recording(monkeypatch)
    forward = measure.sweep(graphs, task, multipliers, metric="loss", shape=shape, extend=0)
    backward = measure.sweep(graphs[::-1], task, multipliers[::-1], metric="loss",
                             shape=shape, extend=0)
    assert trained == [(6, 6), (6, 6)]  # every rate of every graph in one program
    np.testing.assert_allclose(backward.test[::-1, ::-1], forward.test, rtol=1e-5)
    np.testing.assert_allclose(forward.learning_rates, [
        [g.hparams.learning_rate * m for m in multipliers] for g in graphs])
    assert forward.test.shape == (2, 3, 2) and forward.curves.shape[:3] == (2, 3, 2)
    assert forward.chosen.tolist() == [int(np.argmin(v)) for v in forward.val]
    fitter = measure.sweep(graphs, task, multipliers, metric="accuracy", shape=shape, extend=0)
    assert fitter.chosen.tolist() == [int(np.argmax(v)) for v in fitter.val]

    extended = measure.sweep(graphs, task, multipliers, metric="loss", shape=shape)
    results = heldout.evaluate_task(dict(zip(["adam", "sgd"], graphs, strict=True)), task,
                                    multipliers, shape=shape)
    for i, r in enumerate(results):
        tuned = int(extended.chosen[i])
        assert r.found == pytest.approx(forward.test[i, 1].tolist(), rel=1e-5)
        assert r.tuned == pytest.approx(extended.test[i, tuned].tolist(), rel=1e-5)
        assert r.tuned_learning_rate == pytest.approx(extended.learning_rates[i, tuned])
        assert r.learning_rate == graphs[i].hparams.learning_rate
        assert r.multipliers == extended.tuned_over(i) and r.edge == extended.edge[i]


def test_the_as_found_rate_must_be_swept():
    with pytest.raises(ValueError, match="must include 1.0"):
        heldout.evaluate_task({"adam": zoo.adam()}, None, (0.5, 2.0))


# --------------------------------------------------------------------------
# Past the edges. SGD on this quadratic trains better the larger its rate up to
# 1.28 and diverges at 2.56: from 0.16 at (0.5, 1, 2) its best (2x) is at the
# top edge, and steps of 2x find 8x (1.28) inside, next to the divergent 16x.
# SGD from 1.28 has its best inside the grid at once.

EDGE_TASK = dict(steps=11, seeds=1)  # a task no other test compiles
GRID = (0.5, 1.0, 2.0)


def _edge_pair():
    return [zoo.sgd(learning_rate=0.16), zoo.sgd(learning_rate=1.28)]


def _recording(monkeypatch) -> list[tuple[int, int]]:
    trained = []
    train = evaluate.evaluate_graphs

    def recorded(runs, *args, **kwargs):
        trained.append((len(runs), kwargs["chunk_size"]))
        return train(runs, *args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_graphs", recorded)
    return trained


def test_a_sweep_whose_best_is_at_the_top_edge_is_extended_until_it_is_not(monkeypatch):
    task = tasks.get("quadratic", **EDGE_TASK)
    trained = _recording(monkeypatch)
    s = measure.sweep(_edge_pair(), task, GRID, metric="loss")
    assert s.tuned_over(0) == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    assert s.multipliers[s.chosen[0]] == 8.0 and s.diverged[0, s.multipliers.index(16.0)].all()
    assert not s.edge[0], "a pick next to a divergent rate is inside"
    assert s.tuned_over(1) == GRID and s.multipliers[s.chosen[1]] == 1.0 and not s.edge[1]
    assert s.extensions == 3
    # The base grid in one program, then one program a round for the one graph
    # at an edge, padded to one row per graph: every round the same program.
    assert trained == [(6, 6), (1, 2), (1, 2), (1, 2)]
    np.testing.assert_allclose(s.learning_rates[0], [0.16 * m for m in s.multipliers])
    assert np.isnan(s.val[1, 3:]).all() and not s.was_tried[1, 3:].any()


# slow: a compile count; by default every extension round trains the same program
# (test_a_sweep_whose_best_is_at_the_top_edge_is_extended_until_it_is_not checks the
# rounds' rows).
@pytest.mark.slow
def test_the_extension_rounds_share_one_compile():
    task = tasks.get("quadratic", steps=12, seeds=1)  # a task no other test compiles
    measure.sweep(_edge_pair(), task, GRID, metric="loss", extend=1)
    before = backend_compiles()
    s = measure.sweep(_edge_pair(), task, GRID, metric="loss")  # rounds 2 and 3 are new
    assert s.extensions >= 2
    assert backend_compiles() == before


def test_the_cap_on_extensions_is_respected_and_sets_the_edge_flag():
    task = tasks.get("quadratic", **EDGE_TASK)
    s = measure.sweep(_edge_pair(), task, GRID, metric="loss", extend=1)
    assert s.extensions == 1 and s.tuned_over(0) == (0.5, 1.0, 2.0, 4.0)
    assert s.multipliers[s.chosen[0]] == 4.0 and s.edge.tolist() == [True, False]
    plain = measure.sweep(_edge_pair(), task, GRID, metric="loss", extend=0)
    assert plain.multipliers == GRID and plain.edge.tolist() == [True, False]
    assert plain.edge_side.tolist() == [1, 0]


def test_a_grid_of_one_rate_is_never_extended():
    task = tasks.get("quadratic", **EDGE_TASK)
    s = measure.sweep(_edge_pair(), task, (1.0,), metric="loss")
    assert s.multipliers == (1.0,) and s.extensions == 0 and not s.edge.any()
    assert measure.extension_ratios((1.0,)) is None
    assert measure.extension_ratios((0.1, 0.3, 1.0, 30.0)) == pytest.approx((3.0, 30.0))
    assert measure.extension_ratios((0.9, 1.0)) == (measure.MIN_EXTENSION_RATIO,) * 2


def test_an_optax_optimizer_is_extended_past_an_edge_as_a_graph_is():
    task = tasks.get("quadratic", **EDGE_TASK)
    native = comparisons.OptaxOptimizer(_optax_sgd, 0.16)
    s = measure.sweep([native, *_edge_pair()], task, GRID, metric="loss")
    assert s.tuned_over(0) == s.tuned_over(1) == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    np.testing.assert_allclose(s.val[0], s.val[1], rtol=1e-4)


def _optax_sgd(learning_rate):
    return optax.sgd(learning_rate)


def test_the_test_results_carry_the_multipliers_tuned_over_and_the_edge_flag():
    task = tasks.get("quadratic", **EDGE_TASK)
    results = heldout.evaluate_task({"slow": _edge_pair()[0], "fast": _edge_pair()[1]}, task,
                                    GRID)
    slow, fast = results
    assert slow.multipliers == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0) and not slow.edge
    assert slow.tuned_learning_rate == pytest.approx(1.28) and slow.learning_rate == 0.16
    assert fast.multipliers == GRID and not fast.edge
    capped = dataclasses.replace(slow, multipliers=GRID, tuned_learning_rate=0.32, edge=True)
    assert heldout.Result.from_dict(capped.to_dict()) == capped
    lines = heldout.table([capped, fast], ["slow", "fast"])
    assert lines[2].endswith(f" {heldout.EDGE_MARK} |") and heldout.EDGE_MARK not in lines[3]
    line = heldout.edge_line([capped, fast])
    assert line.startswith(heldout.EDGE_MARK)
    assert "slow on quadratic x2 (largest of x0.5-x2)" in line
    assert heldout.edge_line([fast]) == ""


def test_results_stored_before_the_edge_flag_still_load():
    stored = {k: v for k, v in RESULTS[0].to_dict().items() if k not in ("edge", "multipliers")}
    loaded = heldout.Result.from_dict(stored)
    assert loaded == RESULTS[0] and loaded.edge is False and loaded.multipliers == ()
    assert heldout.edge_line([loaded]) == ""


def test_the_reference_is_extended_past_the_top_of_its_grid():
    task = tasks.get("quadratic", **EDGE_TASK)
    best = measure.tune_reference(task, [1e-3, 1e-2], "val", "loss")
    assert best.learning_rates[:2] == (1e-3, 1e-2) and len(best.learning_rates) > 2
    assert best.learning_rate not in (min(best.learning_rates), max(best.learning_rates))
    assert not best.edge
    capped = measure.tune_reference(task, [1e-3, 1e-2], "val", "loss", extend=1)
    assert capped.learning_rates == pytest.approx((1e-3, 1e-2, 1e-1))
    assert capped.learning_rate == pytest.approx(1e-1) and capped.edge
    fixed = measure.tune_reference(task, [1e-3, 1e-2], "val", "loss", extend=0)
    assert fixed.learning_rate == 1e-2 and fixed.edge and fixed.value > best.value
