r"""Direct estimates: raw and design-weighted shares by area, with design-based errors.

The comparison every MRP table should carry (as emdi and the R ``survey``
package users expect): for each area, the unweighted share of each category
and the design-weighted (Hajek) share

.. math::

    \hat p_d = \frac{\sum_{i \in d} w_i y_i}{\sum_{i \in d} w_i}

with its Taylor-linearised standard error, computed as R's
``survey::svyby(~y, ~area, design, svymean)`` computes it. Areas are *domains*
of the whole design: the linearised variable
:math:`z_i = w_i (y_i - \hat p_d) / \sum_{j \in d} w_j` is zero outside the
area, and the variance sums over every primary sampling unit (PSU) of every
stratum, with PSUs drawn with replacement within strata,

.. math::

    \widehat{\mathrm{Var}}(\hat p_d) = \sum_h (1 - f_h) \frac{n_h}{n_h - 1}
        \sum_{i=1}^{n_h} (z_{hi} - \bar z_h)^2,

where :math:`z_{hi}` is the total of :math:`z` in PSU :math:`i` of stratum
:math:`h`, :math:`n_h` the stratum's number of sampled PSUs and :math:`f_h`
its sampling fraction (zero without a finite population correction). Without
strata the sample is one stratum; without clusters each respondent is a PSU.
Strata with a single PSU follow ``lonely_psu``, as R's
``options(survey.lonely.psu=)``. Intervals for shares are Korn-Graubard
(``svyciprop(method="beta")``) or logit (``method="logit"``) intervals with the
design's degrees of freedom. ``docs/survey_design.md`` gives the details.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import beta as beta_dist
from scipy.stats import t as t_dist

from opinionmap.design import as_frame
from opinionmap.errors import SurveyError, format_values
from opinionmap.summaries import interval_prob
from opinionmap.survey import validate_design

if TYPE_CHECKING:
    from opinionmap.codebook import Codebook
    from opinionmap.design import SurveyData

__all__ = ["INTERVALS", "LONELY_PSU", "LonelyPSUWarning", "direct_estimates"]

LONELY_PSU: Final = ("adjust", "average", "certainty", "remove", "fail")
"""Rules for a stratum with a single PSU, as R's ``options(survey.lonely.psu=)``."""

INTERVALS: Final = ("beta", "logit")
"""Interval methods for shares, as R's ``svyciprop(method=)``: Korn-Graubard and logit."""

_LONELY_RULES: Final = {
    "adjust": "its PSU is centred at the grand mean (conservative)",
    "average": "it gets the average variance contribution of the other strata",
    "certainty": "it contributes no variance, as if sampled with certainty",
    "remove": "it contributes no variance",
}
_UNSTRATIFIED: Final = "<all rows>"
_CENSUS: Final = 1e-7  # R's survey treats a sampling fraction within this of 1 as a census


class LonelyPSUWarning(UserWarning):
    """Some strata hold a single PSU, so their variance follows the ``lonely_psu`` rule."""


def direct_estimates(
    survey: SurveyData,
    outcome: str,
    *,
    by: str | Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    missing: Sequence[str] | None = None,
    weight: str | None = None,
    strata: str | None = None,
    cluster: str | None = None,
    fpc: str | None = None,
    lonely_psu: str = "adjust",
    interval: str = "beta",
    prob: float | None = None,
    recode: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Raw and design-weighted shares of each category by area, with design-based errors.

    Parameters
    ----------
    survey
        A :class:`~opinionmap.Survey` (its codebook gives the categories, missing
        codes, weight and design columns) or a DataFrame.
    outcome
        The question.
    by
        Column(s) to estimate by (default: the survey codebook's area). Each
        combination is a domain of the whole design.
    categories
        Categories to report (default: the codebook's levels, or the observed
        values). Responses outside them (missing codes) are dropped first, as the
        model does; their respondents stay in the design (their PSUs count).
    missing
        Codes to drop (default: the codebook's missing codes for ``outcome``).
    weight
        Design-weight column (default: the codebook's weight; without one, all 1,
        or with an fpc the inverse PSU sampling fraction, as R's ``svydesign``).
    strata, cluster, fpc
        The design's strata, primary sampling unit (PSU) and finite population
        correction columns (default: the codebook's). The fpc is the population
        count of PSUs in each stratum, or the sampling fraction (values <= 1).
        Without strata the sample is one stratum; without a cluster each
        respondent is a PSU.
    lonely_psu
        What a stratum with one PSU contributes to the variance, as R's
        ``options(survey.lonely.psu=)``: ``"adjust"`` (default: centre it at the
        grand mean), ``"average"`` (the other strata's average), ``"certainty"``
        or ``"remove"`` (nothing), ``"fail"`` (an error). Such strata are named
        in a :class:`LonelyPSUWarning` and in ``table.attrs["lonely_strata"]``.
    interval
        ``"beta"`` (default): the Korn-Graubard interval of R's
        ``svyciprop(method="beta")``; ``"logit"``: ``svyciprop(method="logit")``.
        A share of 0 or 1 gets the Korn-Graubard interval with the effective
        sample size set to the area's respondents, so it never has zero width.
    prob
        Width of the interval (default :func:`~opinionmap.summaries.interval_prob`).
    recode
        Answers read as another category before anything is counted, e.g. the rare
        answers a model merged (``{"usa": "other", "germany": "other"}``; see
        :attr:`Design.recode <opinionmap.design.Design.recode>`).

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``category``, ``n_respondents``, ``raw``, ``raw_se``
        (binomial), ``weighted``, ``weighted_se`` (linearised), ``lower``,
        ``upper``, ``n_effective`` (Kish's effective sample size of the area),
        ``df`` (the area's design degrees of freedom: PSUs minus strata it
        touches) and ``design_effect`` (variance over that of a simple random
        sample of the area's respondents, R's ``deff="replace"``). ``attrs``
        holds ``lonely_strata``, ``lonely_psu`` and ``interval``.

    Raises
    ------
    SurveyError
        If a column is absent, the weights or design columns are invalid, an
        option is unknown, or ``lonely_psu="fail"`` meets a stratum with one PSU.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"area": ["a", "a", "a", "b"], "y": ["x", "z", "x", "z"],
    ...                    "w": [1.0, 3.0, 1.0, 2.0]})
    >>> t = direct_estimates(df, "y", by="area", weight="w")
    >>> t.loc[(t.area == "a") & (t.category == "x"), ["raw", "weighted"]].round(3).values.tolist()
    [[0.667, 0.4]]
    >>> clustered = pd.DataFrame({"area": ["a"] * 6, "y": list("xxzxzz"),
    ...                           "village": [1, 1, 2, 2, 3, 3]})
    >>> t = direct_estimates(clustered, "y", by="area", cluster="village")
    >>> t[["category", "weighted", "weighted_se", "df"]].round(3).values.tolist()
    [['x', 0.5, 0.289, 2], ['z', 0.5, 0.289, 2]]
    """
    df, source = as_frame(survey)
    where = source if source is not None else "<DataFrame>"
    codebook: Codebook | None = getattr(survey, "codebook", None)
    by_cols = _by_columns(by, codebook)
    if codebook is not None:
        weight = weight or _role_name(codebook, "weight")
        strata = strata or _role_name(codebook, "strata")
        cluster = cluster or _role_name(codebook, "cluster")
        fpc = fpc or _role_name(codebook, "fpc")
    absent = [c for c in [outcome, *by_cols, strata, cluster, fpc] if c and c not in df.columns]
    if absent:
        raise SurveyError(
            f"direct estimates: column(s) {format_values(absent)} not in the survey "
            f"(columns: {format_values(list(df.columns), limit=30)})."
        )
    _check_choice(lonely_psu, LONELY_PSU, "lonely_psu")
    _check_choice(interval, INTERVALS, "interval")
    design = _design(df, weight, strata, cluster, fpc, where)
    lonely = _lonely_strata(design, strata, lonely_psu)
    answers, categories = _responses(df, outcome, codebook, categories, missing, recode)
    keep = answers >= 0
    keys = pd.MultiIndex.from_frame(df.loc[keep, by_cols].astype(str))
    labels = keys.unique().sort_values()
    domain = np.full(len(df), -1, dtype=np.intp)
    domain[keep] = labels.get_indexer(keys)
    indicators = answers[:, None] == np.arange(len(categories))
    stats = _domain_means(indicators.astype(float), domain, design, lonely_psu)
    table = _table(stats, list(labels), by_cols, categories, interval, interval_prob(prob))
    table.attrs.update(lonely_strata=lonely, lonely_psu=lonely_psu, interval=interval)
    return table


# -- inputs ---------------------------------------------------------------------------
def _by_columns(by: str | Sequence[str] | None, codebook: Codebook | None) -> list[str]:
    if by is None:
        if codebook is None or codebook.area is None:
            raise SurveyError(
                "direct estimates: which column is the area? Pass by=... (the survey has no "
                "codebook area)."
            )
        by = codebook.area.name
    return [by] if isinstance(by, str) else list(by)


def _role_name(codebook: Codebook, role: str) -> str | None:
    variable = getattr(codebook, role)
    return variable.name if variable is not None else None


def _check_choice(value: str, allowed: Sequence[str], name: str) -> None:
    if value not in allowed:
        raise SurveyError(
            f"direct estimates: unknown {name} {value!r}; allowed: {format_values(allowed)}."
        )


def _responses(
    df: pd.DataFrame,
    outcome: str,
    codebook: Codebook | None,
    categories: Sequence[str] | None,
    missing: Sequence[str] | None,
    recode: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Each row's category index (-1: a missing code or another value), and the categories.

    Values are compared as text, once per distinct value, after ``recode``.
    """
    variable = codebook[outcome] if codebook is not None and outcome in codebook.names else None
    if missing is None:
        missing = tuple(variable.missing) if variable is not None else ()
    codes, uniques = pd.factorize(df[outcome], use_na_sentinel=False)
    labels = pd.Series(np.asarray(uniques, dtype=object)).astype(str)
    if recode:
        labels = labels.replace(dict(recode))
    answered = ~labels.isin(list(missing)).to_numpy()
    if categories is None:
        if variable is not None and variable.levels:
            categories = [str(v) for v in variable.levels]
        else:
            categories = sorted(set(labels[answered]))
        if recode:
            categories = list(dict.fromkeys(recode.get(c, c) for c in categories))
    position = pd.Index(list(categories)).get_indexer(pd.Index(labels))
    return np.where(answered, position, -1)[codes], list(categories)


def _weights(rows: pd.DataFrame, weight: str) -> np.ndarray:
    """The design weights of the rows, checked."""
    if weight not in rows.columns:
        raise SurveyError(f"direct estimates: no weight column {weight!r} in the survey.")
    w = pd.to_numeric(rows[weight], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(w).all() or (w < 0).any():
        raise SurveyError(
            f"direct estimates: weight column {weight!r} has missing, non-numeric or "
            "negative values."
        )
    return w


# -- the design -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    """A one-stage design as arrays: each row's PSU, each PSU's stratum, per-stratum sizes."""

    weights: np.ndarray  # (rows,)
    psu: np.ndarray  # (rows,) PSU index; PSUs are nested in strata
    psu_stratum: np.ndarray  # (PSUs,) stratum index of each PSU
    n_psu: np.ndarray  # (strata,) sampled PSUs per stratum
    fpc_factor: np.ndarray  # (strata,) 1 - sampling fraction (1 without an fpc)
    strata: tuple[str, ...]  # (strata,) labels

    @property
    def lonely(self) -> np.ndarray:
        """Strata with one PSU that are not a census (their variance needs a rule)."""
        return (self.n_psu == 1) & (self.fpc_factor > 0)


def _design(
    df: pd.DataFrame,
    weight: str | None,
    strata: str | None,
    cluster: str | None,
    fpc: str | None,
    where: str,
) -> _Design:
    """Validate the design columns and index rows, PSUs and strata."""
    typed = validate_design(df, strata=strata, cluster=cluster, fpc=fpc, where=where)
    n = len(df)
    if strata is not None:
        stratum, labels = _codes(typed[strata])
    else:
        stratum, labels = np.zeros(n, dtype=np.intp), (_UNSTRATIFIED,)
    members = _codes(typed[cluster])[0] if cluster is not None else np.arange(n)
    pairs = stratum.astype(np.int64) * (int(members.max(initial=0)) + 1) + members
    psu = np.unique(pairs, return_inverse=True)[1]
    first = np.unique(psu, return_index=True)[1]
    psu_stratum = stratum[first]
    n_psu = np.bincount(psu_stratum, minlength=len(labels))
    population = _population_psus(typed[fpc].to_numpy(), stratum, n_psu) if fpc else None
    if population is None:
        factor = np.ones(len(labels))
    else:
        factor = (population - n_psu) / population
        factor[factor < _CENSUS] = 0.0
    if weight is not None:
        w = _weights(df, weight)
    elif population is not None:  # R's svydesign: weights from the fpc when none are given
        w = (population / n_psu)[stratum]
    else:
        w = np.ones(n)
    return _Design(w, psu, psu_stratum, n_psu, factor, labels)


def _codes(column: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Compact integer codes of a Categorical column and the labels that occur."""
    used, codes = np.unique(column.cat.codes.to_numpy(), return_inverse=True)
    categories = column.cat.categories
    return codes.astype(np.intp), tuple(str(categories[c]) for c in used)


def _population_psus(values: np.ndarray, stratum: np.ndarray, n_psu: np.ndarray) -> np.ndarray:
    """Population PSUs per stratum from an fpc of counts, or of fractions (all <= 1)."""
    per_stratum = np.zeros(len(n_psu))
    per_stratum[stratum] = values  # validated: one value per stratum
    if (per_stratum <= 1).all():
        return n_psu / per_stratum
    return per_stratum


def _lonely_strata(design: _Design, strata: str | None, rule: str) -> list[str]:
    """Name the strata with one PSU: fail, or warn with the rule applied."""
    labels = [design.strata[h] for h in np.flatnonzero(design.lonely)]
    if not labels:
        return labels
    column = f"strata column {strata!r}" if strata is not None else "the unstratified sample"
    what = f"stratum(s) {format_values(labels)} of {column} hold a single PSU"
    if rule == "fail":
        raise SurveyError(
            f"direct estimates: {what}, so their variance cannot be estimated; merge each "
            "with a similar stratum, or pass lonely_psu='adjust' (or 'average', 'certainty', "
            "'remove')."
        )
    warnings.warn(
        f"direct estimates: {what}; with lonely_psu={rule!r} {_LONELY_RULES[rule]}. Merge "
        "each with a similar stratum, or choose another lonely_psu rule.",
        LonelyPSUWarning,
        stacklevel=3,
    )
    return labels


# -- estimation -----------------------------------------------------------------------
@dataclass(frozen=True)
class _DomainStats:
    """Per-domain weighted means of each column with their design variances."""

    mean: np.ndarray  # (domains, columns)
    var: np.ndarray  # (domains, columns)
    n: np.ndarray  # (domains,) rows
    n_positive: np.ndarray  # (domains,) rows with a positive weight
    df: np.ndarray  # (domains,) PSUs minus strata holding positive-weight rows
    kish: np.ndarray  # (domains,) Kish's effective sample size
    raw: np.ndarray  # (domains, columns) unweighted means


def _domain_means(
    values: np.ndarray, domain: np.ndarray, design: _Design, lonely_psu: str
) -> _DomainStats:
    """Hajek means of ``values`` (rows x columns) in each domain, with R's domain variance.

    ``domain`` holds each row's domain index, or -1 for rows outside every
    domain (they stay in the design: their PSUs count in ``n_h``).
    """
    inside = domain >= 0
    d, y, w = domain[inside], values[inside], design.weights[inside]
    size = int(d.max(initial=-1)) + 1
    total = np.bincount(d, weights=w, minlength=size)
    n = np.bincount(d, minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _sums(d, w[:, None] * y, size) / total[:, None]
        z = w[:, None] * (y - mean[d]) / total[d][:, None]
        kish = np.where(total > 0, total**2 / np.bincount(d, weights=w**2, minlength=size), 0.0)
    var = _variance(z, d, design.psu[inside], design, size, lonely_psu)
    positive = w > 0
    return _DomainStats(
        mean=mean,
        var=var,
        n=n,
        n_positive=np.bincount(d[positive], minlength=size),
        df=_degrees_of_freedom(d[positive], design.psu[inside][positive], design, size),
        kish=kish,
        raw=_sums(d, y, size) / n[:, None],
    )


def _sums(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Column sums of ``values`` (rows x columns) by ``index``: (size x columns)."""
    return np.stack(
        [np.bincount(index, weights=values[:, k], minlength=size) for k in range(values.shape[1])],
        axis=1,
    )


def _variance(
    z: np.ndarray,
    domain: np.ndarray,
    psu: np.ndarray,
    design: _Design,
    size: int,
    lonely_psu: str,
) -> np.ndarray:
    """With-replacement variance of the domain totals of ``z`` over PSUs within strata."""
    unique, cell = np.unique(psu.astype(np.int64) * size + domain, return_inverse=True)
    totals = _sums(cell, z, len(unique))  # one row per (PSU, domain) holding the domain
    stratum = design.psu_stratum[unique // size]
    key = stratum * size + unique % size
    n_strata, k = len(design.n_psu), z.shape[1]
    squares = _sums(key, totals**2, n_strata * size).reshape(n_strata, size, k)
    sums = _sums(key, totals, n_strata * size).reshape(n_strata, size, k)
    n_h = design.n_psu[:, None, None].astype(float)
    f = design.fpc_factor[:, None, None]
    # sum over all n_h PSUs, zeros included, of (Z - mean Z)^2 = sum Z^2 - (sum Z)^2 / n_h;
    # a lonely PSU ("adjust") is centred at the grand mean, 0 for a mean's linearisation
    with np.errstate(divide="ignore", invalid="ignore"):
        centred = np.where(n_h > 1, n_h / (n_h - 1) * (squares - sums**2 / n_h), squares)
    contribution = f * centred
    lonely = design.lonely
    if lonely_psu == "adjust" or not lonely.any():
        return contribution.sum(axis=0)
    contribution[lonely] = 0.0
    if lonely_psu != "average":
        return contribution.sum(axis=0)
    rows_in = np.bincount(design.psu_stratum[psu] * size + domain, minlength=n_strata * size)
    present = rows_in.reshape(n_strata, size) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = present.sum(axis=0) / (present & ~lonely[:, None]).sum(axis=0)
    return contribution.sum(axis=0) * scale[:, None]


def _degrees_of_freedom(
    domain: np.ndarray, psu: np.ndarray, design: _Design, size: int
) -> np.ndarray:
    """Per domain: PSUs minus strata among its rows, as R's ``degf()`` of a subset."""
    psus = np.unique(psu.astype(np.int64) * size + domain)
    strata = np.unique(design.psu_stratum[psus // size] * size + psus % size)
    return np.bincount(psus % size, minlength=size) - np.bincount(strata % size, minlength=size)


# -- intervals and the table ----------------------------------------------------------
def _intervals(
    p: np.ndarray, var: np.ndarray, n: np.ndarray, df: np.ndarray, prob: float, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds for shares ``p`` with design variance ``var`` (elementwise).

    ``n`` is the domain's respondents and ``df`` its design degrees of freedom
    (at least 1 is used for the quantiles). Korn-Graubard: Clopper-Pearson at
    the effective sample size ``p (1 - p) / var``, rescaled by
    ``(t_{n-1} / t_df)^2``; at ``p`` = 0 or 1 the effective size is ``n``.
    Logit: ``expit(logit(p) +- t_df se / (p (1 - p)))``, with the
    Korn-Graubard bounds at ``p`` = 0 or 1.
    """
    alpha = 1.0 - prob
    df_q = np.maximum(df, 1).astype(float)
    interior = (p > 0) & (p < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(interior, p * (1 - p) / var, n.astype(float))
        ratio = t_dist.ppf(alpha / 2, np.maximum(n - 1, 1)) / t_dist.ppf(alpha / 2, df_q)
        n_eff = n_eff * np.where(n > 1, ratio**2, 1.0)
        x = n_eff * p
        lower = np.where(p > 0, beta_dist.ppf(alpha / 2, x, n_eff - x + 1), 0.0)
        upper = np.where(p < 1, beta_dist.ppf(1 - alpha / 2, x + 1, n_eff - x), 1.0)
        if method == "logit":
            half = t_dist.ppf(1 - alpha / 2, df_q) * np.sqrt(var) / (p * (1 - p))
            lower = np.where(interior, expit(logit(p) - half), lower)
            upper = np.where(interior, expit(logit(p) + half), upper)
    census = interior & (var == 0)  # no sampling error (every PSU sampled)
    lower, upper = np.where(census, p, lower), np.where(census, p, upper)
    unknown = np.isnan(p) | np.isnan(var)  # no weight in the area, or no variance rule
    return np.where(unknown, np.nan, lower), np.where(unknown, np.nan, upper)


def _table(
    stats: _DomainStats,
    labels: list[tuple[str, ...]],
    by_cols: list[str],
    categories: list[str],
    interval: str,
    prob: float,
) -> pd.DataFrame:
    """One row per domain and category, domains in sorted order, categories as given."""
    k = len(categories)
    p, var = stats.mean.ravel(), stats.var.ravel()
    n, n_positive = np.repeat(stats.n, k), np.repeat(stats.n_positive, k)
    df = np.repeat(stats.df, k)
    lower, upper = _intervals(p, var, n, df, prob, interval)
    raw = stats.raw.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = np.where(
            (p > 0) & (p < 1) & (n_positive > 1), var * (n_positive - 1) / (p * (1 - p)), np.nan
        )
    keys = np.array(labels, dtype=object).reshape(len(labels), len(by_cols))
    table = pd.DataFrame(np.repeat(keys, k, axis=0), columns=by_cols)
    columns = {
        "category": np.tile(np.array(categories, dtype=object), len(labels)),
        "n_respondents": n,
        "raw": raw,
        "raw_se": np.sqrt(raw * (1 - raw) / n),
        "weighted": p,
        "weighted_se": np.sqrt(var),
        "lower": lower,
        "upper": upper,
        "n_effective": np.repeat(stats.kish, k),
        "df": df,
        "design_effect": deff,
    }
    return table.assign(**columns)
