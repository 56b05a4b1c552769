"""The ``terms`` space: sums of primitive update terms (Marfinetz 2025).

The genome of "Evolving Deep Learning Optimizers" (Marfinetz 2025, arXiv
2512.11853): the update is

    dw = -lr_t * (sum_k alpha_k * T_k + weight_decay * w)

with 1 to 4 terms ``T_k`` from :data:`TERM_KINDS`:

=================  ==============================  ============================
kind               T_k                             with use_m / use_v off
=================  ==============================  ============================
``grad``           ``g``
``momentum``       ``m``                           ``g``
``rms_norm``       ``g / (sqrt(v) + eps)``         ``g / (|g| + eps)``
``adam_term``      ``m / (sqrt(v) + eps)``         ``m -> g``, ``sqrt(v) -> |g|``
``sign_grad``      ``sign(g)``
``unit_grad``      ``g / (|g| + eps)``
``nesterov``       ``m + beta1 * (g - m)``         ``g``
``orth_momentum``  ``orth(m)`` on a 2-D leaf,      ``m -> g``, ``sqrt(v) -> |g|``
                   ``adam_term`` on the others
=================  ==============================  ============================

``orth_momentum`` is ours, not the paper's: Muon's update (Jordan et al.
2024), ``if_matrix(orth(m), m / (sqrt(v) + eps))`` with the per-leaf
operators of :mod:`symopt.ops` (``orth`` is Muon's Newton-Schulz
orthogonalisation and width scale), so that Muon is a genome: the single
term ``orth_momentum`` with bias correction is
``optax.contrib.muon(lr, beta=beta1, adam_b1=beta1, adam_b2=beta2,
nesterov=False)`` at ``eps = 1e-8`` (Muon's Newton-Schulz eps; optax uses its
``eps`` for both). ``zoo.muon`` (Nesterov momentum, a beta of its own for
the matrices) is not a genome. The option ``leaf_ops`` (default True) adds
it (:data:`LEAF_TERM_KINDS`); ``leaf_ops=False`` gives the paper's seven
kinds (:data:`PAPER_TERM_KINDS`) and the draws the space made before the
term existed, for the same seed (the published protocol,
``experiments/terms_ga.py``, sets it so). :meth:`TermsSpace.program_shape`
compiles the per-leaf operators in exactly when the term is available.

This module owns :class:`TermsGenome` (the genotype), :class:`TermsSpace`
(sampling, mutation, crossover, zoo seeds, JSON, the program shape) and the
mapping of a genome to a :class:`~symopt.graph.Graph`.

Genome. The evolved scalars (:data:`SCALARS`) are log10 learning rate,
``beta1``, ``beta2``, log10 eps and log10 decoupled weight decay; the flags
(:data:`FLAGS`) are ``use_m``, ``use_v``, bias correction, element-wise
gradient clipping, warmup and cosine decay; ``clip_value`` and
``warmup_steps`` go with their flags. Ranges, sampling distributions and
rates are those of the paper's code (github.com/mmarfinetz/evo-optimizer),
except that ``nesterov`` reads ``beta1`` where the code has 0.9, and cosine
decay runs over the steps after warmup (:class:`~symopt.graph.Schedule`).
Two choices of ours:

* ``use_m`` / ``use_v`` keep their meaning in the paper's code: with
  ``use_m`` off there is no first moment and every term reads ``g`` where it
  would read ``m`` (an EMA without memory, ``beta1 = 0``); with ``use_v`` off
  there is no second moment and ``v`` is ``g^2``, so ``sqrt(v)`` is ``|g|``.
  Then ``momentum`` and ``nesterov`` are ``g``, ``rms_norm`` is ``unit_grad``
  and ``adam_term`` is ``m / (|g| + eps)`` (``unit_grad`` when both are
  off). Bias correction applies only to the moments kept.
* Weight decay can be off: the bottom of its log10 range
  (``LOG10_WEIGHT_DECAY_OFF``, 1e-6) means none, so that SGD, Adam and
  RMSProp are genomes; a mutation that clips to the bottom turns it off.

Coefficients ``alpha_k`` are sampled positive (the paper draws them from
[-1, 1], but a sum of negative terms ascends and fails the integrity check)
and mutated multiplicatively, so they keep their sign; ``from_json`` accepts
either sign within ``[-ALPHA_MAX, ALPHA_MAX]``.

Variation, as in the paper: each mutation probability is multiplied by
``1 - decay * progress`` (``decay`` 0.5), and so is the step size sigma:

* numeric, each with ``p_numeric`` (0.35): a scalar gets gaussian noise
  ``sigma * scale`` (scale 1 for the log10 scalars, 0.2 for ``beta1``, 0.1 for
  ``beta2``) and is clipped to its range; a coefficient is multiplied by
  ``exp(N(0, sigma))`` and clipped to ``ALPHA_MAX`` in magnitude;
* structural, with ``p_structural`` (0.15): add, remove or change one term;
* flags, each with ``p_flag`` (0.10): flipped.

A mutant can equal its parent when nothing fires, more often late in the
search, where the probabilities have decayed.
Crossover is single-point on the term list (a non-empty prefix of the first
parent, a suffix of the second, at most ``max_terms``) and uniform on every
scalar, flag and setting.

Graph. :meth:`TermsSpace.to_graph` builds the sum from graph nodes: one
constant per distinct coefficient, one shared ``eps`` constant, a ``beta1``
constant for ``nesterov``; a coefficient of 1 adds no node; ``adam_term``
with both moments is the ``adam`` operand. The rest of the step is the
graph's hyperparameters (lr, betas, eps, weight decay, ``clip_value``, bias
correction) and its :class:`~symopt.graph.Schedule` (``warmup_steps``, then
``cosine`` or ``constant``).

Seeds are the paper's four (SGD, Adam, AdamW, RMSProp) with the zoo's
hyperparameters rather than the paper's, and the other zoo optimizers the
genome expresses (see :meth:`TermsSpace.seeds`).

One concept, the paper's genome, in one module: its variation, its graphs
and the zoo graphs read back as genomes all follow the genome's fields and
the paper's ranges above.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from symopt import graph as graph_lib
from symopt import ops, zoo
from symopt.graph import Expr, Graph, Hyperparams, Node, Schedule
from symopt.program import ProgramShape
from symopt.spaces import base

FORMAT = "symopt.terms/1"
PAPER_TERM_KINDS = ("grad", "momentum", "rms_norm", "adam_term", "sign_grad", "unit_grad",
                    "nesterov")
"""The paper's term kinds, in the order the space draws them."""
LEAF_TERM_KINDS = ("orth_momentum",)
"""The kinds that use the per-leaf operators (``TermsSpace.leaf_ops``)."""
TERM_KINDS = PAPER_TERM_KINDS + LEAF_TERM_KINDS
"""Every term kind a genome may have (the space's ``leaf_ops`` permitting)."""
DEFAULT_SEEDS = ("sgd", "adam", "adamw", "rmsprop")
ALPHA_MAX = 5.0
ALPHA_SAMPLE = (0.1, 2.0)
CLIP_VALUE_SAMPLE = (0.5, 2.0)
WARMUP_STEPS_SAMPLE = (50, 200)


class Scalar(NamedTuple):
    """An evolved scalar of the genome."""

    name: str
    low: float  # the valid range; mutation clips to it
    high: float
    sample: tuple[float, float]  # uniform sampling range
    scale: float  # mutation sigma as a multiple of the space's sigma


class Flag(NamedTuple):
    """A boolean gene of the genome."""

    name: str
    p_sample: float  # probability that a sampled genome has it on


SCALARS = (
    Scalar("log10_lr", -5.0, -1.0, (-4.0, -2.0), 1.0),
    Scalar("beta1", 0.0, 0.999, (0.5, 0.99), 0.2),
    Scalar("beta2", 0.0, 0.9999, (0.9, 0.9999), 0.1),
    Scalar("log10_eps", -10.0, -4.0, (-9.0, -6.0), 1.0),
    Scalar("log10_weight_decay", -6.0, -2.0, (-5.0, -3.0), 1.0),
)
FLAGS = (
    Flag("use_m", 0.7),
    Flag("use_v", 0.7),
    Flag("bias_correction", 0.6),
    Flag("clip", 0.2),
    Flag("warmup", 0.3),
    Flag("cosine", 0.3),
)
SETTINGS = ("clip_value", "warmup_steps")
"""Genes that go with a flag: sampled and crossed over, never mutated."""
LOG10_WEIGHT_DECAY_OFF = SCALARS[-1].low
"""``log10_weight_decay`` at or below this means no weight decay."""

_UNIFORM_GENES = (*(s.name for s in SCALARS), *(f.name for f in FLAGS), *SETTINGS)


class Term(NamedTuple):
    """One term ``alpha * T`` of the sum; ``kind`` is one of :data:`TERM_KINDS`."""

    kind: str
    alpha: float


@dataclasses.dataclass(frozen=True)
class TermsGenome:
    """A point of the terms space (see the module docstring); immutable, hashable."""

    terms: tuple[Term, ...]
    log10_lr: float = -3.0
    beta1: float = 0.9
    beta2: float = 0.999
    log10_eps: float = -8.0
    log10_weight_decay: float = LOG10_WEIGHT_DECAY_OFF
    use_m: bool = True
    use_v: bool = True
    bias_correction: bool = True
    clip: bool = False
    clip_value: float = 1.0
    warmup: bool = False
    warmup_steps: int = 100
    cosine: bool = False

    @property
    def learning_rate(self) -> float:
        return 10.0**self.log10_lr

    @property
    def eps(self) -> float:
        return 10.0**self.log10_eps

    @property
    def weight_decay(self) -> float:
        if self.log10_weight_decay <= LOG10_WEIGHT_DECAY_OFF:
            return 0.0
        return 10.0**self.log10_weight_decay


@dataclasses.dataclass(frozen=True)
class TermsSpace:
    """The terms space and its GA rates (defaults: the paper's)."""

    name: str = dataclasses.field(default="terms", init=False)
    max_terms: int = 4
    sample_terms: tuple[int, int] = (1, 3)  # terms of a sampled genome, inclusive
    p_numeric: float = 0.35
    p_structural: float = 0.15
    p_flag: float = 0.10
    sigma: float = 0.3
    decay: float = 0.5  # rates and sigma times 1 - decay * progress
    leaf_ops: bool = True  # the kinds of LEAF_TERM_KINDS too (module docstring)

    def __post_init__(self) -> None:
        base.check_fields(self)
        _require(isinstance(self.leaf_ops, bool), "TermsSpace.leaf_ops",
                 f"expected True or False, got {self.leaf_ops!r}")
        # alphas, eps and beta1 are constants of the graph.
        limit = graph_lib.MAX_CONSTANTS - 2
        _require(
            1 <= self.max_terms <= limit,
            "TermsSpace.max_terms",
            f"must be in [1, {limit}], got {self.max_terms}",
        )
        lo, hi = self.sample_terms
        _require(
            1 <= lo <= hi <= self.max_terms,
            "TermsSpace.sample_terms",
            f"need 1 <= low <= high <= max_terms, got {self.sample_terms}",
        )
        for field in ("p_numeric", "p_structural", "p_flag", "decay"):
            value = getattr(self, field)
            _require(0.0 <= value <= 1.0, f"TermsSpace.{field}", f"must be in [0, 1], got {value}")
        _require(self.sigma >= 0.0, "TermsSpace.sigma", f"must be >= 0, got {self.sigma}")

    # -- the Space protocol ------------------------------------------------

    def sample(self, rng: np.random.Generator) -> TermsGenome:
        """A random genome: 1 to 3 terms, scalars and flags as in the paper."""
        lo, hi = self.sample_terms
        terms = tuple(_random_term(rng, self.kinds)
                      for _ in range(int(rng.integers(lo, hi + 1))))
        genes: dict[str, Any] = {s.name: float(rng.uniform(*s.sample)) for s in SCALARS}
        genes.update({f.name: bool(rng.random() < f.p_sample) for f in FLAGS})
        genes["clip_value"] = float(rng.uniform(*CLIP_VALUE_SAMPLE))
        genes["warmup_steps"] = int(
            rng.integers(WARMUP_STEPS_SAMPLE[0], WARMUP_STEPS_SAMPLE[1] + 1)
        )
        return TermsGenome(terms, **genes)

    def mutate(
        self, rng: np.random.Generator, genome: TermsGenome, *, progress: float = 0.0
    ) -> TermsGenome:
        """Numeric, structural and flag mutations at rates that decay with ``progress``.

        Args:
          rng: the source of randomness.
          genome: the parent.
          progress: the fraction of the search done, in [0, 1]; every rate and
            sigma is multiplied by ``1 - decay * progress``.

        Returns:
          The mutant (possibly equal to the parent).
        """
        self.validate(genome)
        _require(0.0 <= progress <= 1.0, "progress", f"must be in [0, 1], got {progress}")
        factor = 1.0 - self.decay * progress
        p_numeric, sigma = self.p_numeric * factor, self.sigma * factor
        genes: dict[str, Any] = {}
        for s in SCALARS:
            value = getattr(genome, s.name)
            if rng.random() < p_numeric:
                value = float(np.clip(value + rng.normal(0.0, sigma * s.scale), s.low, s.high))
            genes[s.name] = value
        terms = list(genome.terms)
        for i, term in enumerate(terms):
            if rng.random() < p_numeric:
                alpha = term.alpha * math.exp(rng.normal(0.0, sigma))
                terms[i] = term._replace(alpha=float(np.clip(alpha, -ALPHA_MAX, ALPHA_MAX)))
        if rng.random() < self.p_structural * factor:
            terms = self._mutate_structure(rng, terms)
        for f in FLAGS:
            flip = rng.random() < self.p_flag * factor
            genes[f.name] = getattr(genome, f.name) ^ flip
        return dataclasses.replace(genome, terms=tuple(terms), **genes)

    def crossover(self, rng: np.random.Generator, a: TermsGenome, b: TermsGenome) -> TermsGenome:
        """Single-point on the term lists, uniform on the other genes.

        The child's terms are ``a.terms[:i] + b.terms[j:]`` (``i >= 1``, so
        never empty), cut to ``max_terms``; every other gene is ``a``'s or
        ``b``'s with probability 1/2 each.
        """
        self.validate(a)
        self.validate(b)
        i = int(rng.integers(1, len(a.terms) + 1))
        j = int(rng.integers(len(b.terms)))
        terms = (a.terms[:i] + b.terms[j:])[: self.max_terms]
        genes = {name: getattr(a if rng.random() < 0.5 else b, name) for name in _UNIFORM_GENES}
        return TermsGenome(terms, **genes)

    def seeds(self, names: Sequence[str] | None = None) -> dict[str, TermsGenome]:
        """Zoo optimizers as genomes, by zoo name (default: :data:`DEFAULT_SEEDS`).

        Each has the zoo graph's hyperparameters and gives its updates:
        exactly for ``sgd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``,
        ``signsgd``, ``autolr_sign`` and ``terms_ga``; ``rmsprop`` is the
        paper's RMSProp, ``g / (sqrt(v) + eps)``, where the zoo's (optax's) has
        ``g / sqrt(v + eps)``: equal to within ``eps / sqrt(v)`` relative.

        Raises:
          ValueError: naming the names that are not zoo optimizers or that the
            genome cannot express.
        """
        names = DEFAULT_SEEDS if names is None else tuple(names)
        bad = [n for n in names if n not in _SEED_TERMS]
        if bad:
            unknown = [n for n in bad if n not in zoo.names()]
            raise ValueError(
                f"terms space: no genome for {', '.join(map(repr, bad))}"
                + (f" ({', '.join(map(repr, unknown))} not in the zoo)" if unknown else "")
                + f"; it expresses {', '.join(_SEED_TERMS)}"
            )
        return {n: self.validate(_seed(n)) for n in names}

    def to_graph(self, genome: TermsGenome) -> Graph:
        """The optimizer ``genome`` encodes: a valid Graph (see the module docstring)."""
        self.validate(genome)
        build = _Builder()
        total = None
        for term in genome.terms:
            ref = _TERM_BUILDERS[term.kind](build, genome)
            if term.alpha != 1.0:
                ref = build.node("mul", build.constant(term.alpha), ref)
            total = ref if total is None else build.node("add", total, ref)
        hparams = Hyperparams(
            learning_rate=genome.learning_rate,
            beta1=genome.beta1,
            beta2=genome.beta2,
            eps=genome.eps,
            weight_decay=genome.weight_decay,
            clip_value=genome.clip_value if genome.clip else 0.0,
            bias_correction=genome.bias_correction,
        )
        schedule = Schedule(
            kind="cosine" if genome.cosine else "constant",
            warmup_steps=genome.warmup_steps if genome.warmup else 0,
        )
        graph = Graph(
            update=Expr(tuple(build.nodes), total),
            schedule=schedule,
            hparams=hparams,
            constants=tuple(build.constants),
        )
        return graph_lib.validate(graph)

    def scale_learning_rate(self, genome: TermsGenome, factor: float) -> TermsGenome | None:
        """``genome`` with ``log10_lr`` moved by ``log10(factor)``; None outside its range."""
        scalar = next(s for s in SCALARS if s.name == "log10_lr")
        log10_lr = genome.log10_lr + math.log10(factor)
        if not scalar.low <= log10_lr <= scalar.high:
            return None
        return dataclasses.replace(genome, log10_lr=log10_lr)

    def to_json(self, genome: TermsGenome) -> dict[str, Any]:
        """``{"format", "terms": [[kind, alpha], ...], <gene>: value, ...}``."""
        self.validate(genome)
        data: dict[str, Any] = {"format": FORMAT}
        data["terms"] = [[t.kind, t.alpha] for t in genome.terms]
        data.update({name: getattr(genome, name) for name in _UNIFORM_GENES})
        return data

    def from_json(self, data: dict[str, Any]) -> TermsGenome:
        """The genome of :meth:`to_json`'s output; ValueError naming a bad field."""
        _require(isinstance(data, dict), "terms genome", f"expected a dict, got {type(data)}")
        _require(
            data.get("format", FORMAT) == FORMAT,
            "terms genome.format",
            f"{data.get('format')!r} is not {FORMAT!r}",
        )
        known = {"format", "terms", *_UNIFORM_GENES}
        unknown = sorted(set(data) - known)
        _require(not unknown, "terms genome", f"unknown fields {unknown}")
        missing = sorted(known - {"format"} - set(data))
        _require(not missing, "terms genome", f"missing fields {missing}")
        terms = data["terms"]
        _require(isinstance(terms, list), "terms genome.terms", "expected a list")
        parsed = []
        for i, item in enumerate(terms):
            ok = isinstance(item, (list, tuple)) and len(item) == 2
            _require(ok, f"terms genome.terms[{i}]", f"expected [kind, alpha], got {item!r}")
            parsed.append(Term(item[0], _number(item[1], f"terms genome.terms[{i}].alpha")))
        genes: dict[str, Any] = {
            s.name: _number(data[s.name], f"terms genome.{s.name}") for s in SCALARS
        }
        genes.update({f.name: data[f.name] for f in FLAGS})
        genes["clip_value"] = _number(data["clip_value"], "terms genome.clip_value")
        genes["warmup_steps"] = data["warmup_steps"]
        return self.validate(TermsGenome(tuple(parsed), **genes))

    def program_shape(self) -> ProgramShape:
        """The smallest ProgramShape that holds every graph :meth:`to_graph` returns."""
        return _program_shape(self.max_terms, self.kinds)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The term kinds the space draws: the paper's, and :data:`LEAF_TERM_KINDS`
        where ``leaf_ops`` is on."""
        return TERM_KINDS if self.leaf_ops else PAPER_TERM_KINDS

    # -- helpers -------------------------------------------------------------

    def validate(self, genome: TermsGenome) -> TermsGenome:
        """Returns ``genome`` or raises ValueError naming its bad field."""
        _require(
            isinstance(genome, TermsGenome),
            "terms genome",
            f"expected a TermsGenome, got {type(genome).__name__}",
        )
        terms = genome.terms
        _require(
            isinstance(terms, tuple) and 1 <= len(terms) <= self.max_terms,
            "terms genome.terms",
            f"expected a tuple of 1 to {self.max_terms} terms",
        )
        for i, term in enumerate(terms):
            at = f"terms genome.terms[{i}]"
            _require(isinstance(term, Term), at, f"expected a Term, got {term!r}")
            _require(
                term.kind in TERM_KINDS,
                f"{at}.kind",
                f"unknown kind {term.kind!r}; known: {', '.join(TERM_KINDS)}",
            )
            _require(
                term.kind in self.kinds,
                f"{at}.kind",
                f"{term.kind!r} uses the per-leaf operators, which this space leaves out "
                "(leaf_ops=False)",
            )
            _check_number(term.alpha, f"{at}.alpha", -ALPHA_MAX, ALPHA_MAX)
        for s in SCALARS:
            _check_number(getattr(genome, s.name), f"terms genome.{s.name}", s.low, s.high)
        for f in FLAGS:
            value = getattr(genome, f.name)
            _require(
                isinstance(value, bool),
                f"terms genome.{f.name}",
                f"expected true/false, got {value!r}",
            )
        _check_number(genome.clip_value, "terms genome.clip_value", 0.0, ops.BIG)
        _require(genome.clip_value > 0, "terms genome.clip_value", "must be > 0")
        steps = genome.warmup_steps
        _require(
            isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
            "terms genome.warmup_steps",
            f"expected an integer >= 1, got {steps!r}",
        )
        return genome

    def _mutate_structure(self, rng: np.random.Generator, terms: list[Term]) -> list[Term]:
        """Adds, removes or changes one term (an applicable one, at random)."""
        moves = ["change"]
        if len(terms) < self.max_terms:
            moves.append("add")
        if len(terms) > 1:
            moves.append("remove")
        move = moves[int(rng.integers(len(moves)))]
        if move == "add":
            return [*terms, _random_term(rng, self.kinds)]
        i = int(rng.integers(len(terms)))
        if move == "remove":
            return terms[:i] + terms[i + 1 :]
        others = [k for k in self.kinds if k != terms[i].kind]
        terms[i] = terms[i]._replace(kind=others[int(rng.integers(len(others)))])
        return terms


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {message}")


def _number(value: Any, where: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(ok, where, f"expected a number, got {value!r}")
    return float(value)


def _check_number(value: Any, where: str, low: float, high: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and low <= value <= high
    _require(ok, where, f"expected a number in [{low:g}, {high:g}], got {value!r}")


def _random_term(rng: np.random.Generator, kinds: Sequence[str]) -> Term:
    kind = kinds[int(rng.integers(len(kinds)))]
    return Term(kind, float(rng.uniform(*ALPHA_SAMPLE)))


# --------------------------------------------------------------------------
# Genome -> Graph.


class _Builder:
    """The nodes and constants of one update expression, each made once."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.constants: list[float] = []
        self._refs: dict[Node, str] = {}

    def node(self, op: str, a: str, b: str, *, left: str = "identity",
             right: str = "identity") -> str:
        node = Node(op, left, a, right, b)
        if node not in self._refs:
            self.nodes.append(node)
            self._refs[node] = graph_lib.node_ref(len(self.nodes) - 1)
        return self._refs[node]

    def constant(self, value: float) -> str:
        if value not in self.constants:
            self.constants.append(value)
        return f"c{self.constants.index(value)}"


def _m(genome: TermsGenome) -> str:
    """The first moment: ``m``, or ``g`` with use_m off."""
    return "m" if genome.use_m else "g"


def _normalised(build: _Builder, genome: TermsGenome, x: str, *, use_v: bool) -> str:
    """``x / (sqrt(v) + eps)``, with ``|g|`` for ``sqrt(v)`` unless ``use_v``."""
    root, of = ("sqrt_abs", "v") if use_v else ("abs", "g")
    return build.node("div", x, build.node("add", of, build.constant(genome.eps), left=root))


def _nesterov(build: _Builder, genome: TermsGenome) -> str:
    if not genome.use_m:  # m + beta1 * (g - m) with m = g
        return "g"
    lookahead = build.node("mul", build.constant(genome.beta1), build.node("sub", "g", "m"))
    return build.node("add", "m", lookahead)


def _adam_term(build: _Builder, genome: TermsGenome) -> str:
    if genome.use_m and genome.use_v:
        return "adam"
    return _normalised(build, genome, _m(genome), use_v=genome.use_v)


def _orth_momentum(build: _Builder, genome: TermsGenome) -> str:
    """Muon's update: ``orth(m)`` on a 2-D leaf, the Adam term on the others."""
    return build.node("if_matrix", _m(genome), _adam_term(build, genome), left="orth")


_TERM_BUILDERS: dict[str, Callable[[_Builder, TermsGenome], str]] = {
    "grad": lambda build, genome: "g",
    "momentum": lambda build, genome: _m(genome),
    "rms_norm": lambda build, genome: _normalised(build, genome, "g", use_v=genome.use_v),
    "adam_term": _adam_term,
    "sign_grad": lambda build, genome: "sign_g",
    "unit_grad": lambda build, genome: _normalised(build, genome, "g", use_v=False),
    "nesterov": _nesterov,
    "orth_momentum": _orth_momentum,
}
"""Each kind's term as a reference into the builder's expression."""


@functools.cache
def _program_shape(max_terms: int, kinds: tuple[str, ...]) -> ProgramShape:
    """The largest canonical graph the space makes from ``kinds``, found by
    building them.

    A graph's size grows with its set of distinct kinds and its number of
    terms; coefficients other than 1, all different, give each term its own
    node and constant. So the maxima are among sets of ``max_terms``
    distinct kinds (there are 7 or 8, and ``max_terms`` <= 6) with such
    coefficients, for each use_m, use_v. The per-leaf operators are compiled
    in where a kind uses them.
    """
    space = TermsSpace(max_terms=max_terms, sample_terms=(1, 1))
    nodes = operands = constants = 0
    alphas = [1.5 + 0.25 * i for i in range(max_terms)]
    for chosen in itertools.combinations(kinds, max_terms):
        terms = tuple(Term(k, a) for k, a in zip(chosen, alphas, strict=True))
        for use_m, use_v in itertools.product((False, True), repeat=2):
            genome = TermsGenome(terms, log10_eps=-7.0, beta1=0.875, use_m=use_m, use_v=use_v)
            graph = graph_lib.canonical(space.to_graph(genome))
            used = graph_lib.expr_inputs(graph.update)
            nodes = max(nodes, len(graph.update.nodes))
            operands = max(operands, len(used & set(ops.OPERANDS)))
            constants = max(constants, len(graph.constants))
    return ProgramShape(
        max_nodes=nodes,
        max_operands=operands,
        max_constants=constants,
        max_states=0,
        # No decays or schedule graphs, but the population interpreter
        # evaluates one (padding) node of each.
        max_decay_nodes=1,
        max_schedule_nodes=1,
        leaf_ops=any(k in LEAF_TERM_KINDS for k in kinds),
    )


# --------------------------------------------------------------------------
# Zoo seeds.


def _momentum_terms(graph: Graph) -> tuple[tuple[Term, ...], dict[str, Any]]:
    """Heavy ball: ``trace = m / (1 - mu)`` for ``m`` the EMA with ``beta1 = mu``."""
    mu = graph.hparams.momentum
    genes = {
        "beta1": mu,
        "use_v": False,
        "bias_correction": False,
        "log10_lr": math.log10(graph.hparams.learning_rate) - math.log10(1 - mu),
    }
    if graph.momentum == "classical":
        return (Term("momentum", 1.0),), genes
    # Nesterov: g + mu * trace = ((1 - mu) * g + mu * m) / (1 - mu)
    return (Term("grad", 1 - mu), Term("momentum", mu)), genes


_SEED_TERMS: dict[str, Callable[[Graph], tuple[tuple[Term, ...], dict[str, Any]]]] = {
    "sgd": lambda g: ((Term("grad", 1.0),), {"use_m": False, "use_v": False}),
    "momentum": _momentum_terms,
    "nesterov": _momentum_terms,
    "rmsprop": lambda g: ((Term("rms_norm", 1.0),), {"use_m": False}),
    "adam": lambda g: ((Term("adam_term", 1.0),), {}),
    "adamw": lambda g: ((Term("adam_term", 1.0),), {}),
    "signsgd": lambda g: ((Term("sign_grad", 1.0),), {"use_m": False, "use_v": False}),
    "autolr_sign": lambda g: ((Term("sign_grad", 1.0),), {"use_m": False, "use_v": False}),
    "terms_ga": lambda g: (
        (Term("sign_grad", g.constants[0]), Term("adam_term", g.constants[1])),
        {},
    ),
}
"""Zoo optimizers the genome expresses: their terms, and genes that differ
from what the zoo graph's hyperparameters and schedule give."""


def _seed(name: str) -> TermsGenome:
    """The zoo optimizer ``name`` as a genome, from its graph's hyperparameters."""
    graph = zoo.get(name)
    h, s = graph.hparams, graph.schedule
    _require(
        s.kind in ("constant", "cosine") and s.alpha == 0 and not h.clip_norm,
        f"seed {name!r}",
        "the zoo graph has a schedule or clipping the genome lacks",
    )
    terms, genes = _SEED_TERMS[name](graph)
    genome = TermsGenome(
        terms,
        log10_lr=math.log10(h.learning_rate),
        beta1=h.beta1,
        beta2=h.beta2,
        log10_eps=math.log10(h.eps),
        log10_weight_decay=math.log10(h.weight_decay) if h.weight_decay else LOG10_WEIGHT_DECAY_OFF,
        bias_correction=h.bias_correction,
        clip=h.clip_value > 0,
        clip_value=h.clip_value or 1.0,
        warmup=s.warmup_steps > 0,
        warmup_steps=s.warmup_steps or 100,
        cosine=s.kind == "cosine",
    )
    genome = dataclasses.replace(genome, **genes)
    # log10 of a value at the edge of a range can round past it.
    return dataclasses.replace(
        genome,
        **{sc.name: float(np.clip(getattr(genome, sc.name), sc.low, sc.high)) for sc in SCALARS},
    )
