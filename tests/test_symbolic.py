"""The symbolic form of graphs: sympy expressions, LaTeX and one-line text.

Expected forms are compared with ``sympy.simplify(a - b) == 0``, so a test
states the mathematics, not the printed layout. The numeric checks evaluate
the same graph with ``symopt.interpret`` in NumPy (no JAX compilation).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

from symopt import graph as graph_lib
from symopt import interpret, ops, symbolic, zoo
from symopt.graph import Expr, Graph, Node, Schedule, nodes, simple

G = ops.OPERANDS["g"].sympy
M = ops.OPERANDS["m"].sympy
V = ops.OPERANDS["v"].sympy
GAMMA = ops.OPERANDS["gamma"].sympy
XI = ops.OPERANDS["noise"].sympy
STEP, TOTAL_STEPS = ops.OPERANDS["t"].sympy.as_numer_denom()
(W,) = ops.OPERANDS["w_0.1"].sympy.free_symbols
(EPSILON,) = ops.OPERANDS["adam"].sympy.free_symbols - {M, V}
ETA = symbolic.LEARNING_RATE
S0 = symbolic.state_symbol(0)


def assert_same(actual: sympy.Expr, expected: sympy.Expr) -> None:
    assert sympy.simplify(actual - expected) == 0, f"{actual} != {expected}"


def direction(graph: Graph) -> sympy.Expr:
    return symbolic.to_sympy(graph).direction


# --------------------------------------------------------------------------
# Directions and states of known optimizers.


def test_adam_direction_is_m_over_sqrt_v_plus_epsilon():
    assert_same(direction(zoo.adam()), M / (sympy.sqrt(V) + EPSILON))


def test_addsign_direction_is_one_plus_sign_agreement_times_g():
    assert_same(direction(zoo.addsign()), (1 + sympy.sign(G) * sympy.sign(M)) * G)


def test_powersign_direction_is_exp_of_sign_agreement_times_g():
    assert_same(direction(zoo.powersign()), sympy.exp(sympy.sign(G) * sympy.sign(M)) * G)


def test_terms_ga_direction_keeps_its_published_constants():
    expected = 0.7345 * sympy.sign(G) + 3.6352 * M / (sympy.sqrt(V) + EPSILON)
    assert_same(direction(zoo.terms_ga()), expected)


def test_lion_interpolates_before_it_updates_its_momentum_state():
    form = symbolic.to_sympy(zoo.lion())
    assert_same(form.direction, sympy.sign(0.9 * S0 + 0.1 * G))
    (state,) = form.states
    assert_same(state, 0.99 * S0 + 0.01 * G)


# --------------------------------------------------------------------------
# Structure: dead nodes, order, simplification, numbers.


def test_dead_nodes_do_not_change_the_form():
    live = Graph(update=nodes(("mul", "identity", "sign_g", "identity", "m")))
    with_dead = Graph(
        update=nodes(
            ("add", "exp", "v", "tanh", "w_0.1"),  # read by nothing
            ("mul", "identity", "sign_g", "identity", "m"),
        )
    )
    assert direction(with_dead) == direction(live)


def test_commuted_inputs_give_equal_forms():
    forward = Graph(update=nodes(("add", "identity", "g", "sqrt_abs", "m")))
    backward = Graph(update=nodes(("add", "sqrt_abs", "m", "identity", "g")))
    assert direction(forward) == direction(backward)


def test_multiplying_by_one_simplifies_to_the_operand():
    graph = Graph(update=nodes(("mul", "identity", "g", "identity", "one")))
    assert direction(graph) == G


def test_a_difference_of_equal_terms_is_zero():
    graph = Graph(update=nodes(("sub", "tanh", "m", "tanh", "m")))
    assert direction(graph) == 0


def test_constants_are_rounded_for_display():
    graph = Graph(
        update=nodes(("mul", "identity", "c0", "identity", "g")), constants=(0.123456789,)
    )
    assert direction(graph) == sympy.Float(0.123457) * G


def test_integral_constants_become_integers():
    graph = Graph(update=nodes(("mul", "identity", "c0", "identity", "g")), constants=(2.0,))
    assert direction(graph) == 2 * G


def test_a_direction_that_is_a_state_reads_the_state_symbol():
    graph = Graph(update=Expr((), "s0"), states=("g",))
    form = symbolic.to_sympy(graph)
    assert form.direction == S0
    assert form.states == (G,)


# --------------------------------------------------------------------------
# Decays, momentum, weight decay, schedule.


def test_a_decay_multiplies_its_operand():
    graph = simple("g", decays=(("g", Expr((), "decay_linear")),))
    form = symbolic.to_sympy(graph)
    assert_same(form.direction, G * sympy.Max(0, 1 - STEP / TOTAL_STEPS))
    assert set(form.decays) == {"g"}


def test_a_decay_on_an_unused_operand_is_left_out():
    graph = simple("g", decays=(("m", Expr((), "decay_cosine")),))
    form = symbolic.to_sympy(graph)
    assert form.direction == G
    assert form.decays == {}


def test_decays_returned_are_the_callers_to_change():
    graph = simple("g", decays=(("g", Expr((), "decay_linear")),))
    symbolic.to_sympy(graph).decays.clear()
    assert set(symbolic.to_sympy(graph).decays) == {"g"}


def test_update_is_minus_eta_times_direction_plus_weight_decay():
    form = symbolic.to_sympy(zoo.adamw())
    assert_same(form.update, -ETA * (M / (sympy.sqrt(V) + EPSILON) + 0.0001 * W))
    assert form.momentum is None


def test_classical_momentum_steps_along_the_buffer():
    form = symbolic.to_sympy(zoo.momentum())
    assert_same(form.update, -ETA * symbolic.MOMENTUM_BUFFER)
    assert_same(form.momentum, 0.9 * symbolic.MOMENTUM_BUFFER_PREVIOUS + G)


def test_nesterov_momentum_steps_along_direction_plus_momentum_times_buffer():
    form = symbolic.to_sympy(zoo.nesterov())
    assert_same(form.update, -ETA * (G + 0.9 * symbolic.MOMENTUM_BUFFER))
    assert_same(form.momentum, 0.9 * symbolic.MOMENTUM_BUFFER_PREVIOUS + G)


def test_constant_schedule_is_one():
    assert symbolic.to_sympy(zoo.adam()).schedule == 1


def test_cosine_schedule_without_warmup_is_half_cosine_of_t_over_t_total():
    form = symbolic.to_sympy(zoo.adam().replace(schedule=Schedule(kind="cosine")))
    assert_same(form.schedule, (1 + sympy.cos(sympy.pi * STEP / TOTAL_STEPS)) / 2)


SCHEDULES = (
    Schedule(kind="constant", warmup_steps=5),
    Schedule(kind="cosine", alpha=0.1),
    Schedule(kind="cosine", warmup_steps=10),
    Schedule(kind="linear", alpha=0.2, warmup_steps=3),
    Schedule(kind="exponential", decay_rate=0.05),
    Schedule(kind="step", decay_rate=0.5, steps=4, warmup_steps=7),
    Schedule(kind="restarts", alpha=0.1, cycles=3),
    Schedule(kind="graph", expr=nodes(("mul", "identity", "decay_cosine", "square", "c0"))),
    Schedule(kind="graph", warmup_steps=10, expr=nodes(("sub", "identity", "one", "exp", "t"))),
    Schedule(kind="piecewise", values=(1.0, 1.0, 0.5, 0.25, 0.25, 0.01, 0.01)),
    Schedule(kind="piecewise", warmup_steps=10, values=(0.5, 2.0, 1.0)),
)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s.kind}-w{s.warmup_steps}")
def test_schedule_agrees_with_the_compiled_schedule(schedule):
    total_steps = 200
    graph = zoo.adam().replace(schedule=schedule, constants=(0.7,))
    form = symbolic.to_sympy(graph).schedule.subs(TOTAL_STEPS, total_steps)
    for step in (0, 4, 9, 10, 77, 150, 199):
        expected = interpret.schedule_multiplier(schedule, np, step, total_steps, (0.7,))
        assert float(form.subs(STEP, step)) == pytest.approx(float(expected), rel=1e-5)


# --------------------------------------------------------------------------
# Agreement with the numeric evaluation of the graph.

VALUES = {
    "g": 0.3,
    "w": -0.7,
    "m": 0.2,
    "v": 0.05,
    "gamma": 0.01,
    "noise": 0.4,
    "eps": 1e-8,
    "step": 5.0,
    "total_steps": 100.0,
    "state": 0.25,
}
SUBSTITUTIONS = {
    G: VALUES["g"],
    W: VALUES["w"],
    M: VALUES["m"],
    V: VALUES["v"],
    GAMMA: VALUES["gamma"],
    XI: VALUES["noise"],
    EPSILON: VALUES["eps"],
    STEP: VALUES["step"],
    TOTAL_STEPS: VALUES["total_steps"],
    **{symbolic.state_symbol(i): VALUES["state"] for i in range(graph_lib.MAX_STATES)},
}


def numeric_values(graph: Graph) -> tuple[float, ...]:
    """The direction and new states of ``graph`` at VALUES, evaluated as compile does."""
    frac = VALUES["step"] / VALUES["total_steps"]
    ctx = ops.StepContext(
        **{k: VALUES[k] for k in ("g", "w", "m", "v", "gamma", "noise", "eps")},
        step=VALUES["step"],
        frac=frac,
    )
    decays = {
        name: interpret.evaluate_scalar(expr, np, VALUES["step"], frac, graph.constants)
        for name, expr in graph.decays
    }

    def lookup(ref: str) -> float:
        if (j := graph_lib.constant_index(ref)) is not None:
            return graph.constants[j]
        if graph_lib.state_index(ref) is not None:
            return VALUES["state"]
        return ops.OPERANDS[ref].fn(np, ctx) * decays.get(ref, 1.0)

    def by_leaf(fn, *args):  # every operand is one number: a leaf of shape ()
        return fn(*(np.asarray(x, float) for x in args))

    values = interpret.evaluate_expr(graph.update, lookup, np, by_leaf=by_leaf,
                                       instructions=interpret.plan(graph).instructions)
    refs = (graph.update.root, *graph.states)
    return tuple(float(values[r] if r in values else lookup(r)) for r in refs)


# The per-leaf operators' sympy functions, by name, and what they compute.
LEAF_FUNCTIONS = {op.to_sympy.__name__: op.fn for table in (ops.UNARY, ops.BINARY)
                  for op in table.values() if op.leaf}


def _numeric_leaf_functions(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` (numbers only) with each per-leaf operator's opaque function
    evaluated on leaves of shape ()."""
    def is_leaf_function(e):
        return isinstance(e, sympy.core.function.AppliedUndef) and e.func.__name__ in LEAF_FUNCTIONS

    def evaluate(e):
        leaves = (np.asarray(float(a)) for a in e.args)
        return sympy.Float(float(LEAF_FUNCTIONS[e.func.__name__](np, *leaves)))

    return expr.replace(is_leaf_function, evaluate)


def symbolic_values(graph: Graph) -> tuple[float, ...]:
    form = symbolic.to_sympy(graph)
    exprs = []
    for e in (form.direction, *form.states):
        for name, value in reversed(form.intermediates):
            e = e.subs(name, value)
        exprs.append(_numeric_leaf_functions(e.subs(SUBSTITUTIONS)))
    return tuple(float(e) for e in exprs)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_forms_agree_with_numeric_evaluation(name):
    graph = zoo.get(name)
    assert symbolic_values(graph) == pytest.approx(numeric_values(graph), rel=1e-6)


# Operators whose sympy form sympy can evaluate to a number.
EVALUABLE_UNARY = ("identity", "neg", "exp", "log_abs", "sqrt_abs", "sign", "abs", "square", "tanh")
EVALUABLE_OPERANDS = (
    "g",
    "g2",
    "m",
    "v",
    "sign_g",
    "adam",
    "rmsprop",
    "w_0.1",
    "one",
    "t",
    "decay_cosine",
    "c0",
    "s0",
)


def random_graph(rng: np.random.Generator, num_nodes: int, *, leaf: bool = False) -> Graph:
    """A graph of evaluable operators (and the per-leaf ones if ``leaf``), with
    a state and a decay on ``g``."""
    built = []
    unary = EVALUABLE_UNARY + (tuple(n for n, o in ops.UNARY.items() if o.leaf) if leaf else ())
    for i in range(num_nodes):
        refs = EVALUABLE_OPERANDS + tuple(graph_lib.node_ref(j) for j in range(i))
        op = rng.choice(tuple(n for n, o in ops.BINARY.items() if leaf or not o.leaf))
        left, right = rng.choice(unary, 2)
        a, b = rng.choice(refs, 2)
        built.append(Node(str(op), str(left), str(a), str(right), str(b)))
    return Graph(
        update=Expr(tuple(built), graph_lib.node_ref(num_nodes - 1)),
        states=("n0",),
        decays=(("g", nodes(("mul", "identity", "decay_linear", "identity", "c0"))),),
        constants=(0.8,),
    )


@pytest.mark.parametrize("seed", range(12))
def test_random_graph_forms_agree_with_numeric_evaluation(seed):
    graph = random_graph(np.random.default_rng(seed), num_nodes=4)
    expected = numeric_values(graph)
    if not all(abs(x) < 1e6 for x in expected):  # compile clips what sympy keeps exact
        pytest.skip("values outside the range where the protections are inactive")
    assert symbolic_values(graph) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_per_leaf_operators_stay_opaque_functions_that_evaluate_as_the_step_does(seed):
    # Numerically on leaves of shape (): the form keeps each per-leaf operator
    # as a function of its argument, which sympy must not rewrite.
    graph = random_graph(np.random.default_rng(100 + seed), num_nodes=4, leaf=True)
    expected = numeric_values(graph)
    if not all(abs(x) < 1e6 for x in expected):
        pytest.skip("values outside the range where the protections are inactive")
    assert symbolic_values(graph) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------
# Large and awkward graphs.


def doubling_chain(length: int) -> Graph:
    """Each node reads the previous one twice: the inlined form doubles each node."""
    chain = [Node("add", "identity", "g", "identity", "m")]
    chain += [Node("mul", "exp", f"n{i}", "sqrt_abs", f"n{i}") for i in range(length - 1)]
    return Graph(update=Expr(tuple(chain), graph_lib.node_ref(length - 1)))


def test_a_long_chain_of_shared_nodes_is_written_with_named_nodes():
    form = symbolic.to_sympy(doubling_chain(graph_lib.MAX_NODES))
    assert form.intermediates
    assert len(symbolic.to_text(doubling_chain(graph_lib.MAX_NODES))) < 5000


def test_named_nodes_expand_back_to_the_inlined_form():
    length = 6  # just past INLINE_MAX_SIZE
    form = symbolic.to_sympy(doubling_chain(length))
    assert form.intermediates
    expanded = form.direction
    for name, value in reversed(form.intermediates):
        expanded = expanded.subs(name, value)
    inlined = G + M
    for _ in range(length - 1):
        inlined = sympy.exp(inlined) * sympy.sqrt(sympy.Abs(inlined))
    assert_same(expanded, inlined)


def test_an_operator_sympy_cannot_evaluate_is_kept_unevaluated():
    graph = Graph(
        update=nodes(
            ("div", "identity", "one", "identity", "c0"),  # 1/0 is zoo, which Max rejects
            ("max", "identity", "n0", "identity", "m"),
        ),
        constants=(0.0,),
    )
    assert "max(" in symbolic.to_text(graph)


def test_to_sympy_names_the_bad_field_of_a_malformed_graph():
    with pytest.raises(graph_lib.GraphError, match="update.root"):
        symbolic.to_sympy(simple("bogus"))


def test_search_space_size_limits_do_not_apply():
    chain = doubling_chain(graph_lib.MAX_NODES + 4)
    assert symbolic.to_sympy(chain).intermediates


# --------------------------------------------------------------------------
# LaTeX and text.


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_optimizer_has_an_aligned_latex_block(name):
    latex = symbolic.to_latex(zoo.get(name))
    assert latex.startswith(r"\begin{aligned}") and latex.endswith(r"\end{aligned}")
    assert r"\Delta w" in latex
    assert "nan" not in latex


def test_latex_writes_bias_corrected_moments_with_hats():
    latex = symbolic.to_latex(zoo.adam())
    assert r"\hat{m}" in latex and r"\hat{v}" in latex
    assert r"m &\leftarrow 0.1 g + 0.9 m" in latex
    assert r"v &\leftarrow 0.001 g^{2} + 0.999 v" in latex


def test_latex_without_bias_correction_has_no_hats():
    latex = symbolic.to_latex(zoo.rmsprop())
    assert r"\hat" not in latex
    assert r"v &\leftarrow 0.1 g^{2} + 0.9 v" in latex


def test_latex_lists_no_moment_the_equations_do_not_read():
    assert r"m &\leftarrow" not in symbolic.to_latex(zoo.sgd())


def test_latex_shows_states_momentum_and_weight_decay():
    assert r"s_{0} &\leftarrow" in symbolic.to_latex(zoo.lion())
    assert r"u_{t} &= d + 0.9 u_{t-1}" in symbolic.to_latex(zoo.momentum())
    assert r"\Delta w &= -\eta_{t} \left(d + 0.0001 w\right)" in symbolic.to_latex(zoo.adamw())


def test_latex_shows_learning_rate_with_its_schedule():
    latex = symbolic.to_latex(zoo.terms_ga())
    assert r"\eta_{t} &= 0.0012 \left(\begin{cases}" in latex


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_optimizer_has_a_one_line_text(name):
    text = symbolic.to_text(zoo.get(name))
    assert re.match(r"(h_\d+ = [^;]+; )*d = ", text) and "\n" not in text
    assert "lr=" in text and "schedule=" in text and "momentum=" in text


def test_text_of_adam():
    text = symbolic.to_text(zoo.adam())
    assert text == "d = m/(epsilon + sqrt(v)); lr=0.001, schedule=constant, momentum=none"


def test_text_shows_states_weight_decay_warmup_and_momentum():
    assert "s_0 <- 0.01*g + 0.99*s_0" in symbolic.to_text(zoo.lion())
    assert "wd=0.00097, schedule=cosine+warmup100" in symbolic.to_text(zoo.terms_ga())
    assert "momentum=nesterov(0.9)" in symbolic.to_text(zoo.nesterov())


LEAF_GRAPH = Graph(
    update=nodes(
        ("if_matrix", "orth", "m", "rms", "g"),
        ("mul", "rms_rows", "n0", "rms_cols", "v"),
        ("trust", "identity", "n1", "norm", "w_0.1"),
        ("mul", "square", "n2", "identity", "g"),
    ),
)


def test_latex_writes_the_per_leaf_operators_as_named_functions_and_a_norm():
    latex = symbolic.to_latex(LEAF_GRAPH)
    for part in (r"\operatorname{orth}(\hat{m})", r"\mathrm{rms}(g)",
                 r"\mathrm{rms}_{\mathrm{row}}\left(", r"\mathrm{rms}_{\mathrm{col}}(\hat{v})",
                 r"\left\|0.1 w\right\|", r"\operatorname{trust}\left(",
                 r"\operatorname{if\_matrix}\left("):
        assert part in latex, (part, latex)
    assert "operatorname{norm}" not in latex and "if}_{matrix" not in latex


def test_latex_raises_a_per_leaf_function_to_a_power_around_its_parentheses():
    orth_squared = Graph(update=nodes(("mul", "orth", "g", "orth", "g")))
    norm_squared = Graph(update=nodes(("mul", "norm", "g", "norm", "g"),
                                      ("add", "identity", "n0", "identity", "g")))
    assert r"\left(\operatorname{orth}(g)\right)^{2}" in symbolic.to_latex(orth_squared)
    assert r"\|g\|^{2}" in symbolic.to_latex(norm_squared)


def test_text_writes_the_per_leaf_operators_by_their_names():
    text = symbolic.to_text(LEAF_GRAPH)
    for name in ("orth(m)", "rms(g)", "rms_row(", "rms_col(v)", "norm(0.1*w)", "trust(",
                 "if_matrix("):
        assert name in text, (name, text)


def test_text_of_a_malformed_graph_says_so_instead_of_raising():
    assert symbolic.to_text(simple("bogus")).startswith("<invalid Graph: update.root")
