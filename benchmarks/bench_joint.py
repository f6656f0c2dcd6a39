"""One joint model of five questions against five separate fits: time, truth, LOO.

On the bundled survey (a synthetic Kazakhstan whose true shares are known,
``data/kazakhstan/truth_*.csv``), in one process, with one seed and the spec's sampling
settings:

- **joint**: ``models/presence_joint.toml``, one model of the five presence questions
  (area effects correlated across the questions, a respondent trait);
- **separate**: each question alone with the same right-hand side, answers, priors and
  settings (:func:`opinionmap.fit`).

Figures:

- **time**: each fit's wall seconds (design, compiling, sampling, the log-likelihood)
  with the compile caches as found (run it twice for warm caches; set
  ``PYTENSOR_FLAGS=base_compiledir=<empty dir>`` for cold ones), and its verdict;
- **marginal shares**: each question's shares of those answering by region against the
  true shares (``truth_2020.csv`` without "don't know", renormalised): mean absolute
  error in points and the coverage of the 90% intervals, joint against separate;
- **pair shares**: for every pair of questions and every pair of answers, the share by
  region giving both (``truth_joint_2020.csv`` renormalised over pairs of substantive
  answers): the joint model's against the separate models' product of marginals
  (draw by draw, their posteriors being independent), mean absolute error and coverage;
- **correlations**: the region effects' correlations across the questions against the
  correlation of the 17 drawn true region effects (``truth_correlations_2020.csv``,
  ``region_effect_drawn``): posterior mean and 90% interval;
- **LOO**: PSIS-LOO over respondents, a respondent's point being all their answers: the
  joint model's against the separate models' pointwise log-likelihoods of the same
  respondents summed over the questions, with the difference's standard error.

Usage::

    .venv/bin/python benchmarks/bench_joint.py [--seed 2020] [--fits DIR [--reuse]]
        [--spec models/presence_joint.toml]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace
from itertools import combinations, product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from common import HERE, print_and_record

import opinionmap as om
from opinionmap.joint import (
    JointResult,
    fit_joint,
    load_joint,
    poststratify_joint,
    read_joint_spec,
)
from opinionmap.predict import Draws, linear_predictor, log_probabilities

ROOT = HERE.parent
DATA = ROOT / "data" / "kazakhstan"
PROB = 0.9


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--spec", type=Path, default=ROOT / "models" / "presence_joint.toml")
    parser.add_argument(
        "--fits", type=Path, help="save the fits here; with --reuse, read them from here"
    )
    parser.add_argument("--reuse", action="store_true", help="read the fits --fits saved")
    return parser.parse_args()


def timed(what: str, run: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run()
    seconds = time.perf_counter() - start
    print(f"{what}: {seconds:.1f} s", flush=True)
    return out, seconds


def interval(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The equal-tailed ``PROB`` interval of draws on axis 0."""
    tail = (1.0 - PROB) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return low, high


def scored(draws: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean absolute error (points) of the posterior means, and the intervals' coverage."""
    low, high = interval(draws)
    return {
        "mae_points": float(np.mean(np.abs(draws.mean(axis=0) - truth)) * 100),
        "coverage": float(np.mean((low <= truth) & (truth <= high))),
        "n": int(truth.size),
    }


def true_marginals(levels: tuple[str, ...]) -> pd.DataFrame:
    """True shares of those answering: (question, region) x answer."""
    truth = pd.read_csv(DATA / "truth_2020.csv")
    truth = truth[truth["response"].isin(levels)]
    wide = truth.pivot_table(index=["question", "region"], columns="response", values="share")
    return wide[list(levels)].div(wide[list(levels)].sum(axis=1), axis=0)


def true_pairs(levels: tuple[str, ...]) -> pd.Series:
    """True shares giving both answers, of those answering both: by (region, qa, a, qb, b)."""
    truth = pd.read_csv(DATA / "truth_joint_2020.csv")
    truth = truth[truth["response_a"].isin(levels) & truth["response_b"].isin(levels)]
    total = truth.groupby(["region", "question_a", "question_b"])["share"].transform("sum")
    keys = ["region", "question_a", "response_a", "question_b", "response_b"]
    return truth.assign(share=truth["share"] / total).set_index(keys)["share"]


def separate_draws(fit: om.FitResult, frame: om.Frame, levels: tuple[str, ...]) -> xr.DataArray:
    """A separate fit's shares by region, (sample, region, answer)."""
    draws = om.poststratify(fit, frame, by=["region"]).draws
    return (
        draws.stack(sample=("chain", "draw"))
        .transpose("sample", "region", "category")
        .sel(category=list(levels))
    )


def marginal_rows(
    joint: JointResult, separate: dict[str, om.FitResult], frame: om.Frame
) -> tuple[list[dict[str, Any]], dict[str, xr.DataArray]]:
    """Each question's shares by region against the truth, joint and separate."""
    spec = joint.spec
    levels = spec.base.levels
    truth = true_marginals(levels)
    est = poststratify_joint(joint, frame, by="region")
    regions = est.groups["region"].tolist()
    rows, by_question = [], {}
    for k, q in enumerate(spec.outcomes):
        true = truth.loc[q].loc[regions].to_numpy()  # (region, answer)
        sep = separate_draws(separate[q], frame, levels).sel(region=regions)
        by_question[q] = sep
        rows.append({"question": q, "model": "joint", **scored(est.shares.values[:, :, k], true)})
        rows.append({"question": q, "model": "separate", **scored(sep.values, true)})
    return rows, by_question


def pair_rows(
    joint: JointResult, separate: dict[str, xr.DataArray], frame: om.Frame
) -> list[dict[str, Any]]:
    """Every pair's shares giving both answers by region: joint, and product of marginals."""
    spec = joint.spec
    levels = spec.base.levels
    truth = true_pairs(levels)
    pairs = list(combinations(spec.outcomes, 2))
    asked = [{qa: a, qb: b} for qa, qb in pairs for a, b in product(levels, levels)]
    est = poststratify_joint(joint, frame, by="region", joint=asked)
    assert est.patterns is not None
    regions = est.groups["region"].tolist()
    rows = []
    for qa, qb in pairs:
        joint_draws, product_draws, true = [], [], []
        for a, b in product(levels, levels):
            joint_draws.append(est.patterns.sel(pattern=f"{qa}={a},{qb}={b}").values)
            sa = separate[qa].sel(region=regions, category=a).values
            sb = separate[qb].sel(region=regions, category=b).values
            product_draws.append(sa * sb)
            true.append(truth.xs((qa, a, qb, b), level=[1, 2, 3, 4]).loc[regions].to_numpy())
        stacked = np.stack(true, axis=1)
        both = (np.stack(joint_draws, axis=2), np.stack(product_draws, axis=2))
        for model, draws in zip(("joint", "product of separate"), both, strict=True):
            rows.append({"pair": f"{qa} x {qb}", "model": model, **scored(draws, stacked)})
    return rows


def correlation_rows(joint: JointResult) -> list[dict[str, Any]]:
    """The region effects' correlations against the drawn true effects' correlations."""
    truth = pd.read_csv(DATA / "truth_correlations_2020.csv")
    drawn = truth[truth["matrix"] == "region_effect_drawn"].set_index(["row", "column"])["value"]
    table = joint.correlations("region", prob=PROB)
    rows = []
    for _, r in table.iterrows():
        true = float(drawn.loc[(r["question_a"], r["question_b"])])
        rows.append(
            {
                "pair": f"{r['question_a']} x {r['question_b']}",
                "true": true,
                "mean": float(r["mean"]),
                "lower": float(r["lower"]),
                "upper": float(r["upper"]),
                "covered": bool(r["lower"] <= true <= r["upper"]),
            }
        )
    return rows


def separate_log_likelihood(joint: JointResult, separate: dict[str, om.FitResult]) -> xr.DataArray:
    """The separate models' log-likelihood of each joint (cell, pattern) row.

    Summed over the questions the row answered: (chain, draw, pattern_row).
    """
    jd = joint.design
    cells = jd.design.cells
    total = None
    for k, q in enumerate(joint.spec.outcomes):
        fit = separate[q]
        design = fit.design
        draws = Draws.from_posterior(fit.posterior, design)
        new = design.evaluate(design.with_covariates(cells))
        logp = log_probabilities(design, linear_predictor(draws, design, new), draws)  # (S, n, C)
        order = [list(design.categories).index(level) for level in joint.spec.base.levels]
        given = jd.answers[:, k] >= 0
        pick = np.array(order)[np.where(given, jd.answers[:, k], 0)]
        value = logp[:, jd.row_cell, pick] * given[None, :]
        total = value if total is None else total + value
    assert total is not None
    chains, draws_per_chain = joint.posterior.sizes["chain"], joint.posterior.sizes["draw"]
    return xr.DataArray(
        total.reshape(chains, draws_per_chain, -1), dims=("chain", "draw", "pattern_row")
    )


def loo_rows(joint: JointResult, separate: dict[str, om.FitResult]) -> list[dict[str, Any]]:
    """PSIS-LOO of the joint model and of the separate models, over the same respondents."""
    from arviz_stats import loo

    from opinionmap.results import respondent_loo

    joint_loo = joint.loo()
    log_lik = separate_log_likelihood(joint, separate)
    posterior = next(iter(separate.values())).posterior
    tree = xr.DataTree.from_dict(
        {"posterior": posterior, "log_likelihood": xr.Dataset({"patterns": log_lik})}
    )
    separate_loo = respondent_loo(
        log_lik, joint.design.design, loo(tree, pointwise=True, var_name="patterns")
    )
    diff = joint_loo.elpd_i.values - separate_loo.elpd_i.values
    se = float(np.sqrt(len(diff) * np.var(diff, ddof=1)))
    return [
        {
            "model": name,
            "elpd_loo": float(result.elpd),
            "se": float(result.se),
            "p_loo": float(result.p),
            "max_pareto_k": float(result.pareto_k.max()),
            "joint_minus_separate": float(diff.sum()),
            "difference_se": se,
        }
        for name, result in (("joint", joint_loo), ("separate", separate_loo))
    ]


def main() -> None:
    args = parse_args()
    spec = read_joint_spec(args.spec)
    codebook = om.read_codebook(om.datasets.kazakhstan_codebook_path())
    survey = om.read_survey(om.datasets.kazakhstan_survey_path(), codebook)
    frame = om.read_frame(om.datasets.kazakhstan_frame_path(), weight="population")
    if args.reuse:
        if args.fits is None:
            raise SystemExit("--reuse reads the fits of --fits DIR")
        joint, joint_s = load_joint(args.fits / "joint.nc"), float("nan")
        separate = {q: om.load(args.fits / f"{q}.nc") for q in spec.outcomes}
        seconds = dict.fromkeys(spec.outcomes, float("nan"))
    else:
        joint, joint_s = timed(
            "joint", lambda: fit_joint(spec, survey, random_seed=args.seed, warn=False)
        )
        separate, seconds = {}, {}
        for q in spec.outcomes:
            one = replace(spec.base, formula=f"{q} ~ {spec.rhs}")
            separate[q], seconds[q] = timed(
                q, lambda one=one: om.fit(one, survey, random_seed=args.seed, progress=False)
            )
        if args.fits is not None:
            joint.save(args.fits / "joint.nc")
            for q, fit in separate.items():
                fit.save(args.fits / f"{q}.nc")
    time_rows = [
        {
            "model": "joint",
            "seconds": joint_s,
            "converged": joint.converged,
            "verdict": joint.verdict,
        },
        *(
            {
                "model": f"separate {q}",
                "seconds": seconds[q],
                "converged": separate[q].diagnostics.converged,
                "verdict": separate[q].diagnostics.verdict(),
            }
            for q in spec.outcomes
        ),
    ]
    marginal, by_question = marginal_rows(joint, separate, frame)
    pairs = pair_rows(joint, by_question, frame)
    correlations = correlation_rows(joint)
    loos = loo_rows(joint, separate)
    print(pd.DataFrame(time_rows).to_string(index=False))
    print(pd.DataFrame(correlations).to_string(index=False))
    print(pd.DataFrame(loos).to_string(index=False))
    pair_table = pd.DataFrame(pairs)
    overall = pair_table.groupby("model")[["mae_points", "coverage"]].mean()
    print(pair_table.to_string(index=False))
    header = [
        "question",
        "joint MAE (points)",
        "separate MAE",
        "joint coverage",
        "separate coverage",
    ]
    marg = pd.DataFrame(marginal).pivot(index="question", columns="model")
    rows = [
        [
            q,
            f"{marg.loc[q, ('mae_points', 'joint')]:.2f}",
            f"{marg.loc[q, ('mae_points', 'separate')]:.2f}",
            f"{marg.loc[q, ('coverage', 'joint')]:.2f}",
            f"{marg.loc[q, ('coverage', 'separate')]:.2f}",
        ]
        for q in spec.outcomes
    ]
    rows.append(
        [
            "pairs (all 10 x 9 answer pairs x regions)",
            f"{overall.loc['joint', 'mae_points']:.2f}",
            f"{overall.loc['product of separate', 'mae_points']:.2f} (product)",
            f"{overall.loc['joint', 'coverage']:.2f}",
            f"{overall.loc['product of separate', 'coverage']:.2f} (product)",
        ]
    )
    print_and_record(
        header,
        rows,
        "bench_joint",
        {"seed": args.seed, "spec": str(args.spec), "prob": PROB},
        time=time_rows,
        marginal=marginal,
        pairs=pairs,
        correlations=correlations,
        loo=loos,
        total_separate_seconds=sum(seconds.values()),
    )
    print(
        f"joint {joint_s:.1f} s against the five separate fits {sum(seconds.values()):.1f} s "
        f"(ratio {joint_s / sum(seconds.values()):.2f})"
    )


if __name__ == "__main__":
    main()
