"""The search loop as a library function: config -> a finished, archived search.

``run(config, workdir)`` builds the space, the searcher and the tasks from a
config (:mod:`symopt.config`), then, generation by generation::

    ask -> to_graph -> integrity check -> fingerprint cache -> train (one
    compiled program per task, fixed-size chunks) -> fitness normalised by
    Adam -> archive (one transaction per chunk) -> tell -> progress line

and at the end runs the progressive elimination of the best candidates on
larger tasks (successive halving), and writes ``best.json`` (a Graph,
``symopt.load`` reads it) and ``summary.md`` to the workdir.

Resuming: everything lands in ``<workdir>/archive.sqlite``. The searchers are
deterministic functions of their seed and the fitness they are told, so a run
restarted on the same workdir (after a crash or ``kill -9``) replays the
search and takes every candidate already in the archive from it instead of
training it again; with the same seed it ends where an uninterrupted run
ends. A workdir holding a run of a different config is refused (except for
the keys of :data:`symopt.config.RESUMABLE_CHANGES`, e.g. more generations).

The fingerprint cache (REFERENCES.md F): a candidate whose integrity-probe
fingerprint equals one already measured in this run is recorded as a
``duplicate`` with that candidate's fitness and is not trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from symopt import archive as archive_lib
from symopt import config as config_lib
from symopt import evaluate, integrity, search, spaces, symbolic, tasks
from symopt import graph as graph_lib
from symopt.archive import Archive, ArchiveError, CandidateRecord, StageResult, to_jsonable
from symopt.search import Candidate

Log = Callable[[str], None]
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


@dataclasses.dataclass(frozen=True)
class _Setup:
    space: Any
    searcher: Any
    tasks: tuple[tasks.Task, ...]
    stages: tuple[tuple[tasks.Task, ...], ...]  # elimination stages
    shape: Any
    chunk_size: int


# --------------------------------------------------------------------------
# Building the pieces from the config.


def _seed_names(value: str) -> tuple[str, ...] | None:
    return None if value.strip() == "default" else tuple(config_lib.names(value))


def build_searcher(config: ml_collections.ConfigDict, space: Any, *,
                   horizon: int | None = None) -> Any:
    """The configured searcher over ``space``.

    ``horizon`` is the generation count that mutation decay is laid over
    (default ``search.generations``); a resumed run keeps its first horizon so
    that its replay breeds the same genomes.
    """
    name = config.search.name
    if name not in search.SEARCHERS:
        raise config_lib.ConfigError(
            f"config.search.name: unknown searcher {name!r}; known: {', '.join(search.names())}")
    fields = {f.name for f in dataclasses.fields(search.SEARCHERS[name])}
    kwargs = dict(population_size=config.search.population_size,
                  seed_names=_seed_names(config.search.seeds))
    if "generations" in fields:
        kwargs["generations"] = horizon or config.search.generations
    kwargs.update(config.search.options.to_dict())
    try:
        searcher = search.get(name, space, **kwargs)
        searcher.ask(searcher.init(0))  # seeds and sizes are checked on the first ask
    except ValueError as e:
        raise config_lib.ConfigError(f"config.search: {config_lib.one_line(e)}") from None
    return searcher



def build_space(config: ml_collections.ConfigDict) -> Any:
    try:
        return spaces.get(config.space.name, **config.space.options.to_dict())
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(f"config.space: {e}") from None


def build_task(config: ml_collections.ConfigDict, name: str, *,
               elimination: bool = False) -> tasks.Task:
    """Task ``name`` with the config's data options, per-task options and budget.

    The budget is ``tasks.steps``/``tasks.seeds`` while searching and
    ``elimination.steps``/``elimination.seeds`` for an elimination stage
    (steps 0: the task's own default); it overrides ``tasks.options``.
    """
    if name not in tasks.names():
        raise config_lib.ConfigError(
            f"config.tasks: unknown task {name!r}; known: {', '.join(tasks.names())}")
    accepted = tasks.options(name)
    overrides: dict[str, Any] = {}
    if "data_dir" in accepted and config.tasks.data_dir:
        overrides["data_dir"] = config.tasks.data_dir
    if "download" in accepted:
        overrides["download"] = config.tasks.download
    if config.tasks.batch_size:
        overrides["batch_size"] = config.tasks.batch_size
    overrides.update(config.tasks.options.to_dict().get(name, {}))
    budget = config.elimination if elimination else config.tasks
    overrides["seeds"] = budget.seeds
    if budget.steps:
        overrides["steps"] = budget.steps
    elif elimination:
        overrides.pop("steps", None)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise config_lib.ConfigError(
            f"config.tasks.options.{name}: unknown options {unknown}; known: {sorted(accepted)}")
    try:
        return tasks.get(name, **overrides)
    except (ValueError, TypeError) as e:
        message = config_lib.one_line(e)
        raise config_lib.ConfigError(f"config.tasks.options.{name}: {message}") from None


def elimination_stages(config: ml_collections.ConfigDict) -> list[list[str]]:
    """``elimination.tasks``: stages separated by commas, tasks of a stage by ``+``."""
    stages = config_lib.names(config.elimination.tasks)
    return [[n for n in stage.split("+") if n] for stage in stages]


def _check_task_options(config: ml_collections.ConfigDict) -> None:
    named = set(config_lib.names(config.tasks.search))
    named |= {n for stage in elimination_stages(config) for n in stage}
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


def _setup(config: ml_collections.ConfigDict, horizon: int | None = None) -> _Setup:
    _check_task_options(config)
    space = build_space(config)
    searcher = build_searcher(config, space, horizon=horizon)
    search_tasks = tuple(build_task(config, n) for n in config_lib.names(config.tasks.search))
    stages = tuple(tuple(build_task(config, n, elimination=True) for n in stage)
                   for stage in elimination_stages(config))
    for task in (*search_tasks, *(t for stage in stages for t in stage)):
        task.data()  # fails now, with the command to prepare it, if the data is missing
    chunk = config.evaluation.chunk_size or min(DEFAULT_CHUNK, _ask_size(searcher))
    return _Setup(space, searcher, search_tasks, stages, space.program_shape(), chunk)


def _ask_size(searcher: Any) -> int:
    """How many candidates a (second, unseeded) ask returns."""
    state, first = searcher.ask(searcher.init(0))
    state = searcher.tell(state, first, np.linspace(0.0, 1.0, len(first)))
    return len(searcher.ask(state)[1])


# --------------------------------------------------------------------------
# Measuring candidates.


def _task_metrics(metrics: evaluate.RunMetrics, i: int, run_fitness: np.ndarray,
                  baseline: float) -> dict[str, Any]:
    out = {f: float(np.nanmean(getattr(metrics, f)[i])) if not np.all(
        np.isnan(getattr(metrics, f)[i])) else None for f in _METRIC_FIELDS}
    out["fitness"] = float(run_fitness[i].mean())
    out["normalized"] = float(run_fitness[i].mean() / baseline)
    out["fitness_per_seed"] = [float(x) for x in run_fitness[i]]
    out["diverged"] = int(metrics.diverged[i].sum())
    return out


def baseline_fitness(task: tasks.Task, learning_rate: float, split: str) -> float:
    """Adam's fitness on ``task`` (native ``optax.adam``, same loop and seeds)."""
    metrics = evaluate.evaluate_baseline(optax.adam, (jnp.asarray([learning_rate]),), task)
    return float(evaluate.fitness(metrics, split=split)[0])


def _measure(graphs: Sequence[graph_lib.Graph], task_list: Sequence[tasks.Task],
             baseline: dict[str, float], setup_shape, chunk_size: int,
             config: ml_collections.ConfigDict) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """(aggregate fitness [n], per-candidate metrics by task, all-runs-diverged [n])."""
    per_task, metrics_by_task, all_diverged = {}, {}, np.zeros(len(graphs), bool)
    for task in task_list:
        m = evaluate.evaluate_graphs(graphs, task, shape=setup_shape, chunk_size=chunk_size,
                                     strategy=config.evaluation.strategy)
        runs = evaluate.run_fitness(m, split=config.evaluation.split)
        per_task[task.name] = runs.mean(axis=1)
        metrics_by_task[task.name] = (m, runs)
        all_diverged |= m.diverged.all(axis=1)
    fitness = evaluate.aggregate(per_task, baseline)
    details = [
        {name: _task_metrics(m, i, runs, baseline[name])
         for name, (m, runs) in metrics_by_task.items()}
        for i in range(len(graphs))
    ]
    return fitness, details, all_diverged


class _Generation:
    """Measures one generation's candidates, taking archived ones from the archive."""

    def __init__(self, run: _Search, candidates: list[Candidate]):
        self.run, self.candidates = run, candidates
        self.records: dict[int, CandidateRecord] = {}
        self.stored: set[int] = set()  # ids already in the archive
        self.trained = 0

    def measure(self) -> np.ndarray:
        run, pending, waiting = self.run, [], {}
        for c in self.candidates:
            stored = run.archive.get(c.id)
            if stored is not None:
                run.check_replay(c, stored)
                self.records[c.id] = stored
                self.stored.add(c.id)
                run.remember(stored)
                continue
            graph = run.setup.space.to_graph(c.genome)
            report = integrity.check(graph) if run.config.evaluation.check else None
            fp = report.fingerprint if report is not None else integrity.fingerprint(graph)
            if report is not None and not report.ok:
                self.records[c.id] = run.record(c, graph, fp, status="rejected",
                                                reason=report.reason)
            elif run.config.evaluation.dedupe and fp in run.fingerprints:
                original = run.fingerprints[fp]
                self.records[c.id] = run.record(c, graph, fp, status="duplicate",
                                                duplicate_of=original.id,
                                                fitness=original.fitness)
            elif run.config.evaluation.dedupe and fp in waiting:
                waiting[fp][1].append(c)
            else:
                waiting[fp] = (c, [])
                pending.append((c, graph, fp))
        for start in range(0, len(pending), run.setup.chunk_size):
            self._train(pending[start:start + run.setup.chunk_size])
        for fp, (first, copies) in waiting.items():
            original = self.records[first.id]
            for c in copies:
                self.records[c.id] = run.record(
                    c, run.setup.space.to_graph(c.genome), fp, status="duplicate",
                    duplicate_of=original.id, fitness=original.fitness)
        run.archive.add_candidates(  # the rejected and the duplicates
            [self.records[c.id] for c in self.candidates if c.id not in self.stored])
        return np.array([_search_fitness(self.records[c.id]) for c in self.candidates])

    def _train(self, chunk: list[tuple[Candidate, graph_lib.Graph, str]]) -> None:
        run = self.run
        start = time.perf_counter()
        fitness, details, diverged = _measure(
            [g for _, g, _ in chunk], run.setup.tasks, run.baseline, run.setup.shape,
            run.setup.chunk_size, run.config)
        seconds = (time.perf_counter() - start) / len(chunk)
        records = []
        rows = zip(chunk, fitness, details, diverged, strict=True)
        for (c, graph, fp), fit, detail, dead in rows:
            records.append(run.record(c, graph, fp, status="diverged" if dead else "evaluated",
                                      fitness=float(fit), metrics=detail, seconds=seconds))
        run.archive.add_candidates(records)  # one transaction: a kill loses at most this chunk
        for r in records:
            self.records[r.id] = r
            self.stored.add(r.id)
            run.remember(r)
        self.trained += len(chunk)


def _search_fitness(record: CandidateRecord) -> float:
    return -math.inf if record.fitness is None else float(record.fitness)


# --------------------------------------------------------------------------
# The search.


class _Search:
    """One run's state that outlives a generation: archive, caches, baseline."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup: _Setup,
                 archive: Archive, log: Log):
        self.config, self.workdir, self.setup, self.archive, self.log = (
            config, workdir, setup, archive, log)
        self.fingerprints: dict[str, CandidateRecord] = {}
        self.baseline = self._baseline("baseline", setup.tasks)
        self.equations: dict[int, str] = {}
        self.entrants: set[int] = set()  # candidates of the progressive elimination

    def _baseline(self, key: str, task_list: Sequence[tasks.Task]) -> dict[str, float]:
        stored = self.archive.get_meta(key, {}) or {}
        missing = [t for t in task_list if t.name not in stored]
        for task in missing:
            lr = self.config.evaluation.baseline_learning_rate
            self.log(f"baseline: training Adam (lr {lr:g}) on {task.name} ...")
            stored[task.name] = baseline_fitness(
                task, self.config.evaluation.baseline_learning_rate, self.config.evaluation.split)
            self.log(f"baseline: Adam fitness on {task.name} = {stored[task.name]:.4f}")
        if missing:
            self.archive.put_meta(key, stored)
        return {t.name: stored[t.name] for t in task_list}

    def remember(self, record: CandidateRecord) -> None:
        if record.status in ("evaluated", "diverged") and record.fingerprint:
            self.fingerprints.setdefault(record.fingerprint, record)

    def record(self, c: Candidate, graph: graph_lib.Graph, fingerprint: str | None, *,
               status: str, **fields: Any) -> CandidateRecord:
        return CandidateRecord(
            id=c.id, generation=c.generation, space=self.setup.space.name, origin=c.origin,
            parents=c.parents, genome=self.setup.space.to_json(c.genome),
            graph=graph_lib.to_dict(graph), fingerprint=fingerprint, status=status, **fields)

    def check_replay(self, c: Candidate, stored: CandidateRecord) -> None:
        """A replayed candidate must be the one archived under its id."""
        if (to_jsonable(self.setup.space.to_json(c.genome)) != stored.genome
                or tuple(c.parents) != stored.parents or c.generation != stored.generation):
            raise ArchiveError(
                f"{self.workdir}: the replayed search differs from the archive at candidate "
                f"{c.id} (a changed symopt or space?); resume with the same version or use a "
                "new --workdir")

    def equation(self, record: CandidateRecord) -> str:
        if record.id not in self.equations:
            self.equations[record.id] = symbolic.to_text(graph_lib.from_dict(record.graph))
        return self.equations[record.id]


def _fitness_text(record: CandidateRecord | StageResult | None) -> str:
    return "-" if record is None or record.fitness is None else f"{record.fitness:.4f}"


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _progress(run: _Search, gen: int, records: list[CandidateRecord], best: CandidateRecord,
              seconds: float, trained: int, eta: float | None) -> str:
    fitness = [r.fitness for r in records if r.status == "evaluated" and r.fitness is not None]
    rejected = sum(r.status == "rejected" for r in records)
    duplicates = sum(r.status == "duplicate" for r in records)
    median = f"{np.median(fitness):.4f}" if fitness else "-"
    rate = f"{trained / seconds:.1f}" if trained and seconds > 0 else "-"
    return (f"gen {gen + 1}/{run.config.search.generations}  best {_fitness_text(best)}  "
            f"median {median}  trained {trained} ({rate}/s)  rejected {rejected}  "
            f"duplicates {duplicates}  eta {_format_seconds(eta) if eta is not None else '-'}"
            f"\n  best #{best.id}: {run.equation(best)}")


def _open_archive(config: ml_collections.ConfigDict, workdir: str, log: Log) -> Archive:
    archive = Archive.open(workdir)
    stored = archive.config()
    if stored is None:
        archive.set_config(config.to_dict())
        return archive
    changed = [k for k in archive.config_diff(config.to_dict())
               if k not in config_lib.RESUMABLE_CHANGES]
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


def _first_horizon(workdir: str) -> int | None:
    """``search.generations`` of the run already in ``workdir`` (None: no run yet)."""
    if not os.path.exists(os.path.join(workdir, archive_lib.FILENAME)):
        return None
    with Archive.open(workdir) as archive:
        return archive.get_meta("search_horizon")


@contextlib.contextmanager
def _workdir_lock(workdir: str):
    """One run per workdir at a time (an advisory lock, released at exit or kill)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ArchiveError(f"{workdir}: another symopt run is using this workdir") from None
        yield


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike[str], *,
        log: Log = print) -> RunResult:
    """Runs (or resumes) the search ``config`` in ``workdir``; see the module docstring."""
    start = time.perf_counter()
    config = config_lib.validate(config)
    workdir = os.fspath(workdir)
    horizon = _first_horizon(workdir)
    setup = _setup(config, horizon)
    with _workdir_lock(workdir), _open_archive(config, workdir, log) as archive:
        if horizon is None:
            archive.put_meta("search_horizon", config.search.generations)
        runner = _Search(config, workdir, setup, archive, log)
        log(f"search: {config.search.name} over the {setup.space.name} space, "
            f"{config.search.generations} generations x {config.search.population_size}, "
            f"tasks {', '.join(t.name for t in setup.tasks)} "
            f"({setup.tasks[0].steps} steps, {config.tasks.seeds} seeds), "
            f"{setup.chunk_size} candidates per compiled program, "
            f"{jax.local_device_count()} {jax.default_backend()} device(s)")
        searcher, state = setup.searcher, setup.searcher.init(config.search.seed)
        trained_total, times = 0, []
        for gen in range(config.search.generations):
            gen_start = time.perf_counter()
            state, candidates = searcher.ask(state)
            generation = _Generation(runner, candidates)
            fitness = generation.measure()
            state = searcher.tell(state, candidates, fitness)
            seconds = time.perf_counter() - gen_start
            trained_total += generation.trained
            if generation.trained:
                times.append(seconds)
            best_candidate, _ = searcher.best(state)
            eta = (np.mean(times[1:] or times) * (config.search.generations - gen - 1)
                   if times else None)
            log(_progress(runner, gen, list(generation.records.values()),
                          archive.get(best_candidate.id), seconds, generation.trained, eta))
        best = _eliminate(runner) if setup.stages else None
        best = best or next(iter(archive.top(1)), None) or archive.get(searcher.best(state)[0].id)
        if best.fitness is None:
            log("warning: no candidate passed the integrity check; best.json holds a rejected one")
        best_graph = graph_lib.from_dict(best.graph)
        graph_lib.save(best_graph, os.path.join(workdir, "best.json"))
        _write_summary(runner, best)
        counts = archive.count_by_status()
    seconds = time.perf_counter() - start
    log(f"done in {_format_seconds(seconds)}: best #{best.id} fitness {_fitness_text(best)} "
        f"(Adam = 1); {os.path.join(workdir, 'best.json')}, "
        f"{os.path.join(workdir, 'summary.md')}")
    return RunResult(workdir, best, best_graph, counts, trained_total, seconds)


# --------------------------------------------------------------------------
# Progressive elimination and the report.


def _eliminate(run: _Search) -> CandidateRecord | None:
    """Successive halving of the top candidates over the elimination stages
    (REFERENCES.md B's progressive elimination): a stage's fitness is the
    Adam-normalised aggregate over its tasks; results are archived per stage
    (task ``a+b`` for a stage of two tasks) and the winner returned."""
    config, archive, stage_tasks = run.config, run.archive, run.setup.stages
    baseline = run._baseline("baseline_elimination", [t for st in stage_tasks for t in st])
    entrants = archive.top(config.elimination.top_k)  # duplicates are never "evaluated"
    if not entrants:
        run.log("elimination: no evaluated candidate to eliminate")
        return None
    done = {(r.candidate_id, r.stage): r for r in archive.stage_results()}
    names = ["+".join(t.name for t in stage) for stage in stage_tasks]
    stages = [search.Stage(f"{i + 1}:{n}", keep=config.elimination.keep)
              for i, n in enumerate(names)]

    def measure(ids: Sequence[int], stage_of: search.Stage) -> np.ndarray:
        stage = stages.index(stage_of)
        todo = [i for i in ids if (i, stage) not in done]
        if todo:
            first = stage_tasks[stage][0]
            run.log(f"elimination stage {stage + 1}/{len(stages)}: {len(todo)} candidates on "
                    f"{names[stage]} ({first.steps} steps, {first.seeds} seeds)")
            graphs = [graph_lib.from_dict(archive.get(i).graph) for i in todo]
            fitness, details, _ = _measure(
                graphs, stage_tasks[stage], {t.name: baseline[t.name] for t in stage_tasks[stage]},
                run.setup.shape, min(len(entrants), DEFAULT_CHUNK), config)
            rows = [StageResult(i, stage, names[stage], d, float(f))
                    for i, f, d in zip(todo, fitness, details, strict=True)]
            archive.add_stage_results(rows)
            done.update({(r.candidate_id, r.stage): r for r in rows})
        return np.array([_search_fitness(done[(i, stage)]) for i in ids])

    result = search.successive_halving([r.id for r in entrants], stages, measure)
    winner = archive.get(result.ranking[0])
    run.log(f"elimination: winner #{winner.id}: {run.equation(winner)}")
    run.entrants = {r.id for r in entrants}
    return winner


def _split_metric(metrics: dict[str, Any], split: str) -> str:
    values = [m.get(f"{split}_accuracy") for m in metrics.values() if isinstance(m, dict)]
    values = [v for v in values if v is not None]
    return "-" if not values else f"{np.mean(values):.4f}"


def _write_summary(run: _Search, best: CandidateRecord) -> None:
    archive, config = run.archive, run.config
    split = config.evaluation.split
    lines = [
        f"# symopt search: {config.search.name} over {config.space.name}",
        "",
        f"Tasks: {', '.join(t.name for t in run.setup.tasks)}; fitness is the mean over tasks "
        f"of REFERENCES.md A's formula ({split} split), divided by Adam's "
        f"(lr {config.evaluation.baseline_learning_rate:g}): 1.0 = Adam.",
        "",
        "Adam baseline: " + ", ".join(f"{k} {v:.4f}" for k, v in run.baseline.items()),
        "",
        "Candidates: " + ", ".join(
            f"{k} {v}" for k, v in sorted(archive.count_by_status().items())),
        "",
        f"Best (best.json): #{best.id}, search fitness {_fitness_text(best)}",
        "",
        f"    {run.equation(best)}",
        "",
        "| rank | id | gen | fitness | " + " | ".join(
            f"{t.name} {split} acc" for t in run.setup.tasks) + " | equation |",
        "|---|---|---|---|" + "---|" * len(run.setup.tasks) + "---|",
    ]
    for rank, r in enumerate(archive.top(config.output.top), 1):
        accs = [_split_metric({t.name: r.metrics.get(t.name, {})}, split) for t in run.setup.tasks]
        lines.append(f"| {rank} | {r.id} | {r.generation} | {_fitness_text(r)} | "
                     + " | ".join(accs) + f" | `{run.equation(r)}` |")
    stage_rows = [r for r in archive.stage_results() if r.candidate_id in run.entrants]
    if stage_rows:
        lines += ["", "## Progressive elimination", "",
                  f"| stage | tasks | id | fitness (Adam = 1) | {split} acc |",
                  "|---|---|---|---|---|"]
        def order(r):
            return (r.stage, -(r.fitness if r.fitness is not None else -math.inf))

        for r in sorted(stage_rows, key=order):
            lines.append(f"| {r.stage + 1} | {r.task} | {r.candidate_id} | {_fitness_text(r)} | "
                         f"{_split_metric(r.metrics, split)} |")
    with open(os.path.join(run.workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
