"""ClipMuon, symopt's discovery (zoo.clipmuon): the shipped graph computes what its
docstring and docs/discoveries.md say, and trains in Flax code like any zoo member."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import symopt
from symopt import ops, zoo
from symopt.graph import Schedule

TOTAL = 40
LR = 0.0663877


def _reference(grads: list[dict], beta: float, beta_other: float) -> list[dict]:
    """The docstring's formula, in NumPy, at a constant rate."""
    s = {k: np.zeros_like(g) for k, g in grads[0].items()}
    v = {k: np.zeros_like(g) for k, g in grads[0].items()}
    out = []
    for t, grad in enumerate(grads):
        c = 0.5 * (1 + np.cos(np.pi * t / TOTAL))
        x = c - np.tanh(c)
        gain = np.abs(np.clip(x, -1e-3, 1e-3)) ** x
        step = {}
        for k, g in grad.items():
            matrix = g.ndim == 2
            s[k] = (beta if matrix else beta_other) * (gain * g + s[k])
            v[k] = 0.999 * v[k] + 0.001 * g**2
            u = gain * g + np.clip(s[k], -1e-3, 1e-3)
            d = ops.orth(np, u) if matrix else u / np.sqrt(v[k] / (1 - 0.999 ** (t + 1)))
            step[k] = -LR * d
        out.append(step)
    return out


@pytest.mark.parametrize("beta, beta_other", [(0.868597, 0.9), (0.95, 0.5)])
def test_clipmuon_is_orthogonalised_gradient_plus_clipped_momentum(beta, beta_other):
    rng = np.random.default_rng(0)
    grads = [{"w": rng.normal(scale=3e-3, size=(6, 4)), "b": rng.normal(scale=3e-3, size=4)}
             for _ in range(TOTAL)]
    graph = zoo.clipmuon(beta=beta, beta_other=beta_other).replace(schedule=Schedule())
    with jax.enable_x64(True):
        tx = symopt.to_optax(graph, total_steps=TOTAL)
        params = {k: jnp.zeros_like(v) for k, v in grads[0].items()}
        state = tx.init(params)
        for want, g in zip(_reference(grads, beta, beta_other), grads, strict=True):
            u, state = tx.update({k: jnp.asarray(x) for k, x in g.items()}, state, params)
            np.testing.assert_allclose(u["w"], want["w"], rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(u["b"], want["b"], rtol=1e-6, atol=1e-12)


def test_clipmuon_ships_its_found_rate_and_linear_decay_to_a_tenth():
    graph = zoo.clipmuon()
    assert graph.hparams.learning_rate == LR
    assert (graph.schedule.kind, graph.schedule.alpha, graph.schedule.warmup_steps) == (
        "linear", 0.1, 0)
    assert symopt.integrity.check(graph).ok


def test_clipmuon_trains_a_flax_model():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tx = symopt.to_optax(zoo.clipmuon(), total_steps=50)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (32, 3))
    y = x @ jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])

    def loss(m):
        return optax.l2_loss(m(x), y).mean()

    first = loss(model)
    for _ in range(50):
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)
    assert loss(model) < 0.5 * first
