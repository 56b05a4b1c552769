"""Transfer evaluation: the report's files and numbers, the lr choice, elimination, the CLI.

One tiny run per metric (two offline tasks, 20 steps, 2 seeds, two lr
multipliers, one graph next to a zoo graph, Adam and two of the test tasks'
comparisons that optax ships) is shared by the tests: one compile of the
graphs per task, which both metrics share (the metric is read on the host).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys

import numpy as np
import optax
import pytest

from symopt import comparisons, evaluate, fitness, measure, transfer, zoo
from symopt import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
    config = config_lib.default_config()
    config.transfer.tasks = "digits_mlp,mnist1d_mlp"
    config.transfer.steps = 20
    config.transfer.seeds = 2
    config.transfer.lr_multipliers = (0.3, 3.0)
    config.transfer.comparisons = "sgd,adam,muon,schedule_free_adamw"
    config.tasks.options = {"digits_mlp": {"hidden": 8}}
    return config


# The tests of this run (two tasks, five optimizers, optax's among them: about 40 s
# on 2 quiet cores, most of it compiles) are under `pytest -m slow`, by its parameters'
# marks. By default a transfer runs end to end on one task (writing its tables, lr.csv
# and plots) in test_a_task_is_shown_by_its_label_and_its_files_keep_its_name,
# test_transfer_trains_with_the_configured_strategy and tests/test_progress.py, the
# comparisons are named and refused below, and optax's are swept with graphs in
# tests/test_heldout.py.
@pytest.fixture(scope="module",
                params=[pytest.param(m, marks=pytest.mark.slow) for m in fitness.METRICS])
def finished(request, tmp_path_factory):
    config = tiny_config()
    config.evaluation.metric = request.param
    out = tmp_path_factory.mktemp(f"transfer_{request.param}")
    calls = []
    train = evaluate.evaluate_graphs
    train_optax = evaluate.Trainer.optax

    def recorded(graphs, task, *args, **kwargs):
        calls.append((task.name, len(graphs), kwargs["shape"], kwargs["chunk_size"],
                      kwargs["strategy"]))
        return train(graphs, task, *args, **kwargs)

    def recorded_optax(self, make, args, task, **kwargs):
        OPTAX_CALLS.setdefault(request.param, []).append(
            (task.name, make, kwargs.get("eval_params")))
        return train_optax(self, make, args, task, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "evaluate_graphs", recorded)
        patch.setattr(evaluate.Trainer, "optax", recorded_optax)
        result = transfer.run_transfer(config, {"found": zoo.lion()}, out, log=lambda _: None)
    return result, out, calls


OPTAX_CALLS: dict[str, list] = {}
"""Per metric: (task, make, eval_params) of every optax-path training."""
OPTAX = ("muon", "schedule_free_adamw")
"""The comparisons in :func:`tiny_config` that optax ships (the rest are graphs)."""


def _best(result, values) -> int:
    """The index of the best value: the highest fitness or the lowest loss."""
    return int(np.argmax(values) if result.metric.name == "accuracy" else np.argmin(values))


def _table(out) -> dict[str, list[str]]:
    lines = open(os.path.join(out, "results.md")).read().splitlines()
    rows = [line.strip("|").split("|") for line in lines if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_the_report_files_are_written_with_one_row_per_optimizer_and_task(finished):
    result, out, _ = finished
    assert sorted(os.listdir(out)) == ["curves_digits_mlp.png", "curves_mnist1d_mlp.png",
                                       "lr.csv", "lr_digits_mlp.png", "lr_mnist1d_mlp.png",
                                       "results.csv", "results.md"]
    for task in result.tasks:
        with open(os.path.join(out, f"lr_{task}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.path.basename(f) for f in result.files) == sorted(os.listdir(out))
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert tuple(rows[0]) == transfer.CSV_FIELDS
    assert {(r["optimizer"], r["task"]) for r in rows} == set(result.results)
    assert sorted(_table(out)) == sorted(result.optimizers) == [
        "adam", "found", "muon", "schedule_free_adamw", "sgd"]


def test_the_table_numbers_are_the_returned_metrics(finished):
    result, out, _ = finished
    table = _table(out)
    for name in result.optimizers:
        for task, cell in zip(result.tasks, table[name], strict=False):
            r = result.results.get((name, task))
            if r is None:
                assert cell == "-"
                continue
            mark = f" {transfer.EDGE_MARK}" if r.edge else ""
            assert cell == f"{r.test.mean():.4f} ± {r.test.std():.4f} (lr x{r.multiplier:g}){mark}"
        reached = [t for t in result.tasks if (name, t) in result.results]
        own = np.array([result.results[(name, t)].test.mean() for t in reached])
        adam = np.array([result.results[("adam", t)].test.mean() for t in reached])
        if result.metric.name == "accuracy":  # Marfinetz 2025: mean over tasks / Adam's mean
            expected = own.mean() / adam.mean()
        else:  # geometric mean of Adam's loss over the optimizer's, each ratio clipped
            ratios = np.clip(adam / own, 1 / fitness.RATIO_CLIP, fitness.RATIO_CLIP)
            expected = np.exp(np.mean(np.log(ratios)))
        assert table[name][-1] == f"{expected:.4f}"
        assert result.aggregate[name] == pytest.approx(expected, rel=1e-6)
    for row in csv.DictReader(open(os.path.join(out, "results.csv"))):
        r = result.results[(row["optimizer"], row["task"])]
        assert row["metric"] == result.metric.name
        assert float(row["test_mean"]) == pytest.approx(r.test.mean(), rel=1e-6)
        assert float(row["val"]) == pytest.approx(r.val[r.chosen], rel=1e-6)
        assert float(row["lr_multiplier"]) == r.multiplier and int(row["edge"]) == r.edge


def test_adams_aggregate_is_exactly_one(finished):
    result, _, _ = finished
    assert result.aggregate["adam"] == 1.0
    assert all(("adam", t) in result.results for t in result.tasks)


def test_elimination_drops_the_worst_after_the_first_task(finished):
    result, _, _ = finished
    first, second = result.tasks
    challengers = [n for n in result.optimizers if n != "adam"]
    best_val = [result.results[(n, first)].val[result.results[(n, first)].chosen]
                for n in challengers]
    order = np.argsort(np.asarray(best_val) if result.metric.lower_is_better
                       else -np.asarray(best_val), kind="stable")
    kept = {challengers[i] for i in order[:(len(challengers) + 1) // 2]}  # keep = 0.5
    assert {n for n in challengers if (n, second) in result.results} == kept


def test_the_chosen_learning_rate_is_the_val_best(finished):
    result, _, _ = finished
    for (name, _), r in result.results.items():
        assert r.chosen == _best(result, r.val)
        own = (zoo.lion().hparams.learning_rate if name == "found"
               else comparisons.learning_rate(comparisons.COMPARISONS[name](20))
               if name in comparisons.COMPARISONS else zoo.get(name).hparams.learning_rate)
        assert r.learning_rate == pytest.approx(own * r.multiplier)
        assert r.learning_rates[r.chosen] == r.learning_rate


def test_each_result_records_the_multipliers_it_was_tuned_over_past_the_grids_edges(finished):
    result, out, _ = finished
    extended = 0
    for r in result.results.values():
        assert set(result.multipliers) <= set(r.multipliers)
        assert list(r.multipliers) == sorted(r.multipliers) and len(r.val) == len(r.multipliers)
        extended += len(r.multipliers) > len(result.multipliers)
        inside = 0 < r.chosen < len(r.multipliers) - 1
        if not r.edge:  # its pick is inside the rates tried, or the grid could not grow
            assert inside
        else:
            assert len(r.multipliers) == len(result.multipliers) + measure.MAX_EXTENSIONS
    assert extended, "a grid of two rates puts every pick at an edge: some must be extended"
    text = open(os.path.join(out, "results.md")).read()
    edges = [(n, t) for (n, t), r in result.results.items() if r.edge]
    assert (f"{transfer.EDGE_MARK} the chosen rate is still at an edge" in text) == bool(edges)


def test_the_report_says_which_metric_it_scored(finished):
    result, out, _ = finished
    values = np.concatenate([r.test for r in result.results.values()])
    if result.metric.name == "loss":  # clipped losses, a classifier's start near log(10)
        assert np.all(values >= 0) and np.isfinite(values).all()
        assert np.any(values > 1 + fitness.LOSS_BONUS), "above any fitness: not a loss"
    else:  # accuracy + LOSS_BONUS at most, -1 for a diverged run
        assert np.all((values >= -1) & (values <= 1 + fitness.LOSS_BONUS))
    text = open(os.path.join(out, "results.md")).read()
    assert ("Test loss" in text) == (result.metric.name == "loss")
    assert ("Test fitness" in text) == (result.metric.name == "accuracy")


def test_each_task_is_one_program_whatever_the_stage(finished):
    result, _, calls = finished
    assert list(dict.fromkeys(c[0] for c in calls)) == list(result.tasks)  # task by task
    shapes = {(shape, chunk) for _, _, shape, chunk, _ in calls}
    assert len(shapes) == 1, ("every stage and every extension round trains with the same "
                              "program shape and chunk size")
    first = calls[0]
    second = next(c for c in calls if c[0] == result.tasks[1])

    def graph_rows(task):  # the optax comparisons train in programs of their own
        return len(result.multipliers) * sum(
            (n, task) in result.results and n not in OPTAX for n in result.optimizers)

    assert first[1] == graph_rows(result.tasks[0]) == 3 * len(result.multipliers)
    assert second[1] == graph_rows(result.tasks[1])  # its entrants, the same compiled program
    for task in result.tasks:  # each extension round: one row per optimizer still at an edge
        rounds = [c[1] for c in calls if c[0] == task][1:]
        assert all(0 < n <= len(result.optimizers) for n in rounds)
        assert len(rounds) <= measure.MAX_EXTENSIONS


def test_evaluate_graphs_returns_learning_curves():
    config = tiny_config()
    config.transfer.tasks = "quadratic"  # the cheapest task to compile
    task = transfer.build_tasks(config)[0]
    graphs = [zoo.adam(), zoo.sgd()]
    shape = measure.shape_for(graphs)
    metrics = evaluate.evaluate_graphs(graphs, task, 2, shape=shape, chunk_size=2)
    assert isinstance(metrics, evaluate.RunMetrics)
    assert metrics.loss_curve.shape == (2, 2, len(evaluate.curve_steps(task.steps)))
    np.testing.assert_allclose(metrics.loss_curve[..., 0], metrics.initial_loss)
    assert len(evaluate.curve_steps(1000)) == evaluate.CURVE_POINTS


def test_the_experiment_config_is_valid_and_bad_transfer_values_are_one_line_errors():
    namespace: dict = {}
    path = os.path.join(ROOT, "experiments", "transfer.py")
    exec(compile(open(path).read(), path, "exec"), namespace)
    experiment = config_lib.validate(namespace["get_config"]())
    assert set(comparisons.COMPARISONS.names()) <= set(
        config_lib.names(experiment.transfer.comparisons))
    config = tiny_config()
    config.transfer.bogus = 1
    with pytest.raises(config_lib.ConfigError, match=r"^config.transfer.bogus: unknown key"):
        config_lib.validate(config)
    config = tiny_config()
    config.transfer.keep = 0.0
    with pytest.raises(config_lib.ConfigError, match=r"^config.transfer.keep: must be in"):
        config_lib.validate(config)
    config = tiny_config()
    config.transfer.comparisons = "adam,adamw_cosine,speed"
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.validate(config)
    message = str(error.value)
    assert message.startswith("config.transfer.comparisons: unknown optimizer 'speed'")
    assert "\n" not in message and "adamw_cosine" in message
    assert all(n in message for n in [*comparisons.COMPARISONS.names(), *zoo.names()])


def test_comparisons_names_mean_the_comparisons_before_the_zoos_graphs():
    steps = 100
    assert transfer.comparison("adam", steps) == zoo.adam()  # the reference, unscheduled
    lion = transfer.comparison("lion", steps)  # in both: the comparisons' scheduled Lion
    assert lion == comparisons.lion(steps) and lion != zoo.lion()
    assert lion.schedule.kind == "cosine"
    muon = transfer.comparison("muon", steps)  # in both: optax's Muon, not the zoo's graph
    assert isinstance(muon, comparisons.OptaxOptimizer)
    free = transfer.comparison("schedule_free_adamw", steps)
    assert free.eval_params is optax.contrib.schedule_free_eval_params
    assert transfer.comparison("sgd", steps) == zoo.sgd()  # the zoo's only
    with pytest.raises(config_lib.ConfigError, match="unknown optimizer 'speed'"):
        transfer.comparison("speed", steps)


def test_the_named_comparisons_are_measured_and_reported(finished):
    result, out, _ = finished
    for name in OPTAX:
        assert all((name, t) in result.results for t in result.tasks[:1])
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert set(OPTAX) <= {r["optimizer"] for r in rows}
    trained = OPTAX_CALLS[result.metric.name]
    free = comparisons.schedule_free_adamw(20)
    assert any(make is free.make and eval_params is optax.contrib.schedule_free_eval_params
               for _, make, eval_params in trained), "schedule-free measured at its eval params"
    assert any(make is comparisons.muon(20).make for _, make, _ in trained)


def test_lr_csv_has_a_row_per_multiplier_tried_and_one_chosen_per_optimizer_and_task(finished):
    result, out, _ = finished
    rows = list(csv.DictReader(open(os.path.join(out, "lr.csv"))))
    assert tuple(rows[0]) == transfer.LR_CSV_FIELDS
    by_key: dict = {}
    for row in rows:
        by_key.setdefault((row["optimizer"], row["task"]), []).append(row)
    assert set(by_key) == set(result.results)
    extended = 0
    for key, r in result.results.items():
        mine = by_key[key]
        assert [float(x["lr_multiplier"]) for x in mine] == list(r.multipliers)
        extended += len(mine) > len(result.multipliers)
        assert [int(x["chosen"]) for x in mine].count(1) == 1
        chosen = next(x for x in mine if x["chosen"] == "1")
        assert float(chosen["lr_multiplier"]) == r.multiplier
        assert float(chosen["learning_rate"]) == pytest.approx(r.learning_rate)
        assert float(chosen["test_mean"]) == pytest.approx(r.test.mean(), rel=1e-6)
        for j, x in enumerate(mine):
            assert x["metric"] == result.metric.name and int(x["seeds"]) == len(r.test)
            assert float(x["val_mean"]) == pytest.approx(r.val[j], rel=1e-6)
            assert float(x["test_mean"]) == pytest.approx(r.tests[j].mean(), rel=1e-6)
            assert float(x["test_std"]) == pytest.approx(r.tests[j].std(), rel=1e-6, abs=1e-9)
            assert 0 <= int(x["diverged"]) <= len(r.test)
            assert np.isfinite(float(x["test_mean"]))  # a diverged run at its clipped value
    assert extended, "a grid of two rates puts every pick at an edge: some rows are extensions"


def test_the_cli_refuses_an_unknown_comparison_in_one_line_naming_both_lists(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "symopt.transfer", "--config=experiments/transfer.py",
         "--config.transfer.comparisons=schedule_free_adamw,speed",
         f"--graphs={tmp_path / 'missing.json'}", f"--out={tmp_path / 'out'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("symopt.transfer: error: config.transfer.comparisons: unknown "
                                  "optimizer 'speed'; known: the comparisons (adam,")


# "loop" under `pytest -m slow`: the vmap case checks that the configured
# strategy, not CPU's default (loop), is the one that trains.
@pytest.mark.parametrize("strategy", [pytest.param("loop", marks=pytest.mark.slow), "vmap"])
def test_transfer_trains_with_the_configured_strategy(strategy, tmp_path, monkeypatch):
    config = tiny_config()
    config.transfer.tasks = "quadratic"  # the cheapest task to compile
    config.transfer.steps = 3
    config.transfer.comparisons = "adam"
    config.evaluation.strategy = strategy
    strategies = []
    train = evaluate.evaluate

    def recorded(*args, **kwargs):
        strategies.append(kwargs["strategy"])
        return train(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate", recorded)
    transfer.run_transfer(config, {"found": zoo.sgd()}, tmp_path, log=lambda _: None)
    assert strategies and set(strategies) == {strategy}


def test_a_task_is_shown_by_its_label_and_its_files_keep_its_name(tmp_path, monkeypatch):
    figure = pytest.importorskip("matplotlib.figure")
    config = tiny_config()
    config.transfer.tasks = "quadratic"  # the cheapest task to compile
    config.transfer.steps = 3
    config.transfer.comparisons = "adam"
    built = transfer.build_tasks
    monkeypatch.setattr(transfer, "build_tasks", lambda c: [  # as a module:function task is
        dataclasses.replace(t, title="bowl") for t in built(c)])
    titles, save = [], figure.Figure.savefig

    def saved(self, path, *args, **kwargs):
        titles.append((os.path.basename(path), self.axes[0].get_title()))
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(figure.Figure, "savefig", saved)
    lines: list[str] = []
    transfer.run_transfer(config, {"found": zoo.sgd()}, tmp_path, log=lines.append)
    # The task's own lines (a busy machine adds "  ... bowl (3 steps): ..." progress lines).
    own = [line for line in lines if not line.startswith("  ... ")]
    assert own[0].startswith("task 1/1 bowl: ") and own[1].startswith("task 1/1 bowl: ")
    assert "| optimizer | bowl | aggregate vs Adam |" in (tmp_path / "results.md").read_text()
    assert {r["task"] for r in csv.DictReader(open(tmp_path / "results.csv"))} == {"quadratic"}
    assert [name for name, _ in titles] == ["curves_quadratic.png", "lr_quadratic.png"]
    assert all(title.startswith("bowl") and "quadratic" not in title for _, title in titles)


# slow: it starts the program; by default its one-line exit 2 is checked by
# test_the_cli_refuses_an_unknown_comparison_in_one_line_naming_both_lists, and a
# graph file that does not load by tests/test_graph.py.
@pytest.mark.slow
def test_the_cli_refuses_a_missing_graph_file_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "symopt.transfer", "--config=experiments/transfer.py",
         f"--graphs={tmp_path / 'missing.json'}", f"--out={tmp_path / 'out'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("symopt.transfer: error: --graphs: cannot load")


def test_each_optimizer_has_its_own_colour_and_style_in_every_plot(finished):
    result, _, _ = finished
    styles = transfer.line_styles(result)
    assert set(styles) == set(result.optimizers)
    assert len(set(styles.values())) == len(styles)
    assert styles["found"][1] == transfer.FOUND_LINE
    assert all(styles[n][1] == transfer.BASELINE_LINE
               for n in ("sgd", "adam", "muon", "schedule_free_adamw"))
    many = transfer.TransferResult(tuple(f"g{i}" for i in range(30)), (), (), "loss", {}, {},
                                   None, ())
    assert len(set(transfer.line_styles(many).values())) == 30


@pytest.mark.parametrize("paths, names", [
    (["runs/a/best.json", "runs/b/best.json"], ["a/best", "b/best"]),
    (["x/best.json", "y/x/best.json"], ["runs/x/best", "y/x/best"]),
    (["one.json", "two.json"], ["one", "two"]),
    (["saved/adam.json"], ["saved/adam"]),  # not the zoo's adam
    (["saved/adamw_cosine.json"], ["saved/adamw_cosine"]),  # nor a comparison
])
def test_graph_names_are_unique_and_derived_from_their_paths(paths, names, monkeypatch,
                                                             tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    assert transfer.graph_names(paths) == names


def test_a_graph_file_listed_twice_is_refused():
    with pytest.raises(ValueError, match="listed twice"):
        transfer.graph_names(["a/best.json", "./a/best.json"])
