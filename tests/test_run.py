"""The search loop end to end: archive, cache, resume after kill -9, the CLI, configs.

One tiny config (digits MLP with 8 hidden units, 20 steps) keeps the compiles
few: tasks are cached by their arguments, so every in-process run of it
shares one compiled program.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

import symopt
from symopt import build, heldout, novelty, progress, report, workdir
from symopt import config as config_lib
from symopt import records as records_lib
from symopt import run as run_lib
from symopt.archive import Archive, ArchiveError, StageResult

from helpers import (
    ROOT,
    TINY_CONFIG_FILE,
    tiny_config,
    tiny_search_process,
    wait_until_archived,
)

EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))
CONFIGS = [p for p in EXPERIMENTS  # search configs (experiments/transfer.py is not one)
           if "def get_config" in open(p).read() and "symopt.main" in open(p).read()]


def test_a_search_archives_every_candidate_and_writes_best_and_summary(finished):
    result, _ = finished
    with Archive.open(result.workdir) as archive:
        records = archive.records()
        assert len(records) == sum(result.counts.values())
        assert {r.generation for r in records} == {0, 1, 2, 3}
        for r in records:
            assert r.graph is not None and r.genome is not None
            if r.status == "rejected":
                assert r.reason in symopt.integrity.REASONS and r.fitness is None
            if r.status == "evaluated":
                assert np.isfinite(r.fitness) and "digits_mlp" in r.metrics
        assert archive.get_meta("baseline")["digits_mlp"] > 0
    best = symopt.load(os.path.join(result.workdir, "best.json"))
    assert best == result.best_graph
    assert result.best.fitness == max(r.fitness for r in records if r.status == "evaluated")
    summary = open(os.path.join(result.workdir, "summary.md")).read()
    assert f"#{result.best.id}" in summary and "Adam reference" in summary
    judgement = novelty.judge(best)
    assert "## Novelty" in summary
    assert f"Nearest zoo optimizer by behaviour: {judgement.nearest}," in summary


def test_functional_duplicates_are_recorded_not_trained(finished):
    result, _ = finished
    with Archive.open(result.workdir) as archive:
        copies = archive.records(status="duplicate")
        assert copies, "mutations that change nothing the probe sees happen in every search"
        for copy in copies:
            original = archive.get(copy.duplicate_of)
            assert original.status in ("evaluated", "diverged") and original.id < copy.id
            assert copy.fitness == original.fitness
            assert copy.fingerprint == original.fingerprint
            assert copy.metrics == {}  # never trained
        evaluated = [r.fingerprint for r in archive.records(status=("evaluated", "diverged"))]
        assert len(evaluated) == len(set(evaluated))


def test_progress_lines_report_fitness_counts_equation_and_eta(finished):
    _, lines = finished
    progress = [line for line in lines if line.startswith("gen ")]
    assert len(progress) == 4
    for line in progress:
        for word in ("best", "median", "trained", "rejected", "duplicates", "eta", "d = "):
            assert word in line


# slow: a search through the command line, killed, then resumed; by default the
# archive keeps exactly the committed batches of a kill -9
# (tests/test_archive.py::test_kill_9_keeps_exactly_the_committed_batches) and a
# finished search resumes without training again
# (test_symopt_search_runs_a_config_file_from_python_and_resumes_like_the_cli).
@pytest.mark.slow
def test_a_run_killed_mid_search_resumes_without_losing_or_repeating_work(finished, tmp_path):
    result, _ = finished
    workdir = tmp_path / "killed"
    process = tiny_search_process(tmp_path, workdir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    wait_until_archived(process, workdir, 4)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Archive.open(workdir) as killed:
        survived = killed.records()
    assert 0 < len(survived) < sum(result.counts.values()), (
        f"kill the run mid-search: {len(survived)} of {sum(result.counts.values())} archived")
    trained_before = sum(r.status in ("evaluated", "diverged") for r in survived)

    lines: list[str] = []
    resumed = run_lib.run(tiny_config(), workdir, log=lines.append)
    assert any(line.startswith("resuming") for line in lines)
    assert resumed.best.id == result.best.id, (resumed.best, result.best, lines[-3:])
    assert resumed.best.fitness == pytest.approx(result.best.fitness, rel=1e-6)
    assert resumed.best_graph == result.best_graph
    assert resumed.counts == result.counts
    with Archive.open(workdir) as a, Archive.open(result.workdir) as b:
        assert a.ids() == b.ids()
        assert all(a.get(r.id) == r for r in survived)  # kept as they were
    # Nothing trained twice: this call trained exactly what the kill left untrained.
    assert resumed.evaluated_now == result.evaluated_now - trained_before


def test_resuming_with_a_different_config_is_refused(finished):
    result, _ = finished
    with pytest.raises(ArchiveError, match="different config.*tasks.steps"):
        run_lib.run(tiny_config(tasks__steps=21), result.workdir, log=lambda _: None)


def test_reselect_chooses_the_winner_of_a_changed_search_from_its_archive(
        finished, tmp_path, monkeypatch):
    result, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(result.workdir, copy)
    os.remove(copy / "best.json")
    space = build.build_space(tiny_config())

    def mutated_otherwise(self, rng, genome, *, progress=0.0):  # the code moved on
        return self.sample(rng)

    monkeypatch.setattr(type(space), "mutate", mutated_otherwise)
    with pytest.raises(ArchiveError, match="replayed search differs"):
        run_lib.run(tiny_config(), copy, log=lambda _: None)
    lines: list[str] = []
    again = run_lib.run(tiny_config(), copy, log=lines.append, reselect=True)
    assert again.evaluated_now == 0  # the search is neither run nor replayed
    assert not [line for line in lines if line.startswith("gen ")]
    assert again.counts == result.counts and again.best.id == result.best.id
    assert symopt.load(copy / "best.json") == result.best_graph
    assert f"#{result.best.id}" in open(copy / "summary.md").read()
    assert any(line.startswith("reselect: the winner of the 4 archived generations")
               for line in lines)


def test_reselect_refuses_a_search_that_has_not_finished(finished, tmp_path):
    result, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(result.workdir, copy)
    with pytest.raises(ArchiveError, match="needs a finished search; this archive holds 4 of 6"):
        run_lib.run(tiny_config(search__generations=6), copy, log=lambda _: None,
                    reselect=True)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_experiment_config_is_valid_and_builds(path):
    namespace: dict = {}
    exec(compile(open(path).read(), path, "exec"), namespace)
    config = config_lib.validate(namespace["get_config"]())
    space = build.build_space(config)
    build.build_searcher(config, space)
    for name in config_lib.names(config.tasks.search):
        build.search_task(config, name)
    for stage in config_lib.elimination_stages(config):
        for name in stage:
            build.search_task(config, name, role="validation")


@pytest.mark.parametrize("change, message", [
    (lambda c: c.search.__setattr__("bogus", 1), r"config.search.bogus: unknown key"),
    (lambda c: c.search.__setattr__("generations", 0), r"config.search.generations: must be >= 1"),
    (lambda c: c.evaluation.__setattr__("split", "train"), r"config.evaluation.split"),
    (lambda c: c.tasks.__setattr__("search", " "), r"config.tasks.search: name at least"),
])
def test_bad_config_keys_and_values_are_one_line_errors(change, message):
    config = config_lib.default_config()
    config.unlock()
    change(config)
    with pytest.raises(config_lib.ConfigError, match=message) as info:
        config_lib.validate(config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("build, message", [
    (lambda c: build.build_space(_with(c, "space.name", "xyz")),
     "unknown space 'xyz'"),
    (lambda c: build.build_searcher(_with(c, "search.name", "xyz"), None),
     "unknown searcher 'xyz'"),
    (lambda c: build.search_task(c, "xyz"), "unknown task 'xyz'"),
    (lambda c: build.search_task(_with(c, "tasks.options", {"digits_mlp": {"bad": 1}}),
                                 "digits_mlp"), "task 'digits_mlp' has no option 'bad'"),
])
def test_unknown_names_in_a_config_are_config_errors(build, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        build(config_lib.default_config())


def _with(config: ml_collections.ConfigDict, key: str, value) -> ml_collections.ConfigDict:
    section, name = key.split(".")
    config[section][name] = value
    return config


def test_a_tfds_config_without_data_fails_at_start_with_the_prepare_command(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    config = config_lib.default_config()
    config.tasks.search = "cifar10"
    config.tasks.data_dir = str(tmp_path / "tfds")
    with pytest.raises(symopt.tasks.DataNotFoundError, match="prepare it with") as info:
        run_lib.run(config, tmp_path / "run", log=lambda _: None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symopt.main", "--compilation_cache_dir=",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


# Each case starts a program: all three under `pytest -m slow`; by default an unknown
# key is one line and exit 2 (tests/test_cli.py) and a value out of range is refused
# in process (above).
@pytest.mark.parametrize("override, message", [
    pytest.param("--config.search.bogus=3",
                 "unknown config key 'search.bogus' in --config.search.bogus",
                 marks=pytest.mark.slow),
    pytest.param("--config.search.generations=abc", "--config.search.generations=abc",
                 marks=pytest.mark.slow),
    pytest.param("--config.search.generations=0", "config.search.generations: must be >= 1",
                 marks=pytest.mark.slow),
])
def test_main_rejects_a_bad_override_with_one_line_and_exit_code_2(override, message, tmp_path):
    out = _main("--config=experiments/digits.py", f"--workdir={tmp_path}", override)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_search_where_every_candidate_is_rejected_still_finishes(tmp_path):
    config = tiny_config(search__seeds="", search__generations=2)
    config.space.options = {"operands": ("noise", "one"), "max_nodes": 2}  # no gradient anywhere
    lines: list[str] = []
    result = run_lib.run(config, tmp_path, log=lines.append)
    assert result.counts["rejected"] == sum(result.counts.values())
    assert result.evaluated_now == 0
    assert any("warning: no candidate passed" in line for line in lines)
    assert os.path.exists(tmp_path / "best.json") and os.path.exists(tmp_path / "summary.md")
    assert not result.found_anything  # symopt.main exits 1 on it (tests/test_cli.py)


def test_a_diverging_reference_is_a_one_line_error_and_leaves_the_workdir_usable(tmp_path):
    config = tiny_config(evaluation__reference_learning_rate=1e4,
                         evaluation__reference_lr_multipliers=(1.0, 10.0))
    # Every rate diverged: the grid goes one step below its smallest (1000), which diverges too.
    with pytest.raises(config_lib.ConfigError, match="Adam diverged on digits_mlp at every "
                       "learning rate tried .1000, 10000, 100000.") as info:
        run_lib.run(config, tmp_path, log=lambda _: None)
    assert "\n" not in str(info.value)
    with Archive.open(tmp_path, create=False) as archive:
        assert archive.get_meta("baseline") is None and not archive.ids()
    lines: list[str] = []
    fixed = tiny_config(search__generations=1)  # a corrected config takes over the workdir
    result = run_lib.run(fixed, tmp_path, log=lines.append)
    assert any("had trained nothing" in line for line in lines)
    assert result.found_anything


def test_a_run_never_overwrites_a_file_it_did_not_write(finished, tmp_path):
    result, _ = finished
    for name in ("best.json", "summary.md"):
        workdir = tmp_path / name.replace(".", "_")
        workdir.mkdir()
        (workdir / name).write_text("the user's own file\n")
        with pytest.raises(ArchiveError, match=f"{name} was not written by this run"):
            run_lib.run(tiny_config(search__generations=1), workdir, log=lambda _: None)
        assert (workdir / name).read_text() == "the user's own file\n"
    # Its own files it rewrites on a resume; an edited one it refuses.
    run_lib.run(tiny_config(), result.workdir, log=lambda _: None)
    path = os.path.join(result.workdir, "best.json")
    with open(path, "a") as f:
        f.write(" ")
    with pytest.raises(ArchiveError, match="or was changed since"):
        run_lib.run(tiny_config(), result.workdir, log=lambda _: None)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[:-1])  # restored: the other tests share this workdir


def test_the_eta_leaves_out_compiling_and_counts_the_generations_left():
    assert progress.eta([], 5) is None
    assert progress.eta([2.0, 4.0], 5) == pytest.approx(15.0)
    before = progress.compile_seconds()
    jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(7.0))
    assert progress.compile_seconds() > before


def test_elimination_budget_overrides_task_options_and_zero_means_the_task_default():
    config = tiny_config()
    config.tasks.options = {"digits_cnn": {"steps": 7, "batch_size": 16}}
    config.elimination.tasks = "digits_cnn"
    config.elimination.seeds = 3
    task = build.search_task(config, "digits_cnn", role="validation")
    default = symopt.tasks.options("digits_cnn")["steps"]
    assert (task.steps, task.seeds, task.batch_size) == (default, 3, 16)
    config.elimination.steps = 50
    assert build.search_task(config, "digits_cnn", role="validation").steps == 50
    assert build.search_task(config, "digits_cnn").steps == 20  # tasks.steps while searching


# slow: a search and its elimination; by default a search's elimination runs in
# tests/test_progress.py and the novelty verdict in tests/test_novelty.py.
@pytest.mark.slow
def test_novel_only_elimination_admits_no_re_tuning_of_a_zoo_optimizer(tmp_path):
    config = tiny_config(search__generations=2, elimination__tasks="logistic",
                         elimination__top_k=3, elimination__seeds=1, elimination__steps=20,
                         elimination__novel_only=True)
    lines: list[str] = []
    result = run_lib.run(config, tmp_path, log=lines.append)
    with Archive.open(result.workdir) as archive:
        entered = {r.candidate_id for r in archive.stage_results()}
        ranked = archive.top(len(archive.ids()))
    verdicts = {r.id: novelty.verdict(novelty.nearest(records_lib.graph(r))) for r in ranked}
    new = [r.id for r in ranked if verdicts[r.id] == "new"]
    assert entered == set(new[:3]) and result.best.id in entered
    assert any("new candidates enter" in line for line in lines)


def test_a_second_run_on_a_busy_workdir_is_refused(tmp_path):
    with workdir.lock(str(tmp_path)):
        with pytest.raises(ArchiveError, match="another symopt run"):
            run_lib.run(tiny_config(), tmp_path, log=lambda _: None)


# Both under `pytest -m slow` (a search each): by default the nos space searches in the
# other tests here, and the terms and autolr spaces' genomes, mutations and graphs are
# checked in tests/test_space_terms.py, tests/test_space_autolr.py and tests/test_spaces.py.
@pytest.mark.slow
@pytest.mark.parametrize("space", ["terms", "autolr"])
def test_a_tiny_search_runs_in_every_space(space, tmp_path):
    config = tiny_config(search__generations=1, search__seeds="default",
                         search__population_size=4)
    config.space.name = space
    config.space.options = {}
    result = run_lib.run(config, tmp_path, log=lambda _: None)
    assert result.counts["evaluated"] >= 1
    assert symopt.load(tmp_path / "best.json") == result.best_graph


def _last_line_printed(setup: str, printed: str, **env: str | None) -> str:
    """What a fresh Python prints of ``printed`` after ``setup`` (``env``
    set, or removed where None): the settings a CLI makes before JAX starts."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    env = {k: v for k, v in env.items() if v is not None}
    code = f"from symopt import main; main.{setup}; import jax; print({printed})"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()[-1]


# Each case starts a Python that imports JAX: the default count by default, a count
# given and one XLA_FLAGS sets under `pytest -m slow`; likewise for the cache below.
@pytest.mark.parametrize("xla_flags, flag, expected", [
    ("", None, str(min(len(os.sched_getaffinity(0)), 8))),
    pytest.param("", 3, "3", marks=pytest.mark.slow),
    pytest.param("--xla_force_host_platform_device_count=5", 3, "5", marks=pytest.mark.slow),
])
def test_the_cli_splits_the_population_over_cpu_devices(xla_flags, flag, expected):
    printed = _last_line_printed(f"configure_cpu_devices({flag!r})", "jax.device_count()",
                                 XLA_FLAGS=xla_flags)
    assert printed == expected


@pytest.mark.parametrize("env_dir, flag, expected", [
    ("", "{tmp}/cache", "{tmp}/cache"),
    pytest.param("", "", "None", marks=pytest.mark.slow),
    pytest.param("{tmp}/theirs", "{tmp}/cache", "{tmp}/theirs", marks=pytest.mark.slow),
])
def test_the_cli_keeps_compiled_programs_in_a_persistent_cache(env_dir, flag, expected, tmp_path):
    env_dir, flag, expected = (x.format(tmp=tmp_path) for x in (env_dir, flag, expected))
    printed = _last_line_printed(f"configure_compilation_cache({flag!r})",
                                "jax.config.jax_compilation_cache_dir",
                                JAX_COMPILATION_CACHE_DIR=env_dir or None)
    assert printed == expected
    assert os.path.isdir(flag) == (expected == flag)


def test_symopt_search_runs_a_config_file_from_python_and_resumes_like_the_cli(finished,
                                                                              tmp_path):
    result, _ = finished
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG_FILE)
    lines: list[str] = []
    resumed = symopt.search(str(config_file), result.workdir, log=lines.append)
    assert isinstance(resumed, run_lib.RunResult)
    assert resumed.best.id == result.best.id and resumed.best_graph == result.best_graph
    assert resumed.evaluated_now == 0 and any(line.startswith("resuming") for line in lines)
    with pytest.raises(config_lib.ConfigError, match="config file not found"):
        symopt.search(str(tmp_path / "missing.py"), tmp_path / "run")


def test_an_old_key_name_is_read_under_its_new_one_with_a_warning():
    config = config_lib.default_config()
    config.evaluation.baseline_learning_rate = 0.01
    config.test.baselines = "adam"
    with pytest.warns(DeprecationWarning, match="evaluation.reference_learning_rate"):
        config_lib.validate(config)
    assert config.evaluation.reference_learning_rate == 0.01
    assert config.test.comparisons == "adam"
    assert "baseline_learning_rate" not in config.evaluation and "baselines" not in config.test


def test_the_summary_flags_edge_picks_and_fitness_below_adam_and_merges_identical_candidates(
        finished, tmp_path):
    result, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(result.workdir, copy)
    config = tiny_config()
    config.tasks.test = "logistic"
    config.test.comparisons = "adam"
    with Archive.open(copy) as archive:
        top = archive.top(3)
        twin = dataclasses.replace(top[0], id=max(archive.ids()) + 1, fingerprint="twin")
        archive.add_candidates([twin])  # the same graph as the best: one row, two ids
        archive.add_stage_results([StageResult(r.id, 0, "logistic", {}, 0.9) for r in top])
        archive.put_meta(workdir.tried_key("baseline"), {"digits_mlp": {
            "learning_rates": [3e-4, 1e-3, 3e-3, 9.5e-3], "edge": True}})
        winner = dataclasses.replace(top[0], fitness=0.95)
        test = [heldout.Result("best", "logistic", 1e-3, 1e-3, (1.0, 1.0), (1.0, 1.0), 0, 0,
                               multipliers=(0.3, 1.0, 3.0)),
                heldout.Result(f"#{twin.id}", "logistic", 1e-3, 1e-3, (1.0, 1.0), (1.0, 1.0), 0,
                               0, multipliers=(0.3, 1.0, 3.0)),
                heldout.Result("adam", "logistic", 1e-3, 3e-1, (2.0, 2.0), (1.5, 1.5), 0, 0,
                               multipliers=(0.3, 1.0, 3.0, 9.5, 30.0, 95.0, 300.0), edge=True)]
        path = report.write_summary(str(copy), config, archive, {"digits_mlp": 0.5}, winner,
                                    records_lib.graph(winner), [r.id for r in top], test)
    summary = open(path).read()
    lines = summary.splitlines()
    assert f"search fitness 0.9500 ({report.BELOW})" in summary
    assert "**The winner's search fitness is below 1.0" in summary
    assert "Adam's best rate was at an edge of its grid on 1 task(s)" in summary
    assert "**Adam's best rate is still at an edge of the rates tried on digits_mlp**" in summary
    merged = [line for line in lines if line.startswith(f"| 1 | {top[0].id}, {twin.id} | ")]
    assert len(merged) == 1, "identical candidates share one row, listing their ids"
    stage = [line for line in lines if line.startswith("| 1 | logistic | ")]
    assert len(stage) == 3 and all(f"0.9000 ({report.BELOW})" in line for line in stage)
    assert f"**All 3 finalists scored below {report.reference_name(config)} on validation" in (
        summary)
    assert f"| best = #{twin.id} | " in summary and f"| #{twin.id} | " not in summary
    adam = next(line for line in lines if line.startswith("| adam | 2 ± 0"))
    assert adam.endswith(f"1.5 ± 0 {heldout.EDGE_MARK} |")
    assert f"{heldout.EDGE_MARK} lr-tuned at an edge of the rates tried" in summary
    assert "adam on logistic x300 (largest of x0.3-x300)" in summary
    assert "(multipliers 0.3, 1, 3 of the optimizer's own rate" in summary


def test_the_summary_shows_task_labels_numbers_generations_from_1_and_says_what_1_is(
        finished, tmp_path):
    result, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(result.workdir, copy)
    config = tiny_config(elimination__tasks="logistic")
    labels = {"digits_mlp": "digits (8 hidden)", "logistic": "logreg"}
    with Archive.open(copy) as archive:
        top = archive.top(config.output.top)
        archive.add_stage_results([StageResult(top[0].id, 0, "logistic", {}, 1.2)])
        path = report.write_summary(str(copy), config, archive, {"digits_mlp": 0.5}, top[0],
                                    records_lib.graph(top[0]), [top[0].id], [],
                                    task_labels=labels, path=str(tmp_path / "written.md"))
    assert path == str(tmp_path / "written.md")  # where workdir.write_output asks
    lines = open(path).read().splitlines()
    assert "Search tasks: digits (8 hidden); validation tasks: logreg; test tasks: -." in lines
    assert any(line.startswith("Adam reference (loss): digits (8 hidden) 0.5 ") for line in lines)
    header = lines.index("| rank | id | gen | fitness | lr x | digits (8 hidden) | equation |")
    assert f"| stage | tasks | id | fitness ({config_lib.fitness_unit(config)}) | lr x |" in lines
    assert any(line.startswith(f"| 1 | logreg | {top[0].id} | 1.2000 |") for line in lines)
    rows = [line.split(" | ") for line in lines[header + 2:lines.index("", header)]]
    generation = {r.id: r.generation for r in top}
    assert rows and all(int(gen) == generation[int(ids.split(", ")[0])] + 1
                        for _, ids, gen, *_ in rows), "from 1, as the progress lines count"


def test_the_done_line_says_adam_is_untuned_under_one_reference_rate(tmp_path):
    config = tiny_config(search__generations=1, search__population_size=4,
                         evaluation__reference_lr_multipliers=(1.0,))
    lines: list[str] = []
    run_lib.run(config, tmp_path, log=lines.append)
    done = [line for line in lines if line.startswith(run_lib.DONE)]
    assert len(done) == 1 and "(Adam at lr 0.001, untuned = 1); " in done[0]
    assert "Adam at lr 0.001, untuned = 1." in (tmp_path / "summary.md").read_text()


def test_a_summary_above_adam_carries_no_below_flags(finished):
    result, _ = finished
    summary = open(os.path.join(result.workdir, "summary.md")).read()
    if result.best.fitness >= 1.0:
        assert "winner's search fitness is below" not in summary
    assert "finalists scored below" not in summary  # no validation stages in the tiny run
