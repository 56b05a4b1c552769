"""A population of graphs as one array program: the encoding, in NumPy.

This module owns :func:`encode`, which turns P graphs into a :class:`Program`:
fixed-size integer and float arrays (operand slots, operator ids, input
indices, constants, schedule parameters, hyperparameters) with a leading
population axis, padded to a :class:`ProgramShape`. A new generation is new
*data* for the same compiled program (:mod:`symopt.population` runs it), never
a recompile. It is NumPy and imports no JAX, so the search spaces can read
:class:`ProgramShape` and check that their graphs fit without the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from symopt import graph as graph_lib
from symopt import ops
from symopt.graph import Expr, Graph

UNARY_NAMES = tuple(ops.UNARY)
BINARY_NAMES = tuple(ops.BINARY)
OPERAND_NAMES = ops.TENSOR_OPERANDS
SCALAR_NAMES = ops.SCALAR_OPERANDS
SCHEDULE_KINDS = graph_lib.SCHEDULE_KINDS
MOMENTUM_TYPES = graph_lib.MOMENTUM_TYPES
STRATEGIES = ("auto", "loop", "vmap", "fused")
"""How the engine steps a program's runs (:func:`symopt.population.optimizer`);
named here, without JAX, so that a config can be checked before JAX loads."""
_KEEP_LEFT = BINARY_NAMES.index("keep_left")
_IDENTITY = UNARY_NAMES.index("identity")
_ONE = SCALAR_NAMES.index("one")


@dataclasses.dataclass(frozen=True)
class ProgramShape:
    """The padded sizes of a Program; one compile serves one shape.

    ``leaf_ops`` says whether the per-leaf operators are compiled in: they
    cost compile time in every strategy and, in ``vmap``, run time on every
    node (a switch there computes all its branches), so a population that
    cannot use them leaves them out."""

    max_nodes: int = 16
    max_operands: int = 8  # distinct operands one graph reads
    max_constants: int = 4
    max_states: int = 2
    max_decay_nodes: int = 3
    max_schedule_nodes: int = 3
    max_schedule_values: int = graph_lib.MAX_SCHEDULE_VALUES  # of a piecewise schedule
    leaf_ops: bool = False  # may graphs use the per-leaf operators (ops.LEAF_OPERATORS)?

    @property
    def table_size(self) -> int:
        return self.max_operands + self.max_constants + self.max_states + self.max_nodes


class ExprArrays(NamedTuple):
    """A DAG as arrays; node ``j``'s value is ``op(left(v[a]), right(v[b]))``."""

    left: np.ndarray  # int32 [..., N] unary ids
    right: np.ndarray  # int32 [..., N]
    op: np.ndarray  # int32 [..., N] binary ids
    a: np.ndarray  # int32 [..., N] value-table indices
    b: np.ndarray  # int32 [..., N]
    root: np.ndarray  # int32 [...]
    length: np.ndarray  # int32 [...]: nodes in use (the rest is padding)


class ScheduleArrays(NamedTuple):
    """The :class:`~symopt.graph.Schedule` numbers of P graphs, [P] floats each:
    the attributes :data:`symopt.schedules.SCHEDULE_FORMULAS` reads, and how
    many values a ``piecewise`` schedule has."""

    warmup_steps: np.ndarray
    alpha: np.ndarray
    decay_rate: np.ndarray
    steps: np.ndarray
    cycles: np.ndarray
    num_values: np.ndarray


class HparamArrays(NamedTuple):
    """The :class:`~symopt.graph.Hyperparams` of P graphs, [P] floats each
    (``bias_correction`` as 0 or 1)."""

    learning_rate: np.ndarray
    beta1: np.ndarray
    beta2: np.ndarray
    beta3: np.ndarray
    eps: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    clip_value: np.ndarray
    clip_norm: np.ndarray
    bias_correction: np.ndarray


class Program(NamedTuple):
    """P graphs as arrays with a leading population axis (a pytree)."""

    operands: np.ndarray  # int32 [P, K]: operand ids of the operand slots
    num_operands: np.ndarray  # int32 [P]
    num_constants: np.ndarray  # int32 [P]
    num_states: np.ndarray  # int32 [P]
    update: ExprArrays  # [P, N] over the run's value table
    states: np.ndarray  # int32 [P, S]: table index of each new state
    constants: np.ndarray  # float [P, C]
    decays: ExprArrays  # [P, K, Nd] over the scalar table, one per operand slot
    schedule_expr: ExprArrays  # [P, Ns] over the scalar table
    schedule_kind: np.ndarray  # int32 [P]
    schedule: ScheduleArrays  # [P] each
    schedule_values: np.ndarray  # float [P, V]: a piecewise schedule's values, padded
    momentum: np.ndarray  # int32 [P]
    hparams: HparamArrays  # [P] each

    @property
    def size(self) -> int:
        return int(self.momentum.shape[0])


# --------------------------------------------------------------------------
# Encoding.


def _operand_slots(graph: Graph) -> list[str]:
    """The operands the active update graph reads, in a fixed order."""
    used = graph_lib.expr_inputs(graph.update, graph.states)
    return [name for name in OPERAND_NAMES if name in used]


def uses_leaf_ops(graph: Graph) -> frozenset[str]:
    """The per-leaf operators (:data:`symopt.ops.LEAF_OPERATORS`) that ``graph``'s
    active update nodes use."""
    nodes = graph.update.nodes
    used = {name for i in graph_lib.active_nodes(graph.update, graph.states)
            for name in (nodes[i].left, nodes[i].right, nodes[i].op)}
    return frozenset(used & ops.LEAF_OPERATORS)


_LEAF_IDS = tuple(np.asarray([i for i, n in enumerate(names) if n in ops.LEAF_OPERATORS])
                  for names in (UNARY_NAMES, UNARY_NAMES, BINARY_NAMES))
"""The ids of the per-leaf operators among a node's left, right and binary operators."""


def encodes_leaf_ops(expr: ExprArrays) -> bool:
    """Whether an encoded DAG (its padding included: identity and keep_left)
    uses a per-leaf operator: :func:`uses_leaf_ops` of the encoded graphs."""
    return any(bool(np.isin(np.asarray(ids), leaf).any())
               for ids, leaf in zip((expr.left, expr.right, expr.op), _LEAF_IDS, strict=True))


def _table_index(ref: str, slots: list[str], shape: ProgramShape) -> int:
    if (i := graph_lib.node_index(ref)) is not None:
        return shape.max_operands + shape.max_constants + shape.max_states + i
    if (i := graph_lib.constant_index(ref)) is not None:
        return shape.max_operands + i
    if (i := graph_lib.state_index(ref)) is not None:
        return shape.max_operands + shape.max_constants + i
    return slots.index(ref)


def _scalar_index(ref: str, shape: ProgramShape) -> int:
    if (i := graph_lib.node_index(ref)) is not None:
        return len(SCALAR_NAMES) + shape.max_constants + i
    if (i := graph_lib.constant_index(ref)) is not None:
        return len(SCALAR_NAMES) + i
    return SCALAR_NAMES.index(ref)


def _encode_expr(expr: Expr | None, size: int, index, default_root: int) -> ExprArrays:
    """One DAG padded to ``size`` nodes; padding is ``keep_left(v[0])``."""
    cols = [np.full(size, _IDENTITY), np.full(size, _IDENTITY), np.full(size, _KEEP_LEFT),
            np.zeros(size), np.zeros(size)]
    nodes = expr.nodes if expr is not None else ()
    for j, n in enumerate(nodes):
        cols[0][j] = UNARY_NAMES.index(n.left)
        cols[1][j] = UNARY_NAMES.index(n.right)
        cols[2][j] = BINARY_NAMES.index(n.op)
        cols[3][j] = index(n.a)
        cols[4][j] = index(n.b)
    root = default_root if expr is None else index(expr.root)
    return ExprArrays(*(np.asarray(c, np.int32) for c in (*cols, root, len(nodes))))


def _padded(values: Sequence[Any], size: int, dtype: Any) -> np.ndarray:
    return np.asarray(np.asarray([*values, *[0] * (size - len(values))], np.float64), dtype)


def _stack(rows: Sequence[Any]) -> Any:
    """Rows of (nested) NamedTuples of arrays as one with a leading axis."""
    if isinstance(rows[0], tuple):
        return type(rows[0])(*(_stack(column) for column in zip(*rows, strict=True)))
    return np.stack(rows)


def _fits(graph: Graph, slots: list[str], shape: ProgramShape, i: int) -> None:
    sizes = {
        "update.nodes": (len(graph.update.nodes), shape.max_nodes, "max_nodes"),
        "operands": (len(slots), shape.max_operands, "max_operands"),
        "constants": (len(graph.constants), shape.max_constants, "max_constants"),
        "states": (len(graph.states), shape.max_states, "max_states"),
        "schedule.expr.nodes": (
            len(graph.schedule.expr.nodes) if graph.schedule.expr is not None else 0,
            shape.max_schedule_nodes, "max_schedule_nodes"),
        "schedule.values": (len(graph.schedule.values), shape.max_schedule_values,
                            "max_schedule_values"),
        "decays": (max([len(e.nodes) for _, e in graph.decays], default=0),
                   shape.max_decay_nodes, "max_decay_nodes"),
    }
    if not shape.leaf_ops and (used := uses_leaf_ops(graph)):
        raise graph_lib.GraphError(
            f"graphs[{i}]: uses the per-leaf operators {sorted(used)}, which the program "
            "shape leaves out (leaf_ops=False)")
    for field, (size, limit, name) in sizes.items():
        if size > limit:
            raise graph_lib.GraphError(
                f"graphs[{i}].{field}: {size} exceed the program shape's {name}={limit}"
            )


def _encode_graph(graph: Graph, slots: list[str], shape: ProgramShape, dtype: Any) -> Program:
    """One canonical graph that fits ``shape`` as a Program without the population axis."""
    index = lambda ref: _table_index(ref, slots, shape)  # noqa: E731
    scalar_index = lambda ref: _scalar_index(ref, shape)  # noqa: E731
    decay_map = graph.decay_map
    decays = [_encode_expr(decay_map.get(slots[k]) if k < len(slots) else None,
                           shape.max_decay_nodes, scalar_index, _ONE)
              for k in range(shape.max_operands)]
    schedule = graph.schedule
    own_states = [_table_index(f"s{j}", slots, shape) for j in range(shape.max_states)]
    number = lambda x: np.asarray(float(x), dtype)  # noqa: E731
    return Program(
        operands=np.asarray([OPERAND_NAMES.index(n) for n in slots]
                            + [0] * (shape.max_operands - len(slots)), np.int32),
        num_operands=np.asarray(len(slots), np.int32),
        num_constants=np.asarray(len(graph.constants), np.int32),
        num_states=np.asarray(len(graph.states), np.int32),
        update=_encode_expr(graph.update, shape.max_nodes, index, 0),
        states=np.asarray([index(r) for r in graph.states] + own_states[len(graph.states):],
                          np.int32),
        constants=_padded(graph.constants, shape.max_constants, dtype),
        decays=_stack(decays),
        schedule_expr=_encode_expr(schedule.expr if schedule.kind == "graph" else None,
                                   shape.max_schedule_nodes, scalar_index, _ONE),
        schedule_kind=np.asarray(SCHEDULE_KINDS.index(schedule.kind), np.int32),
        schedule=ScheduleArrays(
            **{f: number(getattr(schedule, f)) for f in ScheduleArrays._fields[:-1]},
            num_values=number(len(schedule.values))),
        schedule_values=_padded(schedule.values, shape.max_schedule_values, dtype),
        momentum=np.asarray(MOMENTUM_TYPES.index(graph.momentum), np.int32),
        hparams=HparamArrays(**{f: number(getattr(graph.hparams, f))
                                for f in HparamArrays._fields}),
    )


def encode(
    graphs: Sequence[Graph], shape: ProgramShape = ProgramShape(), *, dtype: Any = np.float32
) -> Program:
    """Encodes ``graphs`` as one Program padded to ``shape``.

    Each graph is first put in canonical form (dead nodes dropped): the same
    function in fewer nodes. Raises GraphError for an invalid graph or one that
    does not fit ``shape`` (naming the graph and the field).
    """
    if not graphs:
        raise ValueError("encode needs at least one graph")
    rows = []
    for i, graph in enumerate(graphs):
        try:
            graph = graph_lib.canonical(graph)
        except graph_lib.GraphError as e:
            raise graph_lib.GraphError(f"graphs[{i}].{e}") from None
        slots = _operand_slots(graph)
        _fits(graph, slots, shape, i)
        rows.append(_encode_graph(graph, slots, shape, dtype))
    return _stack(rows)
