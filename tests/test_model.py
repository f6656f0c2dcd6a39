"""The PyMC graph: structure and labels, cell = respondent log-density, NumPy = PyTensor.

Tiers 1-3 of the testing guide, all fast (nothing is sampled): the graph builds for
every family with labelled dims; the log-density and its gradient are finite; the
aggregated and respondent-level models have the same log-density at random points;
NumPy probabilities (used for LOO, PPC and poststratification) sum to one and agree
with the PyTensor likelihood; and the log-density at a fixed point matches a hand
computation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

import opinionmap as om
from opinionmap import datasets
from opinionmap.design import Design, build_design
from opinionmap.model import build_model, cutpoint_labels
from opinionmap.plan import (
    PILOT_FRACTION,
    make_plan,
    noncentering_weight,
    parameterization,
    pilot_fraction,
    pilot_group_sd,
    sd_pairs,
)
from opinionmap.predict import Draws, linear_predictor, log_probabilities, probabilities
from opinionmap.spec import ModelSpec, Priors

# the Python backend: no C compilation, so these tests stay fast
FAST = "FAST_COMPILE"

FAMILIES = {
    "categorical": ("a", "b", "c"),
    "ordinal": ("low", "mid", "high", "top"),
    "bernoulli": ("no", "yes"),
}


def _data(family: str, n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    levels = FAMILIES[family]
    return pd.DataFrame(
        {
            "y": rng.choice(levels, n),
            "sex": rng.choice(["f", "m"], n),
            "age": rng.choice([20.0, 40.0, 60.0], n),
            "g": rng.choice([f"g{i}" for i in range(8)], n),
            "h": rng.choice(["u", "v", "w"], n),
        }
    )


def _spec(family: str, formula: str = "y ~ 1 + sex + age + (1 | g) + (1 | g:h)") -> ModelSpec:
    return ModelSpec(formula=formula, family=family, levels=FAMILIES[family])  # type: ignore[arg-type]


@dataclass
class Compiled:
    """A family's design and model with its functions compiled once for the module."""

    design: Design
    model: pm.Model
    logp: Any
    dlogp: Any
    initial: dict[str, np.ndarray]
    names: list[str]
    values: Any

    def random_point(self, rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
        """A point in the unconstrained space, every coordinate N(0, scale**2)."""
        return {k: scale * rng.normal(size=np.shape(v)) for k, v in self.initial.items()}

    def at(self, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameters (constrained) and the likelihood term at ``point``."""
        return {n: np.asarray(v) for n, v in zip(self.names, self.values(point), strict=True)}

    def draws_at(self, point: dict[str, np.ndarray]) -> Draws:
        """One-draw :class:`Draws` holding the model's parameters at ``point``."""
        values = self.at(point)
        groups = [g.name for g in self.design.groups]

        def get(name: str) -> np.ndarray | None:
            return values[name][None] if name in values else None

        return Draws(
            intercept=get("Intercept"),
            beta=get("beta"),
            cutpoints=get("cutpoints"),
            effects={g: values[f"u_{g}"][None] for g in groups},
            sigmas={g: values[f"sigma_{g}"][None] for g in groups},
        )


def _compile(design: Design) -> Compiled:
    model = build_model(design)
    present = [n for n in ("Intercept", "beta", "cutpoints") if n in model.named_vars]
    groups = [g.name for g in design.groups]
    names = [*present, *(f"u_{g}" for g in groups), *(f"sigma_{g}" for g in groups), "loglik"]
    outs = model.replace_rvs_by_values([model[name] for name in names])
    return Compiled(
        design=design,
        model=model,
        logp=model.compile_logp(mode=FAST),
        dlogp=model.compile_dlogp(mode=FAST),
        initial=model.initial_point(),
        names=names,
        values=model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=FAST),
    )


@pytest.fixture(scope="module", params=[*FAMILIES, "ordinal-probit", "bernoulli-probit"])
def compiled(request: pytest.FixtureRequest) -> Compiled:
    family, _, link = request.param.partition("-")
    spec = dataclasses.replace(_spec(family), link=link or "logit")
    return _compile(build_design(spec, _data(family)))


@pytest.fixture(scope="module")
def kazakhstan() -> om.Survey:
    return om.read_survey(datasets.kazakhstan_survey_path())


# -- tier 1: structure ------------------------------------------------------------------------
def test_ordinal_kazakhstan_dims_and_labels(kazakhstan: om.Survey) -> None:
    spec = ModelSpec(
        formula="presence_russia ~ 1 + sex + settlement + (1 | age) + (1 | region)"
        " + (1 | region:ethnicity)",
        family="ordinal",
        levels=("less", "same", "more"),
        missing=("dont_know",),
    )
    model = build_model(build_design(spec, kazakhstan))
    dims = model.named_vars_to_dims
    assert "Intercept" not in model.named_vars  # the cutpoints carry the level
    assert dims["cutpoints"] == ("cutpoint",)
    assert list(model.coords["cutpoint"]) == ["less->same", "same->more"]
    assert dims["beta"] == ("coef",)
    assert list(model.coords["coef"]) == ["sex[female]", "settlement[rural]"]
    assert dims["u_region"] == ("region",)
    regions = list(kazakhstan.codebook["region"].levels)
    assert len(regions) == 17
    assert list(model.coords["region"]) == regions
    assert dims["u_region:ethnicity"] == ("region:ethnicity",)
    assert len(model.coords["region:ethnicity"]) == 51
    assert "sigma_region" not in dims  # one scale, no dims
    assert {"u_age", "z_age", "sigma_age"} <= set(model.named_vars)
    # most regions' respondents are mostly of one ethnicity: region's SD is sampled with
    # the interaction's, in polar coordinates
    free = {rv.name for rv in model.free_RVs}
    assert {"sd_radius_region:ethnicity", "sd_angle_region:ethnicity"} <= free
    assert "sigma_region" not in free and "sigma_age" in free


def test_categorical_kazakhstan_dims(kazakhstan: om.Survey) -> None:
    spec = ModelSpec(
        formula="main_enemy ~ 1 + sex + (1 | region)",
        family="categorical",
        levels=("none", "usa", "russia", "china"),
        missing=("dont_know",),
    )
    df = kazakhstan.data
    df = df[df["main_enemy"].astype(str).isin(["none", "usa", "russia", "china", "dont_know"])]
    model = build_model(build_design(spec, df))
    dims = model.named_vars_to_dims
    assert list(model.coords["category"]) == ["usa", "russia", "china"]  # "none" is reference
    assert dims["Intercept"] == ("category",)
    assert dims["beta"] == ("coef", "category")
    assert dims["sigma_region"] == ("category",)
    assert dims["u_region"] == ("region", "category")
    assert len(model.coords["region"]) == 17


def test_cutpoint_labels() -> None:
    assert cutpoint_labels(("less", "same", "more")) == ["less->same", "same->more"]


def test_logp_and_gradient_finite_at_initial_point(compiled: Compiled) -> None:
    assert np.isfinite(compiled.logp(compiled.initial))
    assert np.isfinite(compiled.dlogp(compiled.initial)).all()
    # and somewhere else, with effects far from zero
    far = compiled.random_point(np.random.default_rng(1), scale=3.0)
    assert np.isfinite(compiled.logp(far))
    assert np.isfinite(compiled.dlogp(far)).all()


def test_group_effects_sum_to_zero(compiled: Compiled) -> None:
    values = compiled.at(compiled.random_point(np.random.default_rng(2)))
    for g in compiled.design.groups:
        np.testing.assert_allclose(values[f"u_{g.name}"].sum(axis=0), 0.0, atol=1e-12)


def test_parameterization_follows_priors_and_data() -> None:
    df = _data("bernoulli", n=2000)
    forced = ModelSpec(
        formula="y ~ 1 + (1 | g) + (1 | h)",
        family="bernoulli",
        levels=FAMILIES["bernoulli"],
        priors=Priors(parameterization=(("g", "centered"), ("h", "noncentered"))),
    )
    design = build_design(forced, df)
    assert [parameterization(design, g) for g in design.groups] == ["centered", "noncentered"]
    # "auto": pure-noise levels look alike, so non-centred; clearly different levels
    # holding hundreds of respondents each lean centred
    auto = build_design(_spec("bernoulli", "y ~ 1 + (1 | g)"), df)
    assert pilot_group_sd(auto, auto.groups[0])[0] < 0.2
    assert noncentering_weight(auto, auto.groups[0])[0] > 0.9
    rng = np.random.default_rng(3)
    shift = {f"g{i}": 1.5 * (i - 3.5) / 3.5 for i in range(8)}
    p = 1 / (1 + np.exp(-df["g"].map(shift)))
    df = df.assign(y=np.where(rng.random(len(df)) < p, "yes", "no"))
    distinct = build_design(_spec("bernoulli", "y ~ 1 + (1 | g)"), df)
    assert 0.5 < pilot_group_sd(distinct, distinct.groups[0])[0] < 1.5
    assert noncentering_weight(distinct, distinct.groups[0])[0] < 0.3


def test_terms_with_few_levels_lean_non_centred() -> None:
    # the weight aims at the lower 5% point of the sd's sampling distribution, which
    # for 3 levels is a quarter of the estimate: there, partly centred forms became
    # funnels (20 of 25 divergences of the bundled model_country question)
    assert pilot_fraction(3) == pytest.approx(np.sqrt(stats.chi2.ppf(0.05, 2) / 2))
    assert pilot_fraction(3) == pytest.approx(0.226, abs=1e-3)
    assert pilot_fraction(2) < pilot_fraction(3) < pilot_fraction(4) < PILOT_FRACTION
    assert pilot_fraction(13) == pilot_fraction(51) == PILOT_FRACTION
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 3000)})
    shift = df["g"].map({"a": -0.4, "b": 0.0, "c": 0.4})
    df["y"] = np.where(rng.random(len(df)) < 1 / (1 + np.exp(-shift)), "yes", "no")
    design = build_design(_spec("bernoulli", "y ~ 1 + (1 | g)"), df)
    group = design.groups[0]
    s = pilot_group_sd(design, group)[0]
    information = 1000 * 0.25  # respondents per level x p(1 - p), p about 0.5
    as_before = 1 / (1 + (PILOT_FRACTION * s) ** 2 * information)
    weight = noncentering_weight(design, group)[0]
    assert weight == pytest.approx(1 / (1 + (pilot_fraction(3) * s) ** 2 * information), abs=0.02)
    assert weight > as_before + 0.2


def test_paired_sds_keep_the_independent_half_normal_prior() -> None:
    spec = ModelSpec(
        formula="y ~ 1 + (1 | h) + (1 | g) + (1 | g:h)",
        family="categorical",
        levels=FAMILIES["categorical"],
        priors=Priors(group_sd=0.7),
    )
    design = build_design(spec, _data("categorical"))
    assert sd_pairs(design) == {"g": "g:h"}  # 8 levels of g, 3 of h: g's more concentrated
    model = build_model(design)
    main, interaction, alone = pm.draw(
        [model["sigma_g"], model["sigma_g:h"], model["sigma_h"]], draws=20_000, random_seed=3
    )
    for sd in (main, interaction, alone):
        for k in range(sd.shape[1]):  # per category
            assert stats.kstest(sd[:, k], stats.halfnorm(scale=0.7).cdf).pvalue > 0.01
    for k in range(main.shape[1]):
        assert abs(np.corrcoef(main[:, k], interaction[:, k])[0, 1]) < 0.03


def test_each_term_is_paired_at_most_once() -> None:
    df = _data("bernoulli", n=2000).assign(k=lambda d: np.where(d["g"] < "g4", "p", "q"))
    spec = ModelSpec(
        formula="y ~ 1 + (1 | g) + (1 | h) + (1 | g:h) + (1 | g:k) + (1 | h:k)",
        family="bernoulli",
        levels=FAMILIES["bernoulli"],
    )
    design = build_design(spec, df)
    # g:h takes g (within a level of g the most common h holds about 40% of its
    # respondents, within a level of h the most common g about 15%); g:k finds g taken
    # and k without a term of its own; h:k takes h
    assert sd_pairs(design) == {"g": "g:h", "h": "h:k"}
    free = {rv.name for rv in build_model(design).free_RVs}
    assert {"sigma_g:k", "sd_radius_g:h", "sd_radius_h:k"} <= free
    assert not {"sigma_g", "sigma_h", "sigma_g:h", "sigma_h:k"} & free


def test_cells_and_respondents_have_the_same_log_density(compiled: Compiled) -> None:
    spec = compiled.design.spec
    each = build_design(spec, _data(spec.family), aggregate=False)
    assert compiled.design.n_cells < each.n_cells == 300
    model = build_model(each)
    logp, dlogp = model.compile_logp(mode=FAST), model.compile_dlogp(mode=FAST)
    rng = np.random.default_rng(4)
    for _ in range(5):
        point = compiled.random_point(rng)
        assert compiled.logp(point) == pytest.approx(logp(point), rel=1e-10)
        np.testing.assert_allclose(compiled.dlogp(point), dlogp(point), rtol=1e-8, atol=1e-8)


def test_counts_held_as_data_give_the_log_density_of_those_counts(compiled: Compiled) -> None:
    """One graph for other counts on the same cells (simulation studies): same log-density."""
    design = compiled.design
    plan = make_plan(design)
    rng = np.random.default_rng(8)
    other = rng.multinomial(20, np.full(len(design.categories), 1 / len(design.categories)),
                            size=design.n_cells)  # fmt: skip
    held = build_model(design, plan, counts_as_data=True)
    with held:
        pm.set_data({"counts": other.astype(float)})
    baked = build_model(dataclasses.replace(design, counts=other), plan)
    logp_held, logp_baked = held.compile_logp(mode=FAST), baked.compile_logp(mode=FAST)
    for _ in range(3):
        point = compiled.random_point(rng)
        assert logp_held(point) == pytest.approx(logp_baked(point), rel=1e-12)


def test_numpy_probabilities_match_the_pytensor_likelihood(compiled: Compiled) -> None:
    design = compiled.design
    rng = np.random.default_rng(5)
    for _ in range(3):
        point = compiled.random_point(rng)
        draws = compiled.draws_at(point)
        eta = linear_predictor(draws, design)
        logp = log_probabilities(design, eta, draws)
        p = probabilities(design, eta, draws)
        assert p.shape == (1, design.n_cells, len(design.categories))
        np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-12)
        assert (p >= 0).all()
        np.testing.assert_allclose(np.exp(logp), p, rtol=1e-9, atol=1e-15)
        loglik = compiled.at(point)["loglik"]
        assert (design.counts * logp[0]).sum() == pytest.approx(float(loglik), rel=1e-10)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_categorical_probabilities_equal_scipy_softmax_even_in_the_tails(k: int) -> None:
    from scipy.special import log_softmax, softmax

    design = build_design(
        ModelSpec(formula="y ~ 1", family="categorical", levels=tuple(f"c{i}" for i in range(k))),
        pd.DataFrame({"y": [f"c{i}" for i in range(k)]}),
    )
    rng = np.random.default_rng(8)
    eta = rng.normal(scale=4.0, size=(6, 40, k - 1))
    eta[0, 0] = 800.0  # exp overflows without the shift by the row maximum
    eta[0, 1] = -800.0
    full = np.concatenate([np.zeros((6, 40, 1)), eta], axis=2)
    np.testing.assert_allclose(
        probabilities(design, eta, None), softmax(full, axis=2), rtol=1e-13, atol=1e-300
    )
    logp = log_probabilities(design, eta, None)
    np.testing.assert_allclose(logp, log_softmax(full, axis=2), rtol=1e-13, atol=1e-12)
    assert np.isfinite(logp).all()
    assert logp[0, 1, 0] == pytest.approx(0.0) and logp[0, 1, 1] == pytest.approx(-800.0)


def test_new_levels_are_coded_and_need_effects_before_prediction(compiled: Compiled) -> None:
    design = compiled.design
    draws = compiled.draws_at(compiled.random_point(np.random.default_rng(6)))
    frame = pd.DataFrame(
        {
            "sex": ["f", "m", "m"],
            "age": [30.0, 50.0, 90.0],
            "g": ["g0", "new", "g7"],
            "h": ["u", "v", "w"],
        }
    )
    new = design.evaluate(frame, new_levels="sample")
    assert new.groups[0].index.tolist() == [0, -1, 7]
    # effects of new levels come from poststratify, which draws them and extends the draws
    with pytest.raises(ValueError, match="the model has no effects for"):
        linear_predictor(draws, design, new)
    known = design.evaluate(frame.assign(g=["g0", "g3", "g7"]))
    p = probabilities(design, linear_predictor(draws, design, known), draws)
    np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-12)


# -- tier 3: a log-density worked by hand ---------------------------------------------------
@pytest.mark.parametrize("form", ["centered", "noncentered"])
def test_log_density_at_a_fixed_point_by_hand(form: str) -> None:
    df = pd.DataFrame(
        {
            "y": ["no", "yes", "yes", "no", "yes", "yes", "no", "no"],
            "x": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 1.0, 0.0],
            "g": ["a", "a", "b", "b", "c", "c", "c", "a"],
        }
    )
    spec = ModelSpec(
        formula="y ~ 1 + x + (1 | g)",
        family="bernoulli",
        levels=("no", "yes"),
        priors=Priors(intercept=2.0, fixed=1.5, group_sd=0.5, parameterization=(("g", form),)),
    )
    compiled = _compile(build_design(spec, df))
    point = {
        "Intercept_at_means": np.array(0.3),  # x enters centred at its mean
        "beta": np.array([-0.4]),
        "sigma_g_log__": np.array(np.log(0.7)),
        "z_g_zerosum__": np.array([0.2, -0.5]),
    }
    assert set(point) == set(compiled.initial)
    u = compiled.at(point)["u_g"]
    model = compiled.model
    (z_out,) = model.replace_rvs_by_values([model["z_g"]])
    z_fn = model.compile_fn(z_out, inputs=model.value_vars, mode=FAST, on_unused_input="ignore")
    z = np.asarray(z_fn(point))
    sigma = 0.7
    scale = sigma if form == "centered" else 1.0  # z's scale: sigma**(1 - w)
    np.testing.assert_allclose(u, z * (1.0 if form == "centered" else sigma))
    assert z.sum() == pytest.approx(0.0, abs=1e-12)
    x_sd = df["x"].std(ddof=0)
    prior = (
        stats.norm.logpdf(0.3, 0, 2.0)
        + stats.norm.logpdf(-0.4, 0, 1.5 / x_sd)
        + stats.halfnorm.logpdf(sigma, scale=0.5)
        # zero-sum normal: the normal density on the (L-1)-dimensional subspace
        + (-0.5 * (z / scale) ** 2).sum()
        - (len(z) - 1) * (0.5 * np.log(2 * np.pi) + np.log(scale))
    )
    level = pd.Series(u, index=["a", "b", "c"])
    x_mean = df["x"].mean()
    eta = 0.3 - 0.4 * (df["x"].to_numpy() - x_mean) + level[df["g"]].to_numpy()
    # the reported intercept is for x as given: the level at x = 0
    assert compiled.at(point)["Intercept"] == pytest.approx(0.3 + 0.4 * x_mean, rel=1e-12)
    success = (df["y"] == "yes").to_numpy()
    loglik = np.where(success, -np.log1p(np.exp(-eta)), -np.log1p(np.exp(eta))).sum()
    logp = model.compile_logp(jacobian=False, mode=FAST)(point)
    assert logp == pytest.approx(prior + loglik, rel=1e-10)
