"""The main job: `opinionmap demo` end to end (its smoke run and at publication quality),
and `opinionmap report` on its fits."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import opinionmap as om
from helpers import run_bundled
from opinionmap.cli import app

QUESTIONS = [
    "main_enemy",
    "main_friend",
    "model_country",
    "presence_china",
    "presence_eu",
    "presence_muslim",
    "presence_russia",
    "presence_usa",
]
JOINT = "presence_joint"  # the five presence questions in one model
runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--quick", "--no-joint", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_every_spec_parses_and_builds() -> None:
    from opinionmap.design import build_design
    from opinionmap.joint import build_joint_design, build_joint_model, read_joint_spec
    from opinionmap.model import build_model

    specs = sorted(om.datasets.models_dir().glob("*.toml"))
    assert sorted([*QUESTIONS, JOINT]) == [p.stem for p in specs]
    survey = om.read_survey(om.datasets.kazakhstan_survey_path())
    joint = read_joint_spec(om.datasets.models_dir() / f"{JOINT}.toml")
    # the joint model's questions are the five presence questions, on their right-hand side
    powers = ("russia", "usa", "china", "eu", "muslim")
    assert joint.outcomes == tuple(f"presence_{p}" for p in powers)
    assert joint.rhs == om.read_spec(specs[-1]).formula.split("~")[1].strip()
    model = build_joint_model(build_joint_design(joint, survey))
    assert {"cor_region", "cor_region:ethnicity", "loading"} <= set(model.named_vars)
    for path in (p for p in specs if p.stem != JOINT):
        spec = om.read_spec(path)
        assert spec.outcome == path.stem
        assert spec.data is not None and spec.data.is_file()
        model = build_model(build_design(spec, survey))
        assert "u_region" in model.named_vars
        assert "u_region:ethnicity" in model.named_vars


@pytest.mark.slow
def test_demo_writes_a_report_with_every_question_region_and_map(demo: tuple[Path, str]) -> None:
    out, output = demo
    report = out / "report.html"
    assert f"report written to {report.resolve()}" in output
    # not on a terminal: one line per question, no live table
    assert "warming up" not in output and " draws (" not in output
    for question in QUESTIONS:
        assert f"fitting {question}" in output
        assert f"report: {question} section written" in output
        assert (out / "fits" / f"{question}.nc").is_file()
        assert (out / f"{question}_map.png").stat().st_size > 20_000
        assert (out / f"{question}_by_region.csv").is_file()
        assert (out / f"{question}_by_ethnicity.csv").is_file()
    html = report.read_text(encoding="utf-8")
    for question in QUESTIONS:
        assert f'id="{question}"' in html
    names = om.datasets.kazakhstan_region_names()
    for code, name in names.items():
        assert f"{name} ({code})" in html
    # one embedded map per question and presence_muslim's by district, plus MRP-vs-direct
    # and PPC figures, and the first screen's balance maps of the five presence questions
    assert len(re.findall(r'alt="map of ', html)) == len(QUESTIONS) + 1
    assert 'alt="map of presence_muslim by district"' in html
    assert len(re.findall(r"src=\"data:image/png;base64,", html)) == 3 * len(QUESTIONS) + 2
    # every district estimated, the 95 with respondents said; no other question by district
    by_district = pd.read_csv(out / "presence_muslim_by_district.csv")
    assert by_district["district"].nunique() == 216
    assert (by_district.drop_duplicates("district")["n_respondents"] > 0).sum() == 95
    assert "95 of 216 districts have respondents" in html
    assert sorted(p.name for p in out.glob("*_by_district.csv")) == [
        "presence_muslim_by_district.csv"
    ]
    assert (out / "presence_muslim_map_district.png").stat().st_size > 50_000
    # published figures appear beside the national estimates
    national = pd.read_csv(out / "presence_russia_national.csv")
    assert national.set_index("category").loc["more", "published"] == pytest.approx(0.26)
    assert "How the frame was built" in html
    # --no-joint leaves the joint model out, and the output says so
    assert f"{JOINT}.toml: a joint model of several questions, left out (--no-joint)" in output
    assert not (out / "fits" / f"{JOINT}.nc").exists()
    # the smoke run's first screen says, before anything else, that nothing converged
    first_screen = html[: html.index("At a glance")]
    assert f"NOT CONVERGED: {', '.join(QUESTIONS)} (8 of 8 questions)" in first_screen
    assert "Balance of opinion by region" in first_screen
    assert 'alt="balance of opinion by region"' in first_screen
    assert (out / "balance_by_region.png").stat().st_size > 50_000


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium (apt-get install chromium); "
    "scripts/check_report_render.sh is the same check by hand",
)
def test_report_renders_with_its_images_in_headless_chromium(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    from matplotlib.image import imread

    out, _ = demo
    shot = tmp_path / "report.png"
    script = Path(__file__).resolve().parents[1] / "scripts" / "check_report_render.sh"
    subprocess.run(
        ["bash", str(script), str(out / "report.html"), str(shot)], check=True, timeout=180
    )
    rgb = imread(shot)[..., :3]
    assert rgb.shape[0] >= 2000 and rgb.shape[1] >= 1000
    # the maps and charts drew: a page of text alone (or broken images) has almost no
    # saturated pixels and few distinct colours
    saturated = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.3
    assert saturated.mean() > 0.02
    colours = {tuple(c) for c in (rgb[::7, ::7] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 500


@pytest.mark.slow
def test_report_command_on_saved_fits(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo
    fits = [str(out / "fits" / f"{q}.nc") for q in ("presence_china", "main_enemy")]
    result = runner.invoke(
        app,
        [
            "report",
            *fits,
            "--frame",
            str(om.datasets.kazakhstan_frame_path()),
            "--survey",
            str(om.datasets.kazakhstan_survey_path()),
            "--out",
            str(tmp_path / "mine"),
            "--title",
            "My report",
        ],
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "mine" / "report.html").read_text(encoding="utf-8")
    assert "<title>My report</title>" in html
    assert 'id="presence_china"' in html and 'id="main_enemy"' in html
    assert 'id="presence_russia"' not in html
    # the district fit mapped by district with --subarea, inside the regions' outlines
    regions = om.datasets.kazakhstan_boundaries_path()
    districts = om.datasets.kazakhstan_district_boundaries_path()
    frame = om.datasets.kazakhstan_district_frame_path()
    base = ["report", str(out / "fits" / "presence_muslim.nc"), "--frame", str(frame)]
    maps = ["--boundaries", str(regions), "--boundary-key", "ISO_3166_2"]
    result = runner.invoke(
        app,
        [*base, "--out", str(tmp_path / "d"), *maps, "--boundary-name", "ADM1_EN",
         "--subarea", "district", "--subarea-boundaries", str(districts),
         "--subarea-key", "ADM2_PCODE", "--subarea-name", "ADM2_EN"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "presence_muslim_map_district.png").stat().st_size > 50_000
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "e"), "--subarea", "distrct"])
    assert bad.exit_code == 2 and "subarea 'distrct' is not a column of the frame" in bad.output
    bad = runner.invoke(
        app, [*base, "--out", str(tmp_path / "e"), "--subarea-boundaries", str(districts)]
    )
    assert bad.exit_code == 2 and "--subarea-key and --subarea-name" in bad.output


@pytest.mark.parametrize(("jobs", "background"), [(2, True), (1, False)])
def test_a_joint_fit_beside_questions_runs_at_a_lower_priority_in_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int, background: bool
) -> None:
    """In worker processes the joint fit yields the CPU to the last questions it overlaps."""
    from opinionmap import pipeline

    project = om.read_project(om.datasets.project_dir())
    chosen = [p for p in project.specs if p.stem in ("presence_usa", JOINT)]
    seen: list[pipeline._Job] = []

    def capture(_task: object, work: list[pipeline._Job], *_args: object) -> None:
        seen.extend(work)
        raise KeyboardInterrupt  # stop before anything is fitted

    monkeypatch.setattr(pipeline, "_execute", capture)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_specs(
            chosen,
            survey_path=project.survey,
            frame_path=project.frame,
            weight=project.weight,
            out=tmp_path,
            jobs=jobs,
        )
    assert {job.name: job.background for job in seen} == {
        "presence_usa": False,
        JOINT: background,
    }


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux's per-thread priority")
def test_lowering_a_process_priority_lowers_its_threads_now_and_later() -> None:
    import sys

    script = """
import os, threading
from opinionmap.pipeline import _lower_priority
stop = threading.Event()
before = threading.Thread(target=stop.wait)
before.start()
base = os.getpriority(os.PRIO_PROCESS, 0)
assert _lower_priority(5)
after = threading.Thread(target=stop.wait)
after.start()
print(base, *(os.getpriority(os.PRIO_PROCESS, t.native_id) for t in (before, after)),
      os.getpriority(os.PRIO_PROCESS, 0))
stop.set()
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    base, *lowered = (int(v) for v in run.stdout.split())
    assert lowered == [min(base + 5, 19)] * 3


@pytest.mark.slow
def test_demo_reports_the_questions_first_then_the_joint_model(tmp_path: Path) -> None:
    from opinionmap.demo import run_demo

    folder = tmp_path / "models"
    folder.mkdir()
    for name in (JOINT, "presence_usa"):
        text = (om.datasets.models_dir() / f"{name}.toml").read_text(encoding="utf-8")
        data = om.datasets.models_dir().parent / "data" / "kazakhstan"
        (folder / f"{name}.toml").write_text(text.replace("../data/kazakhstan", str(data)))
    out = tmp_path / "out"
    lines: list[str] = []
    first: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if "still fitting" in line:  # the report of the questions, before the joint model's
            first.append((out / "report.html").read_text(encoding="utf-8"))

    run_demo(out, quick=True, models=folder, say=say)
    output = "\n".join(lines)
    assert "fitting presence_russia, presence_usa, presence_china, presence_eu, " in output
    assert (
        f"report written to {(out / 'report.html').resolve()} with the questions' sections (1); "
        f"{JOINT} still fitting, its section follows"
    ) in output
    # the first report has the question's section and says the joint model is coming
    assert 'id="presence_usa"' in first[0] and f'id="{JOINT}"' not in first[0]
    assert f"Still being fitted when this page was written: {JOINT}." in first[0]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Still being fitted" not in html
    # its own section after the question's, with a heat map and a map of one pattern
    assert html.index(f'id="{JOINT}"') > html.index('id="presence_usa"')
    assert 'alt="correlations of presence_joint' in html
    assert 'alt="map of the pattern presence_' in html
    for table in ("correlations", "loadings", "by_region", "pattern_by_region"):
        assert (out / f"{JOINT}_{table}.csv").is_file(), table
    pattern = pd.read_csv(out / f"{JOINT}_pattern_by_region.csv")
    assert len(pattern) == 17 and (pattern["lower"] <= pattern["mean"]).all()
    from opinionmap.joint import load_joint

    assert load_joint(out / "fits" / f"{JOINT}.nc").spec.outcomes[1] == "presence_usa"
    # not an overview row of its own; counted among the models on the first screen
    first_screen = html[: html.index("At a glance")]
    assert f"NOT CONVERGED: presence_usa, {JOINT} (2 of 2 models)" in first_screen


@pytest.mark.slow
def test_demo_one_job_at_a_time_gives_the_same_fit(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo
    folder = tmp_path / "models"
    om.read_spec(om.datasets.models_dir() / "presence_china.toml").to_toml(
        folder / "presence_china.toml"
    )
    result = runner.invoke(
        app, ["demo", "--quick", "--jobs", "1", "--models", str(folder), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "[1/1] fitting presence_china" in result.output
    alone = om.load(tmp_path / "fits" / "presence_china.nc").posterior
    together = om.load(out / "fits" / "presence_china.nc").posterior
    # same seed, same draws, whether the models were fitted in parallel processes or not
    np.testing.assert_array_equal(alone["cutpoints"].values, together["cutpoints"].values)
    np.testing.assert_array_equal(alone["u_region"].values, together["u_region"].values)
    # and the same report section, written in the demo's process or in a worker
    for table in ("presence_china_by_region.csv", "presence_china_national.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / table), pd.read_csv(out / table))
    assert "presence_china" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_report_command_names_a_missing_fit(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "report",
            str(tmp_path / "nope.nc"),
            "--frame",
            str(om.datasets.kazakhstan_frame_path()),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2
    assert "nope.nc: no such file" in result.output


@pytest.mark.slow
def test_the_publication_demo_converges_for_every_question(tmp_path: Path) -> None:
    """`make demo`: every bundled model converged at seed 2020, said on the first screen."""
    from opinionmap.joint import load_joint

    result = runner.invoke(app, ["demo", "--jobs", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for question in QUESTIONS:
        assert re.search(rf"^{question}: converged: max R-hat", result.output, re.MULTILINE)
        assert om.load(tmp_path / "fits" / f"{question}.nc").converged
    assert re.search(rf"^{JOINT}: converged: max R-hat", result.output, re.MULTILINE)
    assert load_joint(tmp_path / "fits" / f"{JOINT}.nc").converged
    assert "NOT CONVERGED" not in result.output
    report = (tmp_path / "report.html").resolve()
    # the questions' report first, then the joint model's section added to it
    first = result.output.index(f"report written to {report} with the questions' sections (8)")
    assert first < result.output.index(f"report: {JOINT} section written")
    assert result.output.rstrip().endswith(f"report written to {report}")
    html = report.read_text(encoding="utf-8")
    first_screen = html[: html.index("At a glance")]
    assert "Every model converged (9 of 9): R-hat &le; 1.01" in first_screen


@pytest.mark.slow
def test_each_verdict_comes_as_its_question_finishes(tmp_path: Path) -> None:
    from opinionmap.pipeline import Outcome
    from opinionmap.spec import Sampling

    questions = ["presence_usa", "presence_eu"]
    seen: dict[str, bool] = {}

    def done(outcome: Outcome) -> None:
        # the other question's fit is not saved yet when the first verdict comes
        seen[outcome.question] = all((tmp_path / "fits" / f"{q}.nc").exists() for q in questions)

    run_bundled(questions, tmp_path, Sampling(draws=50, tune=50, chains=2, seed=1), on_done=done)
    # one verdict came before the other question's fit was saved, the other after it
    assert sorted(seen) == sorted(questions) and sorted(seen.values()) == [False, True]


def test_an_interrupted_run_says_whether_the_questions_report_was_written(tmp_path: Path) -> None:
    from opinionmap.cli import _report_left

    fits = f"the fits finished so far are in {tmp_path / 'fits'}"
    assert _report_left(tmp_path) == f"{fits}; no report was written."
    # Ctrl-C while a joint model fits, after the report of the questions was written
    (tmp_path / "report.html").write_text("<html></html>", encoding="utf-8")
    assert _report_left(tmp_path) == (
        f"{fits}; {tmp_path / 'report.html'} has the sections written before the joint models'."
    )
