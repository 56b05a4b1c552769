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
* ``total_steps`` and ``test_total_steps``: the training lengths ``T`` the
  graph was found at and tested at (``best.json`` records them; None where
  unknown). They say how the graph was measured, not what it computes:
  equality, hashing and every fingerprint ignore them, so a found graph is
  the same program as its archived candidate. :func:`total_steps_for` lays
  a schedule over the found length when a caller gives none.

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
import stat
import warnings
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
MAX_SHOWN = 80
"""Most characters of a user's value an error message echoes (:func:`_shown`)."""
DEFAULT_TOTAL_STEPS = 10_000
"""``T`` where neither the caller nor the graph gives a training length."""
LENGTH_TOLERANCE = 2.0
"""A caller's ``T`` more than this factor from the found one is warned about."""
LENGTH_FIELDS = ("total_steps", "test_total_steps")
"""The graph's fields of how it was measured: optional, written only when known."""


class GraphError(ValueError):
    """A malformed graph; the message names the bad field on one line."""


class TrainingLengthWarning(UserWarning):
    """A graph whose schedule or ``t/T`` operands depend on the training length
    ``T`` is laid over a length far from the one it was found at, or over a
    default because none is known (:func:`total_steps_for`)."""


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
    # How the graph was measured, not what it computes: left out of ==, hash.
    total_steps: int | None = dataclasses.field(default=None, compare=False)
    test_total_steps: int | None = dataclasses.field(default=None, compare=False)

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


# ASCII digits without leading zeros: each index has one spelling. At most 9
# digits: far above every limit, and never an integer too long for int().
_NODE_REF = re.compile(r"n(0|[1-9][0-9]{0,8})\Z")
_CONST_REF = re.compile(r"c(0|[1-9][0-9]{0,8})\Z")
_STATE_REF = re.compile(r"s(0|[1-9][0-9]{0,8})\Z")


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


def _shown(value: Any, *, quote: bool = True) -> str:
    """``repr(value)`` (``str`` without ``quote``) for an error message, cut to
    :data:`MAX_SHOWN` characters with its length: a message never echoes an
    unbounded value of the user's (a 1 MB operand name)."""
    try:
        text = repr(value) if quote else str(value)
    except ValueError:  # an integer with more digits than str() converts
        return f"<an integer of {value.bit_length()} bits>"
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN - 24]}... ({len(text)} characters)"


def _check_ref(ref: Any, i: int, where: str, *, scalar: bool, graph: Graph) -> None:
    if not isinstance(ref, str):
        raise GraphError(f"{where}: reference must be a string, got {_shown(ref)}")
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
        raise GraphError(f"{where}: unknown {kind} {_shown(ref)}")


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
            raise GraphError(f"{at}.op: unknown binary operator {_shown(node.op)}")
        for field in ("left", "right"):
            unary = getattr(node, field)
            if unary not in ops.UNARY:
                raise GraphError(f"{at}.{field}: unknown unary operator {_shown(unary)}")
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
        raise GraphError(f"{where}: expected a number, got {_shown(value)}")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise GraphError(f"{where}: the integer {_shown(value)} is too large; write it as a "
                         "float")
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo)
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise GraphError(f"{where}: {value!r} is outside {lb}{lo:g}, {hi:g}{rb}")


def _check_int(value: Any, where: str, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_INT:
        raise GraphError(f"{where}: expected an integer in [{lo}, {MAX_INT}], got "
                         f"{_shown(value)}")


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
            raise GraphError(f"decays[{i}]: unknown operand {_shown(name)}")
        if name in seen:
            raise GraphError(f"decays[{i}]: operand {name!r} has two decays")
        seen.add(name)
        _validate_expr(
            expr, f"decays.{name}", scalar=True, graph=graph, max_nodes=max_subgraph_nodes
        )
    _validate_schedule(graph, max_subgraph_nodes)
    if graph.momentum not in MOMENTUM_TYPES:
        raise GraphError(f"momentum: {_shown(graph.momentum)} is not one of "
                         f"{', '.join(MOMENTUM_TYPES)}")
    _validate_hparams(graph.hparams)
    for name in LENGTH_FIELDS:
        if getattr(graph, name) is not None:
            _check_int(getattr(graph, name), name, 1)
    return graph


def _validate_schedule(graph: Graph, max_nodes: int) -> None:
    s = graph.schedule
    if not isinstance(s, Schedule):
        raise GraphError(f"schedule: expected a Schedule, got {type(s).__name__}")
    if s.kind not in SCHEDULE_KINDS:
        raise GraphError(f"schedule.kind: {_shown(s.kind)} is not one of "
                         f"{', '.join(SCHEDULE_KINDS)}")
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
        raise GraphError(f"hparams.bias_correction: expected true/false, got "
                         f"{_shown(h.bias_correction)}")


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


_LENGTH_OPERANDS = frozenset(
    name for name, o in ops.OPERANDS.items() if any(s.name == "T" for s in o.sympy.free_symbols))
"""The operands whose formula reads the training length ``T`` (``t/T`` and the decays)."""


def reads_total_steps(graph: Graph) -> bool:
    """Whether the graph's updates depend on the training length ``T``: a
    schedule other than ``constant``, or an operand of ``t/T`` that the active
    graph reads (in the update, a decay or the schedule)."""
    return graph.schedule.kind != "constant" or bool(used_operands(graph) & _LENGTH_OPERANDS)


def total_steps_for(graph: Graph, total_steps: int | None = None) -> int:
    """The training length ``T`` to lay ``graph``'s schedule and decays over:
    ``total_steps`` where the caller gives it, else the length the graph was
    found at (``graph.total_steps``), else :data:`DEFAULT_TOTAL_STEPS`.

    Where the graph reads ``T`` (:func:`reads_total_steps`), warns with a
    :class:`TrainingLengthWarning`, once per graph and pair of lengths, when
    the caller's length is more than :data:`LENGTH_TOLERANCE` times from the
    found one (its schedule and tuned rate were measured at that length), or
    when neither is known (the default is a guess).

    Raises:
      ValueError: ``total_steps`` is below 1.
    """
    found = graph.total_steps
    if total_steps is None:
        if found is None and reads_total_steps(graph):
            _warn_once(graph, None, "this graph's schedule or t/T operands depend on the "
                       "training length, and neither total_steps nor the length it was found "
                       f"at is known: laid over {DEFAULT_TOTAL_STEPS} steps; pass "
                       "total_steps=<your number of training steps>")
        return DEFAULT_TOTAL_STEPS if found is None else found
    if isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {_shown(total_steps)}")
    if found is None or not reads_total_steps(graph):
        return total_steps
    ratio = max(total_steps / found, found / total_steps)
    if ratio > LENGTH_TOLERANCE:
        _warn_once(graph, total_steps, f"this graph was found at total_steps={found}; its "
                   f"schedule or t/T operands are laid over total_steps={total_steps}, "
                   f"{ratio:.3g}x {'longer' if total_steps > found else 'shorter'}: its "
                   f"learning rate and schedule were measured at {found} steps only")
    return total_steps


_WARNED: set[tuple[Graph, int | None, int | None]] = set()
"""(graph, found length, caller's length) warned about by :func:`total_steps_for`."""


def _warn_once(graph: Graph, total_steps: int | None, message: str) -> None:
    key = (graph, graph.total_steps, total_steps)  # graph == ignores the found length
    if key in _WARNED:
        return
    if len(_WARNED) >= 4096:  # bounded: a long-running process warns again, never grows
        _WARNED.clear()
    _WARNED.add(key)
    # 1: here, 2: total_steps_for, 3: to_optax or to_source, 4: the caller's line
    warnings.warn(message, TrainingLengthWarning, stacklevel=4)


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
        total_steps=graph.total_steps,
        test_total_steps=graph.test_total_steps,
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
    """A JSON-ready dict (``json.dumps(to_dict(g))`` is the file format); the
    training lengths only where known, so a graph without them (every archived
    candidate) has the dict it had before they existed."""
    s = graph.schedule
    schedule = dataclasses.asdict(s)
    schedule["expr"] = _expr_to_dict(s.expr) if s.expr is not None else None
    schedule["values"] = list(s.values)
    lengths = {name: getattr(graph, name) for name in LENGTH_FIELDS
               if getattr(graph, name) is not None}
    return {
        "format": FORMAT,
        "update": _expr_to_dict(graph.update),
        "states": list(graph.states),
        "decays": {name: _expr_to_dict(e) for name, e in graph.decays},
        "schedule": schedule,
        "momentum": graph.momentum,
        "hparams": dataclasses.asdict(graph.hparams),
        "constants": list(graph.constants),
        **lengths,
    }


def _require(d: Any, where: str, kind: type = dict) -> Any:
    if not isinstance(d, kind):
        raise GraphError(f"{where}: expected {kind.__name__}, got {type(d).__name__}")
    return d


def _fields(d: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in known:
            raise GraphError(f"{where}.{_shown(key, quote=False)}: unknown field (expected one "
                             f"of {sorted(known)})")
    return dict(d)


def _expr_from_dict(d: Any, where: str) -> Expr:
    d = _require(d, where)
    for key in d:
        if key not in ("nodes", "root"):
            raise GraphError(f"{where}.{_shown(key, quote=False)}: unknown field (expected "
                             "nodes, root)")
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
        raise GraphError(f"format: {_shown(d['format'])} is not {FORMAT!r}")
    known = {"format", "update", "states", "decays", "schedule", "momentum", "hparams", "constants",
             *LENGTH_FIELDS}
    for key in d:
        if key not in known:
            raise GraphError(f"{_shown(key, quote=False)}: unknown field (expected one of "
                             f"{sorted(known)})")
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
        decays=tuple((k, _expr_from_dict(v, f"decays.{_shown(k, quote=False)}"))
                     for k, v in decays.items()),
        schedule=Schedule(**sched),
        momentum=d.get("momentum", "none"),
        hparams=Hyperparams(**hparams),
        constants=tuple(_float(c, f"constants[{i}]") for i, c in enumerate(
            _require(d.get("constants", []), "constants", list))),
        **{name: d[name] for name in LENGTH_FIELDS if name in d},
    )
    return validate(graph)


def _float(value: Any, where: str) -> Any:
    """A JSON integer as the float it stands for; anything else unchanged
    (validation names what is wrong with it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise GraphError(f"{where}: the integer {_shown(value)} is outside the range of "
                             "a float") from None
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
    """Reads a graph written by :func:`save` (or any ``best.json``).

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read: its type and
    size are checked (``os.stat``) before it is opened, and again on the file
    opened, so a FIFO, a device or a directory is a one-line error, never a
    wait or an endless read.

    Raises:
      GraphError: not a graph file, or a malformed graph (naming the field).
      OSError: the file cannot be opened.
    """
    name = os.fspath(path)
    try:
        _check_graph_file(os.stat(name))
        # Non-blocking: a FIFO swapped in after the check opens at once, then is refused.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(name, flags), "rb") as f:
            _check_graph_file(os.fstat(f.fileno()))
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:  # grew since the check
            raise GraphError(f"larger than {MAX_FILE_BYTES} bytes: not a graph file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise GraphError("not UTF-8 text: not a graph file") from None
        return from_json(text)
    except GraphError as e:
        raise GraphError(f"{name}: {e}") from None


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_graph_file(info: os.stat_result) -> None:
    """Raises GraphError unless ``info`` is a regular file small enough to be a graph."""
    if not stat.S_ISREG(info.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(info.st_mode)), "a special file")
        raise GraphError(f"{kind}, not a regular file: not a graph file")
    if info.st_size > MAX_FILE_BYTES:
        raise GraphError(f"{info.st_size} bytes, larger than {MAX_FILE_BYTES}: not a graph file")
