"""Parallel runs' workers: forked from a server that imported once; the caller's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from opinionmap import _workers

# run in a fresh interpreter: the fork server is one per process, started on first use
PROBE = textwrap.dedent(
    """
    import json, os, sys
    from concurrent.futures import ProcessPoolExecutor

    from opinionmap import _workers


    def probe(name):
        return {
            "imported": "nutpie" in sys.modules and "opinionmap.report" in sys.modules,
            "variable": os.environ.get(name),
        }


    if __name__ == "__main__":
        _workers.prestart()
        seen = {}
        for step in ("as started", "variable set since"):
            if step == "variable set since":
                os.environ["OPINIONMAP_TEST_VARIABLE"] = "set after the server started"
            context = _workers.context()
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                answer = pool.submit(probe, "OPINIONMAP_TEST_VARIABLE").result()
            seen[step] = {"method": context.get_start_method(), **answer}
        print(json.dumps(seen))
    """
)


def _run_probe(tmp_path, **environment: str) -> dict[str, dict]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    left_out = (_workers.SWITCH, "OPINIONMAP_TEST_VARIABLE")
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="forked from a server on Linux only")
def test_workers_come_imported_from_the_fork_server_and_see_variables_set_since(tmp_path) -> None:
    seen = _run_probe(tmp_path)
    # the fitting stack was imported by the server, before the task ran
    assert seen["as started"] == {"method": "forkserver", "imported": True, "variable": None}
    # a variable set after the server started reaches the workers: they are spawned
    assert seen["variable set since"] == {
        "method": "spawn",
        "imported": False,
        "variable": "set after the server started",
    }


def test_the_switch_spawns_every_runs_workers(tmp_path) -> None:
    seen = _run_probe(tmp_path, **{_workers.SWITCH: "spawn"})
    assert {step["method"] for step in seen.values()} == {"spawn"}
    assert seen["variable set since"]["variable"] == "set after the server started"


def test_default_jobs_are_the_cores_up_to_four(monkeypatch) -> None:
    for cores, jobs in ((None, 1), (1, 1), (2, 2), (16, 4)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert _workers.default_jobs() == jobs
