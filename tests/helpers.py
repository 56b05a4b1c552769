"""Helpers shared by the test modules (fixtures live in conftest.py).

No test module imports another: what two of them need is here.

* The tiny search: :func:`tiny_config`, the config file that loads it, and the
  command line that runs it (:func:`tiny_search_process`).
* The engine's reference check: :func:`check_agreement` steps graphs with the
  population engine and with ``to_optax`` in float64 and compares the updates.
* JAX bookkeeping: :func:`graph_state`, :func:`backend_compiles`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import symopt
from symopt import config as config_lib
from symopt import measure, population, zoo
from symopt.graph import Graph, Schedule, nodes
from symopt.program import ProgramShape, encode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


# --------------------------------------------------------------------------
# The tiny search.


def tiny_config(**changes) -> ml_collections.ConfigDict:
    config = config_lib.default_config()
    config.search.generations = 4
    config.search.population_size = 8
    config.search.seeds = "sgd,adam"
    config.space.options.max_nodes = 4
    config.tasks.steps = 20
    config.tasks.seeds = 1
    config.tasks.options = {"digits_mlp": {"hidden": 8}}
    config.evaluation.chunk_size = 2
    config.evaluation.metric = "loss"
    config.evaluation.lr_multipliers = (0.5, 1.0, 2.0)
    config.evaluation.reference_lr_multipliers = (0.3, 1.0, 3.0)
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


TINY_CONFIG_FILE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from helpers import tiny_config

    def get_config():
        return tiny_config()
""").format(tests=TESTS)


def tiny_search_process(tmp_path, workdir, **popen) -> subprocess.Popen:
    """The tiny search started through the command line, on one CPU device as
    the in-process reference ran: the metrics of several agree to float
    rounding only (tests/test_evaluate.py), not bit for bit."""
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG_FILE)
    command = [sys.executable, "-m", "symopt.main", f"--config={config_file}",
               f"--workdir={workdir}", "--cpu_devices=1", "--compilation_cache_dir="]
    return subprocess.Popen(command, cwd=ROOT, **popen)


def wait_until_archived(process: subprocess.Popen, workdir, count: int) -> None:
    """Returns once ``workdir``'s archive holds ``count`` candidates (or the run ended)."""
    deadline = time.monotonic() + 240
    while archived(workdir) < count and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def archived(workdir) -> int:
    """Candidates in ``workdir``'s archive, read without writing (0 while it is created)."""
    path = os.path.join(workdir, "archive.sqlite")
    if not os.path.exists(path):
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    except sqlite3.Error:
        return 0


# --------------------------------------------------------------------------
# The population engine against to_optax.

STEPS = 20
SHAPE = ProgramShape()


def params_like(dtype):
    return {"kernel": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(3, 2),
            "bias": jnp.zeros(2, dtype), "scale": jnp.ones((), dtype)}


def gradients(params):
    return [jax.tree.map(lambda x, k=k: jnp.sin(3.0 * x + k) + 0.1 * k, params)
            for k in range(STEPS)]


def population_updates(graphs, strategy, dtype, total_steps=STEPS, flat=False):
    """Every graph's updates over ``gradients``, stepped as one population
    (``flat``: through the flat [R, L] layout a training loop keeps, its
    updates read back through the layout's view)."""
    shape = measure.shape_for(graphs, SHAPE)  # SHAPE, with leaf_ops where graphs use them
    program = encode(graphs, shape, dtype=dtype)
    size = len(graphs)
    params = params_like(dtype)
    layout = population.weight_layout(params, strategy) if flat else None
    as_passed = layout.flatten if flat else lambda tree: tree
    batched = as_passed(jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *x.shape)), params))
    grads = jax.tree.map(lambda *x: jnp.stack(x), *gradients(params))

    def run(program):
        tx = population.optimizer(program, shape, total_steps, strategy=strategy, layout=layout)

        def body(state, g):
            g = as_passed(jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *x.shape)), g))
            updates, state = tx.update(g, state, batched)
            return state, layout.view(updates) if flat else updates

        return jax.lax.scan(body, tx.init(batched), grads)[1]

    return jax.jit(run)(program)


def reference_updates(graph, dtype, total_steps=STEPS):
    """``graph``'s ``to_optax`` updates over ``gradients``: computed once per
    process for each (graph, dtype, length) (each compiles its own program,
    ~1 s on 2 cores, and several tests check the same graphs)."""
    try:
        hash(graph)
    except TypeError:  # an unhashable graph: computed afresh
        return _reference_updates(graph, dtype, total_steps)
    # The dtype as the current x64 mode makes it (float64 inside jax.enable_x64).
    return _cached_reference_updates(graph, jax.dtypes.canonicalize_dtype(dtype), total_steps)


@functools.cache
def _cached_reference_updates(graph, dtype, total_steps):
    return _reference_updates(graph, dtype, total_steps)


def _reference_updates(graph, dtype, total_steps):
    params = params_like(dtype)
    tx = symopt.to_optax(graph, total_steps=total_steps)
    grads = jax.tree.map(lambda *x: jnp.stack(x), *gradients(params))

    def body(state, g):
        updates, state = tx.update(g, state, params)
        return state, updates

    return jax.jit(lambda: jax.lax.scan(body, tx.init(params), grads)[1])()


def check_agreement(graphs, strategy, total_steps=STEPS):
    """Each graph's updates in a population equal its ``to_optax``'s, with
    the weights passed as pytrees and kept flat."""
    with jax.enable_x64(True):
        ours = {flat: population_updates(graphs, strategy, jnp.float64, total_steps, flat)
                for flat in (False, True)}
        mismatched = []
        for i, graph in enumerate(graphs):
            reference = reference_updates(graph, jnp.float64, total_steps)
            for flat, updates in ours.items():
                mine = jax.tree.map(lambda x, i=i: x[:, i], updates)
                if not all(np.allclose(b, a, rtol=1e-5, atol=1e-8) for a, b in zip(
                        jax.tree.leaves(reference), jax.tree.leaves(mine), strict=True)):
                    mismatched.append(f"{i} ({'flat' if flat else 'tree'})")
    assert not mismatched, f"graphs {mismatched} differ from to_optax"


PIECEWISE = (
    zoo.sgd().replace(schedule=Schedule(kind="piecewise", values=(1.0, 0.5, 0.0, 2.0))),
    zoo.adam().replace(schedule=Schedule(kind="piecewise", warmup_steps=3,
                                         values=tuple(np.geomspace(1.0, 1e-3, 16)))),
    zoo.lion().replace(schedule=Schedule(kind="piecewise", values=(0.3,))),
)


def step_dependent_graphs() -> list[Graph]:
    """Graphs whose schedule, decays or operands change with the step."""
    decayed = zoo.sgd().replace(  # g decayed by t/T
        decays=(("g", nodes(("mul", "identity", "one", "identity", "t"))),))
    return [
        decayed,
        zoo.adam().replace(schedule=Schedule(kind="cosine", warmup_steps=3)),
        zoo.signum().replace(schedule=Schedule(
            kind="graph", expr=nodes(("mul", "identity", "decay_linear", "exp", "t")))),
        Graph(update=nodes(("mul", "identity", "g", "identity", "t"))),
        *PIECEWISE,
        zoo.terms_ga(),
    ]


# --------------------------------------------------------------------------
# JAX bookkeeping.


def graph_state(state):
    """The :class:`symopt.SymoptState` inside ``to_optax``'s chain state."""
    found = [s for s in state if isinstance(s, symopt.SymoptState)]
    assert len(found) == 1, state
    return found[0]


_COMPILES = [0]


def _count_backend_compiles(name: str, duration: float, **kwargs) -> None:
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_backend_compiles)


def backend_compiles() -> int:
    """XLA compiles so far in this process (JAX's public monitoring events)."""
    return _COMPILES[0]
