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
- A varying slope ``(1 + x | g)`` multiplies the fixed-effect columns of ``x`` (as
  coded above): its term records their positions (:attr:`GroupIndex.slopes`).

Names such as ``sex[female]`` and ``"a_level:b_level"`` are labels for people;
the code works from the recorded structure (:class:`Coef`, :class:`VariableCoding`,
:class:`GroupIndex`), so level labels may contain ``:``, ``[``, spaces or any
letters. A design is stored in a fit's ``DataTree`` by :meth:`Design.to_tree` and
read back by :meth:`Design.from_tree`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap.covariates import (
    attach_covariates,
    read_covariates,
    table_from_json,
    table_to_json,
)
from opinionmap.errors import OpinionmapError, did_you_mean, format_values, near_misses
from opinionmap.spec import FixedTerm, GroupTerm, ModelSpec
from opinionmap.structure import Graph, read_adjacency

if TYPE_CHECKING:
    from opinionmap.survey import Survey

__all__ = [
    "HURDLE",
    "NEW_LEVELS",
    "Coef",
    "Design",
    "DesignError",
    "GroupIndex",
    "NewData",
    "NewLevels",
    "SurveyData",
    "VariableCoding",
    "build_design",
    "hurdle_parts",
]

NewLevels = Literal["error", "sample"]
"""What to do with levels of a grouping factor that the model was not fitted with."""
NEW_LEVELS: tuple[NewLevels, ...] = ("error", "sample")
# what a model is fitted to: a validated survey (its codebook gives levels and the area)
# or a plain table
type SurveyData = Survey | pd.DataFrame
# version of the layout Design.to_tree writes; Design.from_tree refuses others
FORMAT = 2
# prefix of the parameters of a hurdle model's non-answer part (hu_Intercept, hu_sigma_region)
HURDLE = "hu_"


class DesignError(OpinionmapError):
    """The data cannot be coded for the model (unknown columns, levels, one-level factors)."""


@dataclass(frozen=True)
class VariableCoding:
    """How one predictor column is coded: numeric, or categorical with its levels."""

    name: str
    kind: Literal["numeric", "categorical"]
    levels: tuple[str, ...] = ()
    # whether the levels' order means something (age bands): random-walk priors need it
    ordered: bool = False


@dataclass(frozen=True)
class Coef:
    """One fixed-effect column: the product of its parts.

    Each part is ``(variable, level)``: a categorical variable's dummy for one
    level, or ``(variable, None)`` for a numeric variable's values.

    Examples
    --------
    >>> c = Coef((("sex", "female"), ("age", None)))
    >>> c.name, c.numeric, c.variables
    ('sex[female]:age', True, ('sex', 'age'))
    """

    parts: tuple[tuple[str, str | None], ...]

    @property
    def name(self) -> str:
        """The column's label, e.g. ``sex[female]:age`` (for display only)."""
        return ":".join(v if lv is None else f"{v}[{lv}]" for v, lv in self.parts)

    @property
    def numeric(self) -> bool:
        """Whether the column involves a numeric variable (so it is not a 0/1 dummy)."""
        return any(lv is None for _, lv in self.parts)

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the column is made of."""
        return tuple(v for v, _ in self.parts)


@dataclass(frozen=True)
class GroupIndex:
    """A grouping term's levels and the level of each cell (``-1`` = new level).

    A term with varying slopes, ``(1 + x | g)``, also records which fixed-effect
    columns have a slope per level (``slopes``, positions in ``X``) and whether it
    has a varying intercept; its coefficients are labelled ``coefs``, e.g.
    ``("Intercept", "x")``.
    """

    name: str
    factors: tuple[str, ...]
    levels: tuple[str, ...]
    index: np.ndarray = field(repr=False)
    slopes: tuple[int, ...] = ()
    coefs: tuple[str, ...] = ()
    intercept: bool = True
    uncorrelated: bool = False

    @property
    def correlated(self) -> bool:
        """Whether the term's coefficients are drawn with an LKJ-correlated covariance.

        A slope term with two or more coefficients, not written with ``||``.
        """
        return bool(self.slopes) and not self.uncorrelated and len(self.coefs) > 1

    @property
    def dim(self) -> str:
        """The dimension name of this term's effects (the term itself, e.g. ``region``)."""
        return self.name

    @property
    def coef_dim(self) -> str:
        """The dimension of a varying-slope term's coefficients, e.g. ``region_coef``."""
        return f"{self.name}_coef"

    def with_index(self, index: np.ndarray) -> GroupIndex:
        """The same term with other rows' levels."""
        return replace(self, index=index)

    def slope_matrix(self, X: np.ndarray) -> np.ndarray:
        """Each row's multipliers of the term's coefficients: 1 (intercept), slope columns."""
        columns = [X[:, list(self.slopes)]]
        if self.intercept:
            columns.insert(0, np.ones((X.shape[0], 1)))
        return np.concatenate(columns, axis=1)


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
    coefs: tuple[Coef, ...]
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
    # the survey's area column (its codebook's area role), when the data said
    area: str | None = None
    # the neighbours of each term with a structured prior ([priors.structure])
    graphs: tuple[Graph, ...] = ()
    # outcome levels modelled as one category, the last (the spec's merge_below)
    merged: tuple[str, ...] = ()

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Labels of the fixed-effect columns, e.g. ``("sex[female]", "age")``."""
        return tuple(c.name for c in self.coefs)

    @property
    def n_cells(self) -> int:
        """Number of distinct covariate cells."""
        return int(self.counts.shape[0])

    @property
    def n_respondents(self) -> int:
        """Number of respondents used (after dropping missing codes)."""
        return int(self.respondent_cell.shape[0])

    @property
    def n_parameters(self) -> int:
        """About how many values one linear predictor's model samples.

        Fixed effects, cutpoints (or intercept), every level's varying effects (twice
        for a BYM2 term, its spatial and unstructured parts) and their SDs; what
        ``adaptation="auto"`` weighs (:data:`~opinionmap.spec.LOW_RANK_MAX_PARAMETERS`).
        """
        n = len(self.coefs) + len(self.categories) - 1
        for g in self.groups:
            per_level = max(1, len(g.coefs))
            graph = self.graph(g.name)
            parts = 2 if graph is not None and graph.kind == "bym2" else 1
            n += parts * per_level * len(g.levels) + per_level
        return n

    @property
    def has_intercept(self) -> bool:
        """Whether the linear predictor has an intercept (never for ordinal)."""
        return self.spec.intercept and self.spec.family != "ordinal"

    def graph(self, term: str) -> Graph | None:
        """The neighbours of a term with a structured prior (``None``: exchangeable)."""
        for g in self.graphs:
            if g.term == term:
                return g
        return None

    def coding(self, name: str) -> VariableCoding:
        """The coding of one predictor column."""
        for c in self.codings:
            if c.name == name:
                return c
        raise KeyError(name)

    def patterns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (cell, answer) pairs of the respondents.

        Respondents in one cell who gave one answer share their pointwise
        log-likelihood, so it is stored once per pair. Returns each pair's cell, its
        answer, its number of respondents, and each respondent's pair.
        """
        k = len(self.categories)
        key = self.respondent_cell * k + self.respondent_response
        unique, respondent_pattern = np.unique(key, return_inverse=True)
        counts = np.bincount(respondent_pattern, minlength=len(unique))
        return unique // k, unique % k, counts, respondent_pattern.reshape(-1)

    def level_index(self, group: GroupIndex, rows: pd.DataFrame) -> np.ndarray:
        """Each row's level of a grouping term, by position (``-1`` for a level not fitted)."""
        level_lists = [self.coding(f).levels for f in group.factors]
        return combined_codes(rows, group.factors, level_lists)

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
        return _code(self.spec, new, self.codings, self.coefs, new_levels, "new data", False)

    @cached_property
    def _hurdle_parts(self) -> tuple[Design, Design]:
        return _split_hurdle(self)

    @property
    def answers(self) -> tuple[str, ...]:
        """The answers the outcome model orders or compares: every category but a hurdle code."""
        return self.categories[:-1] if self.spec.hurdle else self.categories

    @property
    def recode(self) -> dict[str, str]:
        """The outcome levels modelled as the merged category, and its label (or nothing)."""
        return dict.fromkeys(self.merged, self.categories[-1]) if self.merged else {}

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

    def to_tree(self) -> xr.DataTree:
        """The design as ``observed_data`` and ``constant_data`` groups with JSON attributes.

        Everything :meth:`from_tree` needs: the spec, every respondent's cell and
        answer, the cells' coded predictors, and how each column was coded.
        """
        outcome = self.spec.outcome
        responses = np.asarray(self.categories, dtype=object)[self.respondent_response]
        observed = xr.Dataset(
            {
                outcome: ("respondent", responses.astype(str)),
                "counts": (("cell", "response"), self.counts),
            },
            coords={"respondent": self.respondent_id, "response": list(self.categories)},
        )
        constant: dict[str, Any] = {
            "respondent_cell": ("respondent", self.respondent_cell),
            "X": (("cell", "coef"), self.X),
        }
        for g in self.groups:
            constant[f"index_{g.name}"] = ("cell", g.index)
        for c in self.codings:
            values = self.cells[c.name]
            constant[f"cell_{c.name}"] = (
                "cell",
                values.astype(str).to_numpy()
                if c.kind == "categorical"
                else values.to_numpy(dtype=float),
            )
        constant_data = xr.Dataset(
            constant, coords={"respondent": self.respondent_id, "coef": list(self.coef_names)}
        )
        tree = xr.DataTree.from_dict({"observed_data": observed, "constant_data": constant_data})
        tree.attrs.update(self._attrs())
        return tree

    def _attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "opinionmap_format": FORMAT,
            "opinionmap_spec": self.spec.to_json(),
            "opinionmap_spec_hash": self.spec.hash(),
            "opinionmap_data_hash": self.data_hash,
            "opinionmap_codings": json.dumps(
                [
                    {"name": c.name, "kind": c.kind, "levels": list(c.levels)}
                    | ({"ordered": True} if c.ordered else {})
                    for c in self.codings
                ]
            ),
            "opinionmap_coefs": json.dumps([[list(p) for p in c.parts] for c in self.coefs]),
            "opinionmap_coef_names": json.dumps(list(self.coef_names)),
            "opinionmap_categories": json.dumps(list(self.categories)),
            "opinionmap_groups": json.dumps(
                [
                    {"name": g.name, "factors": list(g.factors), "levels": list(g.levels)}
                    | (
                        {
                            "slopes": list(g.slopes),
                            "coefs": list(g.coefs),
                            "intercept": g.intercept,
                            "uncorrelated": g.uncorrelated,
                        }
                        if g.slopes
                        else {}
                    )
                    for g in self.groups
                ]
            ),
            "opinionmap_x_sd": json.dumps([float(v) for v in self.x_sd]),
        }
        if self.area is not None:
            attrs["opinionmap_area"] = self.area
        if self.merged:
            attrs["opinionmap_merged"] = json.dumps(list(self.merged))
        if self.graphs:
            levels = {g.name: g.levels for g in self.groups}
            attrs["opinionmap_graphs"] = json.dumps(
                [g.to_dict(levels[g.term]) for g in self.graphs]
            )
        if self.covariates is not None and self.spec.covariates is not None:
            attrs["opinionmap_covariates"] = table_to_json(self.covariates, self.spec.covariates.by)
        return attrs

    @classmethod
    def from_tree(cls, tree: xr.DataTree) -> Design:
        """The design stored by :meth:`to_tree` (in a saved fit).

        Its ``data_hash`` is recomputed from the stored data, so comparing it with
        the recorded ``opinionmap_data_hash`` attribute tells whether they were edited.

        Raises
        ------
        DesignError
            The tree was written in another layout (an older opinionmap), or lacks
            a group or attribute of this one.
        """
        attrs = tree.attrs
        if attrs.get("opinionmap_format") != FORMAT:
            raise DesignError(
                f"the fit was saved in layout {attrs.get('opinionmap_format', 1)!r} by another "
                f"version of opinionmap; this version reads layout {FORMAT}. Refit the model."
            )
        spec = ModelSpec.from_json(attrs["opinionmap_spec"])
        const = tree["constant_data"].to_dataset()
        observed = tree["observed_data"].to_dataset()
        codings = tuple(
            VariableCoding(c["name"], c["kind"], tuple(c["levels"]), c.get("ordered", False))
            for c in json.loads(attrs["opinionmap_codings"])
        )
        coefs = tuple(
            Coef(tuple((str(v), None if lv is None else str(lv)) for v, lv in parts))
            for parts in json.loads(attrs["opinionmap_coefs"])
        )
        groups = tuple(
            GroupIndex(
                g["name"],
                tuple(g["factors"]),
                tuple(g["levels"]),
                const[f"index_{g['name']}"].values.astype(np.int64),
                tuple(int(j) for j in g.get("slopes", ())),
                tuple(g.get("coefs", ())),
                bool(g.get("intercept", True)),
                bool(g.get("uncorrelated", False)),
            )
            for g in json.loads(attrs["opinionmap_groups"])
        )
        cells = pd.DataFrame(
            {
                c.name: (
                    pd.Categorical(
                        const[f"cell_{c.name}"].values.astype(str), categories=list(c.levels)
                    )
                    if c.kind == "categorical"
                    else const[f"cell_{c.name}"].values.astype(float)
                )
                for c in codings
            }
        )
        categories = tuple(json.loads(attrs["opinionmap_categories"]))
        responses = observed[spec.outcome].values.astype(str)
        y = pd.Categorical(responses, categories=list(categories)).codes.astype(np.int64)
        respondent_cell = const["respondent_cell"].values.astype(np.int64)
        X = const["X"].values.astype(float)
        levels = {g.name: g.levels for g in groups}
        graphs = tuple(
            Graph.from_dict(raw, levels[raw["term"]])
            for raw in json.loads(attrs.get("opinionmap_graphs", "[]"))
        )
        return cls(
            spec=spec,
            categories=categories,
            coefs=coefs,
            X=X,
            x_sd=np.asarray(json.loads(attrs["opinionmap_x_sd"]), dtype=float),
            groups=groups,
            counts=observed["counts"].values.astype(np.int64),
            codings=codings,
            cells=cells,
            respondent_cell=respondent_cell,
            respondent_response=y,
            respondent_id=observed["respondent"].values.astype(str),
            data_hash=data_hash(spec, cell_keys(X, groups)[respondent_cell], y, graphs),
            covariates=(
                table_from_json(attrs["opinionmap_covariates"])
                if "opinionmap_covariates" in attrs
                else None
            ),
            area=attrs.get("opinionmap_area"),
            graphs=graphs,
            merged=tuple(json.loads(attrs.get("opinionmap_merged", "[]"))),
        )


def build_design(
    spec: ModelSpec,
    data: SurveyData,
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
    df, source = as_frame(data)
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
    keep, y = _outcome_codes(spec, df[spec.outcome], where)
    categories, y, merged = _merge_rare(spec, y)
    _check_every_category_given(spec, categories, y, where)
    df = df.loc[keep]
    codings = tuple(_infer_coding(df[name], name, where, spec) for name in spec.variables)
    coefs = _coefs(spec, codings)
    _check_identifiable(spec, codings, coefs, where)
    names = [c.name for c in coefs]
    unknown = [name for name, _ in spec.priors.fixed_by if name not in names]
    if unknown:
        raise DesignError(
            f"{where}: [priors.fixed] names coefficient(s) {format_values(unknown)} that the "
            f"model does not have; its coefficients: {format_values(names) or 'none'} "
            "(labels as in the posterior's coef dim)."
        )
    coded = _code(spec, df, codings, coefs, "error", where, True)

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
    counts = np.zeros((n_cells, len(categories)), dtype=np.int64)
    np.add.at(counts, (inverse, y), 1)
    groups = tuple(g.with_index(g.index[first].astype(np.int64)) for g in coded.groups)
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
    for g in groups:
        _check_slopes(g, coded.X[first], where)
    area = getattr(data, "area", None)
    graphs = _graphs(spec, groups, codings, where)
    return Design(
        spec=spec,
        categories=categories,
        coefs=coefs,
        X=coded.X[first],
        x_sd=coded.X.std(axis=0) if coded.X.shape[1] else np.zeros(0),
        groups=groups,
        counts=counts,
        codings=codings,
        cells=cells,
        respondent_cell=inverse.astype(np.int64),
        respondent_response=y,
        respondent_id=_respondent_ids(data, df),
        data_hash=data_hash(spec, keys, y, graphs),
        covariates=covariates,
        area=area if isinstance(area, str) else None,
        graphs=graphs,
        merged=merged,
    )


def _graphs(
    spec: ModelSpec,
    groups: tuple[GroupIndex, ...],
    codings: tuple[VariableCoding, ...],
    where: str,
) -> tuple[Graph, ...]:
    """The neighbours of every term with a structured prior, checked against its levels."""
    by_name = {g.name: g for g in groups}
    graphs = []
    for term, structure in spec.priors.structure:
        group = by_name[term]
        if structure.kind == "bym2":
            assert structure.adjacency is not None
            graphs.append(read_adjacency(structure.adjacency, term, group.levels))
            continue
        coding = next(c for c in codings if c.name == term)
        if not coding.ordered:
            raise DesignError(
                f"{where}: [priors.structure] {term} = {structure.kind!r} needs ordered levels, "
                f"but {term!r} ({format_values(coding.levels)}) has no declared order. Declare "
                "it: 'ordered = true' with its levels in order in the codebook, or an ordered "
                "pandas Categorical; or drop the structure for an unordered factor."
            )
        if structure.kind == "rw2" and len(group.levels) < 3:
            raise DesignError(
                f"{where}: [priors.structure] {term} = 'rw2' needs at least three levels; "
                f"{term!r} has {format_values(group.levels)}. Use 'rw1'."
            )
        graphs.append(Graph.walk(term, structure.kind, len(group.levels)))
    return tuple(graphs)


def _outcome_codes(
    spec: ModelSpec, outcome: pd.Series, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows answered (not a missing code) and their answers' positions in the levels."""
    if outcome.isna().any():
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} is empty in {int(outcome.isna().sum())} rows; code "
            "them (e.g. 'dont_know') and list the code in the spec's [outcome] missing."
        )
    text = outcome.astype(str)
    keep = ~text.isin(spec.missing).to_numpy()
    unknown = sorted(_present(text[keep]) - set(spec.categories))
    if unknown:
        hurdle = f", nor the hurdle code {spec.hurdle!r}" if spec.hurdle else ""
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} has values {format_values(unknown)} that are "
            f"neither [outcome] levels {format_values(spec.levels)} nor missing codes "
            f"{format_values(spec.missing)}{hurdle}. Add them to levels (to model them) or to "
            "missing (to drop them)."
        )
    # the hurdle code, if any, is the last category
    y = pd.Categorical(text[keep], categories=list(spec.categories)).codes.astype(np.int64)
    observed = np.bincount(y, minlength=len(spec.categories))[: len(spec.levels)]
    if (observed > 0).sum() < 2:
        only = [spec.levels[i] for i in np.nonzero(observed)[0]]
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} has only one observed level "
            f"({format_values(only)}) after dropping {format_values(spec.missing)}; a model needs "
            "at least two."
        )
    return keep, y


def _merge_rare(
    spec: ModelSpec, y: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """The modelled categories, each answer's position among them, and the merged levels.

    With ``merge_below``, the levels (the reference excepted) that fewer respondents gave
    become one category, ``other``, placed last, when two or more are that rare.
    """
    if spec.merge_below is None:
        return spec.categories, y, ()
    observed = np.bincount(y, minlength=len(spec.levels))
    rare = [k for k in range(1, len(spec.levels)) if observed[k] < spec.merge_below]
    if len(rare) < 2:
        return spec.levels, y, ()
    kept = [k for k in range(len(spec.levels)) if k not in rare]
    position = np.full(len(spec.levels), len(kept), dtype=np.int64)
    position[kept] = np.arange(len(kept))
    categories = (*(spec.levels[k] for k in kept), spec.other)
    return categories, position[y], tuple(spec.levels[k] for k in rare)


def hurdle_parts(design: Design) -> tuple[Design, Design]:
    """A hurdle model's two parts, on the same cells and terms.

    The ordinal model of those who answer (the hurdle code's respondents left out),
    and the bernoulli model of giving the hurdle code (levels ``("answer", code)``,
    logit link, the same priors). The hurdle model's likelihood is the sum of theirs:
    ``P(k) = (1 - P(code)) P(k | answering)``. Made once per design (prediction asks
    for them chunk by chunk).
    """
    return design._hurdle_parts


def _split_hurdle(design: Design) -> tuple[Design, Design]:
    assert design.spec.hurdle is not None
    k = len(design.answers)
    answering = design.respondent_response < k
    answered = replace(
        design,
        spec=replace(design.spec, hurdle=None),
        categories=design.answers,
        counts=design.counts[:, :k],
        respondent_cell=design.respondent_cell[answering],
        respondent_response=design.respondent_response[answering],
        respondent_id=design.respondent_id[answering],
    )
    hurdle = replace(
        design,
        spec=replace(
            design.spec,
            family="bernoulli",
            levels=("answer", design.spec.hurdle),
            link="logit",
            hurdle=None,
        ),
        categories=("answer", design.spec.hurdle),
        counts=np.column_stack([design.counts[:, :k].sum(axis=1), design.counts[:, k]]),
        respondent_response=(~answering).astype(np.int64),
    )
    return answered, hurdle


def merged_line(design: Design) -> str:
    """What ``merge_below`` did, in words (empty when nothing was merged)."""
    if not design.merged:
        return ""
    return (
        f"answers given by fewer than {design.spec.merge_below} respondents each "
        f"({format_values(design.merged)}) are modelled as one category, "
        f"{design.categories[-1]!r}."
    )


def _check_every_category_given(
    spec: ModelSpec, categories: tuple[str, ...], y: np.ndarray, where: str
) -> None:
    observed = np.bincount(y, minlength=len(categories))
    never = [lv for lv, n in zip(categories, observed, strict=True) if n == 0]
    if spec.hurdle in never:
        raise DesignError(
            f"{where}: outcome {spec.outcome!r}: no respondent gave the hurdle code "
            f"{spec.hurdle!r}, so how often it is said cannot be estimated. Remove [outcome] "
            "hurdle (or check the code's spelling against the data)."
        )
    if never:
        merge = (
            " or merge rare answers ([outcome] merge_below)" if spec.family == "categorical" else ""
        )
        raise DesignError(
            f"{where}: outcome {spec.outcome!r} level(s) {format_values(never)} are in the spec's "
            "levels but no respondent gave them, so their effects cannot be estimated. Remove "
            f"them from [outcome] levels (or merge them into a neighbouring level){merge}."
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


def data_hash(
    spec: ModelSpec, keys: np.ndarray, y: np.ndarray, graphs: tuple[Graph, ...] = ()
) -> str:
    """SHA-256 of what the model sees: respondent covariate keys, responses, neighbours."""
    digest = hashlib.sha256()
    digest.update(json.dumps([spec.outcome, *spec.variables]).encode())
    for graph in graphs:
        digest.update(json.dumps([graph.term, graph.edges, graph.islands]).encode())
    # + 0.0 turns -0.0 into 0.0, which np.unique treats as equal anyway
    digest.update(np.ascontiguousarray(keys + 0.0).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def as_frame(data: Any) -> tuple[pd.DataFrame, str | None]:
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
        return VariableCoding(name, "categorical", levels, bool(column.cat.ordered))
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        if not is_group:
            return VariableCoding(name, "numeric")
        # grouping by a number (a year, an age): its levels in numeric order
        levels = tuple(str(v) for v in sorted(pd.unique(column)))
        return VariableCoding(name, "categorical", levels, True)
    return VariableCoding(name, "categorical", tuple(sorted(_present(column))))


def _present(values: pd.Series) -> set[str]:
    """The distinct values of a column, as text (one pass over the distinct values only)."""
    return {str(v) for v in pd.unique(values)}


def _fixed_levels(coding: VariableCoding, values: pd.Series) -> tuple[str, ...]:
    """Levels of a categorical fixed effect that the data has (unobserved ones dropped)."""
    present = _present(values)
    return tuple(lv for lv in coding.levels if lv in present)


def _coefs(spec: ModelSpec, codings: tuple[VariableCoding, ...]) -> tuple[Coef, ...]:
    """The fixed-effect columns, coded as R's ``model.matrix`` codes the formula.

    Terms in order of degree (main effects, then two-way interactions, ...), as
    R's ``terms()``. A factor in a term is coded by treatment contrasts (one column
    per non-reference level) when the term without it is the intercept or is
    contained in an earlier term, and by all its levels otherwise (Chambers and
    Heiberger's rule, R's ``TermCode``); without an intercept, the first factor of
    the first term that has one is coded by all its levels. In an interaction the
    first variable's columns vary fastest, as in R.
    """
    by_name = {c.name: c for c in codings}
    terms = sorted(spec.fixed_terms, key=lambda t: len(t.variables))
    full_first = not _carries_level_elsewhere(spec)
    coefs: list[Coef] = []
    for i, term in enumerate(terms):
        combos: list[tuple[tuple[str, str | None], ...]] = [()]
        for v in term.variables:
            c = by_name[v]
            if c.kind == "numeric":
                options: list[str | None] = [None]
            elif full_first or not _by_contrasts(term.variables, v, terms[:i]):
                options = list(c.levels)
            else:
                options = list(c.levels[1:])
            if c.kind == "categorical":
                full_first = False
            combos = [(*a, (v, b)) for b in options for a in combos]
        coefs.extend(Coef(parts) for parts in combos)
    names = [c.name for c in coefs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DesignError(
            f"fixed-effect columns {format_values(repeated)} would have the same label; rename "
            "the levels whose labels contain '[', ']' or ':' so that they differ."
        )
    return tuple(coefs)


def _carries_level_elsewhere(spec: ModelSpec) -> bool:
    """Whether an intercept (or, for ordinal models, the cutpoints) carries the overall level."""
    return spec.intercept or spec.family == "ordinal"


def _by_contrasts(variables: tuple[str, ...], factor: str, earlier: list[FixedTerm]) -> bool:
    """R's rule: code ``factor`` by contrasts if the term without it is in the model already."""
    rest = set(variables) - {factor}
    return not rest or any(rest <= set(t.variables) for t in earlier)


def _check_identifiable(
    spec: ModelSpec, codings: tuple[VariableCoding, ...], coefs: tuple[Coef, ...], where: str
) -> None:
    """Refuse a formula whose columns are collinear whatever the data, or that has no level.

    The check codes every combination of the fixed factors' levels (numeric variables at
    two values): if the columns (with the intercept) are linearly dependent there, no data
    can tell them apart. And without an intercept, varying intercepts (which sum to zero)
    need a factor coded by all its levels to carry the overall level.
    """
    carried = _carries_level_elsewhere(spec)
    if spec.group_terms and not carried and not any(_is_full_factor(c, codings) for c in coefs):
        raise DesignError(
            f"{where}: the formula {spec.formula!r} has no intercept and no factor coded by all "
            "its levels, so nothing carries the overall level: varying intercepts sum to zero "
            "over their levels. Keep the intercept ('1 + ...') or add a factor ('0 + sex + ...')."
        )
    used = [c for c in codings if any(c.name in t.variables for t in spec.fixed_terms)]
    grid_size = int(np.prod([len(c.levels) if c.kind == "categorical" else 2 for c in used]))
    if not coefs or grid_size > 200_000:
        return
    grid = pd.MultiIndex.from_product(
        [list(c.levels) if c.kind == "categorical" else [1.0, 2.5] for c in used],
        names=[c.name for c in used],
    ).to_frame(index=False)
    for c in used:
        if c.kind == "categorical":
            grid[c.name] = pd.Categorical(grid[c.name], categories=list(c.levels))
    X = _fixed_matrix(spec, grid, codings, coefs, where)
    if carried:
        X = np.column_stack([np.ones(len(grid)), X])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise DesignError(
            f"{where}: the fixed-effect columns of {spec.formula!r} "
            f"({format_values([c.name for c in coefs])}) and the "
            f"{'cutpoints' if spec.family == 'ordinal' else 'intercept'} are collinear whatever "
            "the data (R's model.matrix codes the formula the same way; lm() would drop columns). "
            "Give an interaction its main effects ('a * b' for 'a + b + a:b'), or drop the "
            "intercept ('0 + a:b')."
        )


def _is_full_factor(coef: Coef, codings: tuple[VariableCoding, ...]) -> bool:
    """Whether a column is one level of a factor coded by all its levels (no other variable)."""
    if len(coef.parts) != 1 or coef.parts[0][1] is None:
        return False
    variable, level = coef.parts[0]
    coding = next(c for c in codings if c.name == variable)
    return bool(coding.levels) and level == coding.levels[0]


def _code(
    spec: ModelSpec,
    df: pd.DataFrame,
    codings: tuple[VariableCoding, ...],
    coefs: tuple[Coef, ...],
    new_levels: NewLevels,
    where: str,
    training: bool,
) -> NewData:
    """Code rows with the given codings: the fixed-effect matrix and each term's level index.

    ``training`` rows must let every categorical fixed effect vary; new rows (a frame)
    need not.
    """
    absent = [c.name for c in codings if c.name not in df.columns]
    if absent:
        raise DesignError(
            f"{where}: column(s) {format_values(absent)} used by the model are missing "
            f"(columns: {format_values(list(df.columns), limit=40)})."
        )
    X = _fixed_matrix(spec, df, codings, coefs, where)
    if training:
        _check_fixed_effects_vary(spec, df, codings, where)
    by_name = {c.name: c for c in codings}
    groups = tuple(
        _with_slopes(
            _group_index(df, term.name, term.factors, by_name, new_levels, where), term, coefs
        )
        for term in spec.group_terms
    )
    return NewData(X, groups)


def _with_slopes(group: GroupIndex, term: GroupTerm, coefs: tuple[Coef, ...]) -> GroupIndex:
    """The group index with its varying slopes: the fixed-effect columns of ``term.slopes``."""
    if not term.slopes:
        return group
    positions = tuple(
        j
        for slope in term.slopes
        for j, c in enumerate(coefs)
        if set(c.variables) == set(slope.variables)
    )
    labels = (("Intercept",) if term.intercept else ()) + tuple(coefs[j].name for j in positions)
    return replace(
        group,
        slopes=positions,
        coefs=labels,
        intercept=term.intercept,
        uncorrelated=term.uncorrelated,
    )


def _check_slopes(group: GroupIndex, X: np.ndarray, where: str) -> None:
    """A varying slope must vary within levels, and a term's coefficients be distinguishable."""
    if not group.slopes:
        return
    for j in group.slopes:
        x = X[:, j]
        high = np.full(len(group.levels), -np.inf)
        low = np.full(len(group.levels), np.inf)
        np.maximum.at(high, group.index, x)
        np.minimum.at(low, group.index, x)
        seen = np.isfinite(high)
        if np.all(high[seen] - low[seen] <= 1e-12):
            label = group.coefs[group.slopes.index(j) + int(group.intercept)]
            raise DesignError(
                f"{where}: the varying slope of {label!r} by {group.name!r}: {label!r} does not "
                f"vary within any level of {group.name!r} (each level has one value), so its "
                "slope cannot be told from the level's intercept. Keep it as a fixed effect "
                f"(an area-level predictor) and drop it from the left of '| {group.name}'."
            )
    W = group.slope_matrix(X)
    if np.linalg.matrix_rank(W) < W.shape[1]:
        raise DesignError(
            f"{where}: the coefficients of the term on {group.name!r} "
            f"({format_values(group.coefs)}) are collinear in the data: one is a combination "
            "of the others (a factor coded by all its levels beside the intercept?). Drop the "
            "intercept ('0 + x') or code the factor by contrasts ('1 + x' with x in the fixed "
            "effects after an intercept)."
        )


def _fixed_matrix(
    spec: ModelSpec,
    df: pd.DataFrame,
    codings: tuple[VariableCoding, ...],
    coefs: tuple[Coef, ...],
    where: str,
) -> np.ndarray:
    """The fixed-effect columns: each a product of numeric values and level dummies."""
    used = {v for t in spec.fixed_terms for v in t.variables}
    numeric: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    for c in codings:
        if c.name not in used:
            continue
        values = df[c.name]
        if c.kind == "numeric":
            numeric[c.name] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(numeric[c.name]).all():
                raise DesignError(
                    f"{where}: numeric predictor {c.name!r} has missing or non-numeric values."
                )
            continue
        codes[c.name] = level_codes(values, c.levels)
        if (codes[c.name] < 0).any():
            unknown = sorted(_present(values[codes[c.name] < 0]))
            misses = near_misses(unknown, c.levels)
            hint = f" Labels are compared exactly: {did_you_mean(misses)}" if misses else ""
            raise DesignError(
                f"{where}: predictor {c.name!r} has level(s) {format_values(unknown)} that the "
                f"model was not fitted with (its levels: {format_values(c.levels)}). Recode them "
                f"to known levels.{hint}"
            )
    position = {c.name: {lv: i for i, lv in enumerate(c.levels)} for c in codings}
    X = np.zeros((len(df), len(coefs)))
    for j, coef in enumerate(coefs):
        product = np.ones(len(df))
        for variable, level in coef.parts:
            if level is None:
                product = product * numeric[variable]
            else:
                product = product * (codes[variable] == position[variable][level]).astype(float)
        X[:, j] = product
    return X


def _check_fixed_effects_vary(
    spec: ModelSpec, df: pd.DataFrame, codings: tuple[VariableCoding, ...], where: str
) -> None:
    """A categorical fixed effect must take two levels in the training data."""
    by_name = {c.name: c for c in codings}
    for term in spec.fixed_terms:
        for v in term.variables:
            c = by_name[v]
            if c.kind == "categorical" and len(_fixed_levels(c, df[v])) < 2:
                raise DesignError(
                    f"{where}: predictor {v!r} has one observed level "
                    f"({format_values(_fixed_levels(c, df[v]))}); a fixed effect needs two. "
                    "Drop it from the formula."
                )


def _group_index(
    df: pd.DataFrame,
    name: str,
    factors: tuple[str, ...],
    by_name: dict[str, VariableCoding],
    new_levels: NewLevels,
    where: str,
) -> GroupIndex:
    """Each row's level of a varying-intercept term (``-1`` where it is new)."""
    level_lists = [by_name[f].levels for f in factors]
    labels = [":".join(combo) for combo in _product(level_lists)]
    if len(set(labels)) != len(labels):
        repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise DesignError(
            f"{where}: the levels of {name!r} joined by ':' give the same label twice "
            f"({format_values(repeated)}); rename the levels whose labels contain ':'."
        )
    index = combined_codes(df, factors, level_lists)
    if (index < 0).any() and new_levels == "error":
        missing = sorted(set(group_labels(df.loc[index < 0], factors)))
        raise DesignError(
            f"{where}: grouping factor {name!r} has level(s) "
            f"{format_values(missing)} that the model was not fitted with "
            f"(it knows {format_values(labels)}). Recode them, or use "
            "new_levels='sample' to draw their effects from the fitted distribution."
        )
    return GroupIndex(name, factors, tuple(labels), index)


def combined_codes(
    df: pd.DataFrame, factors: tuple[str, ...], level_lists: list[tuple[str, ...]]
) -> np.ndarray:
    """Each row's position among every combination of the factors' levels (``-1``: unknown).

    The first factor varies slowest, as the labels of an interaction term are listed.
    """
    index = np.zeros(len(df), dtype=np.int64)
    for factor, levels in zip(factors, level_lists, strict=True):
        codes = level_codes(df[factor], levels)
        index = np.where((index < 0) | (codes < 0), -1, index * len(levels) + codes)
    return index


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


def group_labels(df: pd.DataFrame, factors: tuple[str, ...]) -> list[str]:
    """Each row's label of a grouping term: its factor levels joined by ``":"`` (for display)."""
    keys = df[factors[0]].astype(str)
    for factor in factors[1:]:
        keys = keys.str.cat(df[factor].astype(str), sep=":")
    return [str(k) for k in keys]


def _product(lists: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for options in lists:
        combos = [(*a, b) for a in combos for b in options]
    return combos
