"""experiments/visualize.ipynb end to end: a tiny search, then every cell run in a kernel.

Needs the ``test`` extra (nbclient, nbformat, ipykernel, matplotlib). ipykernel
installs the ``python3`` kernelspec into ``sys.prefix``, so no
``ipykernel install`` is needed; if the kernel cannot start, the test fails
saying so (it is never skipped).
"""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from test_run import tiny_config

from symopt import run as run_lib

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


def test_the_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
    source = _parameters_cell(nb).source
    assert 'WORKDIR = "runs/digits"' in source and "TOP = 3" in source


def test_the_notebook_runs_on_a_tiny_search(tmp_path):
    config = tiny_config(search__generations=2, search__population_size=6)
    workdir = tmp_path / "run"
    result = run_lib.run(config, workdir, log=lambda _: None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    _parameters_cell(nb).source = f"WORKDIR = {os.fspath(workdir)!r}\nTOP = 2"
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"a notebook cell failed:\n{e}")
    except Exception as e:  # no kernel: a broken install, not a reason to skip
        pytest.fail(f"could not run the notebook in a 'python3' Jupyter kernel "
                    f"(pip install -e '.[test]' installs ipykernel, which provides it): "
                    f"{type(e).__name__}: {e}")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"cell failed: {out.get('evalue')}"
    images = [out for cell in nb.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    # fitness, then a graph and a schedule per candidate, then the lineage
    assert len(images) >= 4
    texts = _texts(nb)
    assert f"#{result.best.id}" in texts
    assert f"best: candidate #{result.best.id}," in texts
