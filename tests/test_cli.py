"""The command lines (``symopt.main``, ``symopt.transfer``): whatever a user does
wrong ends in one line on stderr and a documented exit code, and Ctrl-C or
SIGTERM says what was kept and how to resume."""

from __future__ import annotations

import gc
import re
import signal
import subprocess
import sys
import time

import pytest

import symopt
from symopt import cli
from symopt.archive import Archive

from helpers import ROOT, TINY_CONFIG_FILE, tiny_search_process, wait_until_archived

PROGRAMS = {"symopt.main": ("experiments/digits.py", "--workdir"),
            "symopt.transfer": ("experiments/transfer.py", "--out")}


def _run(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", program, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(out: subprocess.CompletedProcess, program: str, code: int) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), out.stderr[-2000:]
    return lines[0]


# Each case starts a program (~7 s on 2 cores): all four under `pytest -m slow`. By
# default a missing config file is refused in process
# (tests/test_run.py::test_symopt_search_runs_a_config_file_from_python_and_resumes_like_the_cli)
# and symopt.main's and symopt.transfer's one-line exit 2 are checked by
# test_an_unknown_config_key_is_one_line_and_exit_code_2 and tests/test_transfer.py.
@pytest.mark.parametrize("program, config, message", [
    pytest.param("symopt.main", "missing.py", "config file not found: missing.py",
                 marks=pytest.mark.slow),
    pytest.param("symopt.transfer", "experiments", "the config path is a directory",
                 marks=pytest.mark.slow),
    pytest.param("symopt.transfer", "missing.py", "config file not found: missing.py",
                 marks=pytest.mark.slow),
    pytest.param("symopt.main", "experiments", "the config path is a directory",
                 marks=pytest.mark.slow),
])
def test_a_config_path_that_is_not_a_file_is_one_line_and_exit_code_2(program, config, message,
                                                                      tmp_path):
    _, out_flag = PROGRAMS[program]
    line = _one_line_error(_run(program, f"--config={config}", f"{out_flag}={tmp_path}"),
                           program, cli.USAGE_ERROR)
    assert message in line


# symopt.transfer under `pytest -m slow`, as above.
@pytest.mark.parametrize("program", ["symopt.main",
                                     pytest.param("symopt.transfer", marks=pytest.mark.slow)])
def test_an_unknown_config_key_is_one_line_and_exit_code_2(program, tmp_path):
    config, out_flag = PROGRAMS[program]
    line = _one_line_error(_run(program, f"--config={config}", "--config.bogus_key=3",
                                f"{out_flag}={tmp_path}"), program, cli.USAGE_ERROR)
    assert "unknown config key 'bogus_key'" in line


def test_a_config_file_that_raises_is_one_line_naming_the_error(tmp_path):
    config = tmp_path / "broken.py"
    config.write_text("def get_config():\n    raise RuntimeError('my mistake')\n")
    line = _one_line_error(_run("symopt.main", f"--config={config}", f"--workdir={tmp_path}"),
                           "symopt.main", cli.USAGE_ERROR)
    assert "RuntimeError" in line and "my mistake" in line


def test_a_workdir_that_is_a_file_is_one_line_and_exit_code_1(tmp_path):
    workdir = tmp_path / "not_a_directory"
    workdir.write_text("")
    _one_line_error(_run("symopt.main", "--config=experiments/digits.py",
                         f"--workdir={workdir}", "--compilation_cache_dir="),
                    "symopt.main", cli.RUN_ERROR)


# Under `pytest -m slow` (two searches through the command line each): by default
# each signal's one line and exit code are checked at the first compile by
# tests/test_attacks_cli.py::test_a_signal_at_the_first_compile_is_one_line_saying_how_to_resume,
# and a finished search resumes without training again by
# tests/test_run.py::test_symopt_search_runs_a_config_file_from_python_and_resumes_like_the_cli.
@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, cli.INTERRUPTED, "interrupted"),
                                             (signal.SIGTERM, cli.TERMINATED, "terminated")])
def test_an_interrupted_search_says_it_can_resume_in_one_line_and_resumes_exactly(
        sig, code, word, finished, tmp_path):
    workdir = tmp_path / "run"
    process = tiny_search_process(tmp_path, workdir, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    wait_until_archived(process, workdir, 2)
    assert process.poll() is None, "the search ended before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert process.returncode == code, stderr[-2000:]
    assert len(lines) == 1 and re.fullmatch(
        f"symopt.main: error: {word} (after generation [0-9]+|in the first generation); "
        f"every candidate trained so far is kept in {re.escape(repr(str(workdir)))}; rerun the "
        "same command to resume", lines[0]), stderr[-2000:]
    resumed = subprocess.run(process.args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the run" in resumed.stdout
    result, _ = finished  # the same search, uninterrupted
    assert symopt.load(workdir / "best.json") == result.best_graph
    with Archive.open(workdir, create=False) as a, Archive.open(result.workdir, create=False) as b:
        assert a.ids() == b.ids()
        assert a.count_by_status() == b.count_by_status()


@pytest.mark.parametrize("raised, code, word", [(KeyboardInterrupt, cli.INTERRUPTED, "interrupted"),
                                               (cli.Terminated, cli.TERMINATED, "terminated")])
def test_an_interrupt_raised_inside_a_gc_callback_is_not_lost(raised, code, word, capsys):
    """Python ignores an exception raised in a garbage-collection callback
    (JAX registers one): a Ctrl-C or SIGTERM that lands there still stops the
    program, with its one line and exit code."""
    def callback(phase, info):
        if phase == "start":
            gc.callbacks.remove(callback)
            raise raised

    hook = sys.unraisablehook
    with pytest.raises(SystemExit) as exit_:
        with cli.guarded("prog", on_interrupt="kept"):
            gc.callbacks.append(callback)
            gc.collect()
            deadline = time.monotonic() + 120  # a bound, not a timing: a busy machine is slow
            while time.monotonic() < deadline:  # the interrupt is delivered again in here
                pass
            pytest.fail("the interrupt was lost")
    assert exit_.value.code == code
    assert capsys.readouterr().err == f"prog: error: {word}; kept\n"
    assert sys.unraisablehook is hook


# slow: a search through the command line; by default the same search in process
# ends with the warning and found_anything False
# (tests/test_run.py::test_a_search_where_every_candidate_is_rejected_still_finishes),
# and symopt.main's exit code 1 is checked by
# test_a_workdir_that_is_a_file_is_one_line_and_exit_code_1.
@pytest.mark.slow
def test_a_search_that_found_nothing_ends_with_a_warning_and_exit_code_1(tmp_path):
    config_file = tmp_path / "hopeless.py"
    config_file.write_text(TINY_CONFIG_FILE.replace(
        "return tiny_config()",
        "config = tiny_config(search__seeds='', search__generations=1,\n"
        "                     search__population_size=4)\n"
        "    config.space.options = {'operands': ('noise', 'one'), 'max_nodes': 2}\n"
        "    config.evaluation.reference_lr_multipliers = (1.0,)\n"
        "    return config"))
    out = _run("symopt.main", f"--config={config_file}", f"--workdir={tmp_path / 'run'}",
               "--compilation_cache_dir=")
    assert "warning: no candidate passed the integrity check" in out.stdout
    line = _one_line_error(out, "symopt.main", cli.RUN_ERROR)
    assert "found no optimizer" in line
    assert (tmp_path / "run" / "best.json").exists()
