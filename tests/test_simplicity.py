"""Simplicity: graph complexity, the Pareto front, preferring the simpler, simplified equations."""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import integrity, simplicity, symbolic, zoo
from symopt.graph import Graph, Schedule, nodes, simple
from symopt.simplicity import complexity, pareto_front, prefer_simpler, simplified_equation
from symopt.spaces import nos

NUM_RANDOM = 40
NUM_SIMPLIFIED = 24  # graphs simplified per test (each xdist worker simplifies its own)
SIX_NODES = nos.NosSpace(min_nodes=6, max_nodes=6)


@functools.cache
def _random_graphs(seed: int = 2024, count: int = NUM_RANDOM) -> tuple[Graph, ...]:
    """Random 6-node graphs of the nos space (canonical form, as the search keeps them)."""
    rng = np.random.default_rng(seed)
    return tuple(SIX_NODES.sample(rng) for _ in range(count))


def _total(graph: Graph) -> int:
    return complexity(graph).total


# --------------------------------------------------------------------------
# complexity


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_complexity_total_is_the_sum_of_its_counts(name):
    c = complexity(zoo.get(name))
    assert c.total == c.operators + c.operands + c.states + c.builtins + c.buffers
    assert all(isinstance(x, int) and x >= 0 for x in c)


@pytest.mark.parametrize("index", range(NUM_RANDOM))
def test_random_graph_complexity_is_consistent_and_canonical(index):
    graph = _random_graphs()[index]
    c = complexity(graph)
    assert c.total == c.operators + c.operands + c.states + c.builtins + c.buffers
    assert c.nodes <= len(graph_lib.canonical(graph).update.nodes) <= 6
    assert c.operands >= 1  # every update reads something
    assert complexity(graph_lib.canonical(graph)) == c


@pytest.mark.parametrize("name", [n for n in zoo.names() if n != "sgd"])
def test_sgd_is_simpler_than_every_other_zoo_optimizer(name):
    assert _total(zoo.sgd()) < _total(zoo.get(name))


def test_adam_and_lion_are_simpler_than_most_random_6_node_graphs():
    totals = np.array([_total(g) for g in _random_graphs(seed=7, count=200)])
    assert np.mean(totals > _total(zoo.adam())) >= 0.8
    assert np.mean(totals > _total(zoo.lion())) >= 0.6


def test_zoo_complexities_are_the_documented_ones():
    assert [_total(zoo.get(n)) for n in ("sgd", "momentum", "adam", "lion")] == [1, 2, 7, 13]
    assert complexity(zoo.adam()) == simplicity.Complexity(
        nodes=0, operators=0, operands=1, states=0, builtins=4, buffers=2, total=7)


def test_dead_nodes_do_not_count():
    live = ("mul", "identity", "g", "sign", "m")
    dead = ("add", "exp", "v", "tanh", "gamma")
    with_dead = Graph(update=nodes(live, dead, root="n0"))
    assert complexity(with_dead) == complexity(Graph(update=nodes(live)))


def test_the_discarded_input_of_keep_left_does_not_count():
    graph = Graph(update=nodes(("keep_left", "identity", "g", "exp", "adam")))
    c = complexity(graph)
    assert (c.nodes, c.operators, c.operands, c.buffers) == (1, 0, 1, 0)
    assert c.total == _total(zoo.sgd())


def test_a_state_nobody_reads_does_not_count():
    graph = Graph(update=nodes(("mul", "identity", "g", "identity", "m"), root="g"),
                  states=("n0",))
    assert complexity(graph) == complexity(zoo.sgd())


def test_a_state_read_counts_with_the_nodes_that_compute_it():
    graph = Graph(update=nodes(("add", "identity", "g", "identity", "s0"),
                               ("mul", "identity", "g", "identity", "m"), root="n0"),
                  states=("n1",))
    c = complexity(graph)
    assert (c.nodes, c.operators, c.states, c.buffers) == (2, 2, 1, 1)


def test_equal_sub_expressions_count_once():
    twice = nodes(("mul", "identity", "g", "identity", "m"),
                  ("mul", "identity", "m", "identity", "g"),
                  ("add", "identity", "n0", "identity", "n1"))
    once = nodes(("mul", "identity", "g", "identity", "m"),
                 ("add", "identity", "n0", "identity", "n0"))
    assert complexity(Graph(update=twice)) == complexity(Graph(update=once))


def test_decays_count_only_on_operands_read():
    decay = nodes(("mul", "identity", "t", "identity", "one"))
    read = complexity(simple("g", decays=(("g", decay),)))
    unread = complexity(simple("g", decays=(("m", decay),)))
    assert read.operators == 1 and read.total > _total(zoo.sgd())
    assert unread == complexity(zoo.sgd())


def test_a_graph_schedule_counts_its_operators():
    schedule = Schedule(kind="graph", expr=nodes(("mul", "identity", "t", "neg", "t")))
    assert complexity(simple("g", schedule=schedule)).operators == 2
    assert complexity(simple("g", schedule=Schedule(kind="cosine"))) == complexity(zoo.sgd())


def test_moment_and_momentum_buffers_count():
    assert complexity(zoo.momentum()).buffers == 1
    assert complexity(zoo.adam()).buffers == 2
    assert complexity(zoo.adam().replace(momentum="nesterov")).buffers == 3


def test_complexity_of_a_malformed_graph_raises_graph_error():
    with pytest.raises(symopt.GraphError, match="unknown operand"):
        complexity(simple("nope"))


# --------------------------------------------------------------------------
# pareto_front


def _dominates(fa: float, ca: int, fb: float, cb: int) -> bool:
    return fa >= fb and ca <= cb and (fa > fb or ca < cb)


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_is_non_dominated_and_sorted(seed):
    rng = np.random.default_rng(seed)
    fitness = list(np.round(rng.normal(size=60), 1))
    cost = list(rng.integers(1, 15, size=60))
    front = pareto_front(fitness, cost)
    assert front
    for i in front:
        assert not any(_dominates(fitness[j], cost[j], fitness[i], cost[i]) for j in range(60))
    for i in set(range(60)) - set(front):  # every other point is dominated or repeats one
        assert any(_dominates(fitness[j], cost[j], fitness[i], cost[i])
                   or (fitness[j], cost[j]) == (fitness[i], cost[i]) for j in front)
    assert [cost[i] for i in front] == sorted(cost[i] for i in front)
    assert all(fitness[a] < fitness[b] for a, b in itertools.pairwise(front))


def test_nan_none_and_infinite_fitness_are_never_on_the_front():
    fitness = [float("nan"), None, float("-inf"), float("inf"), 0.5, 0.2]
    cost = [1, 1, 1, 1, 5, 3]
    assert pareto_front(fitness, cost) == [5, 4]
    assert pareto_front([float("nan"), None], [1, 2]) == []


def test_pareto_front_keeps_the_first_of_equal_points():
    assert pareto_front([0.5, 0.9, 0.9, 0.5], [2, 4, 4, 2]) == [0, 1]


def test_pareto_front_drops_the_more_complex_of_equal_fitness():
    assert pareto_front([0.7, 0.7, 0.8], [3, 2, 9]) == [1, 2]


def test_pareto_front_of_graphs_starts_with_the_simplest():
    graphs = [zoo.get(n) for n in ("lion", "adam", "sgd")]
    assert pareto_front([0.9, 0.8, 0.1], [_total(g) for g in graphs]) == [2, 1, 0]


def test_pareto_front_rejects_sequences_of_different_length():
    with pytest.raises(ValueError, match="length"):
        pareto_front([1.0, 2.0], [1])


# --------------------------------------------------------------------------
# prefer_simpler


def test_prefer_simpler_picks_the_simpler_within_tolerance():
    assert prefer_simpler([0.900, 0.895, 0.85], [20, 5, 1], tolerance=0.01) == 1


def test_prefer_simpler_picks_the_best_outside_tolerance():
    assert prefer_simpler([0.900, 0.880, 0.85], [20, 5, 1], tolerance=0.01) == 0


def test_prefer_simpler_tolerance_is_relative_for_negative_fitness():
    assert prefer_simpler([-1.000, -1.008], [9, 2], tolerance=0.01) == 1
    assert prefer_simpler([-1.000, -1.012], [9, 2], tolerance=0.01) == 0


@pytest.mark.parametrize("seed", range(5))
def test_prefer_simpler_with_zero_tolerance_is_the_argmax(seed):
    rng = np.random.default_rng(seed)
    fitness = rng.normal(size=30)
    assert prefer_simpler(list(fitness), list(rng.integers(1, 9, 30)), 0.0) == np.argmax(fitness)


def test_prefer_simpler_breaks_ties_by_fitness_then_index():
    assert prefer_simpler([0.99, 1.0, 0.995], [3, 3, 3], tolerance=0.05) == 1
    assert prefer_simpler([1.0, 0.9, 1.0], [4, 4, 4], tolerance=0.0) == 0


def test_prefer_simpler_never_picks_non_finite_fitness():
    fitness = [float("nan"), None, float("inf"), 0.5, 0.499]
    assert prefer_simpler(fitness, [1, 1, 1, 9, 8], tolerance=0.01) == 4


def test_prefer_simpler_raises_when_no_fitness_is_finite():
    with pytest.raises(ValueError, match="no finite fitness"):
        prefer_simpler([float("nan"), None, float("-inf")], [1, 2, 3], tolerance=0.01)


@pytest.mark.parametrize("tolerance", [-0.1, float("nan")])
def test_prefer_simpler_rejects_a_bad_tolerance(tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        prefer_simpler([1.0], [1], tolerance=tolerance)


# --------------------------------------------------------------------------
# simplified_equation


@pytest.mark.parametrize("name", zoo.names())
def test_simplified_equation_is_one_line_with_to_text_settings(name):
    graph = zoo.get(name)
    text = simplified_equation(graph)
    assert isinstance(text, str) and "\n" not in text
    assert re.match(r"(h_\d+ = [^;]+; )*d = ", text)  # named shared nodes, then d
    assert text.rsplit("; ", 1)[1] == symbolic.to_text(graph).rsplit("; ", 1)[1]


def test_simplified_equation_of_adam_is_its_known_form():
    expected = "d = m/(epsilon + sqrt(v)); lr=0.001, schedule=constant, momentum=none"
    assert simplified_equation(zoo.adam()) == expected


def test_simplified_equation_shrinks_a_reducible_graph():
    graph = Graph(update=nodes(("mul", "identity", "g2", "abs", "g"),
                               ("pow", "identity", "n0", "identity", "v")))
    assert "Abs(Abs(g))" in symbolic.to_text(graph)
    assert simplified_equation(graph).startswith("d = (g**2*Abs(g))**v;")


def test_the_rewrites_of_a_graph_read_at_most_the_work_bound(monkeypatch):
    read = []  # the tree nodes each rewrite is given

    def counted(rewrite):
        def run(expr):
            read.append(symbolic.tree_size(expr))
            return rewrite(expr)
        return run

    monkeypatch.setattr(simplicity, "REWRITES", tuple(map(counted, simplicity.REWRITES)))
    rewritten = 0
    for graph in _random_graphs(seed=12, count=NUM_SIMPLIFIED):  # printed by no other test
        read.clear()
        text = simplified_equation(graph)
        assert "\n" not in text and text.endswith(symbolic.to_text(graph).rsplit("; ", 1)[1])
        assert sum(read) <= simplicity.SIMPLIFY_WORK
        rewritten += bool(read)
    assert rewritten == NUM_SIMPLIFIED  # each graph was simplified here, not cached before


def test_an_equation_past_the_work_bound_is_printed_as_it_is():
    graph = Graph(update=nodes(("mul", "identity", "g2", "abs", "g"),
                               ("pow", "identity", "n0", "identity", "v")))
    plain, simplified = symbolic.to_text(graph), "d = (g**2*Abs(g))**v;"
    size = symbolic.tree_size(symbolic.to_sympy(graph).direction)  # what one rewrite reads
    assert simplified_equation(graph, work=0) == plain
    assert simplified_equation(graph, work=size - 1) == plain
    assert simplified_equation(graph, work=simplicity.SIMPLIFY_WORK).startswith(simplified)
    assert simplified_equation(graph) == simplified_equation(graph, work=simplicity.SIMPLIFY_WORK)


def test_simplified_equation_numbers_have_at_most_six_significant_digits():
    for graph in _random_graphs(seed=11, count=NUM_SIMPLIFIED):
        for number in re.findall(r"(?<![\w.])\d+\.\d+", simplified_equation(graph)):
            digits = number.replace(".", "").lstrip("0").rstrip("0")
            assert len(digits) <= symbolic.SIGNIFICANT_DIGITS, number


def test_simplified_equation_of_a_malformed_graph_raises_graph_error():
    with pytest.raises(symopt.GraphError):
        simplified_equation(simple("nope"))



# --------------------------------------------------------------------------
# The per-leaf operators: opaque to sympy, one operator each.


def test_per_leaf_operators_count_as_one_operator_each():
    plain = Graph(update=nodes(("mul", "identity", "g", "identity", "m")))
    leafy = Graph(update=nodes(("mul", "orth", "g", "rms_rows", "m")))
    selector = Graph(update=nodes(("if_matrix", "orth", "g", "identity", "m")))
    assert complexity(leafy).operators == complexity(plain).operators + 2
    assert complexity(selector).operators == 2


def test_simplified_equation_keeps_per_leaf_operators_opaque():
    # orth(g) - g and trust(g, w) / g are not 0 or w: sympy must leave them be,
    # yet it may still merge equal terms around them.
    differs = Graph(update=nodes(("sub", "orth", "g", "identity", "g")))
    ratio = Graph(update=nodes(("trust", "identity", "g", "identity", "w_0.1"),
                               ("div", "identity", "n0", "identity", "g")))
    twice = Graph(update=nodes(("add", "rms", "g", "rms", "g")))
    selected = Graph(update=nodes(("if_matrix", "identity", "g", "identity", "m")))
    assert simplified_equation(differs).startswith("d = -g + orth(g);")
    assert simplified_equation(ratio).startswith("d = trust(g, 0.1*w)/g;")
    assert simplified_equation(twice).startswith("d = 2*rms(g);")
    assert simplified_equation(selected).startswith("d = if_matrix(g, m);")


def test_a_selector_of_equal_branches_is_pruned_to_the_branch():
    # sympy leaves if_matrix(g, g) opaque; pruning sees it is g on every leaf.
    selected = Graph(update=nodes(("if_matrix", "identity", "g", "identity", "g")))
    assert symbolic.to_text(selected).startswith("d = if_matrix(g, g);")
    assert simplified_equation(selected).startswith("d = g;")


# --------------------------------------------------------------------------
# prune: parts that are constant, or equal to an input, where optimizers run

CLIPPED_CONSTANT = Graph(update=nodes(("sub", "identity", "one", "identity", "w_0.0001"),
                                      ("mul", "identity", "g", "clip_0.0001", "n0")))
"""``d = g * clip_{1e-4}(1 - 1e-4 w)``: the clip is 1e-4 for any |w| < 1e4."""
POWER_OF_CLIPPED_ONE = Graph(update=nodes(("pow", "identity", "t", "clip_1e-05", "one"),
                                          ("mul", "identity", "g", "identity", "n0")))
"""``d = g * (t/T)^{clip_{1e-5}(1)}``: ``(t/T)^{1e-5}`` is 1 within 7e-4 on [0, 1)."""
PRUNE_RANDOM = 24


@functools.cache
def _prune_graphs() -> tuple[Graph, ...]:
    """Random graphs as tests/test_random_graphs.py draws them (the element-wise nos
    space), and 6-node graphs of the nos space with the per-leaf operators."""
    rng = np.random.default_rng(606)
    half = PRUNE_RANDOM // 2
    return (*(nos.sample(rng) for _ in range(half)),
            *(SIX_NODES.sample(rng) for _ in range(PRUNE_RANDOM - half)))


def _probe_close(graph: Graph, pruned: Graph, tolerance: float = 1e-2) -> None:
    """``pruned`` makes ``graph``'s updates on the integrity check's probe (another
    probe than prune's own: other gradients, weights, leaves and T) and its
    schedule curve."""
    before, after = integrity.probe(graph), integrity.probe(pruned)
    a, b = before.updates[:, :2], after.updates[:, :2]  # the teacher-forced rows
    a = np.nan_to_num(a, posinf=1e30, neginf=-1e30)
    b = np.nan_to_num(b, posinf=1e30, neginf=-1e30)
    scale = np.max(np.abs(a), axis=-1, keepdims=True)
    assert np.all(np.abs(a - b) <= tolerance * scale + 1e-30), (
        symbolic.to_text(graph), symbolic.to_text(pruned))
    points = integrity.CURVE_POINTS  # the schedule: the curves' last points
    np.testing.assert_allclose(after.curves[-points:], before.curves[-points:], rtol=tolerance)


def test_a_clip_of_one_minus_a_tiny_multiple_of_w_is_the_constant_it_clips_to():
    assert "clip_{0.0001}(1 - 0.0001*w)" in symbolic.to_text(CLIPPED_CONSTANT)
    pruned = simplicity.prune(CLIPPED_CONSTANT)
    assert pruned.constants == (1e-4,)
    assert simplified_equation(CLIPPED_CONSTANT).startswith("d = 0.0001*g;")
    _probe_close(CLIPPED_CONSTANT, pruned, tolerance=1e-12)  # exactly the same


def test_t_over_t_total_to_a_clipped_one_is_pruned_away():
    assert "(t/T)**clip_{1e-05}(1)" in symbolic.to_text(POWER_OF_CLIPPED_ONE)
    assert simplicity.prune(POWER_OF_CLIPPED_ONE) == simplicity.prune(simple("g"))
    assert simplified_equation(POWER_OF_CLIPPED_ONE).startswith("d = g;")


def test_a_clipped_one_in_a_decay_is_pruned_to_its_constant():
    decay = nodes(("mul", "identity", "decay_linear", "clip_0.001", "one"))
    graph = Graph(update=nodes(("add", "identity", "g", "identity", "w_0.01")),
                  decays=(("w_0.01", decay),))
    pruned = simplicity.prune(graph)
    assert "clip" not in simplified_equation(graph)
    assert dict(pruned.decays)["w_0.01"].nodes[0].right == "identity"


def test_prune_keeps_what_matters_where_optimizers_run():
    # Adafactor's floor max(rms(w), 1e-3) acts on zero-initialised biases: kept.
    assert "Max(0.001" in simplified_equation(zoo.adafactor())
    # A clip that does clip gradients is kept.
    clipped = Graph(update=nodes(("mul", "clip_0.001", "g", "identity", "one")))
    assert "clip_{0.001}(g)" in simplified_equation(clipped)


def test_simplified_latex_is_the_pruned_graphs_latex():
    latex = simplicity.simplified_latex(CLIPPED_CONSTANT)
    assert latex == symbolic.to_latex(simplicity.prune(CLIPPED_CONSTANT))
    assert "clip" not in latex and "clip" in symbolic.to_latex(CLIPPED_CONSTANT)


@pytest.mark.parametrize("name", zoo.names())
def test_pruning_a_zoo_optimizer_keeps_its_updates_and_is_idempotent(name):
    graph = zoo.get(name)
    pruned = simplicity.prune(graph)
    symopt.validate(pruned)
    _probe_close(graph, pruned)
    assert simplicity.prune(pruned) == pruned
    assert pruned.hparams == graph.hparams and pruned.momentum == graph.momentum


@pytest.mark.parametrize("index", range(PRUNE_RANDOM))
def test_pruning_a_random_graph_keeps_its_updates_and_is_idempotent(index):
    graph = _prune_graphs()[index]
    pruned = simplicity.prune(graph)
    symopt.validate(pruned)
    _probe_close(graph, pruned)
    assert simplicity.prune(pruned) == pruned
    assert complexity(pruned).total <= complexity(graph).total


def test_random_graphs_have_parts_to_prune():
    # The property tests above are not vacuous: pruning finds work in random graphs.
    pruned = [simplicity.prune(g) != g for g in _prune_graphs()]
    assert sum(pruned) >= len(pruned) // 4, sum(pruned)


def test_identity_key_merges_candidates_that_prune_to_the_same_optimizer():
    assert simplicity.identity_key(POWER_OF_CLIPPED_ONE) == simplicity.identity_key(simple("g"))
    assert simplicity.identity_key(simple("g")) != simplicity.identity_key(zoo.adam())
    assert simplicity.identity_key(zoo.adam()) == simplicity.identity_key(zoo.adam())
    # Hyperparameters are part of the optimizer.
    other_lr = simple("g").with_hparams(learning_rate=0.5)
    assert simplicity.identity_key(other_lr) != simplicity.identity_key(simple("g"))


def test_prune_of_a_malformed_graph_raises_graph_error():
    with pytest.raises(symopt.GraphError):
        simplicity.prune(simple("nope"))


def test_prune_drops_a_state_the_update_never_reads():
    adam = zoo.adam()
    state = graph_lib.Node("mul", "identity", "m", "sqrt_abs", "s0")
    dead = adam.replace(update=graph_lib.Expr((state,), adam.update.root), states=("n0",))
    assert simplicity.prune(dead).states == ()
    assert simplicity.simplified_equation(dead) == simplicity.simplified_equation(adam)


def test_prune_drops_a_state_that_only_an_ignored_input_read():
    # keep_left(adam, g*s0) is adam: once inlined, nothing reads s0.
    adam = zoo.adam()
    update = graph_lib.Expr((graph_lib.Node("mul", "identity", "g", "identity", "s0"),
                             graph_lib.Node("keep_left", "identity", "adam", "identity", "n0")),
                            "n1")
    pruned = simplicity.prune(adam.replace(update=update, states=("n1",)))
    assert pruned.states == () and pruned.update.root == "adam"
