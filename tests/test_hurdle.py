"""A don't-know hurdle for ordinal questions (``[outcome] hurdle``): one model in which a
respondent first answers or not, then gives an ordered answer; estimates of all adults
and of those answering."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import opinionmap as om
from helpers import at_random_point
from opinionmap.design import DesignError, build_design, hurdle_parts
from opinionmap.fitting import fit
from opinionmap.model import build_model
from opinionmap.plan import Plan, is_auxiliary, make_plan
from opinionmap.poststratification import ANSWERING, EVERYONE, poststratify
from opinionmap.predict import Draws, linear_predictor, log_probabilities, probabilities
from opinionmap.report import _answering_part, _estimand_line, _model_line
from opinionmap.spec import ModelSpec, Sampling, SpecError

LEVELS = ("less", "same", "more")
CODE = "dont_know"
# the simulated survey's true parameters
BETA, CUTPOINTS, HU_INTERCEPT, HU_BETA = 0.8, (-0.5, 0.9), -1.4, -0.7


def _survey(n: int = 1500, seed: int = 0, regions: int = 6) -> pd.DataFrame:
    """Ordered answers and don't knows from a hurdle model, sex and region effects."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, regions, n)
    sex = rng.integers(0, 2, n)
    u = np.linspace(-0.4, 0.4, regions)
    hu_u = np.linspace(0.5, -0.5, regions)
    cdf = expit(np.asarray(CUTPOINTS)[None, :] - (BETA * sex + u[region])[:, None])
    answer = (rng.random(n)[:, None] > cdf).sum(axis=1)
    code = rng.random(n) < expit(HU_INTERCEPT + HU_BETA * sex + hu_u[region])
    return pd.DataFrame({"y": np.where(code, CODE, np.array(LEVELS)[answer]),
                         "sex": np.array(["f", "m"])[sex],
                         "region": [f"r{i}" for i in region]})  # fmt: skip


def _spec(formula: str = "y ~ 1 + sex + (1 | region)", **kwargs) -> ModelSpec:
    return ModelSpec(formula, "ordinal", LEVELS, **{"hurdle": CODE, **kwargs})


# -- spec and design ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "categorical"}, r"hurdle = 'dont_know' models a non-answer before an ordered"),
        ({"levels": ("less", "same", "dont_know")}, r"also one of the ordered levels"),
        ({"missing": ("dont_know",)}, r"also a missing code, which drops those respondents"),
        ({"formula": "y ~ 0 + sex"}, r"logistic regression with an intercept.*'0 \+'"),
        ({"hurdle": ""}, r"hurdle must be the outcome code of the non-answer"),
    ],
)
def test_bad_hurdles_are_refused(kwargs, message):
    args = {"formula": "y ~ 1 + sex", "family": "ordinal", "levels": LEVELS, "hurdle": CODE}
    with pytest.raises(SpecError, match=message):
        ModelSpec(**(args | kwargs))


def test_the_spec_file_names_the_hurdle():
    spec = ModelSpec.from_dict({
        "formula": "y ~ 1 + sex", "family": "ordinal",
        "outcome": {"levels": list(LEVELS), "missing": ["refused"], "hurdle": CODE}})  # fmt: skip
    assert spec.hurdle == CODE and spec.categories == (*LEVELS, CODE)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.hash() != dataclasses.replace(spec, hurdle=None, missing=(CODE,)).hash()


def test_the_code_is_the_last_category_and_its_part_is_bernoulli():
    data = _survey()
    design = build_design(_spec(), data)
    assert design.categories == (*LEVELS, CODE) and design.answers == LEVELS
    observed = data["y"].value_counts()
    assert design.counts.sum(axis=0).tolist() == [observed[c] for c in design.categories]
    answered, hurdle = hurdle_parts(design)
    assert answered.categories == LEVELS and answered.spec.hurdle is None
    assert answered.counts.sum() == (data["y"] != CODE).sum()
    assert hurdle.spec.family == "bernoulli" and hurdle.spec.link == "logit"
    assert hurdle.counts.sum(axis=0).tolist() == [(data["y"] != CODE).sum(), observed[CODE]]
    # other missing codes are still dropped; unknown values name the hurdle
    refused = data.assign(y=data["y"].where(data.index % 50 > 0, "refused"))
    assert build_design(_spec(missing=("refused",)), refused).n_respondents == len(data) - 30
    with pytest.raises(DesignError, match=r"'refused'.*nor the hurdle code 'dont_know'"):
        build_design(_spec(), refused)


def test_a_hurdle_nobody_gave_is_refused():
    data = _survey()
    with pytest.raises(DesignError, match=r"no respondent gave the hurdle code 'dont_know'"):
        build_design(_spec(), data[data["y"] != CODE])


def test_the_plan_has_a_part_for_the_hurdle():
    design = build_design(_spec("y ~ 1 + sex + (1 | region) + (1 | sex:region)"), _survey())
    plan = make_plan(design)
    answered, hurdle = hurdle_parts(design)
    assert plan.hurdle == make_plan(hurdle)
    assert dataclasses.replace(plan, hurdle=None) == make_plan(answered)
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.table()["term"].tolist() == [
        "region", "sex:region", "hu_region", "hu_sex:region"
    ]  # fmt: skip
    assert is_auxiliary("hu_z_region") and not is_auxiliary("hu_sigma_region")


# -- the model ---------------------------------------------------------------------------


def test_the_log_density_is_the_sum_of_the_two_models():
    """The hurdle model's log-density = the ordinal model of those answering + the bernoulli
    model of saying the code, priors included, at any point."""
    data = _survey().assign(age=lambda d: np.arange(len(d)) % 7 * 10.0 + 20.0)
    formula = "y ~ 1 + sex + age + (1 | region)"
    design = build_design(_spec(formula), data)
    model = build_model(design)
    ordinal = build_design(_spec(formula, hurdle=None, missing=(CODE,)), data)
    bernoulli = build_design(
        ModelSpec(formula, "bernoulli", ("answer", CODE)),
        data.assign(y=np.where(data["y"] == CODE, CODE, "answer")),
    )
    # both parts scale the fixed effects' priors by every respondent's spread of the columns
    ordinal, bernoulli = (
        build_model(dataclasses.replace(d, x_sd=design.x_sd)) for d in (ordinal, bernoulli)
    )
    assert {"hu_Intercept", "hu_beta", "hu_sigma_region", "hu_u_region"} <= set(model.named_vars)
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0.0, 0.5, v.shape) for k, v in model.initial_point().items()}
    hu = {k.removeprefix("hu_"): v for k, v in point.items() if k.startswith("hu_")}
    rest = {k: v for k, v in point.items() if not k.startswith("hu_")}
    total = model.compile_logp()(point)
    parts = ordinal.compile_logp()(rest) + bernoulli.compile_logp()(hu)
    assert total == pytest.approx(parts, rel=1e-10)


def test_counts_held_as_data_give_the_log_density_of_those_counts():
    """With the counts as data (one graph for a simulation study's surveys) the hurdle
    model's log-density is that of the model built on the counts set, both parts' counts
    (the answers' and answered-or-not) taken from them."""
    import pymc as pm

    design = build_design(_spec(), _survey())
    plan = make_plan(design)
    rng = np.random.default_rng(5)
    other = rng.multinomial(12, [0.3, 0.3, 0.2, 0.2], size=design.n_cells)
    held = build_model(design, plan, counts_as_data=True)
    with held:
        pm.set_data({"counts": other.astype(float)})
    baked = build_model(dataclasses.replace(design, counts=other), plan)
    logp_held, logp_baked = held.compile_logp(), baked.compile_logp()
    start = build_model(design, plan).compile_logp()
    for _ in range(3):
        point = {k: v + rng.normal(0.0, 0.5, v.shape) for k, v in held.initial_point().items()}
        assert logp_held(point) == pytest.approx(logp_baked(point), rel=1e-12)
        assert logp_held(point) != pytest.approx(start(point), rel=1e-3)


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
def test_the_model_and_the_predictions_agree():
    """The model's log-likelihood at a random point is what predict computes from it."""
    design = build_design(_spec("y ~ 1 + sex + (1 + sex | region)"), _survey())
    model = build_model(design)
    names = ["beta", "cutpoints", "u_region", "hu_Intercept", "hu_beta", "hu_u_region"]
    loglik, posterior = at_random_point(model, names)
    draws = Draws.from_posterior(posterior, design)
    assert draws.hurdle is not None and draws.hurdle.intercept is not None
    eta = linear_predictor(draws, design)
    logp = log_probabilities(design, eta, draws)
    assert float((design.counts * logp[0]).sum()) == pytest.approx(loglik, rel=1e-9)
    p = probabilities(design, eta, draws)
    np.testing.assert_allclose(np.log(p), logp, rtol=1e-10)
    np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-12)
    # P(code) is the hurdle's expit, and the answers keep their order's share among the rest
    np.testing.assert_allclose(p[..., 3], expit(eta[..., 1]), rtol=1e-12)


# -- fitted ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[om.FitResult, pd.DataFrame]:
    data = _survey(n=2500, seed=1)
    spec = _spec(sampling=Sampling(draws=500, tune=500, chains=2))
    return fit(spec, data, random_seed=5, progress=False), data


@pytest.mark.slow
def test_a_hurdle_fit_recovers_both_parts(fitted):
    result, _ = fitted
    assert result.converged, result.verdict
    # two independent parts: a diagonal mass matrix (a low-rank one costs more than it saves)
    assert result.sampling.adaptation == "diag"
    summary = result.summary(prob=0.95)
    for name, truth in (("hu_Intercept", HU_INTERCEPT), ("hu_beta[sex[m]]", HU_BETA),
                        ("beta[sex[m]]", BETA), ("cutpoints[less->same]", CUTPOINTS[0]),
                        ("cutpoints[same->more]", CUTPOINTS[1])):  # fmt: skip
        row = summary.loc[name]
        assert row["eti95_lb"] < truth < row["eti95_ub"], (name, truth, row)
    assert "hu_z_region" not in summary.index.str.replace(r"\[.*", "", regex=True)


@pytest.mark.slow
def test_estimates_of_all_adults_and_of_those_answering(fitted, tmp_path):
    result, data = fitted
    frame = data.groupby(["sex", "region"]).size().rename("n").reset_index()
    est = poststratify(result, frame, weight="n", by="region")
    assert est.hurdle == CODE and est.estimand == EVERYONE
    assert list(est.draws["category"].values) == [*LEVELS, CODE]
    np.testing.assert_allclose(est.draws.sum("category"), 1.0, rtol=1e-10)
    # the frame is the survey's own cells: the national share of don't know is the sample's
    national = est.overall_summary().set_index("category")["mean"]
    assert national[CODE] == pytest.approx((data["y"] == CODE).mean(), abs=0.02)
    answering = est.answering()
    assert answering.estimand == ANSWERING and answering.dropped == (CODE,)
    assert list(answering.draws["category"].values) == list(LEVELS)
    np.testing.assert_allclose(answering.draws.sum("category"), 1.0, rtol=1e-10)
    expected = est.draws.sel(category="more") / (1 - est.draws.sel(category=CODE))
    np.testing.assert_allclose(answering.draws.sel(category="more"), expected)
    shares = data[data["y"] != CODE]["y"].value_counts(normalize=True)
    mine = answering.overall_summary().set_index("category")["mean"]
    for level in LEVELS:
        assert mine[level] == pytest.approx(shares[level], abs=0.02)
    with pytest.raises(DesignError, match=r"no hurdle: they are of those answering"):
        answering.answering()
    # a region the survey never saw: both parts' effects drawn from the fitted distribution
    new_rows = frame.drop_duplicates("sex").assign(region="r_new")
    unseen = pd.concat([frame, new_rows], ignore_index=True)
    new = poststratify(result, unseen, weight="n", by="region", new_levels="sample")
    np.testing.assert_allclose(new.draws.sel(region="r_new").sum("category"), 1.0, rtol=1e-10)
    # saved and read back: the hurdle's part of the draws comes back
    back = om.load(result.save(tmp_path / "fit.nc"))
    assert back.design.spec.hurdle == CODE and back.plan == result.plan
    assert back.draws().hurdle is not None


@pytest.mark.slow
def test_the_report_shows_both_estimands(fitted, tmp_path):
    result, data = fitted
    frame = data.groupby(["sex", "region"]).size().rename("n").reset_index()
    est = poststratify(result, frame, weight="n", by="region")
    assert "'dont_know' included" in _estimand_line(est)
    assert "A hurdle for 'dont_know'" in _model_line(result, 0.9)
    published = pd.DataFrame({"question": "y", "category": [*LEVELS, CODE],
                              "percent": [30.0, 30.0, 20.0, 20.0]})  # fmt: skip
    options = om.ReportOptions(published=published)
    html = "".join(_answering_part(result, est, options, 0.9, tmp_path))
    assert "of those answering" in html
    table = pd.read_csv(tmp_path / "y_national_answering.csv")
    assert table["category"].tolist() == list(LEVELS)
    assert table["published, of those answering"].tolist() == pytest.approx([0.375, 0.375, 0.25])


@pytest.mark.slow
def test_the_command_line_gives_either_estimand(fitted, tmp_path):
    from typer.testing import CliRunner

    from opinionmap.cli import app

    result, data = fitted
    path = result.save(tmp_path / "fit.nc")
    frame = tmp_path / "frame.csv"
    data.groupby(["sex", "region"]).size().rename("population").reset_index().to_csv(frame)
    runner = CliRunner()
    for flag, categories in (([], [*LEVELS, CODE]), (["--answering"], list(LEVELS))):
        out = tmp_path / f"est{len(flag)}.csv"
        args = ["poststratify", str(path), "--frame", str(frame), "--by", "", "-o", str(out)]
        run = runner.invoke(app, [*args, *flag])
        assert run.exit_code == 0, run.output
        table = pd.read_csv(out)
        assert table["category"].tolist() == categories
        assert table["mean"].sum() == pytest.approx(1.0)
        said = "left out" if flag else "--answering leaves it out"
        assert f"'dont_know' modelled by a hurdle{'' if flag else ';'}" in run.output
        assert said in run.output
