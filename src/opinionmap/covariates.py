"""Area-level covariates: a table of predictors by area, joined onto survey and frame.

MRP models usually carry a predictor measured for each area rather than for
each respondent (a region's urban share, its share of ethnic Russians, its
last election result): it lets the model tell apart areas with few
respondents by what is known about them. Such a predictor lives in its own
small table, one row per area, declared in a spec::

    formula = "presence_russia ~ 1 + sex + russian_share + (1 | region)"
    [covariates]
    data = "../data/kazakhstan/region_covariates_2020.csv"
    by = "region"                  # the area column(s) shared with survey and frame
    columns = ["russian_share"]    # optional: default, every table column the formula uses

The table is joined onto the survey before fitting, stored inside the fit (a
few rows of JSON), and joined onto a poststratification frame from that stored
copy, so survey and frame always see the same values and a saved fit needs no
other file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opinionmap.errors import (
    OpinionmapError,
    check_keys,
    did_you_mean,
    format_values,
    near_misses,
)

__all__ = ["AreaCovariates", "CovariateError", "attach_covariates", "read_covariates"]

_KEYS = ("data", "by", "columns")


class CovariateError(OpinionmapError):
    """An area-covariate table is malformed or does not cover the areas it is joined to."""


@dataclass(frozen=True)
class AreaCovariates:
    """Where a spec's area-level predictors come from (the ``[covariates]`` table).

    Parameters
    ----------
    data
        CSV or Parquet file with one row per area.
    by
        The area column(s), present in the table, the survey and the frame.
    columns
        The predictor columns to take from the table; empty (default) takes
        every table column that the formula uses.
    """

    data: Path
    by: tuple[str, ...]
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        by = (self.by,) if isinstance(self.by, str) else tuple(str(b) for b in self.by)
        if not by:
            raise CovariateError("[covariates] by must name the area column(s), e.g. 'region'.")
        object.__setattr__(self, "by", by)
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "data", Path(self.data))
        both = sorted(set(self.by) & set(self.columns))
        if both:
            raise CovariateError(
                f"[covariates] {format_values(both)} listed both in by and in columns."
            )

    def to_dict(self) -> dict[str, Any]:
        """TOML-ready dict (the ``[covariates]`` table)."""
        out: dict[str, Any] = {"data": str(self.data), "by": list(self.by)}
        if self.columns:
            out["columns"] = list(self.columns)
        return out

    @classmethod
    def from_dict(cls, raw: object, where: str, base: Path | None = None) -> AreaCovariates:
        """Parse a ``[covariates]`` table; a relative ``data`` is resolved against ``base``."""
        if not isinstance(raw, Mapping):
            raise CovariateError(f"{where}: [covariates] must be a table with data and by.")
        check_keys(raw, _KEYS, where=where, context="in [covariates]", error=CovariateError)
        for key in ("data", "by"):
            if key not in raw:
                raise CovariateError(f"{where}: [covariates] needs {key!r}.")
        if not isinstance(raw["data"], str):
            raise CovariateError(f"{where}: [covariates] data must be a path string.")
        by = raw["by"]
        if isinstance(by, str):
            by = [by]
        columns = raw.get("columns", [])
        for key, value in (("by", by), ("columns", columns)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CovariateError(
                    f"{where}: [covariates] {key} must be a column name or a list of them."
                )
        path = Path(raw["data"])
        if base is not None and not path.is_absolute():
            path = (base / path).resolve()
        try:
            return cls(path, tuple(by), tuple(columns))
        except CovariateError as exc:
            raise CovariateError(f"{where}: {exc}") from exc


def read_covariates(
    covariates: AreaCovariates, variables: Sequence[str], where: str = "<spec>"
) -> pd.DataFrame:
    """Read and check the covariate table; keep the ``by`` and predictor columns.

    Raises
    ------
    CovariateError
        The file is missing or unreadable, lacks a ``by`` or listed column,
        repeats an area, has empty predictor values, or contributes no column
        the formula uses.
    """
    path = covariates.data
    if not path.is_file():
        raise CovariateError(
            f"{where}: [covariates] data file {str(path)!r} does not exist; fix the path (a "
            "relative path is read from the spec file's folder)."
        )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise CovariateError(f"{path}: cannot read the covariate table: {exc}") from exc
    absent = [c for c in (*covariates.by, *covariates.columns) if c not in table.columns]
    if absent:
        raise CovariateError(
            f"{path}: covariate table lacks column(s) {format_values(absent)} named in "
            f"[covariates] (its columns: {format_values(list(table.columns), limit=40)})."
        )
    columns = covariates.columns or tuple(
        c for c in table.columns if c in variables and c not in covariates.by
    )
    if not columns:
        raise CovariateError(
            f"{path}: the formula uses none of the covariate table's columns "
            f"({format_values([c for c in table.columns if c not in covariates.by], limit=40)}); "
            "add one to the formula or remove [covariates]."
        )
    return _checked(table[[*covariates.by, *columns]], covariates.by, str(path))


def attach_covariates(
    df: pd.DataFrame,
    table: pd.DataFrame,
    by: Sequence[str],
    *,
    where: str,
    source: str = "the covariate table",
) -> pd.DataFrame:
    """``df`` with the table's predictor columns joined on ``by`` (index and order kept).

    A column that ``df`` already has must agree with the table (to 1e-9) for
    every area, so a frame that carries its own copy is accepted.

    Raises
    ------
    CovariateError
        ``df`` lacks a ``by`` column, has areas the table does not list, or has
        a predictor column that disagrees with the table.
    """
    by = list(by)
    absent = [b for b in by if b not in df.columns]
    if absent:
        raise CovariateError(
            f"{where}: area column(s) {format_values(absent)} needed to join {source} are "
            f"missing (columns: {format_values(list(df.columns), limit=40)})."
        )
    columns = [c for c in table.columns if c not in by]
    keys = df[by].astype(str)
    lookup = table.astype({b: str for b in by}).set_index(by)[columns]
    joined = keys.join(lookup, on=by)
    # the table has a value for every area it lists (read_covariates checks), so an
    # empty joined value means an area the table does not list
    unknown = joined[columns].isna().any(axis=1)
    if unknown.any():
        missing = sorted({":".join(row) for row in keys[unknown].itertuples(index=False)})
        listed = [
            ":".join(row) for row in lookup.index.to_frame().astype(str).itertuples(index=False)
        ]
        close = near_misses(missing, listed)
        hint = f"; labels are compared exactly: {did_you_mean(close)}" if close else ""
        raise CovariateError(
            f"{where}: area(s) {format_values(missing)} of {format_values(by)} are not in "
            f"{source}; add their rows to it{hint}."
        )
    out = df.copy()
    for column in columns:
        values = joined[column]
        if column in df.columns:
            mine = pd.to_numeric(df[column], errors="coerce")
            theirs = pd.to_numeric(values, errors="coerce")
            if mine.notna().all() and theirs.notna().all():
                differs = ~np.isclose(mine, theirs, rtol=0, atol=1e-9)
            else:
                differs = df[column].astype(str) != values.astype(str)
            if differs.any():
                area = ":".join(keys[differs].iloc[0])
                raise CovariateError(
                    f"{where}: column {column!r} differs from {source} (e.g. area {area!r}: "
                    f"{df[column][differs].iloc[0]!r} vs {values[differs].iloc[0]!r}); drop the "
                    "column so the table's values are used."
                )
            continue
        out[column] = values.to_numpy()
    return out


def table_to_json(table: pd.DataFrame, by: Sequence[str]) -> str:
    """JSON for a fit's attributes: ``{"by": [...], "columns": {...}}``."""
    return json.dumps(
        {"by": list(by), "columns": {c: table[c].tolist() for c in table.columns}},
        default=_json_default,
    )


def table_from_json(text: str) -> pd.DataFrame:
    """The table stored by :func:`table_to_json`."""
    return pd.DataFrame(json.loads(text)["columns"])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _checked(table: pd.DataFrame, by: tuple[str, ...], where: str) -> pd.DataFrame:
    keys = table[list(by)].astype(str)
    repeated = keys[keys.duplicated(keep=False)]
    if len(repeated):
        areas = sorted({":".join(row) for row in repeated.itertuples(index=False)})
        raise CovariateError(
            f"{where}: area(s) {format_values(areas)} appear more than once in the covariate "
            "table; keep one row per area."
        )
    for column in table.columns:
        if column in by:
            continue
        empty = table[column].isna()
        if empty.any():
            areas = [":".join(row) for row in keys[empty].itertuples(index=False)]
            raise CovariateError(
                f"{where}: covariate {column!r} is empty for area(s) {format_values(areas)}; "
                "fill them (every area the survey or frame has needs a value)."
            )
    out = table.reset_index(drop=True).copy()
    for b in by:
        out[b] = out[b].astype(str)
    return out
