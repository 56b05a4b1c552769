"""Pictures of optimizers and searches: graph drawings, equations, schedules, fitness, lineage.

It owns the matplotlib views of symopt's objects, and only them: one concept,
kept in one module (a little over 500 lines) because the views share its
figure helpers, colours and labels. Nothing else imports it, so ``import
symopt`` stays free of matplotlib (``pip install symopt-jax[viz]``):

* :func:`draw_graph`: a :class:`~symopt.graph.Graph` as a layered DAG, with
  its operands, constants, recurrent states, decays and schedule.
* :func:`equation_latex`, :func:`show_equation`: the optimizer's equations.
* :func:`plot_schedule`: the learning-rate multiplier and the decays over
  training, computed by :mod:`symopt.interpret` itself.
* :func:`plot_fitness`, :func:`plot_lineage`: a search's progress and a
  candidate's ancestry, read from its :class:`~symopt.archive.Archive`.

Every function returns a ``matplotlib.figure.Figure`` (drawn into ``ax`` when
one is given), which Jupyter displays and ``fig.savefig`` writes as PNG, SVG
or PDF. Figures made here are not registered with pyplot, so they need no
interactive backend and are not shown twice in a notebook. Drawn artists carry
a ``gid`` (``"node:n3"``, ``"operand:g"``, ``"recurrence:s0"``, ``"decay:m"``, ``"schedule"``,
``"best"``, ``"candidate:12"``, ...) by which tests and callers find them.
"""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from symopt import graph as graph_lib
from symopt import interpret, symbolic
from symopt.graph import Expr, Graph

if TYPE_CHECKING:  # matplotlib is imported lazily, inside the functions
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from symopt.archive import Archive

ROOT_LABEL = "d (root)"  # the text of the output marker that the root feeds
ACTIVE_FACE = "#dbe9f6"
LEAF_FACE = "#f4f4f4"
CONSTANT_FACE = "#fdf2d0"
STATE_FACE = "#eadcf5"
DECAY_FACE = "#fde0dd"
ROOT_EDGE = "#d62728"
STATE_EDGE = "#7b3294"
INACTIVE_FACE = "#e6e6e6"
INACTIVE_ALPHA = 0.35  # the alpha of inactive nodes, their edges and labels
_BOX_W, _BOX_H = 1.5, 0.62  # node boxes, in data units (layers are 2.4 apart)
_DX, _DY = 2.4, 1.0
_DECAY_W, _DECAY_CHARS = 1.9, 30  # room left of the operands for decays, and their wrap width


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new pyplot-free figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib is optional)

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


# --------------------------------------------------------------------------
# The graph.


_LEAF_UNARY_TEXT = {"rms": "rms({})", "rms_rows": "rms_row({})", "rms_cols": "rms_col({})",
                    "norm": "‖{}‖", "orth": "orth({})"}
"""How a node label writes the per-leaf unary operators (``ops.Op.leaf``): the
RMS of the leaf, of each row or column of its matrix view, its 2-norm, and
Muon's orthogonalisation."""


def _unary_text(unary: str, arg: str) -> str:
    if unary == "identity":
        return arg
    return _LEAF_UNARY_TEXT.get(unary, f"{unary}({{}})").format(arg)


def expr_text(expr: Expr, constants: tuple[float, ...] = ()) -> str:
    """A scalar sub-graph as nested calls, e.g. ``mul(decay_cosine, exp(t))``.

    Args:
      expr: a decay or schedule :class:`~symopt.graph.Expr`.
      constants: the graph's constants, printed in place of ``c<i>``.

    Returns:
      One line of text (shared sub-expressions are written out each time).
    """

    def text(ref: str) -> str:
        i = graph_lib.node_index(ref)
        if i is None:
            j = graph_lib.constant_index(ref)
            return f"{constants[j]:.4g}" if j is not None and j < len(constants) else ref
        node = expr.nodes[i]
        a, b = _unary_text(node.left, text(node.a)), _unary_text(node.right, text(node.b))
        return f"{node.op}({a}, {b})"

    return text(expr.root)


def _node_label(i: int, node: graph_lib.Node) -> str:
    """``n<i>: op`` over its inputs: ``left(a), right(b)``, or for the per-leaf
    binary operators what they compute, ``A·‖B‖/‖A‖`` (``trust``, LAMB's trust
    ratio) and ``A if 2-D else B`` (``if_matrix``)."""
    a, b = _unary_text(node.left, "a"), _unary_text(node.right, "b")
    if node.op == "trust":
        inputs = f"{a}·‖{b}‖/‖{a}‖"
    elif node.op == "if_matrix":
        inputs = f"{a} if 2-D else {b}"
    else:
        inputs = f"{a}, {b}"
    return f"n{i}: {node.op}\n{inputs}"


def _leaf_kind(ref: str) -> str:
    if graph_lib.constant_index(ref) is not None:
        return "constant"
    if graph_lib.state_index(ref) is not None:
        return "state"
    return "operand"


def _leaf_label(ref: str, graph: Graph) -> str:
    j = graph_lib.constant_index(ref)
    if j is not None:
        return f"{ref} = {graph.constants[j]:.4g}"
    j = graph_lib.state_index(ref)
    if j is not None:
        return f"{ref} (state)"
    return ref


def _schedule_text(graph: Graph) -> str:
    s, h = graph.schedule, graph.hparams
    kind = s.kind
    if kind in ("cosine", "linear", "restarts") and s.alpha:
        kind += f", alpha {s.alpha:g}"
    if kind in ("exponential", "step"):
        kind += f", rate {s.decay_rate:g}"
    if s.kind == "step":
        kind += f", {s.steps} steps"
    if s.kind == "restarts":
        kind += f", {s.cycles} cycles"
    if s.kind == "piecewise":
        kind += ": " + ", ".join(f"{v:.3g}" for v in s.values)
    if s.kind == "graph" and s.expr is not None:
        kind += ": " + expr_text(s.expr, graph.constants)
    lines = [f"schedule: {kind}"]
    if s.warmup_steps:
        lines.append(f"warmup: {s.warmup_steps} steps")
    momentum = graph.momentum if graph.momentum == "none" else f"{graph.momentum} {h.momentum:g}"
    lines.append(f"momentum: {momentum}")
    wd = f", wd: {h.weight_decay:g}" if h.weight_decay else ""
    lines.append(f"lr: {h.learning_rate:g}{wd}")
    return "\n".join(lines)


def _layout(graph: Graph, show_inactive: bool) -> tuple[dict[str, tuple[float, float]], set[str]]:
    """Positions of the drawn references (leaves in layer 0, nodes by longest
    path from the leaves) and the set of active references."""
    expr = graph.update
    active_idx = graph_lib.active_nodes(expr, graph.states)
    active = {graph_lib.node_ref(i) for i in active_idx}
    active |= graph_lib.expr_inputs(expr, graph.states)
    used = graph_lib.used_operands(graph)
    active |= {name for name, _ in graph.decays if name in used}
    active |= {f"s{i}" for i in range(len(graph.states))}
    shown = [i for i in range(len(expr.nodes)) if show_inactive or i in active_idx]
    leaves: set[str] = {f"s{i}" for i in range(len(graph.states))}
    for i in shown:
        for ref in (expr.nodes[i].a, expr.nodes[i].b):
            if graph_lib.node_index(ref) is None:
                leaves.add(ref)
    if graph_lib.node_index(expr.root) is None:
        leaves.add(expr.root)
    leaves |= {r for r in graph.states if graph_lib.node_index(r) is None}
    leaves |= {name for name, _ in graph.decays if show_inactive or name in active}
    layer: dict[str, int] = dict.fromkeys(leaves, 0)
    for i in shown:  # nodes only read earlier nodes, so one pass in order is enough
        node = expr.nodes[i]
        layer[graph_lib.node_ref(i)] = 1 + max(layer.get(node.a, 0), layer.get(node.b, 0))
    order = {"operand": 0, "constant": 1, "state": 2}
    operand_order = {name: k for k, name in enumerate(graph_lib.ops.OPERANDS)}
    pos: dict[str, tuple[float, float]] = {}
    columns: dict[int, list[str]] = {}
    for ref, k in layer.items():
        columns.setdefault(k, []).append(ref)
    for k in sorted(columns):
        refs = columns[k]
        if k == 0:
            refs.sort(key=lambda r: (order[_leaf_kind(r)], operand_order.get(r, 0), r))
        else:  # barycentre of the inputs, which keeps crossings down
            def centre(ref: str) -> float:
                node = expr.nodes[graph_lib.node_index(ref)]
                return (pos[node.a][1] + pos[node.b][1]) / 2

            refs.sort(key=lambda r: (-centre(r), graph_lib.node_index(r)))
        top = (len(refs) - 1) / 2 * _DY
        for j, ref in enumerate(refs):
            pos[ref] = (k * _DX, top - j * _DY)
    return pos, active


def _box(ax: Axes, xy: tuple[float, float], label: str, *, gid: str, face: str, active: bool,
         edge: str = "#333333", linewidth: float = 1.0, linestyle: str = "-",
         size: tuple[float, float] = (_BOX_W, _BOX_H), fontsize: float = 7.0) -> None:
    from matplotlib.patches import FancyBboxPatch  # noqa: PLC0415

    w, h = size
    patch = FancyBboxPatch(
        (xy[0] - w / 2, xy[1] - h / 2), w, h,
        boxstyle="round,pad=0.02,rounding_size=0.08",
        facecolor=face if active else INACTIVE_FACE,
        edgecolor=edge if active else "#999999",
        linewidth=linewidth, linestyle=linestyle,
        alpha=1.0 if active else INACTIVE_ALPHA, zorder=2, gid=gid,
    )
    ax.add_patch(patch)
    ax.text(xy[0], xy[1], label, ha="center", va="center", fontsize=fontsize, zorder=3,
            color="black" if active else "#777777", alpha=1.0 if active else INACTIVE_ALPHA * 2,
            gid=f"{gid}:label", family="monospace")


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *, gid: str,
           active: bool, color: str = "#444444", linestyle: str = "-", rad: float = 0.0) -> None:
    from matplotlib.patches import FancyArrowPatch  # noqa: PLC0415

    ax.add_patch(FancyArrowPatch(
        start, end, arrowstyle="-|>", mutation_scale=9, linewidth=1.0,
        color=color if active else "#999999", alpha=1.0 if active else INACTIVE_ALPHA,
        linestyle=linestyle, connectionstyle=f"arc3,rad={rad}", zorder=1, gid=gid,
    ))


def _decay_box(ax: Axes, xy: tuple[float, float], text: str, *, gid: str, active: bool) -> None:
    """A decay sub-graph: a dashed box left of the operand it multiplies."""
    lines = textwrap.wrap(text, _DECAY_CHARS, break_on_hyphens=False) or [text]
    label = ax.text(
        xy[0] - _BOX_W / 2 - 0.12, xy[1], "× " + "\n  ".join(lines), ha="right", va="center",
        fontsize=5.5, family="monospace", gid=gid, zorder=3,
        color="black" if active else "#777777", alpha=1.0 if active else INACTIVE_ALPHA * 2,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": DECAY_FACE if active else INACTIVE_FACE,
              "edgecolor": "#c0392b" if active else "#999999", "linestyle": "--"},
    )
    label.get_bbox_patch().set_gid(f"{gid}:box")


def draw_graph(graph: Graph, ax: Axes | None = None, *, show_inactive: bool = True) -> Figure:
    """Draws an optimizer graph as a layered DAG, left (operands) to right (root).

    Leaves (operands, constants with their values, states ``s_i``) form the
    first layer; each hidden node ``op(left(a), right(b))`` sits one layer
    right of its deepest input, labelled ``n<i>: op`` and its unary operators
    (the per-leaf operators as ``orth(a)``, ``rms_row(a)``, ``‖a‖``,
    ``a·‖b‖/‖a‖`` for ``trust`` and ``a if 2-D else b`` for ``if_matrix``),
    with its ``a`` and ``b`` inputs entering its upper and lower half. The root
    has a red outline and feeds the marker :data:`ROOT_LABEL`. Nodes that
    neither the root nor a state reach are grey and translucent (alpha
    :data:`INACTIVE_ALPHA`). Each state is a dashed purple arrow from the node
    that computes it back to its ``s_i`` leaf; each decay is a small box under
    the operand it multiplies; the schedule, momentum and learning rate are a
    text box with a mini plot of the learning-rate multiplier.

    Args:
      graph: a valid :class:`~symopt.graph.Graph`.
      ax: the axes to draw into; None makes a new figure sized to the graph.
      show_inactive: draw inactive nodes (and decays on unused operands).

    Returns:
      The figure drawn into.

    Raises:
      symopt.GraphError: if ``graph`` is malformed.
    """
    graph_lib.validate(graph)
    pos, active = _layout(graph, show_inactive)
    expr = graph.update
    layers = max(x for x, _ in pos.values()) / _DX + 2  # the root marker adds one
    rows = max(sum(1 for p in pos.values() if p[0] == x) for x, _ in pos.values())
    decays = dict(graph.decays)
    width = 2.4 * layers + (1.9 if decays else 0.0) + 1
    fig, ax = _new_axes(ax, (max(6.0, width), max(3.5, 0.62 * rows + 2.2)))
    for ref, xy in pos.items():
        i = graph_lib.node_index(ref)
        is_active = ref in active
        is_root = ref == expr.root
        style = {"edge": ROOT_EDGE, "linewidth": 2.5} if is_root else {}
        if i is None:
            face = {"operand": LEAF_FACE, "constant": CONSTANT_FACE, "state": STATE_FACE}
            kind = _leaf_kind(ref)
            _box(ax, xy, _leaf_label(ref, graph), gid=f"{kind}:{ref}", face=face[kind],
                 active=is_active, **style)
        else:
            node = expr.nodes[i]
            _box(ax, xy, _node_label(i, node), gid=f"node:{ref}", face=ACTIVE_FACE,
                 active=is_active, **style)
            for side, ref_in, dy in (("a", node.a, _BOX_H / 4), ("b", node.b, -_BOX_H / 4)):
                sx, sy = pos[ref_in]
                end = (xy[0] - _BOX_W / 2, xy[1] + dy)
                _arrow(ax, (sx + _BOX_W / 2, sy), end, gid=f"edge:{ref_in}->{ref}:{side}",
                       active=is_active)
                ax.text(end[0] - 0.05, end[1], side, fontsize=6, ha="right", va="center",
                        color="#555555", alpha=1.0 if is_active else INACTIVE_ALPHA)
        if ref in decays and i is None:
            _decay_box(ax, xy, expr_text(decays[ref], graph.constants), gid=f"decay:{ref}",
                       active=is_active)
    rx, ry = pos[expr.root]
    out = (max(x for x, _ in pos.values()) + _DX, ry)  # right of every column: on no box
    _box(ax, out, ROOT_LABEL, gid="root", face="white", active=True, edge=ROOT_EDGE,
         linewidth=1.5)
    _arrow(ax, (rx + _BOX_W / 2, ry), (out[0] - _BOX_W / 2, ry), gid="edge:root",
           active=True, color=ROOT_EDGE)
    for j, ref in enumerate(graph.states):
        sx, sy = pos[ref]
        tx, ty = pos[f"s{j}"]
        start, end = (sx, sy - _BOX_H / 2), (tx + _BOX_W / 4, ty - _BOX_H / 2)
        bend = 1.6 / max(math.dist(start, end), 1e-6)  # the arc sags at most 0.8 below
        _arrow(ax, start, end, gid=f"recurrence:s{j}", active=True, color=STATE_EDGE,
               linestyle="--", rad=-min(0.35, bend))
    xs = [x for x, _ in pos.values()] + [out[0]]
    ys = [y for _, y in pos.values()]
    left = _BOX_W + (_DECAY_W if any(ref in decays for ref in pos) else 0.0)
    ax.set_xlim(min(xs) - left, max(xs) + _BOX_W)
    ax.set_ylim(min(ys) - 1.6, max(ys) + 1.6)
    ax.axis("off")
    _schedule_box(ax, graph)
    return fig


def _schedule_box(ax: Axes, graph: Graph) -> None:
    """The schedule, momentum and learning rate as a text box in ``ax``'s
    corner, with a mini plot of the learning-rate multiplier unless it is 1."""
    ax.text(0.01, 0.99, _schedule_text(graph), transform=ax.transAxes, ha="left", va="top",
            fontsize=7, family="monospace", gid="schedule",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#999999"})
    if graph.schedule.kind != "constant" or graph.schedule.warmup_steps:
        inset = ax.inset_axes((0.78, 0.8, 0.2, 0.18))
        steps = np.arange(200)
        inset.plot(steps, _schedule_values(graph, steps, 200), color="#1f77b4", lw=1,
                   gid="schedule:mini")
        inset.set_xticks([])
        inset.tick_params(labelsize=5)
        inset.set_title("lr multiplier", fontsize=6)


# --------------------------------------------------------------------------
# Equations.


def equation_latex(graph: Graph) -> str:
    """The optimizer's equations as a LaTeX ``aligned`` block (:func:`symopt.to_latex`)."""
    return symbolic.to_latex(graph)


def show_equation(graph: Graph) -> Any:
    """The equations as an ``IPython.display.Math`` (Jupyter renders it).

    Returns:
      An ``IPython.display.Math``, or the LaTeX string if IPython is missing.
    """
    latex = equation_latex(graph)
    try:
        from IPython.display import Math  # noqa: PLC0415
    except ImportError:
        return latex
    return Math(latex)


# --------------------------------------------------------------------------
# Schedules and decays.


def _schedule_values(graph: Graph, steps: np.ndarray, total_steps: int) -> np.ndarray:
    values = interpret.schedule_multiplier(
        graph.schedule, np, steps, total_steps, graph.constants
    )
    return np.broadcast_to(np.asarray(values, dtype=float), steps.shape)


def decay_values(graph: Graph, steps: np.ndarray, total_steps: int) -> dict[str, np.ndarray]:
    """Each applied decay (on an operand in use) at ``steps``, as the optimizer computes it."""
    t = np.asarray(steps, dtype=float)
    p = interpret.plan(graph)
    return {
        name: np.broadcast_to(
            np.asarray(interpret.evaluate_scalar(e, np, t, t / total_steps, graph.constants),
                       dtype=float),
            t.shape,
        )
        for name, e in p.decays
    }


def plot_schedule(graph: Graph, total_steps: int | None = None,
                  ax: Axes | None = None) -> Figure:
    """The learning-rate multiplier and every applied decay over training.

    The values come from :func:`symopt.interpret.schedule_multiplier` and
    :func:`symopt.interpret.evaluate_scalar`, the functions the optimizer runs,
    at every step ``0 .. total_steps - 1``. The multiplier's line has gid
    ``"schedule"``, each decay's ``"decay:<operand>"``.

    Args:
      graph: a valid :class:`~symopt.graph.Graph`.
      total_steps: the length of training ``T``; None: the ``T`` that
        :func:`symopt.to_optax` lays the graph over when given none (the
        length it was found at, :func:`symopt.graph.total_steps_for`).
      ax: the axes to draw into; None makes a new figure.

    Returns:
      The figure drawn into.
    """
    graph_lib.validate(graph)
    total_steps = graph_lib.total_steps_for(graph, total_steps)
    fig, ax = _new_axes(ax, (6.0, 3.5))
    steps = np.arange(total_steps)
    ax.plot(steps, _schedule_values(graph, steps, total_steps), lw=2, gid="schedule",
            label=f"lr multiplier ({graph.schedule.kind})")
    for name, values in decay_values(graph, steps, total_steps).items():
        ax.plot(steps, values, lw=1.2, ls="--", gid=f"decay:{name}", label=f"decay on {name}")
    ax.set_xlabel("step t")
    ax.set_ylabel("multiplier")
    ax.set_title(f"schedule (T = {total_steps}, lr = {graph.hparams.learning_rate:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------
# Searches.


def generation_number(generation: int) -> int:
    """The number a person reads for an archived generation: the archive counts
    from 0, the command line's progress lines (``gen 1/10``) and every view
    here from 1."""
    return generation + 1


@contextlib.contextmanager
def _archive(archive_or_workdir: Archive | str | os.PathLike[str]) -> Iterator[Archive]:
    """The archive given, or the one of a workdir (opened here and closed after).

    Raises ArchiveError for a workdir without an archive: looking creates nothing.
    """
    from symopt.archive import Archive  # noqa: PLC0415

    if isinstance(archive_or_workdir, Archive):
        yield archive_or_workdir
        return
    with Archive.open(archive_or_workdir, create=False) as archive:
        yield archive


def plot_fitness(
    archive_or_workdir: Archive | str | os.PathLike[str], ax: Axes | None = None
) -> Figure:
    """Best and median evaluated fitness per generation, and the rejected share.

    Generations are numbered from 1, as the command line's progress lines
    number them (the archive stores them from 0).
    From :meth:`symopt.archive.Archive.generations`; a generation with no
    evaluated candidate is a gap. The rejected share (rejected / all
    candidates of the generation) is on a second y axis. Lines have gids
    ``"best"``, ``"median"`` and ``"rejected"``.

    Args:
      archive_or_workdir: an open :class:`~symopt.archive.Archive`, or a run's workdir.
      ax: the axes to draw into; None makes a new figure.

    Returns:
      The figure drawn into.
    """
    with _archive(archive_or_workdir) as archive:
        summaries = archive.generations()
    fig, ax = _new_axes(ax, (6.0, 3.5))
    gens = np.array([generation_number(s.generation) for s in summaries], dtype=float)

    def column(values: list[float | None]) -> np.ndarray:
        return np.array([math.nan if v is None else v for v in values], dtype=float)

    ax.plot(gens, column([s.best for s in summaries]), "o-", ms=3, gid="best", label="best")
    ax.plot(gens, column([s.median for s in summaries]), "s-", ms=3, gid="median",
            label="median")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (higher is better)")
    ax.grid(alpha=0.3)
    share = ax.twinx()
    rejected = np.array([s.rejected / s.count if s.count else math.nan for s in summaries])
    share.plot(gens, rejected, ":", color="#d62728", gid="rejected", label="rejected share")
    share.set_ylabel("rejected share", color="#d62728")
    share.set_ylim(0, 1.05)
    lines = ax.get_lines() + share.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower right")
    return fig


def plot_lineage(
    archive_or_workdir: Archive | str | os.PathLike[str],
    candidate_id: int,
    ax: Axes | None = None,
) -> Figure:
    """The ancestry DAG of a candidate, from :meth:`symopt.archive.Archive.lineage`.

    One box per stored ancestor (gid ``"candidate:<id>"``), in columns by
    generation, labelled with its id, generation (from 1, as
    :func:`generation_number`), origin and fitness; arrows
    go from parent to child; the candidate itself has a red outline. A parent
    that is not stored is a dashed box labelled ``#<id> (not stored)``.

    Args:
      archive_or_workdir: an open :class:`~symopt.archive.Archive`, or a run's workdir.
      candidate_id: the candidate whose ancestry to draw.
      ax: the axes to draw into; None makes a new figure.

    Returns:
      The figure drawn into.

    Raises:
      KeyError: no candidate ``candidate_id`` is stored.
    """
    with _archive(archive_or_workdir) as archive:
        lineage = archive.lineage(candidate_id)
        records = {cid: archive.get(cid) for cid in lineage}
    missing = {p for parents in lineage.values() for p in parents} - set(lineage)
    column: dict[int, int] = {cid: rec.generation for cid, rec in records.items()}
    for cid in sorted(missing):
        children = [c for c, parents in lineage.items() if cid in parents]
        column[cid] = min(column[c] for c in children) - 1
    by_column: dict[int, list[int]] = {}
    for cid, col in column.items():
        by_column.setdefault(col, []).append(cid)
    pos: dict[int, tuple[float, float]] = {}
    for k, col in enumerate(sorted(by_column)):
        ids = sorted(by_column[col])
        top = (len(ids) - 1) / 2 * _DY
        for j, cid in enumerate(ids):
            pos[cid] = (k * _DX, top - j * _DY)
    rows = max(len(ids) for ids in by_column.values())
    fig, ax = _new_axes(ax, (max(5.0, 1.9 * len(by_column) + 1), max(3.0, 0.62 * rows + 1.5)))
    for cid, xy in pos.items():
        rec = records.get(cid)
        if rec is None:
            _box(ax, xy, f"#{cid} (not stored)", gid=f"missing:{cid}", face="white",
                 active=True, linestyle="--")
            continue
        fitness = "-" if rec.fitness is None else f"{rec.fitness:.4g}"
        label = f"#{cid} g{generation_number(rec.generation)}\n{rec.origin}\nfit {fitness}"
        style = {"edge": ROOT_EDGE, "linewidth": 2.5} if cid == candidate_id else {}
        _box(ax, xy, label, gid=f"candidate:{cid}", face=ACTIVE_FACE,
             active=rec.status == "evaluated", size=(_BOX_W, 0.8), **style)
    for cid, parents in lineage.items():
        x, y = pos[cid]
        for parent in parents:
            px, py = pos[parent]
            _arrow(ax, (px + _BOX_W / 2, py), (x - _BOX_W / 2, y),
                   gid=f"edge:{parent}->{cid}", active=True)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - _BOX_W, max(xs) + _BOX_W)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.axis("off")
    ax.set_title(f"lineage of candidate {candidate_id}", fontsize=9)
    return fig
