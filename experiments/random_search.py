"""A first real search: random graphs, checked, deduplicated, trained at once.

Run: ``python experiments/random_search.py`` (``--candidates=256 --task=digits_cnn``
...). Draws graphs from the ``nos`` space, rejects degenerate ones with
``symopt.check``, drops functional duplicates by fingerprint, trains the rest
as one population on an offline task (with the zoo's Adam as the baseline in
the same program) and prints the best equations with their fitness relative
to Adam. The full searchers (GA, particle GA, regularized evolution) and
``python -m symopt.main`` are the next milestone (issue 4).
"""

from __future__ import annotations

import collections
import time

import numpy as np
from absl import app, flags

import symopt
from symopt import evaluate, population, tasks
from symopt.spaces import nos

flags.DEFINE_integer("candidates", 128, "random graphs to draw.")
flags.DEFINE_string("task", "digits_mlp", f"offline task: {', '.join(tasks.OFFLINE_TASKS)}")
flags.DEFINE_integer("seed", 0, "sampling seed.")
flags.DEFINE_integer("top", 5, "candidates to print.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    start = time.perf_counter()
    rng = np.random.default_rng(FLAGS.seed)
    shape = population.ProgramShape()
    drawn = [nos.sample(rng, nos.NosSpace(max_nodes=6)) for _ in range(FLAGS.candidates)]
    reasons, seen, kept = collections.Counter(), set(), []
    for graph in drawn:
        report = symopt.check(graph)
        reason = report.reason
        if report.ok and report.fingerprint in seen:
            reason = "duplicate"
        reasons[reason] += 1
        if reason == "ok":
            seen.add(report.fingerprint)
            kept.append(graph)
    print(f"drew {len(drawn)} graphs: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    task = tasks.get(FLAGS.task)
    graphs = [symopt.zoo.adam()] + kept
    print(f"training {len(graphs)} candidates x {task.seeds} seeds x {task.steps} steps "
          f"on {task.name} in one program ...", flush=True)
    metrics = evaluate.evaluate(population.encode(graphs, shape), task, shape=shape)
    fit = evaluate.fitness(metrics)
    adam = float(fit[0])
    order = np.argsort(-fit[1:])[: FLAGS.top] + 1
    print(f"adam fitness {adam:.4f}; diverged runs {int(metrics.diverged[1:].sum())}")
    for rank, i in enumerate(order, 1):
        print(f"{rank}. fitness {fit[i]:.4f} ({fit[i] / adam:.3f} x adam), "
              f"val acc {np.nanmean(metrics.val_accuracy[i]):.3f}: {symopt.to_text(graphs[i])}")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
