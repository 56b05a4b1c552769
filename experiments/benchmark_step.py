"""Cost of one population optimizer step per candidate, without a model.

Run: ``python experiments/benchmark_step.py``. Trains nothing: P random graphs
that pass the check step ``--steps`` times on synthetic gradients
(``clip(w, -1, 1)``) of ``L`` weights each, for each ``--sizes`` L (default the
digits CNN's 1,898 and MLP's 4,810 weights). Prints one JSON object: for each
L, the microseconds per candidate and step of the population optimizer (best
of ``--repeats``, less the same loop with plain SGD, timed side by side:
``harness_us_per_candidate_step``, the gradient, update and loop) and its
compile seconds. Two sizes tell the fixed cost of a candidate-step (its small
operations) from the cost per weight (memory passes and arithmetic): the
line through the two points.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from symopt import population
from symopt.program import Program, ProgramShape, encode
from symopt.spaces import nos
from symopt.tables import step_tables

FLAGS = flags.FLAGS
flags.DEFINE_integer("population", 64, "P, the candidates stepped together.")
flags.DEFINE_integer("steps", 100, "optimizer steps per timed call.")
flags.DEFINE_integer("repeats", 5, "timed calls per size (the best is kept).")
flags.DEFINE_multi_integer("sizes", [1898, 4810], "weights per candidate (L).")
flags.DEFINE_enum("strategy", "auto", population.STRATEGIES, "the optimizer's strategy.")


def _time_steps(program: Program, size: int) -> dict[str, float]:
    shape = ProgramShape()
    steps = FLAGS.steps
    scalars = step_tables(program, steps)
    params = {"w": jnp.ones((program.size, size))}

    def make_run(make_tx):
        def run(program, scalars, params):
            tx = make_tx(program, scalars)

            def step(carry, _):
                params, state = carry
                grads = jax.tree.map(lambda w: jnp.clip(w, -1.0, 1.0), params)
                updates, state = tx.update(grads, state, params)
                return (optax.apply_updates(params, updates), state), None

            return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]

        return run

    def compile_run(make_tx):
        start = time.perf_counter()
        compiled = jax.jit(make_run(make_tx)).lower(program, scalars, params).compile()
        return compiled, time.perf_counter() - start

    engine, compile_s = compile_run(lambda program, scalars: population.optimizer(
        program, shape, steps, strategy=FLAGS.strategy, scalars=scalars))
    # The same loop with plain SGD: the gradient, apply_updates and scan,
    # measured side by side and subtracted.
    harness, _ = compile_run(lambda program, scalars: optax.sgd(1e-3))
    for compiled in (engine, harness):  # warm-up
        jax.block_until_ready(compiled(program, scalars, params))
    best = [float("inf"), float("inf")]
    for _ in range(FLAGS.repeats):  # interleaved, so that a drift touches both alike
        for i, compiled in enumerate((engine, harness)):
            start = time.perf_counter()
            jax.block_until_ready(compiled(program, scalars, params))
            best[i] = min(best[i], time.perf_counter() - start)
    per_candidate_step = lambda seconds: 1e6 * seconds / (steps * program.size)  # noqa: E731
    return {"us_per_candidate_step": per_candidate_step(best[0] - best[1]),
            "harness_us_per_candidate_step": per_candidate_step(best[1]),
            "compile_s": compile_s}


def main(argv):
    del argv
    graphs = nos.sample_checked(np.random.default_rng(0), FLAGS.population)
    program = encode(graphs, ProgramShape())
    result = {"device": str(jax.devices()[0].device_kind), "population": FLAGS.population,
              "strategy": FLAGS.strategy, "steps": FLAGS.steps}
    result["sizes"] = {str(size): _time_steps(program, size) for size in FLAGS.sizes}
    if len(FLAGS.sizes) >= 2:
        (l0, a), (l1, b) = [(s, result["sizes"][str(s)]["us_per_candidate_step"])
                            for s in FLAGS.sizes[:2]]
        per_weight = (b - a) / (l1 - l0)
        result["fixed_us"] = a - per_weight * l0
        result["ns_per_weight"] = 1e3 * per_weight
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
