"""Batch runs: fit several specs in worker processes or on a cluster, and report them.

:func:`fit_many` fits each spec (several at a time, each in its own process, or as
tasks on a ``dask.distributed`` cluster, one per worker at a time) and saves it to
``DIR/<spec stem>.nc``. :func:`run_specs` fits each spec to one survey the same way,
saves each fit to ``OUT/fits/<outcome>.nc`` and has the same process write the
question's report section (poststratification, tables, figures), so that the parent
only puts the sections together into ``OUT/report.html``. Both hand their jobs to
one runner (local processes, or :mod:`opinionmap.cluster`), and the same seed gives
the same draws whatever runs them. The bundled demo (:mod:`opinionmap.demo`) is one
such run.
"""

from __future__ import annotations

import os
import threading
import tomllib
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opinionmap import _workers
from opinionmap._workers import default_jobs
from opinionmap.errors import OpinionmapError, check_keys, format_values
from opinionmap.joint import JointResult, JointSpec
from opinionmap.progress import FitProgress
from opinionmap.report import ReportOptions, Section, write_report
from opinionmap.spec import DEFAULT_SAMPLING, ModelSpec, Sampling, read_spec

if TYPE_CHECKING:
    from distributed import Client

    from opinionmap.results import FitResult
    from opinionmap.survey import Survey

__all__ = [
    "PROJECT_FILE",
    "Outcome",
    "Project",
    "SavedFit",
    "fit_many",
    "read_project",
    "run_project",
    "run_specs",
]


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
    # run at a lower CPU priority (a worker process's joint fit, which may start while
    # the last questions are still fitting: they, and the report of them, come first)
    background: bool = False

    @property
    def name(self) -> str:
        """The spec's name (its file's stem)."""
        return self.spec_path.stem


@dataclass(frozen=True)
class SavedFit:
    """A fit :func:`fit_many` saved: its spec's name, its question, file and verdict."""

    name: str  # the spec file's stem, the fit's as well
    question: str  # a joint model's: its questions, comma-separated
    path: Path
    verdict: str
    converged: bool


@dataclass(frozen=True)
class _FitJob:
    """One spec to fit and save, as passed to a worker (absolute paths, not data)."""

    spec_path: Path
    survey_path: Path
    path: Path
    sampling: Sampling
    progress: bool
    # where the worker sends (question, FitProgress): a queue, a cluster's topic, or None
    events: Any = None

    @property
    def name(self) -> str:
        """The spec's name (its file's stem)."""
        return self.spec_path.stem


def fit_many(
    specs: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    client: Client | str | None = None,
    sampling: Sampling | None = None,
    jobs: int | None = None,
    progress: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    on_done: Callable[[SavedFit], None] = lambda _fit: None,
    on_progress: Callable[[str, FitProgress], None] | None = None,
) -> list[SavedFit]:
    """Fit every spec to the survey it names and save each fit as ``out_dir/<stem>.nc``.

    Every spec is read and checked against its survey before any fit starts. The
    fits run in local processes, or, given a ``dask.distributed`` client or
    scheduler address, as tasks on the cluster's workers, each worker fitting one
    model at a time (see :mod:`opinionmap.cluster`; the workers must see the specs,
    the surveys and ``out_dir`` at the same paths). Each file is written whole or
    not at all. The same seed gives the same draws either way.

    Parameters
    ----------
    specs
        Model specs (TOML), each naming its survey (``data``; the codebook is the
        ``<stem>.codebook.toml`` beside it). Their file names must differ.
    out_dir
        Folder for the fits (created if need be).
    client
        A :class:`distributed.Client`, or the address of a scheduler
        (``tcp://host:8786``) to connect to for this call; ``None`` (default): local
        processes.
    sampling
        Settings laid over each spec's ``[sampling]`` (:class:`~opinionmap.spec.Sampling`),
        the seed among them; locally, ``cores`` defaults to the CPUs shared among the
        jobs, and every CPU for the last ``jobs`` fits (:func:`_job_cores`).
    jobs
        Fits at once in local processes (default: the CPUs, at most 4); ``1`` fits in
        this process. Not with ``client``: a cluster runs one fit per worker.
    progress
        Show a progress bar while sampling (only when fitting in this process).
    say, on_done
        Called with a line of progress, and with each :class:`SavedFit` as it is saved.
    on_progress
        Called with a spec's name (its file's stem) and its
        :class:`~opinionmap.progress.FitProgress`, for a live display
        (:class:`~opinionmap.progress.Board`).

    Returns
    -------
    list of SavedFit
        One per spec, in the order given.

    Raises
    ------
    OpinionmapError
        A spec or its survey that fails its checks (naming the file), two specs with
        the same file name, ``jobs`` with ``client``, or a scheduler that cannot be
        reached.

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> specs = sorted(om.datasets.models_dir().glob("*.toml"))  # doctest: +SKIP
    >>> saved = om.fit_many(specs, out_dir="fits", client="tcp://10.0.0.5:8786")  # doctest: +SKIP
    >>> [(s.path.name, s.converged) for s in saved]  # doctest: +SKIP
    """
    from opinionmap._io import check_writable

    paths = [Path(p).resolve() for p in specs]
    folder = check_writable(out_dir, folder=True).resolve()
    if client is not None and jobs is not None:
        raise OpinionmapError(
            f"jobs={jobs} counts local processes; on a cluster each worker fits one model at "
            "a time: leave jobs (--jobs) out, and add workers for more fits at once."
        )
    if jobs is not None and jobs < 1:
        raise OpinionmapError(f"jobs must be 1 or more, got {jobs}.")
    checked = _checked_specs(paths)
    sampling = sampling or Sampling()
    cores: list[int | None] = [None] * len(paths)
    if client is None:
        jobs = min(jobs or default_jobs(), len(paths))
        cores = list(_job_cores(sampling, len(paths), jobs))
    work = [
        _FitJob(
            path,
            survey,
            folder / f"{path.stem}.nc",
            sampling.merged(cores=c),
            progress and jobs == 1,
        )
        for path, (_spec, survey), c in zip(paths, checked, cores, strict=True)
    ]
    saved = {}
    with ExitStack() as stack:
        cluster = None if isinstance(client, str) else client
        if isinstance(client, str):
            from opinionmap.cluster import connect

            cluster = stack.enter_context(connect(client))
        for i, (job, (spec, _survey)) in enumerate(zip(work, checked, strict=True), start=1):
            say(f"[{i}/{len(work)}] fitting {_describe(spec, sampling)} -> {job.path.name}")
            if on_progress is not None:
                on_progress(job.name, FitProgress("waiting"))
        for fitted in _execute(_fit_and_save, work, jobs or 1, on_progress, cluster):
            on_done(fitted)
            saved[fitted.path] = fitted
    return [saved[job.path] for job in work]


def _checked_specs(paths: list[Path]) -> list[tuple[ModelSpec | JointSpec, Path]]:
    """Each spec read and checked against its survey (read once each); its survey's path."""
    from opinionmap.design import build_design
    from opinionmap.joint import build_joint_design
    from opinionmap.survey import read_survey

    if not paths:
        raise OpinionmapError("no model specs to fit.")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise OpinionmapError(
                f"{stems[path.stem]} and {path} would both be saved as {path.stem}.nc; rename one."
            )
        stems[path.stem] = path
    surveys: dict[Path, Survey] = {}
    checked = []
    for path in paths:
        spec = _read_any_spec(path)
        one = _base(spec)
        if one.data is None:
            raise OpinionmapError(
                f'{path}: names no survey; add data = "<survey file>" (relative to the spec).'
            )
        data = Path(one.data).resolve()
        try:
            if data not in surveys:
                surveys[data] = read_survey(data)
            if isinstance(spec, JointSpec):
                build_joint_design(spec, surveys[data])
            else:
                build_design(spec, surveys[data])
        except OpinionmapError as exc:
            raise OpinionmapError(f"{path}: {exc}") from exc
        checked.append((spec, data))
    return checked


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
        Model specs (TOML): one question each, or a joint spec of several
        (:func:`~opinionmap.joint.read_joint_spec`), fitted after the others and its
        section after theirs: the report of the one-question specs is written as soon
        as they are done (its first screen names the joint models still fitting), then
        again with every section.
    survey_path, frame_path, weight
        The survey (read with :func:`~opinionmap.read_survey`, its codebook beside
        it), the frame (:func:`~opinionmap.read_frame`, its labels mapped by the
        codebook's ``[recode]``) and the frame's count column.
    out
        Output folder: ``fits/<outcome>.nc``, the report and its tables and figures.
    sampling
        Settings laid over each spec's ``[sampling]`` (:class:`~opinionmap.spec.Sampling`);
        ``cores`` defaults to the CPUs shared among the jobs, and every CPU for the last
        ``jobs`` fits of the questions (:func:`_job_cores`) and for a joint model.
    report
        What the report shows (:class:`~opinionmap.report.ReportOptions`); question
        labels default to the survey codebook's.
    jobs
        Questions fitted at once, each in its own process; there a joint model runs at
        a lower CPU priority, so that it does not slow the last questions it overlaps.
        The questions' fits start with the cheapest (a first verdict soon), then the
        dearest first, so that the processes finish together; the report keeps the
        specs' order.
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
    specs = {p: _read_any_spec(p) for p in spec_paths}
    # a report left by an earlier run would sit beside this run's fits until it finishes
    (out / "report.html").unlink(missing_ok=True)
    survey = read_survey(survey_path, codebook_path)
    # the codebook's [recode] maps the frame's labels onto the survey's; its categorical
    # variables are cells even where the frame codes them as numbers
    frame = read_frame(frame_path, weight=weight, codebook=survey.codebook)
    report = report or ReportOptions()
    report.check_frame(frame, frame_path)
    if not report.labels:
        codebook = survey.codebook
        questions = [q for spec in specs.values() for q in _questions(spec)]
        labels = {
            q: str(codebook[q].label)
            for q in questions
            if q in codebook.names and codebook[q].label
        }
        report = replace(report, labels=labels)
    cpus = os.cpu_count() or 1
    sampling = sampling or Sampling()
    # the one-question fits come first and the report is written as soon as they are
    # done; a joint model, by far the slowest fit, follows with every core (at a lower
    # priority in a worker process, since it may start while the last questions fit) and
    # its section is added to the report when it is done
    joint_sampling = sampling if sampling.cores is not None else sampling.merged(cores=cpus)
    names = {p: _section_name(p, spec) for p, spec in specs.items()}
    # each question, then the joint models: the report's order (the questions' fits start
    # in _fit_order's: the cheapest, then the dearest first)
    order = sorted(spec_paths, key=lambda p: isinstance(specs[p], JointSpec))
    for i, p in enumerate(order, start=1):
        say(f"[{i}/{len(specs)}] fitting {_describe(specs[p], sampling)}")
        if on_progress is not None:
            on_progress(names[p], FitProgress("waiting"))
    questions = [names[p] for p in order if not isinstance(specs[p], JointSpec)]
    joint_models = [names[p] for p in order if isinstance(specs[p], JointSpec)]
    shows = progress and jobs == 1
    one_question = [p for p in order if not isinstance(specs[p], JointSpec)]
    fitted = [*_fit_order(one_question, specs, survey, sampling), *order[len(one_question) :]]
    # the questions' fits, in the order they start; a joint fit takes every core
    cores: list[int | None] = [
        *_job_cores(sampling, len(one_question), jobs, cpus),
        *(joint_sampling.cores for _ in joint_models),
    ]
    work = [
        _Job(
            p,
            survey_path,
            codebook_path,
            frame_path,
            weight,
            out,
            (joint_sampling if isinstance(specs[p], JointSpec) else sampling).merged(cores=c),
            report,
            shows,
            background=jobs > 1 and isinstance(specs[p], JointSpec) and bool(questions),
        )
        for p, c in zip(fitted, cores, strict=True)
    ]
    early = bool(questions and joint_models)  # a report of the questions while joints fit
    sections: dict[str, Section] = {}
    for outcome in _execute(_fit_and_report, work, jobs, on_progress):
        on_done(outcome)
        if not sections and jobs > 1 and report.boundaries is not None:
            # while the workers fit: pyplot for the report's first-screen maps (0.7 s),
            # which this process draws once the last fit is done
            import matplotlib.pyplot  # noqa: F401
        sections[outcome.question] = outcome.section
        pending = [name for name in joint_models if name not in sections]
        if early and pending and all(q in sections for q in questions):
            early = False
            say("report: putting the questions' sections together")
            path = write_report(
                [sections[q] for q in questions], frame, out, options=report, pending=pending
            )
            say(
                f"report written to {path.resolve()} with the questions' sections "
                f"({len(questions)}); {', '.join(pending)} still fitting, its section follows"
            )
    say("report: putting the sections together")
    return write_report([sections[names[p]] for p in order], frame, out, options=report)


def _job_cores(sampling: Sampling, n: int, jobs: int, cpus: int | None = None) -> list[int]:
    """The cores of each of ``n`` fits in the order they start, ``jobs`` at a time.

    ``sampling.cores`` when it is set. Otherwise each fit gets its share of the CPUs
    while fits wait to start, so that the parallel fits do not compete for them, and
    the last ``jobs`` fits every CPU: each may be left running alone as the others
    finish, and then uses the cores they freed (nutpie runs a chain on each of at
    most ``cores`` threads; the draws do not depend on it, ``tests/test_fit.py``).

    >>> _job_cores(Sampling(), 6, jobs=2, cpus=4)
    [2, 2, 2, 2, 4, 4]
    >>> _job_cores(Sampling(cores=1), 3, jobs=2, cpus=4)
    [1, 1, 1]
    """
    if sampling.cores is not None:
        return [int(sampling.cores)] * n
    cpus = cpus or os.cpu_count() or 1
    share = max(1, cpus // max(jobs, 1))
    return [share if i < n - jobs else cpus for i in range(n)]


def _fit_order(
    paths: list[Path],
    specs: dict[Path, ModelSpec | JointSpec],
    survey: Survey,
    sampling: Sampling,
) -> list[Path]:
    """The one-question specs in the order their fits start: the cheapest, then dearest first.

    The cheapest comes first so that a first verdict and section come soon; the others
    longest first, so that parallel workers finish together (a long fit started last
    would keep one worker busy while the others idle). The cost is a proxy measured
    against the bundled questions' sampling times (``benchmarks/demo_phases.py``, which
    it ranks in the same order): iterations (chains x (tuning + draws)) times the
    parameters plus the cells' linear predictors (cells x (answers - 1)). Ties keep the
    specs' order; the report keeps it whatever the fits' order.
    """
    from opinionmap.design import build_design

    if len(paths) < 2:
        return list(paths)
    cost = {}
    for p in paths:
        spec = specs[p]
        assert isinstance(spec, ModelSpec)
        design = build_design(spec, survey)
        family = spec.family if spec.hurdle is None else "hurdle"
        settings = spec.sampling.merged(sampling).resolved(family, design.n_parameters)
        iterations = (settings.chains or 0) * ((settings.tune or 0) + (settings.draws or 0))
        width = design.n_parameters + design.n_cells * (len(design.categories) - 1)
        cost[p] = iterations * width
    cheapest = min(paths, key=lambda p: cost[p])
    return [cheapest, *sorted((p for p in paths if p != cheapest), key=lambda p: -cost[p])]


def _read_any_spec(path: Path) -> ModelSpec | JointSpec:
    """A one-question spec, or a joint spec (one listing ``outcomes``)."""
    from opinionmap.joint import is_joint_spec, read_joint_spec

    return read_joint_spec(path) if is_joint_spec(path) else read_spec(path)


def _base(spec: ModelSpec | JointSpec) -> ModelSpec:
    """The one-question spec that carries a spec's survey, family and sampling settings."""
    return spec.base if isinstance(spec, JointSpec) else spec


def _questions(spec: ModelSpec | JointSpec) -> tuple[str, ...]:
    return spec.outcomes if isinstance(spec, JointSpec) else (spec.outcome,)


def _section_name(path: Path, spec: ModelSpec | JointSpec) -> str:
    """A question's section is named by its outcome, a joint model's by its spec's stem."""
    return path.stem if isinstance(spec, JointSpec) else spec.outcome


# the optional file of a project folder that says where things are and what the report shows
PROJECT_FILE = "opinionmap.toml"
_PROJECT_KEYS = ("models", "frame", "weight", "codebook", "out", "report")
_REPORT_KEYS = (
    "title",
    "area",
    "groups",
    "published",
    "frame_note",
    "boundaries",
    "area_names",
    "notes",
    "prob",
    "subarea",
    "subarea_boundaries",
    "joint",
)


@dataclass(frozen=True)
class Project:
    """A project folder: the specs in ``models/``, their survey, its codebook, the frame.

    ``report`` holds what the report shows (title, maps, published figures, notes);
    ``out`` is where ``opinionmap run`` writes (``report/`` in the folder by default).
    """

    folder: Path
    specs: tuple[Path, ...]
    survey: Path
    codebook: Path | None
    frame: Path
    weight: str = "population"
    out: Path = Path("report")
    report: ReportOptions = field(default_factory=ReportOptions)


def read_project(folder: str | os.PathLike[str], *, models: Path | None = None) -> Project:
    """A project folder, checked: ``models/*.toml`` naming one survey, and a frame.

    The survey is the file the specs' ``data`` names (the same for every spec); the
    codebook is ``codebook.toml`` in the folder, else the one beside the survey; the
    frame is ``frame.csv`` (or ``frame.parquet``), counts in ``population``. An
    ``opinionmap.toml`` in the folder may say otherwise (keys ``models``, ``frame``,
    ``weight``, ``codebook``, ``out``, paths relative to it) and what the report shows
    (a ``[report]`` table: ``title``, ``area``, ``groups``, ``published``, ``frame_note``,
    ``boundaries = {path, key, name}``, ``area_names = {path, key, name}``,
    ``[[report.notes]]`` with ``heading`` and ``text``, ``prob``, ``subarea``,
    ``subarea_boundaries = {path, key, name}`` and ``joint``, the pattern of answers a
    joint model's section maps). ``models`` overrides the specs' folder; a joint spec
    there (``outcomes = [...]``) is fitted and reported as one more section.
    """
    root = Path(folder)
    if not root.is_dir():
        raise OpinionmapError(f"{root}: no such project folder.")
    settings = _Settings.read(root)
    spec_folder = models or settings.path("models", "models")
    specs = tuple(sorted(spec_folder.glob("*.toml")))
    if not specs:
        raise OpinionmapError(
            f"{root}: no model specs in {spec_folder} (one <outcome>.toml per question)."
        )
    if settings.has("frame"):
        frame = settings.existing("frame")
    else:
        frames = [root / n for n in ("frame.csv", "frame.parquet") if (root / n).is_file()]
        if not frames:
            raise OpinionmapError(
                f"{root}: no frame; write frame.csv with the population count of every cell "
                "of the models' variables in a column named population."
            )
        frame = frames[0]
    codebook = settings.existing("codebook") if settings.has("codebook") else root / "codebook.toml"
    return Project(
        root,
        specs,
        _one_survey(root, specs),
        codebook if codebook.is_file() else None,
        frame,
        weight=settings.text("weight") or "population",
        out=settings.path("out", "report"),
        report=_report_options(settings.table("report")),
    )


def run_project(
    project: Project,
    *,
    out: Path | None = None,
    sampling: Sampling | None = None,
    jobs: int = 1,
    progress: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    on_done: Callable[[Outcome], None] = lambda _outcome: None,
    on_progress: Callable[[str, FitProgress], None] | None = None,
) -> Path:
    """Fit every spec of a project (:func:`read_project`) and write its report; return its path.

    ``out`` defaults to the project's (``report/`` in its folder); the other parameters
    are :func:`run_specs`'s.

    Examples
    --------
    >>> import opinionmap as om
    >>> project = om.read_project(om.datasets.project_dir())
    >>> [p.stem for p in project.specs][:2], project.report.area, project.weight
    (['main_enemy', 'main_friend'], 'region', 'population')
    """
    return run_specs(
        project.specs,
        survey_path=project.survey,
        codebook_path=project.codebook,
        frame_path=project.frame,
        weight=project.weight,
        out=out or project.out,
        sampling=sampling,
        report=project.report,
        jobs=jobs,
        progress=progress,
        say=say,
        on_done=on_done,
        on_progress=on_progress,
    )


def _one_survey(root: Path, specs: tuple[Path, ...]) -> Path:
    """The survey every spec names (``data``); specs naming none or different ones refused."""
    surveys: dict[Path, list[str]] = {}
    for spec_path in specs:
        data = _base(_read_any_spec(spec_path)).data
        if data is None:
            raise OpinionmapError(
                f'{spec_path}: names no survey; add data = "<survey file>" (relative to the spec).'
            )
        surveys.setdefault(data.resolve(), []).append(spec_path.name)
    if len(surveys) > 1:
        named = "; ".join(f"{s}: {', '.join(n)}" for s, n in surveys.items())
        raise OpinionmapError(
            f"{root}: the specs name different surveys ({named}); a project has one survey."
        )
    return next(iter(surveys))


class _Settings:
    """Keys of a project file (or of its ``[report]`` table), each checked as it is read."""

    def __init__(self, root: Path, values: dict[str, Any], context: str = "") -> None:
        self.root = root
        self.where = root / PROJECT_FILE
        self.values = values
        self.context = context  # "[report] " for that table's keys, in messages

    @classmethod
    def read(cls, root: Path) -> _Settings:
        """The folder's project file (no keys when there is none); unknown keys refused."""
        where = root / PROJECT_FILE
        values: dict[str, Any] = {}
        if where.is_file():
            try:
                with where.open("rb") as fh:
                    values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise OpinionmapError(f"{where}: not valid TOML: {exc}.") from None
        check_keys(values, _PROJECT_KEYS, where=str(where), context="at the top level")
        return cls(root, values)

    def has(self, key: str) -> bool:
        return key in self.values

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise OpinionmapError(
                f"{self.where}: {self.context}{key!r} must be text, got {value!r}."
            )
        return value

    def path(self, key: str, default: str) -> Path:
        return self.root / (self.text(key) or default)

    def existing(self, key: str) -> Path:
        path = self.root / (self.text(key) or "")
        if not path.is_file():
            raise OpinionmapError(f"{self.where}: {self.context}{key} {path} does not exist.")
        return path

    def table(self, key: str) -> _Settings:
        value = self.values.get(key, {})
        if not isinstance(value, dict):
            raise OpinionmapError(f"{self.where}: [{key}] must be a table.")
        return _Settings(self.root, value, f"[{key}] ")


def _report_options(report: _Settings) -> ReportOptions:
    """``[report]`` of a project file as :class:`ReportOptions` (files read, paths checked)."""
    from opinionmap.maps import read_boundaries
    from opinionmap.report import read_published

    table, root, where = report.values, report.root, report.where
    check_keys(table, _REPORT_KEYS, where=str(where), context="in [report]")
    options: dict[str, Any] = {
        "title": report.text("title") or f"{root.resolve().name}: small-area estimates",
        "area": report.text("area"),
        "subarea": report.text("subarea"),
        "joint": report.text("joint"),
        "frame_note": report.text("frame_note"),
        "notes": _notes(table.get("notes", []), where),
    }
    if (groups := table.get("groups")) is not None:
        if not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            raise OpinionmapError(f"{where}: [report] 'groups' must be a list of column names.")
        options["groups"] = tuple(groups)
    if report.has("published"):
        options["published"] = read_published(report.existing("published"))
    if (outlines := _source(table, "boundaries", root, where)) is not None:
        file, key, name = outlines
        options["boundaries"] = tuple(read_boundaries(file, key=key, name=name))
    if (outlines := _source(table, "subarea_boundaries", root, where)) is not None:
        file, key, name = outlines
        options["subarea_boundaries"] = tuple(read_boundaries(file, key=key, name=name))
    if (names := _source(table, "area_names", root, where)) is not None:
        options["area_names"] = _area_names(*names, where)
    if (prob := table.get("prob")) is not None:
        if not (isinstance(prob, float) and 0 < prob < 1):
            raise OpinionmapError(
                f"{where}: [report] 'prob' must be between 0 and 1, got {prob!r}."
            )
        options["prob"] = prob
    return ReportOptions(**options)


def _source(
    table: dict[str, Any], key: str, root: Path, where: Path
) -> tuple[Path, str, str] | None:
    """A ``{ path, key, name }`` entry of ``[report]``: the file and its two columns."""
    value = table.get(key)
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"path", "key", "name"}):
        raise OpinionmapError(
            f"{where}: [report] {key!r} must be a table {{ path = ..., key = ..., name = ... }} "
            f"(the file, the column or attribute of the area codes, and of their names); got "
            f"{value!r}."
        )
    file = root / str(value["path"])
    if not file.is_file():
        raise OpinionmapError(f"{where}: [report] {key!r}: {file} does not exist.")
    return file, str(value["key"]), str(value["name"])


def _notes(notes: object, where: Path) -> tuple[tuple[str, str], ...]:
    """``[[report.notes]]``: (heading, text) pairs."""
    if not (
        isinstance(notes, list)
        and all(isinstance(n, dict) and set(n) == {"heading", "text"} for n in notes)
    ):
        raise OpinionmapError(
            f"{where}: [[report.notes]] entries need exactly 'heading' and 'text'."
        )
    return tuple((str(n["heading"]), str(n["text"])) for n in notes)


def _area_names(file: Path, key: str, name: str, where: Path) -> dict[str, str]:
    """Area code -> display name from a CSV's two columns."""
    import pandas as pd

    try:
        table = pd.read_csv(file, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise OpinionmapError(f"{file}: cannot be read as CSV: {exc}") from exc
    absent = [c for c in (key, name) if c not in table.columns]
    if absent:
        raise OpinionmapError(
            f"{where}: [report] area_names: {file} has no column {format_values(absent)} "
            f"(columns: {format_values(list(table.columns))})."
        )
    return dict(zip(table[key], table[name], strict=True))


def _describe(spec: ModelSpec | JointSpec, sampling: Sampling) -> str:
    one = _base(spec)
    settings = {**DEFAULT_SAMPLING, **one.sampling.merged(sampling).to_dict()}
    shape = f"{one.family}, {settings['chains']} x {settings['draws']}"
    if isinstance(spec, JointSpec):
        return f"{', '.join(spec.outcomes)} jointly ({shape})"
    return f"{spec.outcome} ({shape})"


def _execute[J: (_Job, _FitJob), R](
    task: Callable[[J], R],
    work: list[J],
    jobs: int,
    on_progress: Callable[[str, FitProgress], None] | None,
    client: Client | None = None,
) -> Iterator[R]:
    """``task`` of each job, yielded as soon as it is done.

    On the cluster of ``client`` when one is given (:func:`opinionmap.cluster.run_on_cluster`),
    else in ``jobs`` local processes (in this process when ``jobs`` is 1).
    """
    if client is not None:
        from opinionmap.cluster import run_on_cluster

        yield from run_on_cluster(task, work, client, on_progress)
        return
    if jobs == 1:
        events = None if on_progress is None else _Direct(on_progress)
        yield from (task(replace(job, events=events)) for job in work)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = _workers.context()
    with ExitStack() as stack:
        if on_progress is not None:
            queue = stack.enter_context(context.Manager()).Queue()
            stack.enter_context(_forwarding(queue, on_progress))
            work = [replace(job, events=queue) for job in work]
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init)
        )
        futures = [pool.submit(task, job) for job in work]
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
    from opinionmap.frame import read_frame
    from opinionmap.report import joint_section, report_section
    from opinionmap.survey import read_survey

    # the verdict goes back in the Outcome and into the report; the library's warnings
    # that the numbers come from a fit that did not converge would only repeat it
    warnings.simplefilter("ignore", ConvergenceWarning)
    if job.background:
        _lower_priority()
    survey = read_survey(job.survey_path, job.codebook_path)
    spec = _read_any_spec(job.spec_path)
    name = _section_name(job.spec_path, spec)
    tell = _teller(job.events, name)
    result = _fit_any(spec, survey, job.sampling, job.progress, tell)
    result.save(job.out / "fits" / f"{name}.nc")
    frame = read_frame(job.frame_path, weight=job.weight, codebook=survey.codebook)
    tell(FitProgress("reporting"))
    if isinstance(result, JointResult):
        section = joint_section(result, frame, job.out, name=name, options=job.report)
    else:
        section = report_section(result, frame, job.out, survey=survey, options=job.report)
    return Outcome(name, result.verdict, result.converged, section)


def _fit_and_save(job: _FitJob) -> SavedFit:
    """Fit one spec to its survey and save it (a worker's task)."""
    from opinionmap.survey import read_survey

    spec = _read_any_spec(job.spec_path)
    tell = _teller(job.events, job.name)
    result = _fit_any(spec, read_survey(job.survey_path), job.sampling, job.progress, tell)
    result.save(job.path)
    question = ", ".join(_questions(spec))
    return SavedFit(job.name, question, job.path, result.verdict, result.converged)


def _fit_any(
    spec: ModelSpec | JointSpec,
    survey: Survey,
    sampling: Sampling,
    progress: bool,
    tell: Callable[[FitProgress], None],
) -> FitResult | JointResult:
    """A one-question fit or a joint one, as the spec is; the verdict not warned."""
    from opinionmap.fitting import fit
    from opinionmap.joint import fit_joint

    if isinstance(spec, JointSpec):
        return fit_joint(
            spec, survey, sampling=sampling, progress=progress, on_progress=tell, warn=False
        )
    return fit(spec, survey, sampling=sampling, progress=progress, on_progress=tell, warn=False)


def _teller(events: Any, name: str) -> Callable[[FitProgress], None]:
    """Where a task sends its fit's progress, tagged with its name (nowhere without events)."""
    bound = _bound(events)

    def tell(progress: FitProgress) -> None:
        if bound is not None:
            bound.put((name, progress))

    return tell


def _bound(events: Any) -> Any:
    """Where a task puts its progress; a cluster's topic is bound to the task's worker first.

    (The fit reports its progress from other threads, which do not know the worker.)
    """
    return events.bound() if hasattr(events, "bound") else events


# how much lower a background fit's CPU priority is (Unix nice values: 0 normal, 19 lowest)
_BACKGROUND_NICE = 10


def _lower_priority(by: int = _BACKGROUND_NICE) -> bool:
    """Lower this process's CPU priority, its threads' and those it starts later.

    For a worker process whose fit should take only what the others leave (the joint
    model while the last questions fit): on a machine with work for every core the
    others run at nearly full speed, and on an idle one it runs as fast as ever. Linux
    keeps a priority per thread, so each running thread is lowered (threads started
    later inherit it). Returns whether it could (not on Windows). A process cannot
    raise its priority again: call it only in a process of its own.
    """
    if not hasattr(os, "setpriority"):
        return False
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the priority is the process's
        tasks = [0]
    for task in tasks:
        try:
            os.setpriority(os.PRIO_PROCESS, task, os.getpriority(os.PRIO_PROCESS, task) + by)
        except OSError:  # a thread that ended meanwhile
            continue
    return True


def _worker_init() -> None:
    """Let a worker process end without tearing its interpreter down.

    The worker's results have gone back to the parent by then; the teardown (freeing
    the compiled models and their LLVM code) takes 2-4 s, during which the parent
    waits for the pool to close.

    The worker's own processes, if any, are spawned: it holds threads (numba's,
    nutpie's). This also keeps numba from taking a named semaphore for its threads'
    start-up, as it does in a process whose start method forks (the fork server's
    workers), which the quick exit would leave for the parent to report as leaked.
    """
    import atexit
    import multiprocessing
    import sys

    multiprocessing.set_start_method("spawn", force=True)

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)
