"""``symopt.interpret``: one step's meaning, written once over ``xp``.

Covers what a graph's plan finds, the schedules against the ``Schedule``
docstring's formulas (in NumPy and in JAX), and the whole step run in NumPy,
as the integrity check runs it, against ``to_optax`` in JAX. That the module
imports no JAX is tests/test_layers.py's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symopt import interpret, zoo
from symopt.graph import SCHEDULE_KINDS, Expr, Graph, Schedule, nodes

from helpers import STEPS, gradients, params_like, reference_updates, step_dependent_graphs

# --------------------------------------------------------------------------
# The plan.


def test_plan_finds_the_active_nodes_and_only_the_moments_they_read():
    graph = Graph(update=nodes(
        ("mul", "identity", "m", "identity", "g"),  # dead: the root does not read it
        ("div", "identity", "m", "sqrt_abs", "v"),
    ))
    p = interpret.plan(graph)
    assert p.active == (1,)
    assert p.operands == {"m", "v"} and p.needs == {"m", "v"}
    assert interpret.plan(zoo.sgd()).needs == frozenset()


def test_plan_keeps_only_the_decays_on_operands_in_use():
    decay = Expr((), "decay_linear")
    graph = zoo.sgd().replace(decays=(("g", decay), ("w_0.01", decay)))
    assert interpret.plan(graph).decays == (("g", decay),)


def test_a_scalar_root_still_gives_one_value_per_weight():
    graph = Graph(update=Expr((), "c0"), constants=(0.25,))
    p = interpret.plan(graph)
    w = np.zeros((2, 3), np.float32)
    scalars = interpret.step_scalars(p, np, 0, 10)
    d, _ = interpret.leaf_direction(p, np, w + 1, w, interpret.init_leaf(p, w, np), scalars)
    assert d.shape == w.shape and d.dtype == w.dtype
    np.testing.assert_array_equal(d, 0.25)


# --------------------------------------------------------------------------
# Schedules.

SCHEDULE_ARGS = dict(alpha=0.1, decay_rate=0.5, steps=4, cycles=2)
PIECEWISE_VALUES = (1.0, 0.5, 2.0, 0.0, 0.125)
DECAY_STEPS = 16  # T - warmup: a power of two, so u = k/16 is exact in float32


def _reference_multiplier(s: Schedule, t: int, total_steps: int) -> float:
    """The formula of the ``Schedule`` docstring."""
    warm = s.warmup_steps
    if t < warm:
        return (t + 1) / warm
    u = min(max((t - warm) / (total_steps - warm), 0.0), 1.0)
    cosine = lambda x: s.alpha + (1 - s.alpha) * 0.5 * (1 + math.cos(math.pi * x))  # noqa: E731
    return {
        "constant": lambda: 1.0,
        "cosine": lambda: cosine(u),
        "linear": lambda: 1 - (1 - s.alpha) * u,
        "exponential": lambda: s.decay_rate**u,
        "step": lambda: s.decay_rate ** min(math.floor(u * s.steps), s.steps - 1),
        "restarts": lambda: cosine((u * s.cycles) % 1.0),
        "piecewise": lambda: s.values[min(math.floor(u * len(s.values)), len(s.values) - 1)],
    }[s.kind]()


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("warmup", [0, 5])
@pytest.mark.parametrize("kind", [k for k in SCHEDULE_KINDS if k != "graph"])
def test_schedule_multiplier_follows_the_docstring_formula(kind, warmup, xp):
    values = PIECEWISE_VALUES if kind == "piecewise" else ()
    schedule = Schedule(kind=kind, warmup_steps=warmup, values=values, **SCHEDULE_ARGS)
    total = warmup + DECAY_STEPS
    ours = [float(interpret.schedule_multiplier(schedule, xp, t, total)) for t in range(total)]
    expected = [_reference_multiplier(schedule, t, total) for t in range(total)]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_graph_schedule_of_decay_linear_is_one_minus_t_over_T():
    schedule = Schedule(kind="graph", expr=Expr((), "decay_linear"))
    total = 16
    ours = [float(interpret.schedule_multiplier(schedule, jnp, t, total)) for t in range(total)]
    np.testing.assert_allclose(ours, [1 - t / total for t in range(total)], rtol=1e-6)


def test_graph_schedule_reads_the_graph_constants():
    expr = nodes(("mul", "identity", "c0", "identity", "decay_cosine"))
    schedule = Schedule(kind="graph", expr=expr)
    total = 16
    ours = [float(interpret.schedule_multiplier(schedule, jnp, t, total, (0.5,)))
            for t in range(total)]
    expected = [0.25 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# The step in NumPy against to_optax in JAX.

NUMPY_GRAPHS = [(n, zoo.get(n)) for n in zoo.names()] + [
    (f"step_dependent_{i}", g) for i, g in enumerate(step_dependent_graphs())]


def _numpy_updates(graph: Graph, params, grads) -> list[np.ndarray]:
    """:func:`symopt.interpret.leaf_update` in NumPy, leaf by leaf, at fixed
    weights (as ``reference_updates`` steps): one [steps, ...] array a leaf."""
    h, p = graph.hparams, interpret.plan(graph)
    leaves, treedef = jax.tree.flatten(params)
    flat_grads = [treedef.flatten_up_to(g) for g in grads]
    out = []
    for i, w in enumerate(leaves):
        w = np.asarray(w)
        state, updates = interpret.init_leaf(p, w, np), []
        for t, g in enumerate(flat_grads):
            scalars = interpret.step_scalars(p, np, t, STEPS)
            u, state = interpret.leaf_update(p, np, np.asarray(g[i]), w, state, scalars,
                                             h.learning_rate, h.weight_decay)
            updates.append(u)
        out.append(np.stack(updates))
    return out


# Each reference compiles its own program: by default three of the zoo (moments,
# states, a per-leaf operator) and three step-dependent graphs (a decay, a graph
# schedule, a piecewise one), the rest under `pytest -m slow`.
NUMPY_DEFAULT = ("adam", "lion", "muon", "step_dependent_0", "step_dependent_2",
                 "step_dependent_4")


@pytest.mark.parametrize("graph", [
    pytest.param(g, id=n, marks=() if n in NUMPY_DEFAULT else pytest.mark.slow)
    for n, g in NUMPY_GRAPHS])
def test_the_step_in_numpy_equals_to_optax_in_jax(graph):
    with jax.enable_x64(True):
        params = params_like(jnp.float64)
        expected = jax.tree.leaves(reference_updates(graph, jnp.float64))
        ours = _numpy_updates(graph, params, gradients(params))
    for mine, theirs in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-9, atol=1e-12)
