"""The search configuration: its sections, defaults and validation.

A config is an ``ml_collections.ConfigDict`` (files in ``experiments/`` start
from :func:`default_config` and change what they need, as big_vision's
configs do). Sections:

* ``search``: ``name`` (``ga``, ``particle_ga``, ``regularized_evolution``,
  ``random``), ``generations``, ``population_size``, ``seed``, ``seeds``
  (zoo optimizers in the first population: comma-separated names,
  ``"default"`` for the space's own, ``""`` for none) and ``options`` (the
  searcher's other fields, e.g. ``tournament_size``).
* ``space``: ``name`` (``nos``, ``terms``, ``autolr``) and ``options`` (the
  space's fields, e.g. ``max_nodes``).
* ``tasks``: ``search`` (comma-separated task names the fitness is measured
  on), ``test`` (tasks that only report, after the winner is chosen),
  ``steps`` and ``batch_size`` (0: the task's default), ``seeds``,
  ``data_dir`` and ``download`` (TFDS), ``options`` (per-task overrides by
  task name).
* ``evaluation``: ``metric`` (``loss``: clipped final loss normalised by a
  tuned Adam, geometric mean over tasks; ``accuracy``: Marfinetz 2025's
  formula; see :mod:`symopt.fitness`), ``split`` the fitness reads (``val``),
  ``strategy`` of the population optimizer, ``chunk_size`` (candidates
  trained per compiled program; 0: the searcher's batch),
  ``reference_learning_rate`` and ``reference_lr_multipliers`` (Adam, the
  fitness normaliser, tuned per task over that grid), ``lr_multipliers``
  (each candidate also trains at these multiples of its learning rate, as
  extra rows of the same program; the best is written back into the genome)
  and ``lr_aggregate`` (``best`` or ``mean`` over them),
  ``simplicity_tolerance`` (the winner is the simplest candidate within this
  relative fitness of the best; 0: off), ``check`` and ``dedupe`` (integrity
  check and fingerprint cache).
* ``elimination``: progressive elimination of the best after the search:
  ``tasks`` (stages separated by commas, the tasks of one stage joined by
  ``+`` and aggregated; ``""`` skips it),
  ``top_k`` candidates entering, ``keep`` (fraction kept per stage),
  ``steps`` (0: task default), ``seeds``, ``on_search_tasks`` (allow the
  stages to re-measure search tasks) and ``novel_only`` (only candidates the
  novelty test does not judge re-tunings of a zoo optimizer enter:
  :mod:`symopt.novelty`). The stages' tasks are the *validation*
  role: they choose the winner.
* ``test``: the test tasks (``tasks.test``) train the best ``top_k`` of the
  validation and the ``comparisons`` (``adam``, ``adamw_cosine``, ``lion``,
  ``terms_ga``, ``muon``, ``schedule_free_adamw``: :mod:`symopt.comparisons`)
  with ``steps`` and ``seeds``, each at its own learning rate (as found) and
  tuned over ``lr_multipliers`` on the test tasks' val split; they only
  report.
* ``output``: ``top`` candidates in the summary.
* ``transfer``: what ``python -m symopt.transfer`` measures found graphs on
  (:mod:`symopt.transfer`): ``tasks`` (cheapest first), ``steps``,
  ``batch_size``, ``seeds``, ``lr_multipliers``, ``comparisons`` (the
  comparisons' names, at their authors' schedules, or zoo optimizers) and
  ``keep`` (fraction kept after each task). It reads
  ``evaluation.metric`` and ``evaluation.strategy``, and ``tasks.data_dir``,
  ``tasks.download`` and ``tasks.options``, as a search does; a search
  ignores it, and a workdir resumes whatever it says.

:func:`validate` rejects unknown keys and bad values with one-line
:class:`ConfigError` messages naming the key; :mod:`symopt.cli` is how the
command lines (``symopt.main``, ``symopt.transfer``) report them. The
vocabularies are the owners': metrics and multiplier aggregates from
:mod:`symopt.fitness`, strategies from :mod:`symopt.program`, tasks from
:mod:`symopt.tasks`, optimizers from :mod:`symopt.zoo` and the comparisons from
:mod:`symopt.comparisons`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from symopt import comparisons, fitness, measure, ops, program, tasks, zoo
from symopt.graph import MAX_INT

SECTIONS = ("search", "space", "tasks", "evaluation", "elimination", "test", "output",
            "transfer")
FREE_FORM = ("search.options", "space.options", "tasks.options")
"""Sections whose keys depend on the chosen searcher, space or task; their
owners reject unknown keys when the run builds them."""
RESUMABLE_CHANGES = ("search.generations", "output.top", "test.comparisons",
                     "test.lr_multipliers", "test.comparison_cache")
"""Keys that may differ when a run resumes from its workdir (and every key of
the ``transfer`` section, which a search does not read: :func:`resumable`).
``test.comparisons`` and ``test.lr_multipliers`` only shape the report of the
test tasks, after the winner is chosen, and their defaults grow: an archive
stored under older defaults resumes. Its stored test results (reused while
the winner is the same) keep what they ran: ``summary.md`` states their own
multipliers and names the comparisons they lack. ``test.comparison_cache``
only says where comparisons measured before are found."""


MAX_POPULATION = 10_000
"""The largest ``search.population_size`` (and ``evaluation.chunk_size``):
the first ask of a population breeds and checks every member on the host,
about half a millisecond each, before any progress line."""
MAX_SEEDS = 1_000
"""The most seeds per run (every ``*.seeds``)."""
MAX_STEPS = 10_000_000
"""The most training steps per run (every ``*.steps``); a run's memory
(:mod:`symopt.budget`) bounds it further."""
MAX_BATCH_SIZE = 32_768
"""The largest ``tasks.batch_size`` and ``transfer.batch_size``."""
RATE_RANGE = (ops.TINY, ops.BIG)
"""The learning rates a multiplier may lead to: a graph's rate must lie in
(0, ``ops.BIG``] (:func:`symopt.graph.validate`), and one below ``ops.TINY``
is zero in float32."""
CANDIDATE_RATES = (math.sqrt(ops.TINY), math.sqrt(ops.BIG))
"""Far wider than the learning rates any space's candidates (or the
comparisons) hold (about 1e-6 to 10): multipliers are checked against it,
so that a candidate's rate at every multiple the search, the test tasks or
the transfer report try stays in :data:`RATE_RANGE`."""

RENAMED = {
    "evaluation.baseline_learning_rate": "evaluation.reference_learning_rate",
    "evaluation.baseline_lr_multipliers": "evaluation.reference_lr_multipliers",
    "test.baselines": "test.comparisons",
}
"""Old key -> new key. A config (or an archived one) that still uses an old
name is read under the new one, with a warning, until the next release."""


def upgrade(config: Any) -> Any:
    """``config`` (a ConfigDict, changed in place, or a nested dict, copied)
    with the keys of :data:`RENAMED` under their new names."""
    if isinstance(config, ml_collections.ConfigDict):
        for old, new in RENAMED.items():
            section, name = old.split(".")
            if section in config and name in config[section]:
                warnings.warn(f"config.{old} is now config.{new}; the old name goes in the "
                              "next release", DeprecationWarning, stacklevel=3)
                with config.unlocked():
                    config[section][new.split(".")[1]] = config[section][name]
                    del config[section][name]
        return config
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    for old, new in RENAMED.items():
        section, name = old.split(".")
        if name in out.get(section, {}):
            out[section][new.split(".")[1]] = out[section].pop(name)
    return out


def resumable(key: str) -> bool:
    """Whether the dotted config ``key`` may change when a run resumes."""
    return key in RESUMABLE_CHANGES or key.split(".")[0] == "transfer"


class ConfigError(ValueError):
    """A bad config key or value; the message names the key on one line."""


def default_config() -> ml_collections.ConfigDict:
    """Every key with its default: a short GA over nos graphs on digits."""
    config = ml_collections.ConfigDict()
    config.search = ml_collections.ConfigDict(dict(
        name="ga", generations=10, population_size=32, seed=0, seeds="default",
        options=ml_collections.ConfigDict(),
    ))
    config.space = ml_collections.ConfigDict(dict(
        name="nos", options=ml_collections.ConfigDict(),
    ))
    config.tasks = ml_collections.ConfigDict(dict(
        search="digits_mlp", test="", steps=0, batch_size=0, seeds=2, data_dir="",
        download=False, options=ml_collections.ConfigDict(),
    ))
    config.evaluation = ml_collections.ConfigDict(dict(
        metric="accuracy", split="val", strategy="auto", chunk_size=0,
        reference_learning_rate=1e-3, reference_lr_multipliers=(1.0,), lr_multipliers=(1.0,),
        lr_aggregate="best", simplicity_tolerance=0.0, check=True, dedupe=True,
    ))
    config.elimination = ml_collections.ConfigDict(dict(
        tasks="", top_k=8, keep=0.5, steps=0, seeds=3, on_search_tasks=False, novel_only=False,
    ))
    config.test = ml_collections.ConfigDict(dict(
        comparisons=",".join(comparisons.COMPARISONS.names()), top_k=3, steps=0, seeds=3,
        lr_multipliers=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0), comparison_cache="",
    ))
    config.output = ml_collections.ConfigDict(dict(top=5))
    config.transfer = ml_collections.ConfigDict(dict(
        tasks="digits_mlp,digits_cnn,mnist1d_mlp", steps=0, batch_size=0, seeds=3,
        lr_multipliers=(0.1, 0.3, 1.0, 3.0, 10.0), comparisons=",".join(zoo.TRANSFER),
        keep=0.5,
    ))
    return config


MEANINGS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("search.name",),
     "`ga`, `particle_ga`, `regularized_evolution`, `random`"),
    (("search.generations",),
     "ask/tell rounds (may grow when resuming; mutation decay keeps the first run's horizon)"),
    (("search.population_size",),
     "population (particles for `particle_ga`)"),
    (("search.seed",),
     "the search's seed: same seed, same search"),
    (("search.seeds",),
     "zoo optimizers in the first population: comma-separated names, `default` (the space's), "
     "or empty"),
    (("search.options",),
     "the searcher's other fields: `ga`: `tournament_size`, `elites`, `crossover_rate`, "
     "`mutation_rate`; `particle_ga`: `children_per_particle`; `regularized_evolution`: "
     "`sample_size`, `batch_size`, `init_fill`, `niche_size`, `niches` (`structure` or "
     "`behaviour`), `retries`"),
    (("space.name",),
     "`nos`, `terms`, `autolr`"),
    (("space.options",),
     "the space's fields, e.g. `nos`: `max_nodes`, `max_constants`, `max_states`, `p_decay`, "
     "`p_schedule_graph`, `unary`, `binary`, `operands`, `leaf_ops`, `wrap`; `terms`: "
     "`max_terms`, `p_numeric`, `p_structural`, `p_flag`, `sigma`; `autolr`: `mode`, "
     "`max_depth`, `max_tree_ops`, "
     "`epochs`, `lr0`, `base`"),
    (("tasks.search",),
     "comma-separated tasks the fitness averages over (the *search* role): registered names or"
     " `module:function`"),
    (("tasks.test",),
     "tasks that only report, after the winner is chosen (the *test* role); a task has one "
     "role, so naming it in two is a config error"),
    (("tasks.steps", "tasks.batch_size"),
     "training budget per candidate (0: the task's default)"),
    (("tasks.seeds",),
     "runs per candidate"),
    (("tasks.data_dir", "tasks.download"),
     "TFDS data location; let TFDS download"),
    (("tasks.options",),
     "per-task options by task name, e.g. `{\"cifar10\": {\"train_size\": 15000}}`"),
    (("evaluation.metric",),
     "`loss`: final clipped loss, divided into the reference Adam's, geometric mean over tasks; "
     "`accuracy`: Marfinetz 2025's formula, mean over tasks divided by Adam's (the published "
     "protocols)"),
    (("evaluation.split",),
     "split the fitness reads (the test split stays unseen)"),
    (("evaluation.strategy",),
     "population optimizer: `loop` (CPU), `vmap` (accelerators), or `fused` (one Pallas "
     "kernel; not yet measured on a GPU, falls back to `vmap` where it does not compile)"),
    (("evaluation.chunk_size",),
     "candidates per compiled program (0: the searcher's batch, at most 16); the last chunk is"
     " padded, so one compile serves the run"),
    (("evaluation.reference_learning_rate", "evaluation.reference_lr_multipliers"),
     "Adam, the *reference* that normalises fitness, is tuned per task over the rate times "
     "each multiplier; the default, one multiplier, is Adam at 1e-3, untuned, and a run's "
     "fitness lines say which (trained once per run, kept in the archive; the old names "
     "`baseline_learning_rate`, `baseline_lr_multipliers` are read with a warning until the "
     "next release)"),
    (("evaluation.lr_multipliers",),
     "each candidate also trains at these multiples of its learning rate, as rows of the same "
     "compiled program; the best is written back into its genome and graph"),
    (("evaluation.lr_aggregate",),
     "fitness over the multipliers: `best`, or `mean` (geometric for `loss`), which rewards "
     "robustness to the learning rate"),
    (("evaluation.simplicity_tolerance",),
     "the winner is the simplest candidate (`symopt.simplicity.complexity`) within this "
     "relative fitness of the best; 0: off"),
    (("evaluation.check", "evaluation.dedupe"),
     "integrity check; fingerprint cache"),
    (("elimination.tasks",),
     "the *validation* role, which chooses the winner: progressive elimination after the "
     "search, stages separated by commas, cheapest first, the tasks of one stage joined by `+`"
     " (fitness aggregated over them); empty: none"),
    (("elimination.top_k", "elimination.keep"),
     "candidates entering; fraction kept per stage"),
    (("elimination.steps", "elimination.seeds"),
     "budget per stage run (0: the task's default)"),
    (("elimination.on_search_tasks",),
     "let the stages re-measure the search tasks (`terms_ga.py`'s final comparison)"),
    (("elimination.novel_only",),
     "only candidates the novelty test does not judge re-tunings of a zoo optimizer enter "
     "(`discover.py`)"),
    (("test.comparisons",),
     "the *comparisons* the test tasks train next to the winner, each as its authors recommend"
     " (`symopt.comparisons`: Adam constant; AdamW, Lion and Muon with warmup and cosine "
     "decay; schedule-free AdamW with warmup; terms-GA as published); may change when a run "
     "resumes (old name `test.baselines`)"),
    (("test.top_k",),
     "the winner and the runners-up of the validation that the test tasks train"),
    (("test.steps", "test.seeds"),
     "budget per test run (0: the task's default)"),
    (("test.lr_multipliers",),
     "every optimizer's lr-tuned figure picks one of these on the test task's validation "
     "split; may change when a run resumes"),
    (("test.comparison_cache",),
     "a directory where the comparisons' test results are kept and reused by later searches "
     "of the same test tasks, budgets and symopt source (`symopt.comparison_cache`); `\"\"`: "
     "none; may change when a run resumes"),
    (("output.top",),
     "candidates in `summary.md`"),
    (("transfer.tasks",),
     "`python -m symopt.transfer`: tasks found graphs are compared on, cheapest first (a "
     "search ignores this section)"),
    (("transfer.steps", "transfer.batch_size", "transfer.seeds"),
     "budget per transfer run (0: the task's default)"),
    (("transfer.lr_multipliers",),
     "every optimizer's rate is chosen among these multiples on each task's validation split"),
    (("transfer.comparisons",),
     "zoo optimizers compared with the found graphs (Adam always)"),
    (("transfer.keep",),
     "fraction of optimizers, by score against Adam, that go on to the next task"),
)
"""The config's schema, once: rows of (keys, meaning), in the order and
grouping of the README's config table (``tests/test_docs.py`` checks that
table against these rows and :func:`default_config`); :func:`help_text`
prints them for ``--help``."""

DESCRIPTIONS: dict[str, str] = {key: meaning for keys, meaning in MEANINGS for key in keys}
"""Dotted config key -> its meaning (one row of :data:`MEANINGS`)."""


def help_text() -> str:
    """Every config key with its default (from :func:`default_config`, so it
    cannot drift) and its meaning (:data:`MEANINGS`), for ``--help``: a line
    ``keys = defaults`` and an indented line of meaning per row."""
    defaults = flatten(default_config())
    rows = [(keys, meaning) for keys, meaning in MEANINGS if set(keys) <= set(defaults)]
    rows += [((key,), "") for key in defaults if key not in DESCRIPTIONS]
    lines = ["config keys (override with --config.KEY=VALUE; a config file's get_config() "
             "starts from symopt.config.default_config()):"]
    for keys, meaning in rows:
        values = ", ".join(_shown_default(defaults[k]) for k in keys)
        lines += [f"  {', '.join(keys)} = {values}",
                  f"      {meaning.replace('`', '').replace('*', '')}"]
    return "\n".join(lines)


def _shown_default(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def from_file(path: str | os.PathLike[str]) -> ml_collections.ConfigDict:
    """The config a config file's ``get_config()`` returns (``experiments/*.py``),
    validated; raises ConfigError in one line when the file cannot give one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}" if not os.path.exists(path)
                          else f"the config path is not a file: {path}")
    spec = importlib.util.spec_from_file_location("symopt_user_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = module.get_config()
    except Exception as e:  # noqa: BLE001 (the config file is user code)
        raise ConfigError(f"cannot load the config file {path}: {type(e).__name__}: "
                          f"{one_line(e)}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned a {type(config).__name__}, "
                          "not an ml_collections.ConfigDict")
    return validate(config)


def names(value: str) -> list[str]:
    """A comma-separated list of names (``""`` is none)."""
    return [n.strip() for n in str(value).split(",") if n.strip()]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in FREE_FORM:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def flatten(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """``{"search.generations": 10, ...}``; free-form sections stay dicts."""
    return _flatten(config.to_dict() if hasattr(config, "to_dict") else config)


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config.{key}: {message}")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks keys and values; returns the config or raises :class:`ConfigError`.
    Old key names (:data:`RENAMED`) are moved to their new ones first."""
    config = upgrade(config)
    defaults = flatten(default_config())
    given = flatten(config)
    for key in given:
        if key not in defaults:
            known = ", ".join(k for k in defaults if k.split(".")[0] == key.split(".")[0])
            _fail(key, f"unknown key (known: {known or ', '.join(SECTIONS)})")
    for key, default in defaults.items():
        if key not in given:
            _fail(key, "missing (start configs from symopt.config.default_config())")
        value = given[key]
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, type(default) if not isinstance(default, float) else (int, float)):
            _fail(key, f"expected {type(default).__name__}, got {value!r}")
    c = config
    for key, value, lo, hi in (
        ("search.generations", c.search.generations, 1, MAX_INT),
        ("search.population_size", c.search.population_size, 1, MAX_POPULATION),
        ("search.seed", c.search.seed, 0, MAX_INT),
        ("tasks.steps", c.tasks.steps, 0, MAX_STEPS),
        ("tasks.batch_size", c.tasks.batch_size, 0, MAX_BATCH_SIZE),
        ("tasks.seeds", c.tasks.seeds, 1, MAX_SEEDS),
        ("evaluation.chunk_size", c.evaluation.chunk_size, 0, MAX_POPULATION),
        ("elimination.top_k", c.elimination.top_k, 1, MAX_INT),
        ("elimination.steps", c.elimination.steps, 0, MAX_STEPS),
        ("elimination.seeds", c.elimination.seeds, 1, MAX_SEEDS),
        ("test.top_k", c.test.top_k, 1, MAX_INT),
        ("test.steps", c.test.steps, 0, MAX_STEPS),
        ("test.seeds", c.test.seeds, 1, MAX_SEEDS),
        ("output.top", c.output.top, 1, MAX_INT),
        ("transfer.steps", c.transfer.steps, 0, MAX_STEPS),
        ("transfer.batch_size", c.transfer.batch_size, 0, MAX_BATCH_SIZE),
        ("transfer.seeds", c.transfer.seeds, 1, MAX_SEEDS),
    ):
        if value < lo:
            _fail(key, f"must be >= {lo}, got {value}")
        if value > hi:
            _fail(key, f"must be <= {hi:,}, got {value:,}")
    if not names(c.tasks.search):
        _fail("tasks.search", "name at least one task")
    if c.evaluation.split not in ("val", "test"):
        _fail("evaluation.split", f"must be 'val' or 'test', got {c.evaluation.split!r}")
    if c.evaluation.strategy not in program.STRATEGIES:
        _fail("evaluation.strategy",
              f"must be one of {', '.join(program.STRATEGIES)}, got {c.evaluation.strategy!r}")
    if not 0 < c.elimination.keep <= 1:
        _fail("elimination.keep", f"must be in (0, 1], got {c.elimination.keep}")
    if not 0 < c.evaluation.reference_learning_rate <= ops.BIG:
        _fail("evaluation.reference_learning_rate", f"must be in (0, {ops.BIG:g}], got "
                                                    f"{c.evaluation.reference_learning_rate!r}")
    for key, value, known in (("evaluation.metric", c.evaluation.metric, fitness.METRICS),
                              ("evaluation.lr_aggregate", c.evaluation.lr_aggregate,
                               fitness.LR_AGGREGATES)):
        if value not in known:
            _fail(key, f"must be {' or '.join(map(repr, known))}, got {value!r}")
    if not 0 <= c.evaluation.simplicity_tolerance < math.inf:
        _fail("evaluation.simplicity_tolerance",
              f"must be a finite number >= 0, got {c.evaluation.simplicity_tolerance!r}")
    for key in ("evaluation.lr_multipliers", "evaluation.reference_lr_multipliers",
                "test.lr_multipliers", "transfer.lr_multipliers"):
        section, name = key.split(".")
        values = c[section][name]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and 0 < v < float("inf") for v in values):
            _fail(key, f"must be a non-empty tuple of numbers > 0, got {values!r}")
    for key in ("evaluation.lr_multipliers", "test.lr_multipliers"):
        section, name = key.split(".")
        if 1.0 not in c[section][name]:
            _fail(key, "must include 1.0 (the learning rate as found)")
    _check_rates(c)
    unknown = [n for n in names(c.test.comparisons) if n not in comparisons.COMPARISONS]
    if unknown:
        _fail("test.comparisons", f"unknown comparison {unknown[0]!r}; known: "
                                  f"{', '.join(comparisons.COMPARISONS.names())}")
    _check_roles(c)
    _check_transfer(c.transfer)
    return config


def _reached(multipliers: tuple[float, ...], extend: bool) -> tuple[float, float]:
    """The smallest and the largest multiple a sweep over ``multipliers``
    trains at: the grid's edges, stepped past them :data:`symopt.measure.MAX_EXTENSIONS`
    times where the sweep extends (:func:`symopt.measure.extension_ratios`)."""
    lo, hi = np.float64(min(multipliers)), np.float64(max(multipliers))
    ratios = measure.extension_ratios(multipliers) if extend else None
    if ratios is not None:
        with np.errstate(over="ignore", under="ignore"):
            steps = measure.MAX_EXTENSIONS
            lo, hi = lo / np.float64(ratios[0]) ** steps, hi * np.float64(ratios[1]) ** steps
    return float(lo), float(hi)


def _check_rates(c: ml_collections.ConfigDict) -> None:
    """Every learning rate the multipliers lead to stays in :data:`RATE_RANGE`:
    the reference's exactly, a candidate's or a comparison's for every rate of
    :data:`CANDIDATE_RATES`."""
    low, high = RATE_RANGE
    for key, extend in (("evaluation.reference_lr_multipliers", True),
                        ("evaluation.lr_multipliers", False), ("test.lr_multipliers", True),
                        ("transfer.lr_multipliers", True)):
        section, name = key.split(".")
        multipliers = tuple(float(m) for m in c[section][name])
        if key == "evaluation.reference_lr_multipliers":
            rates = (c.evaluation.reference_learning_rate,) * 2
            what = "evaluation.reference_learning_rate times them"
        else:
            rates = CANDIDATE_RATES
            what = "a learning rate in [{:g}, {:g}] times them".format(*CANDIDATE_RATES)
        lo, hi = _reached(multipliers, extend)
        with np.errstate(over="ignore", under="ignore"):
            lo, hi = float(np.float64(lo) * rates[0]), float(np.float64(hi) * rates[1])
        if not low <= lo <= hi <= high:
            past = (f" (with up to {measure.MAX_EXTENSIONS} steps past the grid's edges)"
                    if extend and len(set(multipliers)) > 1 else "")
            _fail(key, f"{what}{past} reach {lo:g} to {hi:g}, outside the valid learning "
                       f"rates [{low:g}, {high:g}]; got {c[section][name]!r}")


def check_transfer_comparison(name: str) -> None:
    """Raises :class:`ConfigError` unless ``transfer.comparisons`` may name
    ``name``: a comparison (:mod:`symopt.comparisons`) or a zoo optimizer."""
    own = comparisons.COMPARISONS.names()
    if name not in own and name not in zoo.names():
        _fail("transfer.comparisons", f"unknown optimizer {name!r}; known: the comparisons "
                                      f"({', '.join(own)}) and the zoo's optimizers "
                                      f"({', '.join(zoo.names())})")


def _check_transfer(t: ml_collections.ConfigDict) -> None:
    if not names(t.tasks):
        _fail("transfer.tasks", "name at least one task")
    unknown = [n for n in names(t.tasks) if not tasks.exists(n)]
    if unknown:
        _fail("transfer.tasks", f"unknown task {unknown[0]!r}; known: {', '.join(tasks.names())}"
                                ", or module:function for your own")
    for name in names(t.comparisons):
        check_transfer_comparison(name)
    if not 0 < t.keep <= 1:
        _fail("transfer.keep", f"must be in (0, 1], got {t.keep!r}")


def elimination_stages(config: ml_collections.ConfigDict) -> list[list[str]]:
    """``elimination.tasks``: stages separated by commas, tasks of a stage by ``+``."""
    return [[n for n in stage.split("+") if n] for stage in names(config.elimination.tasks)]


def task_roles(config: ml_collections.ConfigDict) -> dict[str, list[str]]:
    """The task names of each role: ``search``, ``validation`` (the elimination
    stages' tasks) and ``test``."""
    validation = [n for stage in elimination_stages(config) for n in stage]
    return {"search": names(config.tasks.search), "validation": validation,
            "test": names(config.tasks.test)}


def _check_roles(config: ml_collections.ConfigDict) -> None:
    """A task has one role: search tasks drive evolution, validation tasks choose
    the winner, test tasks only report. ``elimination.on_search_tasks`` lets the
    elimination re-measure the search tasks at its own budget (the published
    terms-GA protocol's final comparison)."""
    roles = task_roles(config)
    keys = {"search": "tasks.search", "validation": "elimination.tasks", "test": "tasks.test"}
    seen: dict[str, str] = {}
    for role, task_names in roles.items():
        for name in dict.fromkeys(task_names):
            other = seen.get(name)
            shared = {other, role} == {"search", "validation"}
            if other and not (shared and config.elimination.on_search_tasks):
                _fail(keys[role], f"task {name!r} is already a {other} task; a task has one "
                                  "role (search, validation or test)")
            seen.setdefault(name, role)


MAX_RUN = 500
"""The longest run of non-blank characters :func:`one_line` prints whole
(longer ones are cut in the middle): room for a path and the command that
names it, not for a megabyte of operand name."""
MAX_LINE = 4_000
"""The longest message :func:`one_line` prints whole."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char, f"\\x{ord(char):02x}")


def _cut(text: str, most: int) -> str:
    """``text`` whole, or its start and end around an ellipsis and its length."""
    if len(text) <= most:
        return text
    tail = most // 5
    return f"{text[:most - tail]}…{text[-tail:]} [{len(text):,} characters]"


def fitness_unit(config: ml_collections.ConfigDict) -> str:
    """What a fitness of 1.0 is under ``config``'s evaluation, for every line
    that prints a fitness: ``tuned Adam (lr 0.0001-0.01) = 1`` where the
    reference is tuned over several rates, ``Adam at lr 0.001, untuned = 1``
    where ``evaluation.reference_lr_multipliers`` holds one (the default)."""
    grid = fitness.reference_grid(config.evaluation)
    if len(set(grid)) > 1:
        return f"tuned Adam (lr {min(grid):g}-{max(grid):g}) = 1"
    return f"Adam at lr {grid[0]:g}, untuned = 1"


def one_line(error: BaseException | str) -> str:
    """An exception's message (or a message) on one line, its characters kept:
    line breaks and other control characters escaped (``\\n``), spaces as
    they are, so that a path or a command reads as given; a run of more than
    :data:`MAX_RUN` non-blank characters, and a message of more than
    :data:`MAX_LINE`, cut in the middle with its length. A KeyError's
    message is its key, not its repr, also where another exception wraps it
    (ml_collections' AttributeError for a typo)."""
    args = getattr(error, "args", ())
    if isinstance(error, BaseException) and len(args) == 1 and isinstance(args[0], BaseException):
        return one_line(args[0])
    text = str(args[0]) if isinstance(error, KeyError) and len(args) == 1 else str(error)
    text = re.sub(rf"\S{{{MAX_RUN + 1},}}", lambda m: _cut(m.group(), MAX_RUN), text.strip())
    text = _CONTROL.sub(_escape, _cut(text, MAX_LINE))
    return text or type(error).__name__
