"""A predictor the frame lacks (education), by MrsP, against leaving it out of the model.

Three ways to estimate shares by area when the survey has education and the frame
does not:

- **without**: the model without education, poststratified to the frame (plain MRP);
- **MrsP**: the model with education, the frame's cells split by education as a
  multilevel model of education on the frame variables estimates it from the survey
  (``poststratify`` does this by itself; ``opinionmap.frameless``);
- **full frame** (where a frame with education exists): the model with education
  poststratified to that frame, the best MrsP can hope for.

Parts (``--part``, default all):

- ``simulated``: ``--replicates`` surveys of 3,000 from a population of 8 regions x sex
  whose education differs by region and drives a yes/no opinion (the truth known);
  the survey draws cells equally often and is representative within them. Regional
  mean absolute error (points), 90% coverage and width against the truth.
- ``real``: the 2011 Canadian Election Study (``carData/CES11``): importance of religion
  (ordinal) by province. The full survey plays the population (its weighted shares by
  province the truth, its weighted counts by province x gender x urban [x education]
  the frames); ``--replicates`` subsamples of 500, simple random ("srs") and
  over-representing the educated as ``validate_real.py`` does ("educated x3"). Also
  PSIS-LOO of the model with education against the one without, on the full survey.
- ``bundled``: the five presence questions of the bundled survey: PSIS-LOO of the
  shipped spec plus education against the shipped spec.
- ``truth``: ``--truth-replicates`` replicate surveys of the synthetic Kazakhstan
  (``validate_mrp.py``'s, whose truth has education driving opinion and response):
  every region's shares of those answering, shipped spec (without) against shipped +
  education by MrsP, against the truth (each
  model compiled once on every frame cell and refitted, 2 x 500 draws, as
  ``validate_mrp.py`` does; one model of education per survey, on its every
  respondent; convergence is not checked there).

Seconds are those of fitting and poststratifying by area (MrsP's include fitting the
model of education). Usage::

    .venv/bin/python benchmarks/bench_frameless.py [--part simulated real bundled truth]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_structure import ROOT
from common import print_and_record
from scipy.special import expit, softmax

import opinionmap as om
from opinionmap.frameless import frameless_spec
from opinionmap.spec import ModelSpec

QUESTIONS = ("presence_russia", "presence_usa", "presence_china", "presence_eu", "presence_muslim")
ALPHA = 0.1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["simulated", "real", "bundled", "truth"])
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--truth-replicates", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def errors(table: pd.DataFrame, truth: pd.DataFrame, on: list[str]) -> dict[str, float]:
    """MAE (points), 90% coverage and width (points) of estimates against the truth."""
    both = table.merge(truth, on=on)
    inside = (both["lower"] <= both["share"]) & (both["share"] <= both["upper"])
    return {"MAE": 100 * float((both["mean"] - both["share"]).abs().mean()),
            "coverage": float(inside.mean()),
            "width": 100 * float((both["upper"] - both["lower"]).mean())}  # fmt: skip


def quiet(call: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def estimate(spec: ModelSpec, data: Any, frame: Any, area: str, seed: int) -> tuple[Any, float]:
    """Fit and poststratify by area: the summary table (90%), converged, method, seconds."""
    start = time.perf_counter()
    result = quiet(om.fit, spec, data, random_seed=seed, progress=False)
    est = quiet(om.poststratify, result, frame, by=[area], random_seed=seed)
    seconds = time.perf_counter() - start
    table = est.summary(prob=1 - ALPHA)
    return (table, result.converged, est.method), seconds


def summarise(runs: list[dict[str, Any]], keys: list[str]) -> list[list[str]]:
    """Mean (sd) over replicates per key."""
    table = pd.DataFrame(runs)
    rows = []
    for key, group in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*map(str, key), f"{group['MAE'].mean():.2f} ({group['MAE'].std():.2f})",
                     f"{group['coverage'].mean():.2f}", f"{group['width'].mean():.1f}",
                     f"{group['converged'].sum()} of {len(group)}",
                     f"{group['seconds'].mean():.0f}"])  # fmt: skip
    return rows


HEADER = ["MAE pp (sd)", "90% coverage", "width pp", "converged", "s"]

# -- simulated -----------------------------------------------------------------------------

EDUCATION = ("low", "mid", "high")
N_REGIONS = 8


def population() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Frame (region x sex), truth by region, each cell's education split and P(yes | e)."""
    regions = [f"r{i}" for i in range(N_REGIONS)]
    shift = np.linspace(-1.5, 1.5, N_REGIONS)
    frame, splits, yes = [], [], []
    for r, region in enumerate(regions):
        for s, sex in enumerate(("f", "m")):
            frame.append({"region": region, "sex": sex, "population": 1e4 * (1 + r % 3)})
            splits.append(softmax([0.0, 0.4 + shift[r], shift[r] + 0.4 * s]))
            yes.append(expit(-1.2 + np.array([0.0, 0.9, 2.2]) + 0.3 * s + 0.1 * (r % 4)))
    frame_df = pd.DataFrame(frame)
    split, p = np.array(splits), np.array(yes)
    share = (split * p).sum(axis=1)
    truth = (frame_df.assign(yes=share * frame_df["population"])
             .groupby("region")[["yes", "population"]].sum())  # fmt: skip
    truth = pd.DataFrame({"region": truth.index, "category": "yes",
                          "share": (truth["yes"] / truth["population"]).to_numpy()})  # fmt: skip
    return frame_df, truth, split, p


def simulated_survey(frame: pd.DataFrame, split: np.ndarray, p: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, len(frame), 3000)
    e = (rng.random(len(cell))[:, None] > np.cumsum(split[cell], axis=1)).sum(axis=1)
    e = np.minimum(e, 2)
    y = rng.random(len(cell)) < p[cell, e]
    return pd.DataFrame({"y": np.where(y, "yes", "no"), "region": frame["region"].values[cell],
                         "sex": frame["sex"].values[cell],
                         "education": np.array(EDUCATION)[e]})  # fmt: skip


def part_simulated(args: argparse.Namespace) -> None:
    frame, truth, split, p = population()
    frame_ = om.Frame.from_dataframe(frame)
    specs = {
        "without": ModelSpec("y ~ 1 + sex + (1 | region)", "bernoulli", ("no", "yes")),
        "MrsP": ModelSpec("y ~ 1 + sex + education + (1 | region)", "bernoulli", ("no", "yes")),
    }
    runs = []
    for r in range(args.replicates):
        data = simulated_survey(frame, split, p, args.seed + r)
        for name, spec in specs.items():
            (table, converged, _), seconds = estimate(spec, data, frame_, "region", r)
            runs.append({"model": name, "converged": converged, "seconds": seconds,
                         **errors(table, truth, ["region", "category"])})  # fmt: skip
            print(runs[-1], flush=True)
    rows = summarise(runs, ["model"])
    print_and_record(["model", *HEADER], rows, "bench_frameless_simulated", vars(args), runs=runs)


# -- real ------------------------------------------------------------------------------


def part_real(args: argparse.Namespace) -> None:
    import validate_real as vr

    survey = vr.canada()
    truth = vr.shares(survey.data, survey, "weight")
    df = survey.data
    frames = {}
    for name, cells in (("without", ["province", "gender", "urban"]),
                        ("full", ["province", "gender", "urban", "education"])):  # fmt: skip
        counts = df.groupby(cells, observed=True)["weight"].sum().reset_index()
        frames[name] = om.Frame.from_dataframe(counts.rename(columns={"weight": "population"}))
    base = "importance ~ 1 + gender + urban + (1 | province)"
    levels = ("not", "notvery", "somewhat", "very")
    without = ModelSpec(base, "ordinal", levels)
    education = ModelSpec(base.replace("urban", "urban + education"), "ordinal", levels)
    # LOO on the full survey: does education earn its place in the model?
    loo = {name: quiet(om.fit, spec, df, random_seed=args.seed, progress=False).loo()
           for name, spec in (("without", without), ("with education", education))}  # fmt: skip
    diff = loo["with education"].elpd_i.values - loo["without"].elpd_i.values
    print(f"CES11 LOO, with education - without: {diff.sum():+.1f} "
          f"({np.sqrt(len(diff) * diff.var(ddof=1)):.1f})", flush=True)  # fmt: skip
    rng = np.random.default_rng(args.seed)
    runs = []
    key = ["province", "category"]
    for sampling in ("srs", "educated x3"):
        for _ in range(args.replicates):
            weights = (df["education"].map(survey.oversample).to_numpy(dtype=float)
                       if sampling != "srs" else np.ones(len(df)))  # fmt: skip
            chosen = np.sort(rng.choice(len(df), 500, replace=False, p=weights / weights.sum()))
            sub = df.iloc[chosen].reset_index(drop=True)
            seed = int(rng.integers(2**31))
            for name, spec, frame in (("without", without, frames["without"]),
                                      ("MrsP", education, frames["without"]),
                                      ("full frame", education, frames["full"])):  # fmt: skip
                (table, converged, method), seconds = estimate(spec, sub, frame, "province", seed)
                assert name != "MrsP" or method.startswith("MrsP"), method
                t = truth.rename(columns={"share": "share"})[[*key, "share"]]
                runs.append({"sampling": sampling, "model": name, "converged": converged,
                             "seconds": seconds, **errors(table, t, key)})  # fmt: skip
                print(runs[-1], flush=True)
    rows = summarise(runs, ["sampling", "model"])
    print_and_record(["subsample", "model", *HEADER], rows, "bench_frameless_real", vars(args),
                     runs=runs, loo_diff=float(diff.sum()),
                     loo_se=float(np.sqrt(len(diff) * diff.var(ddof=1))))  # fmt: skip


# -- bundled ---------------------------------------------------------------------------


def with_education(spec: ModelSpec) -> ModelSpec:
    lhs, rhs = spec.formula.split("~")
    return dataclasses.replace(spec, formula=f"{lhs}~{rhs.replace(' + (', ' + education + (', 1)}")


def part_bundled(args: argparse.Namespace) -> None:
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    frame = om.read_frame(ROOT / "data" / "kazakhstan" / "frame_2020.csv")
    loo_rows, records = [], []
    for q in QUESTIONS:
        shipped = om.read_spec(ROOT / "models" / f"{q}.toml")
        fits = {}
        for name, spec in (("shipped", shipped), ("+ education", with_education(shipped))):
            start = time.perf_counter()
            fits[name] = quiet(om.fit, spec, survey, random_seed=args.seed, progress=False)
            est = quiet(om.poststratify, fits[name], frame, by=["region"])
            seconds = time.perf_counter() - start
            records.append({"question": q, "model": name, "converged": fits[name].converged,
                            "seconds": seconds, "method": est.method})  # fmt: skip
            print(records[-1], flush=True)
        diff = fits["+ education"].loo().elpd_i.values - fits["shipped"].loo().elpd_i.values
        se = float(np.sqrt(len(diff) * diff.var(ddof=1)))
        loo_rows.append([q, f"{diff.sum():+.1f} ({se:.1f})",
                         *(("yes" if r["converged"] else "NO") + f", {r['seconds']:.0f} s"
                           for r in records[-2:])])  # fmt: skip
    print_and_record(["question", "elpd: + education - shipped (se)", "shipped", "+ education"],
                     loo_rows, "bench_frameless_bundled", vars(args), fits=records)  # fmt: skip


def part_truth(args: argparse.Namespace) -> None:
    import validate_mrp as vm

    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    frame = om.read_frame(ROOT / "data" / "kazakhstan" / "frame_2020.csv")
    gen = vm.generator()
    src = gen.read_sources()
    frame_df, covariates = gen.build_frame(src)
    districts = gen.read_districts(src.regions)
    population_ = gen.build_population(frame_df, districts, gen.DEFAULT_SEED)
    truth_model = gen.true_model(population_, covariates, districts, gen.DEFAULT_SEED)
    answering = vm.truth_answering()
    codebook = vm.DATA / "survey_2020.codebook.toml"
    # each model coded on every frame cell (x education) and compiled once, refitted per survey
    models = {}
    for q in QUESTIONS:
        shipped = om.read_spec(ROOT / "models" / f"{q}.toml")
        extended = with_education(shipped)
        models[q] = {"shipped": vm.Model(shipped, frame.data, survey),
                     "+ education, MrsP": vm.Model(extended, frame.data, survey)}  # fmt: skip
    fit_args = argparse.Namespace(draws=500, chains=2)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(1, args.truth_replicates + 1):
            path = Path(folder) / "survey.csv"
            gen.draw_survey(frame_df, population_, truth_model, r).to_csv(path, index=False)
            replicate = om.read_survey(path, codebook)
            # one model of education per survey and formula (the specs' covariates differ)
            frameless: dict[str, om.FramelessModel] = {}
            for i, q in enumerate(QUESTIONS):
                t = answering[answering["question"] == q][["region", "category", "share"]]
                for name, model in models[q].items():
                    start = time.perf_counter()
                    fitted = quiet(model.fit, replicate.data, fit_args, 1000 * r + i)
                    split = None
                    if name != "shipped":
                        key = frameless_spec(fitted.design, "education").formula
                        if key not in frameless:
                            # on the survey's every respondent
                            frameless[key] = quiet(om.fit_frameless, fitted, "education",
                                                   data=replicate.data, random_seed=r)  # fmt: skip
                        split = frameless[key]
                    est = quiet(om.poststratify, fitted, frame, by=["region"], frameless=split)
                    seconds = time.perf_counter() - start
                    scores = errors(est.summary(prob=1 - ALPHA), t, ["region", "category"])
                    runs.append({"replicate": r, "question": q, "model": name, "converged": True,
                                 "seconds": seconds, **scores})  # fmt: skip
            print(f"replicate {r} done", flush=True)
    rows = summarise(runs, ["question", "model"])
    print_and_record(["question", "model", *HEADER], rows, "bench_frameless_truth", vars(args),
                     runs=runs)  # fmt: skip


def main() -> None:
    args = parse_args()
    parts = {"simulated": part_simulated, "real": part_real, "bundled": part_bundled,
             "truth": part_truth}  # fmt: skip
    for part in args.part:
        parts[part](args)


if __name__ == "__main__":
    main()
