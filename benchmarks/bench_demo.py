"""How long ``opinionmap demo --quick`` takes, timed as a user waits for it.

Target (issue "Workflow"): the quick demo "finishes in about a minute on 2 cores".
Runs the whole command in fresh processes, back to back, with the compile caches in
a folder this script controls (``common.cache_env``):

- ``cold``: empty caches, a first run on a new machine (once, first);
- ``rebuilt``: PyTensor's caches warm but ``OPINIONMAP_COMPILE_CACHE=0``, so nutpie
  builds its two C callbacks for every model again, as every run did before
  ``opinionmap._compile_cache`` kept them on disk;
- ``warm``: every cache warm, a repeated run.

``rebuilt`` and ``warm`` alternate for ``--rounds`` rounds after the cold run. The
script prints the wall times and the ratio warm / rebuilt, and checks that every run
gave the same draws (each question's posterior identical in every run). Usage::

    .venv/bin/python benchmarks/bench_demo.py [--rounds 2] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr
from common import HERE, cache_env, fmt, markdown_table, write_record

TARGET_S = 60.0
DEMO = "from opinionmap.cli import main; main()"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="rebuilt/warm pairs after the cold run"
    )
    parser.add_argument("--jobs", type=int, default=None, help="passed to demo --jobs")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def run_demo(out: Path, env: dict[str, str], jobs: int | None, log: Path) -> dict[str, object]:
    """Run ``opinionmap demo --quick --out OUT`` in a fresh process; its wall time."""
    argv = [sys.executable, "-c", DEMO, "demo", "--quick", "--out", str(out)]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    load = os.getloadavg()[0]
    begin = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(f"demo failed (exit {proc.returncode}); see {log}")
    return {"wall_s": wall, "load_before": load, "out": str(out)}


def posteriors(out: Path) -> dict[str, xr.Dataset]:
    """Each question's posterior draws in a demo's output folder."""
    return {
        path.stem: xr.open_datatree(path)["posterior"].to_dataset().load()
        for path in sorted((out / "fits").glob("*.nc"))
    }


def same_draws(a: dict[str, xr.Dataset], b: dict[str, xr.Dataset]) -> bool:
    """Whether two demo runs gave identical draws for every question."""
    return a.keys() == b.keys() and all(
        all(np.array_equal(a[q][v].values, b[q][v].values) for v in a[q].data_vars) for q in a
    )


def main() -> None:
    args = parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    env = cache_env(work / "cache")
    rebuilt_env = env | {"OPINIONMAP_COMPILE_CACHE": "0"}
    plan = [("cold", env)]
    for _ in range(args.rounds):
        plan += [("rebuilt", rebuilt_env), ("warm", env)]
    runs = []
    for i, (kind, run_env) in enumerate(plan, start=1):
        out = work / f"run{i}_{kind}"
        run = run_demo(out, run_env, args.jobs, work / f"run{i}_{kind}.log")
        runs.append({"kind": kind, **run})
        print(f"{kind}: {run['wall_s']:.1f} s", flush=True)
    first = posteriors(Path(str(runs[0]["out"])))
    identical = all(same_draws(first, posteriors(Path(str(r["out"])))) for r in runs[1:])

    rows = [
        [str(i), str(r["kind"]), fmt(r["wall_s"]), fmt(r["load_before"], ".2f")]
        for i, r in enumerate(runs, start=1)
    ]
    print()
    print(markdown_table(["run", "caches", "wall s", "load avg"], rows))
    walls = {
        kind: [float(r["wall_s"]) for r in runs if r["kind"] == kind]  # type: ignore[arg-type]
        for kind in ("cold", "rebuilt", "warm")
    }
    rebuilt, warm = statistics.median(walls["rebuilt"]), statistics.median(walls["warm"])
    print()
    print(f"median warm / rebuilt: {warm:.1f} / {rebuilt:.1f} s = {warm / rebuilt:.2f}")
    print(
        f"target about {TARGET_S:.0f} s on 2 cores ({os.cpu_count()} here): warm "
        f"{min(walls['warm']):.1f}-{max(walls['warm']):.1f} s, cold (first run) "
        f"{walls['cold'][0]:.1f} s"
    )
    print(f"identical draws in every run: {'yes' if identical else 'NO'}")
    path = HERE / "results" / f"bench_demo_{stamp}.json"
    settings = {"rounds": args.rounds, "jobs": args.jobs}
    write_record(path, settings, runs=runs, identical_draws=identical)
    print(f"results: {path}; outputs and logs: {work}")


if __name__ == "__main__":
    main()
