"""A search's workdir: its lock, its archive opened against the config, and its outputs.

A workdir holds one run: ``archive.sqlite`` (every candidate, the config, and
meta values named here), ``best.json`` and ``summary.md``. This module owns
the rules that keep it safe:

* one run at a time (:func:`lock`, an advisory lock released at exit or kill,
  on a ``.lock`` file that is never followed through a link nor truncated);
* a resumed run holds the same config, except the keys of
  :data:`symopt.config.RESUMABLE_CHANGES` (:func:`open_archive`); a run that
  had trained nothing may start again with a new config;
* an output file is replaced only if this run wrote it (:func:`write_output`
  keeps each file's hash in the archive), so nothing symopt did not write is
  overwritten; it is replaced atomically (a temporary file, fsynced, renamed
  over it), so a kill at any instant leaves the old file or the new one, and
  the archive knows both;
* in a multi-host run process 0 alone writes; the other processes work on an
  in-memory copy of the archive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections

from symopt import archive as archive_lib
from symopt import config as config_lib
from symopt.archive import Archive, ArchiveError

BEST = "best.json"
"""The winner's graph, which :func:`symopt.load` reads."""

HORIZON = "search_horizon"
"""Meta key: the generation count the run's mutation decay is laid over."""
REFERENCE = "baseline"
"""Meta key: the tuned reference's value per search task (stored under its
first name, so that older workdirs resume); :data:`REFERENCE_RATES` holds
the learning rate that gave it."""
REFERENCE_VALIDATION = "baseline_elimination"
"""Meta key: the tuned reference on the validation tasks."""
TEST_RESULTS = "test_results"
"""Meta key: the test tasks' results, with the winner they were measured for."""
OUTPUTS = "outputs"
"""Meta key: the hash of each output file this run wrote."""
PENDING = "outputs_pending"
"""Meta key: the hash of each output file being replaced (written in full to a
temporary file, not yet known to be renamed over it): a run killed between the
rename and the record of :data:`OUTPUTS` recognises either file as its own."""
TEMPORARY = ".symopt-tmp"
"""The suffix of an output's temporary file, ``.<name>.symopt-tmp``; one left
by a kill is removed by the next run (:func:`lock`)."""
LOCK = ".lock"
"""The lock file's name in the workdir."""
HALL_OF_FAME = "hall_of_fame"
"""Meta key: the Pareto front of fitness against complexity."""


def rates_key(key: str) -> str:
    """The meta key of the learning rates that gave the reference values under ``key``."""
    return key + "_learning_rates"


def tried_key(key: str) -> str:
    """The meta key of the learning rates the reference under ``key`` was tried
    at per task, and whether its best is still at an edge of them."""
    return key + "_tried"


REFERENCE_RATES = rates_key(REFERENCE)
"""Meta key: the learning rate that gave each search task's reference value."""

_CONFIG_META = (HORIZON, REFERENCE, REFERENCE_RATES, tried_key(REFERENCE), REFERENCE_VALIDATION,
                rates_key(REFERENCE_VALIDATION), tried_key(REFERENCE_VALIDATION), TEST_RESULTS,
                OUTPUTS, PENDING)
"""Meta keys whose values follow from the config (what a new config drops)."""


def is_writer() -> bool:
    """Whether this process writes the workdir: process 0 of a multi-host run."""
    return jax.process_index() == 0


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """One run per workdir at a time (an advisory lock, released at exit or kill).

    The lock file is opened without following a symbolic link and without
    truncating anything; a ``.lock`` that is a link, not a regular file, or a
    hard link to another file is refused. Holding the lock, it removes the
    temporary files a killed run left (:data:`TEMPORARY`).

    Raises:
      ArchiveError: another process holds the lock, or ``.lock`` is not a
        regular file of its own.
    """
    archive_lib.check_workdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK)
    refused = ArchiveError(f"{path!r} is not symopt's lock file (a symbolic link, a hard link "
                           "or not a regular file); move it away and rerun")
    try:  # O_NONBLOCK: a FIFO without a reader fails instead of blocking
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
            raise refused from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise refused
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ArchiveError(f"{workdir!r}: another symopt run is using this workdir") from None
        _remove_temporaries(workdir)
        yield
    finally:
        os.close(fd)


def _remove_temporaries(workdir: str) -> None:
    """Removes the outputs' temporary files a killed run left (the lock is held)."""
    for entry in os.scandir(workdir):
        if entry.name.startswith(".") and entry.name.endswith(TEMPORARY) and not entry.is_dir(
                follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def first_horizon(workdir: str) -> int | None:
    """``search.generations`` of the run already in ``workdir`` (None: no run yet)."""
    if not os.path.exists(os.path.join(workdir, archive_lib.FILENAME)):
        return None
    with Archive.open(workdir, create=False) as archive:
        return archive.get_meta(HORIZON, kind=int)


def open_archive(config: ml_collections.ConfigDict, workdir: str, log: Callable[[str], None],
                 *, writer: bool = True) -> Archive:
    """The workdir's archive, holding ``config``: a new run stores it, a resumed
    run may differ from the stored one only in the resumable keys. The other
    processes of a multi-host run (not ``writer``) work on an in-memory copy:
    they compute and record what process 0 does, and only it writes.

    Raises:
      ArchiveError: the workdir holds a run of another config (a workdir
        problem: exit code 1 on the command line).
      ConfigError: the workdir holds a run with more generations.
    """
    archive = Archive.open(workdir) if writer else Archive.in_memory_copy(workdir)
    stored = archive.config(like=config)
    if stored is None:
        archive.set_config(config.to_dict())
        return archive
    upgraded = config_lib.upgrade(stored)
    if upgraded != stored:  # a run stored under old key names
        stored = upgraded
        archive.set_config(stored, replace=True)
    changed = [k for k in archive.config_diff(config.to_dict()) if not config_lib.resumable(k)]
    if changed and not archive.ids():  # nothing trained depends on the old config
        with archive.transaction():
            archive.set_config(config.to_dict(), replace=True)
            for key in _CONFIG_META:
                archive.put_meta(key, None)
        log(f"the run in {workdir!r} had trained nothing; starting it again with this config")
        return archive
    if changed:
        archive.close()
        raise ArchiveError(
            f"workdir {workdir!r} holds a run with a different config (keys: {', '.join(changed)});"
            " use a new --workdir or the same config to resume")
    if config.search.generations < stored["search"]["generations"]:
        archive.close()
        raise config_lib.ConfigError(
            f"config.search.generations: the run in {workdir!r} has "
            f"{stored['search']['generations']}; a resumed run may only add generations")
    archive.set_config(config.to_dict(), replace=True)
    log(f"resuming the run in {workdir!r}: {len(archive.ids())} candidates in the archive")
    return archive


def write_output(archive: Archive, workdir: str, name: str,
                 write: Callable[[str], Any]) -> None:
    """Writes ``<workdir>/<name>`` with ``write(path)``, refusing to replace a
    file this run did not write: the archive keeps the hash of each file it
    writes (meta :data:`OUTPUTS`).

    ``write`` writes a temporary file in the workdir, which is fsynced, its
    hash recorded as pending (meta :data:`PENDING`), and then renamed over the
    target; the directory is fsynced and the hash becomes the output's. A kill
    at any instant leaves the old file or the new one, and a rerun recognises
    either. An empty file is replaced too: it holds nothing to lose (an older
    symopt, killed in its write, left one).

    Raises:
      ArchiveError: the file exists and this run did not write it.
    """
    path = os.path.join(workdir, name)
    if not is_writer():
        return
    outputs = archive.get_meta(OUTPUTS, {}, kind=dict) or {}
    pending = archive.get_meta(PENDING, {}, kind=dict) or {}
    if os.path.lexists(path) and not _replaceable(path, {outputs.get(name), pending.get(name)}):
        raise ArchiveError(f"{name} was not written by this run, or was changed since; move "
                           f"{path!r} away (or use another --workdir) and rerun to resume")
    temporary = os.path.join(workdir, f".{name}{TEMPORARY}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    try:
        write(temporary)
        digest = _synced_hash(temporary)
        archive.put_meta(PENDING, {**pending, name: digest})
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(workdir)
    with archive.transaction():
        archive.put_meta(OUTPUTS, {**outputs, name: digest})
        archive.put_meta(PENDING, {k: v for k, v in pending.items() if k != name})


def _replaceable(path: str, hashes: set[str | None]) -> bool:
    """Whether an existing output may be replaced: a regular file (not a link)
    that is empty or holds what this run wrote."""
    info = os.lstat(path)
    return stat.S_ISREG(info.st_mode) and (info.st_size == 0 or file_hash(path) in hashes)


def _synced_hash(path: str) -> str:
    """Flushes a written file to the disk and returns its hash (one open)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sync_directory(directory: str) -> None:
    """Flushes a directory's entries (a rename in it) to the disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_hash(path: str) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
