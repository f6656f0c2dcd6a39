"""How opinionmap's time to a fit grows with the number of respondents.

Fits 1,000 and 1,000,000 simulated respondents, each in a fresh process timed as
a whole, and prints both wall times and their ratio. Target (issue "Model core"):
with the same cell structure, the million within 1.5x the thousand.

``--cells same`` (default): ``common.simulate_cell_survey``, sex x age band x
50 areas, every one of the 500 cells occupied at both sizes (the thousand has one
respondent per cell plus 500 drawn at random), so the two fits differ only in the
counts: how the time grows with respondents alone. ``--cells grow``:
``common.simulate_survey`` (sex, education, age band, ethnicity and 50 areas, at most
8,000 cells), where the thousand occupies 847 cells and the million 7,988: the
time then also grows with the cells.

With a million respondents, ``fit(..., log_likelihood="auto")`` stores the
log-likelihood per covariate cell, not per respondent (draws x respondents is
over 50 million), so LOO on that fit is over cells. Usage::

    .venv/bin/python benchmarks/bench_scaling.py [--quick] [--cache warm|cold] [--cells same|grow]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from common import (
    HERE,
    Job,
    Outcome,
    cache_env,
    fmt,
    markdown_table,
    phases_text,
    provenance,
    run_reported,
    save_results,
    simulate_cell_survey,
    simulate_survey,
)

SIZES = (1_000, 1_000_000)
SIM_SEED = 2026
TARGET_RATIO = 1.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="250 draws + 250 tune per chain")
    parser.add_argument(
        "--cache",
        choices=("warm", "cold"),
        default="warm",
        help="warm: caches primed by a short untimed run; cold: empty caches per fit",
    )
    parser.add_argument(
        "--cells",
        choices=("same", "grow"),
        default="same",
        help="same: 500 cells at both sizes (the target); grow: up to 8,000, filled as sampled",
    )
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def run_size(n: int, work: Path, args: argparse.Namespace) -> Outcome:
    """Simulate ``n`` respondents, prime the caches if asked, then time one fit."""
    data = (simulate_cell_survey if args.cells == "same" else simulate_survey)(n, SIM_SEED)
    path = data.save(work)
    draws = 250 if args.quick else 1000
    job = Job("opinionmap", path, data.formula, data.levels, draws, draws, args.chains, args.seed)
    return run_reported(
        job,
        data.name,
        cache_env(work / f"cache_{n}"),
        work / f"{data.name}.log",
        f"opinionmap on {n:,} respondents",
        prime=work / f"{data.name}_prime.log" if args.cache == "warm" else None,
    )


def results_table(outcomes: Sequence[Outcome]) -> str:
    header = [
        "respondents",
        "cells",
        "wall s",
        "min bulk ESS",
        "divergences",
        "max R-hat",
        "log-likelihood stored per",
        "load avg",
    ]
    rows = [
        [
            fmt(o.report.get("n_respondents"), ","),
            fmt(o.report.get("n_cells"), ","),
            fmt(o.wall_s) if o.status == "ok" else o.status,
            fmt(o.report.get("min_ess_bulk"), ".0f"),
            fmt(o.report.get("divergences"), "d"),
            fmt(o.report.get("max_rhat"), ".3f"),
            o.report.get("loglik_level", "-"),
            fmt(o.load_before, ".2f"),
        ]
        for o in outcomes
    ]
    return markdown_table(header, rows)


def phases_table(outcomes: Sequence[Outcome]) -> str:
    rows = [
        [
            fmt(o.report["n_respondents"], ","),
            phases_text(o),
        ]
        for o in outcomes
        if o.status == "ok"
    ]
    return markdown_table(["respondents", "seconds by phase (inside the process)"], rows)


def ratio_line(small: Outcome, large: Outcome) -> str:
    if small.status != "ok" or large.status != "ok" or not small.wall_s or not large.wall_s:
        return "ratio: - (a fit did not finish)"
    ratio = large.wall_s / small.wall_s
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    return (
        f"wall time ratio {large.report['n_respondents']:,} / {small.report['n_respondents']:,} "
        f"respondents: {ratio:.2f} (target <= {TARGET_RATIO}: {met})"
    )


def main() -> None:
    args = parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        outcomes = [run_size(n, Path(tmp), args) for n in SIZES]
    settings = vars(args) | {"draws": 250 if args.quick else 1000, "out": str(args.out)}
    mode = "quick" if args.quick else "full"
    name = f"bench_scaling_{mode}_{args.cache}_cells-{args.cells}_{stamp}.json"
    save_results(args.out / name, settings, outcomes)
    print(f"\n## Scaling ({mode}, {args.cache} caches, {args.chains} chains, cells {args.cells})\n")
    print(results_table(outcomes))
    print()
    print(ratio_line(*outcomes))
    large = outcomes[-1].report.get("loglik_level")
    if large == "cell":
        print(
            "Note: with 1,000,000 respondents fit(log_likelihood='auto') stored the "
            "log-likelihood per covariate cell, not per respondent."
        )
    print()
    print(phases_table(outcomes))
    print()
    print(provenance(outcomes))


if __name__ == "__main__":
    main()
