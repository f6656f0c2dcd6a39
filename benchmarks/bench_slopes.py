"""Varying slopes, ``(1 + x | g)``, against varying intercepts alone.

Three parts, each printed as a table and recorded in ``benchmarks/results/``:

- ``recovery``: simulated surveys with known parameters, ``--replicates`` per family
  (bernoulli, ordinal with three answers, categorical with three answers): 2,500
  respondents in 25 levels, an urban/rural dummy whose slope varies by level, level
  intercepts and slopes drawn with SDs 0.5 and 0.7 and correlation -0.5 (per linear
  predictor for the categorical model). Fitted with the package's defaults (nutpie,
  4 chains x 1,000 draws after 1,000 tuning steps): the share of 90% intervals that
  cover the true level effects, SDs and correlations, convergence by the package's
  criteria, and seconds against the intercept-only model on the same data.
- ``real``: the 2011 Canadian Election Study (``carData/CES11``; importance of
  religion, ordinal; abortion, bernoulli) with ``(1 + urban | province)`` against
  ``(1 | province)``, and Chile's vote intention (``carData/Chile``, categorical with
  four answers) with ``(1 + sex | region)`` against ``(1 | region)``: PSIS-LOO, its
  difference and SE, convergence, seconds (the first fit of a model compiles it).
- ``bundled``: the five presence questions of the bundled Kazakhstan survey, shipped
  spec against the same with ``(1 + settlement | region)``: LOO, convergence, seconds.

Errors against the synthetic truth over replicate surveys come from ``validate_mrp.py
--models DIR/slopes`` on the folder ``--write-variants DIR`` writes, compared with the
shipped specs' run by ``compare_validations.py``.

Usage::

    .venv/bin/python benchmarks/bench_slopes.py [--part recovery|real|bundled|all]
        [--replicates 10] [--seed 2026]
    .venv/bin/python benchmarks/bench_slopes.py --write-variants DIR
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_structure import (
    QUESTIONS,
    ROOT,
    canada_data,
    chile_data,
    compare_loo,
    covered,
    timed_fit,
)
from common import print_and_record
from scipy.special import expit, softmax

import opinionmap as om
from opinionmap.spec import ModelSpec

N, LEVELS_G, SD, COR = 2500, 25, (0.5, 0.7), -0.5
ANSWERS = ("a", "b", "c")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("recovery", "real", "bundled", "all"), default="all")
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--write-variants", type=Path, metavar="DIR", help="write the bundled variants' specs"
    )
    return parser.parse_args()


def simulate(family: str, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A survey whose level intercepts and urban slopes are known; the drawn truth."""
    width = 2 if family == "categorical" else 1
    cov = np.outer(SD, SD) * np.array([[1.0, COR], [COR, 1.0]])
    u = np.stack([rng.multivariate_normal([0.0, 0.0], cov, LEVELS_G) for _ in range(width)], -1)
    u -= u.mean(axis=0)  # (levels, coefs, predictors), summing to zero as the model's do
    g = rng.integers(0, LEVELS_G, N)
    urban = rng.integers(0, 2, N)
    eta = 0.4 * urban[:, None] + u[g, 0] + u[g, 1] * urban[:, None]  # (n, predictors)
    if family == "bernoulli":
        y = np.where(rng.random(N) < expit(eta[:, 0] - 0.2), "yes", "no")
    elif family == "ordinal":
        latent = eta[:, 0] + rng.logistic(size=N)
        y = np.array(ANSWERS)[(latent[:, None] > np.array([-0.6, 0.8])).sum(axis=1)]
    else:
        p = softmax(np.column_stack([np.zeros(N), eta + np.array([0.2, -0.3])]), axis=1)
        y = np.array(ANSWERS)[(p.cumsum(axis=1) < rng.random(N)[:, None]).sum(axis=1)]
    data = pd.DataFrame({"y": y, "g": [f"g{i:02d}" for i in g],
                         "s": np.where(urban == 1, "urban", "rural")})  # fmt: skip
    # the truth as drawn: the effects, their SDs and correlation per predictor
    sd = u.std(axis=0, ddof=1)  # (coefs, predictors)
    cor = np.array([np.corrcoef(u[:, :, k].T)[0, 1] for k in range(width)])
    return data, {"u": u, "sd": sd, "cor": cor}


def part_recovery(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    runs: list[dict[str, Any]] = []
    for family in ("bernoulli", "ordinal", "categorical"):
        levels = ("no", "yes") if family == "bernoulli" else ANSWERS
        sloped = ModelSpec("y ~ 1 + s + (1 + s | g)", family, levels)
        plain = ModelSpec("y ~ 1 + s + (1 | g)", family, levels)
        for r in range(args.replicates):
            data, truth = simulate(family, rng)
            seed = int(rng.integers(2**31))
            result, seconds = timed_fit(sloped, data, seed)
            _, plain_seconds = timed_fit(plain, data, seed)
            post = result.posterior
            cat = ["category"] if family == "categorical" else []
            u = post["u_g"].transpose("chain", "draw", "g", "g_coef", *cat).values
            u = u.reshape(-1, *truth["u"].shape)
            sd = post["sigma_g"].transpose("chain", "draw", "g_coef", *cat).values
            sd = sd.reshape(-1, *truth["sd"].shape)
            cor = post["cor_g"].sel(g_coef="Intercept", g_coef_="s[urban]")
            cor = cor.transpose("chain", "draw", *cat).values.reshape(-1, len(truth["cor"]))
            runs.append({"family": family, "replicate": r, "converged": result.converged,
                         "seconds": seconds, "intercept-only seconds": plain_seconds,
                         "effects": float(covered(u, truth["u"]).mean()),
                         "sds": float(covered(sd, truth["sd"]).mean()),
                         "cors": float(covered(cor, truth["cor"]).mean()),
                         "n_sd": int(truth["sd"].size),
                         "n_cor": int(truth["cor"].size)})  # fmt: skip
            print(runs[-1], flush=True)
    table = pd.DataFrame(runs)
    rows = []
    for family, group in table.groupby("family", sort=False):
        ratio = group["seconds"] / group["intercept-only seconds"]
        n_effects = len(group) * 2 * LEVELS_G * int(group["n_cor"].iloc[0])
        rows.append([str(family), str(len(group)), f"{group['effects'].mean():.3f} ({n_effects})",
                     f"{group['sds'].mean():.2f} ({int(group['n_sd'].sum())})",
                     f"{group['cors'].mean():.2f} ({int(group['n_cor'].sum())})",
                     f"{group['converged'].mean():.2f}",
                     f"{group['seconds'].median():.1f}",
                     f"{group['intercept-only seconds'].median():.1f}",
                     f"{ratio.median():.2f}"])  # fmt: skip
    header = ["family", "replicates", "90% coverage: effects (n)", "SDs (n)",
              "correlations (n)", "converged", "median s", "median s (1 | g)",
              "time ratio"]  # fmt: skip
    print_and_record(header, rows, "bench_slopes_recovery", vars(args), runs=runs)


def part_real(args: argparse.Namespace) -> None:
    df = canada_data()
    variants = {}
    for outcome, family, levels in (
        ("importance", "ordinal", ("not", "notvery", "somewhat", "very")),
        ("abortion", "bernoulli", ("No", "Yes")),
    ):
        formula = f"{outcome} ~ 1 + gender + urban + (1 | education) + (1 | province)"
        base = ModelSpec(formula, family, levels)
        sloped = formula.replace("(1 | province)", "(1 + urban | province)")
        variants[f"CES11 {outcome}"] = {
            "(1 | province)": base,
            "(1 + urban | province)": dataclasses.replace(base, formula=sloped),
        }
    compare_loo(variants, df, args, "bench_slopes_real_ces11")
    chile = chile_data()
    base = ModelSpec("vote ~ 1 + sex + education + (1 | region)", "categorical",
                     ("N", "Y", "U", "A"))  # fmt: skip
    sloped = dataclasses.replace(base, formula=base.formula.replace("(1 |", "(1 + sex |"))
    variants = {"Chile vote": {"(1 | region)": base, "(1 + sex | region)": sloped}}
    compare_loo(variants, chile, args, "bench_slopes_real_chile")


def bundled_variants(question: str) -> dict[str, ModelSpec]:
    spec = om.read_spec(ROOT / "models" / f"{question}.toml")
    sloped = spec.formula.replace("(1 | region)", "(1 + settlement | region)")
    return {"shipped": spec, "(1 + settlement | region)": dataclasses.replace(spec, formula=sloped)}


def part_bundled(args: argparse.Namespace) -> None:
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    variants = {question: bundled_variants(question) for question in QUESTIONS}
    compare_loo(variants, survey, args, "bench_slopes_bundled")


def write_variants(folder: Path) -> None:
    """The sloped bundled specs as a folder for ``validate_mrp.py --models``."""
    (folder / "slopes").mkdir(parents=True, exist_ok=True)
    for question in QUESTIONS:
        bundled_variants(question)["(1 + settlement | region)"].to_toml(
            folder / "slopes" / f"{question}.toml"
        )
    print(f"wrote {folder / 'slopes'}")


def main() -> None:
    args = parse_args()
    if args.write_variants is not None:
        write_variants(args.write_variants)
        return
    if args.part in ("recovery", "all"):
        part_recovery(args)
    if args.part in ("real", "all"):
        part_real(args)
    if args.part in ("bundled", "all"):
        part_bundled(args)


if __name__ == "__main__":
    main()
