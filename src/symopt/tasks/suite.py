"""The offline task suite: more task families for testing found optimizers.

The default search tasks (:mod:`symopt.tasks.offline`, :mod:`symopt.tasks.synthetic`)
are MLPs, small ConvNets and convex objectives. An optimizer found on them
should also be tried on models and losses it was not searched on; this
module owns those families, each offline (no download) and small enough for
a population on CPU:

* ``seq_transformer``: a pre-LayerNorm transformer on token sequences,
  per-token cross-entropy: by default a causal language model of an
  order-2 Markov chain, or the algorithmic problems reverse, sort and
  running sum;
* ``seq_rnn``: a GRU on the same sequences (the running parity by default);
* ``digits_autoencoder``: an MLP autoencoder on scikit-learn digits, MSE;
* ``regression``: an MLP regressor on Friedman #1 or diabetes, MSE;
* ``noisy_quadratic``: the noisy quadratic model (gradient noise with
  covariance proportional to the curvature), scored on the noise-free loss.

Options vary a family in the way of ``learned_optimization``'s task
augmentation: width, depth, activation, batch size, and ``param_scale``
(:func:`reparametrize`), which rescales the parameters without changing the
function the model computes. All data is generated or loaded
deterministically from a NumPy seed and cached.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from symopt.tasks import models, offline, synthetic
from symopt.tasks.base import (
    Data,
    Task,
    check_split,
    chunked_mean,
    classification_task,
    init_variables,
    sample_batch,
    to_device,
)

# --------------------------------------------------------------------------
# Task augmentation.


def reparametrize(task: Task, param_scale: float) -> Task:
    """``task`` with its parameters stored divided by ``param_scale``.

    ``init`` returns ``params / param_scale`` and the losses see
    ``params * param_scale``: the same functions of the same initial models,
    but gradients scaled by ``param_scale`` and curvatures by its square
    (``learned_optimization``'s ``ReparamWeights``). An optimizer invariant to
    parameter scale (e.g. one normalising its updates by the parameter norm)
    scores the same for every ``param_scale``; one that is not does not.
    Model state (BatchNorm statistics) is not rescaled.

    Args:
      task: the task.
      param_scale: the scale; 1 returns ``task`` itself.

    Returns:
      The reparametrised task (same name and budget).
    """
    if param_scale == 1:
        return task
    if not param_scale > 0:
        raise ValueError(f"param_scale must be positive, got {param_scale}")

    def scaled(params):
        return jax.tree.map(lambda p: p * param_scale, params)

    def init(key):
        params, model_state = task.init(key)
        return jax.tree.map(lambda p: p / param_scale, params), model_state

    def train_loss(params, model_state, key, data):
        return task.train_loss(scaled(params), model_state, key, data)

    def eval_metrics(params, model_state, data, split):
        return task.eval_metrics(scaled(params), model_state, data, split)

    return dataclasses.replace(task, init=init, train_loss=train_loss, eval_metrics=eval_metrics)


# --------------------------------------------------------------------------
# Token sequences (seq_transformer, seq_rnn).

Draw = Callable[[int], tuple[np.ndarray, np.ndarray]]  # n -> (x [n, length], y [n, length])


def _uniform_inputs(target: Callable[[np.ndarray, int], np.ndarray]):
    """A problem whose inputs are uniform tokens and targets ``target(x, vocab)``."""

    def make(rng: np.random.Generator, length: int, vocab: int) -> Draw:
        def draw(n):
            x = rng.integers(0, vocab, (n, length))
            return x, target(x, vocab)

        return draw

    return make


MARKOV_CONCENTRATION = 0.1  # Dirichlet parameter of the transition probabilities


def _markov_chain(rng: np.random.Generator, length: int, vocab: int) -> Draw:
    """Next-token prediction on an order-2 Markov chain with a random transition table.

    ``p(x_t | x_{t-2}, x_{t-1})`` is drawn once per table row from a
    ``Dirichlet(0.1)``: peaked, and a model must look at the previous two
    tokens to use it. The first two tokens are uniform. With ``vocab=16``,
    ``length=16`` and seed 0 the true probabilities score a loss of 1.32
    nats (uniform guessing: ``log(16)`` = 2.77) and an accuracy of 0.51 on
    the test split: the floor and ceiling a model can reach.
    """
    table = rng.dirichlet(np.full(vocab, MARKOV_CONCENTRATION), size=(vocab, vocab))
    cumulative = np.cumsum(table, axis=-1)

    def draw(n):
        rows = np.empty((n, length + 1), np.int64)
        rows[:, :2] = rng.integers(0, vocab, (n, 2))
        for t in range(2, length + 1):
            u = rng.random((n, 1))
            rows[:, t] = (cumulative[rows[:, t - 2], rows[:, t - 1]] < u).sum(axis=1)
        np.minimum(rows, vocab - 1, out=rows)  # rounding in the last cumulative sum
        return rows[:, :-1], rows[:, 1:]

    return draw


# problem -> (rng, length, vocab) -> draw
SEQUENCE_PROBLEMS: dict[str, Callable[[np.random.Generator, int, int], Draw]] = {
    "markov": _markov_chain,
    "running_sum": _uniform_inputs(lambda x, vocab: np.cumsum(x, axis=1) % vocab),
    "reverse": _uniform_inputs(lambda x, vocab: x[:, ::-1]),
    "sort": _uniform_inputs(lambda x, vocab: np.sort(x, axis=1)),
}
CAUSAL_PROBLEMS = ("markov", "running_sum")  # the target at t depends on inputs up to t only
SEQUENCE_SPLITS = {"train": 2000, "val": 500, "test": 500}


def _check_sequence_options(problem: str, length: int, vocab: int) -> None:
    if problem not in SEQUENCE_PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; known: {', '.join(SEQUENCE_PROBLEMS)}")
    if length < 2 or vocab < 2:
        raise ValueError(f"need length >= 2 and vocab >= 2, got {length} and {vocab}")
    needed = sum(SEQUENCE_SPLITS.values())
    if vocab**length < needed:
        raise ValueError(f"vocab**length = {vocab**length} sequences; the splits need {needed}")


@functools.cache
def load_sequences(problem: str, length: int, vocab: int, seed: int = 0) -> Data:
    """Distinct token sequences and their targets, one target token per position.

    ``x`` is ``[n, length]`` tokens in ``[0, vocab)`` (stored as float32, like
    every task's inputs), all distinct across the splits (2000 train, 500
    val, 500 test), drawn from ``numpy.random.default_rng(seed)``; ``y`` is
    ``[n, length]`` int32:

    * ``"markov"``: the next token of an order-2 Markov chain
      (:func:`_markov_chain`; language modelling, needs causal attention);
    * ``"running_sum"``: the prefix sums of uniform tokens mod ``vocab``
      (the running parity for ``vocab=2``);
    * ``"reverse"`` / ``"sort"``: the uniform input sequence reversed / sorted.

    The targets of the last three are functions of the sequence: a model
    that learns the rule generalises to the held-out sequences.

    Raises:
      ValueError: fewer distinct sequences than the splits need (a short
        ``"markov"`` chain over few tokens is too predictable to have them).
    """
    _check_sequence_options(problem, length, vocab)
    rng = np.random.default_rng(seed)
    draw = SEQUENCE_PROBLEMS[problem](rng, length, vocab)
    needed = sum(SEQUENCE_SPLITS.values())
    x, y = np.empty((0, length), np.int64), np.empty((0, length), np.int64)
    for _ in range(20):  # draw, keep the first copy of each input sequence, top up
        more_x, more_y = draw(2 * needed)
        x, y = np.concatenate([x, more_x]), np.concatenate([y, more_y])
        _, first = np.unique(x, axis=0, return_index=True)
        x, y = x[np.sort(first)], y[np.sort(first)]
        if len(x) >= needed:
            break
    else:
        raise ValueError(f"{problem!r} gave {len(x)} distinct sequences; the splits need {needed}")
    splits, start = {}, 0
    for split, size in SEQUENCE_SPLITS.items():
        splits[split] = {"x": x[start : start + size], "y": y[start : start + size]}
        start += size
    return to_device(splits)


def _sequence_task(
    name: str,
    module: nn.Module,
    *,
    problem: str,
    length: int,
    vocab: int,
    seed: int,
    steps: int,
    batch_size: int,
    seeds: int,
    param_scale: float,
) -> Task:
    """A per-token classification task (mean cross-entropy over positions)."""
    _check_sequence_options(problem, length, vocab)
    task = classification_task(
        name,
        module=module,
        input_shape=(length,),
        num_classes=vocab,
        data=functools.partial(load_sequences, problem, length, vocab, seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )
    return reparametrize(task, param_scale)


def seq_transformer(
    *,
    steps: int = 400,
    batch_size: int = 16,
    seeds: int = 2,
    width: int = 32,
    depth: int = 1,
    heads: int = 2,
    activation: str = "gelu",
    causal: bool | None = None,
    problem: str = "markov",
    length: int = 16,
    vocab: int = 16,
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """A pre-LayerNorm transformer on token sequences (:func:`load_sequences`).

    By default a small causal language model of an order-2 Markov chain.

    Args:
      steps: training steps.
      batch_size: sequences per minibatch.
      seeds: runs per candidate.
      width: the model width (``d_model``); the MLP is twice as wide.
      depth: transformer blocks.
      heads: attention heads (must divide ``width``).
      activation: the MLP activation (``models.ACTIVATIONS``).
      causal: causal attention; ``None``: causal for the problems whose
        targets look back only (``"markov"``, ``"running_sum"``), full for
        ``"reverse"`` and ``"sort"``. ``"markov"`` must be causal (its targets
        are the next inputs).
      problem: ``"markov"``, ``"running_sum"``, ``"reverse"`` or ``"sort"``.
      length: sequence length.
      vocab: tokens (and classes) per position.
      param_scale: see :func:`reparametrize`.
      seed: the data seed.

    Returns:
      The task: ``num_classes = vocab``, per-token loss and accuracy
      (10,160 parameters with the defaults).
    """
    models.activation(activation)  # unknown names fail here, not in a trace
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    if causal is None:
        causal = problem in CAUSAL_PROBLEMS
    if problem == "markov" and not causal:
        raise ValueError("problem 'markov' needs causal attention: its targets are the next inputs")
    module = models.Transformer(
        vocab=vocab,
        length=length,
        width=width,
        depth=depth,
        heads=heads,
        num_classes=vocab,
        causal=causal,
        activation=activation,
    )
    return _sequence_task(
        "seq_transformer",
        module,
        problem=problem,
        length=length,
        vocab=vocab,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        param_scale=param_scale,
    )


def seq_rnn(
    *,
    steps: int = 400,
    batch_size: int = 16,
    seeds: int = 2,
    hidden: int = 32,
    problem: str = "markov",
    length: int = 16,
    vocab: int = 8,
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """A GRU on token sequences (:func:`load_sequences`); by default a language
    model of an order-2 Markov chain over 8 tokens, whose best loss is the
    chain's entropy, so no optimizer can reach zero (the running parity,
    ``problem="running_sum", vocab=2``, is solved exactly by most).

    Args:
      steps: training steps.
      batch_size: sequences per minibatch.
      seeds: runs per candidate.
      hidden: the GRU state size.
      problem: ``"running_sum"`` or ``"markov"`` (the causal problems: a
        recurrent net reads left to right); ``"reverse"`` and ``"sort"``
        need the positions to come.
      length: sequence length (the number of recurrent steps).
      vocab: tokens (and classes) per position; the running sum is mod ``vocab``.
      param_scale: see :func:`reparametrize`.
      seed: the data seed.

    Returns:
      The task: ``num_classes = vocab``, per-token loss and accuracy
      (3,426 parameters with the defaults).
    """
    module = models.GRU(vocab=vocab, hidden=hidden, num_classes=vocab)
    return _sequence_task(
        "seq_rnn",
        module,
        problem=problem,
        length=length,
        vocab=vocab,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        param_scale=param_scale,
    )


# --------------------------------------------------------------------------
# Mean-squared-error tasks (digits_autoencoder, regression).


def mse_task(
    name: str,
    *,
    module: nn.Module,
    input_shape: tuple[int, ...],
    data: Callable[[], Data],
    target: Callable[[jax.Array, jax.Array], jax.Array],
    steps: int,
    batch_size: int,
    seeds: int,
    param_scale: float = 1.0,
) -> Task:
    """A mean-squared-error ``Task`` for a Flax module without state.

    The loss of an example is the mean over its target's entries of
    ``(module(x) - target(x, y))^2``, the module's output reshaped to the
    target's shape. ``num_classes`` is 0: ``eval_metrics`` returns ``{"loss"}``.

    Args:
      name: the task name.
      module: the model, called as ``module(x, train=...)``.
      input_shape: shape of one example.
      data: the cached data loader.
      target: ``(x, y) -> targets`` of a batch, e.g. ``y`` or ``x`` itself.
      steps: training steps.
      batch_size: minibatch size.
      seeds: runs per candidate.
      param_scale: see :func:`reparametrize`.

    Returns:
      The task.
    """

    def per_example(params, x, y):
        t = target(x, y)
        prediction = module.apply({"params": params}, x).reshape(t.shape)
        return {"loss": jnp.mean((prediction - t) ** 2, axis=tuple(range(1, t.ndim)))}

    def init(key):
        return init_variables(module, key, input_shape)["params"], {}

    def train_loss(params, model_state, key, data):
        x, y = sample_batch(key, data["train"], batch_size)
        return per_example(params, x, y)["loss"].mean(), model_state

    def eval_metrics(params, model_state, data, split):
        del model_state
        check_split(split)
        fn = functools.partial(per_example, params)
        return chunked_mean(fn, data[split]["x"], data[split]["y"], None)

    task = Task(name, steps, batch_size, seeds, 0, init, train_loss, eval_metrics, data)
    return reparametrize(task, param_scale)


def digits_autoencoder(
    *,
    steps: int = 400,
    batch_size: int = 64,
    seeds: int = 2,
    hidden: int = 32,
    bottleneck: int = 8,
    activation: str = "relu",
    param_scale: float = 1.0,
    split_seed: int = 0,
) -> Task:
    """An MLP autoencoder ``64 -> hidden -> bottleneck -> hidden -> 64`` on digits.

    The images of :func:`symopt.tasks.offline.load_digits` (pixels in [0, 1],
    the same cached copy as ``digits_mlp``'s); the loss is the per-pixel
    reconstruction MSE. Every layer but the last is followed by the activation.

    Args:
      steps: training steps.
      batch_size: images per minibatch.
      seeds: runs per candidate.
      hidden: the width of the encoder's and decoder's hidden layers.
      bottleneck: the code size.
      activation: ``models.ACTIVATIONS`` name.
      param_scale: see :func:`reparametrize`.
      split_seed: the digits split seed.

    Returns:
      The task (``num_classes = 0``; 4,744 parameters with the defaults).
    """
    models.activation(activation)
    return mse_task(
        "digits_autoencoder",
        module=models.ActivationMLP(
            hidden=(hidden, bottleneck, hidden), outputs=64, activation=activation
        ),
        input_shape=(8, 8, 1),
        data=functools.partial(offline.load_digits, split_seed),
        target=lambda x, y: x.reshape(x.shape[0], -1),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        param_scale=param_scale,
    )


REGRESSION_DATASETS = ("friedman1", "diabetes")


@functools.cache
def load_regression(dataset: str, seed: int = 0) -> Data:
    """A standardised regression set: float32 ``x [n, 10]`` and ``y [n]``.

    ``"friedman1"``: scikit-learn's ``make_friedman1`` (3000 examples of
    ``10 sin(pi x1 x2) + 20 (x3 - 1/2)^2 + 10 x4 + 5 x5`` plus noise of
    standard deviation 1; five of the ten inputs are irrelevant), split
    2000/500/500, the noise is 4% of the target variance. ``"diabetes"``:
    scikit-learn's diabetes set (442 examples, shipped with it), split
    60/20/20 by a permutation. Inputs and targets are standardised with the
    training split's mean and standard deviation.
    """
    from sklearn.datasets import load_diabetes, make_friedman1

    if dataset == "friedman1":
        x, y = make_friedman1(n_samples=3000, n_features=10, noise=1.0, random_state=seed)
        sizes = (2000, 500)
    elif dataset == "diabetes":
        x, y = load_diabetes(return_X_y=True)
        perm = np.random.default_rng(seed).permutation(len(y))
        x, y = x[perm], y[perm]
        sizes = (int(0.6 * len(y)), int(0.2 * len(y)))
    else:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(REGRESSION_DATASETS)}")
    n_train, n_val = sizes
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    ends = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    ends["test"] = (n_train + n_val, None)
    splits = {s: {"x": x[a:b], "y": y[a:b]} for s, (a, b) in ends.items()}
    return to_device(splits, y_dtype=np.float32)


def regression(
    *,
    steps: int = 400,
    batch_size: int = 64,
    seeds: int = 2,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
    dataset: str = "friedman1",
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """An MLP regressor (``depth`` hidden layers of ``width``) on :func:`load_regression`.

    Args:
      steps: training steps.
      batch_size: examples per minibatch.
      seeds: runs per candidate.
      width: hidden width.
      depth: hidden layers.
      activation: ``models.ACTIVATIONS`` name.
      dataset: ``"friedman1"`` or ``"diabetes"``.
      param_scale: see :func:`reparametrize`.
      seed: the data seed.

    Returns:
      The task (``num_classes = 0``; the loss is the MSE of the standardised
      target, about 1 for a constant prediction; 4,929 parameters with the
      defaults).
    """
    models.activation(activation)
    if dataset not in REGRESSION_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(REGRESSION_DATASETS)}")
    return mse_task(
        "regression",
        module=models.ActivationMLP(hidden=(width,) * depth, outputs=1, activation=activation),
        input_shape=(10,),
        data=functools.partial(load_regression, dataset, seed),
        target=lambda x, y: y,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        param_scale=param_scale,
    )


# --------------------------------------------------------------------------
# The noisy quadratic model.


def noisy_quadratic(
    *,
    steps: int = 400,
    batch_size: int = 8,
    seeds: int = 2,
    dim: int = 32,
    condition: float = 100.0,
    noise: float = 1.0,
    scale: float = 0.2,
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """The noisy quadratic model: ``0.5 * sum(h * ((w - w*) / scale)^2)``, noise ~ curvature.

    Zhang et al., "Which algorithmic choices matter at which batch sizes?"
    (arXiv 1907.04164), on :func:`symopt.tasks.synthetic.quadratic`'s
    objective (curvatures ``h`` log-spaced in ``[1/condition, 1]``, ``w*``
    fixed by ``seed``) in units of ``scale``: ``w*`` and the initial ``w``
    are ``scale * N(0, I)``, so the objective starts at
    ``0.5 * sum(h * (1 + (w* / scale)^2))`` on average (``sum(h)`` = 7.2
    on average over ``w*`` with the defaults; 5.4 for seed 0's ``w*``) and
    the distance to cover is about ``scale`` per coordinate (0.2: within
    reach of Adam at 1e-3 in a few hundred steps). Each training step moves
    the minimum to ``w* + scale * noise * z / sqrt(batch_size * h)`` with
    ``z ~ N(0, I)`` from the step key, so the gradient gets noise of
    covariance ``noise^2 * diag(h) / (batch_size * scale^2)``: proportional
    to the curvature and smaller for larger batches, as for a minibatch
    loss. The training loss is never negative and its mean exceeds the
    objective by ``0.5 * dim * noise^2 / batch_size`` (2.0 with the
    defaults); ``eval_metrics`` returns the noise-free objective for any
    split.

    ``synthetic.quadratic(noise > 0)`` adds ``noise * <z, w>`` to its loss
    instead, which makes some training losses, the initial one included,
    negative: not usable where fitness takes a log-ratio of losses.

    Args:
      steps: training steps.
      batch_size: the batch size the gradient noise stands for.
      seeds: runs per candidate.
      dim: parameters.
      condition: ratio of the largest to the smallest curvature.
      noise: gradient noise level (0: the deterministic quadratic).
      scale: the spread of ``w*`` and of the initial ``w``: the quadratic
        with ``param_scale = 1 / scale``.
      param_scale: see :func:`reparametrize` (multiplies ``1 / scale``).
      seed: fixes ``w*``.

    Returns:
      The task (``num_classes = 0``, ``data()`` is ``{}``).
    """
    quadratic = synthetic.quadratic(
        steps=steps, batch_size=batch_size, seeds=seeds, dim=dim, condition=condition, seed=seed
    )
    h = np.logspace(-np.log10(condition), 0.0, dim)
    shift = jnp.asarray(noise / np.sqrt(batch_size * h), jnp.float32)  # std of the moved minimum

    def train_loss(params, model_state, key, data):
        # The objective at w - shift * z is the one with its minimum at w* + shift * z.
        z = jax.random.normal(key, (dim,), jnp.float32)
        moved = {"w": params["w"] - shift * z}
        return quadratic.eval_metrics(moved, model_state, data, "val")["loss"], model_state

    task = dataclasses.replace(quadratic, name="noisy_quadratic", train_loss=train_loss)
    return reparametrize(task, param_scale / scale)
