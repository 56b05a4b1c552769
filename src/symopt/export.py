"""``export``: a Graph as a standalone, readable Python module.

:func:`to_source` writes the source of a module that imports only ``jax``
and ``optax`` (no symopt). It defines ``scale_by_direction``, the graph's
direction as an optax transformation (what :func:`symopt.transform.scale_by_graph`
computes), and a factory ``optimizer(learning_rate, total_steps)`` returning
the same ``optax.chain`` as :func:`symopt.to_optax`: clipping, the direction,
``optax.trace``, ``optax.add_decayed_weights`` and
``optax.scale_by_learning_rate`` with the graph's schedule. So its updates
equal ``to_optax``'s, and its docstring, named constants and one line of
``jax.numpy`` per active node say what it computes.

Nothing of the step is written here a second time. Operators and operands
bring their JAX source as a column of the operator table (:mod:`symopt.ops`);
the shared functions (moments, bias correction, schedules, the step held past
``T``, the noise hash, the protections) are symopt's own functions,
embedded by their source; :mod:`symopt.embed` owns that translation. This
module owns only the assembly: which pieces a graph needs (its
:func:`~symopt.interpret.plan`), in what order, with what constants. It is
one concept, the assembly of one generated module, in small functions, one
per part of that module; that is why it runs a little over 500 lines.

The per-leaf operators (``orth``, ``rms_rows``, ``trust``, ``if_matrix``, ...
of :data:`symopt.ops.LEAF_OPERATORS`) need nothing else: the module steps
leaf by leaf (``_leaf_direction`` once per parameter tensor), so they read
each tensor whole, as ``to_optax`` does; their functions (``_orth``,
``_as_matrix``, ``_scaled_norm``, the Newton-Schulz constants) are embedded
from :mod:`symopt.ops` only when the graph uses them, and their inputs are
broadcast to the leaf (``_broadcast_like``) where they may be scalars.

Command line::

    python -m symopt.export --graph best.json > my_optimizer.py
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from symopt import draws, embed, interpret, ops, schedules, symbolic
from symopt import graph as graph_lib
from symopt import step as step_lib
from symopt.graph import Expr, Graph

_IMPORTS = ("Any", "NamedTuple", "jax", "jnp", "optax")


# --------------------------------------------------------------------------
# Code generation.


def _identifier(ref: str) -> str:
    """The variable holding a reference: ``w_0.0001`` -> ``w_0_0001``."""
    return ref.replace(".", "_").replace("-", "m")


def _node_lines(expr: Expr, active: Iterable[int], var: Callable[[str], str]) -> list[str]:
    """One assignment per active node: ``n3 = jnp.sign(g) * m``.

    A per-leaf operator reads its inputs as whole leaves, broadcast to the
    gradient's shape and dtype (a constant or ``t`` is a scalar), as
    :func:`symopt.interpret.leaf_direction` broadcasts them:
    ``n0 = _orth(jnp, _broadcast_like(jnp, m, grad))``. The broadcast is left
    out where it is the identity: on a value computed from per-leaf operators'
    outputs alone, which have the leaf's shape and dtype. Only the update
    graph has per-leaf operators (they are invalid in scalar sub-graphs)."""
    whole: set[str] = set()  # nodes known to hold the leaf's shape and dtype

    def leaf_arg(src: str, is_whole: bool, name: str) -> str:
        if name not in ops.LEAF_OPERATORS or is_whole:
            return src
        return f"_broadcast_like(jnp, {src}, grad)"

    def operand(unary: str, ref: str) -> tuple[str, bool]:
        src, is_whole = var(ref), ref in whole
        if unary == "identity":
            return src, is_whole
        src = embed.unary_source(unary, leaf_arg(src, is_whole, unary))
        return src, is_whole or unary in ops.LEAF_OPERATORS

    lines = []
    for i in sorted(active):
        node = expr.nodes[i]
        x, is_whole = operand(node.left, node.a)
        if node.op != "keep_left":
            y, y_whole = operand(node.right, node.b)
            x = embed.binary_source(node.op, leaf_arg(x, is_whole, node.op),
                                    leaf_arg(y, y_whole, node.op))
            is_whole = node.op in ops.LEAF_OPERATORS or (is_whole and y_whole)
        if is_whole:
            whole.add(graph_lib.node_ref(i))
        lines.append(f"{graph_lib.node_ref(i)} = {x}")
    return lines


def _operator_functions(expr: Expr, active: Iterable[int]) -> set[Callable[..., Any]]:
    """The :mod:`symopt.ops` functions the active nodes' operators call (the
    per-leaf operators'), which the module embeds."""
    found: set[Callable[..., Any]] = set()
    for i in active:
        node = expr.nodes[i]
        for name, arity in ((node.left, 1), (node.right, 1), (node.op, 2)):
            found.update(embed.operator_functions(name, arity))
    return found


def _function(signature: str, doc: str, body: Sequence[str]) -> str:
    return "\n".join([f"def {signature}:", f'    """{doc}"""', *(f"    {line}" for line in body)])


def _scalar_function(name: str, expr: Expr, doc: str) -> str:
    """A scalar sub-graph (a decay or a graph schedule) as ``name(step, frac)``."""
    body = []
    for ref in sorted(_read_refs(expr)):
        if (j := graph_lib.constant_index(ref)) is not None:
            body.append(f"{ref} = jnp.asarray(C{j}, dtype=jnp.result_type(frac))")
        else:
            body.append(f"{_identifier(ref)} = {embed.operand_source(ref)}")
    body += _node_lines(expr, graph_lib.active_nodes(expr), _identifier)
    body.append(f"return {_identifier(expr.root)}")
    return _function(f"{name}(step, frac)", doc, body)


def _call(fn: str, kwargs: dict[str, str], indent: str) -> str:
    """``fn(k=v, ...)`` on one line, or one argument per line when long."""
    one = f"{fn}(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    if len(indent) + len(one) <= 96:
        return one
    inner = indent + "    "
    return f"{fn}(\n" + "".join(f"{inner}{k}={v},\n" for k, v in kwargs.items()) + f"{indent})"


def _float(value: float) -> str:
    return repr(float(value))


_MOMENT_OF = {"m": ("BETA1", "grad"), "v": ("BETA2", "grad * grad"),
              "gamma": ("BETA3", "grad * grad * grad")}
_FIELD_DOCS = {"m": "EMA of g", "v": "EMA of g^2", "gamma": "EMA of g^3"}


def to_source(graph: Graph, *, name: str = "optimizer") -> str:
    """The source of a standalone module implementing ``graph`` with optax.

    Args:
      graph: a valid :class:`symopt.Graph`.
      name: the name of the module's factory function: a Python identifier
        that is not a keyword and not a name the module defines or imports.

    Returns:
      Python source importing only ``jax``, ``jax.numpy``, ``optax`` and
      ``typing``. Its ``name(learning_rate, total_steps, *, weight_decay,
      seed)`` returns an ``optax.GradientTransformation`` whose updates equal
      ``symopt.to_optax(graph, learning_rate, total_steps, ...)``; its
      ``total_steps`` defaults to ``TOTAL_STEPS``, the length the graph was
      found at (what ``to_optax`` lays it over when given none; a graph
      that reads ``T`` without one warns, as ``to_optax`` does).

    Example:
      >>> import symopt
      >>> from symopt import export
      >>> "def optimizer(" in export.to_source(symopt.zoo.adam())
      True
    """
    graph_lib.validate(graph)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"name: {name!r} is not a Python identifier")
    total_steps = graph_lib.total_steps_for(graph)
    p = interpret.plan(graph)
    functions, schedule_fields, uses = _schedule_functions(graph, p)
    direction = _direction_function(graph, p)
    functions.append(direction.source)
    scale_by, scale_uses = _scale_by_direction(graph, p, direction)
    factory = _factory(graph, name)
    written = "\n".join([*functions, scale_by, factory])
    uses |= scale_uses | _operator_functions(graph.update, p.active) | {
        fn for fn in (ops.clip_big, ops.protect) if f"{embed.embedded_name(fn)}(" in written}
    helpers, embedded_constants = embed.embedded_source(sorted(uses, key=lambda f: f.__name__))
    code = "\n\n\n".join([helpers, _state_class(graph, p), *functions, scale_by, factory])
    constants, names = _constants(graph, total_steps, schedule_fields, embedded_constants,
                                  code)
    defined = set(_IMPORTS) | names | set(
        re.findall(r"^(?:def|class) (\w+)", code.replace(factory, ""), re.MULTILINE)) | {
        "ScheduleConstants"}
    if name in defined or name in vars(builtins):
        raise ValueError(f"name: {name!r} would shadow a name the module uses")
    header = [*_module_doc(graph, name), "", "from typing import Any, NamedTuple", "",
              "import jax", "import jax.numpy as jnp", "import optax", "", *constants]
    return "\n".join(header) + "\n\n\n" + code + "\n"


def _moments(p: interpret.Plan) -> list[str]:
    """The moment EMAs the graph reads, in SymoptState's order."""
    return [m for m in ("m", "v", "gamma") if m in p.needs]


def _is_random(p: interpret.Plan) -> bool:
    """Whether the graph draws noise or dropout (so its state keeps seed words)."""
    return bool(p.needs & {"noise", "uniform"})


def _schedule_functions(
    graph: Graph, p: interpret.Plan,
) -> tuple[list[str], list[str], set[Callable[..., Any]]]:
    """``_schedule(step, total_steps)`` and one function per decay; the fields
    of the schedule's constants the formula reads; the symopt functions used."""
    s = graph.schedule
    uses = {step_lib.ema, step_lib.bias_correction, schedules.held_step,
            schedules.schedule_fraction, step_lib.adds_weight_decay, interpret.broadcast_like,
            ops.sanitize}
    functions: list[str] = []
    schedule_fields: list[str] = []
    body = ["u = _schedule_fraction(jnp, step, WARMUP_STEPS, total_steps)"]
    if s.kind == "graph":
        functions.append(_scalar_function(
            "_schedule_graph", s.expr,
            "The schedule's expression at training fraction ``frac``."))
        body.append("multiplier = _schedule_graph(step, u)")
    elif s.kind == "piecewise":
        uses.add(schedules.piecewise_multiplier)
        body.append("multiplier = _piecewise_multiplier(jnp, u, SCHEDULE_VALUES, "
                    "len(SCHEDULE_VALUES))")
    else:
        formula = schedules.SCHEDULE_FORMULAS[s.kind]
        uses.add(formula)
        schedule_fields = embed.attributes_read(formula, "s")
        constants_arg = "SCHEDULE" if schedule_fields else "None"
        body.append(f"multiplier = {embed.embedded_name(formula)}(jnp, u, {constants_arg})")
    if s.warmup_steps:
        uses.add(schedules.with_warmup)
        body.append("multiplier = _with_warmup(jnp, step, WARMUP_STEPS, multiplier)")
    body.append("return multiplier")
    functions.append(_function("_schedule(step, total_steps)",
                               "The learning-rate multiplier at step ``step`` (a float).", body))
    for ref, expr in p.decays:
        functions.append(_scalar_function(f"_decay_{_identifier(ref)}", expr,
                                          f"The decay multiplying operand {ref}."))
    return functions, schedule_fields, uses


class _Direction(NamedTuple):
    """``_leaf_direction``: its source, its parameters, the operands it reads
    and the per-step scalars among its parameters."""

    source: str
    args: list[str]
    operands: list[str]
    scalars: list[str]


def _direction_function(graph: Graph, p: interpret.Plan) -> _Direction:
    """``_leaf_direction``: one leaf's direction, and its new moments and states."""
    h = graph.hparams
    moments, decays = _moments(p), dict(p.decays)
    body = []
    if h.clip_value:
        body.append("grad = jnp.clip(grad, -CLIP_VALUE, CLIP_VALUE)")
    context = {"g": "grad", "noise": "xi", "eps": "EPS", "step": "step", "frac": "frac"}
    for m in moments:
        beta, power = _MOMENT_OF[m]
        body.append(f"{m}_ema = _ema(jnp, {m}_ema, {power}, {beta})")
        context[m] = f"{m}_ema / bias_{m}" if h.bias_correction else f"{m}_ema"
    refs = sorted(_read_refs(graph.update, graph.states))
    operands = [r for r in refs if r in ops.OPERANDS]
    if operands:
        body.append("# Operands (NaN -> 0, clipped to +-BIG).")
    for ref in operands:
        src = embed.operand_source(ref, **context)
        if ref in decays:
            src = f"({src}) * decay_{_identifier(ref)}"
        body.append(f"{_identifier(ref)} = _sanitize(jnp, {src})")
    for ref in refs:
        if (j := graph_lib.constant_index(ref)) is not None:
            body.append(f"{ref} = jnp.asarray(C{j}, grad.dtype)")
    nodes = _node_lines(graph.update, p.active, _identifier)
    if nodes:
        body += ["# The update graph.", *nodes]
    states = [f"_broadcast_like(jnp, {_identifier(r)}, grad)" for r in graph.states]
    out = [f"_broadcast_like(jnp, {_identifier(graph.update.root)}, grad)",
           *(f"{m}_ema" for m in moments),
           *([f"({', '.join(states)},)"] if states else [])]
    body.append("return " + ", ".join(out) + ("," if len(out) == 1 else ""))
    read = " ".join(body)
    scalars = [v for v in ("step", "frac") if re.search(rf"\b{v}\b", read)]
    if h.bias_correction:
        scalars += [f"bias_{m}" for m in moments]
    scalars += [f"decay_{_identifier(r)}" for r in decays if r in operands]
    args = ["grad", "w", *(f"{m}_ema" for m in moments), *(["states"] if graph.states else []),
            *(["xi"] if "noise" in p.needs else []),
            *(["uniform"] if "uniform" in p.needs else []), *scalars]
    unpack = ([", ".join(f"s{i}" for i in range(len(graph.states))) + ", = states"]
              if graph.states else [])
    source = _function(
        f"_leaf_direction({', '.join(args)})",
        "One leaf's direction, and its new moments and recurrent states.",
        unpack + body)
    return _Direction(source, args, operands, scalars)


def _state_class(graph: Graph, p: interpret.Plan) -> str:
    """``DirectionState``: the step count and only the fields the graph reads."""
    fields = [*_moments(p), *(["states"] if graph.states else []),
              *(["key"] if _is_random(p) else [])]
    states = ", ".join(f"s{i} <- {r}" for i, r in enumerate(graph.states))
    state_doc = {**_FIELD_DOCS,
                 "states": f"one params-shaped tree per recurrent state ({states})",
                 "key": "uint32[2]: hashed with (step, element) for the draws"}
    return "\n".join([
        "class DirectionState(NamedTuple):",
        '    """The state of ``scale_by_direction``: the step count and a params-shaped tree',
        '    per moment and recurrent state the graph reads."""',
        "",
        "    count: jax.Array  # int32, steps taken",
        *(f"    {f}: Any  # {state_doc[f]}" for f in fields),
    ])


def _scale_by_direction(
    graph: Graph, p: interpret.Plan, direction: _Direction,
) -> tuple[str, set[Callable[..., Any]]]:
    """``scale_by_direction``, what :func:`symopt.scale_by_graph` computes, and
    the draws it embeds."""
    moments, random, uses = _moments(p), _is_random(p), set()
    init = {"count": "jnp.zeros([], jnp.int32)",
            **{m: "jax.tree.map(jnp.zeros_like, params)" for m in moments}}
    if graph.states:
        init["states"] = "tuple(jax.tree.map(jnp.zeros_like, params) for _ in range(" \
                         f"{len(graph.states)}))"
    if random:
        init["key"] = "jax.random.key_data(jax.random.key(seed))"
    update = _step_scalars_lines(graph, p, direction)
    update += ["flat_g, treedef = jax.tree.flatten(updates)",
               "flat_w = treedef.flatten_up_to(params)"]
    update += [f"flat_{m} = treedef.flatten_up_to(state.{m})" for m in moments]
    if graph.states:
        update.append("flat_states = [treedef.flatten_up_to(tree) for tree in state.states]")
    loop = []
    if "noise" in p.needs:
        uses.add(draws.noise_draws)
        loop.append("xi = _noise_draws(jnp, state.key, state.count, offset, grad.shape, "
                    "grad.dtype)")
    if "uniform" in p.needs:
        uses.add(draws.uniform_draws)
        loop.append("uniform = _uniform_draws(jnp, state.key, state.count, offset, grad.shape, "
                    "grad.dtype)")
    call = {"grad": "grad", "w": "flat_w[i]", **{f"{m}_ema": f"flat_{m}[i]" for m in moments},
            "states": "tuple(tree[i] for tree in flat_states)"}
    passed = ", ".join(call.get(a, a) for a in direction.args)
    loop.append(f"outs.append(_leaf_direction({passed}))")
    if random:
        loop.append("offset += grad.size  # the draws count through the flattened params")
    update += ["outs = []", *(["offset = 0"] if random else []),
               "for i, grad in enumerate(flat_g):", *(f"    {line}" for line in loop)]
    new = {"count": "optax.safe_increment(state.count)",
           **{m: f"treedef.unflatten([out[{1 + k}] for out in outs])"
              for k, m in enumerate(moments)}}
    if graph.states:
        new["states"] = (f"tuple(treedef.unflatten([out[{1 + len(moments)}][j] for out in outs])"
                         f" for j in range({len(graph.states)}))")
    if random:
        new["key"] = "state.key"
    update += [
        "new_state = " + _call("DirectionState", new, "        "),
        "return treedef.unflatten([out[0] for out in outs]), new_state",
    ]
    return "\n".join([
        "def scale_by_direction(total_steps=TOTAL_STEPS, *, seed=0):",
        '    """The graph\'s direction as an optax transformation (``update`` needs params)."""',
        "",
        "    def init_fn(params):",
        "        return " + _call("DirectionState", init, "        "),
        "",
        "    def update_fn(updates, state, params=None):",
        *(f"        {line}" for line in update),
        "",
        "    return optax.GradientTransformation(init_fn, update_fn)",
    ]), uses


def _step_scalars_lines(graph: Graph, p: interpret.Plan, direction: _Direction) -> list[str]:
    """The start of ``update_fn``: the per-step scalars ``_leaf_direction`` reads
    (:func:`symopt.interpret.step_scalars`)."""
    update = [
        "if params is None:",
        '    raise ValueError("this optimizer needs params: update(grads, state, params)")',
        "step = jnp.asarray(state.count, float)",
    ]
    decays = [ref for ref, _ in p.decays if ref in direction.operands]
    if decays:
        update.append("held = _held_step(jnp, step, total_steps)  # decays hold past T")
    if "frac" in direction.scalars:
        update.append("frac = step / total_steps")
    for m in _moments(p) if graph.hparams.bias_correction else ():
        update.append(f"bias_{m} = _bias_correction(jnp, {_MOMENT_OF[m][0]}, step)")
    for ref in decays:
        update.append(f"decay_{_identifier(ref)} = _decay_{_identifier(ref)}"
                      "(held, held / total_steps)")
    return update


def _factory(graph: Graph, name: str) -> str:
    """The factory ``name(learning_rate, total_steps, ...)``: to_optax's chain."""
    h = graph.hparams
    chain = [
        *(["optax.clip_by_global_norm(CLIP_NORM),"] if h.clip_norm else []),
        "scale_by_direction(total_steps, seed=seed),",
        *([f"optax.trace(decay=MOMENTUM, nesterov={graph.momentum == 'nesterov'}),"]
          if graph.momentum != "none" else []),
        "*([optax.add_decayed_weights(weight_decay)] if _adds_weight_decay(weight_decay) "
        "else []),",
        "optax.scale_by_learning_rate(step_size),",
    ]
    return "\n".join([
        f"def {name}(learning_rate=LEARNING_RATE, total_steps=TOTAL_STEPS, *, "
        "weight_decay=WEIGHT_DECAY, seed=0):",
        '    """The exported optimizer as an ``optax.GradientTransformation``.',
        "",
        "    Args:",
        "      learning_rate: base learning rate, a number or an optax schedule of",
        "        the step count; the graph's schedule multiplies it.",
        "      total_steps: T, the length of training the schedule and the decays",
        "        (functions of t/T) are laid over; past T they hold their last value.",
        "      weight_decay: decoupled weight decay, scaled by the learning rate.",
        "      seed: seed of the random operands and operators (if the graph has any).",
        "",
        "    Returns:",
        "      An ``optax.GradientTransformation``; ``update`` needs ``params``.",
        '    """',
        "",
        "    def step_size(count):",
        "        base = learning_rate(count) if callable(learning_rate) else learning_rate",
        "        held = _held_step(jnp, jnp.asarray(count, float), total_steps)",
        "        return base * _schedule(held, total_steps)",
        "",
        "    return optax.chain(",
        *(f"        {line}" for line in chain),
        "    )",
    ])


_SCHEDULE_FIELD_DOCS = {"alpha": "the floor, as a fraction of the base rate", "decay_rate": "",
                        "steps": "stairs of the step schedule", "cycles": "cycles of the restarts"}
_SCHEDULE_FIELD_TYPES = {"alpha": "float", "decay_rate": "float", "steps": "int", "cycles": "int"}


def _constants(graph: Graph, total_steps: int, schedule_fields: list[str],
               embedded: dict[str, Any], code: str) -> tuple[list[str], set[str]]:
    """The module's constants that ``code`` reads, and the names of all it could."""
    h, s = graph.hparams, graph.schedule
    candidates: list[tuple[str, str, str]] = [
        ("LEARNING_RATE", _float(h.learning_rate), "base learning rate"),
        ("TOTAL_STEPS", str(total_steps),
         "the training length T the graph was found at" if graph.total_steps is not None
         else "T by default (the graph records no training length)"),
        ("WEIGHT_DECAY", _float(h.weight_decay), "decoupled, scaled by the learning rate"),
        ("BETA1", _float(h.beta1), "EMA rate of m"),
        ("BETA2", _float(h.beta2), "EMA rate of v"),
        ("BETA3", _float(h.beta3), "EMA rate of gamma"),
        ("EPS", _float(h.eps), "epsilon"),
        ("MOMENTUM", _float(h.momentum), f"{graph.momentum} momentum on the direction"),
        ("CLIP_VALUE", _float(h.clip_value), "element-wise gradient clipping"),
        ("CLIP_NORM", _float(h.clip_norm), "global-norm gradient clipping"),
        ("WARMUP_STEPS", str(s.warmup_steps), "linear warmup of the learning rate"),
        ("SCHEDULE", "ScheduleConstants(" + ", ".join(
            f"{f}={getattr(s, f)!r}" for f in schedule_fields) + ")",
         f"the {s.kind} schedule's constants"),
        ("SCHEDULE_VALUES", repr(tuple(float(x) for x in s.values)),
         "one multiplier per equal share of training"),
        *[(f"C{j}", _float(c), f"the graph's constant c{j}")
          for j, c in enumerate(graph.constants)],
        ("RESTART_CYCLES", str(ops.RESTART_CYCLES), "cycles of the decay_restart operand"),
        ("NOISE_ANNEALING", _float(ops.NOISE_ANNEALING), "annealed noise variance 1/(1+t)^this"),
        ("BIG", _float(ops.BIG), "every operator output is clipped to +-BIG"),
        ("NS_COEFFICIENTS", repr(ops.NS_COEFFICIENTS), "orth: Muon's Newton-Schulz (a, b, c)"),
        ("NS_STEPS", str(ops.NS_STEPS), "orth: Newton-Schulz iterations"),
        ("NS_EPS", _float(ops.NS_EPS), "orth: added to the Frobenius norm"),
        ("TINY", _float(ops.TINY), "smallest magnitude of a protected argument"),
    ]
    known = {k for k, _, _ in candidates}
    candidates += [(k, repr(v), "") for k, v in embedded.items() if k not in known]
    read = set(re.findall(r"\w+", code))  # the names the code reads (and other words)
    constants = [f"{k} = {v}" + (f"  # {doc}" if doc else "") for k, v, doc in candidates
                 if k in read]
    if schedule_fields:
        constants.insert(0, "\n".join([
            "class ScheduleConstants(NamedTuple):",
            '    """The constants of the learning-rate schedule\'s formula."""',
            "",
            *(f"    {f}: {_SCHEDULE_FIELD_TYPES[f]}"
              + (f"  # {_SCHEDULE_FIELD_DOCS[f]}" if _SCHEDULE_FIELD_DOCS[f] else "")
              for f in schedule_fields),
        ]) + "\n\n")
    return constants, {k for k, _, _ in candidates}


def _module_doc(graph: Graph, name: str) -> list[str]:
    """The exported module's docstring: the update rule and how to use it."""
    equation = symbolic.to_text(graph).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return [
        f'"""{name}: a symbolic optimizer exported from a symopt graph.',
        "",
        "The update rule (d: direction; s_i: recurrent states; lr: learning rate)::",
        "",
        *[f"    {line}" for line in _wrap(equation, 84)],
        "",
        "Each step: g = the clipped gradient, the moments m, v, gamma are EMAs of g,",
        "g^2, g^3, d = the update graph's root (``scale_by_direction``), then",
        "momentum on d, and w <- w - lr * schedule(t) * (d + weight_decay * w).",
        "",
        f"Usage: ``tx = {name}(learning_rate, total_steps)``, an optax optimizer;",
        "``tx.update(grads, state, params)`` needs the params. Needs only jax and optax.",
        '"""',
    ]


def _read_refs(expr: Expr, extra_roots: Sequence[str] = ()) -> set[str]:
    """The non-node references the active nodes read (keep_left reads no ``b``)."""
    refs = {r for r in (expr.root, *extra_roots) if graph_lib.node_index(r) is None}
    for i in graph_lib.active_nodes(expr, extra_roots):
        node = expr.nodes[i]
        for r in (node.a,) if node.op == "keep_left" else (node.a, node.b):
            if graph_lib.node_index(r) is None:
                refs.add(r)
    return refs


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


PROGRAM = "python -m symopt.export"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m symopt.export --graph best.json [--name NAME]``: source to
    stdout; an error is one line ``python -m symopt.export: error: ...``
    (exit 2), a warning one line ``...: warning: ...``."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Write a symopt graph as a standalone optax optimizer module.",
    )
    parser.add_argument("--graph", required=True,
                        help=f"the graph's JSON file (best.json): a regular file of at most "
                             f"{graph_lib.MAX_FILE_BYTES} bytes")
    parser.add_argument("--name", default="optimizer", help="the factory function's name")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", graph_lib.TrainingLengthWarning)
            graph = graph_lib.load(args.graph)
            source = to_source(graph, name=args.name)
    except (OSError, ValueError) as e:
        # One line, spaces kept (a path's own): only line breaks are escaped.
        message = str(e).replace("\r", "\\r").replace("\n", "\\n") or type(e).__name__
        print(f"{PROGRAM}: error: {message}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"{PROGRAM}: warning: {warning.message}", file=sys.stderr)
    sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
