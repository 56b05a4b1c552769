"""Specifications of the searchers (symopt.searchers), on a toy space.

The toy space's genomes are tuples of three floats; the fitness is the
negative squared distance to a known optimum, so every test is pure
Python/NumPy and fast, and does not depend on the real search spaces.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import searchers, spaces
from symopt.searchers import (
    ORIGINS,
    GeneticAlgorithm,
    ParticleGA,
    RandomSearch,
    RegularizedEvolution,
    clean_fitness,
    rank,
    tournament,
)
from symopt.searchers.evolution import niche_key

OPTIMUM = np.array([1.0, -2.0, 0.5])


class ToySpace:
    """Genomes are 3-tuples of floats; records every ``progress`` mutate sees."""

    name = "toy"
    zoo = {"zero": (0.0, 0.0, 0.0), "far": (4.0, 4.0, 4.0), "near": (1.5, -1.5, 0.0)}

    def __init__(self):
        self.progress_seen: list[float] = []

    def sample(self, rng):
        return tuple(float(x) for x in rng.uniform(-5.0, 5.0, size=3))

    def mutate(self, rng, genome, *, progress=0.0):
        self.progress_seen.append(progress)
        child = list(genome)
        i = int(rng.integers(3))
        child[i] += float(rng.normal()) * (1.0 - 0.5 * progress)
        return tuple(child)

    def crossover(self, rng, a, b):
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))

    def seeds(self, names=None):
        names = ("zero", "far") if names is None else tuple(names)
        unknown = [n for n in names if n not in self.zoo]
        if unknown:
            raise ValueError(f"toy space: unknown zoo optimizers {unknown}")
        return {n: self.zoo[n] for n in names}


def toy_fitness(candidates):
    genomes = np.array([c.genome for c in candidates])
    return -np.sum((genomes - OPTIMUM) ** 2, axis=1)


def half_rejected_fitness(candidates):
    """-inf where the first coordinate is below 0.5, NaN where it is above 3."""
    fitness = toy_fitness(candidates)
    first = np.array([c.genome[0] for c in candidates])
    fitness[first < 0.5] = -np.inf
    fitness[first > 3.0] = np.nan
    return fitness


def run(searcher, *, seed=0, rounds=10, fitness_fn=toy_fitness):
    """ask/tell ``rounds`` times; returns the final state and [(candidates, fitness)]."""
    state = searcher.init(seed)
    history = []
    for _ in range(rounds):
        state, candidates = searcher.ask(state)
        fitness = np.asarray(fitness_fn(candidates), dtype=float)
        history.append((candidates, fitness))
        state = searcher.tell(state, candidates, fitness)
    return state, history


SEARCHERS = {
    "ga": lambda space: GeneticAlgorithm(
        space, population_size=16, generations=10, tournament_size=3, elites=2
    ),
    "ga_partial_rates": lambda space: GeneticAlgorithm(
        space, population_size=16, generations=10, elites=1, crossover_rate=0.5, mutation_rate=0.5
    ),
    "particle_ga": lambda space: ParticleGA(
        space, population_size=6, children_per_particle=4, generations=10
    ),
    "regularized_evolution": lambda space: RegularizedEvolution(
        space, population_size=16, sample_size=4, batch_size=8, generations=10
    ),
    "regularized_evolution_warm": lambda space: RegularizedEvolution(
        space,
        population_size=16,
        sample_size=4,
        batch_size=8,
        seed_names=("near",),
        init_fill="mutate",
    ),
    "random": lambda space: RandomSearch(space, population_size=16),
}
EVOLVING = [name for name in SEARCHERS if name != "random"]


@pytest.fixture(params=list(SEARCHERS))
def searcher(request):
    return SEARCHERS[request.param](ToySpace())


@pytest.fixture(params=EVOLVING)
def evolving(request):
    return SEARCHERS[request.param](ToySpace())


def all_told(history):
    return [
        (c, float(f))
        for candidates, fitness in history
        for c, f in zip(candidates, fitness, strict=True)
    ]


# -- the contract, for every searcher ---------------------------------------------------------


def test_is_a_searcher(searcher):
    assert isinstance(searcher, searchers.Searcher)


def test_children_per_generation_is_what_each_later_ask_returns(searcher):
    state = searcher.init(0)
    for generation in range(3):
        state, candidates = searcher.ask(state)
        if generation:
            assert len(candidates) == searcher.children_per_generation
        state = searcher.tell(state, candidates, np.linspace(0.0, 1.0, len(candidates)))


def test_improves_fitness_over_generations(searcher):
    _, history = run(searcher, rounds=15)
    first = np.max(history[0][1])
    best_so_far = max(np.max(f) for _, f in history)
    assert best_so_far > first
    if searcher.__class__ is not RandomSearch:
        assert best_so_far > -0.05  # near the optimum, squared distance < 0.05


def test_same_seed_same_candidates_and_ids(searcher):
    state_a, history_a = run(searcher, seed=3, rounds=6)
    state_b, history_b = run(dataclasses.replace(searcher, space=ToySpace()), seed=3, rounds=6)
    assert [c for c, _ in all_told(history_a)] == [c for c, _ in all_told(history_b)]
    assert state_a == state_b


def test_different_seed_different_candidates(searcher):
    _, history_a = run(searcher, seed=1, rounds=2)
    _, history_b = run(searcher, seed=2, rounds=2)
    genomes = lambda h: [c.genome for c, _ in all_told(h)]  # noqa: E731
    assert genomes(history_a) != genomes(history_b)


def test_replay_with_recorded_fitness_reproduces_final_state(searcher):
    noise = np.random.default_rng(123)
    noisy = lambda cs: toy_fitness(cs) + noise.normal(size=len(cs))  # noqa: E731
    final, history = run(searcher, seed=5, rounds=6, fitness_fn=noisy)

    state = searcher.init(5)
    for recorded_candidates, recorded_fitness in history:
        state, candidates = searcher.ask(state)
        assert candidates == recorded_candidates
        state = searcher.tell(state, candidates, recorded_fitness)
    assert state == final


def test_resume_from_an_intermediate_state(searcher):
    final, _ = run(searcher, seed=7, rounds=6)
    state, _ = run(searcher, seed=7, rounds=3)
    for _ in range(3):
        state, candidates = searcher.ask(state)
        state = searcher.tell(state, candidates, toy_fitness(candidates))
    assert state == final


def test_ids_unique_consecutive_and_parents_earlier(searcher):
    _, history = run(searcher, rounds=8)
    seen = set()
    next_id = 0
    for generation, (candidates, _) in enumerate(history):
        for c in candidates:
            assert c.id == next_id
            next_id += 1
            assert c.origin in ORIGINS
            assert c.generation == generation
            assert all(p in seen or p < c.id for p in c.parents)
            assert all(p < c.id for p in c.parents)
            assert (c.origin in ("seed", "sample")) == (c.parents == ())
        seen.update(c.id for c in candidates)


def test_first_population_starts_with_the_seeds(searcher):
    state, candidates = searcher.ask(searcher.init(0))
    seeds = ToySpace().seeds(searcher.seed_names)
    assert [c.genome for c in candidates[: len(seeds)]] == list(seeds.values())
    assert all(c.origin == "seed" for c in candidates[: len(seeds)])
    assert len(candidates) == searcher.population_size


def test_no_seeds_when_seed_names_is_empty(searcher):
    searcher = dataclasses.replace(searcher, seed_names=())
    _, candidates = searcher.ask(searcher.init(0))
    assert all(c.origin != "seed" for c in candidates)


def test_unknown_seed_name_raises(searcher):
    searcher = dataclasses.replace(searcher, seed_names=("no_such_optimizer",))
    with pytest.raises(ValueError, match="no_such_optimizer"):
        searcher.ask(searcher.init(0))


def test_best_is_the_best_told_with_ties_to_lower_id(searcher):
    assert searcher.best(searcher.init(0)) is None
    tied = lambda cs: np.round(toy_fitness(cs), 0)  # noqa: E731
    state, history = run(searcher, rounds=5, fitness_fn=tied)
    told = all_told(history)
    top = max(f for _, f in told)
    expected = min((c for c, f in told if f == top), key=lambda c: c.id)
    assert searcher.best(state) == (expected, top)


def test_nan_counts_as_minus_inf(searcher):
    state, candidates = searcher.ask(searcher.init(0))
    state = searcher.tell(state, candidates, [np.nan] * len(candidates))
    assert all(f == -np.inf for f in state.fitness)
    assert searcher.best(state)[1] == -np.inf


def test_ask_twice_without_tell_raises(searcher):
    state, _ = searcher.ask(searcher.init(0))
    with pytest.raises(ValueError, match="not told"):
        searcher.ask(state)


def test_tell_checks_candidates_and_fitness(searcher):
    state0 = searcher.init(0)
    with pytest.raises(ValueError, match="nothing was asked"):
        searcher.tell(state0, [], [])
    state, candidates = searcher.ask(state0)
    with pytest.raises(ValueError, match="fitness values"):
        searcher.tell(state, candidates, np.zeros(len(candidates) + 1))
    with pytest.raises(ValueError, match="pending"):
        searcher.tell(state, candidates[::-1], np.zeros(len(candidates)))


def test_invalid_seed_raises(searcher):
    with pytest.raises(ValueError, match="seed"):
        searcher.init(-1)


def test_minus_inf_never_a_parent_while_finite_exist(evolving):
    _, history = run(evolving, rounds=8, fitness_fn=half_rejected_fitness)
    fitness = {c.id: f for c, f in all_told(history)}
    assert any(np.isfinite(f) for f in fitness.values())
    assert any(not np.isfinite(f) for f in fitness.values())
    for candidates, _ in history[1:]:
        for c in candidates:
            assert all(np.isfinite(fitness[p]) for p in c.parents), c


# -- genetic algorithm ------------------------------------------------------------------------


def test_ga_elites_are_kept_and_not_asked_again():
    ga = GeneticAlgorithm(ToySpace(), population_size=10, generations=5, elites=3)
    state, _ = run(ga, rounds=1)
    for _ in range(4):
        order = rank(state.fitness, [c.id for c in state.population])[:3]
        elites = [(state.population[i], state.fitness[i]) for i in order]
        state, candidates = ga.ask(state)
        assert len(candidates) == 7
        assert not {c.id for c in candidates} & {c.id for c, _ in elites}
        fitness = toy_fitness(candidates)
        state = ga.tell(state, candidates, fitness)
        assert list(zip(state.population[:3], state.fitness[:3], strict=True)) == elites
        assert list(state.population[3:]) == candidates


def test_ga_children_come_from_crossover_then_mutation():
    space = ToySpace()
    ga = GeneticAlgorithm(space, population_size=12, generations=4, elites=2)
    _, history = run(ga, rounds=3)
    children = [c for candidates, _ in history[1:] for c in candidates]
    assert all(c.origin == "crossover" and 1 <= len(c.parents) <= 2 for c in children)
    no_crossover = dataclasses.replace(ga, crossover_rate=0.0)
    _, history = run(no_crossover, rounds=3)
    children = [c for candidates, _ in history[1:] for c in candidates]
    assert all(c.origin == "mutation" and len(c.parents) == 1 for c in children)


def test_ga_mutation_progress_decays_with_generation():
    space = ToySpace()
    ga = GeneticAlgorithm(space, population_size=6, generations=4, elites=1)
    state, _ = run(ga, rounds=1)
    for generation in range(1, 4):
        space.progress_seen.clear()
        state, candidates = ga.ask(state)
        assert set(space.progress_seen) == {(generation - 1) / 4}
        state = ga.tell(state, candidates, toy_fitness(candidates))


def test_ga_preset_has_the_papers_settings():
    ga = GeneticAlgorithm.marfinetz(ToySpace())
    assert (ga.population_size, ga.generations, ga.tournament_size, ga.elites) == (50, 50, 4, 3)
    assert (ga.crossover_rate, ga.mutation_rate) == (1.0, 1.0)
    assert ga.seed_names == ("sgd", "adam", "adamw", "rmsprop")
    assert GeneticAlgorithm.marfinetz(ToySpace(), population_size=8).population_size == 8


# -- particle GA ------------------------------------------------------------------------------


def test_particle_ga_asks_all_children_at_once_and_moves_only_to_better():
    pga = ParticleGA(ToySpace(), population_size=5, children_per_particle=3)
    state, _ = run(pga, rounds=1)
    moved = stayed = 0
    for _ in range(6):
        before = list(zip(state.population, state.fitness, strict=True))
        state, candidates = pga.ask(state)
        assert len(candidates) == 15
        fitness = toy_fitness(candidates)
        state = pga.tell(state, candidates, fitness)
        for i, (particle, current) in enumerate(before):
            block = list(
                zip(candidates[3 * i : 3 * i + 3], fitness[3 * i : 3 * i + 3], strict=True)
            )
            assert all(c.parents == (particle.id,) for c, _ in block)
            child, child_fitness = max(block, key=lambda cf: (cf[1], -cf[0].id))
            if child_fitness > current:
                assert (state.population[i], state.fitness[i]) == (child, child_fitness)
                moved += 1
            else:
                assert (state.population[i], state.fitness[i]) == (particle, current)
                stayed += 1
    assert moved and stayed


def test_particle_ga_equal_child_does_not_move():
    pga = ParticleGA(ToySpace(), population_size=2, children_per_particle=2)
    state, _ = run(pga, rounds=1, fitness_fn=lambda cs: np.zeros(len(cs)))
    before = state.population
    state, candidates = pga.ask(state)
    state = pga.tell(state, candidates, np.zeros(len(candidates)))
    assert state.population == before


def test_particle_ga_rejected_particle_samples_afresh():
    pga = ParticleGA(ToySpace(), population_size=3, children_per_particle=2, seed_names=())
    state, candidates = pga.ask(pga.init(0))
    state = pga.tell(state, candidates, [1.0, -np.inf, np.nan])
    state, children = pga.ask(state)
    assert [c.origin for c in children] == ["mutation"] * 2 + ["sample"] * 4


# -- regularized evolution --------------------------------------------------------------------


def test_aging_evolution_removes_the_oldest():
    evo = RegularizedEvolution(ToySpace(), population_size=8, sample_size=3, batch_size=3)
    state = evo.init(0)
    told = []
    for _ in range(6):
        state, candidates = evo.ask(state)
        state = evo.tell(state, candidates, toy_fitness(candidates))
        told.extend(candidates)
        assert list(state.population) == told[-8:]
        assert len(state.fitness) == len(state.population)


def test_aging_evolution_kills_the_best_when_it_is_oldest():
    evo = RegularizedEvolution(
        ToySpace(), population_size=4, sample_size=2, batch_size=2, seed_names=()
    )
    state, candidates = evo.ask(evo.init(0))
    state = evo.tell(state, candidates, [100.0, 0.0, 0.0, 0.0])
    for _ in range(2):
        state, candidates = evo.ask(state)
        state = evo.tell(state, candidates, np.zeros(len(candidates)))
    assert 100.0 not in state.fitness
    assert evo.best(state)[1] == 100.0


def test_aging_evolution_warm_start_mutates_the_seeds():
    evo = RegularizedEvolution(
        ToySpace(),
        population_size=6,
        sample_size=2,
        batch_size=2,
        seed_names=("near",),
        init_fill="mutate",
    )
    _, candidates = evo.ask(evo.init(0))
    assert candidates[0].origin == "seed" and candidates[0].genome == ToySpace.zoo["near"]
    assert all(c.origin == "mutation" and c.parents == (0,) for c in candidates[1:])


class NichedToySpace(ToySpace):
    """Two niches: the sign of the first coordinate."""

    def niche(self, genome):
        return genome[0] > 0


def test_aging_evolution_niche_holds_at_most_niche_size_members():
    evo = RegularizedEvolution(NichedToySpace(), population_size=8, sample_size=3,
                               batch_size=4, niche_size=3, seed_names=())
    state = evo.init(0)
    for _ in range(6):
        state, candidates = evo.ask(state)
        state = evo.tell(state, candidates, toy_fitness(candidates))
        if state.generation > 1:
            counts = collections.Counter(c.genome[0] > 0 for c in state.population)
            assert max(counts.values()) <= 3, counts


def test_aging_evolution_overfull_niche_loses_its_worst_first():
    evo = RegularizedEvolution(NichedToySpace(), population_size=4, sample_size=2,
                               batch_size=2, niche_size=2, seed_names=())
    state, candidates = evo.ask(evo.init(0))
    state = evo.tell(state, candidates, [5.0, 1.0, 2.0, 3.0])
    state, children = evo.ask(state)
    state = evo.tell(state, children, [4.0, 0.0])
    members = state.population + ()
    for niche in (True, False):
        fitness = sorted((f for c, f in zip(members, state.fitness, strict=True)
                          if (c.genome[0] > 0) == niche), reverse=True)
        told = sorted((f for c, f in zip(candidates + children, [5.0, 1.0, 2.0, 3.0, 4.0, 0.0],
                                         strict=True) if (c.genome[0] > 0) == niche),
                      reverse=True)
        assert fitness == told[:2]


def test_structure_key_ignores_hyperparameters_but_not_the_program():
    space = spaces.get("nos")
    adamw = space.seeds(["adamw"])["adamw"]
    retuned = adamw.replace(hparams=dataclasses.replace(
        adamw.hparams, learning_rate=0.03, beta1=0.8, weight_decay=0.1),
        schedule=graph_lib.Schedule(kind="cosine", warmup_steps=10))
    assert niche_key(space, retuned) == niche_key(space, adamw)
    assert niche_key(space, space.seeds(["lion"])["lion"]) != niche_key(space, adamw)


def test_structure_key_ignores_a_state_the_update_never_reads():
    adam = spaces.get("nos").seeds(["adam"])["adam"]
    state = graph_lib.Node("mul", "identity", "m", "sqrt_abs", "s0")
    dead = adam.replace(update=graph_lib.Expr((state,), "adam"), states=("n0",))
    read = adam.replace(update=graph_lib.Expr(
        (state, graph_lib.Node("add", "identity", "adam", "identity", "s0")), "n1"),
        states=("n0",))
    assert graph_lib.structure_key(dead) == graph_lib.structure_key(adam)
    assert graph_lib.structure_key(read) != graph_lib.structure_key(adam)


class GridToySpace(ToySpace):
    """Integer genomes: a mutation moves one coordinate by 1 to 3 either way."""

    def sample(self, rng):
        return tuple(int(x) for x in rng.integers(-3, 4, size=3))

    def mutate(self, rng, genome, *, progress=0.0):
        child = list(genome)
        child[int(rng.integers(3))] += int(rng.choice([-3, -2, -1, 1, 2, 3]))
        return tuple(child)


def _repeats(retries: int) -> int:
    """Children that repeat a living member or a sibling, over 8 asks."""
    evo = RegularizedEvolution(GridToySpace(), population_size=8, sample_size=8, batch_size=6,
                               retries=retries, seed_names=())
    state, repeats = evo.init(0), 0
    for _ in range(8):
        living = {c.genome for c in state.population}
        state, children = evo.ask(state)
        genomes = [c.genome for c in children]
        repeats += sum(g in living for g in genomes) + len(genomes) - len(set(genomes))
        state = evo.tell(state, children, toy_fitness(children))
    return repeats


def test_aging_evolution_retries_children_that_repeat_a_member_or_a_sibling():
    # The best parent wins every tournament of the whole population and has
    # 18 neighbours: without retries its children repeat each other.
    without, with_retries = _repeats(0), _repeats(20)
    assert without >= 5 and with_retries == 0, (without, with_retries)


def test_aging_evolution_retries_children_that_only_change_dead_code():
    space = spaces.get("nos", max_nodes=8)
    adam = space.seeds(["adam"])["adam"]
    state = graph_lib.Node("mul", "identity", "m", "sqrt_abs", "s0")
    dead = adam.replace(update=graph_lib.Expr((state,), "adam"), states=("n0",))
    evo = RegularizedEvolution(space, population_size=4, sample_size=4, batch_size=4,
                               retries=20, seed_names=())
    first = evo.init(0)
    first, asked = evo.ask(first)
    asked = [dataclasses.replace(c, genome=dead if i == 0 else c.genome)
             for i, c in enumerate(asked)]
    first = dataclasses.replace(first, pending=tuple(asked))
    first = evo.tell(first, asked, [10.0, -np.inf, -np.inf, -np.inf])  # dead wins every draw
    _, children = evo.ask(first)
    prints = [symopt.fingerprint(space.to_graph(c.genome)) for c in children]
    assert symopt.fingerprint(dead) not in prints and len(set(prints)) == len(prints)


def test_behaviour_niches_put_every_re_tuning_of_one_zoo_optimizer_together():
    space = spaces.get("nos")
    adam = space.seeds(["adam"])["adam"]
    clipped = adam.replace(update=graph_lib.Expr(
        (graph_lib.Node("min", "identity", "adam", "identity", "one"),), "n0"))
    retuned = adam.replace(hparams=dataclasses.replace(adam.hparams, beta1=0.8))
    keys = {niche_key(space, g, "behaviour") for g in (adam, clipped, retuned)}
    assert keys == {"re-tuning of adam"}
    assert niche_key(space, clipped) != niche_key(space, adam)  # by structure: two niches
    assert niche_key(space, space.seeds(["lion"])["lion"], "behaviour") == "re-tuning of lion"


def test_aging_evolution_rejects_a_negative_niche_size():
    with pytest.raises(ValueError, match="niche_size"):
        RegularizedEvolution(ToySpace(), niche_size=-1)
    with pytest.raises(ValueError, match="retries"):
        RegularizedEvolution(ToySpace(), retries=-1)
    with pytest.raises(ValueError, match="niches"):
        RegularizedEvolution(ToySpace(), niches="age")


# -- shared pieces ----------------------------------------------------------------------------


def test_clean_fitness_maps_non_finite_to_minus_inf():
    assert clean_fitness([1.0, np.nan, np.inf, -np.inf]).tolist() == [1.0] + [-np.inf] * 3


def test_rank_breaks_ties_by_id():
    assert rank([2.0, 5.0, 5.0, np.nan, 2.0], [4, 3, 1, 0, 2]).tolist() == [2, 1, 4, 0, 3]


def test_tournament_never_picks_minus_inf_while_finite_exist():
    rng = np.random.default_rng(0)
    fitness = [-np.inf, np.nan, -np.inf, 0.3, -np.inf]
    picks = {tournament(rng, fitness, range(5), size=5) for _ in range(50)}
    assert picks == {3}
    assert tournament(rng, [-np.inf] * 3, [5, 4, 6], size=3) == 1


def test_tournament_of_size_one_is_uniform_over_finite():
    rng = np.random.default_rng(0)
    picks = [tournament(rng, [1.0, 2.0, -np.inf, 3.0], range(4), size=1) for _ in range(300)]
    assert set(picks) == {0, 1, 3}


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, config, field",
    [
        (GeneticAlgorithm, dict(population_size=0), "population_size"),
        (GeneticAlgorithm, dict(population_size=4, elites=4), "elites"),
        (GeneticAlgorithm, dict(elites=-1), "elites"),
        (GeneticAlgorithm, dict(tournament_size=0), "tournament_size"),
        (GeneticAlgorithm, dict(generations=0), "generations"),
        (GeneticAlgorithm, dict(crossover_rate=1.5), "crossover_rate"),
        (GeneticAlgorithm, dict(mutation_rate=-0.1), "mutation_rate"),
        (GeneticAlgorithm, dict(seed_names="adam"), "seed_names"),
        (ParticleGA, dict(population_size=0), "population_size"),
        (ParticleGA, dict(children_per_particle=0), "children_per_particle"),
        (ParticleGA, dict(generations=0), "generations"),
        (RegularizedEvolution, dict(population_size=0), "population_size"),
        (RegularizedEvolution, dict(population_size=4, sample_size=5), "sample_size"),
        (RegularizedEvolution, dict(sample_size=0), "sample_size"),
        (RegularizedEvolution, dict(population_size=4, sample_size=2, batch_size=5), "batch_size"),
        (RegularizedEvolution, dict(init_fill="copy"), "init_fill"),
        (RandomSearch, dict(population_size=0), "population_size"),
    ],
)
def test_invalid_configuration_names_the_field(cls, config, field):
    with pytest.raises(ValueError, match=field) as error:
        cls(ToySpace(), **config)
    assert "\n" not in str(error.value)


def test_registry_builds_each_searcher():
    assert searchers.names() == ["ga", "particle_ga", "regularized_evolution", "random"]
    space = ToySpace()
    assert searchers.get("ga", space, elites=1) == GeneticAlgorithm(space, elites=1)
    assert isinstance(searchers.get("particle_ga", space), ParticleGA)
    assert isinstance(searchers.get("regularized_evolution", space), RegularizedEvolution)
    assert isinstance(searchers.get("random", space, population_size=3), RandomSearch)


def test_registry_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="known: ga, particle_ga, regularized_evolution, random"):
        searchers.get("cma_es", ToySpace())


def test_registry_unknown_field_raises_value_error():
    with pytest.raises(ValueError, match="'ga'.*no_such_field"):
        searchers.get("ga", ToySpace(), no_such_field=1)
