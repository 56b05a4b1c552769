"""Attacks on the command lines and the workdir (issue 24): nothing is lost at
any instant, and nothing is silently wrong.

* An output write killed (``kill -9``, here ``os._exit`` injected in a child
  process) at any instant leaves a workdir that the rerun resumes.
* Ctrl-C and SIGTERM from the program's first lines to its exit are one line
  and exit 130/143, or exit 0 once the run is done.
* The lock follows no link and truncates nothing.
* ``--help`` exits 0 and shows the config keys; config mistakes read cleanly;
  another run's workdir exits 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from symopt import cli, workdir, zoo
from symopt import config as config_lib
from symopt.archive import Archive, ArchiveError, CandidateRecord

from helpers import ROOT, TESTS

BOUND_SECONDS = 300
"""A bound on waits, not a timing: a busy machine is slow."""


def _python(script: str, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=BOUND_SECONDS, **popen)


def _one_line(stderr: str, program: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), stderr[-3000:]
    return lines[0]


# --------------------------------------------------------------------------
# Atomic outputs.

_KILLED = 9
_WRITE_AND_DIE = f"""
import os, sys
from symopt import workdir
from symopt.archive import Archive

directory, where = sys.argv[1], sys.argv[2]
replace = os.replace
def dying_replace(src, dst):
    if where == "after the rename":
        replace(src, dst)
    os._exit({_KILLED})
workdir.os.replace = dying_replace

def write(path):
    with open(path, "w") as f:
        f.write('{{"partial": ')
        f.flush()
        if where == "while writing":
            os._exit({_KILLED})
        f.write('"new"}}')

with Archive.open(directory) as archive:
    workdir.write_output(archive, directory, "best.json", write)
"""


def _write(archive: Archive, directory, text: str) -> None:
    def write(path):
        with open(path, "w") as f:
            f.write(text)

    workdir.write_output(archive, str(directory), "best.json", write)


# Each case starts a Python: the kill while writing by default, at the rename under
# `pytest -m slow`.
@pytest.mark.parametrize("where", ["while writing", *(pytest.param(w, marks=pytest.mark.slow)
                                                      for w in ("before the rename",
                                                                "after the rename"))])
def test_an_output_write_killed_at_any_instant_is_resumed_by_the_rerun(where, tmp_path):
    with Archive.open(tmp_path) as archive:
        _write(archive, tmp_path, '{"old": 1}')  # a file this run wrote before
    killed = _python(_WRITE_AND_DIE, str(tmp_path), where)
    assert killed.returncode == _KILLED, killed.stderr[-3000:]
    text = (tmp_path / "best.json").read_text()
    assert text in ('{"old": 1}', '{"partial": "new"}')  # the old file or the new, whole
    with Archive.open(tmp_path) as archive:  # the rerun
        _write(archive, tmp_path, '{"rerun": 2}')
    assert (tmp_path / "best.json").read_text() == '{"rerun": 2}'
    assert [p.name for p in tmp_path.iterdir() if workdir.TEMPORARY in p.name] == []


def test_an_empty_output_left_by_a_killed_older_run_is_replaced(tmp_path):
    (tmp_path / "best.json").write_text("")  # old symopt: opened with "w", killed, no hash
    with Archive.open(tmp_path) as archive:
        assert archive.get_meta(workdir.OUTPUTS) is None
        _write(archive, tmp_path, '{"new": 1}')
    assert (tmp_path / "best.json").read_text() == '{"new": 1}'


def test_a_nonempty_output_the_run_did_not_write_is_still_refused(tmp_path):
    (tmp_path / "best.json").write_text("the user's own file\n")
    with Archive.open(tmp_path) as archive, pytest.raises(ArchiveError, match="move"):
        _write(archive, tmp_path, '{"new": 1}')
    assert (tmp_path / "best.json").read_text() == "the user's own file\n"


def test_a_killed_run_s_temporary_file_is_removed_by_the_next_run(tmp_path):
    left = tmp_path / f".best.json{workdir.TEMPORARY}"
    left.write_text('{"partial": ')
    with workdir.lock(str(tmp_path)):
        assert not left.exists()


# --------------------------------------------------------------------------
# The lock.


def test_a_lock_symlinked_to_a_file_is_refused_and_the_file_keeps_its_bytes(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"do not truncate me\n")
    run = tmp_path / "run  dir"  # two spaces: printed quoted, not collapsed
    run.mkdir()
    (run / ".lock").symlink_to(precious)
    with pytest.raises(ArchiveError) as info, workdir.lock(str(run)):
        pass
    assert precious.read_bytes() == b"do not truncate me\n"
    assert repr(str(run / ".lock")) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["hard link", "directory", "fifo"])
def test_a_lock_that_is_not_a_regular_file_of_its_own_is_refused(kind, tmp_path):
    lock = tmp_path / ".lock"
    if kind == "hard link":
        (tmp_path / "other").write_text("kept\n")
        os.link(tmp_path / "other", lock)
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(ArchiveError, match="not symopt's lock file"), workdir.lock(str(tmp_path)):
        pass
    if kind == "hard link":
        assert (tmp_path / "other").read_text() == "kept\n"


# --------------------------------------------------------------------------
# Signals from the first line to the exit.


def _signals_caught(pid: int) -> int:
    """The process's caught-signals mask (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)


def _tiny_config_file(tmp_path, **changes) -> str:
    path = tmp_path / "tiny.py"
    path.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from helpers import tiny_config

        def get_config():
            return tiny_config(**{changes!r})
    """))
    return str(path)


def _search(tmp_path, **changes) -> subprocess.Popen:
    config = _tiny_config_file(tmp_path, **changes)
    command = [sys.executable, "-m", "symopt.main", f"--config={config}",
               f"--workdir={tmp_path / 'run'}", "--cpu_devices=1", "--compilation_cache_dir="]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


_STOPPED = {signal.SIGINT: (cli.INTERRUPTED, "interrupted"),
            signal.SIGTERM: (cli.TERMINATED, "terminated")}


@pytest.mark.parametrize("delay", [0.0, 0.2], ids=["at_once", "after_0.2s"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_program_starts_is_one_line(sig, delay, tmp_path):
    """From the moment ``symopt.main`` handles SIGTERM (its first lines, before
    absl and JAX are imported), a signal is one line and its exit code."""
    process = _search(tmp_path)
    deadline = time.monotonic() + BOUND_SECONDS
    while not _signals_caught(process.pid) & (1 << (signal.SIGTERM - 1)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(delay)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=BOUND_SECONDS)
    code, word = _STOPPED[sig]
    assert process.returncode == code, stderr[-3000:]
    assert _one_line(stderr, "symopt.main") == (
        f"symopt.main: error: {word} while starting; nothing was written")


# SIGTERM under `pytest -m slow`: each case runs the program to its first compile;
# SIGTERM's handler is checked by default while the program starts (above).
@pytest.mark.parametrize("sig", [signal.SIGINT,
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_the_first_compile_is_one_line_saying_how_to_resume(sig, tmp_path):
    process = _search(tmp_path)
    first = process.stdout.readline()  # the reference's tuning: its first compile
    assert first, process.communicate()[1][-3000:]
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=BOUND_SECONDS)
    code, word = _STOPPED[sig]
    assert process.returncode == code, stderr[-3000:]
    line = _one_line(stderr, "symopt.main")
    assert line.startswith(f"symopt.main: error: {word} ")
    assert line.endswith(f"kept in {str(tmp_path / 'run')!r}; rerun the same command to resume")


# slow: a search through the command line to its end (as every such search: the
# interrupted, killed and hopeless ones too); by default the program starts a search
# to its first compile (test_a_signal_at_the_first_compile_is_one_line_saying_how_to_resume),
# the search runs to its end in process (tests/test_run.py), and a signal once the run
# has finished changes nothing to its exit
# (test_a_signal_after_the_run_finished_changes_nothing_to_its_exit).
@pytest.mark.slow
def test_a_signal_after_done_leaves_the_exit_code_0(tmp_path):
    process = _search(tmp_path, search__generations=1, search__population_size=4,
                      evaluation__reference_lr_multipliers=(1.0,))
    for line in process.stdout:
        if line.startswith("done in "):
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=BOUND_SECONDS)
    assert process.returncode == 0, stderr[-3000:]
    assert stderr.strip() == ""


_EXIT = """
import atexit, os, signal, sys, time
from symopt import cli

cli.install_signal_handlers("prog")
def late_signal():  # registered after cli's: runs before it, as JAX's exit handlers do
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
atexit.register(late_signal)
if sys.argv[1] == "finished":
    cli.finished()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    print("still here")
else:
    cli.exit_with_error("prog", "boom", cli.RUN_ERROR)
"""


def test_a_signal_after_the_run_finished_changes_nothing_to_its_exit():
    out = _python(_EXIT, "finished")
    assert (out.returncode, out.stdout, out.stderr) == (0, "still here\n", "")


def test_a_signal_while_an_error_exits_adds_no_line_and_keeps_its_code():
    out = _python(_EXIT, "error")
    assert out.returncode == cli.RUN_ERROR
    assert out.stderr == "prog: error: boom\n"


def test_an_interrupt_arriving_inside_the_unraisable_hook_is_not_lost(capsys):
    """The interrupt :func:`symopt.cli.guarded` delivers again may land while
    its own ``sys.unraisablehook`` runs (where Python would drop it); it is
    delivered once more."""
    class DiesBadly:
        def __del__(self):
            raise ValueError("not an interrupt")  # Python passes it to sys.unraisablehook

    def previous(unraisable):  # the hook guarded passes other errors to
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):  # bytecodes: the handler runs in here
            pass

    hook = sys.unraisablehook
    sys.unraisablehook = previous
    try:
        with pytest.raises(SystemExit) as exit_, cli.guarded("prog", on_interrupt="kept"):
            DiesBadly()
            deadline = time.monotonic() + BOUND_SECONDS
            while time.monotonic() < deadline:  # the interrupt is delivered again in here
                pass
            pytest.fail("the interrupt was lost")
    finally:
        sys.unraisablehook = hook
    assert exit_.value.code == cli.INTERRUPTED
    assert capsys.readouterr().err == "prog: error: interrupted; kept\n"


def test_importing_symopt_imports_no_jax_and_its_names_load_on_use():
    out = _python("""
        import sys
        import symopt
        assert "jax" not in sys.modules, "symopt imported JAX"
        from symopt import to_optax, zoo
        tx = symopt.to_optax(zoo.adam(), learning_rate=1e-3, total_steps=10)
        assert to_optax is symopt.to_optax and "save" in dir(symopt)
    """)
    assert out.returncode == 0, out.stderr[-3000:]


def test_jax_and_grpc_logs_are_quiet_unless_verbose():
    environ = {"GRPC_VERBOSITY": "DEBUG"}
    assert cli.quiet_logs(["prog", "--config=c.py"], environ)
    assert environ["GRPC_VERBOSITY"] == "DEBUG"  # the user's own setting is kept
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == cli.QUIET_LOGS["TF_CPP_MIN_LOG_LEVEL"]
    verbose: dict[str, str] = {}
    assert not cli.quiet_logs(["prog", "--verbosity=1"], verbose) and verbose == {}


# --------------------------------------------------------------------------
# Help, config mistakes, another run's workdir.


def _run(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", program, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=BOUND_SECONDS)


# symopt.transfer under `pytest -m slow`: both show their help through symopt.cli.
@pytest.mark.parametrize("program, flag", [
    ("symopt.main", "--workdir"),
    pytest.param("symopt.transfer", "--out", marks=pytest.mark.slow)])
def test_help_exits_0_with_the_flags_the_config_keys_and_an_example(program, flag):
    out = _run(program, "--help")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"usage: python -m {program}" in out.stdout and flag in out.stdout
    assert "search.generations = 10" in out.stdout and "transfer.tasks" in out.stdout
    assert f"example:\n  python -m {program} --config=" in out.stdout
    assert "This module owns" not in out.stdout


def test_a_mistyped_config_key_reads_cleanly_with_its_suggestion(tmp_path):
    out = _run("symopt.main", "--config=experiments/digits.py", "--config.search.generation=3",
               f"--workdir={tmp_path}")
    assert out.returncode == cli.USAGE_ERROR
    assert _one_line(out.stderr, "symopt.main") == (
        "symopt.main: error: unknown config key 'search.generation' in "
        "--config.search.generation (did you mean 'search.generations'?)")


# Both under `pytest -m slow` (each case starts the program): by default a config file
# that fails is one line naming the error
# (tests/test_cli.py::test_a_config_file_that_raises_is_one_line_naming_the_error).
@pytest.mark.slow
@pytest.mark.parametrize("returned, said", [("None", "None"), ("[1]", "a list")])
def test_a_get_config_that_returns_no_config_dict_says_so(returned, said, tmp_path):
    config = tmp_path / "odd.py"
    config.write_text(f"def get_config():\n    return {returned}\n")
    out = _run("symopt.main", f"--config={config}", f"--workdir={tmp_path / 'run'}")
    assert out.returncode == cli.USAGE_ERROR
    assert _one_line(out.stderr, "symopt.main") == (
        f"symopt.main: error: {config}: get_config() returned {said}, not an "
        "ml_collections.ConfigDict")


def test_a_workdir_holding_another_config_s_run_is_a_workdir_error(tmp_path):
    config = config_lib.default_config()
    with Archive.open(tmp_path) as archive:
        archive.set_config(config.to_dict())
        archive.add_candidates([CandidateRecord(
            id=0, generation=0, space="nos", origin="seed", parents=(), genome={},
            graph=zoo.adam().to_dict(), fingerprint="fp", status="evaluated", fitness=1.0)])
    config.tasks.steps = 7
    with pytest.raises(ArchiveError, match="holds a run with a different config") as info:
        workdir.open_archive(config, str(tmp_path), lambda _: None)
    assert not isinstance(info.value, config_lib.ConfigError)
    assert repr(str(tmp_path)) in str(info.value)


def _guarded_exit(capsys, error: BaseException) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as info, cli.guarded("prog", on_interrupt="kept"):
        raise error
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_program_that_would_not_fit_in_memory_is_one_line_and_exit_code_2(capsys):
    from symopt import budget

    code, lines = _guarded_exit(capsys, budget.OverBudget("config: training 64 runs needs 9 GB"))
    assert code == cli.USAGE_ERROR
    assert lines == ["prog: error: config: training 64 runs needs 9 GB"]


def test_a_task_module_failing_while_the_config_is_checked_is_one_line_and_exit_code_1(
        capsys, monkeypatch):
    from absl import flags

    from symopt.tasks.base import UserCodeError

    def validate(config):
        raise UserCodeError("mine.py:make", "import", SyntaxError("invalid syntax"))

    monkeypatch.setattr(flags, "FLAGS", flags.FlagValues())
    holder = type("Holder", (), {"value": config_lib.default_config()})()
    with pytest.raises(SystemExit) as info:
        cli.parse_flags("prog", ["prog"], holder, validate)
    assert info.value.code == cli.RUN_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        "prog: error: task 'mine.py:make' failed at import: SyntaxError: invalid syntax"]


def test_a_warning_during_a_run_is_one_line_naming_the_program(capsys):
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # Python's own
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings(), cli.guarded("prog", on_interrupt="kept"):
        warnings.simplefilter("always")
        warnings.showwarning = show  # pytest records warnings instead of showing them
        warnings.warn("needs about 9 GB\nof 10 GB", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "prog: warning: needs about 9 GB\\nof 10 GB\n"
