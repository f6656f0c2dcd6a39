"""Nothing silently wrong: verdicts that travel, interrupted and edited fits, outputs.

Fast tests build what they need by hand; the slow ones share one small fit that has
not converged (one chain) and one saved fit.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import opinionmap as om
from opinionmap._io import atomic_path, check_writable
from opinionmap.checks import ppc
from opinionmap.cli import app
from opinionmap.diagnostics import ConvergenceWarning, diagnose
from opinionmap.fitting import fit
from opinionmap.marginal import effects
from opinionmap.pipeline import run_specs
from opinionmap.poststratification import poststratify
from opinionmap.results import FitResult, ProvenanceError, load

runner = CliRunner()
SPEC = om.ModelSpec(formula="y ~ 1 + x + (1 | g)", family="bernoulli", levels=("no", "yes"))


def _data(seed: int = 3, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 6, n)
    x = rng.choice(["a", "b"], n)
    eta = -0.2 + 0.7 * (x == "b") + np.linspace(-0.6, 0.6, 6)[g]
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-eta)), "yes", "no")
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _frame() -> pd.DataFrame:
    rows = [(f"g{i}", x, 10.0 + i) for i in range(6) for x in ("a", "b")]
    return pd.DataFrame(rows, columns=["g", "x", "population"])


# -- verdicts ------------------------------------------------------------------------------
def _tree(chains: int, draws: int = 500, depth_hits: int = 0, off: float = 0.0) -> xr.DataTree:
    """Draws of one parameter; the first chain ``off`` away from the others."""
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(chains, draws))
    mu[0] += off
    posterior = xr.Dataset({"mu": (("chain", "draw"), mu)})
    hits = np.zeros((chains, draws), dtype=bool)
    hits.reshape(-1)[:depth_hits] = True
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "maxdepth_reached": (("chain", "draw"), hits),
            "energy": (("chain", "draw"), rng.normal(size=(chains, draws))),
        }
    )
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def test_a_verdict_counts_transitions_at_the_maximum_tree_depth() -> None:
    assert diagnose(_tree(4), warn=False).converged
    saturated = diagnose(_tree(4, depth_hits=7), warn=False)
    assert not saturated.converged
    assert "7 of 2000 transitions stopped at the maximum tree depth" in saturated.verdict()


def test_a_verdict_on_one_chain_says_r_hat_needs_several() -> None:
    one = diagnose(_tree(1, draws=2000), warn=False)
    assert not one.converged
    verdict = one.verdict()
    assert verdict.startswith("NOT CONVERGED")
    assert "R-hat needs at least 2 chains" in verdict and "nan" not in verdict


def test_a_verdict_from_two_chains_says_r_hat_is_noisy_there() -> None:
    verdict = diagnose(_tree(2, draws=1000, off=0.5), warn=False).verdict()
    assert verdict.startswith("NOT CONVERGED: R-hat up to")
    assert "(from 2 chains, R-hat is noisy near 1.01: sample 4 chains, the default)" in verdict
    verdict = diagnose(_tree(4, draws=500, off=0.5), warn=False).verdict()
    assert verdict.startswith("NOT CONVERGED: R-hat up to") and "noisy" not in verdict


# -- outputs -------------------------------------------------------------------------------
def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("x")
    with pytest.raises(om.OpinionmapError, match=r"a_file.txt is a file, not a folder"):
        check_writable(blocker / "fit.nc")
    with pytest.raises(om.OpinionmapError, match=r"is a folder; give a file name"):
        check_writable(tmp_path)
    with pytest.raises(om.OpinionmapError, match=r"is a file; give a folder"):
        check_writable(blocker, folder=True)
    assert check_writable(tmp_path / "new" / "deeper" / "fit.nc") == tmp_path / "new/deeper/fit.nc"
    spec = tmp_path / "spec.toml"
    SPEC.to_toml(spec)
    # the command stops at once, naming the path: no data is read, nothing sampled
    result = runner.invoke(app, ["fit", str(spec), "--out", str(blocker / "fit.nc")])
    assert result.exit_code == 2
    assert "a_file.txt is a file, not a folder" in result.output


def test_written_files_get_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o640


def test_a_run_that_stops_leaves_no_report_from_an_earlier_run(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<p>last week's results</p>")
    survey = tmp_path / "s.csv"
    _data().to_csv(survey, index=False)
    om.Codebook.from_roles(outcomes={"y": ["no", "yes"]}, predictors=["x"], area="g").to_toml(
        tmp_path / "s.codebook.toml"
    )
    frame = tmp_path / "frame.csv"
    _frame().to_csv(frame, index=False)
    broken = tmp_path / "broken.toml"
    om.ModelSpec(formula="y ~ 1 + income", family="bernoulli", levels=("no", "yes")).to_toml(broken)
    with pytest.raises(om.DesignError, match="income"):
        run_specs([broken], survey_path=survey, frame_path=frame, weight="population", out=tmp_path)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "g,g"], "by names 'g' twice"),
        (["--by", "g,,x"], "--by 'g,,x' has an empty column name"),
    ],
)
def test_poststratify_command_refuses_a_bad_by(
    saved: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    frame = tmp_path / "frame.csv"
    _frame().to_csv(frame, index=False)
    command = ["poststratify", str(saved), "--frame", str(frame), "--out", str(tmp_path / "e.csv")]
    result = runner.invoke(app, [*command, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.slow
def test_report_command_names_a_bad_published_file(saved: Path, tmp_path: Path) -> None:
    frame = tmp_path / "frame.csv"
    _frame().to_csv(frame, index=False)
    published = tmp_path / "published.csv"
    published.write_text("question,category,share\ny,yes,40\n")
    base = ["report", str(saved), "--frame", str(frame), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*base, "--published", str(published)])
    assert result.exit_code == 2
    assert "published.csv: published figures need columns" in result.output
    assert "'percent' missing" in result.output
    result = runner.invoke(app, [*base, "--published", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "none.csv: no such file of published figures" in result.output


@pytest.mark.slow
def test_ppc_command_refuses_an_unknown_figure_suffix(saved: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ppc", str(saved), "--plot", str(tmp_path / "check.gif")])
    assert result.exit_code == 2
    assert "unsupported figure suffix '.gif'; write figures as '.png', '.svg', '.pdf'" in (
        result.output
    )


# -- a fit that did not converge (slow) ----------------------------------------------------
@pytest.fixture(scope="module")
def one_chain() -> FitResult:
    return fit(SPEC, _data(), draws=200, tune=200, chains=1, random_seed=2, progress=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = fit(SPEC, _data(), draws=200, tune=200, chains=2, random_seed=2, progress=False)
    return result.save(tmp_path_factory.mktemp("saved") / "fit.nc")


@pytest.mark.slow
def test_a_fit_that_failed_says_so_wherever_its_numbers_go(
    one_chain: FitResult, tmp_path: Path
) -> None:
    assert not one_chain.converged
    assert "R-hat needs at least 2 chains" in one_chain.verdict
    frame = _frame()
    with pytest.warns(ConvergenceWarning, match="poststratified estimates from a fit that did"):
        est = poststratify(one_chain, frame, weight="population", by=["g"])
    assert est.converged is False and "R-hat needs" in str(est.verdict)
    assert not est.summary(prob=0.9)["converged"].any()
    assert not est.overall_summary(prob=0.9)["converged"].any()
    with pytest.warns(ConvergenceWarning, match="effects from a fit that did not converge"):
        effects(one_chain, "x")
    with pytest.warns(ConvergenceWarning, match="posterior predictive check from a fit"):
        ppc(one_chain, prob=0.9)
    path = one_chain.save(tmp_path / "one.nc")
    assert not load(path).converged
    frame_path = tmp_path / "frame.csv"
    frame.to_csv(frame_path, index=False)
    out = tmp_path / "est.csv"
    base = ["poststratify", str(path), "--frame", str(frame_path), "--by", "g", "--out", str(out)]
    strict = runner.invoke(app, [*base, "--strict"])
    assert strict.exit_code == 3
    assert "warning: NOT CONVERGED: R-hat needs at least 2 chains" in strict.output
    assert not out.exists()
    lenient = runner.invoke(app, base)
    assert lenient.exit_code == 0, lenient.output
    assert "warning: NOT CONVERGED" in lenient.output
    assert set(pd.read_csv(out)["converged"]) == {False}
    summary = runner.invoke(app, ["summary", str(path), "--strict"])
    assert summary.exit_code == 3 and "NOT CONVERGED" in summary.output


@pytest.mark.slow
def test_the_whole_population_with_an_empty_by(saved: Path, tmp_path: Path) -> None:
    frame = tmp_path / "frame.csv"
    _frame().to_csv(frame, index=False)
    out = tmp_path / "whole.csv"
    result = runner.invoke(
        app, ["poststratify", str(saved), "--frame", str(frame), "--by", "", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table["category"]) == ["no", "yes"]
    assert table["mean"].sum() == pytest.approx(1.0)
    assert table["population"].iloc[0] == pytest.approx(_frame()["population"].sum())
    # a level the survey never saw, drawn from the fitted distribution, is named
    frame_new = tmp_path / "frame_new.csv"
    pd.concat([_frame(), _frame().tail(2).assign(g="g9")]).to_csv(frame_new, index=False)
    args = ["poststratify", str(saved), "--frame", str(frame_new), "--by", "g", "--out", str(out)]
    result = runner.invoke(app, [*args, "--new-levels", "sample"])
    assert result.exit_code == 0, result.output
    assert "new levels of 'g', their effects drawn from the fitted distribution: 'g9'" in (
        result.output
    )
    assert "g9" in set(pd.read_csv(out)["g"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t["posterior"].to_dataset().assign(Intercept=lambda d: d["Intercept"] + 1e-9),
            "do not match the checksum recorded when it was fitted",
        ),
        (None, "does not match its recorded spec hash"),
    ],
)
def test_an_edited_fit_is_refused(saved: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    tree = xr.open_datatree(saved, engine="h5netcdf").load()
    if edit is None:
        spec = om.ModelSpec.from_json(tree.attrs["opinionmap_spec"])
        other = om.ModelSpec(formula=spec.formula, family=spec.family, levels=("yes", "no"))
        tree.attrs["opinionmap_spec"] = other.to_json()
    else:
        tree["posterior"] = xr.DataTree(edit(tree))
    edited = tmp_path / "edited.nc"
    tree.to_netcdf(edited, engine="h5netcdf")
    with pytest.raises(ProvenanceError, match=message):
        load(edited)


@pytest.mark.slow
def test_a_fit_missing_a_group_or_an_attribute_is_refused(saved: Path, tmp_path: Path) -> None:
    tree = xr.open_datatree(saved, engine="h5netcdf").load()
    del tree["log_likelihood"]
    path = tmp_path / "no_loglik.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ProvenanceError, match="lacks group\\(s\\) log_likelihood"):
        load(path)
    tree = xr.open_datatree(saved, engine="h5netcdf").load()
    del tree.attrs["opinionmap_groups"]
    path = tmp_path / "no_attr.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ProvenanceError, match="attributes or groups are incomplete"):
        load(path)
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


# -- Ctrl-C (slow: a real sampler, a real signal) ------------------------------------------
def _interrupt_fit(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = tmp_path / "spec.toml"
    SPEC.to_toml(spec)
    data = tmp_path / "data.csv"
    _data().to_csv(data, index=False)
    om.Codebook.from_roles(outcomes={"y": ["no", "yes"]}, predictors=["x"], area="g").to_toml(
        tmp_path / "data.codebook.toml"
    )
    out = tmp_path / "fit.nc"
    out.write_text("the previous fit")
    argv = [sys.executable, "-c", "from opinionmap.cli import main; main()", "fit", str(spec)]
    argv += ["--data", str(data), "--out", str(out), "--draws", "2000000", "--chains", "2"]
    argv += ["--seed", "1", "--no-progress", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 240
    line = ""
    while "sampling y" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    time.sleep(3.0)  # well into sampling
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, line + stderr), out


@pytest.mark.slow
def test_ctrl_c_while_sampling_saves_nothing_and_exits_130(tmp_path: Path) -> None:
    done, out = _interrupt_fit(tmp_path)
    assert done.returncode == 130, done.stderr
    assert "interrupted: nothing written" in done.stderr
    assert out.read_text() == "the previous fit"


@pytest.mark.slow
def test_ctrl_c_with_save_partial_saves_draws_marked_partial(tmp_path: Path) -> None:
    done, out = _interrupt_fit(tmp_path, "--save-partial")
    assert done.returncode == 130, done.stderr
    assert "marked partial" in done.stderr
    partial = load(out)
    draws = partial.posterior.sizes["draw"]
    assert 0 < draws < 2_000_000
    assert np.isfinite(partial.posterior["Intercept"].values).all()
    assert partial.tree.attrs["opinionmap_partial"] == f"{draws} of 2000000 draws per chain"
    assert not partial.converged
    assert "sampling was interrupted" in partial.verdict
