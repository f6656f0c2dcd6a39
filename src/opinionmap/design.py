"""Designs: respondents aggregated into covariate cells x category counts.

Respondents who share every covariate value the model uses form one cell; the
likelihood is evaluated on cell x category counts, which gives exactly the
respondent-level posterior at a fraction of the cost. A :class:`Design` also
keeps each respondent's cell and response, so the pointwise log-likelihood can
be stored per respondent (for LOO), and it can code new data (a
poststratification frame) with the training levels, failing loudly on levels it
never saw unless a policy says otherwise.

Coding rules
------------
- Categorical fixed effects use treatment coding: the first level (in the
  codebook's or the categorical's order) is the reference, one column per other
  level, named like ``sex[female]``.
- Numeric columns enter as they are; an interaction ``a:b`` is the product of
  its components' codings.
- A varying intercept ``(1 | g)`` has one effect per level of ``g``, including
  levels declared in the codebook that no respondent has (they are estimated
  from the hierarchical prior and can be poststratified). ``(1 | a:b)`` has one
  effect per combination, labelled ``"a_level:b_level"``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from opinionmap.covariates import attach_covariates, read_covariates, table_to_json
from opinionmap.errors import OpinionmapError, format_values
from opinionmap.spec import ModelSpec

__all__ = ["Design", "DesignError", "GroupIndex", "NewData", "build_design"]

NewLevels = Literal["error", "sample"]


class DesignError(OpinionmapError):
    """The data cannot be coded for the model (unknown columns, levels, one-level factors)."""


@dataclass(frozen=True)
class VariableCoding:
    """How one predictor column is coded: numeric, or categorical with its levels."""

    name: str
    kind: Literal["numeric", "categorical"]
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupIndex:
    """A varying-intercept term's levels and the level of each cell (``-1`` = new level)."""

    name: str
    factors: tuple[str, ...]
    levels: tuple[str, ...]
    index: np.ndarray = field(repr=False)

    @property
    def dim(self) -> str:
        """The dimension name of this term's effects (the term itself, e.g. ``region``)."""
        return self.name


@dataclass(frozen=True)
class NewData:
    """New rows (e.g. frame cells) coded with a design's training levels."""

    X: np.ndarray
    groups: tuple[GroupIndex, ...]


@dataclass(frozen=True)
class Design:
    """A model's data: cells, their fixed-effect matrix, group indices and counts."""

    spec: ModelSpec
    categories: tuple[str, ...]
    coef_names: tuple[str, ...]
    X: np.ndarray = field(repr=False)
    x_sd: np.ndarray = field(repr=False)
    groups: tuple[GroupIndex, ...]
    counts: np.ndarray = field(repr=False)
    codings: tuple[VariableCoding, ...]
    cells: pd.DataFrame = field(repr=False)
    respondent_cell: np.ndarray = field(repr=False)
    respondent_response: np.ndarray = field(repr=False)
    respondent_id: np.ndarray = field(repr=False)
    data_hash: str = ""
    # the spec's area-covariate table (by columns + predictors), as joined onto the data
    covariates: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n_cells(self) -> int:
        """Number of distinct covariate cells."""
        return int(self.counts.shape[0])

    @property
    def n_respondents(self) -> int:
        """Number of respondents used (after dropping missing codes)."""
        return int(self.respondent_cell.shape[0])

    @property
    def has_intercept(self) -> bool:
        """Whether the linear predictor has an intercept (never for ordinal)."""
        return self.spec.intercept and self.spec.family != "ordinal"

    def coding(self, name: str) -> VariableCoding:
        """The coding of one predictor column."""
        for c in self.codings:
            if c.name == name:
                return c
        raise KeyError(name)

    def respondents_per_level(self, group: GroupIndex) -> np.ndarray:
        """Respondents in each level of a grouping term."""
        n_cell = self.counts.sum(axis=1)
        return np.bincount(group.index, weights=n_cell, minlength=len(group.levels))

    def evaluate(self, new: pd.DataFrame, *, new_levels: NewLevels = "error") -> NewData:
        """Code new rows (a frame) with the training levels.

        Parameters
        ----------
        new
            Rows with every predictor column the formula uses.
        new_levels
            ``"error"`` (default): a level of a grouping factor that the model does
            not know is an error listing them. ``"sample"``: such levels get index
            ``-1``, and their effects are drawn from the fitted hierarchical
            distribution downstream.
        """
        return _code(self.spec, new, self.codings, self.coef_names, new_levels, "new data")

    def with_covariates(self, frame: pd.DataFrame, where: str = "frame") -> pd.DataFrame:
        """``frame`` with the model's area covariates joined on (unchanged if it has none)."""
        if self.covariates is None or self.spec.covariates is None:
            return frame
        return attach_covariates(
            frame,
            self.covariates,
            self.spec.covariates.by,
            where=where,
            source="the model's covariate table",
        )

    def to_attrs(self) -> dict[str, str]:
        """JSON attributes from which a fit rebuilds the design."""
        attrs = {
            "opinionmap_codings": json.dumps(
                [{"name": c.name, "kind": c.kind, "levels": list(c.levels)} for c in self.codings]
            ),
            "opinionmap_coef_names": json.dumps(list(self.coef_names)),
            "opinionmap_categories": json.dumps(list(self.categories)),
        }
        if self.covariates is not None and self.spec.covariates is not None:
            attrs["opinionmap_covariates"] = table_to_json(self.covariates, self.spec.covariates.by)
        return attrs


def build_design(
    spec: ModelSpec,
    data: Any,
    *,
    aggregate: bool = True,
    covariates: pd.DataFrame | None = None,
) -> Design:
    """Aggregate survey rows into cells for ``spec``.

    Parameters
    ----------
    spec
        The model.
    data
        A :class:`opinionmap.Survey` (its codebook levels are used, so declared
        areas without respondents still get an effect) or a DataFrame.
    aggregate
        ``False`` makes every respondent its own cell (the respondent-level
        model; used in tests to show that aggregation changes nothing).
    covariates
        The spec's area-covariate table as already read (a saved fit's copy);
        ``None`` reads the file the spec's ``[covariates]`` names.

    Raises
    ------
    DesignError
        Unknown columns, outcome values outside the spec's levels and missing
        codes, an outcome with fewer than two observed levels, a predictor or
        grouping factor with one level, empty predictor cells.
    """
    df, source = _as_frame(data)
    where = source or "<data>"
    if spec.covariates is not None:
        if covariates is None:
            covariates = read_covariates(
                spec.covariates, spec.variables, str(spec.source or "<spec>")
            )
        df = attach_covariates(
            df, covariates, spec.covariates.by, where=where, source=str(spec.covariates.data)
        )
    else:
        covariates = None
    needed = [spec.outcome, *spec.variables]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise DesignError(
            f"{where}: the formula {spec.formula!r} names column(s) {format_values(absent)} that "
            f"the data lacks. Columns present: {format_values(list(df.columns), limit=40)}."
        )
    outcome = df[spec.outcome]
    if outcome.isna().any():
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} is empty in {int(outcome.isna().sum())} rows; code "
            "them (e.g. 'dont_know') and list the code in the spec's [outcome] missing."
        )
    text = outcome.astype(str)
    keep = ~text.isin(spec.missing).to_numpy()
    unknown = sorted(_present(text[keep]) - set(spec.levels))
    if unknown:
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} has values {format_values(unknown)} that are "
            f"neither [outcome] levels {format_values(spec.levels)} nor missing codes "
            f"{format_values(spec.missing)}. Add them to levels (to model them) or to missing "
            "(to drop them)."
        )
    df = df.loc[keep]
    y = pd.Categorical(text[keep], categories=list(spec.levels)).codes.astype(np.int64)
    observed = np.bincount(y, minlength=len(spec.levels))
    if (observed > 0).sum() < 2:
        only = [spec.levels[i] for i in np.nonzero(observed)[0]]
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} has only one observed level "
            f"({format_values(only)}) after dropping {format_values(spec.missing)}; a model needs "
            "at least two."
        )
    never = [lv for lv, n in zip(spec.levels, observed, strict=True) if n == 0]
    if never:
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} level(s) {format_values(never)} are in the spec's "
            "levels but no respondent gave them, so their effects cannot be estimated. Remove "
            "them from [outcome] levels (or merge them into a neighbouring level)."
        )

    codings = tuple(_infer_coding(df[name], name, where, spec) for name in spec.variables)
    coef_names = _coef_names(spec, codings)
    coded = _code(spec, df, codings, coef_names, "error", where)

    # cells: unique rows of (X, group indices)
    keys = cell_keys(coded.X, coded.groups)
    if aggregate:
        n_unique, inverse = _unique_rows(keys)
        first = np.zeros(n_unique, dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    else:
        inverse = np.arange(len(df))
        first = inverse
    n_cells = int(inverse.max()) + 1 if len(inverse) else 0
    counts = np.zeros((n_cells, len(spec.levels)), dtype=np.int64)
    np.add.at(counts, (inverse, y), 1)
    X = coded.X[first]
    groups = tuple(
        GroupIndex(g.name, g.factors, g.levels, g.index[first].astype(np.int64))
        for g in coded.groups
    )
    cells = df.iloc[first][list(spec.variables)].reset_index(drop=True)
    for c in codings:
        if c.kind == "categorical":
            cells[c.name] = pd.Categorical(cells[c.name].astype(str), categories=list(c.levels))
    for g in groups:
        if len(g.levels) < 2:
            raise DesignError(
                f"{where}: grouping factor {g.name!r} has one level ({format_values(g.levels)}); "
                "a varying intercept needs at least two. Drop the term or use more levels."
            )
    x_sd = coded.X.std(axis=0) if coded.X.shape[1] else np.zeros(0)
    ids = _respondent_ids(data, df)
    return Design(
        spec=spec,
        categories=spec.levels,
        coef_names=coef_names,
        X=X,
        x_sd=x_sd,
        groups=groups,
        counts=counts,
        codings=codings,
        cells=cells,
        respondent_cell=inverse.astype(np.int64),
        respondent_response=y,
        respondent_id=ids,
        data_hash=data_hash(spec, keys, y),
        covariates=covariates,
    )


def _unique_rows(keys: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of distinct rows and each row's index among them, rows in sorted order.

    The same as ``np.unique(keys, axis=0, return_inverse=True)``, which sorts the
    rows as tuples (9 s for a million respondents); here each column is ranked
    through a hash table and the ranks are combined into one integer per row, whose
    one-dimensional sort is fast and keeps the same (lexicographic) order.
    """
    keys = keys + 0.0  # -0.0 and 0.0 are one value
    combined = np.zeros(keys.shape[0], dtype=np.int64)
    span = 1
    for j in range(keys.shape[1]):
        codes, distinct = pd.factorize(keys[:, j])
        span *= max(len(distinct), 1)
        if span >= 2**62:  # too many combinations for one integer: sort the rows
            unique, inverse = np.unique(keys, axis=0, return_inverse=True)
            return len(unique), inverse.reshape(-1)
        rank = np.empty(len(distinct), dtype=np.int64)
        rank[np.argsort(distinct, kind="stable")] = np.arange(len(distinct))
        combined = combined * len(distinct) + rank[codes]
    unique, inverse = np.unique(combined, return_inverse=True)
    return len(unique), inverse.reshape(-1)


def cell_keys(X: np.ndarray, groups: tuple[GroupIndex, ...]) -> np.ndarray:
    """One row per cell (or respondent): the fixed-effect columns and group indices."""
    if not groups and not X.shape[1]:
        return np.zeros((X.shape[0], 1))
    return np.column_stack([X] + [g.index[:, None].astype(float) for g in groups])


def data_hash(spec: ModelSpec, keys: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of what the model sees: respondent covariate keys and responses."""
    digest = hashlib.sha256()
    digest.update(json.dumps([spec.outcome, *spec.variables]).encode())
    # + 0.0 turns -0.0 into 0.0, which np.unique treats as equal anyway
    digest.update(np.ascontiguousarray(keys + 0.0).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _as_frame(data: Any) -> tuple[pd.DataFrame, str | None]:
    if isinstance(data, pd.DataFrame):
        return data, None
    frame = getattr(data, "data", None)
    if isinstance(frame, pd.DataFrame):
        source = getattr(data, "source", None)
        return frame, str(source) if source is not None else None
    raise DesignError(
        f"expected a Survey or a pandas DataFrame, got {type(data).__name__}. Read files with "
        "opinionmap.read_survey()."
    )


def _respondent_ids(data: Any, df: pd.DataFrame) -> np.ndarray:
    id_col = getattr(data, "id", None)
    if isinstance(id_col, str) and id_col in df.columns:
        return df[id_col].astype(str).to_numpy()
    return df.index.astype(str).to_numpy()


def _infer_coding(column: pd.Series, name: str, where: str, spec: ModelSpec) -> VariableCoding:
    if column.isna().any():
        rows = column.index[column.isna()].tolist()
        raise DesignError(
            f"{where}: predictor {name!r} is empty in rows {format_values(rows)}; fill or drop "
            "those rows before fitting."
        )
    is_group = any(name in g.factors for g in spec.group_terms)
    if isinstance(column.dtype, pd.CategoricalDtype):
        levels = tuple(str(v) for v in column.cat.categories)
        if not is_group:
            # a fixed effect of a level no respondent has is not estimable (and an
            # unobserved reference level would make the dummies collinear with the
            # intercept): keep the observed levels, in the declared order
            present = _present(column)
            levels = tuple(lv for lv in levels if lv in present)
    elif pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
        column.dtype
    ):
        if not is_group:
            return VariableCoding(name, "numeric")
        levels = tuple(str(v) for v in sorted(pd.unique(column)))
    else:
        levels = tuple(sorted(_present(column)))
    return VariableCoding(name, "categorical", levels)


def _present(values: pd.Series) -> set[str]:
    """The distinct values of a column, as text (one pass over the distinct values only)."""
    return {str(v) for v in pd.unique(values)}


def _fixed_levels(coding: VariableCoding, values: pd.Series) -> tuple[str, ...]:
    """Levels of a categorical fixed effect that the data has (unobserved ones dropped)."""
    present = _present(values)
    return tuple(lv for lv in coding.levels if lv in present)


def _coef_names(spec: ModelSpec, codings: tuple[VariableCoding, ...]) -> tuple[str, ...]:
    by_name = {c.name: c for c in codings}
    names: list[str] = []
    for term in spec.fixed_terms:
        parts: list[list[str]] = []
        for v in term.variables:
            c = by_name[v]
            if c.kind == "numeric":
                parts.append([v])
            else:
                parts.append([f"{v}[{lv}]" for lv in c.levels[1:]])
        combos: list[str] = [""]
        for options in parts:
            combos = [f"{a}:{b}" if a else b for a in combos for b in options]
        names.extend(combos)
    return tuple(names)


def _code(
    spec: ModelSpec,
    df: pd.DataFrame,
    codings: tuple[VariableCoding, ...],
    coef_names: tuple[str, ...],
    new_levels: NewLevels,
    where: str,
) -> NewData:
    by_name = {c.name: c for c in codings}
    absent = [c.name for c in codings if c.name not in df.columns]
    if absent:
        raise DesignError(
            f"{where}: column(s) {format_values(absent)} used by the model are missing "
            f"(columns: {format_values(list(df.columns), limit=40)})."
        )
    n = len(df)
    columns: dict[str, np.ndarray] = {}
    # per-variable codings: numeric values, or one dummy per non-reference level
    for c in codings:
        if not any(c.name in t.variables for t in spec.fixed_terms):
            continue
        values = df[c.name]
        if c.kind == "numeric":
            numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(numeric).all():
                raise DesignError(
                    f"{where}: numeric predictor {c.name!r} has missing or non-numeric values."
                )
            columns[c.name] = numeric
            continue
        codes = level_codes(values, c.levels)
        if (codes < 0).any():
            unknown = sorted(_present(values[codes < 0]))
            raise DesignError(
                f"{where}: predictor {c.name!r} has level(s) {format_values(unknown)} that the "
                f"model was not fitted with (its levels: {format_values(c.levels)}). Recode them "
                "to known levels."
            )
        for i, lv in enumerate(c.levels[1:], start=1):
            columns[f"{c.name}[{lv}]"] = (codes == i).astype(float)
    X = np.zeros((n, len(coef_names)))
    for j, name in enumerate(coef_names):
        product = np.ones(n)
        for part in name.split(":"):
            product = product * columns[part]
        X[:, j] = product
    # a categorical fixed effect must vary in the training data
    if where != "new data":
        for term in spec.fixed_terms:
            for v in term.variables:
                c = by_name[v]
                if c.kind == "categorical" and len(_fixed_levels(c, df[v])) < 2:
                    raise DesignError(
                        f"{where}: predictor {v!r} has one observed level "
                        f"({format_values(_fixed_levels(c, df[v]))}); a fixed effect needs two. "
                        "Drop it from the formula."
                    )
    groups = []
    for group_term in spec.group_terms:
        level_lists = [by_name[f].levels for f in group_term.factors]
        labels = [":".join(combo) for combo in _product(level_lists)]
        index = np.zeros(n, dtype=np.int64)
        for factor, levels in zip(group_term.factors, level_lists, strict=True):
            codes = level_codes(df[factor], levels)
            index = np.where((index < 0) | (codes < 0), -1, index * len(levels) + codes)
        if (index < 0).any() and new_levels == "error":
            missing = sorted(set(group_keys(df.loc[index < 0], group_term.factors)))
            raise DesignError(
                f"{where}: grouping factor {group_term.name!r} has level(s) "
                f"{format_values(missing)} that the model was not fitted with "
                f"(it knows {format_values(labels)}). Recode them, or use "
                "new_levels='sample' to draw their effects from the fitted distribution."
            )
        groups.append(GroupIndex(group_term.name, group_term.factors, tuple(labels), index))
    return NewData(X, tuple(groups))


def level_codes(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Position of each value's label in ``levels`` (``-1`` for labels not there).

    Labels are compared as text (``str`` of the value, as when fitting); the work is
    done once per distinct value, so a million-row frame costs a lookup per row.
    """
    known = pd.Index(list(levels))
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        distinct = values.cat.categories
    else:
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
    lookup = known.get_indexer(pd.Index(distinct).astype(str))
    return np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1).astype(np.int64)


def group_keys(df: pd.DataFrame, factors: tuple[str, ...]) -> list[str]:
    """Each row's label of a grouping term: its factor levels joined by ``":"``."""
    keys = df[factors[0]].astype(str)
    for factor in factors[1:]:
        keys = keys.str.cat(df[factor].astype(str), sep=":")
    return [str(k) for k in keys]


def _product(lists: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for options in lists:
        combos = [(*a, b) for a in combos for b in options]
    return combos
