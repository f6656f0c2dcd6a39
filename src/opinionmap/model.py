"""The PyMC graph of a :class:`~opinionmap.design.Design`.

Kept apart from the design (which describes the data) and from fitting (which
samples): ``build_model(design)`` returns a ``pm.Model`` whose every variable
has labelled dims (``coef``, ``category``, ``cutpoint`` and one dim per grouping
term, named after it: ``region``, ``region:ethnicity``).

Likelihood: for every cell, ``sum_k counts[cell, k] * log p[cell, k]``. That is
exactly the sum of the respondent-level categorical log-probabilities of the
cell's respondents (no multinomial coefficient), so the aggregated model and
the respondent-level model have the same log-density, not merely the same
posterior.

Varying intercepts
------------------
``u_<term>`` sums to zero over the term's levels (a ``ZeroSumNormal`` with
scale ``sigma_<term>``, the standard deviation of the underlying normal); the
intercept (or, for ordinal models, the cutpoints) carries the overall level.
Without the constraint the mean of a term with few levels (age bands,
ethnicities) and the intercept or cutpoints trade off along a ridge that NUTS
with a diagonal mass matrix crosses slowly: on the Kazakhstan survey the
cutpoints had a bulk ESS of about 150 out of 2,000 draws and R-hat 1.03.

Parameterisation: ``u = sigma**w * z`` with ``z ~ ZeroSumNormal(sigma**(1 - w))``.
Whatever the weight ``w`` in [0, 1], ``u`` has the same distribution, so ``w``
changes only the geometry the sampler sees: ``w = 0`` is the centred form (good
when the data pin each level down more tightly than the levels differ),
``w = 1`` the non-centred form (good when they do not), and values between are
the partially non-centred forms of Papaspiliopoulos, Roberts and Sköld (2003).
``"auto"`` sets ``w = 1 / (1 + s**2 * I)`` (the optimal weight of the normal
model) for each term and category, where ``I`` is the Fisher information of a
typical level (median respondents per level x the information of one
respondent at the observed category shares) and ``s`` is
:func:`pilot_fraction` (:data:`PILOT_FRACTION`, less for terms with few
levels) times a moment (DerSimonian-Laird) estimate of the
term's standard deviation from the raw level log-odds (after regressing out
area-level covariates, which explain part of the spread). The fraction aims the
weight at the lower tail of ``sigma``'s posterior, where centred forms develop
funnels. ``[priors.parameterization]`` forces ``"centered"`` (``w = 0``) or
``"noncentered"`` (``w = 1``). ``z_<term>`` is the sampled auxiliary.

Paired standard deviations
--------------------------
A two-factor interaction ``(1 | a:b)`` and one of its factors' own term ``(1 | a)``
can explain the same variation: where each region's respondents are mostly of one
ethnicity, a region's effect and its majority's region x ethnicity effect move the
same respondents, so the data pin down roughly ``sigma_a**2 + sigma_a:b**2`` and
the two SDs trade off along an arc that NUTS with a diagonal mass matrix crosses
slowly. Such a pair is sampled in polar coordinates, ``sigma_a = r cos(theta)``,
``sigma_a:b = r sin(theta)``, with ``r ~ Rayleigh(group_sd)`` (``sd_radius_<a:b>``)
and ``theta ~ Uniform(0, pi/2)`` (``sd_angle_<a:b>``): exactly the prior of two
independent ``HalfNormal(group_sd)`` (tested), with the arc along one coordinate.
The main term paired with an interaction is the one whose levels the other factor
varies least within (:func:`sd_pairs`: the largest respondent share of the other
factor's most common level within each level); each term is paired at most once.
On the bundled categorical questions (4 chains x 1,000 draws, seeds 2020, 1, 2; age
and ethnicity then varying intercepts too) the worst R-hat went from 1.018, 1.026,
1.013 to 1.009, 1.007, 1.010 (main friend) and from 1.019, 1.012, 1.013 to 1.015,
1.010, 1.011 (model country).

Numeric predictors
------------------
Columns that involve a numeric variable (an area-level covariate such as a
region's share of Muslims, mean 0.7) enter centred at their respondent means;
otherwise the intercept or the cutpoints and the slope trade off along a ridge
(on the Kazakhstan survey: R-hat 1.011 for the cutpoints and the slope). The
sampled ``Intercept_at_means`` / ``cutpoints_at_means`` are the level at those
means, with the documented priors; ``Intercept`` and ``cutpoints`` (reported,
and used for prediction) are for the columns as given, as in brms.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from opinionmap.design import Design, GroupIndex

__all__ = [
    "CENTRED",
    "PILOT_FRACTION",
    "build_model",
    "cutpoint_labels",
    "is_auxiliary",
    "noncentering_weight",
    "numeric_means",
    "parameterization",
    "pilot_fraction",
    "pilot_group_sd",
    "sd_pairs",
]

PILOT_FRACTION = 0.5
# suffix of the intercept / cutpoints sampled at the numeric predictors' means
CENTRED = "_at_means"
# prefixes of the polar coordinates of a paired main term's and interaction's SDs
RADIUS = "sd_radius_"
ANGLE = "sd_angle_"


def cutpoint_labels(levels: tuple[str, ...]) -> list[str]:
    """Labels of ordinal cutpoints, e.g. ``["less->same", "same->more"]``."""
    return [f"{a}->{b}" for a, b in pairwise(levels)]


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
    4, 0.50 from about 13). Terms with few levels have sd posteriors reaching
    towards zero, where partly centred forms become funnels: on the bundled
    model_country question 20 of 25 divergences sat at the lowest 1% of an
    ethnicity sd (3 levels) whose weight was 0.32.
    """
    from scipy.stats import chi2

    if n_levels < 2:
        return PILOT_FRACTION
    df = n_levels - 1
    return float(min(PILOT_FRACTION, np.sqrt(chi2.ppf(0.05, df) / df)))


def noncentering_weight(design: Design, group: GroupIndex) -> np.ndarray:
    """The weight ``w`` in ``u = sigma**w * z`` for a term, one per linear predictor.

    0 is centred, 1 non-centred; ``"auto"`` uses the rule in the module docstring.
    """
    chosen = design.spec.priors.parameterization_for(group.name)
    width = _width(design)
    if chosen == "centered":
        return np.zeros(width)
    if chosen == "noncentered":
        return np.ones(width)
    per_level = design.respondents_per_level(group)
    s = pilot_fraction(int((per_level > 0).sum())) * pilot_group_sd(design, group)
    information = float(np.median(per_level)) * _respondent_information(design)
    return np.round(1.0 / (1.0 + s**2 * information), 2)


def parameterization(design: Design, group: GroupIndex) -> str:
    """``"centered"``, ``"noncentered"`` or ``"partial"`` for a grouping term."""
    w = noncentering_weight(design, group)
    if np.all(w == 0.0):
        return "centered"
    if np.all(w == 1.0):
        return "noncentered"
    return "partial"


def model_coords(design: Design) -> dict[str, list[str]]:
    """Coordinates of every dim the model uses."""
    family = design.spec.family
    coords: dict[str, list[str]] = {
        "coef": list(design.coef_names),
        "cell": [str(i) for i in range(design.n_cells)],
    }
    if family == "categorical":
        coords["category"] = list(design.categories[1:])
    elif family == "ordinal":
        coords["cutpoint"] = cutpoint_labels(design.categories)
    for g in design.groups:
        coords[g.dim] = list(g.levels)
    return coords


def build_model(design: Design) -> pm.Model:
    """Build the PyMC model for a design.

    Examples
    --------
    >>> import pandas as pd
    >>> from opinionmap.spec import ModelSpec
    >>> from opinionmap.design import build_design
    >>> df = pd.DataFrame({"y": ["a", "b", "a", "b"], "g": ["u", "u", "v", "v"]})
    >>> spec = ModelSpec(formula="y ~ 1 + (1 | g)", family="bernoulli", levels=("a", "b"))
    >>> model = build_model(build_design(spec, df))
    >>> sorted(model.named_vars_to_dims["u_g"])
    ['g']
    """
    spec = design.spec
    priors = spec.priors
    family = spec.family
    coords = model_coords(design)
    cat_dims: tuple[str, ...] = ("category",) if family == "categorical" else ()
    width = _width(design)

    # numeric columns enter centred at their respondent means, so that the intercept
    # (or the cutpoints) and their slopes are not correlated; the reported Intercept and
    # cutpoints are for the columns as given
    centre = numeric_means(design) if (design.has_intercept or family == "ordinal") else None
    with pm.Model(coords=coords) as model:
        eta = pt.zeros((design.n_cells, width))
        beta = None
        if design.coef_names:
            scale = np.full(len(design.coef_names), priors.fixed)
            if priors.fixed_autoscale:
                sd = np.where(design.x_sd > 0, design.x_sd, 1.0)
                scale = priors.fixed / sd
            beta_dims = ("coef", *cat_dims)
            beta_scale = scale[:, None] if cat_dims else scale
            beta = pm.Normal("beta", 0.0, beta_scale, dims=beta_dims)
            X = pt.as_tensor_variable(design.X - (centre if centre is not None else 0.0))
            eta = eta + (X @ beta if cat_dims else (X @ beta)[:, None])
        # the overall level implied by the centring: x_mean @ beta, (K-1,) or scalar
        shift = centre @ beta if centre is not None and beta is not None else None
        if design.has_intercept:
            dims = cat_dims or None
            if shift is None:
                intercept = pm.Normal("Intercept", 0.0, priors.intercept, dims=dims)
            else:
                at_mean = pm.Normal(f"Intercept{CENTRED}", 0.0, priors.intercept, dims=dims)
                pm.Deterministic("Intercept", at_mean - shift, dims=dims)
                intercept = at_mean
            eta = eta + (intercept[None, :] if cat_dims else intercept)
        sigmas = _group_sds(design, priors.group_sd, cat_dims)
        for g in design.groups:
            eta = eta + _group_effect(design, g, sigmas[g.name], cat_dims)

        counts = pt.as_tensor_variable(design.counts.astype(float))
        if family == "categorical":
            full = pt.concatenate([pt.zeros((design.n_cells, 1)), eta], axis=1)
            logp = full - pt.logsumexp(full, axis=1, keepdims=True)
        elif family == "bernoulli":
            logp = pt.concatenate([_log_sigmoid(-eta), _log_sigmoid(eta)], axis=1)
        else:
            k = len(design.categories)
            cutpoints = pm.Normal(
                "cutpoints" if shift is None else f"cutpoints{CENTRED}",
                0.0,
                priors.cutpoints,
                dims="cutpoint",
                transform=pm.distributions.transforms.ordered,
                initval=np.linspace(-1.0, 1.0, k - 1),
            )
            if shift is not None:
                # P(y <= k) = expit(c_k - x @ beta) = expit(c_k - shift - (x - mean) @ beta)
                pm.Deterministic("cutpoints", cutpoints + shift, dims="cutpoint")
            logp = ordinal_logp(eta[:, 0], cutpoints)
        pm.Potential("loglik", (counts * logp).sum())
    return model


def numeric_means(design: Design) -> np.ndarray | None:
    """Respondent means of the fixed-effect columns that involve a numeric variable.

    Zero for the dummy columns of categorical variables (left as they are); ``None``
    when no column is numeric, so the model needs no centring.
    """
    numeric = np.array(
        [any("[" not in part for part in name.split(":")) for name in design.coef_names],
        dtype=bool,
    )
    if not numeric.any():
        return None
    n_cell = design.counts.sum(axis=1).astype(float)
    means = (design.X * n_cell[:, None]).sum(axis=0) / n_cell.sum()
    return np.where(numeric, means, 0.0)


def is_auxiliary(name: str) -> bool:
    """Sampled helper variables left out of summaries.

    ``z_*``, the centred level, and the polar coordinates of paired SDs.
    """
    return name.startswith(("z_", RADIUS, ANGLE)) or name.endswith(CENTRED)


def sd_pairs(design: Design) -> dict[str, str]:
    """Main terms whose SD is sampled jointly with an interaction's: ``{main: interaction}``.

    For each two-factor interaction (in formula order) whose factors have terms of
    their own not yet paired, the factor whose levels hold the largest share of
    respondents in the other factor's most common level (on the Kazakhstan survey:
    region, as most regions' respondents are mostly of one ethnicity; see the module
    docstring, "Paired standard deviations").

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
    mains = {g.name for g in design.groups if len(g.factors) == 1}
    pairs: dict[str, str] = {}
    for group in design.groups:
        if len(group.factors) != 2:
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
    return pairs


def _group_sds(
    design: Design, sd_scale: float, cat_dims: tuple[str, ...]
) -> dict[str, pt.TensorVariable]:
    """``sigma_<term>`` for every grouping term, paired terms in polar coordinates."""
    dims = cat_dims or None
    sigmas: dict[str, pt.TensorVariable] = {}
    for main, interaction in sd_pairs(design).items():
        # |(x, y)| of two independent N(0, s^2) is Rayleigh(s), i.e. Weibull(2, sqrt(2) s),
        # and its angle is uniform and independent of it
        radius = pm.Weibull(
            f"{RADIUS}{interaction}", alpha=2.0, beta=np.sqrt(2.0) * sd_scale, dims=dims
        )
        angle = pm.Uniform(f"{ANGLE}{interaction}", 0.0, np.pi / 2.0, dims=dims)
        sigmas[main] = pm.Deterministic(f"sigma_{main}", radius * pt.cos(angle), dims=dims)
        sigmas[interaction] = pm.Deterministic(
            f"sigma_{interaction}", radius * pt.sin(angle), dims=dims
        )
    for g in design.groups:
        if g.name not in sigmas:
            sigmas[g.name] = pm.HalfNormal(f"sigma_{g.name}", sd_scale, dims=dims)
    return sigmas


def _group_effect(
    design: Design, group: GroupIndex, sigma: pt.TensorVariable, cat_dims: tuple[str, ...]
) -> pt.TensorVariable:
    """Add ``z_<term>`` and ``u_<term>`` for a term with SD ``sigma``; return the cells' effects."""
    w = noncentering_weight(design, group)
    index = pt.as_tensor_variable(group.index)
    if cat_dims:
        # ZeroSumNormal constrains its last axis, so z is (category, level)
        scale = sigma[:, None]
        power = pt.as_tensor_variable(w[:, None])
        z = pm.ZeroSumNormal(
            f"z_{group.name}", sigma=scale ** (1.0 - power), dims=(*cat_dims, group.dim)
        )
        u = pm.Deterministic(f"u_{group.name}", (z * scale**power).T, dims=(group.dim, *cat_dims))
        return u[index]
    weight = float(w[0])
    z = pm.ZeroSumNormal(f"z_{group.name}", sigma=sigma ** (1.0 - weight), dims=group.dim)
    u = pm.Deterministic(f"u_{group.name}", z * sigma**weight, dims=group.dim)
    return u[index][:, None]


def _log_sigmoid(x: pt.TensorVariable) -> pt.TensorVariable:
    return -pt.softplus(-x)


def ordinal_logp(eta: pt.TensorVariable, cutpoints: pt.TensorVariable) -> pt.TensorVariable:
    """Cumulative-logit log-probabilities, (cells, K), stable in the tails.

    ``P(y <= k) = sigmoid(c_k - eta)``; the middle categories use
    ``log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log1mexp(log sigmoid(b) - log sigmoid(a))``.
    """
    upper = cutpoints[None, :] - eta[:, None]  # (cells, K-1)
    log_cdf = _log_sigmoid(upper)
    first = log_cdf[:, :1]
    last = _log_sigmoid(-upper[:, -1:])
    middle = log_cdf[:, 1:] + pt.log1mexp(log_cdf[:, :-1] - log_cdf[:, 1:])
    return pt.concatenate([first, middle, last], axis=1)
