"""The search loop as a library function: config -> a finished, archived search.

``run(config, workdir)`` builds the space, the searcher and the tasks of each
role (search, validation, test; :mod:`symopt.config`), then, generation by
generation::

    ask -> to_graph -> integrity check -> fingerprint cache -> train (each
    candidate at every learning-rate multiplier, as rows of one compiled
    program per task, fixed-size chunks: symopt.measure) -> fitness against
    the tuned reference (symopt.fitness) -> best multiplier written back ->
    archive (one transaction per chunk) -> tell -> progress line

and at the end runs the funnel: successive halving of the best candidates
on the validation tasks chooses the winner (``best.json``, a Graph that
``symopt.load`` reads, with the training lengths it was found and tested at:
:func:`training_length`), the test tasks report it next to the comparisons
(:mod:`symopt.heldout`), and ``summary.md`` gets every table and the hall of
fame (:mod:`symopt.report`).

This module keeps the story in order; its rooms do the work: :mod:`symopt.build`
(config -> space, searcher, tasks), :mod:`symopt.measure` (the learning-rate
sweep), :mod:`symopt.workdir` (lock, archive, protected outputs),
:mod:`symopt.records` (what a record means) and :mod:`symopt.progress`.

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
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from symopt import (
    build,
    comparison_cache,
    evaluate,
    fitness,
    heldout,
    integrity,
    measure,
    novelty,
    progress,
    records,
    report,
    searchers,
    simplicity,
    tasks,
)
from symopt import config as config_lib
from symopt import graph as graph_lib
from symopt import workdir as workdir_lib
from symopt.archive import Archive, ArchiveError, CandidateRecord, StageResult, to_jsonable
from symopt.searchers import Candidate
from symopt.spaces import Space

Log = Callable[[str], None]
BEST = workdir_lib.BEST
DONE = "done in "
"""How a finished run's last line begins (``done in 1m 02s: best #12 ...``):
:mod:`symopt.main` reads it, since after it a signal changes nothing
(:func:`symopt.cli.finished`)."""


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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``where`` says how far it had got.
    Everything trained before is in the archive, and the same call resumes."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


@dataclasses.dataclass(frozen=True)
class Winner:
    """The candidate the funnel chose, and its graph (what best.json holds)."""

    record: CandidateRecord
    graph: graph_lib.Graph
    ranking: tuple[int, ...]  # candidate ids, best first (validation, else search fitness)


@dataclasses.dataclass(frozen=True)
class _Generation:
    """One generation, measured and archived."""

    told: list[Candidate]  # what to tell the searcher: genomes at their written-back rate
    fitness: np.ndarray  # [n] search fitness (-inf: rejected)
    records: list[CandidateRecord]  # as archived, in the order asked
    trained: int  # candidates trained now (not taken from the archive)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike[str], *,
        log: Log = print, reselect: bool = False) -> RunResult:
    """Runs (or resumes) the search ``config`` in ``workdir``; see the module docstring.

    With ``reselect``, the search itself is not run or replayed: the winner of
    the finished search in ``workdir`` is chosen and tested again, from its
    archive, by the code as it now is (the novelty test that admits entrants,
    the validation funnel, the test tasks and their comparisons), and
    ``best.json`` and ``summary.md`` are rewritten. Validation results already
    in the archive are reused. A search changed since it ran (a new zoo
    optimizer moves the niches of ``niches="behaviour"``) no longer replays
    from its archive; its selection can still be brought up to date. Raises
    :class:`symopt.archive.ArchiveError` where the workdir holds no finished
    search of ``config``.
    """
    start = time.perf_counter()
    config = config_lib.validate(config)
    workdir = os.fspath(workdir)
    log = evaluate.Progress(log)  # every line timed: a stage quiet for 30 s says what it does
    horizon = workdir_lib.first_horizon(workdir)
    setup = build.setup(config, horizon, log)
    writer = workdir_lib.is_writer()  # in a multi-host run, process 0 alone writes
    lock = workdir_lib.lock(workdir) if writer else contextlib.nullcontext()
    search = None
    try:
        with lock, workdir_lib.open_archive(config, workdir, log, writer=writer) as archive:
            if horizon is None:
                archive.put_meta(workdir_lib.HORIZON, config.search.generations)
            search = _Search(config, workdir, setup, archive, log)
            result = search.reselect(start) if reselect else search.run(start)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through symopt.cli
        raise Interrupted(search.where if search else "before the first generation") from e
    return result


class _Search:
    """One run of a search in an open workdir: the steps of :func:`run`, in order.

    ``where`` says how far it has got, for an interrupt's message.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup: build.Setup,
                 archive: Archive, log: evaluate.Progress):
        self.config, self.workdir, self.setup = config, workdir, setup
        self.archive, self.log = archive, log
        self.where = "before the first generation"
        self.reference: dict[str, float] = {}

    def run(self, start: float) -> RunResult:
        config, setup, archive = self.config, self.setup, self.archive
        self.reference = self.references(workdir_lib.REFERENCE, setup.tasks)
        self.log(self.banner())
        searcher, trained = setup.searcher, 0
        state = searcher.init(config.search.seed)
        known: dict[str, CandidateRecord] = {}  # the fingerprint cache: the first measured
        times: list[float] = []
        for gen in range(config.search.generations):
            self.where = f"after generation {gen}" if gen else "in the first generation"
            gen_start, compiled = time.perf_counter(), progress.compile_seconds()
            with self.log.doing(f"gen {gen + 1}/{config.search.generations}"):
                state, candidates = searcher.ask(state)
                generation = self.generation(candidates, known)
                state = searcher.tell(state, generation.told, generation.fitness)
            for record in generation.records:
                if records.is_measured(record):
                    known.setdefault(record.fingerprint, record)
            seconds = time.perf_counter() - gen_start
            trained += generation.trained
            if generation.trained:  # what a generation costs once compiled
                times.append(max(seconds - (progress.compile_seconds() - compiled), 0.0))
            best = archive.get(searcher.best(state)[0].id)
            left = progress.eta(times, config.search.generations - gen - 1)
            self.log(progress.line(gen, config.search.generations, generation.records,
                                   generation.trained, best, seconds, left))
        return self.select(start, trained, searcher.best(state)[0].id)

    def reselect(self, start: float) -> RunResult:
        """:meth:`select` on the archive of a finished search (``run(reselect=True)``)."""
        config, archive = self.config, self.archive
        ran = len(archive.generations())
        if ran < config.search.generations:
            raise ArchiveError(
                f"{self.workdir}: --reselect needs a finished search; this archive holds "
                f"{ran} of {config.search.generations} generations (run the search to its "
                "end first: the same command without --reselect resumes it)")
        top = archive.top(1)
        if not top:
            raise ArchiveError(f"{self.workdir}: --reselect: no candidate of this search was "
                               "evaluated, so there is nothing to choose from")
        self.reference = self.references(workdir_lib.REFERENCE, self.setup.tasks)
        self.log(f"reselect: the winner of the {ran} archived generations, chosen and tested "
                 "again (the search is not replayed)")
        return self.select(start, 0, top[0].id)

    def select(self, start: float, trained: int, searcher_best: int) -> RunResult:
        """After the search: the funnel chooses the winner, which is written to
        ``best.json``, trained on the test tasks and reported in ``summary.md``."""
        config, setup, archive = self.config, self.setup, self.archive
        generations = config.search.generations
        self.where = f"after generation {generations}, during elimination"
        with self.log.doing("elimination"):
            winner = self.eliminate() if setup.stages else None
            if winner is None:
                winner = self.best_searched(searcher_best)
        _warn_if_unfit(winner.record, self.log)
        winner = dataclasses.replace(winner, graph=winner.graph.replace(
            total_steps=training_length(setup.tasks),
            test_total_steps=training_length(setup.test_tasks)))
        workdir_lib.write_output(archive, self.workdir, BEST,
                                 lambda path: graph_lib.save(winner.graph, path))
        self.where = f"after generation {generations}, during the test tasks"
        with self.log.doing("test"):
            test_results = self.test(winner) if setup.test_tasks else []
        labels = {t.name: t.label for t in _all_tasks(setup)}
        with self.log.doing(f"writing {report.FILENAME}"):
            workdir_lib.write_output(archive, self.workdir, report.FILENAME, lambda path: (
                report.write_summary(self.workdir, config, archive, self.reference, winner.record,
                                     winner.graph, winner.ranking if setup.stages else (),
                                     test_results, task_labels=labels, path=path)))
        counts = archive.count_by_status()
        seconds = time.perf_counter() - start
        self.log(f"{DONE}{progress.format_seconds(seconds)}: best #{winner.record.id} fitness "
                 f"{records.fitness_text(winner.record)} ({config_lib.fitness_unit(config)}); "
                 f"{os.path.join(self.workdir, BEST)}, "
                 f"{os.path.join(self.workdir, report.FILENAME)}")
        return RunResult(self.workdir, winner.record, winner.graph, counts, trained, seconds)

    def banner(self) -> str:
        config, setup = self.config, self.setup
        return (f"search: {config.search.name} over the {setup.space.name} space, "
                f"{config.search.generations} generations x {config.search.population_size}, "
                f"tasks {', '.join(t.label for t in setup.tasks)} "
                f"({setup.tasks[0].steps} steps, {config.tasks.seeds} seeds), "
                f"{setup.chunk_size} candidates per compiled program, "
                f"{jax.local_device_count()} {jax.default_backend()} device(s)")

    # ----------------------------------------------------------------------
    # The reference.

    def references(self, key: str, task_list: Sequence[tasks.Task]) -> dict[str, float]:
        """The tuned reference's value on each task (Adam over
        :func:`symopt.fitness.reference_grid`, extended past an edge where its
        best rate is there: :func:`symopt.measure.tune_reference`); trained
        once per run and kept in the archive (meta ``key``,
        :func:`symopt.workdir.rates_key` and :func:`symopt.workdir.tried_key`:
        the rates tried), so a resume reuses it."""
        ev, archive = self.config.evaluation, self.archive
        stored = archive.get_meta(key, {}) or {}
        rates = archive.get_meta(workdir_lib.rates_key(key), {}) or {}
        tried = archive.get_meta(workdir_lib.tried_key(key), {}) or {}
        missing = [t for t in task_list if t.name not in stored]
        grid = fitness.reference_grid(ev)
        for task in missing:
            self.log(f"reference: tuning Adam (lr {', '.join(f'{lr:g}' for lr in grid)}) on "
                     f"{task.label} ...")
            try:
                best = measure.tune_reference(task, grid, ev.split, ev.metric, self.setup.trainer)
            except measure.ReferenceDiverged as e:
                raise config_lib.ConfigError(f"config.evaluation.reference_learning_rate: {e}; "
                                             "choose a smaller rate") from None
            stored[task.name], rates[task.name] = best.value, best.learning_rate
            tried[task.name] = {"learning_rates": list(best.learning_rates), "edge": best.edge}
            extended = (f"; its grid extended past an edge to lr "
                        f"{', '.join(f'{lr:g}' for lr in best.learning_rates)}"
                        f"{', still at an edge' if best.edge else ''}"
                        if len(best.learning_rates) > len(grid) else "")
            self.log(f"reference: Adam {ev.metric} on {task.label} = {best.value:.4f} "
                     f"(lr {best.learning_rate:g}{extended})")
        if missing:
            with archive.transaction():
                archive.put_meta(key, stored)
                archive.put_meta(workdir_lib.rates_key(key), rates)
                archive.put_meta(workdir_lib.tried_key(key), tried)
        return {t.name: stored[t.name] for t in task_list}

    def measure(self, graphs: Sequence[graph_lib.Graph], task_list: Sequence[tasks.Task],
                reference: Mapping[str, float], chunk_size: int,
                allowed: np.ndarray | None = None) -> measure.Measured:
        """:func:`symopt.measure.measure_candidates` under the config's evaluation."""
        ev = self.config.evaluation
        trainer = self.setup.trainer.with_chunk(chunk_size * len(ev.lr_multipliers))
        return measure.measure_candidates(
            graphs, task_list, reference, multipliers=ev.lr_multipliers, metric=ev.metric,
            split=ev.split, lr_aggregate=ev.lr_aggregate, trainer=trainer,
            shape=self.setup.shape, allowed=allowed)

    # ----------------------------------------------------------------------
    # One generation.

    def generation(self, candidates: Sequence[Candidate],
                   known: Mapping[str, CandidateRecord]) -> _Generation:
        """Measures and archives ``candidates``.

        An archived candidate (a replay after a restart) is taken from the
        archive; one the integrity check rejects is recorded as rejected; one
        whose fingerprint is ``known`` or measured earlier in this generation
        is recorded as a duplicate; the rest are trained in chunks, each chunk
        one transaction (a kill loses at most a chunk). A trained candidate's
        best learning-rate multiplier is written back: the archive holds its
        genome and graph at that rate, and the searcher is told the
        written-back genome, so children inherit the rate that worked.
        """
        ev, space, archive = self.config.evaluation, self.setup.space, self.archive
        told: dict[int, Candidate] = {}
        by_id: dict[int, CandidateRecord] = {}
        archived: set[int] = set()
        first_with: dict[str, int] = {}  # fingerprint -> the first of this generation measured
        pending, copies = [], []
        for c in candidates:
            stored = archive.get(c.id)
            if stored is not None:
                told[c.id], by_id[c.id] = self.replayed(c, stored), stored
                archived.add(c.id)
                if records.is_measured(stored):
                    first_with.setdefault(stored.fingerprint, c.id)
                continue
            graph = space.to_graph(c.genome)
            checked = integrity.check(graph) if ev.check else None
            fp = checked.fingerprint if checked is not None else integrity.fingerprint(graph)
            if checked is not None and not checked.ok:
                by_id[c.id] = records.new_record(space, c, graph, fp, status="rejected",
                                                 reason=checked.reason)
            elif ev.dedupe and (fp in known or fp in first_with):
                copies.append((c, graph, fp))
            else:
                first_with.setdefault(fp, c.id)
                pending.append((c, graph, fp))
        chunk_size = self.setup.chunk_size
        for start in range(0, len(pending), chunk_size):
            for c, record in self.train(pending[start:start + chunk_size]):
                told[c.id], by_id[c.id] = c, record
                archived.add(c.id)
        for c, graph, fp in copies:
            original = known.get(fp) or by_id[first_with[fp]]
            c, graph = _write_back(space, c, graph, records.multiplier(original))
            told[c.id] = c
            by_id[c.id] = records.new_record(space, c, graph, fp, status="duplicate",
                                             duplicate_of=original.id, fitness=original.fitness)
        archive.add_candidates([by_id[c.id] for c in candidates if c.id not in archived])
        ordered = [by_id[c.id] for c in candidates]
        return _Generation(told=[told.get(c.id, c) for c in candidates],
                           fitness=np.array([records.search_fitness(r) for r in ordered]),
                           records=ordered, trained=len(pending))

    def train(self, chunk: Sequence[tuple[Candidate, graph_lib.Graph, str]],
              ) -> list[tuple[Candidate, CandidateRecord]]:
        """Trains ``chunk`` as one program and archives it in one transaction;
        each candidate as told (written back) and its record."""
        space, multipliers = self.setup.space, self.config.evaluation.lr_multipliers
        start = time.perf_counter()
        allowed = np.array([[space.scale_learning_rate(c.genome, float(m)) is not None
                             for m in multipliers] for c, _, _ in chunk])
        measured = self.measure([g for _, g, _ in chunk], self.setup.tasks, self.reference,
                                self.setup.chunk_size, allowed)
        seconds = (time.perf_counter() - start) / len(chunk)
        out = []
        rows = zip(chunk, measured.fitness, measured.multiplier, measured.details,
                   measured.diverged, strict=True)
        for (c, graph, fp), fit, multiplier, detail, dead in rows:
            c, graph = _write_back(space, c, graph, float(multiplier))
            out.append((c, records.new_record(
                space, c, graph, fp, status="diverged" if dead else "evaluated",
                fitness=float(fit), metrics=detail, seconds=seconds)))
        self.archive.add_candidates([record for _, record in out])
        return out

    def replayed(self, c: Candidate, stored: CandidateRecord) -> Candidate:
        """``c`` as it was told when archived (its written-back genome).

        Raises:
          ArchiveError: the replayed candidate is not the one archived under its id.
        """
        # A duplicate was written back with the rate of the candidate it repeats.
        source = (self.archive.get(stored.duplicate_of) if stored.status == "duplicate"
                  else stored)
        multiplier = records.multiplier(source) if source is not None else 1.0
        space = self.setup.space
        told, _ = _write_back(space, c, space.to_graph(c.genome), multiplier)
        if (to_jsonable(space.to_json(told.genome)) != stored.genome
                or tuple(c.parents) != stored.parents or c.generation != stored.generation):
            raise ArchiveError(
                f"{self.workdir}: the replayed search differs from the archive at candidate "
                f"{c.id} (a changed symopt or space?); resume with the same version or use a "
                "new --workdir")
        return told

    # ----------------------------------------------------------------------
    # Choosing the winner.

    def entrants(self) -> list[CandidateRecord]:
        """The candidates that enter elimination: the best ``top_k`` by search
        fitness (duplicates are never "evaluated"); with ``novel_only``, the
        best ``top_k`` of those the novelty test (:func:`symopt.novelty.nearest`)
        does not judge a re-tuning of a zoo optimizer, or the best ``top_k``
        where none is new."""
        config, archive = self.config.elimination, self.archive
        if not config.novel_only:
            return archive.top(config.top_k)
        ranked, new = archive.top(len(archive.ids())), []
        with self.log.doing("elimination: the novelty test of the best candidates"):
            for r in ranked:
                if novelty.verdict(novelty.nearest(records.graph(r))) == "new":
                    new.append(r)
                    if len(new) == config.top_k:
                        break
        if not new:
            self.log("elimination: no candidate is new by the novelty test; the best enter")
            return ranked[:config.top_k]
        skipped = ranked.index(new[-1]) + 1 - len(new)
        self.log(f"elimination: the best {len(new)} new candidates enter ({skipped} better "
                 "re-tunings of zoo optimizers left out)")
        return new

    def eliminate(self) -> Winner | None:
        """The validation funnel: successive halving of the top candidates over
        the elimination stages (Morgan & Hougen's progressive elimination,
        Lion's funnel selection). A stage's fitness is the normalised aggregate
        over its tasks, at each learning-rate multiplier; results are archived
        per stage (task ``a+b`` for a stage of two tasks). Returns the winner
        as archived, at the learning rate the search tasks chose (a rate
        re-chosen on the validation tasks did worse as found on the test
        tasks), or None when nothing was evaluated. Its ranking holds every
        entrant."""
        config, archive, stage_tasks = self.config, self.archive, self.setup.stages
        reference = self.references(workdir_lib.REFERENCE_VALIDATION,
                                    [t for stage in stage_tasks for t in stage])
        entrants = self.entrants()
        if not entrants:
            self.log("elimination: no evaluated candidate to eliminate")
            return None
        done = {(r.candidate_id, r.stage): r for r in archive.stage_results()}
        names = ["+".join(t.name for t in stage) for stage in stage_tasks]
        stages = [searchers.Stage(f"{i + 1}:{n}", keep=config.elimination.keep)
                  for i, n in enumerate(names)]
        chunk = min(len(entrants), build.DEFAULT_CHUNK)

        def measure_stage(ids: Sequence[int], stage_of: searchers.Stage) -> np.ndarray:
            stage = stages.index(stage_of)
            todo = [i for i in ids if (i, stage) not in done]
            if todo:
                first = stage_tasks[stage][0]
                self.log(f"elimination stage {stage + 1}/{len(stages)}: {len(todo)} candidates "
                         f"on {'+'.join(t.label for t in stage_tasks[stage])} ({first.steps} "
                         f"steps, {first.seeds} seeds)")
                measured = self.measure(
                    [records.graph(archive.get(i)) for i in todo], stage_tasks[stage],
                    {t.name: reference[t.name] for t in stage_tasks[stage]}, chunk)
                rows = [StageResult(i, stage, names[stage], d, float(f))
                        for i, f, d in zip(todo, measured.fitness, measured.details, strict=True)]
                archive.add_stage_results(rows)
                done.update({(r.candidate_id, r.stage): r for r in rows})
            return np.array([records.search_fitness(done[(i, stage)]) for i in ids])

        result = searchers.successive_halving([r.id for r in entrants], stages, measure_stage)
        ranking = self.prefer_simpler(list(result.ranking), {
            i: float(f) for i, f in zip(result.ids, result.fitness[:, -1], strict=True)
            if np.isfinite(f)})
        record = archive.get(ranking[0])
        graph = records.graph(record)
        self.log(f"elimination: winner #{record.id}: {simplicity.simplified_equation(graph)}")
        return Winner(record, graph, tuple(ranking))

    def best_searched(self, searcher_best: int) -> Winner:
        """The winner without a validation funnel: the best search fitness (the
        simplest within tolerance), else the searcher's best (all rejected)."""
        top = self.archive.top(self.config.elimination.top_k)
        if top:
            ranking = self.prefer_simpler([r.id for r in top], {r.id: r.fitness for r in top})
            record = self.archive.get(ranking[0])
        else:
            record, ranking = self.archive.get(searcher_best), []
        return Winner(record, records.graph(record), tuple(ranking))

    def prefer_simpler(self, ranking: list[int], final: dict[int, float]) -> list[int]:
        """``ranking`` with the simplest candidate within
        ``evaluation.simplicity_tolerance`` of the best final fitness moved to
        the front (unchanged at tolerance 0)."""
        tolerance = self.config.evaluation.simplicity_tolerance
        ids = [i for i in ranking if i in final]
        if tolerance <= 0 or len(ids) < 2:
            return ranking
        complexity = [simplicity.complexity(records.graph(self.archive.get(i))).total
                      for i in ids]
        chosen = ids[simplicity.prefer_simpler([final[i] for i in ids], complexity, tolerance)]
        if chosen != ranking[0]:
            self.log(f"simplicity: #{chosen} is within {tolerance:g} of #{ranking[0]} and "
                     "simpler")
        return [chosen] + [i for i in ranking if i != chosen]

    # ----------------------------------------------------------------------
    # The test tasks.

    def test(self, winner: Winner) -> list[heldout.Result]:
        """The test tasks, after the winner is chosen: the top ``test.top_k`` of
        the ranking (the winner as ``best``) and the comparisons. Kept in the
        archive (meta ``test_results``); a resume reuses them."""
        config, archive = self.config, self.archive
        stored = archive.get_meta(workdir_lib.TEST_RESULTS)
        if stored is not None and stored.get("winner") == winner.record.id:
            return [heldout.Result.from_dict(r) for r in stored["results"]]
        found = {"best": winner.graph}
        for i in winner.ranking[1:config.test.top_k]:
            found[f"#{i}"] = records.graph(archive.get(i))
        results = heldout.evaluate_all(
            found, config_lib.names(config.test.comparisons), self.setup.test_tasks,
            config.test.lr_multipliers, trainer=self.setup.trainer, log=self.log,
            cache=comparison_cache_of(config))
        archive.put_meta(workdir_lib.TEST_RESULTS, {
            "winner": winner.record.id, "results": [r.to_dict() for r in results]})
        return results


def comparison_cache_of(config: ml_collections.ConfigDict
                        ) -> comparison_cache.ComparisonCache | None:
    """The cache of test comparisons ``test.comparison_cache`` names, or None."""
    if not config.test.comparison_cache:
        return None
    settings = build.task_settings(config, "test")
    per_task = {name: {"steps": settings.steps, "seeds": settings.seeds,
                       "batch_size": settings.batch_size, "data_dir": settings.data_dir,
                       "options": settings.options.get(name, {})}
                for name in config_lib.names(config.tasks.test)}
    return comparison_cache.ComparisonCache(
        config.test.comparison_cache, task_settings=per_task,
        multipliers=config.test.lr_multipliers, strategy=config.evaluation.strategy)


def training_length(task_list: Sequence[tasks.Task]) -> int | None:
    """The training length ``T`` of ``task_list``, as ``best.json`` records it
    (``total_steps``: the search tasks', ``test_total_steps``: the test
    tasks'): their steps, the longest where they differ (a schedule laid over
    too short a ``T`` holds its last value, often 0, for the rest of training;
    over too long a one it only ends early); None without tasks."""
    return max((t.steps for t in task_list), default=None)


def found_total_steps(config: ml_collections.ConfigDict | Mapping[str, Any]) -> int | None:
    """The training length a search of ``config`` finds its graphs at (what its
    ``best.json`` records as ``total_steps``), from the config alone (a dict,
    such as an archive's stored config, is read as one): for a run that has
    written no ``best.json`` yet, or one written before the lengths were."""
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config_lib.upgrade(dict(config)))
    return training_length([build.search_task(config, name)
                            for name in config_lib.names(config.tasks.search)])


def _all_tasks(setup: build.Setup) -> tuple[tasks.Task, ...]:
    """Every task of ``setup``: search, validation (the stages'), test."""
    return (*setup.tasks, *(t for stage in setup.stages for t in stage), *setup.test_tasks)


def _write_back(space: Space, c: Candidate, graph: graph_lib.Graph,
                multiplier: float) -> tuple[Candidate, graph_lib.Graph]:
    """``c`` and its graph at ``multiplier`` times their learning rate; the
    genome stays as it is where the space cannot express that rate."""
    if multiplier == 1.0:
        return c, graph
    genome = space.scale_learning_rate(c.genome, multiplier)
    if genome is not None:
        c = dataclasses.replace(c, genome=genome)
    return c, graph.with_hparams(learning_rate=graph.hparams.learning_rate * multiplier)


def _warn_if_unfit(best: CandidateRecord, log: Log) -> None:
    if best.fitness is None:
        log("warning: no candidate passed the integrity check; best.json holds a rejected one")
    elif best.status == "diverged" or not math.isfinite(best.fitness):
        log("warning: every candidate diverged; best.json holds a diverged one")
