"""District-level MRP against the synthetic truth: a district term against the region model.

``scripts/build_kazakhstan_data.py`` holds the true population and opinion model behind
the bundled data, down to its 216 districts (``truth_district_2020.csv``). As
``validate_mrp.py`` does, this script draws ``--replicates`` surveys from them with the
bundled survey's design (seeds 1, 2, ...; about 90 districts get respondents) and, for
each presence question, estimates every district's shares three ways:

- **district MRP**: the shipped spec (``models/<question>.toml``) with ``+ (1 | district)``
  and a BYM2 prior over the districts' borders (``district_adjacency.csv``), poststratified
  to the district frame (``frame_district_2020.csv``: the frame's cells split over the
  districts by an ASSUMED rule, as a real analyst without district populations would);
- **region MRP**: the shipped spec, poststratified to the same district frame: its district
  estimates differ only by the cells' composition (the baseline, a region-level model);
- **direct**: the design-weighted share with its design-based 90% interval (Korn-Graubard),
  for the districts with respondents; the intervals are scored only where the design gives
  the district's variance a degree of freedom (two or more sampling points in one of its
  strata, about a third of them): with one sampling point in a stratum the linearised
  variance is zero and the interval degenerate or undefined.

If the shipped spec already has a ``(1 | district)`` term, it is the district model as it
stands, and the region model is the spec without that term and its district priors.

Each estimate is compared with the true share of those answering in the district (the
specs drop "don't know"): mean absolute error and RMSE in percentage points, coverage and
mean width of the 90% intervals and the interval score (width plus 20 times any miss),
averaged over districts and answers, separately for the districts with respondents in that
replicate (those whose respondents gave an answer to the question) and those without, and
then over replicates. Both models are also poststratified by region and scored against the
regional truth, to see whether the district term helps or hurts the regional estimates.
Each fit's convergence (largest R-hat, smallest bulk ESS, divergences, by
``opinionmap.diagnostics.diagnose``) and sampling seconds are recorded.

Fitting is ``validate_mrp.py``'s: each model is coded once on every cell of the district
frame that its variables distinguish (the region model on region cells), with the counts
as data, compiled once and refitted to each replicate's counts with nutpie's ``with_data``;
``--chains`` x ``--draws`` after as many tuning steps, target acceptance 0.95, a diagonal
mass matrix for both models (nutpie's default, set explicitly; opinionmap's ``auto``
takes it for the district model, of more than 100 parameters: ``bench_adaptation.py``).
The tables end with the paired differences, replicate by replicate, of district MRP minus
region MRP. ``--report FILE`` prints the tables of a saved record without fitting. Usage::

    .venv/bin/python benchmarks/validate_districts.py [--replicates 20] [--draws 500]
        [--chains 2] [--questions presence_russia ...] [--report results/FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import validate_mrp
from common import markdown_table, results_path, write_record
from validate_mrp import (
    ALPHA,
    DATA,
    QUESTIONS,
    ROOT,
    Fitted,
    Model,
    replicate_surveys,
    scores,
    truth_answering,
)

import opinionmap as om
from opinionmap.diagnostics import diagnose
from opinionmap.direct import direct_estimates
from opinionmap.poststratification import poststratify
from opinionmap.spec import ModelSpec
from opinionmap.structure import Structure

# validate_mrp.Model codes a spec on the columns of CELLS that it uses: the district too
validate_mrp.CELLS = [*validate_mrp.CELLS, "district"]
ADJACENCY = DATA / "district_adjacency.csv"
DISTRICT_TERM = re.compile(r"\s*\+\s*\(\s*1\s*\|\s*district\s*\)")
MODELS = ("district MRP", "region MRP")
METHODS = (*MODELS, "direct", "direct, df >= 1")
INTERVAL_SCORES = ("coverage", "width", "interval score")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500, help="draws and tuning steps per chain")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--questions", nargs="+", default=list(QUESTIONS), choices=QUESTIONS)
    parser.add_argument(
        "--models", type=Path, default=ROOT / "models", help="folder of the shipped specs"
    )
    parser.add_argument(
        "--report", type=Path, help="print the tables of a saved record (results/...json) only"
    )
    return parser.parse_args()


def variants(spec: ModelSpec) -> dict[str, ModelSpec]:
    """The district and region models of a shipped spec, with or without a district term."""
    priors = spec.priors
    if "district" in {g.name for g in spec.group_terms}:
        district = spec
        region = dataclasses.replace(
            spec,
            formula=DISTRICT_TERM.sub("", spec.formula),
            priors=dataclasses.replace(
                priors,
                **{
                    key: tuple((t, v) for t, v in getattr(priors, key) if t != "district")
                    for key in ("structure", "parameterization", "group_sd_by")
                },
            ),
        )
    else:
        region = spec
        district = dataclasses.replace(
            spec,
            formula=f"{spec.formula} + (1 | district)",
            priors=dataclasses.replace(
                priors, structure=(*priors.structure, ("district", Structure("bym2", ADJACENCY)))
            ),
        )
    if "district" in region.variables:
        raise SystemExit(f"cannot strip the district from {spec.formula!r}")
    return {"district MRP": district, "region MRP": region}


class Refit(Model):
    """``validate_mrp.Model`` whose fits also report their diagnostics and seconds."""

    def timed(
        self, data: pd.DataFrame, args: argparse.Namespace, seed: int
    ) -> tuple[Fitted, dict[str, Any]]:
        """Sample the model with a survey's counts: the fit, and its convergence and time."""
        counts = self.counts(data)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        tree = self.sample(counts, args, seed, adaptation="diag")
        seconds = time.perf_counter() - start
        diagnostics = diagnose(tree, warn=False)
        fit = {
            "seconds": seconds,
            "load": load,
            "max_rhat": diagnostics.max_rhat,
            "min_ess_bulk": diagnostics.min_ess_bulk,
            "divergences": diagnostics.divergences,
            "converged": diagnostics.converged,
        }
        return Fitted(dataclasses.replace(self.template, counts=counts), tree.posterior), fit


def truth_districts() -> pd.DataFrame:
    """True shares of those answering, by district: question, district, category, share."""
    truth = pd.read_csv(DATA / "truth_district_2020.csv")
    truth = truth[truth["response"] != "dont_know"].copy()
    keys = ["question", "district"]
    truth["share"] = truth["share"] / truth.groupby(keys)["share"].transform("sum")
    return truth.rename(columns={"response": "category"}).drop(columns="region")


def table(estimates: pd.DataFrame, by: str) -> pd.DataFrame:
    """by, category, estimate, lower, upper (and the direct estimates' degrees of freedom)."""
    estimates = estimates.rename(columns={"mean": "estimate", "weighted": "estimate"})
    columns = [by, "category", "estimate", "lower", "upper"]
    out = estimates[[*columns, *(["df"] if "df" in estimates else [])]]
    return out.dropna(subset=["estimate"]).astype({by: str})


def scored(estimates: pd.DataFrame, truth: pd.DataFrame, by: str) -> dict[str, float]:
    """``validate_mrp.scores`` (which matches on region and category) by another area."""
    if by == "region":
        return scores(estimates, truth)
    return scores(estimates.rename(columns={by: "region"}), truth.rename(columns={by: "region"}))


def replicate(
    q: str,
    survey: om.Survey,
    fits: dict[str, Fitted],
    frame: om.Frame,
    truths: dict[str, pd.DataFrame],
) -> list[dict[str, Any]]:
    """One replicate's scores of one question: each method and area, by districts sampled."""
    levels = list(fits["district MRP"].design.categories)
    answers = survey.data[q].astype(str)
    sampled = set(survey.data.loc[answers.isin(levels), "district"].astype(str))
    rows = []
    for method in MODELS:
        estimates = poststratify(fits[method], frame, by=["district"])
        by_district = table(estimates.summary(prob=1 - ALPHA), "district")
        with_respondents = by_district["district"].isin(sampled)
        for scope, part in (("with", with_respondents), ("without", ~with_respondents)):
            if part.any():
                n = int(by_district.loc[part, "district"].nunique())
                figures = scored(by_district[part], truths["district"], "district")
                rows.append({"method": method, "area": "district", "respondents": scope,
                             "areas": n, **figures})  # fmt: skip
        by_region = table(poststratify(fits[method], frame, by=["region"]).summary(
            prob=1 - ALPHA), "region")  # fmt: skip
        rows.append({"method": method, "area": "region", "respondents": "all",
                     "areas": int(by_region["region"].nunique()),
                     **scored(by_region, truths["region"], "region")})  # fmt: skip
    # direct: every district with respondents for the point estimates; the intervals only
    # where the design gives the district's variance degrees of freedom (two or more
    # sampling points in a stratum): with one, the interval is degenerate or undefined
    direct = direct_estimates(survey, q, by="district", categories=levels, prob=1 - ALPHA)
    by_district = table(direct, "district")
    point = scored(by_district.assign(lower=0.0, upper=1.0), truths["district"], "district")
    point.update(dict.fromkeys(INTERVAL_SCORES, float("nan")))
    rows.append({"method": "direct", "area": "district", "respondents": "with",
                 "areas": by_district["district"].nunique(), **point})  # fmt: skip
    defined = by_district[by_district["df"] >= 1].dropna()
    if len(defined):
        rows.append({"method": "direct, df >= 1", "area": "district", "respondents": "with",
                     "areas": defined["district"].nunique(),
                     **scored(defined, truths["district"], "district")})  # fmt: skip
    return rows


def main() -> None:
    args = parse_args()
    if args.report:
        record = json.loads(args.report.read_text())
        args.questions = record["settings"]["questions"]
        report(pd.DataFrame(record["records"]), pd.DataFrame(record["fits"]), args)
        return
    bundled = om.read_survey(DATA / "survey_2020.csv")
    frame = om.read_frame(DATA / "frame_district_2020.csv")
    truth_region, truth_district = truth_answering(), truth_districts()
    models: dict[str, dict[str, Refit]] = {}
    specs: dict[str, dict[str, str]] = {}
    compile_s: dict[str, dict[str, float]] = {}
    for q in args.questions:
        models[q], specs[q], compile_s[q] = {}, {}, {}
        for name, spec in variants(om.read_spec(args.models / f"{q}.toml")).items():
            start = time.perf_counter()
            models[q][name] = Refit(spec, frame.data, bundled)
            compile_s[q][name] = time.perf_counter() - start
            structure = {t: s.to_entry() for t, s in spec.priors.structure}
            specs[q][name] = f"{spec.formula}; structure {structure}"
            print(f"{q}, {name}: {specs[q][name]} ({compile_s[q][name]:.0f} s)", flush=True)
    records: list[dict[str, Any]] = []
    fit_records: list[dict[str, Any]] = []
    out = results_path("validate_districts")
    start = time.perf_counter()
    for r, survey in replicate_surveys(args.replicates):
        for i, q in enumerate(args.questions):
            fits = {}
            for j, name in enumerate(MODELS):
                seed = 1000 * r + i + 500 * j
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fits[name], fit = models[q][name].timed(survey.data, args, seed)
                fit_records.append({"replicate": r, "question": q, "model": name, **fit})
            truths = {
                "district": truth_district[truth_district["question"] == q],
                "region": truth_region[truth_region["question"] == q],
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = replicate(q, survey, fits, frame, truths)
            records += [{"replicate": r, "question": q, **row} for row in rows]
        wall_s = time.perf_counter() - start
        # kept after every replicate, so that a run stopped early keeps what it did
        write_record(out, vars(args), replicates_done=r, specs=specs, compile_s=compile_s,
                     wall_s=wall_s, records=records, fits=fit_records)  # fmt: skip
        print(f"replicate {r}: {wall_s:.0f} s", flush=True)
    report(pd.DataFrame(records), pd.DataFrame(fit_records), args)
    print(f"wrote {out}")


def report(results: pd.DataFrame, fits: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the district table, and the regional one with each model's fits."""
    keys = ["question", "area", "respondents", "method"]
    grouped = results.groupby(keys, sort=False)
    mean, sd = grouped.mean(numeric_only=True), grouped.std(numeric_only=True)

    def figures(key: tuple[str, ...]) -> list[str]:
        m, s = mean.loc[key], sd.loc[key]
        if np.isnan(m["coverage"]):  # direct estimates without an interval
            return [f"{m['MAE']:.2f} ({s['MAE']:.2f})", f"{m['RMSE']:.2f}", "-", "-", "-"]
        return [
            f"{m['MAE']:.2f} ({s['MAE']:.2f})",
            f"{m['RMSE']:.2f}",
            f"{m['coverage']:.2f} ({s['coverage']:.2f})",
            f"{m['width']:.1f}",
            f"{m['interval score']:.1f}",
        ]

    header = ["MAE pp (sd)", "RMSE pp", "90% coverage (sd)", "width pp", "interval score pp"]
    rows = []
    for q in args.questions:
        for scope in ("with", "without"):
            for method in METHODS:
                key = (q, "district", scope, method)
                if key in mean.index:
                    areas = f"{scope} ({mean.loc[key, 'areas']:.0f})"
                    rows.append([q, areas, method, *figures(key)])
    print("By district (respondents: with or without, mean number of districts):")
    print(markdown_table(["question", "respondents", "method", *header], rows))
    by_fit = fits.groupby(["question", "model"], sort=False)
    rows = []
    for q in args.questions:
        for model in MODELS:
            f = by_fit.get_group((q, model))
            rows.append(
                [
                    q,
                    model,
                    *figures((q, "region", "all", model)),
                    f"{f['max_rhat'].max():.3f}",
                    f"{f['min_ess_bulk'].min():.0f}",
                    f"{int(f['divergences'].sum())}",
                    f"{int(f['converged'].sum())} of {len(f)}",
                    f"{f['seconds'].median():.1f}",
                ]
            )
    print("By region, and the fits (worst over replicates; divergences summed):")
    fit_header = ["worst R-hat", "min bulk ESS", "divergences", "converged", "median s"]
    print(markdown_table(["question", "model", *header, *fit_header], rows))
    # paired by replicate: district MRP minus region MRP
    wide = results[results["method"].isin(MODELS)].pivot_table(
        index=["question", "area", "respondents", "replicate"], columns="method"
    )
    rows = []
    for q in args.questions:
        row = [q]
        for area, scope in (("district", "with"), ("district", "without"), ("region", "all")):
            part = wide.loc[(q, area, scope)]
            for metric in ("MAE", "interval score"):
                d = part[(metric, "district MRP")] - part[(metric, "region MRP")]
                se = d.std() / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                row.append(f"{d.mean():+.2f} ({se:.2f})")
        rows.append(row)
    print("District MRP minus region MRP, paired by replicate: mean (se), pp:")
    paired = [f"{m}, {a}" for a in ("with", "without", "regions") for m in ("MAE", "IS")]
    print(markdown_table(["question", *paired], rows))


if __name__ == "__main__":
    main()
