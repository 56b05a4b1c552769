"""The population engine agrees with to_optax, graph by graph.

Compared in float64 (``jax.enable_x64``): the random graphs include chaotic
ones (divisions by clipped values, exp of exp) that amplify float32 rounding
differences between two differently fused XLA programs; in float64 the two
agree to rtol 1e-5 over 20 steps, which is what is being specified.
"""

import dataclasses
import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import measure, population, tables, zoo
from symopt import program as program_lib
from symopt.graph import Graph, GraphError, Schedule, nodes
from symopt.program import ProgramShape, encode
from symopt.spaces import nos

from helpers import (
    PIECEWISE,
    SHAPE,
    STEPS,
    check_agreement,
    gradients,
    params_like,
    population_updates,
    reference_updates,
    step_dependent_graphs,
)

NUM_RANDOM = 200


def host_tables(program, total_steps):
    """The step tables made on the host, as evaluate makes them: an optimizer made
    outside jit otherwise tabulates them in the graph op by op (seconds each)."""
    return jax.tree.map(jnp.asarray, tables.step_tables(program, total_steps))


@functools.cache
def _graphs():
    rng = np.random.default_rng(7)
    return [zoo.get(n) for n in zoo.names()] + [nos.sample(rng) for _ in range(NUM_RANDOM)]


# Each reference compiles its own program (~1 s on 2 cores): the default run checks
# five of the zoo and a random graph with vmap; `pytest -m slow` the whole zoo and a
# sample of 5 with each strategy, and all 200 random graphs (the loop strategy agrees
# by default on the step-dependent graphs, below, and steps every search).
FEW = ("adam", "lion", "nesterov", "signum", "terms_ga")


@pytest.mark.parametrize("strategy, which", [
    ("vmap", "few"), pytest.param("vmap", "zoo", marks=pytest.mark.slow),
    pytest.param("loop", "zoo", marks=pytest.mark.slow)])
def test_population_agrees_with_to_optax_on_the_zoo_and_random_graphs(strategy, which):
    sample = _graphs()[len(zoo.names()) + (strategy == "vmap") :: 40]
    names = FEW if which == "few" else zoo.names()
    check_agreement([zoo.get(n) for n in names] + sample[:1 if which == "few" else None],
                    strategy)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_population_agrees_with_to_optax_on_the_zoo_and_200_random_graphs(strategy):
    check_agreement(_graphs(), strategy)


# Under `pytest -m slow`: by default the same graphs (helpers.PIECEWISE and
# terms_ga, among step_dependent_graphs) are checked before and past T by
# test_population_agrees_with_to_optax_past_total_steps.
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_piecewise_schedules_agree_with_to_optax(strategy):
    check_agreement([*PIECEWISE, zoo.terms_ga()], strategy)


# vmap under `pytest -m slow`: by default it agrees on the zoo, above.
@pytest.mark.parametrize("strategy", ["loop", pytest.param("vmap", marks=pytest.mark.slow)])
def test_population_agrees_with_to_optax_past_total_steps(strategy):
    """T = 6 for 20 steps: the schedule and decays hold at t = T - 1, t/T goes on."""
    check_agreement(step_dependent_graphs(), strategy, total_steps=6)


def test_the_schedule_and_decays_hold_their_last_value_past_total_steps():
    graph = step_dependent_graphs()[0]  # SGD with g decayed by t/T
    tx = symopt.to_optax(graph.with_hparams(learning_rate=1.0), total_steps=4)
    params = {"w": jnp.zeros(())}
    state, seen = tx.init(params), []
    for _ in range(8):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
        seen.append(float(-updates["w"]))
    np.testing.assert_allclose(seen, [0.0, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75])


def test_encode_names_a_piecewise_schedule_that_does_not_fit():
    small = ProgramShape(max_schedule_values=2)
    with pytest.raises(GraphError, match=r"graphs\[0\]\.schedule\.values"):
        encode([PIECEWISE[0]], small)


# Both under `pytest -m slow` (each reference compiles its own program): by default
# the engine agrees with to_optax in float64 (above); float32 adds only its rounding.
@pytest.mark.slow
@pytest.mark.parametrize("names", [("adam", "lion", "ades", "terms_ga"), tuple(zoo.names())],
                         ids=["four", "zoo"])
def test_zoo_agrees_with_to_optax_in_float32(names):
    graphs = [zoo.get(n) for n in names]
    ours = population_updates(graphs, "loop", jnp.float32)
    for i, graph in enumerate(graphs):
        reference = reference_updates(graph, jnp.float32)
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(ours), strict=True):
            np.testing.assert_allclose(b[:, i], a, rtol=1e-5, atol=1e-7, err_msg=names[i])


def test_encode_pads_to_the_shape_and_keeps_the_population_axis():
    graphs = _graphs()[:10]
    program = encode(graphs, SHAPE)
    assert program.size == 10
    assert program.update.op.shape == (10, SHAPE.max_nodes)
    assert program.decays.op.shape == (10, SHAPE.max_operands, SHAPE.max_decay_nodes)
    assert program.constants.shape == (10, SHAPE.max_constants)
    assert all(leaf.shape[0] == 10 for leaf in jax.tree.leaves(program))


def test_encode_drops_dead_nodes():
    graph = Graph(update=nodes(("add", "exp", "g", "identity", "m"),
                               ("mul", "identity", "g", "identity", "v"), root="n1"))
    program = encode([graph], SHAPE)
    assert int(program.update.length[0]) == 1


def test_encode_names_the_graph_and_field_that_do_not_fit():
    chain = [("add", "identity", "g" if i == 0 else f"n{i - 1}", "identity", "m")
             for i in range(SHAPE.max_nodes + 1)]
    big = Graph(update=nodes(*chain))
    with pytest.raises(GraphError, match=r"graphs\[1\]\.update\.nodes"):
        encode([zoo.adam(), big], SHAPE)


def test_runs_per_candidate_share_the_candidate_and_differ_in_noise_seed():
    graph = Graph(update=nodes(("add", "identity", "g", "identity", "noise")))
    program = encode([graph, zoo.sgd()], SHAPE)
    params = {"w": jnp.zeros((4, 3))}

    @jax.jit  # one compile: op by op, the optimizer's step tables and step take long
    def step(program):
        tx = population.optimizer(program, SHAPE, 10, runs_per_candidate=2, seeds=[0, 1, 0, 1])
        return tx.update({"w": jnp.ones((4, 3))}, tx.init(params), params)[0]

    u = np.asarray(step(program)["w"])
    assert not np.allclose(u[0], u[1])  # candidate 0, two noise seeds
    np.testing.assert_allclose(u[2], u[3])  # sgd: no noise, same update
    np.testing.assert_allclose(u[2], -zoo.sgd().hparams.learning_rate * np.ones(3))


def _seeded_updates(graphs, runs_per_candidate):
    """Updates of R = len(graphs) * runs_per_candidate runs, each run with its
    own gradients (scaled by its index) and noise seed, in float64."""
    program = encode(graphs, SHAPE, dtype=jnp.float64)
    runs = len(graphs) * runs_per_candidate
    params = params_like(jnp.float64)
    scale = jnp.arange(1, runs + 1, dtype=jnp.float64)
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *x.shape)), params)
    grads = jax.tree.map(lambda *x: jnp.stack(x), *gradients(params))

    def run(program):  # the optimizer made under jit: its step tables are in the program
        tx = population.optimizer(program, SHAPE, STEPS, runs_per_candidate=runs_per_candidate,
                                  seeds=jnp.arange(runs) % 3, strategy="loop")

        def body(state, g):
            g = jax.tree.map(lambda x: scale.reshape(-1, *[1] * x.ndim) * x, g)
            updates, state = tx.update(g, state, batched)
            return state, updates

        return jax.lax.scan(body, tx.init(batched), grads)[1]

    return jax.jit(run)(program)


def test_loop_strategy_steps_the_runs_of_a_candidate_together_as_if_apart():
    graphs = [zoo.lion(), zoo.ades(), zoo.adam(),
              Graph(update=nodes(("add", "identity", "g", "drop_0.3", "noise")))]
    graphs += [g for g in _graphs()[len(zoo.names()):] if g.states][:2]
    with jax.enable_x64(True):
        together = _seeded_updates(graphs, runs_per_candidate=3)
        apart = _seeded_updates([g for g in graphs for _ in range(3)], runs_per_candidate=1)
    for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(apart), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# vmap under `pytest -m slow`: by default it steps its runs as to_optax does, above.
@pytest.mark.parametrize("strategy", ["loop", pytest.param("vmap", marks=pytest.mark.slow)])
def test_a_shape_without_states_or_constants_steps_several_runs_per_candidate(strategy):
    shape = ProgramShape(max_nodes=2, max_operands=2, max_constants=0,
                                    max_states=0, max_decay_nodes=1, max_schedule_nodes=1)
    program = encode([zoo.adam(), zoo.sgd()], shape)
    params = {"w": jnp.zeros((4, 3))}

    @jax.jit  # one compile, as above
    def step(program):
        tx = population.optimizer(program, shape, 10, runs_per_candidate=2, strategy=strategy)
        return tx.update({"w": jnp.ones((4, 3))}, tx.init(params), params)[0]

    np.testing.assert_allclose(step(program)["w"][2:], -zoo.sgd().hparams.learning_rate)


def test_unknown_strategy_is_a_clear_error():
    program = encode([zoo.adam()], SHAPE)
    with pytest.raises(ValueError, match="strategy"):
        population.optimizer(program, SHAPE, 10, strategy="threads")


def test_update_needsparams_like():
    program = encode([zoo.adam()], SHAPE)
    tx = population.optimizer(program, SHAPE, 10, scalars=host_tables(program, 10))
    params = {"w": jnp.zeros((1, 2))}
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


def test_a_flat_layout_refuses_a_tree_or_another_length_naming_the_shape_it_needs():
    program = encode([zoo.adam()], SHAPE)
    params = {"w": jnp.zeros((1, 2, 3)), "b": jnp.zeros((1, 3))}
    layout = population.weight_layout(jax.tree.map(lambda x: x[0], params))
    assert layout.length == 9 and layout.shapes == ((3,), (2, 3))  # jax.tree order: b, w
    tx = population.optimizer(program, SHAPE, 10, layout=layout, scalars=host_tables(program, 10))
    with pytest.raises(ValueError, match=r"params are one \[runs, 9\] array"):
        tx.init(params)
    flat = layout.flatten(params)
    state = tx.init(flat)
    with pytest.raises(ValueError, match=r"gradients are one \[runs, 9\] array"):
        tx.update(flat[:, :8], state, flat)
    updates, _ = jax.jit(tx.update)(flat, state, flat)
    chex.assert_trees_all_equal_shapes(layout.view(updates), params)


def test_a_new_generation_reuses_the_compiled_program():
    graphs = _graphs()
    params = {"w": jnp.zeros((8, 3))}

    @jax.jit
    def step(program):
        tx = population.optimizer(program, SHAPE, 10)
        return tx.update({"w": jnp.ones((8, 3))}, tx.init(params), params)[0]

    step(encode(graphs[:8], SHAPE))
    before = step._cache_size()
    step(encode(graphs[20:28], SHAPE))
    assert step._cache_size() == before


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_step_tables_made_on_the_host_equal_those_made_in_the_graph(dtype, rtol):
    # float32: NumPy's and XLA's cos differ in the last bits.
    with jax.enable_x64(dtype == "float64"):
        graphs = [*_graphs(), *PIECEWISE]
        shape = measure.shape_for(graphs, SHAPE)  # leaf_ops: the zoo has Muon
        program = encode(graphs, shape, dtype=jnp.dtype(dtype))
        host = tables.step_tables(program, STEPS)
        traced = jax.jit(lambda p: tables.step_tables(p, STEPS, xp=jnp))(program)
        chex.assert_trees_all_close(host, jax.tree.map(np.asarray, traced), rtol=rtol, atol=0)
        chex.assert_trees_all_equal_dtypes(host, traced)
    assert host.schedule.shape == (STEPS, program.size)
    assert host.decays.shape == (STEPS, program.size, shape.max_operands)


def test_past_total_steps_the_schedule_holds_its_last_value():
    graph = zoo.sgd().replace(schedule=Schedule(kind="piecewise", values=(1.0, 0.5)))
    program = encode([graph], SHAPE)
    params = {"w": jnp.ones((1, 2))}
    tx = population.optimizer(program, SHAPE, 4, scalars=host_tables(program, 4))
    state, update = tx.init(params), jax.jit(tx.update)
    lrs = []
    for _ in range(6):
        updates, state = update({"w": jnp.ones((1, 2))}, state, params)
        lrs.append(float(-updates["w"][0, 0]) / graph.hparams.learning_rate)
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.5, 0.5, 0.5, 0.5], rtol=1e-6)


def test_scalars_made_for_another_program_or_length_are_a_clear_error():
    program = encode([zoo.adam(), zoo.sgd()], SHAPE)
    with pytest.raises(ValueError, match=r"step_tables\(program, 10\)"):
        population.optimizer(program, SHAPE, 10, scalars=tables.step_tables(program, 5))


def test_the_encoding_imports_no_jax():
    """The search spaces import symopt.program; it must not pull in JAX (the
    package's __init__ does, so the module is loaded under a bare package)."""
    code = """
import importlib.util, sys, types
package = types.ModuleType("symopt")
package.__path__ = [sys.argv[1]]
sys.modules["symopt"] = package
import symopt.program
assert "jax" not in sys.modules, sorted(m for m in sys.modules if m.startswith("jax"))
"""
    directory = os.path.dirname(program_lib.__file__)
    subprocess.run([sys.executable, "-c", code, directory], check=True)


def test_the_encoded_hyperparameters_and_schedule_are_those_of_a_graph():
    assert program_lib.HparamArrays._fields == tuple(
        f.name for f in dataclasses.fields(symopt.Hyperparams))
    schedule_numbers = {f.name for f in dataclasses.fields(Schedule)} - {"kind", "expr", "values"}
    assert set(program_lib.ScheduleArrays._fields) == schedule_numbers | {"num_values"}
    program = encode([zoo.adam().with_hparams(eps=1e-6)], SHAPE)
    assert program.hparams.eps[0] == np.float32(1e-6)
    assert program.hparams.bias_correction[0] == 1.0


def test_the_loop_strategy_forms_no_power_of_g_outside_the_branches_that_read_it():
    """``g * g`` and ``g * g * g`` are made inside the moments' branches: as
    operands of the loop strategy's ``cond`` they would cost two passes over
    every run's weights each step, read or not."""
    program = encode([zoo.sgd(), zoo.adam()], SHAPE)
    params = {"w": jnp.zeros((2, 50)), "b": jnp.zeros((2, 5))}

    def step(program, params):
        tx = population.optimizer(program, SHAPE, 10, strategy="loop")
        return tx.update(params, tx.init(params), params)

    jaxpr = jax.make_jaxpr(step)(program, params).jaxpr
    powers = [e for e in jaxpr.eqns  # over the runs' flattened weights, [2, 55]
              if e.outvars[0].aval.shape == (2, 55)
              and e.primitive.name in ("mul", "integer_pow", "square")
              and (e.primitive.name != "mul" or e.invars[0] is e.invars[1])]
    assert any(e.primitive.name == "cond" for e in jaxpr.eqns)
    assert powers == []
