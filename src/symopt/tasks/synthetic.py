"""Synthetic objectives: an ill-conditioned quadratic, Rosenbrock, logistic regression.

They cost almost nothing to train, so they serve as sanity checks (the
integrity check of Morgan & Hougen, arXiv 2404.06679, trains candidates on a
quadratic before real training) and as quick search tasks.
Every constant comes from ``numpy.random.default_rng(seed)``: the objectives
are fixed across calls and processes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from symopt.tasks.base import (
    Data,
    Task,
    carve_validation,
    check_split,
    chunked_mean,
    sample_batch,
    to_device,
)


def _no_data() -> Data:
    return {}


def quadratic(
    *,
    steps: int = 200,
    batch_size: int = 1,
    seeds: int = 2,
    dim: int = 32,
    condition: float = 100.0,
    noise: float = 0.0,
    seed: int = 0,
) -> Task:
    """``0.5 * sum(h * (w - w*)^2)`` with curvatures ``h`` log-spaced in ``[1/condition, 1]``.

    ``w*`` is fixed by ``seed``; ``init`` draws ``w ~ N(0, I)`` from its key,
    so the expected initial loss is about ``0.5 * 2 * sum(h)`` (7.0 with the
    defaults). With ``noise > 0`` the training loss adds ``noise * <z, w>``
    with ``z ~ N(0, I)`` drawn from the step key: an unbiased gradient with
    noise of standard deviation ``noise`` per coordinate. ``eval_metrics``
    returns the noiseless loss for any split. ``batch_size`` is unused.
    """
    rng = np.random.default_rng(seed)
    h = jnp.asarray(np.logspace(-np.log10(condition), 0.0, dim), jnp.float32)
    w_star = jnp.asarray(rng.normal(size=dim), jnp.float32)

    def objective(params):
        return 0.5 * jnp.sum(h * (params["w"] - w_star) ** 2)

    def init(key):
        return {"w": jax.random.normal(key, (dim,), jnp.float32)}, {}

    def train_loss(params, model_state, key, data):
        del data
        loss = objective(params)
        if noise:
            z = jax.random.normal(key, (dim,), jnp.float32)
            loss = loss + noise * jnp.dot(z, params["w"])
        return loss, model_state

    def eval_metrics(params, model_state, data, split):
        del model_state, data
        check_split(split)
        return {"loss": objective(params)}

    return Task("quadratic", steps, batch_size, seeds, 0, init, train_loss, eval_metrics, _no_data)


def rosenbrock(
    *, steps: int = 200, batch_size: int = 1, seeds: int = 2, dim: int = 8, scale: float = 0.1
) -> Task:
    """The standard Rosenbrock function ``sum_i 100 (w_{i+1} - w_i^2)^2 + (1 - w_i)^2``.

    Minimum 0 at ``w = 1``. ``init`` draws ``w ~ N(0, scale^2 I)`` near the
    origin (loss about ``dim - 1``, 7.0 with the defaults) so that a run has
    to follow the curved valley to the minimum. Deterministic:
    ``batch_size`` and the step key are unused. The divergence bound is
    raised to 1e4, as a good optimizer's early steps can climb the valley
    walls.
    """

    def objective(params):
        w = params["w"]
        return jnp.sum(100.0 * (w[1:] - w[:-1] ** 2) ** 2 + (1.0 - w[:-1]) ** 2)

    def init(key):
        return {"w": scale * jax.random.normal(key, (dim,), jnp.float32)}, {}

    def train_loss(params, model_state, key, data):
        del key, data
        return objective(params), model_state

    def eval_metrics(params, model_state, data, split):
        del model_state, data
        check_split(split)
        return {"loss": objective(params)}

    return Task(
        "rosenbrock",
        steps,
        batch_size,
        seeds,
        0,
        init,
        train_loss,
        eval_metrics,
        _no_data,
        loss_bound=1e4,
    )


@functools.cache
def load_logistic(dim: int, num_examples: int, label_noise: float, seed: int) -> Data:
    """A fixed binary classification set for logistic regression.

    Inputs ``x ~ N(0, diag(s^2))`` with scales ``s`` log-spaced in ``[0.1, 10]``
    (an ill-conditioned design), labels ``y = [x . u + label_noise * e > 0]``
    for a fixed unit direction ``u`` and ``e ~ N(0, 1)``: linearly separable
    up to the label noise. 60/20/20 train/val/test.
    """
    rng = np.random.default_rng(seed)
    scales = np.logspace(-1.0, 1.0, dim)
    u = rng.normal(size=dim) / scales  # every feature matters in the score
    u /= np.linalg.norm(u * scales)
    x = rng.normal(size=(num_examples, dim)) * scales
    y = (x @ u + label_noise * rng.normal(size=num_examples) > 0).astype(np.int32)
    n_test = num_examples // 5
    pool, test = np.arange(num_examples - n_test), np.arange(num_examples - n_test, num_examples)
    train, val = carve_validation(len(pool), n_test, None, seed)
    return to_device(
        {
            "train": {"x": x[train], "y": y[train]},
            "val": {"x": x[val], "y": y[val]},
            "test": {"x": x[test], "y": y[test]},
        }
    )


def logistic(
    *,
    steps: int = 200,
    batch_size: int = 32,
    seeds: int = 2,
    dim: int = 16,
    num_examples: int = 1000,
    label_noise: float = 0.3,
    seed: int = 0,
) -> Task:
    """Logistic regression (weights ``w``, bias ``b``, zero init) on :func:`load_logistic`.

    The loss is the mean binary cross-entropy ``softplus(-s z)`` with ``s = 2y - 1``
    and logit ``z = x . w + b``; accuracy counts ``(z > 0) == y``. ``num_classes``
    is 2.
    """

    def logits(params, x):
        return x @ params["w"] + params["b"]

    def per_example(params, x, y):
        z = logits(params, x)
        loss = jax.nn.softplus(-(2.0 * y - 1.0) * z)
        return {"loss": loss, "accuracy": ((z > 0) == (y > 0)).astype(loss.dtype)}

    def init(key):
        del key
        return {"w": jnp.zeros((dim,), jnp.float32), "b": jnp.zeros((), jnp.float32)}, {}

    def train_loss(params, model_state, key, data):
        x, y = sample_batch(key, data["train"], batch_size)
        return per_example(params, x, y)["loss"].mean(), model_state

    def eval_metrics(params, model_state, data, split):
        del model_state
        check_split(split)
        fn = functools.partial(per_example, params)
        return chunked_mean(fn, data[split]["x"], data[split]["y"], None)

    data = functools.partial(load_logistic, dim, num_examples, label_noise, seed)
    return Task("logistic", steps, batch_size, seeds, 2, init, train_loss, eval_metrics, data)
