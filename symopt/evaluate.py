"""Training a whole population at once, and its fitness.

:func:`evaluate` trains P candidates x S seeds on a task in one
jit-compiled program: ``lax.scan`` over training steps inside ``vmap`` over
seeds inside ``vmap`` over the population, the population axis sharded over
the local devices (``jax.sharding``). The program is compiled once per
(task, population size, :class:`~symopt.population.ProgramShape`) and reused
for every generation. A run that diverges (non-finite or too large a loss,
non-finite weights) stops changing and is flagged with its step; it never
spoils the other runs.

Fitness follows Marfinetz 2025 (REFERENCES.md A): ``accuracy + 0.05 *
max(0, 1 - mean training loss over the last 50 steps)``, -1 for a diverged
run; tasks without classes score the orders of magnitude by which the loss
fell, over 10. :func:`aggregate` averages tasks and normalises by Adam run the
same way.

Multi-host: with ``jax.distributed.initialize()`` done (see
:func:`initialize_distributed`), each process trains its contiguous share of
the population on its own devices and the metrics are all-gathered.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from symopt import population
from symopt.population import Program, ProgramShape

FITNESS_TAIL = 50  # steps of training loss averaged into the fitness
LOSS_BONUS = 0.05
DIVERGED_FITNESS = -1.0
LOG_RANGE = 10.0  # orders of magnitude of loss decrease worth a fitness of 1


class RunMetrics(NamedTuple):
    """Per-run results, arrays of shape [P, S] (candidates x seeds)."""

    train_loss: np.ndarray  # mean training loss over the last FITNESS_TAIL steps
    initial_loss: np.ndarray  # training loss at the first step
    val_loss: np.ndarray
    val_accuracy: np.ndarray  # NaN for tasks without classes
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    diverged: np.ndarray  # bool
    diverged_step: np.ndarray  # int, -1 where the run did not diverge


# --------------------------------------------------------------------------
# The training loop.


def _train_run(tx: optax.GradientTransformation, task, data, key: jax.Array) -> dict[str, Any]:
    """One run of ``task`` with ``tx``; pure, vmappable."""
    init_key, data_key = jax.random.split(key)
    params, model_state = task.init(init_key)
    opt_state = tx.init(params)
    grad_fn = jax.value_and_grad(task.train_loss, has_aux=True)
    tail = min(FITNESS_TAIL, task.steps)

    def step(carry, k):
        params, model_state, opt_state, diverged, diverged_step = carry
        (loss, new_model_state), grads = grad_fn(params, model_state,
                                                 jax.random.fold_in(data_key, k), data)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & (loss <= task.loss_bound)
        for leaf in jax.tree.leaves(new_params):
            finite &= jnp.all(jnp.isfinite(leaf))
        now_diverged = diverged | ~finite
        keep = lambda new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(now_diverged, o, n), new, old
        )
        carry = (
            keep(new_params, params),
            keep(new_model_state, model_state),
            keep(new_opt_state, opt_state),
            now_diverged,
            jnp.where(now_diverged & ~diverged, k, diverged_step),
        )
        return carry, loss

    carry = (params, model_state, opt_state, jnp.zeros((), bool), jnp.full((), -1, jnp.int32))
    (params, model_state, _, diverged, diverged_step), losses = jax.lax.scan(
        step, carry, jnp.arange(task.steps, dtype=jnp.int32)
    )
    out = {
        "train_loss": jnp.mean(losses[-tail:]),
        "initial_loss": losses[0],
        "diverged": diverged,
        "diverged_step": diverged_step,
    }
    for split in ("val", "test"):
        metrics = task.eval_metrics(params, model_state, data, split)
        out[f"{split}_loss"] = metrics["loss"]
        out[f"{split}_accuracy"] = metrics.get("accuracy", jnp.full((), jnp.nan))
    return out


def _seed_keys(seeds: Sequence[int]) -> jax.Array:
    return jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])


@functools.cache
def _compiled_population_trainer(task, shape: ProgramShape) -> Callable[..., Any]:
    """jit(vmap over candidates (vmap over seeds (one run))), for ``task``."""

    def one(row: Program, random: jax.Array, key_data: jax.Array, seed: jax.Array, data):
        tx = population.interpret(row, shape, task.steps, random=random, seed=seed)
        return _train_run(tx, task, data, jax.random.wrap_key_data(key_data))

    over_seeds = jax.vmap(one, in_axes=(None, None, 0, 0, None))
    over_population = jax.vmap(over_seeds, in_axes=(0, None, None, None, None))
    return jax.jit(over_population)


@functools.cache
def _compiled_baseline_trainer(task, make_tx: Callable[..., optax.GradientTransformation]):
    """The same loop with a native optax optimizer built from per-run args."""

    def one(args, key_data, data):
        return _train_run(make_tx(*args), task, data, jax.random.wrap_key_data(key_data))

    over_seeds = jax.vmap(one, in_axes=(None, 0, None))
    return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None)))


def _device_mesh(devices: Sequence[jax.Device] | None):
    devices = list(devices) if devices is not None else jax.local_devices()
    return jax.sharding.Mesh(np.asarray(devices), ("population",))


def _shard(tree, mesh, size: int):
    """Pads the leading axis to a multiple of the mesh size and shards it."""
    n = mesh.devices.size
    padded = -(-size // n) * n
    if padded != size:  # pad with copies of row 0; dropped from the results
        tree = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[:1], padded - size, axis=0)]), tree
        )
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("population"))
    return jax.device_put(tree, spec)


def _replicate(tree, mesh):
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def _local_share(size: int) -> slice:
    """This process's contiguous share of ``size`` candidates."""
    n, i = jax.process_count(), jax.process_index()
    per = -(-size // n)
    return slice(min(i * per, size), min((i + 1) * per, size))


def _gather_hosts(metrics: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    if jax.process_count() == 1:
        return metrics
    from jax.experimental import multihost_utils  # noqa: PLC0415

    per = -(-size // jax.process_count())
    padded = {k: np.concatenate([v, np.repeat(v[:1], per - len(v), 0)]) if len(v) < per else v
              for k, v in metrics.items()}
    gathered = multihost_utils.process_allgather(padded, tiled=True)
    return {k: np.asarray(v)[:size] for k, v in gathered.items()}


def _to_metrics(out: dict[str, jax.Array], size: int) -> RunMetrics:
    host = {k: np.asarray(v)[:size] for k, v in out.items()}
    return RunMetrics(**{f: host[f] for f in RunMetrics._fields})


def evaluate(
    program: Program,
    task,
    seeds: int | Sequence[int] | None = None,
    *,
    shape: ProgramShape | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> RunMetrics:
    """Trains every candidate of ``program`` on ``task`` with each seed.

    Args:
      program: the population (:func:`symopt.population.encode`).
      task: a :class:`symopt.tasks.Task`.
      seeds: a number of seeds (``0..n-1``) or the seeds themselves; default
        ``task.seeds``.
      shape: the program's shape (default: read from its arrays).
      devices: local devices to shard the population over (default: all).

    Returns:
      :class:`RunMetrics` with arrays of shape [P, S].
    """
    seeds = _seed_list(seeds, task)
    shape = shape or shape_of(program)
    size = program.size
    share = _local_share(size)
    local = jax.tree.map(lambda x: x[share], program)
    local_size = share.stop - share.start
    mesh = _device_mesh(devices)
    random = population.uses_random(program)
    trainer = _compiled_population_trainer(task, shape)
    out = trainer(
        _shard(local, mesh, local_size),
        random,
        _replicate(_seed_keys(seeds), mesh),
        _replicate(jnp.asarray(seeds, jnp.int32), mesh),
        _replicate(task.data(), mesh),
    )
    local_metrics = {k: np.asarray(v)[:local_size] for k, v in out.items()}
    return _to_metrics(_gather_hosts(local_metrics, size), size)


def evaluate_baseline(
    make_tx: Callable[..., optax.GradientTransformation],
    args: Any,
    task,
    seeds: int | Sequence[int] | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> RunMetrics:
    """Trains native optax optimizers ``make_tx(*args[i])`` the same way.

    ``args`` is a tuple of arrays with a leading axis (one row per run), e.g.
    ``(learning_rates,)`` with ``make_tx = optax.adam``: the baseline that
    fitness is normalised by, and the reference of the overhead benchmark.
    """
    seeds = _seed_list(seeds, task)
    size = int(jax.tree.leaves(args)[0].shape[0])
    mesh = _device_mesh(devices)
    out = _compiled_baseline_trainer(task, make_tx)(
        _shard(args, mesh, size), _replicate(_seed_keys(seeds), mesh),
        _replicate(task.data(), mesh),
    )
    return _to_metrics(out, size)


def _seed_list(seeds, task) -> list[int]:
    if seeds is None:
        seeds = task.seeds
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    return [int(s) for s in seeds]


def shape_of(program: Program) -> ProgramShape:
    """The :class:`ProgramShape` a program was encoded with."""
    return ProgramShape(
        max_nodes=int(program.update.op.shape[-1]),
        max_constants=int(program.constants.shape[-1]),
        max_states=int(program.states.shape[-1]),
        max_decay_nodes=int(program.decays.op.shape[-1]),
        max_schedule_nodes=int(program.schedule_expr.op.shape[-1]),
    )


# --------------------------------------------------------------------------
# Fitness.


def run_fitness(metrics: RunMetrics, *, split: str = "val") -> np.ndarray:
    """Fitness of each run, [P, S] (REFERENCES.md A's formula).

    ``split`` picks the accuracy: ``"val"`` while searching (the test split
    stays unseen), ``"test"`` for final reports.
    """
    accuracy = getattr(metrics, f"{split}_accuracy")
    bonus = LOSS_BONUS * np.maximum(0.0, 1.0 - metrics.train_loss)
    classified = accuracy + bonus
    with np.errstate(all="ignore"):
        ratio = np.log10(np.maximum(metrics.initial_loss, 1e-30)
                         / np.maximum(getattr(metrics, f"{split}_loss"), 1e-30))
    objective = np.clip(ratio / LOG_RANGE, -1.0, 1.0)
    fit = np.where(np.isnan(accuracy), objective, classified)
    bad = metrics.diverged | ~np.isfinite(fit)
    return np.where(bad, DIVERGED_FITNESS, fit)


def fitness(metrics: RunMetrics, *, split: str = "val") -> np.ndarray:
    """Fitness of each candidate: the mean over seeds, [P]."""
    return run_fitness(metrics, split=split).mean(axis=1)


def aggregate(per_task: Mapping[str, np.ndarray], baseline: Mapping[str, float]) -> np.ndarray:
    """Mean fitness over tasks, divided by the baseline's (Adam's) mean.

    ``per_task`` maps task names to fitness arrays [P]; ``baseline`` maps the
    same names to Adam's fitness on them. 1.0 is as good as Adam; REFERENCES
    A's best found optimizer scores 1.026.
    """
    names = sorted(per_task)
    missing = [n for n in names if n not in baseline]
    if missing:
        raise ValueError(f"no baseline fitness for tasks {missing}")
    mean = np.mean([per_task[n] for n in names], axis=0)
    base = float(np.mean([baseline[n] for n in names]))
    if not math.isfinite(base) or base <= 0:
        raise ValueError(f"baseline fitness {base} must be positive to normalise by")
    return mean / base


# --------------------------------------------------------------------------
# Multi-host.


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Arguments of ``jax.distributed.initialize`` (None: auto-detect)."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def initialize_distributed(config: DistributedConfig = DistributedConfig()) -> None:
    """Joins a multi-host run (JAX's own ``jax.distributed.initialize``).

    Call once per process before any other JAX call; then every process runs
    the same search, and :func:`evaluate` gives each its share of the
    population.
    """
    jax.distributed.initialize(
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes,
        process_id=config.process_id,
    )
