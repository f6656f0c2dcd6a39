"""Effects on the probability scale: predicted shares by level of one factor.

For a factor such as ``age``, the predicted share of each response category at
each level, with every other covariate at the survey's mix: every covariate
cell of the survey is kept with its respondent count as weight, the factor is
set to the level (in every term that uses it, interactions included), and the
cell probabilities are averaged. This is the "average marginal prediction"
that ``marginaleffects`` and brms' ``conditional_effects`` users expect, and
it is on the scale people read: shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap.design import DesignError
from opinionmap.diagnostics import warn_if_unconverged
from opinionmap.errors import format_values
from opinionmap.predict import iter_probabilities

if TYPE_CHECKING:
    from opinionmap.results import Fitted

__all__ = ["effects"]


def effects(result: Fitted, factor: str, *, chunk_draws: int = 200) -> xr.DataArray:
    """Posterior draws of each category's share at each level of ``factor``.

    Parameters
    ----------
    result
        A :class:`~opinionmap.results.FitResult`.
    factor
        A categorical predictor or grouping factor of the model (e.g. ``"age"``,
        ``"region"``).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, <factor>, category)``; sums to one over ``category``.

    Examples
    --------
    >>> shares = effects(result, "ethnicity")  # doctest: +SKIP
    >>> om.summarise_draws(shares, prob=0.9)  # doctest: +SKIP
    """
    design = result.design
    warn_if_unconverged(result, "effects")
    codings = {c.name: c for c in design.codings}
    if factor not in codings or codings[factor].kind != "categorical":
        categorical = [n for n, c in codings.items() if c.kind == "categorical"]
        raise DesignError(
            f"{factor!r} is not a categorical predictor or grouping factor of this model; choose "
            f"one of {format_values(categorical)}."
        )
    draws = result.draws()
    posterior = result.posterior
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    weights = design.counts.sum(axis=1).astype(float)
    weights /= weights.sum()
    levels = list(codings[factor].levels)
    table, covariates = design.covariates, design.spec.covariates
    areas = covariates.by if covariates is not None and table is not None else ()
    area_columns = [c for c in table.columns if c not in areas] if table is not None else []
    out = np.empty((draws.n_samples, len(levels), len(design.categories)))
    for j, level in enumerate(levels):
        cells = design.cells.copy()
        cells[factor] = pd.Categorical([level] * len(cells), categories=levels)
        if area_columns and factor in areas:
            # an area's covariates move with it: the level's own values, not the cell's
            cells = design.with_covariates(cells.drop(columns=area_columns), "effects")
        coded = design.evaluate(cells)
        for sl, p in iter_probabilities(draws, design, coded, chunk_draws=chunk_draws):
            out[sl, j, :] = np.einsum("snk,n->sk", p, weights)
    return xr.DataArray(
        out.reshape(n_chain, n_draw, len(levels), len(design.categories)),
        dims=("chain", "draw", factor, "category"),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            factor: levels,
            "category": list(design.categories),
        },
        name="share",
    )
