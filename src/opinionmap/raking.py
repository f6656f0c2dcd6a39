"""Iterative proportional fitting (raking) of a joint table to published margins.

Census offices rarely publish the full joint table that poststratification
needs (area x sex x age x ethnicity x settlement); they publish margins such as
area x sex x age and area x ethnicity. :func:`rake` finds the joint table that
matches every margin, starting from a seed (uniform unless given), by
iterative proportional fitting (Deming and Stephan, 1940). Among all tables
that match the margins, the result is the one closest to the seed in
Kullback-Leibler divergence, so with a uniform seed it adds no association
beyond what the margins imply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opinionmap.errors import RakingError, format_values

__all__ = ["RakingReport", "rake"]


@dataclass(frozen=True)
class RakingReport:
    """How a raking run went: iterations used and the worst relative margin error."""

    iterations: int
    max_relative_error: float
    tolerance: float


def _levels_in_order(margins: Sequence[pd.DataFrame], dim: str) -> list[object]:
    """Union of a dimension's levels across margins, in order of first appearance."""
    seen: dict[object, None] = {}
    for margin in margins:
        if dim not in margin.columns:
            continue
        column = margin[dim]
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = list(column.cat.categories)
        else:
            values = list(pd.unique(column))
        for value in values:
            seen.setdefault(value, None)
    return list(seen)


def _margin_array(
    margin: pd.DataFrame, dims: list[str], levels: dict[str, list[object]], value: str, name: str
) -> np.ndarray:
    """A margin as a dense array over its own dims, in the joint table's level order."""
    duplicated = margin.duplicated(dims, keep=False)
    if duplicated.any():
        cells = margin.loc[duplicated, dims].drop_duplicates().to_dict("records")
        raise RakingError(
            f"{name}: cells appear more than once: {format_values(cells)}. "
            "Each combination of levels must have one row; aggregate the duplicates first."
        )
    shape = tuple(len(levels[d]) for d in dims)
    array = np.zeros(shape)
    filled = np.zeros(shape, dtype=bool)
    index = tuple(
        pd.Categorical(margin[d], categories=levels[d]).codes.astype(np.intp) for d in dims
    )
    array[index] = margin[value].to_numpy(dtype=float)
    filled[index] = True
    if not filled.all():
        missing = [
            dict(zip(dims, (levels[d][i] for d, i in zip(dims, idx, strict=True)), strict=True))
            for idx in zip(*np.nonzero(~filled), strict=True)
        ]
        raise RakingError(
            f"{name}: no row for cells {format_values(missing)}. A margin must list every "
            "combination of its levels; give empty cells explicitly with a count of 0."
        )
    return array


def _check_margin_values(margin: pd.DataFrame, value: str, name: str) -> None:
    if value not in margin.columns:
        raise RakingError(
            f"{name}: no column {value!r} with the counts "
            f"(columns: {format_values(margin.columns)}). "
            f"Name the count column with value={value!r} or rename it."
        )
    counts = pd.to_numeric(margin[value], errors="coerce")
    bad = margin.loc[counts.isna() | ~np.isfinite(counts.fillna(0)), value]
    if len(bad):
        raise RakingError(
            f"{name}: column {value!r} holds non-numeric or non-finite counts: "
            f"{format_values(bad.tolist())}. Counts must be finite numbers."
        )
    if (counts < 0).any():
        raise RakingError(
            f"{name}: column {value!r} holds negative counts: "
            f"{format_values(counts[counts < 0].tolist())}. Counts must be >= 0."
        )


def rake(
    margins: Sequence[pd.DataFrame],
    *,
    value: str = "population",
    seed: pd.DataFrame | None = None,
    tol: float = 1e-10,
    max_iter: int = 10_000,
    rtol_totals: float = 1e-6,
) -> pd.DataFrame:
    """Build the joint table that matches every margin, by iterative proportional fitting.

    Parameters
    ----------
    margins
        Marginal tables: each has one or more dimension columns (e.g. ``region``,
        ``sex``) and the count column ``value``. Every margin must list every
        combination of its levels.
    value
        Name of the count column, in the margins and in the result.
    seed
        Optional starting joint table (all dimension columns and ``value``); cells
        that are zero in the seed stay zero. Defaults to a table of ones.
    tol
        Stop when every margin cell is matched to this relative error.
    max_iter
        Give up (with a :class:`~opinionmap.errors.RakingError`) after this many sweeps.
    rtol_totals
        Relative tolerance for margins to agree on their grand totals and on every
        sub-margin they share (e.g. region totals in a region x sex table and in a
        region x ethnicity table).

    Returns
    -------
    pandas.DataFrame
        One row per cell of the joint table, dimension columns (categorical, levels
        in order of first appearance) then ``value``. ``result.attrs["raking"]`` is a
        :class:`RakingReport`.

    Raises
    ------
    RakingError
        When margins disagree on their totals or shared sub-margins, name unknown
        columns, hold negative or non-numeric counts, or IPF does not converge.

    Examples
    --------
    >>> import pandas as pd
    >>> by_sex = pd.DataFrame({"sex": ["f", "m"], "population": [60.0, 40.0]})
    >>> by_age = pd.DataFrame({"age": ["young", "old"], "population": [30.0, 70.0]})
    >>> joint = rake([by_sex, by_age])
    >>> joint["population"].round(6).tolist()
    [18.0, 42.0, 12.0, 28.0]
    """
    if len(margins) == 0:
        raise RakingError("rake() needs at least one margin table.")
    # a margin read from a file (read_margin) is named by its file in messages
    names = [str(m.attrs.get("source", f"margin {i + 1}")) for i, m in enumerate(margins)]
    margin_dims: list[list[str]] = []
    for margin, name in zip(margins, names, strict=True):
        _check_margin_values(margin, value, name)
        dims = [c for c in margin.columns if c != value]
        if not dims:
            raise RakingError(
                f"{name}: has only the count column {value!r}; add dimension columns."
            )
        margin_dims.append(dims)
    all_dims = list(dict.fromkeys(d for dims in margin_dims for d in dims))
    levels = {d: _levels_in_order(margins, d) for d in all_dims}

    _check_shared_levels(margins, names, margin_dims, levels)
    arrays = [
        _margin_array(m, dims, levels, value, name)
        for m, dims, name in zip(margins, margin_dims, names, strict=True)
    ]
    _check_consistency(arrays, margin_dims, levels, names, rtol_totals)

    shape = tuple(len(levels[d]) for d in all_dims)
    if seed is None:
        table = np.ones(shape)
    else:
        missing = [c for c in [*all_dims, value] if c not in seed.columns]
        if missing:
            raise RakingError(f"seed: missing columns {format_values(missing)}.")
        _check_margin_values(seed, value, "seed")
        table = _margin_array(seed, all_dims, levels, value, "seed")

    axes = [tuple(all_dims.index(d) for d in dims) for dims in margin_dims]
    table, iteration, error = _fit(table, arrays, axes, tol, max_iter)
    index = pd.MultiIndex.from_product([levels[d] for d in all_dims], names=all_dims)
    result = index.to_frame(index=False)
    for d in all_dims:
        result[d] = pd.Categorical(result[d], categories=levels[d])
    result[value] = table.reshape(-1)
    result.attrs["raking"] = RakingReport(iteration, float(error), tol)
    return result


def _check_shared_levels(
    margins: Sequence[pd.DataFrame],
    names: list[str],
    margin_dims: list[list[str]],
    levels: dict[str, list[object]],
) -> None:
    """Every margin sharing a dimension must know the same levels of it."""
    for d, known in levels.items():
        for margin, name, dims in zip(margins, names, margin_dims, strict=True):
            if d in dims:
                own = set(pd.unique(margin[d]))
                absent = [lv for lv in known if lv not in own]
                if absent:
                    raise RakingError(
                        f"{name}: dimension {d!r} lacks levels {format_values(absent)} that other "
                        "margins have. Give those levels (with 0 if empty) or relabel them "
                        "consistently."
                    )


def _fit(
    table: np.ndarray,
    arrays: list[np.ndarray],
    axes: list[tuple[int, ...]],
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float]:
    """Iterative proportional fitting: the raked table, the sweeps it took, its worst error."""
    error = np.inf
    for iteration in range(1, max_iter + 1):
        for target, own_axes in zip(arrays, axes, strict=True):
            other = tuple(i for i in range(table.ndim) if i not in own_axes)
            current = table.sum(axis=other)
            current = _transpose_to(current, sorted(own_axes), own_axes)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(current > 0, target / current, 0.0)
            table = table * _expand(factor, own_axes, table.ndim)
        error = _max_relative_error(table, arrays, axes)
        if error <= tol:
            return table, iteration, float(error)
    raise RakingError(
        f"raking did not converge in {max_iter} sweeps: the worst margin cell is off by "
        f"{error:.3g} (relative). The seed may have zeros where a margin needs counts, or "
        "the margins may be incompatible; check them or raise max_iter."
    )


def _transpose_to(array: np.ndarray, from_axes: list[int], to_axes: tuple[int, ...]) -> np.ndarray:
    """Reorder an array summed over the other axes (which keeps sorted axis order)."""
    return np.transpose(array, [from_axes.index(a) for a in to_axes])


def _expand(factor: np.ndarray, own_axes: tuple[int, ...], ndim: int) -> np.ndarray:
    """Broadcast a margin-shaped array over the joint table's axes."""
    order = sorted(own_axes)
    aligned = np.transpose(factor, [own_axes.index(a) for a in order])
    shape = [1] * ndim
    for a, size in zip(order, aligned.shape, strict=True):
        shape[a] = size
    return aligned.reshape(shape)


def _max_relative_error(
    table: np.ndarray, arrays: list[np.ndarray], axes: list[tuple[int, ...]]
) -> float:
    worst = 0.0
    for target, own_axes in zip(arrays, axes, strict=True):
        other = tuple(i for i in range(table.ndim) if i not in own_axes)
        current = _transpose_to(table.sum(axis=other), sorted(own_axes), own_axes)
        scale = np.maximum(np.abs(target), 1e-300)
        diff = np.abs(current - target)
        rel = np.where(target > 0, diff / scale, diff > 0)
        worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def _check_consistency(
    arrays: list[np.ndarray],
    margin_dims: list[list[str]],
    levels: dict[str, list[object]],
    names: list[str],
    rtol: float,
) -> None:
    """Margins must agree on their grand totals and on every sub-margin they share."""
    with np.errstate(over="ignore"):
        totals = [float(a.sum()) for a in arrays]
    for total, name in zip(totals, names, strict=True):
        if not 0 < total < np.inf:
            raise RakingError(
                f"{name}: the counts sum to {total:g}; a margin needs a finite, positive total."
            )
    reference = totals[0]
    for total, name in zip(totals[1:], names[1:], strict=True):
        if abs(total - reference) > rtol * max(abs(reference), 1e-300):
            raise RakingError(
                f"margins disagree on their totals: {names[0]} sums to {reference:,.6g} but "
                f"{name} sums to {total:,.6g} (relative difference "
                f"{abs(total - reference) / reference:.3g}, tolerance {rtol:g}). Margins of one "
                "population must have the same total: rescale the shares by the same base."
            )
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            common = [d for d in margin_dims[i] if d in margin_dims[j]]
            if not common:
                continue
            a = _sum_to(arrays[i], margin_dims[i], common)
            b = _sum_to(arrays[j], margin_dims[j], common)
            bad = np.abs(a - b) > rtol * np.maximum(np.abs(a), np.abs(b))
            if bad.any():
                cells = [
                    {
                        **{d: levels[d][k] for d, k in zip(common, idx, strict=True)},
                        names[i]: float(a[idx]),
                        names[j]: float(b[idx]),
                    }
                    for idx in zip(*np.nonzero(bad), strict=True)
                ]
                raise RakingError(
                    f"{names[i]} and {names[j]} disagree on their shared margin over "
                    f"{format_values(common)}: {format_values(cells, limit=5)}. Margins sharing "
                    "a dimension must give it the same totals (tolerance "
                    f"{rtol:g}, relative); compute shares from one base table."
                )


def _sum_to(array: np.ndarray, dims: list[str], keep: list[str]) -> np.ndarray:
    other = tuple(i for i, d in enumerate(dims) if d not in keep)
    summed = array.sum(axis=other)
    kept = [d for d in dims if d in keep]
    return np.transpose(summed, [kept.index(d) for d in keep])
