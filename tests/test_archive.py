"""The archive stores every field, writes batches atomically and survives kill -9.

No JAX work here; the kill -9 tests run the archive in child processes that
load ``symopt/archive.py`` by path (skipping the package's JAX imports).
One module's specification, as :mod:`symopt.archive` is one concept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import ml_collections
import numpy as np
import pytest

from symopt import archive as archive_lib
from symopt import graph as graph_lib
from symopt import zoo
from symopt.archive import Archive, ArchiveError, CandidateRecord, StageResult


def record(id: int, generation: int = 0, **changes) -> CandidateRecord:
    """An evaluated candidate with every field set; ``changes`` override fields."""
    fields = dict(
        id=id,
        generation=generation,
        space="nos",
        origin="mutation",
        parents=(max(id - 1, 0),) if id else (),
        genome={"terms": ["adam", "sign"], "lr": 1e-3},
        graph=zoo.adam().to_dict(),
        fingerprint=f"fp{id:04d}",
        status="evaluated",
        reason=None,
        duplicate_of=None,
        fitness=float(id),
        metrics={"digits": {"loss": [2.3, 1.1, 0.5], "accuracy": 0.9}},
        seconds=1.25,
        created=1_700_000_000.5,
        equation="d = m / (sqrt(v) + eps)",
    )
    fields.update(changes)
    return CandidateRecord(**fields)


def same(a, b) -> bool:
    """Equality in which NaN equals NaN (of records, lists of records and values)."""

    def plain(x):
        if isinstance(x, list):
            return [plain(item) for item in x]
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x

    return json.dumps(plain(a)) == json.dumps(plain(b))  # NaN is the token NaN


@pytest.fixture
def archive(tmp_path):
    with Archive.open(tmp_path / "run") as a:
        yield a


# --------------------------------------------------------------------------
# Opening.


def test_open_creates_workdir_schema_and_wal(tmp_path):
    workdir = tmp_path / "a" / "b"
    with Archive.open(workdir) as a:
        assert a.get_meta("schema_version") == archive_lib.SCHEMA_VERSION
    path = workdir / archive_lib.FILENAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_data_persists_across_reopen(tmp_path):
    with Archive.open(tmp_path) as a:
        a.add_candidates([record(0)])
        a.put_meta("last_generation", 0)
    with Archive.open(tmp_path) as a:
        assert a.ids() == {0}
        assert a.get_meta("last_generation") == 0


def test_garbage_file_is_not_an_archive(tmp_path):
    (tmp_path / archive_lib.FILENAME).write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(ArchiveError, match="not a symopt archive") as e:
        Archive.open(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("table", ["people (name TEXT)", "meta (name TEXT)"])
def test_foreign_sqlite_file_is_not_an_archive_and_is_left_untouched(tmp_path, table):
    path = tmp_path / archive_lib.FILENAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(f"CREATE TABLE {table}")
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match="not a symopt archive"):
        Archive.open(tmp_path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("extra", [
    "", "CREATE TABLE candidates (id INTEGER PRIMARY KEY)",
    "CREATE TABLE stage_results (x TEXT)"])
def test_a_foreign_file_claiming_our_schema_version_is_left_untouched(tmp_path, extra):
    path = tmp_path / archive_lib.FILENAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        if extra:
            db.execute(extra)
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match="not a symopt archive.*differ from symopt's schema"):
        Archive.open(tmp_path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [archive_lib.FILENAME]


def test_workdirs_that_cannot_hold_an_archive_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir" / archive_lib.FILENAME).mkdir(parents=True)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / archive_lib.FILENAME).symlink_to(tmp_path / "nowhere")
    for workdir, message in [("file", "is a file, not a directory"),
                             ("dir", "is a directory, not an archive file"),
                             ("link", "is a broken symbolic link")]:
        with pytest.raises(ArchiveError, match=message):
            Archive.open(tmp_path / workdir)


def test_newer_schema_version_is_refused(tmp_path):
    Archive.open(tmp_path).close()
    with contextlib.closing(sqlite3.connect(tmp_path / archive_lib.FILENAME)) as db, db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(ArchiveError, match="schema version 99 is newer") as e:
        Archive.open(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_opening_without_create_needs_an_archive_and_creates_nothing(tmp_path):
    missing = tmp_path / "no_run"
    with pytest.raises(ArchiveError, match="no symopt archive"):
        Archive.open(missing, create=False)
    assert not missing.exists()
    Archive.open(missing).close()
    Archive.open(missing, create=False).close()


def test_synchronous_must_be_normal_or_full(tmp_path):
    Archive.open(tmp_path, synchronous="FULL").close()
    with pytest.raises(ValueError, match="synchronous"):
        Archive.open(tmp_path, synchronous="OFF")


# --------------------------------------------------------------------------
# Candidates: round trips and validation.


def test_every_candidate_field_round_trips(archive):
    original = record(
        7,
        generation=3,
        parents=(2, 5),
        origin="crossover",
        fitness=-math.inf,
        metrics={"a": {"loss": [1.0, math.nan, math.inf, -math.inf]}, "b": {"acc": 0.5}},
    )
    archive.add_candidates([original])
    stored = archive.get(7)
    assert same(stored, original)
    assert stored.parents == (2, 5) and stored.fitness == -math.inf
    assert graph_lib.from_dict(stored.graph) == zoo.adam()


def test_graph_objects_numpy_and_defaults_are_normalised(archive):
    rec = CandidateRecord(
        id=np.int64(1),
        generation=np.int32(0),
        space="nos",
        origin="seed",
        parents=[],
        genome={"w": np.arange(3)},
        graph=zoo.lion(),
        fingerprint=None,
        status="evaluated",
        fitness=np.float32(0.5),
        metrics={"t": {"loss": np.array([1.5, 2.5]), "best": np.float64(1.5)}},
    )
    assert rec.graph == zoo.lion().to_dict() and rec.parents == ()
    assert rec.metrics == {"t": {"loss": [1.5, 2.5], "best": 1.5}}
    archive.add_candidates([rec])
    stored = archive.get(1)
    assert stored.created is not None  # set when stored
    assert same(stored, dataclasses.replace(rec, created=stored.created))


def test_nan_fitness_is_stored_as_none_and_inf_as_inf(archive):
    archive.add_candidates(
        [
            record(1, fitness=math.nan, status="diverged"),
            record(2, fitness=math.inf),
        ]
    )
    assert archive.get(1).fitness is None
    assert archive.get(2).fitness == math.inf


def test_json_columns_are_standard_json(archive):
    archive.add_candidates([record(1, metrics={"t": {"loss": [math.nan, -math.inf]}})])
    with contextlib.closing(sqlite3.connect(archive.path)) as db:
        text = db.execute("SELECT metrics FROM candidates").fetchone()[0]

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(text, parse_constant=refuse)
    assert same(archive.get(1).metrics, {"t": {"loss": [math.nan, -math.inf]}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "great"}, "status 'great'"),
        ({"status": "rejected", "reason": "constant", "fitness": 1.0}, "no fitness"),
        ({"status": "rejected", "reason": None, "fitness": None}, "has a reason"),
        ({"status": "duplicate", "duplicate_of": None}, "names the candidate"),
        ({"metrics": [1.0]}, "metrics must be a dict"),
    ],
)
def test_invalid_records_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        record(1, **changes)


def test_records_hold_what_json_makes_of_their_values():
    rec = record(1, genome=("a", (1, 2)), metrics={"t": {1: 0.5}})
    assert rec.genome == ["a", [1, 2]] and rec.metrics == {"t": {"1": 0.5}}
    with pytest.raises(TypeError, match="not JSON-able: object"):
        record(1, genome=object())


def test_get_of_a_missing_id_is_none(archive):
    assert archive.get(3) is None and archive.ids() == set()
    archive.add_candidates([record(3)])
    assert archive.get(3) is not None and archive.ids() == {3}


# --------------------------------------------------------------------------
# Atomic batches.


def test_a_batch_with_a_conflicting_id_stores_nothing(archive):
    archive.add_candidates([record(0)])
    batch = [record(1), record(2), record(0, fitness=99.0)]
    with pytest.raises(ArchiveError, match="candidates holds a different record with id=0"):
        archive.add_candidates(batch)
    assert archive.ids() == {0} and archive.get(0).fitness == 0.0


def test_a_batch_interrupted_by_an_exception_stores_nothing(archive):
    def batch():
        yield record(1)
        yield record(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        archive.add_candidates(batch())
    assert archive.ids() == set()
    archive.add_candidates([record(1)])  # the archive is usable afterwards
    assert archive.ids() == {1}


def test_identical_reinsert_is_a_no_op(archive):
    archive.add_candidates([record(0), record(1)])
    archive.add_candidates([record(1, created=None), record(2)])
    assert archive.ids() == {0, 1, 2}
    assert archive.get(1).created == record(1).created


def test_duplicate_of_must_name_a_stored_candidate(archive):
    dup = record(2, status="duplicate", duplicate_of=1)
    with pytest.raises(ArchiveError, match="FOREIGN KEY"):
        archive.add_candidates([dup])
    assert archive.ids() == set()
    archive.add_candidates([dup, record(1)])  # its original may come later in the batch
    assert archive.get(2).duplicate_of == 1


def test_a_transaction_groups_writes(archive):
    with pytest.raises(RuntimeError):
        with archive.transaction():
            archive.add_candidates([record(0)])
            archive.put_meta("last_generation", 0)
            raise RuntimeError
    assert archive.ids() == set() and archive.get_meta("last_generation") is None
    with archive.transaction():
        archive.add_candidates([record(0)])
        archive.put_meta("last_generation", 0)
    assert archive.ids() == {0} and archive.get_meta("last_generation") == 0


def test_a_failed_batch_inside_a_transaction_leaves_nothing(archive):
    with archive.transaction():
        archive.add_candidates([record(0)])
        with pytest.raises(ArchiveError):
            archive.add_candidates([record(1), record(0, fitness=5.0)])
        archive.put_meta("last_generation", 0)
    assert archive.ids() == {0} and archive.get_meta("last_generation") == 0


# --------------------------------------------------------------------------
# Queries.


def test_top_orders_by_fitness_with_none_last(archive):
    fitness = {1: 0.5, 2: None, 3: 2.0, 4: -math.inf, 5: 2.0, 6: math.nan}
    archive.add_candidates([record(i, fitness=f) for i, f in fitness.items()])
    archive.add_candidates([record(7, fitness=None, status="rejected", reason="constant")])
    assert [r.id for r in archive.top(10)] == [3, 5, 1, 4, 2, 6]
    assert [r.id for r in archive.top(2)] == [3, 5]


def test_records_filters_and_counts(archive):
    archive.add_candidates(
        [
            record(0, generation=0),
            record(1, generation=1, status="rejected", reason="constant", fitness=None),
            record(2, generation=1),
            record(3, generation=1, status="duplicate", duplicate_of=2),
        ]
    )
    assert [r.id for r in archive.records()] == [0, 1, 2, 3]
    assert [r.id for r in archive.records(status="evaluated")] == [0, 2]
    assert [r.id for r in archive.records(status=("rejected", "duplicate"))] == [1, 3]
    assert archive.count_by_status() == {
        "evaluated": 2,
        "rejected": 1,
        "duplicate": 1,
        "diverged": 0,
    }
    with pytest.raises(ValueError, match="status 'evaluted'"):
        archive.records(status="evaluted")


def test_generations_summary(archive):
    archive.add_candidates(
        [
            record(0, generation=0, fitness=1.0),
            record(1, generation=0, fitness=3.0),
            record(2, generation=0, fitness=2.0),
            record(3, generation=0, status="rejected", reason="constant", fitness=None),
            record(4, generation=1, fitness=5.0),
            record(5, generation=1, fitness=6.0),
            record(6, generation=1, status="duplicate", duplicate_of=4, fitness=5.0),
            record(7, generation=1, status="diverged", fitness=None),
            record(8, generation=2, status="rejected", reason="nan", fitness=None),
        ]
    )
    assert archive.generations() == [
        archive_lib.GenerationSummary(0, 4, 3.0, 2.0, 1, 0, 0),
        archive_lib.GenerationSummary(1, 4, 6.0, 5.5, 0, 1, 1),
        archive_lib.GenerationSummary(2, 1, None, None, 1, 0, 0),
    ]


def test_lineage_collects_every_ancestor(archive):
    #   0   1        9 (not stored)
    #    \ / \       |
    #     2   3      8
    #      \ /
    #       4
    parents = {0: (), 1: (), 2: (0, 1), 3: (1,), 4: (2, 3), 8: (9,)}
    archive.add_candidates([record(i, parents=p) for i, p in parents.items()])
    assert archive.lineage(4) == {i: parents[i] for i in (0, 1, 2, 3, 4)}
    assert archive.lineage(3) == {1: (), 3: (1,)}
    assert archive.lineage(8) == {8: (9,)}
    with pytest.raises(KeyError):
        archive.lineage(5)


# --------------------------------------------------------------------------
# Stage results, config and meta.


def test_stage_results_round_trip_in_order(archive):
    rows = [
        StageResult(3, 1, "digits", {"loss": [0.5, math.nan]}, 0.25),
        StageResult(1, 0, "mnist1d", {"loss": np.array([1.0])}, math.nan),
        StageResult(1, 1, "digits", {}, -math.inf),
    ]
    archive.add_stage_results(rows)
    stored = archive.stage_results()
    assert [(r.stage, r.candidate_id) for r in stored] == [(0, 1), (1, 1), (1, 3)]
    assert same(stored, [rows[1], rows[2], rows[0]])
    assert stored[0].fitness is None  # NaN


def test_stage_results_batch_is_all_or_nothing(archive):
    archive.add_stage_results([StageResult(1, 0, "t", {}, 1.0)])
    archive.add_stage_results([StageResult(1, 0, "t", {}, 1.0)])  # identical: no-op
    with pytest.raises(ArchiveError, match="stage_results holds a different record"):
        archive.add_stage_results([StageResult(2, 0, "t", {}, 1.0), StageResult(1, 0, "t")])
    assert len(archive.stage_results()) == 1


def test_config_round_trip_and_diff(tmp_path):
    config = {"seed": 0, "search": {"generations": 10, "population": 32}, "tasks": ["digits"]}
    with Archive.open(tmp_path) as a:
        assert a.config() is None
        a.set_config(config)
        a.set_config(config)  # the same again: no-op
    with Archive.open(tmp_path) as a:
        assert a.config() == config
        assert a.config_diff(config) == []
        grown = {**config, "search": {"generations": 20, "population": 32}, "extra": 1.0}
        assert a.config_diff(grown) == ["extra", "search.generations"]
        with pytest.raises(ArchiveError, match=r"differs in \['extra', 'search.generations'\]"):
            a.set_config(grown)
        a.set_config(grown, replace=True)
        assert a.config() == grown


def test_config_diff_accepts_config_dicts(archive):
    config = ml_collections.ConfigDict({"search": {"generations": 10, "lr": math.nan}})
    archive.set_config(config)
    assert archive.config_diff(config) == []
    config.search.generations = 11
    assert archive.config_diff(config) == ["search.generations"]


def test_meta_round_trips_json_values(archive):
    value = {"digits": -0.5, "cifar": math.inf, "seeds": [1, 2], "nan": math.nan}
    archive.put_meta("baseline", value)
    assert same(archive.get_meta("baseline"), value)
    archive.put_meta("baseline", 1)
    assert archive.get_meta("baseline") == 1
    assert archive.get_meta("missing", default="x") == "x"
    with pytest.raises(ValueError, match="reserved"):
        archive.put_meta("schema_version", 2)


def test_get_meta_checks_the_kind_of_a_value(archive):
    archive.put_meta("horizon", 10)
    archive.put_meta("cleared", None)
    archive.put_meta("flag", True)
    assert archive.get_meta("horizon", kind=int) == 10
    assert archive.get_meta("cleared", {}, kind=dict) is None  # a cleared key passes
    assert archive.get_meta("missing", {}, kind=dict) == {}
    assert archive.get_meta("flag", kind=(bool, int)) is True
    assert archive.get_meta("horizon", kind=float) == 10  # JSON has one kind of number
    with pytest.raises(ArchiveError, match=r"row key 'flag', column value: expected an integer "
                                           "or null, got 'true'"):
        archive.get_meta("flag", kind=int)  # JSON's true is no number
    with pytest.raises(ArchiveError, match="expected a JSON object or a list or null, got '10'"):
        archive.get_meta("horizon", kind=(dict, list))


# --------------------------------------------------------------------------
# kill -9.

_WRITER = r"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("archive_under_test", sys.argv[1])
lib = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = lib
spec.loader.exec_module(lib)
workdir, size, stall = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def batch(generation):
    # The stalled batch is large enough (~4 MB) to spill uncommitted pages to the WAL.
    pad = "x" * (80_000 if generation == stall else 100)
    for i in range(size):
        if generation == stall and i == size // 2:
            print("stalled", flush=True)
            time.sleep(600)
        yield lib.CandidateRecord(
            id=generation * size + i, generation=generation, space="nos", origin="sample",
            parents=(), genome={"g": [i] * 20, "pad": pad}, graph=None, fingerprint=str(i),
            status="evaluated", fitness=float(i), metrics={"t": {"loss": [0.5] * 200}})

archive = lib.Archive.open(workdir)
generation = archive.get_meta("last_generation", -1) + 1
while True:
    with archive.transaction():
        archive.add_candidates(batch(generation))
        archive.put_meta("last_generation", generation)
    print(generation, flush=True)
    generation += 1
"""
_BATCH = 100


def _run_and_kill(workdir, *, commits: int = 0, stall: int = -1) -> list[str]:
    """Runs the writer until it has printed ``commits`` commits (or stalled) and
    SIGKILLs it; returns the lines it printed."""
    args = [archive_lib.__file__, str(workdir), str(_BATCH), str(stall)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30.0, proc.kill)
    watchdog.start()
    lines = []
    try:
        while len(lines) < commits or (stall >= 0 and "stalled" not in lines):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read()}")
            lines.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        watchdog.cancel()
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    return lines


def _check_complete_batches(workdir, at_least: int) -> int:
    """Asserts the archive is intact and holds only whole batches; returns their number."""
    with contextlib.closing(sqlite3.connect(workdir / archive_lib.FILENAME)) as db, db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Archive.open(workdir) as a:
        summaries = a.generations()
        done = len(summaries)
        assert [s.generation for s in summaries] == list(range(done))
        assert all(s.count == _BATCH for s in summaries)
        assert a.ids() == set(range(done * _BATCH))
        assert a.get_meta("last_generation", -1) == done - 1
    assert done >= at_least
    return done


def test_kill_9_keeps_exactly_the_committed_batches(tmp_path):
    done = 0
    for _ in range(3):  # each run resumes where the killed one stopped
        printed = _run_and_kill(tmp_path, commits=3)
        assert int(printed[0]) == done
        done = _check_complete_batches(tmp_path, at_least=done + 3)


def test_kill_9_in_the_middle_of_a_batch_leaves_none_of_it(tmp_path):
    _run_and_kill(tmp_path, commits=2, stall=2)
    wal = tmp_path / (archive_lib.FILENAME + "-wal")
    assert wal.stat().st_size > 2**21  # the half batch reached the WAL, uncommitted
    assert _check_complete_batches(tmp_path, at_least=2) == 2
