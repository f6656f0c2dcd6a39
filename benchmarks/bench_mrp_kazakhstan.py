"""MRP against the truth on the bundled Kazakhstan data: error and coverage by region.

Usage::

    .venv/bin/python benchmarks/bench_mrp_kazakhstan.py [--draws 1000] [--chains 4]

For each presence question, fits the standard MRP model (categorical, with
"don't know" as a category so the estimates compare directly with
``truth_2020.csv``), poststratifies to the bundled frame by region and prints,
against the true regional shares: the mean absolute error of MRP, of the raw
and of the design-weighted direct estimates, their ratio, and the share of
region x category cells whose true value lies inside the 90% MRP interval.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import opinionmap as om
from opinionmap.covariates import AreaCovariates
from opinionmap.direct import direct_estimates
from opinionmap.fitting import fit
from opinionmap.poststratification import poststratify
from opinionmap.spec import ModelSpec

QUESTIONS = ["presence_russia", "presence_usa", "presence_china", "presence_eu", "presence_muslim"]
LEVELS = ("less", "same", "more", "dont_know")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--questions", nargs="*", default=QUESTIONS)
    args = parser.parse_args()

    covariates = AreaCovariates(
        om.datasets.data_dir() / "kazakhstan" / "region_covariates_2020.csv", ("region",)
    )
    survey = om.read_survey(om.datasets.kazakhstan_survey_path())
    data = survey.data
    frame = pd.read_csv(om.datasets.kazakhstan_frame_path())
    truth = pd.read_csv(om.datasets.kazakhstan_truth_path()).rename(
        columns={"response": "category"}
    )
    rows = []
    for question in args.questions:
        spec = ModelSpec(
            formula=f"{question} ~ 1 + sex + settlement + russian_share + (1 | age) "
            "+ (1 | ethnicity) + (1 | region) + (1 | region:ethnicity)",
            family="categorical",
            levels=LEVELS,
            covariates=covariates,
        )
        start = time.perf_counter()
        result = fit(
            spec,
            survey,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            random_seed=2020,
            progress=False,
            warn=False,
        )
        seconds = time.perf_counter() - start
        mrp = poststratify(result, frame, by=["region"]).summary(prob=0.9)
        direct = direct_estimates(
            data, question, by="region", categories=LEVELS, missing=(), weight="weight"
        )[["region", "category", "raw", "weighted"]]
        t = truth[truth["question"] == question][["region", "category", "share"]]
        m = mrp.merge(t, on=["region", "category"]).merge(direct, on=["region", "category"])
        mae = {k: (m[k] - m["share"]).abs().mean() for k in ("mean", "raw", "weighted")}
        coverage = ((m["lower"] <= m["share"]) & (m["share"] <= m["upper"])).mean()
        rows.append(
            {
                "question": question,
                "MAE MRP (pp)": 100 * mae["mean"],
                "MAE raw (pp)": 100 * mae["raw"],
                "MAE weighted (pp)": 100 * mae["weighted"],
                "MRP / weighted": mae["mean"] / mae["weighted"],
                "90% coverage": coverage,
                "fit s": seconds,
                "verdict": "converged" if result.diagnostics.converged else "NOT converged",
            }
        )
        print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False), flush=True)
    print()
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
