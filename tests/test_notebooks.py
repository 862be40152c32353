"""The notebooks in notebooks/: committed without outputs, and executed top to
bottom here with their small budget, so a change that breaks one fails CI.

Each notebook reads `JAXRL_NOTEBOOK_SMALL=1` in its parameters cell; nbclient
runs it in a fresh kernel of this Python, in a temporary folder (its runs/
go there), with no network: the install cell finds jaxrl importable and
installs nothing.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["quickstart", "sweeps", "humanoid"]
SETUP_CELLS = 4  # title, parameters, install, accelerator


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}.ipynb cell {i} holds outputs: clear them before committing "
                f"(jupyter nbconvert --clear-output --inplace notebooks/{name}.ipynb)"
            )


def test_notebooks_share_the_setup_cells():
    # the install and accelerator cells are what makes each notebook run on Colab: one copy, three places
    first, *others = [[c.source for c in _read(n).cells[1:SETUP_CELLS]] for n in NAMES]
    for name, cells in zip(NAMES[1:], others):
        assert cells == first, f"{name}.ipynb's setup cells differ from quickstart.ipynb's"
    assert _read("quickstart").cells[1].metadata.get("tags") == ["parameters"]


@pytest.mark.parametrize(
    "name", ["quickstart", "sweeps", pytest.param("humanoid", marks=pytest.mark.slow)]
)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("JAXRL_NOTEBOOK_SMALL", "1")
    # the kernel is this interpreter, the one that has jaxrl (jupyter_client maps "python" to it too)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    nb = _read(name)
    # raises CellExecutionError, with the cell and its traceback, at the first failing cell
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert "jaxrl is already installed" in text
    assert "accelerator: CPU" in text
    # the progress bar is one output, redrawn in place up to the last step (e.g. "training ━━━ 8192/8192")
    assert re.search(r"^training .* (\d+)/\1 ", text, re.MULTILINE), text[-3000:]
