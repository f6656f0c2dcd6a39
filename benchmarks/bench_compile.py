"""How long the bundled models take to compile, one after another on one empty cache.

A user's first run compiles every model it fits; the kernels one model compiled (and,
for a model whose graph equals an earlier one's, all its code) the next loads from the
disk cache. This script measures that sequence: each round gives every source tree a new,
empty cache folder (PyTensor's, numba's and this package's, ``common.cache_env``) and
compiles the one-question specs of ``models/`` in the order given, each in a fresh
process (imports excluded from the figure: the build of the PyMC model and its nutpie
compile are timed). It prints each model's compile time, whether nutpie's callbacks came
from the cache, and the sum over the models; with ``--other SRC`` (another checkout's
``src``) each round repeats the sequence from that tree right after this tree's and
prints the ratios this / other. Usage::

    .venv/bin/python benchmarks/bench_compile.py [--rounds 2] [--other /tmp/old/src]
        [--specs main_enemy presence_china ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import HERE, cache_env, fmt, markdown_table, write_record

MODELS = HERE.parent / "models"
MARK = "BENCH_COMPILE "


def one_question_specs() -> list[str]:
    """The one-question specs of ``models/``, in the demo's (alphabetical) order."""
    from opinionmap.joint import is_joint_spec

    return [p.stem for p in sorted(MODELS.glob("*.toml")) if not is_joint_spec(p)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds (medians)")
    parser.add_argument("--other", type=Path, help="another source tree's src/ to compare with")
    parser.add_argument("--specs", nargs="+", help="specs, in order (default: models/, the demo's)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def child(path: Path) -> None:
    """Build and compile one spec's model in this process; print the figures."""
    from opinionmap import read_spec, read_survey
    from opinionmap.design import build_design
    from opinionmap.fitting import compile_model
    from opinionmap.model import build_model
    from opinionmap.plan import make_plan

    spec = read_spec(path)
    design = build_design(spec, read_survey(spec.data))
    plan = make_plan(design)
    start, cpu = time.perf_counter(), time.process_time()
    compiled = compile_model(build_model(design, plan))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    loaded = getattr(compiled.compiled_logp_func, "cache_hits", 0) > 0
    gradient_ms, logp = time_gradient(compiled)
    record = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "loaded": loaded,
        "n_dim": int(compiled.n_dim),
        "gradient_ms": gradient_ms,
        "logp": logp,
    }
    print(MARK + json.dumps(record), flush=True)


def time_gradient(compiled: Any, batches: int = 15) -> tuple[float, float]:
    """Milliseconds per call of the compiled log density and gradient (the fastest batch).

    The call is nutpie's C callback itself, at a fixed point near the origin of the
    unconstrained space; the second figure is the log density there.
    """
    import ctypes

    import numpy as np

    func = compiled.compiled_logp_func.ctypes
    n_dim = int(compiled.n_dim)
    x = np.random.default_rng(0).normal(scale=0.1, size=n_dim)
    grad, logp = np.zeros(n_dim), np.zeros(())
    double = ctypes.POINTER(ctypes.c_double)
    args = (
        n_dim,
        x.ctypes.data_as(double),
        grad.ctypes.data_as(double),
        logp.ctypes.data_as(double),
        compiled.user_data.ctypes.data_as(ctypes.c_void_p),
    )
    code = func(*args)
    if code != 0:
        raise SystemExit(f"the log density failed at the benchmark's point (code {code})")
    start = time.perf_counter()
    func(*args)
    calls = max(50, int(0.3 / max(time.perf_counter() - start, 1e-7)))
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            func(*args)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3, float(logp)


def compile_in_process(spec: str, env: dict[str, str]) -> dict[str, object]:
    """Run the child for one spec; return its figures."""
    path = MODELS / f"{spec}.toml"
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"compiling {path} failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1][len(MARK) :])
    return result


def table(
    runs: list[dict[str, object]], specs: list[str], trees: list[str], rounds: int
) -> tuple[list[str], list[list[str]], dict[str, float]]:
    """The printed table (compile seconds and gradient milliseconds, medians over rounds)."""

    def median(tree: str, spec: str | None = None, key: str = "seconds") -> float:
        per_round = [
            sum(float(r[key]) for r in runs  # type: ignore[arg-type]
                if r["tree"] == tree and r["round"] == k and spec in (None, r["spec"]))
            for k in range(1, rounds + 1)
        ]  # fmt: skip
        return statistics.median(per_round)

    def gradient(tree: str, spec: str) -> float:
        """The median over rounds of one spec's milliseconds per log density and gradient."""
        return statistics.median(
            float(r["gradient_ms"])  # type: ignore[arg-type]
            for r in runs
            if r["tree"] == tree and r["spec"] == spec
        )

    header = ["spec", *(f"{tree} s" for tree in trees)]
    rows = [[spec, *(fmt(median(tree, spec)) for tree in trees)] for spec in specs]
    rows.append(["all, in this order", *(fmt(median(tree)) for tree in trees)])
    if "other" in trees:
        header.append("this / other")
        for row, spec in zip(rows, [*specs, None], strict=True):
            row.append(f"{median('this tree', spec) / median('other', spec):.2f}")
    header += [f"{tree} CPU s" for tree in trees]
    for row, spec in zip(rows, [*specs, None], strict=True):
        row += [fmt(median(tree, spec, "cpu_seconds")) for tree in trees]
    header += [f"{tree} gradient ms" for tree in trees]
    for row, spec in zip(rows, [*specs, None], strict=True):
        row += [f"{gradient(tree, spec):.4f}" if spec else "" for tree in trees]
    if "other" in trees:
        header.append("gradient this / other")
        for row, spec in zip(rows, [*specs, None], strict=True):
            ratio = gradient("this tree", spec) / gradient("other", spec) if spec else None
            row.append(f"{ratio:.2f}" if ratio is not None else "")
    return header, rows, {tree: median(tree) for tree in trees}


def main() -> None:
    args = parse_args()
    if args.child is not None:
        child(args.child)
        return
    args.specs = args.specs or one_question_specs()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="bench_compile_"))
    trees: dict[str, Path | None] = {"this tree": None}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    runs: list[dict[str, object]] = []
    for round_ in range(1, args.rounds + 1):
        for t, (tree, src) in enumerate(trees.items()):
            env = cache_env(work / f"cache_r{round_}_t{t}", src)
            for spec in args.specs:
                result = compile_in_process(spec, env)
                runs.append({"round": round_, "tree": tree, "spec": spec, **result})
                print(
                    f"round {round_} {tree}: {spec} {float(result['seconds']):.1f} s"  # type: ignore[arg-type]
                    f" (CPU {float(result['cpu_seconds']):.1f} s)"  # type: ignore[arg-type]
                    f"{' (callbacks from the cache)' if result['loaded'] else ''}; log density "
                    f"and gradient {float(result['gradient_ms']):.4f} ms"  # type: ignore[arg-type]
                    f" (log density {float(result['logp']):.6f})",  # type: ignore[arg-type]
                    flush=True,
                )

    header, rows, summary = table(runs, args.specs, list(trees), args.rounds)
    print()
    print(markdown_table(header, rows))
    path = HERE / "results" / f"bench_compile_{stamp}.json"
    settings = {"rounds": args.rounds, "specs": args.specs, "other": str(args.other or "")}
    write_record(path, settings, runs=runs, median_total_s=summary)
    print(
        f"median over {args.rounds} rounds of each spec's compile seconds and of its "
        f"milliseconds per log density and gradient (fastest batch); results: {path}"
    )


if __name__ == "__main__":
    main()
