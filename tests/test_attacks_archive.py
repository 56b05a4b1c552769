"""Attacks on the archive's values (issue 24, section 6): a file with symopt's
schema whose cells hold what symopt never writes.

Each test builds a small valid archive through the :class:`Archive` API,
corrupts one cell with ``sqlite3`` and reads it back: the read is one line,
an :class:`ArchiveError` naming the file, the table, the row and the column,
never a traceback further on. The last test resumes a search from such a
workdir through the command line.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys

import ml_collections
import pytest

from symopt import archive as archive_lib
from symopt import cli, zoo
from symopt import workdir as workdir_lib
from symopt.archive import Archive, ArchiveError, CandidateRecord, StageResult

from helpers import ROOT, TINY_CONFIG_FILE, tiny_config


def _record(id: int, **changes) -> CandidateRecord:
    fields = dict(id=id, generation=id // 2, space="nos", origin="mutation" if id else "seed",
                  parents=(id - 1,) if id else (), genome=zoo.adam().to_dict(),
                  graph=zoo.adam().to_dict(), fingerprint=f"fp{id}", status="evaluated",
                  fitness=float(id), metrics={"digits": {"loss": 0.5}}, seconds=1.0)
    fields.update(changes)
    return CandidateRecord(**fields)


@pytest.fixture
def workdir(tmp_path):
    """A valid archive: candidates 0-3 (2 rejected, 3 a duplicate of 1), stage
    results of 0 and 1, a config and a meta value."""
    workdir = tmp_path / "run"
    with Archive.open(workdir) as archive:
        archive.set_config({"search": {"generations": 4}, "seed": 0})
        archive.add_candidates([
            _record(0), _record(1),
            _record(2, status="rejected", reason="constant", fitness=None),
            _record(3, status="duplicate", duplicate_of=1)])
        archive.add_stage_results([StageResult(0, 0, "digits", {"loss": 0.4}, 1.0),
                                   StageResult(1, 0, "digits", {"loss": 0.3}, 2.0)])
        archive.put_meta("baseline", {"digits": 0.25})
    return workdir


def _corrupt(workdir, statement: str, *args) -> None:
    """Runs an UPDATE on the archive, CHECK constraints off (another writer's
    file need not keep them)."""
    path = workdir / archive_lib.FILENAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA ignore_check_constraints=ON")
        assert db.execute(statement, args).rowcount == 1


def _one_line_error(read, workdir, where: str) -> str:
    """The ArchiveError ``read(archive)`` raises: one line, naming the file and ``where``."""
    with Archive.open(workdir) as archive, pytest.raises(ArchiveError) as error:
        read(archive)
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith(f"archive {workdir / archive_lib.FILENAME}: "), message
    assert where in message, message
    return message


_CANDIDATE_VALUES = [
    # (column, stored value, what the message says)
    ("parents", "abc", "expected a list of candidate ids, got 'abc' (not JSON: "),
    ("parents", '["a"]', "expected a list of candidate ids, got '[\"a\"]'"),
    ("parents", '{"0": 1}', "expected a list of candidate ids"),
    ("parents", "[1.5]", "expected a list of candidate ids"),
    ("genome", '{"terms": [', "expected a genome (a JSON object), got '{\"terms\": [' (not JSON"),
    ("genome", "[1, 2]", "expected a genome (a JSON object), got '[1, 2]'"),
    ("graph", "[1]", "expected a graph (a JSON object) or null"),
    ("graph", '{"update": 5}', "expected a graph, got '{\"update\": 5}' (update: expected"),
    ("graph", '{"format": "symopt.graph/1"}', "(update: missing)"),
    ("metrics", "[1]", "expected metrics (a JSON object of objects"),
    ("metrics", '{"digits": 0.5}', "expected metrics (a JSON object of objects"),
    ("fitness", "high", "expected a number, got 'high'"),
    ("seconds", "soon", "expected a number, got 'soon'"),
    ("generation", "first", "expected an integer >= 0, got 'first'"),
    ("generation", -1, "expected an integer >= 0, got -1"),
    ("space", b"nos", "expected text, got b'nos'"),
    ("fingerprint", b"fp", "expected text or null, got b'fp'"),
    ("status", "great", "expected one of evaluated, rejected, duplicate, diverged"),
    ("duplicate_of", "one", "expected a candidate id or null, got 'one'"),
]


_READS = {"get": lambda a: a.get(1), "records": lambda a: a.records(),
          "top": lambda a: a.top(10)}


@pytest.mark.parametrize(("read", "column", "value", "says"), [
    (read, *case) for read in _READS for case in _CANDIDATE_VALUES
    if not (read == "top" and case[0] == "status")])  # top reads evaluated rows only
def test_a_bad_candidate_value_is_one_line_naming_table_row_and_column(
        workdir, read, column, value, says):
    _corrupt(workdir, f"UPDATE candidates SET {column}=? WHERE id=1", value)
    message = _one_line_error(_READS[read], workdir,
                              f"table candidates, row id 1, column {column}: ")
    assert says in message


@pytest.mark.parametrize(("column", "value"), [("status", "great"), ("generation", "first"),
                                               ("fitness", "high")])
def test_a_bad_value_in_the_summaries_is_one_line(workdir, column, value):
    _corrupt(workdir, f"UPDATE candidates SET {column}=? WHERE id=1", value)
    where = f"table candidates, row id 1, column {column}: "
    _one_line_error(lambda a: a.generations(), workdir, where)
    if column == "status":
        _one_line_error(lambda a: a.count_by_status(), workdir, where)


def test_bad_parents_in_a_lineage_are_one_line(workdir):
    _corrupt(workdir, "UPDATE candidates SET parents='abc' WHERE id=1")
    _one_line_error(lambda a: a.lineage(3), workdir,
                    "table candidates, row id 1, column parents: expected a list of candidate ids")


@pytest.mark.parametrize(("changes", "column"), [
    ("status='rejected', reason=NULL, fitness=NULL", "reason"),
    ("status='rejected', reason='constant'", "fitness"),
    ("status='duplicate', duplicate_of=NULL", "duplicate_of"),
])
def test_a_row_that_breaks_a_records_rules_is_one_line(workdir, changes, column):
    _corrupt(workdir, f"UPDATE candidates SET {changes} WHERE id=1")
    _one_line_error(lambda a: a.get(1), workdir, f"table candidates, row id 1, column {column}: ")


def test_a_rejected_candidates_graph_need_only_be_an_object(workdir):
    # The integrity check rejects malformed graphs (invalid_structure) and keeps them.
    _corrupt(workdir, """UPDATE candidates SET graph='{"update": 5}' WHERE id=2""")
    with Archive.open(workdir) as archive:
        assert archive.get(2).graph == {"update": 5}
        assert [r.id for r in archive.records()] == [0, 1, 2, 3]


def test_a_long_bad_value_is_cut_in_the_message(workdir):
    _corrupt(workdir, "UPDATE candidates SET parents=? WHERE id=1", "x" * 1_000_000)
    message = _one_line_error(lambda a: a.get(1), workdir, "column parents: ")
    assert "'xxx" in message and "..." in message


def test_a_deeply_nested_value_is_one_line(workdir):
    _corrupt(workdir, "UPDATE candidates SET genome=? WHERE id=1", "[" * 100_000)
    _one_line_error(lambda a: a.get(1), workdir, "table candidates, row id 1, column genome: ")


@pytest.mark.parametrize(("column", "value", "says"), [
    ("metrics", "nope", "expected metrics (a JSON object), got 'nope' (not JSON: "),
    ("metrics", "[]", "expected metrics (a JSON object), got '[]'"),
    ("fitness", "high", "expected a number, got 'high'"),
    ("task", b"digits", "expected text, got b'digits'"),
])
def test_a_bad_stage_result_value_is_one_line(workdir, column, value, says):
    _corrupt(workdir, f"UPDATE stage_results SET {column}=? WHERE candidate_id=1", value)
    task = value if column == "task" else "digits"
    message = _one_line_error(lambda a: a.stage_results(), workdir,
                              f"table stage_results, row (candidate_id 1, stage 0, task "
                              f"{task!r}), column {column}: ")
    assert says in message


@pytest.mark.parametrize(("value", "says"), [
    ("{not json", "got '{not json' (not JSON: "),
    ("[1, 2]", "expected a run config (a JSON object that ml_collections.ConfigDict takes), "
               "got '[1, 2]'"),
    ("null", "got 'null'"),
    ('{"search.generations": 4}', "does not accept dots in field names"),
    ('{"search": {"a.b": 1}}', "does not accept dots in field names"),
])
def test_a_bad_config_is_one_line(workdir, value, says):
    _corrupt(workdir, "UPDATE meta SET value=? WHERE key='config'", value)
    where = "table meta, row key 'config', column value: expected a run config"
    assert says in _one_line_error(lambda a: a.config(), workdir, where)
    _one_line_error(lambda a: a.config_diff({"seed": 0}), workdir, where)
    _one_line_error(lambda a: a.set_config({"seed": 0}), workdir, where)


@pytest.mark.parametrize(("value", "says"), [
    ('{"search": 5, "seed": 0}', "(search holds a number, 5, where this config holds a section)"),
    ('{"search": {"generations": "abc"}}',
     "(search.generations holds text, 'abc', where this config holds a number)"),
    ('{"search": {"generations": [4]}}', "(search.generations holds a list, [4], where"),
    ('{"search": {"generations": true}}', "(search.generations holds a bool, True, where"),
])
def test_a_config_shaped_unlike_the_resumed_one_is_one_line(workdir, value, says):
    like = ml_collections.ConfigDict({"search": {"generations": 10}, "seed": 1})
    with Archive.open(workdir) as archive:  # the valid one: kinds match, keys may differ
        assert archive.config(like=like) == {"search": {"generations": 4}, "seed": 0}
        assert archive.config(like={"search": {"generations": 1.5, "new": "x"}, "seed": None})
    _corrupt(workdir, "UPDATE meta SET value=? WHERE key='config'", value)
    where = ("table meta, row key 'config', column value: expected a run config shaped like "
             "this one, got ")
    assert says in _one_line_error(lambda a: a.config(like=like), workdir, where)


def test_a_meta_value_that_is_not_json_is_one_line(workdir):
    _corrupt(workdir, "UPDATE meta SET value='{\"digits\": ' WHERE key='baseline'")
    _one_line_error(lambda a: a.get_meta("baseline"), workdir,
                    "table meta, row key 'baseline', column value: expected a JSON value")


def test_a_meta_value_of_the_wrong_kind_is_one_line(workdir):
    _corrupt(workdir, "UPDATE meta SET value='\"abc\"' WHERE key='baseline'")
    message = _one_line_error(lambda a: a.get_meta("baseline", kind=dict), workdir,
                              "table meta, row key 'baseline', column value: ")
    assert "expected a JSON object or null, got '\"abc\"'" in message


def test_an_in_memory_copy_names_the_file_it_copies(workdir):
    _corrupt(workdir, "UPDATE candidates SET parents='abc' WHERE id=1")
    with Archive.in_memory_copy(workdir) as archive, pytest.raises(ArchiveError) as error:
        archive.get(1)
    assert str(error.value).startswith(
        f"archive {workdir / archive_lib.FILENAME} (an in-memory copy): table candidates, row "
        "id 1, column parents: ")


def _resumed_error_lines(tmp_path, workdir) -> list[str]:
    """The tiny config's command line resumed on ``workdir``: it must exit 1
    with one line on stderr, which is returned."""
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG_FILE)
    out = subprocess.run(
        [sys.executable, "-m", "symopt.main", f"--config={config_file}", f"--workdir={workdir}",
         "--cpu_devices=1", "--compilation_cache_dir="],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == cli.RUN_ERROR, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines


# slow: it starts the program; by default a bad row reads as one line in process
# (above) and symopt.main's one-line exit 1 is checked by
# tests/test_cli.py::test_a_workdir_that_is_a_file_is_one_line_and_exit_code_1.
@pytest.mark.slow
def test_a_resume_from_an_archive_with_bad_parents_is_one_line_and_exit_code_1(tmp_path):
    # A run of the tiny config whose first generation is archived, its reference
    # stored (nothing is trained again): the resume reads the bad row first.
    workdir = tmp_path / "run"
    config = tiny_config()
    with Archive.open(workdir) as archive:
        archive.set_config(config.to_dict())
        archive.put_meta(workdir_lib.HORIZON, config.search.generations)
        archive.put_meta(workdir_lib.REFERENCE, {config.tasks.search: 2.3})
        archive.add_candidates([_record(i, generation=0, parents=(), origin="sample")
                                for i in range(config.search.population_size)])
    path = workdir / archive_lib.FILENAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE candidates SET parents='abc'")
    lines = _resumed_error_lines(tmp_path, workdir)
    assert lines[0].startswith(f"symopt.main: error: archive {path}: table candidates, row id ")
    assert "column parents: expected a list of candidate ids" in lines[0]


# Both under `pytest -m slow` (each case starts the program): by default a stored config
# unlike the resumed one is one line in process (above) and symopt.main's one-line exit 1
# is checked by tests/test_cli.py::test_a_workdir_that_is_a_file_is_one_line_and_exit_code_1.
@pytest.mark.slow
@pytest.mark.parametrize("stored", ['{"evaluation": 5}', None])
def test_a_resume_from_an_archive_with_a_bad_config_is_one_line_and_exit_code_1(
        tmp_path, stored):
    workdir = tmp_path / "run"
    config = tiny_config()
    bad = config.to_dict()
    bad["search"]["generations"] = "abc"
    with Archive.open(workdir) as archive:
        archive.set_config(bad)
    path = workdir / archive_lib.FILENAME
    if stored is not None:
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE meta SET value=? WHERE key='config'", (stored,))
    lines = _resumed_error_lines(tmp_path, workdir)
    assert "expected a run config shaped like this one" in lines[0], lines[0]
