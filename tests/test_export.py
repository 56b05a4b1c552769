"""``symopt.export``: a graph as a standalone optax module, equal to ``to_optax``.

Covers the templates (:mod:`symopt.embed`: one per operator, operand and
schedule of the tables, each computing what the table's function computes,
the per-leaf operators on leaves of every rank, and symopt's functions
embedded by their source), the generated module
(imports, docstring, one line per node, only the state it needs), its
updates against ``symopt.to_optax`` over zoo, random and feature graphs, and
the command line.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import draws, embed, export, ops, schedules, zoo
from symopt.graph import SCHEDULE_KINDS, Expr, Schedule, nodes, simple
from symopt.spaces.nos import NosSpace

NUM_STEPS = 20

# Most graphs here record no training length; the warning has its own tests below.
pytestmark = pytest.mark.filterwarnings("ignore::symopt.graph.TrainingLengthWarning")

# Inputs that exercise the protections: zeros, tiny, huge, negative.
_SPECIAL = np.array(
    [0.0, -0.0, 1e-35, -1e-35, 1e-6, -3.0, 2.5, 90.0, -90.0, 1e29, -1e30, 1e30], np.float32
)


def _inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=64).astype(np.float32) * np.float32(10.0) ** rng.integers(-6, 6, 64)
    return np.concatenate([_SPECIAL, x.astype(np.float32)])


def _namespace(**values) -> dict:
    """Names a template may read, with ``jnp`` bound to NumPy."""
    return {
        "jnp": np,
        "BIG": ops.BIG,
        "TINY": ops.TINY,
        "RESTART_CYCLES": ops.RESTART_CYCLES,
        "NOISE_ANNEALING": ops.NOISE_ANNEALING,
        **_helpers(np),
        **values,
    }


_LEAF_FUNCTIONS = [fn for table, arity in ((ops.UNARY, 1), (ops.BINARY, 2))
                   for name in table for fn in embed.operator_functions(name, arity)]


def _helpers(xp) -> dict:
    """The protections and the per-leaf operators' functions as an exported
    module embeds them; the latter also by their names in the table's
    ``source`` column (``orth`` as well as ``_orth``)."""
    source, constants = embed.embedded_source(
        [ops.sanitize, ops.clip_big, ops.protect, *_LEAF_FUNCTIONS])
    space = {"jnp": xp, "BIG": ops.BIG, "TINY": ops.TINY, **constants}
    exec(source, space)  # noqa: S102
    embedded = [embed.embedded_name(fn) for fn in _LEAF_FUNCTIONS]
    return {**{k: space[k] for k in ("_sanitize", "_clip_big", "_protect", *embedded)},
            **{fn.__name__: space[embed.embedded_name(fn)] for fn in _LEAF_FUNCTIONS}}


def _same(actual, expected) -> None:
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


# --------------------------------------------------------------------------
# Templates.


@pytest.mark.parametrize("name", list(ops.UNARY))
def test_unary_template_computes_the_operator(name):
    x = _inputs(1)
    uniform = np.random.default_rng(2).random(x.shape).astype(np.float32)
    space = _namespace(x=x, uniform=uniform)
    with np.errstate(all="ignore"):
        raw = eval(ops.UNARY[name].source.format(x="x", uniform="uniform"), space)  # noqa: S307
        protected = eval(embed.unary_source(name, "x"), space)  # noqa: S307
        args = (x, uniform) if ops.UNARY[name].random else (x,)
        _same(raw, ops.UNARY[name].fn(np, *args))
        _same(protected, ops.bounded_fn(name, 1)(np, x, uniform))


@pytest.mark.parametrize("name", list(ops.BINARY))
def test_binary_template_computes_the_operator(name):
    a, b = _inputs(3), _inputs(4)[::-1].copy()
    space = _namespace(a=a, b=b)
    with np.errstate(all="ignore"):
        raw = eval(ops.BINARY[name].source.format(a="a", b="b"), space)  # noqa: S307
        protected = eval(embed.binary_source(name, "a", "b"), space)  # noqa: S307
        _same(raw, ops.BINARY[name].fn(np, a, b))
        _same(protected, ops.bounded_fn(name, 2)(np, a, b, None))


LEAF_SHAPES = [(), (5,), (4, 6), (6, 4), (3, 3, 2, 4)]


@pytest.mark.parametrize("shape", LEAF_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(ops.LEAF_OPERATORS))
def test_leaf_operator_template_computes_the_operator_on_every_leaf_shape(name, shape):
    rng = np.random.default_rng(9)
    a, b = (rng.normal(size=shape).astype(np.float32) * np.float32(10.0) ** rng.integers(-3, 3)
            for _ in range(2))
    arity = 2 if name in ops.BINARY else 1
    src = embed.unary_source(name, "a") if arity == 1 else embed.binary_source(name, "a", "b")
    # NumPy exactly; on the conv kernel also in JAX, which the embedded functions must run in.
    for xp in (np, jnp) if len(shape) == 4 else (np,):
        space = {**_namespace(a=a, b=b), **_helpers(xp), "jnp": xp}
        expected = ops.bounded_fn(name, arity)(xp, *(a, b)[:arity], None)
        actual = eval(src, space)  # noqa: S307
        assert actual.shape == shape
        if xp is np:
            _same(actual, expected)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_nested_unary_results_keep_their_evaluation_order():
    a, b = _inputs(5), _inputs(6)
    space = _namespace(a=a, b=b)
    src = embed.binary_source(
        "mul", embed.unary_source("square", "a"), embed.unary_source("square", "b")
    )
    with np.errstate(all="ignore"):
        expected = ops.bounded_fn("mul", 2)(np, ops.bounded_fn("square", 1)(np, a, None),
                                          ops.bounded_fn("square", 1)(np, b, None), None)
        _same(eval(src, space), expected)  # noqa: S307


@pytest.mark.parametrize("name", list(ops.OPERANDS))
def test_operand_template_computes_the_operand(name):
    rng = np.random.default_rng(7)
    arr = lambda: rng.normal(size=16).astype(np.float32)  # noqa: E731
    ctx = ops.StepContext(
        g=arr(),
        w=arr(),
        m=arr(),
        v=np.abs(arr()),
        gamma=arr(),
        noise=arr(),
        eps=1e-8,
        step=np.float32(7.0),
        frac=np.float32(0.37),
    )
    context = {f: f"ctx_{f}" for f in ctx._fields}
    space = _namespace(**{f"ctx_{f}": getattr(ctx, f) for f in ctx._fields})
    _same(
        eval(embed.operand_source(name, **context), space),  # noqa: S307
        ops.OPERANDS[name].fn(np, ctx),
    )


@pytest.mark.parametrize("fn", [
    ops.sanitize, ops.clip_big, ops.protect, schedules.held_step, draws.noise_draws])
def test_embedded_function_computes_what_the_symopt_function_computes(fn):
    source, constants = embed.embedded_source([fn])
    space = {"jax": jax, "jnp": jnp, **constants, "BIG": ops.BIG, "TINY": ops.TINY}
    exec(source, space)  # noqa: S102
    embedded = space[embed.embedded_name(fn)]
    x = jnp.asarray(np.concatenate([_inputs(8), np.array([np.nan, np.inf, -np.inf], np.float32)]))
    args = {schedules.held_step: (jnp, x, 7),
            draws.noise_draws: (jnp, draws.seed_words(3), 5, 17, (4, 3))}.get(fn, (jnp, x))
    _same(embedded(*args), fn(*args))


def test_embedded_source_renames_the_calls_it_embeds():
    source, constants = embed.embedded_source([draws.noise_draws])
    assert "def _noise_draws(" in source and "def _unit_draws(" in source
    assert "def _mix32(" in source and " mix32(" not in source
    assert constants == {"STEP_MIX": draws.STEP_MIX, "NOISE_LANE": draws.NOISE_LANE}
    assert "->" not in source and ": Array" not in source  # no annotations


# --------------------------------------------------------------------------
# Graphs under test.


def _random_graphs(count: int) -> list[tuple[str, symopt.Graph]]:
    space, out, seed = NosSpace(), [], 0
    while len(out) < count:
        graph = space.sample(np.random.default_rng(seed))
        if symopt.check(graph).ok:
            out.append((f"nos_{seed}", graph))
        seed += 1
    return out


def _feature_graphs() -> list[tuple[str, symopt.Graph]]:
    decay = nodes(("mul", "identity", "decay_cosine", "identity", "c1"))
    sched = nodes(
        ("mul", "identity", "decay_linear", "sqrt_abs", "t"),
        ("add", "identity", "n0", "identity", "c0"),
    )
    dropout = nodes(
        ("mul", "drop_0.3", "adam", "identity", "one"), ("add", "identity", "n0", "drop_0.1", "g")
    )
    return [
        (
            "decays",
            symopt.Graph(
                update=nodes(
                    ("add", "identity", "adam", "identity", "w_0.01"),
                    ("mul", "identity", "n0", "identity", "t"),
                ),
                decays=(
                    ("w_0.01", decay),
                    ("t", nodes(("add", "identity", "one", "identity", "c0"))),
                ),
                constants=(0.5, 2.0),
            ),
        ),
        (
            "graph_schedule",
            simple(
                "rmsprop",
                schedule=Schedule(kind="graph", expr=sched, warmup_steps=3),
                constants=(0.1,),
            ),
        ),
        (
            "piecewise",
            simple("adam", schedule=Schedule(kind="piecewise", values=(1.0, 0.3, 2.0, 0.05))),
        ),
        ("noise", simple("noise", hparams=symopt.Hyperparams(learning_rate=0.01))),
        (
            "noise_annealed",
            symopt.Graph(update=nodes(("add", "identity", "g", "identity", "noise_annealed"))),
        ),
        ("dropout", symopt.Graph(update=dropout)),
        (
            "classical_gamma",
            symopt.Graph(
                update=nodes(
                    ("div", "identity", "gamma", "exp", "v"),
                    ("pow", "identity", "n0", "tanh", "g3"),
                ),
                momentum="classical",
            ),
        ),
        (
            "nesterov_states",
            symopt.Graph(
                update=nodes(
                    ("sub", "log_abs", "g2", "identity", "s0"),
                    ("max", "clip_0.001", "n0", "square", "sign_m"),
                ),
                states=("n0",),
                momentum="nesterov",
                schedule=Schedule(kind="restarts", alpha=0.1, cycles=3),
            ),
        ),
        (
            "clipping",
            simple(
                "g",
                hparams=symopt.Hyperparams(clip_value=0.3, clip_norm=0.5),
                schedule=Schedule(kind="step", steps=3, decay_rate=0.5),
            ),
        ),
        (
            "weight_decay",
            simple(
                "adam",
                hparams=symopt.Hyperparams(weight_decay=0.1),
                schedule=Schedule(kind="exponential", warmup_steps=5),
            ),
        ),
        (
            "no_bias_correction",
            symopt.Graph(
                update=nodes(
                    ("min", "neg", "m", "abs", "v"), ("keep_left", "identity", "n0", "exp", "g")
                ),
                hparams=symopt.Hyperparams(bias_correction=False),
                schedule=Schedule(kind="linear", alpha=0.1),
            ),
        ),
        ("constant_root", symopt.Graph(update=Expr((), "c0"), constants=(0.25,))),
        # Per-leaf operators: Muon on matrices and Adam elsewhere, LAMB's trust
        # ratio, and every reduction, on scalar inputs (a constant, t) too.
        (
            "muon_if_matrix",
            symopt.Graph(
                update=nodes(("if_matrix", "orth", "m", "identity", "adam")),
                hparams=symopt.Hyperparams(learning_rate=0.02, beta1=0.95),
            ),
        ),
        (
            "lamb_trust",
            symopt.Graph(
                update=nodes(("add", "identity", "adam", "identity", "w_0.01"),
                             ("trust", "identity", "n0", "identity", "w_0.1")),
                hparams=symopt.Hyperparams(clip_norm=1.0),
            ),
        ),
        (
            "leaf_reductions",
            symopt.Graph(
                update=nodes(
                    ("div", "identity", "g", "rms_rows", "m"),
                    ("mul", "rms_cols", "n0", "norm", "c0"),
                    ("add", "rms", "t", "orth", "n1"),
                    ("if_matrix", "identity", "n2", "rms", "c0"),
                ),
                states=("n3",),
                constants=(0.5,),
                momentum="nesterov",
            ),
        ),
    ]


GRAPHS = [(n, zoo.get(n)) for n in zoo.names()] + _random_graphs(5) + _feature_graphs()
EXPORTED_DEFAULT = {"adam"} | {n for n, _ in _feature_graphs()} - {"muon_if_matrix",
                                                                  "piecewise"}
"""Checked by default: Adam and the feature graphs but two (Muon's ``if_matrix`` and
``orth`` are in ``leaf_reductions``, a piecewise schedule in the schedules' test
below); each compiles two trajectories. The rest of the zoo, the random graphs (also
fuzzed in tests/test_random_graphs.py) and those two under `pytest -m slow`."""


def _cases(pairs, default):
    return [pytest.param(n, g, id=n, marks=() if n in default else pytest.mark.slow)
            for n, g in pairs]


def _load(source: str, tmp_path, name: str = "exported") -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trajectory(tx, params, grads):
    """Updates of ``NUM_STEPS`` steps of ``tx`` (one jit compile)."""

    @jax.jit
    def run(params, grads):
        def step(carry, g):
            w, state = carry
            u, state = tx.update(g, state, w)
            return (jax.tree.map(jnp.add, w, u), state), u

        return jax.lax.scan(step, (params, tx.init(params)), grads)[1]

    return run(params, grads)


@pytest.mark.parametrize("name, graph", _cases(GRAPHS, EXPORTED_DEFAULT))
def test_exported_updates_equal_to_optax(name, graph, params, make_grads, tmp_path):
    module = _load(export.to_source(graph), tmp_path)
    grads = make_grads(NUM_STEPS, seed=1)
    total = 30
    lr = graph.hparams.learning_rate
    expected = _trajectory(symopt.to_optax(graph, lr, total), params, grads)
    actual = _trajectory(module.optimizer(lr, total), params, grads)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-12)


PAST_T = [(n, g) for n, g in GRAPHS if n in (
    "decays", "graph_schedule", "piecewise", "terms_ga", "nos_0", "nos_1")]


# Decays and a graph schedule by default, the other four under `pytest -m slow`.
@pytest.mark.parametrize("name, graph", _cases(PAST_T, {"decays", "graph_schedule"}))
def test_exported_updates_equal_to_optax_past_total_steps(name, graph, params, make_grads,
                                                          tmp_path):
    module = _load(export.to_source(graph), tmp_path)
    grads = make_grads(NUM_STEPS, seed=2)
    total = 6  # 14 of the 20 steps are past T: the schedule and decays hold at t = T - 1
    lr = graph.hparams.learning_rate
    expected = _trajectory(symopt.to_optax(graph, lr, total), params, grads)
    actual = _trajectory(module.optimizer(lr, total), params, grads)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-12)


def _schedule_graph(kind: str) -> symopt.Graph:
    expr = nodes(("mul", "identity", "decay_linear", "sqrt_abs", "t"))
    return simple("adam", schedule=Schedule(
        kind=kind, alpha=0.2, decay_rate=0.3, steps=3, cycles=2, warmup_steps=2,
        values=(1.0, 0.5, 2.0) if kind == "piecewise" else (),
        expr=expr if kind == "graph" else None))


# Three kinds by default (a formula, a table and a graph), the rest under `pytest -m slow`.
@pytest.mark.parametrize("kind", [k if k in ("cosine", "piecewise", "graph")
                                  else pytest.param(k, marks=pytest.mark.slow)
                                  for k in SCHEDULE_KINDS])
def test_exported_schedule_equals_to_optax_before_and_past_total_steps(kind, params, make_grads,
                                                                      tmp_path):
    graph = _schedule_graph(kind)
    module = _load(export.to_source(graph), tmp_path, f"schedule_{kind}")
    grads = make_grads(NUM_STEPS, seed=3)
    expected = _trajectory(symopt.to_optax(graph, 0.01, 12), params, grads)
    actual = _trajectory(module.optimizer(0.01, 12), params, grads)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-12)


def test_exported_factory_defaults_to_the_length_the_graph_was_found_at(params, make_grads,
                                                                        tmp_path):
    found = _schedule_graph("cosine").replace(total_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", symopt.graph.TrainingLengthWarning)
        module = _load(export.to_source(found), tmp_path, "found_at_12")
    assert module.TOTAL_STEPS == 12
    grads = make_grads(NUM_STEPS, seed=4)
    expected = _trajectory(symopt.to_optax(found, 0.01, 12), params, grads)
    for actual in (_trajectory(module.optimizer(0.01), params, grads),
                   _trajectory(symopt.to_optax(found, 0.01), params, grads)):
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-12)


def test_exporting_a_graph_that_reads_T_without_a_length_warns_and_keeps_the_default(tmp_path):
    graph = _schedule_graph("linear").with_hparams(learning_rate=3.3e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = _load(export.to_source(graph), tmp_path, "no_length")
    assert [w.category for w in caught] == [symopt.graph.TrainingLengthWarning]
    assert module.TOTAL_STEPS == symopt.graph.DEFAULT_TOTAL_STEPS


# --------------------------------------------------------------------------
# The generated module.


def test_module_imports_only_jax_and_optax():
    for _, graph in GRAPHS:
        tree = ast.parse(export.to_source(graph))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported <= {"jax", "jax.numpy", "optax", "typing"}, imported


def test_module_docstring_holds_the_equation():
    graph = zoo.adam()
    doc = ast.get_docstring(ast.parse(export.to_source(graph)))
    assert symopt.to_text(graph).split(";")[0] in doc


def test_module_writes_one_line_per_active_node():
    graph = zoo.powersign()
    source = export.to_source(graph)
    assert "n0 = _clip_big(jnp, sign_g * sign_m)" in source
    assert "n1 = _clip_big(jnp, _clip_big(jnp, jnp.exp(jnp.clip(n0, -80.0, 80.0))) * g)" in source
    assert "n2 =" not in source


def test_hyperparameters_are_named_constants():
    source = export.to_source(zoo.adam(learning_rate=3e-4))
    assert "LEARNING_RATE = 0.0003" in source
    assert "BETA1 = 0.9" in source and "BETA2 = 0.999" in source
    assert "BETA3" not in source and "MOMENTUM" not in source


@pytest.mark.parametrize(
    "name, fields", [("sgd", ()), ("adam", ("m", "v")), ("lion", ("states",)), ("momentum", ())]
)
def test_state_holds_only_what_the_graph_uses(name, fields, tmp_path, params):
    module = _load(export.to_source(zoo.get(name)), tmp_path, f"state_{name}")
    assert module.DirectionState._fields == ("count", *fields)
    state = module.optimizer().init(params)
    traces = [s for s in state if isinstance(s, optax.TraceState)]
    assert len(traces) == (name == "momentum")


def test_factory_name_is_chosen(tmp_path):
    module = _load(export.to_source(zoo.sgd(), name="my_sgd"), tmp_path, "named")
    assert callable(module.my_sgd)
    with pytest.raises(ValueError, match="identifier"):
        export.to_source(zoo.sgd(), name="not valid")


@pytest.mark.parametrize("name", ["class", "jnp", "optax", "BIG", "scale_by_direction",
                                  "_schedule", "len"])
def test_factory_name_that_would_break_the_module_is_rejected(name):
    with pytest.raises(ValueError, match="name"):
        export.to_source(zoo.adam(), name=name)


def test_invalid_graph_is_rejected():
    with pytest.raises(symopt.GraphError):
        export.to_source(simple("nonexistent"))


# --------------------------------------------------------------------------
# Command line.


def test_command_line_writes_the_module(tmp_path):
    path = tmp_path / "best.json"
    symopt.save(zoo.lion(), path)
    out = subprocess.run(
        [sys.executable, "-m", "symopt.export", "--graph", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == export.to_source(zoo.lion())


ERROR = "python -m symopt.export: error: "


def test_command_line_bad_path_is_a_one_line_error(tmp_path, capsys):
    assert export.main(["--graph", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERROR) and err.count("\n") == 1


def test_command_line_invalid_graph_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"update": {"nodes": [], "root": "nope"}}')
    assert export.main(["--graph", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERROR) and "nope" in err and err.count("\n") == 1
    path.write_text("{not json")
    assert export.main(["--graph", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# slow: it starts the program; by default symopt.load refuses a FIFO at once
# (tests/test_graph.py::test_load_refuses_a_fifo_at_once_instead_of_waiting_for_a_writer),
# the command line's errors are one line in process (below) and the program starts in
# test_command_line_writes_the_module.
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_command_line_refuses_a_fifo_in_one_line_without_waiting(tmp_path):
    fifo = tmp_path / "best.json"
    os.mkfifo(fifo)  # nothing ever writes to it: reading it would wait forever
    out = subprocess.run([sys.executable, "-m", "symopt.export", "--graph", str(fifo)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(ERROR) and out.stderr.count("\n") == 1
    assert "FIFO" in out.stderr and "not a regular file" in out.stderr


def test_command_line_cuts_a_long_operand_name_in_its_error(tmp_path, capsys):
    path = tmp_path / "long.json"
    data = symopt.to_dict(zoo.adam())
    data["update"]["root"] = "x" * 1_000_000
    path.write_text(json.dumps(data))
    assert export.main(["--graph", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERROR) and err.count("\n") == 1
    assert len(err) < len(str(path)) + 200 and "(1000002 characters)" in err


def test_command_line_prints_the_length_warning_as_one_line(tmp_path, capsys):
    path = tmp_path / "best.json"
    # Reads t/T and records no length; a rate of its own: no other test warned of it.
    symopt.save(zoo.terms_ga().with_hparams(learning_rate=7.7e-4), path)
    assert export.main(["--graph", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("python -m symopt.export: warning: ") and err.count("\n") == 1
