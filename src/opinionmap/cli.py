"""The ``opinionmap`` command line.

A thin layer: every command maps its options onto the same validated objects
the Python API uses (``read_survey``, ``read_frame``, ``rake``) and turns
:class:`~opinionmap.errors.OpinionmapError` into a one-line message and exit
status 2, without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from opinionmap import __version__
from opinionmap.errors import OpinionmapError

if TYPE_CHECKING:
    from opinionmap.report import Section

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
    """Validate a frame (and its levels against a survey codebook) and print its margins."""
    from opinionmap.codebook import read_codebook
    from opinionmap.frame import read_frame

    try:
        frame = read_frame(path, weight=weight)
        if codebook is not None:
            frame.check_levels(read_codebook(codebook))
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
    from opinionmap.frame import Frame

    try:
        tables = []
        for m in margins:
            if not m.is_file():
                raise OpinionmapError(f"{m}: no such file.")
            table = pd.read_csv(m, dtype=str, keep_default_na=False)
            if weight in table.columns:
                table[weight] = pd.to_numeric(table[weight], errors="coerce")
            tables.append(table)
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


def _load_data(path: Path) -> object:
    """A survey with its codebook when one lies beside it; otherwise a plain table."""
    from opinionmap.survey import read_survey

    codebook = path.with_name(f"{path.stem}.codebook.toml")
    if codebook.is_file() or path.suffix.lower() in (".sav", ".dta"):
        return read_survey(path)
    if not path.is_file():
        raise OpinionmapError(f"{path}: no such data file.")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise OpinionmapError(
        f"{path}: unsupported data file; use .csv, .parquet, .sav or .dta (with a "
        "<stem>.codebook.toml beside it for labels and missing codes)."
    )


@app.command("fit")
def fit_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.toml", help="Model spec (TOML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the fit (.nc).")],
    data: Annotated[
        Path | None, typer.Option(help="Survey file (default: the spec's 'data').")
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(
            min=1, help="Draws kept per chain (default: the spec's [sampling], else 1000)."
        ),
    ] = None,
    tune: Annotated[
        int | None,
        typer.Option(min=0, help="Tuning steps per chain (default: [sampling], else 1000)."),
    ] = None,
    chains: Annotated[
        int | None, typer.Option(min=1, help="Chains (default: [sampling], else 4).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: drawn and recorded in the file).")
    ] = None,
    sampler: Annotated[str, typer.Option(help="nutpie (default), pymc or numpyro.")] = "nutpie",
    target_accept: Annotated[
        float | None,
        typer.Option(help="NUTS target acceptance (default 0.95); 0.99 against divergences."),
    ] = None,
    adaptation: Annotated[
        str,
        typer.Option(help="nutpie mass matrix: diag (default) or low_rank (slow mixing)."),
    ] = "diag",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fit a model spec to survey data and save the posterior as netCDF."""
    from opinionmap.fit import fit
    from opinionmap.spec import read_spec

    try:
        spec = read_spec(spec_path)
        data_path = data or spec.data
        if data_path is None:
            raise OpinionmapError(
                f"{spec_path}: no data to fit: give --data PATH or a 'data' key in the spec."
            )
        survey = _load_data(Path(data_path))
        typer.echo(f"fitting {spec.outcome} ({spec.family}) on {data_path} with {sampler} ...")
        result = fit(
            spec,
            survey,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            sampler=sampler,
            progress=progress,
            warn=False,
            target_accept=target_accept,
            adaptation=adaptation,
        )
        result.save(out)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    design, attrs = result.design, result.tree.attrs
    typer.echo(
        f"wrote {out}: {design.n_respondents} respondents in {design.n_cells} cells, "
        f"{attrs['opinionmap_chains']} chains x {attrs['opinionmap_draws']} draws, "
        f"seed {attrs['opinionmap_random_seed']}"
    )
    _echo_verdict(result.diagnostics)


def _demo_question(
    spec_path: Path,
    out: Path,
    draws: int | None,
    tune: int | None,
    chains: int | None,
    seed: int,
    cores: int,
    progress: bool,
) -> tuple[str, str, bool, Section]:
    """Fit one bundled spec, save it and write its report section (a ``demo`` worker).

    Returns the outcome, the verdict, whether the fit converged and the report
    section, so that the parent process only puts the sections together: it
    neither reloads the fits nor redoes their diagnostics.
    """
    from opinionmap import datasets
    from opinionmap.fit import fit
    from opinionmap.frame import read_frame
    from opinionmap.report import report_section
    from opinionmap.spec import read_spec
    from opinionmap.survey import read_survey

    survey = read_survey(datasets.kazakhstan_survey_path())
    result = fit(
        read_spec(spec_path),
        survey,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        random_seed=seed,
        progress=progress,
        warn=False,
    )
    q = result.spec.outcome
    result.save(out / "fits" / f"{q}.nc")
    section = report_section(
        result,
        read_frame(datasets.kazakhstan_frame_path()),
        out,
        survey=survey,
        published=datasets.kazakhstan_published(),
        area_names=datasets.kazakhstan_region_names(),
        label=_question_labels([result], survey).get(q),
    )
    return q, result.diagnostics.verdict(), result.diagnostics.converged, section


def _demo_worker_init() -> None:
    """Let a ``demo`` worker process end without tearing its interpreter down.

    The worker's results have gone back to the parent by then; the teardown (freeing
    the compiled models and their LLVM code) took 2-4 s, during which the parent
    waited for the pool to close.
    """
    import atexit
    import os
    import sys

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)


def _echo_verdict_text(prefix: str, verdict: str, converged: bool) -> None:
    """Print a convergence verdict: green when converged, bold red otherwise."""
    typer.secho(
        f"{prefix}{verdict}",
        fg=typer.colors.GREEN if converged else typer.colors.RED,
        bold=not converged,
    )


def _echo_verdict(diagnostics: object) -> None:
    converged = getattr(diagnostics, "converged", False)
    _echo_verdict_text("", diagnostics.verdict(), converged)  # type: ignore[attr-defined]


@app.command("summary")
def summary_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    prob: Annotated[float, typer.Option(min=0.01, max=0.99, help="Interval width.")] = 0.9,
) -> None:
    """Print the ArviZ summary of a saved fit and its convergence verdict."""
    from opinionmap.fit import load

    try:
        result = load(fit_path)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    spec = result.spec
    typer.echo(f"{fit_path}: {spec.formula}  [{spec.family}]")
    with pd.option_context(
        "display.width", 200, "display.max_rows", 500, "display.max_columns", 20
    ):
        typer.echo(result.summary(prob=prob).round(3).to_string())
    _echo_verdict(result.diagnostics)


@app.command("ppc")
def ppc_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table as CSV.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the plot (.png or .svg).")] = None,
    prob: Annotated[float, typer.Option(min=0.01, max=0.99, help="Interval width.")] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of the replication.")] = 0,
) -> None:
    """Posterior predictive check: observed vs replicated shares overall and by factor."""
    from opinionmap._io import atomic_path
    from opinionmap.fit import load
    from opinionmap.ppc import plot_ppc, ppc

    try:
        result = load(fit_path)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    table = ppc(result, prob=prob, random_seed=seed)
    if out is not None:
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
        typer.echo(f"wrote {out}")
    if plot is not None:
        plot_ppc(table, plot)
        typer.echo(f"wrote {plot}")
    outside = table[table["outside"]]
    typer.echo(
        f"{len(outside)} of {len(table)} observed shares lie outside their replicated "
        f"{prob:.0%} intervals"
        + (":\n" + outside.round(3).to_string(index=False) if len(outside) else ".")
    )


@app.command("poststratify")
def poststratify_command(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.nc", help="A saved fit.")],
    frame_path: Annotated[Path, typer.Option("--frame", help="Frame (.csv or .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Estimates table (.csv or .parquet).")],
    weight: Annotated[str, typer.Option(help="Population count column.")] = "population",
    by: Annotated[str, typer.Option(help="Comma-separated columns, e.g. region,ethnicity.")] = (
        "region"
    ),
    prob: Annotated[float, typer.Option(min=0.01, max=0.99, help="Interval width.")] = 0.9,
    new_levels: Annotated[
        str, typer.Option(help="Frame levels the survey never saw: error or sample.")
    ] = "error",
    seed: Annotated[int, typer.Option(help="Seed for --new-levels sample.")] = 0,
) -> None:
    """Poststratify a fit to a frame: shares by area/group with intervals, as a table."""
    from opinionmap._io import atomic_path
    from opinionmap.fit import load
    from opinionmap.frame import read_frame
    from opinionmap.poststratify import poststratify

    columns = [c.strip() for c in by.split(",") if c.strip()]
    try:
        if out.suffix.lower() not in (".csv", ".parquet"):
            raise OpinionmapError(f"{out}: write estimates as .csv or .parquet.")
        if new_levels not in ("error", "sample"):
            raise OpinionmapError(f"--new-levels must be 'error' or 'sample', got {new_levels!r}.")
        result = load(fit_path)
        frame = read_frame(frame_path, weight=weight)
        estimates = poststratify(
            result,
            frame,
            weight=weight,
            by=columns,
            new_levels="sample" if new_levels == "sample" else "error",
            random_seed=seed,
        )
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    table = estimates.summary(prob=prob)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    overall = estimates.overall_summary(prob=prob)
    typer.echo(f"wrote {out}: {len(table)} rows ({', '.join(columns) or 'population'} x category)")
    typer.echo(
        "whole population: "
        + ", ".join(
            f"{r.category} {r.mean:.1%} [{r.lower:.1%}, {r.upper:.1%}]"
            for r in overall.itertuples()
        )
    )


FRAME_NOTE = (
    "The frame counts adults 18+ by region x sex x age band x ethnicity x settlement "
    "(816 cells). Region x sex x age comes from the national statistics bureau's table "
    "of 1 January 2020 (16-17-year-olds removed as 2/16 of the 0-15 band); regional "
    "ethnic shares are derived from the 2021 census religion shares, and regional urban "
    "shares are assumed so the national urban share is 58.9%; the joint table is raked "
    "(iterative proportional fitting) to all these margins. See data/kazakhstan/README.md "
    "for every assumption. The survey itself is SYNTHETIC."
)


def _question_labels(results: Sequence[object], survey: object) -> dict[str, str]:
    """Display names of the results' questions from the survey's codebook, where it has them."""
    labels = {}
    codebook = getattr(survey, "codebook", None)
    for r in results:
        q = r.spec.outcome  # type: ignore[attr-defined]
        if codebook is not None and q in codebook.names and codebook[q].label:
            labels[q] = codebook[q].label
    return labels


def _write_report(
    results: Sequence[object],
    frame: object,
    out: Path,
    *,
    survey: object = None,
    published: pd.DataFrame | None = None,
    title: str = "opinionmap report",
) -> Path:
    from opinionmap.report import build_report

    return build_report(
        results,
        frame,
        out,
        survey=survey,
        published=published,
        labels=_question_labels(results, survey),
        title=title,
        progress=typer.echo,
    )


@app.command("report")
def report_command(
    fits: Annotated[list[Path], typer.Argument(metavar="FIT.nc...", help="Saved fits.")],
    frame_path: Annotated[Path, typer.Option("--frame", help="Frame (.csv or .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")],
    survey_path: Annotated[
        Path | None, typer.Option("--survey", help="Survey file, for direct estimates.")
    ] = None,
    published_path: Annotated[
        Path | None,
        typer.Option("--published", help="CSV of published figures: question,category,percent."),
    ] = None,
    title: Annotated[str, typer.Option(help="Report title.")] = "opinionmap report",
) -> None:
    """Build the HTML report (plus CSV tables and PNG figures) for your own fits."""
    from opinionmap.fit import load
    from opinionmap.frame import read_frame

    try:
        results = [load(p) for p in fits]
        frame = read_frame(frame_path)
        survey = _load_data(survey_path) if survey_path is not None else None
        published = pd.read_csv(published_path) if published_path is not None else None
        path = _write_report(results, frame, out, survey=survey, published=published, title=title)
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    typer.echo(f"report written to {path}")


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
            "process (default: the number of "
            "CPU cores, at most 4). Compiling a model is single-threaded, so two at once "
            "on two cores nearly halve a quick run.",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline on the bundled Kazakhstan data and write the report."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from opinionmap import datasets
    from opinionmap.frame import read_frame
    from opinionmap.report import write_report
    from opinionmap.spec import read_spec

    # publication quality: each spec's [sampling] defaults, else 4 chains x 1,000 draws
    draws, tune, chains = (150, 200, 2) if quick else (None, None, None)
    cpus = os.cpu_count() or 1
    jobs = jobs or min(cpus, 4)
    try:
        folder = models or datasets.models_dir()
        specs = sorted(folder.glob("*.toml"))
        if not specs:
            raise OpinionmapError(f"{folder}: no model specs (*.toml).")
        frame = read_frame(datasets.kazakhstan_frame_path())
        parsed = [read_spec(spec_path) for spec_path in specs]
        outcomes = [spec.outcome for spec in parsed]
        for i, spec in enumerate(parsed, start=1):
            n_draws, _, n_chains = spec.sampling.resolve(draws, tune, chains)
            typer.echo(
                f"[{i}/{len(specs)}] fitting {spec.outcome} ({spec.family}, {n_chains} x {n_draws})"
            )
        settings = (draws, tune, chains, seed, max(1, cpus // jobs))
        sections = {}

        def done(outcome: str, verdict: str, converged: bool, section: Section) -> None:
            _echo_verdict_text(f"{outcome}: ", verdict, converged)
            typer.echo(f"report: {outcome} section written")
            sections[outcome] = section

        if jobs == 1:
            for spec_path in specs:
                done(*_demo_question(spec_path, out, *settings, not quick))
        else:
            # spawn, not fork: the parent may hold threads (numba, nutpie)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=jobs, mp_context=context, initializer=_demo_worker_init
            ) as pool:
                futures = [
                    pool.submit(_demo_question, spec_path, out, *settings, False)
                    for spec_path in specs
                ]
                for future in as_completed(futures):
                    done(*future.result())
        typer.echo("report: putting the sections together")
        path = write_report(
            [sections[o] for o in outcomes],
            frame,
            out,
            frame_note=FRAME_NOTE,
            title="What Kazakhstan's regions want from the world (synthetic demo data)",
        )
    except OpinionmapError as exc:
        raise _fail(exc) from exc
    typer.echo(f"report written to {path.resolve()}")


def main() -> None:
    """Entry point of the ``opinionmap`` script."""
    app()
