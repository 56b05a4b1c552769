"""The memory a training program will need, checked before it is compiled.

:func:`estimate` says, roughly, how many bytes one compiled training program
(:mod:`symopt.evaluate`) holds at once: for every run (candidate x seed,
each learning-rate multiplier a row of its own) the model's parameters,
gradients and updates and the optimizer's states, the minibatch and its
activations, and the stacked per-step losses; and once the task's data.
:func:`check` compares it with the memory of the devices (JAX's
``memory_stats`` where the backend has them, else the host's RAM) before the
program is compiled: over it, a one-line :class:`OverBudget` (a
``ValueError``; the command lines exit 2 with it, as for a config error)
naming the keys that size the program; over half of it, one warning with
the estimate (once per program). A program that does not fit
would otherwise end in an XLA out-of-memory traceback, after minutes of
compiling.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np


class OverBudget(ValueError):
    """A training program would need more memory than the devices have; the
    message is one line naming the config keys that size it."""


ACTIVATIONS_PER_INPUT = 16
"""Activation bytes a run holds per byte of its minibatch's inputs (forward
values kept for the backward pass): a rough figure for the zoo's models."""
FIXED_ARRAYS = 3
"""Parameter-sized arrays every run holds besides the optimizer's states:
the parameters, their gradients and the updates."""
WARN_FRACTION = 0.5
"""A program estimated at more than this fraction of the memory is warned of."""
_WARNED: set[Any] = set()


class MemoryWarning(UserWarning):
    """A training program is estimated to need most of the devices' memory."""


class Estimate(NamedTuple):
    """A program's estimated bytes, in total and per device."""

    runs: int  # rows x seeds
    per_run: int  # bytes each run holds
    shared: int  # bytes held once per device (the task's data)
    devices: int

    @property
    def total(self) -> int:
        return self.runs * self.per_run + self.shared * self.devices

    @property
    def per_device(self) -> int:
        return -(-self.runs // self.devices) * self.per_run + self.shared


def _nbytes(tree: Any) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


@functools.cache
def _param_bytes(task: Any) -> int:
    """One run's parameter (and model state) bytes, from shapes only."""
    key = jax.random.key_data(jax.random.key(0))
    return _nbytes(jax.eval_shape(lambda k: task.init(jax.random.wrap_key_data(k)), key))


def _example_bytes(data: Any) -> int:
    """Bytes of one training example of ``data`` (its ``train`` split's leaves,
    per row); 0 where the data has no such split."""
    split = data.get("train") if isinstance(data, dict) else None
    leaves = [x for x in jax.tree.leaves(split) if getattr(x, "ndim", 0) >= 1]
    return sum(_nbytes(x) // max(int(x.shape[0]), 1) for x in leaves)


def estimate(task: Any, runs: int, states: int, *, devices: int = 1,
             data: Any = None) -> Estimate:
    """The estimated memory of a program training ``runs`` runs of ``task``
    with an optimizer of ``states`` parameter-sized states, over ``devices``.

    Args:
      task: a :class:`symopt.tasks.Task` (its ``init``, ``steps`` and
        ``batch_size`` are read; ``init`` only for shapes).
      runs: rows (candidates x multipliers, padded) times seeds.
      states: the optimizer's parameter-sized arrays per run.
      devices: the devices the runs are split over.
      data: the task's data (default ``task.data()``).
    """
    data = task.data() if data is None else data
    per_run = (_param_bytes(task) * (FIXED_ARRAYS + states)
               + task.batch_size * _example_bytes(data) * (1 + ACTIVATIONS_PER_INPUT)
               + 4 * task.steps)  # the stacked float32 losses
    return Estimate(int(runs), int(per_run), _nbytes(data), max(int(devices), 1))


def available(devices: Any = None) -> tuple[int, bool]:
    """``(bytes, per_device)``: the memory limit of one device where JAX
    reports it (``memory_stats()["bytes_limit"]``), else the host's RAM, which
    every (CPU) device shares."""
    devices = list(devices) if devices is not None else jax.local_devices()
    try:
        stats = devices[0].memory_stats()
    except Exception:  # noqa: BLE001 (backends without the call raise various errors)
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), True
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), False


def _gb(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check(task: Any, runs: int, states: int, *, devices: Any = None, data: Any = None,
          memory: tuple[int, bool] | None = None, what: str = "candidates") -> Estimate:
    """Refuses a program that cannot fit, and warns once of one that nearly does.

    Args:
      task, runs, states, data: as :func:`estimate`.
      devices: the devices the runs are split over (default: the local ones).
      memory: ``(bytes, per_device)`` to compare with (default
        :func:`available`; tests pass a small figure).
      what: what the runs train, for the message.

    Raises:
      OverBudget: the estimate exceeds the memory (one line).
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    found = estimate(task, runs, states, devices=len(devices), data=data)
    limit, per_device = memory if memory is not None else available(devices)
    need = found.per_device if per_device else found.total
    where = "each device's memory" if per_device else "the host's memory"
    text = (f"training {found.runs} runs of {what} on {task.name} ({task.steps} steps, batch "
            f"{task.batch_size}) needs about {_gb(need)}, of {_gb(limit)} ({where})")
    if need > limit:
        raise OverBudget(f"config: {text}; lower evaluation.chunk_size, the seeds, the steps, "
                          "the batch size or the learning-rate multipliers")
    key = (task.name, found.runs, task.steps, task.batch_size, states)
    if need > WARN_FRACTION * limit and key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(text, MemoryWarning, stacklevel=3)
    return found
