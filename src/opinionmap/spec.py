"""Model specifications: formula, family, outcome levels and priors.

A :class:`ModelSpec` is an immutable description of a model; it is read from
and written to TOML and never evaluated as code. The formula uses the lme4 /
brms / Bambi syntax and is parsed by formulae's parser (which only tokenises;
nothing is evaluated)::

    formula = "presence_russia ~ 1 + sex + russian_share + (1 | age) + (1 | region)"
    family = "ordinal"
    data = "../data/kazakhstan/survey_2020.csv"
    [outcome]
    levels = ["less", "same", "more"]
    missing = ["dont_know"]
    [priors]
    fixed = { sigma = 2.5 }
    group_sd = { sigma = 1.0, region = 0.5 }   # optional: one term's own scale
    [covariates]                 # optional: area-level predictors, one row per area
    data = "../data/kazakhstan/region_covariates_2020.csv"
    by = "region"
    [sampling]                   # optional: the model's default draws, tune, chains
    draws = 2000

Supported terms: an intercept (``1``, dropped with ``0`` or ``-1``), fixed
effects of categorical or numeric columns, and varying intercepts of a grouping
factor ``(1 | g)`` or of an interaction of grouping factors ``(1 | a:b)``. A
varying intercept of one factor may have a structured prior (``[priors.structure]``:
a random walk over ordered levels or BYM2 over areas; :mod:`opinionmap.structure`). In
a categorical model, ``(1 | ID | g)`` (brms's syntax) draws a term's effects on the
categories jointly, with an LKJ prior on their correlation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import tomli_w

from opinionmap._io import atomic_path
from opinionmap.covariates import AreaCovariates, CovariateError
from opinionmap.errors import OpinionmapError, check_keys, format_values
from opinionmap.structure import AdjacencyError, Structure

__all__ = [
    "ADAPTATIONS",
    "AUTO_ADAPTATION",
    "DEFAULT_SAMPLING",
    "FAMILIES",
    "LOW_RANK_MAX_PARAMETERS",
    "SAMPLERS",
    "SAMPLING_KEYS",
    "FixedTerm",
    "GroupTerm",
    "ModelSpec",
    "Priors",
    "Sampling",
    "SpecError",
    "read_spec",
    "read_spec_file",
]

Family = Literal["categorical", "ordinal", "bernoulli"]
FAMILIES: tuple[str, ...] = ("categorical", "ordinal", "bernoulli")
Link = Literal["logit", "probit"]
LINKS: tuple[str, ...] = ("logit", "probit")
Parameterization = Literal["auto", "centered", "noncentered"]
PARAMETERIZATIONS: tuple[str, ...] = ("auto", "centered", "noncentered")

_SPEC_KEYS = (
    "formula",
    "family",
    "link",
    "data",
    "name",
    "description",
    "outcome",
    "priors",
    "covariates",
    "sampling",
)
_OUTCOME_KEYS = ("levels", "missing", "merge_below", "other", "hurdle")
_PRIOR_KEYS = ("intercept", "fixed", "cutpoints", "group_sd", "parameterization", "structure")
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")
ADAPTATIONS: tuple[str, ...] = ("auto", "diag", "low_rank")
# "auto": nutpie's low-rank mass matrix for the families with one linear predictor, whose
# cutpoints or intercept and coefficients are correlated; diagonal for categorical models,
# whose many linear predictors make low-rank updates costly and did not mix better
# (benchmarks/bench_real_defaults.py; docs/model.md section 9)
# nutpie's mass matrix by family (docs/model.md section 9); others, hurdle models among them
# (two independent parts: a low-rank update costs more than it saves), "diag"
AUTO_ADAPTATION: dict[str, str] = {"ordinal": "low_rank", "bernoulli": "low_rank"}
#: "auto" takes the diagonal mass matrix for a model with more parameters than this
#: (Design.n_parameters), whatever its family: nutpie's low-rank updates grow with the
#: dimension and cost more than they save (docs/model.md section 9).
LOW_RANK_MAX_PARAMETERS = 100
SAMPLING_KEYS: tuple[str, ...] = (
    "draws",
    "tune",
    "chains",
    "cores",
    "sampler",
    "target_accept",
    "adaptation",
    "seed",
)
# opinionmap's sampler settings where neither the call nor the spec's [sampling] sets them;
# target_accept 0.95 rather than PyMC's 0.8, as rstanarm does for multilevel models
DEFAULT_SAMPLING: dict[str, Any] = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "sampler": "nutpie",
    "target_accept": 0.95,
    "adaptation": "auto",
}
_SAMPLING_MIN = {"draws": 1, "tune": 0, "chains": 1, "cores": 1, "seed": 0}


class SpecError(OpinionmapError):
    """A model specification is malformed."""


@dataclass(frozen=True)
class FixedTerm:
    """A population-level term: one column, or an interaction of columns (``a:b``)."""

    variables: tuple[str, ...]

    @property
    def name(self) -> str:
        """The term as written in the formula."""
        return ":".join(self.variables)


@dataclass(frozen=True)
class GroupTerm:
    """A varying intercept ``(1 | a)`` or ``(1 | a:b)``, with varying slopes if written so.

    ``correlated`` is the ID of brms's ``(1 | p | a)``: in a categorical model, the
    term's effects on the non-reference categories are drawn jointly, with an LKJ
    prior on their correlation (``None``: independently).

    ``slopes`` are the fixed-effect terms whose coefficients also vary by level,
    ``(1 + x | a)``; ``intercept`` is ``False`` for ``(0 + x | a)``; ``uncorrelated``
    is lme4's ``||``: the term's coefficients are drawn independently rather than
    with an LKJ prior on their correlation.
    """

    factors: tuple[str, ...]
    correlated: str | None = None
    slopes: tuple[FixedTerm, ...] = ()
    intercept: bool = True
    uncorrelated: bool = False

    @property
    def name(self) -> str:
        """The grouping factor as written in the formula, e.g. ``region:ethnicity``."""
        return ":".join(self.factors)

    @property
    def written(self) -> str:
        """The term as lme4 writes it, e.g. ``(1 + settlement | region)``."""
        parts = ["1" if self.intercept else "0", *(t.name for t in self.slopes)]
        bar = "||" if self.uncorrelated else "|"
        middle = f" {self.correlated} |" if self.correlated else ""
        return f"({' + '.join(parts)} {bar}{middle} {self.name})"


@dataclass(frozen=True)
class Priors:
    """Prior scales (all normal or half-normal, on the logit scale).

    Defaults (see the README's "Model defaults"):

    - ``intercept``: Normal(0, 2.5) for each non-reference category's intercept
      (categorical) or the log-odds (bernoulli).
    - ``fixed``: Normal(0, 2.5 / sd(x)) for each fixed-effect column: 2.5 on the
      scale of a one-standard-deviation change of the column (``autoscale``);
      with ``autoscale = false`` the scale is ``sigma`` as given. ``fixed_by``
      sets the scale of single coefficients by their labels (``sex[female]``), in
      the same units.
    - ``cutpoints``: Normal(0, 2.5) on each ordered cutpoint (ordinal).
    - ``group_sd``: HalfNormal(1) for the standard deviation of each varying
      intercept (per non-reference category for categorical models); a main term
      and an interaction whose SDs trade off are sampled in polar coordinates with
      the same prior (:func:`opinionmap.model.sd_pairs`). ``group_sd_by`` sets the
      scale of single terms (``region``, ``region:ethnicity``).
    - ``parameterization``: per grouping factor, ``"auto"`` (partially non-centred,
      by how much the data pin each level down against a rough estimate of the
      term's SD: :func:`opinionmap.model.noncentering_weight`), ``"centered"`` or
      ``"noncentered"``.
    - ``structure``: per grouping factor, a structured prior for its varying
      intercept (:class:`opinionmap.structure.Structure`: ``rw1``, ``rw2`` or
      ``bym2``); exchangeable where none is given.
    """

    intercept: float = 2.5
    fixed: float = 2.5
    fixed_autoscale: bool = True
    cutpoints: float = 2.5
    group_sd: float = 1.0
    parameterization: tuple[tuple[str, Parameterization], ...] = ()
    structure: tuple[tuple[str, Structure], ...] = ()
    group_sd_by: tuple[tuple[str, float], ...] = ()
    fixed_by: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # floats, so that a spec written with integer scales (``Priors(fixed=100)``) has
        # the same canonical JSON, and hash, as itself read back from JSON or TOML
        for key in ("intercept", "fixed", "cutpoints", "group_sd"):
            value = getattr(self, key)
            if not _positive(value):
                raise SpecError(f"[priors] {key}.sigma must be a positive number, got {value!r}.")
            object.__setattr__(self, key, float(value))
        object.__setattr__(self, "fixed_autoscale", bool(self.fixed_autoscale))
        for key, table in (("group_sd", self.group_sd_by), ("fixed", self.fixed_by)):
            scales = dict(table)
            for name, value in scales.items():
                if not _positive(value):
                    raise SpecError(
                        f"[priors.{key}] {name} must be a positive number, got {value!r}."
                    )
            object.__setattr__(
                self, f"{key}_by", tuple(sorted((str(k), float(v)) for k, v in scales.items()))
            )
        chosen = dict(self.parameterization)
        for term, value in chosen.items():
            if value not in PARAMETERIZATIONS:
                raise SpecError(
                    f"[priors.parameterization] {term} = {value!r}; choose one of "
                    f"{format_values(PARAMETERIZATIONS)}."
                )
        object.__setattr__(self, "parameterization", tuple(sorted(chosen.items())))
        structured = dict(self.structure)
        for term, value in structured.items():
            if not isinstance(value, Structure):
                raise SpecError(f"[priors.structure] {term} must be a Structure, got {value!r}.")
            if term in chosen:
                raise SpecError(
                    f"[priors.parameterization] {term}: a term with a structured prior "
                    f"({value.kind}) is always sampled non-centred; remove its parameterization."
                )
        object.__setattr__(self, "structure", tuple(sorted(structured.items())))

    def group_sd_for(self, term: str) -> float:
        """The scale of a term's SD prior: its own (``group_sd_by``), else ``group_sd``."""
        return dict(self.group_sd_by).get(term, self.group_sd)

    def fixed_for(self, coef: str) -> float:
        """The scale of a coefficient's prior: its own (``fixed_by``), else ``fixed``."""
        return dict(self.fixed_by).get(coef, self.fixed)

    def structure_for(self, term: str) -> Structure | None:
        """The structured prior of a grouping factor (``None``: exchangeable)."""
        return dict(self.structure).get(term)

    def parameterization_for(self, term: str) -> Parameterization:
        """The parameterisation requested for a grouping factor (``"auto"`` if none)."""
        return dict(self.parameterization).get(term, "auto")

    def to_dict(self) -> dict[str, object]:
        """TOML-ready dict."""
        out: dict[str, Any] = {
            "intercept": {"sigma": self.intercept},
            "fixed": {
                "sigma": self.fixed,
                "autoscale": self.fixed_autoscale,
                **dict(self.fixed_by),
            },
            "cutpoints": {"sigma": self.cutpoints},
            "group_sd": {"sigma": self.group_sd, **dict(self.group_sd_by)},
        }
        if self.parameterization:
            out["parameterization"] = dict(self.parameterization)
        if self.structure:
            out["structure"] = {term: s.to_entry() for term, s in self.structure}
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, object], where: str, base: Path | None = None) -> Priors:
        """Parse the ``[priors]`` table, rejecting unknown keys and bad values.

        Relative adjacency paths in ``[priors.structure]`` are resolved against ``base``.
        """
        check_keys(raw, _PRIOR_KEYS, where=where, context="in [priors]", error=SpecError)
        kwargs: dict[str, Any] = {}
        for key in ("intercept", "fixed", "cutpoints", "group_sd"):
            if key in raw:
                kwargs.update(_prior_entry(raw[key], key, where))
        if "parameterization" in raw:
            table = _term_table(
                raw, "parameterization", where, '"auto", "centered" or "noncentered"'
            )
            kwargs["parameterization"] = tuple(table.items())
        if "structure" in raw:
            table = _term_table(
                raw, "structure", where, '"rw1", "rw2" or { type = "bym2", adjacency = "FILE.csv" }'
            )
            try:
                kwargs["structure"] = tuple(
                    (str(term), Structure.from_entry(str(term), entry, where, base))
                    for term, entry in table.items()
                )
            except AdjacencyError as exc:
                raise SpecError(str(exc)) from None
        try:
            return cls(**kwargs)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None


def _term_table(raw: Mapping[str, object], key: str, where: str, values: str) -> Mapping[str, Any]:
    """The ``[priors.<key>]`` table, which maps grouping factors to ``values``."""
    table = raw[key]
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: [priors.{key}] must map grouping factors to {values}.")
    return table


def _positive(value: object) -> bool:
    """Whether a prior scale is a positive, finite number."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _prior_entry(entry: Any, key: str, where: str) -> dict[str, Any]:
    """``Priors`` arguments from one ``[priors]`` entry: ``2.5`` or ``{ sigma = 2.5 }``.

    ``fixed`` and ``group_sd`` take further keys: scales of single coefficients
    (``"sex[female]" = 1.0``) or terms (``region = 0.5``).
    """
    if isinstance(entry, int | float) and not isinstance(entry, bool):
        entry = {"sigma": entry}
    if not isinstance(entry, Mapping):
        raise SpecError(f"{where}: [priors] {key} must be a table like {{ sigma = 2.5 }}.")
    allowed = ("sigma", "autoscale") if key == "fixed" else ("sigma",)
    if key not in ("fixed", "group_sd"):
        check_keys(entry, allowed, where=where, context=f"in [priors] {key}", error=SpecError)
    out: dict[str, Any] = {}
    named = {k: v for k, v in entry.items() if k not in allowed}
    if named:
        out[f"{key}_by"] = tuple(named.items())
    if "sigma" in entry:
        out[key] = entry["sigma"]
    if "autoscale" in entry:
        if not isinstance(entry["autoscale"], bool):
            raise SpecError(f"{where}: [priors] fixed.autoscale must be true or false.")
        out["fixed_autoscale"] = entry["autoscale"]
    return out


@dataclass(frozen=True)
class Sampling:
    """How to sample a model: the one sampler configuration of opinionmap.

    :func:`opinionmap.fit`, the command line, a spec's optional ``[sampling]``
    table and a fit's provenance attributes all use this object. ``None`` leaves a
    setting open; :meth:`merged` lays settings over others (the call's over the
    spec's) and :meth:`resolved` fills what is still open with the defaults in
    :data:`DEFAULT_SAMPLING`, resolved at call time: ``cores`` is
    ``min(chains, cpu count)`` and ``seed`` is drawn (and recorded in the fit).

    Attributes
    ----------
    draws, tune, chains
        Draws kept per chain, tuning steps per chain, chains (1,000, 1,000, 4).
    cores
        Chains run in parallel.
    sampler
        ``"nutpie"`` (default), ``"pymc"`` or ``"numpyro"``.
    target_accept
        NUTS target acceptance rate (0.95; raise it to 0.99 against divergences).
    adaptation
        nutpie's mass matrix: ``"auto"`` (default: ``"low_rank"`` for ordinal and
        bernoulli models, ``"diag"`` for categorical ones), ``"diag"`` or
        ``"low_rank"``.
    seed
        Random seed; the same seed and data give identical draws.

    Examples
    --------
    >>> s = Sampling(draws=2000).resolved()
    >>> s.draws, s.tune, s.chains, s.sampler
    (2000, 1000, 4, 'nutpie')
    >>> Sampling(draws=2000).merged(Sampling(draws=150, chains=2)).resolved().draws
    150
    """

    draws: int | None = None
    tune: int | None = None
    chains: int | None = None
    cores: int | None = None
    sampler: str | None = None
    target_accept: float | None = None
    adaptation: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for key, low in _SAMPLING_MIN.items():
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise SpecError(f"{key} must be an integer >= {low}, got {value!r}.")
        for key, choices in (("sampler", SAMPLERS), ("adaptation", ADAPTATIONS)):
            value = getattr(self, key)
            if value is not None and value not in choices:
                raise SpecError(f"unknown {key} {value!r}; choose one of {format_values(choices)}.")
        accept = self.target_accept
        if accept is not None:
            if (
                isinstance(accept, bool)
                or not isinstance(accept, int | float)
                or not 0.0 < accept < 1.0
            ):
                raise SpecError(f"target_accept must lie strictly between 0 and 1, got {accept!r}.")
            object.__setattr__(self, "target_accept", float(accept))
        if self.adaptation not in (None, "auto", "diag") and self.sampler not in (None, "nutpie"):
            raise SpecError(
                f"adaptation={self.adaptation!r} needs sampler='nutpie' (got {self.sampler!r})."
            )

    def merged(
        self, other: Sampling | None = None, **settings: int | float | str | None
    ) -> Sampling:
        """These settings with ``other``'s, then ``settings``, laid over them (``None`` keeps)."""
        values: dict[str, Any] = self.to_dict()
        for layer in (other.to_dict() if other is not None else {}, settings):
            values.update({k: v for k, v in layer.items() if v is not None})
        return Sampling(**values)

    def resolved(self, family: str | None = None, n_parameters: int | None = None) -> Sampling:
        """Every setting filled: these values, else the defaults (cores and seed at call time).

        With the model's ``family`` (``"hurdle"`` for a hurdle model),
        ``adaptation="auto"`` becomes the mass matrix for it (:data:`AUTO_ADAPTATION`;
        ``"diag"`` for others, for samplers other than nutpie, and for models of more
        than :data:`LOW_RANK_MAX_PARAMETERS` parameters, ``n_parameters``).
        """
        values: dict[str, Any] = {**DEFAULT_SAMPLING, **self.to_dict()}
        if values["adaptation"] == "auto" and family is not None:
            nutpie = values["sampler"] == "nutpie"
            small = n_parameters is None or n_parameters <= LOW_RANK_MAX_PARAMETERS
            chosen = AUTO_ADAPTATION.get(family, "diag")
            values["adaptation"] = chosen if nutpie and small else "diag"
        if values.get("cores") is None:
            values["cores"] = min(values["chains"], os.cpu_count() or 1)
        if values.get("seed") is None:
            values["seed"] = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        return Sampling(**values)

    def to_dict(self) -> dict[str, object]:
        """TOML-ready dict of the settings that are set."""
        return {k: getattr(self, k) for k in SAMPLING_KEYS if getattr(self, k) is not None}

    def to_attrs(self) -> dict[str, object]:
        """A fit's provenance attributes: ``opinionmap_sampling`` (JSON) and one per setting."""
        settings = json.dumps(self.to_dict(), sort_keys=True)
        attrs: dict[str, object] = {"opinionmap_sampling": settings}
        for key, value in self.to_dict().items():
            attrs["opinionmap_random_seed" if key == "seed" else f"opinionmap_{key}"] = value
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[Hashable, object]) -> Sampling:
        """The settings a fit was sampled with (inverse of :meth:`to_attrs`)."""
        return cls(**json.loads(str(attrs["opinionmap_sampling"])))

    @classmethod
    def from_dict(cls, raw: object, where: str) -> Sampling:
        """Parse the ``[sampling]`` table, rejecting unknown keys and bad values."""
        if not isinstance(raw, Mapping):
            raise SpecError(f"{where}: [sampling] must be a table like {{ draws = 2000 }}.")
        check_keys(raw, SAMPLING_KEYS, where=where, context="in [sampling]", error=SpecError)
        try:
            return cls(**raw)
        except SpecError as exc:
            raise SpecError(f"{where}: [sampling] {exc}") from None


@dataclass(frozen=True)
class ModelSpec:
    """An immutable model specification.

    Parameters
    ----------
    formula
        ``outcome ~ terms`` in lme4 syntax.
    family
        ``"categorical"``, ``"ordinal"`` or ``"bernoulli"``.
    levels
        The outcome's modelled levels: the order for ordinal (low to high); the
        first is the reference for categorical; for bernoulli the second level is
        the "success".
    missing
        Outcome codes dropped before fitting (e.g. ``("dont_know",)``); list a
        code in ``levels`` instead to model it as a category.
    priors
        Prior scales and structured priors; see :class:`Priors`.
    data
        Optional path to the survey file, relative to the spec file.
    name
        Optional short name (used in reports).
    covariates
        Optional area-level predictors joined onto the survey and the frame by
        area; see :mod:`opinionmap.covariates` (the ``[covariates]`` table).
    sampling
        The model's default draws, tune and chains; see :class:`Sampling`.
    link
        ``"logit"`` (default) or ``"probit"`` (ordinal and bernoulli models):
        ``P(y <= k) = F(cutpoint_k - eta)`` with ``F`` the logistic or the standard
        normal distribution function, as statsmodels' ``OrderedModel`` and brms write it.
    merge_below
        Categorical models: answers that fewer than this many respondents gave are
        modelled as one category, ``other`` (when two or more are that rare); the
        reference level is never merged. ``None`` (default): every level is its own
        category. The data are not changed: drop the setting to undo it.
    other
        The merged category's label (default ``"other"``).
    hurdle
        Ordinal models: the outcome code of a non-answer ("don't know") modelled by a
        hurdle: a respondent says it with a probability that has its own logistic
        regression on the same terms (parameters ``hu_*``), and otherwise gives an
        ordered answer. Estimates are then shares of all adults, the hurdle code the
        last category. ``None`` (default): no hurdle.

    Examples
    --------
    >>> spec = ModelSpec(
    ...     formula="vote ~ 1 + sex + (1 | region)",
    ...     family="categorical",
    ...     levels=("N", "Y", "U", "A"),
    ... )
    >>> spec.outcome, [t.name for t in spec.group_terms]
    ('vote', ['region'])
    """

    formula: str
    family: Family
    levels: tuple[str, ...]
    missing: tuple[str, ...] = ()
    priors: Priors = field(default_factory=Priors)
    data: Path | None = None
    name: str | None = None
    source: Path | None = field(default=None, compare=False)
    covariates: AreaCovariates | None = None
    sampling: Sampling = field(default_factory=Sampling)
    link: Link = "logit"
    merge_below: int | None = None
    other: str = "other"
    hurdle: str | None = None

    def __post_init__(self) -> None:
        where = str(self.source) if self.source else "<spec>"
        if self.family not in FAMILIES:
            raise SpecError(
                f"{where}: unknown family {self.family!r}; choose one of {format_values(FAMILIES)}."
            )
        if self.link not in LINKS:
            raise SpecError(
                f"{where}: unknown link {self.link!r}; choose one of {format_values(LINKS)}."
            )
        if self.link == "probit" and self.family == "categorical":
            raise SpecError(
                f"{where}: link 'probit' applies to ordinal and bernoulli models; a categorical "
                "model is a multinomial logit. Remove the link or change the family."
            )
        object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        object.__setattr__(self, "missing", tuple(str(v) for v in self.missing))
        if len(self.levels) < 2:
            raise SpecError(f"{where}: [outcome] levels needs at least two levels.")
        if len(set(self.levels)) != len(self.levels):
            raise SpecError(f"{where}: [outcome] levels lists a level twice: {self.levels}.")
        both = sorted(set(self.levels) & set(self.missing))
        if both:
            raise SpecError(
                f"{where}: {format_values(both)} listed both in [outcome] levels and missing; "
                "keep it in one (levels to model it as a category, missing to drop it)."
            )
        self._check_merge(where)
        self._check_hurdle(where)
        if self.family == "bernoulli" and len(self.levels) != 2:
            raise SpecError(
                f"{where}: family 'bernoulli' needs exactly two outcome levels (failure, success), "
                f"got {len(self.levels)}: {format_values(self.levels)}. Use 'categorical' or "
                "'ordinal' for more."
            )
        if self.family == "ordinal" and len(self.levels) < 3:
            raise SpecError(
                f"{where}: family 'ordinal' needs at least three ordered levels, got "
                f"{format_values(self.levels)}; use 'bernoulli' for two."
            )
        # parse now so a bad formula fails at construction
        outcome, _, _, groups = _parse_formula(self.formula, where)
        if outcome in self.variables:
            raise SpecError(
                f"{where}: the outcome {outcome!r} is also a predictor in {self.formula!r}; "
                "a model cannot explain a column by itself. Remove it from the right-hand side."
            )
        self._check_terms({g.name for g in groups}, where)
        if self.covariates is not None:
            unused = [c for c in self.covariates.columns if c not in self.variables]
            if unused:
                raise SpecError(
                    f"{where}: [covariates] columns {format_values(unused)} are not in the "
                    f"formula {self.formula!r}; add them to it or remove them from columns."
                )

    def _check_merge(self, where: str) -> None:
        """``merge_below`` is a positive whole number, for categorical models, and ``other`` new."""
        if self.merge_below is None:
            return
        if isinstance(self.merge_below, bool) or not isinstance(self.merge_below, int):
            raise SpecError(
                f"{where}: [outcome] merge_below must be a whole number of respondents, got "
                f"{self.merge_below!r}."
            )
        if self.merge_below < 1:
            raise SpecError(
                f"{where}: [outcome] merge_below = {self.merge_below}: give a number of "
                "respondents (1 or more), or remove it to keep every answer."
            )
        if self.family != "categorical":
            raise SpecError(
                f"{where}: [outcome] merge_below merges rare answers of a categorical model; "
                f"this model is {self.family} (its levels are ordered or two). Remove it."
            )
        if str(self.other) in {*self.levels, *self.missing}:
            raise SpecError(
                f"{where}: [outcome] other = {self.other!r} is already an outcome level or "
                "missing code; give the merged category a new label, e.g. other = 'other_rare'."
            )

    def _check_hurdle(self, where: str) -> None:
        """``hurdle`` is a label of its own, on an ordinal model."""
        if self.hurdle is None:
            return
        if not isinstance(self.hurdle, str) or not self.hurdle:
            raise SpecError(
                f"{where}: [outcome] hurdle must be the outcome code of the non-answer, e.g. "
                f"hurdle = 'dont_know'; got {self.hurdle!r}."
            )
        if self.family != "ordinal":
            raise SpecError(
                f"{where}: [outcome] hurdle = {self.hurdle!r} models a non-answer before an "
                f"ordered answer; this model is {self.family}. Use family = 'ordinal', or list "
                f"{self.hurdle!r} in levels (to model it as a category) or in missing (to drop it)."
            )
        if self.hurdle in self.levels:
            raise SpecError(
                f"{where}: [outcome] hurdle = {self.hurdle!r} is also one of the ordered levels "
                f"{format_values(self.levels)}; a non-answer has no place in the order. Remove "
                "it from levels."
            )
        if self.hurdle in self.missing:
            raise SpecError(
                f"{where}: [outcome] hurdle = {self.hurdle!r} is also a missing code, which drops "
                "those respondents; remove it from missing to model it."
            )
        if not self.intercept:
            raise SpecError(
                f"{where}: [outcome] hurdle: the hurdle is a logistic regression with an "
                f"intercept, but the formula {self.formula!r} drops it; remove the '0 +' (an "
                "ordinal model's cutpoints take its place anyway)."
            )

    def _check_terms(self, terms: set[str], where: str) -> None:
        """The terms [priors.parameterization] and [priors.structure] name are the formula's."""
        for table, named in (
            ("parameterization", self.priors.parameterization),
            ("structure", self.priors.structure),
            ("group_sd", self.priors.group_sd_by),
        ):
            unknown = [t for t, _ in named if t not in terms]
            if unknown:
                raise SpecError(
                    f"{where}: [priors.{table}] names {format_values(unknown)}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not a varying-intercept term of "
                    f"the formula (its terms: {format_values(sorted(terms)) or 'none'})."
                )
        fixed = {v for t in self.fixed_terms for v in t.variables}
        strays = [
            name
            for name, _ in self.priors.fixed_by
            if any(part.split("[")[0] not in fixed for part in name.split(":"))
        ]
        if strays:
            raise SpecError(
                f"{where}: [priors] fixed names {format_values(strays)}, which "
                f"{'is' if len(strays) == 1 else 'are'} not a coefficient of the formula's "
                f"fixed effects (their variables: {format_values(sorted(fixed)) or 'none'}); "
                "name single coefficients as the posterior labels them, e.g. 'sex[female]'."
            )
        correlated = [g.name for g in self.group_terms if g.correlated is not None]
        if correlated and (self.family != "categorical" or len(self.levels) < 3):
            raise SpecError(
                f"{where}: '(1 | ID | {correlated[0]})' correlates a term's effects across the "
                "categories of a categorical model with three or more answers; this model "
                f"({self.family}, {len(self.levels)} levels) has one linear predictor. Write "
                f"'(1 | {correlated[0]})'."
            )
        for table, named in (
            ("structure", self.priors.structure),
            ("parameterization", self.priors.parameterization),
        ):
            both = [t for t, _ in named if t in correlated]
            if both:
                raise SpecError(
                    f"{where}: [priors.{table}] {both[0]}: a term with correlated category "
                    "effects '(1 | ID | ...)' is sampled non-centred with an LKJ prior; it "
                    f"takes no {table}. Remove one of the two."
                )
        sloped = [g for g in self.group_terms if g.slopes]
        for table, named in (
            ("structure", self.priors.structure),
            ("parameterization", self.priors.parameterization),
        ):
            clash = [g for g in sloped if g.name in {t for t, _ in named}]
            if clash:
                raise SpecError(
                    f"{where}: [priors.{table}] {clash[0].name}: a term with varying slopes "
                    f"{clash[0].written} is sampled non-centred, its coefficients with an LKJ "
                    f"prior on their correlation; it takes no {table}. Remove the entry, or "
                    f"keep the intercept alone, '(1 | {clash[0].name})'."
                )
        for term, structure in self.priors.structure:
            if ":" in term:
                raise SpecError(
                    f"{where}: [priors.structure] {term} = {structure.kind!r}: structured "
                    "priors apply to the varying intercept of one factor, not to an "
                    "interaction; give it to a main term, e.g. (1 | region)."
                )

    # -- formula ------------------------------------------------------------------
    @property
    def _parsed(self) -> tuple[str, bool, tuple[FixedTerm, ...], tuple[GroupTerm, ...]]:
        return _parse_formula(self.formula, str(self.source) if self.source else "<spec>")

    @property
    def outcome(self) -> str:
        """The outcome column."""
        return self._parsed[0]

    @property
    def intercept(self) -> bool:
        """Whether the formula keeps the intercept (ignored for ordinal: cutpoints)."""
        return self._parsed[1]

    @property
    def fixed_terms(self) -> tuple[FixedTerm, ...]:
        """Population-level terms, in formula order."""
        return self._parsed[2]

    @property
    def group_terms(self) -> tuple[GroupTerm, ...]:
        """Varying-intercept terms, in formula order."""
        return self._parsed[3]

    @property
    def slope_terms(self) -> tuple[str, ...]:
        """Terms with varying slopes (``(1 + x | g)``, ``(0 + x | g)``, ``(1 + x || g)``)."""
        return tuple(g.name for g in self.group_terms if g.slopes)

    @property
    def correlated_terms(self) -> tuple[str, ...]:
        """Terms whose category effects are drawn jointly (``(1 | ID | g)``)."""
        return tuple(g.name for g in self.group_terms if g.correlated is not None)

    @property
    def variables(self) -> tuple[str, ...]:
        """Every predictor column the formula uses, in first-use order."""
        names: dict[str, None] = {}
        for term in self.fixed_terms:
            names.update(dict.fromkeys(term.variables))
        for group in self.group_terms:
            names.update(dict.fromkeys(group.factors))
        return tuple(names)

    @property
    def categories(self) -> tuple[str, ...]:
        """The modelled outcome categories, in level order (the hurdle code last)."""
        return self.levels if self.hurdle is None else (*self.levels, self.hurdle)

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """TOML/JSON-ready dict in the spec-file layout."""
        out: dict[str, Any] = {"formula": self.formula, "family": self.family}
        if self.link != "logit":
            out["link"] = self.link
        if self.name:
            out["name"] = self.name
        if self.data is not None:
            out["data"] = str(self.data)
        out["outcome"] = {"levels": list(self.levels), "missing": list(self.missing)}
        if self.merge_below is not None:
            out["outcome"] |= {"merge_below": self.merge_below, "other": self.other}
        if self.hurdle is not None:
            out["outcome"]["hurdle"] = self.hurdle
        out["priors"] = self.priors.to_dict()
        if self.covariates is not None:
            out["covariates"] = self.covariates.to_dict()
        if self.sampling.to_dict():
            out["sampling"] = self.sampling.to_dict()
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in a fit's provenance."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """SHA-256 of the canonical JSON, without the data and covariate-table paths.

        (What those files hold enters a fit's data hash instead.) Nor the
        ``[sampling]`` defaults: they do not change the model.
        """
        d = self.to_dict()
        d.pop("data", None)
        d.pop("sampling", None)
        covariates = d.get("covariates")
        if isinstance(covariates, dict):
            covariates.pop("data")
        priors = d["priors"]
        if isinstance(priors, dict):
            # an adjacency list's path: its graph itself enters the data hash (Design.graphs)
            for term, entry in priors.get("structure", {}).items():
                if isinstance(entry, dict):
                    priors["structure"][term] = entry["type"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def to_toml(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec as TOML, atomically."""
        target = Path(path)
        with atomic_path(target) as tmp:
            tmp.write_bytes(tomli_w.dumps(self.to_dict()).encode())
        return target

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, object], *, source: Path | None = None, base: Path | None = None
    ) -> ModelSpec:
        """Build a spec from the spec-file layout, rejecting unknown keys."""
        where = str(source) if source else "<spec>"
        check_keys(raw, _SPEC_KEYS, where=where, context="at the top level", error=SpecError)
        for key in ("formula", "family"):
            if key not in raw:
                raise SpecError(f"{where}: missing required key {key!r}.")
            if not isinstance(raw[key], str):
                raise SpecError(f"{where}: {key!r} must be a string, got {raw[key]!r}.")
        if not isinstance(raw.get("link", "logit"), str):
            raise SpecError(f"{where}: 'link' must be a string, got {raw['link']!r}.")
        outcome = _outcome_table(raw.get("outcome", {}), where)
        if "other" in outcome and "merge_below" not in outcome:
            raise SpecError(
                f"{where}: [outcome] other names the category rare answers merge into, but "
                "merge_below (the number of respondents below which they do) is not set."
            )
        priors_raw = raw.get("priors", {})
        if not isinstance(priors_raw, Mapping):
            raise SpecError(f"{where}: [priors] must be a table.")
        data_path = _data_path(raw.get("data"), where, base)
        covariates = None
        if "covariates" in raw:
            try:
                covariates = AreaCovariates.from_dict(raw["covariates"], where, base)
            except CovariateError as exc:
                raise SpecError(str(exc)) from exc
        name = raw.get("name")
        return cls(
            formula=str(raw["formula"]),
            family=cast(Family, raw["family"]),
            levels=tuple(str(v) for v in outcome["levels"]),
            missing=tuple(str(v) for v in outcome.get("missing", [])),
            priors=Priors.from_dict(priors_raw, where, base),
            data=data_path,
            name=None if name is None else str(name),
            source=source,
            covariates=covariates,
            sampling=Sampling.from_dict(raw.get("sampling", {}), where),
            link=cast(Link, raw.get("link", "logit")),
            merge_below=cast(int | None, outcome.get("merge_below")),
            other=str(outcome.get("other", "other")),
            hurdle=cast(str | None, outcome.get("hurdle")),
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read a spec file. Relative ``data`` paths are resolved against its folder."""
        source, raw = read_spec_file(path)
        return cls.from_dict(raw, source=source, base=source.parent)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _outcome_table(outcome: Any, where: str) -> Mapping[str, Any]:
    """The ``[outcome]`` table, checked: ``levels`` (required) and ``missing``, lists of labels."""
    if not isinstance(outcome, Mapping):
        raise SpecError(f"{where}: [outcome] must be a table with levels and missing.")
    check_keys(outcome, _OUTCOME_KEYS, where=where, context="in [outcome]", error=SpecError)
    if "levels" not in outcome:
        raise SpecError(f"{where}: [outcome] levels is required (the outcome's levels, in order).")
    for key in ("levels", "missing"):
        value = outcome.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise SpecError(f"{where}: [outcome] {key} must be a list of labels.")
    return outcome


def _data_path(data: Any, where: str, base: Path | None) -> Path | None:
    """The spec's ``data`` path, resolved against the spec file's folder when relative."""
    if data is None:
        return None
    if not isinstance(data, str):
        raise SpecError(f"{where}: 'data' must be a path string.")
    path = Path(data)
    if base is not None and not path.is_absolute():
        path = (base / path).resolve()
    return path


def read_spec_file(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """A spec file's path and its TOML tables, as read (nothing in it is evaluated)."""
    source = Path(path)
    if not source.is_file():
        raise SpecError(f"{source}: no such spec file.")
    try:
        return source, tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from exc


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Read a model spec from TOML; see :class:`ModelSpec`."""
    return ModelSpec.from_toml(path)


_PARSE_CACHE: dict[str, tuple[str, bool, tuple[FixedTerm, ...], tuple[GroupTerm, ...]]] = {}


def _parse_formula(
    formula: str, where: str
) -> tuple[str, bool, tuple[FixedTerm, ...], tuple[GroupTerm, ...]]:
    """Parse with formulae's model_description (a parser only: nothing is evaluated).

    Each group term ``(lhs | g)``, ``(lhs || g)`` or ``(lhs | ID | g)`` is read here
    (its left side parsed on its own) and handed to formulae as ``(1 | g)``.
    """
    if formula in _PARSE_CACHE:
        return _PARSE_CACHE[formula]
    written = formula
    from formulae import model_description
    from formulae.terms.terms import GroupSpecificTerm, Intercept, Term

    if "~" not in formula:
        raise SpecError(
            f"{where}: formula {formula!r} has no '~'; write 'outcome ~ 1 + x + (1 | group)'."
        )
    formula, bars = _bar_terms(formula, where)
    if "|" in _BAR.sub("", written):
        raise SpecError(
            f"{where}: cannot read the group term(s) of {written!r}; write them as lme4 does: "
            "'(1 | g)', '(1 + x | g)', '(0 + x | g)', '(1 + x || g)' or, for correlated "
            "category effects, '(1 | ID | g)'."
        )
    try:
        description = model_description(formula)
    except Exception as exc:  # formulae raises several types for syntax errors
        raise SpecError(f"{where}: cannot parse formula {written!r}: {exc}") from exc
    outcome = _outcome_name(description.response, where)
    intercept = False
    fixed: list[FixedTerm] = []
    groups: list[GroupTerm] = []
    for term in description.terms:
        if isinstance(term, Intercept):
            intercept = True
        elif isinstance(term, GroupSpecificTerm):
            groups.append(_group_term(term, where, written))
        elif isinstance(term, Term):
            fixed.append(FixedTerm(tuple(_plain_names(term.components, where, written))))
        else:
            raise SpecError(f"{where}: unsupported term {term!r} in formula {written!r}.")
    names = [g.name for g in groups]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(
            f"{where}: grouping term(s) {format_values(repeated)} appear twice in {written!r}; "
            "write one term per grouping factor, e.g. '(1 + x || g)' for an intercept and a "
            "slope drawn independently."
        )
    groups = [_with_bar(g, bars[g.name], fixed, where, written) for g in groups]
    parsed = (outcome, intercept, tuple(fixed), tuple(groups))
    _PARSE_CACHE[written] = parsed
    return parsed


@dataclass(frozen=True)
class _Bar:
    """One group term as written: its left side, ``|`` or ``||``, and a brms ID."""

    lhs: str
    double: bool
    correlation_id: str | None


# (lhs | g), (lhs || g) and brms's (lhs | ID | g); no parentheses inside
_BAR = re.compile(r"\(\s*([^()|]+?)\s*(\|\|?)\s*([^()|]+?)\s*(?:\|\s*([^()|]+?)\s*)?\)")


def _bar_terms(formula: str, where: str) -> tuple[str, dict[str, _Bar]]:
    """``formula`` with each group term written ``(1 | g)``, and what each one said."""
    bars: dict[str, _Bar] = {}

    def replace(match: re.Match[str]) -> str:
        lhs, bar, middle, last = match.groups()
        if last is not None and bar == "||":
            raise SpecError(
                f"{where}: {match.group(0)!r} in {formula!r}: an ID ('| ID |') joins a term's "
                "effects in correlation, '||' draws them independently; use one of the two."
            )
        group = "".join((last if last is not None else middle).split())
        identifier = middle.strip() if last is not None else None
        if identifier is not None and re.fullmatch(r"[A-Za-z_][\w.]*", identifier) is None:
            raise SpecError(
                f"{where}: {identifier!r} in {match.group(0)!r} is not an ID; write "
                "'(1 | p | group)' with a plain name for p."
            )
        names = _group_names(group, where, formula)
        taken = [b.correlation_id for name, b in bars.items() if name not in names]
        if identifier is not None and (identifier in taken or len(names) > 1):
            raise SpecError(
                f"{where}: the ID {identifier!r} in {formula!r} joins several terms; "
                "correlations across terms are not supported: give each '(1 | ID | group)' "
                "its own ID."
            )
        bar_ = _Bar(lhs.strip(), bar == "||", identifier)
        for name in names:
            if name in bars and bars[name] != bar_:
                raise SpecError(
                    f"{where}: grouping term {name!r} appears twice in {formula!r}; write one "
                    "term per grouping factor, e.g. '(1 + x || g)' for an intercept and a "
                    "slope drawn independently."
                )
            bars[name] = bar_  # the same term twice counts once, as formulae reads it
        return f"(1 | {group})"

    return _BAR.sub(replace, formula), bars


def _group_names(group: str, where: str, formula: str) -> list[str]:
    """The grouping terms ``(1 | group)`` stands for: ``a/b`` is ``a`` and ``a:b``, as in lme4."""
    if not re.search(r"[*/]", group):
        return [group]
    from formulae import model_description
    from formulae.terms.terms import GroupSpecificTerm

    try:
        terms = model_description(f"y ~ 0 + (1 | {group})").terms
    except Exception as exc:  # formulae raises several types for syntax errors
        raise SpecError(
            f"{where}: cannot parse the grouping {group!r} in {formula!r}: {exc}"
        ) from exc
    return [
        ":".join(_plain_names(t.factor.components, where, formula))
        for t in terms
        if isinstance(t, GroupSpecificTerm)
    ]


def _with_bar(
    term: GroupTerm, bar: _Bar, fixed: list[FixedTerm], where: str, formula: str
) -> GroupTerm:
    """The group term with the left side and options its parentheses gave."""
    from formulae import model_description
    from formulae.terms.terms import Intercept, Term

    try:
        description = model_description(f"y ~ {bar.lhs}")
    except Exception as exc:  # formulae raises several types for syntax errors
        raise SpecError(
            f"{where}: cannot parse {bar.lhs!r}, the left side of the term on {term.name!r} "
            f"in {formula!r}: {exc}"
        ) from exc
    intercept = any(isinstance(t, Intercept) for t in description.terms)
    slopes: list[FixedTerm] = []
    for t in description.terms:
        if isinstance(t, Intercept):
            continue
        if not isinstance(t, Term):
            raise SpecError(
                f"{where}: {t!r} on the left of '| {term.name}' in {formula!r} is not a "
                "column or an interaction of columns."
            )
        slopes.append(FixedTerm(tuple(_plain_names(t.components, where, formula))))
    written = f"({bar.lhs} {'||' if bar.double else '|'} {term.name})"
    if not intercept and not slopes:
        raise SpecError(
            f"{where}: {written} in {formula!r} varies nothing; write '(1 | {term.name})' for "
            "a varying intercept or "
            f"'(0 + x | {term.name})' for a varying slope of x."
        )
    for slope in slopes:
        inside = sorted(set(slope.variables) & set(term.factors))
        if inside:
            raise SpecError(
                f"{where}: {written} in {formula!r} varies the slope of {slope.name!r} by "
                f"{term.name!r}, which it is part of; a factor has no slope within its own "
                "levels. Remove it from the left side."
            )
        if not any(set(f.variables) == set(slope.variables) for f in fixed):
            raise SpecError(
                f"{where}: {written} in {formula!r} has a varying slope of {slope.name!r} but "
                f"the fixed effects lack {slope.name!r}: the varying slopes are deviations "
                f"(summing to zero over the levels) from its fixed slope. Add it, e.g. "
                f"'... + {slope.name} + {written}'."
            )
    if slopes and bar.correlation_id is not None:
        raise SpecError(
            f"{where}: '({bar.lhs} | {bar.correlation_id} | {term.name})' in {formula!r}: "
            "correlated category effects ('| ID |') apply to a varying intercept only; "
            f"write '(1 | {bar.correlation_id} | {term.name})' or '({bar.lhs} | {term.name})'."
        )
    if bar.double and int(intercept) + len(slopes) < 2:
        raise SpecError(
            f"{where}: {written} in {formula!r} has one coefficient, so '||' (no correlation) "
            f"changes nothing; write '|'."
        )
    return GroupTerm(
        term.factors,
        correlated=bar.correlation_id,
        slopes=tuple(slopes),
        intercept=intercept,
        uncorrelated=bar.double,
    )


def _outcome_name(response: Any, where: str) -> str:
    """The formula's left side: one plain column name."""
    from formulae.terms.terms import Response
    from formulae.terms.variable import Variable

    if not isinstance(response, Response) or len(response.term.components) != 1:
        raise SpecError(f"{where}: the formula's left side must be one column name.")
    variable = response.term.components[0]
    if not isinstance(variable, Variable) or variable.reference is not None:
        raise SpecError(f"{where}: the formula's left side must be a plain column name.")
    return str(variable.name)


def _group_term(term: Any, where: str, formula: str) -> GroupTerm:
    """The grouping factor of a term formulae read as ``(1 | g)``."""
    return GroupTerm(tuple(_plain_names(term.factor.components, where, formula)))


def _plain_names(components: Any, where: str, formula: str) -> list[str]:
    from formulae.terms.variable import Variable

    names = []
    for component in components:
        if not isinstance(component, Variable) or component.reference is not None:
            raise SpecError(
                f"{where}: {component!r} in formula {formula!r} is not a plain column name; "
                "transformations and function calls are not supported in spec formulas "
                "(compute the column in your data instead)."
            )
        names.append(component.name)
    return names
