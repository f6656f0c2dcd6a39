"""Simulation-based calibration (SBC) of each family's model with a varying intercept.

For each family (categorical with 3 answers, ordinal with 3, bernoulli) and each of
``--sims`` simulations: draw every parameter from the model's prior, simulate the
answers of a survey of fixed cells (``x`` with 2 levels x ``g`` with 8 levels, 25
respondents per cell), fit the same model to them, and rank each parameter's true
value among ``--ranks`` thinned posterior draws (Talts, Betancourt, Simpson, Vehtari
and Gelman 2018). If the model and the sampler compute the posterior correctly, every
parameter's ranks are uniform on 0..``--ranks``; the script tests that with a
chi-square test on 10 bins per parameter (and over all of a family's parameters) and
draws the rank histograms.

The model is opinionmap's own (``opinionmap.model.build_model``) with the counts held
as data (``counts_as_data=True``), compiled once per family and refitted to each
simulated survey with nutpie (``compiled.with_data``) at the package's target
acceptance (0.95); ``g`` is non-centred (a fixed parameterisation keeps one compiled
model; it changes the geometry, not the posterior). Usage::

    .venv/bin/python benchmarks/sbc.py [--sims 100] [--ranks 99] [--draws 500] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import nutpie
import pandas as pd
import pymc as pm
from common import HERE, markdown_table, results_path, write_record
from scipy import stats

from opinionmap.design import build_design
from opinionmap.model import build_model
from opinionmap.plan import make_plan
from opinionmap.predict import Draws, linear_predictor, probabilities
from opinionmap.spec import DEFAULT_SAMPLING, ModelSpec, Priors

ROOT = HERE.parent
FAMILIES = {
    "categorical": ("no", "yes", "unsure"),
    "ordinal": ("less", "same", "more"),
    "bernoulli": ("no", "yes"),
}
PER_CELL = 25
BINS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=100, help="simulations per family")
    parser.add_argument(
        "--ranks", type=int, default=99, help="thinned draws each truth is ranked in"
    )
    parser.add_argument("--draws", type=int, default=500, help="draws per chain (2 chains)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    return parser.parse_args()


def cells(levels: tuple[str, ...]) -> pd.DataFrame:
    """The fixed survey: every x x g cell with PER_CELL respondents (answers overwritten)."""
    grid = pd.MultiIndex.from_product(
        [["a", "b"], [f"g{i}" for i in range(8)]], names=["x", "g"]
    ).to_frame(index=False)
    rows = grid.loc[grid.index.repeat(PER_CELL)].reset_index(drop=True)
    # every answer present so the design accepts the levels; replaced by simulated counts
    return rows.assign(y=np.resize(levels, len(rows)))


def scalars(posterior: pd.DataFrame | object, names: list[str]) -> dict[str, np.ndarray]:
    """Each scalar parameter's draws, flattened over (chain, draw): ``{label: (S,)}``."""
    out = {}
    for name in names:
        da = posterior[name]  # type: ignore[index]
        values = da.stack(sample=("chain", "draw")).transpose("sample", ...).values
        values = values.reshape(values.shape[0], -1)
        for j in range(values.shape[1]):
            out[f"{name}[{j}]" if values.shape[1] > 1 else name] = values[:, j]
    return out


def run_family(family: str, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    levels = FAMILIES[family]
    spec = ModelSpec(
        formula="y ~ 1 + x + (1 | g)",
        family=family,  # type: ignore[arg-type]
        levels=levels,
        priors=Priors(parameterization=(("g", "noncentered"),)),
    )
    design = build_design(spec, cells(levels))
    plan = make_plan(design)
    model = build_model(design, plan, counts_as_data=True)
    names = [
        n for n in ("Intercept", "cutpoints", "beta", "sigma_g", "u_g") if n in model.named_vars
    ]
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
        prior = pm.sample_prior_predictive(draws=args.sims, random_seed=rng)["prior"]
    prior = prior.to_dataset() if hasattr(prior, "to_dataset") else prior
    if "cutpoints" in prior:  # forward sampling ignores the ordering transform
        prior["cutpoints"] = prior["cutpoints"].copy(data=np.sort(prior["cutpoints"].values, -1))
    truth = scalars(prior, names)
    truth_draws = Draws.from_posterior(prior, design)
    n_cell = design.counts.sum(axis=1)
    ranks: dict[str, list[int]] = {k: [] for k in truth}
    divergent = 0
    start = time.perf_counter()
    for s in range(args.sims):
        one = truth_draws.subset(slice(s, s + 1))
        p = probabilities(design, linear_predictor(one, design), one)[0]
        counts = np.stack(
            [rng.multinomial(n, row / row.sum()) for n, row in zip(n_cell, p, strict=True)]
        )
        fit = nutpie.sample(
            compiled.with_data(counts=counts.astype(float)),
            draws=args.draws,
            tune=args.draws,
            chains=2,
            seed=int(rng.integers(2**31)),
            progress_bar=False,
            target_accept=DEFAULT_SAMPLING["target_accept"],
        )
        divergent += int(fit.sample_stats["diverging"].sum())
        posterior = scalars(fit.posterior, names)
        keep = np.linspace(0, 2 * args.draws - 1, args.ranks).round().astype(int)
        for label, values in posterior.items():
            ranks[label].append(int((values[keep] < truth[label][s]).sum()))
    sample_s = time.perf_counter() - start
    return {
        "family": family,
        "ranks": ranks,
        "divergent": divergent,
        "compile_s": compile_s,
        "sample_s": sample_s,
    }


def uniformity(ranks: list[int], n_ranks: int) -> tuple[float, float]:
    """Chi-square statistic and p-value of the ranks' histogram on BINS equal bins."""
    counts, _ = np.histogram(ranks, bins=BINS, range=(0, n_ranks + 1))
    expected = np.full(BINS, len(ranks) / BINS)
    chi2, p = stats.chisquare(counts, expected)
    return float(chi2), float(p)


def plot(results: list[dict], n_ranks: int, path: Path) -> None:
    """One histogram per parameter (of ``u_g``, the first three levels) and family."""
    shown = [
        {k: v for k, v in r["ranks"].items() if not k.startswith("u_g") or int(k[4:-1]) < 3}
        for r in results
    ]
    width = max(len(s) for s in shown)
    fig, axes = plt.subplots(
        len(results), width, figsize=(1.6 * width, 1.7 * len(results)), squeeze=False
    )
    for row, result, ranks_shown in zip(axes, results, shown, strict=True):
        for ax in row:
            ax.set_axis_off()
        for ax, (label, ranks) in zip(row, ranks_shown.items(), strict=False):
            ax.set_axis_on()
            ax.hist(ranks, bins=BINS, range=(0, n_ranks + 1), color="tab:blue", alpha=0.7)
            n = len(ranks)
            band = stats.binom.interval(0.99, n, 1 / BINS)
            ax.axhspan(*band, color="grey", alpha=0.25, lw=0)
            ax.set_title(f"{result['family'][:4]} {label}", fontsize=7)
            ax.set_yticks([])
            ax.set_xticks([])
    fig.suptitle("SBC rank histograms (grey: 99% band of a uniform histogram)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    results = [run_family(f, args, rng) for f in args.families]
    rows = []
    summary = []
    for result in results:
        all_ranks = [r for ranks in result["ranks"].values() for r in ranks]
        _, p_all = uniformity(all_ranks, args.ranks)
        tests = {label: uniformity(r, args.ranks) for label, r in result["ranks"].items()}
        worst = min(tests, key=lambda k: tests[k][1])
        rows.append(
            [
                result["family"],
                str(len(tests)),
                f"{p_all:.3f}",
                f"{min(p for _, p in tests.values()):.3f} ({worst})",
                str(sum(p < 0.01 for _, p in tests.values())),
                str(result["divergent"]),
                f"{result['compile_s']:.1f}",
                f"{result['sample_s']:.0f}",
            ]
        )
        summary.append(
            {
                "family": result["family"],
                "p_all": p_all,
                "tests": tests,
                "divergent": result["divergent"],
                "ranks": result["ranks"],
            }
        )
    header = [
        "family",
        "parameters",
        "p (all ranks)",
        "smallest p (parameter)",
        "p < 0.01",
        "divergent transitions",
        "compile s",
        "sampling s",
    ]
    print(markdown_table(header, rows))
    figure = ROOT / "docs" / "sbc_ranks.png"
    plot(results, args.ranks, figure)
    out = results_path("sbc")
    write_record(out, vars(args), families=summary)
    print(f"wrote {figure} and {out}")


if __name__ == "__main__":
    main()
