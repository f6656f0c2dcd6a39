"""Paired differences between ``validate_mrp.py`` runs of other specs on the same replicates.

Every run draws the same replicate surveys (seeds 1, 2, ...) and fits with the same
seeds, so the difference in MRP's regional error between two spec folders is paired
replicate by replicate: this prints, per question and over all five, the mean
difference in mean absolute error (percentage points) and in 90% coverage against the
first run, with the standard error of the mean difference over replicates. Usage::

    .venv/bin/python benchmarks/compare_validations.py BASE.json OTHER.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from common import markdown_table


def mrp_records(path: Path) -> tuple[str, pd.DataFrame]:
    """The run's spec folder and its MRP rows, indexed by (replicate, question)."""
    raw = json.loads(path.read_text())
    records = pd.DataFrame(raw["records"])
    mrp = records[records["method"] == "MRP"].set_index(["replicate", "question"])
    return Path(raw["settings"]["models"]).name, mrp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results/validate_mrp_*.json")
    args = parser.parse_args()
    base_name, base = mrp_records(args.runs[0])
    rows = []
    for path in args.runs[1:]:
        name, other = mrp_records(path)
        if not other.index.equals(base.index):
            raise SystemExit(f"{path}: not the same replicates and questions as {args.runs[0]}")
        mae = other["MAE"] - base["MAE"]
        coverage = other["coverage"] - base["coverage"]
        groups = [(q, mae.xs(q, level="question"), coverage.xs(q, level="question"))
                  for q in dict.fromkeys(base.index.get_level_values("question"))]  # fmt: skip
        groups.append(("all five", mae.groupby("replicate").mean(),
                       coverage.groupby("replicate").mean()))  # fmt: skip
        for question, d_mae, d_cov in groups:
            se = float(d_mae.std() / np.sqrt(len(d_mae)))
            rows.append([name, question, f"{d_mae.mean():+.3f} ({se:.3f})", f"{d_cov.mean():+.3f}"])
    header = [f"against {base_name}", "question", "MAE difference pp (se)", "coverage difference"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
