"""Small file helpers shared by every writer: atomic writes, tables, figures, file hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Nothing half-written is ever left at ``path``: if the body raises, the
    temporary file is removed and ``path`` keeps its previous content.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a new file gets
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be written.

    The nearest existing folder at or above ``path`` must be a folder this process
    may write in (missing folders below it are created when files are written);
    ``path`` itself must not be a folder (or, with ``folder=True``, a file).

    Raises
    ------
    OpinionmapError
        Naming the path and what is wrong with it.
    """
    from opinionmap.errors import OpinionmapError

    target = Path(path)
    if target.is_dir() and not folder:
        raise OpinionmapError(f"{target}: is a folder; give a file name to write.")
    if target.is_file() and folder:
        raise OpinionmapError(f"{target}: is a file; give a folder to write into.")
    parent = target if folder and target.is_dir() else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OpinionmapError(f"{target}: cannot be written: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OpinionmapError(f"{target}: cannot be written: no permission to write in {parent}.")
    return target


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# one resolution for every figure the package writes (PNG); SVG and PDF are vector
FIGURE_DPI = 110
FIGURE_FORMATS = ("png", "svg", "pdf")
TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | os.PathLike[str], error: type[Exception] | None = None) -> str:
    """``"csv"`` or ``"parquet"`` from a path's suffix; anything else is an error naming it."""
    from opinionmap.errors import OpinionmapError, format_values

    target = Path(path)
    kind = TABLE_FORMATS.get(target.suffix.lower())
    if kind is None:
        raise (error or OpinionmapError)(
            f"{target}: cannot write suffix {target.suffix!r}; use one of "
            f"{format_values(sorted(TABLE_FORMATS))}."
        )
    return kind


def write_table(
    table: Any, path: str | os.PathLike[str], error: type[Exception] | None = None
) -> Path:
    """Write a DataFrame as CSV or Parquet (by suffix), without its index, atomically.

    ``error``: the exception class for an unsupported suffix (default ``OpinionmapError``).
    """
    kind = table_format(path, error)
    with atomic_path(path) as tmp:
        if kind == "csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return Path(path)


def figure_format(path: str | os.PathLike[str]) -> str:
    """The figure format from a path's suffix (png, svg or pdf); anything else is an error."""
    from opinionmap.errors import OpinionmapError, format_values

    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise OpinionmapError(
            f"{target}: unsupported figure suffix {target.suffix!r}; write figures as "
            f"{format_values(['.' + f for f in FIGURE_FORMATS])}."
        )
    return fmt


@contextlib.contextmanager
def without_lazy_jax() -> Iterator[None]:
    """Draw figures without importing JAX for nothing.

    ArviZ puts ``jax`` into ``sys.modules`` as a lazy module where JAX is installed
    (numpyro brings it), and matplotlib asks ``sys.modules["jax"]`` whether each value
    it is given is a JAX array: the first figure of a process then imports all of JAX
    (0.5-0.9 s, ``benchmarks/README.md``), in every worker of a parallel run. While
    the body runs, a lazy ``jax`` not yet loaded is out of ``sys.modules`` (no JAX array
    can exist, and matplotlib sees none); it is put back after, unless JAX was imported
    meanwhile.
    """
    import sys

    lazy = sys.modules.get("jax")
    if lazy is None or type(lazy).__name__ != "_LazyModule":
        yield
        return
    del sys.modules["jax"]
    try:
        yield
    finally:
        sys.modules.setdefault("jax", lazy)


def save_figure(fig: Any, path: str | os.PathLike[str], *, close: bool = False) -> Path:
    """Write a matplotlib figure (format by suffix, :data:`FIGURE_DPI`), atomically.

    ``close=True`` also releases the figure (for figures the caller does not return).
    """
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=FIGURE_DPI)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return Path(path)
