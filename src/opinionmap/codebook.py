"""The codebook: which survey column plays which role, with its levels and missing codes.

A codebook is the contract between a survey file and the rest of the pipeline.
It says which columns are outcomes (the questions being modelled), predictors,
the area (the level estimates are poststratified to), the weight and the
respondent id; the sampling design (strata, cluster and finite population
correction), used by the design-based direct estimates; the ordered substantive
levels of each categorical variable; and which codes mean "no answer"
(``"dont_know"``, ``"refused"``) with what to do with them.

Codebooks live beside the data as ``<stem>.codebook.toml``::

    [survey]
    title = "Kazakhstan 2020"         # optional, free text
    missing = ["dont_know"]           # optional default missing codes of every outcome

    [variables.respondent_id]
    role = "id"

    [variables.region]
    role = "area"
    levels = ["KZ-AKM", "KZ-AKT"]     # optional for area/predictor: inferred from the data

    [variables.urban_share]
    role = "predictor"
    kind = "numeric"

    [variables.age]
    role = "predictor"
    levels = ["18-29", "30-44", "45-59", "60+"]
    ordered = true                    # optional: the levels' order means something
                                      # (needed for a random-walk prior, rw1 / rw2)

    [variables.weight]
    role = "weight"

    [variables.district]
    role = "strata"                   # optional: the design's strata,
    [variables.village]
    role = "cluster"                  # its primary sampling units (PSUs)
    [variables.villages_in_district]
    role = "fpc"                      # and the population count of PSUs per stratum
                                      # (or the sampling fraction, values <= 1)

    [variables.presence_russia]
    role = "outcome"
    label = "Desired presence of Russia"
    levels = ["more", "same", "less"] # response order
    missing = ["dont_know"]           # overrides [survey].missing
    missing_policy = "drop"           # or "keep"

    [recode.region]                   # optional: the frame's labels -> the survey's,
    "Almaty city" = "Almaty"          # applied when a frame is read for this survey
                                      # (`opinionmap frame check` suggests them)

The file is parsed as data with :mod:`tomllib`; nothing in it is evaluated.
Levels and missing codes are text: TOML integers are accepted and read as their
decimal text (``1`` -> ``"1"``), because survey values are compared as labels.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, cast

import tomli_w

from opinionmap._io import atomic_path
from opinionmap.errors import CodebookError, check_keys, format_values

__all__ = [
    "DESIGN_ROLES",
    "KINDS",
    "MISSING_POLICIES",
    "ROLES",
    "Codebook",
    "Variable",
    "read_codebook",
]

ROLES: Final = ("outcome", "predictor", "area", "weight", "id", "strata", "cluster", "fpc")
"""Roles a column can play."""

DESIGN_ROLES: Final = ("strata", "cluster", "fpc")
"""Roles describing the sampling design (used by the design-based direct estimates)."""

KINDS: Final = ("categorical", "numeric", "any")
"""Kinds of variable; ``"any"`` (kept as read) is for ids only."""

MISSING_POLICIES: Final = ("drop", "keep")
"""What to do with an outcome's missing codes when it is modelled."""

# Kinds each role accepts; the first is the default.
_ROLE_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "outcome": ("categorical",),
    "predictor": ("categorical", "numeric"),
    "area": ("categorical",),
    "weight": ("numeric",),
    "id": ("any", "numeric"),
    # design labels: read as text, any number of levels, never declared
    "strata": ("categorical",),
    "cluster": ("categorical",),
    "fpc": ("numeric",),
}

# TOML keys each role accepts in its [variables.<name>] table.
_ROLE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "outcome": ("role", "label", "kind", "levels", "missing", "missing_policy"),
    "predictor": ("role", "label", "kind", "levels", "ordered"),
    "area": ("role", "label", "kind", "levels"),
    "weight": ("role", "label", "kind"),
    "id": ("role", "label", "kind"),
    "strata": ("role", "label", "kind"),
    "cluster": ("role", "label", "kind"),
    "fpc": ("role", "label", "kind"),
}
_VARIABLE_KEYS: Final = ("role", "label", "kind", "levels", "ordered", "missing", "missing_policy")
_TOP_KEYS: Final = ("survey", "variables", "recode")
_SURVEY_KEYS: Final = ("title", "missing")
_SINGLE_ROLES: Final = ("area", "weight", "id", "strata", "cluster", "fpc")


@dataclass(frozen=True)
class Variable:
    """One column of a survey and the role it plays.

    Parameters
    ----------
    name
        Column name in the data.
    role
        One of ``"outcome"``, ``"predictor"``, ``"area"``, ``"weight"``, ``"id"``,
        or a design role: ``"strata"``, ``"cluster"`` (the primary sampling unit)
        or ``"fpc"`` (finite population correction).
    levels
        Ordered substantive levels of a categorical variable (for an outcome, the
        response order). Required for outcomes; for predictors and the area,
        ``None`` means "infer from the data".
    missing
        Outcome codes that mean no answer (``("dont_know", "refused")``).
    missing_policy
        ``"drop"``: rows coded missing are dropped when the outcome is modelled;
        ``"keep"``: each missing code becomes a category after ``levels``.
    kind
        ``"categorical"`` or ``"numeric"`` (predictors); weights and the fpc are
        numeric, strata and clusters categorical (labels read as text, never
        declared), ids ``"any"`` (kept as read) or ``"numeric"``. ``None`` picks
        the role's default.
    label
        Free-text description (the question wording).
    ordered
        Whether a categorical predictor's levels are in a meaningful order (age
        bands, education), which a random-walk prior (``rw1``, ``rw2``) needs.

    Raises
    ------
    CodebookError
        If the role, kind or policy is unknown, or the levels and missing codes
        are inconsistent.

    Examples
    --------
    >>> v = Variable("presence", "outcome", levels=["more", "same", "less"],
    ...              missing=["dont_know"])
    >>> v.levels, v.missing, v.kind
    (('more', 'same', 'less'), ('dont_know',), 'categorical')
    """

    name: str
    role: str
    levels: tuple[str, ...] | None = None
    missing: tuple[str, ...] = ()
    missing_policy: str = "drop"
    kind: str | None = None
    label: str | None = None
    ordered: bool = False

    def __post_init__(self) -> None:
        where = f"variable {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise CodebookError(f"{where}: a variable name must be non-empty text.")
        if self.role not in ROLES:
            raise CodebookError(
                f"{where}: unknown role {self.role!r} (key 'role'); "
                f"allowed roles: {format_values(ROLES)}."
            )
        kinds = _ROLE_KINDS[self.role]
        kind = kinds[0] if self.kind is None else self.kind
        if kind not in kinds:
            raise CodebookError(
                f"{where}: kind {kind!r} (key 'kind') is not allowed for role {self.role!r}; "
                f"allowed kinds: {format_values(kinds)}."
            )
        object.__setattr__(self, "kind", kind)
        if self.missing_policy not in MISSING_POLICIES:
            raise CodebookError(
                f"{where}: unknown missing_policy {self.missing_policy!r} (key 'missing_policy'); "
                f"allowed: {format_values(MISSING_POLICIES)}."
            )
        levels = None if self.levels is None else _labels(self.levels, where, "levels")
        missing = _labels(self.missing, where, "missing")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "missing", missing)
        if levels is not None and kind != "categorical":
            raise CodebookError(
                f"{where}: key 'levels' applies to categorical variables only, "
                f"not to a {kind} {self.role}; remove it."
            )
        if levels is not None and self.role in ("strata", "cluster"):
            raise CodebookError(
                f"{where}: key 'levels' does not apply to a {self.role} column: its labels "
                "are read from the data; remove it."
            )
        self._check_ordered(where)
        if self.role == "outcome" and not levels:
            raise CodebookError(
                f"{where}: an outcome needs its levels in response order (key 'levels'), "
                'e.g. levels = ["more", "same", "less"].'
            )
        if missing and self.role != "outcome":
            raise CodebookError(
                f"{where}: key 'missing' applies to outcomes only, not to a {self.role}; "
                "declare those codes as levels or recode them in the data."
            )
        both = [m for m in missing if levels is not None and m in levels]
        if both:
            raise CodebookError(
                f"{where}: {format_values(both)} listed both under 'levels' and under "
                "'missing'; a code is either a substantive level or a missing code."
            )

    def _check_ordered(self, where: str) -> None:
        if not isinstance(self.ordered, bool):
            raise CodebookError(f"{where}: key 'ordered' must be true or false.")
        if self.ordered and (self.kind != "categorical" or self.role != "predictor"):
            raise CodebookError(
                f"{where}: key 'ordered' applies to categorical predictors only; remove it."
            )
        if self.ordered and self.levels is None:
            raise CodebookError(
                f"{where}: an ordered predictor needs its levels in order (key 'levels'), "
                'e.g. levels = ["18-29", "30-44", "45-59", "60+"].'
            )

    @property
    def categories(self) -> tuple[str, ...]:
        """Levels followed by the missing codes: every value the column may hold."""
        return (*(self.levels or ()), *self.missing)

    def to_dict(self) -> dict[str, object]:
        """The variable's ``[variables.<name>]`` table, without default values."""
        out: dict[str, Any] = {"role": self.role}
        if self.label is not None:
            out["label"] = self.label
        if self.kind != _ROLE_KINDS[self.role][0]:
            out["kind"] = self.kind
        if self.levels is not None:
            out["levels"] = list(self.levels)
        if self.ordered:
            out["ordered"] = True
        if self.role == "outcome":
            out["missing"] = list(self.missing)
            out["missing_policy"] = self.missing_policy
        return out


@dataclass(frozen=True)
class Codebook:
    """The variables of a survey, by role.

    Parameters
    ----------
    variables
        One :class:`Variable` per declared column, in order.
    source
        The file the codebook was read from, if any (named in error messages;
        ignored when comparing codebooks).
    title
        Free-text title (``[survey].title``).
    recode
        ``{column: {frame label: survey label}}`` (``[recode.<column>]``): how a
        census frame's labels map onto this survey's, applied when a frame is read
        for it (``read_frame(..., recode=codebook.recode)``; ``opinionmap run``).

    Raises
    ------
    CodebookError
        If a name is declared twice or more than one area, weight, id, strata,
        cluster or fpc column is declared.

    Examples
    --------
    >>> cb = Codebook.from_roles(
    ...     outcomes={"presence": ["more", "same", "less"]},
    ...     predictors=["sex"], area="region", missing=["dont_know"])
    >>> cb.names
    ('presence', 'sex', 'region')
    >>> cb["presence"].missing
    ('dont_know',)
    >>> cb.area.name
    'region'
    """

    variables: tuple[Variable, ...]
    source: Path | None = field(default=None, compare=False)
    title: str | None = None
    recode: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        where = _where(self.source)
        object.__setattr__(self, "recode", _recode_table(self.recode, self.variables, where))
        seen: set[str] = set()
        for v in self.variables:
            if not isinstance(v, Variable):
                raise CodebookError(f"{where}: expected Variable objects, got {v!r}.")
            if v.name in seen:
                raise CodebookError(f"{where}: variable {v.name!r} is declared twice.")
            seen.add(v.name)
        for role in _SINGLE_ROLES:
            names = [v.name for v in self.variables if v.role == role]
            if len(names) > 1:
                raise CodebookError(
                    f"{where}: more than one {role} variable ({format_values(names)}, key "
                    f"'role'); a survey has at most one {role}: give the others another role."
                )

    # -- access -----------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Names of every declared variable, in order."""
        return tuple(v.name for v in self.variables)

    @property
    def outcomes(self) -> tuple[Variable, ...]:
        """The outcome variables."""
        return self._by_role("outcome")

    @property
    def predictors(self) -> tuple[Variable, ...]:
        """The predictor variables."""
        return self._by_role("predictor")

    @property
    def area(self) -> Variable | None:
        """The area variable, if declared."""
        return self._single("area")

    @property
    def weight(self) -> Variable | None:
        """The weight variable, if declared."""
        return self._single("weight")

    @property
    def id(self) -> Variable | None:
        """The respondent-id variable, if declared."""
        return self._single("id")

    @property
    def strata(self) -> Variable | None:
        """The design's strata variable, if declared."""
        return self._single("strata")

    @property
    def cluster(self) -> Variable | None:
        """The design's cluster (primary sampling unit) variable, if declared."""
        return self._single("cluster")

    @property
    def fpc(self) -> Variable | None:
        """The design's finite population correction variable, if declared."""
        return self._single("fpc")

    def __getitem__(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise CodebookError(
            f"{_where(self.source)}: no variable {name!r}; declared: {format_values(self.names)}."
        )

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[Variable]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def _by_role(self, role: str) -> tuple[Variable, ...]:
        return tuple(v for v in self.variables if v.role == role)

    def _single(self, role: str) -> Variable | None:
        found = self._by_role(role)
        return found[0] if found else None

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """The codebook as the nested dict of its TOML file.

        Examples
        --------
        >>> Codebook.from_roles(outcomes={"q": ["yes", "no"]}).to_dict()["variables"]["q"]
        {'role': 'outcome', 'levels': ['yes', 'no'], 'missing': [], 'missing_policy': 'drop'}
        """
        out: dict[str, Any] = {}
        if self.title is not None:
            out["survey"] = {"title": self.title}
        out["variables"] = {v.name: v.to_dict() for v in self.variables}
        if self.recode:
            out["recode"] = {c: dict(m) for c, m in self.recode.items()}
        return out

    def to_toml(self, path: str | os.PathLike[str]) -> Path:
        """Write the codebook as TOML, atomically; return the path."""
        target = Path(path)
        text = tomli_w.dumps(self.to_dict())
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return target

    @classmethod
    def from_dict(cls, d: Mapping[str, object], source: Path | None = None) -> Codebook:
        """Build a codebook from the nested dict of its TOML file.

        Parameters
        ----------
        d
            ``{"survey": {...}, "variables": {name: {...}}}``, as in the TOML file.
        source
            The file ``d`` was read from, named in error messages.

        Raises
        ------
        CodebookError
            Naming the file, the variable, the key and the allowed values.

        Examples
        --------
        >>> cb = Codebook.from_dict({"variables": {
        ...     "q": {"role": "outcome", "levels": ["yes", "no"]},
        ...     "region": {"role": "area"}}})
        >>> cb.area.name, cb["q"].levels
        ('region', ('yes', 'no'))
        """
        where = _where(source)
        if not isinstance(d, Mapping):
            raise CodebookError(f"{where}: expected a table, got {type(d).__name__}.")
        check_keys(d, _TOP_KEYS, where=where, context="at the top level", error=CodebookError)
        survey = d.get("survey", {})
        if not isinstance(survey, Mapping):
            raise CodebookError(f"{where}: [survey] must be a table.")
        check_keys(survey, _SURVEY_KEYS, where=where, context="in [survey]", error=CodebookError)
        title = survey.get("title")
        if title is not None and not isinstance(title, str):
            raise CodebookError(f"{where}: [survey] key 'title' must be text, got {title!r}.")
        try:
            default_missing = _labels(survey.get("missing", ()), "[survey]", "missing")
        except CodebookError as exc:
            raise CodebookError(f"{where}: {exc}") from None
        variables = d.get("variables")
        if not isinstance(variables, Mapping) or not variables:
            raise CodebookError(
                f"{where}: no variables declared; add one table per column, e.g. "
                '[variables.region] with role = "area".'
            )
        parsed: list[Variable] = []
        for name, spec in variables.items():
            vwhere = f"[variables.{name}]"
            if not isinstance(spec, Mapping):
                raise CodebookError(f"{where}: {vwhere} must be a table of keys.")
            check_keys(
                spec, _VARIABLE_KEYS, where=where, context=f"in {vwhere}", error=CodebookError
            )
            if "role" not in spec:
                raise CodebookError(
                    f"{where}: {vwhere} has no key 'role'; allowed roles: {format_values(ROLES)}."
                )
            role = spec["role"]
            if isinstance(role, str) and role in _ROLE_KEYS:
                extra = [k for k in spec if k not in _ROLE_KEYS[role]]
                if extra:
                    raise CodebookError(
                        f"{where}: {vwhere}: key(s) {format_values(extra)} do not apply to "
                        f"role {role!r}; keys for a {role}: {format_values(_ROLE_KEYS[role])}."
                    )
            missing = spec.get("missing", default_missing if role == "outcome" else ())
            try:
                parsed.append(
                    Variable(
                        name=str(name),
                        role=role,
                        levels=spec.get("levels"),
                        missing=missing,
                        missing_policy=spec.get("missing_policy", "drop"),
                        kind=spec.get("kind"),
                        label=_text(spec.get("label"), f"{vwhere} key 'label'"),
                        ordered=spec.get("ordered", False),
                    )
                )
            except CodebookError as exc:
                raise CodebookError(f"{where}: {exc}") from None
        # checked by the codebook itself, as every codebook's recode is
        recode = cast("Mapping[str, Mapping[str, str]]", d.get("recode", {}))
        return cls(tuple(parsed), source=source, title=title, recode=recode)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Codebook:
        """Read a codebook TOML file (see the module docstring for the format).

        Raises
        ------
        CodebookError
            If the file is missing, is not valid TOML, or breaks the format.
        """
        source = Path(path)
        try:
            with source.open("rb") as fh:
                d = tomllib.load(fh)
        except FileNotFoundError:
            raise CodebookError(f"{source}: codebook file not found.") from None
        except tomllib.TOMLDecodeError as exc:
            raise CodebookError(f"{source}: not valid TOML: {exc}.") from None
        return cls.from_dict(d, source=source)

    @classmethod
    def from_roles(
        cls,
        *,
        outcomes: Mapping[str, Sequence[str] | Mapping[str, object]],
        predictors: Sequence[str] | Mapping[str, Sequence[str] | Mapping[str, object] | None] = (),
        area: str | None = None,
        weight: str | None = None,
        id: str | None = None,
        strata: str | None = None,
        cluster: str | None = None,
        fpc: str | None = None,
        missing: Sequence[str] = (),
    ) -> Codebook:
        """Build a codebook from arguments instead of a file.

        Parameters
        ----------
        outcomes
            ``{name: levels}`` or ``{name: {"levels": ..., "missing": ...,
            "missing_policy": ..., "label": ...}}``.
        predictors
            Names (categorical, levels inferred from the data), or ``{name: levels}``,
            ``{name: None}`` or ``{name: {"kind": "numeric"}}``.
        area, weight, id
            Column names, if the survey has them.
        strata, cluster, fpc
            The sampling design's columns, if the survey has them: strata, the
            primary sampling unit, and the finite population correction (the
            population count of PSUs in each stratum, or the sampling fraction).
        missing
            Default missing codes of every outcome that does not give its own.

        Examples
        --------
        >>> cb = Codebook.from_roles(
        ...     outcomes={"q": {"levels": ["yes", "no"], "missing_policy": "keep"}},
        ...     predictors={"sex": ["male", "female"], "age": {"kind": "numeric"}},
        ...     weight="w", missing=["refused"])
        >>> [(v.name, v.role, v.kind) for v in cb]  # doctest: +NORMALIZE_WHITESPACE
        [('q', 'outcome', 'categorical'), ('sex', 'predictor', 'categorical'),
         ('age', 'predictor', 'numeric'), ('w', 'weight', 'numeric')]
        >>> design = Codebook.from_roles(outcomes={"q": ["yes", "no"]}, strata="district",
        ...                              cluster="village", fpc="n_villages")
        >>> design.strata.name, design.cluster.name, design.fpc.kind
        ('district', 'village', 'numeric')
        """
        if not isinstance(outcomes, Mapping):
            raise CodebookError(
                f"<arguments>: outcomes={outcomes!r} names the outcomes without their levels; "
                "give {name: levels}, or read the file with read_survey(path, outcomes=[...]), "
                "which drafts the levels and missing codes from the data."
            )
        variables: dict[str, dict[str, Any]] = {}

        def add(name: str, role: str, entry: Mapping[str, Any]) -> None:
            if name in variables:
                raise CodebookError(
                    f"<arguments>: {name!r} is given two roles "
                    f"({variables[name]['role']} and {role}); give each column one role."
                )
            variables[name] = {**entry, "role": role}

        for name, spec in outcomes.items():
            add(name, "outcome", spec if isinstance(spec, Mapping) else {"levels": list(spec)})
        if isinstance(predictors, Mapping):
            for name, pspec in predictors.items():
                if pspec is None:
                    add(name, "predictor", {})
                elif isinstance(pspec, Mapping):
                    add(name, "predictor", pspec)
                else:
                    add(name, "predictor", {"levels": list(pspec)})
        else:
            for name in [predictors] if isinstance(predictors, str) else predictors:
                add(name, "predictor", {})
        singles = (
            ("area", area),
            ("weight", weight),
            ("id", id),
            ("strata", strata),
            ("cluster", cluster),
            ("fpc", fpc),
        )
        for role, column in singles:
            if column is not None:
                add(column, role, {})
        return cls.from_dict({"survey": {"missing": list(missing)}, "variables": variables})

    def with_levels(self, levels: Mapping[str, Sequence[str]]) -> Codebook:
        """Return a copy with the levels of some categorical variables set.

        Used to record levels inferred from the data, so that later steps see
        every categorical variable's full, ordered levels.
        """
        variables = tuple(
            replace(v, levels=tuple(levels[v.name])) if v.name in levels else v
            for v in self.variables
        )
        return replace(self, variables=variables)


def read_codebook(path: str | os.PathLike[str]) -> Codebook:
    r"""Read a codebook TOML file; the same as :meth:`Codebook.from_toml`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.codebook.toml"
    >>> _ = path.write_text('[variables.q]\nrole = "outcome"\nlevels = ["yes", "no"]\n')
    >>> read_codebook(path)["q"].levels
    ('yes', 'no')
    """
    return Codebook.from_toml(path)


# -- helpers --------------------------------------------------------------------------
def _recode_table(
    recode: Mapping[str, Mapping[str, str]], variables: tuple[Variable, ...], where: str
) -> dict[str, dict[str, str]]:
    """``[recode]`` checked: declared categorical columns, text labels, known targets."""
    if not isinstance(recode, Mapping):
        raise CodebookError(
            f"{where}: [recode] must hold one table per column, e.g. [recode.region] with "
            '"Almaty city" = "Almaty" (frame label = survey label).'
        )
    declared = {v.name: v for v in variables}
    out: dict[str, dict[str, str]] = {}
    for column, mapping in recode.items():
        variable = declared.get(column)
        if variable is None:
            raise CodebookError(
                f"{where}: [recode.{column}] names a column the codebook does not declare "
                f"(variables: {format_values(list(declared))})."
            )
        if not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise CodebookError(
                f'{where}: [recode.{column}] must map text to text: "frame label" = '
                f'"survey label"; got {mapping!r}.'
            )
        levels = variable.levels
        unknown = [v for v in mapping.values() if levels and v not in levels]
        if unknown:
            raise CodebookError(
                f"{where}: [recode.{column}] maps onto {format_values(unknown)}, not among "
                f"{column!r}'s levels {format_values(levels)}; the right-hand side is the "
                "survey's label."
            )
        out[str(column)] = dict(mapping)
    return out


def _where(source: Path | None) -> str:
    return str(source) if source is not None else "<codebook>"


def _labels(values: object, where: str, key: str) -> tuple[str, ...]:
    """Validate a list of levels or missing codes and return it as a tuple of text."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise CodebookError(
            f'{where}: key {key!r} must be a list of labels, e.g. ["a", "b"]; got {values!r}.'
        )
    out: list[str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise CodebookError(
                f"{where}: key {key!r} holds {v!r}; labels must be text (or whole numbers)."
            )
        out.append(str(v))
    repeated = sorted({v for v in out if out.count(v) > 1})
    if repeated:
        raise CodebookError(f"{where}: key {key!r} lists {format_values(repeated)} twice.")
    return tuple(out)


def _text(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise CodebookError(f"{where} must be text, got {value!r}.")
