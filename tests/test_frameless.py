"""A survey variable the frame lacks (education): its split of every frame cell estimated
from the survey and carried, draw by draw, into the estimates (MrsP)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import expit, softmax

import opinionmap as om
from opinionmap.design import build_design
from opinionmap.errors import FrameError
from opinionmap.fitting import fit
from opinionmap.frameless import FramelessModel, fit_frameless, frameless_spec
from opinionmap.poststratification import MRP, poststratify
from opinionmap.predict import linear_predictor, probabilities
from opinionmap.spec import ModelSpec, Sampling

EDUCATION = ("low", "mid", "high")
REGIONS = tuple(f"r{i}" for i in range(6))
# log-odds of mid and high against low education, by region (regions differ a lot)
REGION_EDUCATION = np.linspace(-1.2, 1.2, len(REGIONS))
# the opinion: strongly by education, a little by sex and region
EDUCATION_EFFECT = np.array([0.0, 0.8, 2.0])


def _population() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frame (region x sex, no education) and each region's true share saying yes."""
    rows, truth = [], []
    for r, region in enumerate(REGIONS):
        yes, total = 0.0, 0.0
        for s, sex in enumerate(("f", "m")):
            n = 10_000.0 * (1 + r % 3)
            split = softmax([0.0, 0.5 + REGION_EDUCATION[r], REGION_EDUCATION[r] + 0.4 * s])
            p = expit(-1.0 + EDUCATION_EFFECT + 0.3 * s + 0.2 * (r - 2.5) / 2.5)
            rows.append({"region": region, "sex": sex, "population": n})
            yes += n * float(split @ p)
            total += n
        truth.append({"region": region, "truth": yes / total})
    return pd.DataFrame(rows), pd.DataFrame(truth)


def _survey(frame: pd.DataFrame, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A sample whose cells are drawn equally often (not as the population), then the rest."""
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, len(frame), n)
    region = frame["region"].to_numpy()[cell]
    sex = frame["sex"].to_numpy()[cell]
    r = np.array([REGIONS.index(v) for v in region])
    s = (sex == "m").astype(int)
    logits = np.column_stack([np.zeros(n), 0.5 + REGION_EDUCATION[r],
                              REGION_EDUCATION[r] + 0.4 * s])  # fmt: skip
    e = (rng.random(n)[:, None] > np.cumsum(softmax(logits, axis=1), axis=1)).sum(axis=1)
    p = expit(-1.0 + EDUCATION_EFFECT[np.minimum(e, 2)] + 0.3 * s + 0.2 * (r - 2.5) / 2.5)
    education = np.array(EDUCATION)[np.minimum(e, 2)]
    return pd.DataFrame({"y": np.where(rng.random(n) < p, "yes", "no"), "region": region,
                         "sex": sex, "education": education})  # fmt: skip


FORMULA = "y ~ 1 + sex + education + (1 | region)"


# 1,000 draws a chain: the SD of six regions mixes slowly (at 400, its tail ESS was
# 230-321 at seeds 1-3)
def _spec(formula: str = FORMULA) -> ModelSpec:
    return ModelSpec(formula, "bernoulli", ("no", "yes"),
                     sampling=Sampling(draws=1000, tune=500, chains=4))  # fmt: skip


# -- the model of the variable -------------------------------------------------------------


def test_the_variable_is_modelled_on_the_terms_that_do_not_involve_it():
    frame, _ = _population()
    data = _survey(frame).assign(age=lambda d: np.arange(len(d)) % 50 + 20.0)
    formula = (
        "y ~ 1 + sex + age + education + sex:education + (1 | region) + (1 | region:education)"
    )
    design = build_design(_spec(formula), data)
    spec = frameless_spec(design, "education")
    assert spec.formula == "education ~ 1 + sex + age + (1 | region)"
    assert spec.family == "categorical" and spec.levels == ("high", "low", "mid")
    with pytest.raises(
        FrameError, match=r"'age', which the frame lacks.*categorical variable only"
    ):
        frameless_spec(design, "age")


def test_one_categorical_variable_the_frame_lacks_is_supported():
    from opinionmap.poststratification import _columns, _lacking

    frame, _ = _population()
    data = _survey(frame).assign(job=lambda d: np.where(np.arange(len(d)) % 3, "a", "b"))
    design = build_design(_spec("y ~ 1 + sex + education + job + (1 | region)"), data)
    lacking = _lacking(frame, design, None)
    assert lacking == ()
    with pytest.raises(FrameError, match=r"column\(s\) 'education', 'job'.*estimates one"):
        _columns(frame, design, (), lacking)
    design = build_design(_spec(), data)
    assert _lacking(frame, design, None) == ("education",)
    assert "education" not in _columns(frame, design, (), ("education",))


# -- fitted -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[om.FitResult, FramelessModel, pd.DataFrame, pd.DataFrame]:
    frame, truth = _population()
    result = fit(_spec(), _survey(frame), random_seed=3, progress=False)
    return result, fit_frameless(result, "education", random_seed=4), frame, truth


@pytest.mark.slow
def test_the_frame_is_split_by_the_variable_draw_by_draw(fitted):
    result, frameless, frame, truth = fitted
    assert result.converged and frameless.result.converged, frameless.result.verdict
    est = poststratify(result, frame, weight="population", by="region", frameless=frameless)
    assert est.method.startswith("MrsP: the frame lacks 'education'")
    assert est.summary().attrs["method"] == est.method
    np.testing.assert_allclose(est.draws.sum("category"), 1.0, rtol=1e-10)
    table = est.summary(prob=0.9)
    yes = table[table["category"] == "yes"].merge(truth, on="region")
    # the education split differs by region: MrsP recovers each region's share
    assert (yes["mean"] - yes["truth"]).abs().mean() < 0.025, yes
    assert ((yes["lower"] <= yes["truth"]) & (yes["truth"] <= yes["upper"])).mean() >= 4 / 6
    # a dask frame, partition by partition: the same estimates
    import dask.dataframe as dd

    lazy = dd.from_pandas(frame, npartitions=3)
    chunked = poststratify(result, lazy, weight="population", by="region", frameless=frameless)
    np.testing.assert_allclose(chunked.draws.values, est.draws.values, rtol=1e-10)
    # without frameless= it fits the same model itself (same seed: the same estimates)
    again = poststratify(result, frame, weight="population", by="region", random_seed=4)
    np.testing.assert_allclose(again.draws.values, est.draws.values)


@pytest.mark.slow
def test_the_split_carries_its_own_uncertainty(fitted):
    """With the split's draws collapsed to its posterior mean, intervals are narrower."""
    result, frameless, frame, _ = fitted
    posterior = frameless.result.posterior
    mean = posterior.mean(("chain", "draw"))
    fixed = posterior.copy()
    for name in posterior.data_vars:
        fixed[name] = posterior[name] * 0 + mean[name]
    tree = frameless.result.tree.copy()
    tree["posterior"] = xr.DataTree(fixed)
    pinned = FramelessModel("education", dataclasses.replace(frameless.result, tree=tree))
    est = poststratify(result, frame, weight="population", by="region", frameless=frameless)
    point = poststratify(result, frame, weight="population", by="region", frameless=pinned)
    # the mean: a frame with education, each cell split by the posterior-mean shares
    design, draws = frameless.design, frameless.result.draws()
    shares = probabilities(design, linear_predictor(draws, design, design.evaluate(frame)), draws)
    split = shares.mean(axis=0)
    full = pd.concat([frame.assign(education=e, population=frame["population"] * split[:, i])
                      for i, e in enumerate(frameless.levels)], ignore_index=True)  # fmt: skip
    mean = poststratify(result, full, weight="population", by="region").draws.mean(
        ("chain", "draw")
    )
    np.testing.assert_allclose(est.draws.mean(("chain", "draw")), mean, atol=2e-3)
    sd = est.draws.std(("chain", "draw")).sel(category="yes")
    pinned_sd = point.draws.std(("chain", "draw")).sel(category="yes")
    assert bool((sd > pinned_sd).all()) and float(sd.mean()) > 1.03 * float(pinned_sd.mean())


@pytest.mark.slow
def test_bad_uses_are_refused(fitted):
    result, frameless, frame, _ = fitted
    with_education = frame.merge(pd.DataFrame({"education": EDUCATION}), how="cross")
    with pytest.raises(FrameError, match=r"frameless= models 'education', but the frame has every"):
        poststratify(result, with_education, weight="population", frameless=frameless)
    # the frame has it: plain MRP
    assert poststratify(result, with_education, weight="population").method == MRP
    # a model of education for another spec's terms
    other = ModelSpec("education ~ 1 + sex + job", "categorical", EDUCATION)
    fitted_other = dataclasses.replace(
        frameless.result, design=dataclasses.replace(frameless.design, spec=other)
    )
    with pytest.raises(FrameError, match=r"uses column\(s\) 'job' that the frame lacks"):
        poststratify(result, frame, weight="population",
                     frameless=FramelessModel("education", fitted_other))  # fmt: skip
    odd = pd.concat([frame, frame.head(1).assign(sex="x")], ignore_index=True)
    with pytest.raises(FrameError, match=r"sex level\(s\) 'x': no survey respondent.*region=r0"):
        poststratify(result, odd, weight="population", frameless=frameless)


@pytest.mark.slow
def test_the_command_line_says_which_method(fitted, tmp_path):
    from typer.testing import CliRunner

    from opinionmap.cli import app

    result, _, frame, _ = fitted
    path = result.save(tmp_path / "fit.nc")
    frame.to_csv(tmp_path / "frame.csv", index=False)
    out = tmp_path / "est.csv"
    args = ["poststratify", str(path), "--frame", str(tmp_path / "frame.csv"), "--by", "region"]
    run = CliRunner().invoke(app, [*args, "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert "MrsP: the frame lacks 'education'" in run.output
    assert set(pd.read_csv(out)["region"]) == set(REGIONS)


@pytest.mark.slow
def test_a_term_of_the_variable_and_a_new_area(fitted):
    """``(1 | region:education)``: every region's term at every education level, new ones too."""
    _, _, frame, _ = fitted
    spec = _spec("y ~ 1 + sex + education + (1 | region) + (1 | region:education)")
    result = fit(spec, _survey(frame, seed=5), random_seed=6, progress=False)
    unseen = pd.concat([frame, frame.head(2).assign(region="r_new")], ignore_index=True)
    est = poststratify(
        result, unseen, weight="population", by="region", new_levels="sample", random_seed=2
    )
    assert est.method.startswith("MrsP") and est.new_levels == {
        "region": ("r_new",), "region:education": tuple(f"r_new:{e}" for e in
                                                        ("high", "low", "mid"))}  # fmt: skip
    np.testing.assert_allclose(est.draws.sum("category"), 1.0, rtol=1e-10)
    assert np.isfinite(est.draws.sel(region="r_new").values).all()


@pytest.mark.slow
def test_the_report_says_which_method(fitted, tmp_path):
    from opinionmap.report import ReportOptions, report_section

    result, _, frame, _ = fitted
    options = ReportOptions(area="region", groups=())
    section = report_section(result, om.Frame.from_dataframe(frame), tmp_path, options=options)
    assert "MrsP: the frame lacks &#x27;education&#x27;" in section.html
    table = pd.read_csv(tmp_path / "y_by_region.csv")
    assert set(table["region"]) == set(REGIONS)


def test_area_covariates_joined_onto_the_frame_are_not_lacking():
    """The bundled spec plus education: the frame lacks education, not the region's covariate."""
    from opinionmap.frameless import frameless_variable

    root = Path(__file__).resolve().parents[1]
    spec = om.read_spec(root / "models" / "presence_russia.toml")
    lhs, rhs = spec.formula.split("~")
    spec = dataclasses.replace(spec, formula=f"{lhs}~{rhs} + education")
    design = build_design(spec, om.read_survey(root / "data" / "kazakhstan" / "survey_2020.csv"))
    frame = om.read_frame(root / "data" / "kazakhstan" / "frame_2020.csv")
    assert "russian_share" not in frame.data.columns
    assert frameless_variable(design, list(frame.data.columns)) == "education"
    assert frameless_variable(design, [*frame.data.columns, "education"]) is None
