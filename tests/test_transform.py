"""``symopt.to_optax``: compiled graphs behave as ordinary optax optimizers.

Covers the state layout, composition with optax (``chain``,
``inject_hyperparams``, ``vmap``), the learning-rate schedule in the chain,
gradient clipping, operand decays, the random operators, a real Flax training
run and the errors. The step's own arithmetic (the schedules' formulas, NumPy
against JAX) is tests/test_interpret.py's.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import draws, interpret, zoo
from symopt.graph import Expr, Graph, Schedule, nodes, simple

from helpers import graph_state


def _step(grads, i):
    """The gradient of step ``i`` from a stacked gradient stream."""
    return jax.tree.map(lambda g: g[i], grads)


# --------------------------------------------------------------------------
# State (its optax form and its clients: tests/test_optax_state.py).

# The state fields each zoo optimizer must fill; all others stay empty.
STATE_FIELDS = (
    ("sgd", ()),
    ("momentum", ("trace",)),
    ("nesterov", ("trace",)),
    ("rmsprop", ("v",)),
    ("adam", ("m", "v")),
    ("adamw", ("m", "v")),
    ("lion", ("states",)),
    ("signsgd", ()),
    ("signum", ("m",)),
    ("addsign", ("m",)),
    ("powersign", ("m",)),
    ("ades", ("states",)),
    ("autolr_sign", ()),
    ("terms_ga", ("m", "v")),
)


def test_state_is_optax_chain_state_around_a_named_tuple_with_an_int32_step_count(params):
    state = graph_state(symopt.to_optax(zoo.adam()).init(params))
    assert isinstance(state, symopt.SymoptState)
    assert state._fields == ("count", "m", "v", "gamma", "states", "key")
    assert state.count.dtype == jnp.int32
    assert state.count.shape == ()
    assert int(state.count) == 0


@pytest.mark.parametrize("name, fields", STATE_FIELDS, ids=[n for n, _ in STATE_FIELDS])
def test_state_holds_only_the_moments_the_graph_uses(name, fields, params):
    state = symopt.to_optax(zoo.get(name)).init(params)
    ours = graph_state(state)
    present = {f for f in ("m", "v", "gamma", "states") if jax.tree.leaves(getattr(ours, f))}
    traces = [s for s in state if isinstance(s, optax.TraceState)]
    if traces:
        present.add("trace")
    assert present == set(fields)
    for field in present - {"states", "trace"}:
        chex.assert_trees_all_equal_shapes(getattr(ours, field), params)


def test_plain_sgd_state_is_only_step_counts(params):
    state = symopt.to_optax(zoo.sgd()).init(params)
    counts = jax.tree.leaves(state)
    assert len(counts) == 2  # the graph's and the learning-rate schedule's, as optax.adam
    assert all(c.shape == () and c.dtype == jnp.int32 for c in counts)


def test_moments_are_zeros_shaped_like_the_params(params):
    state = graph_state(symopt.to_optax(zoo.adam()).init(params))
    zeros = jax.tree.map(jnp.zeros_like, params)
    chex.assert_trees_all_equal(state.m, zeros)
    chex.assert_trees_all_equal(state.v, zeros)


def test_to_optax_chains_the_direction_with_optax_momentum_decay_and_learning_rate(params):
    state = symopt.to_optax(zoo.nesterov(), weight_decay=0.1).init(params)
    kinds = [type(s).__name__ for s in state]
    assert kinds == ["SymoptState", "TraceState", "EmptyState",  # add_decayed_weights
                     "ScaleByScheduleState"]


def test_count_increments_by_one_per_update(params, make_grads):
    tx = symopt.to_optax(zoo.adam())
    state = tx.init(params)
    update = jax.jit(tx.update)
    grads = make_grads(3)
    for i in range(3):
        _, state = update(_step(grads, i), state, params)
        assert int(graph_state(state).count) == i + 1
        assert graph_state(state).count.dtype == jnp.int32


# --------------------------------------------------------------------------
# Composition with optax.


def test_chains_after_clip_by_global_norm_like_optax_adam(params, make_grads, run_trajectory):
    grads = make_grads(20, seed=3, scale=3.0)
    ours = optax.chain(optax.clip_by_global_norm(1.0), symopt.to_optax(zoo.adam()))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    _, our_updates, _ = run_trajectory(ours, params, grads)
    _, their_updates, _ = run_trajectory(theirs, params, grads)
    chex.assert_trees_all_close(our_updates, their_updates, rtol=1e-5, atol=1e-9)


def test_inject_hyperparams_learning_rate_can_be_changed_between_steps(params, make_grads):
    grads = make_grads(2, seed=4)
    injected = optax.inject_hyperparams(symopt.to_optax, static_args=("graph", "total_steps"))(
        graph=zoo.adam(), learning_rate=1e-3
    )
    update = jax.jit(injected.update)
    state = injected.init(params)
    first, state = update(_step(grads, 0), state, params)
    state.hyperparams["learning_rate"] = jnp.asarray(1e-2)
    second, _ = update(_step(grads, 1), state, params)

    @jax.jit
    def reference(params, grads):
        slow = symopt.to_optax(zoo.adam(), learning_rate=1e-3)
        fast = symopt.to_optax(zoo.adam(), learning_rate=1e-2)
        first, state = slow.update(_step(grads, 0), slow.init(params), params)
        second, _ = fast.update(_step(grads, 1), state, params)
        return first, second

    ref_first, ref_second = reference(params, grads)
    # rtol: the injected learning rate is a float32 array, not a Python float.
    chex.assert_trees_all_close(first, ref_first, rtol=1e-5)
    chex.assert_trees_all_close(second, ref_second, rtol=1e-5)


def test_vmap_over_learning_rates_equals_separate_runs(params, make_grads):
    grads = make_grads(3, seed=5)
    lrs = (1e-3, 1e-2, 1e-1)

    def three_steps(lr):
        tx = symopt.to_optax(zoo.adam(), learning_rate=lr)
        state, p = tx.init(params), params
        for i in range(3):
            updates, state = tx.update(_step(grads, i), state, p)
            p = optax.apply_updates(p, updates)
        return p

    batched = jax.jit(jax.vmap(three_steps))(jnp.asarray(lrs))
    for k, lr in enumerate(lrs):
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x[k], batched),  # noqa: B023
            jax.jit(three_steps, static_argnums=0)(lr),
            rtol=1e-6,
        )


# --------------------------------------------------------------------------
# Schedules.


def test_optimizer_scales_its_update_by_the_schedule(params, make_grads, run_trajectory):
    schedule = Schedule(kind="cosine", warmup_steps=3, alpha=0.1)
    total = 10
    grads = make_grads(total, seed=6)
    graph = zoo.sgd(learning_rate=0.1).replace(schedule=schedule)
    _, updates, _ = run_trajectory(symopt.to_optax(graph, total_steps=total), params, grads)
    # The multiplier the interpreter computes (its formulas: tests/test_interpret.py).
    mult = interpret.schedule_multiplier(schedule, np, np.arange(total), total)
    expected = jax.tree.map(
        lambda g: -0.1 * mult.reshape(-1, *[1] * (g.ndim - 1)) * np.asarray(g), grads
    )
    chex.assert_trees_all_close(updates, expected, rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------
# Gradient clipping.


def test_clip_value_clips_gradients_element_wise(params, make_grads, run_trajectory):
    grads = make_grads(20, seed=7)
    ours = symopt.to_optax(zoo.adam(clip_value=0.1))
    theirs = optax.chain(optax.clip(0.1), optax.adam(1e-3))
    _, our_updates, _ = run_trajectory(ours, params, grads)
    _, their_updates, _ = run_trajectory(theirs, params, grads)
    chex.assert_trees_all_close(our_updates, their_updates, rtol=1e-5, atol=1e-9)


def test_clip_norm_clips_the_global_gradient_norm(params, make_grads, run_trajectory):
    grads = make_grads(20, seed=8, scale=3.0)
    ours = symopt.to_optax(zoo.adam(clip_norm=1.0))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    _, our_updates, _ = run_trajectory(ours, params, grads)
    _, their_updates, _ = run_trajectory(theirs, params, grads)
    chex.assert_trees_all_close(our_updates, their_updates, rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------
# Decays on operands.

DECAYS = (
    ("decay_linear", Expr((), "decay_linear"), lambda f: 1 - f),
    (
        "decay_linear_squared",
        nodes(("mul", "identity", "decay_linear", "identity", "decay_linear")),
        lambda f: (1 - f) ** 2,
    ),
)


@pytest.mark.parametrize("decay, value", [d[1:] for d in DECAYS], ids=[d[0] for d in DECAYS])
def test_decay_multiplies_its_operand(decay, value, params, make_grads, run_trajectory):
    total = 8
    graph = simple("w_0.0001", decays=(("w_0.0001", decay),), hparams=symopt.Hyperparams(1.0))
    tx = symopt.to_optax(graph, total_steps=total)
    ps, updates, _ = run_trajectory(tx, params, make_grads(total))
    frac = np.arange(total) / total
    # The weights each update saw: the initial ones, then the trajectory.
    before = jax.tree.map(lambda w, p: np.concatenate([np.asarray(w)[None], p[:-1]]), params, ps)
    expected = jax.tree.map(
        lambda w: -1e-4 * value(frac).reshape(-1, *[1] * (w.ndim - 1)) * w, before
    )
    chex.assert_trees_all_close(updates, expected, rtol=1e-5, atol=1e-12)


# --------------------------------------------------------------------------
# Random operators: noise and dropout.

NOISE_GRAPH = simple("noise")
DROPOUT_GRAPH = Graph(update=nodes(("keep_left", "drop_0.5", "g", "identity", "g")))
RANDOM_GRAPHS = (("noise", NOISE_GRAPH), ("dropout", DROPOUT_GRAPH))
_RANDOM_IDS = [n for n, _ in RANDOM_GRAPHS]
_RANDOM = [g for _, g in RANDOM_GRAPHS]

# One leaf is enough here and keeps the repeated compiles cheap.
_W = {"w": jnp.linspace(0.5, 1.5, 64)}
_G = {"w": jnp.linspace(-1.0, 1.0, 64)}


def _two_updates(tx):
    """The updates of two steps with the same gradient, and the states."""
    update = jax.jit(tx.update)
    state0 = tx.init(_W)
    first, state1 = update(_G, state0, _W)
    second, state2 = update(_G, state1, _W)
    return (np.asarray(first["w"]), np.asarray(second["w"])), (state0, state1, state2)


@pytest.mark.parametrize("graph", _RANDOM, ids=_RANDOM_IDS)
def test_random_graph_keeps_its_seed_words_in_its_state(graph):
    _, states = _two_updates(symopt.to_optax(graph, seed=5))
    for state in states:  # counter-based draws: the step count advances the stream
        np.testing.assert_array_equal(graph_state(state).key, draws.seed_words(5))


@pytest.mark.parametrize("draw", [draws.noise_draws, draws.uniform_draws])
def test_numpy_and_jax_draw_the_same_numbers(draw):
    words = draws.seed_words(11)
    ours = draw(np, np.asarray(words), 7, 3, (5, 6), np.float32)
    theirs = jax.jit(lambda w, t: draw(jnp, w, t, 3, (5, 6), jnp.float32))(words, 7)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_draws_are_uniform_or_normal_and_differ_by_seed_step_and_leaf():
    words = draws.seed_words(0)
    u = np.asarray(draws.uniform_draws(jnp, words, 0, 0, (200_000,)))
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_allclose(np.histogram(u, bins=10, range=(0, 1))[0] / u.size, 0.1, atol=0.005)
    z = np.asarray(draws.noise_draws(jnp, words, 0, 0, (200_000,)))
    np.testing.assert_allclose([z.mean(), z.std(), np.mean(np.abs(z) > 1.96)], [0, 1, 0.05],
                               atol=0.01)
    assert np.all(np.isfinite(z))  # the tails too: never erfinv(+-1)
    np.testing.assert_allclose(np.quantile(z, [0.001, 0.01, 0.99, 0.999]),
                               [-3.09, -2.326, 2.326, 3.09], atol=0.1)
    variants = [draws.uniform_draws(jnp, w, t, i, (64,)) for w, t, i in (
        (words, 0, 0), (draws.seed_words(1), 0, 0), (words, 1, 0), (words, 0, 1))]
    for a in range(4):
        for b in range(a):
            assert abs(np.corrcoef(variants[a], variants[b])[0, 1]) < 0.5


def test_deterministic_graph_has_no_prng_key(params):
    assert graph_state(symopt.to_optax(zoo.adam()).init(params)).key == ()


@pytest.mark.parametrize("graph", _RANDOM, ids=_RANDOM_IDS)
def test_random_graph_is_deterministic_for_a_fixed_seed(graph):
    first, _ = _two_updates(symopt.to_optax(graph, seed=3))
    second, _ = _two_updates(symopt.to_optax(graph, seed=3))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("graph", _RANDOM, ids=_RANDOM_IDS)
def test_random_graph_differs_across_seeds(graph):
    first, _ = _two_updates(symopt.to_optax(graph, seed=3))
    second, _ = _two_updates(symopt.to_optax(graph, seed=4))
    assert not np.array_equal(first[0], second[0])


@pytest.mark.parametrize("graph", _RANDOM, ids=_RANDOM_IDS)
def test_random_graph_draws_fresh_randomness_each_step(graph):
    (first, second), _ = _two_updates(symopt.to_optax(graph))
    assert not np.array_equal(first, second)


def test_noise_operand_is_standard_normal():
    w = {"w": jnp.zeros(4096)}
    tx = symopt.to_optax(NOISE_GRAPH, learning_rate=1.0)
    updates, _ = jax.jit(tx.update)(w, tx.init(w), w)
    noise = -np.asarray(updates["w"])
    assert abs(noise.mean()) < 0.1
    assert abs(noise.std() - 1.0) < 0.1


def test_dropout_zeroes_or_rescales_each_gradient_entry():
    g = {"w": jnp.linspace(0.5, 1.5, 1000)}
    tx = symopt.to_optax(DROPOUT_GRAPH, learning_rate=1.0)
    updates, _ = jax.jit(tx.update)(g, tx.init(g), g)
    d = -np.asarray(updates["w"])
    kept = d != 0
    np.testing.assert_allclose(d[kept], 2.0 * np.asarray(g["w"])[kept], rtol=1e-6)
    assert 0.4 < kept.mean() < 0.6


# --------------------------------------------------------------------------
# A real training run: Flax MLP on scikit-learn digits.


# slow: 90% needs the full training run; by default the zoo's Adam steps as optax's does
# (tests/test_zoo.py::test_matches_optax_over_100_steps) and optax's Adam trains the digits
# MLP past its floor (tests/test_tasks.py's task contract).
@pytest.mark.slow
def test_adam_trains_a_flax_mlp_on_digits_to_90_percent():
    import flax.linen as nn  # noqa: PLC0415
    from sklearn.datasets import load_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # pixel values are 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    model = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(10)])
    num_steps = 100
    tx = symopt.to_optax(zoo.adam(), learning_rate=1e-2, total_steps=num_steps)
    params = jax.jit(model.init)(jax.random.key(0), x_train[:1])
    state = tx.init(params)

    @jax.jit
    def train_step(params, state, x, y):
        def loss_fn(p):
            logits = model.apply(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    for _ in range(num_steps):  # full batch
        params, state = train_step(params, state, x_train, y_train)

    logits = jax.jit(model.apply)(params, x_test)
    accuracy = np.mean(np.argmax(logits, axis=-1) == y_test)
    assert accuracy >= 0.9


# --------------------------------------------------------------------------
# Errors.


def test_graph_error_is_a_value_error():
    assert issubclass(symopt.GraphError, ValueError)


@pytest.mark.parametrize(
    "graph",
    [
        simple("no_such_operand"),
        zoo.adam().replace(momentum="heavy"),
        Graph(update=nodes(("add", "identity", "g", "identity", "n0"))),  # a cycle
    ],
    ids=["unknown-operand", "unknown-momentum", "cycle"],
)
def test_to_optax_rejects_an_invalid_graph(graph):
    with pytest.raises(symopt.GraphError):
        symopt.to_optax(graph)


def test_to_optax_rejects_nonpositive_total_steps():
    with pytest.raises(ValueError, match="total_steps"):
        symopt.to_optax(zoo.adam(), total_steps=0)


def test_update_without_params_raises_a_clear_value_error(params):
    tx = symopt.to_optax(zoo.adam())
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


def test_an_optax_schedule_as_learning_rate_is_called_with_the_step_count(params):
    schedule = optax.linear_schedule(1e-2, 0.0, transition_steps=4)
    ours = symopt.to_optax(zoo.sgd(), learning_rate=schedule)
    theirs = optax.sgd(schedule)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda x, step=step: jnp.full_like(x, 1.0 + step), params)
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)


@pytest.mark.parametrize("draw", [draws.noise_draws, draws.uniform_draws])
def test_one_draw_over_all_weights_equals_the_draws_leaf_by_leaf(draw):
    words, shapes = draws.seed_words(2), [(3, 4), (4,), (2, 2, 2)]
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    leaf_by_leaf = [draw(np, words, 5, o, s).ravel()
                    for o, s in zip(offsets[:-1], shapes, strict=True)]
    np.testing.assert_array_equal(np.concatenate(leaf_by_leaf),
                                  draw(np, words, 5, 0, (offsets[-1],)))
