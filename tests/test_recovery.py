"""Recovery: simulate from known parameters, fit, and find the truth inside the intervals.

For each family, 2,000 respondents with a 30-level grouping factor ``g`` (a varying
intercept, zero-sum like the model's) and a 3-level fixed factor ``x``. The 90%
intervals of the 30 group effects (60 for the categorical model) must cover the truth
at about the nominal rate (between 70% and 100%), and every fixed parameter and
group standard deviation must lie inside its 95% interval. Seeds are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax

from opinionmap.fitting import fit
from opinionmap.results import FitResult
from opinionmap.spec import ModelSpec

pytestmark = pytest.mark.slow

N = 2000
N_LEVELS = 30
X_LEVELS = ("x0", "x1", "x2")  # x0 is the reference
SEED = 12


@dataclass(frozen=True)
class Truth:
    """Simulated data and the parameters that made them, in the model's parameterisation."""

    data: pd.DataFrame
    spec: ModelSpec
    fixed: dict[str, np.ndarray]  # variable name -> true values, shaped like the posterior's
    sigma: np.ndarray
    u: np.ndarray  # (levels[, category])


def _simulate(family: str, seed: int) -> Truth:
    rng = np.random.default_rng(seed)
    levels = [f"g{i:02d}" for i in range(N_LEVELS)]
    g = rng.integers(0, N_LEVELS, N)
    x = rng.integers(0, len(X_LEVELS), N)
    dummies = np.column_stack([(x == 1), (x == 2)]).astype(float)
    if family == "categorical":
        categories = ("a", "b", "c")
        intercept = np.array([0.4, -0.3])
        beta = np.array([[0.8, -0.5], [-0.6, 0.7]])  # (coef, category)
        sigma = np.array([0.7, 0.5])
        raw = rng.normal(size=(N_LEVELS, 2)) * sigma
        u = raw - raw.mean(axis=0)
        eta = intercept + dummies @ beta + u[g]
        p = softmax(np.column_stack([np.zeros(N), eta]), axis=1)
        fixed = {"Intercept": intercept, "beta": beta}
    elif family == "ordinal":
        categories = ("low", "mid", "high", "top")
        cutpoints = np.array([-1.0, 0.3, 1.6])
        beta = np.array([0.7, -0.6])
        sigma = np.array([0.6])
        raw = rng.normal(size=N_LEVELS) * sigma[0]
        u = raw - raw.mean()
        eta = dummies @ beta + u[g]
        cdf = expit(cutpoints[None, :] - eta[:, None])
        p = np.diff(np.column_stack([np.zeros(N), cdf, np.ones(N)]), axis=1)
        fixed = {"beta": beta, "cutpoints": cutpoints}
    else:
        categories = ("no", "yes")
        intercept = np.array(-0.4)
        beta = np.array([0.9, -0.5])
        sigma = np.array([0.7])
        raw = rng.normal(size=N_LEVELS) * sigma[0]
        u = raw - raw.mean()
        eta = intercept + dummies @ beta + u[g]
        p1 = expit(eta)
        p = np.column_stack([1 - p1, p1])
        fixed = {"Intercept": intercept, "beta": beta}
    y = (p.cumsum(axis=1) < rng.random(N)[:, None]).sum(axis=1)
    data = pd.DataFrame(
        {
            "y": np.asarray(categories)[y],
            "x": np.asarray(X_LEVELS)[x],
            "g": pd.Categorical(np.asarray(levels)[g], categories=levels),
        }
    )
    spec = ModelSpec(formula="y ~ 1 + x + (1 | g)", family=family, levels=categories)  # type: ignore[arg-type]
    return Truth(data, spec, fixed, sigma, u)


@pytest.fixture(scope="module", params=["categorical", "ordinal", "bernoulli"])
def recovered(request: pytest.FixtureRequest) -> tuple[Truth, FitResult]:
    truth = _simulate(request.param, SEED)
    result = fit(
        truth.spec,
        truth.data,
        draws=500,
        tune=500,
        chains=2,
        random_seed=SEED,
        progress=False,
        warn=False,
    )
    return truth, result


def _interval(result: FitResult, name: str, prob: float) -> tuple[np.ndarray, np.ndarray]:
    da = result.posterior[name]
    q = da.quantile([(1 - prob) / 2, (1 + prob) / 2], dim=("chain", "draw")).values
    return q[0], q[1]


def test_sampler_healthy(recovered: tuple[Truth, FitResult]) -> None:
    _, result = recovered
    assert result.diagnostics.divergences == 0
    assert result.diagnostics.max_rhat < 1.02


def test_group_effects_covered_at_nominal_rate(recovered: tuple[Truth, FitResult]) -> None:
    truth, result = recovered
    low, high = _interval(result, "u_g", 0.9)
    inside = (low <= truth.u) & (truth.u <= high)
    coverage = inside.mean()
    print(f"{truth.spec.family}: 90% coverage of group effects {coverage:.2f} ({inside.size})")
    assert 0.7 <= coverage <= 1.0


def test_fixed_parameters_inside_95_intervals(recovered: tuple[Truth, FitResult]) -> None:
    truth, result = recovered
    for name, value in truth.fixed.items():
        low, high = _interval(result, name, 0.95)
        assert np.all((low <= value) & (value <= high)), (name, low, value, high)
    low, high = _interval(result, "sigma_g", 0.95)
    sigma = truth.sigma if truth.spec.family == "categorical" else truth.sigma[0]
    assert np.all((low <= sigma) & (sigma <= high)), ("sigma_g", low, sigma, high)
