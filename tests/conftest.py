"""Fixtures shared by the tests: a tiny parameter pytree, gradient streams,
and a jit-compiled ``lax.scan`` training trajectory for any optimizer.

Everything is kept tiny because the CI runner has 2 CPU cores and XLA
compiles dominate the test time: each optimizer trajectory compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from symopt import run as run_lib

from helpers import tiny_config


def _tiny_params() -> dict:
    """A nested dict/list pytree: leaves of different shapes, one a scalar."""
    rng = np.random.default_rng(0)
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return {
        "dense": {"w": normal(3, 4), "b": normal(4)},
        "blocks": [normal(2, 1, 3), normal()],
    }


@pytest.fixture(scope="session")
def params() -> dict:
    """A tiny nested parameter pytree (float32)."""
    return _tiny_params()


@pytest.fixture(scope="session")
def make_grads(params):
    """``make_grads(num_steps, seed=0, scale=1.0)``: a stream of random gradients.

    Returns a pytree shaped like ``params`` whose leaves carry a leading axis of
    length ``num_steps`` (one gradient per step, for ``lax.scan``).
    """

    def make(num_steps: int, seed: int = 0, scale: float = 1.0):
        leaves, treedef = jax.tree.flatten(params)
        rng = np.random.default_rng(seed)
        return treedef.unflatten(
            [
                jnp.asarray(scale * rng.normal(size=(num_steps, *leaf.shape)), jnp.float32)
                for leaf in leaves
            ]
        )

    return make


def trajectory(tx: optax.GradientTransformation, params, grads):
    """Runs ``tx`` over a gradient stream under ``jit`` + ``lax.scan``.

    Args:
      tx: the optimizer.
      params: the initial parameters.
      grads: pytree like ``params`` with a leading step axis.

    Returns:
      ``(params_after_each_step, updates_of_each_step, final_state)``; the
      first two have the leading step axis.
    """

    @jax.jit
    def run(params, grads):
        def step(carry, g):
            p, state = carry
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
            return (p, state), (p, updates)

        (_, state), (ps, us) = jax.lax.scan(step, (params, tx.init(params)), grads)
        return ps, us, state

    return run(params, grads)


@pytest.fixture(scope="session")
def run_trajectory():
    """The :func:`trajectory` helper, as a fixture."""
    return trajectory


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """An uninterrupted tiny search, and what it logged (one per worker: the
    modules that read it share it; none of them writes into its workdir)."""
    workdir = tmp_path_factory.mktemp("finished")
    lines: list[str] = []
    result = run_lib.run(tiny_config(), workdir, log=lines.append)
    return result, lines
