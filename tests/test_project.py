"""A project folder (models/, codebook.toml, frame.csv) fitted and reported by `run`."""

from __future__ import annotations

import shutil
from pathlib import Path

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
