"""Transfer evaluation: found graphs against the baselines on larger tasks; results tables.

``python -m symopt.transfer --config=experiments/transfer.py --graphs=a.json,b.json --out=DIR``

This module owns :func:`run_transfer` and its config (:func:`default_config`,
:func:`validate`). Every optimizer (the given graphs and the zoo baselines)
is trained on each task with several seeds at each learning-rate multiplier
of its own learning rate, and the val-best multiplier is chosen per task
(:func:`symopt.heldout.sweep`). Runs are scored under ``config.metric`` as
the search scores them (:mod:`symopt.fitness`: ``"accuracy"``, Marfinetz
2025's formula, or ``"loss"``, the clipped final loss), and normalised by
Adam's with :func:`symopt.fitness.aggregate`. The tasks run in the order
given (cheapest first) as a progressive elimination
(:func:`symopt.searchers.successive_halving`): after each task the top ``keep``
fraction by normalised val score go on; Adam, the reference, is always
measured. DIR receives ``results.md`` (optimizer x task: the test value at the
chosen lr, mean +- std over seeds, and the aggregate over the tasks reached,
normalised by Adam's on the same tasks), ``results.csv`` (one row per
optimizer x task) and ``curves_<task>.png`` (training loss over steps, mean
over seeds, at the chosen lr).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from symopt import cli
from symopt import config as config_lib
from symopt import evaluate, fitness, heldout, run, searchers, tasks, zoo
from symopt import graph as graph_lib
from symopt.program import ProgramShape

REFERENCE = "adam"
PUBLISHED = ("signum", "addsign", "powersign", "ades", "autolr_sign", "terms_ga")
DEFAULT_BASELINES = ",".join(("sgd", "momentum", "adam", "adamw", "lion", *PUBLISHED))
MAX_CHUNK = 32  # optimizer x multiplier runs per compiled program
CSV_FIELDS = ("optimizer", "task", "metric", "lr_multiplier", "learning_rate", "val",
              "test_mean", "test_std", "seeds", "aggregate_vs_adam")
Log = Callable[[str], None]
DESCRIPTIONS = {  # metric -> what results.md's cells and aggregate are
    "accuracy": ("Test fitness (Marfinetz 2025's formula, higher is better)",
                 "mean test fitness over the tasks reached, divided by Adam's on the same tasks"),
    "loss": ("Test loss (final loss clipped as symopt.fitness clips, lower is better)",
             "geometric mean over the tasks reached of Adam's test loss divided by the "
             "optimizer's, each ratio clipped"),
}


def default_config() -> ml_collections.ConfigDict:
    """Every key with its default: three offline tasks, 3 seeds, five learning
    rates, the search's default metric."""
    return ml_collections.ConfigDict(dict(
        tasks="digits_mlp,digits_cnn,mnist1d_mlp", steps=0, batch_size=0, seeds=3,
        lr_multipliers=(0.1, 0.3, 1.0, 3.0, 10.0), baselines=DEFAULT_BASELINES, keep=0.5,
        metric=config_lib.default_config().evaluation.metric,
        data_dir="", download=False, options=ml_collections.ConfigDict(),
    ))


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks keys and values; raises :class:`symopt.config.ConfigError` (one line)."""
    defaults = default_config()
    for key in config:
        if key not in defaults:
            raise config_lib.ConfigError(
                f"config.{key}: unknown key (known: {', '.join(defaults)})")
    for key in defaults:
        if key not in config:
            raise config_lib.ConfigError(
                f"config.{key}: missing (start configs from symopt.transfer.default_config())")
    c = config
    checks = (
        ("tasks", bool(config_lib.names(c.tasks)), "name at least one task"),
        ("tasks", all(tasks.exists(n) for n in config_lib.names(c.tasks)),
         f"unknown task in {c.tasks!r}; known: {', '.join(tasks.names())}, or "
         "module:function for your own"),
        ("steps", isinstance(c.steps, int) and c.steps >= 0,
         f"must be an int >= 0, got {c.steps!r}"),
        ("batch_size", isinstance(c.batch_size, int) and c.batch_size >= 0,
         f"must be an int >= 0, got {c.batch_size!r}"),
        ("seeds", isinstance(c.seeds, int) and c.seeds >= 1,
         f"must be an int >= 1, got {c.seeds!r}"),
        ("lr_multipliers", _positive_numbers(c.lr_multipliers),
         f"must be a non-empty tuple of numbers > 0, got {c.lr_multipliers!r}"),
        ("baselines", all(n in zoo.names() for n in config_lib.names(c.baselines)),
         f"unknown zoo optimizer in {c.baselines!r}; known: {', '.join(zoo.names())}"),
        ("keep", isinstance(c.keep, (int, float)) and 0 < c.keep <= 1,
         f"must be in (0, 1], got {c.keep!r}"),
        ("metric", c.metric in fitness.METRICS,
         f"must be one of {', '.join(fitness.METRICS)}, got {c.metric!r}"),
    )
    for key, ok, message in checks:
        if not ok:
            raise config_lib.ConfigError(f"config.{key}: {message}")
    return config


def _positive_numbers(values) -> bool:
    return (isinstance(values, (tuple, list)) and len(values) > 0
            and all(isinstance(v, (int, float)) and v > 0 for v in values))


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """One optimizer on one task: every multiplier's val value and the chosen one's runs.

    Values are :func:`symopt.fitness.runs` under the config's metric: a
    clipped loss (``"loss"``, lower is better) or a fitness (``"accuracy"``).
    """

    val: np.ndarray  # [M] mean over seeds, per lr multiplier
    chosen: int  # index of the val-best multiplier
    learning_rate: float  # the chosen learning rate
    test: np.ndarray  # [S] per seed, at the chosen lr
    loss_curve: np.ndarray  # [points] training loss, mean over seeds, at the chosen lr

    @property
    def val_best(self) -> float:
        """The val value at the chosen multiplier."""
        return float(self.val[self.chosen])


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """What :func:`run_transfer` measured and wrote."""

    optimizers: tuple[str, ...]
    tasks: tuple[str, ...]
    multipliers: tuple[float, ...]
    metric: str
    results: dict[tuple[str, str], TaskResult]  # (optimizer, task) -> result
    aggregate: dict[str, float]  # fitness.aggregate of the test values over the tasks reached
    halving: searchers.HalvingResult  # over the non-reference optimizers, by index
    files: tuple[str, ...]


def graph_names(paths: Sequence[str]) -> list[str]:
    """A unique name per graph file, from its path: the file's stem, with as
    many parent directories as it takes to tell the files apart and from the
    zoo baselines (``runs/a/best.json``, ``runs/b/best.json`` -> ``a/best``,
    ``b/best``). Raises ValueError for a file listed twice."""
    parts = [pathlib.Path(os.path.abspath(p)).with_suffix("").parts for p in paths]
    seen: dict[tuple[str, ...], str] = {}
    for path, split in zip(paths, parts, strict=True):
        if split in seen:
            raise ValueError(f"--graphs: {path} is listed twice (as {seen[split]})")
        seen[split] = path
    depth = [1] * len(paths)

    def name(i: int) -> str:
        return "/".join(parts[i][-depth[i]:])

    while True:
        names = [name(i) for i in range(len(paths))]
        clashing = [i for i, n in enumerate(names)
                    if names.count(n) > 1 or n in zoo.names()]
        growable = [i for i in clashing if depth[i] < len(parts[i]) - 1]
        if not growable:
            return names
        for i in growable:
            depth[i] += 1


def load_graphs(paths: Sequence[str]) -> dict[str, graph_lib.Graph]:
    """Graphs by :func:`graph_names`; raises ValueError naming a bad file."""
    graphs: dict[str, graph_lib.Graph] = {}
    for name, path in zip(graph_names(paths), paths, strict=True):
        try:
            graphs[name] = graph_lib.load(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"--graphs: cannot load {path}: {config_lib.one_line(e)}") from None
    return graphs


def build_tasks(config: ml_collections.ConfigDict) -> list[tasks.Task]:
    """The config's tasks, built as a search builds its own (:func:`symopt.run.build_task`)."""
    search_config = config_lib.default_config()
    search_config.tasks.update(dict(
        steps=config.steps, batch_size=config.batch_size, seeds=config.seeds,
        data_dir=config.data_dir, download=config.download, options=config.options.to_dict()))
    return [run.build_task(search_config, n) for n in config_lib.names(config.tasks)]


def _measure_task(task: tasks.Task, named: dict[str, graph_lib.Graph],
                  multipliers: tuple[float, ...], metric: str, shape: ProgramShape,
                  chunk_size: int) -> dict[str, TaskResult]:
    """Every optimizer's :func:`symopt.heldout.sweep` on ``task``, with its learning curve."""
    s = heldout.sweep(list(named.values()), task, multipliers, metric=metric, shape=shape,
                      chunk_size=chunk_size)
    out = {}
    for i, name in enumerate(named):
        chosen = int(s.chosen[i])
        runs = s.curves[i, chosen]
        with np.errstate(all="ignore"):  # a diverged seed's curve has non-finite steps
            curve = np.nanmean(np.where(np.isfinite(runs), runs, np.nan), axis=0)
        out[name] = TaskResult(s.val[i], chosen, float(s.learning_rates[i, chosen]),
                               s.test[i, chosen], curve)
    return out


def run_transfer(config: ml_collections.ConfigDict, graphs: dict[str, graph_lib.Graph],
                 out_dir: str | os.PathLike[str], *, log: Log = print) -> TransferResult:
    """Trains ``graphs`` and the baselines on the config's tasks; writes the report.

    Args:
      config: a transfer config (:func:`default_config`).
      graphs: the optimizers to evaluate, by name (e.g. :func:`load_graphs`).
      out_dir: where results.md, results.csv and curves_<task>.png go.
      log: progress lines.

    Returns:
      A :class:`TransferResult`.
    """
    config = validate(config)
    out_dir = os.fspath(out_dir)
    baselines = config_lib.names(config.baselines)
    named = {REFERENCE: zoo.get(REFERENCE)}
    named.update({n: zoo.get(n) for n in baselines if n != REFERENCE})
    clash = sorted(set(graphs) & set(named))
    if clash:
        raise ValueError(f"graph names {clash} clash with the baselines")
    named.update(graphs)
    task_list = build_tasks(config)
    for task in task_list:
        task.data()  # fails now, with the command to prepare it, if the data is missing
    multipliers = tuple(float(m) for m in config.lr_multipliers)
    metric = config.metric
    shape = heldout.shape_for(list(named.values()))
    chunk_size = min(MAX_CHUNK, len(named) * len(multipliers))
    names = list(named)
    results: dict[tuple[str, str], TaskResult] = {}
    stages = [searchers.Stage(t.name, keep=float(config.keep)) for t in task_list]

    def measure(ids: tuple[int, ...], stage: searchers.Stage) -> np.ndarray:
        index = stages.index(stage)
        task = task_list[index]
        entrants = {n: named[n] for n in [REFERENCE, *(names[i] for i in ids)]}
        start = time.perf_counter()
        log(f"task {index + 1}/{len(task_list)} {task.name}: {len(entrants)} optimizers x "
            f"{len(multipliers)} learning rates ({task.steps} steps, {config.seeds} seeds) ...")
        measured = _measure_task(task, entrants, multipliers, metric, shape, chunk_size)
        results.update({(n, task.name): r for n, r in measured.items()})
        scores = fitness.aggregate(
            {task.name: np.array([measured[names[i]].val_best for i in ids])},
            {task.name: measured[REFERENCE].val_best}, metric)
        log(f"task {index + 1}/{len(task_list)} {task.name}: done in "
            f"{time.perf_counter() - start:.1f}s")
        return scores

    halving = searchers.successive_halving(range(1, len(names)), stages, measure)
    aggregate = {}
    for name in names:
        reached = [t.name for t in task_list if (name, t.name) in results]
        aggregate[name] = float(fitness.aggregate(
            {t: np.array([results[(name, t)].test.mean()]) for t in reached},
            {t: float(results[(REFERENCE, t)].test.mean()) for t in reached}, metric)[0])
    result = TransferResult(tuple(names), tuple(t.name for t in task_list), multipliers,
                            metric, results, aggregate, halving, ())
    files = _write(result, task_list, out_dir)
    log(f"done: {', '.join(files)}")
    return dataclasses.replace(result, files=tuple(files))


# --------------------------------------------------------------------------
# The report.


def ranked(result: TransferResult) -> list[str]:
    """Optimizers by tasks reached, then aggregate (best first)."""
    def reached(name: str) -> int:
        return sum((name, t) in result.results for t in result.tasks)

    return sorted(result.optimizers, key=lambda n: (-reached(n), -result.aggregate[n]))


def csv_rows(result: TransferResult) -> list[dict[str, object]]:
    """One row per optimizer x task it was measured on, in :func:`ranked` order."""
    rows = []
    for name in ranked(result):
        for task in result.tasks:
            r = result.results.get((name, task))
            if r is None:
                continue
            mean, std = fitness.mean_std(r.test)
            rows.append(dict(
                optimizer=name, task=task, metric=result.metric,
                lr_multiplier=result.multipliers[r.chosen], learning_rate=r.learning_rate,
                val=r.val_best, test_mean=mean, test_std=std, seeds=len(r.test),
                aggregate_vs_adam=result.aggregate[name]))
    return rows


def _write(result: TransferResult, task_list: Sequence[tasks.Task], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    rows = csv_rows(result)
    csv_path = os.path.join(out_dir, "results.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    cells = {(r["optimizer"], r["task"]): f"{r['test_mean']:.4f} ± "
             f"{r['test_std']:.4f} (lr x{r['lr_multiplier']:g})" for r in rows}
    value, aggregate = DESCRIPTIONS[result.metric]
    lines = [
        "# symopt transfer evaluation", "",
        f"{value} at the learning rate chosen on the val split "
        f"(multipliers {', '.join(f'{m:g}' for m in result.multipliers)} of each optimizer's "
        f"own), mean ± std over seeds; `-`: eliminated before that task. Aggregate: "
        f"{aggregate} (Adam = 1, higher is better).", "",
        "| optimizer | " + " | ".join(result.tasks) + " | aggregate vs Adam |",
        "|---|" + "---|" * len(result.tasks) + "---|",
    ]
    for name in ranked(result):
        lines.append(f"| {name} | " + " | ".join(cells.get((name, t), "-") for t in result.tasks)
                     + f" | {result.aggregate[name]:.4f} |")
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: F401, PLC0415 (the plots need the viz extra)
    except ImportError:
        return [md_path, csv_path]  # tables only: pip install 'symopt-jax[viz]' for the curves
    return [md_path, csv_path, *(_plot_curves(result, t, out_dir) for t in task_list)]


BASELINE_LINE = "--"
FOUND_LINE = "-"


def line_styles(result: TransferResult) -> dict[str, tuple[str, str]]:
    """Each optimizer's (colour, line style) in the curve plots, the same in every
    task's plot: the given graphs solid, the zoo baselines dashed, and no two
    optimizers alike (colours from tab10, then tab20's lighter shades, then
    dotted lines)."""
    colors = [f"C{i}" for i in range(10)] + [
        "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
        "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
    out = {}
    for i, name in enumerate(result.optimizers):
        style = BASELINE_LINE if name in zoo.names() else FOUND_LINE
        if i >= len(colors):
            style = ":" if style == FOUND_LINE else "-."
        out[name] = (colors[i % len(colors)], style)
    return out


def _plot_curves(result: TransferResult, task: tasks.Task, out_dir: str) -> str:
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib only for the plots)

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    steps = evaluate.curve_steps(task.steps)
    positive = True
    styles = line_styles(result)
    for name in ranked(result):
        r = result.results.get((name, task.name))
        if r is not None:
            color, linestyle = styles[name]
            ax.plot(steps, r.loss_curve, label=f"{name} (lr {r.learning_rate:.3g})", lw=1.2,
                    color=color, linestyle=linestyle)
            positive &= bool(np.all(r.loss_curve[np.isfinite(r.loss_curve)] > 0))
    if positive:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss (mean over seeds)", title=task.name)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(out_dir, f"curves_{task.name}.png")
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------
# The command line.

USAGE_ERROR, RUN_ERROR = cli.USAGE_ERROR, cli.RUN_ERROR


def _cli() -> None:
    from absl import app, flags, logging  # noqa: PLC0415 (flags exist only for the CLI)
    from ml_collections import config_flags  # noqa: PLC0415

    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Transfer config file (experiments/transfer.py); override keys with "
        "--config.<key>=<value>.", lock_config=True)
    graphs_flag = flags.DEFINE_string("graphs", "", "Comma-separated graph JSON files.")
    out_flag = flags.DEFINE_string("out", None, "Directory for results.md, results.csv and "
                                   "curves_<task>.png.")

    program = "symopt.transfer"

    def parse(argv: list[str]) -> list[str]:
        return cli.parse_flags(program, argv, config_flag, validate)

    def main(argv: list[str]) -> None:
        config = config_flag.value
        if len(argv) > 1:
            cli.fail(program, f"unexpected arguments {argv[1:]}", USAGE_ERROR)
        if config is None:
            cli.fail(program, "--config is required, e.g. --config=experiments/transfer.py",
                     USAGE_ERROR)
        if not out_flag.value:
            cli.fail(program, "--out is required, e.g. --out=runs/transfer", USAGE_ERROR)
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        try:
            graphs = load_graphs(config_lib.names(graphs_flag.value))
        except (ValueError, OSError) as e:
            cli.fail(program, str(e), USAGE_ERROR)
        with cli.guarded(program, on_interrupt=f"nothing was written to {out_flag.value}"):
            run_transfer(config, graphs, out_flag.value, log=lambda line: print(line, flush=True))

    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    _cli()
