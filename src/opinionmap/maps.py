"""Maps and plots of small-area estimates.

- :func:`plot_choropleth`: a map of an estimate by area (regions, or districts
  where a frame has them) from the bundled boundaries, with a second row of
  panels for the interval width, so a reader sees where the estimate is
  uncertain. Panels in a row share one colour scale, so a colour means the same
  share in every panel.
- :func:`plot_balance`: small multiples, one map per question of a balance of
  opinion by area (such as the share wanting more minus the share wanting less),
  on one diverging colour scale shared by every panel.
- :func:`plot_mrp_vs_direct`: dot-and-interval plot of MRP beside direct
  estimates by area, sorted, with each area's sample size.

Each writes PNG, SVG or PDF (by suffix), atomically.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opinionmap._io import save_figure
from opinionmap.errors import OpinionmapError, format_values

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

__all__ = [
    "LABEL_AREAS",
    "Area",
    "plot_balance",
    "plot_choropleth",
    "plot_correlations",
    "plot_mrp_vs_direct",
    "read_boundaries",
]

#: Maps of at most this many areas name each area on it by default.
LABEL_AREAS = 40


@dataclass(frozen=True)
class Area:
    """One area's outline: rings of (x, y) points, and where to put its label."""

    key: str
    name: str
    rings: tuple[np.ndarray, ...]
    label_at: tuple[float, float]
    size: float


def read_boundaries(path: str | os.PathLike[str], *, key: str, name: str) -> list[Area]:
    """Read area polygons from a shapefile.

    Parameters
    ----------
    path
        The ``.shp`` file (with its ``.dbf`` and ``.shx`` beside it).
    key
        The attribute holding each area's code, as the estimates' area column
        spells it (e.g. ``"ISO_3166_2"`` or ``"ADM1_PCODE"``).
    name
        The attribute holding each area's display name (e.g. ``"ADM1_EN"``).

    Examples
    --------
    >>> from opinionmap import datasets
    >>> areas = read_boundaries(
    ...     datasets.kazakhstan_boundaries_path(), key="ISO_3166_2", name="ADM1_EN"
    ... )
    >>> len(areas), sorted(a.key for a in areas)[0]
    (17, 'KZ-AKM')
    """
    import shapefile
    from shapely.geometry import Polygon

    source = Path(path)
    if not source.is_file():
        raise OpinionmapError(f"{source}: no such boundary file.")
    reader = shapefile.Reader(str(source))
    fields = [f.name for f in reader.fields[1:]]
    for wanted in (key, name):
        if wanted not in fields:
            raise OpinionmapError(
                f"{source}: no field {wanted!r}; fields: {format_values(fields)}."
            )
    areas = []
    for shape_record in reader.iterShapeRecords():
        record = shape_record.record.as_dict()
        shape = shape_record.shape
        bounds = [*shape.parts, len(shape.points)]
        rings = tuple(np.asarray(shape.points[a:b], dtype=float) for a, b in pairwise(bounds))
        polygons = [Polygon(r) for r in rings if len(r) >= 4]
        largest = max(polygons, key=lambda p: p.area)
        point = largest.representative_point()
        areas.append(
            Area(
                str(record[key]),
                str(record[name]),
                rings,
                (point.x, point.y),
                sum(p.area for p in polygons),
            )
        )
    return areas


# columns of an estimates table that are not the area
_VALUE_COLUMNS = {
    "category",
    "mean",
    "sd",
    "lower",
    "upper",
    "n_respondents",
    "population",
    "estimand",
    "converged",
}


def _area_column(table: pd.DataFrame, area: str | None, value: str) -> str:
    """The table's area column: ``area``, else its one column that holds no values."""
    if area is not None:
        return area
    candidates = [c for c in table.columns if c not in _VALUE_COLUMNS | {value}]
    if len(candidates) != 1:
        raise OpinionmapError(
            f"map: which column holds the areas? Candidates {format_values(candidates)}; pass "
            "area=..."
        )
    return str(candidates[0])


def plot_choropleth(
    table: pd.DataFrame,
    boundaries: Sequence[Area],
    *,
    area: str | None = None,
    value: str = "mean",
    categories: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    labels: bool | None = None,
    outlines: Sequence[Area] | None = None,
) -> Figure:
    """Map an estimate by area, with its interval width in a second row.

    Parameters
    ----------
    table
        A tidy table such as ``Estimates.summary()``: columns ``area``,
        ``category``, ``value`` and, for the second row, ``lower`` and ``upper``.
    boundaries
        Areas from :func:`read_boundaries` (the bundled regions:
        :func:`opinionmap.datasets.kazakhstan_regions`).
    area
        The area column (default: the table's one column that is not a value).
    categories
        Which categories to map, one panel each (default: all in the table).
    path
        Write the figure (``.png``, ``.svg`` or ``.pdf``).
    labels
        Write each area's name and value on it (default: when there are at most
        :data:`LABEL_AREAS` areas; districts are too many to read).
    outlines
        Larger areas drawn over the map as lines, e.g. the regions over a district
        map (:func:`opinionmap.datasets.kazakhstan_regions`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    area = _area_column(table, area, value)
    missing = [c for c in (area, "category", value) if c not in table.columns]
    if missing:
        raise OpinionmapError(f"choropleth: the table lacks column(s) {format_values(missing)}.")
    areas = list(boundaries)
    _check_boundaries(table[area].astype(str), areas, "choropleth")
    cats = list(categories) if categories is not None else list(dict.fromkeys(table["category"]))
    has_width = {"lower", "upper"} <= set(table.columns)
    rows = 2 if has_width else 1
    sub = table[table["category"].isin(cats)]
    vmax = float(np.nanmax(sub[value])) if len(sub) else 1.0
    vmin = float(np.nanmin(sub[value])) if len(sub) else 0.0
    width = (sub["upper"] - sub["lower"]) if has_width else None
    wmax = float(np.nanmax(width)) if width is not None and len(width) else 1.0
    fig, axes = _map_axes(areas, len(cats), rows, title)
    if labels is None:
        labels = len(areas) <= LABEL_AREAS
    for j, category in enumerate(cats):
        data = table[table["category"] == category].set_index(
            table[table["category"] == category][area].astype(str)
        )
        panels = [(0, data[value], "viridis", (vmin, vmax))]
        if has_width:
            panels.append((1, data["upper"] - data["lower"], "YlOrRd", (0.0, wmax)))
        for row, series, cmap, limits in panels:
            coll = _draw_areas(axes[row, j], areas, series, cmap, limits, labels)
            if outlines is not None:
                _draw_outlines(axes[row, j], outlines)
            if row == 0:
                axes[row, j].set_title(str(category), fontsize=11)
            if j == len(cats) - 1:
                label = value if row == 0 else "interval width (upper - lower)"
                _colorbar(fig, axes[row, j], coll, "{x:.0%}", label)
    if title:
        fig.suptitle(title, y=1 - 0.1 / fig.get_figheight(), va="top")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_balance(
    balances: Mapping[str, pd.Series],
    boundaries: Sequence[Area],
    *,
    title: str | None = None,
    columns: int = 3,
    path: str | os.PathLike[str] | None = None,
    labels: bool = True,
) -> Figure:
    """Small multiples: a balance of opinion by area, one map per question, one scale.

    Parameters
    ----------
    balances
        Panel title -> values by area key, between -1 and 1: for an ordered
        question, the share at the top of its scale minus the share at the bottom
        (wanting "more" minus wanting "less").
    boundaries
        Areas from :func:`read_boundaries`.
    columns
        Panels per row.
    path
        Write the figure (``.png``, ``.svg`` or ``.pdf``).

    Every panel shares one diverging colour scale, symmetric around zero, whose
    limit is the largest absolute balance in any panel: a colour means the same
    balance in every panel. Areas are labelled with their balance in percentage
    points (+53: 53 points more at the top of the scale than at its bottom).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import FuncFormatter

    if not balances:
        raise OpinionmapError("balance maps: no questions to map.")
    if columns < 1:
        raise OpinionmapError(f"balance maps: columns must be at least 1, got {columns}.")
    areas = list(boundaries)
    for name, series in balances.items():
        _check_boundaries(series.index.astype(str), areas, f"balance map {name!r}")
        outside = series[np.abs(np.asarray(series, dtype=float)) > 1]
        if len(outside):
            raise OpinionmapError(
                f"balance map {name!r}: balances are differences of shares, between -1 and 1; "
                f"got {format_values([f'{k}: {v:g}' for k, v in outside.items()])} "
                "(percentages? divide them by 100)."
            )
    values = np.concatenate([np.asarray(s, dtype=float) for s in balances.values()])
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    limit = max(limit, 0.01)
    columns = min(columns, len(balances))
    rows = -(-len(balances) // columns)
    fig, axes = _map_axes(areas, columns, rows, title, panel_w=3.6, gap=0.55, head=0.5)
    colls = []
    for ax, (name, series) in zip(axes.ravel(), balances.items(), strict=False):
        series = pd.Series(np.asarray(series, dtype=float), index=series.index.astype(str))
        colls.append(_draw_areas(ax, areas, series, "RdBu", (-limit, limit), labels, _points))
        ax.set_title(textwrap.fill(str(name), 44), fontsize=9)
    for ax in axes.ravel()[len(balances) :]:
        ax.remove()
    points = FuncFormatter(lambda x, _pos: _points(x))
    _colorbar(fig, axes[0, -1], colls[-1], points, "balance (percentage points)")
    if title:
        fig.suptitle(title, y=1 - 0.1 / fig.get_figheight(), va="top")
    if path is not None:
        save_figure(fig, path)
    return fig


def _points(v: float) -> str:
    """A difference of shares in percentage points, signed: 0.531 -> '+53'."""
    return f"{100 * v:+.0f}"


def _colorbar(fig: Figure, ax: Any, mappable: Any, fmt: str | Formatter, label: str) -> None:
    """A slim colour bar to the right of ``ax``."""
    box = ax.get_position()
    fig_w = fig.get_figwidth()
    cax = fig.add_axes(
        (box.x1 + 0.15 / fig_w, box.y0 + 0.1 * box.height, 0.15 / fig_w, 0.8 * box.height)
    )
    bar = fig.colorbar(mappable, cax=cax, format=fmt)
    bar.set_label(label, fontsize=8)


def _check_boundaries(keys: pd.Index | pd.Series, areas: Sequence[Area], what: str) -> None:
    """Every area key has a boundary; else name the ones without and the keys there are."""
    known = {a.key for a in areas}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise OpinionmapError(
            f"{what}: areas {format_values(unknown)} have no boundary (boundary keys: "
            f"{format_values(sorted(known))})."
        )


def _map_axes(
    areas: Sequence[Area],
    columns: int,
    rows: int,
    title: str | None,
    panel_w: float = 5.2,
    gap: float = 0.15,
    head: float = 0.3,
) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of map panels, laid out in inches (no tight bounding box).

    ``panel_w`` is a panel's width, ``gap`` the space between rows and ``head`` the
    space above the first row (for its panels' titles), in inches.
    """
    import matplotlib.pyplot as plt

    xs = np.concatenate([r[:, 0] for a in areas for r in a.rings])
    ys = np.concatenate([r[:, 1] for a in areas for r in a.rings])
    panel_h = panel_w * 1.5 * float(np.ptp(ys)) / max(float(np.ptp(xs)), 1e-12)
    top = (0.55 if title else 0.05) + head
    fig_w = 0.1 + columns * (panel_w + 0.1) + 0.95
    fig_h = top + rows * panel_h + (rows - 1) * gap + 0.1
    fig = plt.figure(figsize=(fig_w, fig_h))
    axes = np.array(
        [
            [
                fig.add_axes(
                    (
                        (0.1 + j * (panel_w + 0.1)) / fig_w,
                        1 - (top + (row + 1) * panel_h + row * gap) / fig_h,
                        panel_w / fig_w,
                        panel_h / fig_h,
                    )
                )
                for j in range(columns)
            ]
            for row in range(rows)
        ]
    )
    for ax in axes.ravel():
        ax.set_xlim(xs.min(), xs.max())
        ax.set_ylim(ys.min(), ys.max())
        ax.set_aspect(1.5)
        ax.set_axis_off()
    return fig, axes


def _draw_areas(
    ax: Any,
    areas: Sequence[Area],
    series: pd.Series,
    cmap: str,
    limits: tuple[float, float],
    labels: bool,
    fmt: Callable[[float], str] = "{:.0%}".format,
) -> Any:
    """Fill each area with its value's colour (grey where it has none); label the areas."""
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    polys, colours = [], []
    for a in areas:
        v = series.get(a.key, np.nan)
        for ring in a.rings:
            polys.append(ring)
            colours.append(v)
    coll = PolyCollection(
        polys,
        array=np.asarray(colours, dtype=float),
        cmap=plt.get_cmap(cmap).with_extremes(bad="#dddddd"),
        edgecolors="white",
        linewidths=0.5 if len(areas) <= LABEL_AREAS else 0.25,
    )
    coll.set_clim(*limits)
    ax.add_collection(coll)
    if labels:
        median_size = float(np.median([a.size for a in areas]))
        for a in areas:
            v = series.get(a.key, np.nan)
            # small areas by their code, without a country prefix such as "KZ-"
            text = a.name if a.size > 0.2 * median_size else a.key.split("-")[-1]
            ax.annotate(
                f"{text}\n{fmt(v)}" if np.isfinite(v) else text,
                a.label_at,
                ha="center",
                va="center",
                fontsize=6,
                path_effects=[pe.withStroke(linewidth=2, foreground="white")],
            )
    return coll


def _draw_outlines(ax: Any, areas: Sequence[Area]) -> None:
    """The outlines of ``areas`` as dark lines over a map."""
    from matplotlib.collections import LineCollection

    rings = [ring for a in areas for ring in a.rings]
    ax.add_collection(LineCollection(rings, colors="#333333", linewidths=0.7))


def plot_correlations(
    matrices: Mapping[str, pd.DataFrame],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Heat maps of correlation matrices, one panel each, on one scale from -1 to 1.

    Parameters
    ----------
    matrices
        Panel title -> a square matrix of correlations (posterior means), its rows and
        columns labelled alike (e.g. a joint model's area effects by question).
    path
        Write the figure (``.png``, ``.svg`` or ``.pdf``).

    Each cell is written with its value; blue is positive, red negative, so that
    questions whose area effects go together stand out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not matrices:
        raise OpinionmapError("correlation heat map: no matrices to draw.")
    for name, m in matrices.items():
        if m.shape[0] != m.shape[1] or list(m.index) != list(m.columns):
            raise OpinionmapError(
                f"correlation heat map {name!r}: the matrix must be square with the same "
                f"labels on its rows and columns; got rows {format_values(list(m.index))} and "
                f"columns {format_values(list(m.columns))}."
            )
        values = m.to_numpy(dtype=float)
        if (np.abs(values[np.isfinite(values)]) > 1 + 1e-9).any():
            raise OpinionmapError(
                f"correlation heat map {name!r}: correlations lie between -1 and 1."
            )
    size = max(m.shape[0] for m in matrices.values())
    side = 1.1 + 0.62 * size
    fig, axes = plt.subplots(
        1, len(matrices), figsize=(side * len(matrices) + 0.8, side + 0.6), squeeze=False
    )
    image = None
    for n, (ax, (name, m)) in enumerate(zip(axes[0], matrices.items(), strict=True)):
        values = m.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="RdBu", vmin=-1.0, vmax=1.0)
        ticks = range(m.shape[0])
        ax.set_xticks(ticks, [str(c) for c in m.columns], rotation=45, ha="right", fontsize=8)
        # the rows' labels once, on the left, where every panel has the same ones
        same = n > 0 and list(m.index) == list(next(iter(matrices.values())).index)
        ax.set_yticks(ticks, [] if same else [str(r) for r in m.index], fontsize=8)
        for i in ticks:
            for j in ticks:
                if np.isfinite(values[i, j]):
                    colour = "white" if abs(values[i, j]) > 0.6 else "black"
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
        ax.set_title(textwrap.fill(str(name), 40), fontsize=9)
    assert image is not None
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="correlation")
    if title:
        fig.suptitle(title, fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_mrp_vs_direct(
    mrp: pd.DataFrame,
    direct: pd.DataFrame | None,
    *,
    category: str,
    area: str | None = None,
    names: dict[str, str] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Dot-and-interval plot of MRP and direct estimates of one category by area.

    ``mrp`` is ``Estimates.summary()``; ``direct`` is
    :func:`~opinionmap.direct.direct_estimates` (its weighted share and interval).
    Areas are sorted by the MRP estimate; labels carry the sample size. ``area``:
    the area column (default: the MRP table's one column that is not a value).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    area = _area_column(mrp, area, "mean")
    m = mrp[mrp["category"] == category].copy()
    if m.empty:
        raise OpinionmapError(f"no MRP estimates for category {category!r}.")
    m[area] = m[area].astype(str)
    m = m.sort_values("mean")
    y = np.arange(len(m))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(m) + 1.4))
    ax.hlines(y + 0.15, m["lower"], m["upper"], color="tab:blue", lw=2.5)
    ax.plot(m["mean"], y + 0.15, "o", color="tab:blue", label="MRP (posterior interval)")
    if direct is not None:
        d = direct[direct["category"] == category].copy()
        d[area] = d[area].astype(str)
        d = d.set_index(area).reindex(m[area])
        ax.hlines(y - 0.15, d["lower"], d["upper"], color="tab:orange", lw=1.5, alpha=0.8)
        ax.plot(
            d["weighted"], y - 0.15, "s", color="tab:orange", ms=4, label="direct, design-weighted"
        )
    n = m["n_respondents"] if "n_respondents" in m.columns else pd.Series(np.nan, index=m.index)
    label_names = [
        f"{(names or {}).get(k, k)} (n={int(v)})" if np.isfinite(v) else (names or {}).get(k, k)
        for k, v in zip(m[area], n, strict=True)
    ]
    ax.set_yticks(y, label_names, fontsize=8)
    ax.set_xlabel(f"share answering {category!r}")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
