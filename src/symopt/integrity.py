"""The integrity check and the functional fingerprint of a graph.

:func:`check` rejects degenerate optimizers before any training (Morgan &
Hougen 2024's integrity check; Chen et al. 2023's abstract execution; AutoLR's
"a step that ignores the gradient is invalid"). Each rejection has a reason
code (:data:`REASONS`):

* ``invalid_structure``: the graph does not validate.
* ``no_gradient``: the update does not depend on the gradient (seen in the
  structure, or on probe inputs, e.g. ``g - g``).
* ``constant_update``: the update is one value everywhere, whatever the input.
* ``zero_update``: the update is zero on the probe inputs.
* ``non_finite``: the update overflows on the probe inputs.
* ``quadratic_not_decreasing``: a short run on a convex quadratic does not
  lower its loss.

:func:`fingerprint` hashes the updates on fixed probe inputs (AutoML-Zero's
functional-equivalence cache): functionally equal graphs (``x+y`` vs
``y+x``, dead nodes, ``x*1``, node order) hash equal.

Both run the optimizer's own step function (:func:`symopt.interpret.leaf_update`)
with NumPy on a few tiny arrays at once: probing a graph must cost far less
than compiling it.

The probe's parameters are two leaves (:data:`PROBE_LEAVES`): each probe row's
:data:`PROBE_SIZE` elements hold a 3x3 matrix and a length-3 vector, end to
end. Element-wise operators never see the split; the per-leaf operators
(:data:`symopt.ops.LEAF_OPERATORS`: ``orth``, ``rms_rows``, ``if_matrix``, ...)
are applied to each row's matrix and vector separately, as ``to_optax``
applies them to each parameter tensor, so that ``orth(g)`` and ``g``, or
``if_matrix(a, b)`` and ``b``, differ on the probe. Clipping by global norm
spans both leaves of a row, as it spans a model's whole tree. A graph without
per-leaf operators is probed (and fingerprinted) exactly as before they
existed.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from symopt import graph as graph_lib
from symopt import interpret, ops
from symopt import step as step_lib
from symopt.graph import Graph

REASONS = (
    "ok",
    "invalid_structure",
    "no_gradient",
    "constant_update",
    "zero_update",
    "non_finite",
    "quadratic_not_decreasing",
)
PROBE_SIZE = 12  # elements of each probe array
PROBE_LEAVES = ((3, 3), (3,))  # the leaves a probe row holds, end to end
PROBE_STEPS = 6  # steps of each probe run
PROBE_TOTAL_STEPS = 6  # T while probing: the probe sees the whole of t/T
CURVE_TOTAL_STEPS = 1000  # T of the schedule and decay curves in the fingerprint
CURVE_POINTS = 50
OVERFLOW = 1e20  # an update this large counts as non-finite
QUAD_BOUND = 1e6  # the quadratic's weights are clamped to this magnitude


class CheckReport(NamedTuple):
    """The outcome of :func:`check`."""

    ok: bool
    reason: str  # one of REASONS
    detail: str = ""
    fingerprint: str | None = None  # set when the probe run happened


class ProbeInputs(NamedTuple):
    """The fixed inputs of :func:`probe`: two gradient streams [steps, size]
    at the scales of network gradients, start weights, and a quadratic
    (curvature, optimum, start) that a useful optimizer descends."""

    grads_a: np.ndarray
    grads_b: np.ndarray
    w: np.ndarray
    curvature: np.ndarray
    w_star: np.ndarray
    w_quad: np.ndarray


def _probe_inputs() -> ProbeInputs:
    rng = np.random.default_rng(20240406)
    scales = np.geomspace(1e-4, 0.3, PROBE_SIZE)  # typical of network gradients
    grads_a = rng.standard_normal((PROBE_STEPS, PROBE_SIZE)) * scales
    grads_b = rng.standard_normal((PROBE_STEPS, PROBE_SIZE)) * scales[::-1]
    w_probe = rng.standard_normal(PROBE_SIZE)
    curvature = np.geomspace(0.5, 2.0, PROBE_SIZE)
    w_star = rng.standard_normal(PROBE_SIZE)
    w_quad = w_star + rng.choice([-1.0, 1.0], PROBE_SIZE) * rng.uniform(0.05, 0.3, PROBE_SIZE)
    return ProbeInputs(grads_a, grads_b, w_probe, curvature, w_star, w_quad)


PROBE_INPUTS = _probe_inputs()
_CURVE_STEPS = np.linspace(0, CURVE_TOTAL_STEPS - 1, CURVE_POINTS).round()


def _map_scalars(fn, scalars: interpret.StepScalars) -> interpret.StepScalars:
    """``fn`` applied to every array of ``scalars`` (its dicts' values too)."""
    return interpret.StepScalars(*(
        {k: fn(v) for k, v in field.items()} if isinstance(field, dict) else fn(field)
        for field in scalars))


def _probe_by_leaf(fn, *args: np.ndarray) -> np.ndarray:
    """A per-leaf operator's ``fn`` applied to each probe row's leaves
    (:data:`PROBE_LEAVES`); ``args`` are ``[rows, PROBE_SIZE]`` arrays, or
    scalars, broadcast to them first."""
    rows = tuple(np.broadcast_to(x, (3, PROBE_SIZE)) for x in args)
    return ops.by_leaf(np, fn, rows, PROBE_LEAVES, _map_rows)


def _map_rows(fn, leaves: list[np.ndarray]) -> np.ndarray:
    """``fn`` over the leading (probe row) axis of ``leaves``."""
    return np.stack([fn(*(leaf[r] for leaf in leaves)) for r in range(leaves[0].shape[0])])


def _quadratic_loss(w: np.ndarray) -> np.ndarray:
    return 0.5 * np.sum(PROBE_INPUTS.curvature * (w - PROBE_INPUTS.w_star) ** 2, axis=-1)


class Probe(NamedTuple):
    """What :func:`probe` measured."""

    updates: np.ndarray  # (steps, 3, PROBE_SIZE): rows A, B, quadratic
    losses: np.ndarray  # the quadratic's loss before the first step and after the last
    curves: np.ndarray  # schedule and decay multipliers at CURVE_POINTS steps of a long run


def probe(graph: Graph, *, steps: int = PROBE_STEPS, total_steps: int = PROBE_TOTAL_STEPS) -> Probe:
    """Runs ``graph`` on three probe problems at once, with NumPy.

    Rows: 0 and 1 feed fixed gradient sequences ``A`` and ``B`` at fixed
    weights; row 2 descends the quadratic ``0.5 * sum(h * (w - w*)^2)``.
    Noise and dropout draw the same samples in every row. Each row holds the
    leaves :data:`PROBE_LEAVES`, which the per-leaf operators read one by
    one. The probe run is
    short, so the schedule and decay multipliers are also sampled over a long
    run (``curves``): graphs that differ only late in training (a step
    schedule's rate, a long warmup) differ there.
    """
    p = interpret.plan(graph)
    h = graph.hparams
    w = np.array((PROBE_INPUTS.w, PROBE_INPUTS.w, PROBE_INPUTS.w_quad))
    state = interpret.init_leaf(p, w, np)
    updates = np.empty((steps, 3, PROBE_SIZE))
    random = None
    if p.needs & {"noise", "uniform"}:
        rng = np.random.default_rng(0)
        random = rng.standard_normal((steps, 1, PROBE_SIZE)), rng.random((steps, 1, PROBE_SIZE))
    with np.errstate(all="ignore"):  # overflow is expected, and sanitized
        # One evaluation for the probe's steps and the long run's curve points.
        at = np.concatenate([np.arange(steps), _CURVE_STEPS])
        totals = np.concatenate([np.full(steps, total_steps), np.full(CURVE_POINTS,
                                                                      CURVE_TOTAL_STEPS)])
        table = interpret.step_scalars(p, np, at, totals)
        table = _map_scalars(lambda v: np.broadcast_to(v, at.shape), table)
        # The decays by operand name, then the schedule: the curves the fingerprint hashes.
        curves = np.concatenate([table.decays[k][steps:] for k in sorted(table.decays)]
                                + [table.schedule[steps:]])
        per_step = [_map_scalars(lambda v, k=k: v[k], table) for k in range(steps)]
        for k in range(steps):
            quadratic = PROBE_INPUTS.curvature * (w[2] - PROBE_INPUTS.w_star)
            g = np.array((PROBE_INPUTS.grads_a[k], PROBE_INPUTS.grads_b[k], quadratic))
            if h.clip_norm:
                g = step_lib.clip_rows_by_norm(np, g, h.clip_norm)
            noise = uniform = None
            if random is not None:  # the same draws in every row
                noise, uniform = random[0][k] + 0 * g, random[1][k] + 0 * g
            u, state = interpret.leaf_update(
                p, np, g, w, state, per_step[k], h.learning_rate, h.weight_decay,
                noise=noise, uniform=uniform, sanitize_operands=False, by_leaf=_probe_by_leaf,
            )
            updates[k] = u
            # Clamped so that a diverging run keeps its operands finite (the
            # operands are not sanitized here, see leaf_update).
            w_quad = np.minimum(np.maximum(w[2] + u[2], -QUAD_BOUND), QUAD_BOUND)
            w = np.array((PROBE_INPUTS.w, PROBE_INPUTS.w, w_quad))
        losses = np.array((_quadratic_loss(PROBE_INPUTS.w_quad), _quadratic_loss(w[2])))
    return Probe(updates, losses, curves)


def _depends_on_gradient(graph: Graph) -> bool:
    """Whether the root reaches a gradient operand, through states too."""
    update = graph.update
    grad_states: set[int] = set()
    changed = True
    while changed:  # fixed point: a state is gradient-dependent if its ref is
        changed = False
        for i, ref in enumerate(graph.states):
            if i not in grad_states and _reaches_gradient(update, ref, grad_states):
                grad_states.add(i)
                changed = True
    return _reaches_gradient(update, update.root, grad_states)


def _reaches_gradient(update, ref: str, grad_states: set[int]) -> bool:
    for name in graph_lib.expr_inputs(graph_lib.Expr(update.nodes, ref)):
        if name in ops.OPERANDS and ops.OPERANDS[name].gradient:
            return True
        j = graph_lib.state_index(name)
        if j is not None and j in grad_states:
            return True
    return False


def _hash(result: Probe) -> str:
    """Hash of the probe updates (rows A and B) and the scalar curves, rounded
    to 5 significant digits so that float noise is ignored."""
    x = np.concatenate([result.updates[:, :2].ravel(), result.curves])
    x = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=OVERFLOW, neginf=-OVERFLOW)
    mantissa, exponent = np.frexp(x)
    rounded = np.round(mantissa * 2**17).astype(np.int64)
    exponent = np.where(rounded == 0, 0, exponent)
    digest = hashlib.sha1(rounded.tobytes() + exponent.astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def check(graph: Graph) -> CheckReport:
    """Decides, before any training, whether ``graph`` is worth training.

    Returns:
      A :class:`CheckReport`: ``ok``, a ``reason`` code from :data:`REASONS`,
      a one-line ``detail`` and, when probed, the ``fingerprint``.

    Example:
      >>> import symopt
      >>> symopt.check(symopt.zoo.adam()).ok
      True
    """
    try:
        graph_lib.validate(graph)
    except graph_lib.GraphError as e:
        return CheckReport(False, "invalid_structure", str(e))
    if not _depends_on_gradient(graph):
        return CheckReport(False, "no_gradient", "no gradient operand reaches the root")
    result = probe(graph)
    updates, losses, fp = result.updates, result.losses, _hash(result)
    probe_updates = updates[:, :2]
    if not np.all(np.isfinite(updates)) or np.max(np.abs(updates)) >= OVERFLOW:
        return CheckReport(False, "non_finite", "the update overflows on probe inputs", fp)
    if not np.any(probe_updates):
        return CheckReport(False, "zero_update", "the update is zero on probe inputs", fp)
    if np.array_equal(probe_updates[:, 0], probe_updates[:, 1]):
        if np.all(probe_updates == probe_updates[0, 0, 0]):
            return CheckReport(False, "constant_update", "the update is one constant value", fp)
        return CheckReport(False, "no_gradient", "probe gradients A and B give equal updates", fp)
    if not (np.isfinite(losses[-1]) and losses[-1] < losses[0]):
        return CheckReport(
            False,
            "quadratic_not_decreasing",
            f"quadratic loss {losses[0]:.4g} -> {losses[-1]:.4g} in {len(updates)} steps",
            fp,
        )
    return CheckReport(True, "ok", "", fp)


def fingerprint(graph: Graph) -> str:
    """A functional hash: equal for graphs that compute the same updates.

    The graph runs on fixed probe inputs (see :func:`probe`); its updates and
    its schedule and decay curves over a long run, rounded to 5 significant
    digits, are hashed (16 hex characters).
    """
    graph_lib.validate(graph)
    return _hash(probe(graph))
