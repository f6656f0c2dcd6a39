"""nutpie's low-rank against its diagonal mass matrix as an ordinal model grows.

``adaptation="auto"`` takes the low-rank mass matrix for ordinal and bernoulli models
and the diagonal one above ``LOW_RANK_MAX_PARAMETERS`` parameters
(``Design.n_parameters``). This script fits the bundled ``presence_russia`` spec and
variants with more varying effects, each with both mass matrices and several seeds, in
this process one after another (the first fit of each variant compiles it; the
compiled model is cached for the second adaptation and the later seeds):

- shipped: region and region x ethnicity (80 parameters);
- + region x age (149);
- + region x age, region x sex, region x settlement (219);
- + (1 | district), exchangeable (297);
- + (1 | district) with BYM2 over the districts' borders (513).

It prints seconds per fit (sampling, plus compiling for the first), the smallest
bulk ESS, the smallest bulk ESS per second, whether the fit converged by the
package's criteria, and the median tree depth. Usage::

    .venv/bin/python benchmarks/bench_adaptation.py [--seeds 2020 1] [--variants ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
from common import HERE, markdown_table, results_path, write_record

import opinionmap as om
from opinionmap.design import build_design
from opinionmap.structure import Structure

ROOT = HERE.parent
SPEC = ROOT / "models" / "presence_russia.toml"
ADJACENCY = ROOT / "data" / "kazakhstan" / "district_adjacency.csv"
EXTRA = {
    "shipped": "",
    "+ region:age": " + (1 | region:age)",
    "+ region:age, sex, settlement": (
        " + (1 | region:age) + (1 | region:sex) + (1 | region:settlement)"
    ),
    "+ district": " + (1 | district)",
    "+ district (bym2)": " + (1 | district)",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 1])
    parser.add_argument("--variants", nargs="+", default=list(EXTRA), choices=list(EXTRA))
    return parser.parse_args()


def variant(spec: om.ModelSpec, name: str) -> om.ModelSpec:
    """The shipped spec with the variant's extra terms (and BYM2 for the last)."""
    out = dataclasses.replace(spec, formula=spec.formula + EXTRA[name])
    if name.endswith("(bym2)"):
        bym2 = Structure("bym2", ADJACENCY)
        priors = dataclasses.replace(out.priors, structure=(("district", bym2),))
        out = dataclasses.replace(out, priors=priors)
    return out


def main() -> None:
    args = parse_args()
    survey = om.read_survey(ROOT / "data" / "kazakhstan" / "survey_2020.csv")
    shipped = om.read_spec(SPEC)
    records, rows = [], []
    for name in args.variants:
        spec = variant(shipped, name)
        size = build_design(spec, survey).n_parameters
        for adaptation in ("low_rank", "diag"):
            for seed in args.seeds:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = om.fit(spec, survey, random_seed=seed, adaptation=adaptation)
                seconds = time.perf_counter() - start
                table = result.diagnostics.table
                ess = float(table["ess_bulk"].min())
                depth = float(np.median(result.tree["sample_stats"]["depth"].values))
                record = {
                    "variant": name,
                    "parameters": size,
                    "adaptation": adaptation,
                    "seed": seed,
                    "seconds": seconds,
                    "min_bulk_ess": ess,
                    "ess_per_s": ess / seconds,
                    "converged": result.converged,
                    "median_depth": depth,
                }
                records.append(record)
                print(record, flush=True)
                rows.append(
                    [name, str(size), adaptation, str(seed), f"{seconds:.1f}", f"{ess:.0f}",
                     f"{ess / seconds:.1f}", "yes" if result.converged else "NO", f"{depth:.0f}"]
                )  # fmt: skip
    header = ["variant", "parameters", "adaptation", "seed", "seconds", "min bulk ESS",
              "ESS/s", "converged", "depth"]  # fmt: skip
    print(markdown_table(header, rows))
    out = results_path("bench_adaptation")
    write_record(out, vars(args), records=records)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
