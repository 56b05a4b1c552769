"""``python -m symopt.main --config=experiments/digits.py --workdir=runs/digits``.

Flags only (an absl app with ``ml_collections.config_flags``), then one call
into :func:`symopt.run.run`. Every config key can be overridden on the
command line, e.g. ``--config.search.generations=5``. An unknown key or a bad
value is a one-line error and exit code 2; missing data (a TFDS task whose
data is not prepared) or a missing optional dependency is a one-line error
and exit code 1. Re-running the same command on the same workdir resumes.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from symopt import archive, tasks
from symopt import config as config_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Search config file (experiments/*.py); override keys with "
    "--config.<section>.<key>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for the archive, best.json and summary.md; rerun with the "
    "same directory to resume.")

USAGE_ERROR, RUN_ERROR = config_lib.USAGE_ERROR, config_lib.RUN_ERROR


def _fail(message: str, code: int) -> None:
    config_lib.exit_with_error("symopt.main", message, code)


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags; a bad flag, config file, key or value exits with code 2."""
    try:
        remaining = flags.FLAGS(argv)
        config = _CONFIG.value
    except (KeyError, AttributeError) as e:  # an override of a key the config lacks
        key = str(e.args[0] if e.args else "?").strip("'\"")
        given = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
        if given:
            _fail(f"unknown config key {key!r} in {', '.join(given)}", USAGE_ERROR)
        _fail(f"cannot load the config file: {config_lib.one_line(e)}", USAGE_ERROR)
    except flags.Error as e:
        _fail(config_lib.one_line(e), USAGE_ERROR)
    except Exception as e:  # noqa: BLE001 (the config file is user code)
        message = f"{type(e).__name__}: {config_lib.one_line(e)}"
        _fail(f"cannot load the config file: {message}", USAGE_ERROR)
    if config is not None:
        try:
            config_lib.validate(config)
        except config_lib.ConfigError as e:
            _fail(config_lib.one_line(e), USAGE_ERROR)
    return remaining


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}", USAGE_ERROR)
    if _CONFIG.value is None:
        _fail("--config is required, e.g. --config=experiments/digits.py", USAGE_ERROR)
    if not _WORKDIR.value:
        _fail("--workdir is required, e.g. --workdir=runs/digits", USAGE_ERROR)
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # keep JAX's and TFDS's log lines quiet
    from symopt import run  # noqa: PLC0415 (imports JAX; flag errors stay fast)

    try:
        run.run(_CONFIG.value, _WORKDIR.value, log=lambda line: print(line, flush=True))
    except config_lib.ConfigError as e:
        _fail(config_lib.one_line(e), USAGE_ERROR)
    except (tasks.DataNotFoundError, tasks.MissingDependencyError, archive.ArchiveError) as e:
        _fail(config_lib.one_line(e), RUN_ERROR)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
