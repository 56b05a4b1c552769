"""``python -m symopt.main --config=experiments/digits.py --workdir=runs/digits``.

Flags only (an absl app with ``ml_collections.config_flags``), then one call
into :func:`symopt.run.run`. Every config key can be overridden on the
command line, e.g. ``--config.search.generations=5``. An unknown key or a bad
value is a one-line error and exit code 2; missing data (a TFDS task whose
data is not prepared) or a missing optional dependency is a one-line error
and exit code 1. Re-running the same command on the same workdir resumes;
with ``--reselect`` it chooses and tests the finished search's winner again
under the code as it now is, without running the search.

On CPU the population is split over one JAX device per core
(``--cpu_devices``), each training its share of the candidates on its own
thread: one XLA CPU computation of these small models does not fill the cores.
Compiled training programs are kept in JAX's persistent compilation cache
(``--compilation_cache_dir``), so a rerun or a resume does not compile them again.

Ctrl-C and SIGTERM are handled from this module's first lines, before absl or
JAX is imported (:func:`symopt.cli.install_signal_handlers`), and JAX's, XLA's
and gRPC's own log lines are kept quiet unless ``--verbosity`` is given
(:func:`symopt.cli.quiet_logs`).
"""

from __future__ import annotations

import os
import sys

from symopt import cli  # imports nothing heavy

PROGRAM = "symopt.main"

if __name__ == "__main__":
    cli.install_signal_handlers(PROGRAM)
    cli.quiet_logs(sys.argv)

from absl import app, flags, logging  # noqa: E402 (after the signal handlers)
from ml_collections import config_flags  # noqa: E402

from symopt import config as config_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Search config file (experiments/*.py); override keys with "
    "--config.<section>.<key>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for the archive, best.json and summary.md; rerun with the "
    "same directory to resume.")

MAX_CPU_DEVICES = 8
"""Most CPU devices by default: each holds its own copy of the task's data."""
_RESELECT = flags.DEFINE_bool(
    "reselect", False, "Choose and test the winner of the finished search in --workdir again, "
    "by the code as it now is (novelty test, validation, test tasks), without running the "
    "search; rewrites best.json and summary.md.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "CPU devices the population is split over, each training its share "
    "on its own thread. Default: the cores this process may use, at most "
    f"{MAX_CPU_DEVICES}. Left alone where XLA_FLAGS sets "
    "--xla_force_host_platform_device_count; unused on GPU/TPU.", lower_bound=1)

_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir",
    os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                 "symopt", "jax"),
    "JAX's persistent compilation cache: a later run with the same tasks and program "
    "shapes loads its compiled training programs instead of compiling them again. "
    "Empty: no cache. Left alone where JAX_COMPILATION_CACHE_DIR is set.")

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator, the same "
    "on every process (jax.distributed.initialize). Not needed on clusters JAX detects "
    "(Slurm, Open MPI).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-host: the number of processes.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-host: this process's index, 0 to num_processes - 1; process 0 "
    "writes the workdir.", lower_bound=0)

HEARTBEAT_SECONDS = 30
"""How long the processes of a multi-host run wait for a silent peer before they stop."""


def cluster_detected(environ: dict[str, str] | None = None) -> bool:
    """Whether this process is one of several that a scheduler JAX knows
    started (Slurm, Open MPI): then ``jax.distributed.initialize()`` needs no
    arguments."""
    env = os.environ if environ is None else environ
    return any(int(env.get(key, "1") or 1) > 1
               for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))


def configure_distributed(coordinator_address: str | None, num_processes: int | None,
                          process_id: int | None) -> bool:
    """Joins a multi-host run where the flags (or the cluster) say there is one;
    returns whether it did. On CPU the processes' collectives use Gloo."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise config_lib.ConfigError("--coordinator_address, --num_processes and --process_id "
                                     "go together (or none, on a cluster JAX detects)")
    if not any(given) and not cluster_detected():
        return False
    if all(given) and not process_id < num_processes:
        raise config_lib.ConfigError(f"--process_id={process_id} must be below "
                                     f"--num_processes={num_processes}")
    import jax  # noqa: PLC0415

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
    return True


def configure_compilation_cache(path: str) -> str | None:
    """Points JAX's persistent compilation cache at ``path`` (created if
    needed); returns it, or None where it is empty or JAX_COMPILATION_CACHE_DIR
    already chooses one."""
    if not path or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    import jax  # noqa: PLC0415

    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def configure_cpu_devices(count: int | None = None) -> int | None:
    """Sets the number of JAX CPU devices (before JAX starts its backends).

    Returns the count set, or None where ``XLA_FLAGS`` already sets one.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if count is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        count = max(1, min(cores or 1, MAX_CPU_DEVICES))
    import jax  # noqa: PLC0415

    jax.config.update("jax_num_cpu_devices", count)
    return count


USAGE = ("--config=CONFIG_FILE --workdir=DIR [--config.KEY=VALUE ...] [flags]\n\n"
         "Searches for an optimizer under the config and writes DIR/archive.sqlite (every "
         "candidate), DIR/best.json (the winner's graph, for symopt.load and symopt.to_optax) "
         "and DIR/summary.md; rerun the same command to resume. Exit codes: 0 done, 1 missing "
         "data or dependencies, an unusable workdir or nothing found, 2 a bad flag, config "
         "file, key or value, 130 Ctrl-C, 143 SIGTERM.")
"""What ``--help`` shows first."""
EXAMPLE = ("python -m symopt.main --config=experiments/digits.py --workdir=runs/digits "
           "--config.search.generations=5")
"""What ``--help`` shows last."""


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags; a bad flag, config file, key or value exits with code 2;
    ``--help`` shows the flags and config keys and exits 0."""
    return cli.parse_flags(PROGRAM, argv, _CONFIG, config_lib.validate, usage=USAGE,
                           example=EXAMPLE)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}", cli.USAGE_ERROR)
    if _CONFIG.value is None:
        cli.fail(PROGRAM, "--config is required, e.g. --config=experiments/digits.py",
                 cli.USAGE_ERROR)
    if not _WORKDIR.value:
        cli.fail(PROGRAM, "--workdir is required, e.g. --workdir=runs/digits", cli.USAGE_ERROR)
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # keep JAX's and TFDS's log lines quiet
    resume = (f"every candidate trained so far is kept in {_WORKDIR.value!r}; rerun the same "
              "command to resume")
    quiet = False  # set once JAX knows which process this is

    def log(line: str) -> None:
        # Before the done line (symopt.run.DONE): once it is read, a signal changes nothing.
        if line.startswith(run.DONE):
            cli.finished()
        if not quiet:
            print(line, flush=True)

    with cli.guarded(PROGRAM, on_interrupt=resume):
        configure_cpu_devices(_CPU_DEVICES.value)
        configure_compilation_cache(_CACHE_DIR.value)
        distributed = configure_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                            _PROCESS_ID.value)
        import jax  # noqa: PLC0415

        from symopt import run  # noqa: PLC0415 (imports JAX; flag errors stay fast)

        quiet = distributed and jax.process_index() != 0  # process 0 speaks for the run
        result = run.run(_CONFIG.value, _WORKDIR.value, log=log, reselect=_RESELECT.value)
    cli.finished()
    if not result.found_anything:
        cli.fail(PROGRAM, "the search found no optimizer that trained without diverging "
                 "(see the warning above); best.json holds its best failure", cli.RUN_ERROR)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
