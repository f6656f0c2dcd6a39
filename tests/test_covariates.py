"""Area-level covariates: the spec's [covariates] table, joined onto survey and frame."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from helpers import PriorFit
from opinionmap.covariates import AreaCovariates, CovariateError
from opinionmap.design import build_design
from opinionmap.fitting import fit
from opinionmap.marginal import effects
from opinionmap.model import build_model
from opinionmap.poststratification import CoverageWarning, poststratify
from opinionmap.results import load
from opinionmap.spec import ModelSpec, SpecError

AREAS = [f"area{i:02d}" for i in range(12)]


def _table(path: Path, n_areas: int = len(AREAS)) -> Path:
    x = np.linspace(-1.0, 1.0, len(AREAS))
    pd.DataFrame(
        {"area": AREAS[:n_areas], "urban_share": x[:n_areas], "name": AREAS[:n_areas]}
    ).to_csv(path, index=False)
    return path


def _spec_toml(folder: Path, covariates: str) -> Path:
    spec = folder / "spec.toml"
    spec.write_text(
        'formula = "answer ~ 1 + sex + urban_share + (1 | area)"\n'
        'family = "bernoulli"\n'
        "[outcome]\n"
        'levels = ["no", "yes"]\n'
        f"[covariates]\n{covariates}"
    )
    return spec


def _survey(seed: int, n: int = 1500, slope: float = 1.5) -> pd.DataFrame:
    """Respondents in 10 of the 12 areas; P(yes) rises with the area's urban share."""
    rng = np.random.default_rng(seed)
    x = dict(zip(AREAS, np.linspace(-1.0, 1.0, len(AREAS)), strict=True))
    area = rng.choice(AREAS[:10], n)
    sex = rng.choice(["male", "female"], n)
    u = dict(zip(AREAS, rng.normal(0.0, 0.2, len(AREAS)), strict=True))
    eta = -0.3 + 0.4 * (sex == "female") + slope * np.array([x[a] for a in area])
    eta += np.array([u[a] for a in area])
    yes = rng.random(n) < 1.0 / (1.0 + np.exp(-eta))
    return pd.DataFrame({"area": area, "sex": sex, "answer": np.where(yes, "yes", "no")})


def test_spec_reads_covariates_relative_to_the_spec_file(tmp_path: Path) -> None:
    _table(tmp_path / "areas.csv")
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n'))
    assert spec.covariates == AreaCovariates((tmp_path / "areas.csv").resolve(), ("area",))
    moved = ModelSpec.from_dict(
        {**spec.to_dict(), "covariates": {"data": "/elsewhere/areas.csv", "by": ["area"]}}
    )
    assert moved.hash() == spec.hash()  # the path is not part of the model
    assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("covariates", "message"),
    [
        ('data = "areas.csv"\nby = "area"\nweight = 2\n', r"unknown key\(s\) 'weight'"),
        ('by = "area"\n', "needs 'data'"),
        ('data = "areas.csv"\nby = "area"\ncolumns = ["name"]\n', "'name' are not in the formula"),
        ('data = "areas.csv"\nby = 3\n', "by must be a column name"),
    ],
)
def test_bad_covariates_table_in_a_spec(tmp_path: Path, covariates: str, message: str) -> None:
    _table(tmp_path / "areas.csv")
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_toml(_spec_toml(tmp_path, covariates))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="urban_share"), "uses none of the covariate table's columns"),
        (lambda t: pd.concat([t, t.iloc[[3]]]), "'area03' appear more than once"),
        (lambda t: t.assign(urban_share=t["urban_share"].where(t["area"] != "area05")), "empty"),
        (lambda t: t.rename(columns={"area": "region"}), r"lacks column\(s\) 'area'"),
    ],
)
def test_bad_covariate_file_names_the_problem(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _table(tmp_path / "areas.csv")
    edit(pd.read_csv(path)).to_csv(path, index=False)
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n'))
    with pytest.raises(CovariateError, match=message):
        build_design(spec, _survey(1, n=100))


def test_missing_covariate_file_and_uncovered_areas(tmp_path: Path) -> None:
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "nowhere.csv"\nby = "area"\n'))
    with pytest.raises(CovariateError, match=r"nowhere\.csv' does not exist"):
        build_design(spec, _survey(1, n=100))
    _table(tmp_path / "areas.csv", n_areas=8)
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n'))
    with pytest.raises(CovariateError, match=r"'area08', 'area09'.*not in .*areas\.csv"):
        build_design(spec, _survey(1, n=400))


def test_survey_gets_the_table_values_and_a_disagreeing_copy_is_an_error(tmp_path: Path) -> None:
    _table(tmp_path / "areas.csv")
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n'))
    survey = _survey(1, n=300)
    design = build_design(spec, survey)
    expected = np.linspace(-1.0, 1.0, 12)[[AREAS.index(a) for a in design.cells["area"]]]
    np.testing.assert_allclose(design.cells["urban_share"], expected)
    # the same values already in the data are accepted and give the same model data
    own = survey.assign(urban_share=expected_for(survey))
    assert build_design(spec, own).data_hash == design.data_hash
    wrong = own.assign(urban_share=own["urban_share"] + 0.1)
    with pytest.raises(CovariateError, match="column 'urban_share' differs from"):
        build_design(spec, wrong)


def expected_for(df: pd.DataFrame) -> np.ndarray:
    x = np.linspace(-1.0, 1.0, len(AREAS))
    return np.array([x[AREAS.index(a)] for a in df["area"]])


def _prior_fit(tmp_path: Path) -> PriorFit:
    _table(tmp_path / "areas.csv")
    spec = ModelSpec.from_toml(_spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n'))
    design = build_design(spec, _survey(2, n=400))
    with build_model(design), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
        prior = pm.sample_prior_predictive(draws=40, random_seed=2)
    return PriorFit(design, prior["prior"].to_dataset())


def test_frame_needs_no_covariate_columns(tmp_path: Path) -> None:
    result = _prior_fit(tmp_path)
    frame = pd.DataFrame(
        [(a, s, 100.0 + i) for i, (a, s) in enumerate((a, s) for a in AREAS[:10] for s in "mf")],
        columns=["area", "sex", "population"],
    )
    frame["sex"] = frame["sex"].map({"m": "male", "f": "female"})
    bare = poststratify(result, frame, weight="population", by=["area"]).draws
    carried = poststratify(
        result, frame.assign(urban_share=expected_for(frame)), weight="population", by=["area"]
    )
    np.testing.assert_allclose(bare.values, carried.draws.values)
    # the covariate moves the estimates: a frame with other values gives other shares
    moved = frame.assign(urban_share=expected_for(frame) + 0.5)
    with pytest.raises(CovariateError, match="differs from the model's covariate table"):
        poststratify(result, moved, weight="population", by=["area"])
    # an area the table does not know
    stray = pd.concat([frame, frame.iloc[[0]].assign(area="area99")], ignore_index=True)
    with pytest.raises(CovariateError, match=r"'area99'.*not in the model's covariate table"):
        poststratify(result, stray, weight="population", by=["area"], new_levels="sample")


def test_new_area_is_poststratified_with_its_own_covariate(tmp_path: Path) -> None:
    result = _prior_fit(tmp_path)
    frame = pd.DataFrame(
        {"area": ["area10", "area11"], "sex": ["male", "male"], "population": [1.0, 1.0]}
    )
    # a frame of two new areas only: the surveyed ones are reported as left out
    with pytest.warns(CoverageWarning, match="surveyed area level"):
        est = poststratify(
            result, frame, weight="population", by=["area"], new_levels="sample", random_seed=3
        )
    draws = result.draws()
    slope = result.posterior["beta"].sel(coef="urban_share").values.reshape(-1)
    # the two unsurveyed areas differ by their covariates: the mean difference of their
    # log-odds follows the slope times the covariate gap (new-area effects average out)
    p = est.draws.sel(category="yes").values.reshape(-1, 2)
    gap = np.log(p[:, 1] / (1 - p[:, 1])) - np.log(p[:, 0] / (1 - p[:, 0]))
    x = np.linspace(-1.0, 1.0, len(AREAS))
    sigma = np.asarray(draws.sigmas["area"]).reshape(-1)
    # gap = slope * dx + (u11 - u10), u ~ N(0, sigma): standardised residuals are N(0, 2)
    z = (gap - slope * (x[11] - x[10])) / sigma
    assert abs(z.mean()) < 3 * np.sqrt(2) / np.sqrt(len(z))
    assert 0.7 < z.std() / np.sqrt(2) < 1.3


@pytest.mark.slow
def test_area_slope_recovered_and_kept_through_save_and_load(tmp_path: Path) -> None:
    _table(tmp_path / "areas.csv")
    spec_path = _spec_toml(tmp_path, 'data = "areas.csv"\nby = "area"\n')
    spec = ModelSpec.from_toml(spec_path)
    survey = _survey(5, n=3000, slope=1.5)
    result = fit(spec, survey, random_seed=5, progress=False)  # default 4 x 1000
    beta = result.posterior["beta"].sel(coef="urban_share").values.reshape(-1)
    lower, upper = np.quantile(beta, [0.05, 0.95])
    assert lower < 1.5 < upper, (lower, upper)
    assert lower > 0.5  # the data pin the slope well away from zero
    # the table travels inside the fit: load works with the file gone
    result.save(tmp_path / "fit.nc")
    (tmp_path / "areas.csv").unlink()
    loaded = load(tmp_path / "fit.nc", data=survey)
    frame = pd.DataFrame({"area": AREAS, "sex": "female", "population": 1.0})
    a = poststratify(
        result, frame, weight="population", by=["area"], new_levels="sample", random_seed=1
    )
    b = poststratify(
        loaded, frame, weight="population", by=["area"], new_levels="sample", random_seed=1
    )
    np.testing.assert_allclose(a.draws.values, b.draws.values)
    # effects by area use each area's own covariate: shares rise with urban share
    shares = effects(loaded, "area").sel(category="yes").mean(("chain", "draw"))
    assert list(shares["area"].values) == AREAS[:10]  # the surveyed areas
    assert np.corrcoef(shares.values, np.linspace(-1.0, 1.0, 12)[:10])[0, 1] > 0.9
