"""symopt.viz: graph drawings, equations, schedules, fitness and lineage plots."""

import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from symopt import graph as graph_lib  # noqa: E402
from symopt import interpret, progress, symbolic, viz, zoo  # noqa: E402
from symopt.archive import Archive, ArchiveError, CandidateRecord  # noqa: E402
from symopt.graph import Graph, Schedule, nodes  # noqa: E402
from symopt.spaces.nos import NosSpace  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RANDOM_SEEDS = range(10)

# n0 is dead: the root n1 does not read it.
WITH_DEAD_NODE = Graph(
    update=nodes(
        ("add", "identity", "g", "identity", "m"),
        ("mul", "exp", "m", "identity", "v"),
    ),
)


def graphs() -> list:
    cases = [pytest.param(zoo.get(name), id=name) for name in zoo.names()]
    cases += [
        pytest.param(NosSpace().sample(np.random.default_rng(i)), id=f"nos{i}")
        for i in RANDOM_SEEDS
    ]
    return cases


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def patches(fig: Figure) -> dict[str, object]:
    return {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}


def line(fig: Figure, gid: str):
    (found,) = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    return found


# --------------------------------------------------------------------------
# draw_graph.


LEAF_UNARY_TEXT = {"rms_rows": "rms_row(", "rms_cols": "rms_col(", "norm": "‖"}  # else "op("


@pytest.mark.parametrize("graph", graphs())
def test_draw_graph_labels_every_active_node_and_the_root(graph):
    fig = viz.draw_graph(graph)
    assert isinstance(fig, Figure)
    labels = texts(fig)
    active = graph_lib.active_nodes(graph.update, graph.states)
    for i in active:
        node = graph.update.nodes[i]
        assert any(text.startswith(f"n{i}: {node.op}\n") for text in labels), (i, labels)
        for unary in (node.left, node.right):
            if unary != "identity":
                written = LEAF_UNARY_TEXT.get(unary, f"{unary}(")
                assert any(f"n{i}: " in text and written in text for text in labels)
    assert viz.ROOT_LABEL in labels
    drawn = patches(fig)
    root = graph.update.root
    gids = [f"{kind}:{root}" for kind in ("node", "operand", "state", "constant")]
    (box,) = [drawn[gid] for gid in gids if gid in drawn]  # the root's box, whatever its kind
    assert to_hex(box.get_edgecolor()) == viz.ROOT_EDGE


def _boxes(fig: Figure) -> dict[str, tuple[float, float, float, float]]:
    """The node, leaf and root boxes as (x0, y0, x1, y1) in data units."""
    from matplotlib.patches import FancyBboxPatch

    return {p.get_gid(): (p.get_x(), p.get_y(), p.get_x() + p.get_width(),
                          p.get_y() + p.get_height())
            for ax in fig.axes for p in ax.patches
            if isinstance(p, FancyBboxPatch) and p.get_gid() and ":box" not in p.get_gid()}


OVERLAP_CASES = [pytest.param(g, id=f"nos_many{i}") for i, g in enumerate(
    NosSpace(max_nodes=8, max_states=1).sample(np.random.default_rng(100 + i))
    for i in range(20))] + [pytest.param(WITH_DEAD_NODE, id="dead_node"), pytest.param(
        Graph(update=nodes(("add", "identity", "g", "identity", "m")), states=()), id="tiny")]


@pytest.mark.parametrize("graph", graphs() + OVERLAP_CASES)
def test_draw_graph_never_draws_a_box_over_another(graph):
    boxes = _boxes(viz.draw_graph(graph))
    items = sorted(boxes.items())
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        for b, (bx0, by0, bx1, by1) in items[i + 1:]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)


@pytest.mark.parametrize("graph", graphs())
def test_draw_graph_shows_states_decays_and_the_schedule(graph):
    fig = viz.draw_graph(graph)
    drawn = patches(fig)
    for j in range(len(graph.states)):
        assert f"state:s{j}" in drawn  # the leaf
        assert drawn[f"recurrence:s{j}"].get_linestyle() == "--"  # the arrow back to it
    gids = {t.get_gid() for ax in fig.axes for t in ax.texts}
    for name, _ in graph.decays:
        assert f"decay:{name}" in gids
    (schedule,) = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "schedule"]
    assert f"schedule: {graph.schedule.kind}" in schedule.get_text()


# Adam and a random graph by default (every graph is drawn by the tests above), the
# rest saved under `pytest -m slow`: writing the files is the cost.
@pytest.mark.parametrize("graph", [
    p if p.id in ("adam", "nos0") else pytest.param(*p.values, id=p.id, marks=pytest.mark.slow)
    for p in graphs()])
def test_draw_graph_saves_png_and_svg(graph, tmp_path):
    fig = viz.draw_graph(graph)
    fig.savefig(tmp_path / "g.png", dpi=40)
    fig.savefig(tmp_path / "g.svg")
    assert (tmp_path / "g.png").read_bytes().startswith(PNG_MAGIC)
    svg = (tmp_path / "g.svg").read_bytes()
    assert b"<svg" in svg[:2000] and svg.rstrip().endswith(b"</svg>")


def test_per_leaf_operators_are_labelled_by_what_they_compute():
    graph = Graph(update=nodes(
        ("if_matrix", "orth", "m", "rms", "g"),
        ("trust", "identity", "n0", "norm", "w_0.1"),
        ("mul", "rms_rows", "n1", "rms_cols", "v"),
    ))
    labels = texts(viz.draw_graph(graph))
    assert "n0: if_matrix\north(a) if 2-D else rms(b)" in labels
    assert "n1: trust\na·‖‖b‖‖/‖a‖" in labels
    assert "n2: mul\nrms_row(a), rms_col(b)" in labels


def test_inactive_nodes_are_grey_and_translucent():
    drawn = patches(viz.draw_graph(WITH_DEAD_NODE))
    dead, live = drawn["node:n0"], drawn["node:n1"]
    assert dead.get_alpha() == viz.INACTIVE_ALPHA and live.get_alpha() == 1.0
    assert to_hex(dead.get_facecolor()) == viz.INACTIVE_FACE
    assert to_hex(live.get_facecolor()) == viz.ACTIVE_FACE
    assert drawn["operand:g"].get_alpha() == viz.INACTIVE_ALPHA  # read only by n0
    assert drawn["operand:m"].get_alpha() == 1.0


def test_show_inactive_false_leaves_dead_nodes_out():
    drawn = patches(viz.draw_graph(WITH_DEAD_NODE, show_inactive=False))
    assert "node:n1" in drawn and "node:n0" not in drawn and "operand:g" not in drawn


def test_draw_graph_draws_into_a_given_axes():
    fig, ax = plt.subplots()
    assert viz.draw_graph(zoo.adam(), ax) is fig
    assert viz.ROOT_LABEL in [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------
# Equations.


def test_equation_latex_is_to_latex_and_show_equation_renders_it():
    graph = zoo.ades()
    assert viz.equation_latex(graph) == symbolic.to_latex(graph)
    shown = viz.show_equation(graph)
    ipython = pytest.importorskip("IPython.display")
    assert isinstance(shown, ipython.Math) and shown.data == symbolic.to_latex(graph)


# --------------------------------------------------------------------------
# Schedules.


SCHEDULE_GRAPHS = [
    pytest.param(zoo.terms_ga(), id="terms_ga"),
    pytest.param(zoo.adam().replace(schedule=Schedule("restarts", warmup_steps=7)), id="sgdr"),
    pytest.param(zoo.adam().replace(schedule=Schedule("piecewise", values=(1.0, 0.3))), id="pw"),
    *[
        pytest.param(NosSpace().sample(np.random.default_rng(i)), id=f"nos{i}")
        for i in RANDOM_SEEDS
    ],
]


@pytest.mark.parametrize("graph", SCHEDULE_GRAPHS)
def test_plot_schedule_is_what_the_optimizer_computes(graph):
    total = 300
    fig = viz.plot_schedule(graph, total_steps=total)
    steps = np.array([0, 1, 5, 50, 149, 150, 299])
    curve = line(fig, "schedule")
    xs, ys = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    np.testing.assert_array_equal(xs, np.arange(total))
    for step in steps:
        expected = interpret.schedule_multiplier(
            graph.schedule, np, step, total, graph.constants
        )
        np.testing.assert_allclose(ys[step], expected, rtol=1e-12)
    plan = interpret.plan(graph)
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines()}
    assert gids == {"schedule"} | {f"decay:{name}" for name, _ in plan.decays}
    for name, _ in plan.decays:
        ys = np.asarray(line(fig, f"decay:{name}").get_ydata())
        for step in steps:
            expected = interpret.step_scalars(plan, np, step, total).decays[name]
            np.testing.assert_allclose(ys[step], expected, rtol=1e-12)


def test_plot_schedule_without_a_length_draws_the_length_the_graph_was_found_at():
    found = zoo.adam().replace(schedule=Schedule("cosine"), total_steps=200)
    curve = line(viz.plot_schedule(found), "schedule")
    np.testing.assert_array_equal(curve.get_xdata(), np.arange(200))
    np.testing.assert_allclose(curve.get_ydata()[-1], interpret.schedule_multiplier(
        found.schedule, np, 199, 200, found.constants), rtol=1e-12)


def test_random_graphs_include_some_with_decays():
    # Keeps the schedule test above honest: it checks decay curves too.
    sampled = [NosSpace().sample(np.random.default_rng(i)) for i in RANDOM_SEEDS]
    assert any(interpret.plan(g).decays for g in sampled)


# --------------------------------------------------------------------------
# Searches.


def record(id: int, generation: int, **changes) -> CandidateRecord:
    fields = dict(
        id=id,
        generation=generation,
        space="nos",
        origin="sample",
        parents=(),
        genome={"id": id},
        graph=zoo.adam().to_dict(),
        fingerprint=f"fp{id}",
        status="evaluated",
        fitness=float(id % 5) - 1.5,
    )
    fields.update(changes)
    return CandidateRecord(**fields)


@pytest.fixture
def archive(tmp_path):
    rejected = {"status": "rejected", "reason": "zero_update", "fitness": None}
    records = [
        record(0, 0, origin="seed"),
        record(1, 0, origin="seed"),
        record(2, 0, **rejected),
        record(3, 1, origin="mutation", parents=(0,)),
        record(4, 1, origin="mutation", parents=(1,)),
        record(5, 1, origin="mutation", parents=(1,), fitness=math.nan, status="diverged"),
        record(6, 2, origin="crossover", parents=(3, 4)),
        record(7, 2, origin="mutation", parents=(1,), fitness=9.0),
        record(8, 2, origin="mutation", parents=(6,)),
        record(9, 3, **rejected),  # a generation with nothing evaluated
        record(10, 4, origin="mutation", parents=(8,)),
    ]
    with Archive.open(tmp_path / "run") as a:
        a.add_candidates(records)
        yield a


def test_plot_fitness_numbers_generations_from_one_like_the_command_line(archive):
    fig = viz.plot_fitness(archive)
    stored = [s.generation for s in archive.generations()]
    assert stored[0] == 0  # the archive counts from 0, "gen 1/N" is the first one printed
    np.testing.assert_array_equal(line(fig, "best").get_xdata(), [g + 1 for g in stored])
    assert progress.line(0, 5, [], 0, archive.get(0), 1.0, None).startswith("gen 1/5")


def test_plot_fitness_plots_best_median_and_rejected_share(archive):
    fig = viz.plot_fitness(archive)
    summaries = archive.generations()
    gens = [viz.generation_number(s.generation) for s in summaries]
    for gid, field in (("best", "best"), ("median", "median")):
        curve = line(fig, gid)
        np.testing.assert_array_equal(curve.get_xdata(), gens)
        expected = [math.nan if getattr(s, field) is None else getattr(s, field) for s in summaries]
        np.testing.assert_array_equal(curve.get_ydata(), expected)
    share = line(fig, "rejected").get_ydata()
    np.testing.assert_allclose(share, [s.rejected / s.count for s in summaries])
    assert line(fig, "rejected").axes is not line(fig, "best").axes  # a second y axis
    assert math.isnan(line(fig, "best").get_ydata()[gens.index(viz.generation_number(3))])


def test_plot_fitness_reads_a_workdir(archive, tmp_path):
    fig = viz.plot_fitness(tmp_path / "run")
    expected = [s.best for s in archive.generations()]
    got = line(fig, "best").get_ydata()
    assert [None if math.isnan(v) else v for v in got] == expected


def test_plot_lineage_draws_exactly_the_ancestors(archive):
    fig = viz.plot_lineage(archive, 10)
    drawn = patches(fig)
    boxes = {int(g.split(":")[1]) for g in drawn if g.startswith("candidate:")}
    lineage = archive.lineage(10)
    assert boxes == set(lineage) == {10, 8, 6, 3, 4, 0, 1}
    edges = {g for g in drawn if g.startswith("edge:")}
    assert edges == {f"edge:{p}->{c}" for c, parents in lineage.items() for p in parents}
    labels = texts(fig)
    for cid in lineage:
        rec = archive.get(cid)
        label = f"#{cid} g{rec.generation + 1}\n{rec.origin}\nfit {rec.fitness:.4g}"
        assert label in labels  # generations from 1, as the command line numbers them
    assert to_hex(drawn["candidate:10"].get_edgecolor()) == viz.ROOT_EDGE


def test_plot_lineage_of_an_unknown_candidate_raises(archive):
    with pytest.raises(KeyError):
        viz.plot_lineage(archive, 999)


def test_plots_save_to_png(archive, tmp_path):
    for fig in (viz.plot_fitness(archive), viz.plot_lineage(archive, 10),
                viz.plot_schedule(zoo.terms_ga(), total_steps=1000)):
        fig.savefig(tmp_path / "p.png", dpi=40)
        assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_import_symopt_does_not_import_matplotlib():
    code = "import sys, symopt; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plotting_a_workdir_without_an_archive_raises_and_creates_nothing(tmp_path):
    missing = tmp_path / "no_run"
    with pytest.raises(ArchiveError, match="no symopt archive"):
        viz.plot_fitness(missing)
    assert not missing.exists()
