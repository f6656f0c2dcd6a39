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

Parameterisation of varying intercepts: ``"auto"`` uses the centred form
``u ~ Normal(0, sigma)`` when the term's levels hold on average at least
:data:`CENTERED_MIN_PER_LEVEL` respondents (the data pin each level down, and
the non-centred form would then create a funnel), and the non-centred form
``u = sigma * z, z ~ Normal(0, 1)`` otherwise (few respondents per level: the
prior dominates, and the centred form would create one).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from opinionmap.design import Design, GroupIndex

__all__ = ["CENTERED_MIN_PER_LEVEL", "build_model", "cutpoint_labels", "parameterization"]

CENTERED_MIN_PER_LEVEL = 100.0


def cutpoint_labels(levels: tuple[str, ...]) -> list[str]:
    """Labels of ordinal cutpoints, e.g. ``["less->same", "same->more"]``."""
    return [f"{a}->{b}" for a, b in pairwise(levels)]


def parameterization(design: Design, group: GroupIndex) -> str:
    """``"centered"`` or ``"noncentered"`` for a grouping term, by the rule above."""
    chosen = design.spec.priors.parameterization_for(group.name)
    if chosen != "auto":
        return chosen
    per_level = design.respondents_per_level(group).sum() / len(group.levels)
    return "centered" if per_level >= CENTERED_MIN_PER_LEVEL else "noncentered"


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
    width = len(design.categories) - 1 if family == "categorical" else 1

    with pm.Model(coords=coords) as model:
        eta = pt.zeros((design.n_cells, width))
        if design.has_intercept:
            intercept = pm.Normal("Intercept", 0.0, priors.intercept, dims=cat_dims or None)
            eta = eta + (intercept[None, :] if cat_dims else intercept)
        if design.coef_names:
            scale = np.full(len(design.coef_names), priors.fixed)
            if priors.fixed_autoscale:
                sd = np.where(design.x_sd > 0, design.x_sd, 1.0)
                scale = priors.fixed / sd
            beta_dims = ("coef", *cat_dims)
            beta_scale = scale[:, None] if cat_dims else scale
            beta = pm.Normal("beta", 0.0, beta_scale, dims=beta_dims)
            X = pt.as_tensor_variable(design.X)
            eta = eta + (X @ beta if cat_dims else (X @ beta)[:, None])
        for g in design.groups:
            dims = (g.dim, *cat_dims)
            sigma = pm.HalfNormal(f"sigma_{g.name}", priors.group_sd, dims=cat_dims or None)
            if parameterization(design, g) == "centered":
                u = pm.Normal(f"u_{g.name}", 0.0, sigma, dims=dims)
            else:
                z = pm.Normal(f"z_{g.name}", 0.0, 1.0, dims=dims)
                u = pm.Deterministic(f"u_{g.name}", z * sigma, dims=dims)
            index = pt.as_tensor_variable(g.index)
            eta = eta + (u[index] if cat_dims else u[index][:, None])

        counts = pt.as_tensor_variable(design.counts.astype(float))
        if family == "categorical":
            full = pt.concatenate([pt.zeros((design.n_cells, 1)), eta], axis=1)
            logp = full - pt.logsumexp(full, axis=1, keepdims=True)
        elif family == "bernoulli":
            logp = pt.concatenate([_log_sigmoid(-eta), _log_sigmoid(eta)], axis=1)
        else:
            k = len(design.categories)
            cutpoints = pm.Normal(
                "cutpoints",
                0.0,
                priors.cutpoints,
                dims="cutpoint",
                transform=pm.distributions.transforms.ordered,
                initval=np.linspace(-1.0, 1.0, k - 1),
            )
            logp = ordinal_logp(eta[:, 0], cutpoints)
        pm.Potential("loglik", (counts * logp).sum())
    return model


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
