"""Effects on the probability scale and posterior predictive checks, on simulated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opinionmap.checks import plot_ppc, ppc
from opinionmap.design import DesignError
from opinionmap.fitting import fit
from opinionmap.marginal import effects
from opinionmap.results import FitResult
from opinionmap.spec import ModelSpec
from opinionmap.summaries import summarise_draws

AGE_EFFECT = {"young": -1.0, "middle": 0.0, "old": 1.0}


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, FitResult]:
    rng = np.random.default_rng(2024)
    n = 3000
    df = pd.DataFrame(
        {
            "age": pd.Categorical(rng.choice(list(AGE_EFFECT), n), categories=list(AGE_EFFECT)),
            "area": pd.Categorical(rng.choice([f"a{i}" for i in range(8)], n)),
        }
    )
    area_effect = dict(zip(df["area"].cat.categories, rng.normal(0, 0.5, 8), strict=True))
    eta = -0.2 + df["age"].map(AGE_EFFECT).astype(float) + df["area"].map(area_effect).astype(float)
    df["answer"] = np.where(rng.random(n) < 1 / (1 + np.exp(-eta)), "yes", "no")
    spec = ModelSpec(
        formula="answer ~ 1 + age + (1 | area)", family="bernoulli", levels=("no", "yes")
    )
    result = fit(spec, df, draws=400, tune=400, chains=2, random_seed=5, progress=False, warn=False)
    return df, result


@pytest.mark.slow
def test_effects_recover_the_age_shares(simulated: tuple[pd.DataFrame, FitResult]) -> None:
    df, result = simulated
    shares = effects(result, "age")
    assert shares.dims == ("chain", "draw", "age", "category")
    np.testing.assert_allclose(shares.sum("category").values, 1.0, atol=1e-12)
    table = summarise_draws(shares, prob=0.9)
    yes = table[table["category"] == "yes"].set_index("age")
    # the predicted share at each age level, other covariates at the sample mix,
    # brackets the observed share of that age group (balanced design: they coincide)
    observed = df.groupby("age", observed=True)["answer"].apply(lambda s: (s == "yes").mean())
    for level, value in observed.items():
        assert yes.loc[level, "lower"] - 0.02 < value < yes.loc[level, "upper"] + 0.02
    assert yes.loc["young", "mean"] < yes.loc["middle", "mean"] < yes.loc["old", "mean"]


@pytest.mark.slow
def test_effects_reject_a_numeric_or_unknown_factor(
    simulated: tuple[pd.DataFrame, FitResult],
) -> None:
    _, result = simulated
    with pytest.raises(
        DesignError, match=r"'income' is not a categorical predictor.*'age', 'area'"
    ):
        effects(result, "income")


@pytest.mark.slow
def test_ppc_on_well_specified_model(simulated: tuple[pd.DataFrame, FitResult], tmp_path) -> None:
    _, result = simulated
    table = ppc(result, prob=0.9, random_seed=1)
    assert set(table["factor"]) == {"all", "age", "area"}
    sums = table.groupby(["factor", "level"])["observed"].sum()
    np.testing.assert_allclose(sums.values, 1.0)
    # the model generated the data: observed shares mostly fall inside the 90% intervals
    assert table["outside"].mean() <= 0.25
    again = ppc(result, prob=0.9, random_seed=1)
    pd.testing.assert_frame_equal(table, again)
    fig = plot_ppc(table, tmp_path / "ppc.svg")
    assert (tmp_path / "ppc.svg").read_text().startswith("<?xml")
    assert len(fig.axes) == 3


@pytest.mark.slow
def test_ppc_flags_a_misfit() -> None:
    # the model omits a strong age effect: the age breakdown must show it
    rng = np.random.default_rng(3)
    n = 2000
    age = rng.choice(["young", "old"], n)
    p = np.where(age == "young", 0.2, 0.8)
    df = pd.DataFrame(
        {
            "age": age,
            "area": rng.choice(["a", "b", "c", "d"], n),
            "answer": np.where(rng.random(n) < p, "yes", "no"),
        }
    )
    spec = ModelSpec(formula="answer ~ 1 + (1 | area)", family="bernoulli", levels=("no", "yes"))
    result = fit(spec, df, draws=300, tune=300, chains=2, random_seed=1, progress=False, warn=False)
    with pytest.raises(DesignError, match=r"'age' are not in the model; pass data="):
        ppc(result, by=["age"])
    table = ppc(result, by=["age", "area"], data=df, random_seed=0)
    assert table.loc[table["factor"] == "age", "outside"].all()
    assert not table.loc[table["factor"] == "area", "outside"].all()
