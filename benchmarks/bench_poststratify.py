"""Poststratify a 1,000,000-cell frame with 4,000 draws and 3 categories: NumPy path and kernel.

Usage::

    .venv/bin/python benchmarks/bench_poststratify.py [--areas 1000] [--draws 1000]
        [--fit-path /tmp/fit.nc [--reuse-fit]] [--paths numpy kernel]

Step 1 (this process) simulates a 5,000-respondent survey over the frame's
factors, fits an ordinal model (4 chains x 1,000 draws = 4,000 draws) and saves
it (``--fit-path``; with ``--reuse-fit`` a fit already there is used instead).
Step 2 poststratifies by area, back to back in fresh processes, with the NumPy
path (``OPINIONMAP_POSTSTRATIFY_KERNEL=0``) and with the compiled kernel: each
loads the fit, builds the frame (1,000 areas x 2 x 5 x 4 x 5 x 5 = 1,000,000
cells) and prints the wall time of ``poststratify``, cell-draws per second and
the process's peak resident memory (``ru_maxrss``) before and after, so the
figure is what a user's process needs; also its CPU seconds and the load average
when it started, since other work on the machine takes cores from it. The kernel
runs on numba's cache as a user's later calls do (a one-cell run fills it first);
its first-call compile is measured apart, in two more fresh processes on a new,
empty cache: the first compiles (cold), the second loads what the first kept
(warm). Last, the largest absolute difference between
the two paths' estimates (every draw, area and category, and the whole population).
Targets (issue "Scale"): at least 50 million cell-draws per second on 2 cores,
peak under 2 GB, the same estimates to 1e-10.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SWITCH = "OPINIONMAP_POSTSTRATIFY_KERNEL"
FACTORS = {
    "sex": ["male", "female"],
    "age": ["18-24", "25-34", "35-49", "50-64", "65+"],
    "education": ["primary", "secondary", "vocational", "higher"],
    "ethnicity": ["e1", "e2", "e3", "e4", "e5"],
    "occupation": ["o1", "o2", "o3", "o4", "o5"],
}


def _areas(n_areas: int) -> list[str]:
    return [f"A{i:04d}" for i in range(n_areas)]


def simulate(n: int, n_areas: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"area": rng.choice(_areas(n_areas), n)})
    eta = rng.normal(0, 0.4, n_areas)[pd.Categorical(df["area"], categories=_areas(n_areas)).codes]
    for name, levels in FACTORS.items():
        df[name] = rng.choice(levels, n)
        effect = dict(zip(levels, rng.normal(0, 0.5, len(levels)), strict=True))
        eta = eta + df[name].map(effect).to_numpy()
    cut = np.array([-0.7, 0.8])
    latent = eta + rng.logistic(size=n)
    df["answer"] = np.array(["less", "same", "more"])[(latent[:, None] > cut).sum(axis=1)]
    df["area"] = pd.Categorical(df["area"], categories=_areas(n_areas))
    return df


def frame(n_areas: int) -> pd.DataFrame:
    levels = [_areas(n_areas), *FACTORS.values()]
    index = pd.MultiIndex.from_product(levels, names=["area", *FACTORS])
    out = index.to_frame(index=False)
    for c in out.columns:
        out[c] = out[c].astype("category")
    out["population"] = np.random.default_rng(2).integers(1, 500, len(out)).astype(float)
    return out


def step_fit(path: Path, n_areas: int, draws: int) -> float:
    from opinionmap.fitting import fit
    from opinionmap.spec import ModelSpec

    spec = ModelSpec(
        formula="answer ~ 1 + sex + (1 | age) + (1 | education) + (1 | ethnicity) "
        "+ (1 | occupation) + (1 | area)",
        family="ordinal",
        levels=("less", "same", "more"),
    )
    start = time.perf_counter()
    result = fit(
        spec,
        simulate(5_000, n_areas),
        draws=draws,
        tune=500,
        chains=4,
        random_seed=1,
        progress=False,
        warn=False,
    )
    result.save(path)
    print(f"fit: {time.perf_counter() - start:.1f} s; {result.diagnostics.verdict()}")
    return time.perf_counter() - start


def step_poststratify(path: Path, n_areas: int, out: Path) -> dict[str, float]:
    """Poststratify by area in this process; the estimates go to ``out`` (``.npz``)."""
    from opinionmap.poststratification import poststratify
    from opinionmap.results import load

    result = load(path)
    f = frame(n_areas)
    load = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_maxrss / 1024
    start = time.perf_counter()
    est = poststratify(result, f, weight="population", by=["area"])
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    peak = after.ru_maxrss / 1024
    draws = est.draws.sizes["chain"] * est.draws.sizes["draw"]
    np.savez(out, draws=est.draws.values, overall=est.overall.values)
    return {
        "cells": float(len(f)),
        "draws": float(draws),
        "categories": float(est.draws.sizes["category"]),
        "seconds": elapsed,
        "cell_draws_per_s": len(f) * draws / elapsed,
        "cpu_seconds": cpu,
        "load_average_before": load,
        "peak_rss_mb_before": before,
        "peak_rss_mb": peak,
    }


def step_compile(path: Path) -> dict[str, float]:
    """The kernel's first and second poststratification of one cell, in this process.

    A poststratification by the NumPy path first, so that the first call's extra
    seconds are the kernel's compile (or cache load) alone.
    """
    from opinionmap.poststratification import poststratify
    from opinionmap.results import load

    result = load(path)
    one = frame(1).head(1)
    os.environ[SWITCH] = "0"
    poststratify(result, one, weight="population", by=["area"])
    os.environ[SWITCH] = "1"
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        poststratify(result, one, weight="population", by=["area"])
        seconds.append(time.perf_counter() - start)
    return {"first": seconds[0], "second": seconds[1], "compile": seconds[0] - seconds[1]}


def child(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a step of this script in a fresh process; its JSON figures."""
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_seconds(fit_path: Path) -> dict[str, float]:
    """The kernel's first call on a new, empty numba cache (cold), then on that cache (warm)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {SWITCH: "1", "NUMBA_CACHE_DIR": cache}
        cold = child(["--step", "compile", "--fit-path", str(fit_path)], env)
        warm = child(["--step", "compile", "--fit-path", str(fit_path)], env)
    return {"cold": cold["compile"], "warm": warm["compile"]}


def report(path: str, figures: dict[str, float]) -> None:
    print(
        f"{path}: {figures['cells']:,.0f} cells x {figures['draws']:,.0f} draws x "
        f"{figures['categories']:.0f} categories by area in {figures['seconds']:.1f} s, "
        f"{figures['cell_draws_per_s'] / 1e6:,.1f} million cell-draws/s (CPU "
        f"{figures['cpu_seconds']:.1f} s; load average before {figures['load_average_before']:.1f}"
        f" on {os.cpu_count()} cores); peak RSS "
        f"{figures['peak_rss_mb']:,.0f} MB (after loading fit and frame: "
        f"{figures['peak_rss_mb_before']:,.0f} MB)",
        flush=True,
    )


def compare(
    paths: dict[str, dict[str, float]], compile_s: dict[str, float], work: Path
) -> dict[str, float]:
    """Report each path, the kernel's compile seconds and the paths' largest difference."""
    for path, figures in paths.items():
        report(path, figures)
    out: dict[str, float] = {}
    if compile_s:
        out.update(compile_cold_s=compile_s["cold"], compile_warm_s=compile_s["warm"])
        print(
            f"kernel first call: compile {compile_s['cold']:.2f} s on an empty numba cache, "
            f"{compile_s['warm']:.2f} s loading it from the cache",
        )
    if len(paths) == 2:
        a, b = (np.load(work / f"{p}.npz") for p in ("numpy", "kernel"))
        diff = max(float(np.nanmax(np.abs(a[k] - b[k]))) for k in ("draws", "overall"))
        speedup = paths["numpy"]["seconds"] / paths["kernel"]["seconds"]
        out.update(max_abs_difference=diff, speedup=speedup)
        print(
            f"kernel / numpy: {speedup:.1f}x faster; largest absolute difference in the "
            f"estimates {diff:.2e} (target <= 1e-10: {'met' if diff <= 1e-10 else 'NOT met'})"
        )
    if "kernel" in paths:
        kernel = paths["kernel"]
        fast = kernel["cell_draws_per_s"] >= 50e6
        small = kernel["peak_rss_mb"] < 2048
        print(
            f"kernel targets: >= 50 million cell-draws/s {'met' if fast else 'NOT met'}; "
            f"peak < 2,048 MB {'met' if small else 'NOT met'}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", type=int, default=1000, help="areas (1000 -> 1,000,000 cells)")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (4 chains)")
    parser.add_argument("--step", choices=["all", "poststratify", "compile"], default="all")
    parser.add_argument("--fit-path", type=Path, help="where to save (or find) the fit")
    parser.add_argument("--reuse-fit", action="store_true", help="use the fit at --fit-path")
    parser.add_argument(
        "--paths", nargs="+", choices=["numpy", "kernel"], default=["numpy", "kernel"]
    )
    parser.add_argument("--out", type=Path, help="(step poststratify) where to save estimates")
    args = parser.parse_args()
    if args.step == "poststratify":
        print(json.dumps(step_poststratify(args.fit_path, args.areas, args.out)))
        return
    if args.step == "compile":
        print(json.dumps(step_compile(args.fit_path)))
        return
    if args.reuse_fit and (args.fit_path is None or not args.fit_path.exists()):
        parser.error("--reuse-fit needs --fit-path naming a saved fit")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fit_path = args.fit_path or work / "fit.nc"
        if not args.reuse_fit:
            step_fit(fit_path, args.areas, args.draws)
        compile_s: dict[str, float] = {}
        if "kernel" in args.paths:
            compile_s = compile_seconds(fit_path)
            child(["--step", "compile", "--fit-path", str(fit_path)], {SWITCH: "1"})
        paths = {}
        for path in args.paths:
            argv = ["--step", "poststratify", "--fit-path", str(fit_path)]
            argv += ["--areas", str(args.areas), "--out", str(work / f"{path}.npz")]
            paths[path] = child(argv, {SWITCH: "1" if path == "kernel" else "0"})
        figures = compare(paths, compile_s, work)
    from common import write_record

    record = Path(__file__).parent / "results"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    write_record(
        record / f"bench_poststratify_{stamp}.json",
        {"areas": args.areas, "paths": args.paths, "load_average": os.getloadavg()},
        paths=paths,
        **figures,
    )


if __name__ == "__main__":
    main()
