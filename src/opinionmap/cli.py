"""The ``opinionmap`` command line.

A thin layer: every command maps its options onto the same validated objects
the Python API uses (``read_survey``, ``read_frame``, ``rake``) and turns
:class:`~opinionmap.errors.OpinionmapError` into a one-line message and exit
status 2, without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from opinionmap import __version__
from opinionmap.errors import OpinionmapError

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


def main() -> None:
    """Entry point of the ``opinionmap`` script."""
    app()
