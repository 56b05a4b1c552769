"""Progress while training: a trainer whose log has been quiet too long says
what it does (issue 24: no stage goes a minute without a progress line).

Deterministic: a fake clock, or a threshold of 0; no test reads the wall clock
or asserts a duration.
"""

import dataclasses
import threading

import ml_collections
import numpy as np
import optax
import pytest

from symopt import build, evaluate, tasks, transfer, zoo
from symopt import config as config_lib
from symopt import run as run_lib
from symopt.program import ProgramShape

from helpers import backend_compiles, tiny_config

# A shape of its own: no other test compiles this program, so its first chunk compiles.
SHAPE = ProgramShape(max_nodes=5, max_operands=3, max_constants=3, max_states=1,
                     max_decay_nodes=1, max_schedule_nodes=1)
GRAPHS = [zoo.adam(learning_rate=1e-2), zoo.sgd(learning_rate=1e-1)]


def _task(dim: int = 4):
    return tasks.get("quadratic", steps=5, dim=dim, seeds=2)


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_quiet_log_gets_a_line_at_the_start_of_every_chunk():
    lines = []
    watch = evaluate.Progress(lines.append, every=0, clock=FakeClock(), poll=0)
    trainer = evaluate.Trainer(chunk_size=1, progress=watch)
    trainer.graphs(GRAPHS, _task(dim=3), shape=SHAPE)  # a task no other test trains
    assert lines == [
        "  ... quadratic (5 steps): compiling the program for graph runs 1-2 of 4 (0s so far)",
        "  ... quadratic (5 steps): training graph runs 3-4 of 4 (0s so far)"]


def test_the_optax_path_says_which_optimizer_it_trains():
    lines = []
    trainer = evaluate.Trainer(progress=evaluate.Progress(lines.append, every=0, poll=0))
    trainer.optax(optax.adam, (np.asarray([1e-2, 1e-1]),), _task())
    assert len(lines) == 1 and "adam runs 1-4 of 4" in lines[0], lines


def test_no_line_while_the_log_has_spoken_within_the_threshold():
    lines = []
    watch = evaluate.Progress(lines.append, clock=FakeClock())  # its thread runs, time stands
    with_progress = evaluate.Trainer(chunk_size=1, progress=watch).graphs(
        GRAPHS, _task(), shape=SHAPE)
    assert lines == []
    without = evaluate.Trainer(chunk_size=1).graphs(GRAPHS, _task(), shape=SHAPE)
    for got, want in zip(with_progress, without, strict=True):
        np.testing.assert_array_equal(got, want)


def test_progress_compiles_nothing_more():
    evaluate.Trainer(chunk_size=1).graphs(GRAPHS, _task(), shape=SHAPE)
    compiles = backend_compiles()
    trainer = evaluate.Trainer(chunk_size=1, progress=evaluate.Progress(
        lambda line: None, every=0, poll=0.001))
    trainer.graphs(GRAPHS, _task(), shape=SHAPE)
    assert backend_compiles() == compiles


def test_every_line_of_the_log_restarts_the_quiet_time():
    lines, clock = [], FakeClock()
    watch = evaluate.Progress(lines.append, every=30, clock=clock, poll=0)
    with watch.working(_task(), "graph", 4):
        clock.now = 29
        watch.check()
        assert lines == []
        clock.now = 30
        watch.check()
        assert len(lines) == 1 and lines[0].endswith("(30s so far)")
        clock.now = 40
        watch("gen 1/3 ...")  # a line of the run's own
        clock.now = 69
        watch.check()
        assert lines[1:] == ["gen 1/3 ..."]
        clock.now = 70
        watch.check()
        assert len(lines) == 3 and lines[2].endswith("(1m10s so far)")


def test_nothing_is_said_outside_training():
    lines, clock = [], FakeClock()
    watch = evaluate.Progress(lines.append, every=30, clock=clock, poll=0)
    clock.now = 1000
    watch.check()
    with watch.working(_task(), "graph", 4):
        pass
    watch.check()
    assert len(lines) == 0


def test_the_watcher_speaks_in_the_middle_of_one_long_call():
    """One compiled chunk is one call into XLA: the watcher thread, not the
    chunk starts, says what it does while it lasts."""
    spoke = threading.Event()
    lines = []

    def log(line):
        lines.append(line)
        spoke.set()

    watch = evaluate.Progress(log, every=0, poll=0.001)
    with watch.working(_task(), "graph", 4):
        assert spoke.wait(timeout=60)  # no chunk started: the thread logged it
    assert lines[0].startswith("  ... quadratic (5 steps): preparing 4 graph runs (")
    assert not any(t.name == "symopt-progress" for t in threading.enumerate())


def test_a_failing_log_stops_the_watcher_not_the_training():
    def log(line):
        raise OSError("no space left on device")

    watch = evaluate.Progress(log, every=0, poll=0.001)
    with watch.working(_task(), "graph", 4):
        pass  # the thread's failure is not raised here
    assert not any(t.name == "symopt-progress" for t in threading.enumerate())


def test_a_trainer_keeps_its_progress_with_other_chunks():
    watch = evaluate.Progress(print)
    trainer = evaluate.Trainer(progress=watch)
    assert trainer.with_chunk(4).progress is watch
    assert trainer == evaluate.Trainer()  # progress is not part of how it trains


@pytest.mark.parametrize("with_progress", [True, False])
def test_the_search_setup_gives_its_trainer_the_runs_progress(with_progress):
    config: ml_collections.ConfigDict = tiny_config()
    watch = evaluate.Progress(print) if with_progress else None
    assert build.setup(config, progress=watch).trainer.progress is watch
    assert build.trainer(config, watch).progress is watch


def test_an_unnamed_optax_factory_is_called_optax():
    lines = []
    trainer = evaluate.Trainer(progress=evaluate.Progress(lines.append, every=0, poll=0))
    trainer.optax(lambda lr: optax.sgd(lr), (np.asarray([1e-2]),), _task())
    assert len(lines) == 1 and "optax runs 1-2 of 2" in lines[0], lines


def test_a_stage_outside_training_gets_a_line_naming_it():
    lines, clock = [], FakeClock()
    watch = evaluate.Progress(lines.append, every=30, clock=clock, poll=0)
    with watch.doing("elimination: the novelty test"):
        clock.now = 45
        watch.check()
    clock.now = 100
    watch.check()  # the stage is over: nothing to say
    assert lines == ["  ... elimination: the novelty test (45s so far)"]


def test_a_trainer_line_in_a_stage_names_the_stage_and_the_tasks_label():
    lines, clock = [], FakeClock()
    watch = evaluate.Progress(lines.append, every=0, clock=clock, poll=0)
    task = dataclasses.replace(_task(), title="bowl")
    with watch.doing("gen 1/2"):
        with watch.doing("gen 1/2, inner"):
            pass
        with watch.working(task, "graph", 4):
            clock.now = 3
            watch.check()
    assert lines == ["  ... gen 1/2: bowl (5 steps): preparing 4 graph runs (3s so far)"]


def test_one_watcher_runs_from_the_first_mark_to_the_end_of_the_last():
    watch = evaluate.Progress(lambda line: None, clock=FakeClock())

    def watchers():
        return [t for t in threading.enumerate() if t.name == "symopt-progress"]

    with watch.doing("gen 1/2"):
        first = watchers()
        with watch.working(_task(), "graph", 4):
            assert watchers() == first and len(first) == 1
        assert watchers() == first
    assert watchers() == []


def test_an_interrupt_in_training_ends_the_watcher_and_the_marks():
    lines, clock = [], FakeClock()
    watch = evaluate.Progress(lines.append, every=0, clock=clock)
    with pytest.raises(KeyboardInterrupt):
        with watch.doing("gen 1/1"), watch.working(_task(), "graph", 4):
            raise KeyboardInterrupt
    assert not any(t.name == "symopt-progress" for t in threading.enumerate())
    lines.clear()  # the watcher may have spoken while it ran
    watch.check()
    assert lines == []


def test_a_search_says_what_each_stage_trains_when_its_log_is_quiet(monkeypatch, tmp_path):
    """Every chunk start counts as quiet (threshold 0, no watcher: deterministic):
    the reference, each generation and elimination say what they train."""
    monkeypatch.setattr(evaluate, "PROGRESS_SECONDS", 0)
    monkeypatch.setattr(evaluate, "PROGRESS_POLL_SECONDS", 0)
    lines = []
    config = tiny_config(search__generations=1, search__population_size=4,
                         elimination__tasks="logistic",
                         elimination__top_k=2, elimination__seeds=1, elimination__steps=20)
    config.tasks.search, config.tasks.options = "quadratic", {}  # the cheapest to compile
    run_lib.run(config, tmp_path, log=lines.append)
    shown = [line for line in lines if line.startswith(evaluate.PROGRESS_PREFIX)]
    assert any(" (20 steps): " in line and " adam runs 1-" in line for line in shown)
    assert any(line.startswith("  ... gen 1/1: quadratic") and " graph runs 1-" in line
               for line in shown)
    assert any(line.startswith("  ... elimination: logistic (20 steps): ") for line in shown)
    assert lines[-1].startswith(run_lib.DONE)


def test_a_transfer_says_what_it_trains_when_its_log_is_quiet(monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate, "PROGRESS_SECONDS", 0)
    monkeypatch.setattr(evaluate, "PROGRESS_POLL_SECONDS", 0)
    config = config_lib.default_config()
    config.transfer.tasks = "quadratic"  # the cheapest task to compile
    config.transfer.steps = 3
    config.transfer.seeds = 1
    config.transfer.comparisons = "adam"
    lines = []
    transfer.run_transfer(config, {"found": zoo.sgd()}, tmp_path, log=lines.append)
    assert any(line.startswith("  ... quadratic (3 steps): ") and " graph runs 1-" in line
               for line in lines), lines
