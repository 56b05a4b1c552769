"""``export``: a Graph as a standalone, readable Python module.

:func:`to_source` writes the source of a module that imports only ``jax``,
``jax.numpy`` and ``optax`` (no symopt) and defines
``optimizer(learning_rate, total_steps)``, an ``optax.GradientTransformation``
whose updates equal ``symopt.to_optax(graph, learning_rate, total_steps)``.
The module says what it computes: the graph's equation (:func:`symopt.to_text`)
in its docstring, its hyperparameters as named constants, one line of
``jax.numpy`` code per active node, and a state holding only the moments and
recurrent states the graph uses.

Each operator and operand brings its JAX source as a column of the operator
table (:mod:`symopt.ops`); the shared parts of the step are
:mod:`symopt.step`'s own functions, embedded as they are; this module owns
only the assembly and one template per closed-form schedule of
:mod:`symopt.schedules` (:data:`SCHEDULE_SOURCE`). The tests check that every
template computes what its function computes, protections included.

Command line::

    python -m symopt.export --graph best.json > my_optimizer.py
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from symopt import graph as graph_lib
from symopt import ops
from symopt import step as step_lib
from symopt.graph import Expr, Graph

# --------------------------------------------------------------------------
# Templates. The operators' and operands' sources are a column of the operator
# table (``ops.UNARY[name].source``, ``ops.OPERANDS[name].source``).

SCHEDULE_SOURCE: dict[str, str] = {
    "constant": "jnp.ones_like(u)",
    "cosine": "ALPHA + (1 - ALPHA) * 0.5 * (1 + jnp.cos(jnp.pi * u))",
    "linear": "1 - (1 - ALPHA) * u",
    "exponential": "DECAY_RATE**u",
    "step": "DECAY_RATE ** jnp.floor(jnp.minimum(u * STEPS, STEPS - 1))",
    "restarts": ("ALPHA + (1 - ALPHA) * 0.5 * (1 + jnp.cos(jnp.pi * jnp.mod(u * CYCLES, 1.0)))"),
    "piecewise": (
        "jnp.take(\n"
        "        jnp.asarray(SCHEDULE_VALUES, u.dtype),\n"
        "        jnp.maximum(jnp.minimum(jnp.floor(u * len(SCHEDULE_VALUES)),"
        " len(SCHEDULE_VALUES) - 1), 0)\n"
        "        .astype(jnp.int32),\n"
        "    )"
    ),
}
"""The multiplier after warmup of each schedule kind but ``graph``, at ``u``
(:data:`symopt.schedules.SCHEDULE_FORMULAS`, :func:`~symopt.schedules.piecewise_multiplier`);
the :class:`~symopt.graph.Schedule` fields are the constants ``ALPHA``,
``DECAY_RATE``, ``STEPS``, ``CYCLES`` and ``SCHEDULE_VALUES``."""

HELPERS: dict[str, str] = {
    "_sanitize": '''
def _sanitize(x):
    """NaN -> 0, then clipped to [-BIG, BIG] (inf included)."""
    return jnp.minimum(jnp.maximum(jnp.where(x == x, x, 0.0), -BIG), BIG)
''',
    "_clip_big": '''
def _clip_big(x):
    """Clipped to [-BIG, BIG]: the output of an operator that may overflow."""
    return jnp.minimum(jnp.maximum(x, -BIG), BIG)
''',
    "_like": '''
def _like(x, grad):
    """x broadcast to grad's shape and dtype."""
    x = jnp.broadcast_to(x, grad.shape) if x.shape != grad.shape else x
    return x.astype(grad.dtype) if x.dtype != grad.dtype else x
''',
    "_protect": '''
def _protect(x):
    """x with magnitude at least TINY and its sign kept (0 -> +TINY)."""
    return jnp.where(jnp.abs(x) < TINY, jnp.where(x < 0, -TINY, TINY), x)
''',
    "_unit_draws": '''
def _mix32(x):
    """lowbias32: a well-mixing bijection of 32-bit integers."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _unit_draws(key, step, offset, shape, lane, dtype):
    """Uniform [0, 1) numbers of elements ``offset, offset + 1, ...`` of the
    flattened parameters at one step, from stream ``lane``.

    A hash of (key, step, element): no key splitting.
    """
    key = jnp.asarray(key).astype(jnp.uint32).reshape(2)
    step = jnp.asarray(step).astype(jnp.uint32).reshape(1)
    stream = _mix32(key[:1] ^ _mix32(key[1:] + step * jnp.uint32(0x9E3779B9)))
    size = 1
    for n in shape:
        size *= int(n)
    element = jnp.arange(size, dtype=jnp.uint32) + jnp.uint32(offset)
    bits = _mix32((element * jnp.uint32(3) + jnp.uint32(lane)) ^ stream) >> 8  # 24 bits
    dtype = jnp.dtype(dtype).type
    return (bits.astype(dtype) * dtype(2.0**-24)).reshape(shape)
''',
    "_normal_draws": '''
def _normal_draws(key, step, offset, shape, dtype):
    """Standard-normal noise of elements ``offset, ...`` at one step
    (inverse CDF of one uniform per element, centred on its 2**24 cells)."""
    u = _unit_draws(key, step, offset, shape, 1, dtype)
    centred = 2.0 * u - (1.0 - 2.0**-24)
    return jnp.asarray(2.0**0.5 * jax.lax.erf_inv(centred), dtype)
''',
}
"""Helper functions of the generated module, each emitted only where used."""

_CONTEXT = ("g", "w", "m", "v", "gamma", "noise", "eps", "step", "frac")


def _is_atom(src: str) -> bool:
    """Whether ``src`` needs no parentheses as an operand of ``*`` or ``-``."""
    if re.fullmatch(r"-?[A-Za-z_][A-Za-z_0-9.]*", src):
        return True
    if not re.match(r"[A-Za-z_][A-Za-z_0-9.]*\(", src) or not src.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(src):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and "(" in src[: i + 1]:
            return i == len(src) - 1
    return False


def _paren(src: str) -> str:
    return src if _is_atom(src) else f"({src})"


def unary_source(name: str, x: str, *, uniform: str = "uniform") -> str:
    """Source of ``ops.apply_bounded(name, xp, x)``: the operator, then
    ``_clip_big`` where it can overflow (``Op.bounded`` is False)."""
    src = ops.UNARY[name].source.format(x=_paren(x), uniform=uniform)
    return src if ops.UNARY[name].bounded else f"_clip_big({src})"


def binary_source(name: str, a: str, b: str) -> str:
    """Source of ``ops.apply_bounded(name, xp, a, b)`` (see :func:`unary_source`)."""
    src = ops.BINARY[name].source.format(a=_paren(a), b=_paren(b))
    return src if ops.BINARY[name].bounded else f"_clip_big({src})"


def operand_source(name: str, **context: str) -> str:
    """Source of operand ``name``; ``context`` names the step-context variables."""
    names = {field: context.get(field, field) for field in _CONTEXT}
    return ops.OPERANDS[name].source.format(**names)


# --------------------------------------------------------------------------
# Code generation.


def _identifier(ref: str) -> str:
    """The variable holding a reference: ``w_0.0001`` -> ``w_0_0001``."""
    return ref.replace(".", "_").replace("-", "m")


def _node_lines(expr: Expr, active: Sequence[int], var: Callable[[str], str]) -> list[str]:
    """One assignment per active node: ``n3 = jnp.sign(g) * m``."""
    lines = []
    for i in sorted(active):
        node = expr.nodes[i]
        x = var(node.a) if node.left == "identity" else unary_source(node.left, var(node.a))
        if node.op != "keep_left":
            y = var(node.b) if node.right == "identity" else unary_source(node.right, var(node.b))
            x = binary_source(node.op, x, y)
        lines.append(f"{graph_lib.node_ref(i)} = {x}")
    return lines


def _scalar_function(name: str, expr: Expr, doc: str) -> list[str]:
    """A scalar sub-graph (a decay or a graph schedule) as ``name(step, frac)``."""
    active = graph_lib.active_nodes(expr)
    lines = [f"def {name}(step, frac):", f'    """{doc}"""']
    body = []
    for ref in sorted(_read_refs(expr)):
        if (j := graph_lib.constant_index(ref)) is not None:
            body.append(f"{ref} = jnp.asarray(C{j}, dtype=jnp.result_type(frac))")
        else:
            body.append(f"{_identifier(ref)} = {operand_source(ref)}")
    body += _node_lines(expr, active, _identifier)
    body.append(f"return {_identifier(expr.root)}")
    return lines + [f"    {line}" for line in body]


def _float(value: float) -> str:
    return repr(float(value))


def to_source(graph: Graph, *, name: str = "optimizer") -> str:
    """The source of a standalone module implementing ``graph`` with optax.

    Args:
      graph: a valid :class:`symopt.Graph`.
      name: the name of the module's factory function.

    Returns:
      Python source importing only ``jax``, ``jax.numpy`` and ``optax``. Its
      ``name(learning_rate, total_steps, *, weight_decay, seed)`` returns an
      ``optax.GradientTransformation`` whose updates equal
      ``symopt.to_optax(graph, learning_rate, total_steps, ...)``.

    Example:
      >>> import symopt
      >>> from symopt import export
      >>> "def optimizer(" in export.to_source(symopt.zoo.adam())
      True
    """
    from symopt import compile as compile_lib  # noqa: PLC0415
    from symopt import symbolic  # noqa: PLC0415

    graph_lib.validate(graph)
    if not name.isidentifier():
        raise ValueError(f"name: {name!r} is not a Python identifier")
    p = compile_lib.plan(graph)
    h = graph.hparams
    s = graph.schedule
    moments = [m for m in ("m", "v", "gamma") if m in p.needs]
    random = bool(p.needs & {"noise", "uniform"})
    decays = dict(p.decays)

    leaf_sources = " ".join(
        ops.OPERANDS[r].source for r in _read_refs(graph.update, graph.states) if r in ops.OPERANDS
    )
    needs_frac = bool(decays) or "{frac}" in leaf_sources

    # ---- The per-step scalars.
    sched = [
        "u = jnp.clip((step - WARMUP_STEPS) / jnp.maximum(total_steps - WARMUP_STEPS, 1), 0.0, 1.0)"
    ]
    functions: list[list[str]] = []
    if s.kind == "constant" and not s.warmup_steps:
        sched = ["multiplier = jnp.ones_like(step)"]
    elif s.kind == "graph":
        functions.append(
            _scalar_function(
                "_schedule_graph", s.expr, "The schedule's expression at training fraction u."
            )
        )
        sched.append("multiplier = _schedule_graph(step, u)")
    else:
        sched.append(f"multiplier = {SCHEDULE_SOURCE[s.kind]}")
    if s.warmup_steps:
        sched.append(
            "multiplier = jnp.where(step < WARMUP_STEPS, (step + 1) / WARMUP_STEPS, multiplier)"
        )
    sched.append("return multiplier")
    functions.append(
        [
            "def _schedule(step, total_steps):",
            '    """The learning-rate multiplier at step ``step`` (a float)."""',
            *[f"    {line}" for line in sched],
        ]
    )
    for ref, expr in decays.items():
        functions.append(
            _scalar_function(
                f"_decay_{_identifier(ref)}", expr, f"The decay multiplying operand {ref}."
            )
        )

    scalar_lines = [
        "step = jnp.asarray(count, dtype=float)",
        "held = jnp.minimum(step, total_steps - 1)  # the schedule and decays hold past T",
        *(["frac = step / total_steps"] if needs_frac else []),
        "scalars = {",
        '    "step": step,',
        *(['    "frac": frac,'] if needs_frac else []),
        '    "schedule": _schedule(held, total_steps),',
    ]
    for ref in decays:
        scalar_lines.append(
            f'    "decay_{ref}": _decay_{_identifier(ref)}(held, held / total_steps),')
    betas = {"m": "BETA1", "v": "BETA2", "gamma": "BETA3"}
    if h.bias_correction:
        for m in moments:
            scalar_lines.append(
                f'    "bc_{m}": _bias_correction(jnp, {betas[m]}, step),'
            )
    scalar_lines.append("}")

    # ---- One leaf.
    leaf = []
    if h.clip_value:
        leaf.append("grad = jnp.clip(grad, -CLIP_VALUE, CLIP_VALUE)")
    powers = {"m": "grad", "v": "(grad * grad)", "gamma": "(grad * grad * grad)"}
    context = {"g": "grad", "noise": "xi", "eps": "EPS"}
    for m in moments:
        leaf.append(f"{m}_ema = _ema(jnp, state.{m}, {powers[m]}, {betas[m]})")
        if h.bias_correction:
            leaf.append(f'{m}_hat = {m}_ema / scalars["bc_{m}"]')
        context[m] = f"{m}_hat" if h.bias_correction else f"{m}_ema"
    operand_lines, constant_lines, state_lines = [], [], []
    for ref in sorted(_read_refs(graph.update, graph.states)):
        if (j := graph_lib.constant_index(ref)) is not None:
            constant_lines.append(f"{ref} = jnp.asarray(C{j}, grad.dtype)")
        elif graph_lib.state_index(ref) is not None:
            state_lines.append(f"{ref} = state.{ref}")
        else:
            src = operand_source(ref, **context)
            if ref in decays:
                src = f'({src}) * scalars["decay_{ref}"]'
            operand_lines.append(f"{_identifier(ref)} = _sanitize({src})")
    uses = " ".join(operand_lines)
    reads = [v for v in ("step", "frac") if re.search(rf"\b{v}\b", uses)]
    for v in reads:
        leaf.append(f'{v} = scalars["{v}"]')
    if operand_lines:
        leaf.append("# Operands (NaN -> 0, clipped to +-BIG).")
    leaf += operand_lines + constant_lines + state_lines
    node_lines = _node_lines(graph.update, p.active, _identifier)
    if node_lines:
        leaf.append("# The update graph.")
        leaf += node_lines
    leaf.append(f"direction = _like({_identifier(graph.update.root)}, grad)")
    new_fields = {m: f"{m}_ema" for m in moments}
    for i, ref in enumerate(graph.states):
        new_fields[f"s{i}"] = f"_like({_identifier(ref)}, grad)"
    if graph.momentum != "none":
        kind = graph_lib.MOMENTUM_TYPES.index(graph.momentum)
        leaf.append(f"direction, trace = _momentum(jnp, {kind}, MOMENTUM, direction, state.trace)"
                    f"  # {graph.momentum}")
        new_fields["trace"] = "trace"
    leaf += [
        'update = _scaled_update(jnp, direction, w, weight_decay, learning_rate * scalars["schedule"])',
        "new_state = LeafState(" + ", ".join(f"{k}={v}" for k, v in new_fields.items()) + ")",
        "return update.astype(grad.dtype), new_state",
    ]
    leaf_args = "grad, w, state, scalars, learning_rate, weight_decay"
    if "noise" in p.needs:
        leaf_args += ", xi"
    if "uniform" in p.needs:
        leaf_args += ", uniform"
    functions.append(
        [
            f"def _leaf_update({leaf_args}):",
            '    """One step for one leaf: returns ``(update, new_leaf_state)``."""',
            *[f"    {line}" for line in leaf],
        ]
    )

    # ---- The factory.
    draws = []
    if "noise" in p.needs:
        draws.append("xi = _normal_draws(state.key, state.count, offset, g.shape, g.dtype)")
    if "uniform" in p.needs:
        draws.append(
            "uniform = _unit_draws(state.key, state.count, offset, g.shape, 0, g.dtype)")
    leaf_call_args = "g, w, s, scalars, lr, weight_decay" + "".join(
        f", {v}" for v, need in (("xi", "noise"), ("uniform", "uniform")) if need in p.needs
    )
    clip = []
    if h.clip_norm:
        clip = [
            "updates, _ = optax.clip_by_global_norm(CLIP_NORM).update(updates, optax.EmptyState())",
        ]
    key_arg = ", jax.random.key_data(jax.random.key(seed))" if random else ""
    factory = [
        f"def {name}(",
        "    learning_rate=LEARNING_RATE, total_steps=10_000, *, weight_decay=WEIGHT_DECAY, seed=0",
        "):",
        '    """The exported optimizer as an ``optax.GradientTransformation``.',
        "",
        "    Args:",
        "      learning_rate: base learning rate, a number or an optax schedule of",
        "        the step count; the schedule below multiplies it.",
        "      total_steps: T, the length of training the schedule and the decays",
        "        (functions of t/T) are laid over.",
        "      weight_decay: decoupled weight decay, scaled by the learning rate.",
        "      seed: seed of the random operands and operators (if the graph has any).",
        "",
        "    Returns:",
        "      An ``optax.GradientTransformation``; ``update`` needs ``params``.",
        '    """',
        "",
        "    def init_fn(params):",
        "        leaves = jax.tree.map(",
        "            lambda w: LeafState("
        + ", ".join(f"{k}=jnp.zeros_like(w)" for k in new_fields)
        + "), params)",
        f"        return OptimizerState(jnp.zeros([], jnp.int32), leaves{key_arg})",
        "",
        "    def update_fn(updates, state, params=None):",
        "        if params is None:",
        '            raise ValueError("this optimizer needs params: update(grads, state, params)")',
        *[f"        {line}" for line in clip],
        "        count = state.count",
        *[f"        {line}" for line in scalar_lines],
        "        lr = learning_rate(count) if callable(learning_rate) else learning_rate",
        "        flat_g, treedef = jax.tree.flatten(updates)",
        "        flat_w = treedef.flatten_up_to(params)",
        "        flat_s = treedef.flatten_up_to(state.leaves)",
        "        out_u, out_s = [], []",
        *(["        offset = 0  # of the leaf's draws in the flattened parameters"]
          if draws else []),
        "        for g, w, s in zip(flat_g, flat_w, flat_s):",
        *[f"            {line}" for line in draws],
        f"            u, s = _leaf_update({leaf_call_args})",
        *(["            offset += g.size"] if draws else []),
        "            out_u.append(u)",
        "            out_s.append(s)",
        "        new_state = OptimizerState(optax.safe_increment(count),"
        " treedef.unflatten(out_s)" + (", state.key)" if random else ")"),
        "        return treedef.unflatten(out_u), new_state",
        "",
        "    return optax.GradientTransformation(init_fn, update_fn)",
    ]

    # ---- State classes.
    fields_doc = {
        "m": "EMA of g",
        "v": "EMA of g^2",
        "gamma": "EMA of g^3",
        "trace": "momentum trace of the direction",
    }
    leaf_state = [
        "class LeafState(NamedTuple):",
        '    """Per-leaf state: only what the update rule reads."""',
    ]
    if new_fields:
        leaf_state.append("")
    for k in new_fields:
        doc = fields_doc.get(k) or f"recurrent state {k} <- {graph.states[int(k[1:])]}"
        leaf_state.append(f"    {k}: jax.Array  # {doc}")
    opt_state = [
        "class OptimizerState(NamedTuple):",
        '    """Step count (int32), per-leaf states (the structure of the params)'
        + (', seed words."""' if random else '."""'),
        "",
        "    count: jax.Array",
        "    leaves: Any",
    ]
    if random:
        opt_state.append("    key: jax.Array  # hashed with (step, element) for the draws")

    code = "\n\n\n".join("\n".join(block) for block in [leaf_state, opt_state, *functions, factory])
    code = "\n\n\n".join([*(HELPERS[k].strip() for k in HELPERS if _helper_used(k, code)), code])
    # ---- Constants: only those the code reads.
    candidates: list[tuple[str, str, str]] = [
        ("LEARNING_RATE", _float(h.learning_rate), "base learning rate"),
        ("WEIGHT_DECAY", _float(h.weight_decay), "decoupled, scaled by the learning rate"),
        ("BETA1", _float(h.beta1), "EMA rate of m"),
        ("BETA2", _float(h.beta2), "EMA rate of v"),
        ("BETA3", _float(h.beta3), "EMA rate of gamma"),
        ("EPS", _float(h.eps), "epsilon"),
        ("MOMENTUM", _float(h.momentum), f"{graph.momentum} momentum on the direction"),
        ("CLIP_VALUE", _float(h.clip_value), "element-wise gradient clipping"),
        ("CLIP_NORM", _float(h.clip_norm), "global-norm gradient clipping"),
        ("WARMUP_STEPS", str(s.warmup_steps), "linear warmup of the learning rate"),
        ("ALPHA", _float(s.alpha), "floor of the schedule"),
        ("DECAY_RATE", _float(s.decay_rate), "schedule decay rate"),
        ("STEPS", str(s.steps), "steps of the step schedule"),
        ("CYCLES", str(s.cycles), "cycles of the restarts schedule"),
        (
            "SCHEDULE_VALUES",
            repr(tuple(float(x) for x in s.values)),
            "one multiplier per equal share of training",
        ),
        *[
            (f"C{j}", _float(c), f"the graph's constant c{j}")
            for j, c in enumerate(graph.constants)
        ],
        ("RESTART_CYCLES", str(ops.RESTART_CYCLES), "cycles of the decay_restart operand"),
        ("NOISE_ANNEALING", _float(ops.NOISE_ANNEALING), "annealed noise variance 1/(1+t)^this"),
        ("BIG", _float(ops.BIG), "every operator output is clipped to +-BIG"),
        ("TINY", _float(ops.TINY), "smallest magnitude of a protected argument"),
    ]
    constants = [f"{k} = {v}  # {doc}" for k, v, doc in candidates if re.search(rf"\b{k}\b", code)]

    equation = symbolic.to_text(graph).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    doc = [
        f'"""{name}: a symbolic optimizer exported from a symopt graph.',
        "",
        "The update rule (d: direction; s_i: recurrent states; lr: learning rate)::",
        "",
        *[f"    {line}" for line in _wrap(equation, 84)],
        "",
        "Each step: g = the clipped gradient, the moments m, v, gamma are EMAs of g,",
        "g^2, g^3, d = the update graph's root, then momentum on d, and",
        "w <- w - lr * schedule(t) * (d + weight_decay * w).",
        "",
        f"Usage: ``tx = {name}(learning_rate, total_steps)``, an optax optimizer;",
        "``tx.update(grads, state, params)`` needs the params. Needs only jax and optax.",
        '"""',
    ]
    header = [
        *doc,
        "",
        "from typing import Any, NamedTuple",
        "",
        "import jax",
        "import jax.numpy as jnp",
        "import optax",
        "",
        *constants,
    ]
    return "\n".join(header) + "\n\n\n" + code + "\n"


def _read_refs(expr: Expr, extra_roots: Sequence[str] = ()) -> set[str]:
    """The non-node references the active nodes read (keep_left reads no ``b``)."""
    refs = {r for r in (expr.root, *extra_roots) if graph_lib.node_index(r) is None}
    for i in graph_lib.active_nodes(expr, extra_roots):
        node = expr.nodes[i]
        for r in (node.a,) if node.op == "keep_left" else (node.a, node.b):
            if graph_lib.node_index(r) is None:
                refs.add(r)
    return refs


def _step_helper(fn: Callable[..., Any]) -> str:
    """The source of a :mod:`symopt.step` function as a private helper of the
    exported module: the same code, renamed ``_name``, without annotations."""
    function = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    function.name = f"_{function.name}"
    for arg in function.args.args + function.args.kwonlyargs:
        arg.annotation = None
    function.returns = None
    return "\n" + ast.unparse(function) + "\n"


HELPERS.update({f"_{fn.__name__}": _step_helper(fn) for fn in (
    step_lib.ema, step_lib.bias_correction, step_lib.momentum, step_lib.scaled_update)})


def _helper_used(helper: str, code: str) -> bool:
    if helper == "_unit_draws":
        return "_unit_draws(" in code or "_normal_draws(" in code
    return f"{helper}(" in code


def _wrap(text: str, width: int) -> list[str]:
    """``text`` split at ``"; "`` and spaces into lines of at most ``width``."""
    lines: list[str] = []
    for part in text.split("; "):
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = "    " + word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return lines


# --------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m symopt.export --graph best.json [--name NAME]``: source to stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m symopt.export",
        description="Write a symopt graph as a standalone optax optimizer module.",
    )
    parser.add_argument("--graph", required=True, help="the graph's JSON file (best.json)")
    parser.add_argument("--name", default="optimizer", help="the factory function's name")
    args = parser.parse_args(argv)
    try:
        graph = graph_lib.load(args.graph)
        source = to_source(graph, name=args.name)
    except (OSError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
