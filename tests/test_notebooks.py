"""The example notebooks: committed without outputs, and run top to bottom with few draws.

Each notebook reads its sampling size from ``OPINIONMAP_NB_DRAWS``, ``OPINIONMAP_NB_TUNE``
and ``OPINIONMAP_NB_CHAINS`` (defaults: publication quality); the slow test shrinks them
and executes a copy of the notebook in a temporary folder with nbclient, so the committed
file is never rewritten. With so few draws the fits report "NOT CONVERGED"; that is
expected here and the notebooks say so.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SMALL_RUN = {"OPINIONMAP_NB_DRAWS": "100", "OPINIONMAP_NB_TUNE": "150", "OPINIONMAP_NB_CHAINS": "2"}
CELL_TIMEOUT = 600  # seconds per cell
REGION = re.compile(r"\bKZ-[A-Z]{3}\b")


def _texts(nb: nbformat.NotebookNode) -> list[str]:
    """The text of every output, in order: streams and the plain-text form of results."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                out.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                out.append(output["data"]["text/plain"])
    return out


def _images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        for output in cell.get("outputs", [])
    )


def _check_fit_and_explore(nb: nbformat.NotebookNode) -> None:
    texts = _texts(nb)
    assert any("CONVERGED" in t or "converged:" in t for t in texts), "no convergence verdict"
    assert any("kazakh" in t and "russian" in t and "upper" in t for t in texts), "no effects"
    # trace, rank, forest and posterior predictive plots
    assert _images(nb) >= 4


def _check_small_area(nb: nbformat.NotebookNode) -> None:
    texts = _texts(nb)
    assert any(len(set(REGION.findall(t))) == 17 for t in texts), "no table of the 17 regions"
    assert any("mean absolute error" in t and "MRP" in t for t in texts), "no MAE vs truth"
    assert any("prob_greater" in t for t in texts), "no contrast probability"
    # choropleth and MRP-vs-direct plots
    assert _images(nb) >= 2


def _check_compare(nb: nbformat.NotebookNode) -> None:
    tables = [t for t in _texts(nb) if "elpd" in t]
    assert tables, "no az.compare table"
    rows = {line.split()[0] for line in tables[-1].splitlines()[1:] if line.strip()}
    assert {"with", "without"} <= rows


CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "01_fit_and_explore.ipynb": _check_fit_and_explore,
    "02_small_area_estimates.ipynb": _check_small_area,
    "03_compare_models_loo.ipynb": _check_compare,
}


def test_notebooks_are_present() -> None:
    assert set(CHECKS) <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} store outputs or execution counts; clear them "
        f"before committing (jupyter nbconvert --clear-output --inplace {path.name})."
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    for name, value in SMALL_RUN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
    work = tmp_path / path.name
    shutil.copy(path, work)
    nb = nbformat.read(work, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    check = CHECKS.get(path.name)
    if check is not None:
        check(nb)
