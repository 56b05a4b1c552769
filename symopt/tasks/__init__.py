"""Tasks: data + model + loss + metric + budget, looked up by name.

A registry in the style of big_vision, so that a config can name its tasks
as strings::

    task = symopt.tasks.get("digits_mlp")                 # offline, the default
    task = symopt.tasks.get("cifar10", steps=1000, data_dir="/data/tfds")
    params, model_state = task.init(key)
    loss, model_state = task.train_loss(params, model_state, key, task.data())

Offline tasks need no download: ``digits_mlp``, ``digits_cnn`` (scikit-learn
digits), ``mnist1d_mlp``, ``mnist1d_cnn`` (generated locally), and the
synthetic ``quadratic``, ``rosenbrock`` and ``logistic``, and the task
suite of :mod:`symopt.tasks.suite` for testing found optimizers on other
families: ``seq_transformer`` and ``seq_rnn`` (algorithmic token
sequences), ``digits_autoencoder``, ``regression`` and ``noisy_quadratic``.
Their ``param_scale``, ``activation``, width and depth options vary a
family (task augmentation). The TFDS tasks
(``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
``oxford_flowers102``, ``cars196``, ``caltech101``) need ``pip install
'symopt-jax[tfds]'`` and prepared data (see :mod:`symopt.tasks.tfds_tasks`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from symopt.tasks import offline, suite, synthetic, tfds_tasks
from symopt.tasks.base import (
    Data,
    DataNotFoundError,
    MissingDependencyError,
    ModelState,
    Params,
    Task,
)

_FACTORIES: dict[str, Callable[..., Task]] = {
    "digits_mlp": offline.digits_mlp,
    "digits_cnn": offline.digits_cnn,
    "mnist1d_mlp": offline.mnist1d_mlp,
    "mnist1d_cnn": offline.mnist1d_cnn,
    "quadratic": synthetic.quadratic,
    "rosenbrock": synthetic.rosenbrock,
    "logistic": synthetic.logistic,
    "seq_transformer": suite.seq_transformer,
    "seq_rnn": suite.seq_rnn,
    "digits_autoencoder": suite.digits_autoencoder,
    "regression": suite.regression,
    "noisy_quadratic": suite.noisy_quadratic,
    **{name: functools.partial(tfds_tasks.tfds_task, name) for name in tfds_tasks.SPECS},
}

OFFLINE_TASKS: tuple[str, ...] = (
    "digits_mlp",
    "digits_cnn",
    "mnist1d_mlp",
    "mnist1d_cnn",
    "quadratic",
    "rosenbrock",
    "logistic",
    "seq_transformer",
    "seq_rnn",
    "digits_autoencoder",
    "regression",
    "noisy_quadratic",
)
TFDS_TASKS: tuple[str, ...] = tuple(tfds_tasks.SPECS)


def names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_FACTORIES)


def options(name: str) -> dict[str, Any]:
    """The options of task ``name`` (what :func:`get` accepts) with their defaults."""
    params = inspect.signature(_factory(name)).parameters
    return {k: p.default for k, p in params.items()}


def get(name: str, **overrides: Any) -> Task:
    """The task registered as ``name``, with ``overrides`` replacing its defaults.

    Overrides are the task's options (see :func:`options`): the budget
    (``steps``, ``batch_size``, ``seeds``) and task-specific ones such as
    ``data_dir``, ``download`` or ``train_size`` for the TFDS tasks. Building
    a task is cheap: data is loaded on the first ``task.data()`` call. Equal
    arguments give the same (immutable) Task object, so that the programs
    compiled for it are shared, e.g. by the searches of one process.

    Raises:
      ValueError: unknown task name or option.
    """
    known = options(name)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(
            f"task {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(known)}"
        )
    arguments = {**known, **overrides}
    try:
        return _build(name, tuple(sorted(arguments.items())))
    except TypeError:  # an unhashable option value: build it uncached
        return _factory(name)(**overrides)


@functools.lru_cache(maxsize=64)
def _build(name: str, arguments: tuple[tuple[str, Any], ...]) -> Task:
    return _factory(name)(**dict(arguments))


def _factory(name: str) -> Callable[..., Task]:
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(names())}")
    return _FACTORIES[name]


__all__ = [
    "Data",
    "DataNotFoundError",
    "MissingDependencyError",
    "ModelState",
    "OFFLINE_TASKS",
    "Params",
    "TFDS_TASKS",
    "Task",
    "get",
    "names",
    "options",
]
