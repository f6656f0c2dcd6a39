"""Structured priors for varying intercepts: random walks over ordered levels, BYM2 over areas.

A varying intercept ``(1 | g)`` is by default exchangeable: every level's effect is
drawn from one normal distribution, whatever its neighbours do. Gao, Kennedy,
Simpson and Gelman (2021, *Bayesian Analysis* 16(3), "Improving multilevel
regression and poststratification with structured priors") show that small-area
and small-group estimates improve when the prior knows which levels are alike:
adjacent age bands, neighbouring regions. A spec asks for that per term::

    [priors.structure]
    age = "rw1"                      # or "rw2": a random walk over the ordered levels
    region = { type = "bym2", adjacency = "../data/kazakhstan/region_adjacency.csv" }

- ``rw1``: neighbouring levels differ by ``N(0, tau^2)``; ``rw2``: second
  differences are ``N(0, tau^2)`` and the linear trend, which second differences
  do not see, is ``N(0, 1)`` in units of ``sigma`` per standard deviation of the
  level positions.
- ``bym2`` (Riebler, Sorbye, Simpson and Rue 2016): ``u = sigma (sqrt(1 - rho) theta
  + sqrt(rho) phi)`` with ``theta`` exchangeable, ``phi`` an intrinsic conditional
  autoregression (ICAR) over the adjacency graph, and ``rho ~ Beta(2, 2)`` the
  spatial share of the variance (away from 0 and 1, where few areas leave it unidentified:
  ``docs/model.md`` section 12).

Every structured part is scaled (Sorbye and Rue 2014) so that the geometric mean
of its marginal variances is one: ``sigma`` keeps the meaning, and the
``HalfNormal`` prior, it has for an exchangeable term. A graph with several
connected components is handled as Freni-Sterrantino, Ventrucci and Rue (2018)
recommend: the ICAR sums to zero and is scaled within each component, and an
island (an area declared without neighbours) gets an independent ``N(0, 1)``
in place of the ICAR, so its effect is exchangeable.

The structured part is sampled non-centred in the eigenbasis of the ICAR or
random-walk precision matrix ``Q``: ``phi = B z`` with ``z ~ N(0, I)`` and
``B = S V Lambda^(-1/2)`` over the eigenvectors ``V`` of ``Q``'s non-zero
eigenvalues ``Lambda`` (``S`` the per-component scaling). That is exactly the
intrinsic distribution restricted to the sum-to-zero subspace of each component
(``docs/model.md`` section 10 has the derivation and the measured reasons).

An adjacency file is a CSV of pairs of area labels, one pair per row (the first
two columns; a header row is expected), each pair once in either order; a row
with an empty second column declares an island. Every level of the term must
appear in it. :func:`adjacency_from_boundaries` writes one from a boundary file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from opinionmap._io import atomic_path
from opinionmap.errors import OpinionmapError, did_you_mean, format_values, near_misses

__all__ = [
    "STRUCTURES",
    "AdjacencyError",
    "Graph",
    "Structure",
    "StructuredBasis",
    "adjacency_from_boundaries",
    "components",
    "read_adjacency",
    "structured_basis",
]

Kind = Literal["rw1", "rw2", "bym2"]
STRUCTURES: tuple[str, ...] = ("rw1", "rw2", "bym2")
# eigenvalues below this fraction of the largest are the precision's null space
_NULL_TOLERANCE = 1e-9


class AdjacencyError(OpinionmapError):
    """An adjacency list or a structured prior does not fit the term it is declared for."""


@dataclass(frozen=True)
class Structure:
    """A structured prior for one varying intercept (an entry of ``[priors.structure]``).

    Parameters
    ----------
    kind
        ``"rw1"``, ``"rw2"`` (ordered levels) or ``"bym2"`` (areas).
    adjacency
        The adjacency CSV of a ``bym2`` term (``None`` for random walks).

    Examples
    --------
    >>> Structure("rw1").to_entry()
    'rw1'
    >>> Structure.from_entry("region", {"type": "bym2", "adjacency": "adj.csv"}, "<spec>").kind
    'bym2'
    """

    kind: Kind
    adjacency: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in STRUCTURES:
            raise AdjacencyError(
                f"unknown structure {self.kind!r}; choose one of {format_values(STRUCTURES)}."
            )
        if self.kind == "bym2" and self.adjacency is None:
            raise AdjacencyError(
                "a bym2 prior needs its adjacency list: "
                '{ type = "bym2", adjacency = "region_adjacency.csv" }.'
            )
        if self.kind != "bym2" and self.adjacency is not None:
            raise AdjacencyError(
                f"{self.kind} takes no adjacency list: it follows the order of the levels."
            )
        if self.adjacency is not None:
            object.__setattr__(self, "adjacency", Path(self.adjacency))

    def to_entry(self) -> str | dict[str, str]:
        """The TOML value: ``"rw1"`` or ``{ type = "bym2", adjacency = "..." }``."""
        if self.adjacency is None:
            return self.kind
        return {"type": self.kind, "adjacency": str(self.adjacency)}

    @classmethod
    def from_entry(cls, term: str, raw: object, where: str, base: Path | None = None) -> Structure:
        """Parse one ``[priors.structure]`` entry; a relative adjacency path is against ``base``."""
        context = f"{where}: [priors.structure] {term}"
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, Mapping):
            raise AdjacencyError(
                f'{context} must be "rw1", "rw2" or {{ type = "bym2", adjacency = "FILE.csv" }}.'
            )
        unknown = sorted(set(raw) - {"type", "adjacency"})
        if unknown or "type" not in raw:
            raise AdjacencyError(
                f"{context}: keys are type and adjacency (got {format_values(sorted(raw))})."
            )
        adjacency = raw.get("adjacency")
        if adjacency is not None and not isinstance(adjacency, str | Path):
            raise AdjacencyError(f"{context}: adjacency must be a path string.")
        path = None if adjacency is None else Path(adjacency)
        if path is not None and base is not None and not path.is_absolute():
            path = (base / path).resolve()
        try:
            return cls(raw["type"], path)
        except AdjacencyError as exc:
            raise AdjacencyError(f"{context}: {exc}") from None


@dataclass(frozen=True)
class Graph:
    """A structured term's neighbours, by level position: what the model is built from.

    ``edges`` are pairs ``(i, j)``, ``i < j``, of level positions (random walks:
    consecutive levels); ``islands`` are the levels declared without neighbours.
    """

    term: str
    kind: Kind
    n_levels: int
    edges: tuple[tuple[int, int], ...]
    islands: tuple[int, ...] = ()

    def to_dict(self, levels: Sequence[str]) -> dict[str, Any]:
        """JSON-ready, with level labels (stored in a fit)."""
        return {
            "term": self.term,
            "kind": self.kind,
            "edges": [[levels[i], levels[j]] for i, j in self.edges],
            "islands": [levels[i] for i in self.islands],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], levels: Sequence[str]) -> Graph:
        """Inverse of :meth:`to_dict`."""
        position = {label: i for i, label in enumerate(levels)}
        return cls(
            term=str(raw["term"]),
            kind=raw["kind"],
            n_levels=len(levels),
            edges=tuple((position[a], position[b]) for a, b in raw["edges"]),
            islands=tuple(position[a] for a in raw["islands"]),
        )

    @classmethod
    def walk(cls, term: str, kind: Kind, n_levels: int) -> Graph:
        """The chain of consecutive levels of a random walk."""
        return cls(term, kind, n_levels, tuple((i, i + 1) for i in range(n_levels - 1)))


def read_adjacency(path: str | os.PathLike[str], term: str, levels: Sequence[str]) -> Graph:
    """Read an adjacency CSV for a ``bym2`` term whose levels are ``levels``.

    Raises
    ------
    AdjacencyError
        The file is missing or not two columns; it names areas the term does not
        have, pairs an area with itself, or leaves a level of the term out
        (neither paired nor declared an island).
    """
    source = Path(path)
    if not source.is_file():
        raise AdjacencyError(f"{source}: no such adjacency file (bym2 prior of {term!r}).")
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AdjacencyError(f"{source}: not a CSV of area pairs: {exc}") from exc
    if table.shape[1] < 2:
        raise AdjacencyError(
            f"{source}: an adjacency list needs two columns (area, neighbour), one pair per "
            f"row; found {format_values(list(table.columns))}."
        )
    a = [str(v) for v in table.iloc[:, 0].str.strip()]
    b = [str(v) for v in table.iloc[:, 1].str.strip()]
    if "" in a:
        rows = [i + 2 for i, v in enumerate(a) if v == ""]
        raise AdjacencyError(f"{source}: empty first column in line(s) {format_values(rows)}.")
    position = {label: i for i, label in enumerate(levels)}
    named = sorted({*a, *(v for v in b if v)})
    unknown = [n for n in named if n not in position]
    if unknown:
        hint = did_you_mean(near_misses(unknown, list(levels)))
        raise AdjacencyError(
            f"{source}: names area(s) {format_values(unknown)} that {term!r} does not have "
            f"(its levels: {format_values(list(levels), limit=20)}). "
            f"{f'Near misses: {hint}. ' if hint else ''}Spell the areas as the survey does."
        )
    looped = sorted({x for x, y in zip(a, b, strict=True) if x == y})
    if looped:
        raise AdjacencyError(
            f"{source}: pairs area(s) {format_values(looped)} with itself; remove those rows."
        )
    edges = sorted(
        {tuple(sorted((position[x], position[y]))) for x, y in zip(a, b, strict=True) if y != ""}
    )
    paired = {i for edge in edges for i in edge}
    declared = {position[x] for x, y in zip(a, b, strict=True) if y == ""}
    contradicted = sorted(levels[i] for i in declared & paired)
    if contradicted:
        raise AdjacencyError(
            f"{source}: declares {format_values(contradicted)} an island (a row with no "
            "neighbour) but also pairs it with a neighbour; keep one."
        )
    left_out = [label for i, label in enumerate(levels) if i not in paired | declared]
    if left_out:
        raise AdjacencyError(
            f"{source}: area(s) {format_values(left_out)} of {term!r} have no neighbours in the "
            "list. Add a row for each of their neighbours, or declare an area that has none "
            f"(an island) with a row of its label and an empty second column, e.g. "
            f"'{left_out[0]},'."
        )
    return Graph(
        term,
        "bym2",
        len(levels),
        tuple((int(i), int(j)) for i, j in edges),
        tuple(sorted(declared)),
    )


def components(graph: Graph) -> list[list[int]]:
    """The connected components of a graph, each a sorted list of level positions."""
    parent = list(range(graph.n_levels))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in graph.edges:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(graph.n_levels):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


@dataclass(frozen=True)
class StructuredBasis:
    """``phi = matrix @ z`` with ``z ~ N(0, I)``: the scaled structured part of a term.

    Attributes
    ----------
    matrix
        (levels, m): the scaled eigenbasis, plus a unit column per island.
    trend
        (levels,) for ``rw2``: the centred level positions over their standard
        deviation, the direction the second differences do not see; else ``None``.
    scale
        The scaling factor of each component (the geometric mean of the unscaled
        marginal variances), by component, in :func:`components` order; 1 for islands.
    """

    matrix: np.ndarray
    trend: np.ndarray | None
    scale: tuple[float, ...]


def precision(graph: Graph) -> np.ndarray:
    """The structure matrix ``Q``: the graph Laplacian (ICAR, rw1) or ``D2' D2`` (rw2)."""
    n = graph.n_levels
    if graph.kind == "rw2":
        d2 = np.zeros((max(n - 2, 0), n))
        for r in range(n - 2):
            d2[r, r : r + 3] = (1.0, -2.0, 1.0)
        return d2.T @ d2
    q = np.zeros((n, n))
    for i, j in graph.edges:
        q[i, j] -= 1.0
        q[j, i] -= 1.0
        q[i, i] += 1.0
        q[j, j] += 1.0
    return q


def structured_basis(graph: Graph) -> StructuredBasis:
    """The scaled non-centred basis of a structured term (see the module docstring).

    Examples
    --------
    >>> basis = structured_basis(Graph.walk("age", "rw1", 4))
    >>> cov = basis.matrix @ basis.matrix.T
    >>> round(float(np.exp(np.log(np.diag(cov)).mean())), 6), bool(np.allclose(cov.sum(0), 0))
    (1.0, True)
    """
    n = graph.n_levels
    if graph.kind == "rw2" and n < 3:
        raise AdjacencyError(f"rw2 on {graph.term!r} needs at least three levels, it has {n}.")
    q = precision(graph)
    values, vectors = np.linalg.eigh(q)
    keep = values > _NULL_TOLERANCE * max(float(values.max()), 1.0)
    root = vectors[:, keep] / np.sqrt(values[keep])  # Q^+ = root @ root.T
    marginal = np.einsum("ij,ij->i", root, root)
    row_scale = np.ones(n)
    scales: list[float] = []
    island_columns: list[np.ndarray] = []
    for component in components(graph):
        if len(component) == 1:
            # an island: no ICAR; an independent N(0, 1) (Freni-Sterrantino et al. 2018)
            column = np.zeros(n)
            column[component[0]] = 1.0
            island_columns.append(column)
            scales.append(1.0)
            continue
        factor = float(np.exp(np.log(marginal[component]).mean()))
        row_scale[component] = 1.0 / np.sqrt(factor)
        scales.append(factor)
    matrix = np.column_stack([root * row_scale[:, None], *island_columns])
    trend = None
    if graph.kind == "rw2":
        position = np.arange(n, dtype=float)
        trend = (position - position.mean()) / position.std()
    # drop floating-point dust so the compiled graph's constants are reproducible
    matrix[np.abs(matrix) < 1e-14] = 0.0
    return StructuredBasis(matrix, trend, tuple(scales))


def adjacency_from_boundaries(
    path: str | os.PathLike[str],
    *,
    key: str,
    out: str | os.PathLike[str] | None = None,
    sliver_fraction: float = 1e-3,
    tolerance: float = 1e-4,
) -> pd.DataFrame:
    """Pairs of areas that share a border, from a boundary shapefile.

    Parameters
    ----------
    path
        The ``.shp`` file (its ``.dbf`` and ``.shx`` beside it).
    key
        The attribute holding each area's label as the survey spells it.
    out
        Optional CSV to write the pairs to (atomically), for ``[priors.structure]``.
    sliver_fraction
        Polygon parts smaller than this fraction of their area's total are dropped
        first: stray slivers and enclaves in boundary files otherwise create
        neighbours that are not.
    tolerance
        Areas whose remaining parts come this close (in the file's units; 1e-4
        degrees is about 10 m) are neighbours.

    Returns
    -------
    DataFrame
        ``area, neighbour`` (one row per pair, ``area < neighbour``), plus a row
        with an empty ``neighbour`` for each area that borders none (an island).

    Examples
    --------
    >>> from opinionmap import datasets
    >>> pairs = adjacency_from_boundaries(datasets.kazakhstan_boundaries_path(), key="ISO_3166_2")
    >>> len(pairs), sorted(pairs.loc[pairs["area"] == "KZ-ALA", "neighbour"])
    (29, ['KZ-ALM'])
    """
    import shapefile
    from shapely.geometry import shape

    source = Path(path)
    if not source.is_file():
        raise AdjacencyError(f"{source}: no such boundary file.")
    reader = shapefile.Reader(str(source))
    try:
        fields = [f.name for f in reader.fields[1:]]
        if key not in fields:
            raise AdjacencyError(f"{source}: no field {key!r}; fields: {format_values(fields)}.")
        parts: dict[str, list[Any]] = {}
        for record in reader.iterShapeRecords():
            geometry = shape(record.shape.__geo_interface__)
            pieces = list(getattr(geometry, "geoms", [geometry]))
            kept = [p for p in pieces if p.area >= sliver_fraction * geometry.area]
            parts.setdefault(str(record.record[key]), []).extend(kept)
    finally:
        reader.close()
    labels = sorted(parts)
    rows: list[tuple[str, str]] = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if min(pa.distance(pb) for pa in parts[a] for pb in parts[b]) <= tolerance:
                rows.append((a, b))
    paired = {x for pair in rows for x in pair}
    rows += [(a, "") for a in labels if a not in paired]
    pairs = pd.DataFrame(rows, columns=["area", "neighbour"])
    if out is not None:
        with atomic_path(Path(out)) as tmp:
            pairs.to_csv(tmp, index=False, lineterminator="\n")
    return pairs
