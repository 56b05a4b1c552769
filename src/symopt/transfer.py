"""Transfer evaluation: found graphs against zoo optimizers on larger tasks; results tables.

``python -m symopt.transfer --config=experiments/transfer.py --graphs=a.json,b.json --out=DIR``

This module owns :func:`run_transfer`, a peer of :mod:`symopt.run`: it reads
the ``transfer`` section of the one config (:mod:`symopt.config`), builds its
tasks as a search does (:mod:`symopt.build`) and sweeps learning rates with
the search's own sweep (:mod:`symopt.measure`) and trainer, so
``evaluation.strategy`` holds here too. Every optimizer (the given graphs and
``transfer.comparisons``) is trained on each task with several seeds
at each learning-rate multiplier of its own learning rate, and the val-best
multiplier is chosen per task; where it is at an edge of the grid, the sweep
goes on past that edge (:func:`symopt.measure.sweep`), and a pick still at an
edge after :data:`symopt.measure.MAX_EXTENSIONS` rounds is marked in the
table (:data:`EDGE_MARK`) and the csv (``edge``). Runs are scored under ``evaluation.metric``
as the search scores them (:class:`symopt.fitness.Metric`), and normalised
by Adam's. The tasks run in the order given (cheapest first) as a
progressive elimination (:func:`symopt.searchers.successive_halving`): after
each task the top ``keep`` fraction by normalised val score go on; Adam, the
reference, is always measured. DIR receives ``results.md`` (optimizer x
task: the test value at the chosen lr, mean +- std over seeds, and the
aggregate over the tasks reached, normalised by Adam's on the same tasks),
``results.csv`` (one row per optimizer x task) and ``curves_<task>.png``
(training loss over steps, mean over seeds, at the chosen lr), and, per
multiplier tried, ``lr.csv`` (one row per optimizer x task x multiplier,
extensions included: :data:`LR_CSV_FIELDS`, ``chosen`` 1 at the val-best) and
``lr_<task>.png`` (the test value, mean over seeds with a diverged run at its
clipped value, against the multiplier on a log axis, one line per optimizer,
the val-best point starred and a rate where every seed diverged crossed): how
wide an optimizer's good range is next to AdamW's and Muon's.

``transfer.comparisons`` names (:func:`comparison`) the test tasks'
comparisons (:data:`symopt.comparisons.COMPARISONS`: ``adam``,
``adamw_cosine``, ``lion``, ``terms_ga``, ``muon``, ``schedule_free_adamw``,
each built for the task's steps at its authors' schedule; Muon and
schedule-free AdamW are optax's own, trained through the optax path, and
schedule-free AdamW is measured at its evaluation params) and the zoo's
optimizers (:mod:`symopt.zoo`), as found. A name in both (``adam``,
``lion``, ``terms_ga``, ``muon``) is the comparison: Lion and Muon with
their warmup and cosine decay, Muon optax's. :func:`symopt.config.validate`
allows both (an unknown name is a one-line error naming both lists).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

from symopt import cli  # imports nothing heavy

PROGRAM = "symopt.transfer"

if __name__ == "__main__":  # the command line: Ctrl-C is handled before JAX is imported
    cli.install_signal_handlers(PROGRAM)
    cli.quiet_logs(sys.argv)

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from symopt import (  # noqa: E402
    build,
    comparisons,
    evaluate,
    fitness,
    measure,
    searchers,
    tasks,
    zoo,
)
from symopt import config as config_lib  # noqa: E402
from symopt import graph as graph_lib  # noqa: E402
from symopt.comparisons import Optimizer  # noqa: E402
from symopt.evaluate import Progress, Trainer  # noqa: E402
from symopt.program import ProgramShape  # noqa: E402

REFERENCE = "adam"
MAX_CHUNK = 32  # graph x multiplier runs per compiled program
CSV_FIELDS = ("optimizer", "task", "metric", "lr_multiplier", "learning_rate", "val",
              "test_mean", "test_std", "seeds", "aggregate_vs_adam", "edge")
LR_CSV_FIELDS = ("optimizer", "task", "metric", "lr_multiplier", "learning_rate", "val_mean",
                 "test_mean", "test_std", "seeds", "diverged", "chosen")
"""``lr.csv``: one row per optimizer x task x multiplier tried (``diverged``:
seeds diverged there; ``chosen``: 1 at the val-best multiplier)."""
EDGE_MARK = "‡"
"""Marks a cell whose chosen rate is still at an edge of the rates tried."""
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """One optimizer on one task: every multiplier's val value and the chosen one's runs.

    Values are :func:`symopt.fitness.runs` under the config's metric: a
    clipped loss (``"loss"``, lower is better) or a fitness (``"accuracy"``).
    """

    val: np.ndarray  # [M] mean over seeds, per lr multiplier tried
    chosen: int  # index of the val-best multiplier
    learning_rate: float  # the chosen learning rate
    test: np.ndarray  # [S] per seed, at the chosen lr
    loss_curve: np.ndarray  # [points] training loss, mean over seeds, at the chosen lr
    multipliers: tuple[float, ...] = ()  # [M] the multipliers tried, ascending (extensions too)
    edge: bool = False  # the chosen multiplier is still the smallest or largest tried
    tests: np.ndarray = dataclasses.field(  # [M, S] per seed, at every multiplier tried
        default_factory=lambda: np.zeros((0, 0)))
    diverged: np.ndarray = dataclasses.field(  # [M] seeds diverged at every multiplier tried
        default_factory=lambda: np.zeros(0, int))
    learning_rates: tuple[float, ...] = ()  # [M] the rate at every multiplier tried

    @property
    def multiplier(self) -> float:
        """The chosen multiplier."""
        return self.multipliers[self.chosen]

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
    metric: fitness.Metric
    results: dict[tuple[str, str], TaskResult]  # (optimizer, task) -> result
    aggregate: dict[str, float]  # fitness.aggregate of the test values over the tasks reached
    halving: searchers.HalvingResult  # over the non-reference optimizers, by index
    files: tuple[str, ...]


def graph_names(paths: Sequence[str]) -> list[str]:
    """A unique name per graph file, from its path: the file's stem, with as
    many parent directories as it takes to tell the files apart and from the
    comparisons' and the zoo's names (``runs/a/best.json``, ``runs/b/best.json``
    -> ``a/best``, ``b/best``). Raises ValueError for a file listed twice."""
    parts = [pathlib.Path(os.path.abspath(p)).with_suffix("").parts for p in paths]
    seen: dict[tuple[str, ...], str] = {}
    for path, split in zip(paths, parts, strict=True):
        if split in seen:
            raise ValueError(f"--graphs: {path} is listed twice (as {seen[split]})")
        seen[split] = path
    depth = [1] * len(paths)
    taken = set(known_names())

    def name(i: int) -> str:
        return "/".join(parts[i][-depth[i]:])

    while True:
        names = [name(i) for i in range(len(paths))]
        clashing = [i for i, n in enumerate(names)
                    if names.count(n) > 1 or n in taken]
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


def known_names() -> list[str]:
    """What ``transfer.comparisons`` may name: the comparisons', then the zoo's
    names they do not already hold."""
    own = comparisons.COMPARISONS.names()
    return [*own, *(n for n in zoo.names() if n not in own)]


def comparison(name: str, steps: int) -> Optimizer:
    """The optimizer ``transfer.comparisons`` means by ``name`` on a task of
    ``steps`` steps: the comparison (:data:`symopt.comparisons.COMPARISONS`,
    at its authors' schedule for those steps) where there is one of that name,
    else the zoo's graph as found."""
    if name in comparisons.COMPARISONS:
        return comparisons.COMPARISONS[name](steps)
    config_lib.check_transfer_comparison(name)
    return zoo.get(name)


def build_tasks(config: ml_collections.ConfigDict) -> list[tasks.Task]:
    """The ``transfer`` section's tasks, built as a search builds its own."""
    t = config.transfer
    settings = build.TaskSettings(
        seeds=t.seeds, steps=t.steps, batch_size=t.batch_size, data_dir=config.tasks.data_dir,
        download=config.tasks.download, options=config.tasks.options.to_dict())
    return [build.build_task(n, settings, key="config.transfer.tasks")
            for n in config_lib.names(t.tasks)]


def _measure_task(task: tasks.Task, named: dict[str, Optimizer],
                  multipliers: tuple[float, ...], metric: fitness.Metric, shape: ProgramShape,
                  trainer: Trainer) -> dict[str, TaskResult]:
    """Every optimizer's :func:`symopt.measure.sweep` on ``task``, with its learning
    curve and its values at every multiplier tried."""
    s = measure.sweep(list(named.values()), task, multipliers, metric=metric, shape=shape,
                      trainer=trainer)
    out = {}
    for i, name in enumerate(named):
        chosen = int(s.chosen[i])
        runs = s.curves[i, chosen]
        with np.errstate(all="ignore"):  # a diverged seed's curve has non-finite steps
            curve = np.nanmean(np.where(np.isfinite(runs), runs, np.nan), axis=0)
        tried = sorted(np.flatnonzero(s.was_tried[i]), key=lambda j: s.multipliers[j])
        out[name] = TaskResult(
            s.val[i, tried], tried.index(chosen), float(s.learning_rates[i, chosen]),
            s.test[i, chosen], curve, tuple(s.multipliers[j] for j in tried), bool(s.edge[i]),
            tests=s.test[i, tried], diverged=s.diverged[i, tried].sum(axis=-1),
            learning_rates=tuple(float(s.learning_rates[i, j]) for j in tried))
    return out


def run_transfer(config: ml_collections.ConfigDict, graphs: dict[str, graph_lib.Graph],
                 out_dir: str | os.PathLike[str], *, log: Log = print) -> TransferResult:
    """Trains ``graphs`` and the comparisons on the config's tasks; writes the report.

    Args:
      config: a config (:func:`symopt.config.default_config`); its ``transfer``
        section says what to measure, ``evaluation.metric`` how to score it and
        ``evaluation.strategy`` how to train.
      graphs: the optimizers to evaluate, by name (e.g. :func:`load_graphs`).
      out_dir: where results.md, results.csv, lr.csv, curves_<task>.png and
        lr_<task>.png go.
      log: progress lines.

    Returns:
      A :class:`TransferResult`.
    """
    config = config_lib.validate(config)
    out_dir = os.fspath(out_dir)
    compared = [REFERENCE, *(n for n in config_lib.names(config.transfer.comparisons)
                             if n != REFERENCE)]
    clash = sorted(set(graphs) & set(compared))
    if clash:
        raise ValueError(f"graph names {clash} clash with the comparisons")
    task_list = build_tasks(config)
    for task in task_list:
        task.data()  # fails now, with the command to prepare it, if the data is missing
    # Each task's comparisons are built for its steps (their schedules depend on them).
    per_task = {t.name: {**{n: comparison(n, t.steps) for n in compared}, **graphs}
                for t in task_list}
    multipliers = tuple(float(m) for m in config.transfer.lr_multipliers)
    metric = fitness.get(config.evaluation.metric)
    shape = measure.shape_for([o for named in per_task.values() for o in named.values()
                               if isinstance(o, graph_lib.Graph)])
    rows = max(sum(isinstance(o, graph_lib.Graph) for o in named.values())
               for named in per_task.values()) * len(multipliers)
    log = Progress(log)  # every line timed: a task quiet for 30 s says what it trains
    trainer = build.trainer(config, log).with_chunk(min(MAX_CHUNK, rows))
    names = list(per_task[task_list[0].name])
    results: dict[tuple[str, str], TaskResult] = {}
    stages = [searchers.Stage(t.name, keep=float(config.transfer.keep)) for t in task_list]

    def measure_stage(ids: tuple[int, ...], stage: searchers.Stage) -> np.ndarray:
        index = stages.index(stage)
        task = task_list[index]
        entrants = {n: per_task[task.name][n] for n in [REFERENCE, *(names[i] for i in ids)]}
        start = time.perf_counter()
        log(f"task {index + 1}/{len(task_list)} {task.label}: {len(entrants)} optimizers x "
            f"{len(multipliers)} learning rates ({task.steps} steps, {task.seeds} seeds) ...")
        measured = _measure_task(task, entrants, multipliers, metric, shape, trainer)
        results.update({(n, task.name): r for n, r in measured.items()})
        scores = metric.aggregate(
            {task.name: np.array([measured[names[i]].val_best for i in ids])},
            {task.name: measured[REFERENCE].val_best})
        extended = [n for n, r in measured.items() if len(r.multipliers) > len(multipliers)]
        log(f"task {index + 1}/{len(task_list)} {task.label}: done in "
            f"{time.perf_counter() - start:.1f}s"
            + (f"; tuned past the grid's edge: {', '.join(extended)}" if extended else ""))
        return scores

    halving = searchers.successive_halving(range(1, len(names)), stages, measure_stage)
    aggregate = {}
    for name in names:
        reached = [t.name for t in task_list if (name, t.name) in results]
        aggregate[name] = float(metric.aggregate(
            {t: np.array([results[(name, t)].test.mean()]) for t in reached},
            {t: float(results[(REFERENCE, t)].test.mean()) for t in reached})[0])
    result = TransferResult(tuple(names), tuple(t.name for t in task_list), multipliers,
                            metric, results, aggregate, halving, ())
    files = _write(result, task_list, out_dir)
    log(f"{DONE}{', '.join(files)}")
    return dataclasses.replace(result, files=tuple(files))


# --------------------------------------------------------------------------
# The report.


def ranked(result: TransferResult) -> list[str]:
    """Optimizers by tasks reached, then aggregate (best first)."""
    def reached(name: str) -> int:
        return sum((name, t) in result.results for t in result.tasks)

    return sorted(result.optimizers, key=lambda n: (-reached(n), -result.aggregate[n]))


def _measured(result: TransferResult):
    """``(optimizer, task, TaskResult)`` for each pair measured, in
    :func:`ranked` order, then task order."""
    for name in ranked(result):
        for task in result.tasks:
            r = result.results.get((name, task))
            if r is not None:
                yield name, task, r


def csv_rows(result: TransferResult) -> list[dict[str, object]]:
    """One row per optimizer x task it was measured on, in :func:`ranked` order."""
    rows = []
    for name, task, r in _measured(result):
        mean, std = fitness.mean_std(r.test)
        rows.append(dict(
            optimizer=name, task=task, metric=result.metric.name,
            lr_multiplier=r.multiplier, learning_rate=r.learning_rate,
            val=r.val_best, test_mean=mean, test_std=std, seeds=len(r.test),
            aggregate_vs_adam=result.aggregate[name], edge=int(r.edge)))
    return rows


def lr_rows(result: TransferResult) -> list[dict[str, object]]:
    """One row per optimizer x task x multiplier tried (:data:`LR_CSV_FIELDS`),
    in :func:`ranked` order, the multipliers ascending."""
    rows = []
    for name, task, r in _measured(result):
        for j, m in enumerate(r.multipliers):
            mean, std = fitness.mean_std(r.tests[j])
            rows.append(dict(
                optimizer=name, task=task, metric=result.metric.name, lr_multiplier=m,
                learning_rate=r.learning_rates[j], val_mean=float(r.val[j]),
                test_mean=mean, test_std=std, seeds=len(r.tests[j]),
                diverged=int(r.diverged[j]), chosen=int(j == r.chosen)))
    return rows


def _write_csv(path: str, fields: Sequence[str], rows: Sequence[dict[str, object]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write(result: TransferResult, task_list: Sequence[tasks.Task], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    rows = csv_rows(result)
    csv_path = _write_csv(os.path.join(out_dir, "results.csv"), CSV_FIELDS, rows)
    lr_path = _write_csv(os.path.join(out_dir, "lr.csv"), LR_CSV_FIELDS, lr_rows(result))
    cells = {(r["optimizer"], r["task"]): f"{r['test_mean']:.4f} ± "
             f"{r['test_std']:.4f} (lr x{r['lr_multiplier']:g})"
             f"{' ' + EDGE_MARK if r['edge'] else ''}" for r in rows}
    value, aggregate = result.metric.value_text, result.metric.aggregate_text
    labels = {t.name: t.label for t in task_list}  # shown; the csv files keep the names
    lines = [
        "# symopt transfer evaluation", "",
        f"{value} at the learning rate chosen on the val split "
        f"(multipliers {', '.join(f'{m:g}' for m in result.multipliers)} of each optimizer's "
        f"own, extended past an edge of them where the val-best was there, at most "
        f"{measure.MAX_EXTENSIONS} steps), mean ± std over seeds; `-`: eliminated before that "
        f"task. Aggregate: {aggregate} (Adam, its rate chosen the same way = 1, higher is "
        f"better). Every multiplier tried: lr.csv and lr_<task>.png.", "",
        "| optimizer | " + " | ".join(labels.get(t, t) for t in result.tasks)
        + " | aggregate vs Adam |",
        "|---|" + "---|" * len(result.tasks) + "---|",
    ]
    for name in ranked(result):
        lines.append(f"| {name} | " + " | ".join(cells.get((name, t), "-") for t in result.tasks)
                     + f" | {result.aggregate[name]:.4f} |")
    at_edge = [f"{r['optimizer']} on {labels.get(r['task'], r['task'])} (x{r['lr_multiplier']:g})"
               for r in rows if r["edge"]]
    if at_edge:
        lines += ["", f"{EDGE_MARK} the chosen rate is still at an edge of the rates tried after "
                      f"{measure.MAX_EXTENSIONS} extensions, so a rate further out may do "
                      f"better: {', '.join(at_edge)}."]
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: F401, PLC0415 (the plots need the viz extra)
    except ImportError:
        return [md_path, csv_path, lr_path]  # tables only: pip install 'symopt-jax[viz]'
    return [md_path, csv_path, lr_path, *(_plot_curves(result, t, out_dir) for t in task_list),
            *(_plot_lr(result, t, out_dir) for t in task_list)]


BASELINE_LINE = "--"
FOUND_LINE = "-"


def line_styles(result: TransferResult) -> dict[str, tuple[str, str]]:
    """Each optimizer's (colour, line style) in the plots, the same in every
    task's plot: the given graphs solid, the comparisons dashed, and no two
    optimizers alike (colours from tab10, then tab20's lighter shades, then
    dotted lines)."""
    colors = [f"C{i}" for i in range(10)] + [
        "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
        "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
    out = {}
    compared = set(known_names())
    for i, name in enumerate(result.optimizers):
        style = BASELINE_LINE if name in compared else FOUND_LINE
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
    ax.set(xlabel="step", ylabel="training loss (mean over seeds)", title=task.label)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(out_dir, f"curves_{task.name}.png")
    fig.savefig(path, dpi=100)
    return path


CHOSEN_MARKER = "*"
"""Marks the val-best multiplier in the lr plots."""
DIVERGED_MARKER = "x"
"""Marks a multiplier where every seed diverged in the lr plots."""


def _plot_lr(result: TransferResult, task: tasks.Task, out_dir: str) -> str:
    """``lr_<task>.png``: the test value (mean over seeds) against the multiplier."""
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib only for the plots)

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    positive = True
    styles = line_styles(result)
    for name in ranked(result):
        r = result.results.get((name, task.name))
        if r is None:
            continue
        color, linestyle = styles[name]
        x = np.asarray(r.multipliers)
        y = np.asarray(r.tests, np.float64).mean(axis=-1)
        ax.plot(x, y, label=f"{name} (x1 = lr {r.learning_rate / r.multiplier:.3g})", lw=1.2,
                color=color, linestyle=linestyle, marker=".")
        ax.plot(x[r.chosen], y[r.chosen], marker=CHOSEN_MARKER, markersize=12, color=color,
                markeredgecolor="black", linestyle="none")
        lost = np.asarray(r.diverged) == len(r.test)
        if lost.any():
            ax.plot(x[lost], y[lost], marker=DIVERGED_MARKER, markersize=8, color=color,
                    linestyle="none")
        positive &= bool(np.all(y[np.isfinite(y)] > 0))
    ax.set_xscale("log")
    if positive and result.metric.lower_is_better:
        ax.set_yscale("log")
    value = "test loss, clipped" if result.metric.lower_is_better else "test fitness"
    ax.set(xlabel="learning-rate multiplier (of each optimizer's own rate)",
           ylabel=f"{value} (mean over seeds)",
           title=f"{task.label} (marker {CHOSEN_MARKER}: the val-best rate; "
                 f"{DIVERGED_MARKER}: every seed diverged)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(out_dir, f"lr_{task.name}.png")
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------
# The command line.


USAGE = ("--config=CONFIG_FILE --graphs=A.json,B.json --out=DIR [--config.KEY=VALUE ...]\n\n"
         "Trains the given graphs and the optimizers of transfer.comparisons on "
         "transfer.tasks, sweeping each one's learning rate, and writes DIR/results.md and "
         "DIR/results.csv (test value at the val-best rate, against Adam), DIR/lr.csv and a "
         "plot per task. Exit codes as symopt.main's: 0 done, 1 missing data or "
         "dependencies, 2 a bad flag, config file, key or value, 130 Ctrl-C, 143 SIGTERM.")
"""What ``--help`` shows first."""
EXAMPLE = ("python -m symopt.transfer --config=experiments/transfer.py "
           "--graphs=runs/digits/best.json --out=runs/transfer")
"""What ``--help`` shows last."""
DONE = "done: "
"""How :func:`run_transfer`'s last line begins, before the files it wrote."""


def _cli() -> None:
    from absl import app, flags, logging  # noqa: PLC0415 (flags exist only for the CLI)
    from ml_collections import config_flags  # noqa: PLC0415

    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Transfer config file (experiments/transfer.py); override keys with "
        "--config.<key>=<value>.", lock_config=True)
    graphs_flag = flags.DEFINE_string("graphs", "", "Comma-separated graph JSON files (a "
                                      "search's best.json) to train next to the comparisons.")
    out_flag = flags.DEFINE_string("out", None, "Directory for results.md, results.csv, lr.csv, "
                                   "curves_<task>.png and lr_<task>.png.")

    def parse(argv: list[str]) -> list[str]:
        return cli.parse_flags(PROGRAM, argv, config_flag, config_lib.validate, usage=USAGE,
                               example=EXAMPLE)

    def main(argv: list[str]) -> None:
        config = config_flag.value
        if len(argv) > 1:
            cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}", cli.USAGE_ERROR)
        if config is None:
            cli.fail(PROGRAM, "--config is required, e.g. --config=experiments/transfer.py",
                     cli.USAGE_ERROR)
        if not out_flag.value:
            cli.fail(PROGRAM, "--out is required, e.g. --out=runs/transfer", cli.USAGE_ERROR)
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        try:
            graphs = load_graphs(config_lib.names(graphs_flag.value))
        except (ValueError, OSError) as e:
            cli.fail(PROGRAM, str(e), cli.USAGE_ERROR)
        def log(line: str) -> None:
            if line.startswith(DONE):  # the files are written: a signal changes nothing
                cli.finished()
            print(line, flush=True)

        with cli.guarded(PROGRAM, on_interrupt=f"nothing was written to {out_flag.value!r}"):
            run_transfer(config, graphs, out_flag.value, log=log)
        cli.finished()

    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    _cli()
