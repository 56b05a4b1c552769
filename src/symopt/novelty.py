"""Novelty: is a discovered optimizer new, or a zoo optimizer at other settings?

A discovery is judged by what it does, not by how its equation is written:
:func:`judge` runs it and every zoo optimizer (:mod:`symopt.zoo`) on one fixed
probe and compares their update directions.

The probe (:data:`PROBE_LEAVES`, :data:`PROBE_STEPS`): two parameter leaves, a
matrix and a vector (the per-leaf operators, Muon's ``orth`` or Adafactor's
``rms_rows``, read them as a whole), and a sequence of gradients of a fixed,
ill-conditioned quadratic (curvatures 0.01 to 9, a low-rank start on the
matrix, noise that grows with the curvature), taken along the path of noisy
gradient descent. Every optimizer sees the same weights and the same gradients
at every step (teacher forcing): the comparison is of update functions, not of
trajectories. Each runs the step :func:`symopt.to_optax` compiles
(:func:`symopt.interpret.leaf_update`, in NumPy, with ``total_steps`` the
probe's length; ``tests/test_novelty.py`` checks the two agree), since
compiling every zoo variant with JAX would take a minute.

The similarity of two optimizers is the cosine of their updates, per step and
per leaf, averaged over the steps and the leaves: 1 for the same direction
everywhere, whatever the learning rate or schedule (both scale a step's whole
update). A zoo optimizer's similarity to a graph is the largest over a small
grid of its own hyperparameters (:data:`GRIDS`: betas, epsilon, momentum,
weight decay, ...) and at the graph's own values of them (:func:`own_setting`),
so that Adam at other betas, on the grid or not, is recognised as Adam. The
zoo's updates over the grid are computed once per process; judging a graph
then costs its own run and a sympy simplification.

Dropout is judged at its expectation (:func:`expected`): an optimizer that
drops part of Adam's update at random is Adam on average. The verdict is
``re-tuning of <name>`` where the nearest zoo optimizer's
similarity reaches :data:`THRESHOLD`, else ``new``. :func:`summary_lines`
writes a judgement as the ``## Novelty`` section of a run's ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from symopt import graph as graph_lib
from symopt import interpret, ops, simplicity, zoo
from symopt import step as step_lib
from symopt.graph import Graph

PROBE_STEPS = 50
"""Steps of the probe; also ``total_steps`` (``T``), so ``t/T`` runs over [0, 1)."""
PROBE_LEAVES = ((8, 16), (16,))
"""The probe's parameter leaves, end to end: a matrix and a vector."""
PROBE_SIZE = sum(math.prod(shape) for shape in PROBE_LEAVES)
PROBE_SEED = 20250612
DESCENT_RATE = 0.05
"""The step of the noisy gradient descent whose path gives the probe's weights
(curvature at most 9: stable)."""

THRESHOLD = 0.95
"""The similarity from which a graph is a re-tuning of its nearest zoo
optimizer. Chosen on the zoo's own similarity matrix (``docs/guide.md``
gives the command that prints it): zoo optimizers at hyperparameters off their grids score 0.95
to 1 against themselves (signum at beta1 0.97 lowest, 0.953; Adam at 0.85,
0.98, 1e-7: 0.993), while distinct zoo optimizers score below 0.95 against
each other, except those that are one optimizer on the probe: ``signsgd`` and
``autolr_sign``, ``adam``, ``adamw`` and ``lamb`` (the trust ratio scales a
leaf's whole update, which a direction barely sees), ``terms_ga`` (Adam plus
0.2 of signSGD) and Adam, ``addsign`` and ``powersign``, ``momentum`` and
``nesterov``, and ``sgd`` against PowerSign (0.95)."""
TIE_MARGIN = 0.01
"""Zoo optimizers within this similarity of the most similar are near-equal
explanations: the verdict names the simplest of them
(:func:`symopt.simplicity.complexity`, then the zoo's order), so that Adam at
other betas is a re-tuning of ``adam``, not of ``terms_ga``."""

GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sgd": {"weight_decay": (0.0, 1e-2, 1e-1)},
    "momentum": {"momentum": (0.8, 0.9, 0.95, 0.99), "weight_decay": (0.0, 1e-2)},
    "nesterov": {"momentum": (0.8, 0.9, 0.95, 0.99), "weight_decay": (0.0, 1e-2)},
    "rmsprop": {"beta2": (0.9, 0.99, 0.999), "eps": (1e-8, 1e-4)},
    "adam": {"beta1": (0.8, 0.9, 0.95), "beta2": (0.95, 0.99, 0.999), "eps": (1e-8, 1e-4)},
    "adamw": {"beta1": (0.8, 0.9, 0.95), "beta2": (0.95, 0.99, 0.999),
              "weight_decay": (1e-4, 1e-2, 1e-1)},
    "lion": {"beta1": (0.8, 0.9, 0.95), "beta2": (0.95, 0.99), "weight_decay": (1e-3, 1e-1)},
    "signsgd": {"weight_decay": (0.0, 1e-2)},
    "signum": {"beta1": (0.8, 0.9, 0.95, 0.99)},
    "addsign": {"beta1": (0.8, 0.9, 0.95, 0.99)},
    "powersign": {"beta1": (0.8, 0.9, 0.95, 0.99)},
    "ades": {},
    "autolr_sign": {},
    "terms_ga": {"beta1": (0.8553, 0.9), "beta2": (0.9358, 0.999)},
    # Down to little momentum: a program that keeps little of its momentum
    # (discover.py's seed-1 winner on the probe) is Muon at a low beta, not new.
    # and with or without Nesterov, on the 2-D leaves or on every leaf (what
    # discover.py's winners at commit 7f1e4f0 were, judged new without them).
    "muon": {"beta": (0.3, 0.5, 0.7, 0.9, 0.95, 0.99), "beta1": (0.5, 0.7, 0.9, 0.95),
             "nesterov": (True, False), "every_leaf": (False, True)},
    "lamb": {"beta1": (0.9, 0.95), "beta2": (0.99, 0.999), "weight_decay": (0.0, 1e-2)},
    "adafactor": {"decay_rate": (0.6, 0.8, 0.9)},
    "driftprop": {"beta2": (0.9, 0.99, 0.999), "drift": (-0.0757, -0.01)},
    "orthadam": {"beta1": (0.5, 0.9), "beta2": (0.99, 0.999), "weight_decay": (0.0, 1e-2)},
}
"""The hyperparameters over which each zoo optimizer is matched (the keyword
arguments of its :mod:`symopt.zoo` function; every combination, plus the
defaults). A zoo optimizer missing here is matched at its defaults only."""


# --------------------------------------------------------------------------
# The probe.


class Probe(NamedTuple):
    """The probe's inputs, each ``[PROBE_STEPS, PROBE_SIZE]`` (leaves end to end)."""

    grads: np.ndarray
    weights: np.ndarray
    noise: np.ndarray  # the draws of the noise operands
    uniform: np.ndarray  # the draws of dropout


def _shuffled(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.permutation(np.geomspace(lo, hi, n))


@functools.cache
def probe_inputs() -> Probe:
    """The fixed probe: gradients of ``0.5 * sum(h * (w - w*)^2)`` plus noise of
    scale ``0.3 sqrt(h)``, along the path of noisy gradient descent from ``w0``.

    The matrix's curvature is an outer product of row and column scales (as
    inputs and outputs of different scales give), and its start differs from
    the optimum by a rank-2 matrix plus a little noise, so that its gradients
    have a few large singular values, as networks' do. The vector's
    curvatures are spread from 0.01 to 9.
    """
    rng = np.random.default_rng(PROBE_SEED)
    (rows, cols), (n,) = PROBE_LEAVES
    h_matrix = np.outer(_shuffled(rng, 0.1, 3.0, rows), _shuffled(rng, 0.1, 3.0, cols))
    curvature = np.concatenate([h_matrix.ravel(), _shuffled(rng, 0.01, 9.0, n)])
    # Weights of different scales per leaf, as a kernel's and a bias's are (LAMB's
    # trust ratio |w| / |u| then differs from leaf to leaf).
    scale = np.concatenate([np.full(rows * cols, 0.5), np.full(n, 0.05)])
    w_star = scale * rng.standard_normal(PROBE_SIZE)
    low_rank = rng.standard_normal((rows, 2)) @ rng.standard_normal((2, cols))
    offset = scale * np.concatenate([
        (low_rank + 0.1 * rng.standard_normal((rows, cols))).ravel(), rng.standard_normal(n)])
    w = w_star + offset
    sigma = 0.3 * np.sqrt(curvature)
    grads, weights = [], []
    for _ in range(PROBE_STEPS):
        g = curvature * (w - w_star) + sigma * rng.standard_normal(PROBE_SIZE)
        grads.append(g)
        weights.append(w)
        w = w - DESCENT_RATE * g
    return Probe(np.array(grads), np.array(weights),
                 rng.standard_normal((PROBE_STEPS, PROBE_SIZE)),
                 rng.random((PROBE_STEPS, PROBE_SIZE)))


def _by_leaf(fn, *args: np.ndarray) -> np.ndarray:
    """A per-leaf operator's ``fn`` applied to each leaf of the probe."""
    flat = tuple(np.broadcast_to(x, (PROBE_SIZE,)) for x in args)
    return ops.by_leaf(np, fn, flat, PROBE_LEAVES, lambda f, leaves: f(*leaves))


def updates(graph: Graph) -> np.ndarray:
    """``graph``'s updates on the probe, teacher-forced: ``[PROBE_STEPS,
    PROBE_SIZE]``, what :func:`symopt.to_optax` (``total_steps=PROBE_STEPS``)
    returns at each step given the probe's gradient and weights."""
    probe = probe_inputs()
    p = interpret.plan(graph)
    h = graph.hparams
    state = interpret.init_leaf(p, probe.weights[0], np)
    out = np.empty_like(probe.grads)
    with np.errstate(all="ignore"):  # overflow is sanitized
        for k in range(PROBE_STEPS):
            scalars = interpret.step_scalars(p, np, float(k), PROBE_STEPS)
            g = probe.grads[k]
            if h.clip_norm:
                g = step_lib.clip_rows_by_norm(np, g[None], h.clip_norm)[0]
            out[k], state = interpret.leaf_update(
                p, np, g, probe.weights[k], state, scalars, h.learning_rate, h.weight_decay,
                noise=probe.noise[k] if "noise" in p.needs else None,
                uniform=probe.uniform[k] if "uniform" in p.needs else None,
                by_leaf=_by_leaf)
    return out


# --------------------------------------------------------------------------
# Similarity.


_VIEWS = (*((sum(math.prod(s) for s in PROBE_LEAVES[:i]), math.prod(shape))
             for i, shape in enumerate(PROBE_LEAVES)), (0, PROBE_SIZE))
"""The parts of an update whose directions are compared, as (start, size): each
leaf, and the whole update (which sees how an optimizer scales one leaf's
update against another's, as LAMB's trust ratio does)."""


def _directions(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf of each step of ``u`` (``[..., PROBE_SIZE]``) as a unit vector
    (zero where the leaf's update is zero), and where it is zero: arrays
    ``[..., leaves, PROBE_SIZE]`` (each leaf's vector zero-padded to the size)
    and ``[..., leaves]``."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float64), nan=0.0, posinf=ops.BIG,
                      neginf=-ops.BIG)
    units, zeros = [], []
    for start, size in _VIEWS:
        x = np.zeros_like(u)
        x[..., start:start + size] = u[..., start:start + size]
        scale = np.max(np.abs(x), axis=-1, keepdims=True)
        x = x / np.where(scale > 0, scale, 1.0)  # no square overflows
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        units.append(x / np.where(norm > 0, norm, 1.0))
        zeros.append(norm[..., 0] == 0)
    return np.stack(units, axis=-2), np.stack(zeros, axis=-1)


def _similarities(directions: tuple[np.ndarray, np.ndarray],
                  others: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The mean cosine of one optimizer's directions (``[steps, leaves, size]``)
    with each of ``others`` (``[variants, steps, leaves, size]``): ``[variants]``.
    Two zero updates count as the same direction (1), one zero update as
    orthogonal to anything (0)."""
    units, zero = directions
    other_units, other_zero = others
    cosines = np.einsum("tls,vtls->vtl", units, other_units)
    cosines = np.where(zero & other_zero, 1.0, np.clip(cosines, -1.0, 1.0))
    return cosines.mean(axis=(1, 2))


def similarity(a: Graph, b: Graph) -> float:
    """The behavioural similarity of two graphs: the mean cosine of their update
    directions per step and leaf on the probe, in [-1, 1]."""
    units = _directions(updates(b))
    return float(_similarities(_directions(updates(a)), (units[0][None], units[1][None]))[0])


def variants(name: str) -> tuple[dict[str, Any], ...]:
    """The hyperparameter settings over which zoo optimizer ``name`` is matched:
    its defaults (``{}``) and every combination of its :data:`GRIDS` values."""
    grid = GRIDS.get(name, {})
    keys = sorted(grid)
    combos = [dict(zip(keys, values, strict=True))
              for values in itertools.product(*(grid[k] for k in keys))]
    return ({}, *combos)


@functools.cache
def _zoo_directions(name: str) -> tuple[tuple[dict[str, Any], ...], np.ndarray, np.ndarray]:
    """The settings of ``name`` (:func:`variants`) and their directions on the probe."""
    settings = variants(name)
    runs = np.stack([updates(zoo.get(name, **dict(s))) for s in settings])
    units, zeros = _directions(runs)
    return settings, units, zeros


def own_setting(name: str, graph: Graph) -> dict[str, Any]:
    """Zoo optimizer ``name``'s setting at ``graph``'s own values of the
    hyperparameters it is matched over (:data:`GRIDS` keys that are fields of
    :class:`symopt.graph.Hyperparams`). A graph that is Adam at betas no grid
    holds (0.5, 0.9) is then matched with exactly that Adam."""
    fields = {f.name for f in dataclasses.fields(graph.hparams)}
    return {k: getattr(graph.hparams, k) for k in sorted(GRIDS.get(name, {})) if k in fields}


@functools.lru_cache(maxsize=4096)
def _own_directions(name: str, setting: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    units, zeros = _directions(updates(zoo.get(name, **dict(setting)))[None])
    return units, zeros


# --------------------------------------------------------------------------
# The judgement.


@functools.cache
def _complexity(name: str) -> int:
    return simplicity.complexity(zoo.get(name)).total


class Match(NamedTuple):
    """A zoo optimizer's similarity to a graph, at its best-matching setting."""

    name: str
    similarity: float
    hparams: dict[str, Any]  # the keyword arguments of zoo.get(name, ...); {}: defaults


class Judgement(NamedTuple):
    """What :func:`judge` found."""

    nearest: str  # the zoo optimizer most similar in behaviour (the simplest of near-equals)
    similarity: float  # its similarity, in [-1, 1]
    top: tuple[Match, ...]  # the most similar zoo optimizers, most similar first
    verdict: str  # "re-tuning of <nearest>" or "new"
    threshold: float  # the similarity from which a graph is a re-tuning
    equation: str  # the graph's simplified equation (symopt.simplicity)
    nearest_equation: str  # the nearest's simplified equation, at its matched setting


def judge(graph: Graph, *, zoo_names: Iterable[str] | None = None,
          threshold: float = THRESHOLD, top: int = 3) -> Judgement:
    """Whether ``graph`` is new, or a zoo optimizer at other hyperparameters.

    Args:
      graph: a valid graph.
      zoo_names: the zoo optimizers to compare with (None: all of
        :func:`symopt.zoo.names`).
      threshold: the similarity from which the verdict is a re-tuning.
      top: how many of the most similar zoo optimizers to keep.

    Returns:
      A :class:`Judgement`. Its ``nearest`` is the simplest of the zoo
      optimizers within :data:`TIE_MARGIN` of the most similar (first in
      ``top``, the rest by similarity).

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
      KeyError: an unknown zoo name.
    """
    ranked = nearest(graph, zoo_names=zoo_names)
    nearest_match = ranked[0]
    return Judgement(
        nearest=nearest_match.name,
        similarity=nearest_match.similarity,
        top=tuple(ranked[:top]),
        verdict=verdict(ranked, threshold),
        threshold=threshold,
        equation=simplicity.simplified_equation(graph),
        nearest_equation=simplicity.simplified_equation(
            zoo.get(nearest_match.name, **nearest_match.hparams)),
    )


def nearest(graph: Graph, *, zoo_names: Iterable[str] | None = None) -> list[Match]:
    """Every zoo optimizer's :class:`Match` to ``graph``, nearest first: the
    simplest of those within :data:`TIE_MARGIN` of the most similar, then the
    rest by similarity. :func:`judge` without the equations (no sympy), for
    searchers that judge every candidate.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
      KeyError: an unknown zoo name.
    """
    graph_lib.validate(graph)
    names = zoo.names() if zoo_names is None else list(zoo_names)
    if not names:
        raise ValueError("zoo_names: expected at least one zoo optimizer")
    for name in names:
        zoo.OPTIMIZERS.get(name)  # raises, naming the known ones
    directions = _directions(updates(expected(graph)))
    matches = []
    for name in names:
        settings, units, zeros = _zoo_directions(name)
        own = own_setting(name, graph)
        if own and own not in settings:  # the zoo optimizer at the graph's own values
            own_units, own_zeros = _own_directions(name, tuple(sorted(own.items())))
            settings = (*settings, own)
            units, zeros = np.concatenate([units, own_units]), np.concatenate([zeros, own_zeros])
        scores = _similarities(directions, (units, zeros))
        best = int(np.argmax(scores))
        matches.append(Match(name, float(scores[best]), dict(settings[best])))
    ranked = sorted(matches, key=lambda m: -m.similarity)  # stable: zoo order breaks ties
    near = [m for m in ranked if m.similarity >= ranked[0].similarity - TIE_MARGIN]
    first = min(near, key=lambda m: (_complexity(m.name), names.index(m.name)))
    ranked.remove(first)
    return [first, *ranked]


def expected(graph: Graph) -> Graph:
    """``graph`` with each dropout replaced by its expectation, the identity
    (``drop_p(x)`` keeps ``x / (1 - p)`` with probability ``1 - p``). Novelty is
    judged on what an optimizer does on average: dropping 10% of Adam's update
    at random would otherwise lower its cosine to Adam to about 0.95 and pass
    for new."""
    def plain(unary: str) -> str:
        return "identity" if unary.startswith("drop_") else unary

    nodes = tuple(dataclasses.replace(n, left=plain(n.left), right=plain(n.right))
                  for n in graph.update.nodes)
    return graph.replace(update=graph_lib.Expr(nodes, graph.update.root))


def verdict(ranked: list[Match], threshold: float = THRESHOLD) -> str:
    """``re-tuning of <name>`` where the nearest of ``ranked`` (:func:`nearest`'s
    order) reaches ``threshold``, else ``new``."""
    first = ranked[0]
    return f"re-tuning of {first.name}" if first.similarity >= threshold else "new"


def _setting(hparams: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(hparams.items())) or "defaults"


def _code(text: str) -> str:
    """``text`` as inline code in a markdown table cell."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def summary_lines(judgement: Judgement) -> list[str]:
    """The ``## Novelty`` section of ``summary.md``: the verdict, the nearest zoo
    optimizers with their similarities, and the two simplified equations side
    by side."""
    j = judgement
    relation = ">=" if j.similarity >= j.threshold else "<"
    lines = [
        "## Novelty",
        "",
        f"**Verdict: {j.verdict}.** Nearest zoo optimizer by behaviour: {j.nearest}, "
        f"similarity {j.similarity:.3f} ({relation} the threshold {j.threshold:g}; "
        "the mean cosine of the update directions, step by step and leaf by leaf, on "
        "one probe of gradients that both optimizers see, maximised over a grid of "
        "the zoo optimizer's hyperparameters).",
        "",
        "| nearest | similarity | at |",
        "|---|---|---|",
        *(f"| {m.name} | {m.similarity:.3f} | {_setting(m.hparams)} |" for m in j.top),
        "",
        "| optimizer | simplified equation |",
        "|---|---|",
        f"| found | {_code(j.equation)} |",
        f"| {j.nearest} ({_setting(j.top[0].hparams)}) | {_code(j.nearest_equation)} |",
        "",
    ]
    return lines
