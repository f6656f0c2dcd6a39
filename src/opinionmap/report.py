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
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opinionmap._io import atomic_path
from opinionmap.direct import direct_estimates
from opinionmap.maps import plot_choropleth, plot_mrp_vs_direct
from opinionmap.poststratify import poststratify
from opinionmap.ppc import plot_ppc, ppc

__all__ = ["Section", "build_report", "report_section", "write_report"]

# the frame columns each question is broken down by, where the frame has them
GROUPS = ("ethnicity", "age", "settlement")

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
class Section:
    """One question's part of the report: its HTML and its row of the overview table."""

    question: str
    html: str
    summary: dict[str, Any]


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pct(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = table.copy()
    for c in columns:
        if c in out.columns:
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    return out


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def _save_png(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def build_report(
    results: Sequence[Any],
    frame: Any,
    out_dir: str | os.PathLike[str],
    *,
    survey: Any = None,
    published: pd.DataFrame | None = None,
    area: str = "region",
    groups: Sequence[str] = GROUPS,
    area_names: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    frame_note: str | None = None,
    title: str = "opinionmap report",
    prob: float = 0.9,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report.html`` with CSV tables and PNG figures into ``out_dir``.

    The same as :func:`report_section` for each result, then :func:`write_report`.

    Parameters
    ----------
    results
        Fitted models (:class:`~opinionmap.fit.FitResult`), one per question.
    frame
        The poststratification frame (``Frame`` or DataFrame with ``population``).
    survey
        The survey, for direct estimates (design-weighted); without it the MRP
        vs direct comparison is left out.
    published
        Published national figures: columns ``question``, ``category``,
        ``percent``; shown beside the national estimates.
    area, groups
        The area column (table, map) and the demographic columns to break down by.
    area_names, labels
        Display names of areas and questions.
    frame_note
        HTML-safe text on how the frame was built.

    Returns
    -------
    pathlib.Path
        The report's path.
    """
    say = progress or (lambda _msg: None)
    sections = []
    for result in results:
        question = result.spec.outcome
        say(f"report: {question}")
        sections.append(
            report_section(
                result,
                frame,
                out_dir,
                survey=survey,
                published=published,
                area=area,
                groups=groups,
                area_names=area_names,
                label=(labels or {}).get(question),
                prob=prob,
            )
        )
    return write_report(
        sections, frame, out_dir, area=area, frame_note=frame_note, title=title, prob=prob
    )


def write_report(
    sections: Sequence[Section],
    frame: Any,
    out_dir: str | os.PathLike[str],
    *,
    area: str = "region",
    frame_note: str | None = None,
    title: str = "opinionmap report",
    prob: float = 0.9,
) -> Path:
    """Write ``report.html`` (and ``overview.csv``) from sections made by :func:`report_section`.

    The sections' figures and tables are already in ``out_dir``; sections made in
    other processes (one per question, in parallel) come together here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = pd.DataFrame([section.summary for section in sections])
    _write_csv(head, out / "overview.csv")
    nav = " ".join(
        f'<a href="#{html.escape(s.question)}">{html.escape(s.question)}</a>' for s in sections
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<nav>{nav}</nav>",
        "<h2>At a glance</h2>",
        "<p>For each question, the most common answer nationally (MRP, with its "
        f"{prob:.0%} interval) and the regions where it is most and least common.</p>",
        head.to_html(index=False, escape=True, border=0),
        *(section.html for section in sections),
        "<h2>How the frame was built</h2>",
        f"<p>{frame_note or 'Frame supplied by the user.'}</p>",
        _frame_table(frame, area),
        '<p class="note">Made with opinionmap. Intervals are equal-tailed posterior '
        f"{prob:.0%} intervals; MRP estimates are poststratified to the frame's population "
        "counts.</p>",
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _frame_table(frame: Any, area: str) -> str:
    data = frame.data if hasattr(frame, "data") else frame
    total = float(data["population"].sum())
    by_area = data.groupby(area, observed=True)["population"].sum().rename("population")
    table = by_area.reset_index().assign(share=lambda t: t["population"] / total)
    table["population"] = table["population"].map(lambda v: f"{v:,.0f}")
    table["share"] = table["share"].map(lambda v: f"{v:.1%}")
    return f"<p>{len(data):,} cells, total population {total:,.0f}.</p>" + table.to_html(
        index=False, border=0
    )


def report_section(
    result: Any,
    frame: Any,
    out_dir: str | os.PathLike[str],
    *,
    survey: Any = None,
    published: pd.DataFrame | None = None,
    area: str = "region",
    groups: Sequence[str] = GROUPS,
    area_names: Mapping[str, str] | None = None,
    label: str | None = None,
    prob: float = 0.9,
) -> Section:
    """One question's section: writes its CSV tables and PNG figures into ``out_dir``.

    Arguments as in :func:`build_report`; ``label`` is the question's display name
    (default: the outcome column).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = label or result.spec.outcome
    q = result.spec.outcome
    files: list[Path] = []
    est = poststratify(result, frame, by=[area])
    by_area = est.summary(prob=prob)
    files.append(_write_csv(by_area, out / f"{q}_by_{area}.csv"))
    national = est.overall_summary(prob=prob)
    if published is not None:
        pub = published[published["question"] == q][["category", "percent"]]
        national = national.merge(pub, on="category", how="left")
        national["published"] = national.pop("percent") / 100
        if result.spec.missing and national["published"].notna().all():
            # the model drops missing codes: compare with the published shares of those answering
            national["published, of those answering"] = (
                national["published"] / national["published"].sum()
            )
    files.append(_write_csv(national, out / f"{q}_national.csv"))
    top = national.sort_values("mean", ascending=False).iloc[0]["category"]
    ranked = by_area[by_area["category"] == top].sort_values("mean")
    names = area_names or {}
    summary = {
        "question": label,
        "most common answer": top,
        "national share": f"{national.set_index('category').loc[top, 'mean']:.1%} "
        f"[{national.set_index('category').loc[top, 'lower']:.1%}, "
        f"{national.set_index('category').loc[top, 'upper']:.1%}]",
        "highest in": f"{names.get(ranked.iloc[-1][area], ranked.iloc[-1][area])} "
        f"({ranked.iloc[-1]['mean']:.0%})",
        "lowest in": f"{names.get(ranked.iloc[0][area], ranked.iloc[0][area])} "
        f"({ranked.iloc[0]['mean']:.0%})",
        "converged": "yes" if result.diagnostics.converged else "NO",
    }
    parts = [f'<h2 id="{html.escape(q)}">{html.escape(label)}</h2>']
    verdict = result.diagnostics.verdict()
    css = "ok" if result.diagnostics.converged else "bad"
    parts.append(f'<p class="{css}">Convergence: {html.escape(verdict)}</p>')
    parts.append("<h3>National shares</h3>")
    shown = _pct(
        national, ["mean", "sd", "lower", "upper", "published", "published, of those answering"]
    )
    parts.append(shown.to_html(index=False, border=0))

    # map of the (up to) three most common answers, one colour scale
    if result.spec.family == "ordinal":
        cats = list(result.design.categories)[-3:][::-1]
    else:
        cats = list(national.sort_values("mean", ascending=False)["category"][:3])
    fig = plot_choropleth(by_area, area=area, categories=cats, title=f"{label}: share by {area}")
    files.append(_save_png(fig, out / f"{q}_map.png"))
    parts.append(f"<h3>By {html.escape(area)}</h3>")
    parts.append(_img(files[-1], f"map of {q} by {area}"))
    wide = by_area.pivot(index=area, columns="category", values="mean")[
        list(result.design.categories)
    ]
    wide.insert(0, "n_respondents", by_area.drop_duplicates(area).set_index(area)["n_respondents"])
    if names:
        wide.index = [f"{names.get(k, k)} ({k})" for k in wide.index]
    parts.append(
        _pct(wide.reset_index(), list(result.design.categories)).to_html(index=False, border=0)
    )

    if survey is not None:
        direct = direct_estimates(
            survey,
            q,
            by=area,
            categories=list(result.design.categories),
            missing=result.spec.missing,
            prob=prob,
        )
        files.append(_write_csv(direct, out / f"{q}_direct_by_{area}.csv"))
        fig = plot_mrp_vs_direct(
            by_area,
            direct,
            category=top,
            area=area,
            names=dict(names),
            title=f"{label}: share answering {top!r}",
        )
        files.append(_save_png(fig, out / f"{q}_mrp_vs_direct.png"))
        parts.append("<h3>MRP beside the direct estimates</h3>")
        parts.append(
            '<p class="note">Direct: design-weighted share with a linearised standard error. '
            "Where an area has few respondents the direct interval is wide; MRP borrows "
            "strength from other areas and from the frame's demographic mix.</p>"
        )
        parts.append(_img(files[-1], f"MRP vs direct for {q}"))

    frame_cols = set(frame.data.columns if hasattr(frame, "data") else frame.columns)
    for g in groups:
        if g not in frame_cols:
            continue
        table = poststratify(result, frame, by=[g]).summary(prob=prob)
        files.append(_write_csv(table, out / f"{q}_by_{g}.csv"))
        wide = table.pivot(index=g, columns="category", values="mean")[
            list(result.design.categories)
        ]
        lo = table.pivot(index=g, columns="category", values="lower")[
            list(result.design.categories)
        ]
        hi = table.pivot(index=g, columns="category", values="upper")[
            list(result.design.categories)
        ]
        cells = wide.copy().astype(object).rename_axis(columns=None)
        for c in wide.columns:
            for i in wide.index:
                cells.loc[i, c] = f"{wide.loc[i, c]:.0%} [{lo.loc[i, c]:.0%}, {hi.loc[i, c]:.0%}]"
        parts.append(f"<h3>By {html.escape(g)}</h3>")
        parts.append(cells.reset_index().to_html(index=False, border=0))

    check = ppc(result, prob=prob)
    files.append(_write_csv(check, out / f"{q}_ppc.csv"))
    fig = plot_ppc(check)
    files.append(_save_png(fig, out / f"{q}_ppc.png"))
    outside = int(check["outside"].sum())
    parts.append("<h3>Posterior predictive check</h3>")
    parts.append(
        f"<p>{outside} of {len(check)} observed shares lie outside their replicated "
        f"{prob:.0%} intervals.</p>"
    )
    parts.append(_img(files[-1], f"posterior predictive check for {q}"))
    return Section(q, "\n".join(parts), summary)
