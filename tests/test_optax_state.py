"""``to_optax``'s state is in optax's form, so the clients of optax states work:
Flax NNX and linen training, orbax checkpoints, ``optax.tree_utils`` and sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import symopt
from symopt import zoo
from symopt.spaces import nos

from helpers import graph_state

STEPS = 300
RANDOM_GRAPHS = nos.sample_checked(np.random.default_rng(7), 50)
OPTIMIZERS = [(n, zoo.get(n)) for n in zoo.names()] + [
    (f"random{i}", g) for i, g in enumerate(RANDOM_GRAPHS)]
DEFAULT = OPTIMIZERS[:len(zoo.names()) + 6]  # the zoo and 6 random graphs; all 50 are slow
SLOW = OPTIMIZERS[len(DEFAULT):]


def _data(steps: int):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(steps, 8, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(steps, 8, 2)), jnp.float32)
    return x, y


def _loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def _optax_loop(graph, params, apply, steps: int, start_state=None, first: int = 0):
    """The plain optax loop: jit(update) on a params pytree."""
    tx = symopt.to_optax(graph, total_steps=steps)
    state = tx.init(params) if start_state is None else start_state
    x, y = _data(steps)

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(lambda p: jnp.mean((apply(p, x) - y) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(first, steps):
        params, state = step(params, state, x[i], y[i])
    return params, state


def _nnx_train(graph, steps: int):
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, initial = nnx.split(model, nnx.Param)
    initial = jax.tree.map(jnp.copy, initial)  # a snapshot: training updates the model in place
    optimizer = nnx.Optimizer(model, symopt.to_optax(graph, total_steps=steps), wrt=nnx.Param)
    x, y = _data(steps)

    @nnx.jit
    def step(model, optimizer, x, y):
        optimizer.update(model, nnx.grad(_loss)(model, x, y))

    for i in range(steps):
        step(model, optimizer, x[i], y[i])
    return graphdef, initial, nnx.state(model, nnx.Param)


def _check_nnx_matches_optax(graph):
    graphdef, initial, trained = _nnx_train(graph, STEPS)

    def apply(params, x):
        return nnx.merge(graphdef, params)(x)

    expected, _ = _optax_loop(graph, initial, apply, STEPS)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, trained),
                                jax.tree.map(np.asarray, expected), rtol=1e-5, atol=1e-6)


def _slow_but(names, pairs):
    """``pairs`` as parameters, all but ``names`` marked slow."""
    return [pytest.param(n, g, id=n, marks=() if n in names else pytest.mark.slow)
            for n, g in pairs]


# 300 steps of two training loops each: by default Adam, the rest of the zoo and the
# 6 random graphs under `pytest -m slow`.
@pytest.mark.parametrize("name, graph", _slow_but(("adam",), DEFAULT))
def test_nnx_optimizer_trains_like_a_plain_optax_loop(name, graph):
    _check_nnx_matches_optax(graph)


@pytest.mark.slow
@pytest.mark.parametrize("name, graph", SLOW, ids=[n for n, _ in SLOW])
def test_nnx_optimizer_trains_like_a_plain_optax_loop_on_more_random_graphs(name, graph):
    _check_nnx_matches_optax(graph)


# Adam by default, the others under `pytest -m slow` (likewise for orbax, below).
@pytest.mark.parametrize("name", ["adam", *(pytest.param(n, marks=pytest.mark.slow)
                                            for n in ("lion", "ades", "terms_ga", "random0"))])
def test_a_linen_train_state_trains_like_a_plain_optax_loop(name):
    graph = dict(OPTIMIZERS)[name]
    model = nn.Dense(2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    tx = symopt.to_optax(graph, total_steps=STEPS)
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    x, y = _data(STEPS)

    @jax.jit
    def step(state, x, y):
        def loss(p):
            return jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)
        return state.apply_gradients(grads=jax.grad(loss)(state.params))

    for i in range(STEPS):
        state = step(state, x[i], y[i])
    expected, _ = _optax_loop(graph, params, lambda p, x: model.apply({"params": p}, x), STEPS)
    chex.assert_trees_all_close(state.params, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", *(pytest.param(n, marks=pytest.mark.slow)
                                            for n in ("lion", "nesterov", "random1"))])
def test_an_orbax_checkpoint_taken_mid_training_continues_bit_identically(name, tmp_path):
    import orbax.checkpoint as ocp

    graph = dict(OPTIMIZERS)[name]
    model = nn.Dense(2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]

    def apply(p, x):
        return model.apply({"params": p}, x)

    half = STEPS // 2
    mid_params, mid_state = _optax_loop(graph, params, apply, half)
    path = tmp_path / "ckpt"
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, {"params": mid_params, "opt_state": mid_state})
    with ocp.StandardCheckpointer() as checkpointer:
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                              {"params": mid_params, "opt_state": mid_state})
        restored = checkpointer.restore(path, target)
    opt_state = type(mid_state)(**restored["opt_state"]) if isinstance(
        restored["opt_state"], dict) else restored["opt_state"]
    # The same loop to the end, from the restored and from the in-memory state.
    resumed, _ = _continue(graph, restored["params"], opt_state, apply, half)
    straight, _ = _continue(graph, mid_params, mid_state, apply, half)
    chex.assert_trees_all_equal(resumed, straight)


def _continue(graph, params, state, apply, first):
    return _optax_loop(graph, params, apply, STEPS, start_state=state, first=first)


@pytest.mark.parametrize("name, moments", [("adam", ("m", "v")), ("signum", ("m",)),
                                           ("momentum", ("trace",)), ("rmsprop", ("v",)),
                                           ("lion", ("states",))])
def test_tree_get_finds_each_moment_as_a_params_shaped_tree(name, moments, params):
    state = symopt.to_optax(zoo.get(name), total_steps=100).init(params)
    for moment in moments:
        found = optax.tree_utils.tree_get(state, moment)
        for tree in found if moment == "states" else (found,):
            chex.assert_trees_all_equal_shapes(tree, params)


@pytest.mark.parametrize("name", [n for n, _ in DEFAULT])
def test_unused_state_fields_are_empty_and_no_field_holds_none(name, params):
    chained = symopt.to_optax(dict(OPTIMIZERS)[name], total_steps=100).init(params)
    state = graph_state(chained)
    assert state.count.dtype == jnp.int32 and state.count.shape == ()
    for tree in (state.m, state.v, state.gamma, *state.states):
        assert tree == () or jax.tree.structure(tree) == jax.tree.structure(params)
    assert None not in jax.tree.leaves(chained, is_leaf=lambda x: x is None)


SHARDED_SCRIPT = """
import json, jax, jax.numpy as jnp, numpy as np, optax, symopt
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.asarray(jax.devices()), ("x",))
params = {"w": jnp.ones((8, 3)), "b": jnp.ones(4)}
spec = {"w": NamedSharding(mesh, P("x", None)), "b": NamedSharding(mesh, P("x"))}
params = jax.device_put(params, spec)
out = {}
for name in ("adam", "lion", "nesterov"):
    tx = symopt.to_optax(symopt.zoo.get(name))
    state = jax.jit(tx.init)(params)
    updates, state = jax.jit(tx.update)(params, state, params)
    get = lambda name: optax.tree_utils.tree_get(state, name, ())
    trees = [get(f) for f in ("m", "v", "gamma", "trace") if get(f) != ()]
    trees += list(get("states"))
    same = lambda a, k: a.sharding.is_equivalent_to(params[k].sharding, a.ndim)
    out[name] = [[same(t[k], k) for k in ("w", "b")] for t in trees]
    out[name + "_updates"] = [same(updates[k], k) for k in ("w", "b")]
print(json.dumps({"devices": jax.device_count(), **out}))
"""


def test_state_fields_take_their_parameters_sharding_over_four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    for name in ("adam", "lion", "nesterov"):
        assert result[name], name
        for same in result[name]:
            assert same == [True, True], name
        assert result[name + "_updates"] == [True, True]
