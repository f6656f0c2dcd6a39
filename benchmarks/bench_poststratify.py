"""Poststratify a 1,000,000-cell frame with 4,000 draws and 3 categories: time and peak memory.

Usage::

    .venv/bin/python benchmarks/bench_poststratify.py [--cells-scale 1.0] [--draws 1000]

Step 1 (this process) simulates a 5,000-respondent survey over the frame's
factors, fits an ordinal model (4 chains x 1,000 draws = 4,000 draws) and saves
it. Step 2 runs in a fresh process: it loads the fit, builds the frame
(1,000 areas x 2 x 5 x 4 x 5 x 5 = 1,000,000 cells) and poststratifies by area,
printing the wall time and the process's peak resident memory (``ru_maxrss``)
before and after, so the figure is what a user's process needs.
Target (issue "Poststratification"): peak under 2 GB on a 2-core, 24 GB machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

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


def step_poststratify(path: Path, n_areas: int) -> dict[str, float]:
    from opinionmap.poststratification import poststratify
    from opinionmap.results import load

    result = load(path)
    f = frame(n_areas)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    est = poststratify(result, f, weight="population", by=["area"])
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    draws = est.draws.sizes["chain"] * est.draws.sizes["draw"]
    return {
        "cells": float(len(f)),
        "draws": float(draws),
        "categories": float(est.draws.sizes["category"]),
        "seconds": elapsed,
        "peak_rss_mb_before": before,
        "peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", type=int, default=1000, help="areas (1000 -> 1,000,000 cells)")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (4 chains)")
    parser.add_argument("--step", choices=["all", "poststratify"], default="all")
    parser.add_argument("--fit-path", type=Path)
    args = parser.parse_args()
    if args.step == "poststratify":
        print(json.dumps(step_poststratify(args.fit_path, args.areas)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fit.nc"
        step_fit(path, args.areas, args.draws)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--step",
                "poststratify",
                "--fit-path",
                str(path),
                "--areas",
                str(args.areas),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"poststratified {figures['cells']:,.0f} cells x {figures['draws']:,.0f} draws x "
        f"{figures['categories']:.0f} categories by area in {figures['seconds']:.1f} s; "
        f"peak RSS {figures['peak_rss_mb']:,.0f} MB (after loading fit and frame: "
        f"{figures['peak_rss_mb_before']:,.0f} MB); target peak < 2,048 MB: "
        f"{'met' if figures['peak_rss_mb'] < 2048 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
