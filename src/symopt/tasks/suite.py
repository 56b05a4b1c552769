"""The offline task suite: more task families for testing found optimizers.

The default search tasks (:mod:`symopt.tasks.offline`, :mod:`symopt.tasks.synthetic`)
are MLPs, small ConvNets and convex objectives. An optimizer found on them
should also be tried on models and losses it was not searched on; this
module owns those families, each offline (no download) and small enough for
a population on CPU:

* ``seq_transformer`` and ``seq_rnn``: a transformer and a GRU on token
  sequences (:mod:`symopt.tasks.sequences`);
* ``digits_autoencoder``: an MLP autoencoder on scikit-learn digits, MSE;
* ``regression``: an MLP regressor on Friedman #1 or diabetes, MSE;
* ``noisy_quadratic``: the noisy quadratic model (gradient noise with
  covariance proportional to the curvature), scored on the noise-free loss.

Options vary a family in the way of ``learned_optimization``'s task
augmentation: width, depth, activation, batch size, and ``param_scale``
(:func:`symopt.tasks.base.reparametrize`), which rescales the parameters
without changing the function the model computes. All data is generated or
loaded deterministically from a NumPy seed and cached.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
    init_variables,
    reparametrize,
    sample_batch,
    to_device,
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
      param_scale: see :func:`~symopt.tasks.base.reparametrize`.

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
      param_scale: see :func:`~symopt.tasks.base.reparametrize`.
      split_seed: the digits split seed.

    Returns:
      The task (``num_classes = 0``).
    """
    return autoencoder_task(
        "digits_autoencoder",
        image_shape=(8, 8, 1),
        data=functools.partial(offline.load_digits, split_seed),
        hidden=hidden,
        bottleneck=bottleneck,
        activation=activation,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        param_scale=param_scale,
    )


def autoencoder_task(
    name: str,
    *,
    image_shape: tuple[int, ...],
    data: Callable[[], Data],
    hidden: int,
    bottleneck: int,
    activation: str,
    steps: int,
    batch_size: int,
    seeds: int,
    param_scale: float = 1.0,
) -> Task:
    """An MLP autoencoder ``pixels -> hidden -> bottleneck -> hidden -> pixels``
    on the images ``x`` of ``data`` (of ``image_shape``), with the per-pixel
    reconstruction MSE (:func:`mse_task`); every layer but the last is
    followed by ``activation`` (a ``models.ACTIVATIONS`` name, checked here).
    The reconstruction family of ``digits_autoencoder`` and
    ``fashion_autoencoder``."""
    models.activation(activation)
    return mse_task(
        name,
        module=models.ActivationMLP(hidden=(hidden, bottleneck, hidden),
                                    outputs=math.prod(image_shape), activation=activation),
        input_shape=image_shape,
        data=data,
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
      param_scale: see :func:`~symopt.tasks.base.reparametrize`.
      seed: the data seed.

    Returns:
      The task (``num_classes = 0``; the loss is the MSE of the standardised
      target, so a constant prediction scores about 1).
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
    ``0.5 * sum(h * (1 + (w* / scale)^2))`` on average and the distance to
    cover is about ``scale`` per coordinate: small enough that a standard
    optimizer at its default rate gets there within the default budget.
    Each training step moves
    the minimum to ``w* + scale * noise * z / sqrt(batch_size * h)`` with
    ``z ~ N(0, I)`` from the step key, so the gradient gets noise of
    covariance ``noise^2 * diag(h) / (batch_size * scale^2)``: proportional
    to the curvature and smaller for larger batches, as for a minibatch
    loss. The training loss is never negative and its mean exceeds the
    objective by ``0.5 * dim * noise^2 / batch_size``; ``eval_metrics``
    returns the noise-free objective for any split.

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
      param_scale: see :func:`~symopt.tasks.base.reparametrize` (multiplies ``1 / scale``).
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
