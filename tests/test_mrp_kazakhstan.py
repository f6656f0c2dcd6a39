"""MRP on the bundled Kazakhstan data, measured against the known truth.

The synthetic survey over-represents urban and young respondents and its design
weights correct only region x settlement, so direct estimates stay biased; MRP
with the frame should be closer to the true regional shares and cover them.
These fits are small (2 chains x 300 draws); `benchmarks/` prints the full figures.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import opinionmap as om
from opinionmap.cli import app
from opinionmap.covariates import AreaCovariates
from opinionmap.direct import direct_estimates
from opinionmap.fitting import fit
from opinionmap.poststratification import poststratify
from opinionmap.results import FitResult
from opinionmap.spec import ModelSpec

QUESTIONS = ["presence_russia", "presence_china"]
LEVELS = ("less", "same", "more", "dont_know")  # dont_know modelled, so truth compares directly


COVARIATES = AreaCovariates(
    om.datasets.data_dir() / "kazakhstan" / "region_covariates_2020.csv", ("region",)
)


@pytest.fixture(scope="module")
def survey() -> om.Survey:
    return om.read_survey(om.datasets.kazakhstan_survey_path())


@pytest.fixture(scope="module")
def survey_data(survey: om.Survey) -> pd.DataFrame:
    return survey.data


@pytest.fixture(scope="module")
def frame() -> om.Frame:
    # no covariate columns: poststratify joins the region's russian_share from the fit
    return om.read_frame(om.datasets.kazakhstan_frame_path())


@pytest.fixture(scope="module")
def fits(survey: om.Survey) -> dict[str, FitResult]:
    out = {}
    for question in QUESTIONS:
        spec = ModelSpec(
            formula=f"{question} ~ 1 + sex + settlement + russian_share + (1 | age) "
            "+ (1 | ethnicity) + (1 | region) + (1 | region:ethnicity)",
            family="categorical",
            levels=LEVELS,
            covariates=COVARIATES,
        )
        out[question] = fit(
            spec,
            survey,
            draws=300,
            tune=300,
            chains=2,
            random_seed=20,
            progress=False,
            warn=False,
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("question", QUESTIONS)
def test_mrp_beats_direct_and_covers_the_truth(
    question: str, fits: dict[str, FitResult], frame: om.Frame, survey_data: pd.DataFrame
) -> None:
    truth = pd.read_csv(om.datasets.kazakhstan_truth_path())
    truth = truth[truth["question"] == question].rename(columns={"response": "category"})
    mrp = poststratify(fits[question], frame, by=["region"]).summary(prob=0.9)
    direct = direct_estimates(
        survey_data, question, by="region", categories=LEVELS, missing=(), weight="weight"
    )
    direct = direct[["region", "category", "weighted"]]
    m = mrp.merge(truth, on=["region", "category"]).merge(direct, on=["region", "category"])
    assert len(m) == 17 * 4
    mae_mrp = (m["mean"] - m["share"]).abs().mean()
    mae_direct = (m["weighted"] - m["share"]).abs().mean()
    coverage = ((m["lower"] <= m["share"]) & (m["share"] <= m["upper"])).mean()
    print(
        f"{question}: MAE MRP {mae_mrp:.4f}, direct {mae_direct:.4f}, 90% coverage {coverage:.2f}"
    )
    assert mae_mrp < mae_direct
    assert coverage >= 0.8


@pytest.mark.slow
def test_cli_poststratify_writes_the_contract_columns(
    fits: dict[str, FitResult], frame: om.Frame, tmp_path: Path
) -> None:
    fit_path = fits["presence_china"].save(tmp_path / "china.nc")
    frame_path = tmp_path / "frame.csv"
    frame.to_file(frame_path)
    out = tmp_path / "estimates.csv"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "poststratify",
            str(fit_path),
            "--frame",
            str(frame_path),
            "--by",
            "region,ethnicity",
            "--prob",
            "0.8",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "whole population: less" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:7]) == [
        "region",
        "ethnicity",
        "category",
        "mean",
        "sd",
        "lower",
        "upper",
    ]
    assert "n_respondents" in table.columns
    assert len(table) == 17 * 3 * 4
    sums = table.groupby(["region", "ethnicity"])["mean"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-9)
    bad = runner.invoke(
        app,
        [
            "poststratify",
            str(fit_path),
            "--frame",
            str(frame_path),
            "--by",
            "district",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 2
    assert "by column(s) 'district' not in the frame" in bad.output


@pytest.mark.slow
def test_contrast_kazakh_vs_russian_wanting_less_china(
    fits: dict[str, FitResult], frame: om.Frame
) -> None:
    est = poststratify(fits["presence_china"], frame, by=["ethnicity"])
    contrast = est.contrast({"ethnicity": "kazakh"}, {"ethnicity": "russian"}, "less")
    truth = pd.read_csv(om.datasets.data_dir() / "kazakhstan" / "truth_ethnicity_2020.csv")
    t = truth[(truth["question"] == "presence_china") & (truth["response"] == "less")].set_index(
        "ethnicity"
    )["share"]
    true_diff = t["kazakh"] - t["russian"]
    s = contrast.summary(prob=0.9)
    assert s["lower"] - 0.03 <= true_diff <= s["upper"] + 0.03
    assert 0.0 <= contrast.prob_greater <= 1.0
