"""The operator and operand tables: the one place that defines them.

Every operator is a row of :data:`UNARY` or :data:`BINARY`: its name, arity,
its function written once over an array namespace ``xp`` (``numpy`` or
``jax.numpy``, so the same row serves the jit-compiled optimizer and the fast
NumPy integrity check), and its sympy form. Every operand is a row of
:data:`OPERANDS`: the quantity it reads from the optimizer's step context
(gradient, weights, moment EMAs, noise, the training fraction ``t/T``).
Everything else in symopt reads these tables, so adding an operator or an
operand is a one-line change here.

The operator set follows Bello et al. 2017 ("Neural Optimizer Search with
Reinforcement Learning") and AutoLR (Carvalho et al. 2022): unary identity,
negation, exp, log|x|, sqrt|x|, clip at 1e-5/1e-4/1e-3, dropout at
0.1/0.3/0.5, sign, plus abs, square and tanh; binary add, sub, mul, protected
div, protected pow, keep-left, max and min.

Per-leaf operators (``Op.leaf``, :data:`LEAF_OPERATORS`) read a whole
parameter tensor rather than one number: the RMS of the leaf, of its rows and
of its columns, its norm, Muon's orthogonalisation ``orth``, LAMB's trust ratio
``trust`` and the selector ``if_matrix`` (see "Per-leaf operators" below for
how a leaf of any rank is read). With them the language reaches Muon, LAMB
and Adafactor; they never appear in a scalar sub-graph.

Safety: the risky operators are protected (division by ~0, log of 0, sqrt of
a negative number, 0 to a negative power, exp of a large number), so that no
operator makes NaN from finite input. :func:`apply` also passes every output
through :func:`sanitize` (NaN -> 0, +-inf and overflow -> +-:data:`BIG`), so an
operator never returns NaN or inf, whatever its input. The graph evaluator
sanitizes operands once and then uses :func:`bounded_fn`, which only clips
the outputs of operators that can leave [-BIG, BIG] (``Op.bounded`` is False):
every intermediate value stays finite at a fraction of the cost. A candidate
cannot poison the arrays of the population it is trained with; a diverging
one shows up as huge weights and a huge loss, which the evaluator flags.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import sympy

Array = Any  # numpy or jax array; ops are written once over ``xp``.

BIG = 1e30
"""Magnitude every operator output is clipped to (finite in float32)."""
TINY = 1e-30
"""Smallest magnitude a protected denominator or log argument takes."""


def sanitize(xp, x: Array) -> Array:
    """Maps NaN to 0 and clips to [-BIG, BIG] (inf included)."""
    # minimum/maximum rather than clip: plain ufuncs, several times faster on
    # the tiny NumPy arrays of the integrity check.
    return xp.minimum(xp.maximum(xp.where(x == x, x, 0.0), -BIG), BIG)


def clip_big(xp, x: Array) -> Array:
    """Clipped to [-BIG, BIG]: the output of an operator that may overflow."""
    return xp.minimum(xp.maximum(x, -BIG), BIG)


def protect(xp, x: Array) -> Array:
    """x with magnitude at least TINY and its sign kept (0 -> +TINY)."""
    return xp.where(xp.abs(x) < TINY, xp.where(x < 0, -TINY, TINY), x)


def _dropout(rate: float):
    def fn(xp, x, uniform):
        return xp.where(uniform >= rate, x / (1.0 - rate), 0.0)

    return fn


def _clip(bound: float):
    return lambda xp, x: xp.clip(x, -bound, bound)


# real=True keeps sympy from printing re()/im() noise around these.
_clip_sym = {b: sympy.Function(f"clip_{{{b:g}}}", real=True) for b in (1e-5, 1e-4, 1e-3)}
_drop_sym = {r: sympy.Function(f"drop_{{{r:g}}}", real=True) for r in (0.1, 0.3, 0.5)}
_restart = sympy.Function("restart", real=True)


class Op(NamedTuple):
    """One operator: ``fn(xp, *args)``, its sympy form ``to_sympy(*args)`` and its
    ``source``, the same function as JAX source for exported modules
    (placeholders ``{x}``, or ``{a}`` and ``{b}``, and ``{uniform}``)."""

    name: str
    arity: int
    fn: Callable[..., Array]
    to_sympy: Callable[..., sympy.Expr]
    source: str
    commutative: bool = False
    random: bool = False  # fn takes a trailing uniform[0, 1) array
    identity_like: bool = False  # returns its (first) argument unchanged
    bounded: bool = False  # inputs in [-BIG, BIG] give an output in [-BIG, BIG]
    leaf: bool = False  # reads its whole leaf (see "Per-leaf operators"); fn takes leaf arrays


# --------------------------------------------------------------------------
# Per-leaf operators.
#
# A *leaf* is one parameter tensor. The element-wise operators above see one
# number at a time; the per-leaf operators (``Op.leaf``) see a whole leaf: its
# function takes arrays shaped like the leaf (scalar inputs broadcast to it
# first) and returns one. Reductions are broadcast back over the leaf.
#
# Rows, columns and matrices are read through one view of a leaf as a matrix,
# :func:`as_matrix`: a leaf of two or more dimensions is
# ``[prod(shape[:-1]), shape[-1]]`` (a Dense kernel ``[in, out]`` as it is; a
# conv kernel ``[h, w, in, out]`` as ``[h*w*in, out]``, which is
# ``optax.contrib.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)``),
# a vector ``[n]`` is the row ``[1, n]`` and a scalar ``[1, 1]``. So on a vector
# ``rms_rows`` is the vector's RMS, ``rms_cols`` its absolute value and ``orth``
# the vector over its norm (times the width scale below), and only
# ``if_matrix`` tells a 2-D leaf from the rest.
#
# Every norm is computed over the array divided by its largest magnitude, so
# that inputs up to BIG do not overflow float32 on the way.

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""Muon's Newton-Schulz coefficients (optax.contrib.muon's defaults)."""
NS_STEPS = 5
NS_EPS = 1e-8


def as_matrix(x: Array) -> Array:
    """``x`` viewed as a matrix: ``[prod(shape[:-1]), shape[-1]]``, a vector as
    ``[1, n]``, a scalar as ``[1, 1]``."""
    if x.ndim < 2:
        return x.reshape(1, -1) if x.ndim == 1 else x.reshape(1, 1)
    return x.reshape(-1, x.shape[-1])


def _scaled_norm(xp, x: Array, axis=None, *, mean: bool = False) -> Array:
    """The 2-norm (or RMS, ``mean``) of ``x`` over ``axis`` (kept), computed over
    ``x / max|x|`` so that no square overflows."""
    scale = xp.max(xp.abs(x), axis=axis, keepdims=True)
    scale = xp.where(scale > 0, scale, 1.0)
    squares = (x / scale) ** 2
    total = xp.mean(squares, axis=axis, keepdims=True) if mean else xp.sum(
        squares, axis=axis, keepdims=True)
    return scale * xp.sqrt(total)


def leaf_rms(xp, x: Array) -> Array:
    """The RMS of the whole leaf, broadcast over it."""
    return xp.broadcast_to(_scaled_norm(xp, x, mean=True), x.shape)


def leaf_norm(xp, x: Array) -> Array:
    """The 2-norm of the whole leaf, broadcast over it."""
    return xp.broadcast_to(_scaled_norm(xp, x), x.shape)


def rms_rows(xp, x: Array) -> Array:
    """The RMS of each row of the leaf's matrix view, broadcast along the row."""
    m = as_matrix(x)
    return xp.broadcast_to(_scaled_norm(xp, m, -1, mean=True), m.shape).reshape(x.shape)


def rms_cols(xp, x: Array) -> Array:
    """The RMS of each column of the leaf's matrix view, broadcast down it."""
    m = as_matrix(x)
    return xp.broadcast_to(_scaled_norm(xp, m, 0, mean=True), m.shape).reshape(x.shape)


def orth(xp, x: Array) -> Array:
    """Muon's orthogonalisation of the leaf's matrix view, as
    ``optax.contrib.muon`` computes it with its defaults: divided by its
    Frobenius norm (+ NS_EPS), NS_STEPS quintic Newton-Schulz steps with
    NS_COEFFICIENTS (on the wide orientation), then scaled by
    ``sqrt(max(1, columns / rows))``, Muon's width scale."""
    m = as_matrix(x)
    rows, cols = m.shape
    if rows > cols:
        m = m.T
    m = m / (_scaled_norm(xp, m) + NS_EPS)
    a_coef, b_coef, c_coef = NS_COEFFICIENTS
    for _ in range(NS_STEPS):
        a = m @ m.T
        m = a_coef * m + (b_coef * a + c_coef * (a @ a)) @ m
    if rows > cols:
        m = m.T
    return (m * max(1.0, cols / rows) ** 0.5).reshape(x.shape)


def trust(xp, a: Array, b: Array) -> Array:
    """``a`` scaled by the trust ratio ``|b| / |a|`` of the leaf's 2-norms, and
    by 1 where either norm is 0: LAMB's ``scale_by_trust_ratio`` with ``b`` the
    weights."""
    norm_a, norm_b = _scaled_norm(xp, a), _scaled_norm(xp, b)
    zero = (norm_a == 0) | (norm_b == 0)
    return a * xp.where(zero, 1.0, norm_b / xp.where(zero, 1.0, norm_a))


def if_matrix(xp, a: Array, b: Array) -> Array:
    """``a`` on a 2-D leaf, ``b`` on every other: Muon runs Adam on biases,
    scales and conv kernels."""
    del xp
    return a if a.ndim == 2 else b


def by_leaf(xp, fn: Callable[..., Array], args: tuple[Array, ...],
            shapes: tuple[tuple[int, ...], ...], map_batch: Callable[..., Array]) -> Array:
    """A per-leaf ``fn`` over flattened leaves: ``args`` are ``[..., L]`` arrays
    (one shape) whose last axis holds leaves of ``shapes`` end to end (and any
    padding after them, which keeps the first argument's values).
    ``map_batch(f, xs)`` maps ``f`` over the leading axes of the leaf arrays
    ``xs`` (``f(*xs)`` where there are none, ``jax.vmap`` in JAX)."""
    batch = args[0].shape[:-1]
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        leaves = [x[..., start:start + size].reshape(*batch, *shape) for x in args]
        out.append(map_batch(fn, leaves).reshape(*batch, size))
        start += size
    if start < args[0].shape[-1]:
        out.append(args[0][..., start:])
    return xp.concatenate(out, axis=-1) if len(out) > 1 else out[0]


_leaf_sym = {name: sympy.Function(name, real=True)
             for name in ("orth", "rms", "rms_row", "rms_col", "norm", "trust", "if_matrix")}


UNARY: dict[str, Op] = {
    op.name: op
    for op in [
        Op("identity", 1, lambda xp, x: x, lambda x: x, "{x}", identity_like=True, bounded=True),
        Op("neg", 1, lambda xp, x: -x, lambda x: -x, "-{x}", bounded=True),
        Op("exp", 1, lambda xp, x: xp.exp(xp.clip(x, -80.0, 80.0)), sympy.exp,
           "jnp.exp(jnp.clip({x}, -80.0, 80.0))"),
        Op(
            "log_abs",
            1,
            lambda xp, x: xp.log(xp.maximum(xp.abs(x), TINY)),
            lambda x: sympy.log(sympy.Abs(x)),
            "jnp.log(jnp.maximum(jnp.abs({x}), TINY))",
            bounded=True,
        ),
        Op("sqrt_abs", 1, lambda xp, x: xp.sqrt(xp.abs(x)), lambda x: sympy.sqrt(sympy.Abs(x)),
           "jnp.sqrt(jnp.abs({x}))", bounded=True),
        *[Op(f"clip_{b:g}", 1, _clip(b), _clip_sym[b], f"jnp.clip({{x}}, -{b!r}, {b!r})",
             bounded=True) for b in (1e-5, 1e-4, 1e-3)],
        *[
            Op(f"drop_{r:g}", 1, _dropout(r), _drop_sym[r],
               f"jnp.where({{uniform}} >= {r!r}, {{x}} / (1.0 - {r!r}), 0.0)", random=True)
            for r in (0.1, 0.3, 0.5)
        ],
        Op("sign", 1, lambda xp, x: xp.sign(x), sympy.sign, "jnp.sign({x})", bounded=True),
        Op("abs", 1, lambda xp, x: xp.abs(x), sympy.Abs, "jnp.abs({x})", bounded=True),
        Op("square", 1, lambda xp, x: x * x, lambda x: x**2, "{x} * {x}"),
        Op("tanh", 1, lambda xp, x: xp.tanh(x), sympy.tanh, "jnp.tanh({x})", bounded=True),
        Op("rms", 1, leaf_rms, _leaf_sym["rms"], "leaf_rms(jnp, {x})", bounded=True, leaf=True),
        Op("rms_rows", 1, rms_rows, _leaf_sym["rms_row"], "rms_rows(jnp, {x})", bounded=True,
           leaf=True),
        Op("rms_cols", 1, rms_cols, _leaf_sym["rms_col"], "rms_cols(jnp, {x})", bounded=True,
           leaf=True),
        Op("norm", 1, leaf_norm, _leaf_sym["norm"], "leaf_norm(jnp, {x})", leaf=True),
        Op("orth", 1, orth, _leaf_sym["orth"], "orth(jnp, {x})", bounded=True, leaf=True),
    ]
}

BINARY: dict[str, Op] = {
    op.name: op
    for op in [
        Op("add", 2, lambda xp, a, b: a + b, lambda a, b: a + b, "{a} + {b}", commutative=True),
        Op("sub", 2, lambda xp, a, b: a - b, lambda a, b: a - b, "{a} - {b}"),
        Op("mul", 2, lambda xp, a, b: a * b, lambda a, b: a * b, "{a} * {b}", commutative=True),
        Op("div", 2, lambda xp, a, b: a / protect(xp, b), lambda a, b: a / b,
           "{a} / _protect(jnp, {b})"),
        Op(
            "pow",
            2,
            # |a|^b as exp(b log|a|): the same function (the base is at least
            # TINY, so the log is finite), and on XLA's CPU backend several
            # times faster than its general power.
            lambda xp, a, b: xp.exp(xp.clip(b, -BIG, BIG) * xp.log(xp.maximum(xp.abs(a), TINY))),
            lambda a, b: sympy.Abs(a) ** b,
            "jnp.exp(jnp.clip({b}, -BIG, BIG) * jnp.log(jnp.maximum(jnp.abs({a}), TINY)))",
        ),
        Op("keep_left", 2, lambda xp, a, b: a, lambda a, b: a, "{a}", identity_like=True,
           bounded=True),
        Op("max", 2, lambda xp, a, b: xp.maximum(a, b), sympy.Max, "jnp.maximum({a}, {b})",
           commutative=True, bounded=True),
        Op("min", 2, lambda xp, a, b: xp.minimum(a, b), sympy.Min, "jnp.minimum({a}, {b})",
           commutative=True, bounded=True),
        Op("trust", 2, trust, _leaf_sym["trust"], "trust(jnp, {a}, {b})", leaf=True),
        Op("if_matrix", 2, if_matrix, _leaf_sym["if_matrix"], "if_matrix(jnp, {a}, {b})",
           bounded=True, leaf=True),
    ]
}


LEAF_OPERATORS = frozenset(n for table in (UNARY, BINARY) for n, op in table.items() if op.leaf)
"""The per-leaf operators: never in a scalar sub-graph, and what
:class:`symopt.program.ProgramShape` ``leaf_ops`` switches on."""


def operator(name: str, arity: int) -> Op:
    """The operator ``name`` of :data:`UNARY` (``arity`` 1) or :data:`BINARY` (2)."""
    return UNARY[name] if arity == 1 else BINARY[name]


def apply(name: str, xp, *args: Array, uniform: Array | None = None) -> Array:
    """Applies the operator ``name`` and sanitizes its output.

    Args:
      name: a key of :data:`UNARY` or :data:`BINARY`.
      xp: the array namespace (``numpy`` or ``jax.numpy``).
      *args: the operands (one for a unary, two for a binary operator).
      uniform: uniform[0, 1) samples shaped like the operands, needed by the
        random operators (dropout).
    """
    return sanitize(xp, _call(name, xp, args, uniform))


def _call(name: str, xp, args: tuple[Array, ...], uniform: Array | None) -> Array:
    op = operator(name, len(args))
    if op.random:
        args = (*args, uniform)
    return op.fn(xp, *args)


@functools.cache
def bounded_fn(name: str, arity: int) -> Callable[..., Array]:
    """``f(xp, *args, uniform)``: operator ``name`` for inputs already in
    [-BIG, BIG] (no NaN, no inf), resolved once.

    No operator makes NaN from such input, so only the operators that can
    overflow are clipped; the output is again in [-BIG, BIG].

    The graph evaluator calls these directly: no table look-up per call.
    """
    op = operator(name, arity)
    fn = op.fn
    if op.random:
        raw = fn
    elif arity == 1:
        raw = lambda xp, x, uniform: fn(xp, x)  # noqa: E731
    else:
        raw = lambda xp, a, b, uniform: fn(xp, a, b)  # noqa: E731
    if op.bounded:
        return raw
    return lambda xp, *args: clip_big(xp, raw(xp, *args))


# --------------------------------------------------------------------------
# Operands.


class StepContext(NamedTuple):
    """What an operand may read at one optimizer step (one leaf of the tree).

    Moments are bias-corrected here when the graph asks for it. Fields a graph
    does not use may be left ``None`` (a scalar sub-graph reads only ``step``
    and ``frac``).
    """

    g: Array | None = None  # gradient (after clipping)
    w: Array | None = None  # weights
    m: Array | None = None  # EMA of g with beta1
    v: Array | None = None  # EMA of g^2 with beta2
    gamma: Array | None = None  # EMA of g^3 with beta3
    noise: Array | None = None  # standard normal, fresh each step
    eps: Array | None = None  # epsilon hyperparameter
    step: Array | None = None  # 0-based step index t (scalar)
    frac: Array | None = None  # t / T, the training fraction (scalar)


STATEFUL = frozenset({"m", "v", "gamma", "noise"})
"""The :class:`StepContext` fields an optimizer must keep (the moment EMAs)
or draw (noise) for an operand that reads them."""


class Operand(NamedTuple):
    """One operand: ``fn(xp, ctx)``, its sympy form and its JAX ``source`` for
    exported modules (placeholders: the :class:`StepContext` fields,
    ``{g} {w} {m} {v} {gamma} {noise} {eps} {step} {frac}``).

    ``reads`` declares the :class:`StepContext` fields ``fn`` and ``source``
    read (``tests/test_ops.py`` checks both), so that an optimizer knows
    which arrays an operand needs without calling it."""

    name: str
    fn: Callable[[Any, StepContext], Array]
    sympy: sympy.Expr
    source: str
    reads: frozenset[str]  # the StepContext fields it reads
    gradient: bool = False  # depends on the gradient
    scalar: bool = False  # a function of the step only (usable in decays/schedules)

    @property
    def needs(self) -> frozenset[str]:
        """The moment EMAs and noise it reads (:data:`STATEFUL`)."""
        return self.reads & STATEFUL


_g, _w, _m, _gamma = sympy.symbols("g w m gamma", real=True)
_v = sympy.Symbol("v", nonnegative=True)
_eps = sympy.Symbol("epsilon", positive=True)
_xi = sympy.Symbol("xi", real=True)
_t, _T = sympy.symbols("t T", positive=True)
_frac = _t / _T

RESTART_CYCLES = 4
"""Cycles of the ``decay_restart`` operand over training."""
NOISE_ANNEALING = 0.55
"""Annealed noise has variance 1/(1+t)^NOISE_ANNEALING (Bello et al.)."""


def _reading(*fields: str) -> frozenset[str]:
    """An operand's :attr:`Operand.reads`: StepContext fields, checked."""
    unknown = set(fields) - set(StepContext._fields)
    if unknown:
        raise ValueError(f"not StepContext fields: {sorted(unknown)}")
    return frozenset(fields)


def _scaled_w(scale: float) -> Operand:
    return Operand(f"w_{scale:g}", lambda xp, c: scale * c.w, sympy.Float(scale) * _w,
                   f"{scale!r} * {{w}}", _reading("w"))


OPERANDS: dict[str, Operand] = {
    o.name: o
    for o in [
        Operand("g", lambda xp, c: c.g, _g, "{g}", _reading("g"), gradient=True),
        Operand("g2", lambda xp, c: c.g * c.g, _g**2, "{g} * {g}", _reading("g"), gradient=True),
        Operand("g3", lambda xp, c: c.g * c.g * c.g, _g**3, "{g} * {g} * {g}", _reading("g"),
                gradient=True),
        Operand("m", lambda xp, c: c.m, _m, "{m}", _reading("m"), gradient=True),
        Operand("v", lambda xp, c: c.v, _v, "{v}", _reading("v"), gradient=True),
        Operand("gamma", lambda xp, c: c.gamma, _gamma, "{gamma}", _reading("gamma"),
                gradient=True),
        Operand("sign_g", lambda xp, c: xp.sign(c.g), sympy.sign(_g), "jnp.sign({g})",
                _reading("g"), gradient=True),
        Operand("sign_m", lambda xp, c: xp.sign(c.m), sympy.sign(_m), "jnp.sign({m})",
                _reading("m"), gradient=True),
        Operand(
            "adam",
            lambda xp, c: c.m / (xp.sqrt(c.v) + c.eps),
            _m / (sympy.sqrt(_v) + _eps),
            "{m} / (jnp.sqrt({v}) + {eps})",
            _reading("m", "v", "eps"),
            gradient=True,
        ),
        Operand(
            "rmsprop",
            lambda xp, c: c.g / xp.sqrt(c.v + c.eps),
            _g / sympy.sqrt(_v + _eps),
            "{g} / jnp.sqrt({v} + {eps})",
            _reading("g", "v", "eps"),
            gradient=True,
        ),
        Operand("noise", lambda xp, c: c.noise, _xi, "{noise}", _reading("noise")),
        Operand(
            "noise_annealed",
            lambda xp, c: c.noise * (1.0 + c.step) ** (-NOISE_ANNEALING / 2),
            _xi * (1 + _t) ** sympy.Float(-NOISE_ANNEALING / 2),
            "{noise} * (1.0 + {step}) ** (-NOISE_ANNEALING / 2)",
            _reading("noise", "step"),
        ),
        *[_scaled_w(s) for s in (1e-4, 1e-3, 1e-2, 1e-1)],
        Operand("one", lambda xp, c: xp.ones_like(c.frac), sympy.Integer(1),
                "jnp.ones_like({frac})", _reading("frac"), scalar=True),
        Operand("t", lambda xp, c: c.frac, _frac, "{frac}", _reading("frac"), scalar=True),
        Operand(
            "decay_linear",
            lambda xp, c: xp.maximum(0.0, 1.0 - c.frac),
            sympy.Max(0, 1 - _frac),
            "jnp.maximum(0.0, 1.0 - {frac})",
            _reading("frac"),
            scalar=True,
        ),
        Operand(
            "decay_cosine",
            lambda xp, c: 0.5 * (1.0 + xp.cos(xp.pi * c.frac)),
            (1 + sympy.cos(sympy.pi * _frac)) / 2,
            "0.5 * (1.0 + jnp.cos(jnp.pi * {frac}))",
            _reading("frac"),
            scalar=True,
        ),
        Operand(
            "decay_restart",
            lambda xp, c: 0.5 * (1.0 + xp.cos(xp.pi * xp.mod(RESTART_CYCLES * c.frac, 1.0))),
            _restart(_frac),
            "0.5 * (1.0 + jnp.cos(jnp.pi * jnp.mod(RESTART_CYCLES * {frac}, 1.0)))",
            _reading("frac"),
            scalar=True,
        ),
    ]
}
"""Fixed operands. A graph adds its constants ``c0, c1, ...`` and its
recurrent states ``s0, s1, ...`` (see :mod:`symopt.graph`)."""

SCALAR_OPERANDS = tuple(n for n, o in OPERANDS.items() if o.scalar)
TENSOR_OPERANDS = tuple(OPERANDS)
