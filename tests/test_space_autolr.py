"""The autolr space: AutoLR's adaptive rules and dynamic schedules as Graphs.

Optimizers run eagerly (no jit) on a tiny pytree: each comparison costs a
fraction of a second, where a compile would cost seconds.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import integrity, zoo
from symopt.program import encode
from symopt.spaces import autolr
from symopt.spaces.autolr import AdaptiveGenome, AutoLRSpace, DynamicGenome
from symopt.spaces.base import Space

from helpers import graph_state

STEPS = 20
ADAPTIVE = AutoLRSpace()
DYNAMIC = AutoLRSpace(mode="dynamic")
SPACES = [ADAPTIVE, DYNAMIC]
MODES = ["adaptive", "dynamic"]


def _params():
    return {"kernel": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "bias": jnp.zeros(2)}


def _gradient(k: int):
    return jax.tree.map(lambda x: 0.5 * jnp.sin(3.0 * x + k) + 0.05 * k, _params())


def _updates(graph, steps: int = STEPS):
    """Eager updates of ``graph`` over a fixed gradient stream, and the final state."""
    tx = symopt.to_optax(graph, total_steps=steps)
    params = _params()
    state = tx.init(params)
    out = []
    for k in range(steps):
        u, state = tx.update(_gradient(k), state, params)
        out.append(jax.tree.map(np.asarray, u))
    return out, state


def _assert_same_updates(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8), a, b)


def _floats(data) -> set[float]:
    """Every float of a genome's JSON form."""
    if isinstance(data, float):
        return {data}
    items = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    return set().union(*(_floats(x) for x in items))


def _grid(space: AutoLRSpace) -> set[float]:
    if space.mode == "adaptive":
        return set(autolr.CONSTANT_GRID)
    lr0 = zoo.get(space.base).hparams.learning_rate
    return {lr0 * x for x in autolr.LR_GRID_FACTORS} | {float(e) for e in range(space.epochs)}


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_space_implements_the_protocol(space):
    assert isinstance(space, Space)
    assert space.name == "autolr"


# --------------------------------------------------------------------------
# Seeds: the published optimizers, exactly.


@pytest.mark.parametrize("name", autolr.ADAPTIVE_SEEDS)
def test_adaptive_seed_gives_the_zoo_updates(name):
    ours, _ = _updates(ADAPTIVE.to_graph(ADAPTIVE.seeds()[name]))
    theirs, _ = _updates(zoo.get(name))
    _assert_same_updates(ours, theirs)


def test_ades_state_holds_the_papers_alpha():
    one_minus_b1, b2 = zoo.ades().constants
    graph = ADAPTIVE.to_graph(ADAPTIVE.seeds(["ades"])["ades"])
    assert len(graph.states) == 1
    updates, state = _updates(graph, steps=3)
    alpha = np.zeros_like(_params()["kernel"])
    for k in range(3):
        g = np.asarray(_gradient(k)["kernel"])
        alpha = alpha - one_minus_b1 * (alpha + (alpha + b2) * (alpha + g))
        np.testing.assert_allclose(updates[k]["kernel"], alpha, rtol=1e-5)  # w <- w + alpha
    np.testing.assert_allclose(graph_state(state).states[0]["kernel"], alpha, rtol=1e-5)


def test_seeds_are_produced_by_from_json():
    written = {
        "mode": "adaptive",
        "alpha": "alpha",
        "beta": "beta",
        "sigma": "sigma",
        "grad": ["mul", 0.0009, ["sign", "g"]],
    }
    assert ADAPTIVE.from_json(written) == ADAPTIVE.seeds()["autolr_sign"]
    ades = json.loads(json.dumps(ADAPTIVE.to_json(ADAPTIVE.seeds()["ades"])))
    assert ades["grad"] == ["neg", "alpha"]
    assert ADAPTIVE.from_json(ades) == ADAPTIVE.seeds()["ades"]


def test_dynamic_seed_is_the_base_optimizer_with_a_constant_schedule():
    ((name, genome),) = DYNAMIC.seeds().items()
    assert name == "sgd" and genome == DynamicGenome("lr")
    graph = DYNAMIC.to_graph(genome)
    assert graph.schedule.values == (1.0,) * DYNAMIC.epochs
    _assert_same_updates(_updates(graph)[0], _updates(zoo.sgd())[0])


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_seeds_name_what_the_space_cannot_express(space):
    with pytest.raises(ValueError, match="adam"):
        space.seeds(["adam"])


@pytest.mark.parametrize("name", autolr.ADAPTIVE_SEEDS)
def test_integrity_check_treats_seeds_as_it_treats_the_zoo(name):
    ours = integrity.check(ADAPTIVE.to_graph(ADAPTIVE.seeds()[name]))
    assert ours.ok == integrity.check(zoo.get(name)).ok


# --------------------------------------------------------------------------
# Adaptive genomes as graphs.


def test_functions_update_in_place_in_order():
    """alpha reads the old beta; beta reads the new alpha; the step the new beta."""
    genome = AdaptiveGenome(
        alpha=("sub", "beta", "g"), beta=("neg", "alpha"), sigma="g", grad="beta"
    )
    graph = ADAPTIVE.to_graph(genome)
    assert autolr.live_states(genome) == ("alpha", "beta")
    assert len(graph.states) == 2
    updates, _ = _updates(graph, steps=4)
    alpha = beta = np.zeros(2)
    for k in range(4):
        g = np.asarray(_gradient(k)["bias"])
        alpha = alpha - (beta - g)
        beta = beta + alpha
        np.testing.assert_allclose(updates[k]["bias"], -beta, rtol=1e-5, atol=1e-7)


def test_graph_carries_only_the_states_the_step_reads():
    assert ADAPTIVE.to_graph(ADAPTIVE.seeds()["sgd"]).states == ()
    genome = AdaptiveGenome(
        alpha=("mul", "g", "g"),
        beta=("add", "beta", "g"),
        sigma=("mul", 0.5, "beta"),
        grad=("mul", "sigma", "g"),
    )
    assert autolr.live_states(genome) == ("beta", "sigma")
    assert len(ADAPTIVE.to_graph(genome).states) == 2


def test_a_gradient_free_step_is_a_genome_that_the_integrity_check_rejects():
    genome = AdaptiveGenome("alpha", "beta", "sigma", grad=("mul", 0.5, "alpha"))
    report = integrity.check(ADAPTIVE.to_graph(ADAPTIVE.validate(genome)))
    assert not report.ok and report.reason == "no_gradient"


# --------------------------------------------------------------------------
# Dynamic policies.


def test_policy_is_unrolled_over_the_epochs():
    space = AutoLRSpace(mode="dynamic", epochs=6, lr0=0.1)
    policy = DynamicGenome(("if", "epoch", "<", 2.0, 0.05, ("mul", "lr", 0.5)))
    rates = (0.05, 0.05, 0.025, 0.0125, 0.00625, 0.003125)
    np.testing.assert_allclose(space.learning_rates(policy), rates)
    graph = space.to_graph(policy)
    assert graph.hparams.learning_rate == 0.1 and graph.schedule.kind == "piecewise"
    np.testing.assert_allclose(graph.schedule.values, np.array(rates) / 0.1)


@pytest.mark.parametrize(
    "policy,rate",
    [
        (("sub", 0.0, "lr"), 0.0),  # negative: 0
        (("div", "lr", 0.0), 1.0),  # huge: max_lr
        (("if", "lr", ">", 0.05, ("mul", "lr", 3.0), ("add", "lr", "lr")), 1.0),
    ],
)
def test_policy_rates_are_clipped(policy, rate):
    space = AutoLRSpace(mode="dynamic", epochs=8, lr0=0.1)
    assert space.learning_rates(DynamicGenome(policy))[-1] == rate
    assert space.to_graph(DynamicGenome(policy)).schedule.values[-1] == rate / 0.1


def test_dynamic_base_optimizer_keeps_its_direction():
    space = AutoLRSpace(mode="dynamic", base="adam", lr0=3e-4, epochs=4)
    graph = space.to_graph(DynamicGenome(("mul", "lr", 0.5)))
    assert graph.update == zoo.adam().update
    assert graph.hparams.learning_rate == 3e-4
    assert graph.schedule.values == (0.5, 0.25, 0.125, 0.0625)


# --------------------------------------------------------------------------
# Variation stays in the grammar.


def _offspring(space: AutoLRSpace, seed: int, count: int = 30):
    """``(child, parents)``: samples, mutants (of seeds and samples) and crossovers."""
    rng = np.random.default_rng(seed)
    pool = list(space.seeds().values())
    out = []
    for _ in range(count):
        child = space.sample(rng)
        out.append((child, ()))
        parent = pool[int(rng.integers(len(pool)))]
        out.append((space.mutate(rng, parent), (parent,)))
        other = pool[int(rng.integers(len(pool)))]
        out.append((space.crossover(rng, parent, other), (parent, other)))
        pool.append(child)
    return out


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_sample_mutate_and_crossover_stay_in_the_grammar(space):
    grid = _grid(space)
    kind = AdaptiveGenome if space.mode == "adaptive" else DynamicGenome
    for child, parents in _offspring(space, seed=1):
        assert isinstance(child, kind)
        assert space.validate(child) is child
        inherited = set().union(*(_floats(space.to_json(p)) for p in parents))
        assert _floats(space.to_json(child)) <= grid | inherited
        if len(parents) == 1:
            assert child != parents[0]


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_every_genome_fits_the_program_shape(space):
    genomes = [*space.seeds().values(), *(c for c, _ in _offspring(space, seed=2))]
    graphs = [space.to_graph(g) for g in genomes]
    if space.mode == "adaptive":  # the largest graph: 4 trees of 7 nodes, 3 subtractions

        def full(x):
            return (
                "add",
                ("mul", ("sub", x, "g"), ("div", "g", x)),
                ("pow", ("add", x, 0.5), ("mul", "g", 0.25)),
            )

        largest = space.to_graph(
            AdaptiveGenome(full("beta"), full("sigma"), full("alpha"), full("sigma"))
        )
        assert len(largest.update.nodes) == 4 * space.max_tree_ops + 3
        graphs.append(largest)
    program = encode(graphs, space.program_shape())
    assert program.size == len(graphs)


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_variation_is_deterministic_for_a_fixed_rng(space):
    first, second = _offspring(space, seed=3, count=10), _offspring(space, seed=3, count=10)
    assert first == second


# --------------------------------------------------------------------------
# JSON.


@pytest.mark.parametrize("space", SPACES, ids=MODES)
def test_json_round_trip_is_exact(space):
    for genome in [*space.seeds().values(), *(c for c, _ in _offspring(space, seed=4))]:
        data = json.loads(json.dumps(space.to_json(genome)))
        assert space.from_json(data) == genome
        hash(space.from_json(data))


_SGD = {
    "mode": "adaptive",
    "alpha": "alpha",
    "beta": "beta",
    "sigma": "sigma",
    "grad": ["mul", 0.01, "g"],
}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"mode": "dynamic"}, "autolr genome.mode"),
        ({"grad": ["mul", 0.01, "w"]}, "autolr genome.grad[2]"),
        ({"grad": ["exp", "g"]}, "autolr genome.grad"),
        ({"grad": ["mul", 0.01]}, "autolr genome.grad"),
        ({"beta": float("inf")}, "autolr genome.beta"),
        ({"alpha": ["if", "lr", "<", 0.1, "g", "g"]}, "autolr genome.alpha"),
        (
            {"sigma": ["neg", ["neg", ["neg", ["neg", ["neg", ["neg", "g"]]]]]]},
            "autolr genome.sigma: depth",
        ),
        ({"grad": ["mul", True, "g"]}, "autolr genome.grad[1]"),
        ({"policy": "lr"}, "autolr genome: expected fields"),
    ],
)
def test_from_json_names_the_bad_field(change, field):
    with pytest.raises(ValueError) as info:
        ADAPTIVE.from_json({**_SGD, **change})
    assert str(info.value).startswith(field), str(info.value)
    assert "\n" not in str(info.value)


def test_from_json_limits_the_distinct_constants():
    many = [
        "add",
        ["add", ["add", 0.1, 0.2], ["add", 0.3, 0.4]],
        ["add", ["add", 0.5, 0.6], ["add", 0.7, 0.8]],
    ]
    with pytest.raises(ValueError, match="distinct constants"):
        ADAPTIVE.from_json({**_SGD, "alpha": many, "grad": ["mul", 0.9, "g"]})


def test_from_json_reads_a_dynamic_policy():
    data = {"mode": "dynamic", "policy": ["if", "epoch", ">=", 5, ["mul", "lr", 0.1], "lr"]}
    genome = DYNAMIC.from_json(data)
    assert genome == DynamicGenome(("if", "epoch", ">=", 5.0, ("mul", "lr", 0.1), "lr"))
    with pytest.raises(ValueError, match=r"autolr genome\.policy: bad condition"):
        DYNAMIC.from_json({**data, "policy": ["if", "w", "<", 1.0, "lr", "lr"]})


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mode": "static"}, "mode"),
        ({"max_tree_ops": 8}, "max_tree_ops"),
        ({"epochs": 17}, "epochs"),
        ({"base": "adagrad"}, "base"),
        ({"unary": ("cube",)}, "binary/unary"),
    ],
)
def test_space_fields_are_checked(kwargs, field):
    with pytest.raises(ValueError, match=f"AutoLRSpace.{field}"):
        AutoLRSpace(**kwargs)
