"""The command line, tested in-process on temporary files."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import opinionmap
import opinionmap as om
from opinionmap.cli import app

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("fit", "summary", "ppc", "survey", "frame"):
        assert command in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"opinionmap {opinionmap.__version__}"


def test_frame_rake_writes_a_joint_frame(tmp_path: Path) -> None:
    by_sex = tmp_path / "sex.csv"
    by_sex.write_text("region,sex,population\nA,male,40\nA,female,60\nB,male,30\nB,female,70\n")
    by_urban = tmp_path / "urban.csv"
    by_urban.write_text(
        "region,settlement,population\nA,urban,50\nA,rural,50\nB,urban,80\nB,rural,20\n"
    )
    out = tmp_path / "frame.csv"
    result = runner.invoke(app, ["frame", "rake", str(by_sex), str(by_urban), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "8 cells over region, sex, settlement" in result.output
    frame = opinionmap.read_frame(out)
    totals = frame.collapse(["region", "settlement"]).set_index(["region", "settlement"])
    assert totals.loc[("B", "urban"), "population"] == pytest.approx(80.0)


def test_frame_rake_rejects_inconsistent_margins(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("sex,population\nmale,40\nfemale,60\n")
    b = tmp_path / "b.csv"
    b.write_text("age,population\nyoung,50\nold,51\n")
    out = tmp_path / "frame.csv"
    result = runner.invoke(app, ["frame", "rake", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 2
    assert "disagree on their totals" in result.output
    assert not out.exists()


def test_frame_rake_names_an_empty_or_malformed_margin_file(tmp_path: Path) -> None:
    good = tmp_path / "sex.csv"
    good.write_text("sex,population\nmale,40\nfemale,60\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    no_count = tmp_path / "nocount.csv"
    no_count.write_text("sex,people\nmale,40\nfemale,60\n")
    bad_count = tmp_path / "bad.csv"
    bad_count.write_text("age,population\nyoung,many\nold,60\n")
    out = tmp_path / "frame.csv"
    for path, message in (
        (empty, f"{empty}: the margin file is empty"),
        (no_count, f"{no_count}: no count column 'population'"),
        (bad_count, f"{bad_count}: column 'population' holds non-numeric counts 'many'"),
        (tmp_path / "nope.csv", "nope.csv: no such margin file"),
    ):
        result = runner.invoke(app, ["frame", "rake", str(good), str(path), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
        assert not out.exists()


def test_a_bad_sampler_setting_stops_before_anything_is_read(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        'formula = "y ~ 1 + x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["no", "yes"]\n',
    )
    for args, message in (
        (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
        (["--draws", "0"], "draws must be an integer >= 1, got 0"),
        (["--sampler", "gibbs"], "unknown sampler 'gibbs'"),
    ):
        result = runner.invoke(app, ["fit", str(spec), "--out", str(tmp_path / "f.nc"), *args])
        assert result.exit_code == 2
        assert message in result.output
    assert not (tmp_path / "f.nc").exists()


def test_frame_check_against_the_bundled_codebook() -> None:
    result = runner.invoke(
        app,
        [
            "frame",
            "check",
            str(opinionmap.datasets.kazakhstan_frame_path()),
            "--codebook",
            str(opinionmap.datasets.kazakhstan_codebook_path()),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "816 cells" in result.output


def test_frame_check_reports_label_mismatch(tmp_path: Path) -> None:
    frame = pd.read_csv(opinionmap.datasets.kazakhstan_frame_path())
    frame["sex"] = frame["sex"].map({"male": "M", "female": "F"})
    path = tmp_path / "frame.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(
        app,
        [
            "frame",
            "check",
            str(path),
            "--codebook",
            str(opinionmap.datasets.kazakhstan_codebook_path()),
        ],
    )
    assert result.exit_code == 2
    assert "column 'sex': frame levels 'M', 'F' are not in the survey codebook" in result.output


def test_survey_check_prints_outcomes() -> None:
    result = runner.invoke(
        app, ["survey", "check", str(opinionmap.datasets.kazakhstan_survey_path())]
    )
    assert result.exit_code == 0, result.output
    assert "1200 respondents" in result.output
    assert "presence_russia" in result.output


def _spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return path


def test_fit_rejects_a_bad_spec_with_a_clear_message(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        'formula = "presence_russia ~ 1 + sex"\nfamily = "ordinal"\ncolour = "red"\n'
        '[outcome]\nlevels = ["less", "same", "more"]\n',
    )
    result = runner.invoke(app, ["fit", str(spec), "--out", str(tmp_path / "fit.nc")])
    assert result.exit_code == 2
    assert "unknown key(s) 'colour'" in result.output
    assert not (tmp_path / "fit.nc").exists()


def test_fit_rejects_an_unknown_column(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        'formula = "presence_russia ~ 1 + income"\nfamily = "ordinal"\n'
        '[outcome]\nlevels = ["less", "same", "more"]\nmissing = ["dont_know"]\n',
    )
    result = runner.invoke(
        app,
        [
            "fit",
            str(spec),
            "--data",
            str(opinionmap.datasets.kazakhstan_survey_path()),
            "--out",
            str(tmp_path / "fit.nc"),
        ],
    )
    assert result.exit_code == 2
    assert "names column(s) 'income' that the data lacks" in result.output


def test_fit_without_data_says_how_to_give_it(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        'formula = "y ~ 1 + x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["no", "yes"]\n',
    )
    result = runner.invoke(app, ["fit", str(spec), "--out", str(tmp_path / "fit.nc")])
    assert result.exit_code == 2
    assert "give --data PATH" in result.output


def test_summary_of_a_file_that_is_not_a_fit(tmp_path: Path) -> None:
    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 2
    assert "not an opinionmap fit" in result.output


@pytest.mark.slow
def test_fit_summary_and_ppc_end_to_end(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "fit.nc"
    # the bundled spec, with its data paths made absolute and how long to sample in its
    # [sampling] table instead of on the command line
    text = (repo / "models" / "presence_russia.toml").read_text(encoding="utf-8")
    assert text.endswith("[sampling]\ntune = 500\n")
    spec = tmp_path / "presence_russia.toml"
    spec.write_text(
        text.replace('"../data/', f'"{(repo / "data").as_posix()}/').replace(
            "tune = 500\n", "draws = 150\ntune = 200\nchains = 2\n"
        ),
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "fit",
            str(spec),
            "--out",
            str(out),
            "--seed",
            "11",
            "--target-accept",
            "0.9",
            "--adaptation",
            "low_rank",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    answers = om.read_survey(repo / "data" / "kazakhstan" / "survey_2020.csv").data
    answered = int((answers["presence_russia"] != "dont_know").sum())
    assert f"{answered} respondents" in result.output
    assert "Logging error" not in result.output
    saved = om.load(out)
    assert saved.tree.attrs["opinionmap_adaptation"] == "low_rank"
    assert saved.tree.attrs["opinionmap_target_accept"] == pytest.approx(0.9)
    assert "seed 11" in result.output
    assert "2 chains x 150 draws" in result.output
    assert dict(saved.posterior.sizes)["draw"] == 150
    assert saved.tree.attrs["opinionmap_tune"] == 200
    # 2 chains x 150 draws of this model do not converge, and the command says so
    assert "warning: NOT CONVERGED: R-hat up to" in result.output

    summary = runner.invoke(app, ["summary", str(out)])
    assert summary.exit_code == 0, summary.output
    assert "cutpoints[less->same]" in summary.output
    assert "u_region[KZ-SEV]" in summary.output
    # how each term was parameterised, from the plan stored in the fit
    assert "parameterisation" in summary.output
    assert re.search(r"region:ethnicity\s+0\s+auto\s+noncentered\s+1\.0", summary.output)

    table = tmp_path / "ppc.csv"
    plot = tmp_path / "ppc.png"
    checked = runner.invoke(app, ["ppc", str(out), "--out", str(table), "--plot", str(plot)])
    assert checked.exit_code == 0, checked.output
    ppc = pd.read_csv(table)
    overall = ppc[ppc["factor"] == "all"].set_index("category")
    assert overall["observed"].sum() == pytest.approx(1.0)
    assert set(ppc["factor"]) == {"all", "sex", "settlement", "age", "ethnicity", "region"}
    assert plot.stat().st_size > 10_000

    # shares of those answering come from a hurdle model; this one drops "don't know"
    frame = repo / "data" / "kazakhstan" / "frame_2020.csv"
    args = ["poststratify", str(out), "--frame", str(frame), "-o", str(tmp_path / "e.csv")]
    refused = runner.invoke(app, [*args, "--answering"])
    assert refused.exit_code == 2
    assert "no hurdle: they are of those answering" in refused.output
