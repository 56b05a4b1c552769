"""What symopt's command lines share: one-line errors and interrupts.

``python -m symopt.main`` and ``python -m symopt.transfer`` are absl apps with
an ``ml_collections`` config flag. Whatever a user can do wrong (a config
path that is missing or a directory, an unknown ``--config.`` key, a bad
value, missing data, a full disk, a read-only workdir) ends in one line on
stderr, ``<program>: error: <message>``, and a documented exit code, never
a traceback. Ctrl-C and SIGTERM end with one line saying what was kept and
how to go on, from the first line of the program to its exit:

* :func:`install_signal_handlers`, called before anything heavy is imported:
  while the program starts, a signal ends it at once;
* :func:`guarded`, around the run: a signal raises ``KeyboardInterrupt`` (or
  :class:`Terminated`), so that the run stops cleanly and says how far it got;
* :func:`finished`, once the run is done: a signal changes nothing, and the
  program exits as it would have;
* :func:`exit_with_error`, once an error's line is printed: a signal exits
  with that error's code and no other line.

``--help`` prints the flags, every config key with its default and meaning,
and an example, and exits 0. Both programs go through :func:`parse_flags` and
:func:`guarded`, so they cannot drift apart.

This module imports nothing heavy at its top (JAX loads on use), so that a
command line can import it first.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import os
import re
import signal
import sqlite3
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

USAGE_ERROR = 2
"""Exit code of a command line given a bad flag, config file, key or value."""
RUN_ERROR = 1
"""Exit code of a run stopped by missing data or dependencies, its workdir (a
file, another run's files, a full or read-only disk), or a lost peer of a
multi-host run."""
INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""
TERMINATED = 143
"""Exit code after SIGTERM (128 + SIGTERM)."""


REDELIVERY_SECONDS = 0.01
"""How soon an interrupt that Python ignored is delivered again (:func:`guarded`)."""

HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull")
"""The flags that ask for :func:`parse_flags`' help."""

QUIET_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "NONE",
              "GLOG_minloglevel": "3"}
"""The environment that keeps JAX's, XLA's and gRPC's own log lines off
stderr (:func:`quiet_logs`): in a multi-host run whose peer is lost, they
would come before the one line that says so."""
VERBOSE_FLAGS = ("-v", "--v", "--verbosity")
"""absl's verbosity flags: where one is given, the logs stay as they are."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM: a kind of
    KeyboardInterrupt, so that code which stops cleanly on Ctrl-C does on it too."""


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_program: str | None = None
"""The command line that :func:`install_signal_handlers` set up in this process."""


def _stopped(signum: int) -> tuple[str, int]:
    """What a signal did, and its exit code."""
    if signum == signal.SIGTERM:
        return "terminated", TERMINATED
    return "interrupted", INTERRUPTED


def _stop_while_starting(signum: int, frame: Any) -> None:
    word, code = _stopped(signum)
    exit_with_error(str(_program), f"{word} while starting; nothing was written", code,
                    hard=True)


def _ignore_signals() -> None:
    for signum in _SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def install_signal_handlers(program: str) -> None:
    """Makes Ctrl-C and SIGTERM one line from here to the process's exit; a
    command line calls it first, before importing anything heavy.

    Until :func:`guarded` takes over, a signal prints ``<program>: error:
    interrupted while starting; nothing was written`` and exits at once
    (130 or 143): an exception raised in an import could be lost in a
    garbage-collection callback, or end in a traceback. At exit, after every
    other exit handler (this one is registered first), both signals are
    ignored: the interpreter gives them back to the system as it shuts down,
    and a signal then would change the exit code and print nothing.
    """
    global _program
    _program = program
    atexit.register(_ignore_signals)
    for signum in _SIGNALS:
        signal.signal(signum, _stop_while_starting)


def finished() -> None:
    """The run is done (its last line printed): from here a Ctrl-C or SIGTERM
    is ignored, and the program exits as it would have (0, or its error's line
    and code)."""
    _ignore_signals()


def _verbose(argv: list[str]) -> bool:
    """Whether the command line ``argv`` gives one of :data:`VERBOSE_FLAGS`."""
    return any(arg.split("=")[0] in VERBOSE_FLAGS for arg in argv[1:])


def quiet_logs(argv: list[str], environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Sets :data:`QUIET_LOGS` in ``environ`` (where not set already) unless
    ``argv`` asks for verbose output (:data:`VERBOSE_FLAGS`); returns whether it
    did. Call it before JAX is imported: its C++ libraries read them at load."""
    if _verbose(argv):
        return False
    for key, value in QUIET_LOGS.items():
        environ.setdefault(key, value)
    return True


def fail(program: str, message: str, code: int) -> NoReturn:
    """``<program>: error: <message>`` on stderr, then exit with ``code``."""
    from symopt import config as config_lib  # noqa: PLC0415 (imports JAX)

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


def help_text(program: str, usage: str, example: str) -> str:
    """``--help``: how to call ``program`` and what it does (``usage``: a line,
    a blank line and a paragraph), its flags, every config
    key with its default and meaning (:func:`symopt.config.help_text`), and
    ``example``."""
    from absl import flags  # noqa: PLC0415

    from symopt import config as config_lib  # noqa: PLC0415

    synopsis, _, about = usage.partition("\n\n")
    own = flags.FLAGS.main_module_help().strip("\n").split("\n", 1)[-1]  # less the file name
    return "\n\n".join([f"usage: python -m {program} {synopsis}", textwrap.fill(about, 80),
                        f"flags:\n{own}",
                        config_lib.help_text().rstrip("\n"), f"example:\n  {example}"]) + "\n"


def unknown_key_message(error: BaseException, argv: list[str]) -> str | None:
    """The one line for an override of a key the config lacks (the KeyError or
    AttributeError ``ml_collections`` raises), naming the ``--config.`` flag and
    its suggestion; None where no override names the key."""
    inner = error.args[0] if error.args else error
    text = str(inner.args[0] if isinstance(inner, BaseException) and inner.args else inner)
    match = re.match(r"""\s*['"]?([^'"\s]+)['"]?\s*(?:Did you mean ['"]([^'"]+)['"])?""", text)
    if match is None:
        return None
    key, suggestion = match.groups()
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        flag = arg.split("=", 1)[0]
        path = flag[len("--config."):].split(".")
        if key in path:
            where = ".".join(path[:path.index(key) + 1])
            hint = (f" (did you mean {'.'.join([*path[:path.index(key)], suggestion])!r}?)"
                    if suggestion else "")
            return f"unknown config key {where!r} in {flag}{hint}"
    return None


def parse_flags(program: str, argv: list[str], config_flag: Any,
                validate: Callable[[Any], Any], *, usage: str = "",
                example: str = "") -> list[str]:
    """Parses absl flags and loads and validates the config; every failure
    is a one-line error with exit code 2. ``--help`` prints :func:`help_text`
    and exits 0."""
    from absl import flags, logging  # noqa: PLC0415 (only the command lines need absl)
    from ml_collections import ConfigDict  # noqa: PLC0415

    from symopt import config as config_lib  # noqa: PLC0415 (imports JAX)
    from symopt.tasks.base import UserCodeError  # noqa: PLC0415

    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(help_text(program, usage, example), end="", flush=True)
        sys.exit(0)
    path = config_path(argv[1:])
    if path is not None and (problem := check_config_path(path)):
        fail(program, problem, USAGE_ERROR)
    if not _verbose(argv):
        logging.set_verbosity(logging.ERROR)  # ml_collections' warnings are ours to say
    try:
        remaining = flags.FLAGS(argv)
        config = config_flag.value
        if path is not None and not isinstance(config, ConfigDict):
            what = "None" if config is None else f"a {type(config).__name__}"
            fail(program, f"{path}: get_config() returned {what}, not an "
                 "ml_collections.ConfigDict", USAGE_ERROR)
        if config is not None:
            validate(config)
    except config_lib.ConfigError as e:
        fail(program, str(e), USAGE_ERROR)
    except UserCodeError as e:  # a task module the config names, imported to check it
        user_code_failed(program, e)
    except (KeyError, AttributeError) as e:  # an override of a key the config lacks
        fail(program, unknown_key_message(e, argv)
             or f"cannot load the config file {path}: {config_lib.one_line(e)}", USAGE_ERROR)
    except flags.Error as e:
        fail(program, str(e), USAGE_ERROR)
    except Exception as e:  # noqa: BLE001 (the config file is user code)
        cause = e.__cause__ or e
        fail(program, f"cannot load the config file: {type(cause).__name__}: {cause}",
             USAGE_ERROR)
    return remaining


def user_code_failed(program: str, error: BaseException) -> NoReturn:
    """A user's task code failed (:class:`symopt.tasks.base.UserCodeError`):
    its one line, exit 1; the traceback first where ``SYMOPT_TRACEBACK`` is set."""
    from symopt.tasks.base import TRACEBACK_ENV  # noqa: PLC0415

    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        import traceback  # noqa: PLC0415

        traceback.print_exception(error.__cause__ or error, file=sys.stderr)
    fail(program, str(error), RUN_ERROR)


@contextlib.contextmanager
def guarded(program: str, *, on_interrupt: str) -> Iterator[None]:
    """Runs the body with one-line errors: a config error exits 2; missing
    data or dependencies, workdir and archive errors, and OS errors (a full
    disk, a read-only file) exit 1; Ctrl-C exits 130 and SIGTERM 143, each
    printing ``on_interrupt`` (what was kept, how to go on).

    A signal whose exception is raised where Python ignores exceptions (a
    garbage-collection callback, such as JAX's, or a ``__del__``) is
    delivered again to the main thread, so Ctrl-C is never lost. On leaving,
    the signal handlers and ``sys.unraisablehook`` are what they were (unless
    :func:`finished` or :func:`exit_with_error` has replaced the handlers)."""
    from symopt import config as config_lib  # noqa: PLC0415 (before the handlers: imports JAX)
    from symopt.archive import ArchiveError  # noqa: PLC0415
    from symopt.budget import OverBudget  # noqa: PLC0415
    from symopt.evaluate import PeerLost  # noqa: PLC0415
    from symopt.tasks.base import (  # noqa: PLC0415
        DataNotFoundError,
        MissingDependencyError,
        UserCodeError,
    )

    redelivery = _Redelivery(sys.unraisablehook)
    previous_hook, sys.unraisablehook = sys.unraisablehook, redelivery.hook
    previous_format, warnings.formatwarning = warnings.formatwarning, (
        lambda message, category, *args, **kwargs:
        f"{program}: warning: {config_lib.one_line(message)}\n")
    previous = {signum: signal.signal(signum, redelivery.interrupt) for signum in _SIGNALS}
    try:
        yield
    except KeyboardInterrupt as e:  # symopt.run.Interrupted says how far the run got
        where = f" {e.where}" if hasattr(e, "where") else ""
        terminated = isinstance(e, Terminated) or isinstance(e.__cause__, Terminated)
        word, code = _stopped(signal.SIGTERM if terminated else signal.SIGINT)
        # What was trained is kept by now (the archive's transactions committed,
        # outputs renamed into place): a command line leaves at once, not after
        # the XLA computations its training threads are still running.
        exit_with_error(program, config_lib.one_line(f"{word}{where}; {on_interrupt}"), code,
                        hard=_program is not None)
    except config_lib.ConfigError as e:
        fail(program, str(e), USAGE_ERROR)
    except PeerLost as e:
        # JAX's distributed shutdown at exit would wait for the lost process and
        # then abort with a stack trace: leave at once, with the one line.
        exit_with_error(program, f"{config_lib.one_line(e)}; {on_interrupt}", RUN_ERROR,
                        hard=True)
    except UserCodeError as e:
        user_code_failed(program, e)
    except OverBudget as e:
        fail(program, str(e), USAGE_ERROR)
    except (DataNotFoundError, MissingDependencyError, ArchiveError) as e:
        fail(program, str(e), RUN_ERROR)
    except sqlite3.Error as e:
        fail(program, f"the archive: {e}", RUN_ERROR)
    except OSError as e:
        where = f" ({e.filename!r})" if getattr(e, "filename", None) else ""
        fail(program, f"{e.strerror or e}{where}", RUN_ERROR)
    finally:
        redelivery.done = True
        for signum, handler in previous.items():
            if signal.getsignal(signum) == redelivery.interrupt:
                signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
        warnings.formatwarning = previous_format


class _Redelivery:
    """:func:`guarded`'s signal handler and ``sys.unraisablehook``: an interrupt
    that Python ignored (raised in a garbage-collection callback or a
    ``__del__``) is delivered again to the main thread, from a thread that
    polls every :data:`REDELIVERY_SECONDS`, until one is raised where it counts.

    Neither the handler nor the hook takes a lock (the handler may run inside
    the hook, in the main thread), and the handler raises nothing inside the
    hook, where Python would ignore it without calling the hook again: it
    leaves the signal to be delivered again."""

    def __init__(self, previous_hook: Callable[[Any], Any]):
        self.previous_hook = previous_hook
        self.signum = signal.SIGINT  # the signal to deliver again
        self.lost = 0  # how many were lost: written by the main thread only
        self.in_hook = False
        self.done = False  # guarded has ended: the thread stops
        self.thread: threading.Thread | None = None

    def interrupt(self, signum: int, frame: Any) -> None:
        if self.in_hook:
            self.signum, self.lost = signum, self.lost + 1
            return
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def hook(self, unraisable: Any) -> None:
        self.in_hook = True
        try:
            if not isinstance(unraisable.exc_value, KeyboardInterrupt):
                self.previous_hook(unraisable)
                return
            self.signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else (
                signal.SIGINT)
            self.lost += 1
        finally:
            if self.lost and self.thread is None:  # also one that came during previous_hook
                self.thread = threading.Thread(target=self.deliver, daemon=True,
                                               name="symopt-redelivery")
                self.thread.start()
            self.in_hook = False

    def deliver(self) -> None:
        delivered = 0
        while not self.done:
            time.sleep(REDELIVERY_SECONDS)  # the main thread leaves the callback first
            if self.lost != delivered and not self.done:
                delivered = self.lost
                _thread.interrupt_main(self.signum)


def exit_with_error(program: str, message: str, code: int, *, hard: bool = False) -> NoReturn:
    """Prints ``<program>: error: <message>`` to stderr and exits with ``code``;
    ``hard`` skips the interpreter's exit handlers (``os._exit``). In a command
    line (:func:`install_signal_handlers`), a signal from here on exits with
    ``code`` and prints nothing more."""
    if _program is not None:
        def exit_now(signum: int, frame: Any) -> None:
            _flush_and_exit(code)

        for signum in _SIGNALS:
            signal.signal(signum, exit_now)
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    if hard:
        _flush_and_exit(code)
    sys.exit(code)


def _flush_and_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
