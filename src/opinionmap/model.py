"""The PyMC graph of a :class:`~opinionmap.design.Design`, as its plan says.

``build_model(design, plan)`` returns a ``pm.Model`` whose every variable has
labelled dims (``coef``, ``category``, ``cutpoint`` and one dim per grouping
term, named after it: ``region``, ``region:ethnicity``). Every choice of how to
sample it (non-centring weights, paired SDs, centring of numeric predictors) is
made beforehand by :func:`opinionmap.plan.make_plan`; this module only builds
the graph. The maths is in ``docs/model.md``.

- Likelihood: for every cell, ``sum_k counts[cell, k] * log p[cell, k]``, exactly
  the sum of the cell's respondents' categorical log-probabilities, so the
  aggregated and the respondent-level model have the same log-density; one compiled
  Op gives its sum and gradient (:mod:`opinionmap._likelihood`).
- ``u_<term>`` sums to zero over the term's levels (``ZeroSumNormal`` with scale
  ``sigma_<term>``); the intercept or the cutpoints carry the overall level.
  ``u = sigma**w * z`` with ``z ~ ZeroSumNormal(sigma**(1 - w))`` (``z_<term>``
  is sampled), the same prior for any weight ``w``.
- A paired main term and interaction have ``sigma_a = r cos(theta)``,
  ``sigma_a:b = r sin(theta)`` times their prior scales, ``r ~ Rayleigh(1)``
  (``sd_radius_<a:b>``), ``theta ~ Uniform(0, pi/2)`` (``sd_angle_<a:b>``): the prior
  of two independent ``HalfNormal`` with those scales.
- Centred numeric columns: ``Intercept_at_means`` / ``cutpoints_at_means`` are
  sampled; ``Intercept`` and ``cutpoints`` (reported) are for the columns as given.
- A term with a structured prior (:mod:`opinionmap.structure`) has
  ``u = sigma * B z`` with ``z_<term> ~ N(0, 1)`` over the scaled eigenbasis ``B``
  (``rw1``, ``rw2``; ``rw2`` adds ``sigma * trend * z_trend_<term>``), or for
  ``bym2`` ``u = sigma * (sqrt(1 - rho) theta + sqrt(rho) B z)`` with
  ``theta = z_<term> ~ ZeroSumNormal(1)``, ``z_icar_<term> ~ N(0, 1)`` and
  ``rho_<term> ~ Beta(2, 2)``.
- A term with varying slopes ``(1 + x | g)`` has ``u_<term>`` (level, coef[, category]):
  each level's intercept and slopes ``L z`` with ``L`` the Cholesky factor of
  ``diag(sigma) R diag(sigma)``, ``R ~ LKJ(2)`` (``chol_<term>``, per category in a
  categorical model) or ``R = I`` for ``||``, ``z_<term>`` zero-sum over the levels.
- A hurdle model (``[outcome] hurdle``) adds a second, bernoulli linear predictor on the
  same terms for saying the hurdle code, its parameters prefixed ``hu_`` (``hu_Intercept``,
  ``hu_beta``, ``hu_sigma_region``): ``P(code) = expit(hu_eta)``, ``P(k) = (1 - P(code))
  P(k | answering)``; the two parts' likelihoods add up to the hurdle model's.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from opinionmap._likelihood import cell_loglik
from opinionmap.design import HURDLE, Design, GroupIndex, hurdle_parts
from opinionmap.plan import ANGLE, CENTRED, RADIUS, Plan, make_plan
from opinionmap.spec import Priors
from opinionmap.structure import Graph, structured_basis

# Beta parameters of BYM2's mixing parameter rho (docs/model.md section 12)
RHO_PRIOR = (2.0, 2.0)

__all__ = ["build_model", "cutpoint_labels", "model_coords", "polar_sds"]


def cutpoint_labels(levels: tuple[str, ...]) -> list[str]:
    """Labels of ordinal cutpoints, e.g. ``["less->same", "same->more"]``."""
    return [f"{a}->{b}" for a, b in pairwise(levels)]


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
        coords["cutpoint"] = cutpoint_labels(design.answers)
    for g in design.groups:
        coords[g.dim] = list(g.levels)
    for graph in design.graphs:
        width = structured_basis(graph).matrix.shape[1]
        coords[_basis_dim(graph)] = [str(i) for i in range(width)]
    if design.spec.correlated_terms:
        # the second axis of the correlation matrices cor_<term>
        coords["category_"] = list(design.categories[1:])
    for g in design.groups:
        if g.slopes:
            coords[g.coef_dim] = list(g.coefs)
            coords[f"{g.coef_dim}_"] = list(g.coefs)
    return coords


def _basis_dim(graph: Graph) -> str:
    """The dim of a structured term's basis coefficients, e.g. ``region_basis``."""
    return f"{graph.term}_basis"


def build_model(
    design: Design, plan: Plan | None = None, *, counts_as_data: bool = False
) -> pm.Model:
    """Build the PyMC model for a design, sampled as ``plan`` says.

    ``plan=None`` makes the design's plan (:func:`~opinionmap.plan.make_plan`).
    ``counts_as_data=True`` holds the cell x answer counts in a ``pm.Data`` variable
    named ``counts``, so one compiled model serves other counts on the same cells
    (``nutpie``'s ``compiled.with_data(counts=...)``: simulation studies); by default
    they are constants of the graph, which the compile cache keys on.

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
    plan = make_plan(design) if plan is None else plan
    with pm.Model(coords=model_coords(design)) as model:
        counts: Any = design.counts.astype(float)
        if counts_as_data:
            model.add_coord("answer", list(design.categories))
            counts = pm.Data("counts", counts, dims=("cell", "answer"))
        if design.spec.hurdle is None:
            loglik = _part_loglik(design, plan, counts)
        else:
            # P(k) = (1 - P(code)) P(k | answering), P(code) = expit(hu_eta): the sum of the
            # answers' model on their counts and the hurdle's on (answered, gave the code)
            answered, hurdle = hurdle_parts(design)
            assert plan.hurdle is not None, "a hurdle model's plan has a hurdle part"
            k = len(design.answers)
            if counts_as_data:
                parts = counts[:, :k], pt.stack([counts[:, :k].sum(axis=1), counts[:, k]], axis=1)
            else:
                parts = answered.counts.astype(float), hurdle.counts.astype(float)
            loglik = _part_loglik(answered, plan, parts[0]) + _part_loglik(
                hurdle, plan.hurdle, parts[1], HURDLE
            )
        pm.Potential("loglik", loglik)
    return model


def _part_loglik(design: Design, plan: Plan, counts: Any, prefix: str = "") -> pt.TensorVariable:
    """One linear predictor's parameters (``<prefix><name>``) and its summed log-likelihood.

    ``prefix`` is ``""`` for the outcome model and ``hu_`` for a hurdle model's
    non-answer part, whose design is :func:`~opinionmap.design.hurdle_parts`' second.
    """
    cat_dims: tuple[str, ...] = ("category",) if design.spec.family == "categorical" else ()
    centre = None if plan.centre is None else np.asarray(plan.centre, dtype=float)
    eta, shift = _population_part(design, centre, cat_dims, prefix)
    sigmas = _group_sds(design, plan, cat_dims, prefix)
    for g in design.groups:
        graph = design.graph(g.name)
        if g.slopes:
            eta = eta + _slope_effect(design, g, cat_dims, prefix)
        elif graph is not None:
            eta = eta + _structured_effect(g, graph, sigmas[g.name], cat_dims, prefix)
        elif g.name in design.spec.correlated_terms:
            eta = eta + _correlated_effect(design, g)
        else:
            w = plan.weight(g.name)
            eta = eta + _group_effect(g, w, sigmas[g.name], cat_dims, prefix)
    return _loglik(design, eta, shift, counts)


def _population_part(
    design: Design, centre: np.ndarray | None, cat_dims: tuple[str, ...], prefix: str = ""
) -> tuple[pt.TensorVariable, pt.TensorVariable | None]:
    """The fixed effects and intercept of every cell, and the shift the centring implies.

    Numeric columns enter centred at their respondent means (``centre``), so that the
    intercept (or the cutpoints) and their slopes are not correlated; the reported
    ``Intercept`` and ``cutpoints`` are for the columns as given.
    """
    priors = design.spec.priors
    width = len(design.categories) - 1 if cat_dims else 1
    eta = pt.zeros((design.n_cells, width))
    beta = None
    if design.coefs:
        scale = np.array([priors.fixed_for(name) for name in design.coef_names])
        if priors.fixed_autoscale:
            scale = scale / np.where(design.x_sd > 0, design.x_sd, 1.0)
        beta_dims = ("coef", *cat_dims)
        beta_scale = scale[:, None] if cat_dims else scale
        beta = pm.Normal(f"{prefix}beta", 0.0, beta_scale, dims=beta_dims)
        X = pt.as_tensor_variable(design.X - (centre if centre is not None else 0.0))
        eta = eta + (X @ beta if cat_dims else (X @ beta)[:, None])
    # the overall level implied by the centring: x_mean @ beta, (K-1,) or scalar
    shift = centre @ beta if centre is not None and beta is not None else None
    if design.has_intercept:
        dims = cat_dims or None
        if shift is None:
            intercept = pm.Normal(f"{prefix}Intercept", 0.0, priors.intercept, dims=dims)
        else:
            at_mean = pm.Normal(f"{prefix}Intercept{CENTRED}", 0.0, priors.intercept, dims=dims)
            pm.Deterministic(f"{prefix}Intercept", at_mean - shift, dims=dims)
            intercept = at_mean
        eta = eta + (intercept[None, :] if cat_dims else intercept)
    return eta, shift


def _loglik(
    design: Design, eta: pt.TensorVariable, shift: pt.TensorVariable | None, counts: Any
) -> pt.TensorVariable:
    """The cells' summed log-likelihood of ``counts`` (cells, K); adds ordinal cutpoints.

    One compiled Op computes it and its gradient (:func:`opinionmap._likelihood.cell_loglik`):
    the log-softmax, or the cumulative link's log-probabilities, times the counts.
    """
    family, link = design.spec.family, design.spec.link
    if family == "categorical":
        return cell_loglik(family, link, eta, counts)
    if family == "bernoulli":
        return cell_loglik(family, link, eta[:, 0], counts)
    k = len(design.answers)
    cutpoints = pm.Normal(
        "cutpoints" if shift is None else f"cutpoints{CENTRED}",
        0.0,
        design.spec.priors.cutpoints,
        dims="cutpoint",
        transform=pm.distributions.transforms.ordered,
        initval=np.linspace(-1.0, 1.0, k - 1),
    )
    if shift is not None:
        # P(y <= k) = expit(c_k - x @ beta) = expit(c_k - shift - (x - mean) @ beta)
        pm.Deterministic("cutpoints", cutpoints + shift, dims="cutpoint")
    return cell_loglik(family, link, eta[:, 0], counts, cutpoints)


def polar_sds(
    priors: Priors, main: str, interaction: str, dims: Any, prefix: str = ""
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Two paired terms' SDs from a radius and an angle (``sd_radius_``, ``sd_angle_<b>``).

    ``|(x, y)|`` of two independent N(0, 1) is Rayleigh(1), i.e. Weibull(2, sqrt(2)), and
    its angle is uniform and independent of it; each SD then takes its own scale, so the
    prior is that of two independent HalfNormals.
    """
    radius = pm.Weibull(f"{prefix}{RADIUS}{interaction}", alpha=2.0, beta=np.sqrt(2.0), dims=dims)
    angle = pm.Uniform(f"{prefix}{ANGLE}{interaction}", 0.0, np.pi / 2.0, dims=dims)
    return (
        priors.group_sd_for(main) * radius * pt.cos(angle),
        priors.group_sd_for(interaction) * radius * pt.sin(angle),
    )


def _group_sds(
    design: Design, plan: Plan, cat_dims: tuple[str, ...], prefix: str = ""
) -> dict[str, pt.TensorVariable]:
    """``sigma_<term>`` for every grouping term, paired terms in polar coordinates."""
    priors = design.spec.priors
    dims = cat_dims or None
    sigmas: dict[str, pt.TensorVariable] = {}
    for main, interaction in plan.pairs:
        sd_main, sd_interaction = polar_sds(priors, main, interaction, dims, prefix)
        sigmas[main] = pm.Deterministic(f"{prefix}sigma_{main}", sd_main, dims=dims)
        sigmas[interaction] = pm.Deterministic(
            f"{prefix}sigma_{interaction}", sd_interaction, dims=dims
        )
    # terms with correlated category effects or with varying slopes have their own
    joint = {*design.spec.correlated_terms, *design.spec.slope_terms}
    for g in design.groups:
        if g.name not in sigmas and g.name not in joint:
            sigmas[g.name] = pm.HalfNormal(
                f"{prefix}sigma_{g.name}", priors.group_sd_for(g.name), dims=dims
            )
    return sigmas


def _group_effect(
    group: GroupIndex,
    w: np.ndarray,
    sigma: pt.TensorVariable,
    cat_dims: tuple[str, ...],
    prefix: str = "",
) -> pt.TensorVariable:
    """Add ``z_<term>`` and ``u_<term>`` for a term with SD ``sigma``; return the cells' effects."""
    index = pt.as_tensor_variable(group.index)
    if cat_dims:
        # ZeroSumNormal constrains its last axis, so z is (category, level)
        scale = sigma[:, None]
        power = pt.as_tensor_variable(w[:, None])
        z = pm.ZeroSumNormal(
            f"{prefix}z_{group.name}", sigma=scale ** (1.0 - power), dims=(*cat_dims, group.dim)
        )
        u = pm.Deterministic(
            f"{prefix}u_{group.name}", (z * scale**power).T, dims=(group.dim, *cat_dims)
        )
        return u[index]
    weight = float(w[0])
    z = pm.ZeroSumNormal(f"{prefix}z_{group.name}", sigma=sigma ** (1.0 - weight), dims=group.dim)
    u = pm.Deterministic(f"{prefix}u_{group.name}", z * sigma**weight, dims=group.dim)
    return u[index][:, None]


def _lkj_covariance(
    name: str, n: int, scale: float
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """Cholesky factor, correlation and SDs of ``diag(sigma) R diag(sigma)``.

    ``R ~ LKJ(2)``, ``sigma_j ~ HalfNormal(scale)``; the packed factor is sampled as ``name``.
    """
    return pm.LKJCholeskyCov(
        name, n=n, eta=2.0, sd_dist=pm.HalfNormal.dist(scale, shape=n), compute_corr=True
    )


def _correlated_effect(design: Design, group: GroupIndex) -> pt.TensorVariable:
    """``u_<term>`` whose category effects are drawn jointly (``(1 | ID | g)``).

    Each level's K-1 effects are ``N(0, diag(sigma) R diag(sigma))`` with ``R ~ LKJ(2)``
    and ``sigma_k ~ HalfNormal(group_sd)``, non-centred (``u = L z``, ``L`` the Cholesky
    factor), and, as for every term, they sum to zero over the levels.
    """
    name, k = group.name, len(design.categories) - 1
    chol, corr, stds = _lkj_covariance(f"chol_{name}", k, design.spec.priors.group_sd_for(name))
    pm.Deterministic(f"sigma_{name}", stds, dims="category")
    pm.Deterministic(f"cor_{name}", corr, dims=("category", "category_"))
    # ZeroSumNormal constrains its last axis, so z is (category, level)
    z = pm.ZeroSumNormal(f"z_{name}", sigma=1.0, dims=("category", group.dim))
    u = pm.Deterministic(f"u_{name}", (chol @ z).T, dims=(group.dim, "category"))
    return u[pt.as_tensor_variable(group.index)]


def _slope_effect(
    design: Design, group: GroupIndex, cat_dims: tuple[str, ...], prefix: str = ""
) -> pt.TensorVariable:
    """``u_<term>`` of a term with varying slopes, (levels, coefs[, K-1]); the cells' part.

    A level's coefficients (its intercept and slopes) are ``N(0, diag(sigma) R
    diag(sigma))`` with ``R ~ LKJ(2)`` and ``sigma_j ~ HalfNormal(group_sd)``
    (``||``: ``R = I``), one such draw per linear predictor; non-centred
    (``u = L z``) and summing to zero over the levels, so the fixed effects are the
    average intercept and slopes.
    """
    name, m = group.name, len(group.coefs)
    scale = design.spec.priors.group_sd_for(name)
    level, coef = group.dim, group.coef_dim
    width = len(design.categories) - 1 if cat_dims else 1
    # ZeroSumNormal constrains its last axis, so z is ([category,] coef, level)
    z = pm.ZeroSumNormal(f"{prefix}z_{name}", sigma=1.0, dims=(*cat_dims, coef, level))
    z = z if cat_dims else z[None]
    if not group.correlated:  # '||', or one coefficient alone
        sigma = pm.HalfNormal(f"{prefix}sigma_{name}", scale, dims=(coef, *cat_dims))
        chol = pt.eye(m)[None] * (sigma.T if cat_dims else sigma[None])[:, None, :]
    else:
        factors, stds, corrs = [], [], []
        for k in range(width):
            suffix = f"_{k}" if cat_dims else ""
            factor, corr, sd = _lkj_covariance(f"{prefix}chol_{name}{suffix}", m, scale)
            factors.append(factor)
            stds.append(sd)
            corrs.append(corr)
        chol = pt.stack(factors)
        pm.Deterministic(
            f"{prefix}sigma_{name}",
            pt.stack(stds, axis=1) if cat_dims else stds[0],
            dims=(coef, *cat_dims),
        )
        pm.Deterministic(
            f"{prefix}cor_{name}",
            pt.stack(corrs) if cat_dims else corrs[0],
            dims=(*cat_dims, coef, f"{coef}_"),
        )
    # (predictor, coef, coef) @ (predictor, coef, level) -> (level, coef, predictor)
    effects = pt.matmul(chol, z).transpose(2, 1, 0)
    pm.Deterministic(
        f"{prefix}u_{name}",
        effects if cat_dims else effects[:, :, 0],
        dims=(level, coef, *cat_dims),
    )
    W = pt.as_tensor_variable(group.slope_matrix(design.X))  # (cells, coefs)
    per_cell = effects[pt.as_tensor_variable(group.index)]  # (cells, coefs, predictor)
    return (per_cell * W[:, :, None]).sum(axis=1)


def _structured_effect(
    group: GroupIndex,
    graph: Graph,
    sigma: pt.TensorVariable,
    cat_dims: tuple[str, ...],
    prefix: str = "",
) -> pt.TensorVariable:
    """``u_<term>`` of a term with a structured prior, non-centred; return the cells' effects.

    ``u`` is (levels, K-1) for categorical models, (levels,) otherwise; each linear
    predictor has its own ``sigma`` (and ``rho`` for bym2) and independent draws.
    """
    index = pt.as_tensor_variable(group.index)
    basis = structured_basis(graph)
    matrix = pt.as_tensor_variable(basis.matrix)
    z = pm.Normal(
        f"{prefix}z_{'icar_' if graph.kind == 'bym2' else ''}{group.name}",
        0.0,
        1.0,
        dims=(_basis_dim(graph), *cat_dims),
    )
    structured = matrix @ z  # (levels[, K-1])
    if basis.trend is not None:
        slope = pm.Normal(f"{prefix}z_trend_{group.name}", 0.0, 1.0, dims=cat_dims or None)
        trend = pt.as_tensor_variable(basis.trend)
        structured = structured + (trend[:, None] * slope[None, :] if cat_dims else trend * slope)
    if graph.kind == "bym2":
        # ZeroSumNormal constrains its last axis, so theta is (category, level)
        theta = pm.ZeroSumNormal(f"{prefix}z_{group.name}", sigma=1.0, dims=(*cat_dims, group.dim))
        rho = pm.Beta(f"{prefix}rho_{group.name}", *RHO_PRIOR, dims=cat_dims or None)
        theta = theta.T if cat_dims else theta
        structured = pt.sqrt(1.0 - rho) * theta + pt.sqrt(rho) * structured
    u = pm.Deterministic(f"{prefix}u_{group.name}", structured * sigma, dims=(group.dim, *cat_dims))
    return u[index] if cat_dims else u[index][:, None]
