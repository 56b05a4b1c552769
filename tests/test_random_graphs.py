"""1,000 random graphs through validate -> check -> to_optax -> steps.

Every graph is stepped eagerly (op by op, as JAX runs outside jit); a sample
is also jit-compiled in the default run, and all 1,000 in the slow run
(``pytest -m slow``): compiling costs ~0.5 s a graph on 2 CPU cores.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import integrity
from symopt.spaces import nos

from helpers import graph_state

NUM_GRAPHS = 1000
STEPS = 3
PARAMS = {"kernel": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "bias": jnp.zeros(2),
          "scale": jnp.ones(())}


@functools.cache
def _graphs():
    rng = np.random.default_rng(2024)
    return [nos.sample(rng) for _ in range(NUM_GRAPHS)]


def _grads(params, k):
    return jax.tree.map(lambda x: jnp.sin(3.0 * x + k) + 0.1 * k, params)


def _run(tx, params, jit: bool):
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    for k in range(STEPS):
        updates, state = update(_grads(params, k), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("chunk", range(10))  # chunks spread over the xdist workers
def test_random_graphs_validate_check_compile_and_step_eagerly(chunk):
    reasons = {}
    for graph in _graphs()[chunk * 100 : (chunk + 1) * 100]:
        symopt.validate(graph)
        report = symopt.check(graph)
        reasons[report.reason] = reasons.get(report.reason, 0) + 1
        tx = symopt.to_optax(graph, total_steps=10)
        params, state = _run(tx, PARAMS, jit=False)
        assert int(graph_state(state).count) == STEPS
        for leaf in jax.tree.leaves(params):
            assert not np.any(np.isnan(leaf)), graph
    assert reasons.get("ok", 0) >= 10, reasons


def _check_jit_matches_eager(graph):
    """Each step under jit gives the update and state it gives eagerly, from
    the same gradient, state and params (the eager run's), in float64. Step
    by step, not whole runs: some random graphs are chaotic (weights of 1e27
    after 3 steps, whose ``sin`` gradients are rounding noise), so two runs
    would part at the first difference in rounding. In float64: some are
    ill-conditioned in float32 (``1 / log(|m| / sqrt(v))`` at ``|m| / sqrt(v)
    = 1`` up to rounding), where XLA's fused and unfused roundings differ."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)
        tx = symopt.to_optax(graph, total_steps=10)
        update = jax.jit(tx.update)
        state = tx.init(params)
        for k in range(STEPS):
            grads = _grads(params, k)
            eager = tx.update(grads, state, params)
            jitted = update(grads, state, params)
            for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
            params, state = optax.apply_updates(params, eager[0]), eager[1]
    assert int(graph_state(state).count) == STEPS


@pytest.mark.parametrize("index", range(0, NUM_GRAPHS, 100))
def test_random_graphs_step_under_jit_as_they_do_eagerly(index):
    _check_jit_matches_eager(_graphs()[index])


@pytest.mark.slow
def test_all_random_graphs_step_under_jit_as_they_do_eagerly():
    for graph in _graphs():
        _check_jit_matches_eager(graph)


def test_check_accepts_a_useful_share_of_random_graphs_and_names_the_rest():
    reports = [symopt.check(g) for g in _graphs()]
    assert all(r.reason in integrity.REASONS for r in reports)
    assert all(r.ok == (r.reason == "ok") for r in reports)
    # A check that rejects nearly everything leaves the search nothing to train; one
    # that accepts nearly everything spends training on degenerate graphs (measured:
    # 385 of these 1,000 pass).
    accepted = sum(r.ok for r in reports) / len(reports)
    assert 0.2 <= accepted <= 0.8, accepted
    rejected_for = {r.reason for r in reports if not r.ok}
    assert {"no_gradient", "quadratic_not_decreasing", "non_finite"} <= rejected_for
