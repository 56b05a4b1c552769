"""The terms space (Marfinetz 2025): its genome as a
Graph, the zoo seeds, variation operators, JSON and the program shape.

The step semantics are checked with NumPy against the paper's update written
out here; the zoo parity runs ``symopt.to_optax`` for every pair in one
jit-compiled scan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import interpret, zoo
from symopt.program import encode
from symopt.spaces.base import Space
from symopt.spaces.terms import (
    DEFAULT_SEEDS,
    FLAGS,
    LEAF_TERM_KINDS,
    PAPER_TERM_KINDS,
    SCALARS,
    TERM_KINDS,
    Term,
    TermsGenome,
    TermsSpace,
)

SPACE = TermsSpace()
PAPER = TermsSpace(leaf_ops=False)  # the paper's seven kinds (experiments/terms_ga.py)
EXPRESSIBLE = (
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "adam",
    "adamw",
    "signsgd",
    "autolr_sign",
    "terms_ga",
)
PARITY_STEPS = 20
PARITY_TOTAL_STEPS = 30


def _samples(seed: int, count: int) -> list[TermsGenome]:
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng) for _ in range(count)]


def _lineage(seed: int, steps: int = 200) -> list[TermsGenome]:
    """Genomes reached by mutation and crossover from the seeds and samples."""
    rng = np.random.default_rng(seed)
    pool = [*SPACE.seeds(EXPRESSIBLE).values(), *_samples(seed + 1, 20)]
    for _ in range(steps):
        child = SPACE.mutate(rng, pool[int(rng.integers(len(pool)))], progress=rng.random())
        if rng.random() < 0.5:
            child = SPACE.crossover(rng, child, pool[int(rng.integers(len(pool)))])
        pool.append(child)
    return pool


SAMPLES = _samples(0, 200)
LINEAGE = _lineage(1)


# --------------------------------------------------------------------------
# The protocol, validity, the program shape.


def test_the_space_implements_the_space_protocol():
    assert isinstance(SPACE, Space)
    assert SPACE.name == "terms"
    assert len(set(SAMPLES)) == len(SAMPLES)  # genomes are hashable


def test_sampled_genomes_have_one_to_three_terms_of_known_kinds():
    for genome in SAMPLES:
        assert SPACE.validate(genome) is genome
        assert 1 <= len(genome.terms) <= 3
        assert all(t.kind in TERM_KINDS and t.alpha > 0 for t in genome.terms)


def test_sampled_graphs_are_valid_and_pass_the_integrity_check():
    reports = [symopt.check(SPACE.to_graph(g)) for g in SAMPLES]
    passed = sum(r.ok for r in reports)
    assert passed >= 0.95 * len(SAMPLES), [r.reason for r in reports if not r.ok]


def test_every_graph_fits_the_program_shape():
    genomes = [*SAMPLES, *LINEAGE]
    encode([SPACE.to_graph(g) for g in genomes], SPACE.program_shape())


# The largest graphs. WIDEST: 3 (nesterov) + 2 (rms_norm) + 2 (unit_grad) nodes,
# 4 mul and 3 add; 4 coefficients, eps and beta1 as constants.
WIDEST = TermsGenome(
    (Term("nesterov", 0.5), Term("rms_norm", 0.6), Term("unit_grad", 0.7), Term("sign_grad", 0.8))
)
MOST_OPERANDS = TermsGenome(
    (Term("nesterov", 0.5), Term("rms_norm", 0.6), Term("adam_term", 0.7), Term("sign_grad", 0.8))
)
# With orth_momentum: WIDEST's sign_grad becomes one if_matrix node.
WIDEST_LEAF = TermsGenome(
    (Term("nesterov", 0.5), Term("rms_norm", 0.6), Term("unit_grad", 0.7),
     Term("orth_momentum", 0.8))
)


@pytest.mark.parametrize(
    "space,field,genome,size",
    [
        (PAPER, "max_nodes", WIDEST, 14),
        (PAPER, "max_constants", WIDEST, 6),
        (PAPER, "max_operands", MOST_OPERANDS, 5),
        (SPACE, "max_nodes", WIDEST_LEAF, 15),
        (SPACE, "max_constants", WIDEST, 6),
        (SPACE, "max_operands", MOST_OPERANDS, 5),
    ],
    ids=lambda x: "leaf_ops" if x is SPACE else "paper" if x is PAPER else None,
)
def test_the_program_shape_is_as_small_as_the_largest_graph(space, field, genome, size):
    shape = space.program_shape()
    assert getattr(shape, field) == size
    graph = space.to_graph(genome)
    encode([graph], shape)
    smaller = dataclasses.replace(shape, **{field: size - 1})
    with pytest.raises(graph_lib.GraphError, match=field):
        encode([graph], smaller)


def test_the_program_shape_needs_no_states_decays_or_schedule_graphs():
    shape = SPACE.program_shape()
    assert shape.max_states == 0
    for genome in LINEAGE:
        graph = SPACE.to_graph(genome)
        assert graph.states == () and graph.decays == ()
        assert graph.schedule.kind in ("constant", "cosine") and graph.momentum == "none"


# --------------------------------------------------------------------------
# Semantics: the graph computes the paper's update.


def _paper_updates(genome: TermsGenome, grads: np.ndarray, w: np.ndarray, total: int):
    """Marfinetz 2025's step, written out in float64 (use_m/use_v as documented)."""
    b1, b2, eps, lr = genome.beta1, genome.beta2, genome.eps, genome.learning_rate
    wd = genome.weight_decay
    m = v = np.zeros_like(w)
    out = []
    for t, g in enumerate(grads):
        if genome.clip:
            g = np.clip(g, -genome.clip_value, genome.clip_value)
        m = (1 - b1) * g + b1 * m if genome.use_m else g
        v = (1 - b2) * g * g + b2 * v if genome.use_v else g * g
        m_hat, v_hat = m, v
        if genome.bias_correction:
            m_hat = m / (1 - b1 ** (t + 1)) if genome.use_m else m
            v_hat = v / (1 - b2 ** (t + 1)) if genome.use_v else v
        term = {
            "grad": g,
            "momentum": m_hat,
            "rms_norm": g / (np.sqrt(v_hat) + eps),
            "adam_term": m_hat / (np.sqrt(v_hat) + eps),
            "sign_grad": np.sign(g),
            "unit_grad": g / (np.abs(g) + eps),
            "nesterov": m_hat + b1 * (g - m_hat),
            # w is a vector: the Adam term (orth(m) is for 2-D leaves).
            "orth_momentum": m_hat / (np.sqrt(v_hat) + eps),
        }
        direction = sum(alpha * term[kind] for kind, alpha in genome.terms)
        warmup = genome.warmup_steps if genome.warmup else 0
        mult = 1.0
        if genome.cosine:
            mult = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, t - warmup) / (total - warmup))))
        if t < warmup:
            mult = (t + 1) / warmup
        update = -lr * mult * (direction + wd * w)
        w = w + update
        out.append(update)
    return np.array(out)


def _graph_updates(graph: symopt.Graph, grads: np.ndarray, w: np.ndarray, total: int):
    """The compiled step (:func:`symopt.interpret.leaf_update`) run with NumPy."""
    p = interpret.plan(graph)
    state = interpret.init_leaf(p, w, np)
    out = []
    for t, g in enumerate(grads):
        scalars = interpret.step_scalars(p, np, t, total)
        u, state = interpret.leaf_update(
            p, np, g, w, state, scalars, graph.hparams.learning_rate, graph.hparams.weight_decay
        )
        w = w + u
        out.append(u)
    return np.array(out)


def test_graphs_compute_the_papers_update_for_random_genomes():
    rng = np.random.default_rng(2)
    steps, total = 12, 16
    grads = rng.normal(size=(steps, 8)) * np.geomspace(1e-3, 1.0, 8)
    w = rng.normal(size=8)
    for genome in [*SAMPLES[:100], *LINEAGE[-50:]]:
        # A short warmup, so that the cosine part of the schedule is reached.
        genome = dataclasses.replace(genome, warmup_steps=int(rng.integers(1, 6)))
        want = _paper_updates(genome, grads, w, total)
        got = _graph_updates(SPACE.to_graph(genome), grads, w, total)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, err_msg=str(genome))


def _one_term(kind: str, **flags) -> symopt.Graph:
    return SPACE.to_graph(TermsGenome((Term(kind, 0.5),), **flags))


@pytest.mark.parametrize(
    "kind,flags,same_as",
    [
        ("momentum", {"use_m": False}, "grad"),
        ("nesterov", {"use_m": False}, "grad"),
        ("adam_term", {"use_m": False}, "rms_norm"),
        ("rms_norm", {"use_v": False}, "unit_grad"),
        ("adam_term", {"use_m": False, "use_v": False}, "unit_grad"),
    ],
)
def test_use_m_and_use_v_off_make_the_moment_memoryless(kind, flags, same_as):
    # With use_m off m is g; with use_v off sqrt(v) is |g| (module docstring).
    graph = _one_term(kind, **flags)
    assert symopt.fingerprint(graph) == symopt.fingerprint(_one_term(same_as, **flags))


def test_moments_are_stored_only_when_used():
    for genome in SAMPLES:
        needs = interpret.plan(SPACE.to_graph(genome)).needs
        assert genome.use_m or "m" not in needs
        assert genome.use_v or "v" not in needs


def test_weight_decay_at_the_bottom_of_its_range_is_none():
    genome = TermsGenome((Term("grad", 1.0),))
    assert genome.log10_weight_decay == SCALARS[-1].low
    assert SPACE.to_graph(genome).hparams.weight_decay == 0.0
    raised = dataclasses.replace(genome, log10_weight_decay=-5.0)
    assert SPACE.to_graph(raised).hparams.weight_decay == pytest.approx(1e-5)


def test_flags_set_clipping_bias_correction_and_the_schedule():
    genome = TermsGenome(
        (Term("adam_term", 1.0),),
        clip=True,
        clip_value=0.5,
        bias_correction=False,
        warmup=True,
        warmup_steps=70,
        cosine=True,
    )
    graph = SPACE.to_graph(genome)
    assert graph.hparams.clip_value == 0.5 and not graph.hparams.bias_correction
    assert graph.schedule == symopt.Schedule(kind="cosine", warmup_steps=70)
    plain = SPACE.to_graph(dataclasses.replace(genome, clip=False, warmup=False, cosine=False))
    assert plain.hparams.clip_value == 0.0
    assert plain.schedule == symopt.Schedule()


# --------------------------------------------------------------------------
# Seeds: the zoo's updates, through to_optax.


def _parity_grads() -> np.ndarray:
    # Magnitudes in [0.5, 2] keep v far above eps, where the paper's RMSProp,
    # g / (sqrt(v) + eps), equals optax's g / sqrt(v + eps) to ~1e-7.
    rng = np.random.default_rng(3)
    size = (PARITY_STEPS, 16)
    return rng.choice([-1.0, 1.0], size) * rng.uniform(0.5, 2.0, size)


@pytest.fixture(scope="module")
def parity_updates() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per expressible zoo name: (seed updates, zoo updates) over the same
    gradient stream, every optimizer stepping its own weights. One jit."""
    seeds = SPACE.seeds(EXPRESSIBLE)
    txs = {}
    for name in EXPRESSIBLE:
        txs[name, "seed"] = symopt.to_optax(
            SPACE.to_graph(seeds[name]), total_steps=PARITY_TOTAL_STEPS
        )
        txs[name, "zoo"] = symopt.to_optax(zoo.get(name), total_steps=PARITY_TOTAL_STEPS)
    w0 = jnp.asarray(np.random.default_rng(4).normal(size=16), jnp.float32)

    @jax.jit
    def run(grads):
        def step(carry, g):
            new, updates = {}, {}
            for key, tx in txs.items():
                w, state = carry[key]
                u, state = tx.update(g, state, w)
                new[key] = (optax.apply_updates(w, u), state)
                updates[key] = u
            return new, updates

        init = {key: (w0, tx.init(w0)) for key, tx in txs.items()}
        return jax.lax.scan(step, init, grads)[1]

    out = run(jnp.asarray(_parity_grads(), jnp.float32))
    return {
        name: (np.asarray(out[name, "seed"]), np.asarray(out[name, "zoo"])) for name in EXPRESSIBLE
    }


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_seeds_give_the_zoo_optimizers_updates(name, parity_updates):
    seed, reference = parity_updates[name]
    assert np.all(reference != 0)
    np.testing.assert_allclose(seed, reference, rtol=1e-5, atol=1e-8)


def test_the_default_seeds_are_the_papers_four():
    seeds = SPACE.seeds()
    assert tuple(seeds) == DEFAULT_SEEDS == ("sgd", "adam", "adamw", "rmsprop")
    assert all(isinstance(g, TermsGenome) for g in seeds.values())


def test_the_published_terms_ga_optimizer_is_a_genome():
    # Marfinetz 2025: 0.7345*sign(g) + 3.6352*m/(sqrt(v)+eps), no bias correction,
    # lr 1.2e-3, b1 0.8553, b2 0.9358, eps 5.4e-9, wd 9.7e-4, 100 warmup steps
    # then cosine decay.
    genome = TermsGenome(
        (Term("sign_grad", 0.7345), Term("adam_term", 3.6352)),
        log10_lr=math.log10(1.2e-3),
        beta1=0.8553,
        beta2=0.9358,
        log10_eps=math.log10(5.4e-9),
        log10_weight_decay=math.log10(9.7e-4),
        bias_correction=False,
        warmup=True,
        warmup_steps=100,
        cosine=True,
    )
    assert SPACE.seeds(["terms_ga"])["terms_ga"] == genome
    graph, published = SPACE.to_graph(genome), zoo.terms_ga()
    assert graph.update == published.update and graph.constants == published.constants
    assert graph.schedule == published.schedule
    for field in ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "bias_correction"):
        assert getattr(graph.hparams, field) == pytest.approx(getattr(published.hparams, field))


@pytest.mark.parametrize(
    "name", ["lion", "signum", "ades", "muon", "lamb", "adafactor", "no_such_optimizer"])
def test_seeds_name_what_the_genome_cannot_express(name):
    with pytest.raises(ValueError, match=name):
        SPACE.seeds(["adam", name])


# --------------------------------------------------------------------------
# Mutation.


def _changed(parent: TermsGenome, child: TermsGenome) -> dict[str, bool]:
    changed = {s.name: getattr(child, s.name) != getattr(parent, s.name) for s in SCALARS}
    changed |= {f.name: getattr(child, f.name) != getattr(parent, f.name) for f in FLAGS}
    changed["kinds"] = [t.kind for t in child.terms] != [t.kind for t in parent.terms]
    return changed


def _change_rates(progress: float, trials: int = 2000) -> dict[str, float]:
    rng = np.random.default_rng(5)
    parents = _samples(6, trials)
    counts = [_changed(p, SPACE.mutate(rng, p, progress=progress)) for p in parents]
    return {key: float(np.mean([c[key] for c in counts])) for key in counts[0]}


def test_mutation_rates_are_the_papers_and_halve_over_the_search():
    start, end = _change_rates(0.0), _change_rates(1.0)
    for progress, rates in ((0.0, start), (1.0, end)):
        factor = 1 - 0.5 * progress
        for s in SCALARS:
            assert rates[s.name] == pytest.approx(0.35 * factor, abs=0.04), (s.name, progress)
        for f in FLAGS:
            assert rates[f.name] == pytest.approx(0.10 * factor, abs=0.025), (f.name, progress)
        assert rates["kinds"] == pytest.approx(0.15 * factor, abs=0.03), progress
    assert sum(end.values()) / sum(start.values()) == pytest.approx(0.5, abs=0.06)


def test_mutation_keeps_genomes_in_range():
    for genome in LINEAGE:
        SPACE.validate(genome)
        assert 1 <= len(genome.terms) <= SPACE.max_terms
        assert all(0 < t.alpha <= 5.0 for t in genome.terms)


def test_structural_mutation_adds_removes_and_changes_terms():
    rng = np.random.default_rng(7)
    space = TermsSpace(p_numeric=0.0, p_structural=1.0, p_flag=0.0)
    parent = TermsGenome((Term("grad", 1.0), Term("adam_term", 2.0)))
    lengths = set()
    for _ in range(60):
        child = space.mutate(rng, parent)
        lengths.add(len(child.terms))
        assert child != parent
        assert dataclasses.replace(child, terms=parent.terms) == parent
    assert lengths == {1, 2, 3}


def test_mutate_rejects_progress_outside_zero_to_one():
    with pytest.raises(ValueError, match="progress"):
        SPACE.mutate(np.random.default_rng(0), SAMPLES[0], progress=1.5)


# --------------------------------------------------------------------------
# Crossover.


def test_crossover_children_take_terms_and_genes_only_from_their_parents():
    rng = np.random.default_rng(8)
    from_a = []
    for _ in range(300):
        a, b = (LINEAGE[int(i)] for i in rng.integers(len(LINEAGE), size=2))
        child = SPACE.crossover(rng, a, b)
        cuts = [
            (a.terms[:i] + b.terms[j:])[: SPACE.max_terms]
            for i in range(1, len(a.terms) + 1)
            for j in range(len(b.terms))
        ]
        assert child.terms in cuts
        for field in dataclasses.fields(TermsGenome):
            if field.name != "terms":
                value = getattr(child, field.name)
                assert value in (getattr(a, field.name), getattr(b, field.name)), field.name
                if getattr(a, field.name) != getattr(b, field.name):
                    from_a.append(value == getattr(a, field.name))
    assert np.mean(from_a) == pytest.approx(0.5, abs=0.05)


# --------------------------------------------------------------------------
# JSON, determinism, bad input.


def test_json_round_trip_is_exact():
    genomes = [*SAMPLES, *LINEAGE]
    assert len(genomes) >= 200
    for genome in genomes:
        text = json.dumps(SPACE.to_json(genome))
        back = SPACE.from_json(json.loads(text))
        assert back == genome and hash(back) == hash(genome)
        assert SPACE.to_graph(back) == SPACE.to_graph(genome)


def test_a_fixed_seed_gives_the_same_genomes():
    def run(seed):
        rng = np.random.default_rng(seed)
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        return [a, b, SPACE.mutate(rng, a, progress=0.3), SPACE.crossover(rng, a, b)]

    assert run(9) == run(9)
    assert run(9) != run(10)


def _json_with(**changes):
    data = SPACE.to_json(SAMPLES[0])
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data,field",
    [
        (_json_with(terms=[["grad", 1.0], ["curvature", 1.0]]), "terms\\[1\\].kind"),
        (_json_with(terms=[]), "terms"),
        (_json_with(terms=[["grad", 1.0]] * 5), "terms"),
        (_json_with(terms=[["grad"]]), "terms\\[0\\]"),
        (_json_with(terms=[["grad", 9.0]]), "terms\\[0\\].alpha"),
        (_json_with(log10_lr=0.5), "log10_lr"),
        (_json_with(beta2=1.0), "beta2"),
        (_json_with(beta1="0.9"), "beta1"),
        (_json_with(use_m=1), "use_m"),
        (_json_with(warmup_steps=0), "warmup_steps"),
        (_json_with(format="symopt.graph/1"), "format"),
        (_json_with(momentum=0.9), "momentum"),
        ({k: v for k, v in SPACE.to_json(SAMPLES[0]).items() if k != "beta1"}, "beta1"),
    ],
)
def test_from_json_names_the_bad_field(data, field):
    with pytest.raises(ValueError, match=field):
        SPACE.from_json(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_terms": 7},
        {"max_terms": 0},
        {"sample_terms": (2, 5)},
        {"p_flag": 1.5},
        {"sigma": -0.1},
    ],
)
def test_bad_space_settings_raise(changes):
    with pytest.raises(ValueError, match="TermsSpace"):
        TermsSpace(**changes)


# --------------------------------------------------------------------------
# orth_momentum (Muon) and the leaf_ops option.


def _muon_params() -> dict[str, jax.Array]:
    rng = np.random.default_rng(10)
    return {"kernel": jnp.asarray(rng.normal(size=(4, 3))),
            "conv": jnp.asarray(rng.normal(size=(3, 3, 2, 4))),
            "bias": jnp.asarray(rng.normal(size=3)), "scale": jnp.asarray(1.5)}


def _updates(tx: optax.GradientTransformation, params, steps: int = 8):
    """``tx``'s updates for ``steps`` random gradients, the weights stepped
    (one jit-compiled scan)."""
    rng = np.random.default_rng(11)
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=(steps, *x.shape))), params)

    def step(carry, g):
        params, state = carry
        updates, state = tx.update(g, state, params)
        return (optax.apply_updates(params, updates), state), updates

    return jax.jit(lambda: jax.lax.scan(step, (params, tx.init(params)), grads)[1])()


def test_the_orth_momentum_term_is_muon_without_nesterov():
    # orth(m) on the 2-D kernel, Adam on the conv kernel, bias and scale, as
    # optax.contrib.muon with one beta and no Nesterov (module docstring).
    lr, beta1, beta2 = 0.02, 0.95, 0.99
    genome = TermsGenome((Term("orth_momentum", 1.0),), log10_lr=math.log10(lr), beta1=beta1,
                         beta2=beta2, log10_eps=-8.0)
    graph = SPACE.to_graph(genome)
    assert graph.update == graph_lib.nodes(("if_matrix", "orth", "m", "identity", "adam"))
    assert symopt.program.uses_leaf_ops(graph) == {"orth", "if_matrix"}
    muon = optax.contrib.muon(lr, beta=beta1, adam_b1=beta1, adam_b2=beta2, eps=1e-8,
                              nesterov=False)
    with jax.enable_x64(True):
        params = _muon_params()
        ours = _updates(symopt.to_optax(graph, total_steps=100), params)
        theirs = _updates(muon, params)
    for name in params:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-10, atol=1e-15,
                                   err_msg=name)
    assert np.abs(ours["kernel"][-1]).max() > 0


@pytest.mark.parametrize("flags", [{"use_m": False}, {"use_v": False},
                                   {"use_m": False, "use_v": False}])
def test_orth_momentum_reads_the_moments_as_the_other_terms_do(flags):
    # orth of m (g with use_m off) on 2-D leaves, adam_term's graph on the others.
    def term(kind):  # alpha 1: no coefficient node
        return SPACE.to_graph(TermsGenome((Term(kind, 1.0),), **flags))

    graph = graph_lib.canonical(term("orth_momentum"))
    root = graph.update.nodes[-1]
    assert (root.op, root.left, root.right) == ("if_matrix", "orth", "identity")
    assert root.a == ("m" if flags.get("use_m", True) else "g")
    other = graph.replace(update=graph_lib.Expr(graph.update.nodes[:-1], root.b))
    assert symopt.fingerprint(other) == symopt.fingerprint(term("adam_term"))


def test_leaf_ops_adds_orth_momentum_to_the_kinds_the_space_draws_and_compiles():
    assert PAPER.kinds == PAPER_TERM_KINDS and SPACE.kinds == TERM_KINDS
    assert TERM_KINDS == PAPER_TERM_KINDS + LEAF_TERM_KINDS == (*PAPER_TERM_KINDS,
                                                                "orth_momentum")
    assert SPACE.program_shape().leaf_ops and not PAPER.program_shape().leaf_ops
    drawn = {t.kind for g in [*SAMPLES, *LINEAGE] for t in g.terms}
    assert drawn == set(TERM_KINDS)
    rng = np.random.default_rng(12)
    paper = [PAPER.sample(rng) for _ in range(100)]
    paper += [PAPER.mutate(rng, paper[int(rng.integers(100))]) for _ in range(300)]
    assert {t.kind for g in paper for t in g.terms} == set(PAPER_TERM_KINDS)
    encode([PAPER.to_graph(g) for g in paper], PAPER.program_shape())
    with pytest.raises(ValueError, match=r"terms\[0\].kind.*leaf_ops=False"):
        PAPER.validate(TermsGenome((Term("orth_momentum", 1.0),)))


def _stream_digest(space: TermsSpace) -> str:
    """A digest of 40 samples and 300 mutations (every other crossed over),
    drawn from ``space`` with seed 11."""
    rng = np.random.default_rng(11)
    pool = [space.sample(rng) for _ in range(40)]
    for i in range(300):
        child = space.mutate(rng, pool[int(rng.integers(len(pool)))], progress=i / 300)
        if i % 2 == 0:
            child = space.crossover(rng, child, pool[int(rng.integers(len(pool)))])
        pool.append(child)
    text = json.dumps([space.to_json(g) for g in pool], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_leaf_ops_off_draws_the_genomes_the_space_drew_before():
    # The digest of the space before orth_momentum existed (commit 3f4321a),
    # so that the published protocol (experiments/terms_ga.py) stays as published.
    assert _stream_digest(PAPER) == (
        "e4d7d646583b22df33e36b4cd33f06641b925a51b6e5b59172410c4cbd239aac")


def test_the_published_protocol_uses_the_papers_kinds():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "terms_ga.py")
    spec = importlib.util.spec_from_file_location("_experiment_terms_ga", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    space = symopt.spaces.get(config.space.name, **config.space.options.to_dict())
    assert space == PAPER
