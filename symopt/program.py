"""A population of graphs as one array program: the encoding, in NumPy.

:func:`encode` turns P graphs into a :class:`Program`: fixed-size integer and
float arrays (operand slots, operator ids, input indices, constants,
hyperparameters, schedule parameters) with a leading population axis, padded
to a :class:`ProgramShape`. A new generation is new *data* for the same
compiled program (:mod:`symopt.population` runs it), never a recompile. The
encoding is NumPy, and the search spaces read :class:`ProgramShape` from here
rather than from the engine.
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
_KEEP_LEFT = BINARY_NAMES.index("keep_left")
_IDENTITY = UNARY_NAMES.index("identity")
_ONE = SCALAR_NAMES.index("one")
HPARAM_NAMES = tuple(f.name for f in dataclasses.fields(graph_lib.Hyperparams))
SCHEDULE_FIELDS = ("warmup_steps", "alpha", "decay_rate", "steps", "cycles")


@dataclasses.dataclass(frozen=True)
class ProgramShape:
    """The padded sizes of a Program; one compile serves one shape."""

    max_nodes: int = 16
    max_operands: int = 8  # distinct operands one graph reads
    max_constants: int = 4
    max_states: int = 2
    max_decay_nodes: int = 3
    max_schedule_nodes: int = 3
    max_schedule_values: int = graph_lib.MAX_SCHEDULE_VALUES  # of a piecewise schedule

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
    schedule: dict[str, np.ndarray]  # [P] each: warmup_steps .. cycles, num_values
    schedule_values: np.ndarray  # float [P, V]: a piecewise schedule's values, padded
    momentum: np.ndarray  # int32 [P]
    hparams: dict[str, np.ndarray]  # float [P] each; bias_correction as 0/1

    @property
    def size(self) -> int:
        return int(self.momentum.shape[0])


# --------------------------------------------------------------------------
# Encoding.


def _operand_slots(graph: Graph) -> list[str]:
    """The operands the active update graph reads, in a fixed order."""
    used = graph_lib.expr_inputs(graph.update, graph.states)
    return [name for name in OPERAND_NAMES if name in used]


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


def _encode_expr(expr: Expr | None, size: int, index, default_root: int) -> list[np.ndarray]:
    """[left, right, op, a, b, root, length]; padding is ``keep_left(v[0])``."""
    cols = [np.full(size, _IDENTITY), np.full(size, _IDENTITY), np.full(size, _KEEP_LEFT),
            np.zeros(size), np.zeros(size)]
    if expr is None:
        return [*cols, np.asarray(default_root), np.asarray(0)]
    for j, n in enumerate(expr.nodes):
        cols[0][j] = UNARY_NAMES.index(n.left)
        cols[1][j] = UNARY_NAMES.index(n.right)
        cols[2][j] = BINARY_NAMES.index(n.op)
        cols[3][j] = index(n.a)
        cols[4][j] = index(n.b)
    return [*cols, np.asarray(index(expr.root)), np.asarray(len(expr.nodes))]


def _stack_exprs(rows: list[list[np.ndarray]]) -> ExprArrays:
    return ExprArrays(*(np.stack([r[i] for r in rows]).astype(np.int32) for i in range(7)))


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
    for field, (size, limit, name) in sizes.items():
        if size > limit:
            raise graph_lib.GraphError(
                f"graphs[{i}].{field}: {size} exceed the program shape's {name}={limit}"
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
    columns: dict[str, list[Any]] = {k: [] for k in
                                     ("operands", "update", "states", "constants", "decays",
                                      "schedule_expr", "schedule_values")}
    canon = []
    for i, graph in enumerate(graphs):
        try:
            graph = graph_lib.canonical(graph)
        except graph_lib.GraphError as e:
            raise graph_lib.GraphError(f"graphs[{i}].{e}") from None
        canon.append(graph)
        slots = _operand_slots(graph)
        _fits(graph, slots, shape, i)
        index = lambda r, slots=slots: _table_index(r, slots, shape)  # noqa: E731
        s_index = lambda r: _scalar_index(r, shape)  # noqa: E731
        columns["operands"].append([OPERAND_NAMES.index(n) for n in slots]
                                   + [0] * (shape.max_operands - len(slots)))
        columns["update"].append(_encode_expr(graph.update, shape.max_nodes, index, 0))
        decay_map = graph.decay_map
        per_slot = [_encode_expr(decay_map.get(slots[k]) if k < len(slots) else None,
                                 shape.max_decay_nodes, s_index, _ONE)
                    for k in range(shape.max_operands)]
        columns["decays"].append([np.stack([d[c] for d in per_slot]) for c in range(7)])
        sched = graph.schedule.expr if graph.schedule.kind == "graph" else None
        columns["schedule_expr"].append(
            _encode_expr(sched, shape.max_schedule_nodes, s_index, _ONE))
        own = [_table_index(f"s{j}", slots, shape) for j in range(shape.max_states)]
        columns["states"].append([index(r) for r in graph.states] + own[len(graph.states):])
        columns["constants"].append(
            list(graph.constants) + [0.0] * (shape.max_constants - len(graph.constants)))
        values = graph.schedule.values
        columns["schedule_values"].append(
            list(values) + [0.0] * (shape.max_schedule_values - len(values)))
    p = len(graphs)
    return Program(
        operands=np.asarray(np.array(columns["operands"]).reshape(p, -1), np.int32),
        num_operands=np.asarray([len(_operand_slots(g)) for g in canon], np.int32),
        num_constants=np.asarray([len(g.constants) for g in canon], np.int32),
        num_states=np.asarray([len(g.states) for g in canon], np.int32),
        update=_stack_exprs(columns["update"]),
        states=np.asarray(np.array(columns["states"]).reshape(p, -1), np.int32),
        constants=np.asarray(np.array(columns["constants"], np.float64).reshape(p, -1), dtype),
        decays=_stack_exprs(columns["decays"]),
        schedule_expr=_stack_exprs(columns["schedule_expr"]),
        schedule_kind=np.asarray([SCHEDULE_KINDS.index(g.schedule.kind) for g in canon],
                                  np.int32),
        schedule={f: np.asarray([float(getattr(g.schedule, f)) for g in canon], dtype)
                  for f in SCHEDULE_FIELDS}
        | {"num_values": np.asarray([len(g.schedule.values) for g in canon], dtype)},
        schedule_values=np.asarray(
            np.array(columns["schedule_values"], np.float64).reshape(p, -1), dtype),
        momentum=np.asarray([MOMENTUM_TYPES.index(g.momentum) for g in canon], np.int32),
        hparams={f: np.asarray([float(getattr(g.hparams, f)) for g in canon], dtype)
                 for f in HPARAM_NAMES},
    )
