"""fit-many: specs fitted in local processes or on a dask cluster, with the same draws."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import opinionmap as om
from opinionmap.cli import app
from opinionmap.cluster import FIT_RESOURCE
from opinionmap.errors import OpinionmapError
from opinionmap.progress import FitProgress

QUESTIONS = ("presence_usa", "presence_eu")
SPEC = """\
formula = "{question} ~ 1 + sex + (1 | region)"
family = "ordinal"
data = "{data}"

[outcome]
levels = ["less", "same", "more"]
missing = ["dont_know"]

[sampling]
draws = 100
tune = 100
chains = 2
"""


def _specs(folder: Path, formula: dict[str, str] | None = None) -> list[Path]:
    """Small specs of the bundled survey, one per question (a formula replaced where given)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for question in QUESTIONS:
        text = SPEC.format(question=question, data=om.datasets.kazakhstan_survey_path())
        if formula and question in formula:
            text = text.replace(f"{question} ~ 1 + sex + (1 | region)", formula[question])
        path = folder / f"{question}.toml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@dataclass
class Runs:
    """The same specs fitted by the command line in local processes and on a cluster."""

    specs: list[Path]
    local: Path
    output: str
    exit_code: int
    remote: Path
    saved: list[om.SavedFit]
    done: list[om.SavedFit]
    progress: list[tuple[str, FitProgress]]
    story: list[tuple[Any, ...]]  # the fits' transitions on the workers, in order
    resources: list[dict[str, float]]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A cluster of one worker process with two threads (room for two tasks at once)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Runs:
    from distributed import get_task_stream

    root = tmp_path_factory.mktemp("fit_many")
    specs = _specs(root / "specs")
    local = root / "local"
    args = ["fit-many", *map(str, specs), "--out-dir", str(local), "--seed", "3", "--jobs", "2"]
    ran = CliRunner().invoke(app, args)
    remote = root / "remote"
    done: list[om.SavedFit] = []
    progress: list[tuple[str, FitProgress]] = []
    with get_task_stream(client) as stream:
        saved = om.fit_many(
            specs,
            out_dir=remote,
            client=client,
            sampling=om.Sampling(seed=3),
            on_done=done.append,
            on_progress=lambda name, p: progress.append((name, p)),
        )
    keys = [t["key"] for t in stream.data if str(t["key"]).startswith("opinionmap-")]
    workers = client.scheduler_info()["workers"]
    story = [e for e in client.story(*keys) if e[0] in workers]
    return Runs(
        specs,
        local,
        ran.output,
        ran.exit_code,
        remote,
        saved,
        done,
        progress,
        story,
        [w["resources"] for w in workers.values()],
    )


@pytest.mark.slow
def test_the_cluster_gives_the_draws_local_processes_give(runs: Runs) -> None:
    assert runs.exit_code == 0, runs.output
    for question in QUESTIONS:
        local = om.load(runs.local / f"{question}.nc")
        remote = om.load(runs.remote / f"{question}.nc")
        assert local.sampling.seed == remote.sampling.seed == 3
        xr.testing.assert_equal(local.posterior, remote.posterior)
        np.testing.assert_array_equal(
            local.posterior["sigma_region"].values, remote.posterior["sigma_region"].values
        )
    # each file whole, nothing else left in the folder
    assert sorted(p.name for p in runs.remote.iterdir()) == ["presence_eu.nc", "presence_usa.nc"]
    assert [s.path for s in runs.saved] == [runs.remote / f"{q}.nc" for q in QUESTIONS]


@pytest.mark.slow
def test_each_fit_s_verdict_is_reported_as_it_finishes(runs: Runs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", om.ConvergenceWarning)
        verdicts = {q: om.load(runs.local / f"{q}.nc").verdict for q in QUESTIONS}
    for question in QUESTIONS:
        assert f"{question}: {verdicts[question]}" in runs.output
        assert f"wrote {runs.local / question}.nc" in runs.output
        assert f"fitting {question} (ordinal, 2 x 100) -> {question}.nc" in runs.output
    assert "2 fits written to" in runs.output
    assert sorted(s.name for s in runs.done) == sorted(QUESTIONS)
    assert {s.name: s.verdict for s in runs.done} == verdicts
    assert all(s.converged is False for s in runs.done)  # 2 chains x 100 draws
    # the workers' progress reaches the client
    phases = {(name, p.phase) for name, p in runs.progress}
    for question in QUESTIONS:
        assert {(question, "waiting"), (question, "sampling")} <= phases


@pytest.mark.slow
def test_a_worker_fits_one_model_at_a_time(runs: Runs) -> None:
    assert runs.resources == [{FIT_RESOURCE: 1}]
    # the worker has two threads, but it starts the second fit once the first is done
    running: set[str] = set()
    executed, most = set(), 0
    for _worker, key, start, finish, *_ in runs.story:
        if finish == "executing":
            running.add(key)
            executed.add(key)
        elif start == "executing":
            running.discard(key)
        most = max(most, len(running))
    assert len(executed) == 2 and most == 1


@pytest.mark.slow
def test_a_dask_frame_on_a_process_cluster_gives_the_in_memory_estimates(
    runs: Runs, client: Any
) -> None:
    import dask.dataframe as dd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", om.ConvergenceWarning)
        result = om.load(runs.remote / "presence_usa.nc")
        frame = om.read_frame(om.datasets.kazakhstan_frame_path())
        expected = om.poststratify(result, frame, by=["region", "sex"])
        lazy = dd.from_pandas(frame.data, npartitions=4)
        # the partitions go to the worker process as tasks (the client is the active scheduler)
        got = om.poststratify(result, lazy, weight="population", by=["region", "sex"])
    np.testing.assert_allclose(got.draws.values, expected.draws.values, rtol=1e-10, atol=0)
    np.testing.assert_allclose(got.overall.values, expected.overall.values, rtol=1e-10, atol=0)
    np.testing.assert_allclose(got.population, expected.population, rtol=1e-12)


def _free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_bad_scheduler_address_is_a_one_line_error(tmp_path: Path) -> None:
    import dask

    specs = _specs(tmp_path / "specs")
    out = tmp_path / "fits"
    scheduler = dask.config.get("scheduler", None)
    for address in (f"tcp://127.0.0.1:{_free_port()}", "nonsense:::x"):
        ran = CliRunner().invoke(
            app, ["fit-many", *map(str, specs), "--out-dir", str(out), "--scheduler", address]
        )
        assert ran.exit_code == 2, ran.output
        assert ran.output.startswith(f"error: cannot reach a dask scheduler at {address!r}")
        assert "give its address" in ran.output and "leave --scheduler out" in ran.output
        assert ran.output.count("\n") == 1 and "fitting" not in ran.output
        # the failed client left dask's scheduler as it was
        assert dask.config.get("scheduler", None) == scheduler
    assert not out.exists()


def test_a_bad_spec_is_named_before_any_fit_starts(tmp_path: Path) -> None:
    specs = _specs(tmp_path / "specs", {"presence_eu": "presence_eu ~ 1 + income"})
    out = tmp_path / "fits"
    ran = CliRunner().invoke(app, ["fit-many", *map(str, specs), "--out-dir", str(out)])
    assert ran.exit_code == 2
    assert f"{specs[1]}: " in ran.output and "'income' that the data lacks" in ran.output
    assert "fitting" not in ran.output and not out.exists()
    # a spec that does not parse, one without data, two saved under one name, jobs on a cluster
    specs[1].write_text('formula = "presence_eu ~ 1 +"\n', encoding="utf-8")
    ran = CliRunner().invoke(app, ["fit-many", *map(str, specs), "--out-dir", str(out)])
    assert ran.exit_code == 2 and str(specs[1]) in ran.output
    specs = _specs(tmp_path / "specs")
    specs[1].write_text(specs[1].read_text().replace("data = ", "# data = "), encoding="utf-8")
    with pytest.raises(OpinionmapError, match=r"presence_eu.toml: names no survey; add data ="):
        om.fit_many(specs, out_dir=out)
    twin = tmp_path / "other" / specs[0].name
    twin.parent.mkdir()
    twin.write_text(specs[0].read_text())
    with pytest.raises(OpinionmapError, match=r"would both be saved as presence_usa.nc"):
        om.fit_many([specs[0], twin], out_dir=out)
    with pytest.raises(OpinionmapError, match=r"jobs=2 counts local processes; on a cluster"):
        om.fit_many(specs, out_dir=out, client="tcp://127.0.0.1:1", jobs=2)
    assert not out.exists()
