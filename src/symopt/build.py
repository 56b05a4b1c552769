"""From a config to the pieces of a search: the space, the searcher, the tasks of each role.

Every bad value is a one-line :class:`symopt.config.ConfigError` naming its
key, raised before anything is trained or written. Tasks are built by
:func:`build_task` from explicit settings (:class:`TaskSettings`), so the
search (:func:`search_task`, one budget per role) and the transfer report
(:mod:`symopt.transfer`) build them the same way from their own sections.
:func:`setup` builds all of a search and checks that every task's data is
there, failing with the command that prepares it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from symopt import config as config_lib
from symopt import searchers, spaces, tasks
from symopt.evaluate import Progress, Trainer
from symopt.program import ProgramShape
from symopt.searchers import Searcher
from symopt.spaces import Space

DEFAULT_CHUNK = 16
"""Candidates per compiled program unless ``evaluation.chunk_size`` says. On
CPU the cost per candidate is flat over a wide range of chunk sizes
(docs/benchmarks.md), and small chunks waste less on padding when the cache
and the integrity check leave few candidates to train."""


def build_space(config: ml_collections.ConfigDict) -> Space:
    """The configured search space."""
    try:
        return spaces.get(config.space.name, **config.space.options.to_dict())
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(f"config.space: {e}") from None


def build_searcher(config: ml_collections.ConfigDict, space: Space, *,
                   horizon: int | None = None) -> Searcher:
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


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """What a config says of every task it builds.

    Attributes:
      seeds: seeds per run.
      steps: training steps (0: the task's default, or ``options``' steps
        where ``own_steps`` is False).
      batch_size: 0 for the task's default.
      data_dir, download: where TFDS data lives, and whether to fetch it.
      options: per-task overrides by task name (``tasks.options``).
      own_steps: with ``steps`` 0, use the task's own default even where
        ``options`` sets steps (the validation and test roles' budgets).
    """

    seeds: int
    steps: int = 0
    batch_size: int = 0
    data_dir: str = ""
    download: bool = False
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    own_steps: bool = False


def build_task(name: str, settings: TaskSettings, *, key: str = "config.tasks") -> tasks.Task:
    """Task ``name`` with ``settings``; an error names ``key`` (the config
    section the settings came from)."""
    try:
        accepted = tasks.options(name)
    except ValueError as e:  # unknown, or a module:function that does not resolve
        raise config_lib.ConfigError(f"{key}: {config_lib.one_line(e)}") from None
    overrides: dict[str, Any] = {}
    if "data_dir" in accepted and settings.data_dir:
        overrides["data_dir"] = settings.data_dir
    if "download" in accepted:
        overrides["download"] = settings.download
    if settings.batch_size:
        overrides["batch_size"] = settings.batch_size
    overrides.update(settings.options.get(name, {}))
    overrides["seeds"] = settings.seeds
    if settings.steps:
        overrides["steps"] = settings.steps
    elif settings.own_steps:
        overrides.pop("steps", None)
    try:  # an option the task lacks is a ValueError naming it and the known ones
        return tasks.get(name, **overrides)
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(
            f"{key}.options.{name}: {config_lib.one_line(e)}") from None


ROLES = ("search", "validation", "test")
"""A task's roles in a search: search tasks drive evolution, validation tasks
(the elimination stages) choose the winner, test tasks only report."""


def task_settings(config: ml_collections.ConfigDict, role: str = "search") -> TaskSettings:
    """The settings of a search's tasks of ``role``: the budget is
    ``tasks.steps``/``tasks.seeds`` for ``search``,
    ``elimination.steps``/``elimination.seeds`` for ``validation`` and
    ``test.steps``/``test.seeds`` for ``test`` (steps 0: the task's own
    default); it overrides ``tasks.options``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    budget = {"search": config.tasks, "validation": config.elimination,
              "test": config.test}[role]
    return TaskSettings(seeds=budget.seeds, steps=budget.steps,
                        batch_size=config.tasks.batch_size, data_dir=config.tasks.data_dir,
                        download=config.tasks.download, options=config.tasks.options.to_dict(),
                        own_steps=role != "search")


def search_task(config: ml_collections.ConfigDict, name: str, *,
                role: str = "search") -> tasks.Task:
    """Task ``name`` of a search config, with the budget of ``role``."""
    return build_task(name, task_settings(config, role))


def check_task_options(config: ml_collections.ConfigDict) -> None:
    """``tasks.options`` names only tasks of the config, each with a dict."""
    named = {n for role in config_lib.task_roles(config).values() for n in role}
    for key, value in config.tasks.options.to_dict().items():
        if key not in named:
            raise config_lib.ConfigError(f"config.tasks.options.{key}: not a task of this "
                                         f"config ({', '.join(sorted(named))})")
        if not isinstance(value, dict):
            raise config_lib.ConfigError(
                f"config.tasks.options.{key}: expected a dict of task options, got {value!r}")


def trainer(config: ml_collections.ConfigDict, progress: Progress | None = None) -> Trainer:
    """The configured trainer (``evaluation.strategy``); callers set its chunks.
    ``progress``: the run's log, timed, which the trainer tells what it trains
    (:class:`symopt.evaluate.Progress`; None: it says nothing)."""
    return Trainer(strategy=config.evaluation.strategy, progress=progress)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a search config builds, before the run touches its workdir."""

    space: Space
    searcher: Searcher
    tasks: tuple[tasks.Task, ...]  # the search tasks
    stages: tuple[tuple[tasks.Task, ...], ...]  # elimination stages (the validation role)
    test_tasks: tuple[tasks.Task, ...]
    shape: ProgramShape  # the space's program shape
    chunk_size: int  # candidates per compiled program
    trainer: Trainer  # the configured strategy; rows per program set where it trains


def setup(config: ml_collections.ConfigDict, horizon: int | None = None,
          progress: Progress | None = None) -> Setup:
    """Builds every piece of a search; fails, with the command that prepares
    it, if a task's data is missing. ``progress``: the run's log, timed, for
    the trainer (:func:`trainer`)."""
    check_task_options(config)
    space = build_space(config)
    searcher = build_searcher(config, space, horizon=horizon)
    search_tasks = tuple(search_task(config, n) for n in config_lib.names(config.tasks.search))
    stages = tuple(tuple(search_task(config, n, role="validation") for n in stage)
                   for stage in config_lib.elimination_stages(config))
    test_tasks = tuple(search_task(config, n, role="test")
                       for n in config_lib.names(config.tasks.test))
    for task in (*search_tasks, *(t for stage in stages for t in stage), *test_tasks):
        task.data()
    chunk = config.evaluation.chunk_size or min(DEFAULT_CHUNK, searcher.children_per_generation)
    return Setup(space, searcher, search_tasks, stages, test_tasks, space.program_shape(), chunk,
                 trainer(config, progress))
