"""The modern zoo optimizers (Muon, LAMB, Adafactor) against optax.

They read whole parameter tensors (the per-leaf operators of symopt.ops), so
they are checked on a model with every kind of leaf: a Dense matrix, a conv
kernel (4-D: optax's Muon runs Adam on it), a bias and a scalar scale, in
float64 with deterministic gradients.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import zoo
from symopt.graph import Graph, Hyperparams, nodes

import helpers

STEPS = helpers.STEPS  # helpers.gradients' stream: 20 steps
TOTAL_STEPS = 8  # the graphs' training length: the last 12 steps run past it
MODERN = ("muon", "lamb", "adafactor")
CONV_MATRIX = (18, 4)  # the conv kernel [3, 3, 2, 4] as its matrix view
TIGHT = dict(rtol=1e-9, atol=1e-12)  # float64 rounding
# optax computes Adafactor's decay rate 1 - (t+1)^-0.8 in float32: the graph,
# in float64, agrees to float32 rounding of that rate.
ADAFACTOR_RTOL = 1e-6

# Leaf shapes: every kind of leaf (a Dense matrix, a conv kernel, a bias, a
# scalar scale); a smaller model where one matrix and one other leaf suffice
# (compiles take time in proportion to the leaves); and a matrix that optax's
# default Adafactor factors (both dimensions >= 128).
LEAVES = {"dense": (5, 3), "conv": (3, 3, 2, 4), "bias": (3,), "scale": ()}
SMALL = {"dense": (5, 3), "bias": (3,)}
BIG = {"big": (128, 130), "dense": (5, 3), "bias": (3,), "scale": ()}


def model(dtype, leaves: dict = LEAVES) -> dict:
    """Parameters of the given leaf shapes (drawn with a fixed seed)."""
    rng = np.random.default_rng(0)
    return {name: jnp.asarray(rng.normal(size=shape) * (0.1 if len(shape) < 2 else 1.0)
                              + (1.0 if not shape else 0.0), dtype)
            for name, shape in leaves.items()}


def updates(tx: optax.GradientTransformation, leaves: dict = LEAVES,
            reshape_conv: bool = False) -> dict:
    """``tx``'s updates at each of helpers.gradients' steps on :func:`model`
    (float64, the weights held fixed as the population engine's check holds
    them), stacked along a leading step axis; ``reshape_conv`` feeds the conv
    kernel as its matrix view and gives its updates back in its own shape."""
    with jax.enable_x64(True):
        params = model(jnp.float64, leaves)
        grads = jax.tree.map(lambda *x: jnp.stack(x), *helpers.gradients(params))
        if reshape_conv:
            params = {**params, "conv": params["conv"].reshape(CONV_MATRIX)}
            grads = {**grads, "conv": grads["conv"].reshape(STEPS, *CONV_MATRIX)}

        def step(state, g):
            u, state = tx.update(g, state, params)
            return state, u

        out = jax.jit(lambda: jax.lax.scan(step, tx.init(params), grads)[1])()
        if reshape_conv:
            out = {**out, "conv": out["conv"].reshape(STEPS, *leaves["conv"])}
        return jax.tree.map(np.asarray, out)


def ours(graph: Graph, leaves: dict = LEAVES) -> dict:
    return updates(symopt.to_optax(graph, total_steps=TOTAL_STEPS), leaves)


@pytest.fixture(scope="module")
def reference() -> dict:
    """Each modern zoo graph's to_optax updates, computed once."""
    return {name: ours(zoo.get(name)) for name in MODERN}


def lr(name: str) -> float:
    return zoo.get(name).hparams.learning_rate


# --------------------------------------------------------------------------
# Muon.


def test_muon_equals_optax_contrib_muon(reference):
    chex.assert_trees_all_close(reference["muon"], updates(optax.contrib.muon(lr("muon"))),
                                **TIGHT)


def test_muon_keyword_arguments_match_optax_muon_arguments():
    graph = zoo.muon(beta=0.9, beta1=0.8, beta2=0.99)
    theirs = optax.contrib.muon(lr("muon"), beta=0.9, adam_b1=0.8, adam_b2=0.99)
    chex.assert_trees_all_close(ours(graph, SMALL), updates(theirs, SMALL), **TIGHT)


def test_muon_orthogonalises_the_matrices_and_runs_nadam_on_the_rest(reference):
    # Guards the parity test. On a matrix, Muon's first update has singular
    # values near 1 (times lr); on the conv kernel NAdam's first step is
    # (b1/(1+b1) + 1) * sign(g), up to eps.
    first = jax.tree.map(lambda u: -u[0] / lr("muon"), reference["muon"])
    singular = np.linalg.svd(first["dense"], compute_uv=False)
    assert np.all(np.abs(singular - 1.0) < 0.35)
    with jax.enable_x64(True):
        g = np.asarray(helpers.gradients(model(jnp.float64))[0]["conv"])
    np.testing.assert_allclose(first["conv"], (0.9 / 1.9 + 1) * np.sign(g), rtol=1e-5)


def test_muon_without_nesterov_equals_optax_muon_without_nesterov():
    graph = zoo.muon(nesterov=False, beta=0.7)
    theirs = optax.contrib.muon(lr("muon"), beta=0.7, nesterov=False)
    chex.assert_trees_all_close(ours(graph, SMALL), updates(theirs, SMALL), **TIGHT)
    assert not np.allclose(ours(graph, SMALL)["dense"], ours(zoo.muon(beta=0.7), SMALL)["dense"])


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_on_every_leaf_orthogonalises_each_leaf_s_matrix_view(nesterov):
    # The reference: momentum beta on every leaf (optax's, bias-corrected, Nesterov
    # or not), then Newton-Schulz on the leaf's [prod(shape[:-1]), shape[-1]] view.
    beta = 0.5
    graph = zoo.muon(every_leaf=True, nesterov=nesterov, beta=beta)
    got = ours(graph)
    with jax.enable_x64(True):
        grads = [jax.tree.map(np.asarray, g) for g in helpers.gradients(model(jnp.float64))]
    mu = {k: np.zeros_like(x) for k, x in grads[0].items()}
    for t, g in enumerate(grads):
        for k in LEAVES:
            mu[k] = beta * mu[k] + (1 - beta) * g[k]
            mu_hat = (beta * mu[k] / (1 - beta ** (t + 2))
                      + (1 - beta) * g[k] / (1 - beta ** (t + 1))
                      if nesterov else mu[k] / (1 - beta ** (t + 1)))
            want = np.asarray(symopt.ops.orth(np, mu_hat))  # the schedule is constant
            np.testing.assert_allclose(-got[k][t], lr("muon") * want, rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------
# LAMB.


def test_lamb_equals_optax_lamb(reference):
    chex.assert_trees_all_close(reference["lamb"], updates(optax.lamb(lr("lamb"))), **TIGHT)


def test_lamb_weight_decay_inside_the_trust_ratio_equals_optax_lamb_weight_decay():
    graph = zoo.lamb(weight_decay=0.1)
    assert graph.hparams.weight_decay == 0.0 and graph.update.nodes[-1].op == "trust"
    theirs = optax.lamb(lr("lamb"), weight_decay=0.1)
    chex.assert_trees_all_close(ours(graph, SMALL), updates(theirs, SMALL), **TIGHT)


# --------------------------------------------------------------------------
# Adafactor.


def test_adafactor_equals_optax_factoring_every_matrix_conv_kernels_as_matrix_views(
        reference):
    # optax with min_dim_size_to_factor=1 factors every matrix, as the graph
    # does; it factors a conv kernel's two largest dimensions where the graph
    # factors its matrix view [18, 4]: optax is given the kernel reshaped so.
    theirs = updates(optax.adafactor(lr("adafactor"), min_dim_size_to_factor=1),
                     reshape_conv=True)
    chex.assert_trees_all_close(reference["adafactor"], theirs, rtol=ADAFACTOR_RTOL, atol=0)


def test_adafactor_equals_default_optax_adafactor_except_on_matrices_it_keeps_whole():
    # optax's default factors only leaves whose two largest dimensions are
    # both >= 128 and keeps a full second moment on the others (the small
    # matrix here, conv kernels too); the graph factors every matrix view.
    graph, theirs = ours(zoo.adafactor(), BIG), updates(optax.adafactor(lr("adafactor")), BIG)
    for name in ("big", "bias", "scale"):
        np.testing.assert_allclose(graph[name], theirs[name], rtol=ADAFACTOR_RTOL, err_msg=name)
    assert not np.allclose(graph["dense"], theirs["dense"], rtol=1e-3)


def test_adafactor_keyword_arguments_match_optax_adafactor_arguments():
    graph = zoo.adafactor(decay_rate=0.5, eps=1e-20)
    theirs = optax.adafactor(lr("adafactor"), min_dim_size_to_factor=1, decay_rate=0.5,
                             eps=1e-20)
    chex.assert_trees_all_close(ours(graph, SMALL), updates(theirs, SMALL),
                                rtol=ADAFACTOR_RTOL, atol=0)


# --------------------------------------------------------------------------
# Defaults: each hyperparameter optax has, read off the graph.

# (zoo name, optax factory, optax argument, the same value read off the graph).
OPTAX_DEFAULTS = (
    ("muon", optax.contrib.muon, "beta", lambda g: g.constants[0]),
    ("muon", optax.contrib.muon, "adam_b1", lambda g: g.constants[1]),
    ("muon", optax.contrib.muon, "eps", lambda g: g.constants[2]),
    ("muon", optax.contrib.muon, "adam_b2", lambda g: g.hparams.beta2),
    ("muon", optax.contrib.muon, "weight_decay", lambda g: g.hparams.weight_decay),
    ("lamb", optax.lamb, "b1", lambda g: g.hparams.beta1),
    ("lamb", optax.lamb, "b2", lambda g: g.hparams.beta2),
    ("lamb", optax.lamb, "eps", lambda g: g.hparams.eps),
    ("lamb", optax.lamb, "weight_decay", lambda g: g.hparams.weight_decay),
    ("adafactor", optax.adafactor, "decay_rate", lambda g: -g.constants[0]),
    ("adafactor", optax.adafactor, "eps", lambda g: g.constants[1]),
)


@pytest.mark.parametrize("name, optax_fn, arg, read", OPTAX_DEFAULTS,
                         ids=[f"{n}-{a}" for n, _, a, _ in OPTAX_DEFAULTS])
def test_default_hyperparameter_equals_optax_default(name, optax_fn, arg, read):
    assert read(zoo.get(name)) == inspect.signature(optax_fn).parameters[arg].default


def test_muon_default_learning_rate_is_jordan_et_al_s():
    assert zoo.muon().hparams.learning_rate == 0.02


# --------------------------------------------------------------------------
# The population engine against to_optax.


# "loop" is the CPU default; "vmap" (and "fused", which falls back to vmap for
# the per-leaf operators) compile every operator's branch at every node, which
# takes long on a CPU. All three under `pytest -m slow`: by default these graphs
# agree with to_optax in the population engine past T on a matrix, a conv kernel,
# a bias and a scalar in tests/test_population_leaf.py (loop).
STRATEGIES = [pytest.param("loop", marks=pytest.mark.slow),
              pytest.param("vmap", marks=pytest.mark.slow),
              pytest.param("fused", marks=pytest.mark.slow)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_population_engine_matches_to_optax_past_total_steps(strategy, reference, monkeypatch):
    # helpers.population_updates on this module's model (every kind of leaf);
    # its 20 gradient steps run past total_steps = 8.
    monkeypatch.setattr(helpers, "params_like", lambda dtype: model(dtype))
    with jax.enable_x64(True):
        population = helpers.population_updates([zoo.get(n) for n in MODERN], strategy,
                                                jnp.float64, TOTAL_STEPS)
    for i, name in enumerate(MODERN):
        mine = jax.tree.map(lambda x, i=i: np.asarray(x[:, i]), population)
        chex.assert_trees_all_close(mine, reference[name], rtol=1e-7, atol=1e-12)


# --------------------------------------------------------------------------
# Structure.


def orthogonalised_adam() -> Graph:
    """docs/guide.md's variant: Adam's direction, orthogonalised on matrices."""
    return Graph(update=nodes(("if_matrix", "orth", "adam", "identity", "adam")),
                 hparams=Hyperparams(learning_rate=0.02))


@pytest.mark.parametrize("name", MODERN)
def test_fits_the_graph_limits(name):
    graph = zoo.get(name)
    assert symopt.validate(graph) is graph
    assert len(graph.update.nodes) <= graph_lib.MAX_NODES
    assert len(graph.states) <= graph_lib.MAX_STATES
    assert len(graph.constants) <= graph_lib.MAX_CONSTANTS


@pytest.mark.parametrize("graph", [*(zoo.get(n) for n in MODERN), orthogonalised_adam()],
                         ids=[*MODERN, "orthogonalised_adam"])
def test_passes_the_integrity_check(graph):
    report = symopt.check(graph)
    assert report.ok, report


@pytest.mark.parametrize("name", MODERN)
def test_json_round_trip_gives_an_equal_graph(name):
    graph = zoo.get(name)
    assert symopt.from_json(graph.to_json()) == graph


def test_modern_optimizers_are_registered_after_the_published_ones():
    assert zoo.names()[-5:-2] == list(MODERN)  # then symopt's own discoveries


# --------------------------------------------------------------------------
# The exported modules.


@pytest.mark.parametrize("name, optax_fn", [("muon", optax.contrib.muon), ("lamb", optax.lamb)])
def test_exported_module_equals_optax(name, optax_fn, tmp_path):
    import importlib.util

    from symopt import export

    path = tmp_path / f"exported_{name}.py"
    path.write_text(export.to_source(zoo.get(name)))
    spec = importlib.util.spec_from_file_location(f"exported_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    chex.assert_trees_all_close(updates(module.optimizer(lr(name), TOTAL_STEPS)),
                                updates(optax_fn(lr(name))), **TIGHT)


def _driftprop_updates(grads: list[dict], graph: Graph | None = None) -> list[dict]:
    tx = symopt.to_optax(graph or zoo.driftprop(), total_steps=400)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state, out = tx.init(params), []
    for g in grads:
        u, state = tx.update(g, state, params)
        out.append(u)
    return out


def test_driftprop_is_nesterov_rmsprop_on_matrices_and_a_gradient_free_drift_elsewhere():
    rng = np.random.default_rng(0)
    grads = [{"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=2), jnp.float32)} for _ in range(150)]
    other = [{**g, "b": -3 * g["b"]} for g in grads]
    found, flipped = _driftprop_updates(grads), _driftprop_updates(other)
    found_graph = zoo.driftprop()
    rmsprop = graph_lib.simple("rmsprop", schedule=found_graph.schedule, momentum="nesterov",
                               hparams=found_graph.hparams)
    reference = _driftprop_updates(grads, rmsprop)
    for u, v, r in zip(found, flipped, reference, strict=True):
        chex.assert_trees_all_close(u["b"], v["b"])  # whatever the gradient
        assert np.all(np.asarray(u["b"]) > 0)  # upward (updates are added to params)
        chex.assert_trees_all_close(u["w"], r["w"], rtol=1e-6)
    # Once Nesterov momentum has settled, the drift is about 10 x lr x 0.0757 a step.
    np.testing.assert_allclose(found[99]["b"], 10 * 0.0042 * 0.0757, rtol=0.05)
