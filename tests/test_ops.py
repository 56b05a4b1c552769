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


# --------------------------------------------------------------------------
# Per-leaf operators.

LEAF_OPS = [(n, a) for n, a in ALL_OPS if _op(n, a).leaf]
LEAF_SHAPES = [(), (5,), (4, 6), (6, 4), (3, 3, 2, 4)]


def _leaf(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 4)])
@pytest.mark.parametrize("name,arity", LEAF_OPS)
def test_per_leaf_operators_keep_extreme_leaves_finite_and_in_range(name, arity, shape, xp):
    size = int(np.prod(shape))
    rng = np.random.default_rng(3)
    args = [xp.asarray(rng.choice(np.clip(SPECIAL, -ops.BIG, ops.BIG), size).reshape(shape)
                       .astype(np.float32)) for _ in range(arity)]
    with np.errstate(all="ignore"):
        out = np.asarray(ops.bounded_fn(name, arity)(xp, *args, None))
    assert out.shape == shape
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= ops.BIG * (1 + 1e-6))


@pytest.mark.parametrize("shape", LEAF_SHAPES, ids=str)
@pytest.mark.parametrize("name,arity", LEAF_OPS)
def test_per_leaf_operators_agree_over_numpy_and_jax(name, arity, shape):
    args = [_leaf(shape, seed) for seed in range(arity)]
    fn = _op(name, arity).fn
    np.testing.assert_allclose(np.asarray(fn(jnp, *map(jnp.asarray, args))), fn(np, *args),
                               rtol=2e-5, atol=1e-6)


def test_the_reductions_broadcast_the_rms_of_the_leaf_its_rows_and_its_columns():
    x = _leaf((4, 6))
    np.testing.assert_allclose(ops.leaf_rms(np, x), np.full(x.shape, np.sqrt(np.mean(x**2))))
    np.testing.assert_allclose(ops.leaf_norm(np, x), np.full(x.shape, np.linalg.norm(x)))
    rows = np.sqrt(np.mean(x**2, axis=1, keepdims=True))
    cols = np.sqrt(np.mean(x**2, axis=0, keepdims=True))
    np.testing.assert_allclose(ops.rms_rows(np, x), np.broadcast_to(rows, x.shape))
    np.testing.assert_allclose(ops.rms_cols(np, x), np.broadcast_to(cols, x.shape))


def test_a_vector_is_read_as_one_row_and_a_conv_kernel_by_its_output_axis():
    v = _leaf((5,))
    np.testing.assert_allclose(ops.rms_rows(np, v), ops.leaf_rms(np, v))
    np.testing.assert_allclose(ops.rms_cols(np, v), np.abs(v))
    kernel = _leaf((3, 3, 2, 4))
    per_output = np.sqrt(np.mean(kernel.reshape(18, 4) ** 2, axis=0))
    np.testing.assert_allclose(ops.rms_cols(np, kernel),
                               np.broadcast_to(per_output, kernel.shape))


def test_reductions_of_huge_values_do_not_overflow():
    x = np.full((3, 3), 1e30, np.float32)
    np.testing.assert_allclose(ops.leaf_rms(np, x), x, rtol=1e-6)
    np.testing.assert_allclose(ops.rms_rows(jnp, jnp.asarray(x)), x, rtol=1e-6)
    assert np.all(np.isfinite(ops.orth(np, x)))


@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (4, 4), (3, 3, 2, 4)], ids=str)
def test_orth_is_optax_muons_orthogonalisation_with_its_width_scale(shape):
    from optax.contrib import _muon

    x = jnp.asarray(_leaf(shape), jnp.float32)
    dims = _muon.MuonDimensionNumbers(reduction_axis=tuple(range(len(shape) - 1)),
                                      output_axis=len(shape) - 1)
    expected = _muon.orthogonalize_via_newton_schulz(
        x, jnp.asarray(_muon._DEFAULT_NS_COEFFS), dimension_numbers=dims)
    fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
    expected = expected * np.sqrt(max(1.0, fan_out / fan_in))
    np.testing.assert_allclose(np.asarray(ops.orth(jnp, x)), np.asarray(expected),
                               rtol=1e-4, atol=1e-5)


def test_orth_of_a_matrix_has_singular_values_near_one():
    singular = np.linalg.svd(ops.orth(np, _leaf((6, 6))), compute_uv=False)
    assert np.all((singular > 0.5) & (singular < 1.5))


@pytest.mark.parametrize("zero", [None, "a", "b"])
def test_trust_is_optaxs_trust_ratio_and_one_where_a_norm_is_zero(zero):
    import optax

    a, b = _leaf((4, 3), 1), _leaf((4, 3), 2)
    if zero == "a":
        a = np.zeros_like(a)
    if zero == "b":
        b = np.zeros_like(b)
    expected, _ = optax.scale_by_trust_ratio().update(jnp.asarray(a), None, jnp.asarray(b))
    np.testing.assert_allclose(ops.trust(np, a, b), np.asarray(expected), rtol=1e-6)


@pytest.mark.parametrize("shape", LEAF_SHAPES, ids=str)
def test_if_matrix_takes_its_left_input_on_two_dimensional_leaves_only(shape):
    a, b = _leaf(shape, 1), _leaf(shape, 2)
    np.testing.assert_array_equal(ops.if_matrix(np, a, b), a if len(shape) == 2 else b)


def test_by_leaf_applies_an_operator_to_each_leaf_and_keeps_the_padding():
    shapes = ((2, 3), (4,))
    flat = np.arange(12.0).reshape(1, 12)  # one row: 6 + 4 weights, then 2 of padding
    out = ops.by_leaf(np, lambda x: ops.leaf_rms(np, x), (flat,), shapes,
                      lambda f, leaves: np.stack([f(*row) for row in zip(*leaves, strict=True)]))
    matrix, vector = np.arange(6.0), np.arange(6.0, 10.0)
    np.testing.assert_allclose(out[0, :6], np.sqrt(np.mean(matrix**2)))
    np.testing.assert_allclose(out[0, 6:10], np.sqrt(np.mean(vector**2)))
    np.testing.assert_array_equal(out[0, 10:], [10.0, 11.0])
