"""Where the demo's time goes: each question's seconds by phase, in one run.

Runs :func:`opinionmap.demo.run_demo` (publication quality, the joint model left out)
in this process with ``--jobs`` worker processes, as ``opinionmap demo --no-joint``
does, and timestamps every change of phase that the workers report (the progress
the live display shows): waiting, compiling (building the model and compiling it,
or loading it from the compile caches), sampling (nutpie's warm-up and draws; with
fewer cores than chains the later chains start when the first finish, so the two
are counted together), summarising (the pointwise log-likelihood, the diagnostics,
saving the fit) and reporting (poststratification, tables and figures of the
question's section). Prints a table of each question's seconds by phase, the sums
over the questions (worker seconds: with two workers, about twice the wall time
they cover) and the wall time to the report. Run it twice for figures on warm
caches; point ``PYTENSOR_FLAGS=base_compiledir=...`` and ``NUMBA_CACHE_DIR`` at an
empty folder for a first run's. Usage::

    .venv/bin/python benchmarks/demo_phases.py [--jobs 2] [--seed 2020] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import fmt, print_and_record

from opinionmap.demo import run_demo
from opinionmap.pipeline import Outcome
from opinionmap.progress import FitProgress

# the phases counted, in order; "warming up" is counted with "sampling"
PHASES = ("compiling", "sampling", "summarising", "reporting")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, help="report folder (default: a new temporary one)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="demo_phases_"))
    start = time.monotonic()
    # (question, phase) -> when it began; a question's phases end where the next begins
    began: dict[str, list[tuple[str, float]]] = defaultdict(list)
    done: dict[str, float] = {}

    def on_progress(question: str, progress: FitProgress) -> None:
        phase = "sampling" if progress.phase == "warming up" else progress.phase
        marks = began[question]
        if phase != "waiting" and (not marks or marks[-1][0] != phase):
            marks.append((phase, time.monotonic() - start))

    def on_done(outcome: Outcome) -> None:
        done[outcome.question] = time.monotonic() - start

    report = run_demo(
        out, jobs=args.jobs, joint=False, seed=args.seed, on_progress=on_progress,
        on_done=on_done,
    )  # fmt: skip
    wall = time.monotonic() - start
    seconds: dict[str, dict[str, float]] = {}
    for question, marks in began.items():
        ends = [t for _, t in marks[1:]] + [done.get(question, wall)]
        per = dict.fromkeys(PHASES, 0.0)
        for (phase, t0), t1 in zip(marks, ends, strict=True):
            per[phase] = per.get(phase, 0.0) + t1 - t0
        seconds[question] = per
    totals = {p: sum(s[p] for s in seconds.values()) for p in PHASES}
    rows = [
        [q, *(fmt(s[p]) for p in PHASES), fmt(sum(s.values()))] for q, s in sorted(seconds.items())
    ]
    rows.append(["all questions", *(fmt(totals[p]) for p in PHASES), fmt(sum(totals.values()))])
    print_and_record(
        ["question", *(f"{p} s" for p in PHASES), "total s"],
        rows,
        "demo_phases",
        {"jobs": args.jobs, "seed": args.seed, "joint": False},
        seconds=seconds,
        totals=totals,
        wall_s=wall,
        report=str(report),
    )
    print(f"wall time to the report: {wall:.1f} s; {args.jobs} workers; report {report}")


if __name__ == "__main__":
    main()
