"""The ``nos`` space: dual-joint optimizer graphs (Morgan & Hougen 2024).

Graphs of hidden nodes ``binary(unary(a), unary(b))`` over the operands of
Bello et al. 2017, jointly with decay sub-graphs on operands, a learning-rate
schedule, a momentum type and hyperparameters. :func:`sample` draws a random
graph from the space.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from symopt import graph as graph_lib
from symopt import ops
from symopt.graph import Expr, Graph, Hyperparams, Node, Schedule


@dataclasses.dataclass(frozen=True)
class NosSpace:
    """Which graphs the space holds, and how :func:`sample` draws them."""

    min_nodes: int = 1
    max_nodes: int = 8
    operands: tuple[str, ...] = ops.TENSOR_OPERANDS
    unary: tuple[str, ...] = tuple(ops.UNARY)
    binary: tuple[str, ...] = tuple(ops.BINARY)
    max_constants: int = 2
    max_states: int = 1
    max_decay_nodes: int = 2
    p_identity: float = 0.5  # chance a node input has no unary op
    p_decay: float = 0.2  # chance an operand used gets a decay
    p_state: float = 0.15
    p_schedule_graph: float = 0.1
    schedule_kinds: tuple[str, ...] = ("constant", "cosine", "linear", "exponential", "step",
                                       "restarts")
    momentum_types: tuple[str, ...] = graph_lib.MOMENTUM_TYPES
    log10_lr: tuple[float, float] = (-4.0, -1.0)


def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _sample_expr(
    rng: np.random.Generator, space: NosSpace, num_nodes: int, leaves: list[str]
) -> Expr:
    built: list[Node] = []
    for i in range(num_nodes):
        refs = leaves + [graph_lib.node_ref(j) for j in range(i)]
        # Favour recent nodes so that graphs are deep rather than mostly dead.
        def pick():
            if i and rng.random() < 0.6:
                return graph_lib.node_ref(int(rng.integers(max(0, i - 2), i)))
            return _choice(rng, refs)

        def unary():
            return "identity" if rng.random() < space.p_identity else _choice(rng, space.unary)

        built.append(Node(_choice(rng, space.binary), unary(), pick(), unary(), pick()))
    root = graph_lib.node_ref(num_nodes - 1) if num_nodes else _choice(rng, leaves)
    return Expr(tuple(built), root)


def sample(rng: np.random.Generator, space: NosSpace = NosSpace()) -> Graph:
    """A random valid graph of ``space``."""
    constants = tuple(
        float(np.round(rng.normal(), 4)) for _ in range(int(rng.integers(space.max_constants + 1)))
    )
    num_states = int(rng.random() < space.p_state) * int(rng.integers(1, space.max_states + 1))
    leaves = list(space.operands) + [f"c{i}" for i in range(len(constants))]
    leaves += [f"s{i}" for i in range(num_states)]
    num_nodes = int(rng.integers(space.min_nodes, space.max_nodes + 1))
    update = _sample_expr(rng, space, num_nodes, leaves)
    node_refs = [graph_lib.node_ref(i) for i in range(num_nodes)] or [update.root]
    states = tuple(_choice(rng, node_refs) for _ in range(num_states))
    scalar_leaves = list(ops.SCALAR_OPERANDS) + [f"c{i}" for i in range(len(constants))]
    scalar_space = dataclasses.replace(
        space, unary=tuple(u for u in space.unary if not ops.UNARY[u].random)
    )
    used = graph_lib.expr_inputs(update, states)
    decays = tuple(
        (name, _sample_expr(rng, scalar_space, int(rng.integers(1, space.max_decay_nodes + 1)),
                            scalar_leaves))
        for name in sorted(used)
        if name in ops.OPERANDS and rng.random() < space.p_decay
    )
    if rng.random() < space.p_schedule_graph:
        schedule = Schedule(
            kind="graph",
            warmup_steps=int(_choice(rng, (0, 0, 10, 100))),
            expr=_sample_expr(rng, scalar_space, int(rng.integers(1, 3)), scalar_leaves),
        )
    else:
        schedule = Schedule(
            kind=_choice(rng, space.schedule_kinds),
            warmup_steps=int(_choice(rng, (0, 0, 10, 100))),
            alpha=float(_choice(rng, (0.0, 0.1))),
            decay_rate=float(_choice(rng, (0.1, 0.5))),
        )
    hparams = Hyperparams(
        learning_rate=float(10 ** rng.uniform(*space.log10_lr)),
        beta1=float(_choice(rng, (0.0, 0.5, 0.9, 0.95))),
        beta2=float(_choice(rng, (0.9, 0.99, 0.999))),
        beta3=float(_choice(rng, (0.9, 0.99, 0.999))),
        eps=float(_choice(rng, (1e-8, 1e-6))),
        weight_decay=float(_choice(rng, (0.0, 0.0, 1e-4, 1e-2))),
        momentum=float(_choice(rng, (0.5, 0.9))),
        clip_value=float(_choice(rng, (0.0, 0.0, 1.0))),
        clip_norm=float(_choice(rng, (0.0, 0.0, 1.0))),
        bias_correction=bool(rng.random() < 0.5),
    )
    graph = Graph(
        update=update,
        states=states,
        decays=decays,
        schedule=schedule,
        momentum=_choice(rng, space.momentum_types),
        hparams=hparams,
        constants=constants,
    )
    return graph_lib.validate(graph)
