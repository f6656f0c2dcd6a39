"""The parameterisation plan: what it decides for the bundled specs, and that the graph obeys it.

The weights, pairs and centring below are the bundled specs' plans on the bundled
survey; they fix how every bundled model is sampled, so a change to them changes the
draws of every shipped spec for the same seed.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import opinionmap as om
from opinionmap import datasets
from opinionmap.design import build_design
from opinionmap.model import build_model
from opinionmap.plan import Plan, TermPlan, confounded_terms, make_plan
from opinionmap.spec import ModelSpec, Priors

# weights per linear predictor of (region, region:ethnicity), and the one centred
# column's mean (every spec's third coefficient is its area-level covariate)
BUNDLED = {
    "main_enemy": ([0.38, 0.79, 0.73, 1.0], 0.1884696085267919),
    "main_friend": ([0.56, 0.9, 1.0, 1.0, 1.0, 0.95, 0.99], 0.1884696085267919),
    "model_country": ([0.52, 0.76, 0.84, 0.71, 1.0, 0.9, 0.91, 1.0, 1.0, 1.0], 0.1884696085267919),
    "presence_china": ([0.88], 0.1867175175151144),
    "presence_eu": ([0.99], 0.5876701047995329),
    "presence_muslim": ([1.0], 0.6776619180633152),
    "presence_russia": ([0.79], 0.18827788084878622),
    "presence_usa": ([0.87], 0.18804455525833957),
}
# chosen in the spec's [priors.parameterization] (beside its district effects)
CHOSEN = {"presence_muslim": "noncentered"}


@pytest.fixture(scope="module")
def survey() -> om.Survey:
    return om.read_survey(datasets.kazakhstan_survey_path())


@pytest.mark.parametrize("question", sorted(BUNDLED))
def test_bundled_plans_are_the_recorded_ones(survey: om.Survey, question: str) -> None:
    spec = om.read_spec(datasets.models_dir() / f"{question}.toml")
    plan = make_plan(build_design(spec, survey))
    weights, centre = BUNDLED[question]
    assert list(plan.term("region").weight) == weights
    assert list(plan.term("region:ethnicity").weight) == [1.0] * len(weights)
    assert plan.pairs == (("region", "region:ethnicity"),)
    assert plan.term("region").paired_with == "region:ethnicity"
    assert plan.term("region:ethnicity").paired_with == "region"
    assert plan.centre is not None
    assert plan.centre[2] == centre
    assert [c for i, c in enumerate(plan.centre) if i != 2] == [0.0] * (len(plan.centre) - 1)
    assert plan.term("region").parameterization == CHOSEN.get(question, "partial")
    assert plan.term("region:ethnicity").parameterization == "noncentered"
    # no two exchangeable terms confounded: the default draws (presence_muslim's
    # region x ethnicity goes with its BYM2 districts, which are not paired with it)
    assert plan.confounded_pairs == ()
    # JSON, as stored in a fit, gives back the same plan to the last bit
    assert Plan.from_json(plan.to_json()) == plan


def _small(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.choice([f"g{i}" for i in range(6)], 300)
    x = rng.normal(size=300) + 5.0
    return pd.DataFrame({"y": rng.choice(["a", "b"], 300), "g": g, "x": x})


def test_requested_parameterisations_and_the_plan_table() -> None:
    spec = ModelSpec(
        formula="y ~ 1 + x + (1 | g)",
        family="bernoulli",
        levels=("a", "b"),
        priors=Priors(parameterization=(("g", "centered"),)),
    )
    plan = make_plan(build_design(spec, _small()))
    term = plan.term("g")
    assert term == TermPlan("g", "centered", (0.0,))
    assert plan.pairs == ()
    # the numeric column is centred at its respondent mean
    assert plan.centre is not None and plan.centre[0] == pytest.approx(_small()["x"].mean())
    table = plan.table()
    assert table.to_dict("records") == [
        {
            "term": "g",
            "predictor": 0,
            "requested": "centered",
            "parameterization": "centered",
            "weight": 0.0,
            "pilot_sd": None,
            "paired_with": None,
            "structure": "exchangeable",
            "confounded_with": None,
        }
    ]


def _school(seed: int = 0, n: int = 4_000) -> pd.DataFrame:
    """Students: grade 9-12, age mostly grade + 5 or 6 (the two go together), a region."""
    rng = np.random.default_rng(seed)
    grade = rng.integers(9, 13, n)
    age = grade + 5 + (rng.random(n) < 0.5)
    region = rng.choice([f"r{i}" for i in range(8)], n)
    return pd.DataFrame(
        {
            "y": rng.choice(["a", "b", "c"], n),
            "grade": grade.astype(str),
            "age": age.astype(str),
            "region": region,
        }
    )


def test_terms_whose_levels_go_together_are_non_centred() -> None:
    """Age and grade: their SDs trade off, either may reach zero; region is left to the rule."""
    spec = ModelSpec(
        formula="y ~ 1 + (1 | grade) + (1 | age) + (1 | region)",
        family="categorical",
        levels=("a", "b", "c"),
    )
    design = build_design(spec, _school())
    assert confounded_terms(design) == {"grade": "age", "age": "grade"}
    plan = make_plan(design)
    assert plan.term("grade").weight == plan.term("age").weight == (1.0, 1.0)
    assert plan.term("grade").confounded_with == "age"
    assert plan.term("age").confounded_with == "grade"
    # and their SDs are sampled jointly (polar coordinates, the same prior)
    assert plan.pairs == (("grade", "age"),)
    assert plan.term("grade").paired_with == "age"
    assert plan.confounded_pairs == (("age", "grade"),)
    # unrelated to both: the weight rule, computed from the pilot
    assert plan.term("region").confounded_with is None
    assert plan.term("region").fraction is not None
    table = plan.table().set_index("term")
    assert table.loc["age", "confounded_with"].tolist() == ["grade", "grade"]
    assert Plan.from_json(plan.to_json()) == plan
    # an explicit choice stays
    chosen = dataclasses.replace(spec, priors=Priors(parameterization=(("age", "centered"),)))
    assert make_plan(build_design(chosen, _school())).term("age").weight == (0.0, 0.0)


@pytest.mark.slow
def test_confounded_terms_sample_more_draws_unless_draws_are_set() -> None:
    """Their SDs mix slowly: 8,000 draws in all by default, the spec's or caller's if set."""
    import opinionmap as om
    from opinionmap.fitting import CONFOUNDED_DRAWS

    spec = ModelSpec("y ~ 1 + (1 | grade) + (1 | age)", "categorical", ("a", "b", "c"))
    data = _school(n=600)
    quick = om.Sampling(chains=2, tune=30)
    by_default = om.fit(spec, data, sampling=quick, random_seed=1, warn=False)
    # 2,000 a chain with the default 4 chains, 4,000 with 2
    assert by_default.posterior.sizes["draw"] == CONFOUNDED_DRAWS // 2 == 4_000
    assert by_default.tree.attrs["opinionmap_draws"] == 4_000
    assert float(by_default.tree.attrs["opinionmap_target_accept"]) == 0.99
    asked = om.fit(spec, data, sampling=quick, draws=40, random_seed=1, warn=False)
    assert asked.posterior.sizes["draw"] == 40
    # the two were measured together: with draws set, the usual target acceptance
    assert float(asked.tree.attrs["opinionmap_target_accept"]) == 0.95
    in_spec = dataclasses.replace(spec, sampling=om.Sampling(draws=50))
    assert (
        om.fit(in_spec, data, sampling=quick, random_seed=1, warn=False).posterior.sizes["draw"]
        == 50
    )
    # without confounded terms, the package's default
    plain = ModelSpec("y ~ 1 + (1 | region)", "categorical", ("a", "b", "c"))
    assert (
        om.fit(plain, _school(n=600), sampling=quick, random_seed=1, warn=False).posterior.sizes[
            "draw"
        ]
        == 1_000
    )


def test_unrelated_and_formula_nested_terms_are_not_confounded() -> None:
    spec = ModelSpec(
        formula="y ~ 1 + (1 | grade) + (1 | region) + (1 | region:grade)",
        family="categorical",
        levels=("a", "b", "c"),
    )
    design = build_design(spec, _school())
    assert confounded_terms(design) == {}
    # a plan stored before this rule (no confounded_with key) still reads
    raw = json.loads(make_plan(design).to_json())
    for term in raw["terms"]:
        del term["confounded_with"]
    assert Plan.from_json(json.dumps(raw)) == make_plan(design)


def test_the_graph_follows_the_plan() -> None:
    """A plan that says 'centred' makes u the sampled z itself; 'non-centred' scales z by sigma."""
    spec = ModelSpec(formula="y ~ 1 + (1 | g)", family="bernoulli", levels=("a", "b"))
    design = build_design(spec, _small())
    auto = make_plan(design)
    for weight in (0.0, 1.0):
        term = dataclasses.replace(auto.term("g"), weight=(weight,))
        model = build_model(design, dataclasses.replace(auto, terms=(term,)))
        with pytest.warns(UserWarning, match="Potentials"):
            prior = pm.sample_prior_predictive(draws=20, model=model, random_seed=1)["prior"]
        u, z, sigma = (prior[v].values for v in ("u_g", "z_g", "sigma_g"))
        np.testing.assert_allclose(u, z * sigma[..., None] ** weight)
        assert np.allclose(u, z) == (weight == 0.0)


def test_an_unknown_term_in_the_parameterization_table_is_an_error() -> None:
    with pytest.raises(om.SpecError, match=r"\[priors.parameterization\] names 'region'"):
        ModelSpec(
            formula="y ~ 1 + (1 | g)",
            family="bernoulli",
            levels=("a", "b"),
            priors=Priors(parameterization=(("region", "centered"),)),
        )
