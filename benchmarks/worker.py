"""One fit in a fresh process, for the benchmarks: prints a JSON report on stdout.

Run by ``common.run_job``; not meant to be called by hand, though it can be::

    .venv/bin/python benchmarks/worker.py --tool=opinionmap --data=chile.pkl \
        --formula="vote ~ 1 + sex + (1 | region)" --levels=N,Y,U,A

The report holds the convergence figures (computed for both tools by
``opinionmap.diagnostics.diagnose``: R-hat and bulk ESS over every posterior
variable except non-centred auxiliaries, which Bambi drops by default too) and
the seconds spent in each phase of the process.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

RESULT_MARK = "BENCH_RESULT "


class Phases:
    """Seconds spent in named phases, by wrapping the functions that run them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, label: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``label``."""
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        """Replace ``owner.attr`` by a timed version (no-op if it does not exist)."""
        original: Callable[..., Any] | None = getattr(owner, attr, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - begin)

        setattr(owner, attr, timed)


class SamplingMessages(logging.Handler):
    """Keeps PyMC's "Sequential sampling (...)" / "Multiprocess sampling (...)" line."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message if it says how the chains were run."""
        message = record.getMessage()
        if "sampling (" in message:
            self.messages.append(message)


def source_provenance() -> dict[str, Any]:
    """Which opinionmap code ran: a hash of its sources, git HEAD and uncommitted files.

    The package is installed from the working tree, which may change between runs.
    """
    import opinionmap

    package = Path(opinionmap.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    out: dict[str, Any] = {"sources_sha256": digest.hexdigest()[:16]}
    git = ["git", "-C", str(package)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
        )
    except OSError:
        return out
    out["git_head"] = head.stdout.strip()
    out["uncommitted"] = [line[3:] for line in status.stdout.splitlines()]
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=("opinionmap", "bambi"), required=True)
    parser.add_argument("--data", required=True, help="pickled DataFrame")
    parser.add_argument("--formula", required=True)
    parser.add_argument("--levels", required=True, help="outcome levels, reference first")
    parser.add_argument(
        "--draws", type=int, default=1000, help="0: opinionmap's own default for the model"
    )
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cores", type=int, help="Bambi only; default: Bambi's (PyMC's)")
    return parser.parse_args()


def fit_opinionmap(args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    import importlib

    import nutpie
    import pandas as pd

    om_fit = importlib.import_module("opinionmap.fitting")
    from opinionmap.spec import ModelSpec

    phases.add("import", time.perf_counter() - START)
    for owner, attr, label in (
        (om_fit, "build_design", "design"),
        (om_fit, "build_model", "graph"),
        (nutpie, "compile_pymc_model", "compile"),
        (nutpie, "sample", "sample"),
        (om_fit, "_log_likelihood", "log_likelihood"),
        (om_fit, "diagnose", "diagnostics"),
    ):
        phases.wrap(owner, attr, label)
    begin = time.perf_counter()
    df = pd.read_pickle(args.data)
    phases.add("read", time.perf_counter() - begin)
    spec = ModelSpec(
        formula=args.formula, family="categorical", levels=tuple(args.levels.split(","))
    )
    result = om_fit.fit(
        spec,
        df,
        draws=args.draws or None,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        progress=False,
        warn=False,
    )
    d = result.diagnostics
    return {
        "parallel": f"{min(args.chains, os.cpu_count() or 1)} chains at a time",
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "max_rhat": d.max_rhat,
        "divergences": d.divergences,
        "verdict": d.verdict(),
        "n_respondents": result.design.n_respondents,
        "n_cells": result.design.n_cells,
        "loglik_level": result.tree["log_likelihood"].attrs.get("opinionmap_level"),
        "draws": int(result.tree.attrs["opinionmap_draws"]),
        "target_accept": float(result.tree.attrs["opinionmap_target_accept"]),
    }


def fit_bambi(args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    import bambi as bmb
    import pandas as pd
    import pymc

    phases.add("import", time.perf_counter() - START)
    phases.wrap(pymc, "sample", "sample (compile included)")
    sampling = SamplingMessages()
    logging.getLogger("pymc").addHandler(sampling)
    begin = time.perf_counter()
    df = pd.read_pickle(args.data)
    phases.add("read", time.perf_counter() - begin)
    begin = time.perf_counter()
    model = bmb.Model(args.formula, df, family="categorical")
    phases.add("design", time.perf_counter() - begin)
    reference = model.response_term.reference
    expected = args.levels.split(",")[0]
    if reference != expected:
        raise SystemExit(f"Bambi's reference level is {reference!r}, expected {expected!r}")
    begin = time.perf_counter()
    cores = {} if args.cores is None else {"cores": args.cores}
    tree = model.fit(
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        progressbar=False,
        **cores,
    )
    phases.add("fit", time.perf_counter() - begin)
    begin = time.perf_counter()
    from opinionmap.diagnostics import diagnose

    d = diagnose(tree, warn=False)
    phases.add("diagnostics", time.perf_counter() - begin)
    return {
        "parallel": sampling.messages[-1] if sampling.messages else "unknown",
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "max_rhat": d.max_rhat,
        "divergences": d.divergences,
        "verdict": d.verdict(),
        "n_respondents": len(df),
        "reference": reference,
    }


def main() -> None:
    args = parse_args()
    phases = Phases()
    fit = fit_opinionmap if args.tool == "opinionmap" else fit_bambi
    report = fit(args, phases)
    report["phases"] = {k: round(v, 2) for k, v in phases.seconds.items()}
    report["opinionmap_source"] = source_provenance()
    report["process_s"] = round(time.perf_counter() - START, 2)
    print(RESULT_MARK + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
