"""The offline task suite: ``symopt.tasks.sequences`` (token sequences) and
``symopt.tasks.suite`` (MSE tasks, noisy quadratic).

XLA compiles dominate on the 2-core CI runner, so each task's training
program compiles once, in one test (through :func:`symopt.evaluate.evaluate_baseline`,
the loop the search and its Adam baseline use, at a short budget); the
other tests use shapes (``jax.eval_shape``), small eager calls, or the
NumPy data alone.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from symopt import evaluate, tasks
from symopt.tasks import base, models, sequences, suite

SUITE = ("seq_transformer", "seq_rnn", "digits_autoencoder", "regression", "noisy_quadratic")
DATA_TASKS = SUITE[:4]


def parameter_count(task) -> int:
    """The number of parameters ``task.init`` makes (shapes only; nothing runs)."""
    params, _ = jax.eval_shape(task.init, jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# --------------------------------------------------------------------------
# Registry and options.


def test_the_suite_is_registered_as_offline_tasks():
    assert set(SUITE) <= set(tasks.OFFLINE_TASKS) and set(SUITE) <= set(tasks.names())
    for name in SUITE:
        assert tasks.get(name).name == name
        assert {"steps", "batch_size", "seeds", "param_scale"} <= set(tasks.options(name))


@pytest.mark.parametrize("name", SUITE)
def test_unknown_option_is_rejected_by_the_registry(name):
    with pytest.raises(ValueError, match="has no option 'learning_rate'"):
        tasks.get(name, learning_rate=0.1)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("seq_transformer", {"activation": "swish"}, "unknown activation"),
        ("seq_transformer", {"problem": "copy"}, "unknown problem"),
        ("seq_transformer", {"width": 30, "heads": 4}, "multiple of heads"),
        ("seq_transformer", {"problem": "markov", "causal": False}, "needs causal"),
        ("seq_rnn", {"length": 8, "vocab": 2}, "the splits need"),
        ("regression", {"dataset": "boston"}, "unknown dataset"),
        ("digits_autoencoder", {"param_scale": 0.0}, "param_scale must be positive"),
    ],
)
def test_invalid_option_values_fail_when_the_task_is_built(name, options, message):
    with pytest.raises(ValueError, match=message):
        tasks.get(name, **options)


@pytest.mark.parametrize(
    "name, small, large",
    [
        ("seq_transformer", {"width": 16}, {"width": 32}),
        ("seq_transformer", {"depth": 1}, {"depth": 2}),
        ("seq_rnn", {"hidden": 16}, {"hidden": 32}),
        ("digits_autoencoder", {"bottleneck": 4}, {"bottleneck": 8}),
        ("regression", {"depth": 1}, {"depth": 3}),
        ("noisy_quadratic", {"dim": 8}, {"dim": 32}),
    ],
)
def test_size_options_change_the_parameter_count(name, small, large):
    assert parameter_count(tasks.get(name, **small)) < parameter_count(
        tasks.get(name, **large)
    )


def test_regression_parameter_count_follows_width_and_depth():
    for width, depth in [(8, 1), (16, 3)]:
        want = 11 * width + (depth - 1) * (width + 1) * width + width + 1
        assert parameter_count(tasks.get("regression", width=width, depth=depth)) == want


def test_activation_option_changes_the_model_function():
    relu, tanh = tasks.get("regression"), tasks.get("regression", activation="tanh")
    key = jax.random.key(0)
    params, state = relu.init(key)
    data = relu.data()
    loss_relu = relu.eval_metrics(params, state, data, "val")["loss"]
    loss_tanh = tanh.eval_metrics(params, state, data, "val")["loss"]
    assert np.isfinite(loss_relu) and np.isfinite(loss_tanh)
    assert not np.isclose(loss_relu, loss_tanh)


def test_param_scale_keeps_the_losses_and_scales_params_and_gradients():
    scale = 10.0
    plain, scaled = tasks.get("regression"), tasks.get("regression", param_scale=scale)
    assert base.reparametrize(plain, 1.0) is plain
    key, data = jax.random.key(3), plain.data()

    @jax.jit
    def run(key):  # both tasks in one program: init, loss, gradients, test loss
        out = []
        for task in (plain, scaled):
            params, state = task.init(key)

            def loss_of(p, task=task, state=state):
                return task.train_loss(p, state, key, data)[0]

            loss, grads = jax.value_and_grad(loss_of)(params)
            out.append((params, loss, grads, task.eval_metrics(params, state, data, "test")))
        return out

    (p0, l0, g0, e0), (p1, l1, g1, e1) = run(key)
    for a, b in zip(_leaves(p0), _leaves(p1), strict=True):
        np.testing.assert_allclose(b * scale, a, rtol=1e-6)
    for a, b in zip(_leaves(g0), _leaves(g1), strict=True):
        np.testing.assert_allclose(b, scale * a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    np.testing.assert_allclose(e1["loss"], e0["loss"], rtol=1e-5)


# --------------------------------------------------------------------------
# Data.


@pytest.mark.parametrize("name", DATA_TASKS)
def test_data_is_cached_with_disjoint_splits_of_float_inputs(name):
    task = tasks.get(name)
    data = task.data()
    assert task.data() is data and set(data) == {"train", "val", "test"}
    rows = {}
    for split, arrays in data.items():
        x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
        assert x.dtype == np.float32 and len(x) == len(y) > 0
        assert y.dtype == (np.float32 if name == "regression" else np.int32)  # else labels
        if task.num_classes:
            assert y.min() >= 0 and y.max() < task.num_classes
        rows[split] = {r.tobytes() for r in x.reshape(len(x), -1)}
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


@pytest.mark.parametrize("problem", list(sequences.SEQUENCE_PROBLEMS))
def test_sequence_data_is_distinct_fixed_by_the_seed_and_follows_the_rule(problem):
    vocab, length = 16, 12
    data = sequences.load_sequences.__wrapped__(problem, length, vocab, 0)
    again = sequences.load_sequences.__wrapped__(problem, length, vocab, 0)
    other = sequences.load_sequences.__wrapped__(problem, length, vocab, 1)
    for split, size in sequences.SEQUENCE_SPLITS.items():
        np.testing.assert_array_equal(data[split]["x"], again[split]["x"])
        np.testing.assert_array_equal(data[split]["y"], again[split]["y"])
        assert data[split]["x"].shape == data[split]["y"].shape == (size, length)
    assert not np.array_equal(data["train"]["x"], other["train"]["x"])
    x = np.concatenate([np.asarray(data[s]["x"]) for s in data]).astype(np.int64)
    y = np.concatenate([np.asarray(data[s]["y"]) for s in data])
    assert len(np.unique(x, axis=0)) == len(x)
    assert x.min() >= 0 and x.max() < vocab and y.min() >= 0 and y.max() < vocab
    if problem == "markov":
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # the next token
    else:
        rule = {
            "running_sum": lambda x: np.cumsum(x, axis=1) % vocab,
            "reverse": lambda x: x[:, ::-1],
            "sort": lambda x: np.sort(x, axis=1),
        }[problem]
        np.testing.assert_array_equal(y, rule(x))


def test_markov_targets_are_predictable_from_the_previous_two_tokens():
    data = sequences.load_sequences("markov", 16, 16, 0)
    x = np.asarray(data["train"]["x"]).astype(int)
    y = np.asarray(data["train"]["y"])
    context = (x[:, 1:] * 16 + x[:, :-1]).ravel()  # (x_{t-1}, x_t) -> y_t = x_{t+1}
    counts = np.zeros((256, 16))
    np.add.at(counts, (context, y[:, 1:].ravel()), 1)
    top = counts.max(axis=1).sum() / counts.sum()
    assert top > 0.45  # uniform guessing: 1/16


@pytest.mark.parametrize("dataset", suite.REGRESSION_DATASETS)
def test_regression_data_is_standardised_on_the_training_split(dataset):
    data = suite.load_regression(dataset, 0)
    x, y = np.asarray(data["train"]["x"]), np.asarray(data["train"]["y"])
    assert x.shape[1] == 10 and y.ndim == 1
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose([y.mean(), y.std()], [0.0, 1.0], atol=1e-4)


def test_digits_autoencoder_shares_the_digits_data():
    assert tasks.get("digits_autoencoder").data() is tasks.get("digits_mlp").data()


# --------------------------------------------------------------------------
# Models.


@pytest.mark.parametrize(
    "module",
    [
        models.Transformer(
            vocab=7, length=6, width=8, depth=1, heads=2, num_classes=7, causal=True
        ),
        models.GRU(vocab=7, hidden=8, num_classes=7),
    ],
    ids=["causal_transformer", "gru"],
)
def test_causal_sequence_models_ignore_later_tokens(module):
    variables = base.init_variables(module, jax.random.key(0), (6,))
    x = jnp.asarray([[1, 2, 3, 4, 5, 6]], jnp.float32)
    changed = x.at[0, 4].set(0.0)
    apply = jax.jit(module.apply)
    a, b = apply(variables, x), apply(variables, changed)
    assert a.shape == (1, 6, 7)
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_full_attention_sees_later_tokens():
    module = models.Transformer(vocab=7, length=6, width=8, depth=1, heads=2, num_classes=7)
    variables = base.init_variables(module, jax.random.key(0), (6,))
    x = jnp.asarray([[1, 2, 3, 4, 5, 6]], jnp.float32)
    apply = jax.jit(module.apply)
    assert not np.allclose(apply(variables, x)[:, 0], apply(variables, x.at[0, 5].set(0))[:, 0])


def test_init_variables_gives_embeddings_flax_variance_and_layernorm_ones():
    module = models.Transformer(vocab=50, length=64, width=64, depth=1, heads=2, num_classes=50)
    variables = base.init_variables(module, jax.random.key(0), (64,))
    flax_shapes = jax.eval_shape(
        lambda k: module.init(k, jnp.zeros((1, 64)), train=False), jax.random.key(0)
    )
    assert jax.tree.structure(variables) == jax.tree.structure(dict(flax_shapes))
    params = variables["params"]
    for table in (params["token"]["embedding"], params["position"]["embedding"]):
        assert abs(float(table.std()) * np.sqrt(64) - 1) < 0.1
    np.testing.assert_array_equal(params["ln_final"]["scale"], 1.0)
    np.testing.assert_array_equal(params["ln_final"]["bias"], 0.0)
    qkv = params["attention_0"]["qkv"]["kernel"]  # fan-in 64, not 64 * heads
    assert abs(float(qkv.std()) * np.sqrt(64) - 1) < 0.1


# --------------------------------------------------------------------------
# The Task contract, and training with Adam.


@pytest.mark.parametrize("name", SUITE)
def test_init_train_loss_and_eval_metrics_have_the_contract_shapes(name):
    """Shapes and dtypes only (``jax.eval_shape``: nothing compiles); the values
    are checked by the training test below and, at the default budget, by
    ``tests/test_tasks.py``'s contract test over every offline task."""
    task = tasks.get(name)
    data = task.data()
    key = jax.random.key(0)
    params, state = jax.eval_shape(task.init, key)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params)) and state == {}
    grad_fn = jax.value_and_grad(task.train_loss, has_aux=True)
    (loss, new_state), grads = jax.eval_shape(grad_fn, params, state, key, data)
    assert loss.shape == () and loss.dtype == np.float32 and new_state == {}
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    expected = {"loss", "accuracy"} if task.num_classes else {"loss"}

    def metrics_shapes(split):  # the split is a string, not a traced argument
        evaluate_split = functools.partial(task.eval_metrics, split=split)
        return jax.eval_shape(evaluate_split, params, state, data)

    for split in ("val", "test"):
        metrics = metrics_shapes(split)
        assert set(metrics) == expected
        assert all(v.shape == () and v.dtype == np.float32 for v in metrics.values())
    with pytest.raises(ValueError, match="split"):
        metrics_shapes("train")


@pytest.mark.parametrize("name", SUITE)
def test_init_draws_different_params_per_key(name):
    init = jax.jit(tasks.get(name).init)
    (a, _), (b, _) = init(jax.random.key(0)), init(jax.random.key(1))
    assert all(np.all(np.isfinite(leaf)) for leaf in _leaves(a))
    assert any(not np.allclose(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


# Adam for a short budget, at 1e-3 and at a learning rate tuned for the
# default budget: (steps, tuned learning rate, the largest ratio of val loss
# to initial training loss at the tuned rate, with a margin over what Adam
# reaches, so that the bound fails only when training stops working).
SHORT_RUNS = {
    "seq_transformer": (150, 1e-2, 0.85),
    "seq_rnn": (200, 1e-2, 0.6),  # the chain's entropy bounds the loss
    "digits_autoencoder": (150, 3e-3, 0.3),
    "regression": (150, 1e-2, 0.2),
    "noisy_quadratic": (150, 3e-3, 0.2),
}


# Each run compiles its task's training program: by default the cheapest, the models
# under `pytest -m slow`.
@pytest.mark.parametrize("name", [n if n == "noisy_quadratic"
                                  else pytest.param(n, marks=pytest.mark.slow) for n in SUITE])
def test_adam_lowers_the_loss_in_a_short_run(name):
    steps, tuned, ratio = SHORT_RUNS[name]
    task = tasks.get(name, steps=steps)
    metrics = evaluate.evaluate_baseline(optax.adam, (jnp.asarray([1e-3, tuned]),), task, seeds=1)
    assert not metrics.diverged.any()
    for field in ("initial_loss", "train_loss", "val_loss", "test_loss"):
        assert np.all(np.isfinite(getattr(metrics, field))), field
    assert np.all(metrics.val_loss < metrics.initial_loss)  # at 1e-3 too
    assert metrics.val_loss[1, 0] < ratio * metrics.initial_loss[1, 0]
    if task.num_classes:
        assert metrics.val_accuracy[1, 0] > 1 / task.num_classes + 0.05  # above chance
    else:
        assert np.all(np.isnan(metrics.val_accuracy))


# --------------------------------------------------------------------------
# The noisy quadratic model.


def test_noisy_quadratic_noise_is_unbiased_and_scales_with_curvature_over_batch():
    dim, noise, scale = 8, 1.0, 0.2
    h = np.logspace(-2.0, 0.0, dim)
    keys = jax.random.split(jax.random.key(1), 2048)
    for batch_size in (1, 16):
        task = tasks.get(
            "noisy_quadratic", dim=dim, noise=noise, scale=scale, batch_size=batch_size
        )

        @jax.jit
        def gradients(keys, task=task):
            params, state = task.init(keys[0])
            true = jax.grad(lambda p: task.eval_metrics(p, state, {}, "val")["loss"])(params)["w"]
            loss_and_grad = jax.value_and_grad(lambda p, k: task.train_loss(p, state, k, {})[0])
            losses, noisy = jax.vmap(lambda k: loss_and_grad(params, k))(keys)
            return true, noisy["w"], losses

        true, noisy, losses = gradients(keys)
        assert np.all(losses >= 0)
        std = noise * np.sqrt(h / batch_size) / scale
        np.testing.assert_allclose((noisy - true).mean(0) / std, 0.0, atol=4 / np.sqrt(len(keys)))
        np.testing.assert_allclose((noisy - true).std(0), std, rtol=0.1)


def test_noisy_quadratic_evaluates_the_noise_free_objective():
    task = tasks.get("noisy_quadratic", seed=3)
    assert task.data() == {} and task.num_classes == 0
    params, state = jax.vmap(task.init)(jax.random.split(jax.random.key(0), 512))
    losses = jax.vmap(lambda p: task.eval_metrics(p, state, {}, "test")["loss"])(params)
    h = np.logspace(-2.0, 0.0, 32)
    w_star = np.random.default_rng(3).normal(size=32)  # in units of ``scale``
    expected = 0.5 * np.sum(h * (1.0 + w_star**2))  # E over init w ~ scale * N(0, I)
    assert abs(float(losses.mean()) / expected - 1) < 0.1
    at_minimum = {"w": jnp.asarray(0.2 * w_star, jnp.float32)}
    assert float(task.eval_metrics(at_minimum, {}, {}, "val")["loss"]) < 1e-10
