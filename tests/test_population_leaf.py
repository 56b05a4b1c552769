"""The population engine agrees with to_optax on graphs with per-leaf operators.

The per-leaf operators (``rms``, ``rms_rows``, ``rms_cols``, ``norm``,
``orth``, ``trust``, ``if_matrix``; :data:`symopt.ops.LEAF_OPERATORS`) read
a whole parameter tensor, so the engine applies them leaf by leaf over its
flattened runs (:func:`symopt.population.packing.leaf_applier`). Here graphs
drawn from the nos space (whose default draws them), the zoo's graphs that
use them and the terms space's Muon term are stepped by the engine in every
strategy and by :func:`symopt.to_optax`, on a matrix, a conv kernel, a bias
and a scalar, two runs per candidate (each with its own gradients and noise
seed: the loop strategy steps them side by side), past ``total_steps``, in
float64, and their updates compared. Also: a new generation does not
recompile; a program shape without ``leaf_ops`` rejects these graphs; the
fused strategy steps a ``leaf_ops`` shape with vmap (``fused.update``).

Tolerance: each leaf's updates agree to ``RTOL`` of the leaf's largest
update. Not element by element: ``orth`` is scale-invariant, so on a matrix
of rounding-level values (``min(0, x)`` where ``x`` is ~0, say) it turns the
last-bit differences of two differently compiled programs (the loop
strategy's branches against to_optax's fused kernels) into differences of
order 1 in those entries, which the sampled graphs do reach; they stay
~1e-7 of the leaf's largest update. The default run checks 8 graphs (the
zoo's and terms' and 4 drawn), ``-m slow`` 16.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import ops, population, zoo
from symopt.graph import Graph, GraphError
from symopt.program import ProgramShape, encode, uses_leaf_ops
from symopt.spaces import nos, terms

from helpers import backend_compiles

STEPS = 10
TOTAL_STEPS = 6  # fewer than STEPS: the schedules and decays hold past T
RUNS_PER_CANDIDATE = 2
SEEDS = (0, 1)  # the noise seeds of a candidate's two runs
SPACE = nos.NosSpace()  # leaf_ops on
RTOL, ATOL = 1e-6, 1e-15


def _sampled(seed: int, count: int, have: frozenset[str] = frozenset()) -> list[Graph]:
    """``count`` graphs of the nos space that use per-leaf operators, each
    adding one that neither ``have`` nor the graphs before use, while any is
    missing."""
    rng = np.random.default_rng(seed)
    chosen: list[Graph] = []
    missing = set(ops.LEAF_OPERATORS - have)
    while len(chosen) < count:
        graph = SPACE.sample(rng)
        used = uses_leaf_ops(graph)
        if used and (used & missing or not missing):
            chosen.append(graph)
            missing -= used
    return chosen


def _zoo_and_terms() -> list[Graph]:
    """The zoo graphs with per-leaf operators (Muon, LAMB, Adafactor, as the
    zoo has them) and the terms space's Muon term."""
    leafy = [zoo.get(n) for n in zoo.names() if uses_leaf_ops(zoo.get(n))]
    muon_term = terms.TermsGenome((terms.Term("orth_momentum", 1.0),), log10_lr=-2.0,
                                  beta1=0.95, bias_correction=True)
    return [*leafy, terms.TermsSpace().to_graph(muon_term)]


@functools.cache
def _graphs(count: int) -> tuple[Graph, ...]:
    """``count`` graphs: the zoo's and terms', then drawn ones."""
    fixed = _zoo_and_terms()
    have = frozenset().union(*map(uses_leaf_ops, fixed))
    return (*fixed, *_sampled(0, count - len(fixed), have))


DEFAULT, SLOW = 8, 16


@functools.cache
def _shape() -> ProgramShape:
    return SPACE.program_shape(_graphs(SLOW))


def _params(dtype) -> dict[str, jax.Array]:
    def ramp(*shape):
        size = int(np.prod(shape))
        return jnp.linspace(-1.0, 1.0, size, dtype=dtype).reshape(shape) + 0.05

    return {"kernel": ramp(4, 3), "conv": ramp(3, 3, 2, 4), "bias": ramp(3) * 0.1,
            "scale": jnp.asarray(1.3, dtype)}


def _grads(params, run: int) -> list:
    """The gradients run ``run`` sees, step by step (each run its own)."""
    return [jax.tree.map(lambda x, k=k: (run + 1.0) * jnp.sin(3.0 * x + k) + 0.1 * k, params)
            for k in range(STEPS)]


def _stack(trees):
    return jax.tree.map(lambda *x: jnp.stack(x), *trees)


@functools.cache
def _population_step(shape: ProgramShape, size: int, strategy: str, dtype):
    """A jitted function of a program: the updates [STEPS, R, ...] of its
    R = size * RUNS_PER_CANDIDATE runs, run r with the gradients _grads(r)
    and noise seed SEEDS[r % 2]."""
    runs = size * RUNS_PER_CANDIDATE
    params = _params(dtype)
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *x.shape)), params)
    grads = _stack([_stack(step) for step in zip(*[_grads(params, r) for r in range(runs)],
                                                   strict=True)])

    @jax.jit
    def run(program):
        tx = population.optimizer(program, shape, TOTAL_STEPS,
                                  runs_per_candidate=RUNS_PER_CANDIDATE,
                                  seeds=jnp.asarray(SEEDS * size), strategy=strategy)

        def body(state, g):
            updates, state = tx.update(g, state, batched)
            return state, updates

        return jax.lax.scan(body, tx.init(batched), grads)[1]

    return run


def _random(graph: Graph) -> bool:
    """Does ``graph`` draw noise or dropout (so that its runs' seeds matter)?"""
    return bool(symopt.interpret.plan(graph).needs & {"noise", "uniform"})


@functools.cache
def _references(count: int) -> list:
    """to_optax's updates [STEPS, ...] of every run (graph i's run r is run
    ``2 i + r``), in float64, from one jit-compiled scan over all of them: a
    graph without random draws steps its two runs as one vmapped optimizer."""
    with jax.enable_x64(True):
        params, graphs = _params(jnp.float64), _graphs(count)
        grads = [_stack(_grads(params, k)) for k in range(RUNS_PER_CANDIDATE * len(graphs))]
        groups = []  # (optimizer, its runs)
        for i, graph in enumerate(graphs):
            runs = [RUNS_PER_CANDIDATE * i + r for r in range(RUNS_PER_CANDIDATE)]
            if _random(graph):
                groups += [(symopt.to_optax(graph, total_steps=TOTAL_STEPS, seed=SEEDS[r]),
                            [k]) for r, k in enumerate(runs)]
            else:
                groups.append((symopt.to_optax(graph, total_steps=TOTAL_STEPS), runs))

        def step(tx, state, g):
            return tx.update(g, state, params)

        @jax.jit
        def run():
            def body(states, t):
                out, new = [], []
                for (tx, runs), state in zip(groups, states, strict=True):
                    g = _stack([jax.tree.map(lambda x: x[t], grads[k]) for k in runs])
                    u, state = jax.vmap(functools.partial(step, tx))(state, g)
                    out.append(u)
                    new.append(state)
                return new, out

            init = [jax.vmap(lambda _, tx=tx: tx.init(params))(jnp.arange(len(runs)))
                    for tx, runs in groups]
            return jax.lax.scan(body, init, jnp.arange(STEPS))[1]

        out = jax.tree.map(np.asarray, run())
        by_run = {}
        for (_, runs), updates in zip(groups, out, strict=True):
            for j, k in enumerate(runs):
                by_run[k] = jax.tree.map(lambda x, j=j: x[:, j], updates)
        return [by_run[k] for k in range(len(grads))]


@functools.cache
def _population(strategy: str, count: int):
    with jax.enable_x64(True):
        graphs = _graphs(count)
        program = encode(graphs, _shape(), dtype=jnp.float64)
        step = _population_step(_shape(), len(graphs), strategy, jnp.float64)
        return jax.tree.map(np.asarray, step(program))


def _check_against_to_optax(ours, count: int) -> None:
    mismatched = []
    for k, reference in enumerate(_references(count)):  # k = 2 * graph + run
        for name, want in reference.items():
            got = ours[name][:, k]
            scale = np.max(np.abs(want))
            if np.max(np.abs(got - want)) > RTOL * scale + ATOL:
                mismatched.append((k // 2, k % 2, name, float(np.max(np.abs(got - want))
                                                               / (scale + ATOL))))
    assert not mismatched, f"(graph, run, leaf, relative error) differ: {mismatched}"


def test_the_graphs_use_every_per_leaf_operator_and_the_shape_has_them():
    for count in (DEFAULT, SLOW):
        graphs = _graphs(count)
        assert set().union(*map(uses_leaf_ops, graphs)) == ops.LEAF_OPERATORS
        assert len(graphs) == count and all(uses_leaf_ops(g) for g in graphs)
    assert _shape().leaf_ops


STRATEGIES = ["loop", "vmap", "fused"]
# By default the loop strategy (the one CPU searches step) on DEFAULT graphs; vmap and
# fused (which steps these shapes with vmap) and SLOW graphs under `pytest -m slow`.
CASES = [pytest.param(s, DEFAULT, id=f"{s}-{DEFAULT}",
                      marks=() if s == "loop" else pytest.mark.slow) for s in STRATEGIES] + [
    pytest.param(s, SLOW, id=f"{s}-{SLOW}", marks=pytest.mark.slow) for s in STRATEGIES]


@pytest.mark.parametrize("strategy, count", CASES)
def test_population_agrees_with_to_optax_on_graphs_with_per_leaf_operators(strategy, count):
    """Fused included: a block of weights is not a leaf, so the fused strategy
    steps a ``leaf_ops`` shape with vmap (population/fused.py ``update``),
    silently: it is no failure to compile, so no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ours = _population(strategy, count)
    assert all(np.all(np.isfinite(x)) for x in ours.values())
    _check_against_to_optax(ours, count)


def test_fused_update_declines_a_leaf_ops_shape():
    from symopt.population import fused

    assert fused.update(_shape(), *[None] * 7) is None


# vmap under `pytest -m slow`, with its population's check above.
@pytest.mark.parametrize("strategy", ["loop", pytest.param("vmap", marks=pytest.mark.slow)])
def test_a_new_generation_of_leaf_graphs_does_not_recompile(strategy):
    _population(strategy, DEFAULT)  # compiles the population's step (once)
    with jax.enable_x64(True):
        step = _population_step(_shape(), DEFAULT, strategy, jnp.float64)
        before = backend_compiles()
        second = [*_sampled(1, DEFAULT - 2), zoo.adam(), zoo.sgd()]
        assert set(second).isdisjoint(_graphs(DEFAULT))
        jax.block_until_ready(step(encode(second, _shape(), dtype=jnp.float64)))
        assert backend_compiles() == before
        assert step._cache_size() == 1


def test_a_shape_without_leaf_ops_rejects_them_naming_the_graph_and_operators():
    shape = ProgramShape(max_nodes=16, max_operands=16, max_constants=4, max_states=2)
    graph = terms.TermsSpace().to_graph(terms.TermsGenome((terms.Term("orth_momentum", 1.0),)))
    with pytest.raises(GraphError, match=r"graphs\[1\]: uses the per-leaf operators "
                                         r"\['if_matrix', 'orth'\].*leaf_ops=False"):
        encode([zoo.adam(), graph], shape)
    encode([zoo.adam(), graph], ProgramShape(leaf_ops=True))
    # A dead node with a per-leaf operator is no use of it.
    dead = Graph(update=symopt.graph.nodes(("add", "orth", "g", "identity", "m"),
                                           ("mul", "identity", "g", "identity", "v"),
                                           root="n1"))
    encode([dead], shape)


# Both under `pytest -m slow` (two compiles of a step with every operator's branch):
# what the per-leaf operators compute is checked by default by
# test_population_agrees_with_to_optax_on_graphs_with_per_leaf_operators; this checks
# that they cost nothing where no graph uses them.
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_a_per_leaf_operator_is_computed_only_where_a_graph_uses_it(monkeypatch, strategy):
    """With ``leaf_ops`` compiled in, a population of element-wise graphs never
    applies a per-leaf operator (under vmap too, where a switch computes its
    other branches); one graph with ``orth`` makes it run."""
    applied = []

    def counting(make):
        def applier(shapes, runs=1):
            apply = make(shapes, runs)

            def counted(fn, *rows):
                jax.debug.callback(lambda: applied.append(1))
                return apply(fn, *rows)

            return counted

        return applier

    module = population.loop if strategy == "loop" else population.vmap
    monkeypatch.setattr(module, "leaf_applier", counting(module.leaf_applier))
    shape = _shape()
    params = _params(jnp.float32)

    def applications(graphs) -> int:
        applied.clear()
        batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(graphs), *x.shape)), params)

        def step(program):  # the optimizer made under jit: its step tables in the program
            tx = population.optimizer(program, shape, TOTAL_STEPS, strategy=strategy)
            return tx.update(batched, tx.init(batched), batched)

        jax.block_until_ready(jax.jit(step)(encode(graphs, shape)))
        return len(applied)

    assert applications([zoo.adam(), zoo.lion(), zoo.rmsprop()]) == 0
    assert applications([zoo.adam(), zoo.muon(), zoo.rmsprop()]) > 0
