"""experiments/visualize.ipynb end to end: the README's command, then the notebook
file exactly as shipped, every cell run in a kernel started in ``experiments/``.

Needs the ``test`` extra (nbclient, nbformat, ipykernel, matplotlib). ipykernel
installs the ``python3`` kernelspec into ``sys.prefix``, so no
``ipykernel install`` is needed; if the kernel cannot start, the test fails
saying so (it is never skipped).
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import symopt
from symopt import graph as graph_lib
from symopt import zoo
from symopt.archive import Archive, CandidateRecord
from symopt.config import default_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "experiments", "visualize.ipynb")


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return cells[0]


def _texts(nb: nbformat.NotebookNode) -> str:
    """Every text output of every cell, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


README_COMMAND = [sys.executable, "-m", "symopt.main", "--config=experiments/digits.py"]
TINY = ["--config.search.generations=2", "--config.search.population_size=6",
        "--config.tasks.steps=20", "--config.tasks.seeds=1", "--config.elimination.tasks=",
        "--config.tasks.test=", "--config.evaluation.reference_lr_multipliers=(1.0,)",
        "--compilation_cache_dir="]
"""The README's command at a test's budget."""


def test_the_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
    source = _parameters_cell(nb).source
    assert 'os.environ.get("SYMOPT_WORKDIR", "runs/digits")' in source and "TOP = 3" in source
    assert "python -m symopt.main --config=experiments/digits.py --workdir=runs/digits" in (
        nb.cells[0].source)


def _execute_as_shipped(monkeypatch, workdir) -> nbformat.NotebookNode:
    """The notebook file as it is on disk, run in a kernel started in
    ``experiments/`` (as ``jupyter nbconvert --execute`` starts it), reading
    ``workdir`` through its documented environment variable (None: unset)."""
    if workdir is None:
        monkeypatch.delenv("SYMOPT_WORKDIR", raising=False)
    else:
        monkeypatch.setenv("SYMOPT_WORKDIR", os.fspath(workdir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    try:
        client.execute()
    except CellExecutionError:
        raise
    except Exception as e:  # no kernel: a broken install, not a reason to skip
        pytest.fail(f"could not run the notebook in a 'python3' Jupyter kernel "
                    f"(pip install -e '.[test]' installs ipykernel, which provides it): "
                    f"{type(e).__name__}: {e}")
    return nb


def _check_outputs(nb: nbformat.NotebookNode, workdir) -> None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"cell failed: {out.get('evalue')}"
    images = [out for cell in nb.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    # fitness, then a graph and a schedule per candidate, then the lineage
    assert len(images) >= 4
    best = graph_lib.load(os.path.join(workdir, "best.json"))
    with Archive.open(workdir, create=False) as archive:
        ids = [r.id for r in archive.top(len(archive.ids()))
               if r.graph is not None and graph_lib.from_dict(r.graph) == best]
    assert ids and f"best: candidate #{ids[0]}," in _texts(nb)


# Under `pytest -m slow` with the README's command at its own budget: by default
# test_the_notebook_numbers_generations_from_one_and_draws_the_runs_length runs the
# notebook as shipped on a written run and checks its outputs as this does, and
# the search runs to its end in process (tests/test_run.py).
@pytest.mark.slow
def test_the_notebook_as_shipped_shows_what_the_readme_command_wrote(monkeypatch, tmp_path):
    workdir = tmp_path / "digits"
    out = subprocess.run([*README_COMMAND, f"--workdir={workdir}", *TINY], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    before = sorted(os.listdir(workdir))
    nb = _execute_as_shipped(monkeypatch, workdir)
    _check_outputs(nb, workdir)
    assert sorted(os.listdir(workdir)) == before  # a viewer writes nothing


def _written_run(workdir, *, recorded: int | None) -> None:
    """A finished run's workdir written directly (no search): the default config
    (``tasks.steps`` 0, so the digits MLP trains its default 200 steps), two
    generations of candidates and a ``best.json`` recording ``recorded`` as its
    training length (None: one written before lengths were recorded)."""
    best = zoo.adam().replace(schedule=graph_lib.Schedule("cosine"))
    records = [CandidateRecord(id=i, generation=i // 2, space="nos", origin="sample",
                               parents=(i - 2,) if i >= 2 else (), genome={"id": i},
                               graph=best.with_hparams(learning_rate=10.0 ** -(i + 2)).to_dict(),
                               fingerprint=f"fp{i}", status="evaluated", fitness=float(i))
               for i in range(4)]
    with Archive.open(workdir) as archive:
        archive.set_config(default_config().to_dict())
        archive.add_candidates(records)
    symopt.save(graph_lib.from_dict(records[-1].graph).replace(total_steps=recorded),
                os.path.join(workdir, "best.json"))


# Each case starts a kernel: the length read from the config by default (with the
# outputs checked), the one best.json records under `pytest -m slow`.
@pytest.mark.parametrize("recorded, expected", [
    pytest.param(120, 120, marks=pytest.mark.slow), (None, 200)], ids=["best.json", "config"])
def test_the_notebook_numbers_generations_from_one_and_draws_the_runs_length(
        monkeypatch, tmp_path, recorded, expected):
    workdir = tmp_path / "run"
    _written_run(workdir, recorded=recorded)
    nb = _execute_as_shipped(monkeypatch, workdir)
    if recorded is None:  # best.json is then the best record's graph as archived
        _check_outputs(nb, workdir)
    texts = _texts(nb)
    # The best (fitness 3) is candidate #3 of the second generation, "gen 2/2" on the
    # command line; the archive stores it as generation 1.
    assert "### 1. candidate #3: generation 2," in texts
    assert "generation 0" not in texts
    assert f"schedules drawn over T = {expected} steps" in texts


# slow: it starts a kernel; by default the notebook runs as shipped (above) and its
# parameters cell reads SYMOPT_WORKDIR (test_the_notebook_is_stored_clean).
@pytest.mark.slow
def test_the_notebook_on_a_missing_workdir_says_which_command_makes_it(monkeypatch, tmp_path):
    workdir = tmp_path / "never_ran"
    with pytest.raises(CellExecutionError, match="python -m symopt.main"):
        _execute_as_shipped(monkeypatch, workdir)
    assert not workdir.exists()  # nothing created


@pytest.mark.slow
def test_the_notebook_runs_as_shipped_after_the_readme_command(monkeypatch):
    # The README's command exactly, into the repository's runs/digits.
    out = subprocess.run([*README_COMMAND, "--workdir=runs/digits"], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-2000:]
    nb = _execute_as_shipped(monkeypatch, None)
    _check_outputs(nb, os.path.join(ROOT, "runs", "digits"))
