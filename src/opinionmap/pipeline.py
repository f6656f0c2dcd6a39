"""Batch runs: fit several specs in worker processes and build one report from them.

:func:`run_specs` fits each spec to one survey (several at a time, each in its own
process), saves each fit to ``OUT/fits/<outcome>.nc`` and has the same process
write the question's report section (poststratification, tables, figures), so
that the parent only puts the sections together into ``OUT/report.html``. The
same seed gives the same draws whatever the number of processes. The bundled
demo (:mod:`opinionmap.demo`) is one such run.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opinionmap.errors import OpinionmapError
from opinionmap.progress import FitProgress
from opinionmap.report import ReportOptions, Section, write_report
from opinionmap.spec import DEFAULT_SAMPLING, ModelSpec, Sampling, read_spec

__all__ = ["Outcome", "Project", "read_project", "run_specs"]


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: the question, its verdict and its report section."""

    question: str
    verdict: str
    converged: bool
    section: Section


@dataclass(frozen=True)
class _Job:
    """One question's work, as passed to a worker process (paths, not data)."""

    spec_path: Path
    survey_path: Path
    codebook_path: Path | None
    frame_path: Path
    weight: str
    out: Path
    sampling: Sampling
    report: ReportOptions
    progress: bool
    # where the worker sends (question, FitProgress): a queue, or None
    events: Any = None


def run_specs(
    spec_paths: Sequence[Path],
    *,
    survey_path: Path,
    frame_path: Path,
    weight: str,
    out: Path,
    sampling: Sampling | None = None,
    report: ReportOptions | None = None,
    jobs: int = 1,
    progress: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    on_done: Callable[[Outcome], None] = lambda _outcome: None,
    on_progress: Callable[[str, FitProgress], None] | None = None,
    codebook_path: Path | None = None,
) -> Path:
    """Fit every spec to the survey, save the fits and write one report; return its path.

    Parameters
    ----------
    spec_paths
        Model specs (TOML), one question each.
    survey_path, frame_path, weight
        The survey (read with :func:`~opinionmap.read_survey`, its codebook beside
        it), the frame (:func:`~opinionmap.read_frame`) and the frame's count column.
    out
        Output folder: ``fits/<outcome>.nc``, the report and its tables and figures.
    sampling
        Settings laid over each spec's ``[sampling]`` (:class:`~opinionmap.spec.Sampling`);
        ``cores`` defaults to the CPUs shared among the jobs.
    report
        What the report shows (:class:`~opinionmap.report.ReportOptions`); question
        labels default to the survey codebook's.
    jobs
        Questions fitted at once, each in its own process.
    progress
        Show a progress bar while sampling (only with ``jobs=1``).
    say, on_done
        Called with a line of progress, and with each question's :class:`Outcome`.
    on_progress
        Called with a question and its :class:`~opinionmap.progress.FitProgress`
        (waiting, compiling, warming up and sampling with the draws done and the
        divergences so far, summarising, reporting), from a thread of this process,
        for a live display (:class:`~opinionmap.progress.Board`).
    codebook_path
        The survey's codebook (default: ``<survey stem>.codebook.toml`` beside it).
    """
    from opinionmap.frame import read_frame
    from opinionmap.survey import read_survey

    if not spec_paths:
        raise OpinionmapError("no model specs to fit.")
    specs = [read_spec(p) for p in spec_paths]
    # a report left by an earlier run would sit beside this run's fits until it finishes
    (out / "report.html").unlink(missing_ok=True)
    survey = read_survey(survey_path, codebook_path)
    frame = read_frame(frame_path, weight=weight)
    report = report or ReportOptions()
    if not report.labels:
        codebook = survey.codebook
        labels = {
            s.outcome: str(codebook[s.outcome].label)
            for s in specs
            if s.outcome in codebook.names and codebook[s.outcome].label
        }
        report = replace(report, labels=labels)
    cpus = os.cpu_count() or 1
    sampling = sampling or Sampling()
    if sampling.cores is None:
        sampling = sampling.merged(cores=max(1, cpus // jobs))
    for i, spec in enumerate(specs, start=1):
        say(f"[{i}/{len(specs)}] fitting {_describe(spec, sampling)}")
        if on_progress is not None:
            on_progress(spec.outcome, FitProgress("waiting"))
    shows = progress and jobs == 1
    work = [
        _Job(p, survey_path, codebook_path, frame_path, weight, out, sampling, report, shows)
        for p in spec_paths
    ]
    sections = {}
    for outcome in _run(work, jobs, on_progress):
        on_done(outcome)
        sections[outcome.question] = outcome.section
    say("report: putting the sections together")
    return write_report([sections[s.outcome] for s in specs], frame, out, options=report)


@dataclass(frozen=True)
class Project:
    """A project folder: the specs in ``models/``, their survey, its codebook and the frame."""

    folder: Path
    specs: tuple[Path, ...]
    survey: Path
    codebook: Path | None
    frame: Path

    @property
    def out(self) -> Path:
        """Where ``opinionmap run`` writes: ``report/`` (fits in ``report/fits/``)."""
        return self.folder / "report"


def read_project(folder: str | os.PathLike[str]) -> Project:
    """A project folder, checked: ``models/*.toml`` naming one survey, and ``frame.csv``.

    The survey is the file the specs' ``data`` names (the same for every spec); the
    codebook is ``codebook.toml`` in the folder, else the one beside the survey; the
    frame is ``frame.csv`` (or ``frame.parquet``), counts in ``population``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise OpinionmapError(f"{root}: no such project folder.")
    specs = tuple(sorted((root / "models").glob("*.toml")))
    if not specs:
        raise OpinionmapError(
            f"{root}: no model specs in {root / 'models'} (one <outcome>.toml per question)."
        )
    surveys: dict[Path, list[str]] = {}
    for path in specs:
        data = read_spec(path).data
        if data is None:
            raise OpinionmapError(
                f'{path}: names no survey; add data = "<survey file>" (relative to the spec).'
            )
        surveys.setdefault(data.resolve(), []).append(path.name)
    if len(surveys) > 1:
        named = "; ".join(f"{s}: {', '.join(n)}" for s, n in surveys.items())
        raise OpinionmapError(
            f"{root}: the specs name different surveys ({named}); a project has one survey."
        )
    frames = [root / name for name in ("frame.csv", "frame.parquet") if (root / name).is_file()]
    if not frames:
        raise OpinionmapError(
            f"{root}: no frame; write frame.csv with the population count of every cell of "
            "the models' variables in a column named population."
        )
    codebook = root / "codebook.toml"
    return Project(
        root, specs, next(iter(surveys)), codebook if codebook.is_file() else None, frames[0]
    )


def _describe(spec: ModelSpec, sampling: Sampling) -> str:
    settings = {**DEFAULT_SAMPLING, **spec.sampling.merged(sampling).to_dict()}
    return f"{spec.outcome} ({spec.family}, {settings['chains']} x {settings['draws']})"


def _run(
    work: list[_Job], jobs: int, on_progress: Callable[[str, FitProgress], None] | None
) -> Iterator[Outcome]:
    """Each job's outcome as soon as it is done (in this process when ``jobs`` is 1)."""
    if jobs == 1:
        events = None if on_progress is None else _Direct(on_progress)
        yield from (_fit_and_report(replace(job, events=events)) for job in work)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold threads (numba, nutpie)
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        if on_progress is not None:
            queue = stack.enter_context(context.Manager()).Queue()
            stack.enter_context(_forwarding(queue, on_progress))
            work = [replace(job, events=queue) for job in work]
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init)
        )
        futures = [pool.submit(_fit_and_report, job) for job in work]
        for future in as_completed(futures):
            yield future.result()


class _Direct:
    """A stand-in for a queue, in one process: ``put`` calls the callback at once."""

    def __init__(self, callback: Callable[[str, FitProgress], None]) -> None:
        self._callback = callback

    def put(self, item: tuple[str, FitProgress]) -> None:
        self._callback(*item)


@contextmanager
def _forwarding(queue: Any, callback: Callable[[str, FitProgress], None]) -> Iterator[None]:
    """Pass what the workers put on ``queue`` to ``callback``, from a thread, until the end."""

    def forward() -> None:
        while (item := queue.get()) is not None:
            callback(*item)

    thread = threading.Thread(target=forward, name="opinionmap-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        queue.put(None)
        thread.join(timeout=5)


def _fit_and_report(job: _Job) -> Outcome:
    """Fit one spec, save it and write its report section (a worker's task)."""
    from opinionmap.diagnostics import ConvergenceWarning
    from opinionmap.fitting import fit
    from opinionmap.frame import read_frame
    from opinionmap.report import report_section
    from opinionmap.survey import read_survey

    # the verdict goes back in the Outcome and into the report; the library's warnings
    # that the numbers come from a fit that did not converge would only repeat it
    warnings.simplefilter("ignore", ConvergenceWarning)
    survey = read_survey(job.survey_path, job.codebook_path)
    spec = read_spec(job.spec_path)
    q = spec.outcome

    def tell(progress: FitProgress) -> None:
        if job.events is not None:
            job.events.put((q, progress))

    result = fit(
        spec,
        survey,
        sampling=job.sampling,
        progress=job.progress,
        on_progress=tell,
        warn=False,
    )
    result.save(job.out / "fits" / f"{q}.nc")
    frame = read_frame(job.frame_path, weight=job.weight)
    tell(FitProgress("reporting"))
    section = report_section(result, frame, job.out, survey=survey, options=job.report)
    diagnostics = result.diagnostics
    return Outcome(q, diagnostics.verdict(), diagnostics.converged, section)


def _worker_init() -> None:
    """Let a worker process end without tearing its interpreter down.

    The worker's results have gone back to the parent by then; the teardown (freeing
    the compiled models and their LLVM code) takes 2-4 s, during which the parent
    waits for the pool to close.
    """
    import atexit
    import sys

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)
