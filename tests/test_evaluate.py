"""Training a population in one program: results, divergence, fitness, sharding."""

import contextlib
import functools
import io
import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import evaluate, fitness, tasks, zoo
from symopt.graph import Graph, Hyperparams, Schedule, nodes
from symopt.program import ProgramShape, encode

SHAPE = ProgramShape(max_nodes=8, max_operands=4, max_constants=4, max_states=1,
                                max_decay_nodes=2, max_schedule_nodes=2)
# Steps of 1e30 * 1e10: the weights overflow to inf at the first step.
DIVERGING = Graph(update=nodes(("mul", "identity", "c0", "identity", "sign_g")),
                  constants=(1e30,), hparams=Hyperparams(learning_rate=1e10))


@functools.cache
def _digits_results():
    task = tasks.get("digits_mlp")
    graphs = [zoo.adam(learning_rate=1e-2), DIVERGING, zoo.sgd(), zoo.signum()]
    return evaluate.evaluate(encode(graphs, SHAPE), task, seeds=2)


def test_metrics_have_one_row_per_candidate_and_one_column_per_seed():
    metrics = _digits_results()
    for field in metrics._fields:
        points = (len(evaluate.curve_steps(tasks.get("digits_mlp").steps)),) if (
            field == "loss_curve") else ()
        assert getattr(metrics, field).shape == (4, 2, *points), field


def test_adam_in_the_population_learns_digits():
    metrics = _digits_results()
    assert metrics.test_accuracy[0].min() >= 0.9
    assert not metrics.diverged[0].any()


def test_a_diverging_candidate_is_flagged_and_spoils_nothing():
    metrics = _digits_results()
    assert metrics.diverged[1].all()
    assert (metrics.diverged_step[1] >= 0).all()
    assert (metrics.diverged_step[[0, 2, 3]] == -1).all()
    assert np.isfinite(metrics.test_loss[1]).all()  # frozen before it broke
    assert fitness.accuracy_runs(metrics).mean(axis=1)[1] == fitness.DIVERGED_FITNESS


def test_population_matches_native_optax_adam_trained_the_same_way():
    task = tasks.get("digits_mlp")
    ours = _digits_results()
    native = evaluate.evaluate_baseline(optax.adam, (jnp.asarray([1e-2]),), task, seeds=2)
    np.testing.assert_allclose(ours.test_accuracy[0], native.test_accuracy[0], atol=1e-2)
    np.testing.assert_allclose(ours.train_loss[0], native.train_loss[0], rtol=1e-2)


def test_fitness_follows_the_published_formula():
    m = _digits_results()
    expected = m.val_accuracy + 0.05 * np.maximum(0.0, 1.0 - m.train_loss)
    fit = fitness.accuracy_runs(m)
    np.testing.assert_allclose(fit[0], expected[0], rtol=1e-6)
    test_fit = fitness.accuracy_runs(m, split="test")
    np.testing.assert_allclose(test_fit[0], m.test_accuracy[0] + 0.05 * np.maximum(
        0.0, 1.0 - m.train_loss[0]), rtol=1e-6)


def test_objective_tasks_score_orders_of_magnitude_of_loss_decrease():
    m = evaluate.RunMetrics(
        train_loss=np.array([[1e-3]]), initial_loss=np.array([[10.0]]),
        val_loss=np.array([[1e-3]]), val_accuracy=np.array([[np.nan]]),
        test_loss=np.array([[1e-3]]), test_accuracy=np.array([[np.nan]]),
        diverged=np.array([[False]]), diverged_step=np.array([[-1]]))
    np.testing.assert_allclose(fitness.accuracy_runs(m), [[0.4]])


def test_aggregate_is_normalised_by_the_reference():
    per_task = {"a": np.array([0.9, 0.45]), "b": np.array([0.5, 0.25])}
    np.testing.assert_allclose(fitness.aggregate(per_task, {"a": 0.9, "b": 0.5}), [1.0, 0.5])
    with pytest.raises(ValueError, match="reference"):
        fitness.aggregate(per_task, {"a": 0.9})


def test_candidates_share_initialisations_and_batches_per_seed():
    metrics = _digits_results()
    # The same seed gives every candidate the same initial weights and batch,
    # so the loss at the first step is equal across candidates.
    np.testing.assert_allclose(metrics.initial_loss[0], metrics.initial_loss[2], rtol=1e-6)
    assert metrics.initial_loss[0, 0] != metrics.initial_loss[0, 1]


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from symopt import evaluate, tasks, zoo
    from symopt.graph import Graph, Hyperparams, nodes
    from symopt.program import ProgramShape, encode
    shape = ProgramShape(max_nodes=8, max_operands=4, max_constants=4,
                         max_states=1, max_decay_nodes=2, max_schedule_nodes=2)
    task = tasks.get("quadratic", steps=50)
    graphs = [zoo.adam(learning_rate=0.1), zoo.sgd(), zoo.lion(learning_rate=0.01),
              zoo.signum(), zoo.terms_ga()]
    m = evaluate.evaluate(encode(graphs, shape), task, seeds=2)
    print(json.dumps({"devices": jax.local_device_count(),
                      "train_loss": m.train_loss.tolist(), "val_loss": m.val_loss.tolist()}))
""")


def _run_with_devices(count: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_in_this_process() -> dict:
    """The script in the test process, on its one CPU device (a process of its
    own, as for 4 devices, would cost another JAX start)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(SHARDED_SCRIPT, {"__name__": "sharded"})
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_sharding_over_four_devices_gives_the_metrics_of_one():
    """5 candidates over 4 forced CPU devices (padded to 8) equal 1 device."""
    one, four = _run_in_this_process(), _run_with_devices(4)
    assert (one["devices"], four["devices"]) == (1, 4)
    np.testing.assert_allclose(four["train_loss"], one["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(four["val_loss"], one["val_loss"], rtol=1e-5)


def test_the_program_shape_is_read_back_from_its_arrays():
    assert evaluate.shape_of(encode([zoo.adam()], SHAPE)) == SHAPE


def _scheduled_graphs() -> list[Graph]:
    """Graphs whose schedules and decays vary with the step, each kind of them."""
    decayed = zoo.rmsprop(learning_rate=0.05).replace(
        decays=(("rmsprop", nodes(("mul", "identity", "decay_cosine", "sqrt_abs", "t"))),))
    return [
        zoo.adam(learning_rate=0.05).replace(schedule=Schedule(kind="cosine", warmup_steps=5)),
        zoo.sgd(learning_rate=0.1).replace(schedule=Schedule(kind="piecewise",
                                                            values=(1.0, 0.3, 0.1))),
        zoo.signum(learning_rate=0.02).replace(schedule=Schedule(
            kind="graph", expr=nodes(("mul", "identity", "decay_linear", "exp", "t")))),
        decayed,
        zoo.terms_ga(),
    ]


# slow: a training per graph; by default the host's step tables equal those made in the
# graph (tests/test_population.py::test_step_tables_made_on_the_host_equal_those_made_in_the_graph)
# and the engine steps step-dependent graphs as to_optax does
# (tests/test_population.py::test_population_agrees_with_to_optax_past_total_steps).
@pytest.mark.slow
def test_evaluate_with_host_tabulated_schedules_matches_each_graphs_to_optax():
    """evaluate looks the schedules and decays up in NumPy-made tables;
    to_optax computes them in the step: the same training either way."""
    task = tasks.get("quadratic", steps=30, seeds=1)
    graphs = _scheduled_graphs()
    ours = evaluate.evaluate(encode(graphs, SHAPE), task)
    for i, graph in enumerate(graphs):
        def make_tx(learning_rate, graph=graph):
            return symopt.to_optax(graph, learning_rate, total_steps=task.steps)

        lr = jnp.asarray([graph.hparams.learning_rate])
        native = evaluate.evaluate_baseline(make_tx, (lr,), task)
        np.testing.assert_allclose(ours.train_loss[i], native.train_loss[0], rtol=1e-4,
                                   err_msg=str(i))
        np.testing.assert_allclose(ours.test_loss[i], native.test_loss[0], rtol=1e-4,
                                   err_msg=str(i))


# Both under `pytest -m slow` (two trainings each): by default vmap's updates agree
# with to_optax (tests/test_population.py) and it trains a transfer
# (tests/test_transfer.py), and the fused kernel's updates are checked on a small shape
# (tests/test_fused.py::test_a_shape_without_states_or_constants_steps_writing_every_block).
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["vmap", "fused"])
def test_the_flat_trainer_trains_alike_in_every_strategy_on_a_model_of_several_leaves(strategy):
    """The weights stay flat through training (padded to whole blocks in the
    fused strategy, whose padding no model reads): every strategy trains the
    same runs as the loop strategy (which the test above checks against
    to_optax), clipped graphs included."""
    task = tasks.get("logistic", steps=12, seeds=1)
    graphs = [zoo.adam(learning_rate=0.05), zoo.lion(learning_rate=0.01), zoo.signum(),
              zoo.adam(learning_rate=0.1).with_hparams(clip_norm=0.05, clip_value=0.02)]
    program = encode(graphs, SHAPE)
    ours = evaluate.evaluate(program, task, strategy=strategy)
    loop = evaluate.evaluate(program, task, strategy="loop")
    assert not loop.diverged.any()
    for field in ("train_loss", "test_loss", "loss_curve", "diverged"):
        np.testing.assert_allclose(getattr(ours, field), getattr(loop, field), rtol=2e-5,
                                   err_msg=field)
