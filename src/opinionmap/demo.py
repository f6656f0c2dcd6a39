"""The worked example: every bundled question fitted and reported for Kazakhstan's regions.

:func:`run_demo` is :func:`opinionmap.pipeline.run_project` on the bundled project
folder (:func:`opinionmap.datasets.project_dir`, the repository's root), whose
``opinionmap.toml`` names the synthetic 2020 survey's codebook, the frame of adults by
region x sex x age x ethnicity x settlement, the region boundaries and names, the
published national figures, the groups the report breaks each question down by and the
notes on how the frame and the survey were made. ``opinionmap demo`` and
``opinionmap run`` on that folder take the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from opinionmap import datasets
from opinionmap.joint import is_joint_spec
from opinionmap.pipeline import Outcome, read_project, run_project
from opinionmap.progress import FitProgress
from opinionmap.spec import Sampling

__all__ = ["QUICK", "run_demo", "sampling"]

# the smoke run's sampler settings: few draws, fits that do not converge
QUICK = Sampling(draws=150, tune=200, chains=2)


def sampling(*, quick: bool, seed: int) -> Sampling:
    """The settings laid over each spec's: the smoke run's (``quick``) or none, and the seed."""
    return (QUICK if quick else Sampling()).merged(seed=seed)


def run_demo(
    out: Path,
    *,
    quick: bool = False,
    models: Path | None = None,
    seed: int = 2020,
    jobs: int = 1,
    joint: bool = True,
    say: Callable[[str], None] = lambda _line: None,
    on_done: Callable[[Outcome], None] = lambda _outcome: None,
    on_progress: Callable[[str, FitProgress], None] | None = None,
) -> Path:
    """Fit every spec in ``models`` (default: the bundled ``models/``) and write the report.

    ``quick`` samples 2 chains x 150 draws (a smoke run); otherwise each spec's
    ``[sampling]`` table, else 4 chains x 1,000 draws. Joint specs (several questions
    in one model, ``models/presence_joint.toml``) come after the one-question specs:
    the report of the questions is written as soon as they are done, and written again
    with the joint model's section when it is done (about 2 minutes more on 2 cores,
    ``benchmarks/README.md``); ``joint=False`` leaves them out. ``say``, ``on_done`` and
    ``on_progress`` as in :func:`~opinionmap.pipeline.run_specs`. Returns the
    report's path.
    """
    project = read_project(datasets.project_dir(), models=models)
    if not joint:
        left = [p for p in project.specs if is_joint_spec(p)]
        for path in left:
            say(f"{path.name}: a joint model of several questions, left out (--no-joint)")
        project = replace(project, specs=tuple(p for p in project.specs if p not in left))
    return run_project(
        project,
        out=out,
        sampling=sampling(quick=quick, seed=seed),
        jobs=jobs,
        progress=not quick and on_progress is None,
        say=say,
        on_done=on_done,
        on_progress=on_progress,
    )
