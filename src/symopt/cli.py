"""What symopt's command lines share: one-line errors and interrupts.

``python -m symopt.main`` and ``python -m symopt.transfer`` are absl apps with
an ``ml_collections`` config flag. Whatever a user can do wrong (a config
path that is missing or a directory, an unknown ``--config.`` key, a bad
value, missing data, a full disk, a read-only workdir) ends in one line on
stderr, ``<program>: error: <message>``, and a documented exit code, never
a traceback. Ctrl-C and SIGTERM end with one line saying what was kept and
how to go on. Both programs go through :func:`parse_flags` and
:func:`guarded`, so they cannot drift apart.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from symopt import config as config_lib
from symopt.archive import ArchiveError
from symopt.evaluate import PeerLost
from symopt.tasks.base import (
    TRACEBACK_ENV,
    DataNotFoundError,
    MissingDependencyError,
    UserCodeError,
)

USAGE_ERROR = 2
"""Exit code of a command line given a bad flag, config file, key or value."""
RUN_ERROR = 1
"""Exit code of a run stopped by missing data or dependencies, its workdir, or
a lost peer of a multi-host run."""
INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""
TERMINATED = 143
"""Exit code after SIGTERM (128 + SIGTERM)."""


REDELIVERY_SECONDS = 0.01
"""How soon an interrupt that Python ignored is delivered again (:func:`guarded`)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM: a kind of
    KeyboardInterrupt, so that code which stops cleanly on Ctrl-C does on it too."""


def fail(program: str, message: str, code: int) -> None:
    """``<program>: error: <message>`` on stderr, then exit with ``code``."""
    exit_with_error(program, config_lib.one_line(message), code)


def config_path(argv: list[str]) -> str | None:
    """The path given to ``--config`` (``--config=P`` or ``--config P``), if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def check_config_path(path: str) -> str | None:
    """Why ``path`` cannot be a config file, or None. A ``file.py:args``
    suffix (``ml_collections``' config arguments) is allowed."""
    file = path if os.path.exists(path) or ":" not in path else path.rsplit(":", 1)[0]
    if not os.path.exists(file):
        return f"config file not found: {file}"
    if os.path.isdir(file):
        return f"the config path is a directory, not a file: {file}"
    if not os.access(file, os.R_OK):
        return f"the config file is not readable: {file}"
    return None


def parse_flags(program: str, argv: list[str], config_flag: Any,
                validate: Callable[[Any], Any]) -> list[str]:
    """Parses absl flags and loads and validates the config; every failure
    is a one-line error with exit code 2."""
    from absl import flags  # noqa: PLC0415 (only the command lines need absl)

    path = config_path(argv[1:])
    if path is not None and (problem := check_config_path(path)):
        fail(program, problem, USAGE_ERROR)
    try:
        remaining = flags.FLAGS(argv)
        config = config_flag.value
        if config is not None:
            validate(config)
    except config_lib.ConfigError as e:
        fail(program, str(e), USAGE_ERROR)
    except (KeyError, AttributeError) as e:  # an override of a key the config lacks
        key = str(e.args[0] if e.args else "?").strip("'\"")
        given = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
        if given:
            fail(program, f"unknown config key {key!r} in {', '.join(given)}", USAGE_ERROR)
        fail(program, f"cannot load the config file: {e}", USAGE_ERROR)
    except flags.Error as e:
        fail(program, str(e), USAGE_ERROR)
    except Exception as e:  # noqa: BLE001 (the config file is user code)
        cause = e.__cause__ or e
        fail(program, f"cannot load the config file: {type(cause).__name__}: {cause}",
             USAGE_ERROR)
    return remaining


@contextlib.contextmanager
def guarded(program: str, *, on_interrupt: str) -> Iterator[None]:
    """Runs the body with one-line errors: a config error exits 2; missing
    data or dependencies, workdir and archive errors, and OS errors (a full
    disk, a read-only file) exit 1; Ctrl-C exits 130 and SIGTERM 143, each
    printing ``on_interrupt`` (what was kept, how to go on).

    A signal whose exception is raised where Python ignores exceptions (a
    garbage-collection callback, such as JAX's, or a ``__del__``) is
    delivered again to the main thread, so Ctrl-C is never lost."""
    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    def redeliver(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # Shortly, from another thread: delivered while this hook runs, it
            # would be ignored again (and if it lands in a callback again, it
            # comes back here).
            signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else (
                signal.SIGINT)
            timer = threading.Timer(REDELIVERY_SECONDS, _thread.interrupt_main, args=(signum,))
            timer.daemon = True
            timer.start()
        else:
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGTERM, terminate)
    previous_hook, sys.unraisablehook = sys.unraisablehook, redeliver
    try:
        yield
    except KeyboardInterrupt as e:  # symopt.run.Interrupted says how far the run got
        where = f" {e.where}" if hasattr(e, "where") else ""
        if isinstance(e, Terminated) or isinstance(e.__cause__, Terminated):
            fail(program, f"terminated{where}; {on_interrupt}", TERMINATED)
        fail(program, f"interrupted{where}; {on_interrupt}", INTERRUPTED)
    except config_lib.ConfigError as e:
        fail(program, str(e), USAGE_ERROR)
    except PeerLost as e:
        # JAX's distributed shutdown at exit would wait for the lost process and
        # then abort with a stack trace: leave at once, with the one line.
        exit_with_error(program, f"{config_lib.one_line(e)}; {on_interrupt}", RUN_ERROR,
                        hard=True)
    except UserCodeError as e:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            import traceback  # noqa: PLC0415

            traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        fail(program, str(e), RUN_ERROR)
    except (DataNotFoundError, MissingDependencyError, ArchiveError) as e:
        fail(program, str(e), RUN_ERROR)
    except sqlite3.Error as e:
        fail(program, f"the archive: {e}", RUN_ERROR)
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        fail(program, f"{e.strerror or e}{where}", RUN_ERROR)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def exit_with_error(program: str, message: str, code: int, *, hard: bool = False) -> NoReturn:
    """Prints ``<program>: error: <message>`` to stderr and exits with ``code``;
    ``hard`` skips the interpreter's exit handlers (``os._exit``)."""
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    if hard:
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)
