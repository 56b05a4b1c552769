"""``summary.md``: what a finished search reports.

This module is presentation only: the fitness a run used, the winner, the top
candidates, the validation stages, the test tables and the hall of fame (the
Pareto front of fitness against complexity). It reads only the archive and
what the run passes in, so a report can be rewritten from any workdir's
archive; what a record means (its multiplier, search fitness, equation) is
:mod:`symopt.records`'.

It flags what would mislead a reader: a fitness below 1.0 (below the Adam
reference, tuned or not as :func:`symopt.config.fitness_unit` says) for the
winner and in the validation table, with one sentence when every finalist is
below; a tuned rate still at an edge of the rates tried (the reference's and
the test tables'); and candidates whose simplified equations are identical
share one row (:func:`identity`).

Tasks are shown by their labels (:attr:`symopt.tasks.Task.label`: the title a
``module:function`` task's factory gave it), which the run passes in; the
archive keys them by name. Generations are numbered from 1, as the progress
lines and :mod:`symopt.viz` number them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import ml_collections

from symopt import config as config_lib
from symopt import fitness, heldout, measure, novelty, records, simplicity
from symopt import graph as graph_lib
from symopt.archive import Archive, CandidateRecord
from symopt.viz import generation_number
from symopt.workdir import HALL_OF_FAME, REFERENCE, REFERENCE_RATES, tried_key

FILENAME = "summary.md"
BELOW = "below Adam"
"""Marks a fitness below 1.0: the candidate did worse than the Adam reference
(:func:`reference_name`)."""


def identity(graph: graph_lib.Graph) -> str:
    """What makes two candidates the same row: :func:`symopt.simplicity.identity_key`
    (the fingerprint of the pruned graph, learning rate included)."""
    return simplicity.identity_key(graph)


def reference_name(config: ml_collections.ConfigDict) -> str:
    """What 1.0 is under ``config``, as :func:`symopt.config.fitness_unit`
    says it (``tuned Adam (lr 0.0003-0.003)``, ``Adam at lr 0.001, untuned``)."""
    return config_lib.fitness_unit(config).removesuffix(" = 1")


def below_adam(fitness_value: float | None) -> bool:
    """Whether a (normalised) fitness is below the Adam reference's 1.0."""
    return fitness_value is not None and fitness_value < 1.0


def _flagged(record: Any) -> str:
    text = records.fitness_text(record)
    return f"{text} ({BELOW})" if below_adam(record.fitness) else text


def hall_of_fame(archive: Archive) -> list[dict[str, Any]]:
    """The Pareto front of search fitness against complexity over the evaluated
    candidates, simplest first, with simplified equations."""
    records = archive.records("evaluated")
    graphs = [graph_lib.from_dict(r.graph) for r in records]
    complexity = [simplicity.complexity(g).total for g in graphs]
    front = simplicity.pareto_front([r.fitness for r in records], complexity)
    return [{"id": records[i].id, "fitness": records[i].fitness, "complexity": complexity[i],
             "equation": simplicity.simplified_equation(graphs[i])} for i in front]


def fitness_description(config: ml_collections.ConfigDict, reference: Mapping[str, float],
                        learning_rates: Mapping[str, float],
                        tried: Mapping[str, Mapping[str, Any]] | None = None, *,
                        task_labels: Mapping[str, str] | None = None) -> str:
    """How the run scored candidates, and Adam's value (and tuned rate) per task;
    ``tried`` (task -> ``learning_rates``, ``edge``) says where Adam's grid was
    extended past an edge, and where its best is still at one. Tasks are
    keyed by name and shown by ``task_labels`` (default: their names)."""
    ev = config.evaluation
    lrs, label = learning_rates, _labeller(task_labels)
    adam = ", ".join(f"{label(k)} {v:.4g} (lr {lrs.get(k, ev.reference_learning_rate):g})"
                     for k, v in reference.items())
    what = fitness.get(ev.metric).search_text.format(split=ev.split)
    grid = fitness.reference_grid(ev)
    unit = config_lib.fitness_unit(config)
    adam_text = (f"Adam is tuned per task over learning rates {', '.join(f'{lr:g}' for lr in grid)}"
                 f": {unit}" if len(set(grid)) > 1 else unit)
    rates = ""
    if len(ev.lr_multipliers) > 1:
        multipliers = ", ".join(f"{m:g}" for m in ev.lr_multipliers)
        rates = (f" Each candidate trains at learning-rate multipliers {multipliers} "
                 f"({ev.lr_aggregate} counts); the best is written back into it.")
    text = f"Fitness is {what}; {adam_text}.{rates}\n\nAdam reference ({ev.metric}): {adam}"
    tried = {t: v for t, v in (tried or {}).items() if t in reference}
    extended = [f"{label(t)} (lr {', '.join(f'{lr:g}' for lr in v['learning_rates'])})"
                for t, v in tried.items() if len(v.get("learning_rates", ())) > len(grid)]
    if extended:
        text += (f"\n\nAdam's best rate was at an edge of its grid on {len(extended)} task(s), so "
                 f"its grid went on past it: {'; '.join(extended)}.")
    edge = [label(t) for t, v in tried.items() if v.get("edge")]
    if edge:
        text += (f"\n\n**Adam's best rate is still at an edge of the rates tried on "
                 f"{', '.join(edge)}**: there 1.0 is not a tuned Adam, and fitness flatters the "
                 "candidates.")
    return text


def write_summary(workdir: str, config: ml_collections.ConfigDict, archive: Archive,
                  reference: Mapping[str, float], best: CandidateRecord,
                  best_graph: graph_lib.Graph, entrants: Collection[int],
                  test_results: Sequence[heldout.Result], *,
                  task_labels: Mapping[str, str] | None = None, path: str | None = None) -> str:
    """Writes ``<workdir>/summary.md`` (or ``path``: :func:`symopt.workdir.write_output`
    passes a temporary file it then renames): the fitness, the winner and its
    novelty (:func:`symopt.novelty.judge`: the nearest zoo optimizer by
    behaviour), the top candidates, the validation stages of ``entrants`` (the
    candidates this run's elimination ranked), the test tables and the hall of
    fame (also kept in the archive, meta ``hall_of_fame``). ``task_labels``
    maps each task's name to what to show (:attr:`symopt.tasks.Task.label`;
    default: the names). Returns its path."""
    roles = config_lib.task_roles(config)
    task_names = roles["search"]
    label = _labeller(task_labels)

    def shown(names: Sequence[str]) -> str:
        return ", ".join(map(label, names)) or "-"

    lines = [
        f"# symopt search: {config.search.name} over {config.space.name}",
        "",
        f"Search tasks: {shown(roles['search'])}; validation tasks: "
        f"{shown(roles['validation'])}; test tasks: {shown(roles['test'])}.",
        "",
        fitness_description(config, reference,
                            archive.get_meta(REFERENCE_RATES, {}) or {},
                            archive.get_meta(tried_key(REFERENCE), {}) or {},
                            task_labels=task_labels),
        "",
        "Candidates: " + ", ".join(
            f"{k} {v}" for k, v in sorted(archive.count_by_status().items())),
        "",
        f"Best (best.json): #{best.id}, search fitness {_flagged(best)}, learning rate "
        f"{best_graph.hparams.learning_rate:.4g}",
        "",
        f"    {simplicity.simplified_equation(best_graph)}",
    ]
    if below_adam(best.fitness):
        lines += ["", "**The winner's search fitness is below 1.0: on the search tasks it did "
                      f"worse than {reference_name(config)}.**"]
    lines += ["", *novelty.summary_lines(novelty.judge(best_graph))]
    top = archive.top(config.output.top)
    groups = _grouped(top, lambda r: identity(records.graph(r)))
    lines += [
        "",
        "## Top candidates (search tasks, normalised per task)",
        "",
        "| rank | id | gen | fitness | lr x | " + " | ".join(map(label, task_names))
        + " | equation |",
        "|---|---|---|---|---|" + "---|" * len(task_names) + "---|",
    ]
    for rank, group in enumerate(groups, 1):
        r = group[0]
        cells = [normalized(r.metrics.get(t)) for t in task_names]
        lines.append(f"| {rank} | {', '.join(str(g.id) for g in group)} | "
                     f"{generation_number(r.generation)} | "
                     f"{_flagged(r)} | {records.multiplier(r):g} | " + " | ".join(cells)
                     + f" | `{records.equation(r)}` |")
    if len(groups) < len(top):
        lines += ["", f"The top {len(top)} candidates hold {len(groups)} distinct simplified "
                      "equations; a row lists the ids of identical ones (its numbers are the "
                      "first's)."]
    lines += _validation(config, archive, entrants, label)
    if test_results:
        found = list(dict.fromkeys(r.optimizer for r in test_results))
        named = config_lib.names(config.test.comparisons)
        comparisons = [b for b in named if b in found]
        missing = [b for b in named if b not in found]
        rows, labels = _merged_found(archive, best_graph, found, named)
        # The stored results' own grid: a resumed run's config may name another.
        grid = _base_grid(test_results, config.test.lr_multipliers)
        multipliers = (f"multipliers {', '.join(f'{m:g}' for m in grid)}" if grid
                       else "multipliers an earlier version did not record")
        lines += [
            "", "## Test tasks (held out: they ran after the winner was chosen)", "",
            f"Final test loss (clipped), mean ± std over {config.test.seeds} seeds, as found / "
            f"lr-tuned ({multipliers} of the optimizer's own rate, chosen on each "
            "task's validation split, and extended past the grid where the best was at its "
            f"edge, at most {measure.MAX_EXTENSIONS} steps). Lower is better. `best` is "
            "best.json.", "",
            *heldout.table(test_results, rows, labels, task_labels=task_labels),
        ]
        edge = heldout.edge_line(test_results, rows, task_labels=task_labels)
        lines += (["", edge] if edge else []) + [
            "",
            "The winner's ratio to each lr-tuned comparison: the geometric mean over test tasks "
            "of the comparison's loss over the winner's (above 1: the winner's loss is lower).", "",
            *heldout.ratio_lines(test_results, "best", comparisons),
        ]
        if missing:
            lines += ["", f"Not in the stored test results (they ran before "
                          f"`test.comparisons` named them): {', '.join(missing)}."]
    fame = hall_of_fame(archive)
    archive.put_meta(HALL_OF_FAME, fame)
    if fame:
        lines += ["", "## Hall of fame (search fitness against complexity; the Pareto front)", "",
                  "| id | fitness | complexity | simplified equation |", "|---|---|---|---|"]
        lines += [f"| {h['id']} | {h['fitness']:.4f} | {h['complexity']} | `{h['equation']}` |"
                  for h in fame]
    path = path or os.path.join(workdir, FILENAME)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _grouped(items: Sequence[Any], key: Callable[[Any], str]) -> list[list[Any]]:
    """``items`` grouped by ``key``, in the order of each group's first."""
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def _labeller(task_labels: Mapping[str, str] | None) -> Callable[[str], str]:
    """A task's label by its name (its name where ``task_labels`` has none)."""
    labels = task_labels or {}
    return lambda name: labels.get(name, name)


def _validation(config: ml_collections.ConfigDict, archive: Archive, entrants: Collection[int],
                label: Callable[[str], str]) -> list[str]:
    """The validation table (a stage's tasks, archived as ``a+b`` by name, shown by
    ``label``), each fitness below 1.0 flagged, and a line on how many
    finalists (by their last stage) are below the Adam reference."""
    # This elimination's entrants: a resumed run with more generations may have
    # archived stage results of candidates that no longer enter.
    stage_rows = [r for r in archive.stage_results() if r.candidate_id in entrants]
    if not stage_rows:
        return []
    lines = ["", "## Validation (progressive elimination; chooses the winner)", "",
             f"| stage | tasks | id | fitness ({config_lib.fitness_unit(config)}) | lr x |",
             "|---|---|---|---|---|"]
    for r in sorted(stage_rows, key=lambda r: (r.stage, -records.search_fitness(r))):
        tasks = "+".join(map(label, r.task.split("+")))
        lines.append(f"| {r.stage + 1} | {tasks} | {r.candidate_id} | "
                     f"{_flagged(r)} | {records.multiplier(r):g} |")
    last = {}
    for r in sorted(stage_rows, key=lambda r: r.stage):
        last[r.candidate_id] = r  # each finalist's furthest stage
    below = sorted(i for i, r in last.items() if below_adam(r.fitness))
    if below and len(below) == len(last):
        lines += ["", f"**All {len(last)} finalists scored below {reference_name(config)} on "
                      "validation (fitness < 1.0 at the last stage each reached): none of them "
                      "beat it off the search tasks, the winner included.**"]
    elif below:
        lines += ["", f"{len(below)} of {len(last)} finalists scored below "
                      f"{reference_name(config)} on "
                      f"validation (fitness < 1.0 at the last stage each reached): "
                      f"{', '.join(f'#{i}' for i in below)}."]
    return lines


def _merged_found(archive: Archive, best_graph: graph_lib.Graph, found: Sequence[str],
                  named: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The test table's rows: a found optimizer whose simplified equation is
    the same as an earlier row's shares its row (``best = #12``); the
    comparisons keep theirs."""
    keys = {}
    for name in found:
        if name == "best":
            keys[name] = identity(best_graph)
        elif name.startswith("#") and name[1:].isdigit() and name not in named:
            record = archive.get(int(name[1:]))
            if record is not None:
                keys[name] = identity(records.graph(record))
    rows, labels, first = [], {}, {}
    for name in found:
        key = keys.get(name)
        if key is not None and key in first:
            labels[first[key]] = f"{labels.get(first[key], first[key])} = {name}"
            continue
        if key is not None:
            first[key] = name
        rows.append(name)
    return rows, labels


def _base_grid(results: Sequence[heldout.Result],
               configured: Sequence[float]) -> tuple[float, ...]:
    """The grid the stored results were tuned over before extensions: the
    ``configured`` one where every result holds it (a resumed run's config may
    name another), else the multipliers every result holds; () where an
    earlier version recorded none."""
    grids = [set(r.multipliers) for r in results]
    if not grids or not all(grids):
        return ()
    configured = {float(m) for m in configured}
    if all(configured <= g for g in grids):
        return tuple(sorted(configured))
    return tuple(sorted(set.intersection(*grids)))


def normalized(metrics: dict[str, Any] | None) -> str:
    """A task's normalised value in a record's metrics, or ``-``."""
    value = (metrics or {}).get("normalized")
    return "-" if value is None else f"{value:.4f}"
