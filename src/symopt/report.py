"""``summary.md``: what a finished search reports.

This module is presentation only: the fitness a run used, the winner, the top
candidates, the validation stages, the test tables and the hall of fame (the
Pareto front of fitness against complexity). It reads only the archive and
what the run passes in, so a report can be rewritten from any workdir's
archive; what a record means (its multiplier, search fitness, equation) is
:mod:`symopt.records`'.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import ml_collections

from symopt import config as config_lib
from symopt import fitness, heldout, records, simplicity, symbolic
from symopt import graph as graph_lib
from symopt.archive import Archive, CandidateRecord
from symopt.workdir import HALL_OF_FAME, REFERENCE_RATES

FILENAME = "summary.md"


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
                        learning_rates: Mapping[str, float]) -> str:
    """How the run scored candidates, and Adam's value (and tuned rate) per task."""
    ev = config.evaluation
    lrs = learning_rates
    adam = ", ".join(f"{k} {v:.4g} (lr {lrs.get(k, ev.reference_learning_rate):g})"
                     for k, v in reference.items())
    what = fitness.get(ev.metric).search_text.format(split=ev.split)
    grid = fitness.reference_grid(ev)
    adam_text = (f"Adam is tuned per task over learning rates {', '.join(f'{lr:g}' for lr in grid)}"
                 f": 1.0 = tuned Adam" if len(grid) > 1 else f"Adam at lr {grid[0]:g}: 1.0 = Adam")
    rates = ""
    if len(ev.lr_multipliers) > 1:
        multipliers = ", ".join(f"{m:g}" for m in ev.lr_multipliers)
        rates = (f" Each candidate trains at learning-rate multipliers {multipliers} "
                 f"({ev.lr_aggregate} counts); the best is written back into it.")
    return f"Fitness is {what}; {adam_text}.{rates}\n\nAdam reference ({ev.metric}): {adam}"


def write_summary(workdir: str, config: ml_collections.ConfigDict, archive: Archive,
                  reference: Mapping[str, float], best: CandidateRecord,
                  best_graph: graph_lib.Graph, entrants: Collection[int],
                  test_results: Sequence[heldout.Result]) -> str:
    """Writes ``<workdir>/summary.md``: the fitness, the winner, the top
    candidates, the validation stages of ``entrants`` (the candidates this
    run's elimination ranked), the test tables and the hall of fame (also
    kept in the archive, meta ``hall_of_fame``). Returns its path."""
    roles = config_lib.task_roles(config)
    task_names = roles["search"]
    lines = [
        f"# symopt search: {config.search.name} over {config.space.name}",
        "",
        f"Search tasks: {', '.join(roles['search'])}; validation tasks: "
        f"{', '.join(roles['validation']) or '-'}; test tasks: {', '.join(roles['test']) or '-'}.",
        "",
        fitness_description(config, reference,
                            archive.get_meta(REFERENCE_RATES, {}) or {}),
        "",
        "Candidates: " + ", ".join(
            f"{k} {v}" for k, v in sorted(archive.count_by_status().items())),
        "",
        f"Best (best.json): #{best.id}, search fitness {records.fitness_text(best)}, learning rate "
        f"{best_graph.hparams.learning_rate:.4g}",
        "",
        f"    {symbolic.to_text(best_graph)}",
        "",
        "## Top candidates (search tasks, normalised per task)",
        "",
        "| rank | id | gen | fitness | lr x | " + " | ".join(task_names) + " | equation |",
        "|---|---|---|---|---|" + "---|" * len(task_names) + "---|",
    ]
    for rank, r in enumerate(archive.top(config.output.top), 1):
        cells = [normalized(r.metrics.get(t)) for t in task_names]
        lines.append(f"| {rank} | {r.id} | {r.generation} | {records.fitness_text(r)} | "
                     f"{records.multiplier(r):g} | " + " | ".join(cells)
                     + f" | `{records.equation(r)}` |")
    # This elimination's entrants: a resumed run with more generations may have
    # archived stage results of candidates that no longer enter.
    stage_rows = [r for r in archive.stage_results() if r.candidate_id in entrants]
    if stage_rows:
        lines += ["", "## Validation (progressive elimination; chooses the winner)", "",
                  "| stage | tasks | id | fitness (Adam = 1) | lr x |", "|---|---|---|---|---|"]
        for r in sorted(stage_rows, key=lambda r: (r.stage, -records.search_fitness(r))):
            lines.append(f"| {r.stage + 1} | {r.task} | {r.candidate_id} | "
                         f"{records.fitness_text(r)} | {records.multiplier(r):g} |")
    if test_results:
        found = list(dict.fromkeys(r.optimizer for r in test_results))
        named = config_lib.names(config.test.comparisons)
        comparisons = [b for b in named if b in found]
        missing = [b for b in named if b not in found]
        grid = test_results[0].multipliers  # the stored results' own: a resumed run's config
        multipliers = (f"multipliers {', '.join(f'{m:g}' for m in grid)}" if grid  # may differ
                       else "multipliers an earlier version did not record")
        lines += [
            "", "## Test tasks (held out: they ran after the winner was chosen)", "",
            f"Final test loss (clipped), mean ± std over {config.test.seeds} seeds, as found / "
            f"lr-tuned ({multipliers} of the optimizer's own rate, chosen on each "
            "task's validation split). Lower is better. `best` is best.json.", "",
            *heldout.table(test_results, found), "",
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
    path = os.path.join(workdir, FILENAME)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def normalized(metrics: dict[str, Any] | None) -> str:
    """A task's normalised value in a record's metrics, or ``-``."""
    value = (metrics or {}).get("normalized")
    return "-" if value is None else f"{value:.4f}"
