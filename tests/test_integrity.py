"""The integrity check's reasons, and the functional fingerprint."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import integrity, interpret, ops, zoo
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


# ---------------------------------------------------------------------------
# Fingerprints that archives store, and the per-leaf operators in the probe.

# Computed before the probe had leaves (and at commit 669630a, before the
# per-leaf operators existed: the same values): archives store them, so an
# element-wise graph must keep its fingerprint. Name: (the sha1 of the
# graph's JSON, so that a zoo graph changed since is skipped, its fingerprint).
ZOO_FINGERPRINTS = {
    "sgd": ("1d88056efa47", "00761c53dd7796de"),
    "momentum": ("91dbdea90f4e", "666611d70f968c22"),
    "nesterov": ("1c29c95095df", "5d3eb9fa063ef4c4"),
    "rmsprop": ("2ddf8e121229", "182a706f330c0dda"),
    "adam": ("f379a50ec210", "d25d9646e676ee94"),
    "adamw": ("fc27caa4c3dd", "238fd33b7c8eb50a"),
    "lion": ("9556a9b1cc2d", "33f35df3f1deb11d"),
    "signsgd": ("455156cca85e", "d444a098107f32d8"),
    "signum": ("45ffd3ac92a9", "288c0aa56d9dea2d"),
    "addsign": ("f24c307e128a", "2e15a3d1b9cabd98"),
    "powersign": ("c51a61364822", "a9ea1c4bf9bf668e"),
    "ades": ("4d134c2010aa", "0dbd82eb51b622d2"),
    "autolr_sign": ("67629d26a256", "880016d9dc2bb5e0"),
    "terms_ga": ("c0e9b7ec136f", "2210acdfe5d7182a"),
}
# 40 element-wise graphs of nos.sample(default_rng(7), NosSpace(leaf_ops=False)):
# the sha1 of their JSON keys, and their fingerprints.
RANDOM_GRAPHS_KEY = "b123718c1b70"
RANDOM_FINGERPRINTS = [
    "7cebe6ba2371635d", "e12fd87fb25c8794", "a7ac2416653221aa", "e7b936d8dca87d12",
    "67c5ef6ffdbb88c3", "148a12537ae5c023", "5d3a8b68b65383d0", "974434b27afaa84e",
    "ef405a70da079ac6", "15c9ae6916e8a362", "ae9986a89cc41895", "444f8e911828a13b",
    "d9a55e05780ae1ff", "6099dc8fbbfa00f4", "40bc9cce5e720d6a", "2a2c47048c0cc8ad",
    "c3c69fd30d07e879", "7b369be996819b56", "a9f717832560e6b9", "18b58132d61f1d8d",
    "f3f2e28e8e84da66", "fe734e5dd826eb18", "1f70f7b15eb34464", "84eb8c2561c1210f",
    "cd0b7e292a868ec3", "50963774368a09b6", "b90b6f4facfee191", "880280f6d2aedbee",
    "043a733779aab509", "de01fd02bd179b6a", "16c0a86d38162c49", "e689e6dbbae89daa",
    "f10581a62364968a", "d5f24ef5a3ceffff", "45ad3d218bbb7e9f", "fe67626da0917984",
    "ba185b0f66c8a674", "5550fe2a7b0254d8", "d2e305ea19005340", "31134b06c3a7b63c"
]


def _json_key(graph) -> str:
    return hashlib.sha1(
        json.dumps(graph_lib.to_dict(graph), sort_keys=True).encode()).hexdigest()[:12]


def test_element_wise_zoo_graphs_keep_the_fingerprints_archives_store():
    checked = 0
    for name, (key, expected) in ZOO_FINGERPRINTS.items():
        if name in zoo.names() and _json_key(zoo.get(name)) == key:
            assert symopt.fingerprint(zoo.get(name)) == expected, name
            checked += 1
    assert checked >= 10, "the zoo changed: pin its graphs' fingerprints anew"


def test_element_wise_random_graphs_keep_the_fingerprints_archives_store():
    rng = np.random.default_rng(7)
    graphs = [nos.sample(rng, nos.NosSpace(leaf_ops=False)) for _ in RANDOM_FINGERPRINTS]
    if hashlib.sha1("".join(map(_json_key, graphs)).encode()).hexdigest()[:12] != (
            RANDOM_GRAPHS_KEY):
        pytest.skip("the nos sampler draws other graphs now")
    assert [symopt.fingerprint(g) for g in graphs] == RANDOM_FINGERPRINTS


def test_a_graph_without_per_leaf_operators_never_calls_the_probe_by_leaf(monkeypatch):
    def fail(*args):
        raise AssertionError("by_leaf called")

    monkeypatch.setattr(integrity, "_probe_by_leaf", fail)
    rng = np.random.default_rng(3)
    for _ in range(50):
        graph = nos.sample(rng, nos.NosSpace(leaf_ops=False))
        integrity.probe(graph)


LEAF_GRAPHS = {
    "orth": Graph(update=nodes(("keep_left", "orth", "g", "identity", "g"))),
    "rms_rows": Graph(update=nodes(("div", "identity", "g", "rms_rows", "g"))),
    "rms_cols": Graph(update=nodes(("div", "identity", "g", "rms_cols", "g"))),
    "rms": Graph(update=nodes(("div", "identity", "adam", "rms", "adam"))),
    "norm": Graph(update=nodes(("div", "identity", "g", "norm", "g"))),
    "trust": Graph(update=nodes(("trust", "identity", "adam", "identity", "w_0.1"))),
    "if_matrix": Graph(update=nodes(("if_matrix", "identity", "g", "sign", "g"))),
}
ELEMENT_WISE_TWINS = {  # the same graph with the per-leaf operator left out
    "orth": Graph(update=nodes(("keep_left", "identity", "g", "identity", "g"))),
    "rms_rows": Graph(update=nodes(("div", "identity", "g", "identity", "g"))),
    "rms_cols": Graph(update=nodes(("div", "identity", "g", "identity", "g"))),
    "rms": Graph(update=nodes(("div", "identity", "adam", "identity", "adam"))),
    "norm": Graph(update=nodes(("div", "identity", "g", "identity", "g"))),
    "trust": simple("adam"),
    "if_matrix": simple("sign_g"),
}


@pytest.mark.parametrize("name", sorted(ops.LEAF_OPERATORS))
def test_each_per_leaf_operator_passes_the_check_and_changes_the_fingerprint(name):
    report = symopt.check(LEAF_GRAPHS[name])
    assert report.ok, report
    assert report.fingerprint != symopt.fingerprint(ELEMENT_WISE_TWINS[name])


def test_probe_of_per_leaf_operators_runs_the_same_optimizer_as_to_optax():
    """On a tree of the probe's leaves (a 3x3 matrix and a vector of 3), with
    clipping by global norm over both."""
    graphs = [g.with_hparams(clip_norm=0.05) for g in LEAF_GRAPHS.values()]
    graphs += [zoo.get(n) for n in ("muon", "lamb", "adafactor") if n in zoo.names()]

    def tree(x):
        return {"matrix": x[:9].reshape(3, 3), "vector": x[9:]}

    for graph in graphs:
        updates = integrity.probe(graph, steps=4).updates
        tx = symopt.to_optax(graph, total_steps=integrity.PROBE_TOTAL_STEPS)
        update = jax.jit(tx.update)
        w = tree(jnp.asarray(integrity.PROBE_INPUTS.w, jnp.float32))
        state = tx.init(w)
        for k in range(4):
            g = tree(jnp.asarray(integrity.PROBE_INPUTS.grads_b[k], jnp.float32))
            u, state = update(g, state, w)
            flat = np.concatenate([np.ravel(u["matrix"]), u["vector"]])
            np.testing.assert_allclose(flat, updates[k, 1], rtol=2e-4, atol=1e-9)
