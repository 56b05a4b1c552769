"""The archive: the SQLite file that holds everything one search run measured.

It owns ``<workdir>/archive.sqlite``: the schema (:data:`SCHEMA`), the writes
of a run and the queries its readers (:mod:`symopt.run`, :mod:`symopt.viz`,
the notebook) make. The run is an append-only log: searchers are
deterministic, so a restarted run replays its searcher and takes each
candidate already archived under its id instead of training it again. Hence
inserts are idempotent (the same row again is a no-op, a different row under
the same key an :class:`ArchiveError`) and each write is one transaction
(:meth:`Archive.transaction` groups several).

The file is in WAL mode with ``synchronous=NORMAL``: a commit is written to
the WAL before it returns, so ``kill -9`` at any moment loses no committed
transaction and leaves nothing of an uncommitted one; ``synchronous="FULL"``
also survives power loss, at one fsync per commit.

JSON columns hold standard JSON: a non-finite float is stored as
``{"$float": "nan" | "inf" | "-inf"}``, numpy values as lists and numbers.
SQLite has no NaN, so a NaN ``fitness`` is stored, and read back, as None.

Reading checks values as well as the schema: a file with symopt's tables may
still hold a value symopt never writes (an edit, another writer), and each
row is checked as it is decoded (types, JSON, a record's rules, a graph
through :func:`symopt.graph.from_dict`, the config through
``ml_collections``). A bad value is an :class:`ArchiveError` of one line
naming the table, the row and the column, never a traceback further on.

One concept, the archive file, in one module: its schema, its row types, its
JSON columns and its queries. It imports no other symopt module when it
loads (:mod:`symopt.graph` only when a graph is first read), so that it
loads without JAX: the kill -9 tests run it, loaded by path, in child
processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

FILENAME = "archive.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("evaluated", "rejected", "duplicate", "diverged")

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    space TEXT NOT NULL,
    origin TEXT NOT NULL,
    parents TEXT NOT NULL,
    genome TEXT NOT NULL,
    graph TEXT,
    fingerprint TEXT,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    reason TEXT,
    duplicate_of INTEGER REFERENCES candidates (id) DEFERRABLE INITIALLY DEFERRED,
    fitness REAL,
    metrics TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    equation TEXT
);
CREATE INDEX candidates_fingerprint ON candidates (fingerprint);
CREATE INDEX candidates_generation ON candidates (generation);
CREATE TABLE stage_results (
    candidate_id INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    task TEXT NOT NULL,
    metrics TEXT NOT NULL,
    fitness REAL,
    PRIMARY KEY (candidate_id, stage, task)
);
"""
"""The tables of schema version :data:`SCHEMA_VERSION`. ``meta`` maps keys to
JSON values: ``schema_version``, ``config`` and what the run records; a
``candidates`` row is a :class:`CandidateRecord`, a ``stage_results`` row a
:class:`StageResult` (the columns are their fields, in order)."""

_JSON_COLUMNS = frozenset({"parents", "genome", "graph", "metrics"})
_RESERVED_META = ("schema_version", "config")
_MAX_PARAMS = 500  # ids per "IN (...)" query, under every SQLite's variable limit


def check_workdir(workdir: str | os.PathLike[str]) -> None:
    """Raises ArchiveError (one line) where ``workdir`` cannot hold a run: it
    is a file, or its archive path is a directory or a broken link."""
    workdir = os.fspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ArchiveError(f"the workdir {workdir} is a file, not a directory")
    path = os.path.join(workdir, FILENAME)
    if os.path.islink(path) and not os.path.exists(path):
        raise ArchiveError(f"{path} is a broken symbolic link (to {os.readlink(path)})")
    if os.path.isdir(path):
        raise ArchiveError(f"{path} is a directory, not an archive file")


def _layout(db: sqlite3.Connection) -> dict[str, tuple[tuple[Any, ...], ...]]:
    """Each table's columns (name, type, not null, primary key) and each index's
    table: what a file must match, in full, before symopt writes to it."""
    out: dict[str, tuple[tuple[Any, ...], ...]] = {}
    for kind, name, table in db.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind == "table":
            info = db.execute(f"PRAGMA table_info({name!r})").fetchall()
            out[name] = tuple((c[1], c[2].upper(), c[3], c[5]) for c in info)
        else:
            out[name] = ((kind, table),)
    return out


@functools.cache
def _expected_layout() -> dict[str, tuple[tuple[Any, ...], ...]]:
    db = sqlite3.connect(":memory:")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    layout = _layout(db)
    db.close()
    return layout


class ArchiveError(Exception):
    """An unusable archive file or a conflicting write; the message is one line."""


# --------------------------------------------------------------------------
# JSON with non-finite floats and numpy values.

_FLOAT_TAG = "$float"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _numpy_to_python(value: Any) -> Any:
    """``json.dumps``'s ``default``: numpy arrays and scalars as lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__} {value!r:.80}")


def _json_text(value: Any) -> str:
    """JSON text, with NaN and Infinity tokens (valid for Python's json only)."""
    return json.dumps(value, default=_numpy_to_python, separators=(",", ":"))


def to_jsonable(value: Any) -> Any:
    """What JSON makes of ``value``: numpy arrays and scalars become lists and
    Python numbers, tuples become lists, int/float/bool keys become str.
    Non-finite floats stay floats.

    Raises:
      TypeError: for a value JSON cannot hold.
    """
    return json.loads(_json_text(value))


def _tag_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {key: _tag_floats(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_tag_floats(v) for v in value]
    return value


def _untag_floats(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and value.get(_FLOAT_TAG) in _NON_FINITE:
            return _NON_FINITE[value[_FLOAT_TAG]]
        return {key: _untag_floats(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_untag_floats(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    """Standard JSON text of ``value``, non-finite floats tagged."""
    text = _json_text(value)
    if "NaN" in text or "Infinity" in text:  # the tokens, or (harmlessly) inside a string
        text = json.dumps(_tag_floats(json.loads(text)), allow_nan=False, separators=(",", ":"))
    return text


def _loads(text: str) -> Any:
    """The value of :func:`_dumps` text, non-finite floats restored."""
    value = json.loads(text)
    return _untag_floats(value) if _FLOAT_TAG in text else value


def _fitness(value: Any) -> float | None:
    """A float, or None for None and NaN (SQLite stores NaN as NULL)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------
# Rows.


@dataclasses.dataclass(frozen=True)
class CandidateRecord:
    """One candidate as archived; its fields are the ``candidates`` columns.

    Construction normalises: ``parents`` to a tuple of ints, ``genome``,
    ``graph`` and ``metrics`` to plain JSON values (a ``Graph`` is stored as
    its ``to_dict()``), a NaN ``fitness`` to None. ``created`` (Unix seconds)
    is set when the record is first stored if left None.
    """

    id: int
    generation: int
    space: str
    origin: str  # "seed", "sample", "mutation" or "crossover"
    parents: tuple[int, ...]
    genome: Any  # the space's to_json(genome)
    graph: dict[str, Any] | None  # symopt.graph.to_dict(graph)
    fingerprint: str | None
    status: str  # one of STATUSES
    reason: str | None = None  # the integrity reason code of a rejected candidate
    duplicate_of: int | None = None  # the id a duplicate repeats
    fitness: float | None = None  # higher is better; None when rejected
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # task -> name -> value
    seconds: float = 0.0
    created: float | None = None
    equation: str | None = None

    def __post_init__(self) -> None:
        graph = self.graph
        if graph is not None and not isinstance(graph, Mapping) and hasattr(graph, "to_dict"):
            graph = graph.to_dict()
        fields = {
            "id": int(self.id),
            "generation": int(self.generation),
            "parents": tuple(int(p) for p in self.parents),
            "genome": to_jsonable(self.genome),
            "graph": to_jsonable(graph),
            "duplicate_of": None if self.duplicate_of is None else int(self.duplicate_of),
            "fitness": _fitness(self.fitness),
            "metrics": to_jsonable(self.metrics),
            "seconds": float(self.seconds),
            "created": None if self.created is None else float(self.created),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        where = f"candidate {self.id}"
        if self.status not in STATUSES:
            raise ValueError(f"{where}: status {self.status!r} is not one of {STATUSES}")
        if self.status == "rejected" and (self.reason is None or self.fitness is not None):
            raise ValueError(f"{where}: a rejected candidate has a reason and no fitness")
        if self.status == "duplicate" and self.duplicate_of is None:
            raise ValueError(f"{where}: a duplicate names the candidate it repeats")
        if not isinstance(self.metrics, dict):
            raise ValueError(f"{where}: metrics must be a dict, got {type(self.metrics).__name__}")


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One candidate's result on one task at one stage of multi-fidelity evaluation."""

    candidate_id: int
    stage: int
    task: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    fitness: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidate_id", int(self.candidate_id))
        object.__setattr__(self, "stage", int(self.stage))
        object.__setattr__(self, "metrics", to_jsonable(self.metrics))
        object.__setattr__(self, "fitness", _fitness(self.fitness))


class GenerationSummary(NamedTuple):
    """One generation of the search; ``best``/``median`` over evaluated fitness."""

    generation: int
    count: int
    best: float | None
    median: float | None
    rejected: int
    duplicates: int
    diverged: int


_CANDIDATE_COLUMNS = tuple(f.name for f in dataclasses.fields(CandidateRecord))
_STAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(StageResult))
_SELECT_CANDIDATES = f"SELECT {', '.join(_CANDIDATE_COLUMNS)} FROM candidates"
_SELECT_STAGE_RESULTS = f"SELECT {', '.join(_STAGE_COLUMNS)} FROM stage_results"


def _to_row(record: CandidateRecord | StageResult) -> tuple[Any, ...]:
    """The column values of ``record``: JSON columns as text, ``created`` set."""
    row = []
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if field.name in _JSON_COLUMNS and value is not None:
            value = _dumps(value)
        elif field.name == "created" and value is None:
            value = time.time()
        row.append(value)
    return tuple(row)


# --------------------------------------------------------------------------
# Reading rows back: every value checked as it is decoded.
#
# A file with symopt's schema may still hold values symopt never writes (an
# edit, a foreign writer, a bug of an older version). Each value is checked
# as its row is decoded, at the cost of a few type tests (and, for a graph,
# symopt.graph's parser); a bad one is an ArchiveError naming the table, the
# row and the column, never a traceback further on.


class _Unexpected(Exception):
    """A stored value is not what its column holds: ``args`` is (what the
    column holds, an optional detail)."""


_SHOWN = 60  # characters of a bad value quoted in a message
_DETAIL = 120  # characters of the detail that follows it


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _shown(value: Any) -> str:
    return _cut(repr(value), _SHOWN)


def _bad_value(where: str, table: str, row: str, column: str, value: Any,
               error: _Unexpected) -> ArchiveError:
    expected, detail = (*error.args, "")[:2]
    detail = f" ({_cut(' '.join(str(detail).split()), _DETAIL)})" if detail else ""
    return ArchiveError(f"archive {where}: table {table}, row {row}, column {column}: "
                        f"expected {expected}, got {_shown(value)}{detail}")


def _integer(value: Any, what: str = "an integer") -> int:
    if type(value) is not int:
        raise _Unexpected(what)
    return value


def _natural(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Unexpected("an integer >= 0")
    return value


def _number(value: Any) -> float:
    if type(value) not in (float, int):
        raise _Unexpected("a number")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Unexpected("text")
    return value


def _optional_text(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise _Unexpected("text or null")
    return value


def _optional_id(value: Any) -> int | None:
    return None if value is None else _integer(value, "a candidate id or null")


def _status(value: Any) -> str:
    if value not in STATUSES or type(value) is not str:
        raise _Unexpected(f"one of {', '.join(STATUSES)}")
    return value


def _json(value: Any, what: str) -> Any:
    """The value of JSON column text; ``what`` names what it should hold."""
    if type(value) is not str:
        raise _Unexpected(what, "not JSON text")
    try:
        return _loads(value)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
        raise _Unexpected(what, f"not JSON: {e}") from None


def _parents(value: Any) -> tuple[int, ...]:
    what = "a list of candidate ids"
    parents = _json(value, what)
    if type(parents) is not list or any(type(p) is not int for p in parents):
        raise _Unexpected(what)
    return tuple(parents)


def _object(value: Any, what: str = "a JSON object") -> dict[str, Any]:
    decoded = _json(value, what)
    if type(decoded) is not dict:
        raise _Unexpected(what)
    return decoded


def _genome(value: Any) -> dict[str, Any]:
    return _object(value, "a genome (a JSON object)")


def _graph(value: Any) -> dict[str, Any] | None:
    return None if value is None else _object(value, "a graph (a JSON object) or null")


def _candidate_metrics(value: Any) -> dict[str, Any]:
    what = "metrics (a JSON object of objects: task -> name -> value)"
    metrics = _object(value, what)
    if any(type(m) is not dict for m in metrics.values()):
        raise _Unexpected(what)
    return metrics


def _stage_metrics(value: Any) -> dict[str, Any]:
    return _object(value, "metrics (a JSON object)")


def _meta_value(value: Any) -> Any:
    return _json(value, "a JSON value")


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text",
               list: "a list", dict: "a JSON object"}


def _meta_of_kind(value: Any, kinds: tuple[type, ...]) -> Any:
    """A meta value of one of ``kinds`` (see :meth:`Archive.get_meta`): a
    null passes, a bool only as ``bool``, an integer also as ``float``."""
    decoded = _meta_value(value)
    if decoded is None or (bool in kinds if type(decoded) is bool else (
            isinstance(decoded, kinds) or (float in kinds and type(decoded) is int))):
        return decoded
    raise _Unexpected(" or ".join(_KIND_NAMES.get(k, f"a {k.__name__}") for k in kinds)
                      + " or null")


def _run_config(value: Any, like: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stored run config: a JSON object that ``ml_collections`` takes (the
    run loop reads it back as a ``ConfigDict``), shaped ``like`` a plain
    config where one is given (:meth:`Archive.config`)."""
    import ml_collections  # noqa: PLC0415 (only a run's config needs it)

    what = "a run config (a JSON object that ml_collections.ConfigDict takes)"
    config = _object(value, what)
    try:
        ml_collections.ConfigDict(config)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise _Unexpected(what, str(e)) from None
    problem = None if like is None else _unlike(config, like)
    if problem:
        raise _Unexpected("a run config shaped like this one", problem)
    return config


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a section"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a number"
    return "text" if isinstance(value, str) else "a list"  # what else JSON holds


def _unlike(config: Mapping[str, Any], like: Mapping[str, Any], prefix: str = "") -> str | None:
    """The first key at which ``config`` and ``like`` (plain JSON configs) hold
    values of different kinds, described; None where there is none."""
    for key, value in config.items():
        other = like.get(key)
        if value is None or other is None:  # also a key of config only
            continue
        if _json_kind(value) != _json_kind(other):
            return (f"{prefix}{key} holds {_json_kind(value)}, {_shown(value)}, where this "
                    f"config holds {_json_kind(other)}")
        if isinstance(value, Mapping):
            problem = _unlike(value, other, f"{prefix}{key}.")
            if problem:
                return problem
    return None


def _check_graph(graph: dict[str, Any]) -> None:
    """Raises _Unexpected where :func:`symopt.graph.from_dict` refuses ``graph``
    (imported here, so that this module loads without JAX)."""
    from symopt import graph as graph_lib  # noqa: PLC0415

    try:
        graph_lib.from_dict(graph)
    except (ValueError, TypeError, RecursionError) as e:  # GraphError is a ValueError
        raise _Unexpected("a graph", str(e)) from None


_CANDIDATE_DECODERS = {
    "id": _integer, "generation": _natural, "space": _text, "origin": _text,
    "parents": _parents, "genome": _genome, "graph": _graph, "fingerprint": _optional_text,
    "status": _status, "reason": _optional_text, "duplicate_of": _optional_id,
    "fitness": _optional_number, "metrics": _candidate_metrics, "seconds": _number,
    "created": _number, "equation": _optional_text,
}
_STAGE_DECODERS = {
    "candidate_id": _integer, "stage": _natural, "task": _text, "metrics": _stage_metrics,
    "fitness": _optional_number,
}


def _decode(where: str, table: str, row_name: str, decoders: Mapping[str, Callable[[Any], Any]],
            columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A row's values by column, each checked and decoded by its decoder;
    ``row_name`` names the row in an ArchiveError."""
    values = {}
    for column, value in zip(columns, row, strict=True):
        try:
            values[column] = decoders[column](value)
        except _Unexpected as e:
            raise _bad_value(where, table, row_name, column, value, e) from None
    return values


def _trusted(cls: type, values: Mapping[str, Any]) -> Any:
    """A record of decoded values: already what construction normalises them
    to, so its JSON round trips are skipped."""
    record = object.__new__(cls)
    vars(record).update(values)
    return record


def _candidate(where: str, row: Sequence[Any]) -> CandidateRecord:
    """The record of a ``candidates`` row (``_SELECT_CANDIDATES``).

    Raises:
      ArchiveError: a value is not what its column holds, the row breaks a
        record's rules (:class:`CandidateRecord`), or its graph does not
        parse (a rejected candidate's need not: the integrity check rejects
        malformed graphs).
    """
    name = f"id {_shown(row[0])}"
    values = _decode(where, "candidates", name, _CANDIDATE_DECODERS, _CANDIDATE_COLUMNS, row)
    status, column, problem = values["status"], None, None
    if status == "rejected" and values["reason"] is None:
        column, problem = "reason", _Unexpected("the reason of a rejected candidate")
    elif status == "rejected" and values["fitness"] is not None:
        column, problem = "fitness", _Unexpected("null (a rejected candidate has no fitness)")
    elif status == "duplicate" and values["duplicate_of"] is None:
        column, problem = "duplicate_of", _Unexpected("the id a duplicate candidate repeats")
    elif status != "rejected" and values["graph"] is not None:
        try:
            _check_graph(values["graph"])
        except _Unexpected as e:
            column, problem = "graph", e
    if problem is not None:
        stored = row[_CANDIDATE_COLUMNS.index(column)]
        raise _bad_value(where, "candidates", name, column, stored, problem)
    return _trusted(CandidateRecord, values)


def _stage_result(where: str, row: Sequence[Any]) -> StageResult:
    """The result of a ``stage_results`` row (``_SELECT_STAGE_RESULTS``);
    raises ArchiveError naming a bad value."""
    name = f"(candidate_id {_shown(row[0])}, stage {_shown(row[1])}, task {_shown(row[2])})"
    values = _decode(where, "stage_results", name, _STAGE_DECODERS, _STAGE_COLUMNS, row)
    return _trusted(StageResult, values)


def _same_row(columns: Sequence[str], a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether two stored rows agree on every column but ``created`` (JSON by value)."""
    for column, x, y in zip(columns, a, b, strict=True):
        if column in _JSON_COLUMNS and x is not None and y is not None:
            try:
                x = json.loads(x)
            except (TypeError, ValueError, RecursionError):  # a bad stored value differs
                return False
            y = json.loads(y)
        if column != "created" and x != y:
            return False
    return True


# --------------------------------------------------------------------------
# Configs.


def _plain_config(config: Any) -> dict[str, Any]:
    """A config as a plain dict (an ``ml_collections.ConfigDict`` via ``to_dict``)."""
    if not isinstance(config, Mapping) and hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    return _loads(_dumps(config))


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _diff_configs(old: Any, new: Any) -> list[str]:
    """The dotted keys (``"search.generations"``) whose values differ, sorted;
    a key of only one config differs, NaN equals NaN."""
    old_flat, new_flat = _flatten(_plain_config(old)), _flatten(_plain_config(new))
    return sorted(
        key
        for key in old_flat.keys() | new_flat.keys()
        if key not in old_flat
        or key not in new_flat
        or _dumps(old_flat[key]) != _dumps(new_flat[key])
    )


# --------------------------------------------------------------------------
# The archive.


class Archive:
    """The SQLite store of one search run; see the module docstring.

    Use :meth:`open`; an archive is a context manager that closes itself.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        """Opens (creating if needed) the archive file ``path``.

        Args:
          path: the SQLite file.
          synchronous: ``"NORMAL"`` (commits survive kill -9 of the process) or
            ``"FULL"`` (they also survive power loss: one fsync per commit).

        Raises:
          ArchiveError: ``path`` is not a symopt archive, or its schema is newer
            than this code's.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = os.fspath(path)
        self._where = self.path  # the file that messages name
        self._depth = 0
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        try:
            self._init_schema(synchronous)
        except sqlite3.DatabaseError as e:
            self._db.close()
            # The base class is what SQLite raises for a file that is not a database;
            # its subclasses (OperationalError: locked, unreadable, ...) are not about format.
            what = "not a symopt archive" if type(e) is sqlite3.DatabaseError else "cannot open"
            raise ArchiveError(f"{self._where}: {what} ({e})") from None
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, workdir: str | os.PathLike[str], *, create: bool = True,
             synchronous: str = "NORMAL") -> Archive:
        """The archive of the run in ``workdir`` (``<workdir>/archive.sqlite``).

        Creates ``workdir`` and the schema if needed; ``synchronous`` as in
        :class:`Archive`.

        Raises:
          ArchiveError: ``create`` is False and ``workdir`` holds no archive
            (nothing is created), or as :class:`Archive`.
        """
        path = os.path.join(workdir, FILENAME)
        check_workdir(workdir)
        if not create and not os.path.exists(path):
            raise ArchiveError(f"{workdir}: no symopt archive ({FILENAME}) here; "
                               "a search writes one to its --workdir")
        os.makedirs(workdir, exist_ok=True)
        return cls(path, synchronous=synchronous)

    @classmethod
    def in_memory_copy(cls, workdir: str | os.PathLike[str]) -> Archive:
        """An in-memory archive holding what ``workdir``'s archive holds now (or
        nothing): what the other processes of a multi-host run write to, so
        that only process 0 writes the workdir while every process reads the
        same records."""
        path = os.path.join(workdir, FILENAME)
        archive = cls(":memory:")
        archive._where = f"{path} (an in-memory copy)"
        if os.path.exists(path):
            check_workdir(workdir)
            disk = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                disk.backup(archive._db)
            finally:
                disk.close()
            archive._check_version()
        return archive

    def _init_schema(self, synchronous: str) -> None:
        # Check before writing anything, so that a foreign file is left untouched.
        if self._tables():
            self._check_version()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            if self._tables():  # another process may have created it meanwhile
                self._check_version()
                return
            # One statement at a time: executescript would COMMIT the transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._write_meta("schema_version", SCHEMA_VERSION)

    def _tables(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}

    def _check_version(self) -> None:
        row = None
        with contextlib.suppress(sqlite3.OperationalError):  # a foreign "meta" table
            if "meta" in self._tables():
                query = "SELECT value FROM meta WHERE key='schema_version'"
                row = self._db.execute(query).fetchone()
        text = None if row is None else str(row[0])
        if text is None or not text.isdigit():
            raise ArchiveError(f"{self._where}: not a symopt archive (schema_version {text!r})")
        version = int(text)
        if version > SCHEMA_VERSION:
            raise ArchiveError(
                f"{self._where}: archive schema version {version!r} is newer than this "
                f"symopt's ({SCHEMA_VERSION}); upgrade symopt to read it"
            )
        found = _layout(self._db)
        if found != _expected_layout():
            wrong = sorted(t for t in set(found) | set(_expected_layout())
                           if found.get(t) != _expected_layout().get(t))
            raise ArchiveError(f"{self._where}: not a symopt archive (its tables "
                               f"{', '.join(wrong)} differ from symopt's schema)")

    def close(self) -> None:
        """Closes the connection (committed data is already durable)."""
        self._db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({self.path!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Groups writes into one transaction: all are committed, or none.

        A nested use is a savepoint of the outer transaction: if its block
        raises, its writes are undone even when the outer block goes on.
        """
        if self._depth:
            savepoint = f"nested{self._depth}"
            self._db.execute(f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._db.execute(f"ROLLBACK TO {savepoint}")
                raise
            finally:
                self._depth -= 1
                self._db.execute(f"RELEASE {savepoint}")
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self._db.execute("COMMIT")  # deferred foreign keys are checked here
        except BaseException as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError):
                raise ArchiveError(f"{self._where}: transaction rolled back ({e})") from None
            raise
        finally:
            self._depth = 0

    # ----------------------------------------------------------------------
    # Config and meta.

    def set_config(self, config: Any, *, replace: bool = False) -> None:
        """Stores the run config (a mapping or ``ConfigDict``) as JSON.

        Storing the same config again is a no-op.

        Raises:
          ArchiveError: a different config is stored and ``replace`` is False
            (see :meth:`config_diff`; the run loop decides which changes a
            resume allows, then replaces).
        """
        config = _plain_config(config)
        with self.transaction():
            stored = self.config()
            if stored is not None and not replace:
                changed = _diff_configs(stored, config)
                if changed:
                    raise ArchiveError(f"{self._where}: the stored config differs in {changed}")
            self._write_meta("config", config)

    def config(self, *, like: Any = None) -> dict[str, Any] | None:
        """The stored run config, or None before :meth:`set_config`.

        Args:
          like: a config (a mapping or ``ConfigDict``) whose shape the stored
            one must have, so that a reader may compare their values: where
            both hold a key, both hold a section or values of one JSON kind
            (a number, text, a bool or a list; null matches any).

        Raises:
          ArchiveError: the stored config is not a JSON object that
            ``ml_collections.ConfigDict`` takes, or not shaped ``like``.
        """
        if like is None:
            return self._read_meta("config", _run_config, None)
        return self._read_meta("config", functools.partial(_run_config, like=_plain_config(like)),
                               None)

    def config_diff(self, config: Any) -> list[str]:
        """The dotted keys in which ``config`` differs from the stored config, sorted
        (every key of ``config`` when none is stored)."""
        return _diff_configs(self.config() or {}, config)

    def put_meta(self, key: str, value: Any) -> None:
        """Stores a JSON-able ``value`` under ``key``, replacing any earlier value."""
        if key in _RESERVED_META:
            raise ValueError(f"meta key {key!r} is reserved for the archive itself")
        self._write_meta(key, value)

    def get_meta(self, key: str, default: Any = None, *,
                 kind: type | tuple[type, ...] | None = None) -> Any:
        """The value stored under ``key``, or ``default``.

        Args:
          key: the meta key.
          default: what a key with no value gives.
          kind: the type (or types) the value must have; a JSON null, which
            clears a key, always passes, a bool only as ``bool`` and an
            integer also as ``float``.

        Raises:
          ArchiveError: the stored value is not JSON, or not of ``kind``.
        """
        if kind is None:
            return self._read_meta(key, _meta_value, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return self._read_meta(key, functools.partial(_meta_of_kind, kinds=kinds), default)

    def _read_meta(self, key: str, decode: Callable[[Any], Any], default: Any) -> Any:
        """``decode`` of the text stored under ``key`` (``default`` if none);
        ArchiveError names the key where ``decode`` finds it bad."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return decode(row[0])
        except _Unexpected as e:
            raise _bad_value(self._where, "meta", f"key {_shown(key)}", "value", row[0],
                             e) from None

    def _write_meta(self, key: str, value: Any) -> None:
        text = _dumps(value)
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    # ----------------------------------------------------------------------
    # Writes.

    def add_candidates(self, records: Iterable[CandidateRecord]) -> None:
        """Stores a batch of candidates in one transaction (all or nothing).

        Re-adding a stored id with an identical record (``created`` aside) is a
        no-op; with a different record it raises :class:`ArchiveError`, and
        the batch is not stored; so does a ``duplicate_of`` naming no stored
        candidate.
        """
        self._insert("candidates", _CANDIDATE_COLUMNS, ("id",), records)

    def add_stage_results(self, rows: Iterable[StageResult]) -> None:
        """Stores a batch of stage results in one transaction, as :meth:`add_candidates`."""
        self._insert("stage_results", _STAGE_COLUMNS, ("candidate_id", "stage", "task"), rows)

    def _insert(self, table: str, columns: Sequence[str], key: Sequence[str],
                records: Iterable[CandidateRecord | StageResult]) -> None:
        insert = (f"INSERT INTO {table} ({', '.join(columns)}) "
                  f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING")
        select = (f"SELECT {', '.join(columns)} FROM {table} "
                  f"WHERE {' AND '.join(f'{c}=?' for c in key)}")
        with self.transaction():
            for record in records:
                row = _to_row(record)
                if self._db.execute(insert, row).rowcount:
                    continue
                values = [row[columns.index(c)] for c in key]
                if not _same_row(columns, self._db.execute(select, values).fetchone(), row):
                    named = ", ".join(f"{c}={v!r}" for c, v in zip(key, values, strict=True))
                    raise ArchiveError(f"{self._where}: {table} holds a different record "
                                       f"with {named}")

    # ----------------------------------------------------------------------
    # Queries.

    def get(self, id: int) -> CandidateRecord | None:
        """The candidate with ``id``, or None."""
        row = self._db.execute(f"{_SELECT_CANDIDATES} WHERE id=?", (int(id),)).fetchone()
        return None if row is None else _candidate(self._where, row)

    def ids(self) -> set[int]:
        """The ids of all stored candidates."""
        return {row[0] for row in self._db.execute("SELECT id FROM candidates")}

    def records(self, status: str | Sequence[str] | None = None) -> list[CandidateRecord]:
        """The candidates with ``status`` (one or several; None: any), by id."""
        if status is None:
            query = f"{_SELECT_CANDIDATES} ORDER BY id"
            return [_candidate(self._where, r) for r in self._db.execute(query)]
        statuses = [status] if isinstance(status, str) else list(status)
        for s in statuses:
            if s not in STATUSES:
                raise ValueError(f"status {s!r} is not one of {STATUSES}")
        query = (f"{_SELECT_CANDIDATES} WHERE status IN ({', '.join('?' * len(statuses))}) "
                 "ORDER BY id")
        return [_candidate(self._where, r) for r in self._db.execute(query, statuses)]

    def top(self, k: int) -> list[CandidateRecord]:
        """The ``k`` evaluated candidates of highest fitness (None last; ties by id)."""
        query = (f"{_SELECT_CANDIDATES} WHERE status='evaluated' "
                 "ORDER BY fitness IS NULL, fitness DESC, id LIMIT ?")
        return [_candidate(self._where, r) for r in self._db.execute(query, (int(k),))]

    def count_by_status(self) -> dict[str, int]:
        """The number of candidates of each status (every status, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        query = "SELECT MIN(id), status, COUNT(*) FROM candidates GROUP BY status"
        for first, status, n in self._db.execute(query):
            counts[self._columns(first, ("status",), (status,))[0]] = n
        return counts

    def generations(self) -> list[GenerationSummary]:
        """A summary of each generation, in order."""
        fitness: dict[int, list[float]] = {}
        counts: dict[int, dict[str, int]] = {}
        columns = ("generation", "status", "fitness")
        for id, *row in self._db.execute(f"SELECT id, {', '.join(columns)} FROM candidates"):
            generation, status, value = self._columns(id, columns, row)
            counts.setdefault(generation, dict.fromkeys(STATUSES, 0))[status] += 1
            if status == "evaluated" and value is not None:
                fitness.setdefault(generation, []).append(value)
        return [
            GenerationSummary(
                generation=generation,
                count=sum(count.values()),
                best=max(fitness[generation]) if generation in fitness else None,
                median=float(np.median(fitness[generation])) if generation in fitness else None,
                rejected=count["rejected"],
                duplicates=count["duplicate"],
                diverged=count["diverged"],
            )
            for generation, count in sorted(counts.items())
        ]

    def lineage(self, id: int) -> dict[int, tuple[int, ...]]:
        """The ancestry of candidate ``id``: it and each stored ancestor -> its parents.

        Raises:
          KeyError: no candidate ``id`` is stored.
        """
        graph: dict[int, tuple[int, ...]] = {}
        seen = frontier = {int(id)}
        while frontier:
            ordered = sorted(frontier)
            for start in range(0, len(ordered), _MAX_PARAMS):
                chunk = ordered[start : start + _MAX_PARAMS]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT id, parents FROM candidates WHERE id IN ({marks})"
                for cid, parents in self._db.execute(query, chunk):
                    graph[cid] = self._columns(cid, ("parents",), (parents,))[0]
            if not graph:
                raise KeyError(f"{self._where}: no candidate {id}")
            frontier = {p for cid in frontier if cid in graph for p in graph[cid]} - seen
            seen = seen | frontier
        return graph

    def stage_results(self) -> list[StageResult]:
        """Every stage result, by stage, candidate and task."""
        query = f"{_SELECT_STAGE_RESULTS} ORDER BY stage, candidate_id, task"
        return [_stage_result(self._where, row) for row in self._db.execute(query)]

    def _columns(self, id: int, columns: Sequence[str], row: Sequence[Any]) -> list[Any]:
        """Some ``columns`` of the candidate ``id``, decoded and checked as
        :meth:`get` does."""
        return list(_decode(self._where, "candidates", f"id {_shown(id)}", _CANDIDATE_DECODERS,
                            columns, row).values())
