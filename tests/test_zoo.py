"""The zoo: known optimizers as Graphs, checked against optax and their papers.

Every zoo optimizer that optax has must give optax's updates; the others must
follow their published formulas, written out here in NumPy (float64) from
docs/references.md and the zoo docstrings.
"""

from __future__ import annotations

import inspect

import chex
import jax
import numpy as np
import optax
import pytest

import symopt
from symopt import zoo

ZOO_NAMES = (
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "adam",
    "adamw",
    "lion",
    "signsgd",
    "signum",
    "addsign",
    "powersign",
    "ades",
    "autolr_sign",
    "terms_ga",
    "muon",
    "lamb",
    "adafactor",
    "driftprop",
    "orthadam",
)

PARITY_LR = 1e-2
PARITY_STEPS = 100
SGD_MOMENTUM = 0.9

# Each zoo optimizer that optax has, and its optax twin at learning rate lr.
OPTAX_TWINS = (
    dict(name="sgd", optax_fn=lambda lr: optax.sgd(lr)),
    dict(name="momentum", optax_fn=lambda lr: optax.sgd(lr, momentum=SGD_MOMENTUM)),
    dict(
        name="nesterov",
        optax_fn=lambda lr: optax.sgd(lr, momentum=SGD_MOMENTUM, nesterov=True),
    ),
    dict(name="rmsprop", optax_fn=lambda lr: optax.rmsprop(lr)),
    dict(name="adam", optax_fn=lambda lr: optax.adam(lr)),
    dict(name="adamw", optax_fn=lambda lr: optax.adamw(lr)),
    dict(name="lion", optax_fn=lambda lr: optax.lion(lr)),
    dict(name="signsgd", optax_fn=lambda lr: optax.sign_sgd(lr)),
    dict(name="signum", optax_fn=lambda lr: optax.signum(lr)),
)

# (zoo name, optax factory, optax argument, the same value read off the graph).
OPTAX_DEFAULTS = (
    ("adam", optax.adam, "b1", lambda g: g.hparams.beta1),
    ("adam", optax.adam, "b2", lambda g: g.hparams.beta2),
    ("adam", optax.adam, "eps", lambda g: g.hparams.eps),
    ("adamw", optax.adamw, "b1", lambda g: g.hparams.beta1),
    ("adamw", optax.adamw, "b2", lambda g: g.hparams.beta2),
    ("adamw", optax.adamw, "eps", lambda g: g.hparams.eps),
    ("adamw", optax.adamw, "weight_decay", lambda g: g.hparams.weight_decay),
    ("lion", optax.lion, "b1", lambda g: g.constants[0]),
    ("lion", optax.lion, "b2", lambda g: g.constants[2]),
    ("lion", optax.lion, "weight_decay", lambda g: g.hparams.weight_decay),
    ("rmsprop", optax.rmsprop, "decay", lambda g: g.hparams.beta2),
    ("rmsprop", optax.rmsprop, "eps", lambda g: g.hparams.eps),
    ("rmsprop", optax.rmsprop, "bias_correction", lambda g: g.hparams.bias_correction),
    ("signum", optax.signum, "beta", lambda g: g.hparams.beta1),
)


def _ids(cases):
    return [c["name"] for c in cases]


# --------------------------------------------------------------------------
# The registry.


def test_names_lists_exactly_the_zoo():
    assert zoo.names() == list(ZOO_NAMES)


def test_get_returns_the_named_graph_with_overrides():
    assert zoo.get("adam") == zoo.adam()
    assert zoo.get("adam", beta1=0.5).hparams.beta1 == 0.5


def test_get_unknown_name_raises_key_error_listing_known_names():
    with pytest.raises(KeyError, match="adam"):
        zoo.get("no_such_optimizer")


# --------------------------------------------------------------------------
# Parity with optax.


# Adam and Lion by default (a moment pair, a state), the other twins under
# `pytest -m slow`: each case compiles two trajectories.
@pytest.mark.parametrize("case", [
    pytest.param(c, id=c["name"], marks=() if c["name"] in ("adam", "lion") else pytest.mark.slow)
    for c in OPTAX_TWINS])
def test_matches_optax_over_100_steps(case, params, make_grads, run_trajectory):
    grads = make_grads(PARITY_STEPS, seed=1)
    ours = symopt.to_optax(zoo.get(case["name"]), learning_rate=PARITY_LR)
    theirs = case["optax_fn"](PARITY_LR)

    our_params, our_updates, _ = run_trajectory(ours, params, grads)
    their_params, their_updates, _ = run_trajectory(theirs, params, grads)

    chex.assert_trees_all_close(our_updates, their_updates, rtol=1e-5, atol=1e-9)
    # atol: float32 rounding of the running sum where a weight crosses zero.
    chex.assert_trees_all_close(our_params, their_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name, optax_fn, arg, read",
    OPTAX_DEFAULTS,
    ids=[f"{n}-{a}" for n, _, a, _ in OPTAX_DEFAULTS],
)
def test_default_hyperparameter_equals_optax_default(name, optax_fn, arg, read):
    optax_default = inspect.signature(optax_fn).parameters[arg].default
    assert read(zoo.get(name)) == optax_default


def test_lion_beta_overrides_match_optax_lion_betas(params, make_grads, run_trajectory):
    grads = make_grads(PARITY_STEPS, seed=1)
    ours = symopt.to_optax(zoo.lion(beta1=0.5, beta2=0.9), learning_rate=PARITY_LR)
    theirs = optax.lion(PARITY_LR, b1=0.5, b2=0.9)
    _, our_updates, _ = run_trajectory(ours, params, grads)
    _, their_updates, _ = run_trajectory(theirs, params, grads)
    chex.assert_trees_all_close(our_updates, their_updates, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_momentum_default_is_the_one_compared_with_optax_sgd(name):
    assert zoo.get(name).hparams.momentum == SGD_MOMENTUM


# --------------------------------------------------------------------------
# Paper formulas, in NumPy, for the optimizers optax lacks.


def _addsign(w, grads, lr=1e-2, beta=0.9):
    m = np.zeros_like(w)
    for g in grads:
        m = beta * m + (1 - beta) * g
        w = w - lr * (1 + np.sign(g) * np.sign(m)) * g
        yield w


def _powersign(w, grads, lr=1e-2, beta=0.9):
    m = np.zeros_like(w)
    for g in grads:
        m = beta * m + (1 - beta) * g
        w = w - lr * np.exp(np.sign(g) * np.sign(m)) * g
        yield w


def _ades(w, grads, b1=0.08922, b2=0.0891):
    alpha = np.zeros_like(w)
    for g in grads:
        alpha = alpha - (1 - b1) * (alpha + (alpha + b2) * (alpha + g))
        w = w + alpha
        yield w


def _autolr_sign(w, grads):
    for g in grads:
        w = w - 0.0009 * np.sign(g)
        yield w


TERMS_GA_STEPS = 300


def _terms_ga(w, grads, total_steps=TERMS_GA_STEPS):
    lr, b1, b2, eps, wd, warmup = 1.2e-3, 0.8553, 0.9358, 5.4e-9, 9.7e-4, 100
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if t < warmup:
            lr_t = lr * (t + 1) / warmup
        else:
            u = min(1.0, (t - warmup) / (total_steps - warmup))
            lr_t = lr * 0.5 * (1 + np.cos(np.pi * u))
        w = w - lr_t * wd * w - lr_t * (0.7345 * np.sign(g) + 3.6352 * m / (np.sqrt(v) + eps))
        yield w


# name, reference, number of steps, gradient scale.
PAPER_FORMULAS = (
    dict(name="addsign", reference=_addsign, steps=100, grad_scale=1.0),
    dict(name="powersign", reference=_powersign, steps=100, grad_scale=1.0),
    # Small gradients keep ADES's quadratic recurrence bounded.
    dict(name="ades", reference=_ades, steps=100, grad_scale=0.05),
    dict(name="autolr_sign", reference=_autolr_sign, steps=100, grad_scale=1.0),
    # 300 steps over T = 300: 100 warmup steps and the whole cosine decay.
    dict(name="terms_ga", reference=_terms_ga, steps=TERMS_GA_STEPS, grad_scale=1.0),
)


def _reference_trajectory(reference, params, grads):
    """Runs a per-leaf NumPy reference in float64 on every leaf."""
    leaves, treedef = jax.tree.flatten(params)
    grad_leaves = treedef.flatten_up_to(grads)
    out = []
    for w, gs in zip(leaves, grad_leaves, strict=True):
        gs = np.asarray(gs, np.float64)
        out.append(np.stack(list(reference(np.asarray(w, np.float64), gs))))
    return treedef.unflatten(out)


@pytest.mark.parametrize("case", PAPER_FORMULAS, ids=_ids(PAPER_FORMULAS))
def test_follows_the_published_formula(case, params, make_grads, run_trajectory):
    grads = make_grads(case["steps"], seed=2, scale=case["grad_scale"])
    tx = symopt.to_optax(zoo.get(case["name"]), total_steps=case["steps"])

    ours, _, _ = run_trajectory(tx, params, grads)
    expected = _reference_trajectory(case["reference"], params, grads)

    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(expected))
    chex.assert_trees_all_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_ades_moves_the_weights(params, make_grads, run_trajectory):
    # Guards the ADES parity test against a trivially static trajectory.
    grads = make_grads(10, seed=2, scale=0.05)
    ours, _, _ = run_trajectory(symopt.to_optax(zoo.ades()), params, grads)
    moved = jax.tree.map(lambda p, w: np.abs(np.asarray(p[-1] - w)).max(), ours, params)
    assert min(jax.tree.leaves(moved)) > 1e-3


# --------------------------------------------------------------------------
# Structure and serialisation.


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_graph_is_valid(name):
    graph = zoo.get(name)
    assert symopt.validate(graph) is graph


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_json_round_trip_gives_an_equal_graph(name):
    graph = zoo.get(name)
    assert symopt.from_json(graph.to_json()) == graph


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_save_then_load_gives_an_equal_graph(name, tmp_path):
    graph = zoo.get(name)
    path = tmp_path / f"{name}.json"
    symopt.save(graph, path)
    assert symopt.load(path) == graph
