"""OrthAdam, symopt's discovery (zoo.orthadam): the shipped graph computes what its
docstring and docs/discoveries.md say, is judged new, and trains in Flax code like
any zoo member."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import symopt
from symopt import novelty, ops, zoo
from symopt.graph import Schedule

TOTAL = 30
LR = 0.1121577


def _reference(grads: list[dict], params: dict, beta1: float, beta2: float,
               weight_decay: float) -> list[dict]:
    """The docstring's formula, in NumPy, at a constant rate."""
    m = {k: np.zeros_like(g) for k, g in grads[0].items()}
    v = {k: np.zeros_like(g) for k, g in grads[0].items()}
    out = []
    for t, grad in enumerate(grads):
        step = {}
        for k, g in grad.items():
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g**2
            m_hat, v_hat = m[k] / (1 - beta1 ** (t + 1)), v[k] / (1 - beta2 ** (t + 1))
            d = ops.orth(np, m_hat / (np.sqrt(v_hat) + 1e-8))
            step[k] = -LR * (d + weight_decay * params[k])
        out.append(step)
    return out


@pytest.mark.parametrize("beta1, beta2, weight_decay", [(0.5, 0.999, 0.01), (0.9, 0.99, 0.0)])
def test_orthadam_is_adam_s_direction_orthogonalised_on_every_leaf(beta1, beta2, weight_decay):
    rng = np.random.default_rng(0)
    shapes = {"w": (6, 4), "conv": (3, 3, 2, 4), "b": (4,)}
    grads = [{k: rng.normal(scale=3e-3, size=s) for k, s in shapes.items()}
             for _ in range(TOTAL)]
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    graph = zoo.orthadam(beta1=beta1, beta2=beta2, weight_decay=weight_decay).replace(
        schedule=Schedule())
    with jax.enable_x64(True):
        tx = symopt.to_optax(graph, total_steps=TOTAL)
        jparams = {k: jnp.asarray(x) for k, x in params.items()}
        state = tx.init(jparams)
        for want, g in zip(_reference(grads, params, beta1, beta2, weight_decay), grads,
                           strict=True):
            u, state = tx.update({k: jnp.asarray(x) for k, x in g.items()}, state, jparams)
            for k in shapes:
                np.testing.assert_allclose(u[k], want[k], rtol=1e-6, atol=1e-12)


def _newton_schulz_of_one() -> float:
    """Where Muon's Newton-Schulz steps take a single singular value of 1."""
    a, b, c = ops.NS_COEFFICIENTS
    s = 1.0
    for _ in range(ops.NS_STEPS):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 10.0])
def test_orthadam_moves_a_bias_by_a_fixed_rms_whatever_its_gradient_s_scale(scale):
    rng = np.random.default_rng(1)
    graph = zoo.orthadam(weight_decay=0.0).replace(schedule=Schedule())
    tx = symopt.to_optax(graph, learning_rate=1.0, total_steps=TOTAL)
    params = {"b": jnp.zeros(16)}
    state = tx.init(params)
    u, _ = tx.update({"b": jnp.asarray(rng.normal(size=16) * scale)}, state, params)
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(u["b"]))), _newton_schulz_of_one(),
                               rtol=1e-4)


def test_orthadam_ships_its_found_rate_cosine_warmup_and_weight_decay():
    graph = zoo.orthadam()
    assert graph.hparams.learning_rate == LR
    assert (graph.hparams.beta1, graph.hparams.beta2, graph.hparams.weight_decay) == (
        0.5, 0.999, 0.01)
    assert (graph.schedule.kind, graph.schedule.warmup_steps, graph.schedule.alpha) == (
        "cosine", 10, 0.0)
    assert symopt.integrity.check(graph).ok


def test_orthadam_is_judged_new_and_nearest_to_adam():
    others = [name for name in zoo.names() if name != "orthadam"]
    judgement = novelty.judge(zoo.orthadam(), zoo_names=others)
    assert judgement.verdict == "new"
    assert judgement.nearest == "adam"
    assert judgement.similarity < novelty.THRESHOLD


def test_orthadam_trains_a_flax_model_at_its_shipped_rate():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tx = symopt.to_optax(zoo.orthadam(), total_steps=50)  # its shipped rate
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (32, 3))
    y = x @ jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])

    def loss(m):
        return optax.l2_loss(m(x), y).mean()

    first = loss(model)
    for _ in range(50):
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)
    assert loss(model) < 0.25 * first
