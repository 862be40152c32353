"""The notebooks in notebooks/: committed without outputs, and executed top to
bottom here with their small budget, so a change that breaks one fails CI.

Each notebook reads `JAXRL_NOTEBOOK_SMALL=1` in its parameters cell; nbclient
runs it in a fresh kernel of this Python, in a temporary folder (its runs/
go there), with no network: the install cell finds jaxrl importable and
installs nothing.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
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
    # a figure the notebook draws is shown (a sweep once switched the kernel's backend to Agg)
    shown = [any("image/png" in out.get("data", {}) for out in cell.outputs)
             for cell in nb.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    assert all(shown), shown


def _install_cell_runs(cwd: Path, jaxrl_installed: bool, repo: str | None = None, **env: str) -> list[list[str]]:
    """The commands the install cell runs, in a Python that has (or lacks) jaxrl, with `env`;
    subprocess.run is replaced by a recorder, so nothing is downloaded. With `repo` (a git
    repository's path, for the cell's JAXRL_REPO), its git commands run for real."""
    recorder = (
        "import os, subprocess\nRUNS = []\nreal_run = subprocess.run\n"
        f"subprocess.run = lambda cmd, **kw: RUNS.append(cmd) or ({repo is not None} and cmd[0] == 'git' and real_run(cmd, **kw))\n"
    )
    cell = _read("quickstart").cells[2].source
    if repo is not None:
        cell = cell.replace('"https://github.com/OWNER/jaxrl"', repr(repo))
    # -S leaves site-packages, and with them the installed jaxrl, out of sys.path
    proc = subprocess.run(
        [sys.executable, *([] if jaxrl_installed else ["-S"]), "-c", f"{recorder}{cell}\nprint(repr(RUNS))"], cwd=cwd,
        capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env}, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def _pip_install(runs: list[list[str]]) -> list[str]:
    """What the recorded commands `runs` (git clone, then pip install) install, after "pip install --quiet",
    with the clone's folder as <source>; checks that pip takes the clone's constraints.txt."""
    (clone, pip) = runs
    assert clone[:4] == ["git", "clone", "--quiet", "--depth=1"] and clone[4] == "https://github.com/OWNER/jaxrl"
    source = clone[5]
    assert pip[:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
    assert pip[5:7] == ["-c", os.path.join(source, "constraints.txt")], pip
    return [arg.replace(source, "<source>") for arg in pip[7:]]


def test_the_install_cell_installs_jaxrl_pinned_with_the_runtimes_jax_build(tmp_path):
    assert _install_cell_runs(tmp_path, jaxrl_installed=True) == []
    assert _pip_install(_install_cell_runs(tmp_path, jaxrl_installed=False)) == ["<source>"]
    # a clone in the working directory is a namespace package, not an installed jaxrl
    (tmp_path / "jaxrl").mkdir()
    assert _pip_install(_install_cell_runs(tmp_path, jaxrl_installed=False)) == ["<source>"]
    assert _pip_install(_install_cell_runs(tmp_path, jaxrl_installed=False, TPU_ACCELERATOR_TYPE="v5e-8")) == [
        "<source>", "jax[tpu]"]
    # a GPU runtime: the CUDA plugin must be upgraded with jax, or the new jaxlib refuses it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    assert _pip_install(_install_cell_runs(tmp_path, jaxrl_installed=False, PATH=path)) == ["<source>", "jax[cuda12]"]


def test_the_install_cell_clones_the_repository_outside_the_working_directory_with_its_pins(tmp_path):
    root = NOTEBOOKS.parent
    if not (root / ".git").exists():
        pytest.skip("this checkout is not a git repository: nothing to clone")
    # a repository holding what is committed here (the cell clones its default branch)
    repo = tmp_path / "repo.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(root), str(repo)], check=True, timeout=120)
    work = tmp_path / "content"
    work.mkdir()
    clone, pip = _install_cell_runs(work, jaxrl_installed=False, repo=str(repo))
    source = Path(clone[5])
    assert not source.is_relative_to(work) and (source / "jaxrl" / "__init__.py").is_file()
    constraints = Path(pip[6])
    assert constraints.read_text() == subprocess.run(
        ["git", "show", "HEAD:constraints.txt"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert pip[7] == str(source)
