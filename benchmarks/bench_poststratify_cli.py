"""``opinionmap poststratify`` on a saved fit: wall time and peak memory, two source trees.

The whole command, as a user runs it after fitting, in fresh processes: interpreter
start, imports, loading the fit, reading the frame, poststratifying by region and
writing the table. Its peak resident memory comes from the process's own resource
usage (``os.wait4``). With ``--other SRC`` (another checkout's ``src`` folder, e.g.
an earlier commit), the same is run from that tree through ``PYTHONPATH``,
alternating with this one, round by round, so both see the same machine load.

Each tree first fits the same bundled question with the same seed and settings
(``--draws`` per chain x 4 chains; untimed), because each reads the fits its own
version writes; the same seed gives the same draws in both, and the script checks
that the two estimates tables agree in the columns both write. Usage::

    .venv/bin/python benchmarks/bench_poststratify_cli.py [--other /tmp/old/src] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import HERE, fmt, markdown_table, results_path, write_record

ROOT = HERE.parent
CLI = "from opinionmap.cli import main; main()"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another source tree's src/ to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per tree")
    parser.add_argument("--question", default="presence_russia")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (4 chains)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def env_for(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command to its end: (wall seconds, peak resident memory in MiB)."""
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - begin
    output = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    args = parse_args()
    trees: dict[str, Path | None] = {"this tree": None}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    spec = ROOT / "models" / f"{args.question}.toml"
    frame = ROOT / "data" / "kazakhstan" / "frame_2020.csv"
    work = Path(tempfile.mkdtemp(prefix="bench_pscli_"))
    fits = {}
    for label, src in trees.items():
        fits[label] = work / f"fit_{len(fits)}.nc"
        print(f"fitting {args.question} with {label} ({src or 'installed'}) ...", flush=True)
        run(
            [sys.executable, "-c", CLI, "fit", str(spec), "--out", str(fits[label]),
             "--draws", str(args.draws), "--chains", "4", "--seed", "2020", "--no-progress"],
            env_for(src),
        )  # fmt: skip
    times: dict[str, list[float]] = {label: [] for label in trees}
    peaks: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(args.rounds):
        for i, (label, src) in enumerate(trees.items()):
            argv = [sys.executable, "-c", CLI, "poststratify", str(fits[label]),
                    "--frame", str(frame), "--by", "region", "--prob", "0.9",
                    "--out", str(work / f"est_{i}.csv")]  # fmt: skip
            wall, peak = run(argv, env_for(src))
            times[label].append(wall)
            peaks[label].append(peak)
    if len(trees) == 2:
        a, b = (pd.read_csv(work / f"est_{i}.csv") for i in range(2))
        common = [c for c in a.columns if c in b.columns]
        pd.testing.assert_frame_equal(a[common], b[common])
        print(f"the two trees' estimates agree in every column they share ({', '.join(common)})")
    rows = [
        [
            label,
            str(src or "installed"),
            fmt(statistics.median(times[label]), ".2f"),
            f"{min(times[label]):.2f}-{max(times[label]):.2f}",
            fmt(statistics.median(peaks[label]), ".0f"),
        ]
        for label, src in trees.items()
    ]
    print(
        markdown_table(["tree", "src", "median s", "range s", "peak MiB (median)"], rows),
        flush=True,
    )
    ratios = {}
    if len(trees) == 2:
        ratios = {
            "time this/other": statistics.median(times["this tree"])
            / statistics.median(times["other"]),
            "peak this/other": statistics.median(peaks["this tree"])
            / statistics.median(peaks["other"]),
        }
        print(", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    out = results_path("bench_poststratify_cli")
    write_record(
        out,
        {"question": args.question, "draws": args.draws, "chains": 4, "rounds": args.rounds,
         "other": str(args.other) if args.other else None},
        seconds=times,
        peak_mib=peaks,
        ratios=ratios,
    )  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
