"""Execute the example notebooks at publication quality and store their outputs, small.

Usage::

    .venv/bin/python scripts/execute_notebooks.py [notebooks/01_fit_and_explore.ipynb ...]

Each notebook (default: every ``notebooks/*.ipynb``) runs top to bottom in a fresh
kernel, in a temporary folder (whatever it writes stays out of the repository), with
the sampling sizes it defaults to: the ``OPINIONMAP_NB_*`` variables that the tests use
to shrink them are removed first. Its figures are re-encoded as palette PNGs (about a
quarter of the size; the plots' few flat colours survive), per-cell timing metadata is
dropped, and the notebook is replaced atomically, so a failed run leaves the committed
file as it was. Prints each notebook's size and the seconds it took.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image

from opinionmap._io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
SIZE_VARIABLES = ("OPINIONMAP_NB_DRAWS", "OPINIONMAP_NB_TUNE", "OPINIONMAP_NB_CHAINS")
CELL_TIMEOUT = 1200  # seconds per cell


def compress_png(data: str, colors: int = 256) -> str:
    """A base64 PNG re-encoded with a palette of ``colors``, if that is smaller."""
    raw = base64.b64decode(data)
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(
        out, format="PNG", optimize=True
    )
    smaller = out.getvalue() if out.tell() < len(raw) else raw
    return base64.b64encode(smaller).decode("ascii")


def execute(path: Path) -> tuple[float, int]:
    """Run ``path`` in place (atomically); return the seconds it took and its new size."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="opinionmap-nb-") as work:
        NotebookClient(
            nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": work}}
        ).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                data["image/png"] = compress_png(data["image/png"])
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))
    return seconds, path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for name in SIZE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
    for path in paths:
        seconds, size = execute(path)
        print(f"{path.name}: {seconds:.0f} s, {size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
