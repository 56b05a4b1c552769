"""Training a whole population at once.

:func:`evaluate` trains P candidates x S seeds on a task in one
jit-compiled program: ``lax.scan`` over training steps inside ``vmap`` over
seeds inside ``vmap`` over the population, the population axis sharded over
the local devices (``jax.sharding``). Before a program runs, its memory is
estimated and checked against the devices' (:mod:`symopt.budget`). The program is compiled once per
(task, population size, :class:`~symopt.program.ProgramShape`) and reused
for every generation. A run that diverges (non-finite or too large a loss,
non-finite weights) stops changing and is flagged with its step; it never
spoils the other runs.

What the metrics are worth is :mod:`symopt.fitness`'s business.

Devices: the candidates are split over the local devices with
``jax.shard_map`` (each device trains its share; no communication until the
metrics come back). Multi-host: after ``jax.distributed.initialize()``
(``symopt.main`` calls it), each process trains its contiguous share of the
population on its own devices, padded to the largest share so that every
device compiles the same program, and the metrics are all-gathered; a failed
gather is a :class:`PeerLost`.

Progress: a :class:`Trainer` given a :class:`Progress` (the run's log, timed)
says what it is doing (the task, compiling or training, the runs done, the
time so far) whenever the log has been quiet for :data:`PROGRESS_SECONDS`,
also in the middle of one long compile or chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from symopt import budget, population, zoo
from symopt.fitness import FITNESS_TAIL
from symopt.program import Program, ProgramShape, encode, encodes_leaf_ops
from symopt.progress import format_seconds
from symopt.tables import StepTables, step_tables

CURVE_POINTS = 100  # most points of a learning curve (the loss subsampled over steps)
POPULATION_ARRAYS = 3
"""Parameter-sized arrays the population optimizer keeps per run besides its
graph's states (``m``, ``v`` and ``trace``: :class:`symopt.population.state.PopulationState`);
each node of the graph adds one more while a step is computed."""
BASELINE_STATES = 2
"""Parameter-sized states an optax optimizer is budgeted at (Adam's two)."""
PROGRESS_SECONDS = 30.0
"""The longest a :class:`Progress` lets the run's log stay quiet while a
trainer compiles or trains (a line a minute at the least, as the issue asks)."""
PROGRESS_POLL_SECONDS = 1.0
"""How often :class:`Progress`'s watcher thread looks at the clock."""
PROGRESS_PREFIX = "  ... "
"""How a :class:`Progress` line begins (a reader can tell it from the run's own lines)."""


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
    loss_curve: np.ndarray | None = None  # [P, S, points] training loss at curve_steps


# --------------------------------------------------------------------------
# The training loop.


def curve_steps(steps: int) -> np.ndarray:
    """The training steps a learning curve (``RunMetrics.loss_curve``) samples, evenly spaced."""
    return np.unique(np.linspace(0, steps - 1, min(CURVE_POINTS, steps)).round().astype(int))


def _per_run(mask: jax.Array, x: jax.Array) -> jax.Array:
    """``mask`` [R] broadcast against ``x`` [R, ...]."""
    return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def _train_runs(tx: optax.GradientTransformation, task, data, keys: jax.Array,
                eval_params: Callable[[Any, Any], Any] | None = None,
                layout: population.WeightLayout | None = None) -> dict[str, Any]:
    """R runs of ``task`` at once: ``tx`` works on [R, ...] pytrees, or on
    the flat [R, L] weights of ``layout``.

    The model's loss, gradients and metrics are vmapped over runs; the
    optimizer sees the whole batch. Pure: one ``lax.scan`` over steps.
    ``eval_params(state, params)``, vmapped over runs (so ``tx``'s state must
    have a leading run axis on every leaf, as the optax path's has), gives
    the params the validation and test splits are measured at; a diverged
    run is measured at its kept params.

    With a ``layout`` the weights are flattened once, before the first step,
    and stay flat: the model reads them through ``layout.view``, so its
    gradients come out flat, and the update, the divergence check and the
    select that freezes a diverged run are each one wide pass.
    """
    split = jax.vmap(lambda k: jax.random.split(jax.random.wrap_key_data(k)))(keys)
    init_keys, data_keys = split[:, 0], split[:, 1]
    params, model_state = jax.vmap(task.init)(init_keys)
    train_loss, view = task.train_loss, lambda params: params
    if layout is not None:
        params, view = layout.flatten(params), layout.view
        train_loss = lambda flat, *args: task.train_loss(view(flat), *args)  # noqa: E731
    opt_state = tx.init(params)
    grad_fn = jax.vmap(jax.value_and_grad(train_loss, has_aux=True), in_axes=(0, 0, 0, None))
    tail = min(FITNESS_TAIL, task.steps)

    def step(carry, k):
        params, model_state, opt_state, diverged, diverged_step = carry
        batch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(data_keys, k)
        (loss, new_model_state), grads = grad_fn(params, model_state, batch_keys, data)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & (loss <= task.loss_bound)
        for leaf in jax.tree.leaves(view(new_params)):  # not the padding, which no model reads
            finite &= jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        now_diverged = diverged | ~finite

        def keep(new, old):  # a diverged run stops changing
            return jax.tree.map(lambda n, o: jnp.where(_per_run(now_diverged, n), o, n), new, old)

        # The optimizer state is not kept: nothing reads a diverged run's (its
        # metrics come from its kept weights), and a select over every
        # optimizer array is a pass over the population's weights per array
        # per step (six for the population optimizer).
        carry = (
            keep(new_params, params),
            keep(new_model_state, model_state),
            new_opt_state,
            now_diverged,
            jnp.where(now_diverged & ~diverged, k, diverged_step),
        )
        return carry, loss

    runs = keys.shape[0]
    carry = (params, model_state, opt_state, jnp.zeros(runs, bool), jnp.full(runs, -1, jnp.int32))
    (params, model_state, opt_state, diverged, diverged_step), losses = jax.lax.scan(
        step, carry, jnp.arange(task.steps, dtype=jnp.int32)
    )
    if eval_params is not None:
        moved = jax.vmap(eval_params)(opt_state, params)
        params = jax.tree.map(lambda p, e: jnp.where(_per_run(diverged, p), p, e), params, moved)
    out = {
        "train_loss": jnp.mean(losses[-tail:], axis=0),
        "initial_loss": losses[0],
        "diverged": diverged,
        "diverged_step": diverged_step,
        "loss_curve": losses[curve_steps(task.steps)].T,  # [R, points]
    }
    evaluate_split = jax.vmap(task.eval_metrics, in_axes=(0, 0, None, None))
    params = view(params)
    for split_name in ("val", "test"):
        metrics = evaluate_split(params, model_state, data, split_name)
        out[f"{split_name}_loss"] = metrics["loss"]
        out[f"{split_name}_accuracy"] = metrics.get("accuracy", jnp.full(runs, jnp.nan))
    return out


def _run_keys(seeds: jax.Array, candidates: int) -> jax.Array:
    """Key data of run ``p * S + s``: seed ``s``'s key for every candidate, so
    that candidates are compared on the same initialisations and batches."""
    keys = jax.vmap(lambda s: jax.random.key_data(jax.random.key(s)))(seeds)
    return jnp.tile(keys, (candidates, 1))


# --------------------------------------------------------------------------
# Progress while training.


@dataclasses.dataclass
class _Work:
    """What a trainer is doing now, for :class:`Progress`'s line."""

    task: str  # its label
    steps: int
    kind: str  # "graph", or the optax optimizer's name
    total: int  # runs (rows x seeds) of this call
    since: float  # when the phase began
    phase: str = "preparing"
    done: int = 0  # runs of the chunks before this one
    runs: int = 0  # runs of this chunk

    def text(self, now: float) -> str:
        runs = (f"{self.kind} runs {self.done + 1}-{self.done + self.runs} of {self.total}"
                if self.runs else f"{self.total} {self.kind} runs")
        return (f"{self.task} ({self.steps} steps): {self.phase} {runs} "
                f"({format_seconds(now - self.since)} so far)")


class Progress:
    """The run's log, timed: while the run is in a stage (:meth:`doing`) or a
    :class:`Trainer` compiles or trains, a line saying what it does whenever
    the log has been quiet for ``every`` seconds.

    Use it as the run's log: every line through it restarts the quiet time.
    A trainer given it (``Trainer(progress=...)``) marks what it trains; the
    run marks its stages. A watcher thread, alive only while one of them is
    marked, looks at the clock every ``poll`` seconds, so that one long
    compile or chunk (a single call into XLA, which can last minutes) is not
    silent either; the trainer also looks at the start of every chunk. It
    reads the host clock only: the results and the compiled programs are the
    same with it or without it. Its lines go through ``log``, so a process
    whose log prints nothing (a multi-host run's other processes) stays quiet.

    Args:
      log: where every line goes.
      every: seconds of quiet before a progress line (default
        :data:`PROGRESS_SECONDS`).
      clock: monotonic seconds (tests pass a fake one).
      poll: seconds between the watcher's looks (default
        :data:`PROGRESS_POLL_SECONDS`); 0: no watcher, only the chunk starts
        are looked at.
    """

    def __init__(self, log: Callable[[str], None], *, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic, poll: float | None = None):
        self.log, self.clock = log, clock
        self.every = PROGRESS_SECONDS if every is None else every
        self.poll = PROGRESS_POLL_SECONDS if poll is None else poll
        self._lock = threading.Lock()  # the watcher reads what the main thread marks
        self._last = clock()  # when the last line was logged
        self._stage: tuple[str, float] | None = None  # what the run does, since when
        self._work: _Work | None = None
        self._marked = 0  # stages and trainer calls open: the watcher runs while > 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def __call__(self, line: str) -> None:
        with self._lock:
            self._last = self.clock()
        self.log(line)

    def doing(self, what: str) -> contextlib.AbstractContextManager[None]:
        """While the body runs, the run is doing ``what`` (``gen 3/15``,
        ``elimination``): its progress lines name it, in training or not. A
        stage inside another names the inner one until it ends."""
        return self._marking("_stage", (what, self.clock()))

    def working(self, task, kind: str, total: int) -> contextlib.AbstractContextManager[None]:
        """While the body trains ``total`` runs of ``kind`` on ``task`` (a call
        inside another changes nothing)."""
        if self._work is not None:
            return contextlib.nullcontext()
        return self._marking("_work", _Work(task.label, task.steps, kind, total, self.clock()))

    @contextlib.contextmanager
    def _marking(self, name: str, value: Any) -> Iterator[None]:
        """``self.<name>`` is ``value`` while the body runs (then what it was);
        the watcher thread runs from the first mark's start to the last one's end."""
        with self._lock:
            outer = getattr(self, name)
            setattr(self, name, value)
        self._marked += 1
        try:  # an interrupt anywhere in here still ends the watcher
            if self._marked == 1 and self.poll > 0:
                self._stop = threading.Event()
                self._watcher = threading.Thread(target=self._watch, args=(self._stop,),
                                                 daemon=True, name="symopt-progress")
                self._watcher.start()
            yield
        finally:
            self._marked -= 1
            if self._marked == 0 and self._watcher is not None:
                self._stop.set()
                self._watcher.join()
                self._watcher = None
            with self._lock:
                setattr(self, name, outer)

    def chunk(self, runs: int, *, compiling: bool) -> None:
        """A chunk of ``runs`` runs starts; ``compiling``: its program is new.
        Logs a line if the log has been quiet for ``every`` seconds."""
        self._set(phase="compiling the program for" if compiling else "training", runs=runs)
        self.check()

    def compiled(self) -> None:
        """The chunk's program is compiled: it trains from here."""
        self._set(phase="training")

    def trained(self) -> None:
        """The chunk is trained."""
        with self._lock:
            if self._work is not None:
                self._work.done, self._work.runs = self._work.done + self._work.runs, 0

    def _set(self, **changes: Any) -> None:
        with self._lock:
            if self._work is not None:
                for key, value in changes.items():
                    setattr(self._work, key, value)
                self._work.since = self.clock()

    def check(self) -> None:
        """Logs what the run does if the log has been quiet for ``every``
        seconds and a stage or a trainer call is marked."""
        with self._lock:
            now = self.clock()
            if (self._stage is None and self._work is None) or now - self._last < self.every:
                return
            self._last = now
            parts = []
            if self._stage is not None:
                what, since = self._stage
                parts.append(what if self._work is not None
                             else f"{what} ({format_seconds(now - since)} so far)")
            if self._work is not None:
                parts.append(self._work.text(now))
            line = PROGRESS_PREFIX + ": ".join(parts)
        self.log(line)

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll):
            try:
                self.check()
            except Exception:  # noqa: BLE001 (a failing log: the run's next line says why)
                return


def _working(progress: Progress | None, task, kind: str, total: int):
    return (progress.working(task, kind, total) if progress is not None
            else contextlib.nullcontext())


_RAN: set[tuple[Any, int]] = set()
"""(compiled trainer, rows) pairs that have run in this process: their program
is compiled, so a call with them only trains."""


def _train_chunk(trainer, args: tuple[Any, ...], rows: int, runs: int,
                 progress: Progress | None) -> dict[str, jax.Array]:
    """``trainer(*args)``, a compiled program over ``rows`` rows, told to
    ``progress`` as a chunk of ``runs`` runs: compiling (where the program has
    not run in this process), then training, then done."""
    program = (trainer, rows)
    if progress is not None:
        progress.chunk(runs, compiling=program not in _RAN)
    out = trainer(*args)
    _RAN.add(program)
    if progress is None:
        return out
    progress.compiled()
    out = jax.block_until_ready(out)  # as _to_metrics would: the chunk is trained
    progress.trained()
    return out


@functools.cache
def _compiled_population_trainer(task, shape: ProgramShape, num_seeds: int, strategy: str,
                                 mesh: jax.sharding.Mesh):
    """jit(shard_map over devices(train all runs of the local candidates))."""

    def train(program: Program, scalars: StepTables, seeds: jax.Array,
              data) -> dict[str, jax.Array]:
        candidates = program.momentum.shape[0]
        one_run = jax.eval_shape(task.init, jax.random.key(0))[0]
        layout = population.weight_layout(one_run, strategy)
        tx = population.optimizer(program, shape, task.steps, runs_per_candidate=num_seeds,
                                  seeds=jnp.tile(seeds, candidates), strategy=strategy,
                                  scalars=scalars, layout=layout)
        return _train_runs(tx, task, data, _run_keys(seeds, candidates), layout=layout)

    spec, replicated = jax.sharding.PartitionSpec("population"), jax.sharding.PartitionSpec()
    per_step = jax.sharding.PartitionSpec(None, "population")  # [T, P, ...] tables
    sharded = jax.shard_map(
        train, mesh=mesh, in_specs=(spec, StepTables(per_step, per_step),
                                    replicated, replicated),
        out_specs=spec, check_vma=False)
    return jax.jit(sharded)


@functools.cache
def _compiled_baseline_trainer(task, make_tx: Callable[..., optax.GradientTransformation],
                               num_seeds: int, mesh: jax.sharding.Mesh,
                               eval_params: Callable[[Any, Any], Any] | None = None):
    """The same loop with native optax optimizers, vmapped over runs."""

    def train(args, seeds, data):
        candidates = jax.tree.leaves(args)[0].shape[0]
        run_args = jax.tree.map(lambda x: jnp.repeat(x, num_seeds, axis=0), args)
        tx = optax.GradientTransformationExtraArgs(
            lambda params: jax.vmap(lambda a, p: make_tx(*a).init(p))(run_args, params),
            lambda g, s, p=None: jax.vmap(lambda a, g, s, p: make_tx(*a).update(g, s, p))(
                run_args, g, s, p),
        )
        return _train_runs(tx, task, data, _run_keys(seeds, candidates), eval_params)

    spec, replicated = jax.sharding.PartitionSpec("population"), jax.sharding.PartitionSpec()
    sharded = jax.shard_map(train, mesh=mesh, in_specs=(spec, replicated, replicated),
                            out_specs=spec, check_vma=False)
    return jax.jit(sharded)


def clear_compiled() -> None:
    """Forgets the compiled training programs, so that the next call traces and
    compiles again (the benchmarks time compiles with it)."""
    _compiled_population_trainer.cache_clear()
    _compiled_baseline_trainer.cache_clear()
    _RAN.clear()


def _device_mesh(devices: Sequence[jax.Device] | None) -> jax.sharding.Mesh:
    devices = list(devices) if devices is not None else jax.local_devices()
    return jax.sharding.Mesh(np.asarray(devices), ("population",))


def _pad(tree, size: int, multiple: int, at_least: int = 0):
    """Pads the leading axis to a multiple of ``multiple``, and at least
    ``at_least`` rows, with copies of row 0."""
    padded = -(-max(size, at_least) // multiple) * multiple
    if padded == size:
        return tree
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], padded - size, 0)]), tree)


def _local_share(size: int) -> slice:
    """This process's contiguous share of ``size`` candidates."""
    n, i = jax.process_count(), jax.process_index()
    per = -(-size // n)
    return slice(min(i * per, size), min((i + 1) * per, size))


class PeerLost(RuntimeError):
    """Another process of a multi-host run stopped: the collective that
    gathers the metrics failed. The message is one line."""


def _gather_hosts(metrics: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    if jax.process_count() == 1:
        return metrics
    from jax.experimental import multihost_utils  # noqa: PLC0415

    per = -(-size // jax.process_count())
    padded = {k: np.concatenate([v, np.repeat(v[:1], per - len(v), 0)]) if len(v) < per else v
              for k, v in metrics.items()}
    try:
        gathered = multihost_utils.process_allgather(padded, tiled=True)
    except Exception as e:  # noqa: BLE001 (Gloo, NCCL and gRPC failures have no common type)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PeerLost(f"process {jax.process_index()} of {jax.process_count()}: another "
                       f"process of this multi-host run stopped ({first})") from e
    return {k: np.asarray(v)[:size] for k, v in gathered.items()}


def _to_metrics(out: dict[str, jax.Array], size: int, num_seeds: int) -> dict[str, np.ndarray]:
    """[R, ...] run arrays as [P, S, ...] host arrays, padding dropped."""
    return {k: np.asarray(v)[: size * num_seeds].reshape(size, num_seeds, *v.shape[1:])
            for k, v in out.items()}


def _result(metrics: dict[str, np.ndarray]) -> RunMetrics:
    return RunMetrics(**{f: metrics[f] for f in RunMetrics._fields})


def evaluate(
    program: Program,
    task,
    seeds: int | Sequence[int] | None = None,
    *,
    shape: ProgramShape | None = None,
    devices: Sequence[jax.Device] | None = None,
    strategy: str = "auto",
    progress: Progress | None = None,
) -> RunMetrics:
    """Trains every candidate of ``program`` on ``task`` with each seed.

    Args:
      program: the population (:func:`symopt.encode`).
      task: a :class:`symopt.tasks.Task`.
      seeds: a number of seeds (``0..n-1``) or the seeds themselves; default
        ``task.seeds``.
      shape: the program's shape (default: read from its arrays).
      devices: local devices to shard the population over (default: all).
      strategy: the population optimizer's strategy (see
        :func:`symopt.population.optimizer`).
      progress: told whether the program compiles and when it is trained
        (:class:`Progress`), where a caller works under it.

    Returns:
      :class:`RunMetrics` with arrays of shape [P, S] (the learning curves
      [P, S, points], at the steps :func:`curve_steps` names).
    """
    seeds = _seed_list(seeds, task)
    shape = shape or shape_of(program)
    strategy = population.resolve_strategy(strategy)
    size = program.size
    share = _local_share(size)
    local_size = share.stop - share.start
    mesh = _device_mesh(devices)
    trainer = _compiled_population_trainer(task, shape, len(seeds), strategy, mesh)
    # Every process's share padded to the largest one: the same shapes on every
    # device, so N processes compute what one process with N times the devices does.
    per = -(-size // jax.process_count())
    local = _pad(jax.tree.map(lambda x: x[share], program), local_size, mesh.devices.size,
                 at_least=per)
    data = task.data()
    budget.check(task, jax.tree.leaves(local)[0].shape[0] * len(seeds),
                 POPULATION_ARRAYS + shape.max_states + shape.max_nodes,
                 devices=mesh.devices.flat, data=data)
    # The schedules and decays, tabulated on the host: no compile for them.
    scalars = step_tables(local, task.steps)
    rows = jax.tree.leaves(local)[0].shape[0]
    out = _train_chunk(trainer, (local, scalars, jnp.asarray(seeds, jnp.int32), data), rows,
                       size * len(seeds), progress)
    metrics = _gather_hosts(_to_metrics(out, local_size, len(seeds)), size)
    return _result(metrics)


def evaluate_baseline(
    make_tx: Callable[..., optax.GradientTransformation],
    args: Any,
    task,
    seeds: int | Sequence[int] | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
    eval_params: Callable[[Any, Any], Any] | None = None,
    progress: Progress | None = None,
) -> RunMetrics:
    """Trains native optax optimizers ``make_tx(*args[i])`` the same way.

    ``args`` is a tuple of arrays with a leading axis (one row per candidate),
    e.g. ``(learning_rates,)`` with ``make_tx = optax.adam``: the reference
    that fitness is normalised by, the comparisons optax ships
    (:class:`symopt.comparisons.OptaxOptimizer`) and the reference of the
    overhead benchmark. ``eval_params(state, params)`` (one run's) gives the
    params the validation and test losses are measured at, e.g.
    ``optax.contrib.schedule_free_eval_params`` (None: the trained params).
    ``make_tx`` and ``eval_params`` key the compiled program: pass the same
    objects to reuse it. ``progress`` (:class:`Progress`) is told what it
    trains.
    """
    size = int(jax.tree.leaves(args)[0].shape[0])
    if size < jax.process_count():  # a row for every process: the last one repeated
        more = jax.process_count() - size
        padded = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], more, 0)]), args)
        metrics = evaluate_baseline(make_tx, padded, task, seeds, devices=devices,
                                    eval_params=eval_params, progress=progress)
        return RunMetrics(*(None if x is None else x[:size] for x in metrics))
    seeds = _seed_list(seeds, task)
    share = _local_share(size)
    local_size = share.stop - share.start
    mesh = _device_mesh(devices)
    trainer = _compiled_baseline_trainer(task, make_tx, len(seeds), mesh, eval_params)
    local = _pad(jax.tree.map(lambda x: x[share], args), local_size, mesh.devices.size,
                 at_least=-(-size // jax.process_count()))
    data = task.data()
    budget.check(task, jax.tree.leaves(local)[0].shape[0] * len(seeds), BASELINE_STATES,
                 devices=mesh.devices.flat, data=data, what="reference or comparison optimizers")
    rows = jax.tree.leaves(local)[0].shape[0]
    with _working(progress, task, _optax_name(make_tx), size * len(seeds)):
        out = _train_chunk(trainer, (local, jnp.asarray(seeds, jnp.int32), data), rows,
                           size * len(seeds), progress)
        metrics = _gather_hosts(_to_metrics(out, local_size, len(seeds)), size)
    return _result(metrics)


def _optax_name(make_tx: Callable[..., Any]) -> str:
    """``make_tx``'s name for a progress line (``adam``), or ``optax`` (a lambda, a partial)."""
    name = getattr(make_tx, "__name__", "")
    return name if name.isidentifier() else "optax"


def at_multipliers(graphs: Sequence[Any], multipliers: Sequence[float]) -> list[Any]:
    """Each graph at each multiple of its learning rate, graph-major: row
    ``i * len(multipliers) + j`` is graph ``i`` at ``multipliers[j]``, so the
    rates of a population are extra rows of one compiled program."""
    return [g.with_hparams(learning_rate=g.hparams.learning_rate * m)
            for g in graphs for m in multipliers]


def _seed_list(seeds, task) -> list[int]:
    if seeds is None:
        seeds = task.seeds
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    return [int(s) for s in seeds]


def shape_of(program: Program) -> ProgramShape:
    """The :class:`ProgramShape` a program was encoded with: its sizes, and
    ``leaf_ops`` where one of its graphs uses a per-leaf operator."""
    return ProgramShape(
        leaf_ops=encodes_leaf_ops(program.update),
        max_nodes=int(program.update.op.shape[-1]),
        max_operands=int(program.operands.shape[-1]),
        max_constants=int(program.constants.shape[-1]),
        max_states=int(program.states.shape[-1]),
        max_decay_nodes=int(program.decays.op.shape[-1]),
        max_schedule_nodes=int(program.schedule_expr.op.shape[-1]),
        max_schedule_values=int(program.schedule_values.shape[-1]),
    )


# --------------------------------------------------------------------------
# Graphs in fixed-size chunks.


def evaluate_graphs(
    graphs: Sequence[Any],
    task,
    seeds: int | Sequence[int] | None = None,
    *,
    shape: ProgramShape,
    chunk_size: int,
    strategy: str = "auto",
    pad_graph: Any = None,
    devices: Sequence[jax.Device] | None = None,
    progress: Progress | None = None,
) -> RunMetrics:
    """Trains ``graphs`` in chunks of exactly ``chunk_size`` candidates.

    Every chunk is padded to ``chunk_size`` (with ``pad_graph``, default the
    zoo's SGD, whose results are dropped), so one compiled program serves
    every call with the same ``(task, shape, chunk_size)``: a search trains
    its whole run with one compile per task. ``progress``
    (:class:`Progress`) is told each chunk, and watches the clock while they train.

    Returns:
      :class:`RunMetrics` with arrays of shape [len(graphs), S].
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    pad_graph = zoo.sgd() if pad_graph is None else pad_graph
    parts = []
    with _working(progress, task, "graph", len(graphs) * len(_seed_list(seeds, task))):
        for start in range(0, len(graphs), chunk_size):
            chunk = list(graphs[start:start + chunk_size])
            padded = chunk + [pad_graph] * (chunk_size - len(chunk))
            metrics = evaluate(encode(padded, shape), task, seeds, shape=shape,
                               devices=devices, strategy=strategy, progress=progress)
            size = len(chunk)
            parts.append(jax.tree.map(lambda x, size=size: x[:size], metrics))
    if not parts:
        num_seeds = len(_seed_list(seeds, task))
        points = len(curve_steps(task.steps))
        return RunMetrics(*(np.zeros((0, num_seeds)) for _ in RunMetrics._fields[:-1]),
                          loss_curve=np.zeros((0, num_seeds, points)))
    return RunMetrics(*(np.concatenate(xs) for xs in zip(*parts, strict=True)))


@dataclasses.dataclass(frozen=True)
class Trainer:
    """How populations are trained: one object that carries the choices every
    caller shares, so that none is threaded through signatures (and none is
    forgotten on the way).

    Attributes:
      strategy: the population optimizer's strategy (``evaluation.strategy``;
        :func:`symopt.population.resolve_strategy`).
      chunk_size: rows per compiled program for :meth:`graphs` (0: all rows
        in one program).
      devices: the local devices the population is sharded over (None: all).
      progress: the run's log, timed (:class:`Progress`): while this trainer
        compiles or trains, a line whenever the log has been quiet too long
        (None: no lines).
    """

    strategy: str = "auto"
    chunk_size: int = 0
    devices: tuple[jax.Device, ...] | None = None
    progress: Progress | None = dataclasses.field(default=None, compare=False)

    def graphs(self, graphs: Sequence[Any], task, seeds: int | Sequence[int] | None = None, *,
               shape: ProgramShape, pad_graph: Any = None) -> RunMetrics:
        """:func:`evaluate_graphs` with this trainer's strategy, chunks and devices."""
        return evaluate_graphs(graphs, task, seeds, shape=shape,
                               chunk_size=self.chunk_size or max(len(graphs), 1),
                               strategy=self.strategy, pad_graph=pad_graph,
                               devices=self.devices, progress=self.progress)

    def optax(self, make_tx: Callable[..., optax.GradientTransformation], args: Any, task,
              seeds: int | Sequence[int] | None = None, *,
              eval_params: Callable[[Any, Any], Any] | None = None) -> RunMetrics:
        """:func:`evaluate_baseline` on this trainer's devices."""
        return evaluate_baseline(make_tx, args, task, seeds, devices=self.devices,
                                 eval_params=eval_params, progress=self.progress)

    def with_chunk(self, chunk_size: int) -> Trainer:
        """This trainer with ``chunk_size`` rows per compiled program."""
        return dataclasses.replace(self, chunk_size=chunk_size)
