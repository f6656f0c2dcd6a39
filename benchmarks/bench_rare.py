"""Rare answers merged into one category against every answer its own category.

On the bundled categorical questions, with ``[outcome] merge_below``.

For main_friend, main_enemy and model_country (4 chains, each spec's draws and
tuning), the shipped spec and the same with ``merge_below = --below``, fitted at
``--seeds``:

- convergence by the package's criteria, divergences and seconds (the first fit of a
  model compiles it);
- PSIS-LOO on the merged categories: the full model's log-likelihood of a merged
  answer is that of the merged category, ``log sum_k p_k`` over its answers, so both
  models predict the same outcomes (elpd difference and its SE, first seed);
- the error against the bundled truth (``truth_2020.csv``): each region's shares of
  the merged categories, the full model's merged answers summed draw by draw; mean
  absolute error in percentage points and the coverage of the 90% intervals.

Usage::

    .venv/bin/python benchmarks/bench_rare.py [--below 20] [--seeds 2026 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from bench_structure import ROOT, timed_fit
from common import print_and_record
from scipy.special import logsumexp

import opinionmap as om
from opinionmap.predict import linear_predictor, log_probabilities

QUESTIONS = ("main_friend", "main_enemy", "model_country")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--below", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 1, 2])
    return parser.parse_args()


def merged_loo(result: om.FitResult, recode: dict[str, str]) -> Any:
    """PSIS-LOO of a full model on the merged categories (respondent level)."""
    design = result.design
    draws = result.draws()
    logp = log_probabilities(design, linear_predictor(draws, design), draws)  # (S, cells, K)
    merged = [k for k, c in enumerate(design.categories) if c in recode]
    answers = np.asarray(design.categories)[design.respondent_response]
    values = logp[:, design.respondent_cell, design.respondent_response]
    is_merged = np.isin(answers, list(recode))
    combined = logsumexp(logp[:, :, merged], axis=2)  # (S, cells)
    values[:, is_merged] = combined[:, design.respondent_cell[is_merged]]
    posterior = result.posterior
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], -1)
    ll = xr.DataArray(values.reshape(shape), dims=("chain", "draw", "respondent"))
    tree = result.tree.copy()
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({design.spec.outcome: ll}))
    return dataclasses.replace(result, tree=tree).loo()


def truth_errors(
    result: om.FitResult, recode: dict[str, str], truth: pd.DataFrame, frame: Any
) -> dict[str, float]:
    """Mean absolute error (pp) and 90% coverage by region on the merged categories."""
    est = om.poststratify(result, frame, by="region")
    draws = est.draws
    labels = [recode.get(str(c), str(c)) for c in draws["category"].values]
    merged = draws.assign_coords(category=labels).groupby("category").sum()
    table = om.summarise_draws(merged, prob=0.9)
    t = truth.assign(category=truth["category"].replace(recode))
    t = t.groupby(["region", "category"], as_index=False)["share"].sum()
    both = table.astype({"region": str}).merge(t, on=["region", "category"])
    inside = (both["lower"] <= both["share"]) & (both["share"] <= both["upper"])
    return {"MAE": 100 * float((both["mean"] - both["share"]).abs().mean()),
            "coverage": float(inside.mean()), "cells": len(both)}  # fmt: skip


def main() -> None:
    args = parse_args()
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    frame = om.read_frame(ROOT / "data" / "kazakhstan" / "frame_2020.csv")
    truth = pd.read_csv(ROOT / "data" / "kazakhstan" / "truth_2020.csv")
    truth = truth.rename(columns={"response": "category"})
    rows, records = [], []
    for question in QUESTIONS:
        shipped = om.read_spec(ROOT / "models" / f"{question}.toml")
        merged = dataclasses.replace(shipped, merge_below=args.below)
        recode = om.build_design(merged, survey).recode
        if not recode:
            print(f"{question}: no two answers below {args.below}; nothing to compare")
            continue
        q_truth = truth[truth["question"] == question]
        for name, spec in (("shipped", shipped), (f"merge_below = {args.below}", merged)):
            for i, seed in enumerate(args.seeds):
                result, seconds = timed_fit(spec, survey, seed)
                record: dict[str, Any] = {
                    "question": question, "model": name, "seed": seed, "seconds": seconds,
                    "converged": result.converged,
                    "divergences": result.diagnostics.divergences,
                    "max r_hat": float(result.diagnostics.table["r_hat"].max()),
                    "merged": list(recode),
                }  # fmt: skip
                if i == 0:
                    loo = merged_loo(result, recode) if name == "shipped" else result.loo()
                    record |= {"elpd": loo.elpd, "elpd se": loo.se,
                               "elpd_i": loo.elpd_i.values.tolist()}  # fmt: skip
                    record |= truth_errors(result, recode, q_truth, frame)
                records.append(record)
                print({k: v for k, v in record.items() if k != "elpd_i"}, flush=True)
    table = pd.DataFrame(records)
    for question, group in table.groupby("question", sort=False):
        base = group[(group["model"] == "shipped") & group["elpd"].notna()].iloc[0]
        for name, runs in group.groupby("model", sort=False):
            first = runs[runs["elpd"].notna()].iloc[0]
            diff = np.asarray(first["elpd_i"]) - np.asarray(base["elpd_i"])
            delta = (
                "-"
                if name == "shipped"
                else f"{diff.sum():+.1f} ({np.sqrt(len(diff) * diff.var(ddof=1)):.1f})"
            )
            rows.append([str(question), str(name), f"{first['elpd']:.1f}", delta,
                         f"{first['MAE']:.2f}", f"{first['coverage']:.2f}",
                         f"{int(runs['converged'].sum())} of {len(runs)}",
                         ", ".join(str(int(d)) for d in runs["divergences"]),
                         ", ".join(f"{s:.0f}" for s in runs["seconds"])])  # fmt: skip
    header = ["question", "model", "elpd_loo (merged)", "vs shipped (se)", "MAE pp",
              "90% coverage", "converged", "divergences", "s"]  # fmt: skip
    print_and_record(header, rows, "bench_rare", vars(args), fits=records)


if __name__ == "__main__":
    main()
