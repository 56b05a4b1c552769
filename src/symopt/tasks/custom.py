"""Tasks from a user's own Flax model and NumPy arrays: :func:`from_arrays`.

A researcher who wants to search optimizers on their own problem writes a
function that returns ``from_arrays(...)`` and names it in the config as
``module:function`` (see :func:`symopt.tasks.get`)::

    def make_task(steps=500, batch_size=64, seeds=2):
        return symopt.tasks.from_arrays(
            "mine", MyModel(), {"train": (x, y), "val": (xv, yv), "test": (xt, yt)},
            loss="cross_entropy", steps=steps, batch_size=batch_size, seeds=seeds)

The arrays and the model are checked once, when the task is built, so that
a wrong shape or dtype is a one-line error naming the split and the array
rather than a trace from inside a compiled population: the model's forward
and backward passes are traced (nothing runs or compiles). What the user's
model raises there is a :class:`~symopt.tasks.base.UserCodeError` naming the
phase (``build`` for an NNX model function, ``forward``, ``gradient``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

from symopt.tasks.base import (
    SPLITS,
    ModelState,
    Params,
    Task,
    UserCodeError,
    check_split,
    chunked_mean,
    cross_entropy,
    sample_batch,
    to_device,
)

LOSSES = ("cross_entropy", "mse")
"""The losses :func:`from_arrays` knows."""

Model = nn.Module | nnx.Module | Callable[[nnx.Rngs], nnx.Module]


def from_arrays(
    name: str,
    model: Model,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    loss: str,
    steps: int,
    batch_size: int,
    seeds: int = 2,
    eval_batch_size: int | None = None,
    loss_bound: float | None = None,
) -> Task:
    """A supervised ``Task`` training ``model`` on in-memory arrays.

    The model is one of:

    * a linen ``Module``, initialised per seed with ``module.init``. It is
      called as ``module(x, train=...)`` only if its ``__call__`` takes a
      ``train`` argument (needed for BatchNorm and dropout); BatchNorm
      statistics (every collection but ``params``) are the task's
      ``model_state``, and dropout draws from the ``"dropout"`` rng stream.
    * an NNX ``Module`` instance: every seed starts from this instance's
      weights, and seeds vary only the minibatches.
    * a function ``rngs -> nnx.Module``, called with ``nnx.Rngs(key)`` per
      seed: seeds vary the initialisation too (and the weights are not
      embedded in the compiled program).

    NNX models switch between ``model.train()`` and ``model.eval()``
    (dropout and BatchNorm modes); their non-parameter variables (BatchStat)
    are the ``model_state``, and their rng streams are reseeded from each
    step's key. Build ``nnx.Dropout`` with ``rngs=`` so it has a stream.

    Args:
      name: the task's name (archives and tables key results by it).
      model: the model, see above; it maps a batch of ``x`` rows to logits
        ``[batch, ..., classes]`` for ``cross_entropy`` or to one value per
        target entry for ``mse``.
      splits: ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` arrays
        with one row per example; the search tunes on ``val`` and reports
        ``test``. Float ``x`` is trained as float32, integer ``x`` (token
        ids) as int32.
      loss: ``"cross_entropy"`` (integer labels ``y`` of shape ``[n, ...]``;
        accuracy is reported; ``num_classes`` is the logits' width) or
        ``"mse"`` (real targets; only the loss is reported, ``num_classes``
        is 0).
      steps: training steps of one run.
      batch_size: examples per step, drawn with replacement (so it may
        exceed the training split).
      seeds: runs per candidate.
      eval_batch_size: examples per evaluation chunk (``None``: a whole
        split at once).
      loss_bound: a training loss above this counts as diverged. ``None``:
        50 for ``cross_entropy``; for ``mse`` 100 times the loss of
        predicting 0 on the training split, and at least 50.

    Returns:
      The task.

    Raises:
      ValueError: a bad argument or array (complex, out of the range of
        the type it is trained as, ragged), or a model whose output does not
        fit the targets (one line, naming the split and the array).
      UserCodeError: the model raises when it is built (phase ``build``) or
        in its forward pass (``forward``), or its gradient cannot be traced
        (``gradient``).
    """

    def fail(message: str) -> NoReturn:
        raise ValueError(f"from_arrays({name!r}): {message}")

    _check_options(loss, {"steps": steps, "batch_size": batch_size, "seeds": seeds,
                          "eval_batch_size": 1 if eval_batch_size is None else eval_batch_size},
                   fail)
    arrays = _checked_arrays(splits, loss, fail)
    x = arrays["train"]["x"]
    example = jax.ShapeDtypeStruct(x.shape[1:], _x_dtype(x))
    net = _adapter(name, model, example, fail)
    width = _check_model(name, net, example, arrays, loss, fail)
    train_loss, eval_metrics = _training_functions(net, loss, batch_size, eval_batch_size)
    _check_gradient(name, net, train_loss, arrays, loss)
    return Task(
        name=name, steps=int(steps), batch_size=int(batch_size), seeds=int(seeds),
        num_classes=width if loss == "cross_entropy" else 0,
        init=net.init, train_loss=train_loss, eval_metrics=eval_metrics,
        data=functools.cache(functools.partial(_device_data, arrays, loss)),
        loss_bound=float(_loss_bound(arrays, loss) if loss_bound is None else loss_bound),
    )


def _check_options(loss: str, counts: Mapping[str, Any], fail: Callable[[str], NoReturn]) -> None:
    """The loss is known and each count a positive integer, else ``fail``."""
    if loss not in LOSSES:
        fail(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    for option, value in counts.items():
        if not isinstance(value, int | np.integer) or value < 1:
            fail(f"{option} must be a positive integer, got {value!r}")


def _loss_bound(arrays: Mapping[str, Mapping[str, np.ndarray]], loss: str) -> float:
    """The default divergence bound (see :func:`from_arrays`)."""
    if loss == "cross_entropy":
        return 50.0
    return max(50.0, 100 * np.mean(arrays["train"]["y"].astype(np.float64) ** 2))


def _training_functions(net: _Net, loss: str, batch_size: int,
                        eval_batch_size: int | None) -> tuple[Callable, Callable]:
    """The task's ``train_loss`` and ``eval_metrics`` for the adapted model."""
    per_example = _cross_entropy if loss == "cross_entropy" else _squared_error

    def train_loss(params, model_state, key, data):
        x, y = sample_batch(key, data["train"], batch_size)
        out, model_state = net.apply(params, model_state, x, jax.random.fold_in(key, 1))
        return per_example(out, y)["loss"].mean(), model_state

    def eval_metrics(params, model_state, data, split):
        check_split(split)

        def chunk(x, y):
            return per_example(net.apply(params, model_state, x, None)[0], y)

        return chunked_mean(chunk, data[split]["x"], data[split]["y"], eval_batch_size)

    return train_loss, eval_metrics


# --------------------------------------------------------------------------
# Losses: per-example values of a batch.


def _cross_entropy(logits: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Softmax cross-entropy and accuracy, averaged over the label positions of each example."""
    axes = tuple(range(1, y.ndim))
    loss = cross_entropy(logits, y)
    correct = (jnp.argmax(logits, axis=-1) == y).astype(loss.dtype)
    return {"loss": loss.mean(axis=axes), "accuracy": correct.mean(axis=axes)}


def _squared_error(out: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """The squared error averaged over each example's target entries."""
    error = (out.reshape(y.shape) - y) ** 2
    return {"loss": error.mean(axis=tuple(range(1, y.ndim)))}


# --------------------------------------------------------------------------
# The arrays.


def _checked_arrays(splits: Any, loss: str, fail: Callable[[str], NoReturn]) -> dict[str, dict]:
    """``{split: {"x", "y"}}`` as NumPy arrays, after the checks ``from_arrays`` documents."""
    wanted = "a dict {'train': (x, y), 'val': (x, y), 'test': (x, y)}"
    if not isinstance(splits, Mapping):
        fail(f"splits must be {wanted}, got {type(splits).__name__}")
    unknown = sorted(map(repr, set(splits) - set(SPLITS)))
    if unknown:
        fail(f"splits has unknown split {', '.join(unknown)}; want {wanted}")
    for split in SPLITS:
        if split not in splits:
            fail(f"splits has no {split!r} split; want {wanted} "
                 "(the search tunes on val and reports test)")
    arrays = {}
    for split in SPLITS:
        pair = splits[split]
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            fail(f"splits[{split!r}] must be a pair (x, y), got {type(pair).__name__}")
        x, y = (_as_array(a, f"splits[{split!r}] {part}", fail) for part, a in zip("xy", pair,
                                                                                  strict=True))
        _check_x(x, f"splits[{split!r}] x", fail)
        _check_y(y, x, f"splits[{split!r}] y", loss, fail)
        arrays[split] = {"x": x, "y": y}
    train = arrays["train"]
    for split in SPLITS[1:]:
        for part in ("x", "y"):
            rows, train_rows = arrays[split][part].shape[1:], train[part].shape[1:]
            if rows != train_rows:
                fail(f"splits[{split!r}] {part} has rows of shape {rows} "
                     f"but splits['train'] {part} has {train_rows}")
        if np.issubdtype(arrays[split]["x"].dtype, np.integer) != np.issubdtype(
                train["x"].dtype, np.integer):
            fail(f"splits[{split!r}] x has dtype {arrays[split]['x'].dtype} but "
                 f"splits['train'] x has {train['x'].dtype} (integer in every split or none)")
    return arrays


def _as_array(value: Any, where: str, fail: Callable[[str], NoReturn]) -> np.ndarray:
    """``value`` as one NumPy array (an object array of equal rows stacked), or
    ``fail`` naming ``where`` if its rows differ in shape."""
    try:
        array = np.asarray(value)
        if array.dtype == object and array.ndim:  # e.g. np.array(rows, dtype=object)
            array = np.asarray(array.tolist())
    except ValueError as e:  # NumPy: "setting an array element with a sequence. ..."
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"{where} is ragged: its rows differ in shape ({detail})")
    return array


def _real(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` are real numbers (integers, floats or booleans)."""
    return any(np.issubdtype(dtype, kind) for kind in (np.bool_, np.integer, np.floating))


def _check_range(a: np.ndarray, where: str, trained_as: type,
                 fail: Callable[[str], NoReturn]) -> None:
    """``a``'s values fit ``trained_as`` (np.int32 or np.float32), the type it is
    trained as, else ``fail``: int64 token ids beyond int32 would wrap, float64
    values beyond float32 would become inf."""
    if np.issubdtype(a.dtype, np.bool_) or a.size == 0:
        return
    info = np.iinfo(trained_as) if np.issubdtype(trained_as, np.integer) else np.finfo(trained_as)
    low, high = a.min(), a.max()
    if low < info.min or high > info.max:
        fail(f"{where} has values from {low} to {high}, outside the range of "
             f"{np.dtype(trained_as).name} ({info.min:g} to {info.max:g}), which it is "
             "trained as")


def _check_x(x: np.ndarray, where: str, fail: Callable[[str], NoReturn]) -> None:
    if x.ndim == 0:
        fail(f"{where} is a scalar; want one row per example")
    if len(x) == 0:
        fail(f"{where} is empty")
    if not _real(x.dtype):
        fail(f"{where} has dtype {x.dtype}; want real numbers")
    if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
        fail(f"{where} has {np.size(x) - np.isfinite(x).sum()} NaN or inf entries")
    _check_range(x, where, np.int32 if np.issubdtype(x.dtype, np.integer) else np.float32, fail)


def _check_y(y: np.ndarray, x: np.ndarray, where: str, loss: str,
             fail: Callable[[str], NoReturn]) -> None:
    if y.ndim == 0 or len(y) != len(x):
        fail(f"{where} has {len(y) if y.ndim else 0} rows but x has {len(x)}")
    if loss == "cross_entropy":
        if not np.issubdtype(y.dtype, np.integer):
            fail(f"{where} has dtype {y.dtype}; cross_entropy wants integer class labels "
                 "(loss='mse' for real-valued targets)")
        if y.min() < 0:
            fail(f"{where} has a negative label ({y.min()})")
        _check_range(y, where, np.int32, fail)
    else:
        if not _real(y.dtype):
            fail(f"{where} has dtype {y.dtype}; mse wants real numbers")
        if not np.isfinite(y).all():
            fail(f"{where} has {np.size(y) - np.isfinite(y).sum()} NaN or inf entries")
        _check_range(y, where, np.float32, fail)


def _x_dtype(x: np.ndarray) -> type:
    """The inputs' type on device: int32 token ids or float32."""
    return jnp.int32 if np.issubdtype(x.dtype, np.integer) else jnp.float32


def _y_dtype(loss: str) -> type:
    """The targets' type on device: int32 labels or float32 values."""
    return np.int32 if loss == "cross_entropy" else np.float32


def _device_data(arrays: dict[str, dict], loss: str) -> dict[str, dict[str, jax.Array]]:
    """The checked arrays on device: float32 inputs (int32 token ids), int32 labels or
    float32 targets."""
    data = to_device(arrays, y_dtype=_y_dtype(loss))
    for split, parts in arrays.items():
        if _x_dtype(parts["x"]) == jnp.int32:
            data[split]["x"] = jnp.asarray(parts["x"], jnp.int32)
    return data


# --------------------------------------------------------------------------
# The model: linen or NNX behind one pure interface.


@dataclasses.dataclass(frozen=True)
class _Net:
    """A model as pure functions.

    ``init(key) -> (params, model_state)``; ``apply(params, model_state, x,
    key)`` returns ``(output, model_state)``: in training mode with the
    updated state when ``key`` (for dropout) is given, in inference mode
    with the state unchanged when it is ``None``.
    """

    init: Callable[[jax.Array], tuple[Params, ModelState]]
    apply: Callable[[Params, ModelState, jax.Array, jax.Array | None], tuple[jax.Array, ModelState]]


def _adapter(name: str, model: Any, example: jax.ShapeDtypeStruct,
             fail: Callable[[str], NoReturn]) -> _Net:
    """``model`` as a :class:`_Net`; ``example`` is the shape of one input row.

    Raises:
      UserCodeError: an NNX model function raises (phase ``build``).
    """
    if isinstance(model, nn.Module):
        return _linen(model, example)
    if isinstance(model, nnx.Module):
        return _nnx(model, None)
    if callable(model):
        built: list[str] = []  # the type model(rngs) returns

        def build():
            out = model(nnx.Rngs(0))
            built.append(type(out).__name__)
            return out

        try:
            abstract = nnx.eval_shape(build)
        except Exception as e:  # noqa: BLE001 (the user's code: any error is reported)
            raise UserCodeError(name, "build", e) from e
        if not isinstance(abstract, nnx.Module):
            fail(f"model(rngs) must return an nnx.Module, got {built[0]}")
        return _nnx(abstract, model)
    fail("model must be a linen Module, an nnx Module or a function rngs -> nnx.Module, "
         f"got {type(model).__name__}")


def _linen(module: nn.Module, example: jax.ShapeDtypeStruct) -> _Net:
    takes_train = "train" in inspect.signature(module.__call__).parameters
    mode = (lambda train: {"train": train}) if takes_train else (lambda train: {})

    def init(key):
        k_params, k_dropout = jax.random.split(key)
        dummy = jnp.zeros((1, *example.shape), example.dtype)
        variables = dict(module.init({"params": k_params, "dropout": k_dropout}, dummy,
                                     **mode(False)))
        return variables.pop("params", {}), variables

    def apply(params, model_state, x, key):
        variables = {"params": params, **model_state}
        if key is None:
            return module.apply(variables, x, **mode(False)), model_state
        rngs = {"dropout": key}
        if not model_state:
            return module.apply(variables, x, rngs=rngs, **mode(True)), model_state
        out, new_state = module.apply(variables, x, rngs=rngs, mutable=list(model_state),
                                      **mode(True))
        return out, dict(new_state)

    return _Net(init, apply)


def _nnx(model: nnx.Module, factory: Callable[[nnx.Rngs], nnx.Module] | None) -> _Net:
    """``model`` is the instance, or ``factory``'s abstract output (``nnx.eval_shape``)."""
    filters = (nnx.Param, nnx.RngState, ...)
    graphdef, params, rng_state, rest = nnx.split(model, *filters)
    rng_template = nnx.to_pure_dict(rng_state)

    if factory is None:
        params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

        def init(key):
            del key  # every seed starts from the instance's weights
            return params, rest
    else:

        def init(key):
            _, p, _, r = nnx.split(factory(nnx.Rngs(key)), *filters)
            return nnx.to_pure_dict(p), nnx.to_pure_dict(r)

    def apply(params, model_state, x, key):
        streams = _fresh_streams(rng_template, jax.random.key(0) if key is None else key)
        net = nnx.merge(graphdef, params, streams, model_state)
        if key is None:
            net.eval()
            return net(x), model_state
        net.train()
        out = net(x)
        return out, nnx.to_pure_dict(nnx.split(net, *filters)[3])

    return _Net(init, apply)


def _fresh_streams(template: Any, key: jax.Array) -> Any:
    """NNX rng-stream state shaped like ``template``: keys drawn from ``key``, counts 0.

    Built inside the traced function, so that the stream variables belong to
    its trace (NNX refuses to update variables made at another trace level).
    """
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    leaves, treedef = jax.tree.flatten(template)
    fresh = []
    for i, leaf in enumerate(leaves):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            k = jax.random.fold_in(key, i)
            fresh.append(k if leaf.shape == () else jax.random.split(k, leaf.shape))
        else:
            fresh.append(jnp.zeros(leaf.shape, leaf.dtype))
    return treedef.unflatten(fresh)


def _check_model(name: str, net: _Net, example: jax.ShapeDtypeStruct, arrays: dict[str, dict],
                 loss: str, fail: Callable[[str], NoReturn]) -> int:
    """Traces ``net`` on two training rows (nothing runs): the output must fit
    the targets. Returns the logits' width (0 for ``mse``).

    Raises:
      UserCodeError: the model's initialisation or forward pass raises
        (phase ``forward``).
    """
    y = arrays["train"]["y"]
    batch = jax.ShapeDtypeStruct((2, *example.shape), example.dtype)

    def forward(key, x):
        params, model_state = net.init(key)
        train_out, new_state = net.apply(params, model_state, x, key)
        return train_out, net.apply(params, model_state, x, None)[0], model_state, new_state

    try:
        train_out, eval_out, state, new_state = jax.eval_shape(forward, jax.random.key(0), batch)
    except Exception as e:  # noqa: BLE001 (the user's model: any error is reported)
        raise UserCodeError(name, "forward", e) from e
    if not isinstance(train_out, jax.ShapeDtypeStruct):
        fail(f"the model must return one array, got {type(train_out).__name__}")
    out = train_out.shape
    if eval_out.shape != out:
        fail(f"the model outputs shape {out} in training but {eval_out.shape} in evaluation")
    if jax.tree.map(_shape, state) != jax.tree.map(_shape, new_state):
        fail("the model's state (its variables other than parameters) changes structure in "
             "training; the steps of a run must carry the same state")
    if loss == "mse":
        if math.prod(out[1:]) != math.prod(y.shape[1:]):
            fail(f"the model outputs {out[1:]} per example but splits['train'] y has rows of "
                 f"shape {y.shape[1:]}")
        return 0
    if out[:-1] != (2, *y.shape[1:]):
        fail(f"the model outputs {out[1:]} per example; cross_entropy wants logits "
             f"{(*y.shape[1:], 'classes')} for splits['train'] y rows of shape {y.shape[1:]}")
    width = out[-1]
    for split in SPLITS:
        top = int(arrays[split]["y"].max())
        if top >= width:
            fail(f"splits[{split!r}] y has label {top} but the model outputs {width} logits")
    return width


def _check_gradient(name: str, net: _Net, train_loss: Callable, arrays: dict[str, dict],
                    loss: str) -> None:
    """Traces the gradient of ``train_loss`` at initialisation (nothing runs or compiles).

    Raises:
      UserCodeError: the backward pass cannot be traced (phase ``gradient``),
        e.g. a ``while_loop`` with a dynamic trip count or integer parameters.
    """
    train = arrays["train"]
    data = {"train": {"x": jax.ShapeDtypeStruct(train["x"].shape, _x_dtype(train["x"])),
                      "y": jax.ShapeDtypeStruct(train["y"].shape, _y_dtype(loss))}}

    def gradient(key, data):
        params, model_state = net.init(key)
        return jax.grad(train_loss, has_aux=True)(params, model_state, key, data)

    try:
        jax.eval_shape(gradient, jax.random.key(0), data)
    except Exception as e:  # noqa: BLE001 (the user's model: any error is reported)
        raise UserCodeError(name, "gradient", e) from e


def _shape(leaf: Any) -> tuple:
    return leaf.shape, leaf.dtype
