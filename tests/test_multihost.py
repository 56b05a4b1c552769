"""Multi-host for real: the tiny search as two JAX processes on loopback (Gloo CPU
collectives), against the same search in one process with as many devices.

Each process trains its share of every population and process 0 alone writes
the workdir; the archive and ``best.json`` must be what one process writes.
A process killed with ``kill -9`` makes the other stop within a bounded time
with one line, and the rerun resumes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

import symopt
from symopt import cli
from symopt.archive import Archive

from helpers import ROOT, TINY_CONFIG_FILE, wait_until_archived

TIMING_FIELDS = ("seconds", "created")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(config_file, workdir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "symopt.main", f"--config={config_file}",
            f"--workdir={workdir}", "--compilation_cache_dir=", *extra]


def _processes(config_file, workdir, **popen) -> list[subprocess.Popen]:
    address = f"127.0.0.1:{_free_port()}"
    return [subprocess.Popen(
        _command(config_file, workdir, "--cpu_devices=1", f"--coordinator_address={address}",
                 "--num_processes=2", f"--process_id={i}"), cwd=ROOT, **popen)
        for i in range(2)]


def _same(a, b, where: str = "archive") -> None:
    """Equal, floats to rounding: one XLA CPU program over two devices of one
    process and one device each of two processes may round a reduction
    differently (the population's metrics agree exactly, Adam's may not)."""
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-12), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _contents(workdir) -> tuple[list[dict], dict]:
    with Archive.open(workdir, create=False) as archive:
        records = [{k: v for k, v in archive.get(i).__dict__.items() if k not in TIMING_FIELDS}
                   for i in sorted(archive.ids())]
        meta = {k: archive.get_meta(k) for k in ("baseline", "baseline_learning_rates")}
    return records, meta


# The tiny search at one generation of 4 and Adam at one rate: what the two
# ways write is compared whatever the budget (the kill tests, under
# `pytest -m slow`, need the whole tiny search to kill a process mid-run).
SMALL_CONFIG_FILE = TINY_CONFIG_FILE.replace(
    "return tiny_config()",
    "return tiny_config(search__generations=1, search__population_size=4,\n"
    "                       evaluation__reference_lr_multipliers=(1.0,))")


def _one_process(tmp, config_text):
    """The search in one process over two CPU devices: its workdir."""
    tmp.mkdir(exist_ok=True)
    config_file = tmp / "tiny.py"
    config_file.write_text(config_text)
    out = subprocess.run(_command(config_file, tmp / "run", "--cpu_devices=2"), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp / "run"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The tiny search in one process over two CPU devices."""
    return _one_process(tmp_path_factory.mktemp("one_process"), TINY_CONFIG_FILE)


# slow: three JAX processes (about 95 s on 2 quiet cores); by default the split of a
# population over devices is checked in one process by
# tests/test_evaluate.py::test_sharding_over_four_devices_gives_the_metrics_of_one and the
# multi-host flags by test_the_multihost_flags_go_together_in_process.
@pytest.mark.slow
def test_two_processes_write_what_one_process_with_two_devices_writes(tmp_path):
    one_process = _one_process(tmp_path / "one", SMALL_CONFIG_FILE)
    config_file = tmp_path / "tiny.py"
    config_file.write_text(SMALL_CONFIG_FILE)
    workdir = tmp_path / "run"
    processes = _processes(config_file, workdir, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "best #" in outs[0][0] and "gen 1/" not in outs[1][0]  # process 0 speaks
    assert symopt.load(workdir / "best.json") == symopt.load(one_process / "best.json")
    _same(_contents(workdir), _contents(one_process))
    assert (workdir / "summary.md").exists()


def _started(tmp_path):
    """The tiny search's two processes, started and past their first candidates:
    its config file, workdir and the two processes (stderr piped)."""
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG_FILE)
    workdir = tmp_path / "run"
    first, second = _processes(config_file, workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_until_archived(first, workdir, 2)
    return config_file, workdir, first, second


@pytest.mark.slow
def test_a_process_killed_stops_the_other_in_one_line_and_the_rerun_resumes(one_process,
                                                                          tmp_path):
    config_file, workdir, first, second = _started(tmp_path)
    assert first.poll() is None, "the search ended before a process could be killed"
    second.kill()
    start = time.monotonic()
    _, err = first.communicate(timeout=cli_bound())
    waited = time.monotonic() - start
    lines = err.strip().splitlines()
    assert first.returncode == cli.RUN_ERROR, err[-3000:]
    assert len(lines) == 1 and "another process of this multi-host run stopped" in lines[0], err
    assert waited < cli_bound()
    processes = _processes(config_file, workdir, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "resuming the run" in outs[0][0]
    assert symopt.load(workdir / "best.json") == symopt.load(one_process / "best.json")
    _same(_contents(workdir), _contents(one_process))


@pytest.mark.slow
def test_process_0_killed_stops_the_other_in_one_line_without_jax_logs(tmp_path):
    _, _, first, second = _started(tmp_path)
    assert second.poll() is None, "the search ended before a process could be killed"
    first.kill()
    _, err = second.communicate(timeout=cli_bound())
    lines = err.strip().splitlines()
    assert second.returncode == cli.RUN_ERROR, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("symopt.main: error: "), err[-3000:]


def cli_bound() -> float:
    """Seconds a survivor may take to stop: its next collective fails at once,
    and JAX's heartbeat timeout bounds the wait where it is not in one."""
    from symopt import main

    return 2 * main.HEARTBEAT_SECONDS + 30


def test_the_multihost_flags_go_together_in_process():
    """What the command line below prints, without starting it."""
    from symopt import config as config_lib
    from symopt import main

    with pytest.raises(config_lib.ConfigError, match="^--coordinator_address, --num_processes "
                       "and --process_id go together"):
        main.configure_distributed(None, 2, None)
    with pytest.raises(config_lib.ConfigError, match="--process_id=2 must be below"):
        main.configure_distributed("127.0.0.1:1", 2, 2)


# slow: it starts the program; by default the check is made in process (above) and
# symopt.main's one-line exit 2 on a config error by
# tests/test_cli.py::test_an_unknown_config_key_is_one_line_and_exit_code_2.
@pytest.mark.slow
def test_the_multihost_flags_go_together_and_are_one_line_errors(tmp_path):
    out = subprocess.run(_command("experiments/digits.py", tmp_path, "--num_processes=2"),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == cli.USAGE_ERROR
    assert out.stderr.strip().splitlines() == [
        "symopt.main: error: --coordinator_address, --num_processes and --process_id go "
        "together (or none, on a cluster JAX detects)"]


def test_a_cluster_is_detected_from_its_scheduler_s_environment():
    from symopt import main

    assert main.cluster_detected({"SLURM_NTASKS": "4"})
    assert main.cluster_detected({"OMPI_COMM_WORLD_SIZE": "2"})
    assert not main.cluster_detected({"SLURM_NTASKS": "1"})
    assert not main.cluster_detected({})
