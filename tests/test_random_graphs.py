"""1,000 random graphs through validate -> check -> to_optax -> steps, and a
fuzz of 2,000 graphs with the per-leaf operators through every reader.

The default run steps the first 50 graphs eagerly (op by op, as JAX runs
outside jit) and jit-compiles one; the slow run (``pytest -m slow``)
steps all 1,000 eagerly and compiles them all: compiling costs ~0.5 s a graph
on 2 CPU cores.

The fuzz draws nos graphs and rewrites half their update nodes with any
operator of the tables, the per-leaf ones often, and any operand (some
graphs then put a per-leaf operator in a decay, which is invalid). Each goes
through validate, check, fingerprint, the text, LaTeX and simplified
equations and the export's source, which must raise nothing but
``GraphError`` on invalid graphs; a few exported modules run against
``to_optax``. The default run fuzzes a quarter of FUZZ_DEFAULT graphs (~0.1 s each on
2 busy CPU cores, most of it sympy), the slow run all FUZZ_GRAPHS.
"""

import dataclasses
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import export, integrity, ops, program, simplicity
from symopt import graph as graph_lib
from symopt.graph import Expr, Node
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


# Chunks of 50 spread over the xdist workers: the default run steps the first 50
# graphs eagerly, `pytest -m slow` all 1,000 (each chunk has 12 or more that pass).
CHUNK = 50


@pytest.mark.parametrize("chunk", [0, *(pytest.param(c, marks=pytest.mark.slow)
                                        for c in range(1, NUM_GRAPHS // CHUNK))])
def test_random_graphs_validate_check_compile_and_step_eagerly(chunk):
    reasons = {}
    for graph in _graphs()[chunk * CHUNK : (chunk + 1) * CHUNK]:
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


# One of the sample by default, the other nine (and all 1,000, below) under
# `pytest -m slow`: each compiles its own step.
@pytest.mark.parametrize("index", [0, *(pytest.param(i, marks=pytest.mark.slow)
                                        for i in range(100, NUM_GRAPHS, 100))])
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


# --------------------------------------------------------------------------
# The fuzz: per-leaf operators through every reader.

FUZZ_GRAPHS = 2000
FUZZ_DEFAULT = 200
_LEAF_UNARY = tuple(n for n, op in ops.UNARY.items() if op.leaf)
_LEAF_BINARY = tuple(n for n, op in ops.BINARY.items() if op.leaf)


def _fuzz_graph(rng: np.random.Generator) -> symopt.Graph:
    graph = nos.sample(rng)
    leaves = [*ops.OPERANDS, *(f"c{i}" for i in range(len(graph.constants))),
              *(f"s{i}" for i in range(len(graph.states)))]

    def pick(options):
        return str(options[int(rng.integers(len(options)))])

    def unary(old: str) -> str:
        if rng.random() < 0.4:
            return old
        return pick(_LEAF_UNARY if rng.random() < 0.4 else tuple(ops.UNARY))

    built = list(graph.update.nodes)
    for i, node in enumerate(built):
        if rng.random() < 0.5:
            refs = leaves + [graph_lib.node_ref(j) for j in range(i)]
            built[i] = Node(pick(_LEAF_BINARY if rng.random() < 0.4 else tuple(ops.BINARY)),
                            unary(node.left), node.a if rng.random() < 0.7 else pick(refs),
                            unary(node.right), node.b if rng.random() < 0.7 else pick(refs))
    graph = graph.replace(update=Expr(tuple(built), graph.update.root))
    if graph.decays and rng.random() < 0.05:  # a per-leaf operator in a decay: invalid
        (name, expr), *rest = graph.decays
        first = dataclasses.replace(expr.nodes[0], left=pick(_LEAF_UNARY))
        graph = graph.replace(decays=((name, Expr((first, *expr.nodes[1:]), expr.root)), *rest))
    return graph


@functools.cache
def _fuzz_graphs() -> tuple[symopt.Graph, ...]:
    rng = np.random.default_rng(31)
    return tuple(_fuzz_graph(rng) for _ in range(FUZZ_GRAPHS))


def _through_every_reader(graph: symopt.Graph) -> symopt.CheckReport:
    """``graph`` through every reader; only GraphError, and only if invalid."""
    try:
        graph_lib.validate(graph)
    except symopt.GraphError:
        valid = False
    else:
        valid = True
    report = symopt.check(graph)
    assert report.reason in integrity.REASONS and report.ok == (report.reason == "ok")
    assert (report.reason == "invalid_structure") == (not valid), report
    text = symopt.to_text(graph)
    assert "\n" not in text and text.startswith("<invalid Graph") == (not valid), text
    readers = [symopt.fingerprint, symopt.to_latex, simplicity.simplified_equation,
               export.to_source]
    if not valid:
        for reader in readers:
            with pytest.raises(symopt.GraphError):
                reader(graph)
        return report
    fingerprint = symopt.fingerprint(graph)
    assert fingerprint == (report.fingerprint or fingerprint)  # None: rejected unprobed
    latex = symopt.to_latex(graph)
    assert latex.startswith(r"\begin{aligned}") and latex.endswith(r"\end{aligned}")
    assert "\n" not in simplicity.simplified_equation(graph)
    compile(export.to_source(graph.replace(total_steps=100)), "<exported>", "exec")
    return report


def _check_fuzz(graphs) -> None:
    reports = [_through_every_reader(g) for g in graphs]
    leafy = [program.uses_leaf_ops(g) for g in graphs]
    # The fuzz reaches what it is for: graphs that use per-leaf operators and
    # pass the check, and invalid graphs.
    assert sum(bool(u) and r.ok for u, r in zip(leafy, reports, strict=True)) >= len(graphs) // 10
    assert set().union(*leafy) == ops.LEAF_OPERATORS
    assert any(r.reason == "invalid_structure" for r in reports)


# The first quarter of FUZZ_DEFAULT by default, the rest under `pytest -m slow`
# (each quarter reaches every per-leaf operator and an invalid graph).
@pytest.mark.parametrize("chunk", [0, *(pytest.param(c, marks=pytest.mark.slow)
                                        for c in (1, 2, 3))])
def test_fuzzed_graphs_with_per_leaf_operators_pass_through_every_reader(chunk):
    size = FUZZ_DEFAULT // 4
    _check_fuzz(_fuzz_graphs()[chunk * size:(chunk + 1) * size])


@pytest.mark.slow
def test_all_fuzzed_graphs_with_per_leaf_operators_pass_through_every_reader():
    _check_fuzz(_fuzz_graphs())


def _exported_matches_to_optax(graph: symopt.Graph, tmp_path) -> None:
    path = tmp_path / "fuzzed.py"
    path.write_text(export.to_source(graph.replace(total_steps=10)))  # the length used below
    spec = importlib.util.spec_from_file_location("fuzzed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)
        ours, theirs = module.optimizer(total_steps=10), symopt.to_optax(graph, total_steps=10)
        step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
        state_ours, state_theirs = ours.init(params), theirs.init(params)
        for k in range(STEPS):
            grads = _grads(params, k)
            u_ours, state_ours = step_ours(grads, state_ours, params)
            u_theirs, state_theirs = step_theirs(grads, state_theirs, params)
            for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
            params = optax.apply_updates(params, u_theirs)


def _exportable(count: int) -> list[symopt.Graph]:
    """The first ``count`` fuzzed graphs that use per-leaf operators and pass the check."""
    found = [g for g in _fuzz_graphs()[:400]
             if program.uses_leaf_ops(g) and symopt.check(g).ok]
    return found[:count]


# One by default, the other two (and 40, below) under `pytest -m slow`.
@pytest.mark.parametrize("index", [0, *(pytest.param(i, marks=pytest.mark.slow)
                                        for i in (1, 2))])
def test_fuzzed_graphs_with_per_leaf_operators_export_as_to_optax_steps(index, tmp_path):
    _exported_matches_to_optax(_exportable(3)[index], tmp_path)


@pytest.mark.slow
def test_many_fuzzed_graphs_with_per_leaf_operators_export_as_to_optax_steps(tmp_path):
    for graph in _exportable(40):
        _exported_matches_to_optax(graph, tmp_path)
