"""The operator and operand tables: safety, bounds, sympy agreement, and
what each operand declares it reads."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from symopt import ops

SPECIAL = np.array(
    [0.0, -0.0, ops.TINY, -ops.TINY, 1e-7, -1e-3, 0.5, -1.0, 2.0, 1e10, -1e10, 80.0, 1e30, -1e30,
     3e38, -3e38]
)
NON_FINITE = np.array([np.inf, -np.inf, np.nan])
ALL_OPS = [(name, 1) for name in ops.UNARY] + [(name, 2) for name in ops.BINARY]


def _grid(values, arity):
    if arity == 1:
        return (values,)
    a, b = np.meshgrid(values, values)
    return a.ravel(), b.ravel()


def _uniform(shape):
    return np.random.default_rng(0).random(shape)


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("name,arity", ALL_OPS)
def test_apply_returns_finite_bounded_values_for_any_input(name, arity, xp):
    values = np.concatenate([SPECIAL, NON_FINITE]).astype(np.float32)
    args = [xp.asarray(a) for a in _grid(values, arity)]
    with np.errstate(all="ignore"):
        out = np.asarray(ops.apply(name, xp, *args, uniform=xp.asarray(_uniform(args[0].shape))))
    assert np.all(np.isfinite(out)), f"{name} produced {out[~np.isfinite(out)]}"
    assert np.all(np.abs(out) <= ops.BIG * (1 + 1e-6))


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("name,arity", ALL_OPS)
def test_bounded_operator_keeps_in_range_inputs_in_range_without_nan(name, arity, xp):
    in_range = np.clip(SPECIAL, -ops.BIG, ops.BIG).astype(np.float32)
    args = [xp.asarray(a) for a in _grid(in_range, arity)]
    with np.errstate(all="ignore"):
        out = np.asarray(
            ops.bounded_fn(name, arity)(xp, *args, xp.asarray(_uniform(args[0].shape)))
        )
    assert not np.any(np.isnan(out))
    assert np.all(np.abs(out) <= ops.BIG * (1 + 1e-6))


def _op(name, arity):
    return ops.UNARY[name] if arity == 1 else ops.BINARY[name]


@pytest.mark.parametrize("name,arity", [(n, a) for n, a in ALL_OPS if _op(n, a).bounded])
def test_ops_marked_bounded_never_need_clipping(name, arity):
    op = _op(name, arity)
    in_range = np.clip(SPECIAL, -ops.BIG, ops.BIG)
    args = _grid(in_range, arity)
    extra = (_uniform(args[0].shape),) if op.random else ()
    with np.errstate(all="ignore"):
        out = op.fn(np, *args, *extra)
    assert np.all(np.abs(out) <= ops.BIG)


# Random, clipping and per-leaf operators have opaque sympy functions: nothing to compare.
@pytest.mark.parametrize(
    "name,arity",
    [(n, a) for n, a in ALL_OPS
     if not _op(n, a).random and not _op(n, a).leaf and not n.startswith("clip_")],
)
def test_sympy_form_agrees_with_the_function_away_from_protected_edges(name, arity):
    op = _op(name, arity)
    rng = np.random.default_rng(1)
    symbols = sympy.symbols(f"x0:{arity}", real=True)
    fn = sympy.lambdify(symbols, op.to_sympy(*symbols), modules="numpy")
    for _ in range(20):
        point = rng.uniform(0.2, 2.0, arity) * rng.choice([-1, 1], arity)
        if name == "pow":
            point[0] = abs(point[0])
        np.testing.assert_allclose(op.fn(np, *point), fn(*point), rtol=1e-10)


def test_sanitize_maps_nan_to_zero_and_inf_to_big():
    out = ops.sanitize(np, np.array([np.nan, np.inf, -np.inf, 1.5]))
    np.testing.assert_array_equal(out, [0.0, ops.BIG, -ops.BIG, 1.5])


def test_operand_sympy_forms_agree_with_their_functions():
    rng = np.random.default_rng(2)
    g, w, m, xi = rng.normal(size=4)
    v, gamma = rng.uniform(0.1, 1.0, 2)
    step, total = 7.0, 20.0
    ctx = ops.StepContext(g, w, m, v, gamma, xi, 1e-8, step, step / total)
    subs = {"g": g, "w": w, "m": m, "v": v, "gamma": gamma, "xi": xi, "epsilon": 1e-8,
            "t": step, "T": total}
    for name, operand in ops.OPERANDS.items():
        if name == "decay_restart":
            continue  # an opaque sympy function
        expr = operand.sympy.subs({sympy.Symbol(k, **_assumptions(k)): val
                                   for k, val in subs.items()})
        np.testing.assert_allclose(float(expr), operand.fn(np, ctx), rtol=1e-9, err_msg=name)


def _assumptions(name):
    if name == "v":
        return {"nonnegative": True}
    if name == "epsilon":
        return {"positive": True}
    if name in ("t", "T"):
        return {"positive": True}
    return {"real": True}


def test_scalar_operands_depend_on_the_step_only():
    for name in ops.SCALAR_OPERANDS:
        operand = ops.OPERANDS[name]
        assert not operand.needs and not operand.gradient, name


def test_gradient_operands_are_exactly_those_that_read_the_gradient():
    grad = {n for n, o in ops.OPERANDS.items() if o.gradient}
    assert grad == {"g", "g2", "g3", "m", "v", "gamma", "sign_g", "sign_m", "adam", "rmsprop"}


class _Recorder:
    """A :class:`symopt.ops.StepContext` that records the fields read from it
    (each a float, 0.5)."""

    def __init__(self):
        self.read = set()

    def __getattr__(self, name):
        if name not in ops.StepContext._fields:
            raise AttributeError(name)
        self.read.add(name)
        return np.float64(0.5)


@pytest.mark.parametrize("name", list(ops.OPERANDS))
def test_operands_declare_the_fields_their_function_and_source_read(name):
    operand = ops.OPERANDS[name]
    ctx = _Recorder()
    operand.fn(np, ctx)
    assert ctx.read == operand.reads
    assert set(re.findall(r"\{(\w+)\}", operand.source)) == operand.reads
    assert operand.needs == operand.reads & {"m", "v", "gamma", "noise"}
    assert operand.gradient == bool(operand.reads & {"g", "m", "v", "gamma"})
    assert operand.scalar == (operand.reads <= {"step", "frac"})
