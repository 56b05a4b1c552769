"""The ``Task`` interface and the pieces every classification task shares.

A task is data + model + loss + metric + budget, written as pure functions
over parameter pytrees so that :mod:`symopt.evaluate` can train a whole
population in one program: ``jax.jit(jax.vmap(lax.scan(step)))`` with
``(params, model_state, key)`` batched and the data shared (``in_axes=None``).
The shape follows ``learned_optimization``'s ``Task`` (``init(key)``,
``loss(params, key, data)``), with Flax linen models used through
``module.init`` / ``module.apply`` (BatchNorm statistics travel as
``model_state``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

Params = Any  # a pytree of arrays
ModelState = Any  # {} or {"batch_stats": pytree}
Data = Mapping[str, Mapping[str, jax.Array]]  # {"train": {"x", "y"}, "val": ..., "test": ...}

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")


class DataNotFoundError(FileNotFoundError):
    """A dataset is not prepared where a task looks for it; the message says how to prepare it."""


class MissingDependencyError(ImportError):
    """An optional dependency of a task is not installed; the message names the pip extra."""


class UserCodeError(RuntimeError):
    """A user's task code failed: its module at import, its factory, or its
    model's forward or backward pass. The message is one line naming the task,
    the phase and the exception's own last line; the original exception is the
    ``__cause__`` (the command lines print its traceback where
    :data:`TRACEBACK_ENV` is set)."""

    def __init__(self, task: str, phase: str, error: BaseException) -> None:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        # The last line, unless it only points to documentation (as JAX's
        # tracer errors end): then the last line that says what went wrong.
        said = [line for line in lines if not line.lower().startswith(("see http", "see https",
                                                                        "for more information"))]
        last = (said or lines or [""])[-1]
        super().__init__(f"task {task!r} failed at {phase}: {type(error).__name__}"
                         + (f": {last}" if last else ""))
        self.task, self.phase = task, phase


TRACEBACK_ENV = "SYMOPT_TRACEBACK"
"""Environment variable: set to 1, the command lines print a user-code
failure's full traceback after its one line."""


DISTRIBUTION = "symopt-jax"
"""symopt's name on the package index (the import name is ``symopt``)."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``, from the index or a source checkout."""
    return (f"pip install '{DISTRIBUTION}[{extra}]' "
            f"(in a source checkout: pip install -e '.[{extra}]')")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """Data + model + loss + metric + budget.

    Attributes:
      name: the registry name (``symopt.tasks.get(name)``).
      steps: training steps of one run (the budget).
      batch_size: minibatch size sampled by ``train_loss``.
      seeds: independent runs per candidate.
      num_classes: number of classes; 0 for a task without accuracy.
      init: ``key -> (params, model_state)``; ``model_state`` is ``{}`` unless
        the model has BatchNorm statistics.
      train_loss: ``(params, model_state, key, data) -> (loss, model_state)``:
        the mean loss on a minibatch drawn with ``key`` from ``data["train"]``
        (differentiable w.r.t. ``params``) and the new model state. Pure.
      eval_metrics: ``(params, model_state, data, split) -> {"loss", "accuracy"}``
        over the whole ``split`` (``"val"`` or ``"test"``) in inference mode;
        only ``{"loss"}`` when ``num_classes == 0``. Pure.
      data: loads the data once (cached) and returns it as device arrays,
        ``{"train": {"x", "y"}, "val": ..., "test": ...}``; ``{}`` for
        objectives without data. Pass it to ``train_loss`` / ``eval_metrics``
        as an argument so that ``jit`` does not embed it as a constant.
      loss_bound: a training loss above this counts as diverged.
      title: the name reports show where it differs from ``name``: a task
        looked up as ``module:function`` keeps that as its ``name`` (the key
        of archives and configs) and the name its factory gave it (e.g.
        :func:`symopt.tasks.from_arrays`'s) as its title. ``""``: ``name``.
    """

    name: str
    steps: int
    batch_size: int
    seeds: int
    num_classes: int
    init: Callable[[jax.Array], tuple[Params, ModelState]]
    train_loss: Callable[[Params, ModelState, jax.Array, Data], tuple[jax.Array, ModelState]]
    eval_metrics: Callable[[Params, ModelState, Data, str], dict[str, jax.Array]]
    data: Callable[[], Data]
    loss_bound: float = 50.0
    title: str = ""

    @property
    def label(self) -> str:
        """The name reports show: ``title``, or ``name`` where it has none."""
        return self.title or self.name


# --------------------------------------------------------------------------
# Data helpers.


def to_device(
    splits: Mapping[str, Mapping[str, np.ndarray]], *, y_dtype: type = np.int32
) -> dict[str, dict[str, jax.Array]]:
    """Host arrays ``{split: {"x", "y"}}`` as float32 inputs and int32 labels on device.

    ``y_dtype=np.float32`` keeps real-valued targets (regression) as floats.
    """
    out = {}
    for split, arrays in splits.items():
        out[split] = {
            "x": jnp.asarray(np.asarray(arrays["x"], np.float32)),
            "y": jnp.asarray(np.asarray(arrays["y"], y_dtype)),
        }
    return out


def carve_validation(
    n: int, val_size: int, train_size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) index sets from one pool of ``n`` examples.

    A fixed permutation (``numpy.random.default_rng(seed)``); validation takes
    its first ``min(val_size, n // 5)`` indices, training up to
    ``train_size`` of the rest (all of them for ``None``).
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(val_size, n // 5)
    val, rest = perm[:n_val], perm[n_val:]
    train = rest if train_size is None else rest[:train_size]
    return np.sort(train), np.sort(val)


def sample_batch(key: jax.Array, split: Mapping[str, jax.Array], batch_size: int):
    """A minibatch drawn uniformly with replacement: ``(x[idx], y[idx])``.

    Index sampling and a gather, so under ``vmap`` over keys with the data
    unbatched it costs one gather per candidate.
    """
    n = split["y"].shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return split["x"][idx], split["y"][idx]


LOGIT_LIMIT = 2.0**24
"""The largest logit magnitude at which a float32 cross-entropy still measures
anything. Beyond it float32 spaces neighbouring values at least 1 apart, so
the loss is rounding, not fit: a network blown up by its optimizer, with every
logit near -2e17, scores a cross-entropy of exactly 0 at chance accuracy. An
example whose logits reach it has an infinite loss, so its run counts as
diverged (:func:`cross_entropy`)."""


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """optax's softmax cross-entropy with integer labels, per example, and
    ``inf`` where an example's logits reach :data:`LOGIT_LIMIT` in magnitude.
    Every classification and language-model task computes its loss here."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    blown = jnp.max(jnp.abs(logits), axis=-1) >= LOGIT_LIMIT
    return jnp.where(blown, jnp.inf, loss)


def chunked_mean(fn: Callable[..., dict[str, jax.Array]], x, y, chunk: int | None) -> dict:
    """Means over all ``n`` examples of ``fn(x_chunk, y_chunk)``'s per-example values.

    ``fn`` maps a chunk to a dict of per-example arrays. Chunks of ``chunk``
    examples run in a ``lax.scan`` (bounded memory under ``vmap``); the last
    chunk is shifted back to end at ``n`` and its already-counted examples are
    masked, so no padded copy of the data is made.
    """
    n = x.shape[0]
    chunk = n if chunk is None else min(chunk, n)
    num_chunks = -(-n // chunk)
    if num_chunks == 1:
        return {k: v.mean() for k, v in fn(x, y).items()}

    def body(totals, i):
        start = jnp.minimum(i * chunk, n - chunk)
        xc = jax.lax.dynamic_slice_in_dim(x, start, chunk)
        yc = jax.lax.dynamic_slice_in_dim(y, start, chunk)
        fresh = (start + jnp.arange(chunk)) >= i * chunk
        values = fn(xc, yc)
        return {k: totals[k] + jnp.sum(jnp.where(fresh, v, 0.0)) for k, v in values.items()}, None

    shapes = jax.eval_shape(fn, x[:chunk], y[:chunk])
    zeros = {k: jnp.zeros((), s.dtype) for k, s in shapes.items()}
    totals, _ = jax.lax.scan(body, zeros, jnp.arange(num_chunks))
    return {k: v / n for k, v in totals.items()}


# --------------------------------------------------------------------------
# Augmentation (natural images).


def flip_and_crop(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Random horizontal flips and random ``pad``-pixel-shift crops of NHWC images.

    The standard CIFAR augmentation (zero padding, then a crop of the
    original size), used in Marfinetz 2025's setup for CIFAR-10.
    """
    n, h, w, _ = images.shape
    k_flip, k_y, k_x = jax.random.split(key, 3)
    flip = jax.random.bernoulli(k_flip, 0.5, (n,))
    images = jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = jax.random.randint(k_y, (n,), 0, 2 * pad + 1)
    dx = jax.random.randint(k_x, (n,), 0, 2 * pad + 1)

    def crop(img, y0, x0):
        return jax.lax.dynamic_slice(img, (y0, x0, 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, dy, dx)


# --------------------------------------------------------------------------
# Model initialisation.

# Flax's default initializers, by parameter name (``nn.Dense``, ``nn.Conv``,
# ``nn.BatchNorm``, ``nn.LayerNorm``, ``nn.Embed`` and
# :class:`symopt.tasks.models.PatchConv`).
_CONSTANT_INIT = {
    ("params", "bias"): 0.0,
    ("params", "scale"): 1.0,
    ("batch_stats", "mean"): 0.0,
    ("batch_stats", "var"): 1.0,
}
_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def init_variables(module: nn.Module, key: jax.Array, input_shape: tuple[int, ...]) -> dict:
    """``module.init(key, x, train=False)``'s variables, drawn with one random call.

    Same structure, shapes and distributions as Flax's default initializers:
    kernels LeCun-normal (a normal truncated to two standard deviations,
    scaled to variance ``1 / fan_in`` with ``fan_in`` the product of all but
    the last kernel dimension), biases zeros, BatchNorm and LayerNorm scales
    and running variances ones, running means zeros. ``nn.Embed`` tables
    (``embedding``, ``[num_embeddings, features]``) get Flax's variance
    ``1 / features``, drawn truncated like the kernels (Flax draws them from
    an untruncated normal). The values differ from
    ``module.init``'s: every kernel is a slice of one block of random
    numbers, so XLA compiles one random-number kernel rather than one per
    parameter, which makes a population's ``init`` compile much faster (the
    models here use only default initializers).

    Raises:
      ValueError: a variable this function does not know how to initialise.
    """
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    shapes = jax.eval_shape(functools.partial(module.init, train=False), key, dummy)
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    names = [tuple(getattr(k, "key", k) for k in path) for path, _ in paths_and_leaves]
    fan_in = {  # the random variables, by the fan-in that scales them
        name: math.prod(leaf.shape[:-1]) if name[-1] == "kernel" else leaf.shape[-1]
        for name, (_, leaf) in zip(names, paths_and_leaves, strict=True)
        if name[0] == "params" and name[-1] in ("kernel", "embedding")
    }
    leaves = dict(zip(names, (leaf for _, leaf in paths_and_leaves), strict=True))
    total = sum(math.prod(leaves[name].shape) for name in fan_in)
    noise = jax.random.truncated_normal(key, -2.0, 2.0, (total,), jnp.float32)
    values, offset = [], 0
    for name, (_, leaf) in zip(names, paths_and_leaves, strict=True):
        if name in fan_in:
            size = math.prod(leaf.shape)
            std = 1.0 / math.sqrt(fan_in[name]) / _TRUNCATED_NORMAL_STD
            values.append(std * noise[offset : offset + size].reshape(leaf.shape))
            offset += size
        elif (name[0], name[-1]) in _CONSTANT_INIT:
            values.append(jnp.full(leaf.shape, _CONSTANT_INIT[name[0], name[-1]], leaf.dtype))
        else:
            raise ValueError(f"init_variables does not know how to initialise {'/'.join(name)}")
    return dict(jax.tree_util.tree_unflatten(treedef, values))


# --------------------------------------------------------------------------
# Task augmentation (the parameters' scale).


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
# Classification tasks from a Flax module.


def classification_task(
    name: str,
    *,
    module: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    data: Callable[[], Data],
    steps: int,
    batch_size: int,
    seeds: int,
    eval_batch_size: int | None = None,
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    loss_bound: float = 50.0,
) -> Task:
    """A softmax cross-entropy classification ``Task`` for a Flax linen module.

    The module is called as ``module(x, train=...)``; a module with
    BatchNorm keeps its running averages in the ``batch_stats`` collection,
    which becomes the task's ``model_state`` (updated in ``train_loss`` with
    ``mutable=["batch_stats"]``, read in ``eval_metrics``).

    Args:
      name: the task name.
      module: the model; returns logits ``[batch, num_classes]``.
      input_shape: shape of one example (for ``init``; the data is not needed).
      num_classes: number of classes.
      data: the cached data loader.
      steps: training steps of one run.
      batch_size: minibatch size.
      seeds: runs per candidate.
      eval_batch_size: examples per evaluation chunk (``None``: the whole split at once).
      augment: optional ``(key, x_batch) -> x_batch`` applied to training batches.
      loss_bound: divergence threshold on the training loss.

    Returns:
      The task.
    """

    def init(key):
        variables = init_variables(module, key, input_shape)
        params = variables.pop("params")
        return params, variables

    def train_loss(params, model_state, key, data):
        x, y = _training_batch(key, data["train"], batch_size, augment)
        logits, new_state = _apply_training(module, params, model_state, x)
        loss = cross_entropy(logits, y).mean()
        return loss, new_state

    def eval_metrics(params, model_state, data, split):
        check_split(split)

        def per_example(x, y):
            logits = module.apply({"params": params, **model_state}, x, train=False)
            loss = cross_entropy(logits, y)
            correct = (jnp.argmax(logits, axis=-1) == y).astype(loss.dtype)
            return {"loss": loss, "accuracy": correct}

        return chunked_mean(per_example, data[split]["x"], data[split]["y"], eval_batch_size)

    return Task(
        name=name,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        num_classes=num_classes,
        init=init,
        train_loss=train_loss,
        eval_metrics=eval_metrics,
        data=data,
        loss_bound=loss_bound,
    )


def _training_batch(key: jax.Array, split: Mapping[str, jax.Array], batch_size: int,
                    augment: Callable[[jax.Array, jax.Array], jax.Array] | None):
    """A training minibatch (:func:`sample_batch`), augmented if ``augment`` is given."""
    if augment is None:
        return sample_batch(key, split, batch_size)
    key_batch, key_aug = jax.random.split(key)
    x, y = sample_batch(key_batch, split, batch_size)
    return augment(key_aug, x), y


def _apply_training(module: nn.Module, params: Params, model_state: ModelState, x: jax.Array):
    """``(logits, model_state)`` of ``module`` in training mode; the state (the
    BatchNorm statistics) updated where the module has one."""
    if not model_state:
        return module.apply({"params": params}, x, train=True), model_state
    logits, new_state = module.apply(
        {"params": params, **model_state}, x, train=True, mutable=list(model_state)
    )
    return logits, dict(new_state)


def check_split(split: str) -> None:
    """Raises ``ValueError`` unless ``split`` is one ``eval_metrics`` accepts."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
