"""Varying slopes, lme4's ``(1 + x | g)`` and ``(1 + x || g)``: a level's intercept and
slopes drawn jointly (LKJ prior on their correlation) or independently, in all three
families, predicted, poststratified (new levels drawn with the fitted covariance) and
saved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import opinionmap as om
from helpers import at_random_point
from opinionmap.design import Design, DesignError, build_design
from opinionmap.fitting import fit
from opinionmap.model import build_model
from opinionmap.plan import make_plan, sd_pairs
from opinionmap.poststratification import _extend_draws
from opinionmap.predict import Draws, linear_predictor, log_probabilities
from opinionmap.report import _model_line
from opinionmap.spec import GroupTerm, ModelSpec, Priors, Sampling, SpecError
from opinionmap.structure import Structure

LEVELS = ("a", "b", "c")
FAMILIES = {
    "bernoulli": ("no", "yes"),
    "ordinal": LEVELS,
    "categorical": LEVELS,
}


def _simulate(
    seed: int = 5, n: int = 3000, n_levels: int = 30, sd=(0.6, 0.8), r: float = -0.6
) -> tuple[pd.DataFrame, np.ndarray]:
    """Yes/no answers whose level intercepts and slopes of x correlate at ``r``."""
    rng = np.random.default_rng(seed)
    cov = np.outer(sd, sd) * np.array([[1.0, r], [r, 1.0]])
    u = rng.multivariate_normal([0.0, 0.0], cov, size=n_levels)
    u -= u.mean(axis=0)
    g = rng.integers(0, n_levels, n)
    x = np.round(rng.normal(0.0, 1.0, n), 1)
    p = expit(-0.3 + 0.5 * x + u[g, 0] + u[g, 1] * x)
    y = np.where(rng.random(n) < p, "yes", "no")
    data = pd.DataFrame({"y": y, "g": [f"g{i:02d}" for i in g], "x": x,
                         "s": rng.choice(["rural", "urban"], n)})  # fmt: skip
    return data, u


def _three_answers(seed: int = 2, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"g": rng.choice([f"g{i}" for i in range(6)], n),
                         "s": rng.choice(["rural", "urban"], n),
                         "x": np.round(rng.normal(0.0, 1.0, n), 1)})  # fmt: skip
    data["y"] = rng.choice(LEVELS, n)
    return data


def _answers_for(family: str) -> pd.DataFrame:
    """``_three_answers``, with two answers for a bernoulli model."""
    data = _three_answers()
    if family == "bernoulli":
        data["y"] = np.where(data["y"] == "a", "no", "yes")
    return data


# -- the formula ----------------------------------------------------------------------


def test_lme4_syntax_is_read():
    spec = ModelSpec("y ~ 1 + s + x + (1 + s | g) + (0 + x | h) + (x || k)", "bernoulli",
                     ("no", "yes"))  # fmt: skip
    g, h, k = spec.group_terms
    assert g == GroupTerm(("g",), slopes=(om.spec.FixedTerm(("s",)),))
    assert (h.intercept, [t.name for t in h.slopes]) == (False, ["x"])
    assert (k.intercept, k.uncorrelated) == (True, True)  # (x || k) is (1 + x || k), as in lme4
    assert [t.written for t in spec.group_terms] == [
        "(1 + s | g)", "(0 + x | h)", "(1 + x || k)"
    ]  # fmt: skip
    assert spec.slope_terms == ("g", "h", "k")
    assert spec.variables == ("s", "x", "g", "h", "k")


def test_nesting_gives_every_term_the_slopes():
    spec = ModelSpec("y ~ 1 + x + (1 + x | a/b) + (1 | c) + (1 | c)", "bernoulli", ("no", "yes"))
    assert [t.written for t in spec.group_terms] == ["(1 + x | a)", "(1 + x | a:b)", "(1 | c)"]
    with pytest.raises(SpecError, match=r"the ID 'p' .* joins several terms"):
        ModelSpec("y ~ 1 + (1 | p | a/b)", "categorical", LEVELS)


@pytest.mark.parametrize(
    ("formula", "priors", "message"),
    [
        ("y ~ 1 + (1 + x | g)", Priors(), r"fixed effects lack 'x'.*'... \+ x \+ \(1 \+ x \| g\)'"),
        ("y ~ 1 + x + (1 || g)", Priors(), r"one coefficient, so '\|\|'"),
        ("y ~ 1 + x + (0 + x || g)", Priors(), r"one coefficient"),
        ("y ~ 1 + g + (1 + g | g)", Priors(), r"slope of 'g' by 'g'"),
        ("y ~ 1 + (0 | g)", Priors(), r"varies nothing"),
        ("y ~ 1 + x + (1 | g) + (0 + x | g)", Priors(), r"'g' appears twice.*\(1 \+ x \|\| g\)"),
        ("y ~ 1 + x + (1 + x | p | g)", Priors(), r"apply to a varying intercept only"),
        ("y ~ 1 + x + (1 + x | g)", Priors(structure=(("g", Structure("rw1")),)),
         r"\[priors.structure\] g: a term with varying slopes \(1 \+ x \| g\).*takes no"),
        ("y ~ 1 + x + (1 + x | g)", Priors(parameterization=(("g", "centered"),)),
         r"takes no parameterization"),
        ("y ~ 1 + x + (1 + x | g | h | k)", Priors(), r"cannot read the group term"),
    ],
)  # fmt: skip
def test_bad_terms_are_refused_with_the_fix(formula, priors, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec(formula, "categorical", LEVELS, priors=priors)


def test_a_slope_on_a_level_constant_variable_is_refused():
    data = _three_answers()
    data["share"] = data["g"].map({f"g{i}": 0.1 * i for i in range(6)})  # one value per level
    spec = ModelSpec("y ~ 1 + share + (1 + share | g)", "categorical", LEVELS)
    with pytest.raises(DesignError, match=r"'share' does not vary within any level of 'g'"):
        build_design(spec, data)


def test_collinear_coefficients_are_refused():
    # without an intercept s is coded by both its levels, which add up to the term's intercept
    spec = ModelSpec("y ~ 0 + s + (1 + s | g)", "categorical", LEVELS)
    with pytest.raises(DesignError, match=r"coefficients of the term on 'g'.*collinear"):
        build_design(spec, _three_answers())


# -- the model ------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("bar", ["|", "||"])
def test_the_posterior_is_labelled_by_coefficient(family, bar):
    data = _answers_for(family)
    spec = ModelSpec(f"y ~ 1 + s + x + (1 + s + x {bar} g)", family, FAMILIES[family])
    design = build_design(spec, data)
    assert design.groups[0].coefs == ("Intercept", "s[urban]", "x")
    plan = make_plan(design)
    assert plan.term("g").structure == ("slopes" if bar == "|" else "uncorrelated slopes")
    assert plan.term("g").parameterization == "noncentered"
    model = build_model(design)
    cat = ("category",) if family == "categorical" else ()
    assert model.named_vars_to_dims["u_g"] == ("g", "g_coef", *cat)
    assert model.named_vars_to_dims["sigma_g"] == ("g_coef", *cat)
    assert model.coords["g_coef"] == ("Intercept", "s[urban]", "x")
    if bar == "|":
        assert model.named_vars_to_dims["cor_g"] == (*cat, "g_coef", "g_coef_")
    else:
        assert "cor_g" not in model.named_vars


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_slope_alone_has_an_sd_and_no_correlation(family):
    data = _answers_for(family)
    spec = ModelSpec("y ~ 1 + x + (0 + x | g)", family, FAMILIES[family])
    model = build_model(build_design(spec, data))
    cat = ("category",) if family == "categorical" else ()
    assert model.named_vars_to_dims["u_g"] == ("g", "g_coef", *cat)
    assert model.coords["g_coef"] == ("x",)
    assert "cor_g" not in model.named_vars
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_a_slope_term_is_not_paired_with_an_interaction():
    data = _three_answers()
    spec = ModelSpec("y ~ 1 + s + (1 + s | g) + (1 | g:s)", "categorical", LEVELS)
    assert sd_pairs(build_design(spec, data)) == {}


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_model_and_the_predictions_agree(family):
    """The model's log-likelihood at a random point is what predict computes from it."""
    data = _answers_for(family)
    spec = ModelSpec("y ~ 1 + s + x + (1 + s + x | g) + (1 | s:g)", family, FAMILIES[family])
    design = build_design(spec, data)
    model = build_model(design)
    names = [n for n in ("Intercept", "beta", "cutpoints", "u_g", "u_s:g") if n in model]
    loglik, posterior = at_random_point(model, names)
    draws = Draws.from_posterior(posterior, design)
    logp = log_probabilities(design, linear_predictor(draws, design), draws)[0]
    assert float((design.counts * logp).sum()) == pytest.approx(loglik, rel=1e-9)


# -- new levels ----------------------------------------------------------------------


@pytest.mark.parametrize("categorical", [False, True])
def test_new_levels_are_drawn_with_the_fitted_covariance(categorical):
    rng = np.random.default_rng(1)
    sd = np.array([0.5, 1.5])
    cor = np.array([[1.0, -0.7], [-0.7, 1.0]])
    cov = np.outer(sd, sd) * cor
    shape = (1, 3, 2, 2) if categorical else (1, 3, 2)
    factor = np.linalg.cholesky(cov)
    draws = Draws(
        intercept=np.zeros((1, 2)) if categorical else np.zeros(1), beta=None, cutpoints=None,
        effects={"g": rng.normal(size=shape)},
        sigmas={"g": np.stack([sd, sd], axis=1)[None] if categorical else sd[None]},
        factors={"g": np.stack([factor, factor])[None] if categorical else factor[None]},
    )  # fmt: skip
    design = build_design(ModelSpec("y ~ 1 + x + (1 + x | g)", "bernoulli", ("no", "yes")),
                          _simulate(n=300, n_levels=3)[0])  # fmt: skip
    new = [(f"new{i}",) for i in range(40_000)]
    extended = _extend_draws(draws, design, {"g": new}, seed=3).effects["g"][0, 3:]
    drawn = extended[..., 1] if categorical else extended  # one answer's coefficients
    assert np.cov(drawn.T) == pytest.approx(cov, abs=0.04)


# -- fits ------------------------------------------------------------------------------


@pytest.mark.slow
def test_intercepts_slopes_and_their_correlation_are_recovered():
    data, u = _simulate()
    spec = ModelSpec("y ~ 1 + x + (1 + x | g)", "bernoulli", ("no", "yes"))
    result = fit(spec, data, random_seed=1, progress=False, warn=False)
    assert result.converged, result.verdict
    post = result.posterior
    drawn_sd = u.std(axis=0, ddof=1)
    for coef, truth in zip(("Intercept", "x"), drawn_sd, strict=True):
        low, high = post["sigma_g"].sel(g_coef=coef).quantile([0.05, 0.95]).values
        assert low <= truth <= high
    low, high = post["cor_g"].sel(g_coef="Intercept", g_coef_="x").quantile([0.05, 0.95]).values
    assert low <= np.corrcoef(u.T)[0, 1] <= high <= 0.0  # the drawn r, -0.62
    effects = post["u_g"].transpose("chain", "draw", "g", "g_coef").values.reshape(-1, 30, 2)
    low, high = np.quantile(effects, [0.05, 0.95], axis=0)
    assert 0.8 <= ((low <= u) & (u <= high)).mean() <= 0.99  # 90% intervals, 60 effects


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ordinal", "categorical"])
def test_a_fit_poststratifies_and_survives_saving(family, tmp_path):
    data, _ = _simulate(n=1200, n_levels=8)
    data["y"] = np.where(data["y"] == "yes", np.where(data["x"] > 0, "c", "b"), "a")
    spec = ModelSpec("y ~ 1 + s + (1 + s | g)", family, LEVELS)
    sampling = Sampling(draws=200, tune=300, chains=2)
    result = fit(spec, data, sampling=sampling, random_seed=2, progress=False, warn=False)
    frame = pd.DataFrame([(f"g{i:02d}", s, 100.0) for i in range(10) for s in ("rural", "urban")],
                         columns=["g", "s", "n"])  # fmt: skip
    estimates = om.poststratify(result, frame, weight="n", by="g", new_levels="sample")
    table = estimates.summary()
    assert set(table["g"]) == {f"g{i:02d}" for i in range(10)}
    assert estimates.new_levels == {"g": ("g08", "g09")}
    # a new level's interval is wider than a surveyed one's, the shares add up to one
    width = table.assign(w=table["upper"] - table["lower"]).groupby("g")["w"].mean()
    assert width["g09"] > width["g00"]
    assert table.groupby("g")["mean"].sum().to_numpy() == pytest.approx(1.0)
    saved = om.load(result.save(tmp_path / "fit.nc"))
    again = om.poststratify(saved, frame, weight="n", by="g", new_levels="sample")
    assert again.summary()["mean"].to_numpy() == pytest.approx(table["mean"].to_numpy())
    assert Design.from_tree(saved.tree).groups[0].coefs == ("Intercept", "s[urban]")
    shares = om.effects(result, "s").mean(("chain", "draw"))
    assert shares.sum("category").values == pytest.approx(1.0)
    line = _model_line(result, 0.9)
    assert "g: its coefficients vary by level, " in line
    assert ("b: SDs Intercept " if family == "categorical" else "SDs Intercept ") in line
    assert "correlations Intercept with s[urban] " in line
