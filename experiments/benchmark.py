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
* ``overhead_leaf_mlp``, ``overhead_leaf_cnn``: as the overheads above, for a
  population whose graphs use ``orth`` and the per-leaf reductions (Muon-like,
  RMS-normalised, Adafactor-like and trust-ratio directions, in turn) against
  the same number of runs of native ``optax.contrib.muon``, vmapped; the goal
  is <= 1.5 (``value``, ``goal``, ``met``, ``margin``).
* ``candidate_steps_per_s`` for P in 1, 16, 64, 256 and their compile seconds
  (JAX's own count of its tracing, lowering and compiling).

``--scale=paper`` times instead the models of the published NASNet-style
optimizer-graph protocol (Marfinetz 2025, whose tasks ``symopt.tasks`` keeps):
its small CNN (conv 32, conv 64, FC 256) and its 2-block BatchNorm CNN (FC 512,
the model of symopt's ``cifar10`` task), both on random data of CIFAR-10's
shapes (32x32x3 images, 10 classes, made with NumPy: nothing is downloaded):
the paper's 15,000 training examples, batch 128, and 15 validation and 15 test
examples per training step (the paper's 5k + 10k for 500 steps, so that
evaluation keeps its share of a run). It runs at P in ``--paper_populations``
(default 16 and 64) for ``--paper_steps`` steps (default 50; the paper trains
500). On CPU the convolutions are ``models.PatchConv`` (``--paper_conv``): XLA's
CPU convolutions run 20-50x slower inside the training loop's scan than outside
it (jax-ml/jax#12868), which would hide the optimizer's cost. It prints one JSON
object with, for each model and P, measured side by side in one run:

* ``overhead``: the population's warm time / vmapped ``optax.adam``'s (as
  ``overhead_cnn`` above), against the goal <= 1.1;
* ``memory_ratio``: the population's peak memory / vmapped Adam's, against the
  goal <= 1.5. The peak is the compiled training program's
  ``memory_analysis()``: argument + output + temp bytes, per device (XLA's
  buffer assignment, the same on every backend; a process's
  ``peak_bytes_in_use`` cannot be reset between measurements). Each goal comes
  with ``met`` and ``margin`` (goal - value: below 0 it is missed by that much);
  the goals are set for one NVIDIA H100;
* ``candidate_steps_per_s`` and ``compile_s`` (JAX's count, as above) of each side, and
  the bytes.

At paper scale ``--cold_repeats`` defaults to 1 and ``--repeats`` to 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import linen as nn

import symopt
from symopt import evaluate, measure, population, progress, tasks
from symopt import main as cli  # defines --cpu_devices, as the CLI has it
from symopt.program import Program, ProgramShape, encode
from symopt.spaces import nos
from symopt.tasks import base, models

FLAGS = flags.FLAGS
flags.DEFINE_integer("population", 64, "P for the overhead and speedup figures.")
flags.DEFINE_integer("seeds", 1, "runs per candidate (the search configs train 2).")
flags.DEFINE_integer("repeats", 3, "warm timed repeats, interleaved (the best is kept; "
                     "paper scale: 2 unless given).")
flags.DEFINE_integer("cold_repeats", 3, "cold (compile included) runs of the engine (median; "
                     "paper scale: 1 unless given).")
flags.DEFINE_integer("per_candidate", 6, "candidates timed in the per-candidate-jit loop.")
flags.DEFINE_multi_integer("sizes", [1, 16, 64, 256], "P values for candidate_steps_per_s.")
flags.DEFINE_bool("quick", False, "skip the P sweep (paper scale: 256 training examples, "
                  "for the tests).")
flags.DEFINE_enum("strategy", "auto", population.STRATEGIES,
                  "the population optimizer's strategy (auto: loop on CPU, vmap on GPU/TPU).")
flags.DEFINE_enum("scale", "default", ["default", "paper"],
                  "default: the digits figures; paper: the published protocol's CNNs on "
                  "CIFAR-10-shaped random data.")
flags.DEFINE_multi_integer("paper_populations", [16, 64], "paper scale: the P values.")
flags.DEFINE_integer("paper_steps", 50, "paper scale: training steps of one run.")
flags.DEFINE_enum("paper_conv", "auto", ["auto", "xla", "patch"],
                  "paper scale: the models' convolutions: flax nn.Conv (xla) or "
                  "models.PatchConv (patch); auto: patch on CPU, xla elsewhere.")
flags.DEFINE_multi_enum("paper_models", ["small_cnn", "bn_cnn"], ["small_cnn", "bn_cnn"],
                        "paper scale: the models.")

SHAPE = ProgramShape()


def _cold(fn) -> tuple[float, float]:
    """Seconds of one call whose training program is not compiled (trace,
    compile and run), and the seconds JAX spent tracing, lowering and
    compiling in it (its monitoring events: a cold call's other extra cost,
    the first touch of its memory, is not compiling). JAX's caches of its own
    small helpers stay warm, as they are for every candidate of the
    per-candidate loop but its first."""
    evaluate.clear_compiled()
    compiling = progress.compile_seconds()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, progress.compile_seconds() - compiling


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


def _overhead(task, graphs, baseline=optax.adam, shape: ProgramShape = SHAPE) -> dict[str, float]:
    """The population of ``graphs`` against the same number of runs of the
    native optax optimizer ``baseline`` (a function of the learning rate),
    vmapped the same way."""
    task.data()  # loaded (and cached) before anything is timed
    program = encode(graphs, shape)
    lrs = (jnp.full(len(graphs), 1e-3),)
    run_population = functools.partial(evaluate.evaluate, program, task, shape=shape,
                                       strategy=FLAGS.strategy)
    run_adam = lambda: evaluate.evaluate_baseline(baseline, lrs, task)  # noqa: E731
    pop_cold, pop_compile = np.median([_cold(run_population)
                                       for _ in range(FLAGS.cold_repeats)], axis=0)
    adam_cold, adam_compile = _cold(run_adam)
    run_population()
    pop_best, adam_best = _warm_pair(run_population, run_adam)
    return {"ratio": pop_best / adam_best, "population_s": pop_best, "adam_s": adam_best,
            "population_cold_s": float(pop_cold), "adam_cold_s": adam_cold,
            "population_compile_s": float(pop_compile), "adam_compile_s": adam_compile}


LEAF_GOAL = 1.5
"""The goal of ``overhead_leaf_mlp`` and ``overhead_leaf_cnn`` (CPU and accelerator)."""


def _leaf_graphs(size: int) -> list[symopt.Graph]:
    """``size`` graphs that use ``orth`` and the per-leaf reductions: Muon-like
    (orthogonalised momentum on matrices, an element-wise rule elsewhere),
    RMS-normalised and Adafactor-like factored directions and LAMB-like trust
    ratios, with drawn operands and constants, in turn."""
    rng = np.random.default_rng(0)
    pick = lambda options: str(options[int(rng.integers(len(options)))])  # noqa: E731
    elementwise = ("adam", "rmsprop", "sign_m", "g", "m")
    graphs = []
    for i in range(size):
        kind = i % 4
        if kind == 0:  # c0 * if_matrix(orth(x), y)
            specs = [("if_matrix", "orth", pick(("m", "g", "adam", "sign_m")), "identity",
                      pick(elementwise)), ("mul", "identity", "c0", "identity", "n0")]
        elif kind == 1:  # c0 * x / rms(x)
            x = pick(elementwise)
            specs = [("div", "identity", x, "rms", x), ("mul", "identity", "c0", "identity", "n0")]
        elif kind == 2:  # c0 * x * rms(sqrt v) / (rms_rows(sqrt v) * rms_cols(sqrt v))
            specs = [("keep_left", "sqrt_abs", "v", "identity", "v"),
                     ("mul", "rms_rows", "n0", "rms_cols", "n0"),
                     ("mul", "identity", pick(("g", "m")), "rms", "n0"),
                     ("div", "identity", "n2", "identity", "n1"),
                     ("mul", "identity", "c0", "identity", "n3")]
        else:  # c0 * trust(x, w / 10): x scaled to the weights' norm
            specs = [("trust", "identity", pick(elementwise), "identity", "w_0.1"),
                     ("mul", "identity", "c0", "identity", "n0")]
        graphs.append(symopt.Graph(
            update=symopt.graph.nodes(*specs), constants=(float(rng.uniform(0.5, 2.0)),),
            hparams=symopt.Hyperparams(learning_rate=1e-3)))
    return graphs


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
    compile_s = _cold(run)[1]
    best = _warm_pair(run, run)[0]
    return {"candidate_steps_per_s": size * task.steps / best, "compile_s": compile_s}


def _progress(message: str) -> None:
    """A progress line on stderr (stdout holds only the JSON result)."""
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# --scale=paper: the published protocol's CNNs on CIFAR-10's shapes.

PAPER_GOALS = {"overhead": 1.1, "memory_ratio": 1.5}
"""The engine's goals at paper scale, on one NVIDIA H100: population / vmapped Adam."""

IMAGE_SHAPE, CLASSES, BATCH = (32, 32, 3), 10, 128
TRAIN_EXAMPLES = 15_000  # the paper's training subset of CIFAR-10
EVAL_PER_STEP = 15
"""Validation and test examples, each, per training step: the paper evaluates
5k + 10k examples after 500 steps, so evaluation keeps its share of a run at
any ``--paper_steps``."""


def _paper_module(model: str, patch: bool) -> nn.Module:
    """Marfinetz 2025's small CNN (conv 32, conv 64, FC 256) or 2-block BatchNorm
    CNN (FC 512), at the widths ``symopt.tasks.tfds_tasks`` builds them with."""
    if model == "small_cnn":
        return models.CNN(channels=(32, 64), hidden=256, num_classes=CLASSES, patch_conv=patch)
    return models.BatchNormCNN(channels=(32, 64), hidden=512, num_classes=CLASSES,
                               patch_conv=patch)


def _patch_conv() -> bool:
    return FLAGS.paper_conv == "patch" or (FLAGS.paper_conv == "auto"
                                           and jax.default_backend() == "cpu")


def _split_sizes() -> dict[str, int]:
    evaluated = EVAL_PER_STEP * FLAGS.paper_steps
    return {"train": 256 if FLAGS.quick else TRAIN_EXAMPLES, "val": evaluated, "test": evaluated}


@functools.cache
def _random_images(sizes: tuple[tuple[str, int], ...]) -> base.Data:
    """Standard-normal images of CIFAR-10's shape and uniform labels, on device."""
    rng = np.random.default_rng(0)
    return base.to_device({
        split: {"x": rng.standard_normal((n, *IMAGE_SHAPE), dtype=np.float32),
                "y": rng.integers(0, CLASSES, n)}
        for split, n in sizes})


def _paper_task(model: str) -> base.Task:
    return base.classification_task(
        f"paper_{model}", module=_paper_module(model, _patch_conv()), input_shape=IMAGE_SHAPE,
        num_classes=CLASSES,
        data=functools.partial(_random_images, tuple(_split_sizes().items())),
        steps=FLAGS.paper_steps, batch_size=BATCH, seeds=FLAGS.seeds, eval_batch_size=BATCH)


@contextlib.contextmanager
def _recording_jit():
    """While active, each function made by ``jax.jit`` records its last call's
    arguments: the yielded dict maps the jitted function to them.

    So the benchmark can lower the very programs ``evaluate`` compiles and read
    their ``memory_analysis()`` (``evaluate`` keeps its compiled trainers to
    itself). Lowering a function with the arguments of a call it has made is
    a cache hit: nothing compiles again. On exit the trainers made while
    recording are forgotten (``evaluate.clear_compiled``)."""
    calls: dict = {}
    real_jit = jax.jit

    def jit(fun, *args, **kwargs):
        jitted = real_jit(fun, *args, **kwargs)

        def call(*call_args):
            calls[jitted] = call_args
            return jitted(*call_args)

        return call

    jax.jit = jit
    try:
        yield calls
    finally:
        jax.jit = real_jit
        evaluate.clear_compiled()


def _compiled_bytes(jitted, args) -> dict[str, float]:
    """Per-device bytes of a compiled program: arguments, outputs, temporaries and their sum."""
    stats = jitted.lower(*args).compile().memory_analysis()
    if stats is None:  # the backend does not report it
        return {"argument": math.nan, "output": math.nan, "temp": math.nan, "total": math.nan}
    parts = {"argument": stats.argument_size_in_bytes, "output": stats.output_size_in_bytes,
             "temp": stats.temp_size_in_bytes}
    return {**parts, "total": sum(parts.values())}


def _against(value: float, goal: float) -> dict[str, float | bool]:
    return {"value": round(value, 3), "goal": goal, "met": bool(value <= goal),
            "margin": round(goal - value, 3)}


def _paper_point(task, size: int) -> dict:
    """One model at one P: the overhead, memory and speed figures, side by side."""
    graphs = nos.sample_checked(np.random.default_rng(0), size)
    with _recording_jit() as calls:
        timed = _overhead(task, graphs)
        # The last trainer of each side, told apart by its first argument.
        population_call = [(f, a) for f, a in calls.items() if isinstance(a[0], Program)][-1]
        adam_call = [(f, a) for f, a in calls.items() if not isinstance(a[0], Program)][-1]
        memory = {"population": _compiled_bytes(*population_call),
                  "adam": _compiled_bytes(*adam_call)}
    steps = size * task.steps
    return {
        "overhead": _against(timed["ratio"], PAPER_GOALS["overhead"]),
        "memory_ratio": _against(memory["population"]["total"] / memory["adam"]["total"],
                                 PAPER_GOALS["memory_ratio"]),
        "candidate_steps_per_s": {"population": steps / timed["population_s"],
                                  "adam": steps / timed["adam_s"]},
        "compile_s": {"population": timed["population_compile_s"],
                      "adam": timed["adam_compile_s"]},
        "memory_bytes": memory,
        "seconds": {k: v for k, v in timed.items() if k != "ratio"},
    }


def _paper_scale() -> dict:
    for name, default in (("cold_repeats", 1), ("repeats", 2)):
        if not FLAGS[name].present:  # a short default budget at this scale
            FLAGS[name].value = default
    results = {}
    for model in FLAGS.paper_models:
        task = _paper_task(model)
        results[model] = {}
        for size in FLAGS.paper_populations:
            _progress(f"paper scale: {model}, P={size}, {FLAGS.paper_steps} steps, "
                      f"{FLAGS.cold_repeats} cold + {FLAGS.repeats} warm runs each side")
            point = results[model][str(size)] = _paper_point(task, size)
            _progress(f"{model}, P={size}: " + json.dumps(
                {k: point[k] for k in ("overhead", "memory_ratio", "candidate_steps_per_s",
                                       "compile_s")}, default=float))
    return {
        "scale": "paper",
        "device": str(jax.devices()[0].device_kind),
        "devices": len(jax.devices()),
        "strategy": population.resolve_strategy(FLAGS.strategy),
        "seeds": FLAGS.seeds,
        "steps": FLAGS.paper_steps,
        "batch_size": BATCH,
        "data": {"kind": "random, CIFAR-10's shapes", "image_shape": list(IMAGE_SHAPE),
                 "classes": CLASSES, **_split_sizes()},
        "convolutions": "models.PatchConv (im2col)" if _patch_conv() else "flax nn.Conv",
        "memory_measure": "compiled memory_analysis(): argument + output + temp bytes, per device",
        "goals": {**PAPER_GOALS, "on": "one NVIDIA H100"},
        "results": results,
    }


def main(argv):
    del argv
    cli.configure_cpu_devices(FLAGS.cpu_devices)  # before JAX starts its backends
    if FLAGS.scale == "paper":
        print(json.dumps(_paper_scale(), indent=1, default=float))
        return
    p = FLAGS.population
    graphs = nos.sample_checked(np.random.default_rng(0), p)
    _progress(f"overhead on digits_mlp: P={p}, {FLAGS.cold_repeats} cold + "
              f"{FLAGS.repeats} warm runs each side")
    mlp = _overhead(tasks.get("digits_mlp", seeds=FLAGS.seeds), graphs)
    _progress("overhead on digits_cnn")
    cnn = _overhead(tasks.get("digits_cnn", seeds=FLAGS.seeds), graphs)
    leaf_graphs = _leaf_graphs(p)
    leaf_shape = measure.shape_for(leaf_graphs, SHAPE)
    muon = lambda learning_rate: optax.contrib.muon(learning_rate)  # noqa: E731
    leaf = {}
    for name in ("digits_mlp", "digits_cnn"):
        _progress(f"per-leaf operators on {name}: P={p} graphs with orth and reductions "
                  "vs vmapped optax.contrib.muon")
        leaf[name] = _overhead(tasks.get(name, seeds=FLAGS.seeds), leaf_graphs, muon, leaf_shape)
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
        "overhead_leaf_mlp": _against(leaf["digits_mlp"]["ratio"], LEAF_GOAL),
        "overhead_leaf_cnn": _against(leaf["digits_cnn"]["ratio"], LEAF_GOAL),
        "details": {"mlp": mlp, "cnn": cnn, "per_candidate_loop_s": per_candidate,
                    "engine_with_compile_s": engine, "leaf_mlp": leaf["digits_mlp"],
                    "leaf_cnn": leaf["digits_cnn"]},
    }
    if not FLAGS.quick:
        result["candidate_steps_per_s"] = {}
        for size in FLAGS.sizes:
            _progress(f"candidate_steps_per_s at P={size}")
            result["candidate_steps_per_s"][str(size)] = _steps_per_s(task, size)
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    app.run(main)
