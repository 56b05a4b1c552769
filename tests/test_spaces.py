"""Every search space keeps the Space contract (symopt.spaces.base).

One suite, parametrised over the registered spaces (both AutoLR modes, and
nos and terms without the per-leaf operators, as the published protocols run them):
genomes drawn, mutated and crossed over map to valid graphs that fit the
space's ProgramShape, round-trip through JSON, and come out the same for the
same random seed; the zoo seeds are genomes of the space.
"""

from __future__ import annotations

import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import spaces
from symopt.program import encode
from symopt.spaces.base import Space

SPACES = {
    "nos": {},
    "nos-elementwise": {"leaf_ops": False},
    "terms": {},
    "terms-paper": {"leaf_ops": False},
    "autolr-adaptive": {"mode": "adaptive"},
    "autolr-dynamic": {"mode": "dynamic"},
}


def _space(key: str) -> Space:
    return spaces.get(key.split("-")[0], **SPACES[key])


def _evolve(space: Space, seed: int, steps: int = 120) -> list:
    """Seeds, samples and their mutated and crossed-over descendants."""
    rng = np.random.default_rng(seed)
    pool = list(space.seeds().values()) + [space.sample(rng) for _ in range(10)]
    for step in range(steps):
        a = pool[int(rng.integers(len(pool)))]
        b = pool[int(rng.integers(len(pool)))]
        child = space.crossover(rng, a, b) if step % 3 == 0 else a
        pool.append(space.mutate(rng, child, progress=step / steps))
    return pool


@pytest.fixture(scope="module", params=list(SPACES))
def evolved(request):
    space = _space(request.param)
    return space, _evolve(space, seed=0)


def test_every_space_is_registered_and_implements_the_protocol():
    assert set(spaces.names()) == {"nos", "terms", "autolr"}
    for key in SPACES:
        assert isinstance(_space(key), Space)


def test_genomes_map_to_valid_graphs_that_fit_the_program_shape(evolved):
    space, genomes = evolved
    graphs = [space.to_graph(x) for x in genomes]
    for g in graphs:
        graph_lib.validate(g)
    encode(graphs, space.program_shape())  # raises naming a graph that does not fit


def test_evolution_explores_many_distinct_optimizers(evolved):
    space, genomes = evolved
    fingerprints = {symopt.fingerprint(space.to_graph(x)) for x in genomes}
    assert len(fingerprints) >= len(genomes) // 4
    checked = [symopt.check(space.to_graph(x)).ok for x in genomes]
    assert sum(checked) >= len(genomes) // 5, "most candidates should survive the check"


def test_genomes_round_trip_through_json(evolved):
    space, genomes = evolved
    for x in genomes:
        assert space.from_json(space.to_json(x)) == x
        hash(x)  # genomes are hashable


def test_the_same_seed_gives_the_same_genomes(evolved):
    space, genomes = evolved
    assert _evolve(space, seed=0) == genomes


def test_seeds_are_zoo_optimizers_that_pass_the_check(evolved):
    space, _ = evolved
    for name, genome in space.seeds().items():
        assert name in symopt.zoo.names()
        report = symopt.check(space.to_graph(genome))
        assert report.ok, f"{name}: {report.reason}"


@pytest.mark.parametrize("key", list(SPACES))
def test_an_unknown_seed_name_is_a_clear_error(key):
    with pytest.raises(ValueError, match="no_such_optimizer"):
        _space(key).seeds(["no_such_optimizer"])


def test_an_unknown_space_or_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown space 'xyz'; known: nos, terms, autolr"):
        spaces.get("xyz")
    with pytest.raises(ValueError, match="space 'nos'.*max_nodez"):
        spaces.get("nos", max_nodez=3)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name, option, value", [
    ("nos", "p_decay", 5.0), ("nos", "p_identity", -0.1), ("nos", "p_state", NAN),
    ("nos", "log10_lr", (NAN, NAN)), ("nos", "log10_lr", (-1.0, -4.0)),
    ("nos", "log10_lr", (-4.0, INF)), ("nos", "max_nodes", 2.5), ("nos", "p_schedule_graph", "x"),
    ("terms", "p_numeric", 1.5), ("terms", "sigma", INF), ("terms", "sample_terms", (3, 1)),
    ("terms", "decay", NAN), ("autolr", "p_leaf", -0.1), ("autolr", "max_lr", NAN),
    ("autolr", "epochs", 2.0),
])
def test_a_space_option_that_cannot_work_is_a_one_line_error_naming_it(name, option, value):
    with pytest.raises(ValueError, match=rf"Space\.{option}: ") as info:
        spaces.get(name, **{option: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", spaces.names())
def test_every_space_accepts_its_defaults_and_edge_probabilities(name):
    space = spaces.get(name)
    for field in type(space).__dataclass_fields__:
        if field.startswith("p_"):
            for value in (0.0, 1.0) if name != "autolr" else (0.0,):
                spaces.get(name, **{field: value})
