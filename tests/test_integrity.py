"""The integrity check's reasons, and the functional fingerprint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import integrity, interpret, zoo
from symopt.graph import Expr, Graph, Hyperparams, nodes, simple
from symopt.spaces import nos


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_optimizer_passes_the_check(name):
    report = symopt.check(zoo.get(name))
    assert report.ok, report
    assert report.reason == "ok"
    assert report.fingerprint is not None


REJECTED = {
    "invalid_structure": Graph(update=Expr((), "n3")),
    "no_gradient": Graph(update=nodes(("mul", "identity", "w_0.01", "exp", "t"))),
    "no_gradient'": Graph(update=nodes(("sub", "identity", "g", "identity", "g"),
                                       ("add", "identity", "n0", "identity", "w_0.1"))),
    "zero_update": Graph(update=nodes(("mul", "identity", "g", "identity", "c0")),
                         constants=(0.0,)),
    "constant_update": Graph(
        update=nodes(("mul", "identity", "g", "identity", "c0"),
                     ("add", "identity", "n0", "identity", "one")),
        constants=(0.0,),
    ),
    "non_finite": Graph(update=nodes(("div", "identity", "g", "identity", "c0")),
                        constants=(0.0,)),
    "quadratic_not_decreasing": simple("g", hparams=Hyperparams(learning_rate=1e-2)).replace(
        update=nodes(("keep_left", "neg", "g", "identity", "g"))
    ),
}


@pytest.mark.parametrize("reason,graph", list(REJECTED.items()), ids=list(REJECTED))
def test_check_rejects_degenerate_graphs_with_their_reason(reason, graph):
    report = symopt.check(graph)
    assert not report.ok
    assert report.reason == reason.rstrip("'")
    assert report.reason in integrity.REASONS
    assert report.detail and "\n" not in report.detail


def test_a_gradient_reaching_the_root_only_through_a_state_counts():
    # s0 <- EMA of g, and the direction is s0: the gradient arrives a step late.
    graph = Graph(
        update=nodes(
            ("mul", "identity", "c0", "identity", "s0"),
            ("mul", "identity", "c1", "identity", "g"),
            ("add", "identity", "n0", "identity", "n1"),
            root="s0",
        ),
        states=("n2",),
        constants=(0.9, 0.1),
        hparams=Hyperparams(learning_rate=0.1),
    )
    assert symopt.check(graph).ok


def test_check_never_raises_on_random_graphs():
    rng = np.random.default_rng(0)
    reasons = set()
    for _ in range(300):
        report = symopt.check(nos.sample(rng))
        assert report.reason in integrity.REASONS
        reasons.add(report.reason)
    assert {"ok", "no_gradient"} <= reasons


# ---------------------------------------------------------------------------
# Fingerprint.


def _fp(graph):
    return symopt.fingerprint(graph)


def test_fingerprint_ignores_the_order_of_commutative_inputs():
    a = Graph(update=nodes(("add", "identity", "g", "identity", "adam")))
    b = Graph(update=nodes(("add", "identity", "adam", "identity", "g")))
    assert _fp(a) == _fp(b)


def test_fingerprint_ignores_dead_nodes():
    a = zoo.adam()
    b = Graph(update=nodes(("mul", "exp", "g", "identity", "m"), root="adam"))
    assert _fp(a) == _fp(b)


def test_fingerprint_ignores_multiplication_by_one():
    a = zoo.sgd()
    b = Graph(update=nodes(("mul", "identity", "g", "identity", "one")),
              hparams=zoo.sgd().hparams)
    assert _fp(a) == _fp(b)


def test_fingerprint_ignores_node_order():
    a = Graph(update=nodes(("mul", "identity", "g", "identity", "m"),
                           ("div", "identity", "g", "sqrt_abs", "v"),
                           ("sub", "identity", "n0", "identity", "n1")))
    b = Graph(update=nodes(("div", "identity", "g", "sqrt_abs", "v"),
                           ("mul", "identity", "g", "identity", "m"),
                           ("sub", "identity", "n1", "identity", "n0")))
    assert _fp(a) == _fp(b)


def test_fingerprints_of_the_zoo_are_all_different():
    prints = {name: _fp(zoo.get(name)) for name in zoo.names()}
    assert len(set(prints.values())) == len(prints), prints


def test_fingerprint_sees_hyperparameters_and_schedules():
    base = zoo.adam()
    assert _fp(base) != _fp(base.with_hparams(learning_rate=2e-3))
    assert _fp(base) != _fp(base.with_hparams(beta2=0.99))
    assert _fp(base) != _fp(base.replace(schedule=symopt.Schedule(kind="linear")))


def test_fingerprint_is_deterministic_for_noisy_graphs():
    graph = Graph(update=nodes(("add", "identity", "g", "identity", "noise_annealed")))
    assert _fp(graph) == _fp(graph)


def test_probe_runs_the_same_optimizer_as_to_optax():
    """The check probes exactly the optimizer that to_optax compiles."""
    rng = np.random.default_rng(5)
    graphs = [zoo.get(n) for n in ("adam", "lion", "ades", "terms_ga", "nesterov")]
    # Random graphs without noise: NumPy and JAX draw different random numbers.
    graphs += [g for g in (nos.sample(rng) for _ in range(40))
               if g.momentum != "none" and not interpret.plan(g).needs & {"noise", "uniform"}
               and symopt.check(g).ok][:3]
    for graph in graphs:
        updates = integrity.probe(graph, steps=4).updates
        tx = symopt.to_optax(graph, total_steps=integrity.PROBE_TOTAL_STEPS)
        update = jax.jit(tx.update)
        w = jnp.asarray(integrity.PROBE_INPUTS.w, jnp.float32)
        state = tx.init(w)
        for k in range(4):
            g = jnp.asarray(integrity.PROBE_INPUTS.grads_a[k], jnp.float32)
            u, state = update(g, state, w)
            np.testing.assert_allclose(u, updates[k, 0], rtol=2e-4, atol=1e-9)


def test_fingerprint_sees_schedules_that_differ_only_late_in_training():
    early = zoo.adam().replace(schedule=symopt.Schedule(kind="step", decay_rate=0.1))
    late = zoo.adam().replace(schedule=symopt.Schedule(kind="step", decay_rate=0.5))
    assert _fp(early) != _fp(late)
    long_warmup = zoo.adam().replace(schedule=symopt.Schedule(warmup_steps=500))
    longer_warmup = zoo.adam().replace(schedule=symopt.Schedule(warmup_steps=600))
    assert _fp(long_warmup) != _fp(longer_warmup)
