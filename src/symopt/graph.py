"""``Graph``: a symbolic optimizer as a NASNet-style DAG, and its JSON form.

A graph is the whole optimizer (Morgan & Hougen 2024, "dual-joint" search):

* ``update``: an :class:`Expr`, a DAG of hidden nodes
  ``binary(unary(a), unary(b))`` whose inputs are operands (see
  :data:`symopt.ops.OPERANDS`), the graph's constants ``c0, c1, ...``, its
  recurrent states ``s0, s1, ...`` or earlier nodes ``n0, n1, ...``. Its root
  is the update direction ``d``. Nodes that the root and the states do not
  reach are inactive and ignored.
* ``states``: references whose values are carried to the next step as the
  operands ``s0, s1, ...`` (zero at the first step); AutoLR's adaptive rules
  such as ADES are recurrences of this kind.
* ``decays``: for some operands, a scalar :class:`Expr` over ``t/T`` (and the
  decay operands) that multiplies the operand, e.g. a decay on ``w_0.0001``.
* ``schedule``: the learning-rate schedule (:class:`Schedule`).
* ``momentum``: none, classical or Nesterov momentum on the direction.
* ``hparams`` (:class:`Hyperparams`) and ``constants``.

One step of the optimizer (see :mod:`symopt.interpret`)::

    g  = clip(gradient);  m, v, gamma = EMAs of g, g^2, g^3 (bias-corrected
                                         if hparams.bias_correction)
    d  = root value;      s_i <- value of states[i]
    d  = momentum(d)      (optax.trace semantics)
    w <- w - lr * schedule(t) * (d + weight_decay * w)

Graphs are immutable and hashable. :func:`validate` names the bad field of a
malformed graph in a :class:`GraphError` (a ``ValueError``); :func:`canonical`
gives the form in which structurally equal graphs compare equal.

One concept, the graph value, in one module: its types, its validation, its
canonical form and its JSON form each walk every field of a graph, so a
field added to a graph is added to all four here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from symopt import ops

FORMAT = "symopt.graph/1"
MOMENTUM_TYPES = ("none", "classical", "nesterov")
SCHEDULE_KINDS = (
    "constant",
    "cosine",
    "linear",
    "exponential",
    "step",
    "restarts",
    "graph",
    "piecewise",
)
MAX_NODES = 32
MAX_SUBGRAPH_NODES = 8
MAX_STATES = 3
MAX_CONSTANTS = 8
MAX_SCHEDULE_VALUES = 16
MAX_SCHEDULE_VALUE = 1e6
MAX_INT = 2**31 - 1
"""Largest step count or integer a graph may hold (JAX reads them as int32)."""
MAX_FILE_BYTES = 1 << 20
"""Largest graph file :func:`load` reads (a graph's JSON is a few kilobytes)."""


class GraphError(ValueError):
    """A malformed graph; the message names the bad field on one line."""


@dataclasses.dataclass(frozen=True)
class Node:
    """A hidden node: ``op(left(a), right(b))``."""

    op: str
    left: str
    a: str
    right: str
    b: str


@dataclasses.dataclass(frozen=True)
class Expr:
    """A DAG of nodes with one output, ``root`` (a node ``n<i>`` or an operand)."""

    nodes: tuple[Node, ...]
    root: str


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Learning-rate multiplier over steps ``t = 0 .. T-1``.

    Linear warmup ``(t+1)/warmup_steps`` for ``t < warmup_steps``, then, over
    ``u = (t - W) / (T - W)`` in [0, 1]:

    * ``constant``: 1
    * ``cosine``: ``alpha + (1-alpha) * 0.5 * (1 + cos(pi*u))``
    * ``linear``: ``1 - (1-alpha) * u``
    * ``exponential``: ``decay_rate ** u``
    * ``step``: ``decay_rate ** min(floor(u * steps), steps - 1)``
    * ``restarts``: cosine restarted ``cycles`` times (SGDR, equal periods)
    * ``graph``: the value of the scalar expression ``expr`` at ``u``
    * ``piecewise``: ``values[min(floor(u * n), n - 1)]``, ``n = len(values)``:
      training split into ``n`` equal epochs, one multiplier each (AutoLR's
      dynamic schedules, Carvalho et al. 2022)

    Past ``T`` (``t >= T``) the multiplier, and every decay sub-graph, holds its
    value at the last step ``t = T - 1`` (:func:`symopt.schedules.held_step`).
    """

    kind: str = "constant"
    warmup_steps: int = 0
    alpha: float = 0.0
    decay_rate: float = 0.1
    steps: int = 3
    cycles: int = 4
    expr: Expr | None = None
    values: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Hyperparams:
    """Hyperparameters. ``clip_value``/``clip_norm`` of 0 mean no clipping."""

    learning_rate: float = 1e-3
    beta1: float = 0.9  # EMA rate of m
    beta2: float = 0.999  # EMA rate of v
    beta3: float = 0.999  # EMA rate of gamma
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled, scaled by the learning rate
    momentum: float = 0.9  # beta of the momentum on the direction
    clip_value: float = 0.0  # element-wise gradient clipping
    clip_norm: float = 0.0  # global-norm gradient clipping
    bias_correction: bool = True


@dataclasses.dataclass(frozen=True)
class Graph:
    """A symbolic optimizer; see the module docstring."""

    update: Expr
    states: tuple[str, ...] = ()
    decays: tuple[tuple[str, Expr], ...] = ()
    schedule: Schedule = Schedule()
    momentum: str = "none"
    hparams: Hyperparams = Hyperparams()
    constants: tuple[float, ...] = ()

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def with_hparams(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, hparams=dataclasses.replace(self.hparams, **changes))

    @property
    def decay_map(self) -> dict[str, Expr]:
        return dict(self.decays)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(to_dict(self), **kwargs)


@functools.lru_cache(maxsize=1024)
def node_ref(i: int) -> str:
    return f"n{i}"


# ASCII digits without leading zeros: each index has one spelling.
_NODE_REF = re.compile(r"n(0|[1-9][0-9]*)\Z")
_CONST_REF = re.compile(r"c(0|[1-9][0-9]*)\Z")
_STATE_REF = re.compile(r"s(0|[1-9][0-9]*)\Z")


@functools.lru_cache(maxsize=4096)
def node_index(ref: str) -> int | None:
    """The node index of ``n<i>``, else None."""
    match = _NODE_REF.match(ref)
    return int(match.group(1)) if match else None


@functools.lru_cache(maxsize=4096)
def constant_index(ref: str) -> int | None:
    match = _CONST_REF.match(ref)
    return int(match.group(1)) if match else None


@functools.lru_cache(maxsize=4096)
def state_index(ref: str) -> int | None:
    match = _STATE_REF.match(ref)
    return int(match.group(1)) if match else None


def simple(root: str, **kwargs: Any) -> Graph:
    """A graph whose update direction is one operand, e.g. ``simple("adam")``."""
    return Graph(update=Expr((), root), **kwargs)


def nodes(*specs: tuple[str, str, str, str, str], root: str | None = None) -> Expr:
    """An Expr from ``(op, left, a, right, b)`` tuples; root defaults to the last."""
    built = tuple(Node(*spec) for spec in specs)
    return Expr(built, root if root is not None else node_ref(len(built) - 1))


# --------------------------------------------------------------------------
# Validation.


def _check_ref(ref: Any, i: int, where: str, *, scalar: bool, graph: Graph) -> None:
    if not isinstance(ref, str):
        raise GraphError(f"{where}: reference must be a string, got {ref!r}")
    if (j := node_index(ref)) is not None:
        if j >= i:
            raise GraphError(
                f"{where}: '{ref}' is not an earlier node (cycle or forward reference;"
                f" allowed n0..n{i - 1})"
                if i
                else f"{where}: '{ref}' is not an earlier node (none precede it)"
            )
        return
    if (j := constant_index(ref)) is not None:
        if j >= len(graph.constants):
            raise GraphError(f"{where}: constant '{ref}' undefined ({len(graph.constants)} given)")
        return
    if (j := state_index(ref)) is not None:
        if scalar:
            raise GraphError(f"{where}: state '{ref}' not allowed in a scalar sub-graph")
        if j >= len(graph.states):
            raise GraphError(f"{where}: state '{ref}' undefined ({len(graph.states)} states)")
        return
    allowed = ops.SCALAR_OPERANDS if scalar else ops.TENSOR_OPERANDS
    if ref not in allowed:
        kind = "scalar operand" if scalar else "operand"
        raise GraphError(f"{where}: unknown {kind} '{ref}'")


def _validate_expr(expr: Any, where: str, *, scalar: bool, graph: Graph, max_nodes: int) -> None:
    if not isinstance(expr, Expr):
        raise GraphError(f"{where}: expected an Expr, got {type(expr).__name__}")
    if len(expr.nodes) > max_nodes:
        raise GraphError(f"{where}.nodes: {len(expr.nodes)} nodes exceed the limit {max_nodes}")
    for i, node in enumerate(expr.nodes):
        at = f"{where}.nodes[{i}]"
        if not isinstance(node, Node):
            raise GraphError(f"{at}: expected a Node, got {type(node).__name__}")
        if node.op not in ops.BINARY:
            raise GraphError(f"{at}.op: unknown binary operator {node.op!r}")
        for field in ("left", "right"):
            unary = getattr(node, field)
            if unary not in ops.UNARY:
                raise GraphError(f"{at}.{field}: unknown unary operator {unary!r}")
            if scalar and ops.UNARY[unary].random:
                raise GraphError(f"{at}.{field}: random operator {unary!r} in a scalar sub-graph")
            if scalar and unary in ops.LEAF_OPERATORS:
                raise GraphError(f"{at}.{field}: per-leaf operator {unary!r} in a scalar "
                                 "sub-graph")
        if scalar and node.op in ops.LEAF_OPERATORS:
            raise GraphError(f"{at}.op: per-leaf operator {node.op!r} in a scalar sub-graph")
        _check_ref(node.a, i, f"{at}.a", scalar=scalar, graph=graph)
        _check_ref(node.b, i, f"{at}.b", scalar=scalar, graph=graph)
    _check_ref(expr.root, len(expr.nodes), f"{where}.root", scalar=scalar, graph=graph)


def _check_number(value: Any, where: str, lo: float, hi: float, *, lo_open=False, hi_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GraphError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise GraphError(f"{where}: the integer {value} is too large; write it as a float")
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo)
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise GraphError(f"{where}: {value!r} is outside {lb}{lo:g}, {hi:g}{rb}")


def _check_int(value: Any, where: str, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_INT:
        raise GraphError(f"{where}: expected an integer in [{lo}, {MAX_INT}], got {value!r}")


def validate(
    graph: Graph,
    *,
    max_nodes: int = MAX_NODES,
    max_subgraph_nodes: int = MAX_SUBGRAPH_NODES,
    max_states: int = MAX_STATES,
    max_constants: int = MAX_CONSTANTS,
) -> Graph:
    """Checks a graph's structure and values; returns it or raises GraphError."""
    if not isinstance(graph, Graph):
        raise GraphError(f"graph: expected a symopt.Graph, got {type(graph).__name__}")
    if not isinstance(graph.constants, tuple) or len(graph.constants) > max_constants:
        raise GraphError(f"constants: expected a tuple of at most {max_constants} numbers")
    for i, c in enumerate(graph.constants):
        _check_number(c, f"constants[{i}]", -ops.BIG, ops.BIG)
    if not isinstance(graph.states, tuple) or len(graph.states) > max_states:
        raise GraphError(f"states: expected a tuple of at most {max_states} references")
    _validate_expr(graph.update, "update", scalar=False, graph=graph, max_nodes=max_nodes)
    n = len(graph.update.nodes)
    for i, ref in enumerate(graph.states):
        _check_ref(ref, n, f"states[{i}]", scalar=False, graph=graph)
    seen = set()
    for i, item in enumerate(graph.decays):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise GraphError(f"decays[{i}]: expected an (operand, Expr) pair")
        name, expr = item
        if name not in ops.OPERANDS:
            raise GraphError(f"decays[{i}]: unknown operand {name!r}")
        if name in seen:
            raise GraphError(f"decays[{i}]: operand {name!r} has two decays")
        seen.add(name)
        _validate_expr(
            expr, f"decays.{name}", scalar=True, graph=graph, max_nodes=max_subgraph_nodes
        )
    _validate_schedule(graph, max_subgraph_nodes)
    if graph.momentum not in MOMENTUM_TYPES:
        raise GraphError(f"momentum: {graph.momentum!r} is not one of {', '.join(MOMENTUM_TYPES)}")
    _validate_hparams(graph.hparams)
    return graph


def _validate_schedule(graph: Graph, max_nodes: int) -> None:
    s = graph.schedule
    if not isinstance(s, Schedule):
        raise GraphError(f"schedule: expected a Schedule, got {type(s).__name__}")
    if s.kind not in SCHEDULE_KINDS:
        raise GraphError(f"schedule.kind: {s.kind!r} is not one of {', '.join(SCHEDULE_KINDS)}")
    _check_int(s.warmup_steps, "schedule.warmup_steps", 0)
    _check_number(s.alpha, "schedule.alpha", 0.0, 1.0)
    _check_number(s.decay_rate, "schedule.decay_rate", 0.0, 1.0, lo_open=True)
    _check_int(s.steps, "schedule.steps", 1)
    _check_int(s.cycles, "schedule.cycles", 1)
    if s.kind == "graph":
        _validate_expr(s.expr, "schedule.expr", scalar=True, graph=graph, max_nodes=max_nodes)
    elif s.expr is not None:
        raise GraphError(f"schedule.expr: only a 'graph' schedule has one (kind is {s.kind!r})")
    if not isinstance(s.values, tuple):
        raise GraphError(f"schedule.values: expected a tuple, got {type(s.values).__name__}")
    if s.kind == "piecewise":
        if not 1 <= len(s.values) <= MAX_SCHEDULE_VALUES:
            raise GraphError(
                f"schedule.values: {len(s.values)} values, expected 1 to {MAX_SCHEDULE_VALUES}"
            )
        for i, value in enumerate(s.values):
            _check_number(value, f"schedule.values[{i}]", 0.0, MAX_SCHEDULE_VALUE)
    elif s.values:
        raise GraphError(
            f"schedule.values: only a 'piecewise' schedule has them (kind is {s.kind!r})"
        )


def _validate_hparams(h: Hyperparams) -> None:
    if not isinstance(h, Hyperparams):
        raise GraphError(f"hparams: expected Hyperparams, got {type(h).__name__}")
    _check_number(h.learning_rate, "hparams.learning_rate", 0.0, ops.BIG, lo_open=True)
    for name in ("beta1", "beta2", "beta3", "momentum"):
        _check_number(getattr(h, name), f"hparams.{name}", 0.0, 1.0, hi_open=True)
    _check_number(h.eps, "hparams.eps", 0.0, 1.0, lo_open=True)
    for name in ("weight_decay", "clip_value", "clip_norm"):
        _check_number(getattr(h, name), f"hparams.{name}", 0.0, ops.BIG)
    if not isinstance(h.bias_correction, bool):
        raise GraphError(f"hparams.bias_correction: expected true/false, got {h.bias_correction!r}")


# --------------------------------------------------------------------------
# Structure queries.


def active_nodes(expr: Expr, extra_roots: Iterable[str] = ()) -> set[int]:
    """Indices of the nodes that ``expr.root`` (or ``extra_roots``) reach."""
    active: set[int] = set()
    stack = [expr.root, *extra_roots]
    while stack:
        i = node_index(stack.pop())
        if i is not None and i not in active:
            active.add(i)
            stack.extend((expr.nodes[i].a, expr.nodes[i].b))
    return active


def expr_inputs(expr: Expr, extra_roots: Iterable[str] = ()) -> set[str]:
    """The non-node references (operands, constants, states) the active part reads."""
    refs: set[str] = set()
    roots = [expr.root, *extra_roots]
    for r in roots:
        if node_index(r) is None:
            refs.add(r)
    for i in active_nodes(expr, extra_roots):
        for r in (expr.nodes[i].a, expr.nodes[i].b):
            if node_index(r) is None:
                refs.add(r)
    return refs


def used_operands(graph: Graph) -> set[str]:
    """Every operand, constant and state reference the active graph reads."""
    used = expr_inputs(graph.update, graph.states)
    for name, expr in graph.decays:
        if name in used:
            used |= expr_inputs(expr)
    if graph.schedule.kind == "graph" and graph.schedule.expr is not None:
        used |= expr_inputs(graph.schedule.expr)
    return used


# --------------------------------------------------------------------------
# Canonical form.


def _canonical_expr(
    expr: Expr, extra_roots: tuple[str, ...], rename: Mapping[str, str]
) -> tuple[Expr, tuple[str, ...]]:
    """Rebuilds ``expr`` in canonical order: dead nodes dropped, equal
    sub-expressions shared, commutative inputs sorted, post-order numbering."""
    keys: dict[str, str] = {}  # old ref -> canonical key (hash of the expression)

    def key(ref: str) -> str:
        if ref not in keys:
            i = node_index(ref)
            if i is None:
                keys[ref] = rename.get(ref, ref)
            else:
                node = expr.nodes[i]
                sides = [f"{node.left}({key(node.a)})", f"{node.right}({key(node.b)})"]
                if ops.BINARY[node.op].commutative:
                    sides.sort()
                # Hashed, so that keys stay short however much the DAG shares.
                text = f"{node.op}[{sides[0]},{sides[1]}]"
                keys[ref] = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        return keys[ref]

    out: list[Node] = []
    new_ref: dict[str, str] = {}  # canonical key -> new ref

    def emit(ref: str) -> str:
        k = key(ref)
        if k in new_ref:
            return new_ref[k]
        i = node_index(ref)
        if i is None:
            return rename.get(ref, ref)
        node = expr.nodes[i]
        sides = [(node.left, node.a), (node.right, node.b)]
        if ops.BINARY[node.op].commutative:
            sides.sort(key=lambda side: f"{side[0]}({key(side[1])})")
        (left, a), (right, b) = sides
        a, b = emit(a), emit(b)
        out.append(Node(node.op, left, a, right, b))
        new_ref[k] = node_ref(len(out) - 1)
        return new_ref[k]

    root = emit(expr.root)
    extras = tuple(emit(r) for r in extra_roots)
    return Expr(tuple(out), root), extras


def canonical(graph: Graph) -> Graph:
    """The canonical form: structurally equal graphs give equal results.

    Drops inactive nodes, decays on unused operands, unused constants (the
    rest renumbered by first use) and schedule fields the schedule's kind
    ignores; shares equal sub-expressions; orders commutative inputs.
    """
    validate(graph)
    used = used_operands(graph)
    order: list[int] = []
    exprs = [graph.update] + [e for n, e in sorted(graph.decays) if n in used]
    if graph.schedule.kind == "graph":
        exprs.append(graph.schedule.expr)
    # The constants of every decay kept: a decay on an operand that only the
    # schedule reads is kept, and used_operands leaves its inputs out.
    kept = used.union(*(expr_inputs(e) for e in exprs))
    for expr in exprs:  # constants renumbered by first use, in node order
        for node in expr.nodes:
            for r in (node.a, node.b):
                j = constant_index(r)
                if j is not None and j not in order and f"c{j}" in kept:
                    order.append(j)
        for r in (expr.root, *(graph.states if expr is graph.update else ())):
            j = constant_index(r)
            if j is not None and j not in order:
                order.append(j)
    rename = {f"c{j}": f"c{k}" for k, j in enumerate(order)}
    update, states = _canonical_expr(graph.update, graph.states, rename)
    decays = tuple(
        (name, _canonical_expr(expr, (), rename)[0])
        for name, expr in sorted(graph.decays)
        if name in used
    )
    s = graph.schedule
    default = Schedule()
    schedule = Schedule(
        kind=s.kind,
        warmup_steps=s.warmup_steps,
        alpha=s.alpha if s.kind in ("cosine", "linear", "restarts") else default.alpha,
        decay_rate=s.decay_rate if s.kind in ("exponential", "step") else default.decay_rate,
        steps=s.steps if s.kind == "step" else default.steps,
        cycles=s.cycles if s.kind == "restarts" else default.cycles,
        expr=_canonical_expr(s.expr, (), rename)[0] if s.kind == "graph" else None,
        values=s.values,
    )
    return Graph(
        update=update,
        states=states,
        decays=decays,
        schedule=schedule,
        momentum=graph.momentum,
        hparams=graph.hparams,
        constants=tuple(graph.constants[j] for j in order),
    )


def live_states(graph: Graph) -> set[int]:
    """Indices of the states the update reads, directly or through other states."""
    live: set[int] = set()
    while True:
        reads = expr_inputs(graph.update, [graph.states[i] for i in sorted(live)])
        more = {i for i in range(len(graph.states)) if f"s{i}" in reads} - live
        if not more:
            return live
        live |= more


def without_dead_states(graph: Graph) -> Graph:
    """``graph`` without the states its update never reads (the others
    renumbered in order, the nodes only they read left inactive): it computes
    the same updates."""
    live = sorted(live_states(graph))
    if len(live) == len(graph.states):
        return graph
    rename = {f"s{i}": "one" for i in range(len(graph.states))}
    rename.update({f"s{i}": f"s{k}" for k, i in enumerate(live)})
    ref = lambda r: rename.get(r, r)  # noqa: E731
    nodes = tuple(dataclasses.replace(n, a=ref(n.a), b=ref(n.b)) for n in graph.update.nodes)
    return graph.replace(update=Expr(nodes, ref(graph.update.root)),
                         states=tuple(ref(graph.states[i]) for i in live))


def structure_key(graph: Graph) -> str:
    """What a graph computes up to its numbers: the canonical update, live
    states, decays and momentum, without constant values, hyperparameters or
    schedule.

    Two graphs with one key are one optimizer at other hyperparameters (AdamW
    with other betas, rate or schedule); searchers use it as a niche, so that
    re-tunings of one program do not crowd out other programs. A state the
    update never reads (:func:`without_dead_states`) cannot tell two programs
    apart.
    """
    g = canonical(without_dead_states(canonical(graph)))
    return repr((g.update, g.states, g.decays, g.momentum, len(g.constants)))


# --------------------------------------------------------------------------
# JSON.


def _expr_to_dict(expr: Expr) -> dict[str, Any]:
    return {"nodes": [dataclasses.asdict(n) for n in expr.nodes], "root": expr.root}


def to_dict(graph: Graph) -> dict[str, Any]:
    """A JSON-ready dict (``json.dumps(to_dict(g))`` is the file format)."""
    s = graph.schedule
    schedule = dataclasses.asdict(s)
    schedule["expr"] = _expr_to_dict(s.expr) if s.expr is not None else None
    schedule["values"] = list(s.values)
    return {
        "format": FORMAT,
        "update": _expr_to_dict(graph.update),
        "states": list(graph.states),
        "decays": {name: _expr_to_dict(e) for name, e in graph.decays},
        "schedule": schedule,
        "momentum": graph.momentum,
        "hparams": dataclasses.asdict(graph.hparams),
        "constants": list(graph.constants),
    }


def _require(d: Any, where: str, kind: type = dict) -> Any:
    if not isinstance(d, kind):
        raise GraphError(f"{where}: expected {kind.__name__}, got {type(d).__name__}")
    return d


def _fields(d: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in known:
            raise GraphError(f"{where}.{key}: unknown field (expected one of {sorted(known)})")
    return dict(d)


def _expr_from_dict(d: Any, where: str) -> Expr:
    d = _require(d, where)
    for key in d:
        if key not in ("nodes", "root"):
            raise GraphError(f"{where}.{key}: unknown field (expected nodes, root)")
    if "root" not in d:
        raise GraphError(f"{where}.root: missing")
    built = []
    for i, nd in enumerate(_require(d.get("nodes", []), f"{where}.nodes", list)):
        at = f"{where}.nodes[{i}]"
        nd = _fields(_require(nd, at), Node, at)
        for f in ("op", "left", "a", "right", "b"):
            if f not in nd:
                raise GraphError(f"{at}.{f}: missing")
            _require(nd[f], f"{at}.{f}", str)
        built.append(Node(**nd))
    return Expr(tuple(built), _require(d["root"], f"{where}.root", str))


def from_dict(d: Any) -> Graph:
    """Parses and validates :func:`to_dict` output; raises GraphError."""
    d = _require(d, "graph")
    if d.get("format", FORMAT) != FORMAT:
        raise GraphError(f"format: {d['format']!r} is not {FORMAT!r}")
    known = {"format", "update", "states", "decays", "schedule", "momentum", "hparams", "constants"}
    for key in d:
        if key not in known:
            raise GraphError(f"{key}: unknown field (expected one of {sorted(known)})")
    if "update" not in d:
        raise GraphError("update: missing")
    sched = _fields(_require(d.get("schedule", {}), "schedule"), Schedule, "schedule")
    if sched.get("expr") is not None:
        sched["expr"] = _expr_from_dict(sched["expr"], "schedule.expr")
    sched["values"] = tuple(_float(v, f"schedule.values[{i}]") for i, v in enumerate(
        _require(sched.get("values", []), "schedule.values", list)))
    for key in ("alpha", "decay_rate"):
        if key in sched:
            sched[key] = _float(sched[key], f"schedule.{key}")
    hparams = _fields(_require(d.get("hparams", {}), "hparams"), Hyperparams, "hparams")
    for key, value in hparams.items():
        if key != "bias_correction":
            hparams[key] = _float(value, f"hparams.{key}")
    decays = _require(d.get("decays", {}), "decays")
    graph = Graph(
        update=_expr_from_dict(d["update"], "update"),
        states=tuple(_require(d.get("states", []), "states", list)),
        decays=tuple((k, _expr_from_dict(v, f"decays.{k}")) for k, v in decays.items()),
        schedule=Schedule(**sched),
        momentum=d.get("momentum", "none"),
        hparams=Hyperparams(**hparams),
        constants=tuple(_float(c, f"constants[{i}]") for i, c in enumerate(
            _require(d.get("constants", []), "constants", list))),
    )
    return validate(graph)


def _float(value: Any, where: str) -> Any:
    """A JSON integer as the float it stands for; anything else unchanged
    (validation names what is wrong with it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise GraphError(f"{where}: an integer of {len(str(abs(value)))} digits is outside "
                             "the range of a float") from None
    return value


def from_json(text: str) -> Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphError(f"json: {e}") from None
    except RecursionError:
        raise GraphError("json: nested too deeply to be a graph") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise GraphError(f"json: {e}") from None
    return from_dict(data)


def save(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Writes ``graph`` as JSON to ``path``."""
    validate(graph)
    with open(path, "w") as f:
        json.dump(to_dict(graph), f, indent=1)
        f.write("\n")


def load(path: str | os.PathLike[str]) -> Graph:
    """Reads a graph written by :func:`save` (or any ``best.json``)."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    try:
        if len(data) > MAX_FILE_BYTES:
            raise GraphError(f"larger than {MAX_FILE_BYTES} bytes: not a graph file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise GraphError("not UTF-8 text: not a graph file") from None
        return from_json(text)
    except GraphError as e:
        raise GraphError(f"{os.fspath(path)}: {e}") from None
