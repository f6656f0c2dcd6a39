"""The example notebooks: committed executed at publication quality, and re-run with few draws.

The committed notebooks show their results where notebooks are read without running
them: ``scripts/execute_notebooks.py`` runs them top to bottom at the sampling sizes they
default to and stores the outputs, figures as palette PNGs. The fast tests read those
outputs: every fit converged, the results a reader looks for are there, and the files
stay small. Each notebook reads its sampling size from ``OPINIONMAP_NB_DRAWS``,
``OPINIONMAP_NB_TUNE`` and ``OPINIONMAP_NB_CHAINS``; the slow test shrinks them and
executes a copy of the notebook in a temporary folder with nbclient, so the committed
file is never rewritten. With so few draws the fits report "NOT CONVERGED"; that is
expected there and the notebooks say so.
"""

from __future__ import annotations

import base64
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
PROVINCE = re.compile(r"^(AB|BC|MB|NB|NL|NS|ON|PE|QC|SK)\b", re.MULTILINE)
MAX_NOTEBOOK_KIB = 700  # a committed notebook, figures included
MAX_FIGURE_KIB = 160  # one figure


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


def _check_own_survey(nb: nbformat.NotebookNode) -> None:
    texts = _texts(nb)
    assert any('role = "outcome"' in t and "[variables.province]" in t for t in texts), (
        "no codebook"
    )
    assert any('family = "bernoulli"' in t and "drafted by opinionmap init" in t for t in texts), (
        "no spec drafted by init"
    )
    assert any("report: ces11/project/report/report.html" in t for t in texts), "no run"
    assert any("converged:" in t or "CONVERGED" in t for t in texts), "no convergence verdict"
    assert any(
        len(set(PROVINCE.findall(t))) == 10 and "MRP" in t and "direct" in t for t in texts
    ), "no MRP and direct estimates of the 10 provinces"
    # MRP against direct, and the tile map
    assert _images(nb) >= 2


CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "01_fit_and_explore.ipynb": _check_fit_and_explore,
    "02_small_area_estimates.ipynb": _check_small_area,
    "03_compare_models_loo.ipynb": _check_compare,
    "04_your_own_survey.ipynb": _check_own_survey,
}


def test_notebooks_are_present() -> None:
    assert set(CHECKS) <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed_at_publication_quality(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    fix = f"run .venv/bin/python scripts/execute_notebooks.py notebooks/{path.name}"
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: code cells were not run once, top to bottom ({counts}); {fix}"
    )
    errors = [
        i
        for i, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if output["output_type"] == "error"
    ]
    assert not errors, f"{path.name}: cells {errors} stored an error; {fix}"
    verdicts = [line for t in _texts(nb) for line in t.splitlines() if "CONVERGED" in line]
    verdicts += [line for t in _texts(nb) for line in t.splitlines() if "converged:" in line]
    assert verdicts, f"{path.name}: no convergence verdict in the stored outputs"
    assert not any("NOT CONVERGED" in v for v in verdicts), (
        f"{path.name}: stored at a size that did not converge ({verdicts}); {fix}"
    )
    CHECKS[path.name](nb)
    text = "\n".join(_texts(nb))
    for private in ("/tmp/", "/work/", "/root/", "/home/"):
        assert private not in text, f"{path.name}: an output shows a local path ({private})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_figures_are_small_pngs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    figures = [
        output["data"]
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "data" in output and any(k.startswith("image/") for k in output["data"])
    ]
    assert figures
    for data in figures:
        assert "image/png" in data, f"{path.name}: a figure stored as {sorted(data)}, not PNG"
        png = base64.b64decode(data["image/png"])
        assert png[1:4] == b"PNG"
        assert len(png) / 1024 <= MAX_FIGURE_KIB, f"{path.name}: a figure of {len(png)} bytes"
        # a palette image (colour type 3), as scripts/execute_notebooks.py stores them
        assert png[25] == 3, f"{path.name}: a figure not re-encoded with a palette"
    size = path.stat().st_size / 1024
    assert size <= MAX_NOTEBOOK_KIB, f"{path.name}: {size:.0f} KiB"


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
