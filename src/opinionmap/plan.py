"""The parameterisation plan: how each term of a design is sampled, decided in NumPy.

The prior is fixed by the spec; how the sampler sees it is not. :func:`make_plan`
looks at a design once and records, per varying-intercept term, how far its
effects are non-centred (a weight per linear predictor, with the figures it was
computed from), which main term and interaction have their standard deviations
sampled jointly, and the means that numeric predictors are centred at. The plan
is frozen and serialisable: :func:`opinionmap.model.build_model` builds the graph
from it, the compile cache keys on it, and every fit stores it in its attributes
(``opinionmap_plan``), so a reader sees which terms were centred and paired. The
maths and the measured reasons are in ``docs/model.md``.

- **Non-centring weight.** ``u = sigma**w * z`` with ``z ~ ZeroSumNormal(sigma**(1 - w))``
  has the same distribution for any ``w`` in [0, 1] (0 centred, 1 non-centred).
  ``"auto"`` sets ``w = 1 / (1 + s**2 I)``: ``I`` the Fisher information of a
  typical level (median respondents per level x one respondent's information at
  the observed shares), ``s`` = :func:`pilot_fraction` x :func:`pilot_group_sd`.
- **Confounded terms** (:func:`confounded_terms`): a term whose levels go together
  with another term's (Cramér's V of their respondents' levels >= :data:`CONFOUNDED`,
  as age in years and school grade) is non-centred: the two SDs trade off, and
  either can reach zero, where a centred form diverges.
- **Paired SDs** (:func:`sd_pairs`): a main term and a two-factor interaction whose
  SDs trade off, or two confounded terms, are sampled in polar coordinates with the
  same prior.
- **Centring** (:func:`numeric_means`): columns with a numeric variable enter
  centred at their respondent means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from opinionmap.design import HURDLE, Design, GroupIndex, hurdle_parts
from opinionmap.spec import Parameterization

__all__ = [
    "ANGLE",
    "CENTRED",
    "CONFOUNDED",
    "PILOT_FRACTION",
    "RADIUS",
    "Plan",
    "TermPlan",
    "confounded_terms",
    "is_auxiliary",
    "make_plan",
    "noncentering_weight",
    "numeric_means",
    "parameterization",
    "pilot_fraction",
    "pilot_group_sd",
    "sd_pairs",
]

PILOT_FRACTION = 0.5
# Cramér's V from which two grouping terms count as confounded (see confounded_terms)
CONFOUNDED = 0.5
# suffix of the intercept / cutpoints sampled at the numeric predictors' means
CENTRED = "_at_means"
# prefixes of the polar coordinates of a paired main term's and interaction's SDs
RADIUS = "sd_radius_"
ANGLE = "sd_angle_"
# version of the JSON layout of a plan
_FORMAT = 1


@dataclass(frozen=True)
class TermPlan:
    """How one varying-intercept term is sampled.

    Attributes
    ----------
    name
        The term, e.g. ``region`` or ``region:ethnicity``.
    requested
        The spec's ``[priors.parameterization]`` choice: ``auto``, ``centered``
        or ``noncentered``.
    weight
        The non-centring weight ``w`` per linear predictor (K-1 for categorical
        models, 1 otherwise).
    pilot_sd, fraction, information
        What an ``auto`` weight was computed from (empty / ``None`` otherwise).
    paired_with
        The term whose SD is sampled jointly with this one's, if any.
    confounded_with
        The term whose levels go together with this one's (:func:`confounded_terms`),
        which made an ``auto`` term non-centred; ``None`` otherwise.
    structure
        The term's structured prior (``"rw1"``, ``"rw2"``, ``"bym2"``), sampled
        non-centred in its eigenbasis (:mod:`opinionmap.structure`),
        ``"correlated"`` for category effects drawn jointly (``(1 | ID | g)``),
        ``"slopes"`` / ``"uncorrelated slopes"`` for varying slopes (``(1 + x | g)``,
        ``(1 + x || g)``), non-centred; ``None``: exchangeable.
    """

    name: str
    requested: Parameterization
    weight: tuple[float, ...]
    pilot_sd: tuple[float, ...] = ()
    fraction: float | None = None
    information: tuple[float, ...] = ()
    paired_with: str | None = None
    structure: str | None = None
    confounded_with: str | None = None

    @property
    def parameterization(self) -> Literal["centered", "noncentered", "partial"]:
        """``"centered"`` (every weight 0), ``"noncentered"`` (every weight 1) or ``"partial"``."""
        if all(w == 0.0 for w in self.weight):
            return "centered"
        if all(w == 1.0 for w in self.weight):
            return "noncentered"
        return "partial"


@dataclass(frozen=True)
class Plan:
    """How a design is sampled: one :class:`TermPlan` per term, SD pairs, centring.

    Attributes
    ----------
    terms
        One per varying-intercept term, in formula order.
    pairs
        ``(main term, interaction)`` or two confounded terms, whose SDs are sampled
        in polar coordinates (:func:`sd_pairs`).
    centre
        The value each fixed-effect column is centred at (0 for dummies), or
        ``None`` when no column is centred.
    hurdle
        A hurdle model's plan of its non-answer part (its terms' parameters are
        ``hu_*``); ``None`` without a hurdle.
    """

    terms: tuple[TermPlan, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    centre: tuple[float, ...] | None = field(default=None)
    hurdle: Plan | None = None

    def term(self, name: str) -> TermPlan:
        """The plan of one term."""
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def confounded_pairs(self) -> tuple[tuple[str, str], ...]:
        """Confounded terms whose SDs are sampled jointly (two exchangeable terms).

        A structured term confounded with another (BYM2 districts within regions) is
        not paired, so it is not here.
        """
        return tuple(
            (t.name, t.confounded_with)
            for t in self.terms
            if t.confounded_with is not None
            and t.confounded_with == t.paired_with
            and t.name < t.confounded_with
        )

    def weight(self, name: str) -> np.ndarray:
        """A term's non-centring weights as an array."""
        return np.asarray(self.term(name).weight, dtype=float)

    def table(self) -> pd.DataFrame:
        """One row per term and linear predictor: the weight and what it came from.

        A hurdle model's non-answer part follows, its terms named ``hu_<term>``.
        """
        rows = []
        parts = [("", self)] if self.hurdle is None else [("", self), (HURDLE, self.hurdle)]
        for prefix, plan in parts:
            for t in plan.terms:
                rows.extend(_term_rows(t, prefix))
        return pd.DataFrame(rows)

    def to_json(self) -> str:
        """The plan as JSON (stored in a fit's ``opinionmap_plan`` attribute)."""
        return json.dumps(self._to_dict(), sort_keys=True)

    def _to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": _FORMAT,
            "terms": [
                {
                    "name": t.name,
                    "requested": t.requested,
                    "weight": list(t.weight),
                    "pilot_sd": list(t.pilot_sd),
                    "fraction": t.fraction,
                    "information": list(t.information),
                    "paired_with": t.paired_with,
                    "structure": t.structure,
                    "confounded_with": t.confounded_with,
                }
                for t in self.terms
            ],
            "pairs": [list(p) for p in self.pairs],
            "centre": None if self.centre is None else list(self.centre),
        }
        if self.hurdle is not None:
            out["hurdle"] = self.hurdle._to_dict()
        return out

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Inverse of :meth:`to_json`."""
        return cls._from_dict(json.loads(text))

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> Plan:
        if raw.get("format") != _FORMAT:
            raise ValueError(f"unknown plan layout {raw.get('format')!r}")
        return cls(
            terms=tuple(
                TermPlan(
                    name=t["name"],
                    requested=t["requested"],
                    weight=tuple(float(w) for w in t["weight"]),
                    pilot_sd=tuple(float(v) for v in t["pilot_sd"]),
                    fraction=t["fraction"],
                    information=tuple(float(v) for v in t["information"]),
                    paired_with=t["paired_with"],
                    structure=t.get("structure"),
                    confounded_with=t.get("confounded_with"),
                )
                for t in raw["terms"]
            ),
            pairs=tuple((str(a), str(b)) for a, b in raw["pairs"]),
            centre=None if raw["centre"] is None else tuple(float(v) for v in raw["centre"]),
            hurdle=None if raw.get("hurdle") is None else cls._from_dict(raw["hurdle"]),
        )


def _term_rows(t: TermPlan, prefix: str) -> list[dict[str, Any]]:
    """The rows of :meth:`Plan.table` for one term, one per linear predictor."""
    return [
        {
            "term": f"{prefix}{t.name}",
            "predictor": i,
            "requested": t.requested,
            "parameterization": t.parameterization,
            "weight": w,
            "pilot_sd": t.pilot_sd[min(i, len(t.pilot_sd) - 1)] if t.pilot_sd else None,
            "paired_with": t.paired_with,
            "structure": t.structure or "exchangeable",
            "confounded_with": t.confounded_with,
        }
        for i, w in enumerate(t.weight)
    ]


def make_plan(design: Design) -> Plan:
    """The parameterisation plan of a design (see the module docstring).

    Examples
    --------
    >>> import pandas as pd
    >>> from opinionmap.spec import ModelSpec
    >>> from opinionmap.design import build_design
    >>> df = pd.DataFrame({"y": list("abab") * 5, "g": list("uuvv") * 5})
    >>> spec = ModelSpec(formula="y ~ 1 + (1 | g)", family="bernoulli", levels=("a", "b"))
    >>> plan = make_plan(build_design(spec, df))
    >>> plan.term("g").requested, Plan.from_json(plan.to_json()) == plan
    ('auto', True)
    """
    if design.spec.hurdle is not None:
        answered, hurdle = hurdle_parts(design)
        return replace(make_plan(answered), hurdle=make_plan(hurdle))
    confounded = confounded_terms(design)
    pairs = sd_pairs(design, confounded)
    partner = {**pairs, **{b: a for a, b in pairs.items()}}
    terms = tuple(
        _term_plan(design, g, partner.get(g.name), confounded.get(g.name)) for g in design.groups
    )
    centred = design.has_intercept or design.spec.family == "ordinal"
    centre = numeric_means(design) if centred else None
    return Plan(
        terms=terms,
        pairs=tuple(pairs.items()),
        centre=None if centre is None else tuple(float(v) for v in centre),
    )


def _term_plan(
    design: Design,
    group: GroupIndex,
    paired_with: str | None = None,
    confounded_with: str | None = None,
) -> TermPlan:
    requested = design.spec.priors.parameterization_for(group.name)
    width = _width(design)
    graph = design.graph(group.name)
    if graph is not None:
        # a structured term is sampled in its eigenbasis, non-centred
        return TermPlan(
            group.name, requested, (1.0,) * width, paired_with=paired_with, structure=graph.kind
        )
    if group.slopes:
        # a level's intercept and slopes: the Cholesky factor times standard normals
        kind = "slopes" if group.correlated else "uncorrelated slopes"
        return TermPlan(group.name, requested, (1.0,) * width, structure=kind)
    if group.name in design.spec.correlated_terms:
        # category effects drawn jointly: the Cholesky factor times standard normals
        return TermPlan(group.name, requested, (1.0,) * width, structure="correlated")
    if requested == "centered":
        return TermPlan(group.name, requested, (0.0,) * width, paired_with=paired_with)
    if requested == "noncentered":
        return TermPlan(group.name, requested, (1.0,) * width, paired_with=paired_with)
    if confounded_with is not None:
        return TermPlan(
            group.name,
            requested,
            (1.0,) * width,
            paired_with=paired_with,
            confounded_with=confounded_with,
        )
    per_level = design.respondents_per_level(group)
    fraction = pilot_fraction(int((per_level > 0).sum()))
    pilot = pilot_group_sd(design, group)
    s = fraction * pilot
    information = float(np.median(per_level)) * _respondent_information(design)
    weight = np.round(1.0 / (1.0 + s**2 * information), 2)
    return TermPlan(
        group.name,
        requested,
        tuple(float(w) for w in np.broadcast_to(weight, (width,))),
        pilot_sd=tuple(float(v) for v in pilot),
        fraction=fraction,
        information=tuple(float(v) for v in information),
        paired_with=paired_with,
    )


def noncentering_weight(design: Design, group: GroupIndex) -> np.ndarray:
    """The weight ``w`` in ``u = sigma**w * z`` for a term, one per linear predictor.

    0 is centred, 1 non-centred; ``"auto"`` uses the rules in the module docstring.
    """
    return np.asarray(make_plan(design).term(group.name).weight, dtype=float)


def parameterization(design: Design, group: GroupIndex) -> str:
    """``"centered"``, ``"noncentered"`` or ``"partial"`` for a grouping term."""
    return make_plan(design).term(group.name).parameterization


def confounded_terms(design: Design) -> dict[str, str]:
    """Grouping terms whose levels go together with another term's: ``{term: other}``.

    Two terms are confounded when Cramér's V of the table of respondents by their
    levels is at least :data:`CONFOUNDED` (age in years and school grade: 0.65 on a real
    survey; unrelated terms of real surveys: 0.03-0.10). Terms nested by the formula
    (``region`` and ``region:ethnicity``, whose SDs :func:`sd_pairs` handles) are not
    compared; terms nested in the data (districts within regions) are confounded. Each
    term names the first other term it is confounded with, in formula order.

    Examples
    --------
    >>> import pandas as pd
    >>> from opinionmap.spec import ModelSpec
    >>> from opinionmap.design import build_design
    >>> age = ["14", "15", "16", "16", "17", "18"] * 10
    >>> grade = ["9", "9", "10", "11", "11", "12"] * 10
    >>> df = pd.DataFrame({"y": list("aabbab") * 10, "age": age, "grade": grade})
    >>> spec = ModelSpec(
    ...     formula="y ~ 1 + (1 | age) + (1 | grade)", family="bernoulli", levels=("a", "b")
    ... )
    >>> confounded_terms(build_design(spec, df))
    {'age': 'grade', 'grade': 'age'}
    """
    n_cell = design.counts.sum(axis=1)
    out: dict[str, str] = {}
    for i, a in enumerate(design.groups):
        for b in design.groups[i + 1 :]:
            if set(a.factors) <= set(b.factors) or set(b.factors) <= set(a.factors):
                continue
            if _cramers_v(a, b, n_cell) >= CONFOUNDED:
                out.setdefault(a.name, b.name)
                out.setdefault(b.name, a.name)
    return out


def _cramers_v(a: GroupIndex, b: GroupIndex, weight: np.ndarray) -> float:
    """Cramér's V of the table of ``weight`` (respondents per cell) by two terms' levels."""
    known = (a.index >= 0) & (b.index >= 0)
    table = np.zeros((len(a.levels), len(b.levels)))
    np.add.at(table, (a.index[known], b.index[known]), weight[known])
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    total = table.sum()
    if min(table.shape) < 2 or total <= 0:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (total * (min(table.shape) - 1))))


def _width(design: Design) -> int:
    """Number of linear predictors: K-1 for categorical models, 1 otherwise."""
    return len(design.categories) - 1 if design.spec.family == "categorical" else 1


def _level_log_odds(design: Design, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed log-odds per row of ``counts`` and their sampling variances.

    Categorical and bernoulli: each category against the reference, (rows, K-1).
    Ordinal: above against at-or-below each cutpoint, (rows, K-1).
    """
    counts = counts + 0.5
    if design.spec.family == "ordinal":
        below = np.cumsum(counts, axis=1)[:, :-1]
        above = counts.sum(axis=1, keepdims=True) - below
        return np.log(above / below), 1.0 / above + 1.0 / below
    ref = counts[:, :1]
    return np.log(counts[:, 1:] / ref), 1.0 / counts[:, 1:] + 1.0 / ref


def _between_variance(y: np.ndarray, v: np.ndarray, Z: np.ndarray | None = None) -> np.ndarray:
    """Moment estimate of the between-row variance, per column of ``y``.

    DerSimonian-Laird, generalised to a meta-regression on the row predictors
    ``Z`` (rows x p, an intercept column included): the residual variance left
    once the rows' predictors are accounted for. ``Z=None`` is the intercept only.
    """
    if Z is None:
        Z = np.ones((y.shape[0], 1))
    if y.shape[0] <= Z.shape[1]:
        return np.zeros(y.shape[1])
    out = np.zeros(y.shape[1])
    for m in range(y.shape[1]):
        w = 1.0 / v[:, m]
        ZW = Z.T * w
        inverse = np.linalg.pinv(ZW @ Z)
        coef = inverse @ (ZW @ y[:, m])
        q = float((w * (y[:, m] - Z @ coef) ** 2).sum())
        trace = float(w.sum() - np.trace(inverse @ ((ZW * w) @ Z)))
        out[m] = max(0.0, (q - (y.shape[0] - Z.shape[1])) / trace) if trace > 0 else 0.0
    return out


def _level_predictors(design: Design, group: GroupIndex, seen: np.ndarray) -> np.ndarray:
    """Intercept plus the fixed-effect columns constant within every level of ``group``.

    Those are area-level predictors (a region's urban share for ``(1 | region)``):
    they explain part of the between-level spread, so the pilot estimate of the
    term's standard deviation leaves it out. Rows are the ``seen`` levels.
    """
    n_levels = len(group.levels)
    columns = [np.ones(int(seen.sum()))]
    for j in range(design.X.shape[1]):
        x = design.X[:, j]
        high = np.full(n_levels, -np.inf)
        low = np.full(n_levels, np.inf)
        np.maximum.at(high, group.index, x)
        np.minimum.at(low, group.index, x)
        if np.all(high[seen] - low[seen] <= 1e-12):
            columns.append(high[seen])
    Z = np.column_stack(columns)
    # drop columns that add nothing (constant, or collinear with the ones before)
    keep: list[int] = []
    for j in range(Z.shape[1]):
        if np.linalg.matrix_rank(Z[:, [*keep, j]]) == len(keep) + 1:
            keep.append(j)
    return Z[:, keep]


def pilot_group_sd(design: Design, group: GroupIndex) -> np.ndarray:
    """A rough estimate of a term's standard deviation, one per linear predictor.

    Moment estimate from the raw log-odds of the levels that have respondents; for
    an interaction ``a:b`` each component's marginal level deviations are removed
    first, so the main effects do not count as interaction, and level-constant
    fixed-effect columns (area-level covariates) are regressed out, so the spread
    they explain does not count either. Used only to choose the parameterisation,
    never as a prior.
    """
    n_cat = design.counts.shape[1]
    per_level = np.zeros((len(group.levels), n_cat))
    np.add.at(per_level, group.index, design.counts)
    y, v = _level_log_odds(design, per_level)
    if len(group.factors) > 1:
        sizes = tuple(len(design.coding(f).levels) for f in group.factors)
        components = np.unravel_index(np.arange(len(group.levels)), sizes)
        overall, _ = _level_log_odds(design, design.counts.sum(axis=0, keepdims=True))
        for size, component in zip(sizes, components, strict=True):
            marginal = np.zeros((size, n_cat))
            np.add.at(marginal, component, per_level)
            y_marginal, _ = _level_log_odds(design, marginal)
            y = y - (y_marginal[component] - overall)
    seen = per_level.sum(axis=1) > 0
    variance = _between_variance(y[seen], v[seen], _level_predictors(design, group, seen))
    if design.spec.family == "ordinal":
        variance = np.atleast_1d(variance.mean())
    return np.asarray(np.sqrt(variance))


def _respondent_information(design: Design) -> np.ndarray:
    """Fisher information of one respondent about each linear predictor, at the observed shares."""
    p = design.counts.sum(axis=0) / max(design.counts.sum(), 1)
    if design.spec.family == "ordinal":
        # cumulative logit: information about a location shift, (1 - sum p^3) / 3
        return np.array([(1.0 - (p**3).sum()) / 3.0])
    return p[1:] * (1.0 - p[1:])


def pilot_fraction(n_levels: int) -> float:
    """The fraction of the pilot sd the weight aims at, for a term with ``n_levels`` levels.

    :data:`PILOT_FRACTION`, or less where few levels leave the term's sd
    uncertain: the lower 5% point of the sd's sampling distribution relative to
    its estimate, ``sqrt(chi2_{J-1}(0.05) / (J-1))`` (0.23 for 3 levels, 0.34 for
    4, 0.48 for 6, 0.50 from 7); see ``docs/model.md``.

    Examples
    --------
    >>> round(pilot_fraction(3), 2), round(pilot_fraction(4), 2), pilot_fraction(20)
    (0.23, 0.34, 0.5)
    """
    from scipy.stats import chi2

    if n_levels < 2:
        return PILOT_FRACTION
    df = n_levels - 1
    return float(min(PILOT_FRACTION, np.sqrt(chi2.ppf(0.05, df) / df)))


def numeric_means(design: Design) -> np.ndarray | None:
    """Respondent means of the fixed-effect columns that involve a numeric variable.

    Zero for the dummy columns of categorical variables (left as they are); ``None``
    when no column is numeric, so the model needs no centring.
    """
    numeric = np.array([c.numeric for c in design.coefs], dtype=bool)
    if not numeric.any():
        return None
    n_cell = design.counts.sum(axis=1).astype(float)
    means = (design.X * n_cell[:, None]).sum(axis=0) / n_cell.sum()
    return np.where(numeric, means, 0.0)


def is_auxiliary(name: str) -> bool:
    """Sampled helper variables left out of summaries.

    ``z_*``, the centred level, the polar coordinates of paired SDs, and the packed
    Cholesky factors ``chol_*`` of correlated category effects (``cor_*`` is reported);
    the same of a hurdle model's non-answer part (``hu_z_*``).

    Examples
    --------
    >>> [is_auxiliary(n) for n in ("z_region", "sigma_region", "Intercept_at_means")]
    [True, False, True]
    """
    name = name.removeprefix(HURDLE)
    return name.startswith(("z_", "chol_", RADIUS, ANGLE)) or name.endswith(CENTRED)


def sd_pairs(design: Design, confounded: dict[str, str] | None = None) -> dict[str, str]:
    """Terms whose SDs are sampled jointly, in polar coordinates: ``{main: interaction}``.

    For each two-factor interaction (in formula order) whose factors have terms of
    their own not yet paired, the factor whose levels hold the largest share of
    respondents in the other factor's most common level (on the Kazakhstan survey:
    region, as most regions' respondents are mostly of one ethnicity). Then each two
    exchangeable terms that :func:`confounded_terms` finds, neither paired yet (age and
    school grade: the one first in the formula is the key); ``confounded`` is
    :func:`confounded_terms`' answer where the caller has it.

    Examples
    --------
    >>> import pandas as pd
    >>> from opinionmap.spec import ModelSpec
    >>> from opinionmap.design import build_design
    >>> # every level of g is mostly one level of h, not the other way round
    >>> df = pd.DataFrame({"y": list("ababab"), "g": list("uuvvww"), "h": list("xxxxyy")})
    >>> spec = ModelSpec(
    ...     formula="y ~ 1 + (1 | h) + (1 | g) + (1 | h:g)", family="bernoulli", levels=("a", "b")
    ... )
    >>> sd_pairs(build_design(spec, df))
    {'g': 'h:g'}
    """
    # terms whose SDs come with an LKJ prior (or per coefficient) are not paired
    correlated = {*design.spec.correlated_terms, *design.spec.slope_terms}
    mains = {g.name for g in design.groups if len(g.factors) == 1 and g.name not in correlated}
    pairs: dict[str, str] = {}
    for group in design.groups:
        if len(group.factors) != 2 or group.name in correlated:
            continue
        free = [axis for axis, f in enumerate(group.factors) if f in mains and f not in pairs]
        if not free:
            continue
        sizes = tuple(len(design.coding(f).levels) for f in group.factors)
        table = design.respondents_per_level(group).reshape(sizes)
        total = max(float(table.sum()), 1.0)
        # within each level of the factor on `axis`, the respondents of the other factor's
        # most common level there, as a share of all respondents
        axis = max(free, key=lambda a: float(table.max(axis=1 - a).sum()) / total)
        pairs[group.factors[axis]] = group.name
    # confounded exchangeable terms trade their SDs off in the same way
    paired = {*pairs, *pairs.values()}
    if confounded is None:
        confounded = confounded_terms(design)
    for a, b in confounded.items():
        unpaired = {a, b}.isdisjoint(paired | correlated)
        if unpaired and design.graph(a) is None and design.graph(b) is None:
            pairs[a] = b
            paired |= {a, b}
    return pairs
