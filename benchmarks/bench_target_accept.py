"""NUTS target acceptance against the draws a bundled question needs to converge.

Fits bundled specs of ``models/`` (4 chains, each spec's tuning; ``--draws`` per chain)
at each ``--accept`` and ``--seeds``, one fit at a time in this process (the first fit
of a model compiles it; its seconds are left out of the median). A shorter run is the
first draws of a longer one (nutpie's draws after tuning do not depend on how many
follow), so each fit is also judged on its first ``--prefixes`` draws per chain.

Prints, per question and target acceptance: the fits that converged by the package's
criteria (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, no saturated tree
depth, E-BFMI >= 0.3) at each prefix, the worst R-hat and the smallest bulk and tail ESS
at the full draws, divergences, the mean leapfrog steps per draw and step size, and the
median seconds of a fit whose model was compiled already. Usage::

    .venv/bin/python benchmarks/bench_target_accept.py [--only main_friend model_country]
        [--accept 0.8 0.95] [--seeds 2020 1 2 3] [--draws 2000] [--prefixes 1000 1500]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from statistics import median
from typing import Any

from common import fmt, print_and_record

import opinionmap as om
from opinionmap.diagnostics import diagnose

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ("model_country", "main_friend", "main_enemy")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(QUESTIONS))
    parser.add_argument("--accept", type=float, nargs="+", default=[0.8, 0.95])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 1, 2, 3])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--prefixes", type=int, nargs="*", default=[1000, 1500])
    return parser.parse_args()


def one_fit(
    spec: om.ModelSpec, survey: Any, accept: float, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Fit once; the diagnostics at each prefix and at the full draws, steps, seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = om.fit(
            spec,
            survey,
            draws=args.draws,
            chains=4,
            cores=1,
            target_accept=accept,
            random_seed=seed,
            progress=False,
            warn=False,
        )
    seconds = time.perf_counter() - start
    stats = result.tree["sample_stats"].to_dataset()
    record: dict[str, Any] = {
        "accept": accept,
        "seed": seed,
        "seconds": seconds,
        "steps": float(stats["n_steps"].mean()),
        "step_size": float(stats["step_size"].mean()),
    }
    for n in [*args.prefixes, args.draws]:
        if n <= args.draws:
            d = diagnose(result.tree.isel(draw=slice(0, n)), warn=False)
            record[f"draws_{n}"] = {
                "converged": d.converged,
                "max_rhat": d.max_rhat,
                "min_ess_bulk": d.min_ess_bulk,
                "min_ess_tail": d.min_ess_tail,
                "divergences": d.divergences,
            }
    return record


def main() -> None:
    args = parse_args()
    survey = om.read_survey(
        ROOT / "data/kazakhstan/survey_2020.csv", ROOT / "data/kazakhstan/survey_2020.codebook.toml"
    )
    prefixes = [n for n in args.prefixes if n < args.draws]
    header = [
        "question",
        "target acceptance",
        *(f"converged at {n:,}" for n in [*prefixes, args.draws]),
        f"worst R-hat; bulk, tail ESS at {args.draws:,}",
        "divergences",
        "steps a draw",
        "step size",
        "fit s (median; model compiled)",
    ]
    rows, fits = [], {}
    for name in args.only:
        spec = om.read_spec(ROOT / "models" / f"{name}.toml")
        fits[name] = []
        for accept in args.accept:
            runs = []
            for seed in args.seeds:
                run = one_fit(spec, survey, accept, seed, args)
                print(f"{name} {accept} seed {seed}: {run}", flush=True)
                runs.append(run)
            fits[name].extend(runs)
            full = [r[f"draws_{args.draws}"] for r in runs]
            seconds = [r["seconds"] for r in runs]
            if accept == args.accept[0]:  # the question's first fit compiled its model
                seconds = seconds[1:] or seconds
            rows.append(
                [
                    name,
                    f"{accept:g}",
                    *(
                        f"{sum(r[f'draws_{n}']['converged'] for r in runs)} of {len(runs)}"
                        for n in [*prefixes, args.draws]
                    ),
                    f"{max(f['max_rhat'] for f in full):.4f}; "
                    f"{min(f['min_ess_bulk'] for f in full):.0f}, "
                    f"{min(f['min_ess_tail'] for f in full):.0f}",
                    str(sum(f["divergences"] for f in full)),
                    fmt(median(r["steps"] for r in runs)),
                    fmt(median(r["step_size"] for r in runs), ".3f"),
                    fmt(median(seconds)),
                ]
            )
    print_and_record(header, rows, "target_accept", vars(args), fits=fits)


if __name__ == "__main__":
    main()
