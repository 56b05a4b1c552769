"""The search loop as a library function: config -> a finished, archived search.

``run(config, workdir)`` builds the space, the searcher and the tasks of each
role (search, validation, test; :mod:`symopt.config`), then, generation by
generation::

    ask -> to_graph -> integrity check -> fingerprint cache -> train (each
    candidate at every learning-rate multiplier, as rows of one compiled
    program per task, fixed-size chunks) -> fitness against the tuned
    baseline (symopt.fitness) -> best multiplier written back -> archive (one
    transaction per chunk) -> tell -> progress line

and at the end runs the funnel: successive halving of the best candidates
on the validation tasks chooses the winner (``best.json``, a Graph that
``symopt.load`` reads), the test tasks report it next to the baselines
(:mod:`symopt.heldout`), and ``summary.md`` gets every table and the hall of
fame (:mod:`symopt.report`).

Resuming: everything lands in ``<workdir>/archive.sqlite``. The searchers are
deterministic functions of their seed and the fitness they are told, so a run
restarted on the same workdir (after a crash or ``kill -9``) replays the
search and takes every candidate already in the archive from it instead of
training it again; with the same seed it ends where an uninterrupted run
ends. A workdir holding a run of a different config is refused (except for
the keys of :data:`symopt.config.RESUMABLE_CHANGES`, e.g. more generations).

The fingerprint cache (AutoML-Zero's functional-equivalence cache): a
candidate whose integrity-probe fingerprint equals one already measured in
this run is recorded as a ``duplicate`` with that candidate's fitness and is
not trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from symopt import archive as archive_lib
from symopt import config as config_lib
from symopt import (
    evaluate,
    fitness,
    heldout,
    integrity,
    report,
    searchers,
    simplicity,
    spaces,
    symbolic,
    tasks,
)
from symopt import graph as graph_lib
from symopt.archive import Archive, ArchiveError, CandidateRecord, StageResult, to_jsonable
from symopt.searchers import Candidate

Log = Callable[[str], None]
_CONFIG_META = ("search_horizon", "baseline", "baseline_learning_rates", "baseline_elimination",
                "baseline_elimination_learning_rates", "test_results", "outputs")
"""Meta keys whose values follow from the config (what a new config drops)."""
_METRIC_FIELDS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished search left in its workdir."""

    workdir: str
    best: CandidateRecord
    best_graph: graph_lib.Graph
    counts: dict[str, int]  # candidates by status
    evaluated_now: int  # candidates trained by this call (not taken from the archive)
    seconds: float

    @property
    def found_anything(self) -> bool:
        """Whether the winner passed the check and trained without diverging."""
        return (self.best.fitness is not None and self.best.status != "diverged"
                and math.isfinite(self.best.fitness))


# --------------------------------------------------------------------------
# Building the pieces from the config.


def build_space(config: ml_collections.ConfigDict) -> Any:
    """The configured search space."""
    try:
        return spaces.get(config.space.name, **config.space.options.to_dict())
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(f"config.space: {e}") from None


def build_searcher(config: ml_collections.ConfigDict, space: Any, *,
                   horizon: int | None = None) -> Any:
    """The configured searcher over ``space``.

    ``horizon`` is the generation count that mutation decay is laid over
    (default ``search.generations``); a resumed run keeps its first horizon so
    that its replay breeds the same genomes.
    """
    name = config.search.name
    if name not in searchers.SEARCHERS:
        raise config_lib.ConfigError(
            f"config.search.name: unknown searcher {name!r}; known: {', '.join(searchers.names())}")
    fields = {f.name for f in dataclasses.fields(searchers.SEARCHERS[name])}
    seeds = config.search.seeds
    kwargs = dict(population_size=config.search.population_size,
                  seed_names=None if seeds.strip() == "default" else tuple(config_lib.names(seeds)))
    if "generations" in fields:
        kwargs["generations"] = horizon or config.search.generations
    kwargs.update(config.search.options.to_dict())
    try:
        searcher = searchers.get(name, space, **kwargs)
        searcher.ask(searcher.init(0))  # seeds and sizes are checked on the first ask
    except ValueError as e:
        raise config_lib.ConfigError(f"config.search: {config_lib.one_line(e)}") from None
    return searcher


def build_task(config: ml_collections.ConfigDict, name: str, *,
               role: str = "search") -> tasks.Task:
    """Task ``name`` with the config's data options, per-task options and budget.

    The budget is ``tasks.steps``/``tasks.seeds`` for a ``search`` task,
    ``elimination.steps``/``elimination.seeds`` for a ``validation`` task (an
    elimination stage) and ``test.steps``/``test.seeds`` for a ``test`` task
    (steps 0: the task's own default); it overrides ``tasks.options``.
    """
    try:
        accepted = tasks.options(name)
    except ValueError as e:  # unknown, or a module:function that does not resolve
        raise config_lib.ConfigError(f"config.tasks: {config_lib.one_line(e)}") from None
    overrides: dict[str, Any] = {}
    if "data_dir" in accepted and config.tasks.data_dir:
        overrides["data_dir"] = config.tasks.data_dir
    if "download" in accepted:
        overrides["download"] = config.tasks.download
    if config.tasks.batch_size:
        overrides["batch_size"] = config.tasks.batch_size
    overrides.update(config.tasks.options.to_dict().get(name, {}))
    budget = {"search": config.tasks, "validation": config.elimination,
              "test": config.test}[role]
    overrides["seeds"] = budget.seeds
    if budget.steps:
        overrides["steps"] = budget.steps
    elif role != "search":
        overrides.pop("steps", None)
    try:  # an option the task lacks is a ValueError naming it and the known ones
        return tasks.get(name, **overrides)
    except (ValueError, TypeError) as e:
        message = config_lib.one_line(e)
        raise config_lib.ConfigError(f"config.tasks.options.{name}: {message}") from None


def _check_task_options(config: ml_collections.ConfigDict) -> None:
    named = {n for role in config_lib.task_roles(config).values() for n in role}
    for key, value in config.tasks.options.to_dict().items():
        if key not in named:
            raise config_lib.ConfigError(f"config.tasks.options.{key}: not a task of this "
                                         f"config ({', '.join(sorted(named))})")
        if not isinstance(value, dict):
            raise config_lib.ConfigError(
                f"config.tasks.options.{key}: expected a dict of task options, got {value!r}")


DEFAULT_CHUNK = 16
"""Candidates per compiled program unless ``evaluation.chunk_size`` says: on
CPU the cost per candidate is flat from 8 to 48 (measured), and small chunks
waste less on padding when the cache and the check leave few to train."""


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What the config builds, before the run touches its workdir."""

    space: Any
    searcher: Any
    tasks: tuple[tasks.Task, ...]  # the search tasks
    stages: tuple[tuple[tasks.Task, ...], ...]  # elimination stages (the validation role)
    test_tasks: tuple[tasks.Task, ...]
    shape: Any  # the space's program shape
    chunk_size: int  # candidates per compiled program


def _setup(config: ml_collections.ConfigDict, horizon: int | None) -> _Setup:
    """Builds every piece of the run; fails, with the command that prepares it,
    if a task's data is missing."""
    _check_task_options(config)
    space = build_space(config)
    searcher = build_searcher(config, space, horizon=horizon)
    search_tasks = tuple(build_task(config, n) for n in config_lib.names(config.tasks.search))
    stages = tuple(tuple(build_task(config, n, role="validation") for n in stage)
                   for stage in config_lib.elimination_stages(config))
    test_tasks = tuple(build_task(config, n, role="test")
                       for n in config_lib.names(config.tasks.test))
    for task in (*search_tasks, *(t for stage in stages for t in stage), *test_tasks):
        task.data()
    chunk = config.evaluation.chunk_size or min(DEFAULT_CHUNK, searcher.children_per_generation)
    return _Setup(space, searcher, search_tasks, stages, test_tasks, space.program_shape(), chunk)


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every step of a run reads."""

    config: ml_collections.ConfigDict
    workdir: str
    setup: _Setup
    archive: Archive
    log: Log


# --------------------------------------------------------------------------
# The run.


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike[str], *,
        log: Log = print) -> RunResult:
    """Runs (or resumes) the search ``config`` in ``workdir``; see the module docstring."""
    start = time.perf_counter()
    config = config_lib.validate(config)
    workdir = os.fspath(workdir)
    horizon = _first_horizon(workdir)
    setup = _setup(config, horizon)
    where = ["before the first generation"]  # how far the run got, for an interrupt
    try:
        return _run(config, workdir, horizon, setup, log, where, start)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through symopt.cli
        raise Interrupted(where[0]) from e


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``where`` says how far it had got.
    Everything trained before is in the archive, and the same call resumes."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def _run(config: ml_collections.ConfigDict, workdir: str, horizon: int | None, setup: _Setup,
         log: Log, where: list[str], start: float) -> RunResult:
    writer = jax.process_index() == 0  # in a multi-host run, process 0 alone writes
    lock = workdir_lock(workdir) if writer else contextlib.nullcontext()
    with lock, _open_archive(config, workdir, log, writer=writer) as archive:
        if horizon is None:
            archive.put_meta("search_horizon", config.search.generations)
        ctx = _Context(config, workdir, setup, archive, log)
        baseline = _baselines(ctx, "baseline", setup.tasks)
        log(_banner(config, setup))

        searcher = setup.searcher
        state = searcher.init(config.search.seed)
        known: dict[str, CandidateRecord] = {}  # the fingerprint cache: the first measured
        trained, times = 0, []
        for gen in range(config.search.generations):
            where[0] = f"after generation {gen}" if gen else "in the first generation"
            gen_start, compiled = time.perf_counter(), compile_seconds()
            state, candidates = searcher.ask(state)
            generation = _measure_generation(ctx, baseline, candidates, known)
            state = searcher.tell(state, generation.told, generation.fitness)
            _remember(known, generation.records)
            seconds = time.perf_counter() - gen_start
            trained += generation.trained
            if generation.trained:  # what a generation costs once compiled
                times.append(max(seconds - (compile_seconds() - compiled), 0.0))
            best = archive.get(searcher.best(state)[0].id)
            remaining = config.search.generations - gen - 1
            log(_progress(config, gen, generation, best, seconds, eta(times, remaining)))

        where[0] = f"after generation {config.search.generations}, during elimination"
        winner = _eliminate(ctx) if setup.stages else None
        if winner is None:
            winner = _best_searched(ctx, searcher.best(state)[0].id)
        _warn_if_unfit(winner.record, log)
        _write_output(archive, workdir, BEST, lambda path: graph_lib.save(winner.graph, path))
        where[0] = f"after generation {config.search.generations}, during the test tasks"
        test_results = _test(ctx, winner) if setup.test_tasks else []
        _write_output(archive, workdir, report.FILENAME, lambda path: report.write_summary(
            workdir, config, archive, baseline, winner.record, winner.graph,
            winner.ranking if setup.stages else (), test_results))
        counts = archive.count_by_status()
    seconds = time.perf_counter() - start
    log(f"done in {_format_seconds(seconds)}: best #{winner.record.id} fitness "
        f"{report.fitness_text(winner.record)} (Adam = 1); {os.path.join(workdir, 'best.json')}, "
        f"{os.path.join(workdir, 'summary.md')}")
    return RunResult(workdir, winner.record, winner.graph, counts, trained, seconds)


# --------------------------------------------------------------------------
# Opening the workdir.

BEST = "best.json"


def _write_output(archive: Archive, workdir: str, name: str,
                  write: Callable[[str], Any]) -> None:
    """Writes ``<workdir>/<name>`` with ``write(path)``, refusing to replace a
    file this run did not write: the archive keeps the hash of each file it
    writes (meta ``outputs``)."""
    path = os.path.join(workdir, name)
    if jax.process_index() != 0:  # in a multi-host run, process 0 alone writes
        return
    outputs = archive.get_meta("outputs", {}) or {}
    if os.path.exists(path) and _file_hash(path) != outputs.get(name):
        raise ArchiveError(f"{path} was not written by this run, or was changed since; move it "
                           "away (or use another --workdir) and rerun to resume")
    write(path)
    archive.put_meta("outputs", {**outputs, name: _file_hash(path)})


def _file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
    """One run per workdir at a time (an advisory lock, released at exit or kill).

    Raises:
      ArchiveError: another process holds the lock.
    """
    archive_lib.check_workdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ArchiveError(f"{workdir}: another symopt run is using this workdir") from None
        yield


def _first_horizon(workdir: str) -> int | None:
    """``search.generations`` of the run already in ``workdir`` (None: no run yet)."""
    if not os.path.exists(os.path.join(workdir, archive_lib.FILENAME)):
        return None
    with Archive.open(workdir, create=False) as archive:
        return archive.get_meta("search_horizon")


def _open_archive(config: ml_collections.ConfigDict, workdir: str, log: Log, *,
                  writer: bool = True) -> Archive:
    """The workdir's archive, holding ``config``: a new run stores it, a resumed
    run may differ from the stored one only in the resumable keys. The other
    processes of a multi-host run (not ``writer``) work on an in-memory copy:
    they compute and record what process 0 does, and only it writes."""
    archive = Archive.open(workdir) if writer else Archive.in_memory_copy(workdir)
    stored = archive.config()
    if stored is None:
        archive.set_config(config.to_dict())
        return archive
    changed = [k for k in archive.config_diff(config.to_dict())
               if k not in config_lib.RESUMABLE_CHANGES]
    if changed and not archive.ids():  # nothing trained depends on the old config
        with archive.transaction():
            archive.set_config(config.to_dict(), replace=True)
            for key in _CONFIG_META:
                archive.put_meta(key, None)
        log(f"the run in {workdir} had trained nothing; starting it again with this config")
        return archive
    if changed:
        archive.close()
        raise config_lib.ConfigError(
            f"workdir {workdir} holds a run with a different config (keys: {', '.join(changed)});"
            " use a new --workdir or the same config to resume")
    if config.search.generations < stored["search"]["generations"]:
        archive.close()
        raise config_lib.ConfigError(
            f"config.search.generations: the run in {workdir} has "
            f"{stored['search']['generations']}; a resumed run may only add generations")
    archive.set_config(config.to_dict(), replace=True)
    log(f"resuming the run in {workdir}: {len(archive.ids())} candidates in the archive")
    return archive


def _banner(config: ml_collections.ConfigDict, setup: _Setup) -> str:
    return (f"search: {config.search.name} over the {setup.space.name} space, "
            f"{config.search.generations} generations x {config.search.population_size}, "
            f"tasks {', '.join(t.name for t in setup.tasks)} "
            f"({setup.tasks[0].steps} steps, {config.tasks.seeds} seeds), "
            f"{setup.chunk_size} candidates per compiled program, "
            f"{jax.local_device_count()} {jax.default_backend()} device(s)")


# --------------------------------------------------------------------------
# Baselines.


def tuned_baseline(task: tasks.Task, learning_rates: Sequence[float], split: str,
                   metric: str) -> fitness.Baseline:
    """Adam on ``task`` (native ``optax.adam``, same loop and seeds) at each
    learning rate, all in one program; the best value under ``metric``."""
    metrics = evaluate.evaluate_baseline(optax.adam, (jnp.asarray(learning_rates),), task)
    best = fitness.choose_baseline(fitness.task_values(metrics, split, metric), learning_rates,
                                   metric)
    chosen = list(learning_rates).index(best.learning_rate)
    if np.asarray(metrics.diverged)[chosen].all() or not math.isfinite(best.value):
        rates = ", ".join(f"{lr:g}" for lr in learning_rates)
        raise config_lib.ConfigError(
            f"config.evaluation.baseline_learning_rate: Adam diverged on {task.name} at every "
            f"learning rate tried ({rates}), so it cannot normalise the fitness; choose a "
            "smaller rate")
    return best


def _baselines(ctx: _Context, key: str, task_list: Sequence[tasks.Task]) -> dict[str, float]:
    """Adam's value on each task, tuned over :func:`baseline_grid`; trained once
    per run and kept in the archive (meta ``key``, and ``key +
    "_learning_rates"``), so a resume reuses it."""
    ev, archive = ctx.config.evaluation, ctx.archive
    stored = archive.get_meta(key, {}) or {}
    rates = archive.get_meta(key + "_learning_rates", {}) or {}
    missing = [t for t in task_list if t.name not in stored]
    grid = fitness.baseline_grid(ev)
    for task in missing:
        ctx.log(f"baseline: training Adam (lr {', '.join(f'{lr:g}' for lr in grid)}) on "
                f"{task.name} ...")
        best = tuned_baseline(task, grid, ev.split, ev.metric)
        stored[task.name], rates[task.name] = best.value, best.learning_rate
        ctx.log(f"baseline: Adam {ev.metric} on {task.name} = {best.value:.4f} "
                f"(lr {best.learning_rate:g})")
    if missing:
        with archive.transaction():
            archive.put_meta(key, stored)
            archive.put_meta(key + "_learning_rates", rates)
    return {t.name: stored[t.name] for t in task_list}


# --------------------------------------------------------------------------
# Measuring candidates.


@dataclasses.dataclass(frozen=True)
class Measured:
    """What training a list of graphs on some tasks gave, per graph."""

    fitness: np.ndarray  # [n] aggregate over tasks (and learning-rate multipliers)
    multiplier: np.ndarray  # [n] the chosen learning-rate multiplier
    details: list[dict[str, Any]]  # per graph: task -> metrics at the chosen multiplier
    diverged: np.ndarray  # [n] every seed diverged on some task, at the chosen multiplier


def measure(graphs: Sequence[graph_lib.Graph], task_list: Sequence[tasks.Task],
            baseline: dict[str, float], shape: Any, chunk_size: int,
            config: ml_collections.ConfigDict,
            allowed: np.ndarray | None = None) -> Measured:
    """Trains ``graphs`` at each of ``evaluation.lr_multipliers`` on ``task_list``.

    Every graph at every multiplier is one row of the population: a chunk of
    ``chunk_size`` graphs is ``chunk_size * k`` rows of one compiled program.
    ``allowed`` [n, k] masks multipliers that may not be chosen (a rate the
    genome cannot express).
    """
    ev = config.evaluation
    multipliers = tuple(float(m) for m in ev.lr_multipliers)
    n, k = len(graphs), len(multipliers)
    rows = evaluate.at_multipliers(graphs, multipliers)
    per_task, by_task = {}, {}
    for task in task_list:
        m = evaluate.evaluate_graphs(rows, task, shape=shape, chunk_size=chunk_size * k,
                                     strategy=ev.strategy)
        values = fitness.runs(m, ev.split, ev.metric)
        per_task[task.name] = values.mean(axis=1).reshape(n, k)
        by_task[task.name] = (m, values)
    per_multiplier = np.stack(
        [fitness.aggregate({t: v[:, j] for t, v in per_task.items()}, baseline, ev.metric)
         for j in range(k)], axis=1) if n else np.zeros((0, k))
    if allowed is not None:
        per_multiplier = np.where(allowed, per_multiplier, -np.inf)
    fit, chosen = fitness.over_multipliers(per_multiplier, ev.lr_aggregate, ev.metric)
    details, diverged = [], np.zeros(n, bool)
    for i in range(n):
        row = i * k + int(chosen[i])
        detail = {name: _task_metrics(m, row, values, baseline[name], ev.metric)
                  for name, (m, values) in by_task.items()}
        detail["learning_rate"] = {
            "multiplier": multipliers[int(chosen[i])],
            "fitness_per_multiplier": [float(x) for x in per_multiplier[i]]}
        details.append(detail)
        diverged[i] = any(m.diverged[row].all() for m, _ in by_task.values())
    return Measured(fit, np.asarray(multipliers)[chosen] if n else np.zeros(0), details,
                    diverged)


def _task_metrics(metrics: evaluate.RunMetrics, i: int, values: np.ndarray, baseline: float,
                  metric: str) -> dict[str, Any]:
    out = {f: float(np.nanmean(getattr(metrics, f)[i])) if not np.all(
        np.isnan(getattr(metrics, f)[i])) else None for f in _METRIC_FIELDS}
    out["value"] = float(values[i].mean())  # the metric's value: a clipped loss or a fitness
    out["normalized"] = float(fitness.task_scores(values[i].mean(), baseline, metric))
    out["value_per_seed"] = [float(x) for x in values[i]]
    out["diverged"] = int(metrics.diverged[i].sum())
    return out


# --------------------------------------------------------------------------
# One generation.


@dataclasses.dataclass(frozen=True)
class _Generation:
    """One generation, measured and archived."""

    told: list[Candidate]  # what to tell the searcher: genomes at their written-back rate
    fitness: np.ndarray  # [n] search fitness (-inf: rejected)
    records: list[CandidateRecord]  # as archived, in the order asked
    trained: int  # candidates trained now (not taken from the archive)


def _measure_generation(ctx: _Context, baseline: dict[str, float],
                        candidates: Sequence[Candidate],
                        known: Mapping[str, CandidateRecord]) -> _Generation:
    """Measures and archives ``candidates``.

    An archived candidate (a replay after a restart) is taken from the
    archive; one the integrity check rejects is recorded as rejected; one
    whose fingerprint is ``known`` or measured earlier in this generation is
    recorded as a duplicate; the rest are trained in chunks, each chunk one
    transaction (a kill loses at most a chunk). A trained candidate's best
    learning-rate multiplier is written back: the archive holds its genome and
    graph at that rate, and the searcher is told the written-back genome, so
    children inherit the rate that worked.
    """
    ev, space, archive = ctx.config.evaluation, ctx.setup.space, ctx.archive
    told: dict[int, Candidate] = {}
    records: dict[int, CandidateRecord] = {}
    archived: set[int] = set()
    first_with: dict[str, int] = {}  # fingerprint -> the first of this generation measured
    pending, copies = [], []
    for c in candidates:
        stored = archive.get(c.id)
        if stored is not None:
            told[c.id], records[c.id] = _replayed(ctx, c, stored), stored
            archived.add(c.id)
            if _is_measured(stored):
                first_with.setdefault(stored.fingerprint, c.id)
            continue
        graph = space.to_graph(c.genome)
        checked = integrity.check(graph) if ev.check else None
        fp = checked.fingerprint if checked is not None else integrity.fingerprint(graph)
        if checked is not None and not checked.ok:
            records[c.id] = _record(space, c, graph, fp, status="rejected", reason=checked.reason)
        elif ev.dedupe and (fp in known or fp in first_with):
            copies.append((c, graph, fp))
        else:
            first_with.setdefault(fp, c.id)
            pending.append((c, graph, fp))
    for start in range(0, len(pending), ctx.setup.chunk_size):
        for c, record in _train(ctx, baseline, pending[start:start + ctx.setup.chunk_size]):
            told[c.id], records[c.id] = c, record
            archived.add(c.id)
    for c, graph, fp in copies:
        original = known.get(fp) or records[first_with[fp]]
        told[c.id], records[c.id] = _duplicate(space, c, graph, fp, original)
    archive.add_candidates([records[c.id] for c in candidates if c.id not in archived])
    ordered = [records[c.id] for c in candidates]
    return _Generation(told=[told.get(c.id, c) for c in candidates],
                       fitness=np.array([report.search_fitness(r) for r in ordered]),
                       records=ordered, trained=len(pending))


def _train(ctx: _Context, baseline: dict[str, float],
           chunk: Sequence[tuple[Candidate, graph_lib.Graph, str]],
           ) -> list[tuple[Candidate, CandidateRecord]]:
    """Trains ``chunk`` as one program and archives it in one transaction;
    each candidate as told (written back) and its record."""
    config, space = ctx.config, ctx.setup.space
    start = time.perf_counter()
    allowed = np.array([[space.scale_learning_rate(c.genome, float(m)) is not None
                         for m in config.evaluation.lr_multipliers] for c, _, _ in chunk])
    measured = measure([g for _, g, _ in chunk], ctx.setup.tasks, baseline, ctx.setup.shape,
                       ctx.setup.chunk_size, config, allowed)
    seconds = (time.perf_counter() - start) / len(chunk)
    out = []
    rows = zip(chunk, measured.fitness, measured.multiplier, measured.details,
               measured.diverged, strict=True)
    for (c, graph, fp), fit, multiplier, detail, dead in rows:
        c, graph = _write_back(space, c, graph, float(multiplier))
        out.append((c, _record(space, c, graph, fp, status="diverged" if dead else "evaluated",
                               fitness=float(fit), metrics=detail, seconds=seconds)))
    ctx.archive.add_candidates([record for _, record in out])
    return out


def _duplicate(space: Any, c: Candidate, graph: graph_lib.Graph, fp: str,
               original: CandidateRecord) -> tuple[Candidate, CandidateRecord]:
    """``c`` as a duplicate of ``original``, at the original's learning rate."""
    c, graph = _write_back(space, c, graph, report.multiplier_of(original))
    return c, _record(space, c, graph, fp, status="duplicate", duplicate_of=original.id,
                      fitness=original.fitness)


def _replayed(ctx: _Context, c: Candidate, stored: CandidateRecord) -> Candidate:
    """``c`` as it was told when archived (its written-back genome).

    Raises:
      ArchiveError: the replayed candidate is not the one archived under its id.
    """
    # A duplicate was written back with the rate of the candidate it repeats.
    source = ctx.archive.get(stored.duplicate_of) if stored.status == "duplicate" else stored
    multiplier = report.multiplier_of(source) if source is not None else 1.0
    space = ctx.setup.space
    told, _ = _write_back(space, c, space.to_graph(c.genome), multiplier)
    if (to_jsonable(space.to_json(told.genome)) != stored.genome
            or tuple(c.parents) != stored.parents or c.generation != stored.generation):
        raise ArchiveError(
            f"{ctx.workdir}: the replayed search differs from the archive at candidate "
            f"{c.id} (a changed symopt or space?); resume with the same version or use a "
            "new --workdir")
    return told


def _write_back(space: Any, c: Candidate, graph: graph_lib.Graph,
                multiplier: float) -> tuple[Candidate, graph_lib.Graph]:
    """``c`` and its graph at ``multiplier`` times their learning rate; the
    genome stays as it is where the space cannot express that rate."""
    if multiplier == 1.0:
        return c, graph
    genome = space.scale_learning_rate(c.genome, multiplier)
    if genome is not None:
        c = dataclasses.replace(c, genome=genome)
    return c, graph.with_hparams(learning_rate=graph.hparams.learning_rate * multiplier)


def _record(space: Any, c: Candidate, graph: graph_lib.Graph, fingerprint: str | None, *,
            status: str, **fields: Any) -> CandidateRecord:
    return CandidateRecord(
        id=c.id, generation=c.generation, space=space.name, origin=c.origin,
        parents=c.parents, genome=space.to_json(c.genome), graph=graph_lib.to_dict(graph),
        fingerprint=fingerprint, status=status, **fields)


def _is_measured(record: CandidateRecord) -> bool:
    """Whether ``record`` was trained, so that its fingerprint's repeats need not be."""
    return record.status in ("evaluated", "diverged") and bool(record.fingerprint)


def _remember(known: dict[str, CandidateRecord], records: Sequence[CandidateRecord]) -> None:
    """Adds the measured ``records`` to the fingerprint cache (the first one stays)."""
    for record in records:
        if _is_measured(record):
            known.setdefault(record.fingerprint, record)


# --------------------------------------------------------------------------
# The progress line.


def _progress(config: ml_collections.ConfigDict, gen: int, generation: _Generation,
              best: CandidateRecord, seconds: float, eta: float | None) -> str:
    records, trained = generation.records, generation.trained
    values = [r.fitness for r in records if r.status == "evaluated" and r.fitness is not None]
    rejected = sum(r.status == "rejected" for r in records)
    duplicates = sum(r.status == "duplicate" for r in records)
    median = f"{np.median(values):.4f}" if values else "-"
    rate = f"{trained / seconds:.1f}" if trained and seconds > 0 else "-"
    return (f"gen {gen + 1}/{config.search.generations}  best {report.fitness_text(best)}  "
            f"median {median}  trained {trained} ({rate}/s)  rejected {rejected}  "
            f"duplicates {duplicates}  eta {_format_seconds(eta) if eta is not None else '-'}"
            f"\n  best #{best.id}: {report.equation(best)}")


def eta(times: Sequence[float], remaining: int) -> float | None:
    """Seconds left: ``remaining`` generations at the mean of ``times``, the
    measured seconds of the generations that trained anything, each less the
    time JAX spent compiling in it (:func:`compile_seconds`), which a later
    generation does not pay again."""
    return float(np.mean(times)) * remaining if times else None


_COMPILING = [0.0]


def _count_compile(event: str, seconds: float, **kwargs: Any) -> None:
    if event.startswith("/jax/core/compile/"):
        _COMPILING[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling with JAX
    (its monitoring events), so far."""
    return _COMPILING[0]


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --------------------------------------------------------------------------
# Choosing the winner.


@dataclasses.dataclass(frozen=True)
class Winner:
    """The candidate the funnel chose, and its graph (what best.json holds)."""

    record: CandidateRecord
    graph: graph_lib.Graph
    ranking: tuple[int, ...]  # candidate ids, best first (validation, else search fitness)


def _eliminate(ctx: _Context) -> Winner | None:
    """The validation funnel: successive halving of the top candidates over the
    elimination stages (Morgan & Hougen's progressive elimination, Lion's funnel
    selection). A stage's fitness is the normalised aggregate over its tasks,
    at each learning-rate multiplier; results are archived per stage (task
    ``a+b`` for a stage of two tasks). Returns the winner as archived, at the
    learning rate the search tasks chose (measured: a rate re-chosen on the
    validation tasks did worse as found on the test tasks), or None when
    nothing was evaluated. Its ranking holds every entrant."""
    config, archive, stage_tasks = ctx.config, ctx.archive, ctx.setup.stages
    baseline = _baselines(ctx, "baseline_elimination", [t for st in stage_tasks for t in st])
    entrants = archive.top(config.elimination.top_k)  # duplicates are never "evaluated"
    if not entrants:
        ctx.log("elimination: no evaluated candidate to eliminate")
        return None
    done = {(r.candidate_id, r.stage): r for r in archive.stage_results()}
    names = ["+".join(t.name for t in stage) for stage in stage_tasks]
    stages = [searchers.Stage(f"{i + 1}:{n}", keep=config.elimination.keep)
              for i, n in enumerate(names)]

    def measure_stage(ids: Sequence[int], stage_of: searchers.Stage) -> np.ndarray:
        stage = stages.index(stage_of)
        todo = [i for i in ids if (i, stage) not in done]
        if todo:
            first = stage_tasks[stage][0]
            ctx.log(f"elimination stage {stage + 1}/{len(stages)}: {len(todo)} candidates on "
                    f"{names[stage]} ({first.steps} steps, {first.seeds} seeds)")
            graphs = [graph_lib.from_dict(archive.get(i).graph) for i in todo]
            measured = measure(
                graphs, stage_tasks[stage], {t.name: baseline[t.name] for t in stage_tasks[stage]},
                ctx.setup.shape, min(len(entrants), DEFAULT_CHUNK), config)
            rows = [StageResult(i, stage, names[stage], d, float(f))
                    for i, f, d in zip(todo, measured.fitness, measured.details, strict=True)]
            archive.add_stage_results(rows)
            done.update({(r.candidate_id, r.stage): r for r in rows})
        return np.array([report.search_fitness(done[(i, stage)]) for i in ids])

    result = searchers.successive_halving([r.id for r in entrants], stages, measure_stage)
    ranking = _prefer_simpler(ctx, list(result.ranking), {
        i: float(f) for i, f in zip(result.ids, result.fitness[:, -1], strict=True)
        if np.isfinite(f)})
    record = archive.get(ranking[0])
    graph = graph_lib.from_dict(record.graph)
    ctx.log(f"elimination: winner #{record.id}: {symbolic.to_text(graph)}")
    return Winner(record, graph, tuple(ranking))


def _best_searched(ctx: _Context, searcher_best: int) -> Winner:
    """The winner without a validation funnel: the best search fitness (the
    simplest within tolerance), else the searcher's best (all rejected)."""
    top = ctx.archive.top(ctx.config.elimination.top_k)
    if top:
        ranking = _prefer_simpler(ctx, [r.id for r in top], {r.id: r.fitness for r in top})
        record = ctx.archive.get(ranking[0])
    else:
        record, ranking = ctx.archive.get(searcher_best), []
    return Winner(record, graph_lib.from_dict(record.graph), tuple(ranking))


def _prefer_simpler(ctx: _Context, ranking: list[int], final: dict[int, float]) -> list[int]:
    """``ranking`` with the simplest candidate within ``evaluation.simplicity_tolerance``
    of the best final fitness moved to the front (unchanged at tolerance 0)."""
    tolerance = ctx.config.evaluation.simplicity_tolerance
    ids = [i for i in ranking if i in final]
    if tolerance <= 0 or len(ids) < 2:
        return ranking
    complexity = [simplicity.complexity(graph_lib.from_dict(ctx.archive.get(i).graph)).total
                  for i in ids]
    chosen = ids[simplicity.prefer_simpler([final[i] for i in ids], complexity, tolerance)]
    if chosen != ranking[0]:
        ctx.log(f"simplicity: #{chosen} is within {tolerance:g} of #{ranking[0]} and simpler")
    return [chosen] + [i for i in ranking if i != chosen]


def _warn_if_unfit(best: CandidateRecord, log: Log) -> None:
    if best.fitness is None:
        log("warning: no candidate passed the integrity check; best.json holds a rejected one")
    elif best.status == "diverged" or not math.isfinite(best.fitness):
        log("warning: every candidate diverged; best.json holds a diverged one")


# --------------------------------------------------------------------------
# The test tasks and the report.


def _test(ctx: _Context, winner: Winner) -> list[heldout.Result]:
    """The test tasks, after the winner is chosen: the top ``test.top_k`` of the
    ranking (the winner as ``best``) and the baselines. Kept in the archive
    (meta ``test_results``); a resume reuses them."""
    config, archive = ctx.config, ctx.archive
    stored = archive.get_meta("test_results")
    if stored is not None and stored.get("winner") == winner.record.id:
        return [heldout.Result.from_dict(r) for r in stored["results"]]
    found = {"best": winner.graph}
    for i in winner.ranking[1:config.test.top_k]:
        found[f"#{i}"] = graph_lib.from_dict(archive.get(i).graph)
    results = heldout.evaluate_all(
        found, config_lib.names(config.test.baselines), ctx.setup.test_tasks,
        config.test.lr_multipliers, strategy=config.evaluation.strategy, log=ctx.log)
    archive.put_meta("test_results", {"winner": winner.record.id,
                                      "results": [r.to_dict() for r in results]})
    return results


