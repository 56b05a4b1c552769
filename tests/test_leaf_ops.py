"""A graph with per-leaf operators through everything that reads a graph.

The graph is written by hand: Muon's orthogonalised momentum on matrices and
the momentum over its row RMS elsewhere (``if_matrix(orth(m), m / rms_rows(m))``).
It goes through JSON, the integrity check and fingerprint, the symbolic
forms, the exported module and the population engine, whose updates must
equal ``to_optax``'s on a tree of a matrix, a conv kernel, a bias and a
scalar.
"""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import export, integrity, measure, ops, population
from symopt import graph as graph_lib
from symopt.graph import Graph, Hyperparams, nodes
from symopt.program import encode

STEPS = 8


def _graph(matrix_unary: str = "orth") -> Graph:
    return Graph(
        update=nodes(
            ("div", "identity", "m", "rms_rows", "m"),  # n0 = m / rms_rows(m)
            ("if_matrix", matrix_unary, "m", "identity", "n0"),  # n1 = orth(m) on 2-D, else n0
        ),
        hparams=Hyperparams(learning_rate=0.02, beta1=0.95),
    )


GRAPH = _graph()
WITHOUT_ORTH = _graph("identity")


def _params(dtype=jnp.float32) -> dict:
    rng = np.random.default_rng(0)
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), dtype)  # noqa: E731
    return {"dense": normal(4, 3), "conv": normal(3, 3, 2, 4), "bias": normal(3),
            "scale": normal()}


def _grads(params, steps: int = STEPS):
    """``steps`` gradients, stacked on a leading axis (for ``lax.scan``)."""
    rng = np.random.default_rng(1)
    return jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=(steps, *x.shape)), x.dtype), params)


def _trajectory(tx, params, grads):
    def step(carry, g):
        w, state = carry
        u, state = tx.update(g, state, w)
        return (jax.tree.map(jnp.add, w, u), state), u

    return jax.jit(lambda: jax.lax.scan(step, (params, tx.init(params)), grads)[1])()


def test_graph_round_trips_through_json(tmp_path):
    data = json.loads(json.dumps(graph_lib.to_dict(GRAPH)))
    assert graph_lib.from_dict(data) == GRAPH
    path = tmp_path / "graph.json"
    symopt.save(GRAPH, path)
    assert symopt.load(path) == GRAPH


def test_graph_passes_the_check_and_orth_changes_its_fingerprint():
    report = symopt.check(GRAPH)
    assert report.ok, report
    assert report.fingerprint == symopt.fingerprint(GRAPH)
    assert symopt.check(WITHOUT_ORTH).ok
    assert symopt.fingerprint(GRAPH) != symopt.fingerprint(WITHOUT_ORTH)


def test_latex_and_text_name_the_per_leaf_operators():
    latex = symopt.to_latex(GRAPH)
    assert r"\operatorname{orth}(\hat{m})" in latex
    assert r"\mathrm{rms}_{\mathrm{row}}(\hat{m})" in latex
    assert r"\operatorname{if\_matrix}\left(" in latex
    text = symopt.to_text(GRAPH)
    assert text.startswith("d = if_matrix(orth(m), m/rms_row(m));"), text


def test_exported_module_steps_as_to_optax_does(tmp_path):
    source = export.to_source(GRAPH)
    assert "def _orth(" in source and "def _rms_rows(" in source and "def _if_matrix(" in source
    assert "def _trust(" not in source and "def _leaf_norm(" not in source  # only those used
    path = tmp_path / "exported_leaf.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("exported_leaf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = _params()
    grads = _grads(params)
    lr = GRAPH.hparams.learning_rate
    expected = _trajectory(symopt.to_optax(GRAPH, lr, 20), params, grads)
    actual = _trajectory(module.optimizer(lr, 20), params, grads)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7)


def test_the_matrix_leaf_is_orthogonalised_and_the_others_are_not():
    params = _params()
    g = jax.tree.map(lambda x: x[0], _grads(params, 1))

    @jax.jit
    def first_updates(params, g):
        out = []
        for graph in (GRAPH, WITHOUT_ORTH):
            tx = symopt.to_optax(graph, learning_rate=1.0, total_steps=10)
            out.append(tx.update(g, tx.init(params), params)[0])
        return out

    updates, without = first_updates(params, g)
    dense = -np.asarray(updates["dense"], np.float64)  # [4, 3]: near-orthonormal columns
    np.testing.assert_allclose(dense.T @ dense, np.eye(3), atol=0.35)
    for name in ("conv", "bias", "scale"):  # not 2-D: m / rms_rows(m) in both
        np.testing.assert_array_equal(updates[name], without[name])
    assert not np.allclose(updates["dense"], without["dense"])


# Under `pytest -m slow`: by default the population engine is checked against
# to_optax on graphs with every per-leaf operator, on a matrix, a conv kernel, a
# bias and a scalar, in each strategy, by tests/test_population_leaf.py::
# test_population_agrees_with_to_optax_on_graphs_with_per_leaf_operators.
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap", "fused"])
def test_population_updates_equal_to_optax(strategy):
    graphs = [GRAPH, WITHOUT_ORTH]
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        grads = _grads(params)
        shape = measure.shape_for(graphs)
        assert shape.leaf_ops
        program = encode(graphs, shape, dtype=jnp.float64)
        size = len(graphs)
        batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *x.shape)), params)

        def run(program):
            tx = population.optimizer(program, shape, 20, strategy=strategy)

            def body(state, g):
                g = jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *x.shape)), g)
                updates, state = tx.update(g, state, batched)
                return state, updates

            return jax.lax.scan(body, tx.init(batched), grads)[1]

        ours = jax.jit(run)(program)
        for i, graph in enumerate(graphs):
            tx = symopt.to_optax(graph, total_steps=20)

            def body(state, g, tx=tx):
                updates, state = tx.update(g, state, params)
                return state, updates

            reference = jax.jit(lambda tx=tx, body=body: jax.lax.scan(
                body, tx.init(params), grads)[1])()
            for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(ours), strict=True):
                np.testing.assert_allclose(b[:, i], a, rtol=1e-6, atol=1e-10)


def test_probe_applies_the_per_leaf_operators_to_each_probe_leaf():
    # Each probe row holds a 3x3 matrix and a vector of 3 (integrity.PROBE_LEAVES),
    # which orth reads one by one.
    graph = Graph(update=nodes(("keep_left", "orth", "g", "identity", "g")),
                  hparams=Hyperparams(learning_rate=1.0))
    updates = integrity.probe(graph, steps=1).updates[0]
    assert integrity.PROBE_LEAVES == ((3, 3), (3,))
    for row, g in enumerate((integrity.PROBE_INPUTS.grads_a[0], integrity.PROBE_INPUTS.grads_b[0])):
        np.testing.assert_allclose(-updates[row, :9], ops.orth(np, g[:9].reshape(3, 3)).ravel())
        np.testing.assert_allclose(-updates[row, 9:], ops.orth(np, g[9:]))
