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
    start = time.perf_counter()
    compiled = compile_model(build_model(design, plan))
    seconds = time.perf_counter() - start
    loaded = getattr(compiled.compiled_logp_func, "cache_hits", 0) > 0
    record = {"seconds": seconds, "loaded": loaded, "n_dim": int(compiled.n_dim)}
    print(MARK + json.dumps(record), flush=True)


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
                    f"{' (callbacks from the cache)' if result['loaded'] else ''}",
                    flush=True,
                )

    def median(tree: str, spec: str | None = None) -> float:
        per_round = [
            sum(float(r["seconds"]) for r in runs  # type: ignore[arg-type]
                if r["tree"] == tree and r["round"] == k and spec in (None, r["spec"]))
            for k in range(1, args.rounds + 1)
        ]  # fmt: skip
        return statistics.median(per_round)

    header = ["spec", *(f"{tree} s" for tree in trees)]
    rows = [[spec, *(fmt(median(tree, spec)) for tree in trees)] for spec in args.specs]
    rows.append(["all, in this order", *(fmt(median(tree)) for tree in trees)])
    if args.other is not None:
        header.append("this / other")
        for row, spec in zip(rows, [*args.specs, None], strict=True):
            row.append(f"{median('this tree', spec) / median('other', spec):.2f}")
    print()
    print(markdown_table(header, rows))
    summary = {tree: median(tree) for tree in trees}
    path = HERE / "results" / f"bench_compile_{stamp}.json"
    settings = {"rounds": args.rounds, "specs": args.specs, "other": str(args.other or "")}
    write_record(path, settings, runs=runs, median_total_s=summary)
    print(f"median over {args.rounds} rounds of each spec's compile seconds; results: {path}")


if __name__ == "__main__":
    main()
