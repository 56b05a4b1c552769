"""The ``nos`` space: dual-joint optimizer graphs (Morgan & Hougen 2024).

Graphs of hidden nodes ``binary(unary(a), unary(b))`` over the operands of
Bello et al. 2017, searched jointly with decay sub-graphs on operands, the
learning-rate schedule, a momentum type and hyperparameters. The genome is
the :class:`~symopt.graph.Graph` itself, kept in canonical form (dead nodes
dropped, equal sub-expressions shared), so that neutral drift does not pile
up inactive nodes.

:class:`NosSpace` implements :class:`symopt.spaces.base.Space`:

* ``sample``: a random graph (favouring deep over mostly-dead graphs).
* ``mutate``: one of insert a node, delete a node, change an operator,
  change an input, change a constant (scaled by ``2^N(0,1)`` as in Chen et
  al. 2023, or a new constant wired in), change a decay sub-graph, change
  the schedule, change the momentum type, change a hyperparameter, change
  a recurrent state, and (option ``wrap``, with the per-leaf operators) wrap
  a sub-expression in a per-leaf operator — retried until the child is
  valid, within the space's limits and different from its parent. ``wrap``
  is off by default, so that a search recorded before it existed draws the
  same children when it resumes; ``experiments/discover.py`` turns it on.
* ``crossover``: the update graph (with its constants, states and decays)
  from one parent; schedule, momentum and each hyperparameter uniformly
  from either (the particle GA of the paper is mutation-only and never calls
  it; the GA does).

Per-leaf operators. Besides the element-wise operators of the paper, the
update graph may use the per-leaf operators of :mod:`symopt.ops`
(:data:`~symopt.ops.LEAF_OPERATORS`: ``rms``, ``rms_rows``, ``rms_cols``,
``norm``, ``orth``, ``trust``, ``if_matrix``), which read a whole parameter
tensor, so that Muon-, LAMB- and Adafactor-like updates are graphs of the
space. They are drawn, and reached by the mutations that draw an operator
(insert a node, change an operator), like any other: uniformly among the
space's ``unary`` (or ``binary``) operators. The decay and schedule
sub-graphs, which are scalars, never draw them (nor dropout). The option
``leaf_ops`` (default True) switches them on; ``leaf_ops=False`` leaves them
out of ``unary`` and ``binary``, which gives the space of the paper as it was
before they existed: the same operators in the same order, so the same
random seed draws the same graphs (the published protocol,
``experiments/nos_joint.py``, sets it so). :meth:`NosSpace.program_shape`
compiles the per-leaf operators in (``ProgramShape.leaf_ops``) exactly when
the space may use them. The module's :func:`sample` and :func:`sample_checked`
draw from :data:`ELEMENT_WISE` unless given a space: the random graphs the
engine's tests and benchmarks were written and recorded on.

One concept, the paper's space, in one module: sampling and every mutation
edit the same graph fields within the same limits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symopt import graph as graph_lib
from symopt import integrity, ops, zoo
from symopt.graph import Expr, Graph, GraphError, Hyperparams, Node, Schedule
from symopt.program import ProgramShape, uses_leaf_ops
from symopt.spaces import base

DEFAULT_SEEDS = ("sgd", "momentum", "rmsprop", "adam")
_MAX_TRIES = 50


@dataclasses.dataclass(frozen=True)
class NosSpace:
    """Which graphs the space holds, and how they are drawn and mutated."""

    name: str = dataclasses.field(default="nos", init=False)
    min_nodes: int = 1
    max_nodes: int = 8
    operands: tuple[str, ...] = ops.TENSOR_OPERANDS
    unary: tuple[str, ...] = tuple(ops.UNARY)
    binary: tuple[str, ...] = tuple(ops.BINARY)
    leaf_ops: bool = True  # may update graphs use the per-leaf operators? (module docstring)
    wrap: bool = False  # with leaf_ops, also draw the mutation that wraps in one (module docstring)
    max_constants: int = 2
    max_states: int = 1
    max_decay_nodes: int = 2
    max_schedule_nodes: int = 2
    p_identity: float = 0.5  # chance a node input has no unary op
    p_decay: float = 0.2  # chance an operand used gets a decay
    p_state: float = 0.15
    p_schedule_graph: float = 0.1
    schedule_kinds: tuple[str, ...] = ("constant", "cosine", "linear", "exponential", "step",
                                       "restarts")
    momentum_types: tuple[str, ...] = graph_lib.MOMENTUM_TYPES
    log10_lr: tuple[float, float] = (-4.0, -1.0)

    def __post_init__(self):
        base.check_fields(self)
        _require(1 <= self.min_nodes <= self.max_nodes <= graph_lib.MAX_NODES,
                 "min_nodes/max_nodes", f"need 1 <= min_nodes <= max_nodes <= "
                 f"{graph_lib.MAX_NODES}, got {self.min_nodes}, {self.max_nodes}")
        for field, table in (("operands", ops.OPERANDS), ("unary", ops.UNARY),
                             ("binary", ops.BINARY)):
            unknown = [n for n in getattr(self, field) if n not in table]
            _require(getattr(self, field) and not unknown, field,
                     f"unknown or empty: {unknown or '()'}; known: {', '.join(table)}")
        for field in ("leaf_ops", "wrap"):
            _require(isinstance(getattr(self, field), bool), field,
                     f"expected True or False, got {getattr(self, field)!r}")
        for field, drawn in (("unary", self.update_unary), ("binary", self.update_binary)):
            _require(bool(drawn), field, "only per-leaf operators, which leaf_ops=False "
                     "leaves out")
        for field, drawn in (("unary", self._scalar_unary), ("binary", self._scalar_binary)):
            _require(bool(drawn), field, "needs an element-wise operator (not per-leaf, not "
                     "random) for the decay and schedule sub-graphs")
        _require(0 <= self.max_constants <= graph_lib.MAX_CONSTANTS, "max_constants",
                 f"must be in [0, {graph_lib.MAX_CONSTANTS}]")
        _require(0 <= self.max_states <= graph_lib.MAX_STATES, "max_states",
                 f"must be in [0, {graph_lib.MAX_STATES}]")
        for field in ("max_decay_nodes", "max_schedule_nodes"):
            _require(1 <= getattr(self, field) <= graph_lib.MAX_SUBGRAPH_NODES, field,
                     f"must be in [1, {graph_lib.MAX_SUBGRAPH_NODES}]")
        drawable = [k for k in graph_lib.SCHEDULE_KINDS if k not in ("graph", "piecewise")]
        bad = [k for k in self.schedule_kinds if k not in drawable]
        _require(self.schedule_kinds and not bad, "schedule_kinds",
                 f"cannot draw {bad}; choose from {', '.join(drawable)} (graph schedules "
                 "come with p_schedule_graph)")
        bad = [k for k in self.momentum_types if k not in graph_lib.MOMENTUM_TYPES]
        _require(self.momentum_types and not bad, "momentum_types", f"unknown types {bad}")

    # -- the Space protocol ------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Graph:
        """A random valid graph of the space (canonical form)."""
        return graph_lib.canonical(sample(rng, self))

    def mutate(self, rng: np.random.Generator, genome: Graph, *, progress: float = 0.0) -> Graph:
        """One random mutation of ``genome`` (see the module docstring)."""
        del progress  # the nos space mutates at a constant rate
        parent = graph_lib.canonical(genome)
        for _ in range(_MAX_TRIES):
            mutation = self.mutations[int(rng.integers(len(self.mutations)))]
            try:
                child = mutation(rng, self, parent)
                if child is None:
                    continue
                child = graph_lib.canonical(graph_lib.validate(child))
            except GraphError:
                continue
            if child != parent and self._fits(child, parent):
                return child
        return self.sample(rng)  # nothing took: a fresh graph rather than a copy

    def crossover(self, rng: np.random.Generator, a: Graph, b: Graph) -> Graph:
        """The update (constants, states, decays) of ``a``; the rest from either."""
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        hparams = Hyperparams(**{
            f.name: pick(getattr(first.hparams, f.name), getattr(second.hparams, f.name))
            for f in dataclasses.fields(Hyperparams)
        })
        child = first.replace(
            schedule=pick(first.schedule, second.schedule),
            momentum=pick(first.momentum, second.momentum),
            hparams=hparams,
        )
        try:  # a graph schedule may read constants the other parent lacks
            return graph_lib.canonical(graph_lib.validate(child))
        except GraphError:
            return graph_lib.canonical(child.replace(schedule=first.schedule))

    def seeds(self, names: Sequence[str] | None = None) -> dict[str, Graph]:
        """Zoo optimizers as genomes (default: DEFAULT_SEEDS): every zoo graph
        is one, but those that use the per-leaf operators only where
        ``leaf_ops`` is on (ValueError naming them otherwise)."""
        names = DEFAULT_SEEDS if names is None else tuple(names)
        unknown = [n for n in names if n not in zoo.names()]
        if unknown:
            raise ValueError(f"nos space: unknown zoo optimizers {unknown}; "
                             f"known: {', '.join(zoo.names())}")
        graphs = {n: graph_lib.canonical(zoo.get(n)) for n in names}
        if not self.leaf_ops:
            leafy = {n: sorted(uses_leaf_ops(g)) for n, g in graphs.items() if uses_leaf_ops(g)}
            if leafy:
                raise ValueError(f"nos space: {', '.join(map(repr, leafy))} use the per-leaf "
                                 f"operators ({leafy}), which this space leaves out "
                                 "(leaf_ops=False)")
        return graphs

    def expressible_seeds(self) -> list[str]:
        """The zoo names :meth:`seeds` accepts: every zoo optimizer, less those
        that use the per-leaf operators where ``leaf_ops`` is off."""
        return [n for n in zoo.names()
                if self.leaf_ops or not uses_leaf_ops(graph_lib.canonical(zoo.get(n)))]

    def to_graph(self, genome: Graph) -> Graph:
        return genome

    def scale_learning_rate(self, genome: Graph, factor: float) -> Graph | None:
        """``genome`` with its learning rate times ``factor`` (None if that rate is invalid)."""
        try:
            return graph_lib.validate(
                genome.with_hparams(learning_rate=genome.hparams.learning_rate * factor))
        except GraphError:
            return None

    def to_json(self, genome: Graph) -> dict[str, Any]:
        return graph_lib.to_dict(genome)

    def from_json(self, data: dict[str, Any]) -> Graph:
        return graph_lib.from_dict(data)

    def program_shape(self, extra: Sequence[Graph] = ()) -> ProgramShape:
        """Room for every graph of the space, the zoo seeds it accepts
        (:meth:`expressible_seeds`) and ``extra``; the per-leaf operators are
        compiled in where ``leaf_ops`` is on or an ``extra`` graph uses them."""
        sized = [*self.seeds(self.expressible_seeds()).values(),
                 *(graph_lib.canonical(g) for g in extra)]
        nodes = max([self.max_nodes] + [len(g.update.nodes) for g in sized])
        operands = [len(graph_lib.expr_inputs(g.update, g.states) & set(ops.OPERANDS))
                    for g in sized]
        return ProgramShape(
            max_nodes=nodes,
            max_operands=max([min(2 * nodes, len(self.operands)), *operands]),
            max_constants=max([self.max_constants, 1] + [len(g.constants) for g in sized]),
            max_states=max([self.max_states, 1] + [len(g.states) for g in sized]),
            max_decay_nodes=max([self.max_decay_nodes]
                                + [len(e.nodes) for g in sized for _, e in g.decays]),
            max_schedule_nodes=max([self.max_schedule_nodes]
                                   + [len(g.schedule.expr.nodes) for g in sized
                                      if g.schedule.expr is not None]),
            leaf_ops=self.leaf_ops or any(uses_leaf_ops(g) for g in extra),
        )

    def _fits(self, child: Graph, parent: Graph) -> bool:
        """Within the space's limits (or no further past them than the parent,
        so that zoo seeds larger than the space can still evolve)."""
        return (
            len(child.update.nodes) <= max(self.max_nodes, len(parent.update.nodes))
            and len(child.constants) <= max(self.max_constants, len(parent.constants))
            and len(child.states) <= max(self.max_states, len(parent.states))
        )

    @property
    def mutations(self) -> tuple[Callable[..., Graph | None], ...]:
        """The mutation operators :meth:`mutate` draws from, uniformly:
        :data:`MUTATIONS`, and :data:`LEAF_MUTATIONS` where ``leaf_ops`` and
        ``wrap`` are on."""
        return MUTATIONS + (LEAF_MUTATIONS if self.leaf_ops and self.wrap else ())

    @property
    def update_unary(self) -> tuple[str, ...]:
        """The unary operators update graphs draw: ``unary``, less the
        per-leaf ones where ``leaf_ops`` is off."""
        return tuple(u for u in self.unary if self.leaf_ops or not ops.UNARY[u].leaf)

    @property
    def update_binary(self) -> tuple[str, ...]:
        """The binary operators update graphs draw (as :attr:`update_unary`)."""
        return tuple(b for b in self.binary if self.leaf_ops or not ops.BINARY[b].leaf)

    @property
    def _scalar_unary(self) -> tuple[str, ...]:
        """The unary operators of decay and schedule sub-graphs: neither random
        nor per-leaf."""
        return tuple(u for u in self.unary if not ops.UNARY[u].random and not ops.UNARY[u].leaf)

    @property
    def _scalar_binary(self) -> tuple[str, ...]:
        """The binary operators of decay and schedule sub-graphs: not per-leaf."""
        return tuple(b for b in self.binary if not ops.BINARY[b].leaf)


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"NosSpace.{field}: {message}")


# --------------------------------------------------------------------------
# Sampling.


def _sample_expr(
    rng: np.random.Generator, space: NosSpace, num_nodes: int, leaves: list[str],
    *, scalar: bool = False,
) -> Expr:
    """A DAG of ``num_nodes`` nodes over ``leaves``: an update graph, or with
    ``scalar`` a decay or schedule sub-graph (element-wise, deterministic
    operators only)."""
    unary = space._scalar_unary if scalar else space.update_unary
    binary = space._scalar_binary if scalar else space.update_binary
    built: list[Node] = []
    for i in range(num_nodes):
        refs = leaves + [graph_lib.node_ref(j) for j in range(i)]
        op = base.choice(rng, binary)
        left, a = _sample_unary(rng, space, unary), _sample_input(rng, i, refs)
        right, b = _sample_unary(rng, space, unary), _sample_input(rng, i, refs)
        built.append(Node(op, left, a, right, b))
    root = graph_lib.node_ref(num_nodes - 1) if num_nodes else base.choice(rng, leaves)
    return Expr(tuple(built), root)


def _sample_input(rng: np.random.Generator, i: int, refs: list[str]) -> str:
    """An input of node ``i``: one of the two nodes before it with probability
    0.6, so that graphs are deep rather than mostly dead; else any of ``refs``."""
    if i and rng.random() < 0.6:
        return graph_lib.node_ref(int(rng.integers(max(0, i - 2), i)))
    return base.choice(rng, refs)


def _sample_unary(rng: np.random.Generator, space: NosSpace, unary: Sequence[str]) -> str:
    return "identity" if rng.random() < space.p_identity else base.choice(rng, unary)


def _scalar_leaves(num_constants: int) -> list[str]:
    return list(ops.SCALAR_OPERANDS) + [f"c{i}" for i in range(num_constants)]


def _sample_decay(rng: np.random.Generator, space: NosSpace, num_constants: int) -> Expr:
    size = int(rng.integers(1, space.max_decay_nodes + 1))
    return _sample_expr(rng, space, size, _scalar_leaves(num_constants), scalar=True)


def _sample_schedule(rng: np.random.Generator, space: NosSpace, num_constants: int) -> Schedule:
    warmup = int(base.choice(rng, (0, 0, 10, 100)))
    if rng.random() < space.p_schedule_graph:
        size = int(rng.integers(1, space.max_schedule_nodes + 1))
        expr = _sample_expr(rng, space, size, _scalar_leaves(num_constants), scalar=True)
        return Schedule(kind="graph", warmup_steps=warmup, expr=expr)
    return Schedule(
        kind=base.choice(rng, space.schedule_kinds),
        warmup_steps=warmup,
        alpha=float(base.choice(rng, (0.0, 0.1))),
        decay_rate=float(base.choice(rng, (0.1, 0.5))),
    )


_HPARAM_CHOICES: dict[str, tuple[Any, ...]] = {
    "beta1": (0.0, 0.5, 0.9, 0.95),
    "beta2": (0.9, 0.99, 0.999),
    "beta3": (0.9, 0.99, 0.999),
    "eps": (1e-8, 1e-6),
    "weight_decay": (0.0, 0.0, 1e-4, 1e-2),
    "momentum": (0.5, 0.9),
    "clip_value": (0.0, 0.0, 1.0),
    "clip_norm": (0.0, 0.0, 1.0),
    "bias_correction": (False, True),
}


def _sample_hparam(rng: np.random.Generator, space: NosSpace, name: str) -> Any:
    if name == "learning_rate":
        return float(10 ** rng.uniform(*space.log10_lr))
    return base.choice(rng, _HPARAM_CHOICES[name])


ELEMENT_WISE = NosSpace(leaf_ops=False)
"""The space with the element-wise operators only, as before the per-leaf
operators: what :func:`sample` and :func:`sample_checked` draw by default."""


def sample(rng: np.random.Generator, space: NosSpace = ELEMENT_WISE) -> Graph:
    """A random valid graph of ``space`` (by default :data:`ELEMENT_WISE`)."""
    constants = tuple(
        float(np.round(rng.normal(), 4)) for _ in range(int(rng.integers(space.max_constants + 1)))
    )
    num_states = int(rng.random() < space.p_state) * int(rng.integers(1, space.max_states + 1))
    leaves = list(space.operands) + [f"c{i}" for i in range(len(constants))]
    leaves += [f"s{i}" for i in range(num_states)]
    num_nodes = int(rng.integers(space.min_nodes, space.max_nodes + 1))
    update = _sample_expr(rng, space, num_nodes, leaves)
    node_refs = [graph_lib.node_ref(i) for i in range(num_nodes)] or [update.root]
    states = tuple(base.choice(rng, node_refs) for _ in range(num_states))
    used = graph_lib.expr_inputs(update, states)
    decays = tuple(
        (name, _sample_decay(rng, space, len(constants)))
        for name in sorted(used)
        if name in ops.OPERANDS and rng.random() < space.p_decay
    )
    schedule = _sample_schedule(rng, space, len(constants))
    hparams = Hyperparams(**{
        f.name: _sample_hparam(rng, space, f.name) for f in dataclasses.fields(Hyperparams)
    })
    graph = Graph(
        update=update,
        states=states,
        decays=decays,
        schedule=schedule,
        momentum=base.choice(rng, space.momentum_types),
        hparams=hparams,
        constants=constants,
    )
    return graph_lib.validate(graph)


def sample_checked(rng: np.random.Generator, count: int,
                   space: NosSpace = ELEMENT_WISE) -> list[Graph]:
    """``count`` random graphs of ``space`` (by default :data:`ELEMENT_WISE`)
    that pass :func:`symopt.check` (those that fail are drawn again): a
    population worth training."""
    graphs = []
    while len(graphs) < count:
        graph = sample(rng, space)
        if integrity.check(graph).ok:
            graphs.append(graph)
    return graphs


# --------------------------------------------------------------------------
# Mutations. Each takes (rng, space, canonical parent) and returns a child
# (validated by the caller) or None when it does not apply to this parent.


def _leaves(space: NosSpace, graph: Graph) -> list[str]:
    return (list(space.operands) + [f"c{i}" for i in range(len(graph.constants))]
            + [f"s{i}" for i in range(len(graph.states))])


def _random_ref(rng: np.random.Generator, space: NosSpace, graph: Graph, before: int) -> str:
    """An operand, constant, state or one of the nodes ``n0 .. n<before-1>``."""
    if before and rng.random() < 0.5:
        return graph_lib.node_ref(int(rng.integers(before)))
    return base.choice(rng, _leaves(space, graph))


def _renumber(ref: str, mapping: Callable[[int], str]) -> str:
    i = graph_lib.node_index(ref)
    return ref if i is None else mapping(i)


def _remap(graph: Graph, nodes: list[Node], mapping: Callable[[int], str]) -> Graph:
    """``graph`` with ``nodes`` as its update nodes and every node ref remapped."""
    nodes = [n.__class__(n.op, n.left, _renumber(n.a, mapping), n.right, _renumber(n.b, mapping))
             for n in nodes]
    return graph.replace(
        update=Expr(tuple(nodes), _renumber(graph.update.root, mapping)),
        states=tuple(_renumber(s, mapping) for s in graph.states),
    )


def _active(graph: Graph) -> list[int]:
    return sorted(graph_lib.active_nodes(graph.update, graph.states))


def _random_unary(rng: np.random.Generator, space: NosSpace) -> str:
    return "identity" if rng.random() < space.p_identity else base.choice(rng, space.update_unary)


def _insert_node(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A new node on one input of an active node (or on the root)."""
    at, side = _insert_target(rng, graph)

    def new_node(old: str) -> Node:
        other = _random_ref(rng, space, graph, at)
        inputs = [old, other] if rng.random() < 0.5 else [other, old]
        return Node(base.choice(rng, space.update_binary), _random_unary(rng, space), inputs[0],
                    _random_unary(rng, space), inputs[1])

    return _insert(graph, at, side, new_node)


def _wrap_in_leaf_op(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A per-leaf unary operator over a whole sub-expression: one input of an
    active node (or the root) ``x`` becomes ``keep_left(op(x), x)``.

    Insertion reaches the same graphs, but only where it draws ``keep_left``
    (or an operator that cancels), a per-leaf unary on the right side and
    identity on the other: about one in a thousand insertions. Orthogonalising
    or normalising a direction the graph already computes (Adam's, a
    momentum, a difference of states) is the structural step that made the
    matrix methods, so it gets a mutation of its own. Drawn only where
    ``leaf_ops`` and ``wrap`` are on (:attr:`NosSpace.mutations`).
    """
    leaf_unary = [u for u in space.update_unary if ops.UNARY[u].leaf]
    if not leaf_unary or "keep_left" not in space.update_binary:
        return None
    at, side = _insert_target(rng, graph)
    return _insert(graph, at, side,
                   lambda old: Node("keep_left", base.choice(rng, leaf_unary), old, "identity",
                                    old))


def _insert_target(rng, graph: Graph) -> tuple[int, str]:
    """Where a new node goes: one input side of an active node, or the root."""
    targets = [(i, side) for i in _active(graph) for side in ("a", "b")]
    return base.choice(rng, targets + [(len(graph.update.nodes), "root")])


def _insert(graph: Graph, at: int, side: str, new_node: Callable[[str], Node]) -> Graph:
    """``graph`` with ``new_node(old)`` at position ``at``, where ``old`` is the
    reference it replaces: input ``side`` of node ``at`` (or the root)."""
    nodes = list(graph.update.nodes)
    old = graph.update.root if side == "root" else getattr(nodes[at], side)
    new = new_node(old)
    # Insert at position ``at``: references to nodes >= at shift up by one.
    shifted = _remap(graph, nodes, lambda i: graph_lib.node_ref(i + (i >= at)))
    nodes = list(shifted.update.nodes)
    nodes.insert(at, new)
    new_ref = graph_lib.node_ref(at)
    if side == "root":
        return shifted.replace(update=Expr(tuple(nodes), new_ref))
    nodes[at + 1] = dataclasses.replace(nodes[at + 1], **{side: new_ref})
    return shifted.replace(update=Expr(tuple(nodes), shifted.update.root))


def _delete_node(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """An active node replaced by one of its inputs."""
    active = _active(graph)
    if len(graph.update.nodes) <= space.min_nodes or not active:
        return None
    i = base.choice(rng, active)
    node = graph.update.nodes[i]
    keep = node.a if rng.random() < 0.5 else node.b
    nodes = [n for j, n in enumerate(graph.update.nodes) if j != i]
    return _remap(graph, nodes,
                  lambda j: keep if j == i else graph_lib.node_ref(j - (j > i)))


def _change_op(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A new binary or unary operator on an active node."""
    active = _active(graph)
    if not active:
        return None
    i = base.choice(rng, active)
    field = base.choice(rng, ("op", "left", "right"))
    value = base.choice(rng, space.update_binary if field == "op" else space.update_unary)
    nodes = list(graph.update.nodes)
    nodes[i] = dataclasses.replace(nodes[i], **{field: value})
    return graph.replace(update=Expr(tuple(nodes), graph.update.root))


def _change_input(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A new input (operand, constant, state or earlier node) on an active node."""
    active = _active(graph)
    if not active:
        return graph.replace(update=Expr((), base.choice(rng, space.operands)))
    i = base.choice(rng, active)
    nodes = list(graph.update.nodes)
    side = base.choice(rng, ("a", "b"))
    nodes[i] = dataclasses.replace(nodes[i], **{side: _random_ref(rng, space, graph, i)})
    return graph.replace(update=Expr(tuple(nodes), graph.update.root))


def _change_constant(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A constant scaled by 2^N(0,1) (Chen et al. 2023), or a new one wired in."""
    constants = list(graph.constants)
    if constants and (len(constants) >= space.max_constants or rng.random() < 0.7):
        j = int(rng.integers(len(constants)))
        value = constants[j] * 2.0 ** rng.normal()
        constants[j] = float(np.round(value if rng.random() < 0.9 else -value, 6))
        return graph.replace(constants=tuple(constants))
    active = _active(graph)
    if len(constants) >= space.max_constants or not active:
        return None
    i = base.choice(rng, active)
    nodes = list(graph.update.nodes)
    side = base.choice(rng, ("a", "b"))
    nodes[i] = dataclasses.replace(nodes[i], **{side: f"c{len(constants)}"})
    return graph.replace(update=Expr(tuple(nodes), graph.update.root),
                         constants=(*constants, float(np.round(rng.normal(), 4))))


def _change_decay(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """Adds, redraws or removes the decay sub-graph of a used operand."""
    used = sorted(n for n in graph_lib.expr_inputs(graph.update, graph.states)
                  if n in ops.OPERANDS)
    if not used:
        return None
    name = base.choice(rng, used)
    decays = dict(graph.decays)
    if name in decays and rng.random() < 0.5:
        del decays[name]
    else:
        decays[name] = _sample_decay(rng, space, len(graph.constants))
    return graph.replace(decays=tuple(sorted(decays.items())))


def _change_schedule(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A redrawn schedule, or a new warmup length."""
    if rng.random() < 0.3:
        warmup = int(base.choice(rng, (0, 10, 100)))
        return graph.replace(schedule=dataclasses.replace(graph.schedule, warmup_steps=warmup))
    return graph.replace(schedule=_sample_schedule(rng, space, len(graph.constants)))


def _change_momentum(rng, space: NosSpace, graph: Graph) -> Graph | None:
    others = [m for m in space.momentum_types if m != graph.momentum]
    return graph.replace(momentum=base.choice(rng, others)) if others else None


def _change_hparam(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """The learning rate scaled by 10^N(0, 0.3), or another hyperparameter redrawn."""
    h = graph.hparams
    if rng.random() < 0.5:
        lo, hi = space.log10_lr
        log_lr = float(np.clip(math.log10(h.learning_rate) + 0.3 * rng.normal(), lo - 1, hi + 1))
        return graph.with_hparams(learning_rate=10**log_lr)
    name = base.choice(rng, tuple(_HPARAM_CHOICES))
    return graph.with_hparams(**{name: _sample_hparam(rng, space, name)})


def _change_state(rng, space: NosSpace, graph: Graph) -> Graph | None:
    """A recurrent state added (read by an active node) or re-pointed."""
    nodes = list(graph.update.nodes)
    if not nodes:
        return None
    states = list(graph.states)
    if states and (len(states) >= space.max_states or rng.random() < 0.5):
        j = int(rng.integers(len(states)))
        states[j] = graph_lib.node_ref(int(rng.integers(len(nodes))))
        return graph.replace(states=tuple(states))
    if len(states) >= space.max_states:
        return None
    i = base.choice(rng, _active(graph))
    side = base.choice(rng, ("a", "b"))
    nodes[i] = dataclasses.replace(nodes[i], **{side: f"s{len(states)}"})
    states.append(graph_lib.node_ref(int(rng.integers(len(nodes)))))
    return graph.replace(update=Expr(tuple(nodes), graph.update.root), states=tuple(states))


MUTATIONS = (
    _insert_node,
    _insert_node,
    _delete_node,
    _change_op,
    _change_input,
    _change_input,
    _change_constant,
    _change_decay,
    _change_schedule,
    _change_momentum,
    _change_hparam,
    _change_hparam,
    _change_state,
)
"""Mutation operators, drawn uniformly. Insertion is listed twice, to balance
the shrinking that deletion and dead-node pruning cause; input and
hyperparameter changes twice, being the small steps. With ``leaf_ops`` and
``wrap`` on, :attr:`NosSpace.mutations` adds :data:`LEAF_MUTATIONS`."""
LEAF_MUTATIONS = (_wrap_in_leaf_op,)
"""The mutations only a space with the per-leaf operators and ``wrap`` draws
(appended, so that the other spaces draw the mutations they drew before)."""
