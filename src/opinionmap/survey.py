"""Survey data: read CSV, Parquet, SPSS and Stata files and validate them against a codebook.

This is the first stage of the pipeline. :func:`read_survey` reads a file,
turns SPSS/Stata value labels into their labels, and hands the frame to
:meth:`Survey.from_dataframe`, which checks it once against the
:class:`~opinionmap.codebook.Codebook` and fixes its types:

- every categorical variable becomes a pandas ``Categorical`` whose categories
  are the declared levels (outcomes: ordered, levels in response order, then the
  missing codes);
- numeric predictors and the weight become ``float64``;
- the design's strata and cluster (primary sampling unit) columns become
  ``Categorical`` labels read as text, and its finite population correction
  ``float64``, checked together (:func:`validate_design`);
- the id is kept as read (text for CSV), unless the codebook says it is numeric;
- columns the codebook does not declare are kept untouched.

Every problem is a :class:`~opinionmap.errors.SurveyError` naming the file, the
column, the offending values and the fix. Later stages trust a :class:`Survey`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pandas as pd
import pyreadstat

from opinionmap._io import write_table
from opinionmap.codebook import (
    DESIGN_ROLES,
    MISSING_POLICIES,
    Codebook,
    Variable,
    read_codebook,
)
from opinionmap.errors import SurveyError, format_values

__all__ = ["FORMATS", "Survey", "read_survey", "validate_design"]

FORMATS: Final = ("csv", "parquet", "sav", "dta")
"""File formats :func:`read_survey` reads."""

_SUFFIXES: Final = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".sav": "sav",
    ".zsav": "sav",
    ".dta": "dta",
}
_ROLE_ARGUMENTS: Final = (
    "outcomes",
    "predictors",
    "area",
    "weight",
    "id",
    "strata",
    "cluster",
    "fpc",
    "missing",
)

_ValueLabels = dict[str, dict[Any, str]]
# per column, the labels of the codes the file declares missing (SPSS user-missing values)
_UserMissing = dict[str, set[str]]
# an outcome's blank cells, when its levels are drafted from the data (names only)
BLANK = "no_answer"
# labels drafted as missing codes (matched case-insensitively, with _ read as a space)
_MISSING_LABELS = re.compile(
    r"^(don'?t ?know|dk|refused|refusal|refuse ?to ?answer|no ?answer|no ?response"
    r"|not ?applicable|n/?a"
    r"|prefer ?not ?to ?(say|answer)|can'?t ?say|cannot ?say|hard ?to ?say)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, eq=False)
class Survey:
    """A survey validated against its codebook.

    Build one with :func:`read_survey` or :meth:`Survey.from_dataframe`; the
    constructor itself trusts its arguments.

    Attributes
    ----------
    data
        One row per respondent, typed as described in the module docstring.
        Treat it as read-only: the accessors below return copies.
    codebook
        The codebook, with the levels of every categorical variable filled in
        (levels a file left out are inferred from the data).
    source
        The file the survey was read from, if any.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"q": ["yes", "no", "dont_know", "yes"],
    ...                    "region": ["A", "B", "A", "B"]})
    >>> s = Survey.from_dataframe(df, Codebook.from_roles(
    ...     outcomes={"q": ["yes", "no"]}, area="region", missing=["dont_know"]))
    >>> s.n_respondents, s.outcomes, s.area
    (4, ('q',), 'region')
    >>> s.responses("q")["q"].value_counts().to_dict()
    {'yes': 2, 'no': 1}
    """

    data: pd.DataFrame
    codebook: Codebook
    source: Path | None = field(default=None, compare=False)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dataframe(
        cls, df: pd.DataFrame, codebook: Codebook, source: Path | None = None
    ) -> Survey:
        """Validate a DataFrame against a codebook and return a :class:`Survey`.

        Parameters
        ----------
        df
            One row per respondent. It is copied, never modified.
        codebook
            Roles, levels and missing codes of the columns.
        source
            The file ``df`` was read from, named in error messages.

        Raises
        ------
        SurveyError
            If declared columns are absent, the survey is empty, a categorical
            column holds undeclared values or blank cells, an outcome has no
            answers, the weights are not finite non-negative numbers with a
            positive sum, respondent ids are blank or repeated, or the design
            columns fail :func:`validate_design`.

        Examples
        --------
        >>> import pandas as pd
        >>> cb = Codebook.from_roles(outcomes={"q": ["yes", "no"]})
        >>> Survey.from_dataframe(pd.DataFrame({"q": ["yes", "maybe"]}), cb)
        Traceback (most recent call last):
        ...
        opinionmap.errors.SurveyError: <DataFrame>: column 'q' has values not declared ...
        """
        where = str(source) if source is not None else "<DataFrame>"
        _check_columns(df, codebook, where)
        if len(df) == 0:
            raise SurveyError(f"{where}: the survey has no rows (no respondents).")
        data = df.copy()
        id_var = codebook.id
        if id_var is not None:
            data[id_var.name] = _id_column(data[id_var.name], id_var, where)

        def rows(mask: np.ndarray) -> str:
            return _rows(data, mask, id_var.name if id_var is not None else None)

        inferred: dict[str, tuple[str, ...]] = {}
        for v in codebook:
            column = data[v.name]
            if v.role == "id" or v.role in DESIGN_ROLES:
                continue
            if v.role == "weight":
                data[v.name] = _weight_column(column, v, where, rows)
            elif v.kind == "numeric":
                data[v.name] = _numeric_column(column, v, where, rows)
            else:
                values, natural = _as_labels(column)
                if v.levels is None:
                    inferred[v.name] = natural
                if v.role == "outcome":
                    _check_outcome(values, v, where, rows)
                else:
                    _check_category(values, v, where, rows)
                categories = list(v.categories) if v.levels is not None else list(natural)
                data[v.name] = pd.Categorical(
                    values, categories=categories, ordered=v.role == "outcome" or v.ordered
                )
        design = validate_design(
            data,
            strata=_name(codebook.strata),
            cluster=_name(codebook.cluster),
            fpc=_name(codebook.fpc),
            id=_name(id_var),
            where=where,
        )
        for name in design.columns:
            data[name] = design[name]
        return cls(data=data, codebook=codebook.with_levels(inferred), source=source)

    # -- roles ------------------------------------------------------------------------
    @property
    def n_respondents(self) -> int:
        """Number of rows (respondents)."""
        return len(self.data)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Names of the outcome columns."""
        return tuple(v.name for v in self.codebook.outcomes)

    @property
    def predictors(self) -> tuple[str, ...]:
        """Names of the predictor columns."""
        return tuple(v.name for v in self.codebook.predictors)

    @property
    def area(self) -> str | None:
        """Name of the area column, if any."""
        return _name(self.codebook.area)

    @property
    def weight(self) -> str | None:
        """Name of the weight column, if any."""
        return _name(self.codebook.weight)

    @property
    def id(self) -> str | None:
        """Name of the respondent-id column, if any."""
        return _name(self.codebook.id)

    @property
    def strata(self) -> str | None:
        """Name of the design's strata column, if any."""
        return _name(self.codebook.strata)

    @property
    def cluster(self) -> str | None:
        """Name of the design's cluster (primary sampling unit) column, if any."""
        return _name(self.codebook.cluster)

    @property
    def fpc(self) -> str | None:
        """Name of the design's finite population correction column, if any."""
        return _name(self.codebook.fpc)

    @property
    def _where(self) -> str:
        return str(self.source) if self.source is not None else "<DataFrame>"

    # -- access -----------------------------------------------------------------------
    def responses(self, outcome: str, missing_policy: str | None = None) -> pd.DataFrame:
        """Rows usable for modelling ``outcome``, as a new DataFrame.

        Parameters
        ----------
        outcome
            Name of an outcome column.
        missing_policy
            ``"drop"``: rows coded missing are removed and the missing codes are
            removed from the outcome's categories; ``"keep"``: they stay, as
            categories after the levels. ``None`` uses the codebook's policy.

        Returns
        -------
        pandas.DataFrame
            Every column, with the original row index.

        Raises
        ------
        SurveyError
            If ``outcome`` is not an outcome or the policy is unknown.

        Examples
        --------
        >>> import pandas as pd
        >>> s = Survey.from_dataframe(
        ...     pd.DataFrame({"q": ["yes", "dont_know", "no"]}),
        ...     Codebook.from_roles(outcomes={"q": ["yes", "no"]}, missing=["dont_know"]))
        >>> list(s.responses("q")["q"].cat.categories)
        ['yes', 'no']
        >>> list(s.responses("q", missing_policy="keep")["q"].cat.categories)
        ['yes', 'no', 'dont_know']
        """
        variable = self._outcome(outcome)
        policy = variable.missing_policy if missing_policy is None else missing_policy
        if policy not in MISSING_POLICIES:
            raise SurveyError(
                f"unknown missing_policy {policy!r}; allowed: {format_values(MISSING_POLICIES)}."
            )
        if policy == "keep" or not variable.missing:
            return self.data.copy()
        coded_missing = self.data[outcome].isin(variable.missing).to_numpy()
        out = self.data.loc[~coded_missing].copy()
        out[outcome] = out[outcome].cat.remove_categories(list(variable.missing))
        return out

    def weights(self) -> np.ndarray:
        """The survey weights as a new float array (ones if there is no weight column)."""
        if self.weight is None:
            return np.ones(self.n_respondents)
        return self.data[self.weight].to_numpy(dtype=np.float64, copy=True)

    def levels(self, column: str, *, include_missing: bool = False) -> tuple[str, ...]:
        """Ordered levels of a categorical variable.

        Parameters
        ----------
        column
            A categorical outcome, predictor or area, or the strata or cluster
            column (their labels, in natural order).
        include_missing
            Append an outcome's missing codes after its levels.

        Examples
        --------
        >>> import pandas as pd
        >>> s = Survey.from_dataframe(pd.DataFrame({"q": ["b", "a"], "g": ["y", "x"]}),
        ...                           Codebook.from_roles(outcomes={"q": ["b", "a"]},
        ...                                               predictors=["g"]))
        >>> s.levels("q"), s.levels("g")
        (('b', 'a'), ('x', 'y'))
        """
        categorical = [v.name for v in self.codebook if v.kind == "categorical"]
        if column not in categorical:
            raise SurveyError(
                f"{self._where}: {column!r} is not a categorical variable of the survey; "
                f"categorical variables: {format_values(categorical)}."
            )
        variable = self.codebook[column]
        if variable.levels is None:  # strata and cluster labels are read from the data
            return tuple(str(c) for c in self.data[column].cat.categories)
        return variable.categories if include_missing else (variable.levels or ())

    def describe(self) -> pd.DataFrame:
        """Response counts and shares, one row per outcome and category.

        Returns
        -------
        pandas.DataFrame
            Columns ``outcome``, ``category``, ``is_missing`` (a missing code),
            ``n`` (respondents), ``share`` (of all respondents), ``share_valid``
            (of substantive answers; NaN for missing codes) and
            ``weighted_share_valid`` (the same, weighted).

        Examples
        --------
        >>> import pandas as pd
        >>> s = Survey.from_dataframe(
        ...     pd.DataFrame({"q": ["yes", "dont_know", "no", "yes"]}),
        ...     Codebook.from_roles(outcomes={"q": ["yes", "no"]}, missing=["dont_know"]))
        >>> s.describe()[["category", "n", "share_valid"]]
            category  n  share_valid
        0        yes  2     0.666667
        1         no  1     0.333333
        2  dont_know  1          NaN
        """
        weights = self.weights()
        records: list[dict[str, Any]] = []
        for v in self.codebook.outcomes:
            column = self.data[v.name]
            valid = ~column.isin(v.missing).to_numpy()
            n_valid = int(valid.sum())
            w_valid = float(weights[valid].sum())
            for category in v.categories:
                hit = (column == category).to_numpy()
                is_missing = category in v.missing
                n = int(hit.sum())
                records.append(
                    {
                        "outcome": v.name,
                        "category": category,
                        "is_missing": is_missing,
                        "n": n,
                        "share": n / self.n_respondents,
                        "share_valid": np.nan if is_missing else n / n_valid,
                        "weighted_share_valid": (
                            np.nan if is_missing or w_valid == 0 else weights[hit].sum() / w_valid
                        ),
                    }
                )
        columns = ["outcome", "category", "is_missing", "n", "share", "share_valid"]
        return pd.DataFrame.from_records(records, columns=[*columns, "weighted_share_valid"])

    def to_file(self, path: str | os.PathLike[str], *, write_codebook: bool = False) -> Path:
        """Write the survey as CSV or Parquet (by suffix), atomically.

        Parameters
        ----------
        path
            Target file, ending in ``.csv``, ``.parquet`` or ``.pq``.
        write_codebook
            Also write the codebook beside it as ``<stem>.codebook.toml``, where
            :func:`read_survey` finds it.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        target = write_table(self.data, path, SurveyError)
        if write_codebook:
            self.codebook.to_toml(_codebook_beside(target))
        return target

    def _outcome(self, name: str) -> Variable:
        if name not in self.outcomes:
            raise SurveyError(
                f"{self._where}: {name!r} is not an outcome; outcomes: "
                f"{format_values(self.outcomes)}."
            )
        return self.codebook[name]


def read_survey(
    path: str | os.PathLike[str],
    codebook: Codebook | str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    **roles: object,
) -> Survey:
    r"""Read a survey file and validate it against its codebook.

    Parameters
    ----------
    path
        A ``.csv``, ``.parquet`` (``.pq``), ``.sav`` (``.zsav``) or ``.dta`` file.
        CSV cells are read as text, so codes like ``"01"`` survive; only empty
        cells are blank. SPSS/Stata value labels become categories in the order
        the file declares them, and SPSS user-missing values keep their labels
        (``98`` -> ``"dont_know"``), so levels and missing codes in the codebook
        are labels.
    codebook
        A :class:`~opinionmap.codebook.Codebook` or the path of its TOML file.
        If omitted, ``roles`` build one (:meth:`Codebook.from_roles`); without
        roles, ``<stem>.codebook.toml`` beside the data file is used.
    format
        ``"csv"``, ``"parquet"``, ``"sav"`` or ``"dta"``, overriding the suffix.
    **roles
        ``outcomes=``, ``predictors=``, ``area=``, ``weight=``, ``id=``,
        ``strata=``, ``cluster=``, ``fpc=``, ``missing=``, as for
        :meth:`Codebook.from_roles`; ``outcomes=`` may also be names only (``"q1"``
        or ``["q1", "q2"]``), whose levels and missing codes are then drafted from
        the file (:func:`draft_outcomes`: its labels' order, "Don't know"-like and
        user-missing labels as missing codes, blank cells as ``"no_answer"``). Blank
        answers are read as ``"no_answer"`` wherever the codebook lists that code among
        an outcome's missing codes.

    Raises
    ------
    SurveyError
        If the file is missing, unreadable or of an unknown format, no codebook
        is given or found, or the data fail validation
        (:meth:`Survey.from_dataframe`).
    CodebookError
        If the codebook file is malformed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = path.write_text("id,q,region\n01,yes,A\n02,no,B\n")
    >>> s = read_survey(path, outcomes={"q": ["yes", "no"]}, area="region", id="id")
    >>> s.data["id"].tolist()
    ['01', '02']
    """
    source = Path(path)
    fmt = _format(source, format)
    if not source.is_file():
        raise SurveyError(f"{source}: survey file not found.")
    df, value_labels, user_missing = read_file(source, fmt)
    names = _outcome_names(roles.get("outcomes"))
    if names is not None:
        default = cast(Sequence[str], roles.get("missing", ()))
        drafted = draft_outcomes(df, value_labels, user_missing, names, default, str(source))
        roles = {**roles, "outcomes": drafted}
    resolved = _resolve_codebook(source, codebook, roles)
    df = _apply_value_labels(df, value_labels, resolved)
    for v in resolved:
        # blank answers are read as the code "no_answer" where the codebook lists it missing
        if v.role == "outcome" and BLANK in v.missing and v.name in df.columns:
            df[v.name] = df[v.name].astype(object).where(df[v.name].notna(), BLANK)
    return Survey.from_dataframe(df, resolved, source=source)


def read_file(
    source: Path, format: str | None = None
) -> tuple[pd.DataFrame, _ValueLabels, _UserMissing]:
    """A survey file's rows as read, its value labels and its user-missing labels, per column.

    No codebook is applied: codes stay codes (:func:`read_survey` applies the labels).
    """
    return _READERS[_format(source, format)](source)


def _outcome_names(outcomes: object) -> list[str] | None:
    """The outcome names when ``outcomes=`` gives names only (a name or a list), else ``None``."""
    if isinstance(outcomes, str):
        return [outcomes]
    if isinstance(outcomes, Sequence) and all(isinstance(o, str) for o in outcomes):
        return list(outcomes)
    return None


def draft_outcomes(
    df: pd.DataFrame,
    value_labels: _ValueLabels,
    user_missing: _UserMissing,
    names: Sequence[str],
    missing: Sequence[str] = (),
    where: str = "<data>",
) -> dict[str, dict[str, list[str]]]:
    """Levels and missing codes of outcomes named without them, drafted from the data.

    Levels are the answers given, in the file's label order (else their natural
    order); missing codes are the labels the file declares missing (SPSS user-missing
    values), labels that read as a non-answer ("Don't know", "Refused", "No answer",
    matched case-insensitively), the codes in ``missing``, and :data:`BLANK` for blank
    cells. Check them in ``survey.codebook``.
    """
    out: dict[str, dict[str, list[str]]] = {}
    for name in names:
        if name not in df.columns:
            raise SurveyError(
                f"{where}: outcome {name!r} is not a column of the data; columns: "
                f"{format_values(list(df.columns), limit=30)}."
            )
        raw = df[name]
        labels = value_labels.get(name, {})
        given = [_label(labels.get(v, v)) for v in _sorted_values(pd.unique(raw.dropna()))]
        declared = [_label(label) for label in labels.values()]
        order = [c for c in dict.fromkeys([*declared, *_sorted_labels(given)]) if c in given]
        absent = user_missing.get(name, set()) | set(missing)
        codes = [c for c in order if c in absent or _MISSING_LABELS.match(c.replace("_", " "))]
        if raw.isna().any():
            codes.append(BLANK)
        levels = [c for c in order if c not in codes]
        if len(levels) < 2:
            raise SurveyError(
                f"{where}: outcome {name!r} has fewer than two answers besides its missing "
                f"codes (answers {format_values(levels)}, missing {format_values(codes)}); "
                "give its levels: outcomes={" + repr(name) + ": [...]}."
            )
        out[name] = {"levels": levels, "missing": codes}
    return out


def validate_design(
    df: pd.DataFrame,
    *,
    strata: str | None = None,
    cluster: str | None = None,
    fpc: str | None = None,
    id: str | None = None,
    where: str = "<DataFrame>",
) -> pd.DataFrame:
    """Check a survey's sampling-design columns and return them typed.

    The strata and cluster (primary sampling unit, PSU) columns are labels:
    read as text (``1`` and ``1.0`` are both ``"1"``), any number of levels.
    The finite population correction (fpc) is either the population count of
    PSUs in each stratum (values above 1) or the sampling fraction of PSUs
    (values at most 1), as R's ``survey::svydesign(fpc=)`` reads it. Clusters
    are nested in strata: the same cluster label in two strata is two PSUs.

    Parameters
    ----------
    df
        One row per respondent; not modified.
    strata, cluster, fpc
        Column names, or ``None`` when the design has none.
    id
        Respondent-id column, used to name offending rows.
    where
        The file (or ``"<DataFrame>"``) named in error messages.

    Returns
    -------
    pandas.DataFrame
        The given columns, with ``df``'s index: strata and cluster as
        ``Categorical`` text labels, fpc as ``float64``.

    Raises
    ------
    SurveyError
        If a column is absent, a stratum or cluster label is blank, an fpc is
        blank, non-numeric or not positive, mixes counts with fractions, varies
        within a stratum, or counts fewer PSUs than the stratum's sample holds.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"district": ["a", "a", "b", "b"], "village": [1, 2, 3, 3],
    ...                    "villages": [10, 10, 4, 4]})
    >>> typed = validate_design(df, strata="district", cluster="village", fpc="villages")
    >>> typed["village"].tolist(), typed["villages"].dtype.name
    (['1', '2', '3', '3'], 'float64')
    >>> validate_design(df.assign(villages=[10, 10, 4, 5]), strata="district", fpc="villages")
    Traceback (most recent call last):
    ...
    opinionmap.errors.SurveyError: <DataFrame>: fpc column 'villages' varies within ...
    """
    names = [c for c in (strata, cluster, fpc) if c is not None]
    absent = [c for c in names if c not in df.columns]
    if absent:
        raise SurveyError(
            f"{where}: design column(s) {format_values(absent)} not in the data; columns "
            f"present: {format_values(list(df.columns), limit=30)}."
        )

    def rows(mask: np.ndarray) -> str:
        return _rows(df, mask, id if id is not None and id in df.columns else None)

    out = pd.DataFrame(index=df.index)
    for role, name in (("strata", strata), ("cluster", cluster)):
        if name is not None:
            out[name] = _design_labels(df[name], role, name, where, rows)
    if fpc is not None:
        groups = out[strata] if strata is not None else None
        psus = out[cluster] if cluster is not None else None
        out[fpc] = _fpc_column(df[fpc], groups, psus, fpc, where, rows)
    return out


# -- reading --------------------------------------------------------------------------
def _format(source: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise SurveyError(
                f"{source}: unknown format {format!r}; supported: {format_values(FORMATS)}."
            )
        return format
    fmt = _SUFFIXES.get(source.suffix.lower())
    if fmt is None:
        raise SurveyError(
            f"{source}: cannot tell the format from suffix {source.suffix!r}; supported "
            f"suffixes: {format_values(list(_SUFFIXES))}, or pass format=."
        )
    return fmt


def _codebook_beside(path: Path) -> Path:
    return path.with_name(f"{path.stem}.codebook.toml")


def _resolve_codebook(
    source: Path, codebook: Codebook | str | os.PathLike[str] | None, roles: Mapping[str, object]
) -> Codebook:
    unknown = [k for k in roles if k not in _ROLE_ARGUMENTS]
    if unknown:
        raise TypeError(
            f"read_survey() got unexpected keyword argument(s) {format_values(unknown)}; "
            f"roles are {format_values(_ROLE_ARGUMENTS)}."
        )
    if codebook is not None and roles:
        raise SurveyError(
            f"{source}: give either a codebook or roles ({format_values(list(roles))}), not both."
        )
    if isinstance(codebook, Codebook):
        return codebook
    if codebook is not None:
        return read_codebook(codebook)
    if roles:
        if "outcomes" not in roles:
            raise SurveyError(
                f"{source}: roles need outcomes=, e.g. outcomes={{'q1': ['yes', 'no']}}."
            )
        return Codebook.from_roles(**cast(dict[str, Any], roles))
    beside = _codebook_beside(source)
    if beside.is_file():
        return read_codebook(beside)
    raise SurveyError(
        f"{source}: a codebook is needed to tell outcomes, predictors, area, weight and id "
        f"apart, and none was given or found at {beside}. Write one there, pass "
        "read_survey(path, codebook='....codebook.toml'), or name the roles: "
        "read_survey(path, outcomes={'q1': ['yes', 'no']}, predictors=['sex'], area='region')."
    )


def _read_csv(source: Path) -> tuple[pd.DataFrame, _ValueLabels, _UserMissing]:
    try:
        df = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise SurveyError(f"{source}: the file is empty (no header, no rows).") from None
    except (ValueError, OSError) as exc:
        raise SurveyError(f"{source}: cannot read as CSV: {exc}") from None
    return df, {}, {}


def _read_parquet(source: Path) -> tuple[pd.DataFrame, _ValueLabels, _UserMissing]:
    try:
        return pd.read_parquet(source), {}, {}
    except (ValueError, OSError) as exc:
        raise SurveyError(f"{source}: cannot read as Parquet: {exc}") from None


def _read_labelled(
    reader: Callable[..., tuple[pd.DataFrame, Any]], name: str
) -> Callable[[Path], tuple[pd.DataFrame, _ValueLabels, _UserMissing]]:
    def read(source: Path) -> tuple[pd.DataFrame, _ValueLabels, _UserMissing]:
        try:
            df, meta = reader(source, user_missing=True)
        except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, OSError) as exc:
            raise SurveyError(f"{source}: cannot read as {name}: {exc}") from None
        for column in df.columns:
            if pd.api.types.is_string_dtype(df[column]):
                df[column] = df[column].where(df[column] != "")  # SPSS/Stata blank text
        labels = {c: dict(m) for c, m in meta.variable_value_labels.items()}
        return df, labels, _user_missing(df, meta, labels)

    return read


def _user_missing(df: pd.DataFrame, meta: Any, labels: _ValueLabels) -> _UserMissing:
    """The labels of the values a file declares missing, per column.

    SPSS user-missing values (``missing_ranges``) and Stata's extended missing values
    ``.a``-``.z`` (read as the letters; one without a value label is labelled ``".a"``,
    so that it reads as Stata writes it).
    """
    out: _UserMissing = {}
    for column, letters in dict(getattr(meta, "missing_user_values", None) or {}).items():
        if column not in df.columns:
            continue
        named = labels.setdefault(column, {})
        for letter in letters:
            if isinstance(letter, str):
                label = named.setdefault(letter, f".{letter}")
                out.setdefault(column, set()).add(_label(label))
    ranges = dict(getattr(meta, "missing_ranges", None) or {})
    for column, spans in ranges.items():
        if column not in df.columns:
            continue
        values = pd.Series(df[column]).dropna().unique()
        for span in spans:
            lo, hi = span["lo"], span["hi"]
            for value in values:
                try:
                    inside = lo <= value <= hi
                except TypeError:
                    inside = value == lo
                if inside:
                    label = labels.get(column, {}).get(value, value)
                    out.setdefault(column, set()).add(_label(label))
    return out


_READERS: Final[dict[str, Callable[[Path], tuple[pd.DataFrame, _ValueLabels, _UserMissing]]]] = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "sav": _read_labelled(pyreadstat.read_sav, "SPSS"),
    "dta": _read_labelled(pyreadstat.read_dta, "Stata"),
}


def _apply_value_labels(
    df: pd.DataFrame, value_labels: _ValueLabels, codebook: Codebook
) -> pd.DataFrame:
    """Replace labelled codes by their labels, as categoricals in the file's label order.

    Numeric variables, the weight and the id keep their codes.
    """
    keep_codes = {v.name for v in codebook if v.kind != "categorical"}
    for column, labels in value_labels.items():
        if column not in df.columns or column in keep_codes or not labels:
            continue
        raw = df[column]
        mapped = [labels.get(value, value) if not _is_blank(value) else np.nan for value in raw]
        values, _ = _as_labels(pd.Series(mapped, index=raw.index, dtype=object))
        declared = list(dict.fromkeys(labels.values()))
        unlabelled = [
            _label(value)
            for value in _sorted_values(pd.unique(raw.dropna()))
            if value not in labels
        ]
        categories = list(dict.fromkeys([*declared, *unlabelled]))
        df[column] = pd.Categorical(values, categories=categories)
    return df


# -- validation -----------------------------------------------------------------------
_Rows = Callable[[np.ndarray], str]


def _check_columns(df: pd.DataFrame, codebook: Codebook, where: str) -> None:
    absent = [name for name in codebook.names if name not in df.columns]
    if absent:
        described = f" in {codebook.source}" if codebook.source is not None else ""
        raise SurveyError(
            f"{where}: column(s) {format_values(absent)} declared in the codebook{described} "
            f"are not in the data; columns present: {format_values(list(df.columns), limit=30)}. "
            "Fix the names in the codebook or in the data."
        )


def _check_outcome(values: pd.Series, v: Variable, where: str, rows: _Rows) -> None:
    blank = values.isna().to_numpy()
    if blank.all():
        raise SurveyError(
            f"{where}: outcome column {v.name!r} is empty (every cell is blank); "
            "remove it from the codebook or fill it in."
        )
    _check_declared(values, v, v.categories, where)
    if blank.any():
        example = v.missing[0] if v.missing else "dont_know"
        raise SurveyError(
            f"{where}: outcome column {v.name!r} has {int(blank.sum())} blank cell(s) at "
            f"{rows(blank)}; code them explicitly (e.g. as {example!r}) and list that code "
            f"under 'missing' for {v.name!r} in the codebook."
        )
    if values.isin(v.missing).all():
        raise SurveyError(
            f"{where}: outcome column {v.name!r} has no substantive answers: every row is "
            f"coded missing ({format_values(v.missing)}). Remove it from the codebook or "
            "check its levels."
        )


def _check_category(values: pd.Series, v: Variable, where: str, rows: _Rows) -> None:
    if v.levels is not None:
        _check_declared(values, v, v.levels, where)
    blank = values.isna().to_numpy()
    if blank.any():
        raise SurveyError(
            f"{where}: {v.role} column {v.name!r} has {int(blank.sum())} blank cell(s) at "
            f"{rows(blank)}; every respondent needs a {v.role} level. Fill them in (for "
            "example with an explicit 'unknown' level declared under 'levels') or drop "
            "those rows."
        )


def _check_declared(values: pd.Series, v: Variable, allowed: Sequence[str], where: str) -> None:
    observed = pd.unique(values.dropna())
    unknown = [value for value in observed if value not in set(allowed)]
    if not unknown:
        return
    if v.role == "outcome":
        declared = f"declared levels: {format_values(v.levels or ())}; missing codes: " + (
            format_values(v.missing) if v.missing else "none"
        )
        fix = "add them to its 'levels' or 'missing'"
    else:
        declared = f"declared levels: {format_values(v.levels or ())}"
        fix = "add them to its 'levels'"
    raise SurveyError(
        f"{where}: column {v.name!r} has values not declared in the codebook: "
        f"{format_values(unknown)} ({declared}). In the codebook, {fix} for {v.name!r}, "
        "or recode the data."
    )


def _numeric_values(column: pd.Series, v: Variable, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.astype(np.float64)
    as_object = column.astype(object)
    numbers = pd.to_numeric(as_object, errors="coerce")
    bad = as_object.notna() & numbers.isna()
    if bad.any():
        raise SurveyError(
            f"{where}: {v.role} column {v.name!r} should be numeric but holds "
            f"{format_values(pd.unique(as_object[bad]))}; recode them as numbers"
            + (" or declare the column as categorical." if v.role == "predictor" else ".")
        )
    return numbers.astype(np.float64)


def _numeric_column(column: pd.Series, v: Variable, where: str, rows: _Rows) -> pd.Series:
    numbers = _numeric_values(column, v, where)
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        raise SurveyError(
            f"{where}: numeric {v.role} column {v.name!r} has blank or infinite values at "
            f"{rows(bad)}; fill them in or drop those rows."
        )
    return numbers


def _weight_column(column: pd.Series, v: Variable, where: str, rows: _Rows) -> pd.Series:
    weights = _numeric_values(column, v, where)
    array = weights.to_numpy()
    bad = ~np.isfinite(array)
    if bad.any():
        raise SurveyError(
            f"{where}: weight column {v.name!r} has blank or infinite weights at {rows(bad)}; "
            "every respondent needs a finite weight (use 0 to exclude one)."
        )
    negative = array < 0
    if negative.any():
        raise SurveyError(
            f"{where}: weight column {v.name!r} has negative weights "
            f"{format_values(array[negative].tolist())} at {rows(negative)}; "
            "weights must be >= 0."
        )
    if array.sum() <= 0:
        raise SurveyError(
            f"{where}: weight column {v.name!r} sums to zero; at least one respondent needs "
            "a positive weight."
        )
    return weights


def _design_labels(column: pd.Series, role: str, name: str, where: str, rows: _Rows) -> pd.Series:
    """A strata or cluster column as text labels (a Categorical), with no blank cell.

    The labels are those of :func:`_as_labels`, computed once per distinct value
    (a design column has few values and many rows).
    """
    codes, uniques = pd.factorize(column, sort=False)
    blank = codes < 0
    if blank.any():
        raise SurveyError(
            f"{where}: {role} column {name!r} has {int(blank.sum())} blank cell(s) at "
            f"{rows(blank)}; every respondent needs a {role} label. Fill them in or drop "
            "those rows."
        )
    distinct = pd.Series(np.asarray(uniques, dtype=object), dtype=column.dtype)
    labels, natural = _as_labels(distinct)
    position = pd.Index(natural).get_indexer(pd.Index(labels))
    categorical = pd.Categorical.from_codes(list(position[codes]), categories=pd.Index(natural))
    return pd.Series(categorical, index=column.index)


def _fpc_column(
    column: pd.Series,
    strata: pd.Series | None,
    psus: pd.Series | None,
    name: str,
    where: str,
    rows: _Rows,
) -> pd.Series:
    """The fpc as float64: positive, one value per stratum, counts or fractions, not both."""
    numbers = _numeric_values(column, Variable(name, "fpc"), where)
    array = numbers.to_numpy()
    bad = ~np.isfinite(array)
    if bad.any():
        raise SurveyError(
            f"{where}: fpc column {name!r} has blank or infinite values at {rows(bad)}; give "
            "every row its stratum's population count of PSUs (or sampling fraction)."
        )
    if (array <= 0).any():
        raise SurveyError(
            f"{where}: fpc column {name!r} has values <= 0 "
            f"({format_values(pd.unique(array[array <= 0]).tolist())}) at {rows(array <= 0)}; "
            "an fpc is a population count of PSUs (> 1) or a sampling fraction (in (0, 1])."
        )
    if (array < 1).any() and (array > 1).any():
        raise SurveyError(
            f"{where}: fpc column {name!r} mixes sampling fractions (values < 1, e.g. "
            f"{array[array < 1][0]:g}) with population counts (values > 1, e.g. "
            f"{array[array > 1][0]:g}); give every stratum the same kind."
        )
    groups = strata if strata is not None else pd.Series("<all rows>", index=column.index)
    per_stratum = pd.DataFrame({"stratum": groups.astype(str), "fpc": array})
    _check_fpc_per_stratum(per_stratum, psus, name, where)
    return numbers


def _check_fpc_per_stratum(
    per_stratum: pd.DataFrame, psus: pd.Series | None, name: str, where: str
) -> None:
    """One fpc per stratum, and a count no smaller than the stratum's sampled PSUs."""
    grouped = per_stratum.groupby("stratum", sort=True)["fpc"]
    varying = grouped.min()[grouped.min() < grouped.max()]
    if len(varying):
        shown = "; ".join(
            f"{stratum!r}: {format_values(sorted(set(grouped.get_group(stratum).tolist())))}"
            for stratum in list(varying.index)[:5]
        )
        raise SurveyError(
            f"{where}: fpc column {name!r} varies within {len(varying)} stratum(s) ({shown}); "
            "the fpc describes a stratum, so give all its rows the same value."
        )
    fpc = grouped.first()
    if (fpc <= 1).all():
        return  # sampling fractions: any value in (0, 1] is possible
    ids = psus.astype(str).to_numpy() if psus is not None else np.arange(len(per_stratum))
    sampled = pd.Series(ids).groupby(per_stratum["stratum"].to_numpy()).nunique()
    sampled = sampled.reindex(fpc.index)
    short = fpc < sampled
    if short.any():
        pairs = [
            f"{stratum!r}: fpc {value:g} < {count} sampled PSUs"
            for stratum, value, count in zip(fpc.index, fpc, sampled, strict=True)
            if value < count
        ]
        shown = "; ".join(pairs[:5])
        raise SurveyError(
            f"{where}: fpc column {name!r} counts fewer population PSUs than the sample holds "
            f"in {int(short.sum())} stratum(s) ({shown}); the fpc is the number of PSUs in the "
            "stratum's population (or the sampling fraction, a value <= 1)."
        )


def _id_column(column: pd.Series, v: Variable, where: str) -> pd.Series:
    if v.kind == "numeric":
        column = _numeric_values(column, v, where)
    blank = column.isna().to_numpy()
    if blank.any():
        raise SurveyError(
            f"{where}: id column {v.name!r} has {int(blank.sum())} blank id(s) at "
            f"{_rows(column.to_frame(), blank, None)}; every respondent needs an id."
        )
    counts = column.value_counts(sort=False)
    repeated = counts[counts > 1]
    if len(repeated):
        shown = ", ".join(f"{_show(i)} ({n} rows)" for i, n in list(repeated.items())[:10])
        more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
        raise SurveyError(
            f"{where}: id column {v.name!r} has {len(repeated)} duplicated id(s): "
            f"{shown}{more}; each respondent needs a unique id (remove duplicated rows or "
            "fix the ids)."
        )
    return column


def _rows(data: pd.DataFrame, mask: np.ndarray, id_name: str | None) -> str:
    """Name the rows where ``mask`` holds: by respondent id if there is one."""
    if id_name is not None:
        return f"{id_name} {format_values(data.loc[mask, id_name].tolist())}"
    return f"rows {format_values(np.flatnonzero(mask).tolist())} (0-based)"


# -- labels ---------------------------------------------------------------------------
def _as_labels(column: pd.Series) -> tuple[pd.Series, tuple[str, ...]]:
    """Turn a column into text labels (blank cells stay NaN) and its natural level order.

    The natural order is the categories' order for a categorical column, the
    numeric order for numbers (or text that all reads as numbers), and the
    sorted order of the text otherwise.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = list(column.cat.categories)
        natural = [_label(c) for c in categories]
        codes = column.cat.codes.to_numpy()
        values = [natural[c] if c >= 0 else np.nan for c in codes]
        return pd.Series(values, index=column.index, dtype=object), tuple(dict.fromkeys(natural))
    values = [np.nan if _is_blank(x) else _label(x) for x in column]
    series = pd.Series(values, index=column.index, dtype=object)
    if pd.api.types.is_numeric_dtype(column):
        natural = [_label(x) for x in _sorted_values(pd.unique(column.dropna()))]
    else:
        natural = _sorted_labels(pd.unique(series.dropna()))
    return series, tuple(dict.fromkeys(natural))


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    items = list(values)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=str)


def _sorted_labels(labels: Iterable[str]) -> list[str]:
    """Sort labels numerically when they all read as numbers, else as text."""
    items = list(labels)
    try:
        return sorted(items, key=float)
    except ValueError:
        return sorted(items)


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _name(variable: Variable | None) -> str | None:
    return variable.name if variable is not None else None
