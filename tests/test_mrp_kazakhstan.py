"""MRP on the bundled Kazakhstan data, measured against the known truth.

The synthetic truth has what the bundled specs do not model (education driving opinion
and response, an age x settlement interaction, district and sampling-point effects, a
true population the frame only approximates), and the survey is clustered with
non-response the weights leave in. On the bundled survey the shipped specs' regional
estimates must still be closer to the truth than the design-weighted direct estimates,
the national share everywhere, and a region-only multilevel model. The fits are small
(2 chains x 300 draws); ``benchmarks/validate_mrp.py`` measures the same over 50
replicate surveys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import opinionmap as om
from opinionmap.cli import app
from opinionmap.direct import direct_estimates
from opinionmap.fitting import fit
from opinionmap.poststratification import poststratify
from opinionmap.results import FitResult

# question -> a mean absolute error (percentage points, 17 regions x 3 answers) that MRP
# stays under on the bundled survey and each baseline exceeds; measured with these fits:
# presence_russia MRP 3.62, region only 4.35, direct 4.63, national 8.40;
# presence_usa MRP 2.49, region only 2.65, direct 4.18, national 4.15; interval scores
# at seeds 20, 1, 2, 3: presence_russia MRP 16.1-16.7, region only 18.1-19.9, direct 28.7;
# presence_usa MRP 10.1-10.5, region only 12.9-13.5, direct 23.1
BOUNDS = {"presence_russia": 4.0, "presence_usa": 2.57}


@pytest.fixture(scope="module")
def survey() -> om.Survey:
    return om.read_survey(om.datasets.kazakhstan_survey_path())


@pytest.fixture(scope="module")
def frame() -> om.Frame:
    # no covariate columns: poststratify joins the region's covariates from the fit
    return om.read_frame(om.datasets.kazakhstan_frame_path())


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    """True shares of those answering by region (the specs drop "don't know")."""
    table = pd.read_csv(om.datasets.kazakhstan_truth_path())
    table = table[table["response"] != "dont_know"].copy()
    table["share"] /= table.groupby(["question", "region"])["share"].transform("sum")
    return table.rename(columns={"response": "category"})


def _fit(spec: om.ModelSpec, survey: om.Survey) -> FitResult:
    return fit(spec, survey, draws=300, tune=300, chains=2, random_seed=20, progress=False)


@pytest.fixture(scope="module")
def fits(survey: om.Survey) -> dict[str, dict[str, FitResult]]:
    out = {}
    for question in BOUNDS:
        spec = om.read_spec(om.datasets.models_dir() / f"{question}.toml")
        region_only = dataclasses.replace(
            spec, formula=f"{question} ~ 1 + (1 | region)", covariates=None
        )
        out[question] = {"MRP": _fit(spec, survey), "region only": _fit(region_only, survey)}
    return out


def _mae(table: pd.DataFrame, truth: pd.DataFrame, column: str) -> float:
    both = table.merge(truth, on=["region", "category"])
    assert len(both) == 17 * 3
    return 100 * float((both[column] - both["share"]).abs().mean())


def _interval_quality(table: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    """Coverage of the 90% intervals and their interval score (percentage points)."""
    both = table.merge(truth, on=["region", "category"])
    below = (both["lower"] - both["share"]).clip(lower=0)
    above = (both["share"] - both["upper"]).clip(lower=0)
    covered = (below == 0) & (above == 0)
    score = both["upper"] - both["lower"] + 2 / 0.1 * (below + above)
    return float(covered.mean()), 100 * float(score.mean())


@pytest.mark.slow
@pytest.mark.parametrize("question", list(BOUNDS))
def test_mrp_beats_direct_national_and_region_only_estimates(
    question: str,
    fits: dict[str, dict[str, FitResult]],
    frame: om.Frame,
    survey: om.Survey,
    truth: pd.DataFrame,
) -> None:
    t = truth[truth["question"] == question][["region", "category", "share"]]
    levels = list(fits[question]["MRP"].design.categories)
    mrp = poststratify(fits[question]["MRP"], frame, by=["region"]).summary(prob=0.9)
    only = poststratify(fits[question]["region only"], frame, by=["region"]).summary(prob=0.9)
    direct = direct_estimates(survey, question, by="region", categories=levels, prob=0.9)
    nation = direct_estimates(
        om.Survey(survey.data.assign(nation="all"), survey.codebook), question, by="nation",
        categories=levels,
    )  # fmt: skip
    national = t.merge(nation[["category", "weighted"]], on="category")
    errors = {
        "MRP": _mae(mrp, t, "mean"),
        "region only": _mae(only, t, "mean"),
        "direct": _mae(direct, t, "weighted"),
        "national": _mae(national.drop(columns="share"), t, "weighted"),
    }
    print(question, {k: round(v, 2) for k, v in errors.items()})
    bound = BOUNDS[question]
    assert errors["MRP"] < bound
    assert min(errors["region only"], errors["direct"], errors["national"]) > bound
    # the interval score (width plus 20 times any miss) rewards intervals that are both
    # narrow and right: MRP's must beat the region-only model's and the direct estimates'
    coverage, score = _interval_quality(mrp, t)
    assert score < _interval_quality(only, t)[1]
    assert score < _interval_quality(direct, t)[1]
    # over 50 replicate surveys the shipped specs cover 0.82-0.86 on average, single surveys
    # down to 0.57 (benchmarks/README.md); the bundled survey's presence_russia sits at
    # 0.69-0.73 across seeds, so the floor catches intervals that have collapsed
    assert coverage >= 0.6


@pytest.mark.slow
def test_cli_poststratify_writes_the_contract_columns(
    fits: dict[str, dict[str, FitResult]], frame: om.Frame, tmp_path: Path
) -> None:
    fit_path = fits["presence_usa"]["MRP"].save(tmp_path / "usa.nc")
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
    assert len(table) == 17 * 3 * 3
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
def test_contrast_kazakh_vs_russian_wanting_less_russia(
    fits: dict[str, dict[str, FitResult]], frame: om.Frame
) -> None:
    est = poststratify(fits["presence_russia"]["MRP"], frame, by=["ethnicity"])
    contrast = est.contrast({"ethnicity": "kazakh"}, {"ethnicity": "russian"}, "less")
    truth = pd.read_csv(om.datasets.data_dir() / "kazakhstan" / "truth_ethnicity_2020.csv")
    truth = truth[(truth["question"] == "presence_russia") & (truth["response"] != "dont_know")]
    answering = truth.set_index(["ethnicity", "response"])["share"]
    answering = answering / answering.groupby(level="ethnicity").transform("sum")
    true_diff = answering[("kazakh", "less")] - answering[("russian", "less")]
    s = contrast.summary(prob=0.9)
    assert s["lower"] - 0.03 <= true_diff <= s["upper"] + 0.03
    # Kazakhs want less Russian presence than Russians do, and the posterior is sure of it
    assert true_diff > 0 and contrast.prob_greater > 0.95
