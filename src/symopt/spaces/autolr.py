"""The ``autolr`` space: AutoLR's adaptive optimizers and dynamic schedules.

AutoLR (Carvalho et al., GECCO'20; Carvalho, Lourenço, Machado, arXiv
2103.12623 and GECCO'22) evolves
optimizers with structured grammatical evolution. This module owns
:class:`AutoLRSpace`, its genomes (:class:`AdaptiveGenome`,
:class:`DynamicGenome`) and their mapping to a :class:`~symopt.graph.Graph`.
The space has two modes (``mode``):

**adaptive**: four per-weight functions, expression trees over the states
``alpha``, ``beta``, ``sigma`` and the gradient ``g``. As in the authors'
implementation (github.com/soren5/autolr, ``CustomOptimizer``), each function
gives a *decrement*, applied in place in the order alpha, beta, sigma, then
the weights::

    alpha <- alpha - f_alpha(alpha, beta, sigma, g)
    beta  <- beta  - f_beta(alpha, beta, sigma, g)     (reads the new alpha)
    sigma <- sigma - f_sigma(alpha, beta, sigma, g)    (the new alpha, beta)
    w     <- w     - f_grad(alpha, beta, sigma, g)     (all three new)

with the states zero at the first step. ADES is ``f_alpha = (1-b1) * (alpha
+ (alpha+b2) * (alpha+g))``, ``f_grad = -alpha``; the sign optimizer is
``f_grad = 0.0009 * sign(g)``. Every function reads all four inputs (the
authors' grammar gives ``f_alpha`` only alpha and g, ``f_beta`` no sigma and
``f_grad`` no g). Operators: add, sub, mul, protected div, pow, negation,
square and sqrt, as the paper, plus sign and abs, which the sign optimizer
needs; all are rows of :mod:`symopt.ops` (``div`` and ``pow`` are its
protected versions, ``sqrt_abs`` is ``sqrt|x|``). Constants are drawn from
:data:`CONSTANT_GRID`, the authors' grid.

:meth:`AutoLRSpace.to_graph` writes the step as a graph with learning rate 1
and direction ``d = f_grad(...)``, so that ``w <- w - lr * d`` is the step
above. The graph's recurrent states ``s0, s1, ...`` hold exactly alpha, beta,
sigma (in that order; only those the step reads, directly or through another
live state). A tree has at most ``max_tree_ops`` operators and a depth of
``max_depth``: each operator becomes at most one graph node, each live state
one more (its subtraction), so every genome fits ``graph.MAX_NODES``;
distinct constants are limited to ``graph.MAX_CONSTANTS``. A candidate whose
step does not depend on the gradient (``f_grad = 0.5``) is a genome of the
space: the integrity check rejects it before training, as AutoLR does.

**dynamic**: a learning-rate policy ``lr_{e+1} = f(e, lr_e)`` over ``epochs``
equal epochs (at most ``graph.MAX_SCHEDULE_VALUES``), a tree of
``("if", var, cmp, const, then, else)`` nodes (``var`` is ``"lr"`` or
``"epoch"``, ``cmp`` one of :data:`COMPARISONS`) whose leaves are arithmetic
expressions (add, sub, mul, protected div) over ``lr``, ``epoch`` and
constants. As with the Keras callback of the authors' code, the policy runs
at the start of every epoch ``e = 0 .. E-1`` on the previous rate (``lr_0``
before the first) and epoch ``e`` trains at ``lr_{e+1}``. The recurrence is
unrolled on the host into a ``piecewise`` schedule of the fixed ``base`` zoo
optimizer (SGD by default; its own schedule is replaced) with learning rate
``lr_0`` and values ``lr_{e+1} / lr_0``; each rate is clipped to
``[0, max_lr]`` (NaN counts as 0) before the next epoch reads it.
Constants compared with ``lr`` and the expression constants come from
``lr_0 * linspace(0.01, 10, 100)``, which at ``lr_0 = 0.01`` is the authors'
grid 1e-4 .. 0.1; those compared with ``epoch`` are the epochs 0 .. E-1.

Variation. The paper's structured GE (tournament, elitism, crossover 0.9,
mutation 0.15: :data:`CROSSOVER_RATE`, :data:`MUTATION_RATE`, rates for the
searcher to apply) is replaced by tree-based variation with depth and size
limits. :meth:`~AutoLRSpace.mutate` is one mutation event: a subtree of a
function (a live one with probability 0.8) regrown within the limits, a
constant moved one or two steps along its grid, or (dynamic) a condition
redrawn; SGE's per-choice mutation regrows the same subtrees.
:meth:`~AutoLRSpace.crossover` takes each function from either parent, as
SGE's uniform crossover takes each non-terminal's genes, then grafts a
subtree of the other parent into one function (a live one with probability
0.8). Genomes are immutable,
hashable named tuples of nested tuples (a leaf is a variable name or a
float); from_json accepts any finite constant, so the zoo's published
constants, which lie off the grid, are genomes (:meth:`~AutoLRSpace.seeds`).

One concept, AutoLR's space in its two modes, in one module: the genomes,
their variation, their checks and their graphs share the grammar above. The
trees themselves (walking, editing, JSON) are :mod:`symopt.spaces.trees`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from symopt import graph as graph_lib
from symopt import ops, zoo
from symopt.graph import Expr, Graph, Hyperparams, Node, Schedule
from symopt.program import ProgramShape
from symopt.spaces import base, trees
from symopt.spaces.trees import Tree

MODES = ("adaptive", "dynamic")
STATES = ("alpha", "beta", "sigma")
"""The adaptive states, in update order; the graph's states ``s0..`` in this order."""
ADAPTIVE_INPUTS = (*STATES, "g")
ADAPTIVE_BINARY = ("add", "sub", "mul", "div", "pow")
ADAPTIVE_UNARY = ("neg", "square", "sqrt_abs", "sign", "abs")
DYNAMIC_INPUTS = ("lr", "epoch")
DYNAMIC_BINARY = ("add", "sub", "mul", "div")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
CONSTANT_GRID = tuple(float(x) for x in (1 / (1 + np.exp(-np.linspace(-10, 10, 100))))[1:-1])
"""The adaptive constants: the logistic function at the 98 inner points of
``linspace(-10, 10, 100)``, 5.556e-5 .. 0.999944 (the authors' grammar):
dense near 0 and 1, where decay rates live."""
LR_GRID_FACTORS = tuple(float(x) for x in np.linspace(0.01, 10, 100))
"""The dynamic rate constants are ``lr_0`` times these."""
ADAPTIVE_SEEDS = ("ades", "autolr_sign", "sgd", "signsgd")
CROSSOVER_RATE = 0.9
MUTATION_RATE = 0.15
"""The paper's rates, for the searcher (e.g. ``GeneticAlgorithm(crossover_rate=...)``).
In SGE 0.15 is the chance of changing each expanded choice; here it is the
chance that a child gets one mutation event."""

_MAX_TRIES = 50
_P_LIVE = 0.8  # chance that a mutation targets a function the step reads
_P_IF = 0.5  # chance that a grown policy position is an if node

class AdaptiveGenome(NamedTuple):
    """The four trees of an adaptive optimizer (decrements; see the module docstring)."""

    alpha: Tree
    beta: Tree
    sigma: Tree
    grad: Tree


class DynamicGenome(NamedTuple):
    """A dynamic learning-rate policy ``lr_{e+1} = policy(e, lr_e)``."""

    policy: Tree


Genome = AdaptiveGenome | DynamicGenome


def _constants(genome: Genome) -> set[float]:
    return {x for tree in genome for x in trees.leaves(tree) if isinstance(x, float)}


# --------------------------------------------------------------------------
# Adaptive genomes as graphs.


def live_states(genome: AdaptiveGenome) -> tuple[str, ...]:
    """The states the step reads, directly or through another live state (in order)."""
    reads = {
        name: {x for x in trees.leaves(getattr(genome, name)) if x in STATES}
        for name in (*STATES, "grad")
    }
    live: set[str] = set()
    frontier = set(reads["grad"])
    while frontier:
        name = frontier.pop()
        if name not in live:
            live.add(name)
            frontier |= reads[name]
    return tuple(s for s in STATES if s in live)


class _GraphBuilder:
    """Graph nodes from trees; a value is ``(unary, ref)``, a unary pending on ref."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.constants: list[float] = []

    def node(self, op: str, left: tuple[str, str], right: tuple[str, str]) -> str:
        self.nodes.append(Node(op, left[0], left[1], right[0], right[1]))
        return graph_lib.node_ref(len(self.nodes) - 1)

    def ref(self, value: tuple[str, str]) -> str:
        """A reference holding ``value`` (a keep_left node if a unary is pending)."""
        if value[0] == "identity":
            return value[1]
        return self.node("keep_left", value, ("identity", value[1]))

    def value(self, tree: Tree, refs: dict[str, str]) -> tuple[str, str]:
        if isinstance(tree, str):
            return "identity", refs[tree]
        if isinstance(tree, float):
            if tree not in self.constants:
                self.constants.append(tree)
            return "identity", f"c{self.constants.index(tree)}"
        if len(tree) == 2:
            return tree[0], self.ref(self.value(tree[1], refs))
        return "identity", self.node(tree[0], self.value(tree[1], refs), self.value(tree[2], refs))


def _adaptive_graph(genome: AdaptiveGenome) -> Graph:
    live = live_states(genome)
    build = _GraphBuilder()
    refs = {"g": "g", **{name: f"s{i}" for i, name in enumerate(live)}}
    new_states = []
    for name in live:  # in place, in order: later functions read the new values
        decrement = build.value(getattr(genome, name), refs)
        refs[name] = build.node("sub", ("identity", refs[name]), decrement)
        new_states.append(refs[name])
    root = build.ref(build.value(genome.grad, refs))
    return graph_lib.validate(
        Graph(
            update=Expr(tuple(build.nodes), root),
            states=tuple(new_states),
            constants=tuple(build.constants),
            hparams=Hyperparams(learning_rate=1.0),
        )
    )


def _seed_genome(name: str) -> AdaptiveGenome:
    """A zoo optimizer as an adaptive genome, with the zoo's constants."""
    dead = dict(alpha="alpha", beta="beta", sigma="sigma")  # unread: any tree
    if name == "ades":
        one_minus_b1, b2 = zoo.ades().constants
        change = ("add", "alpha", ("mul", ("add", "alpha", b2), ("add", "alpha", "g")))
        return AdaptiveGenome(
            **{**dead, "alpha": ("mul", one_minus_b1, change)}, grad=("neg", "alpha")
        )
    lr = zoo.get(name).hparams.learning_rate
    step = {"autolr_sign": ("sign", "g"), "signsgd": ("sign", "g"), "sgd": "g"}[name]
    return AdaptiveGenome(**dead, grad=("mul", lr, step))


# --------------------------------------------------------------------------
# Dynamic policies.


def _evaluate_policy(tree: Tree, lr: float, epoch: float) -> float:
    if isinstance(tree, str):
        return lr if tree == "lr" else epoch
    if isinstance(tree, float):
        return tree
    if tree[0] == "if":
        _, var, cmp, const, then, other = tree
        taken = COMPARISONS[cmp](lr if var == "lr" else epoch, const)
        return _evaluate_policy(then if taken else other, lr, epoch)
    a, b = (np.float64(_evaluate_policy(x, lr, epoch)) for x in tree[1:])
    return float(ops.apply(tree[0], np, a, b))


# --------------------------------------------------------------------------
# The space.


@dataclasses.dataclass(frozen=True)
class AutoLRSpace:
    """AutoLR's search space (see the module docstring).

    Attributes:
      mode: ``"adaptive"`` (per-weight update rules) or ``"dynamic"``
        (learning-rate policies over epochs).
      max_depth: the deepest nesting of operators (and if nodes) in one tree.
      max_tree_ops: operators (and if nodes) in one tree; adaptive mode needs
        ``4 * max_tree_ops + 3 <= graph.MAX_NODES``.
      binary, unary: the adaptive operators (names in :mod:`symopt.ops`).
      p_leaf: chance that a grown expression position is a leaf.
      epochs: dynamic mode: the number of epochs ``E`` the policy runs over.
      lr0: dynamic mode: the initial rate ``lr_0`` (None: the base optimizer's).
      base: dynamic mode: the zoo optimizer whose direction is kept.
      max_lr: dynamic mode: the largest rate a policy may set.
    """

    name: str = dataclasses.field(default="autolr", init=False)
    mode: str = "adaptive"
    max_depth: int = 5
    max_tree_ops: int = 7
    binary: tuple[str, ...] = ADAPTIVE_BINARY
    unary: tuple[str, ...] = ADAPTIVE_UNARY
    p_leaf: float = 0.5
    epochs: int = 10
    lr0: float | None = None
    base: str = "sgd"
    max_lr: float = 1.0

    def __post_init__(self) -> None:
        base.check_fields(self)
        _require(self.mode in MODES, "mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        _require(
            self.max_depth >= 1 and self.max_tree_ops >= 1, "max_depth/max_tree_ops", "must be >= 1"
        )
        _require(
            4 * self.max_tree_ops + len(STATES) <= graph_lib.MAX_NODES,
            "max_tree_ops",
            f"4 trees of {self.max_tree_ops} operators exceed graph.MAX_NODES",
        )
        _require(
            set(self.binary) <= set(ops.BINARY)
            and set(self.unary) <= set(ops.UNARY)
            and self.binary,
            "binary/unary",
            "unknown operators, or no binary one",
        )
        _require(0.0 <= self.p_leaf < 1.0, "p_leaf", "must be in [0, 1)")
        _require(
            1 <= self.epochs <= graph_lib.MAX_SCHEDULE_VALUES,
            "epochs",
            f"must be in [1, {graph_lib.MAX_SCHEDULE_VALUES}]",
        )
        _require(self.base in zoo.names(), "base", f"unknown zoo optimizer {self.base!r}")
        _require(self.lr0 is None or self.lr0 > 0, "lr0", "must be positive")
        _require(self.max_lr > 0, "max_lr", "must be positive")

    # -- the Space protocol ------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genome:
        """A random genome of the space."""
        for _ in range(_MAX_TRIES):
            genome = self._genome(self._grow(rng, self._root, self.max_depth) for _ in self._fields)
            if self._error(genome) is None:
                return genome
        return next(iter(self.seeds().values()))  # unreachable in practice

    def mutate(self, rng: np.random.Generator, genome: Genome, *, progress: float = 0.0) -> Genome:
        """One mutation event (see the module docstring); never returns ``genome``."""
        del progress  # AutoLR mutates at a constant rate
        for _ in range(_MAX_TRIES):
            field = self._mutation_target(rng, genome)
            tree = getattr(genome, field)
            path, sub, symbol, depth = base.choice(rng, list(trees.positions(tree, self._root)))
            if isinstance(sub, float) and rng.random() < 0.5:
                new = _nudge(rng, sub, self._constant_grid)
            elif trees.is_node(sub) and sub[0] == "if" and rng.random() < 0.5:
                new = (*sub[:1], *self._condition(rng, sub), *sub[4:])
            else:
                new = self._grow(rng, symbol, self.max_depth - depth)
            child = genome._replace(**{field: trees.replace(tree, path, new)})
            if child != genome and self._error(child) is None:
                return child
        return self.sample(rng)

    def crossover(self, rng: np.random.Generator, a: Genome, b: Genome) -> Genome:
        """Each function from either parent, then a subtree of the other grafted in one."""
        picks = [rng.random() < 0.5 for _ in self._fields]
        child = self._genome(x if pick else y for x, y, pick in zip(a, b, picks, strict=True))
        k = self._fields.index(self._mutation_target(rng, child))
        donor = (b if picks[k] else a)[k]
        targets = list(trees.positions(child[k], self._root))
        sources = list(trees.positions(donor, self._root))
        for _ in range(_MAX_TRIES):
            path, _, symbol, _ = base.choice(rng, targets)
            fitting = [s for _, s, sym, _ in sources if sym == symbol or symbol == "policy"]
            if not fitting:
                continue
            grafted = child._replace(
                **{self._fields[k]: trees.replace(child[k], path, base.choice(rng, fitting))}
            )
            if self._error(grafted) is None:
                return grafted
        return child

    def seeds(self, names: Sequence[str] | None = None) -> dict[str, Genome]:
        """Zoo optimizers as genomes.

        Adaptive mode expresses :data:`ADAPTIVE_SEEDS` exactly (the default);
        dynamic mode its ``base`` optimizer with a constant schedule
        (``lr_{e+1} = lr_e``), exactly when ``lr0`` is None.
        """
        known = ADAPTIVE_SEEDS if self.mode == "adaptive" else (self.base,)
        names = known if names is None else tuple(names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"autolr space ({self.mode}): cannot express {unknown}; "
                f"it expresses {', '.join(known)}"
            )
        if self.mode == "dynamic":
            return {n: DynamicGenome("lr") for n in names}
        return {n: _seed_genome(n) for n in names}

    def to_graph(self, genome: Genome) -> Graph:
        """The optimizer ``genome`` encodes (a valid Graph)."""
        genome = self.validate(genome)
        if self.mode == "adaptive":
            return _adaptive_graph(genome)
        lr0 = self._lr0
        values = tuple(
            min(lr / lr0, graph_lib.MAX_SCHEDULE_VALUE) for lr in self.learning_rates(genome)
        )
        graph = zoo.get(self.base).replace(schedule=Schedule(kind="piecewise", values=values))
        return graph_lib.validate(graph.with_hparams(learning_rate=lr0))

    def scale_learning_rate(self, genome: Genome, factor: float) -> Genome | None:
        """``genome`` itself for ``factor == 1``; None otherwise: AutoLR's genomes
        carry no separate learning rate (the adaptive trees and the dynamic
        policy are the rate)."""
        return genome if factor == 1 else None

    def to_json(self, genome: Genome) -> dict[str, Any]:
        """``{"mode": ..., <function>: <tree as nested lists>, ...}``."""
        return {
            "mode": self.mode,
            **{f: trees.to_json(t) for f, t in zip(self._fields, genome, strict=True)},
        }

    def from_json(self, data: dict[str, Any]) -> Genome:
        """The genome of :meth:`to_json`'s output; raises ValueError naming the bad field."""
        if not isinstance(data, dict) or data.get("mode") != self.mode:
            raise ValueError(
                f"autolr genome.mode: expected {self.mode!r}, got "
                f"{data.get('mode') if isinstance(data, dict) else data!r}"
            )
        fields = set(data) - {"mode"}
        if fields != set(self._fields):
            raise ValueError(
                f"autolr genome: expected fields {', '.join(self._fields)}, got "
                f"{', '.join(sorted(fields))}"
            )
        return self.validate(
            self._genome(trees.from_json(data[f], f"autolr genome.{f}") for f in self._fields)
        )

    def program_shape(self) -> ProgramShape:
        """Room for every graph of the space."""
        if self.mode == "adaptive":
            return ProgramShape(
                max_nodes=4 * self.max_tree_ops + len(STATES),
                max_operands=1,
                max_constants=graph_lib.MAX_CONSTANTS,
                max_states=len(STATES),
                max_decay_nodes=1,
                max_schedule_nodes=1,
                max_schedule_values=1,
            )
        base = graph_lib.canonical(zoo.get(self.base))
        operands = graph_lib.expr_inputs(base.update, base.states) & set(ops.OPERANDS)
        return ProgramShape(
            max_nodes=max(1, len(base.update.nodes)),
            max_operands=max(1, len(operands)),
            max_constants=max(1, len(base.constants)),
            max_states=max(1, len(base.states)),
            max_decay_nodes=max([1] + [len(e.nodes) for _, e in base.decays]),
            max_schedule_nodes=1,
            max_schedule_values=self.epochs,
        )

    # -- the rest of the public surface -------------------------------------

    def validate(self, genome: Genome) -> Genome:
        """Returns ``genome`` or raises ValueError naming its bad field (one line)."""
        error = self._error(genome)
        if error is not None:
            raise ValueError(error)
        return genome

    def learning_rates(self, genome: DynamicGenome) -> tuple[float, ...]:
        """Dynamic mode: the rates ``lr_1 .. lr_E`` of epochs 0 .. E-1, clipped."""
        lr, rates = self._lr0, []
        highest = min(self.max_lr, self._lr0 * graph_lib.MAX_SCHEDULE_VALUE)
        with np.errstate(all="ignore"):
            for epoch in range(self.epochs):
                lr = _evaluate_policy(genome.policy, lr, float(epoch))
                lr = min(max(lr, 0.0), highest) if lr == lr else 0.0
                rates.append(lr)
        return tuple(rates)

    # -- internals ----------------------------------------------------------

    @property
    def _fields(self) -> tuple[str, ...]:
        return AdaptiveGenome._fields if self.mode == "adaptive" else DynamicGenome._fields

    @property
    def _root(self) -> str:
        return "expr" if self.mode == "adaptive" else "policy"

    def _genome(self, functions: Iterable[Tree]) -> Genome:
        return (AdaptiveGenome if self.mode == "adaptive" else DynamicGenome)(*functions)

    @functools.cached_property
    def _lr0(self) -> float:
        return zoo.get(self.base).hparams.learning_rate if self.lr0 is None else self.lr0

    @functools.cached_property
    def _constant_grid(self) -> tuple[float, ...]:
        if self.mode == "adaptive":
            return CONSTANT_GRID
        return tuple(self._lr0 * x for x in LR_GRID_FACTORS)

    def _mutation_target(self, rng: np.random.Generator, genome: Genome) -> str:
        """The function to change: one the step reads, with probability ``_P_LIVE``."""
        if self.mode == "dynamic":
            return "policy"
        live = ("grad", *live_states(genome))
        return base.choice(rng, live if rng.random() < _P_LIVE else self._fields)

    def _leaf(self, rng: np.random.Generator) -> Tree:
        if self.mode == "adaptive":  # g twice as often as a state: the authors' grammar
            inputs, p_constant = (*ADAPTIVE_INPUTS, "g"), 1 / 6  # repeats grad
        else:  # the authors' policies have constant leaves only
            inputs, p_constant = ("lr", "lr", "epoch"), 1 / 2
        if rng.random() < p_constant:
            return base.choice(rng, self._constant_grid)
        return base.choice(rng, inputs)

    def _condition(self, rng: np.random.Generator, node: tuple | None = None) -> tuple:
        """``(var, cmp, const)``: the constant nudged along its grid, or all redrawn."""
        if node is not None and rng.random() < 0.5:
            return (*node[1:3], _nudge(rng, node[3], self._condition_grid(node[1])))
        var = base.choice(rng, DYNAMIC_INPUTS)
        cmp = base.choice(rng, tuple(COMPARISONS))
        return var, cmp, base.choice(rng, self._condition_grid(var))

    def _condition_grid(self, var: str) -> tuple[float, ...]:
        return self._constant_grid if var == "lr" else tuple(map(float, range(self.epochs)))

    def _grow(self, rng: np.random.Generator, symbol: str, budget: int) -> Tree:
        """A random tree of ``symbol`` with at most ``budget`` levels of operators."""
        if symbol == "policy" and budget > 0 and rng.random() < _P_IF:
            return (
                "if",
                *self._condition(rng),
                self._grow(rng, "policy", budget - 1),
                self._grow(rng, "policy", budget - 1),
            )
        if budget <= 0 or rng.random() < self.p_leaf:
            return self._leaf(rng)
        if self.mode == "dynamic":
            head = base.choice(rng, DYNAMIC_BINARY)
        else:
            head = base.choice(rng, self.binary + self.unary)
        arity = 2 if head in ops.BINARY else 1
        return (head, *(self._grow(rng, "expr", budget - 1) for _ in range(arity)))

    def _error(self, genome: Any) -> str | None:
        """Why ``genome`` is not a genome of the space, or None."""
        kind = AdaptiveGenome if self.mode == "adaptive" else DynamicGenome
        if not isinstance(genome, kind):
            return f"autolr genome: expected an {kind.__name__}, got {type(genome).__name__}"
        for field, tree in zip(self._fields, genome, strict=True):
            for path, sub, symbol, _ in trees.positions(tree, self._root):
                where = f"autolr genome.{field}{''.join(f'[{i}]' for i in path)}"
                if (problem := self._node_error(sub, symbol)) is not None:
                    return f"{where}: {problem}"
            depth, size = trees.depth(tree), trees.size(tree)
            if depth > self.max_depth:
                return f"autolr genome.{field}: depth {depth} exceeds {self.max_depth}"
            if size > self.max_tree_ops:
                return f"autolr genome.{field}: {size} operators exceed {self.max_tree_ops}"
        if self.mode == "adaptive" and len(_constants(genome)) > graph_lib.MAX_CONSTANTS:
            return (
                f"autolr genome: {len(_constants(genome))} distinct constants exceed "
                f"{graph_lib.MAX_CONSTANTS}"
            )
        return None

    def _node_error(self, tree: Tree, symbol: str) -> str | None:
        """What is wrong with one position (its children are checked on their own)."""
        adaptive = self.mode == "adaptive"
        if isinstance(tree, float):
            return None if abs(tree) <= ops.BIG else f"constant {tree!r} is not finite"
        if isinstance(tree, str):
            inputs = ADAPTIVE_INPUTS if adaptive else DYNAMIC_INPUTS
            return None if tree in inputs else f"unknown input {tree!r}"
        if not isinstance(tree, tuple) or not tree:
            return f"expected a name, a float or a node, got {tree!r}"
        head = tree[0]
        if head == "if" and symbol == "policy":
            if len(tree) != 6:
                return "an if node is (if, var, cmp, const, then, else)"
            _, var, cmp, const = tree[:4]
            if var not in DYNAMIC_INPUTS or cmp not in COMPARISONS:
                return f"bad condition {var!r} {cmp!r}"
            if not isinstance(const, float) or not abs(const) <= ops.BIG:
                return f"condition constant {const!r} is not a finite float"
            return None
        heads = (self.binary + self.unary) if adaptive else DYNAMIC_BINARY
        if head not in heads:
            return f"unknown operator {head!r}"
        arity = 2 if head in ops.BINARY else 1
        return None if len(tree) == arity + 1 else f"{head} takes {arity} arguments"


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"AutoLRSpace.{field}: {message}")


def _nudge(rng: np.random.Generator, value: float, grid: Sequence[float]) -> float:
    """The grid value one or two steps from the one nearest ``value``."""
    nearest = int(np.argmin(np.abs(np.asarray(grid) - value)))
    step = int(base.choice(rng, (-2, -1, 1, 2)))
    return grid[min(max(nearest + step, 0), len(grid) - 1)]
