"""The report: one self-contained HTML file per set of fits, with tables and figures beside it.

For each question: national shares with intervals beside published figures
(where given); a table and a map by area; MRP beside direct estimates;
differences by the frame's demographic groups; the convergence verdict and the
posterior predictive check; and, once for the report, how the frame was built.
Figures are embedded in the HTML (base64) and also written as PNG files, and
every table is written as CSV, so the folder is both readable and reusable.
"""

from __future__ import annotations

import base64
import html
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from opinionmap._io import atomic_path, save_figure, without_lazy_jax, write_table
from opinionmap.checks import plot_ppc, ppc
from opinionmap.design import merged_line
from opinionmap.diagnostics import BFMI_MIN, ESS_MIN, RHAT_MAX
from opinionmap.direct import direct_estimates
from opinionmap.errors import OpinionmapError, format_values
from opinionmap.frameless import FramelessModel, fit_frameless, frameless_variable
from opinionmap.maps import Area, plot_balance, plot_choropleth, plot_mrp_vs_direct
from opinionmap.poststratification import (
    ANSWERING,
    EVERYONE,
    CoverageWarning,
    Estimates,
    poststratify,
    warn_uncovered,
)
from opinionmap.summaries import interval_prob

if TYPE_CHECKING:
    import xarray as xr

    from opinionmap.design import GroupIndex
    from opinionmap.frame import Frame
    from opinionmap.joint import JointEstimates, JointResult
    from opinionmap.results import FitResult
    from opinionmap.survey import Survey

__all__ = [
    "ReportOptions",
    "Section",
    "build_report",
    "joint_section",
    "read_published",
    "report_section",
    "write_report",
]

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.7em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 700; }
.note { color: #555; font-size: .9em; } nav a { margin-right: 1em; }
"""


@dataclass(frozen=True)
class ReportOptions:
    """What a report shows besides the fits: areas, groups, maps, labels, published figures.

    Attributes
    ----------
    area
        The area column (table and map by area); default: the survey's area
        column, which each fit records.
    groups
        Frame columns to break each question down by; default: every categorical
        predictor of the model that the frame has, other than the area.
    boundaries
        Area outlines (:func:`~opinionmap.maps.read_boundaries`) for the maps;
        without them the report has tables but no maps.
    area_names, labels
        Display names of areas and of questions (by outcome column).
    published
        Published national figures (:func:`read_published`): columns
        ``question``, ``category``, ``percent``; shown beside the national estimates.
    frame_note
        Text on how the frame was built.
    notes
        Further sections at the end of the report: ``(heading, text)`` pairs, e.g. what
        a synthetic survey contains that the models do not.
    title
        The report's title.
    prob
        Interval width (default :func:`~opinionmap.summaries.interval_prob`).
    subarea
        A finer area column of the frame (districts within regions). A question whose
        model has a term on it gets a table (CSV) and, with ``subarea_boundaries``, a
        map by it, the areas drawn inside ``boundaries``; questions without such a term
        are not broken down by it (their estimates would differ by composition only).
    subarea_boundaries
        Outlines of the finer areas, as ``boundaries``.
    joint
        The pattern of answers a joint model's section maps by area, as ``--joint``
        writes it (``"presence_russia=more,presence_usa=less"``); default: the two
        questions whose area effects are the most strongly correlated, the top answer of
        the first with the top (positive) or bottom (negative) answer of the second.
    """

    area: str | None = None
    groups: tuple[str, ...] | None = None
    boundaries: tuple[Area, ...] | None = field(default=None, repr=False)
    area_names: Mapping[str, str] = field(default_factory=dict, repr=False)
    labels: Mapping[str, str] = field(default_factory=dict, repr=False)
    published: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    frame_note: str | None = None
    notes: tuple[tuple[str, str], ...] = ()
    title: str = "opinionmap report"
    prob: float | None = None
    subarea: str | None = None
    subarea_boundaries: tuple[Area, ...] | None = field(default=None, repr=False)
    joint: str | None = None

    def check_frame(self, frame: Frame, where: object) -> None:
        """Refuse a ``subarea`` that is not a column of the frame (``where``: its file)."""
        if self.subarea is not None and self.subarea not in frame.data.columns:
            raise OpinionmapError(
                f"report: subarea {self.subarea!r} is not a column of the frame {where} "
                f"(columns: {format_values(list(frame.data.columns))}); add it to the "
                "frame's cells or leave the subarea out."
            )

    def area_of(self, result: FitResult) -> str:
        """The area column for a fit: the option, else the survey's area the fit recorded."""
        area = self.area or result.design.area
        if area is None:
            raise OpinionmapError(
                f"report: which column is the area of {result.spec.outcome!r}? The fit does not "
                "record one (its survey had no codebook area); pass area=... (CLI: --area)."
            )
        return area


@dataclass(frozen=True)
class Balance:
    """An ordered question's balance of opinion by area: share ``high`` minus share ``low``."""

    high: str
    low: str
    by_area: pd.Series


@dataclass(frozen=True)
class Section:
    """One question's part of the report (HTML, overview row, verdict, balance by area)."""

    question: str
    html: str
    summary: dict[str, Any] | None  # the overview row; None for a joint model's section
    area: str
    converged: bool
    balance: Balance | None = None


def read_published(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read published national figures: a CSV with ``question``, ``category``, ``percent``.

    Raises
    ------
    OpinionmapError
        The file is missing or unreadable, lacks a column, or a percent is not a
        number between 0 and 100; the message names the file and the rows.
    """
    source = Path(path)
    if not source.is_file():
        raise OpinionmapError(f"{source}: no such file of published figures.")
    try:
        table = pd.read_csv(source, dtype={"question": str, "category": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise OpinionmapError(f"{source}: cannot be read as CSV: {exc}") from exc
    absent = [c for c in ("question", "category", "percent") if c not in table.columns]
    if absent:
        raise OpinionmapError(
            f"{source}: published figures need columns 'question', 'category', 'percent'; "
            f"{format_values(absent)} missing (columns: {format_values(list(table.columns))})."
        )
    percent = pd.to_numeric(table["percent"], errors="coerce")
    bad = table.index[percent.isna() | (percent < 0) | (percent > 100)]
    if len(bad):
        raise OpinionmapError(
            f"{source}: 'percent' must be a number from 0 to 100; rows "
            f"{format_values([int(i) + 2 for i in bad])} (counting the header as row 1) are not."
        )
    return table.assign(percent=percent.astype(float))[["question", "category", "percent"]]


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pct(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = table.copy()
    for c in columns:
        if c in out.columns:
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    return out


def build_report(
    results: Sequence[FitResult | JointResult],
    frame: Frame,
    out_dir: str | os.PathLike[str],
    *,
    survey: Survey | None = None,
    options: ReportOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report.html`` with CSV tables and PNG figures into ``out_dir``.

    The same as :func:`report_section` for each result, then :func:`write_report`.

    Parameters
    ----------
    results
        Fitted models (:class:`~opinionmap.results.FitResult`), one per question, and
        joint models (:class:`~opinionmap.joint.JointResult`), whose sections
        (:func:`joint_section`, named ``joint``, ``joint_2``, ...) follow.
    frame
        The poststratification frame (:func:`~opinionmap.frame.read_frame`).
    survey
        The survey, for direct estimates (design-weighted); without it the MRP
        vs direct comparison is left out.
    options
        Areas, groups, maps, labels and published figures (:class:`ReportOptions`).
    progress
        Called with a line of text as each question is done.

    Returns
    -------
    pathlib.Path
        The report's path.
    """
    from opinionmap.joint import JointResult

    options = options or ReportOptions()
    options.check_frame(frame, "passed to build_report")
    say = progress or (lambda _msg: None)
    sections: list[Section] = []
    joint: list[Section] = []
    for result in results:
        if isinstance(result, JointResult):
            name = "joint" if not joint else f"joint_{len(joint) + 1}"
            say(f"report: {name} ({', '.join(result.spec.outcomes)})")
            joint.append(joint_section(result, frame, out_dir, name=name, options=options))
            continue
        say(f"report: {result.spec.outcome}")
        sections.append(report_section(result, frame, out_dir, survey=survey, options=options))
    return write_report([*sections, *joint], frame, out_dir, options=options)


@without_lazy_jax()
def write_report(
    sections: Sequence[Section],
    frame: Frame,
    out_dir: str | os.PathLike[str],
    *,
    options: ReportOptions | None = None,
    pending: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` (and ``overview.csv``) from sections made by :func:`report_section`.

    The sections' figures and tables are already in ``out_dir``; sections made in
    other processes (one per question, in parallel) come together here. ``pending``
    names models still being fitted, said on the first screen (a run that writes the
    report again with their sections).
    """
    options = options or ReportOptions()
    prob = interval_prob(options.prob)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = pd.DataFrame([s.summary for s in sections if s.summary is not None])
    write_table(head, out / "overview.csv")
    areas = list(dict.fromkeys(s.area for s in sections))
    nav = " ".join(
        f'<a href="#{html.escape(s.question)}">{html.escape(s.question)}</a>' for s in sections
    )
    body = [
        f"<h1>{html.escape(options.title)}</h1>",
        f"<nav>{nav}</nav>",
        _convergence_line(sections),
        *_pending_line(pending),
        *_balance_part(sections, out, options),
        "<h2>At a glance</h2>",
        "<p>For each question, the most common answer in the whole population (MRP, with its "
        f"{prob:.0%} interval) and the areas where it is most and least common.</p>",
        head.to_html(index=False, escape=True, border=0),
        *(section.html for section in sections),
        *(
            f"<h2>{html.escape(head)}</h2><p>{html.escape(text)}</p>"
            for head, text in options.notes
        ),
        "<h2>How the frame was built</h2>",
        f"<p>{html.escape(options.frame_note or 'Frame supplied by the user.')}</p>",
        *(_frame_table(frame, a) for a in areas),
        '<p class="note">Made with opinionmap. Intervals are equal-tailed posterior '
        f"{prob:.0%} intervals; MRP estimates are poststratified to the frame's population "
        "counts.</p>",
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(options.title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _convergence_line(sections: Sequence[Section]) -> str:
    """One line on the first screen: every model converged, or which did not.

    A model is a question's, or a joint model's of several questions.
    """
    failed = [s.question for s in sections if not s.converged]
    what = "question" if all(s.summary is not None for s in sections) else "model"
    if not failed:
        return (
            f'<p class="ok">Every {what} converged ({len(sections)} of {len(sections)}): '
            f"R-hat &le; {RHAT_MAX}, bulk and tail ESS &ge; {ESS_MIN:.0f}, no divergent "
            f"transitions, none stopped at the maximum tree depth, E-BFMI &ge; {BFMI_MIN}.</p>"
        )
    names = ", ".join(html.escape(q) for q in failed)
    return (
        f'<p class="bad">NOT CONVERGED: {names} ({len(failed)} of {len(sections)} '
        f"{what}s). Do not report their estimates yet; each {what}'s section says "
        "what failed and what to try.</p>"
    )


def _pending_line(pending: Sequence[str]) -> list[str]:
    """The models still being fitted when the page was written, if any."""
    if not pending:
        return []
    names = ", ".join(html.escape(name) for name in pending)
    return [
        f'<p class="note">Still being fitted when this page was written: {names}. The run '
        "writes this page again with its section when that fit is done.</p>"
    ]


def _balance_part(sections: Sequence[Section], out: Path, options: ReportOptions) -> list[str]:
    """The first screen's maps: each ordered question's balance of opinion by area."""
    ordered = [s for s in sections if s.balance is not None]
    if options.boundaries is None or not ordered:
        return []
    area = ordered[0].area
    ordered = [s for s in ordered if s.area == area]
    balances = {
        options.labels.get(s.question, s.question): s.balance.by_area
        for s in ordered
        if s.balance is not None
    }
    fig = plot_balance(balances, list(options.boundaries))
    path = save_figure(fig, out / f"balance_by_{area}.png", close=True)
    scales = sorted({f"'{s.balance.high}' minus '{s.balance.low}'" for s in ordered if s.balance})
    return [
        f"<h2>Balance of opinion by {html.escape(area)}</h2>",
        f"<p>For each question on an ordered scale, the share of the whole population at the "
        f"top of the scale minus the share at its bottom ({html.escape(', '.join(scales))}), "
        f"by {html.escape(area)}: blue where the top outweighs the bottom, red where the "
        "bottom does. MRP posterior means; one colour scale for every map. Each question's "
        "section below gives the shares with their intervals.</p>",
        _img(path, f"balance of opinion by {area}"),
    ]


def _frame_table(frame: Frame, area: str) -> str:
    data, weight = frame.data, frame.weight
    if area not in data.columns:
        return ""
    total = float(data[weight].sum())
    by_area = data.groupby(area, observed=True)[weight].sum().rename("population")
    table = by_area.reset_index().assign(share=lambda t: t["population"] / total)
    table["population"] = table["population"].map(lambda v: f"{v:,.0f}")
    table["share"] = table["share"].map(lambda v: f"{v:.1%}")
    return f"<p>{len(data):,} cells, total population {total:,.0f}.</p>" + table.to_html(
        index=False, border=0
    )


@without_lazy_jax()
def report_section(
    result: FitResult,
    frame: Frame,
    out_dir: str | os.PathLike[str],
    *,
    survey: Survey | None = None,
    options: ReportOptions | None = None,
) -> Section:
    """One question's section: writes its CSV tables and PNG figures into ``out_dir``.

    Arguments as in :func:`build_report`.
    """
    options = options or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    q = result.spec.outcome
    label = options.labels.get(q, q)
    area = options.area_of(result)
    prob = interval_prob(options.prob)
    frameless = _frameless(result, frame)
    est = poststratify(result, frame, by=[area], frameless=frameless)
    by_area = est.summary(prob=prob)
    write_table(by_area, out / f"{q}_by_{area}.csv")
    national = _national(result, est, options, prob)
    write_table(national, out / f"{q}_national.csv")
    top = str(national.sort_values("mean", ascending=False).iloc[0]["category"])
    verdict = result.diagnostics.verdict()
    css = "ok" if result.diagnostics.converged else "bad"
    parts = [
        f'<h2 id="{html.escape(q)}">{html.escape(label)}</h2>',
        f'<p class="{css}">Convergence: {html.escape(verdict)}</p>',
        f'<p class="note">{html.escape(_estimand_line(est))}</p>',
        f'<p class="note">{html.escape(_model_line(result, prob))}</p>',
        *([] if frameless is None else [f'<p class="note">{html.escape(est.method)}.</p>']),
        "<h3>In the whole population</h3>",
        _pct(
            national.drop(columns=["estimand", "converged"]),
            ["mean", "sd", "lower", "upper", "published", "published, of those answering"],
        ).to_html(index=False, border=0),
        *_answering_part(result, est, options, prob, out),
        *_area_part(result, by_area, national, area, label, out, options),
        *_subarea_part(result, frame, national, label, out, options, frameless),
    ]
    if survey is not None:
        parts += _direct_part(result, survey, by_area, top, area, label, out, options, prob)
    parts += _group_parts(result, frame, area, out, options, prob, frameless)
    parts += _ppc_part(result, out, prob)
    summary = _overview_row(label, area, top, national, by_area, result, options)
    balance = None
    if result.spec.family == "ordinal":
        low, high = result.design.answers[0], result.design.answers[-1]
        wide = by_area.pivot(index=area, columns="category", values="mean")
        balance = Balance(high, low, wide[high] - wide[low])
    return Section(q, "\n".join(parts), summary, area, result.diagnostics.converged, balance)


def _frameless(result: FitResult, frame: Frame) -> FramelessModel | None:
    """The model of the survey variable the frame lacks, fitted once for every table."""
    variable = frameless_variable(result.design, list(frame.data.columns))
    return None if variable is None else fit_frameless(result, variable)


def _national(
    result: FitResult, est: Estimates, options: ReportOptions, prob: float
) -> pd.DataFrame:
    """The whole population's shares, beside the published figures where given."""
    national = est.overall_summary(prob=prob)
    if options.published is None:
        return national
    q = result.spec.outcome
    pub = options.published[options.published["question"] == q][["category", "percent"]]
    # published shares of answers the model merged add up to the merged category's
    pub = pub.assign(category=pub["category"].astype(str).replace(result.design.recode))
    summed = pub.groupby("category", sort=False)["percent"].sum(min_count=1).reset_index()
    national = national.merge(summed, on="category", how="left")
    national["published"] = national.pop("percent") / 100
    if est.estimand == ANSWERING and national["published"].notna().all():
        # shares of those answering: compare with the published shares renormalised
        national["published, of those answering"] = (
            national["published"] / national["published"].sum()
        )
    return national


def _answering_part(
    result: FitResult, est: Estimates, options: ReportOptions, prob: float, out: Path
) -> list[str]:
    """A hurdle model's national shares of those answering, beside the published ones."""
    if est.hurdle is None:
        return []
    answering = est.answering()
    # beside the published shares of all respondents renormalised over the ordered answers
    table = _national(result, answering, options, prob).drop(columns="published", errors="ignore")
    write_table(table, out / f"{result.spec.outcome}_national_answering.csv")
    return [
        f"<h3>In the whole population, {ANSWERING}</h3>",
        f'<p class="note">Shares {ANSWERING}: each draw\'s shares of the ordered answers '
        f"divided by the share not saying {html.escape(repr(est.hurdle))}.</p>",
        _pct(
            table.drop(columns=["estimand", "converged"]),
            ["mean", "sd", "lower", "upper", "published, of those answering"],
        ).to_html(index=False, border=0),
    ]


def _estimand_line(est: Estimates) -> str:
    """What the shares are shares of, in words."""
    if est.hurdle is not None:
        return (
            f"Shares {EVERYONE}, {est.hurdle!r} included: whether a respondent gives an answer "
            f"at all is a model of its own (a hurdle), and those who do give an ordered one; "
            f"the table {ANSWERING} leaves {est.hurdle!r} out."
        )
    if est.estimand == ANSWERING:
        dropped = ", ".join(repr(code) for code in est.dropped)
        many = len(est.dropped) > 1
        return (
            f"Shares {ANSWERING}: the answer{'s' if many else ''} {dropped} "
            f"{'are' if many else 'is'} left out before fitting, so the shares add up to 100% "
            "among those who gave another answer."
        )
    return f"Shares {EVERYONE}: every answer, including non-answers, is a category of the model."


def _model_line(result: FitResult, prob: float) -> str:
    """The formula and family, and what structured priors and varying slopes found.

    BYM2's spatial share; the SDs and correlations of each term's varying coefficients.
    """
    spec = result.spec
    parts = [f"Model: {spec.formula} ({spec.family})."]
    if spec.hurdle is not None:
        parts.append(
            f"A hurdle for {spec.hurdle!r}: a logistic regression on the same terms (hu_*) "
            "gives the chance of not answering."
        )
    if result.design.merged:
        line = merged_line(result.design)
        parts.append(line[:1].upper() + line[1:])
    parts.extend(_slopes_line(result, g, prob) for g in result.design.groups if g.slopes)
    for graph in result.design.graphs:
        if graph.kind != "bym2":
            parts.append(f"{graph.term}: a {graph.kind} random walk over its ordered levels.")
            continue
        islands = f" and {len(graph.islands)} island(s)" if graph.islands else ""
        rho = result.posterior[f"rho_{graph.term}"]
        tail = (1.0 - prob) / 2.0
        if "category" in rho.dims:
            shares = ", ".join(
                f"{c} {float(rho.sel(category=c).mean()):.2f}" for c in rho["category"].values
            )
            found = f"by answer: {shares}"
        else:
            low, high = (float(rho.quantile(q)) for q in (tail, 1.0 - tail))
            found = f"{float(rho.mean()):.2f} [{low:.2f}, {high:.2f}]"
        parts.append(
            f"{graph.term}: BYM2 over {len(graph.edges)} neighbour pairs{islands}; the spatial "
            f"share of its variation (rho) {found}."
        )
    return " ".join(parts)


def _slopes_line(result: FitResult, group: GroupIndex, prob: float) -> str:
    """How a term's coefficients vary by level: their SDs and correlations, with intervals.

    For categorical models, by answer.
    """
    posterior, tail = result.posterior, (1.0 - prob) / 2.0

    def interval(draws: xr.DataArray) -> str:
        low, high = (float(draws.quantile(q)) for q in (tail, 1.0 - tail))
        return f"{float(draws.mean()):.2f} [{low:.2f}, {high:.2f}]"

    sigma, cor = posterior[f"sigma_{group.name}"], posterior.get(f"cor_{group.name}")
    answers = [None] if "category" not in sigma.dims else list(sigma["category"].values)
    pieces = []
    for answer in answers:
        at = {} if answer is None else {"category": answer}
        sds = ", ".join(
            f"{c} {interval(sigma.sel(at).sel({group.coef_dim: c}))}" for c in group.coefs
        )
        text = f"SDs {sds}"
        if cor is not None:
            pairs = [(a, b) for i, a in enumerate(group.coefs) for b in group.coefs[i + 1 :]]
            cors = ", ".join(
                f"{a} with {b} "
                + interval(cor.sel(at).sel({group.coef_dim: a, f"{group.coef_dim}_": b}))
                for a, b in pairs
            )
            text += f"; correlations {cors}"
        pieces.append(text if answer is None else f"{answer}: {text}")
    independent = " (drawn independently)" if group.uncorrelated else ""
    return (
        f"{group.name}: its coefficients vary by level{independent}, "
        f"{'; '.join(pieces)} ({prob:.0%} intervals)."
    )


def _overview_row(
    label: str,
    area: str,
    top: str,
    national: pd.DataFrame,
    by_area: pd.DataFrame,
    result: FitResult,
    options: ReportOptions,
) -> dict[str, Any]:
    ranked = by_area[by_area["category"] == top].sort_values("mean")
    names = options.area_names
    row = national.set_index("category").loc[top]
    low, high = ranked.iloc[0], ranked.iloc[-1]
    return {
        "question": label,
        "most common answer": top,
        "share": f"{row['mean']:.1%} [{row['lower']:.1%}, {row['upper']:.1%}]",
        "highest in": f"{names.get(high[area], high[area])} ({high['mean']:.0%})",
        "lowest in": f"{names.get(low[area], low[area])} ({low['mean']:.0%})",
        "converged": "yes" if result.diagnostics.converged else "NO",
    }


def _area_part(
    result: FitResult,
    by_area: pd.DataFrame,
    national: pd.DataFrame,
    area: str,
    label: str,
    out: Path,
    options: ReportOptions,
) -> list[str]:
    """The map (when there are boundaries) and the table by area."""
    q = result.spec.outcome
    categories = list(result.design.categories)
    parts = [f"<h3>By {html.escape(area)}</h3>"]
    if options.boundaries is not None:
        parts.append(
            _map(result, by_area, options.boundaries, area, national, label, out / f"{q}_map.png")
        )
    wide = by_area.pivot(index=area, columns="category", values="mean")[categories]
    wide.insert(0, "n_respondents", by_area.drop_duplicates(area).set_index(area)["n_respondents"])
    names = options.area_names
    if names:
        wide.index = [f"{names.get(k, k)} ({k})" for k in wide.index]
    parts.append(_pct(wide.reset_index(), categories).to_html(index=False, border=0))
    return parts


def _map(
    result: FitResult,
    table: pd.DataFrame,
    boundaries: Sequence[Area],
    area: str,
    national: pd.DataFrame,
    label: str,
    path: Path,
    outlines: Sequence[Area] | None = None,
) -> str:
    """A question's map by ``area`` written to ``path``, as an HTML image.

    It shows the top three answers of an ordered scale, else the three most common, on
    one colour scale, with their interval widths below.
    """
    if result.spec.family == "ordinal":
        categories = list(result.design.answers[-3:][::-1])
    else:
        categories = list(national.sort_values("mean", ascending=False)["category"][:3])
    fig = plot_choropleth(
        table,
        list(boundaries),
        area=area,
        categories=categories,
        title=f"{label}: share by {area}",
        outlines=outlines,
    )
    saved = save_figure(fig, path, close=True)
    return _img(saved, f"map of {result.spec.outcome} by {area}")


def _subarea_part(
    result: FitResult,
    frame: Frame,
    national: pd.DataFrame,
    label: str,
    out: Path,
    options: ReportOptions,
    frameless: FramelessModel | None,
) -> list[str]:
    """The map and CSV by the finer area, for a model with a term on it."""
    sub = options.subarea
    if sub is None or sub not in result.spec.variables or sub not in frame.data.columns:
        return []
    q = result.spec.outcome
    prob = interval_prob(options.prob)
    table = poststratify(result, frame, by=[sub], frameless=frameless).summary(prob=prob)
    csv = write_table(table, out / f"{q}_by_{sub}.csv")
    counts = table.drop_duplicates(sub)["n_respondents"]
    graph = result.design.graph(sub)
    borrows = ", which borrows from their neighbours" if graph and graph.kind == "bym2" else ""
    parts = [
        f"<h3>By {html.escape(sub)}</h3>",
        f'<p class="note">{int((counts > 0).sum())} of {len(counts)} {html.escape(sub)}s '
        f"have respondents; the others' estimates rest on the model alone (their "
        f"{html.escape(options.area_of(result))}, their population's make-up and the "
        f"{html.escape(sub)} effects' prior{borrows}), with wider {prob:.0%} intervals. "
        f"Every {html.escape(sub)}'s estimate: "
        f'<a href="{html.escape(csv.name)}">{html.escape(csv.name)}</a>.</p>',
    ]
    if options.subarea_boundaries is not None:
        path = out / f"{q}_map_{sub}.png"
        boundaries, outlines = options.subarea_boundaries, options.boundaries
        parts.append(_map(result, table, boundaries, sub, national, label, path, outlines))
    return parts


def _direct_part(
    result: FitResult,
    survey: Survey,
    by_area: pd.DataFrame,
    top: str,
    area: str,
    label: str,
    out: Path,
    options: ReportOptions,
    prob: float,
) -> list[str]:
    """MRP beside the design-weighted direct estimates of the most common answer."""
    q = result.spec.outcome
    direct = direct_estimates(
        survey,
        q,
        by=area,
        categories=list(result.design.categories),
        missing=result.spec.missing,
        prob=prob,
        recode=result.design.recode,
    )
    write_table(direct, out / f"{q}_direct_by_{area}.csv")
    fig = plot_mrp_vs_direct(
        by_area,
        direct,
        category=top,
        area=area,
        names=dict(options.area_names),
        title=f"{label}: share answering {top!r}",
    )
    path = save_figure(fig, out / f"{q}_mrp_vs_direct.png", close=True)
    return [
        "<h3>MRP beside the direct estimates</h3>",
        '<p class="note">Direct: the design-weighted share, with its design-based standard '
        "error and interval (strata and clusters where the survey's codebook declares them). "
        "The model itself does not use the survey weights: as MRP does, it conditions on the "
        "frame's variables and the area, and poststratification to the frame's counts does "
        "what weighting would. Where an area has few respondents the direct interval is wide; "
        "MRP borrows strength from other areas and from the frame's demographic mix.</p>",
        _img(path, f"MRP vs direct for {q}"),
    ]


def _default_groups(result: FitResult, frame_columns: set[str], area: str) -> tuple[str, ...]:
    """Every categorical predictor of the model that the frame has, other than the area."""
    return tuple(
        c.name
        for c in result.design.codings
        if c.kind == "categorical" and c.name != area and c.name in frame_columns
    )


def _group_parts(
    result: FitResult,
    frame: Frame,
    area: str,
    out: Path,
    options: ReportOptions,
    prob: float,
    frameless: FramelessModel | None = None,
) -> list[str]:
    """A table of shares with intervals by each demographic group."""
    q = result.spec.outcome
    categories = list(result.design.categories)
    frame_columns = set(frame.data.columns)
    groups = options.groups
    if groups is None:
        groups = _default_groups(result, frame_columns, area)
    present = [g for g in dict.fromkeys(groups) if g in frame_columns]
    parts = []
    for g, est in zip(present, _by_each(result, frame, present, frameless), strict=True):
        table = est.summary(prob=prob)
        write_table(table, out / f"{q}_by_{g}.csv")
        wide = {
            stat: table.pivot(index=g, columns="category", values=stat)[categories]
            for stat in ("mean", "lower", "upper")
        }
        cells = wide["mean"].copy().astype(object).rename_axis(columns=None)
        for c in categories:
            for i in cells.index:
                cells.loc[i, c] = (
                    f"{wide['mean'].loc[i, c]:.0%} "
                    f"[{wide['lower'].loc[i, c]:.0%}, {wide['upper'].loc[i, c]:.0%}]"
                )
        parts.append(f"<h3>By {html.escape(g)}</h3>")
        parts.append(cells.reset_index().to_html(index=False, border=0))
    return parts


# most shares (draws x cells x answers) that one pass by every group at once may hold; beyond,
# a pass per group
_CROSS_VALUES = 20_000_000


def _by_each(
    result: FitResult, frame: Frame, groups: Sequence[str], frameless: FramelessModel | None
) -> Iterator[Estimates]:
    """Estimates by each of ``groups``: from one pass over the frame by them all when small.

    Each pass computes every frame cell's probabilities in every draw; the groups' tables
    need them once (:meth:`~opinionmap.poststratification.Estimates.aggregate`).
    """
    cross = math.prod(int(frame.data[g].nunique()) for g in groups)
    size = result.posterior.sizes["chain"] * result.posterior.sizes["draw"]
    if len(groups) > 1 and cross * size * len(result.design.categories) <= _CROSS_VALUES:
        with warnings.catch_warnings():
            # the frame's coverage is checked group by group below, as a pass by each
            # group checks it (a combination of groups without population is no gap)
            warnings.simplefilter("ignore", CoverageWarning)
            whole = poststratify(result, frame, by=list(groups), frameless=frameless)
        for g in groups:
            est = whole.aggregate(g)
            warn_uncovered(result.design, est.by, est.population, est.n_respondents)
            yield est
        return
    for g in groups:
        yield poststratify(result, frame, by=[g], frameless=frameless)


def _ppc_part(result: FitResult, out: Path, prob: float) -> list[str]:
    """The posterior predictive check: a table, a figure and a count of misfits."""
    q = result.spec.outcome
    check = ppc(result, prob=prob)
    write_table(check, out / f"{q}_ppc.csv")
    path = save_figure(plot_ppc(check), out / f"{q}_ppc.png", close=True)
    outside = int(check["outside"].sum())
    return [
        "<h3>Posterior predictive check</h3>",
        f"<p>{outside} of {len(check)} observed shares lie outside their replicated "
        f"{prob:.0%} intervals.</p>",
        _img(path, f"posterior predictive check for {q}"),
    ]


@without_lazy_jax()
def joint_section(
    result: JointResult,
    frame: Frame,
    out_dir: str | os.PathLike[str],
    *,
    name: str = "joint",
    options: ReportOptions | None = None,
) -> Section:
    """A joint model's section: how its questions go together, and a pattern by area.

    Writes into ``out_dir``: ``<name>_correlations.csv`` (each grouping term's
    correlations across the questions, with intervals) and their heat map,
    ``<name>_loadings.csv``, ``<name>_by_<area>.csv`` (every question's shares by area
    from the joint model) and ``<name>_pattern_by_<area>.csv`` (the pattern's share by
    area beside its value were the answers independent within each area), with a map of
    the pattern where there are boundaries. ``name`` is the section's anchor (the spec's
    stem).
    """
    from opinionmap.joint import parse_pattern, poststratify_joint
    from opinionmap.maps import plot_correlations

    options = options or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec, prob = result.spec, interval_prob(options.prob)
    area = options.area or result.design.area
    if area is None:
        raise OpinionmapError(
            f"report: which column is the area of the joint model {name!r}? The fit does not "
            "record one (its survey had no codebook area); pass area=... (CLI: --area)."
        )
    css = "ok" if result.converged else "bad"
    terms = [g.name for g in result.design.design.groups]
    parts = [
        f'<h2 id="{html.escape(name)}">{len(spec.outcomes)} questions in one model</h2>',
        f'<p class="{css}">Convergence: {html.escape(result.verdict)}</p>',
        f'<p class="note">{html.escape(_joint_model_line(result))}</p>',
    ]
    correlations = pd.concat(
        [result.correlations(t, prob=prob).assign(term=t) for t in terms], ignore_index=True
    )
    if len(correlations):
        write_table(
            correlations[["term", *correlations.columns[:-1]]], out / f"{name}_correlations.csv"
        )
        matrices = {
            f"{t} effects": _correlation_matrix(
                correlations[correlations["term"] == t], spec.outcomes
            )
            for t in terms
        }
        path = save_figure(
            plot_correlations(matrices), out / f"{name}_correlations.png", close=True
        )
        parts += [
            "<h3>How the questions go together</h3>",
            f"<p>The correlation across the questions of each grouping term's effects "
            f"(posterior means): where one question's {html.escape(area)} effect is high, "
            "another's tends to be high too (blue) or low (red). Intervals in "
            f'<a href="{html.escape(name)}_correlations.csv">{html.escape(name)}'
            "_correlations.csv</a>.</p>",
            _img(path, f"correlations of {name}'s area effects"),
        ]
    if spec.trait:
        loadings = result.loadings(prob=prob)
        write_table(loadings, out / f"{name}_loadings.csv")
        parts += [
            "<p>Each question's loading on the respondent trait that ties one respondent's "
            "answers together: questions whose loadings share a sign tend to be answered "
            "alike by the same person, beyond what their area and group explain.</p>",
            _loadings_table(loadings, prob).to_html(index=False, border=0),
        ]
    pattern = options.joint or _strongest_pattern(result, correlations, area)
    # one pass over the frame's cells: every question's shares and the pattern's
    est = poststratify_joint(result, frame, by=area, joint=parse_pattern(pattern, spec))
    write_table(est.summary(prob), out / f"{name}_by_{area}.csv")
    parts += _pattern_part(result, est, frame, area, name, out, options, prob)
    return Section(name, "\n".join(parts), None, area, result.converged)


def _joint_model_line(result: JointResult) -> str:
    """The joint model in words: formula, family, terms, trait, anchors, who was left out."""
    import json

    spec, jd = result.spec, result.design
    terms = ", ".join(g.name for g in jd.design.groups)
    line = (
        f"Model: {spec.rhs} for each of {', '.join(spec.outcomes)} ({spec.base.family}), "
        f"each with its own cutpoints and coefficients; the effects of {terms} correlated "
        "across the questions (LKJ prior)."
    )
    if spec.trait:
        anchors = json.loads(result.tree.attrs.get("opinionmap_joint_anchors", "[]"))
        line += (
            f" A respondent trait of {spec.trait} dimension(s) with a loading per question, "
            f"integrated out; its sign is set by {', '.join(anchors) or 'the first question'}."
        )
    answered = jd.answered()
    line += (
        f" {jd.n_respondents:,} respondents answered at least one question "
        f"({', '.join(f'{q} {n:,}' for q, n in answered.items())}); "
        f"{jd.dropped:,} answered none and are left out. Shares are of adults answering."
    )
    return line


def _correlation_matrix(table: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """The square matrix of posterior mean correlations from one row per pair."""
    m = pd.DataFrame(1.0, index=list(outcomes), columns=list(outcomes))
    for _, row in table.iterrows():
        m.loc[row["question_a"], row["question_b"]] = row["mean"]
        m.loc[row["question_b"], row["question_a"]] = row["mean"]
    return m


def _strongest_pattern(result: JointResult, correlations: pd.DataFrame, area: str) -> str:
    """The default pattern: the most strongly correlated pair of questions' area effects.

    The first question's top answer, and the second's top answer where they go together,
    else its bottom answer; without correlations, the first two questions' top answers.
    """
    levels = result.spec.base.levels
    rows = correlations[correlations["term"] == area]
    if rows.empty:
        rows = correlations
    if rows.empty:
        a, b = result.spec.outcomes[:2]
        return f"{a}={levels[-1]},{b}={levels[-1]}"
    best = rows.iloc[int(rows["mean"].abs().to_numpy().argmax())]
    second = levels[-1] if best["mean"] > 0 else levels[0]
    return f"{best['question_a']}={levels[-1]},{best['question_b']}={second}"


def _loadings_table(table: pd.DataFrame, prob: float) -> pd.DataFrame:
    """Loadings with two decimals, the interval in one column."""
    out = table.copy()
    out[f"{prob:.0%} interval"] = [
        f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(out.pop("lower"), out.pop("upper"), strict=True)
    ]
    for c in ("mean", "sd"):
        out[c] = out[c].map(lambda v: f"{v:.2f}")
    return out


def _pattern_part(
    result: JointResult,
    est: JointEstimates,
    frame: Frame,
    area: str,
    name: str,
    out: Path,
    options: ReportOptions,
    prob: float,
) -> list[str]:
    """A pattern's share by area and nationally, beside its value were answers independent."""
    import numpy as np
    import xarray as xr

    from opinionmap.summaries import summarise_draws

    assert est.pattern is not None and est.joint is not None
    asked, pattern = est.joint, est.pattern_label
    # the product of the same draws' shares of each answer in the area: the share if the
    # answers were independent within each area
    product = np.ones(est.pattern.shape)
    for q, a in asked.items():
        product = product * est.shares.sel(outcome=q, category=a).values
    by_area = est.pattern_summary(prob)
    by_area["if independent"] = product.mean(axis=0)
    # nationally: the areas' shares weighted by their populations, draw by draw
    population = frame.data.groupby(area, observed=True)[frame.weight].sum()
    w = population.reindex(est.groups[area].astype(str)).to_numpy(dtype=float)
    w = w / w.sum()
    national = summarise_draws(
        xr.DataArray((est.pattern.values @ w)[None], dims=("chain", "draw")), prob=prob
    ).iloc[0]
    independent = float((product @ w).mean())
    label = " and ".join(f"{options.labels.get(q, q)}: {a}" for q, a in asked.items())
    write_table(by_area, out / f"{name}_pattern_by_{area}.csv")
    parts = [
        f"<h3>{html.escape(label)}, by {html.escape(area)}</h3>",
        f"<p>The share of adults who would give every answer of the pattern "
        f"{html.escape(str(pattern))}: {national['mean']:.1%} [{national['lower']:.1%}, "
        f"{national['upper']:.1%}] nationally, against {independent:.1%} if the answers were "
        f"independent within each {html.escape(area)} (the product of the {html.escape(area)}'s "
        "shares of each answer, as separate models of the questions would give it).</p>",
    ]
    if options.boundaries is not None:
        fig = plot_choropleth(
            by_area,
            list(options.boundaries),
            area=area,
            categories=[str(pattern)],
            title=f"Share of adults giving every answer of the pattern, by {area}",
        )
        path = save_figure(fig, out / f"{name}_pattern_map.png", close=True)
        parts.append(_img(path, f"map of the pattern {pattern} by {area}"))
    shown = by_area[[area, "mean", "lower", "upper", "if independent"]].copy()
    if options.area_names:
        shown[area] = [f"{options.area_names.get(k, k)} ({k})" for k in shown[area]]
    columns = ["mean", "lower", "upper", "if independent"]
    parts.append(_pct(shown, columns).to_html(index=False, border=0))
    return parts
