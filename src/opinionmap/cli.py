"""The ``opinionmap`` command line.

A thin layer: every command maps its options onto the library calls the Python
API offers (``read_survey``, ``read_frame``, ``read_margin``, ``fit``, ``fit_many``,
``load``, ``poststratify``, ``build_report``, ``run_demo``) and turns
:class:`~opinionmap.errors.OpinionmapError` into a one-line message and exit
status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import pandas as pd
import typer

from opinionmap import __version__
from opinionmap.errors import OpinionmapError

if TYPE_CHECKING:
    from opinionmap.codebook import Codebook
    from opinionmap.diagnostics import Diagnostics
    from opinionmap.joint import JointResult
    from opinionmap.maps import Area
    from opinionmap.pipeline import Outcome, SavedFit
    from opinionmap.progress import FitProgress
    from opinionmap.results import FitResult
    from opinionmap.spec import ModelSpec, Sampling
    from opinionmap.survey import Survey

app = typer.Typer(
    name="opinionmap",
    help="Bayesian multilevel regression and poststratification (MRP) for opinion surveys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
survey_app = typer.Typer(help="Read and check survey data.", no_args_is_help=True)
frame_app = typer.Typer(
    help="Read, check and build poststratification frames.", no_args_is_help=True
)
app.add_typer(survey_app, name="survey")
app.add_typer(frame_app, name="frame")


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


# exit statuses besides 0 and 2 (bad input): a fit that did not converge under --strict,
# and an interrupted run (128 + SIGINT, as shells report Ctrl-C)
EXIT_NOT_CONVERGED = 3
EXIT_INTERRUPTED = 130

StrictOption = Annotated[
    bool,
    typer.Option(
        help="Exit with status 3, writing nothing, when the fit did not converge "
        "(its verdict is printed to stderr either way)."
    ),
]


def _gate(result: FitResult | JointResult, strict: bool) -> None:
    """Print a failed fit's verdict to stderr; under ``--strict`` stop with status 3."""
    if result.converged:
        return
    typer.secho(f"warning: {result.verdict}", err=True, fg=typer.colors.RED, bold=True)
    if strict:
        raise typer.Exit(code=EXIT_NOT_CONVERGED)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Library warnings as one line each on stderr (the verdict gate prints convergence)."""
    from opinionmap.diagnostics import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield
    for w in caught:
        typer.secho(f"warning: {w.message}", err=True, fg=typer.colors.YELLOW)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"opinionmap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bayesian multilevel regression and poststratification (MRP) for opinion surveys."""
    log = logging.getLogger("opinionmap")
    if not any(isinstance(h, _ToStderr) for h in log.handlers):
        log.addHandler(_ToStderr())
        log.setLevel(logging.INFO)


class _ToStderr(logging.Handler):
    """What the library logs (compiling, sampling), one line each on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(record.getMessage(), err=True)


@survey_app.command("check")
def survey_check(
    path: Annotated[Path, typer.Argument(help="Survey file: .csv, .parquet, .sav or .dta.")],
    codebook: Annotated[
        Path | None,
        typer.Option(help="Codebook TOML (default: <stem>.codebook.toml beside the data)."),
    ] = None,
) -> None:
    """Validate a survey against its codebook and print each outcome's response shares."""
    from opinionmap.survey import read_survey

    try:
        survey = read_survey(path, codebook)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"{path}: {survey.n_respondents} respondents, outcomes: {', '.join(survey.outcomes)}; "
        f"area: {survey.area}; weight: {survey.weight}"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        typer.echo(survey.describe().to_string())


@frame_app.command("check")
def frame_check(
    path: Annotated[Path, typer.Argument(help="Frame file: .csv or .parquet.")],
    weight: Annotated[
        str, typer.Option(help="Column holding the population counts.")
    ] = "population",
    codebook: Annotated[
        Path | None, typer.Option(help="Survey codebook TOML to check the frame's levels against.")
    ] = None,
) -> None:
    """Validate a frame (and its levels against a survey codebook) and print its margins.

    With --codebook, the codebook's [recode] tables are applied first; labels that still
    differ from the survey's are listed with a suggested [recode] table to add to it.
    """
    from opinionmap.codebook import read_codebook
    from opinionmap.frame import read_frame

    try:
        book = read_codebook(codebook) if codebook is not None else None
        frame = read_frame(path, weight=weight, codebook=book)
        if book is not None:
            frame.check_levels(book)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{path}: {frame.n_cells} cells, total {weight} {frame.total:,.0f}")
    for column in frame.cells:
        shares = frame.collapse([column]).set_index(column)[weight] / frame.total
        typer.echo(f"  {column}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))


@frame_app.command("rake")
def frame_rake(
    margins: Annotated[
        list[Path], typer.Argument(help="Margin tables (.csv): dimension columns + a count column.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the joint frame (.csv or .parquet).")
    ],
    weight: Annotated[
        str, typer.Option(help="Count column in the margins and the output.")
    ] = "population",
    tol: Annotated[float, typer.Option(help="Relative tolerance on every margin cell.")] = 1e-10,
) -> None:
    """Build a joint frame from published margins by iterative proportional fitting."""
    from opinionmap._io import check_writable
    from opinionmap.frame import Frame, read_margin

    try:
        check_writable(out)
        tables = [read_margin(m, weight=weight) for m in margins]
        frame = Frame.from_margins(tables, weight=weight, tol=tol)
        frame.to_file(out)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    report = frame.data.attrs.get("raking")
    detail = (
        f" in {report.iterations} sweeps, worst margin error {report.max_relative_error:.2g}"
        if report
        else ""
    )
    typer.echo(f"wrote {out}: {frame.n_cells} cells over {', '.join(frame.cells)}{detail}")


def _read_survey(path: Path, codebook: Path | None = None) -> Survey:
    """A survey, validated against its codebook (given, or ``<stem>.codebook.toml`` beside it)."""
    from opinionmap.survey import read_survey

    return read_survey(path, codebook)


SpecArgument = Annotated[Path, typer.Argument(metavar="SPEC.toml", help="Model spec (TOML).")]
DataOption = Annotated[Path | None, typer.Option(help="Survey file (default: the spec's 'data').")]
CodebookOption = Annotated[
    Path | None,
    typer.Option(help="Survey codebook (default: <stem>.codebook.toml beside the data)."),
]
TableOption = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write the table (.csv or .parquet).")
]
PlotOption = Annotated[Path | None, typer.Option(help="Write the plot (.png, .svg or .pdf).")]


def _spec_and_survey(
    spec_path: Path, data: Path | None, codebook: Path | None, what: str
) -> tuple[ModelSpec, Survey, Path]:
    """A spec, and the survey it is to ``what`` (``--data``, else the spec's ``data``)."""
    from opinionmap.spec import read_spec

    spec = read_spec(spec_path)
    data_path = data or spec.data
    if data_path is None:
        raise OpinionmapError(
            f"{spec_path}: no data to {what}: give --data PATH or a 'data' key in the spec."
        )
    return spec, _read_survey(Path(data_path), codebook), Path(data_path)


def _write_check(table: pd.DataFrame, out: Path | None, plot: Path | None) -> None:
    """Write a predictive check's table and plot where asked."""
    from opinionmap._io import write_table
    from opinionmap.checks import plot_ppc

    if out is not None:
        write_table(table, out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        plot_ppc(table, plot)
        typer.echo(f"wrote {plot}")


def _check_outputs(table: Path | None, plot: Path | None) -> None:
    """Fail before any work when a table or plot path has an unknown format or is unwritable."""
    from opinionmap._io import check_writable, figure_format, table_format

    for path, check in ((table, table_format), (plot, figure_format)):
        if path is not None:
            check(path)
            check_writable(path)


ProbOption = Annotated[
    float | None,
    typer.Option(
        min=0.01,
        max=0.99,
        help='Interval width (default: ArviZ\'s rcParams["stats.ci_prob"], 0.89).',
    ),
]


@app.command("fit")
def fit_command(
    spec_path: SpecArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the fit (.nc).")],
    data: DataOption = None,
    codebook: CodebookOption = None,
    draws: Annotated[
        int | None,
        typer.Option(help="Draws kept per chain (default: the spec's [sampling], else 1000)."),
    ] = None,
    tune: Annotated[
        int | None,
        typer.Option(help="Tuning steps per chain (default: [sampling], else 1000)."),
    ] = None,
    chains: Annotated[
        int | None, typer.Option(help="Chains (default: [sampling], else 4).")
    ] = None,
    cores: Annotated[
        int | None, typer.Option(help="Chains run at once (default: min(chains, CPUs)).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: drawn and recorded in the file).")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="nutpie (default), pymc or numpyro.")] = None,
    target_accept: Annotated[
        float | None,
        typer.Option(help="NUTS target acceptance (default 0.95); 0.99 against divergences."),
    ] = None,
    adaptation: Annotated[
        str | None,
        typer.Option(
            help="nutpie mass matrix: auto (default: low_rank for ordinal and bernoulli "
            "models, diag for categorical), diag or low_rank."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    save_partial: Annotated[
        bool,
        typer.Option(
            help="On Ctrl-C, save the draws made so far, marked partial (default: save "
            "nothing and leave --out as it was)."
        ),
    ] = False,
    strict: StrictOption = False,
) -> None:
    """Fit a model spec to survey data and save the posterior as netCDF.

    Ctrl-C stops sampling with exit status 130 and, unless --save-partial, writes nothing.
    """
    from opinionmap._io import check_writable
    from opinionmap.fitting import FitInterrupted, fit
    from opinionmap.joint import is_joint_spec
    from opinionmap.spec import Sampling

    try:
        check_writable(out)
        sampling = Sampling(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            sampler=sampler,
            target_accept=target_accept,
            adaptation=adaptation,
        )
        if is_joint_spec(spec_path):
            _gate(_fit_joint(spec_path, out, data, codebook, sampling, progress), strict)
            return
        spec, survey, data_path = _spec_and_survey(spec_path, data, codebook, "fit")
        typer.echo(f"fitting {spec.outcome} ({spec.family}) on {data_path} ...")
        try:
            result = fit(spec, survey, sampling=sampling, progress=progress, warn=False)
        except FitInterrupted as exc:
            _interrupted(out, exc.partial if save_partial else None)
        except KeyboardInterrupt:
            _interrupted(out, None)
        result.save(out)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    design, settings = result.design, result.sampling
    typer.echo(
        f"wrote {out}: {design.n_respondents} respondents in {design.n_cells} cells, "
        f"{settings.chains} chains x {settings.draws} draws, {settings.sampler}, "
        f"seed {settings.seed}"
    )
    if result.converged:
        _echo_verdict(result.diagnostics)
    _gate(result, strict)


def _fit_joint(
    spec_path: Path,
    out: Path,
    data: Path | None,
    codebook: Path | None,
    sampling: Sampling,
    progress: bool,
) -> JointResult:
    """Fit and save a joint spec (several questions, one model); print what was fitted."""
    from opinionmap.joint import fit_joint, read_joint_spec
    from opinionmap.spec import Sampling

    spec = read_joint_spec(spec_path)
    data_path = data or spec.base.data
    if data_path is None:
        raise OpinionmapError(
            f"{spec_path}: no data to fit: give --data PATH or a 'data' key in the spec."
        )
    survey = _read_survey(Path(data_path), codebook)
    typer.echo(
        f"fitting {', '.join(spec.outcomes)} jointly ({spec.base.family}, trait of "
        f"{spec.trait} dimension(s)) on {data_path} ..."
    )
    try:
        result = fit_joint(spec, survey, sampling=sampling, progress=progress, warn=False)
    except KeyboardInterrupt:
        _interrupted(out, None)
    result.save(out)
    jd, settings = result.design, Sampling.from_attrs(result.tree.attrs)
    typer.echo(
        f"wrote {out}: {jd.n_respondents} respondents ({jd.dropped} who answered none of the "
        f"questions dropped) in {jd.design.n_cells} cells, {len(jd.row_cell)} (cell, answers) "
        f"pairs, {settings.chains} chains x {settings.draws} draws, seed {settings.seed}"
    )
    if result.converged:
        _echo_verdict(result.diagnostics)
    return result


def _names(text: str) -> list[str]:
    """A comma-separated option's names, blanks dropped: ``"a, b,"`` -> ``["a", "b"]``."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _by_columns(by: str | None, result: FitResult) -> list[str]:
    """``--by``: the columns named; none given: the survey's area; ``''``: the whole population."""
    if by is None:
        return [result.design.area] if result.design.area is not None else []
    columns = [c.strip() for c in by.split(",")]
    if any(not c for c in columns) and by.strip():
        raise OpinionmapError(f"--by {by!r} has an empty column name; write e.g. region,sex.")
    return [c for c in columns if c]


def _interrupted(out: Path, partial: FitResult | None) -> NoReturn:
    """Ctrl-C while fitting: save the partial fit when there is one to save; exit 130."""
    if partial is not None:
        partial.save(out)
        typer.secho(
            f"interrupted: wrote the draws made so far ({partial.tree.attrs['opinionmap_partial']})"
            f" to {out}, marked partial: {partial.verdict}",
            err=True,
            fg=typer.colors.RED,
        )
    else:
        typer.secho(f"interrupted: nothing written; {out} is as it was.", err=True)
    raise typer.Exit(code=EXIT_INTERRUPTED)


def _echo_verdict_text(prefix: str, verdict: str, converged: bool) -> None:
    """Print a convergence verdict: green when converged, bold red otherwise."""
    typer.secho(
        f"{prefix}{verdict}",
        fg=typer.colors.GREEN if converged else typer.colors.RED,
        bold=not converged,
    )


def _echo_verdict(diagnostics: Diagnostics) -> None:
    _echo_verdict_text("", diagnostics.verdict(), diagnostics.converged)


@app.command("summary")
def summary_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    prob: ProbOption = None,
    strict: StrictOption = False,
) -> None:
    """Print the ArviZ summary of a saved fit, its parameterisation and its convergence verdict."""
    from opinionmap.results import load

    try:
        result = load(fit_path)
        table = result.summary(prob=prob)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    spec = result.spec
    typer.echo(f"{fit_path}: {spec.formula}  [{spec.family}]")
    with pd.option_context(
        "display.width", 200, "display.max_rows", 500, "display.max_columns", 20
    ):
        typer.echo(table.round(3).to_string())
        plan = result.plan.table()
        if len(plan):
            typer.echo("parameterisation (non-centring weight per linear predictor):")
            typer.echo(plan.to_string(index=False))
    if result.converged:
        _echo_verdict(result.diagnostics)
    _gate(result, strict)


@app.command("ppc")
def ppc_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    out: TableOption = None,
    plot: PlotOption = None,
    prob: ProbOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the replication.")] = 0,
    strict: StrictOption = False,
) -> None:
    """Posterior predictive check: observed vs replicated shares overall and by factor."""
    from opinionmap.checks import ppc
    from opinionmap.results import load
    from opinionmap.summaries import interval_prob

    try:
        _check_outputs(out, plot)
        result = load(fit_path)
        _gate(result, strict)
        with _warnings_to_stderr():
            table = ppc(result, prob=prob, random_seed=seed)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    _write_check(table, out, plot)
    outside = table[table["outside"]]
    typer.echo(
        f"{len(outside)} of {len(table)} observed shares lie outside their replicated "
        f"{interval_prob(prob):.0%} intervals"
        + (":\n" + outside.round(3).to_string(index=False) if len(outside) else ".")
    )


@app.command("adjacency")
def adjacency_command(
    boundaries: Annotated[Path, typer.Argument(metavar="SHAPES.shp", help="Boundary shapefile.")],
    key: Annotated[
        str, typer.Option(help="The attribute holding each area's label as the survey spells it.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pairs (.csv).")],
) -> None:
    """Write the pairs of areas that share a border, for a bym2 prior ([priors.structure])."""
    from opinionmap._io import check_writable
    from opinionmap.structure import adjacency_from_boundaries

    try:
        check_writable(out)
        pairs = adjacency_from_boundaries(boundaries, key=key, out=out)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    islands = pairs.loc[pairs["neighbour"] == "", "area"].tolist()
    areas = len(set(pairs["area"]) | set(pairs["neighbour"]) - {""})
    typer.echo(
        f"wrote {out}: {len(pairs) - len(islands)} neighbour pairs among {areas} areas"
        + (f"; islands (no neighbour): {', '.join(islands)}" if islands else "")
    )


@app.command("prior-check")
def prior_check_command(
    spec_path: SpecArgument,
    data: DataOption = None,
    codebook: CodebookOption = None,
    out: TableOption = None,
    plot: PlotOption = None,
    draws: Annotated[int, typer.Option(min=10, help="Draws from the prior.")] = 500,
    prob: ProbOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the prior draws.")] = 0,
) -> None:
    """What the priors imply on the probability scale, before fitting.

    Draws every parameter from its prior, predicts each survey cell's answers and sets
    the shares they imply, overall and by each factor, beside the observed shares.
    """
    from opinionmap.checks import EXTREME, prior_check

    try:
        _check_outputs(out, plot)
        spec, survey, _ = _spec_and_survey(spec_path, data, codebook, "check the priors against")
        with _warnings_to_stderr():
            table = prior_check(spec, survey, draws=draws, prob=prob, random_seed=seed)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    _write_check(table, out, plot)
    overall = table[table["factor"] == "all"][["category", "observed", "replicated_mean",
                                              "lower", "upper"]]  # fmt: skip
    overall = overall.rename(columns={"replicated_mean": "prior mean"})
    typer.echo(
        f"{spec.outcome}: shares of the survey's respondents implied by the priors "
        f"({draws} draws; {table.attrs['prob']:.0%} intervals):\n"
        + overall.round(3).to_string(index=False)
    )
    outside = table[table["outside"]]
    typer.echo(
        f"{len(outside)} of {len(table)} observed shares (overall and by factor) lie outside "
        f"the prior's intervals; {table.attrs['extreme']:.0%} of the cell predictions give "
        f"one answer a probability of {EXTREME:.0%} or more. Many of the first: priors too "
        "narrow for the data; most of the second: priors wider than anyone believes "
        "(narrow [priors] fixed, group_sd, intercept or cutpoints)."
    )


@app.command("poststratify")
def poststratify_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    frame_path: Annotated[Path, typer.Option("--frame", help="Frame (.csv or .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Estimates table (.csv or .parquet).")],
    weight: Annotated[
        str, typer.Option(help="The frame's population count column.")
    ] = "population",
    by: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated columns, e.g. region,ethnicity (default: the survey's area; "
            "'' for the whole population only)."
        ),
    ] = None,
    prob: ProbOption = None,
    new_levels: Annotated[
        str, typer.Option(help="Frame levels the survey never saw: error or sample.")
    ] = "error",
    seed: Annotated[int, typer.Option(help="Seed for --new-levels sample.")] = 0,
    answering: Annotated[
        bool,
        typer.Option(
            "--answering",
            help="A hurdle model's shares of those answering (its non-answer code left out).",
        ),
    ] = False,
    joint: Annotated[
        str | None,
        typer.Option(
            "--joint",
            help="A joint model's share giving every answer of a pattern, e.g. "
            "'presence_usa=less,presence_russia=more': one row per group.",
        ),
    ] = None,
    codebook: Annotated[
        Path | None,
        typer.Option(
            help="Survey codebook: its [recode] tables map the frame's labels, and its "
            "categorical variables are cells even where coded as numbers."
        ),
    ] = None,
    strict: StrictOption = False,
) -> None:
    """Poststratify a fit to a frame: shares by area/group with intervals, as a table."""
    from opinionmap._io import write_table
    from opinionmap.codebook import read_codebook
    from opinionmap.design import NEW_LEVELS, merged_line
    from opinionmap.frame import read_frame
    from opinionmap.joint import is_joint_fit
    from opinionmap.poststratification import MRP, poststratify
    from opinionmap.results import load

    try:
        _check_outputs(out, None)
        book = read_codebook(codebook) if codebook is not None else None
        if is_joint_fit(fit_path):
            _poststratify_joint(fit_path, frame_path, out, weight, by, joint, prob, book, strict)
            return
        if joint is not None:
            raise OpinionmapError(
                f"{fit_path}: --joint asks for a pattern of answers to several questions; this "
                "fit models one question (fit a joint spec: outcomes = [...])."
            )
        if new_levels not in NEW_LEVELS:
            raise OpinionmapError(f"--new-levels must be 'error' or 'sample', got {new_levels!r}.")
        result = load(fit_path)
        columns = _by_columns(by, result)
        _gate(result, strict)
        frame = read_frame(frame_path, weight=weight, codebook=book)
        with _warnings_to_stderr():
            estimates = poststratify(
                result,
                frame,
                by=columns,
                new_levels="sample" if new_levels == "sample" else "error",
                random_seed=seed,
            )
        hurdle = estimates.hurdle
        if answering:
            estimates = estimates.answering()
        table = estimates.summary(prob=prob)
        overall = estimates.overall_summary(prob=prob)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    for term, labels in estimates.new_levels.items():
        typer.secho(
            f"new levels of {term!r}, their effects drawn from the fitted distribution: "
            + ", ".join(repr(label) for label in labels),
            err=True,
            fg=typer.colors.YELLOW,
        )
    if estimates.merged:
        typer.echo(f"rare {merged_line(result.design)}", err=True)
    if estimates.method != MRP:
        typer.echo(estimates.method, err=True)
    if hurdle is not None:
        typer.echo(
            f"shares {estimates.estimand}: {hurdle!r} modelled by a hurdle"
            + (" and left out" if answering else "; --answering leaves it out"),
            err=True,
        )
    write_table(table, out)
    typer.echo(f"wrote {out}: {len(table)} rows ({', '.join(columns) or 'population'} x category)")
    typer.echo(
        "whole population: "
        + ", ".join(
            f"{r.category} {r.mean:.1%} [{r.lower:.1%}, {r.upper:.1%}]"
            for r in overall.itertuples()
        )
    )


def _poststratify_joint(
    fit_path: Path,
    frame_path: Path,
    out: Path,
    weight: str,
    by: str | None,
    joint: str | None,
    prob: float | None,
    codebook: Codebook | None,
    strict: bool,
) -> None:
    """Poststratify a joint fit: each question's shares (an ``outcome`` column) or a pattern's."""
    from opinionmap._io import write_table
    from opinionmap.frame import read_frame
    from opinionmap.joint import load_joint, poststratify_joint

    result = load_joint(fit_path)
    _gate(result, strict)
    area = result.design.area
    columns = ([area] if area else []) if by is None else _names(by)
    frame = read_frame(frame_path, weight=weight, codebook=codebook)
    estimates = poststratify_joint(result, frame, by=columns, joint=joint)
    table = estimates.pattern_summary(prob) if joint else estimates.summary(prob)
    write_table(table, out)
    what = f"pattern {estimates.pattern_label}" if joint else "question x category"
    typer.echo(f"wrote {out}: {len(table)} rows ({', '.join(columns) or 'population'} x {what})")


@app.command("report")
def report_command(
    fits: Annotated[list[Path], typer.Argument(metavar="FIT.nc...", help="Saved fits.")],
    frame_path: Annotated[Path, typer.Option("--frame", help="Frame (.csv or .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")],
    weight: Annotated[
        str, typer.Option(help="The frame's population count column.")
    ] = "population",
    survey_path: Annotated[
        Path | None, typer.Option("--survey", help="Survey file, for direct estimates.")
    ] = None,
    codebook: Annotated[
        Path | None,
        typer.Option(help="Survey codebook (default: <stem>.codebook.toml beside the survey)."),
    ] = None,
    published_path: Annotated[
        Path | None,
        typer.Option("--published", help="CSV of published figures: question,category,percent."),
    ] = None,
    area: Annotated[
        str | None, typer.Option(help="Area column (default: the survey's area, from the fit).")
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns to break down by (default: the predictors)."),
    ] = None,
    boundaries: Annotated[
        Path | None, typer.Option(help="Shapefile (.shp) of the areas, for maps.")
    ] = None,
    boundary_key: Annotated[
        str | None,
        typer.Option(help="The shapefile's attribute holding the area codes (e.g. ADM1_PCODE)."),
    ] = None,
    boundary_name: Annotated[
        str | None,
        typer.Option(help="The shapefile's attribute holding the area names (e.g. ADM1_EN)."),
    ] = None,
    subarea: Annotated[
        str | None,
        typer.Option(
            help="A finer area column of the frame (districts): mapped for fits with a term on it."
        ),
    ] = None,
    subarea_boundaries: Annotated[
        Path | None, typer.Option(help="Shapefile (.shp) of the finer areas.")
    ] = None,
    subarea_key: Annotated[
        str | None, typer.Option(help="Its attribute holding the area codes (e.g. ADM2_PCODE).")
    ] = None,
    subarea_name: Annotated[
        str | None, typer.Option(help="Its attribute holding the area names (e.g. ADM2_EN).")
    ] = None,
    title: Annotated[str, typer.Option(help="Report title.")] = "opinionmap report",
    joint: Annotated[
        str | None,
        typer.Option(
            "--joint",
            help="The pattern a joint fit's section maps, e.g. "
            '"presence_russia=more,presence_usa=less" (default: the most strongly '
            "correlated pair of questions).",
        ),
    ] = None,
    prob: ProbOption = None,
    strict: StrictOption = False,
) -> None:
    """Build the HTML report (plus CSV tables and PNG figures) for your own fits.

    Joint fits (several questions in one model) get a section each after the questions'.
    """
    from opinionmap._io import check_writable
    from opinionmap.frame import read_frame
    from opinionmap.joint import is_joint_fit, load_joint
    from opinionmap.report import ReportOptions, build_report, read_published
    from opinionmap.results import load

    try:
        check_writable(out, folder=True)
        results = [load_joint(p) if is_joint_fit(p) else load(p) for p in fits]
        for result in results:
            _gate(result, strict)
        survey = _read_survey(survey_path, codebook) if survey_path is not None else None
        book = survey.codebook if survey is not None else None
        frame = read_frame(frame_path, weight=weight, codebook=book)
        options = ReportOptions(
            area=area,
            groups=None if groups is None else tuple(_names(groups)),
            boundaries=_outlines(boundaries, boundary_key, boundary_name, "--boundary"),
            subarea=subarea,
            subarea_boundaries=_outlines(
                subarea_boundaries, subarea_key, subarea_name, "--subarea"
            ),
            labels=_question_labels(survey),
            published=read_published(published_path) if published_path is not None else None,
            title=title,
            prob=prob,
            joint=joint,
        )
        options.check_frame(frame, frame_path)
        with _warnings_to_stderr():
            path = build_report(
                results, frame, out, survey=survey, options=options, progress=typer.echo
            )
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    typer.echo(f"report written to {path}")


def _outlines(
    path: Path | None, key: str | None, name: str | None, flag: str
) -> tuple[Area, ...] | None:
    """Boundaries from a shapefile and the attributes naming its areas' codes and names."""
    from opinionmap.maps import read_boundaries

    if path is None:
        return None
    if key is None or name is None:
        raise OpinionmapError(
            f"{path}: name the attributes holding each area's code and name with "
            f"{flag}-key and {flag}-name (e.g. ADM1_PCODE and ADM1_EN)."
        )
    return tuple(read_boundaries(path, key=key, name=name))


def _question_labels(survey: Survey | None) -> dict[str, str]:
    """Display names of the survey's outcomes, from its codebook's labels."""
    if survey is None:
        return {}
    return {v.name: v.label for v in survey.codebook.outcomes if v.label}


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    quick: Annotated[
        bool, typer.Option(help="Few draws (a smoke run); the default is publication quality.")
    ] = False,
    models: Annotated[
        Path | None, typer.Option(help="Folder of spec files (default: the bundled models/).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of every fit.")] = 2020,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Questions fitted (and their report sections drawn) at once, each in its own "
            "process (default: the number of CPU cores, at most 4).",
        ),
    ] = None,
    joint: Annotated[
        bool,
        typer.Option(
            help="Fit and report the joint model of the five presence questions "
            "(models/presence_joint.toml) after the one-question models: the report of the "
            "questions is written first, then again with the joint model's section "
            "(minutes more). --no-joint leaves it out."
        ),
    ] = True,
) -> None:
    """Run the whole pipeline on the bundled Kazakhstan data and write the report.

    This is `opinionmap run` on the bundled project folder, whose opinionmap.toml names
    the survey's codebook, the frame, the region boundaries and the report's notes.
    On a terminal, a live table shows each question's phase (compiling, warming up,
    sampling with its draws and divergences so far, reporting) and, once done, its
    verdict; elsewhere (a log, a pipe) only one line per question.
    """
    _prestart_workers(jobs)
    from opinionmap.demo import run_demo

    def run(say: Say, on_done: OnDone, on_progress: OnProgress | None) -> Path:
        return run_demo(
            out,
            quick=quick,
            models=models,
            seed=seed,
            jobs=jobs or _default_jobs(),
            joint=joint,
            say=say,
            on_done=on_done,
            on_progress=on_progress,
        )

    _run_report(out, run)


@app.command("init")
def init_command(
    survey_path: Annotated[
        Path, typer.Argument(metavar="SURVEY", help="The survey: .sav, .dta, .csv or .parquet.")
    ],
    area: Annotated[str, typer.Option(help="The area column (region, province, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The project folder to write.")],
    outcomes: Annotated[
        str | None,
        typer.Option(help="Comma-separated questions (default: columns with a don't-know)."),
    ] = None,
    predictors: Annotated[
        str | None,
        typer.Option(help="Comma-separated predictors (default: columns with 2-12 values)."),
    ] = None,
    weight: Annotated[str | None, typer.Option(help="The survey weight column.")] = None,
    strata: Annotated[str | None, typer.Option(help="The strata column.")] = None,
    cluster: Annotated[str | None, typer.Option(help="The primary sampling unit column.")] = None,
    frame: Annotated[
        Path | None,
        typer.Option(
            help="The census frame (.csv or .parquet), copied in; labels that differ from the "
            "survey's are mapped in the codebook's [recode]."
        ),
    ] = None,
    frame_weight: Annotated[
        str, typer.Option(help="The frame's population count column.")
    ] = "population",
    force: Annotated[bool, typer.Option(help="Replace an existing, non-empty folder.")] = False,
) -> None:
    """Draft a project folder from a survey file: codebook, one spec per question, frame template.

    Levels and missing codes come from the file's labels ("Don't know"-like labels, SPSS
    user-missing values, Stata's .a-.z and blank cells become missing codes); then fill
    in frame_template.csv, save it as frame.csv (or give the census frame with --frame)
    and `opinionmap run DIR`.
    """
    from opinionmap.project import init_project

    try:
        draft = init_project(
            survey_path,
            out,
            area=area,
            outcomes=None if outcomes is None else _names(outcomes),
            predictors=None if predictors is None else _names(predictors),
            weight=weight,
            strata=strata,
            cluster=cluster,
            force=force,
            frame=frame,
            frame_weight=frame_weight,
        )
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    if draft.guessed_outcomes:
        typer.echo(
            f"outcomes: {', '.join(draft.outcomes)} (guessed: check them, or give --outcomes)"
        )
    guess = " (guessed: check them, or give --predictors)" if draft.guessed_predictors else ""
    typer.echo(f"predictors: {', '.join(draft.predictors) or 'none'}{guess}")
    for outcome, family in draft.outcomes.items():
        typer.echo(f"{outcome}: {family}, models/{outcome}.toml")
    if draft.unlabelled:
        typer.echo(
            f"no value labels for {', '.join(draft.unlabelled)}: their levels are the answers "
            "as written, in sorted order unless they form a known scale; check them in "
            "codebook.toml and the specs."
        )
    for note in draft.notes:
        typer.secho(f"check: {note}", fg=typer.colors.YELLOW)
    if frame is None:
        typer.echo(
            f"wrote {draft.folder}: codebook.toml, models/, frame_template.csv, "
            "opinionmap.toml, README.md; fill in the template's population, save it as "
            f"frame.csv, then: opinionmap run {draft.folder}"
        )
    else:
        typer.echo(
            f"wrote {draft.folder}: codebook.toml, models/, frame{frame.suffix.lower()} (a copy "
            f"of {frame}), opinionmap.toml, README.md; then: opinionmap run {draft.folder}"
        )


@app.command("run")
def run_command(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="A project folder: models/*.toml (naming the survey), codebook.toml, frame.csv "
            "and optionally opinionmap.toml.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: the project's, DIR/report)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="Few draws (a smoke run); the default is each spec's settings.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed of every fit.")] = 2020,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Questions fitted at once, each in its own process (default: CPUs, <= 4)."
        ),
    ] = None,
) -> None:
    """Fit every spec of a project folder, poststratify to its frame, write DIR/report/.

    The report breaks each question down by the survey's area (its codebook's area
    role) and by every categorical predictor the frame has; fits go to
    DIR/report/fits/. An opinionmap.toml in the folder may name other places and what
    the report shows (title, boundaries for maps, published figures, notes). A joint
    spec (outcomes = [...]) is fitted after the others: their report is written first,
    then again with its section.
    """
    _prestart_workers(jobs)
    from opinionmap.demo import sampling
    from opinionmap.pipeline import read_project, run_project

    try:
        project = read_project(folder)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    target = out or project.out

    def run(say: Say, on_done: OnDone, on_progress: OnProgress | None) -> Path:
        return run_project(
            project,
            out=target,
            sampling=sampling(quick=quick, seed=seed),
            jobs=jobs or _default_jobs(),
            progress=not quick and on_progress is None,
            say=say,
            on_done=on_done,
            on_progress=on_progress,
        )

    _run_report(target, run)


@app.command("fit-many")
def fit_many_command(
    specs: Annotated[
        list[Path],
        typer.Argument(metavar="SPEC.toml...", help="Model specs, each naming its survey (data)."),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Folder for the fits: <spec name>.nc each.")
    ],
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Address of a dask.distributed scheduler (e.g. tcp://10.0.0.5:8786): fit on "
            "its workers, one fit per worker at a time (default: local processes)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Random seed of every fit (default: the spec's sampling table, else drawn and "
            "recorded in the file)."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fits at once, each in its own local process (default: CPUs, <= 4); not "
            "with --scheduler.",
        ),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(help="Draws kept per chain (default: the spec's sampling table, else 1000)."),
    ] = None,
    tune: Annotated[
        int | None,
        typer.Option(
            help="Tuning steps per chain (default: the spec's sampling table, else 1000)."
        ),
    ] = None,
    chains: Annotated[
        int | None, typer.Option(help="Chains (default: the spec's sampling table, else 4).")
    ] = None,
) -> None:
    """Fit several specs, in local processes or on a dask cluster, into DIR/<spec name>.nc.

    Every spec is checked against its survey before any fit starts; each fit's
    verdict is printed as it finishes. With --scheduler the workers read the specs
    and surveys and write DIR themselves, so they need the same files at the same
    paths (a shared file system). The same seed gives the same draws either way.
    """
    if scheduler is None:
        _prestart_workers(jobs)
    from opinionmap.pipeline import fit_many
    from opinionmap.spec import Sampling

    try:
        sampling = Sampling(draws=draws, tune=tune, chains=chains, seed=seed)
    except OpinionmapError as exc:
        raise _fail(exc) from exc

    def run(say: Say, on_done: OnSaved, on_progress: OnProgress | None) -> list[SavedFit]:
        return fit_many(
            specs,
            out_dir=out_dir,
            client=scheduler,
            sampling=sampling,
            jobs=jobs,
            say=say,
            on_done=on_done,
            on_progress=on_progress,
        )

    saved = _run_live(
        out_dir,
        run,
        label=lambda fitted: fitted.name,
        done_line=lambda fitted: f"wrote {fitted.path}",
        interrupted=f"the fits finished so far are in {out_dir}.",
    )
    typer.echo(f"{len(saved)} fits written to {out_dir.resolve()}")


def _default_jobs() -> int:
    """Questions fitted at once by default: the CPU cores, at most 4."""
    from opinionmap._workers import default_jobs

    return default_jobs()


def _prestart_workers(jobs: int | None) -> None:
    """Start the parallel run's worker server before this process's own heavy imports."""
    from opinionmap import _workers

    if (jobs or _workers.default_jobs()) > 1:
        _workers.prestart()


# what a batch run is called with: a line to print, a question done, a question's progress
type Say = Callable[[str], None]
type OnDone = Callable[[Outcome], None]
type OnProgress = Callable[[str, FitProgress], None]
type OnSaved = Callable[[SavedFit], None]


def _run_live[O: (Outcome, SavedFit), T](
    out: Path,
    run: Callable[[Say, Callable[[O], None], OnProgress | None], T],
    *,
    label: Callable[[O], str],
    done_line: Callable[[O], str],
    interrupted: str | Callable[[], str],
) -> T:
    """Run a batch of fits with a live board on a terminal (a line per fit elsewhere).

    Each fit's verdict is printed as it finishes, after its ``label``, then its
    ``done_line``; Ctrl-C prints ``interrupted`` and exits with status 130.
    """
    import sys

    from opinionmap._io import check_writable
    from opinionmap.progress import Board

    board = Board([]) if sys.stdout.isatty() else None

    def done(outcome: O) -> None:
        if board is not None:
            board.finish(label(outcome), outcome.verdict, outcome.converged)
        _echo_verdict_text(f"{label(outcome)}: ", outcome.verdict, outcome.converged)
        typer.echo(done_line(outcome))

    try:
        check_writable(out, folder=True)
        with board.live() if board is not None else contextlib.nullcontext():
            return run(typer.echo, done, None if board is None else board.update)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        said = interrupted if isinstance(interrupted, str) else interrupted()
        typer.secho(f"interrupted: {said}", err=True)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None


def _run_report(out: Path, run: Callable[[Say, OnDone, OnProgress | None], Path]) -> None:
    """A batch run that writes a report (``run``, ``demo``), with a live board."""
    path = _run_live(
        out,
        run,
        label=lambda outcome: outcome.question,
        done_line=lambda outcome: f"report: {outcome.question} section written",
        interrupted=lambda: _report_left(out),
    )
    typer.echo(f"report written to {path.resolve()}")


def _report_left(out: Path) -> str:
    """What an interrupted run left: the fits, and the report of the questions if written."""
    fits = f"the fits finished so far are in {out / 'fits'}"
    report = out / "report.html"
    if report.is_file():
        return f"{fits}; {report} has the sections written before the joint models'."
    return f"{fits}; no report was written."


def main() -> None:
    """Entry point of the ``opinionmap`` script."""
    app()
