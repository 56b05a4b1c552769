"""The nos space: sampling, every mutation operator, crossover, seeds, shape,
and the per-leaf operators (on by default; off, the space draws as before)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import ops, zoo
from symopt import program as program_lib
from symopt.program import encode
from symopt.spaces import nos

SPACE = nos.NosSpace()


def _lineage(seed: int, steps: int = 300) -> list[symopt.Graph]:
    """Graphs reached by repeated mutation and crossover from the zoo seeds."""
    rng = np.random.default_rng(seed)
    pool = list(SPACE.seeds().values())
    for _ in range(steps):
        child = SPACE.mutate(rng, pool[int(rng.integers(len(pool)))])
        if rng.random() < 0.3:
            child = SPACE.crossover(rng, child, pool[int(rng.integers(len(pool)))])
        pool.append(child)
    return pool


LINEAGE = _lineage(0)


def test_every_mutated_graph_is_valid_canonical_and_fits_the_program_shape():
    for g in LINEAGE:
        assert graph_lib.validate(g) is g
        assert graph_lib.canonical(g) == g
    encode(LINEAGE, SPACE.program_shape())  # raises if a graph does not fit


def test_mutation_stays_within_the_space_limits():
    for g in LINEAGE[len(nos.DEFAULT_SEEDS):]:
        assert len(g.update.nodes) <= SPACE.max_nodes
        assert len(g.constants) <= SPACE.max_constants
        assert len(g.states) <= SPACE.max_states


@pytest.mark.parametrize("mutation", dict.fromkeys(nos.MUTATIONS + nos.LEAF_MUTATIONS),
                         ids=lambda m: m.__name__)
def test_each_mutation_operator_changes_graphs_and_keeps_them_valid(mutation):
    rng = np.random.default_rng(1)
    changed = 0
    parents = [g for g in LINEAGE if len(g.update.nodes) >= 2][:60]
    for parent in parents:
        child = mutation(rng, SPACE, parent)
        if child is None:
            continue
        try:
            child = graph_lib.canonical(graph_lib.validate(child))
        except graph_lib.GraphError as e:  # pragma: no cover - the assertion says which
            pytest.fail(f"{mutation.__name__} made an invalid graph: {e}")
        changed += child != parent
    assert changed >= 10


def test_mutate_returns_a_different_graph():
    rng = np.random.default_rng(2)
    for parent in LINEAGE[:100]:
        assert SPACE.mutate(rng, parent) != parent


def test_mutation_reaches_decays_states_schedules_and_momentum():
    assert any(g.decays for g in LINEAGE)
    assert any(g.schedule.kind == "graph" for g in LINEAGE)
    assert len({g.schedule.kind for g in LINEAGE}) >= 4
    assert {g.momentum for g in LINEAGE} == set(graph_lib.MOMENTUM_TYPES)


def test_a_walk_of_mutations_grows_deep_graphs():
    rng = np.random.default_rng(4)
    g, sizes = zoo.sgd(), []
    for _ in range(200):
        g = SPACE.mutate(rng, g)
        sizes.append(len(g.update.nodes))
    assert max(sizes) == SPACE.max_nodes


def test_crossover_takes_the_update_from_one_parent_and_hparams_from_either():
    rng = np.random.default_rng(3)
    a, b = zoo.adam(learning_rate=0.1, beta1=0.5), zoo.lion(weight_decay=0.0)
    a, b = graph_lib.canonical(a), graph_lib.canonical(b)
    for _ in range(50):
        child = SPACE.crossover(rng, a, b)
        assert child.update in (a.update, b.update)
        assert child.constants == (a if child.update == a.update else b).constants
        for f in dataclasses.fields(symopt.Hyperparams):
            assert getattr(child.hparams, f.name) in (
                getattr(a.hparams, f.name), getattr(b.hparams, f.name))


def test_same_seed_same_lineage():
    assert _lineage(0, steps=50) == LINEAGE[: len(nos.DEFAULT_SEEDS) + 50]


def test_seeds_are_the_zoo_graphs():
    seeds = SPACE.seeds(["adam", "lion"])
    assert seeds["adam"] == graph_lib.canonical(zoo.adam())
    assert seeds["lion"] == graph_lib.canonical(zoo.lion())
    with pytest.raises(ValueError, match="unknown zoo optimizers.*'nope'"):
        SPACE.seeds(["nope"])


def test_json_round_trip():
    for g in LINEAGE[:50]:
        assert SPACE.from_json(SPACE.to_json(g)) == g


@pytest.mark.parametrize("bad, field", [
    ({"max_nodes": 0}, "min_nodes/max_nodes"),
    ({"binary": ("add", "bogus")}, "binary"),
    ({"max_constants": 99}, "max_constants"),
    ({"schedule_kinds": ("cosine", "wobbly")}, "schedule_kinds"),
])
def test_bad_space_config_names_the_field(bad, field):
    with pytest.raises(ValueError, match=f"NosSpace.{field}"):
        nos.NosSpace(**bad)


def test_sample_checked_returns_only_graphs_that_pass_the_check_and_replays_by_seed():
    rng = np.random.default_rng(3)
    # Plain sampling draws some graphs the check rejects, so the filter matters.
    assert not all(symopt.check(nos.sample(rng)).ok for _ in range(40))
    graphs = nos.sample_checked(np.random.default_rng(1), 12)
    assert len(graphs) == 12 and all(symopt.check(g).ok for g in graphs)
    assert nos.sample_checked(np.random.default_rng(1), 12) == graphs


# --------------------------------------------------------------------------
# The per-leaf operators (NosSpace.leaf_ops).


def _scalar_operators(graph: symopt.Graph) -> set[str]:
    exprs = [e for _, e in graph.decays]
    if graph.schedule.expr is not None:
        exprs.append(graph.schedule.expr)
    return {name for e in exprs for n in e.nodes for name in (n.op, n.left, n.right)}


def _update_operators(graph: symopt.Graph) -> set[str]:
    return {name for n in graph.update.nodes for name in (n.op, n.left, n.right)}


# Many decays and graph schedules, so that the scalar sub-graphs are drawn often.
SCALAR_HEAVY = {"p_decay": 0.6, "p_schedule_graph": 0.6}


def test_the_default_space_draws_every_per_leaf_operator_in_update_graphs_only():
    space = nos.NosSpace(**SCALAR_HEAVY)
    rng = np.random.default_rng(0)
    graphs = [space.sample(rng) for _ in range(200)]
    pool = list(graphs)
    for i in range(600):  # every mutation, crossover too
        child = space.mutate(rng, pool[int(rng.integers(len(pool)))])
        if i % 4 == 0:
            child = space.crossover(rng, child, pool[int(rng.integers(len(pool)))])
        pool.append(child)
    sampled = set().union(*map(program_lib.uses_leaf_ops, graphs))
    mutated = set().union(*map(program_lib.uses_leaf_ops, pool[len(graphs):]))
    assert sampled == mutated == ops.LEAF_OPERATORS
    assert sum(bool(program_lib.uses_leaf_ops(g)) for g in graphs) > len(graphs) // 4
    assert sum(bool(g.decays) for g in pool) > len(pool) // 4
    assert sum(g.schedule.kind == "graph" for g in pool) > len(pool) // 10
    for g in pool:
        # (Not canonical(g) == g: canonical's constant numbering is not always
        # idempotent where decays share constants, with or without leaf_ops.)
        assert graph_lib.validate(g) is g and graph_lib.validate(graph_lib.canonical(g))
        assert not _scalar_operators(g) & ops.LEAF_OPERATORS, g
    shape = space.program_shape()
    assert shape.leaf_ops
    encode(pool, shape)  # raises naming a graph that does not fit


def test_mutations_that_draw_an_operator_reach_the_per_leaf_operators():
    space, rng = nos.NosSpace(), np.random.default_rng(1)
    parents = [g for g in LINEAGE if not program_lib.uses_leaf_ops(g)][:80]
    by_name = {m.__name__: m for m in nos.MUTATIONS}
    for mutation in (by_name["_change_op"], by_name["_insert_node"]):
        reached = set()
        for parent in parents * 3:
            child = mutation(rng, space, parent)
            if child is not None:
                reached |= _update_operators(child) - _update_operators(parent)
        assert reached & ops.LEAF_OPERATORS == ops.LEAF_OPERATORS, mutation.__name__


(WRAP,) = nos.LEAF_MUTATIONS  # keep_left(op(x), x)


def test_wrapping_puts_a_per_leaf_operator_over_a_whole_subexpression():
    space, rng = nos.NosSpace(), np.random.default_rng(3)
    adam = space.seeds(["adam"])["adam"]  # the update is the operand ``adam`` itself
    reached = set()
    for _ in range(60):
        child = graph_lib.canonical(graph_lib.validate(WRAP(rng, space, adam)))
        (node,) = child.update.nodes
        assert (node.op, node.a, node.right, node.b) == ("keep_left", "adam", "identity", "adam")
        reached.add(node.left)
    assert reached == {u for u in space.update_unary if ops.UNARY[u].leaf}
    for parent in [g for g in LINEAGE if len(g.update.nodes) >= 2][:40]:
        child = WRAP(rng, space, parent)
        assert len(child.update.nodes) == len(parent.update.nodes) + 1
        assert _update_operators(child) - _update_operators(parent) <= ops.LEAF_OPERATORS | {
            "keep_left", "identity"}


def test_only_a_space_with_the_per_leaf_operators_and_wrap_draws_the_wrapping_mutation():
    assert nos.NosSpace(wrap=True).mutations == nos.MUTATIONS + nos.LEAF_MUTATIONS
    assert nos.NosSpace().mutations == nos.MUTATIONS  # so recorded searches resume alike
    assert nos.NosSpace(leaf_ops=False, wrap=True).mutations == nos.MUTATIONS
    with pytest.raises(ValueError, match="wrap"):
        nos.NosSpace(wrap="yes")
    # With no per-leaf unary to draw it makes nothing (mutate then draws again).
    space = nos.NosSpace(unary=("identity", "sign"))
    assert WRAP(np.random.default_rng(0), space, LINEAGE[0]) is None


def test_leaf_ops_off_draws_no_per_leaf_operator_and_compiles_none():
    space = nos.NosSpace(leaf_ops=False, **SCALAR_HEAVY)
    assert space.update_unary == tuple(n for n in ops.UNARY if not ops.UNARY[n].leaf)
    assert space.update_binary == tuple(n for n in ops.BINARY if not ops.BINARY[n].leaf)
    rng = np.random.default_rng(2)
    pool = [space.sample(rng) for _ in range(100)]
    pool += [space.mutate(rng, pool[int(rng.integers(len(pool)))]) for _ in range(300)]
    assert not any(program_lib.uses_leaf_ops(g) for g in pool)
    shape = space.program_shape()
    assert not shape.leaf_ops
    encode(pool, shape)


def _stream_digest(space: nos.NosSpace) -> str:
    """A digest of 40 samples, 200 mutations (every third crossed over) and 10
    module-level samples drawn from ``space`` with seed 11."""
    rng = np.random.default_rng(11)
    pool = [space.sample(rng) for _ in range(40)]
    for i in range(200):
        child = space.mutate(rng, pool[int(rng.integers(len(pool)))])
        if i % 3 == 0:
            child = space.crossover(rng, child, pool[int(rng.integers(len(pool)))])
        pool.append(child)
    pool += [nos.sample(rng, space) for _ in range(10)]
    text = json.dumps([graph_lib.to_dict(g) for g in pool], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# Digests of the graphs the space drew before it had the leaf_ops option (at
# commit 6c54608, whose default left the per-leaf operators out): with it off,
# the same seed must draw the same graphs, so that a published protocol
# (experiments/nos_joint.py) stays as published.
BEFORE_LEAF_OPS = {
    "defaults": "055a2d463adfe3446810bdda613061126a242fa2dde7dad9a3dff84db6052c30",
    "nos_joint": "c41ea89e860cf3a1a808fc6cc489cdaadc2259001dd313716647c2138dafcac2",
    "scalar_heavy": "1e421ebec1f8ec5b4652644852b7f4a51094de21f43ad4ab5f9e76d7e39d7dbb",
}
BEFORE_OPTIONS = {
    "defaults": {},
    "nos_joint": {"max_nodes": 8, "p_decay": 0.3, "p_schedule_graph": 0.2},
    "scalar_heavy": {"max_nodes": 5, "p_decay": 0.5, "p_schedule_graph": 0.5},
}


@pytest.mark.parametrize("case", list(BEFORE_LEAF_OPS))
def test_leaf_ops_off_draws_the_graphs_the_space_drew_before(case):
    space = nos.NosSpace(leaf_ops=False, **BEFORE_OPTIONS[case])
    assert _stream_digest(space) == BEFORE_LEAF_OPS[case]


def test_the_module_samplers_draw_the_element_wise_graphs_by_default():
    # The engine's tests and benchmarks draw from them, encoded without leaf_ops.
    assert nos.ELEMENT_WISE == nos.NosSpace(leaf_ops=False)
    assert [nos.sample(np.random.default_rng(i)) for i in range(5)] == [
        nos.sample(np.random.default_rng(i), nos.ELEMENT_WISE) for i in range(5)]


def test_the_published_protocol_turns_the_per_leaf_operators_off():
    config = _experiment_config("nos_joint")
    space = symopt.spaces.get(config.space.name, **config.space.options.to_dict())
    assert space.leaf_ops is False and not space.program_shape().leaf_ops


def _experiment_config(name: str):
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _leafy_zoo_graph() -> symopt.Graph:
    """A Muon-like graph: orthogonalised momentum on matrices, Adam elsewhere."""
    return graph_lib.canonical(
        zoo.adam().replace(update=graph_lib.nodes(("if_matrix", "orth", "m", "identity", "adam"))))


def test_seeds_with_per_leaf_operators_need_leaf_ops(monkeypatch):
    monkeypatch.setattr(zoo, "names", lambda: [*_ZOO_NAMES, "leafy"])
    real_get = zoo.get
    monkeypatch.setattr(zoo, "get", lambda n: _leafy_zoo_graph() if n == "leafy" else real_get(n))
    assert nos.NosSpace().seeds(["leafy"])["leafy"] == _leafy_zoo_graph()
    off = nos.NosSpace(leaf_ops=False)
    with pytest.raises(ValueError, match=r"'leafy'.*leaf_ops=False"):
        off.seeds(["adam", "leafy"])
    assert "leafy" not in off.expressible_seeds()
    assert "leafy" in nos.NosSpace().expressible_seeds()
    assert not off.program_shape().leaf_ops  # sized without it


_ZOO_NAMES = tuple(zoo.names())


def test_the_program_shape_holds_every_zoo_seed_the_space_accepts():
    for space in (nos.NosSpace(max_nodes=2, max_constants=0, max_states=0), SPACE,
                  nos.NosSpace(leaf_ops=False)):
        names = space.expressible_seeds()
        seeds = space.seeds(names)
        encode(list(seeds.values()), space.program_shape())  # muon, lamb, ... once in the zoo
        if space.leaf_ops:
            assert names == list(zoo.names())


def test_the_program_shape_grows_for_extra_graphs():
    space = nos.NosSpace(max_nodes=2, leaf_ops=False)
    chain = graph_lib.nodes(*[("add", "orth" if i == 0 else "identity",
                               "m" if i == 0 else f"n{i - 1}", "identity", f"c{i % 3}")
                              for i in range(9)])
    big = zoo.sgd().replace(update=chain, constants=(0.1, 0.2, 0.3))
    big = big.replace(decays=(("m", graph_lib.nodes(*[
        ("mul", "identity", "t" if i == 0 else f"n{i - 1}", "identity", "one")
        for i in range(3)])),))
    shape = space.program_shape([big])
    assert shape.leaf_ops and shape.max_nodes == 9 and shape.max_decay_nodes == 3
    encode([big], shape)


@pytest.mark.parametrize("bad, field", [
    ({"unary": ("orth", "rms"), "leaf_ops": False}, "unary"),
    ({"binary": ("trust",)}, "binary"),
    ({"unary": ("drop_0.1", "orth")}, "unary"),
    ({"leaf_ops": "yes"}, "leaf_ops"),
])
def test_a_vocabulary_without_element_wise_operators_names_the_field(bad, field):
    with pytest.raises(ValueError, match=f"NosSpace.{field}"):
        nos.NosSpace(**bad)


def test_canonical_keeps_the_constants_of_a_decay_that_only_the_schedule_reads():
    # A decay on t, which only the graph schedule reads, is kept by canonical;
    # its constant was dropped (an invalid graph that mutate then raised on).
    graph = symopt.Graph(
        update=graph_lib.nodes(("add", "identity", "g", "identity", "m")),
        decays=(("t", graph_lib.nodes(("add", "identity", "c0", "tanh", "decay_linear"))),),
        schedule=symopt.Schedule(kind="graph",
                                 expr=graph_lib.nodes(("max", "identity", "t", "identity", "t"))),
        constants=(-1.1341,),
    )
    canon = graph_lib.canonical(graph)
    assert graph_lib.validate(canon) is canon and canon.constants == (-1.1341,)
    assert graph_lib.canonical(canon) == canon
    SPACE.mutate(np.random.default_rng(0), canon)


@pytest.mark.parametrize("name", ["digits", "mnist1d", "cifar10", "own_task"])
def test_our_nos_configs_name_leaf_ops_so_the_command_line_can_turn_it_off(name):
    config = _experiment_config(name)
    assert config.space.options.leaf_ops is True
    config.space.options.leaf_ops = False  # as --config.space.options.leaf_ops=False sets it
    space = symopt.spaces.get(config.space.name, **config.space.options.to_dict())
    assert not space.program_shape().leaf_ops
