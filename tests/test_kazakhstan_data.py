"""The bundled Kazakhstan demo data: what a user relies on, checked against the sources.

Expected values are computed here from ``data/kazakhstan/sources/`` (and the 2018
boundaries) independently of ``scripts/build_kazakhstan_data.py``; the last tests rebuild
the data with the script and require byte-identical files.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapefile

import opinionmap
from opinionmap.direct import direct_estimates
from opinionmap.frame import read_frame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "kazakhstan"
SOURCES = DATA / "sources"
GEO = ROOT / "data" / "geo" / "kazakhstan"
SCRIPT = ROOT / "scripts" / "build_kazakhstan_data.py"

GENERATED = (
    "frame_2020.csv",
    "region_covariates_2020.csv",
    "survey_2020.csv",
    "survey_2020.codebook.toml",
    "truth_2020.csv",
    "truth_ethnicity_2020.csv",
    "truth_parameters_2020.csv",
    "truth_population_2020.csv",
    "truth_district_2020.csv",
    "truth_joint_2020.csv",
    "truth_correlations_2020.csv",
    "region_adjacency.csv",
    "published_2020.csv",
    "frame_district_2020.csv",
    "districts_2020.csv",
    "district_adjacency.csv",
)
SURVEY_COLUMNS = [
    "respondent_id",
    "region",
    "sex",
    "age",
    "ethnicity",
    "settlement",
    "education",
    "weight",
    "district",
    "stratum",
    "psu",
    "presence_russia",
    "presence_usa",
    "presence_china",
    "presence_eu",
    "presence_muslim",
    "main_friend",
    "main_enemy",
    "model_country",
]
QUESTIONS = SURVEY_COLUMNS[11:]
PRESENCE = QUESTIONS[:5]
PP = 0.005  # half a percentage point
#: ASSUMED national education shares of adults (data/kazakhstan/README.md)
EDUCATION_SHARES = {"secondary": 0.38, "vocational": 0.35, "higher": 0.27}


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, keep_default_na=False)


@pytest.fixture(scope="module")
def official() -> pd.DataFrame:
    return pd.read_csv(SOURCES / "region_sex_age_2020.csv")


@pytest.fixture(scope="module")
def national() -> dict[str, str]:
    table = pd.read_csv(SOURCES / "national_2020.csv", dtype=str, keep_default_na=False)
    return dict(zip(table["quantity"], table["value"], strict=True))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _csv("frame_2020.csv")


@pytest.fixture(scope="module")
def covariates() -> pd.DataFrame:
    return _csv("region_covariates_2020.csv").set_index("region")


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return _csv("truth_2020.csv")


@pytest.fixture(scope="module")
def survey() -> pd.DataFrame:
    return _csv("survey_2020.csv")


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return _csv("truth_population_2020.csv")


@pytest.fixture(scope="module")
def districts() -> dict[str, str]:
    """District code (ADM2_PCODE) -> region (ISO 3166-2), from the 2018 boundaries."""
    with shapefile.Reader(str(GEO / "kaz_admbnda_adm2_2018.shp")) as reader:
        return {rec["ADM2_PCODE"]: rec["ISO_3166_2"] for rec in reader.records()}


@pytest.fixture(scope="module")
def codebook() -> dict:
    with open(DATA / "survey_2020.codebook.toml", "rb") as fh:
        return tomllib.load(fh)


# -- bundled copies of the sources -------------------------------------------------


def test_sources_and_boundaries_are_bundled():
    for name in (
        "SOURCES.md",
        "national_2020.csv",
        "published_survey_2020.csv",
        "region_religion_census_2021.csv",
        "region_sex_age_2020.csv",
    ):
        assert (SOURCES / name).is_file(), name
    for layer in ("kaz_admbnda_adm1_2018", "kaz_admbnda_adm2_2018"):
        for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
            assert (GEO / f"{layer}{ext}").is_file(), layer + ext
    assert (GEO / "LICENSE-CC-BY-4.0.md").is_file()
    assert "CC BY 4.0" in (GEO / "README.md").read_text()
    for readme in (DATA / "README.md", ROOT / "data" / "README.md"):
        assert "SYNTHETIC" in readme.read_text()


def test_boundaries_carry_the_frame_regions(official):
    with shapefile.Reader(str(GEO / "kaz_admbnda_adm1_2018.shp")) as reader:
        codes = [rec["ISO_3166_2"] for rec in reader.records()]
    assert sorted(codes) == sorted(official["iso_3166_2"])


# -- frame -------------------------------------------------------------------------


def test_frame_shape_and_levels(frame, official):
    assert list(frame.columns) == ["region", "sex", "age", "ethnicity", "settlement", "population"]
    assert len(frame) == 816
    assert list(pd.unique(frame["region"])) == list(official["iso_3166_2"])
    assert set(frame["sex"]) == {"male", "female"}
    assert set(frame["age"]) == {"18-29", "30-44", "45-59", "60+"}
    assert set(frame["ethnicity"]) == {"kazakh", "russian", "other"}
    assert set(frame["settlement"]) == {"urban", "rural"}
    assert not frame.duplicated(["region", "sex", "age", "ethnicity", "settlement"]).any()
    assert (frame["population"] >= 0).all()
    # and the package's own reader accepts it
    assert read_frame(DATA / "frame_2020.csv").n_cells == 816


def test_frame_region_sex_totals_are_official_adults(frame, official):
    # adults 18+ = working age + pension age - 2/16 of the 0-15 band
    expected = {}
    for row in official.itertuples(index=False):
        expected[(row.iso_3166_2, "male")] = row.men_16_62 + row.men_63plus - row.men_0_15 * 2 / 16
        expected[(row.iso_3166_2, "female")] = (
            row.women_16_58 + row.women_59plus - row.women_0_15 * 2 / 16
        )
    got = frame.groupby(["region", "sex"])["population"].sum()
    assert len(got) == len(expected) == 34
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_frame_men_60plus_include_all_pension_age_men(frame, official):
    # every man of pension age (63+) is in the 60+ band; it also holds 60-62-year-olds
    men_60 = frame[(frame["sex"] == "male") & (frame["age"] == "60+")]
    got = men_60.groupby("region")["population"].sum()
    pension = official.set_index("iso_3166_2")["men_63plus"]
    assert (got[pension.index] > pension).all()
    assert (got[pension.index] < pension * 1.6).all()


def test_frame_matches_ethnicity_and_settlement_margins(frame, covariates):
    region_total = frame.groupby("region")["population"].sum()
    assert np.allclose(region_total[covariates.index], covariates["adult_population"], rtol=1e-6)
    eth = frame.pivot_table(index="region", columns="ethnicity", values="population", aggfunc="sum")
    eth = eth.div(eth.sum(axis=1), axis=0).loc[covariates.index]
    assert np.allclose(eth["russian"], covariates["russian_share"], atol=1e-6)
    assert np.allclose(eth["kazakh"], covariates["kazakh_share"], atol=1e-6)
    settle = frame.pivot_table(
        index="region", columns="settlement", values="population", aggfunc="sum"
    )
    urban = (settle["urban"] / settle.sum(axis=1)).loc[covariates.index]
    assert np.allclose(urban, covariates["urban_share"], atol=1e-6)
    for city in ("KZ-AST", "KZ-ALA", "KZ-SHY"):
        assert covariates.loc[city, "urban_share"] == 1.0
    shares = covariates[["urban_share", "russian_share", "kazakh_share"]]
    assert ((shares >= 0) & (shares <= 1)).all().all()
    assert (covariates["russian_share"] + covariates["kazakh_share"] <= 1).all()


def test_frame_national_shares_hit_their_targets(frame, national):
    total = frame["population"].sum()
    by_eth = frame.groupby("ethnicity")["population"].sum() / total
    urban = frame.loc[frame["settlement"] == "urban", "population"].sum() / total
    assert by_eth["russian"] == pytest.approx(float(national["russian_share"]), abs=1e-6)
    assert by_eth["kazakh"] == pytest.approx(float(national["kazakh_share"]), abs=1e-6)
    assert urban == pytest.approx(float(national["urban_share"]), abs=1e-6)


def test_covariates_carry_the_census_proxies(covariates):
    census = pd.read_csv(SOURCES / "region_religion_census_2021.csv").set_index("iso_3166_2")
    census = census.loc[covariates.index]
    assert np.allclose(covariates["christian_share_2021"], census["christian_share"])
    assert np.allclose(covariates["islam_share_2021"], census["islam_share"])
    # the Russian share follows the Christian share: the north above the south
    assert covariates.loc["KZ-SEV", "russian_share"] > covariates.loc["KZ-YUZ", "russian_share"]


# -- the true population -----------------------------------------------------------


def test_true_population_shape_and_districts(population, districts, frame):
    assert list(population.columns) == [
        "region",
        "district",
        "sex",
        "age",
        "ethnicity",
        "settlement",
        "education",
        "population",
    ]
    assert list(pd.unique(population["region"])) == list(pd.unique(frame["region"]))
    assert set(population["education"]) == set(EDUCATION_SHARES)
    assert not population.duplicated(population.columns[:-1].tolist()).any()
    assert (population["population"] >= 0).all()
    # every 2018 district, in its own region; only the three cities have no rural adults
    assert set(population["district"]) == set(districts)
    assert (population["district"].map(districts) == population["region"]).all()
    rural = population[population["settlement"] == "rural"].groupby("region")["population"].sum()
    assert set(frame["region"]) - set(rural.index) == {"KZ-AST", "KZ-ALA", "KZ-SHY"}


def test_true_population_keeps_the_official_figures(population, frame, national):
    # region x sex x age is official: the true population and the frame agree on it
    keys = ["region", "sex", "age"]
    true = population.groupby(keys)["population"].sum()
    assert np.allclose(true, frame.groupby(keys)["population"].sum()[true.index], rtol=1e-6)
    # national ethnic and urban shares are official too
    total = population["population"].sum()
    by_eth = population.groupby("ethnicity")["population"].sum() / total
    urban = population.loc[population["settlement"] == "urban", "population"].sum() / total
    assert by_eth["russian"] == pytest.approx(float(national["russian_share"]), abs=1e-6)
    assert by_eth["kazakh"] == pytest.approx(float(national["kazakh_share"]), abs=1e-6)
    assert urban == pytest.approx(float(national["urban_share"]), abs=1e-6)
    education = population.groupby("education")["population"].sum() / total
    for level, share in EDUCATION_SHARES.items():
        assert education[level] == pytest.approx(share, abs=1e-6)


def test_the_frame_only_approximates_the_true_population(population, frame):
    # the regional ethnic shares of the frame are a proxy: the true ones differ
    def shares(table: pd.DataFrame) -> pd.DataFrame:
        t = table.pivot_table(
            index="region", columns="ethnicity", values="population", aggfunc="sum"
        )
        return t.div(t.sum(axis=1), axis=0)

    gap = (shares(population) - shares(frame)).abs()
    assert gap["russian"].max() > 0.005
    # associations the raked frame cannot have: within oblasts, ethnic Russians are more
    # urban than Kazakhs; nationally they are older; graduates live in towns
    oblasts = population[~population["region"].isin(["KZ-AST", "KZ-ALA", "KZ-SHY"])]
    t = oblasts.pivot_table(
        index=["region", "ethnicity"], columns="settlement", values="population", aggfunc="sum"
    )
    urban = (t["urban"] / t.sum(axis=1)).unstack()
    assert (urban["russian"] > urban["kazakh"]).all()
    age = population.pivot_table(
        index="ethnicity", columns="age", values="population", aggfunc="sum"
    )
    old = age["60+"] / age.sum(axis=1)
    assert old["russian"] > old["kazakh"] + 0.05
    edu = population.pivot_table(
        index="settlement", columns="education", values="population", aggfunc="sum"
    )
    higher = edu["higher"] / edu.sum(axis=1)
    assert higher["urban"] > higher["rural"] + 0.1
    # in the frame, settlement is independent of ethnicity within a region
    f = frame[frame["region"] == "KZ-ALM"].pivot_table(
        index="ethnicity", columns="settlement", values="population", aggfunc="sum"
    )
    assert np.allclose(f["urban"] / f.sum(axis=1), (f["urban"] / f.sum(axis=1)).iloc[0])


# -- truth -------------------------------------------------------------------------


def test_truth_shares_are_distributions(truth, frame):
    assert list(truth.columns) == ["question", "region", "response", "share"]
    assert set(truth["question"]) == set(QUESTIONS)
    assert set(truth["region"]) == set(frame["region"])
    assert truth["share"].between(0, 1).all()
    sums = truth.groupby(["question", "region"])["share"].sum()
    assert np.allclose(sums, 1.0, atol=1e-8)
    assert (truth.loc[truth["response"] == "dont_know", "share"] > 0).all()


def _national(truth: pd.DataFrame, frame: pd.DataFrame) -> pd.Series:
    adults = frame.groupby("region")["population"].sum()
    weighted = truth.assign(w=truth["share"] * truth["region"].map(adults))
    return weighted.groupby(["question", "response"])["w"].sum() / adults.sum()


def test_truth_matches_every_published_figure(truth, frame):
    published = pd.read_csv(SOURCES / "published_survey_2020.csv", keep_default_na=False)
    national = _national(truth, frame)
    question = {
        "presence": "presence_{}",
        "model_to_emulate": "model_country",
        "main_enemy": "main_enemy",
        "main_friend": "main_friend",
    }
    country = {
        "Russia": "russia",
        "USA": "usa",
        "China": "china",
        "EU": "eu",
        "Muslim countries": "muslim",
    }
    checked = 0
    for row in published.itertuples(index=False):
        if row.percent == "":
            continue  # shown only in the article's chart
        if row.percent == "<1":
            named = set(
                country[t]
                for t in published.loc[published["question"] == row.question, "target"]
                if t in country
            )
            others = national[row.question].drop(["none", "dont_know", *named], errors="ignore")
            assert len(others) > 0
            assert (others < 0.01).all(), others[others >= 0.01]
            checked += 1
            continue
        target = float(row.percent) / 100
        if row.question == "presence":
            name, response = f"presence_{country[row.target]}", row.response
        else:
            name = question[row.question]
            response = (
                "none"
                if row.target in ("no enemy", "no single best friend")
                else country[row.target]
            )
        assert national[(name, response)] == pytest.approx(target, abs=PP), (name, response)
        checked += 1
    assert checked == 20


def test_truth_by_ethnicity_shows_the_built_in_contrasts():
    by_eth = _csv("truth_ethnicity_2020.csv").set_index(["question", "ethnicity", "response"])
    share = by_eth["share"]
    assert np.allclose(share.groupby(level=[0, 1]).sum(), 1.0, atol=1e-8)
    assert (
        share[("presence_russia", "russian", "more")] > share[("presence_russia", "kazakh", "more")]
    )
    assert (
        share[("presence_china", "kazakh", "less")] > share[("presence_china", "russian", "less")]
    )
    assert (
        share[("presence_muslim", "other", "more")] > share[("presence_muslim", "russian", "more")]
    )


def test_truth_is_computed_on_the_true_population(truth, population):
    # the regional truth is the district truth averaged over the districts' adults
    by_district = _csv("truth_district_2020.csv")
    assert list(by_district.columns) == ["question", "region", "district", "response", "share"]
    adults = population.groupby("district")["population"].sum()
    t = by_district.assign(n=by_district["district"].map(adults))
    grouped = t.assign(w=t["share"] * t["n"]).groupby(["question", "region", "response"])
    regional = grouped["w"].sum() / grouped["n"].sum()
    expected = truth.set_index(["question", "region", "response"])["share"]
    assert np.allclose(regional[expected.index], expected, atol=1e-8)


def test_joint_truth_of_the_presence_questions(truth):
    joint = _csv("truth_joint_2020.csv")
    assert list(joint.columns) == [
        "region",
        "question_a",
        "response_a",
        "question_b",
        "response_b",
        "share",
    ]
    assert set(joint["question_a"]) | set(joint["question_b"]) == set(PRESENCE)
    assert set(joint["response_a"]) == {"more", "same", "less", "dont_know"}
    assert len(joint) == 17 * 10 * 16
    pairs = joint.groupby(["region", "question_a", "question_b"])
    assert np.allclose(pairs["share"].sum(), 1.0, atol=1e-8)
    # the margins of every pair are the regional truth
    margin = joint.groupby(["question_a", "region", "response_a"])["share"].sum()
    margin = margin / joint.groupby(["question_a", "region"])["question_b"].nunique()
    expected = truth.set_index(["question", "region", "response"])["share"]
    assert np.allclose(margin, expected[margin.index], atol=1e-8)
    # answers are tied together: "more Russia and less USA" is commoner than if independent
    share = joint.set_index(["region", "question_a", "response_a", "question_b", "response_b"])[
        "share"
    ]
    single = truth.set_index(["region", "question", "response"])["share"]
    regions = sorted(set(joint["region"]))
    both = share.loc[[(r, "presence_russia", "more", "presence_usa", "less") for r in regions]]
    product = (
        single.loc[[(r, "presence_russia", "more") for r in regions]].to_numpy()
        * single.loc[[(r, "presence_usa", "less") for r in regions]].to_numpy()
    )
    assert (both.to_numpy() > product).all()
    usa_eu = share.loc[[(r, "presence_usa", "more", "presence_eu", "more") for r in regions]]
    product = (
        single.loc[[(r, "presence_usa", "more") for r in regions]].to_numpy()
        * single.loc[[(r, "presence_eu", "more") for r in regions]].to_numpy()
    )
    assert (usa_eu.to_numpy() > 1.5 * product).all()


def test_true_correlation_matrices():
    table = _csv("truth_correlations_2020.csv")
    assert list(table.columns) == ["matrix", "row", "column", "value"]
    matrices = {
        name: t.pivot(index="row", columns="column", values="value")
        for name, t in table.groupby("matrix")
    }
    assert set(matrices) == {
        "region_effect",
        "region_effect_drawn",
        "district_effect",
        "district_effect_drawn",
        "trait",
        "trait_loading",
        "latent_response",
    }
    for name, m in matrices.items():
        if name == "trait_loading":
            assert set(m.index) == {*PRESENCE, "dont_know"}
            continue
        assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0), name
        assert np.linalg.eigvalsh(m.to_numpy()).min() > 0, name
    region = matrices["region_effect"]
    assert region.loc["presence_russia", "presence_usa"] < 0
    assert region.loc["presence_russia", "presence_eu"] < 0
    assert region.loc["presence_usa", "presence_eu"] > 0
    assert matrices["latent_response"].loc["presence_usa", "presence_eu"] > 0.2


def test_truth_parameters_name_every_term(districts):
    params = _csv("truth_parameters_2020.csv")
    assert list(params.columns) == ["question", "parameter", "response", "term", "value"]
    assert set(params["question"]) == set(QUESTIONS)
    assert set(params["parameter"]) == {
        "intercept",
        "cutpoint",
        "effect",
        "loading",
        "region",
        "region_ethnicity",
        "district",
    }
    assert set(params.loc[params["parameter"] == "district", "term"]) == set(districts)
    effects = set(params.loc[params["parameter"] == "effect", "term"])
    # terms the bundled specs do not have
    assert {"education:higher", "age:18-29&settlement:rural"} <= effects
    loadings = params[params["parameter"] == "loading"]
    assert set(loadings["question"]) == set(PRESENCE)


# -- survey ------------------------------------------------------------------------


def test_survey_structure(survey, codebook):
    assert list(survey.columns) == SURVEY_COLUMNS
    assert len(survey) == 1200
    assert survey["respondent_id"].is_unique
    assert survey["respondent_id"].str.fullmatch(r"KZ2020-\d{4}").all()
    assert list(codebook) == ["survey", "variables"]
    assert set(codebook["survey"]) <= {"title", "missing"}
    assert list(codebook["variables"]) == SURVEY_COLUMNS
    allowed = {"role", "levels", "missing", "missing_policy", "kind", "label", "ordered"}
    for name, spec in codebook["variables"].items():
        assert set(spec) <= allowed, name
        if "levels" in spec:
            known = set(spec["levels"]) | set(spec.get("missing", []))
            assert set(survey[name]) <= known, name
    roles = {name: spec["role"] for name, spec in codebook["variables"].items()}
    assert (roles["stratum"], roles["psu"], roles["weight"]) == ("strata", "cluster", "weight")
    assert roles["district"] == roles["education"] == "predictor"
    assert codebook["variables"]["education"]["levels"] == ["secondary", "vocational", "higher"]


def test_survey_regions_are_proportional_to_adults(survey, frame):
    adults = frame.groupby("region")["population"].sum()
    expected = adults / adults.sum() * 1200
    counts = survey["region"].value_counts().reindex(adults.index, fill_value=0)
    assert ((counts - expected).abs() < 1).all(), (counts - expected).round(2).to_dict()


def test_survey_overrepresents_urban_young_and_graduates(survey, frame, population):
    total = frame["population"].sum()
    urban = frame.loc[frame["settlement"] == "urban", "population"].sum() / total
    young = frame.loc[frame["age"] == "18-29", "population"].sum() / total
    assert (survey["settlement"] == "urban").mean() > urban
    assert (survey["age"] == "18-29").mean() > young
    # graduates answer more often, and weights on frame variables cannot see education
    higher = population.loc[population["education"] == "higher", "population"].sum()
    higher /= population["population"].sum()
    is_higher = survey["education"] == "higher"
    assert is_higher.mean() > higher + 0.05
    assert survey.loc[is_higher, "weight"].sum() / survey["weight"].sum() > higher + 0.05


def test_survey_item_nonresponse_and_weights(survey, frame):
    for q in QUESTIONS:
        assert (survey[q] == "dont_know").any(), q
    assert (survey["weight"] > 0).all()
    assert survey["weight"].mean() == pytest.approx(1.0, abs=1e-5)
    # weights are raked to the frame's region x settlement and national sex x age adults
    share = survey["weight"] / survey["weight"].sum()
    for keys in (["region", "settlement"], ["sex", "age"]):
        target = frame.groupby(keys)["population"].sum()
        target = target[target > 0] / target.sum()
        got = share.groupby([survey[k] for k in keys]).sum()
        assert np.allclose(got[target.index], target, atol=1e-6), keys
    # and vary within strata with the sampling points' selection probabilities
    assert survey.groupby("stratum")["weight"].nunique().min() > 1


def test_survey_design_strata_and_sampling_points(survey, districts):
    # strata are region x settlement; PSUs (sampling points) are nested in strata
    assert (survey["stratum"] == survey["region"] + "-" + survey["settlement"]).all()
    assert survey.groupby("psu")["stratum"].nunique().max() == 1
    points = survey.groupby("stratum")["psu"].nunique()
    assert points.min() >= 2  # no stratum with a single PSU
    assert survey["stratum"].nunique() == 31  # 14 oblasts x 2 + 3 cities
    # a point lies in one district of the respondent's region, named in its label
    assert survey.groupby("psu")["district"].nunique().max() == 1
    assert survey.apply(lambda r: r["psu"].startswith(r["district"] + "-"), axis=1).all()
    assert (survey["district"].map(districts) == survey["region"]).all()
    take = survey.groupby("psu").size()
    assert take.between(6, 10).all() and take.mean() == pytest.approx(8, abs=0.5)


def test_direct_estimates_read_the_design_from_the_codebook():
    survey = opinionmap.read_survey(DATA / "survey_2020.csv")
    design = []
    for q in PRESENCE:
        table = direct_estimates(survey, q, lonely_psu="fail")
        assert table["df"].min() >= 1
        design.append(table["design_effect"])
    # clustering in sampling points makes the regional estimates less precise than
    # simple random samples of the same size, on average
    assert pd.concat(design).mean() > 1.0


def test_survey_reads_with_the_package_reader():
    survey = opinionmap.read_survey(DATA / "survey_2020.csv")  # codebook found beside it
    assert survey.n_respondents == 1200
    assert (survey.strata, survey.cluster, survey.fpc) == ("stratum", "psu", None)
    assert survey.outcomes == tuple(QUESTIONS)
    assert (survey.area, survey.weight, survey.id) == ("region", "weight", "respondent_id")
    assert survey.levels("presence_russia") == ("more", "same", "less")
    # the frame's levels are the codebook's, and every surveyed region is in the frame
    read_frame(DATA / "frame_2020.csv").check_levels(
        survey.codebook, observed={"region": survey.data["region"]}
    )


# -- adjacency ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def neighbours(frame) -> dict[str, set[str]]:
    pairs = _csv("region_adjacency.csv")
    assert list(pairs.columns) == ["region_a", "region_b"]
    assert (pairs["region_a"] < pairs["region_b"]).all()
    assert not pairs.duplicated().any()
    out: dict[str, set[str]] = {r: set() for r in pd.unique(frame["region"])}
    for a, b in pairs.itertuples(index=False):
        assert a in out and b in out
        out[a].add(b)
        out[b].add(a)
    return out


def test_adjacency_makes_geographic_sense(neighbours):
    assert neighbours["KZ-ALA"] == {"KZ-ALM"}
    assert neighbours["KZ-AST"] == {"KZ-AKM"}
    assert neighbours["KZ-SHY"] == {"KZ-YUZ"}
    assert all(neighbours.values()), [r for r, n in neighbours.items() if not n]
    assert neighbours["KZ-SEV"] == {"KZ-AKM", "KZ-KUS", "KZ-PAV"}
    # Akmola's stray slivers near Almaty and in Turkistan do not make it their neighbour
    assert not neighbours["KZ-AKM"] & {"KZ-ALA", "KZ-ALM", "KZ-YUZ"}


# -- districts -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def district_table() -> pd.DataFrame:
    return _csv("districts_2020.csv")


def test_districts_are_the_2018_boundaries(district_table):
    with shapefile.Reader(str(GEO / "kaz_admbnda_adm2_2018.shp")) as reader:
        records = {r["ADM2_PCODE"]: r.as_dict() for r in reader.records()}
    assert sorted(district_table["district"]) == sorted(records)
    for row in district_table.itertuples(index=False):
        assert (row.region, row.name) == (
            records[row.district]["ISO_3166_2"],
            records[row.district]["ADM2_EN"],
        )
    kinds = district_table.groupby("region")["kind"].value_counts().unstack(fill_value=0)
    # the three cities are city districts only; every oblast has one regional centre
    assert set(kinds.index[kinds["city district"] > 0]) == {"KZ-AST", "KZ-ALA", "KZ-SHY"}
    assert (kinds.drop(["KZ-AST", "KZ-ALA", "KZ-SHY"])["regional centre"] == 1).all()


def test_district_adjacency_makes_geographic_sense(district_table):
    pairs = _csv("district_adjacency.csv")
    assert list(pairs.columns) == ["district_a", "district_b"]
    assert (pairs["district_a"] < pairs["district_b"]).all() and not pairs.duplicated().any()
    region = dict(zip(district_table["district"], district_table["region"], strict=True))
    near: dict[str, set[str]] = {d: set() for d in district_table["district"]}
    for a, b in pairs.itertuples(index=False):
        near[a].add(b)
        near[b].add(a)
    assert all(near.values()), [d for d, n in near.items() if not n]
    # Kokshetau (Akmola's centre) lies inside Zerendi raion and touches nothing else
    assert near["KZ111000"] == {"KZ115600"}
    # Almaty city's districts touch each other and, across the city border, Almaty Region
    assert {region[d] for d in near["KZ751110"]} <= {"KZ-ALA", "KZ-ALM"}
    # neighbouring districts in different regions are in neighbouring regions
    regions = _csv("region_adjacency.csv")
    touching = {frozenset(p) for p in regions.itertuples(index=False)}
    crossing = {
        frozenset((region[a], region[b]))
        for a, b in pairs.itertuples(index=False)
        if region[a] != region[b]
    }
    assert crossing <= touching


def test_the_district_frame_splits_every_frame_cell(frame, district_table):
    split = _csv("frame_district_2020.csv")
    columns = ["region", "district", "sex", "age", "ethnicity", "settlement", "population"]
    assert list(split.columns) == columns
    keys = ["region", "sex", "age", "ethnicity", "settlement"]
    summed = split.groupby(keys)["population"].sum()
    whole = frame[frame["population"] > 0].set_index(keys)["population"]
    assert summed.index.sort_values().equals(whole.index.sort_values())
    # each split part is rounded to 4 decimals, at most 20 parts a cell
    assert np.abs(summed.reindex(whole.index) - whole).max() <= 20 * 5e-5
    # every district is in the frame, in its own region; rural adults only in raions
    region = dict(zip(district_table["district"], district_table["region"], strict=True))
    assert set(split["district"]) == set(district_table["district"])
    assert (split["district"].map(region) == split["region"]).all()
    kinds = dict(zip(district_table["district"], district_table["kind"], strict=True))
    kind = split["district"].map(kinds)
    assert set(kind[split["settlement"] == "rural"]) == {"raion"}
    # a regional centre holds 20 times a raion's urban adults (the assumed weights)
    urban = split[split["settlement"] == "urban"].groupby("district")["population"].sum()
    akmola = district_table[district_table["region"] == "KZ-AKM"].set_index("district")["kind"]
    centre = urban[akmola.index[akmola == "regional centre"]].iloc[0]
    raion = urban[akmola.index[akmola == "raion"]]
    assert np.allclose(centre / raion, 20.0, rtol=1e-3)


# -- the build script ----------------------------------------------------------------


@pytest.fixture(scope="module")
def script():
    name = "build_kazakhstan_data"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def test_rebuild_is_byte_identical(script, tmp_path, capsys):
    assert script.main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"816 frame cells, 1200 respondents", printed)
    assert re.search(r"9096 district frame cells, 517 district neighbour pairs", printed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_another_seed_changes_the_survey_not_the_frame(script, tmp_path, capsys):
    assert script.main(["--out", str(tmp_path), "--seed", "7"]) == 0
    capsys.readouterr()
    assert (tmp_path / "frame_2020.csv").read_bytes() == (DATA / "frame_2020.csv").read_bytes()
    assert (tmp_path / "survey_2020.csv").read_bytes() != (DATA / "survey_2020.csv").read_bytes()
