"""Search benchmarks (issue 4's goals), printed as one JSON object.

    python experiments/benchmark_search.py --part=speed      # the 50 x 50 search
    python experiments/benchmark_search.py --part=quality    # 3 searches, held-out tasks

``speed``: a GA of ``--generations`` x ``--population`` (REFERENCES.md A's scale:
50 x 50 = 2,500 candidates) over nos graphs on the digits MLP, 2 seeds,
``--steps`` steps each, timed end to end (compile, Adam baseline, integrity
checks, archive writes included). The goal is <= 300 s on 2 CPU cores. The
population is split over CPU devices as ``python -m symopt.main`` splits it
(``--cpu_devices``, default one per core).

``quality``: ``--search_seeds`` searches of ``--quality_generations`` x
``--population`` on the digits MLP, each followed by the progressive
elimination of its best 8 on the digits ConvNet (the protocol of
``experiments/digits.py``); the winner of each is then trained on held-out
offline tasks that neither step saw (3 seeds, test split), next to Adam with
its learning rate tuned per task on the validation split over a grid.
Reported per search seed: the aggregate fitness of the found optimizer
divided by tuned Adam's (1.0 = as good as tuned Adam), both as found (its own
learning rate) and with its learning rate tuned the same way (its rate times
a grid spanning the same 2.5 decades).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

# This script's folder holds experiments/mnist1d.py, a config that would shadow
# the mnist1d package the held-out tasks import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402

from symopt import config as config_lib  # noqa: E402
from symopt import evaluate, run, tasks  # noqa: E402
from symopt import main as cli  # noqa: E402  (defines --cpu_devices, as the CLI has it)

_PART = flags.DEFINE_enum("part", "speed", ["speed", "quality", "both"], "what to measure")
_GENERATIONS = flags.DEFINE_integer("generations", 50, "speed: generations")
_POPULATION = flags.DEFINE_integer("population", 50, "population size")
_STEPS = flags.DEFINE_integer("steps", 500, "training steps per candidate while searching")
_SEED = flags.DEFINE_integer("seed", 0, "speed: the search's seed")
_SEARCH_SEEDS = flags.DEFINE_integer("search_seeds", 3, "quality: independent searches")
_QUALITY_GENERATIONS = flags.DEFINE_integer("quality_generations", 20, "quality: generations")
_HELD_OUT = flags.DEFINE_string(
    "held_out", "mnist1d_mlp,mnist1d_cnn,logistic",
    "quality: offline tasks the searches never saw")
_ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
_FOUND_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # multipliers of the found rate; 1.0 = as found


def search_config(generations: int, seed: int, elimination: str = ""):
    config = config_lib.default_config()
    config.elimination.tasks = elimination
    config.elimination.top_k = 8
    config.search.generations = generations
    config.search.population_size = _POPULATION.value
    config.search.seed = seed
    config.space.options.max_nodes = 6
    config.tasks.search = "digits_mlp"
    config.tasks.steps = _STEPS.value
    config.tasks.seeds = 2
    return config


def measure_speed() -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        result = run.run(search_config(_GENERATIONS.value, _SEED.value), workdir,
                         log=lambda _: None)
    return {
        "seed": _SEED.value,
        "generations": _GENERATIONS.value,
        "population": _POPULATION.value,
        "steps": _STEPS.value,
        "seeds_per_candidate": 2,
        "candidates": sum(result.counts.values()),
        "by_status": result.counts,
        "seconds": round(result.seconds, 1),
        "trained_per_s": round(result.evaluated_now / result.seconds, 2),
        "best_fitness_vs_adam_lr1e-3": round(result.best.fitness, 4),
        "goal_seconds": 300,
    }


def tuned_adam(task: tasks.Task) -> tuple[float, float]:
    """(test fitness, learning rate) of Adam with its rate picked on the val split."""
    metrics = evaluate.evaluate_baseline(optax.adam, (jnp.asarray(_ADAM_GRID),), task)
    best = int(np.argmax(evaluate.fitness(metrics, split="val")))
    return float(evaluate.fitness(metrics, split="test")[best]), _ADAM_GRID[best]


def found_on(graph, task: tasks.Task, shape) -> tuple[float, float]:
    """(test fitness as found, test fitness with the rate picked on val) on ``task``."""
    lr = graph.hparams.learning_rate
    graphs = [graph.with_hparams(learning_rate=lr * m) for m in _FOUND_GRID]
    metrics = evaluate.evaluate_graphs(graphs, task, shape=shape, chunk_size=len(graphs))
    test = evaluate.fitness(metrics, split="test")
    best = int(np.argmax(evaluate.fitness(metrics, split="val")))
    return float(test[_FOUND_GRID.index(1.0)]), float(test[best])


def measure_quality() -> dict:
    held_out = [tasks.get(n, seeds=3) for n in config_lib.names(_HELD_OUT.value)]
    adam = {t.name: tuned_adam(t) for t in held_out}
    adam_mean = np.mean([adam[t.name][0] for t in held_out])
    per_seed = []
    for seed in range(_SEARCH_SEEDS.value):
        config = search_config(_QUALITY_GENERATIONS.value, seed, elimination="digits_cnn")
        with tempfile.TemporaryDirectory() as workdir:
            result = run.run(config, workdir, log=lambda _: None)
        shape = run.build_space(config).program_shape()
        scores = {t.name: found_on(result.best_graph, t, shape) for t in held_out}
        as_found = np.mean([v[0] for v in scores.values()]) / adam_mean
        tuned = np.mean([v[1] for v in scores.values()]) / adam_mean
        per_seed.append({
            "seed": seed,
            "as_found_vs_tuned_adam": round(float(as_found), 4),
            "lr_tuned_vs_tuned_adam": round(float(tuned), 4),
            "per_task_test_fitness": {k: [round(x, 4) for x in v] for k, v in scores.items()},
            "search_seconds": round(result.seconds, 1),
            "equation": str(result.best_graph),
        })

    def stats(key):
        values = [s[key] for s in per_seed]
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

    return {
        "search": f"ga {_QUALITY_GENERATIONS.value} x {_POPULATION.value} on digits_mlp, "
                  f"{_STEPS.value} steps, 2 seeds; elimination of the best 8 on digits_cnn",
        "held_out_tasks": [t.name for t in held_out],
        "tuned_adam": {k: {"test_fitness": round(v[0], 4), "learning_rate": v[1]}
                       for k, v in adam.items()},
        "per_search_seed": per_seed,
        "as_found_vs_tuned_adam": stats("as_found_vs_tuned_adam"),
        "lr_tuned_vs_tuned_adam": stats("lr_tuned_vs_tuned_adam"),
    }


def main(argv):
    del argv
    devices = cli.configure_cpu_devices(flags.FLAGS.cpu_devices)  # as the CLI does
    start = time.perf_counter()
    out = {"cpu_devices": devices}
    if _PART.value in ("speed", "both"):
        out["speed"] = measure_speed()
    if _PART.value in ("quality", "both"):
        out["quality"] = measure_quality()
    out["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
