"""Correlated category effects, brms's ``(1 | p | g)``: one term's effects on the
categories of a categorical model drawn jointly, with an LKJ prior on their correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from opinionmap.design import build_design
from opinionmap.fitting import fit
from opinionmap.model import build_model
from opinionmap.plan import make_plan, sd_pairs
from opinionmap.spec import ModelSpec, Priors, SpecError
from opinionmap.structure import Structure

LEVELS = ("a", "b", "c")


def _simulate(seed: int = 3, n: int = 3000, n_levels: int = 30) -> tuple[pd.DataFrame, float]:
    """Answers whose level effects on 'b' and 'c' correlate at 0.8; the drawn effects' r."""
    rng = np.random.default_rng(seed)
    sd = np.array([0.8, 0.6])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.8], [0.8, 1.0]])
    u = rng.multivariate_normal([0.0, 0.0], cov, size=n_levels)
    u -= u.mean(axis=0)
    g = rng.integers(0, n_levels, n)
    p = softmax(np.column_stack([np.zeros(n), np.array([0.3, -0.2]) + u[g]]), axis=1)
    y = (p.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
    data = pd.DataFrame({"y": np.array(LEVELS)[y], "g": [f"g{i:02d}" for i in g],
                         "h": rng.choice(["x", "z"], n)})  # fmt: skip
    return data, float(np.corrcoef(u.T)[0, 1])


def test_the_brms_syntax_is_read():
    spec = ModelSpec("y ~ 1 + (1 | p | g) + (1 | g:h)", "categorical", LEVELS)
    assert spec.correlated_terms == ("g",)
    assert [t.name for t in spec.group_terms] == ["g", "g:h"]
    assert spec.variables == ("g", "h")


@pytest.mark.parametrize(
    ("formula", "family", "levels", "priors", "message"),
    [
        ("y ~ (1 | p | g)", "ordinal", LEVELS, Priors(), r"one linear predictor"),
        ("y ~ 1 + (1 | p | g)", "categorical", ("a", "b"), Priors(), r"three or more answers"),
        ("y ~ 1 + (1 | p | g) + (1 | p | h)", "categorical", LEVELS, Priors(), r"ID 'p' .* own ID"),
        ("y ~ 1 + (1 | p | g)", "categorical", LEVELS,
         Priors(parameterization=(("g", "centered"),)), r"takes no parameterization"),
        ("y ~ 1 + (1 | p | g)", "categorical", LEVELS,
         Priors(structure=(("g", Structure("rw1")),)), r"takes no structure"),
    ],
)  # fmt: skip
def test_errors(formula, family, levels, priors, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec(formula, family, levels, priors=priors)


def test_the_model_reports_a_labelled_correlation_and_pairs_nothing():
    data, _ = _simulate(n=300)
    spec = ModelSpec("y ~ 1 + (1 | p | g) + (1 | g:h)", "categorical", LEVELS)
    design = build_design(spec, data)
    assert sd_pairs(design) == {}  # g's SDs come with the LKJ prior, not in polar pairs
    assert make_plan(design).term("g").structure == "correlated"
    model = build_model(design)
    assert model.named_vars_to_dims["cor_g"] == ("category", "category_")
    assert model.named_vars_to_dims["sigma_g"] == ("category",)
    assert model.coords["category_"] == ("b", "c")


@pytest.mark.slow
def test_a_correlation_is_recovered():
    data, drawn = _simulate()
    spec = ModelSpec("y ~ 1 + (1 | p | g)", "categorical", LEVELS)
    result = fit(spec, data, random_seed=1, progress=False, warn=False)
    assert result.diagnostics.converged, result.verdict
    cor = result.posterior["cor_g"].sel(category="b", category_="c").values.ravel()
    low, high = np.quantile(cor, [0.05, 0.95])
    assert low <= drawn <= high  # the drawn effects' correlation, 0.77
    assert low > 0.2  # and clearly positive
    # the diagonal is exactly one and left out of the convergence table
    assert np.allclose(result.posterior["cor_g"].sel(category="b", category_="b"), 1.0)
    assert "cor_g[b,b]" not in result.diagnostics.table.index
    assert "cor_g[b,c]" in result.diagnostics.table.index
    u = result.posterior["u_g"]
    assert np.allclose(u.sum("g"), 0.0, atol=1e-8)
