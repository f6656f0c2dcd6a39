"""How long ``opinionmap demo`` takes, timed as a user waits for it.

Target (issue "The main job"): the publication-quality report of the eight bundled
questions (every one converged) in under 3 minutes with empty compile caches and under
90 s with warm ones, on 2 cores, package installation excluded. The demo writes that
report first and then again with the joint model's section (``--no-joint`` leaves the
joint model out); both moments are timed.

Runs the whole command in fresh processes, back to back, with the compile caches
(PyTensor's, numba's and this package's, see ``common.cache_env``) in folders this
script controls. Each round runs

- ``cold``: a new, empty cache folder, as on a first run on a new machine;
- ``warm``: the same command again on the caches the cold run filled;
- ``rebuilt`` (with ``--rebuilt``): PyTensor's caches warm but
  ``OPINIONMAP_COMPILE_CACHE=0``, so nutpie builds its C callbacks for every model.

Figures come out, each the median over the rounds: (a) cold and (b) warm, the time
to the report of the questions (the first "report written to" line, the demo's
output unbuffered) and to the end of the demo; (c) the time to the first question's
converged estimates (the first "<question>: converged" line). Every run must converge
(publication quality) and every run of one source tree must give the same draws. With
``--other SRC`` (another checkout's ``src``, e.g. an earlier commit) each run is
repeated from that tree through ``PYTHONPATH`` right after this tree's, so both see the
same machine load, and the ratios this / other are printed. Usage::

    .venv/bin/python benchmarks/bench_demo.py [--rounds 3] [--jobs N] [--quick] [--no-joint]
        [--rebuilt] [--other /tmp/old/src]
"""

from __future__ import annotations

import argparse
import os
import re
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

COLD_TARGET_S = 180.0
WARM_TARGET_S = 90.0
DEMO = "from opinionmap.cli import main; main()"
VERDICT = re.compile(r"^(?P<question>\w+): (?P<verdict>converged|NOT CONVERGED)")
REPORT = re.compile(r"^report written to ")
KINDS = ("cold", "warm", "rebuilt")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold/warm rounds (medians)")
    parser.add_argument("--jobs", type=int, default=None, help="passed to demo --jobs")
    parser.add_argument("--quick", action="store_true", help="time the smoke run instead")
    parser.add_argument(
        "--no-joint", action="store_true", help="passed to demo: leave the joint model out"
    )
    parser.add_argument("--rebuilt", action="store_true", help="add a rebuilt-callbacks run")
    parser.add_argument("--other", type=Path, help="another source tree's src/ to compare with")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def run_demo(
    out: Path, env: dict[str, str], args: argparse.Namespace, log: Path
) -> dict[str, object]:
    """Run ``opinionmap demo --out OUT`` in a fresh process, reading its output as it comes.

    Returns the wall time, the time of the first report (the questions') and of the
    first converged question, and every question's verdict.
    """
    argv = [sys.executable, "-c", DEMO, "demo", "--out", str(out)]
    if args.quick:
        argv.append("--quick")
    if args.no_joint:
        argv.append("--no-joint")
    if args.jobs is not None:
        argv += ["--jobs", str(args.jobs)]
    load = os.getloadavg()[0]
    verdicts: dict[str, str] = {}
    first = report = None
    begin = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            argv,
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(f"{time.perf_counter() - begin:8.2f} {line}")
            match = VERDICT.match(line)
            if match:
                verdicts[match["question"]] = match["verdict"]
                if first is None and match["verdict"] == "converged":
                    first = time.perf_counter() - begin
            if report is None and REPORT.match(line):
                report = time.perf_counter() - begin
        proc.wait()
    wall = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(f"demo failed (exit {proc.returncode}); see {log}")
    return {
        "wall_s": wall,
        "report_s": report,
        "first_converged_s": first,
        "converged": sum(v == "converged" for v in verdicts.values()),
        "questions": len(verdicts),
        "load_before": load,
        "out": str(out),
    }


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


def median(runs: list[dict[str, object]], tree: str, kind: str, key: str) -> float | None:
    values = [float(r[key]) for r in runs if r["tree"] == tree and r["kind"] == kind and r[key]]  # type: ignore[arg-type]
    return statistics.median(values) if values else None


def main() -> None:
    args = parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    trees: dict[str, Path | None] = {"this tree": None}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    kinds = KINDS if args.rebuilt else KINDS[:2]
    runs: list[dict[str, object]] = []
    for round_ in range(1, args.rounds + 1):
        for kind in kinds:
            for t, (tree, src) in enumerate(trees.items()):
                # each tree its own caches, new every round: a cold run is a first run
                env = cache_env(work / f"cache_r{round_}_t{t}", src)
                if kind == "rebuilt":
                    env["OPINIONMAP_COMPILE_CACHE"] = "0"
                name = f"r{round_}_t{t}_{kind}"
                run = run_demo(work / name, env, args, work / f"{name}.log")
                runs.append({"round": round_, "kind": kind, "tree": tree, **run})
                first = run["first_converged_s"]
                print(
                    f"round {round_} {kind:7s} {tree}: {run['wall_s']:.1f} s, report of the "
                    f"questions at {fmt(run['report_s'])} s, first converged at {fmt(first)} s, "
                    f"{run['converged']}/{run['questions']} converged",
                    flush=True,
                )

    identical = {
        tree: all(
            same_draws(posteriors(Path(str(mine[0]["out"]))), posteriors(Path(str(r["out"]))))
            for r in mine[1:]
        )
        for tree in trees
        if (mine := [r for r in runs if r["tree"] == tree])
    }
    rows = [
        [str(r["round"]), str(r["kind"]), str(r["tree"]), fmt(r["wall_s"]), fmt(r["report_s"]),
         fmt(r["first_converged_s"]), f"{r['converged']}/{r['questions']}",
         fmt(r["load_before"], ".2f")]
        for r in runs
    ]  # fmt: skip
    print()
    print(markdown_table(
        ["round", "caches", "tree", "wall s", "questions' report s", "first converged s",
         "converged", "load avg"], rows
    ))  # fmt: skip
    print()
    figures = [
        ("(a) questions' report, cold", "cold", "report_s", COLD_TARGET_S),
        ("(a) whole demo, cold", "cold", "wall_s", None),
        ("(b) questions' report, warm", "warm", "report_s", WARM_TARGET_S),
        ("(b) whole demo, warm", "warm", "wall_s", None),
        ("(c) first converged, cold", "cold", "first_converged_s", None),
        ("(c) first converged, warm", "warm", "first_converged_s", None),
    ]
    if args.rebuilt:
        figures.append(("rebuilt callbacks", "rebuilt", "wall_s", None))
    summary = []
    for label, kind, key, target in figures:
        values = {tree: median(runs, tree, kind, key) for tree in trees}
        line = f"{label}: median " + ", ".join(f"{tree} {fmt(v)} s" for tree, v in values.items())
        mine, other = values["this tree"], values.get("other")
        if mine is not None and other:
            line += f"; this / other {mine / other:.2f}"
        if target is not None and mine is not None and not args.quick:
            line += f" (target < {target:.0f} s: {'met' if mine < target else 'NOT met'})"
        print(line)
        summary.append(line)
    all_converged = all(r["converged"] == r["questions"] for r in runs)
    print(f"every question converged in every run: {'yes' if all_converged else 'NO'}")
    for tree, same in identical.items():
        print(f"identical draws in every run of {tree}: {'yes' if same else 'NO'}")
    print(f"{os.cpu_count()} CPUs here")
    path = HERE / "results" / f"bench_demo_{stamp}.json"
    settings = {
        "rounds": args.rounds,
        "jobs": args.jobs,
        "quick": args.quick,
        "joint": not args.no_joint,
        "rebuilt": args.rebuilt,
        "other": str(args.other) if args.other else None,
    }
    write_record(
        path,
        settings,
        runs=runs,
        summary=summary,
        all_converged=all_converged,
        identical_draws=identical,
    )
    print(f"results: {path}; outputs and logs: {work}")


if __name__ == "__main__":
    main()
