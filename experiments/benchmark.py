"""Speed of the population engine, measured side by side in one run.

Run: ``python experiments/benchmark.py`` (``--population=64 --quick`` for a
smaller check). Every candidate trains ``--seeds`` runs (default 1; the
search configs train 2, and the loop strategy steps a candidate's runs
together, sharing its per-candidate cost). On CPU the population (the engine's
and vmapped Adam's alike) is split over CPU devices as ``python -m
symopt.main`` splits it (``--cpu_devices``, default one per core; ``1`` for a
single device); the per-candidate loop trains each candidate on one device.
Prints one JSON object:

* ``overhead_mlp``, ``overhead_cnn``: time to train a population of random
  graphs (those that pass ``symopt.check``) / time to train the same number of
  runs with native ``optax.adam``, vmapped the same way (digits MLP and
  digits small CNN; compile excluded, best of ``--repeats`` interleaved calls).
* ``speedup_vs_per_candidate_jit``: a loop that jit-compiles and trains each
  candidate's ``to_optax`` separately (compile included, as a search would
  pay it) / the population engine (compile included: the median of
  ``--cold_repeats`` runs from empty caches), on the digits MLP.
  Both run the same training loop to the same metrics (training, divergence
  guard, validation and test metrics: what a search needs of a candidate);
  the loop is timed on ``--per_candidate`` candidates and scaled to the
  population. The data is loaded before either is timed.
* ``candidate_steps_per_s`` for P in 1, 16, 64, 256 and their compile seconds.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import symopt
from symopt import evaluate, population, tasks
from symopt import main as cli  # defines --cpu_devices, as the CLI has it
from symopt.spaces import nos
from symopt.program import ProgramShape, encode

FLAGS = flags.FLAGS
flags.DEFINE_integer("population", 64, "P for the overhead and speedup figures.")
flags.DEFINE_integer("seeds", 1, "runs per candidate (the search configs train 2).")
flags.DEFINE_integer("repeats", 3, "warm timed repeats, interleaved (the best is kept).")
flags.DEFINE_integer("cold_repeats", 3, "cold (compile included) runs of the engine (median).")
flags.DEFINE_integer("per_candidate", 6, "candidates timed in the per-candidate-jit loop.")
flags.DEFINE_multi_integer("sizes", [1, 16, 64, 256], "P values for candidate_steps_per_s.")
flags.DEFINE_bool("quick", False, "skip the P sweep.")
flags.DEFINE_enum("strategy", "auto", population.STRATEGIES,
                  "the population optimizer's strategy (auto: loop on CPU, vmap on GPU/TPU).")

SHAPE = ProgramShape()


def _cold(fn) -> float:
    """Seconds of one call whose training program is not compiled: trace,
    compile and run. JAX's caches of its own small helpers stay warm, as they
    are for every candidate of the per-candidate loop but its first."""
    evaluate.clear_compiled()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _warm_pair(fn_a, fn_b) -> tuple[float, float]:
    """Best seconds of warm calls of ``fn_a`` and ``fn_b``, interleaved so that
    a drift in the machine's speed touches both alike, and in alternating
    order (a b, b a, ...): on a 2-core VM one compiled program measured up
    to 20% apart by its place in such a round."""
    best = [float("inf"), float("inf")]
    for round_ in range(FLAGS.repeats):
        order = (0, 1) if round_ % 2 == 0 else (1, 0)
        for i in order:
            start = time.perf_counter()
            (fn_a, fn_b)[i]()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def _overhead(task_name: str, graphs) -> dict[str, float]:
    task = tasks.get(task_name, seeds=FLAGS.seeds)
    task.data()  # loaded (and cached) before anything is timed
    program = encode(graphs, SHAPE)
    lrs = (jnp.full(len(graphs), 1e-3),)
    run_population = functools.partial(evaluate.evaluate, program, task, shape=SHAPE,
                                       strategy=FLAGS.strategy)
    run_adam = lambda: evaluate.evaluate_baseline(optax.adam, lrs, task)  # noqa: E731
    pop_cold = [_cold(run_population) for _ in range(FLAGS.cold_repeats)]
    adam_cold = _cold(run_adam)
    run_population()
    pop_best, adam_best = _warm_pair(run_population, run_adam)
    return {"ratio": pop_best / adam_best, "population_s": pop_best, "adam_s": adam_best,
            "population_cold_s": float(np.median(pop_cold)), "adam_cold_s": adam_cold,
            "population_compile_s": float(np.median(pop_cold)) - pop_best,
            "adam_compile_s": adam_cold - adam_best}


def _per_candidate_seconds(graphs, task) -> float:
    """Each graph's own jit-compiled training run, compile included: the
    engine's training loop (``evaluate_baseline``) with the graph's
    ``to_optax``, one compiled program per graph."""
    start = time.perf_counter()
    for graph in graphs:
        def make_tx(learning_rate, graph=graph):
            return symopt.to_optax(graph, learning_rate, total_steps=task.steps)

        lr = jnp.full(1, graph.hparams.learning_rate)
        evaluate.evaluate_baseline(make_tx, (lr,), task, devices=jax.devices()[:1])
    return time.perf_counter() - start


def _steps_per_s(task, size: int) -> dict[str, float]:
    program = encode(nos.sample_checked(np.random.default_rng(size), size), SHAPE)
    run = functools.partial(evaluate.evaluate, program, task, shape=SHAPE,
                            strategy=FLAGS.strategy)
    cold = _cold(run)
    best = _warm_pair(run, run)[0]
    return {"candidate_steps_per_s": size * task.steps / best, "compile_s": cold - best}


def _progress(message: str) -> None:
    """A progress line on stderr (stdout holds only the JSON result)."""
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


def main(argv):
    del argv
    cli.configure_cpu_devices(FLAGS.cpu_devices)  # before JAX starts its backends
    p = FLAGS.population
    graphs = nos.sample_checked(np.random.default_rng(0), p)
    _progress(f"overhead on digits_mlp: P={p}, {FLAGS.cold_repeats} cold + "
              f"{FLAGS.repeats} warm runs each side")
    mlp = _overhead("digits_mlp", graphs)
    _progress("overhead on digits_cnn")
    cnn = _overhead("digits_cnn", graphs)
    task = tasks.get("digits_mlp", seeds=FLAGS.seeds)
    _progress(f"per-candidate jit loop over {FLAGS.per_candidate} candidates")
    per_candidate = _per_candidate_seconds(graphs[: FLAGS.per_candidate], task)
    per_candidate *= p / FLAGS.per_candidate
    engine = mlp["population_cold_s"]
    result = {
        "device": str(jax.devices()[0].device_kind),
        "devices": len(jax.devices()),
        "strategy": population.resolve_strategy(FLAGS.strategy),
        "population": p,
        "seeds": FLAGS.seeds,
        "overhead_mlp": round(mlp["ratio"], 3),
        "overhead_cnn": round(cnn["ratio"], 3),
        "speedup_vs_per_candidate_jit": round(per_candidate / engine, 2),
        "details": {"mlp": mlp, "cnn": cnn, "per_candidate_loop_s": per_candidate,
                    "engine_with_compile_s": engine},
    }
    if not FLAGS.quick:
        result["candidate_steps_per_s"] = {}
        for size in FLAGS.sizes:
            _progress(f"candidate_steps_per_s at P={size}")
            result["candidate_steps_per_s"][str(size)] = _steps_per_s(task, size)
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    app.run(main)
