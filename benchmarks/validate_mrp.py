"""Replicate surveys of the synthetic Kazakhstan: MRP against baselines, against the truth.

``scripts/build_kazakhstan_data.py`` holds the true population and opinion model behind
the bundled data. This script draws ``--replicates`` further surveys from them with the
bundled survey's design (strata, sampling points, non-response, weights; seeds 1, 2, ...)
and, for each of the five presence questions, estimates every region's shares four ways:

- **MRP**: the bundled spec (``models/<question>.toml``) poststratified to the bundled
  frame;
- **region only**: a multilevel model with the region's varying intercept alone,
  poststratified the same way;
- **direct**: the design-weighted share with its design-based 90% interval (strata and
  sampling points from the codebook, Korn-Graubard interval);
- **national**: the design-weighted national share, with its interval, in every region.

Each is compared with the true share of those answering in the region (the specs drop
"don't know"): mean absolute error and RMSE in percentage points, coverage and mean
width of the 90% intervals, and the interval score (Gneiting and Raftery 2007: width
plus 20 times any miss), averaged over regions and answers, then over replicates with
their spread.

Fitting: every replicate has other cells, so each fit would compile a new model. The
script instead codes each model once on every frame cell (region x sex x age x ethnicity
x settlement; cells without respondents have zero counts, which adds nothing to the
likelihood), holds the counts as data (``build_model(counts_as_data=True)``) and refits
with nutpie's ``with_data``. The parameterisation and the fixed-effect prior scales are
those of the bundled survey (the same prior up to that scale; the parameterisation
changes the geometry, not the posterior). Sampling: ``--chains`` x ``--draws`` after as
many tuning steps, target acceptance 0.95. Usage::

    .venv/bin/python benchmarks/validate_mrp.py [--replicates 50] [--draws 500] [--chains 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import nutpie
import pandas as pd
from common import HERE, markdown_table, results_path, write_record

import opinionmap as om
from opinionmap.design import Design, build_design
from opinionmap.direct import direct_estimates
from opinionmap.model import build_model
from opinionmap.plan import make_plan
from opinionmap.poststratification import poststratify
from opinionmap.predict import Draws
from opinionmap.spec import DEFAULT_SAMPLING

ROOT = HERE.parent
DATA = ROOT / "data" / "kazakhstan"
QUESTIONS = ("presence_russia", "presence_usa", "presence_china", "presence_eu", "presence_muslim")
CELLS = ["region", "sex", "age", "ethnicity", "settlement"]
METHODS = ("MRP", "region only", "direct", "national")
ALPHA = 0.1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--draws", type=int, default=500, help="draws and tuning steps per chain")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--questions", nargs="+", default=list(QUESTIONS))
    parser.add_argument(
        "--models", type=Path, default=ROOT / "models", help="folder of the specs to validate"
    )
    parser.add_argument(
        "--figure", type=Path, default=ROOT / "docs" / "validation.png", help="figure to write"
    )
    return parser.parse_args()


def generator() -> Any:
    """The data-building script, imported as a module."""
    path = ROOT / "scripts" / "build_kazakhstan_data.py"
    spec = importlib.util.spec_from_file_location("build_kazakhstan_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_kazakhstan_data"] = module
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Fitted:
    """What poststratify needs: a design and a posterior."""

    design: Design
    posterior: Any

    def draws(self) -> Draws:
        """The posterior's parameters flattened over (chain, draw)."""
        return Draws.from_posterior(self.posterior, self.design)


class Model:
    """One spec coded on every frame cell, compiled once, refitted to other counts."""

    def __init__(self, spec: om.ModelSpec, frame: pd.DataFrame, bundled: om.Survey) -> None:
        self.keys = [c for c in CELLS if c in spec.variables]
        template = frame[self.keys].drop_duplicates().reset_index(drop=True)
        # survey variables the frame lacks (education): every frame cell at each of its levels
        joined = set(spec.covariates.columns) if spec.covariates else set()
        for extra in (v for v in spec.variables if v not in {*frame.columns, *joined}):
            levels = pd.DataFrame({extra: bundled.levels(extra)})
            template = template.merge(levels, how="cross")
            self.keys.append(extra)
        levels = spec.categories
        rows = template.loc[template.index.repeat(len(levels))].reset_index(drop=True)
        rows[spec.outcome] = np.tile(levels, len(template))
        for key in self.keys:
            # the survey's codings: declared levels, and their order where it means something
            if isinstance(bundled.data[key].dtype, pd.CategoricalDtype):
                rows[key] = rows[key].astype(str).astype(bundled.data[key].dtype)
        self.template = build_design(spec, rows)
        survey_design = build_design(spec, bundled)
        self.cell_of = self._cell_index(self.template)
        counts = self.counts(bundled.data)
        # the bundled survey's prior scales and parameterisation
        self.template = dataclasses.replace(self.template, x_sd=survey_design.x_sd, counts=counts)
        self.plan = make_plan(self.template)
        self.compiled = nutpie.compile_pymc_model(
            build_model(self.template, self.plan, counts_as_data=True)
        )
        self.spec = spec

    def _cell_index(self, design: Design) -> dict[tuple[str, ...], int]:
        cells = design.cells[self.keys].astype(str)
        return {tuple(row): i for i, row in enumerate(cells.itertuples(index=False))}

    def counts(self, data: pd.DataFrame) -> np.ndarray:
        """Cell x answer counts of a survey on the template's cells (missing codes left out)."""
        answers = data[self.template.spec.outcome].astype(str)
        keep = answers.isin(self.template.categories).to_numpy()
        rows = data.loc[keep, self.keys].astype(str).itertuples(index=False)
        cell = np.array([self.cell_of[tuple(r)] for r in rows], dtype=np.int64)
        answer = pd.Categorical(answers[keep], categories=list(self.template.categories)).codes
        out = np.zeros(self.template.counts.shape, dtype=np.int64)
        np.add.at(out, (cell, answer), 1)
        return out

    def sample(
        self, counts: np.ndarray, args: argparse.Namespace, seed: int, **options: Any
    ) -> Any:
        """Nutpie's draws with these counts (``options``: more of ``nutpie.sample``'s)."""
        return nutpie.sample(
            self.compiled.with_data(counts=counts.astype(float)),
            draws=args.draws,
            tune=args.draws,
            chains=args.chains,
            seed=seed,
            progress_bar=False,
            target_accept=DEFAULT_SAMPLING["target_accept"],
            **options,
        )

    def fit(self, data: pd.DataFrame, args: argparse.Namespace, seed: int) -> Fitted:
        """Sample the model with a survey's counts."""
        counts = self.counts(data)
        result = self.sample(counts, args, seed)
        return Fitted(dataclasses.replace(self.template, counts=counts), result.posterior)


def truth_answering() -> pd.DataFrame:
    """True shares of those answering, by region (don't know left out): question, region, ..."""
    truth = pd.read_csv(DATA / "truth_2020.csv")
    truth = truth[truth["response"] != "dont_know"].copy()
    truth["share"] = truth["share"] / truth.groupby(["question", "region"])["share"].transform(
        "sum"
    )
    return truth.rename(columns={"response": "category"})


def scores(table: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE (pp), coverage, width (pp) and interval score (pp) against the truth."""
    both = table.merge(truth, on=["region", "category"])
    error = both["estimate"] - both["share"]
    below = np.clip(both["lower"] - both["share"], 0, None)
    above = np.clip(both["share"] - both["upper"], 0, None)
    width = both["upper"] - both["lower"]
    return {
        "MAE": 100 * float(error.abs().mean()),
        "RMSE": 100 * float(np.sqrt((error**2).mean())),
        "coverage": float(
            ((both["lower"] <= both["share"]) & (both["share"] <= both["upper"])).mean()
        ),
        "width": 100 * float(width.mean()),
        "interval score": 100 * float((width + 2 / ALPHA * (below + above)).mean()),
    }


def estimates(
    question: str, survey: om.Survey, mrp: Fitted, region_only: Fitted, frame: om.Frame
) -> dict[str, pd.DataFrame]:
    """Each method's table: region, category, estimate, lower, upper."""
    out = {}
    for name, fitted in (("MRP", mrp), ("region only", region_only)):
        table = poststratify(fitted, frame, by=["region"]).summary(prob=1 - ALPHA)
        out[name] = table.rename(columns={"mean": "estimate"})
    levels = list(mrp.design.categories)
    direct = direct_estimates(survey, question, by="region", categories=levels, prob=1 - ALPHA)
    out["direct"] = direct.rename(columns={"weighted": "estimate"})
    data = survey.data.assign(nation="all")
    national = direct_estimates(
        om.Survey(data, survey.codebook), question, by="nation", categories=levels, prob=1 - ALPHA
    )
    regions = sorted(set(out["MRP"]["region"]))
    out["national"] = (
        national.drop(columns="nation")
        .merge(pd.DataFrame({"region": regions}), how="cross")
        .rename(columns={"weighted": "estimate"})
    )
    return {k: v[["region", "category", "estimate", "lower", "upper"]] for k, v in out.items()}


def replicate_surveys(replicates: int) -> Iterator[tuple[int, om.Survey]]:
    """Surveys 1, 2, ... drawn from the synthetic truth by the bundled design (seed: number).

    The true population and opinion model are built once, at the first survey; each
    survey is read with the bundled codebook, as a user would read it.
    """
    gen = generator()
    src = gen.read_sources()
    frame_df, covariates = gen.build_frame(src)
    districts = gen.read_districts(src.regions)
    population = gen.build_population(frame_df, districts, gen.DEFAULT_SEED)
    truth_model = gen.true_model(population, covariates, districts, gen.DEFAULT_SEED)
    codebook = DATA / "survey_2020.codebook.toml"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "survey.csv"
        for r in range(1, replicates + 1):
            gen.draw_survey(frame_df, population, truth_model, r).to_csv(path, index=False)
            yield r, om.read_survey(path, codebook)


def main() -> None:
    args = parse_args()
    bundled = om.read_survey(DATA / "survey_2020.csv")
    frame = om.read_frame(DATA / "frame_2020.csv")
    truth = truth_answering()
    models = {}
    start = time.perf_counter()
    for q in args.questions:
        spec = om.read_spec(args.models / f"{q}.toml")
        region_only = dataclasses.replace(
            spec, formula=f"{q} ~ 1 + (1 | region)", covariates=None, priors=om.Priors()
        )
        models[q] = (Model(spec, frame.data, bundled), Model(region_only, frame.data, bundled))
    compile_s = time.perf_counter() - start
    records = []
    for r, survey in replicate_surveys(args.replicates):
        for i, q in enumerate(args.questions):
            mrp_model, region_model = models[q]
            seed = 1000 * r + i
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tables = estimates(
                    q,
                    survey,
                    mrp_model.fit(survey.data, args, seed),
                    region_model.fit(survey.data, args, seed + 500),
                    frame,
                )
            t = truth[truth["question"] == q][["region", "category", "share"]]
            for method, table in tables.items():
                records.append({"replicate": r, "question": q, "method": method,
                                **scores(table, t)})  # fmt: skip
        print(f"replicate {r}: {time.perf_counter() - start:.0f} s", flush=True)
    results = pd.DataFrame(records)
    report(results, args)
    out = results_path("validate_mrp")
    write_record(out, vars(args), compile_s=compile_s, records=records)
    print(f"wrote {out}")


def report(results: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the table per question and method, and draw the figure."""
    grouped = results.groupby(["question", "method"], sort=False)
    mean, sd = grouped.mean(numeric_only=True), grouped.std(numeric_only=True)
    rows = []
    for q in args.questions:
        for method in METHODS:
            m, s = mean.loc[(q, method)], sd.loc[(q, method)]
            rows.append(
                [
                    q,
                    method,
                    f"{m['MAE']:.2f} ({s['MAE']:.2f})",
                    f"{m['RMSE']:.2f}",
                    f"{m['coverage']:.2f} ({s['coverage']:.2f})",
                    f"{m['width']:.1f}",
                    f"{m['interval score']:.1f}",
                ]
            )
    header = ["question", "method", "MAE pp (sd)", "RMSE pp", "90% coverage (sd)",
              "width pp", "interval score pp"]  # fmt: skip
    print(markdown_table(header, rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, metric, label in (
        (axes[0], "MAE", "mean absolute error (pp)"),
        (axes[1], "coverage", "coverage of 90% intervals"),
    ):
        for j, method in enumerate(METHODS):
            values = [results[(results["question"] == q) & (results["method"] == method)][metric]
                      for q in args.questions]  # fmt: skip
            positions = np.arange(len(args.questions)) + (j - 1.5) * 0.2
            ax.boxplot(values, positions=positions, widths=0.17, patch_artist=True,
                       boxprops={"facecolor": f"C{j}", "alpha": 0.6}, showfliers=False)  # fmt: skip
            ax.plot([], [], "s", color=f"C{j}", label=method)
        ax.set_xticks(
            np.arange(len(args.questions)), [q.replace("presence_", "") for q in args.questions]
        )
        ax.set_ylabel(label)
        if metric == "coverage":
            ax.axhline(0.9, color="grey", lw=1, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.replicates} replicate surveys of the synthetic Kazakhstan, by region")
    fig.tight_layout()
    path = args.figure
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
