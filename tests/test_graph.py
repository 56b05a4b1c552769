"""Graph: validation with named fields, JSON round-trip, canonical form."""

import builtins
import copy
import dataclasses
import json
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import export, integrity, zoo
from symopt import graph as graph_lib
from symopt.graph import Expr, Graph, GraphError, Hyperparams, Node, Schedule, nodes, simple
from symopt.spaces import nos

RANDOM_GRAPHS = [nos.sample(np.random.default_rng(seed)) for seed in range(200)]


def _adam_plus_node(*specs, **kwargs):
    return Graph(update=nodes(*specs), **kwargs)


MALFORMED = {
    "update.nodes[0].op": _adam_plus_node(("plus", "identity", "g", "identity", "m")),
    "update.nodes[0].left": _adam_plus_node(("add", "cube", "g", "identity", "m")),
    "update.nodes[0].a": _adam_plus_node(("add", "identity", "grad", "identity", "m")),
    "update.nodes[0].b": _adam_plus_node(("add", "identity", "g", "identity", "n0")),
    "update.nodes[1].a": _adam_plus_node(
        ("add", "identity", "g", "identity", "m"), ("add", "identity", "n2", "identity", "g")
    ),
    "update.root": Graph(update=Expr((), "n0")),
    "update.nodes[0].b'": _adam_plus_node(("add", "identity", "g", "identity", "c0")),
    "states[0]": simple("g", states=("n4",)),
    "update.nodes[0].a'": _adam_plus_node(("add", "identity", "s0", "identity", "g")),
    "constants[0]": simple("g", constants=(float("nan"),)),
    "momentum": simple("g", momentum="heavy"),
    "schedule.kind": simple("g", schedule=Schedule(kind="warm")),
    "schedule.warmup_steps": simple("g", schedule=Schedule(warmup_steps=-1)),
    "schedule.expr": simple("g", schedule=Schedule(kind="cosine", expr=Expr((), "t"))),
    "schedule.expr.root": simple("g", schedule=Schedule(kind="graph", expr=Expr((), "g"))),
    "schedule.values": simple("g", schedule=Schedule(kind="piecewise")),
    "schedule.values'": simple("g", schedule=Schedule(kind="cosine", values=(1.0,))),
    "schedule.values''": simple("g", schedule=Schedule(kind="piecewise", values=(1.0,) * 17)),
    "schedule.values'''": simple("g", schedule=Schedule(kind="piecewise", values=[1.0])),
    "schedule.values[1]": simple("g", schedule=Schedule(kind="piecewise", values=(1.0, -0.5))),
    "schedule.values[0]": simple("g", schedule=Schedule(kind="piecewise", values=(2e6,))),
    "schedule.values[0]'": simple(
        "g", schedule=Schedule(kind="piecewise", values=(float("nan"),))
    ),
    "hparams.beta1": simple("g", hparams=Hyperparams(beta1=1.0)),
    "hparams.learning_rate": simple("g", hparams=Hyperparams(learning_rate=-1e-3)),
    "hparams.eps": simple("g", hparams=Hyperparams(eps=0.0)),
    "hparams.bias_correction": simple("g", hparams=Hyperparams(bias_correction="yes")),
    "decays[0]": simple("g", decays=(("gradient", Expr((), "t")),)),
    "decays[1]": simple("g", decays=(("g", Expr((), "t")), ("g", Expr((), "t")))),
    "decays.g.nodes[0].left": simple(
        "g", decays=(("g", Expr((Node("add", "drop_0.5", "t", "identity", "t"),), "n0")),)
    ),
    "update.nodes": Graph(
        update=Expr(tuple(Node("add", "identity", "g", "identity", "g") for _ in range(40)), "n39")
    ),
}


@pytest.mark.parametrize("field,graph", list(MALFORMED.items()), ids=list(MALFORMED))
def test_validate_names_the_bad_field_on_one_line(field, graph):
    with pytest.raises(GraphError) as info:
        symopt.validate(graph)
    message = str(info.value)
    assert message.startswith(field.rstrip("'") + ":"), message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_graphs_validate(name):
    assert symopt.validate(zoo.get(name)) == zoo.get(name)


@pytest.mark.parametrize("index", range(0, 200, 7))
def test_random_graphs_round_trip_through_json(index):
    graph = RANDOM_GRAPHS[index]
    assert symopt.from_json(graph.to_json()) == graph


def test_all_random_graphs_round_trip_through_json():
    for graph in RANDOM_GRAPHS:
        assert symopt.from_dict(json.loads(json.dumps(symopt.to_dict(graph)))) == graph


def test_piecewise_schedule_round_trips_through_json():
    schedule = Schedule(kind="piecewise", warmup_steps=5, values=(1.0, 0.5, 0.0, 1e6))
    graph = zoo.sgd().replace(schedule=schedule)
    assert symopt.from_json(graph.to_json()) == graph
    assert isinstance(symopt.from_json(graph.to_json()).schedule.values, tuple)


def test_canonical_keeps_the_piecewise_values():
    graph = zoo.adam().replace(schedule=Schedule(kind="piecewise", values=(1.0, 0.1)))
    assert graph_lib.canonical(graph).schedule == graph.schedule


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "terms_ga.json"
    symopt.save(zoo.terms_ga(), path)
    assert symopt.load(path) == zoo.terms_ga()


def test_load_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "bad.json"
    data = symopt.to_dict(zoo.adam())
    data["hparams"]["beta2"] = 2.0
    path.write_text(json.dumps(data))
    with pytest.raises(GraphError, match=r"bad\.json: hparams\.beta2"):
        symopt.load(path)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda d: d.pop("update"), "update"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["update"]["nodes"].append({"op": "add"}), "update.nodes[0].left"),
        (lambda d: d["update"].update(nodes="add"), "update.nodes"),
        (lambda d: d.update(hparams=[]), "hparams"),
        (lambda d: d["hparams"].update(lr=1.0), "hparams.lr"),
        (lambda d: d.update(format="other/2"), "format"),
        (lambda d: d.update(states="n0"), "states"),
        (lambda d: d["schedule"].update(kind=3), "schedule.kind"),
        (lambda d: d["schedule"].update(values=0.5), "schedule.values"),
        (lambda d: d["schedule"].update(values=[0.5]), "schedule.values"),
    ],
)
def test_from_dict_errors_name_the_field(mutate, field):
    data = symopt.to_dict(zoo.adam())
    mutate(data)
    with pytest.raises(GraphError) as info:
        symopt.from_dict(data)
    assert str(info.value).startswith(field + ":"), str(info.value)


JUNK = [None, 1, -1.5, "x", [], {}, [1, 2], {"a": 1}, True, "n0", "g", float("inf"),
        2**31, -(2**40), 10**400, 1e308, "n00", "n\u0660", "s00", "c01", "n1", "s0", "c1", 0]
"""Replacement values: wrong types, edge numbers and references that look valid."""


def _fuzz(start: int, count: int, tmp_path, *, jit_steps: int) -> int:
    """Corrupts ``count`` zoo documents (seeded by ``start``); each that loads must
    work through check, fingerprint, the equations, export and ``jit_steps``
    steps of ``to_optax`` (eager when 0: one step), and each that does not must be
    a one-line GraphError. Returns how many loaded."""
    rng = np.random.default_rng(start)
    originals = [symopt.to_dict(zoo.get(n)) for n in zoo.names()]
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    path, loaded = tmp_path / "graph.json", 0
    for trial in range(start, start + count):
        data = copy.deepcopy(originals[trial % len(originals)])
        for _ in range(int(rng.integers(1, 4))):
            _corrupt(data, rng, JUNK)
        path.write_text(json.dumps(data))
        try:
            graph = symopt.load(path)
        except GraphError as e:
            assert "\n" not in str(e)
            continue
        loaded += 1
        symopt.check(graph)
        symopt.fingerprint(graph)
        symopt.to_text(graph)
        symopt.to_latex(graph)
        compile(export.to_source(graph), "exported", "exec")
        tx = symopt.to_optax(graph, total_steps=5)
        state = tx.init(params)
        update = jax.jit(tx.update) if jit_steps else tx.update
        for _ in range(max(jit_steps, 1)):
            updates, state = update(params, state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
    return loaded


@pytest.mark.filterwarnings("ignore::symopt.graph.TrainingLengthWarning")  # export of t/T graphs
# 150 corrupted documents by default, 600 (and 2,000 through jit, below) under
# `pytest -m slow`.
@pytest.mark.parametrize("start", [0, *(pytest.param(s, marks=pytest.mark.slow)
                                        for s in (150, 300, 450))])
def test_a_graph_that_loads_works_everywhere_and_one_that_does_not_is_a_graph_error(
        start, tmp_path):
    assert _fuzz(start, 150, tmp_path, jit_steps=0) > 0


@pytest.mark.filterwarnings("ignore::symopt.graph.TrainingLengthWarning")
@pytest.mark.slow
def test_two_thousand_corrupted_documents_load_or_fail_cleanly_through_three_jit_steps(
        tmp_path):
    assert _fuzz(10_000, 2_000, tmp_path, jit_steps=3) > 100


def _corrupt(data, rng, junk):
    """Replaces or deletes one random entry somewhere in a nested dict/list."""
    container = data
    while True:
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        if not keys:
            return
        key = keys[int(rng.integers(len(keys)))]
        child = container[key]
        if isinstance(child, (dict, list)) and child and rng.random() < 0.6:
            container = child
            continue
        if isinstance(container, dict) and rng.random() < 0.3:
            del container[key]
        else:
            container[key] = junk[int(rng.integers(len(junk)))]
        return


def test_from_json_reports_bad_json():
    with pytest.raises(GraphError, match="^json:"):
        symopt.from_json("{not json")


def test_from_json_reports_nesting_too_deep_for_a_graph():
    with pytest.raises(GraphError, match="nested too deeply"):
        symopt.from_json("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("ref", ["n00", "n01", "n\u0660", "s00", "c00", "n\uff11"])
def test_references_have_one_spelling(ref):
    assert graph_lib.node_index(ref) is None
    assert graph_lib.state_index(ref) is None and graph_lib.constant_index(ref) is None
    with pytest.raises(GraphError, match="unknown operand"):
        graph_lib.validate(simple(ref))


@pytest.mark.parametrize("field, value", [
    ("hparams.learning_rate", 2**31), ("hparams.clip_norm", 2**40), ("schedule.steps", 2**31),
    ("schedule.warmup_steps", 10**12), ("hparams.weight_decay", 10**400),
    ("schedule.cycles", 2**31)], ids=lambda x: x if isinstance(x, str) else f"{len(str(x))}digits")
def test_numbers_too_large_for_jax_are_refused_or_read_as_floats(field, value):
    data = symopt.to_dict(zoo.adam())
    section, key = field.split(".")
    data[section][key] = value
    try:
        graph = symopt.from_json(json.dumps(data))
    except GraphError as e:
        assert field in str(e)
        return
    assert isinstance(getattr(getattr(graph, section), key), float)
    tx = symopt.to_optax(graph)
    params = {"w": jnp.ones(3)}
    tx.update(params, tx.init(params), params)


def test_load_refuses_what_is_not_a_graph_file(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (graph_lib.MAX_FILE_BYTES + 1))
    with pytest.raises(GraphError, match="not a graph file"):
        symopt.load(big)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GraphError, match="not UTF-8"):
        symopt.load(binary)


# ---------------------------------------------------------------------------
# Canonical form.


def test_canonical_ignores_operand_order_of_commutative_ops():
    a = Graph(update=nodes(("add", "identity", "g", "sign", "m")))
    b = Graph(update=nodes(("add", "sign", "m", "identity", "g")))
    assert a != b
    assert symopt.canonical(a) == symopt.canonical(b)


def test_canonical_keeps_operand_order_of_non_commutative_ops():
    a = Graph(update=nodes(("sub", "identity", "g", "identity", "m")))
    b = Graph(update=nodes(("sub", "identity", "m", "identity", "g")))
    assert symopt.canonical(a) != symopt.canonical(b)


def test_canonical_drops_dead_nodes_and_renumbers():
    live = Graph(update=nodes(("mul", "identity", "g", "identity", "v")))
    with_dead = Graph(
        update=nodes(
            ("add", "exp", "g", "identity", "m"),  # dead
            ("mul", "identity", "g", "identity", "v"),
            ("sub", "identity", "n0", "identity", "n1"),  # dead
            root="n1",
        )
    )
    assert symopt.canonical(with_dead) == symopt.canonical(live)
    assert len(symopt.canonical(with_dead).update.nodes) == 1


def test_canonical_ignores_the_order_of_independent_nodes():
    a = Graph(
        update=nodes(
            ("mul", "identity", "g", "identity", "m"),
            ("div", "identity", "g", "sqrt_abs", "v"),
            ("sub", "identity", "n0", "identity", "n1"),
        )
    )
    b = Graph(
        update=nodes(
            ("div", "identity", "g", "sqrt_abs", "v"),
            ("mul", "identity", "g", "identity", "m"),
            ("sub", "identity", "n1", "identity", "n0"),
        )
    )
    assert symopt.canonical(a) == symopt.canonical(b)


def test_canonical_drops_unused_constants_and_decays():
    graph = Graph(
        update=nodes(("mul", "identity", "c1", "identity", "g")),
        constants=(5.0, 0.5),
        decays=(("m", Expr((), "decay_linear")),),
    )
    canon = symopt.canonical(graph)
    assert canon.constants == (0.5,)
    assert canon.update.nodes[0].a == "c0" or canon.update.nodes[0].b == "c0"
    assert canon.decays == ()


@pytest.mark.parametrize("index", range(0, 200, 9))
def test_canonical_is_idempotent_and_keeps_the_function(index):
    graph = RANDOM_GRAPHS[index]
    canon = symopt.canonical(graph)
    assert symopt.canonical(canon) == canon
    assert integrity.fingerprint(canon) == integrity.fingerprint(graph)


def test_graphs_are_hashable_and_immutable():
    graph = zoo.adam()
    assert hash(graph) == hash(zoo.adam())
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.momentum = "nesterov"


def test_used_operands_follow_states_and_decays():
    graph = zoo.lion()
    assert graph_lib.used_operands(graph) >= {"g", "s0", "c0", "c1", "c2", "c3"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_load_refuses_a_fifo_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "best.json"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            symopt.load(fifo)
        except Exception as e:  # noqa: BLE001 - the outcome is checked below
            outcome.append(e)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if reader.is_alive():  # blocked in open(): give it a writer and an EOF, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("load() waited for a writer on a FIFO")
    (error,) = outcome
    assert isinstance(error, GraphError) and "FIFO" in str(error)
    assert str(error).startswith(f"{fifo}: ") and "\n" not in str(error)


def test_load_refuses_a_directory_and_a_device_as_not_regular_files(tmp_path):
    with pytest.raises(GraphError, match="a directory, not a regular file"):
        symopt.load(tmp_path)
    if os.path.exists(os.devnull):
        with pytest.raises(GraphError, match="a character device, not a regular file"):
            symopt.load(os.devnull)


def test_load_checks_the_size_before_opening_the_file(tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(10 * graph_lib.MAX_FILE_BYTES)  # sparse: large, and nothing written

    def refuse(*args, **kwargs):
        raise AssertionError(f"opened {args[0]!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(GraphError, match=r"bytes, larger than \d+: not a graph file"):
        symopt.load(big)


LONG = "x" * 1_000_000


@pytest.mark.parametrize("mutate", [
    lambda d: d["update"].update(root=LONG),
    lambda d: d["update"]["nodes"].append(dict(op=LONG, left="identity", a="g",
                                               right="identity", b="g")),
    lambda d: d["update"]["nodes"].append(dict(op="add", left=LONG, a="g",
                                               right="identity", b="g")),
    lambda d: d["update"]["nodes"].append(dict(op="add", left="identity", a="g",
                                               right="identity", b=LONG)),
    lambda d: d["update"].update({LONG: 1}),
    lambda d: d.update({LONG: 1}),
    lambda d: d.update(decays={LONG: {"nodes": [], "root": "t"}}),
    lambda d: d.update(decays={"g": {"nodes": [], "root": LONG}}),
    lambda d: d.update(momentum=LONG),
    lambda d: d.update(format=LONG),
    lambda d: d["schedule"].update(kind=LONG),
    lambda d: d["schedule"].update({LONG: 1}),
    lambda d: d["hparams"].update(beta1=LONG),
    lambda d: d["hparams"].update(bias_correction=LONG),
    lambda d: d.update(states=[LONG]),
    lambda d: d.update(constants=[LONG]),
    lambda d: d.update(total_steps=LONG),
], ids=["root", "op", "unary", "ref", "expr_key", "key", "decay_key", "decay_root", "momentum",
        "format", "schedule_kind", "schedule_key", "number", "bool", "state", "constant",
        "total_steps"])
def test_an_error_cuts_a_long_user_string_and_says_how_long_it_was(mutate):
    data = symopt.to_dict(zoo.adam())
    mutate(data)
    with pytest.raises(GraphError) as info:
        symopt.from_dict(data)
    message = str(info.value)
    assert len(message) < 300 and "characters)" in message, message[:300]


def test_a_node_reference_of_thousands_of_digits_is_a_graph_error():
    data = symopt.to_dict(zoo.adam())
    data["update"]["root"] = "n" + "1" * 5000  # more digits than int() converts
    with pytest.raises(GraphError, match="unknown operand") as info:
        symopt.from_dict(data)
    assert len(str(info.value)) < 300
