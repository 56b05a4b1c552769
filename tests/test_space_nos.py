"""The nos space: sampling, every mutation operator, crossover, seeds, shape."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import zoo
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


@pytest.mark.parametrize("mutation", dict.fromkeys(nos.MUTATIONS), ids=lambda m: m.__name__)
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
