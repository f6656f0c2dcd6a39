"""Convergence diagnostics of every scalar at once, against ArviZ's one scalar at a time.

Every fit (and every fit loaded from disk) computes the rank-normalised split R-hat,
the bulk ESS and the tail ESS of each scalar parameter. ``arviz_stats`` computes them
one scalar at a time and ranks each scalar's draws once for its R-hat and again for
its bulk ESS; ``opinionmap.diagnostics.convergence`` does all scalars at once and ranks
them once. This script times both on the same draws, back to back in this process
(best of ``--repeats``), and checks that they agree (largest relative difference; the
tail ESS at the 5% and 95% quantiles in both). Draws are either AR(1) chains of the
shapes of the bundled models (4 chains: 2,000 draws of 553 scalars, the largest
categorical question; 1,000 draws of 80, an ordinal one; 1,000 draws of 5,000, a model
with many areas) or, with ``--fits DIR``, the posteriors of fits saved by
``opinionmap demo`` (``DIR/*.nc``). Usage::

    .venv/bin/python benchmarks/bench_diagnose.py [--repeats 3] [--fits demo-out/fits]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import fmt, print_and_record

from opinionmap.diagnostics import convergence, scalar_draws
from opinionmap.plan import is_auxiliary

# (chains, draws, scalars, lag-1 autocorrelation)
SHAPES = {
    "categorical, 4 x 2,000 x 553": (4, 2000, 553, 0.7),
    "ordinal, 4 x 1,000 x 80": (4, 1000, 80, 0.5),
    "many areas, 4 x 1,000 x 5,000": (4, 1000, 5000, 0.5),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per method (best)")
    parser.add_argument("--fits", type=Path, help="a folder of saved fits (*.nc) to use")
    return parser.parse_args()


def ar1(chains: int, draws: int, scalars: int, phi: float, seed: int = 1) -> np.ndarray:
    """(chain, draw, scalar) AR(1) draws with lag-1 autocorrelation ``phi``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(chains, draws, scalars))
    out = np.empty_like(noise)
    out[:, 0] = noise[:, 0]
    for t in range(1, draws):
        out[:, t] = phi * out[:, t - 1] + np.sqrt(1 - phi**2) * noise[:, t]
    return out


def from_fits(folder: Path) -> dict[str, np.ndarray]:
    """The posterior of each saved fit as (chain, draw, scalar), auxiliaries left out."""
    from opinionmap.results import _read_tree

    out = {}
    for path in sorted(folder.glob("*.nc")):
        posterior = _read_tree(path)["posterior"].to_dataset()
        names = [str(n) for n in posterior.data_vars if not is_auxiliary(str(n))]
        out[path.stem] = scalar_draws(posterior, names)[1]
    return out


def with_arviz(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat, bulk ESS, tail ESS (5%, 95%) by ``arviz_stats``, one scalar at a time."""
    from arviz_stats.base import array_stats

    x = np.moveaxis(draws, (0, 1), (-2, -1))
    return (
        array_stats.rhat(x),
        array_stats.ess(x, method="bulk"),
        array_stats.ess(x, method="tail", prob=(0.05, 0.95)),
    )


def best_time(
    method: Callable[[np.ndarray], tuple[np.ndarray, ...]], draws: np.ndarray, repeats: int
) -> tuple[float, tuple[np.ndarray, ...]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = method(draws)
        times.append(time.perf_counter() - start)
    return min(times), result


def largest_difference(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    """The largest relative difference between two sets of diagnostics (NaN where both are)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return float("inf")
        ok = ~np.isnan(x)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.abs(y[ok]))))
    return worst


def main() -> None:
    args = parse_args()
    cases = (
        from_fits(args.fits) if args.fits else {name: ar1(*shape) for name, shape in SHAPES.items()}
    )
    rows, records = [], []
    for name, draws in cases.items():
        ours_s, ours = best_time(convergence, draws, args.repeats)
        arviz_s, theirs = best_time(with_arviz, draws, args.repeats)
        diff = largest_difference(ours, theirs)
        records.append(
            {
                "draws": name,
                "shape": list(draws.shape),
                "opinionmap_s": ours_s,
                "arviz_s": arviz_s,
                "ratio": ours_s / arviz_s,
                "largest_relative_difference": diff,
            }
        )
        rows.append(
            [
                name,
                "x".join(map(str, draws.shape)),
                fmt(ours_s, ".3f"),
                fmt(arviz_s, ".3f"),
                fmt(ours_s / arviz_s, ".2f"),
                f"{diff:.1e}",
            ]
        )
    header = ["draws", "chain x draw x scalar", "opinionmap s", "arviz_stats s", "ratio"]
    print_and_record(
        [*header, "max rel diff"],
        rows,
        "bench_diagnose",
        {"repeats": args.repeats, "fits": str(args.fits) if args.fits else None},
        cases=records,
    )


if __name__ == "__main__":
    main()
