"""The symbolic (sympy) form of a Graph, and its LaTeX and plain-text equations.

:func:`to_sympy` walks a graph's active nodes and builds each quantity from
the sympy forms in the :mod:`symopt.ops` tables (``UNARY``, ``BINARY``,
``OPERANDS``): the update direction ``d``, the new value of each recurrent
state ``s_i``, the full weight update ``-eta_t * (d + lambda * w)`` (with the
momentum buffer ``u_t`` in place of ``d`` where the graph has momentum), the
learning-rate schedule as a function of ``t/T``, and each operand's decay.
:func:`to_latex` writes the whole optimizer as an aligned LaTeX block (update,
direction, states, moment EMAs, schedule) and :func:`to_text` as one short
line for logs.

Simplification is cheap on purpose: ``sympy.simplify`` can take seconds on
random graphs and sometimes raises, so the forms
here rely on sympy's automatic evaluation (which already merges ``x + y`` and
``y + x``, drops ``* 1`` and cancels ``x - x``), then keep
``sympy.factor_terms``'s result where it is smaller. Numbers are rounded to
:data:`SIGNIFICANT_DIGITS` for display (``1 - 0.9`` shows as ``0.1``), and a
node that several others read is named ``h_k`` rather than inlined when
inlining would make the expression large (a chain of such nodes would
otherwise double in size with each node). Results are cached per graph, so
printing the same graph again costs a dictionary look-up.

The per-leaf operators (:data:`symopt.ops.LEAF_OPERATORS`: they read a whole
parameter tensor) are opaque ``sympy.Function``s, which simplification
never rewrites (only their arguments, like any expression): ``orth``,
``rms``, ``rms_row``, ``rms_col``, ``norm``, ``trust`` and ``if_matrix``.
The text form writes them by those names (``orth(m)``); the LaTeX form as
``\\operatorname{orth}(m)``, ``\\mathrm{rms}(g)``,
``\\mathrm{rms}_{\\mathrm{row}}(x)``, ``\\mathrm{rms}_{\\mathrm{col}}(x)``,
``\\|x\\|``, ``\\operatorname{trust}(a, b)`` and
``\\operatorname{if\\_matrix}(a, b)`` (``a`` on 2-D leaves, ``b`` elsewhere).

One concept, a graph's equations, in one module: the LaTeX and the text
forms print what :func:`to_sympy` builds.
"""

from __future__ import annotations

import collections
import functools
import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import NamedTuple

import sympy
from sympy.printing.latex import LatexPrinter

from symopt import graph as graph_lib
from symopt import ops, schedules
from symopt import step as step_lib
from symopt.graph import Expr, Graph, Hyperparams

SIGNIFICANT_DIGITS = 6
"""Significant digits kept of the graph's numbers (constants, hyperparameters)."""
SIMPLIFY_MAX_SIZE = 120
"""Expressions of more nodes (operators and leaves) than this are left unsimplified."""
INLINE_MAX_SIZE = 200
"""Inlined size (operators and leaves) above which shared nodes are named ``h_k``."""
_MAX_EXACT_INTEGER = 10**6  # integral numbers up to this print as integers

LEARNING_RATE = sympy.Symbol("eta_t", positive=True)
"""``eta_t``: the scheduled learning rate, ``learning_rate * schedule(t)``."""
MOMENTUM_BUFFER = sympy.Symbol("u_t", real=True)
"""``u_t``: the momentum buffer after this step (classical and Nesterov momentum)."""
MOMENTUM_BUFFER_PREVIOUS = sympy.Symbol("u_{t-1}", real=True)
"""``u_{t-1}``: the momentum buffer before this step."""

_DIRECTION = sympy.Symbol("d", real=True)
_WEIGHT = sympy.Symbol("w", real=True)  # the w of the ``w_<scale>`` operands in ops
_EPSILON = sympy.Symbol("epsilon", positive=True)  # the epsilon of ops' ``adam``, ``rmsprop``
_STEP, _TOTAL_STEPS = ops.OPERANDS["t"].sympy.as_numer_denom()  # t and T of t/T
_UNLIMITED = sys.maxsize


class SymbolicGraph(NamedTuple):
    """The sympy form of a Graph (see :func:`to_sympy`)."""

    direction: sympy.Expr  # d, the value of graph.update.root
    states: tuple[sympy.Expr, ...]  # the new value of each recurrent state s_i
    update: sympy.Expr  # Delta w, in terms of LEARNING_RATE (and MOMENTUM_BUFFER)
    schedule: sympy.Expr  # the learning-rate multiplier, a function of t and T
    decays: dict[str, sympy.Expr]  # operand -> the factor it is multiplied by
    momentum: sympy.Expr | None  # MOMENTUM_BUFFER's new value; None without momentum
    intermediates: tuple[tuple[sympy.Symbol, sympy.Expr], ...]  # named shared nodes h_k


class _Moment(NamedTuple):
    """A moment EMA: its operand, the hyperparameter of its rate, what it averages."""

    operand: str
    beta: str
    source: str


_MOMENTS = (
    _Moment("m", "beta1", "g"),
    _Moment("v", "beta2", "g2"),
    _Moment("gamma", "beta3", "g3"),
)


def state_symbol(i: int) -> sympy.Symbol:
    """The symbol ``s_i`` of the graph's recurrent state ``i`` (operand ``s<i>``)."""
    return sympy.Symbol(f"s_{i}", real=True)


# --------------------------------------------------------------------------
# Numbers and simplification.


def _number(value: float) -> sympy.Expr:
    """Finite ``value`` rounded to SIGNIFICANT_DIGITS; an Integer where it is integral."""
    rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if rounded.is_integer() and abs(rounded) <= _MAX_EXACT_INTEGER:
        return sympy.Integer(int(rounded))
    return sympy.Float(rounded)


def _round_numbers(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with every Float rounded as :func:`_number` does (``1.0*g`` -> ``g``)."""
    changes = {}
    for f in expr.atoms(sympy.Float):
        value = float(f)
        if not math.isfinite(value):  # a huge Float from arithmetic, e.g. exp(1e30)
            continue
        rounded = _number(value)
        if not rounded.is_Float or float(rounded) != value:
            changes[f] = rounded
    return expr.xreplace(changes) if changes else expr  # rebuilding Max/Min is slow


def tree_size(expr: sympy.Basic) -> int:
    """The number of nodes of ``expr``'s tree (a walk: cheaper than ``sympy.count_ops``)."""
    return sum(1 for _ in sympy.preorder_traversal(expr))


def _simplify(expr: sympy.Expr) -> sympy.Expr:
    """A cheap simplification of ``expr``: never slow, never larger, never raises.

    ``sympy.factor_terms`` pulls common factors out of sums (and only sums):
    it shortens the equations where a search's graphs repeat a factor.
    """
    if expr.has(sympy.Max, sympy.Min):  # rebuilding them compares all pairs of args: slow
        return expr
    try:
        expr = _round_numbers(expr)
        if not expr.has(sympy.Add) or (size := tree_size(expr)) > SIMPLIFY_MAX_SIZE:
            return expr
        factored = _round_numbers(sympy.factor_terms(expr))
    except Exception:  # noqa: BLE001 (sympy raises TypeError etc. on odd inputs; keep expr)
        return expr
    return factored if tree_size(factored) < size else expr


# --------------------------------------------------------------------------
# Building expressions from a graph.


def _inlined_sizes(expr: Expr, active: list[int]) -> dict[str, int]:
    """Size of each active node's expression if every node were inlined."""
    sizes: dict[str, int] = {}
    for i in active:
        node = expr.nodes[i]
        sizes[graph_lib.node_ref(i)] = 3 + sizes.get(node.a, 1) + sizes.get(node.b, 1)
    return sizes


def _apply(op: ops.Op, *args: sympy.Expr) -> sympy.Expr:
    """``op``'s sympy form of ``args``; unevaluated, ``op.name(*args)``, where sympy fails.

    Sympy's automatic evaluation raises on some values the numeric operators
    take in their stride: ``Max`` of ``zoo`` (from a division by a zero
    constant) or ``exp`` of ``exp(1e30)`` (mpmath overflow).
    """
    try:
        return op.to_sympy(*args)
    except Exception:  # noqa: BLE001 (any sympy evaluation error)
        return sympy.Function(op.name)(*args)


def _build(
    expr: Expr,
    leaf: Callable[[str], sympy.Expr],
    intermediates: list[tuple[sympy.Symbol, sympy.Expr]],
    extra_roots: tuple[str, ...] = (),
) -> tuple[sympy.Expr, ...]:
    """The sympy forms of ``expr.root`` and of ``extra_roots``, simplified.

    ``leaf`` gives the form of a reference that is not a node. Where inlining
    every node would exceed INLINE_MAX_SIZE, a node read more than once is
    appended to ``intermediates`` as ``h_k`` and read as that symbol.
    """
    roots = (expr.root, *extra_roots)
    active = sorted(graph_lib.active_nodes(expr, extra_roots))
    sizes = _inlined_sizes(expr, active)
    name_shared = sum(sizes.get(r, 1) for r in roots) > INLINE_MAX_SIZE
    reads = collections.Counter(roots)
    for i in active:
        reads.update((expr.nodes[i].a, expr.nodes[i].b))
    values: dict[str, sympy.Expr] = {}

    def value_of(ref: str) -> sympy.Expr:
        return values[ref] if ref in values else leaf(ref)

    for i in active:
        node = expr.nodes[i]
        left = _apply(ops.UNARY[node.left], value_of(node.a))
        right = _apply(ops.UNARY[node.right], value_of(node.b))
        value = _apply(ops.BINARY[node.op], left, right)
        ref = graph_lib.node_ref(i)
        if name_shared and reads[ref] > 1 and not value.is_Atom:
            name = sympy.Symbol(f"h_{len(intermediates) + 1}", real=True)
            intermediates.append((name, _simplify(value)))
            value = name
        values[ref] = value
    return tuple(_simplify(value_of(r)) for r in roots)


def _leaf(graph: Graph, decays: Mapping[str, sympy.Expr]) -> Callable[[str], sympy.Expr]:
    """The form of a non-node reference: a constant, a state or a (decayed) operand."""

    def leaf(ref: str) -> sympy.Expr:
        if (j := graph_lib.constant_index(ref)) is not None:
            return _number(graph.constants[j])
        if (j := graph_lib.state_index(ref)) is not None:
            return state_symbol(j)
        value = ops.OPERANDS[ref].sympy
        return value * decays[ref] if ref in decays else value

    return leaf


_SYMPY_NAMESPACE = types.SimpleNamespace(
    pi=sympy.pi,
    cos=sympy.cos,
    floor=sympy.floor,
    minimum=sympy.Min,
    maximum=sympy.Max,
    mod=sympy.Mod,
    ones_like=lambda x: sympy.Integer(1),
    where=lambda c, a, b: (a if c else b) if isinstance(c, bool) else sympy.Piecewise(
        (a, c), (b, True)),
    asarray=lambda x, dtype=None: x,
    result_type=lambda *args: None,
)
"""The ``xp`` functions that :mod:`symopt.schedules` and :mod:`symopt.step` call,
over sympy: the printed equations are those functions' own formulas."""


def _schedule(graph: Graph, intermediates: list[tuple[sympy.Symbol, sympy.Expr]]) -> sympy.Expr:
    """The learning-rate multiplier as a function of ``t`` and ``T``.

    Follows :class:`symopt.graph.Schedule`: after ``W`` warmup steps the
    progress is ``u = (t - W) / (T - W)``, which is ``t/T`` without warmup.
    The closed forms are the formulas of the compiled optimizer
    (``schedules.SCHEDULE_FORMULAS``) applied to sympy; the clipping of ``u``
    to [0, 1] is not shown. A ``piecewise`` schedule is a ``Piecewise`` over
    ``u``, one piece per run of equal values.
    """
    schedule = graph.schedule
    warmup = schedule.warmup_steps
    if schedule.kind == "graph":
        # A schedule sub-graph reads the operands' t/T as the progress u.
        first_named = len(intermediates)
        (multiplier,) = _build(schedule.expr, _leaf(graph, {}), intermediates)
        if warmup:
            shifted = {_STEP: _STEP - warmup, _TOTAL_STEPS: _TOTAL_STEPS - warmup}
            multiplier = multiplier.subs(shifted, simultaneous=True)
            for k in range(first_named, len(intermediates)):
                name, value = intermediates[k]
                intermediates[k] = (name, value.subs(shifted, simultaneous=True))
    elif schedule.kind == "piecewise":
        multiplier = _piecewise((_STEP - warmup) / (_TOTAL_STEPS - warmup), schedule.values)
    else:
        progress = (_STEP - warmup) / (_TOTAL_STEPS - warmup)
        formula = schedules.SCHEDULE_FORMULAS[schedule.kind]
        multiplier = _round_numbers(formula(_SYMPY_NAMESPACE, progress, schedule))
    if warmup:
        multiplier = schedules.with_warmup(_SYMPY_NAMESPACE, _STEP, warmup, multiplier)
    return multiplier


def _piecewise(progress: sympy.Expr, values: tuple[float, ...]) -> sympy.Expr:
    """``values[floor(u * n)]`` as ``Piecewise((v_0, u < k_1/n), ..., (v_last, True))``,
    with a piece for each run of equal values."""
    n = len(values)
    pieces = [
        (_number(value), progress < sympy.Rational(k + 1, n))
        for k, value in enumerate(values[:-1])
        if value != values[k + 1]
    ]
    return sympy.Piecewise(*pieces, (_number(values[-1]), True))


def _momentum_recurrence(direction: sympy.Expr, graph: Graph) -> sympy.Expr | None:
    """The new momentum buffer ``u_t = momentum * u_{t-1} + d``, or None."""
    if graph.momentum == "none":
        return None
    return _number(graph.hparams.momentum) * MOMENTUM_BUFFER_PREVIOUS + direction


def _descent_step(direction: sympy.Expr, graph: Graph) -> sympy.Expr:
    """``d'``, the direction after momentum (optax.trace semantics): the
    buffer ``u_t`` by name for classical momentum, ``d + mu u_t`` for Nesterov."""
    if graph.momentum == "classical":
        step = MOMENTUM_BUFFER
    elif graph.momentum == "nesterov":
        step = direction + _number(graph.hparams.momentum) * MOMENTUM_BUFFER
    else:
        step = direction
    return step


def _update(direction: sympy.Expr, graph: Graph) -> sympy.Expr:
    """``Delta w = -eta_t (d' + lambda w)``: :func:`symopt.step.scaled_update` over sympy."""
    wd = graph.hparams.weight_decay
    return step_lib.scaled_update(_SYMPY_NAMESPACE, _descent_step(direction, graph), _WEIGHT,
                                  _number(wd) if wd else 0, LEARNING_RATE)


@functools.lru_cache(maxsize=1024)
def _symbolic(graph: Graph) -> SymbolicGraph:
    """The work of :func:`to_sympy` for a validated graph, cached (Graphs are hashable)."""
    intermediates: list[tuple[sympy.Symbol, sympy.Expr]] = []
    used = graph_lib.used_operands(graph)
    scalar_leaf = _leaf(graph, {})
    decays = {
        name: _build(expr, scalar_leaf, intermediates)[0]
        for name, expr in graph.decays
        if name in used
    }
    direction, *states = _build(graph.update, _leaf(graph, decays), intermediates, graph.states)
    schedule = _schedule(graph, intermediates)
    return SymbolicGraph(
        direction=direction,
        states=tuple(states),
        update=_update(direction, graph),
        schedule=schedule,
        decays=decays,
        momentum=_momentum_recurrence(direction, graph),
        intermediates=tuple(intermediates),
    )


def to_sympy(graph: Graph) -> SymbolicGraph:
    """The sympy form of ``graph``.

    Only the active part of the graph counts: dead nodes, and decays on
    operands that the active nodes do not read, leave no trace. Constants
    appear as numbers rounded to :data:`SIGNIFICANT_DIGITS`, states as
    :func:`state_symbol`, operands as their ``ops.OPERANDS`` sympy form
    (bias-corrected moments keep the names ``m``, ``v``, ``gamma``), and a
    decayed operand as that form times its decay. The protections of the
    numeric operators (``ops.sanitize``, protected division) are not shown.

    Args:
      graph: a valid :class:`symopt.Graph` (any size: the search-space limits
        of :func:`symopt.graph.validate` are not applied).

    Returns:
      A :class:`SymbolicGraph`. Its ``update`` is
      ``-LEARNING_RATE * (d' + weight_decay * w)``, where ``d'`` is the
      direction, ``MOMENTUM_BUFFER`` (classical momentum) or
      ``d + momentum * MOMENTUM_BUFFER`` (Nesterov); ``momentum`` is then
      the buffer's recurrence ``momentum * MOMENTUM_BUFFER_PREVIOUS + d``.
      ``schedule`` is the closed form of every schedule kind (a ``Piecewise``
      with warmup) and ``decays`` has one entry per decay on a used operand.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.

    Example:
      >>> from symopt import symbolic, zoo
      >>> symbolic.to_sympy(zoo.adam()).direction
      m/(epsilon + sqrt(v))
    """
    graph_lib.validate(
        graph,
        max_nodes=_UNLIMITED,
        max_subgraph_nodes=_UNLIMITED,
        max_states=_UNLIMITED,
        max_constants=_UNLIMITED,
    )
    form = _symbolic(graph)
    return form._replace(decays=dict(form.decays))  # the cached dict stays unshared


# --------------------------------------------------------------------------
# Printing.


_TEXT_MODE_ESCAPES = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "^": r"\^{}",
        "~": r"\~{}",
        **{c: "\\" + c for c in "{}_#%&$"},
    }
)


def _text(expr: sympy.Expr) -> str:
    """``expr`` as plain text (``srepr`` where sympy's printer fails)."""
    try:
        return sympy.sstr(expr, full_prec=False)
    except Exception:  # noqa: BLE001 (printing re-evaluates parts, which may raise)
        return sympy.srepr(expr)


def _call(name: str, args: list[str], exprs: tuple[sympy.Basic, ...]) -> str:
    """``name(args)``: plain parentheses around one atom, ``\\left( \\right)`` else."""
    inner = ", ".join(args)
    if len(exprs) == 1 and exprs[0].is_Atom:
        return f"{name}({inner})"
    return rf"{name}\left({inner}\right)"


def _norm(args: list[str], exprs: tuple[sympy.Basic, ...]) -> str:
    return rf"\|{args[0]}\|" if exprs[0].is_Atom else rf"\left\|{args[0]}\right\|"


_LEAF_LATEX: dict[str, Callable[[list[str], tuple[sympy.Basic, ...]], str]] = {
    "orth": lambda a, e: _call(r"\operatorname{orth}", a, e),
    "rms": lambda a, e: _call(r"\mathrm{rms}", a, e),
    "rms_row": lambda a, e: _call(r"\mathrm{rms}_{\mathrm{row}}", a, e),
    "rms_col": lambda a, e: _call(r"\mathrm{rms}_{\mathrm{col}}", a, e),
    "norm": _norm,
    "trust": lambda a, e: _call(r"\operatorname{trust}", a, e),
    "if_matrix": lambda a, e: _call(r"\operatorname{if\_matrix}", a, e),
}
"""The LaTeX of the per-leaf operators' sympy functions (``ops.Op.leaf``), by
function name: ``\\operatorname{orth}(m)``, ``\\mathrm{rms}_{\\mathrm{row}}(x)``,
``\\|x\\|``, ``\\operatorname{trust}(a, b)``, ``\\operatorname{if\\_matrix}(a, b)``
(``a`` on a 2-D leaf, ``b`` elsewhere). The operator names stand for the
sympy names where sympy's evaluation failed (:func:`_apply`)."""
_LEAF_LATEX |= {"rms_rows": _LEAF_LATEX["rms_row"], "rms_cols": _LEAF_LATEX["rms_col"]}
_LEAF_ARITY = {name: ops.BINARY[name].arity if name in ops.BINARY else 1 for name in _LEAF_LATEX}


class _Printer(LatexPrinter):
    """sympy's LaTeX printer, with the per-leaf operators written as :data:`_LEAF_LATEX`."""

    def _print_Function(self, expr, exp=None):
        form = _LEAF_LATEX.get(expr.func.__name__)
        if form is None or len(expr.args) != _LEAF_ARITY[expr.func.__name__]:
            return super()._print_Function(expr, exp)
        tex = form([self._print(arg) for arg in expr.args], expr.args)
        if exp is None:
            return tex
        return f"{tex}^{{{exp}}}" if tex.endswith("|") else rf"\left({tex}\right)^{{{exp}}}"


def _latex(expr: sympy.Expr, symbol_names: Mapping[sympy.Symbol, str]) -> str:
    """``expr`` as LaTeX (its plain text, in text mode, where sympy's printer fails)."""
    try:
        return _Printer({"symbol_names": symbol_names}).doprint(expr)
    except Exception:  # noqa: BLE001 (printing re-evaluates parts, which may raise)
        return rf"\text{{{_text(expr).translate(_TEXT_MODE_ESCAPES)}}}"


def _equation_symbols(form: SymbolicGraph) -> set[sympy.Symbol]:
    """The symbols that the direction, the states and the named nodes contain."""
    exprs = [form.direction, *form.states, *(value for _, value in form.intermediates)]
    return set().union(*(e.free_symbols for e in exprs))


def _hat(symbol: sympy.Symbol) -> str:
    return rf"\hat{{{sympy.latex(symbol)}}}"


def _moment_lines(moment: _Moment, hparams: Hyperparams) -> list[tuple[str, str, str]]:
    """``m <- b m + (1-b) g`` and, with bias correction, ``\\hat m = m / (1 - b^{t+1})``."""
    symbol = ops.OPERANDS[moment.operand].sympy
    rate = _number(getattr(hparams, moment.beta))
    ema = step_lib.ema(_SYMPY_NAMESPACE, symbol, ops.OPERANDS[moment.source].sympy, rate)
    lines = [(sympy.latex(symbol), r"\leftarrow", sympy.latex(_round_numbers(ema)))]
    if hparams.bias_correction:
        corrected = symbol / step_lib.bias_correction(_SYMPY_NAMESPACE, rate, _STEP)
        lines.append((_hat(symbol), "=", sympy.latex(corrected)))
    return lines


def to_latex(graph: Graph) -> str:
    """The optimizer as an aligned LaTeX block, one equation a line.

    Lines: the weight update ``\\Delta w``; the momentum buffer ``u_t`` (if
    any); the direction ``d``; named shared nodes ``h_k`` (if any); each state
    ``s_i \\leftarrow ...``; the EMA of each moment the equations read, with
    its bias correction ``\\hat m`` if the graph has one (the equations then
    read ``\\hat m``); the scheduled learning rate ``\\eta_t``; and the value
    of ``\\epsilon`` where it appears.

    Args:
      graph: a valid :class:`symopt.Graph`.

    Returns:
      ``\\begin{aligned} ... \\end{aligned}``, lines separated by ``\\\\``.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    form = to_sympy(graph)
    h = graph.hparams
    symbols = _equation_symbols(form)
    moments = [mo for mo in _MOMENTS if ops.OPERANDS[mo.operand].sympy in symbols]
    corrected = [ops.OPERANDS[mo.operand].sympy for mo in moments] if h.bias_correction else []
    hats = {symbol: _hat(symbol) for symbol in corrected}

    def tex(expr: sympy.Expr) -> str:
        return _latex(expr, hats)

    step = sympy.expand(-_update(_DIRECTION, graph) / LEARNING_RATE)  # d' + lambda w
    step_tex = rf"\left({tex(step)}\right)" if step.is_Add else tex(step)
    lines = [(r"\Delta w", "=", rf"-{tex(LEARNING_RATE)} {step_tex}")]
    if (recurrence := _momentum_recurrence(_DIRECTION, graph)) is not None:
        lines.append((tex(MOMENTUM_BUFFER), "=", tex(recurrence)))
    lines.append((tex(_DIRECTION), "=", tex(form.direction)))
    lines += [(tex(name), "=", tex(value)) for name, value in form.intermediates]
    lines += [(tex(state_symbol(i)), r"\leftarrow", tex(s)) for i, s in enumerate(form.states)]
    for moment in moments:
        lines += _moment_lines(moment, h)
    learning_rate = tex(_number(h.learning_rate))
    if form.schedule != 1:
        learning_rate += rf" \left({tex(form.schedule)}\right)"
    lines.append((tex(LEARNING_RATE), "=", learning_rate))
    if _EPSILON in symbols:
        lines.append((tex(_EPSILON), "=", tex(_number(h.eps))))
    body = r" \\ ".join(f"{lhs} &{relation} {rhs}" for lhs, relation, rhs in lines)
    return rf"\begin{{aligned}} {body} \end{{aligned}}"


def to_text(graph: Graph) -> str:
    """The optimizer on one short line, for search logs and summaries.

    The equations (named nodes, ``d``, states) then the key hyperparameters,
    e.g. ``d = m/(epsilon + sqrt(v)); lr=0.001, schedule=constant,
    momentum=none``. A malformed graph gives ``<invalid Graph: reason>``
    rather than an error, so that printing never fails.

    Args:
      graph: a :class:`symopt.Graph`.

    Returns:
      One line of plain text.
    """
    try:
        form = to_sympy(graph)
    except graph_lib.GraphError as e:
        return f"<invalid Graph: {e}>"
    h = graph.hparams
    equations = [f"{_text(name)} = {_text(value)}" for name, value in form.intermediates]
    equations.append(f"d = {_text(form.direction)}")
    equations += [f"s_{i} <- {_text(s)}" for i, s in enumerate(form.states)]
    schedule = graph.schedule.kind
    if schedule == "piecewise":
        schedule += f"({','.join(f'{v:.4g}' for v in graph.schedule.values)})"
    if graph.schedule.warmup_steps:
        schedule += f"+warmup{graph.schedule.warmup_steps}"
    momentum = graph.momentum if graph.momentum == "none" else f"{graph.momentum}({h.momentum:g})"
    settings = [f"lr={h.learning_rate:g}"]
    if h.weight_decay:
        settings.append(f"wd={h.weight_decay:g}")
    settings += [f"schedule={schedule}", f"momentum={momentum}"]
    return f"{'; '.join(equations)}; {', '.join(settings)}"
