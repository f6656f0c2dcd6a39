"""A project folder drafted from a survey file: codebook, one spec per question, frame template.

``opinionmap init SURVEY --area COLUMN --outcomes a,b --out DIR`` (:func:`init_project`)
reads the survey (``.sav``, ``.dta``, ``.csv``, ``.parquet``), drafts the levels and
missing codes of the outcomes from the file (:func:`opinionmap.survey.draft_outcomes`),
and writes what ``opinionmap run DIR`` needs but the frame's counts:

- ``DIR/codebook.toml``: every named variable with its role, levels and missing codes;
- ``DIR/models/<outcome>.toml``: the family drafted from the answers (bernoulli for two,
  ordinal where they form a known ordered scale, categorical otherwise) and the standard
  MRP terms (predictors with few levels as fixed effects, others and the area as
  varying intercepts), each choice explained in a comment;
- ``DIR/frame_template.csv``: every cell of the area and the categorical predictors,
  with an empty ``population`` column to fill in and save as ``DIR/frame.csv``; or,
  given the census frame (``--frame``), a copy of it as ``DIR/frame.csv`` and, where its
  labels differ from the survey's ("Almaty city" against "Almaty"), the suggested
  mapping as an editable ``[recode]`` table in the codebook;
- ``DIR/opinionmap.toml``: the report's title, with the keys for maps and published
  figures commented out;
- ``DIR/README.md``: the next steps.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from opinionmap.codebook import Codebook
from opinionmap.errors import OpinionmapError, format_values
from opinionmap.frame import Frame, read_frame
from opinionmap.spec import ModelSpec
from opinionmap.survey import _MISSING_LABELS, Survey, read_file, read_survey

__all__ = ["Draft", "init_project", "ordered_scale"]

# known ordered answer scales, low to high (labels compared in lower case, _ as a space)
SCALES: tuple[tuple[str, ...], ...] = (
    ("less", "same", "more"),
    ("decrease", "stay the same", "increase"),
    ("worse", "same", "better"),
    ("strongly disagree", "disagree", "neither", "agree", "strongly agree"),
    ("disapprove", "approve"),
    ("not at all", "not very", "somewhat", "very"),
    ("never", "rarely", "sometimes", "often", "always"),
    ("very bad", "bad", "good", "very good"),
)
# predictors with at most this many levels are fixed effects; more, varying intercepts
FIXED_LEVELS = 5
# the most cells a frame template may have
MAX_CELLS = 200_000
# a categorical question with more answers than this merges the rare ones
MANY_ANSWERS = 15
MERGE_BELOW = 20


@dataclass(frozen=True)
class Draft:
    """What :func:`init_project` wrote and guessed."""

    folder: Path
    outcomes: dict[str, str]  # outcome -> family
    predictors: tuple[str, ...]
    guessed_predictors: bool
    guessed_outcomes: bool = False
    # the outcomes whose levels are the answers as written (the file has no labels for them)
    unlabelled: tuple[str, ...] = ()
    # what needs a look before `run`: one line each, naming the variable and the fix
    notes: tuple[str, ...] = ()


def ordered_scale(levels: tuple[str, ...]) -> tuple[str, ...] | None:
    """The levels in a known scale's order, low to high, if they all belong to one.

    Examples
    --------
    >>> ordered_scale(("more", "less", "same"))
    ('less', 'same', 'more')
    >>> ordered_scale(("1", "3", "2")), ordered_scale(("russia", "china"))
    (('1', '2', '3'), None)
    """
    keys = {level: level.lower().replace("_", " ").strip() for level in levels}
    for scale in SCALES:
        if set(keys.values()) <= set(scale):
            return tuple(sorted(levels, key=lambda level: scale.index(keys[level])))
    try:
        return tuple(sorted(levels, key=float))
    except ValueError:
        return None


def init_project(
    survey_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    area: str,
    outcomes: list[str] | None = None,
    predictors: list[str] | None = None,
    weight: str | None = None,
    strata: str | None = None,
    cluster: str | None = None,
    force: bool = False,
    frame: str | os.PathLike[str] | None = None,
    frame_weight: str = "population",
) -> Draft:
    """Draft a project folder from a survey file (see the module docstring).

    ``frame``: the census frame (``.csv`` or ``.parquet``, counts in ``frame_weight``),
    copied into the folder; labels of its cells that differ from the survey's are
    matched (:meth:`~opinionmap.Frame.suggest_recode`) and written as the codebook's
    ``[recode]`` tables, those left unmatched named in ``Draft.notes``.

    ``outcomes=None`` guesses them: the columns with 2-15 distinct values one of which
    reads as a non-answer ("Don't know", "Refused", an SPSS user-missing code), as
    questions have. ``predictors=None`` guesses them: every other column with 2-12
    distinct values, none of which reads as a non-answer.
    An existing, non-empty ``out`` is refused unless ``force``; the folder is written
    whole or not at all.
    """
    source = Path(survey_path)
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not force:
        raise OpinionmapError(
            f"{target}: the folder exists and is not empty; choose another --out, or pass "
            "--force to replace it."
        )
    others = (weight, strata, cluster)
    raw = read_file(source)
    guessed_outcomes = outcomes is None
    if outcomes is None:
        outcomes = _guess_columns(raw, {area, *(o for o in others if o)}, questions=True)
        if not outcomes:
            raise OpinionmapError(
                f"{source}: no column looks like a question (a few answers, one of them a "
                'non-answer such as "Don\'t know"); name the outcomes: --outcomes q1,q2.'
            )
    guessed = predictors is None
    if predictors is None:
        taken = {area, *outcomes, *(o for o in others if o)}
        predictors = _guess_columns(raw, taken, questions=False)
    roles = {"weight": weight, "strata": strata, "cluster": cluster}
    given = {k: v for k, v in roles.items() if v is not None}
    survey = read_survey(source, outcomes=outcomes, predictors=predictors, area=area, **given)
    per_area = survey.data[area].value_counts()
    if len(per_area) > 1 and int(per_area.max()) <= 1:
        raise OpinionmapError(
            f"{source}: area column {area!r} has one respondent in each of its "
            f"{len(per_area)} levels: an identifier rather than an area? Name the column "
            "of the areas to estimate (region, province, ...) with --area."
        )
    census = (
        None if frame is None else read_frame(frame, weight=frame_weight, codebook=survey.codebook)
    )
    if census is not None and area not in census.cells:
        raise OpinionmapError(
            f"{frame}: the frame has no column {area!r} (cell columns: "
            f"{format_values(census.cells)}); the areas need one, named as in the survey."
        )
    notes = _design_notes(survey)
    staging = Path(tempfile.mkdtemp(prefix=".init-", dir=target.parent.resolve()))
    try:
        families, frame_notes = _write(
            survey, source, staging, target, area, predictors, census, frame_weight
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    unlabelled = tuple(q for q in outcomes if not raw[1].get(q))
    return Draft(
        target,
        families,
        tuple(predictors),
        guessed,
        guessed_outcomes,
        unlabelled,
        (*notes, *frame_notes),
    )


def _design_notes(survey: Survey) -> list[str]:
    """Zero weights and strata with one sampling unit: allowed, but worth a look."""
    codebook, df = survey.codebook, survey.data
    notes = []
    if codebook.weight is not None:
        zero = int((df[codebook.weight.name] == 0).sum())
        if zero:
            notes.append(
                f"weight column {codebook.weight.name!r}: {zero} respondent(s) weigh 0; the "
                "direct estimates leave them out but the models fit their answers: drop them "
                "from the file if they are outside the population."
            )
    if codebook.strata is not None and codebook.cluster is not None:
        units = df.groupby(codebook.strata.name, observed=True)[codebook.cluster.name].nunique()
        lonely = [str(s) for s in units.index[units < 2]]
        if lonely:
            notes.append(
                f"strata column {codebook.strata.name!r}: stratum(s) {format_values(lonely)} "
                "have one sampling unit (PSU), so the direct estimates cannot measure their "
                "variance there (they centre it on the grand mean); merge each with a similar "
                "stratum in the file, or leave --strata out."
            )
    return notes


def _guess_columns(
    raw: tuple[pd.DataFrame, Mapping[str, Mapping[Any, str]], Mapping[str, set[str]]],
    taken: set[str],
    *,
    questions: bool,
) -> list[str]:
    """Questions (2-15 values, one a non-answer) or predictors (2-12 values, none).

    ``raw`` is :func:`~opinionmap.survey.read_file`'s rows, value labels and user-missing labels.
    """
    df, labels, user_missing = raw
    guess = []
    for c in df.columns:
        values = [str(labels.get(c, {}).get(v, v)) for v in df[c].dropna().unique()]
        if c in taken or not 2 <= len(values) <= (15 if questions else 12):
            continue
        non_answer = bool(user_missing.get(c)) or any(
            _MISSING_LABELS.match(v.replace("_", " ")) for v in values
        )
        if non_answer == questions:
            guess.append(c)
    return guess


def _write(
    survey: Survey,
    source: Path,
    folder: Path,
    target: Path,
    area: str,
    predictors: list[str],
    census: Frame | None,
    frame_weight: str,
) -> tuple[dict[str, str], list[str]]:
    """Write the project into ``folder`` (renamed to ``target`` afterwards).

    Returns each outcome's family and what needs a look in the frame.
    """
    codebook = survey.codebook
    outcomes = [v.name for v in codebook if v.role == "outcome"]
    specs = {q: _draft_spec(survey, q, area, predictors) for q in outcomes}
    # the codebook lists an ordinal outcome's levels in its scale's order, low to high
    scales = {q: spec.levels for q, (spec, _) in specs.items() if spec.family == "ordinal"}
    codebook = codebook.with_levels(scales)
    notes: list[str] = []
    if census is not None:
        recode, unmatched = census.suggest_recode(codebook)
        codebook = replace(codebook, recode=recode)
        notes = _frame_notes(census, codebook, survey, area, predictors, unmatched)
    codebook.to_toml(folder / "codebook.toml")
    if codebook.recode:
        _comment_recode(folder / "codebook.toml")
    (folder / "models").mkdir()
    data = os.path.relpath(source.resolve(), (target / "models").resolve())
    families: dict[str, str] = {}
    for q, (spec, comments) in specs.items():
        families[q] = spec.family
        text = tomli_w.dumps({**spec.to_dict(), "data": data})
        lines = "".join(f"# {c}\n" for c in comments)
        (folder / "models" / f"{q}.toml").write_text(lines + text, encoding="utf-8")
    categorical = [p for p in predictors if codebook[p].kind == "categorical"]
    columns = [area, *categorical]
    if census is None:
        _frame_template(survey, columns, folder / "frame_template.csv")
    else:
        assert census.source is not None
        shutil.copyfile(census.source, folder / f"frame{census.source.suffix.lower()}")
    (folder / "opinionmap.toml").write_text(_project_file(source, frame_weight), encoding="utf-8")
    numeric = [p for p in predictors if p not in categorical]
    (folder / "README.md").write_text(_readme(source, columns, numeric, census), encoding="utf-8")
    return families, notes


def _frame_template(survey: Survey, columns: list[str], path: Path) -> None:
    """Every cell of ``columns`` with an empty population column (refused when huge)."""
    sizes = [len(survey.levels(c)) for c in columns]
    if math.prod(sizes) > MAX_CELLS:
        raise OpinionmapError(
            f"the frame template would have {math.prod(sizes):,} cells ({' x '.join(columns)}: "
            f"{' x '.join(map(str, sizes))}), more than a census table gives; name fewer "
            "predictors (--predictors)."
        )
    cells = pd.DataFrame(list(product(*(survey.levels(c) for c in columns))), columns=columns)
    cells.assign(population="").to_csv(path, index=False)


def _frame_notes(
    census: Frame,
    codebook: Codebook,
    survey: Survey,
    area: str,
    predictors: list[str],
    unmatched: dict[str, list[str]],
) -> list[str]:
    """What the census frame lacks or labels differently, after the suggested recode."""
    where = census.source
    notes = [
        f"{where}: {c!r} label(s) {format_values(labels)} match none of the survey's "
        f"levels; map each in codebook.toml's [recode.{c}] (frame label = survey label), or "
        "they are areas or groups the survey never reached."
        for c, labels in unmatched.items()
    ]
    if codebook.recode:
        pairs = "; ".join(
            ", ".join(f"{k!r} -> {v!r}" for k, v in m.items()) for m in codebook.recode.values()
        )
        notes.append(f"{where}: labels mapped onto the survey's in codebook.toml [recode]: {pairs}")
    wanted = [area, *(p for p in predictors if codebook[p].kind == "categorical")]
    lacking = [c for c in wanted if c not in census.cells]
    if lacking:
        notes.append(
            f"{where}: no column {format_values(lacking)}; the report estimates it from the "
            "survey (MrsP) for at most one such variable: drop the others from the formulas, "
            "or use a frame that has them."
        )
    recoded = census.recode({c: m for c, m in codebook.recode.items() if c in census.cells})
    for c in (c for c in wanted if c in census.cells):
        absent = sorted(set(survey.levels(c)) - set(recoded.levels(c)))
        if absent:
            notes.append(
                f"{where}: survey levels {format_values(absent)} of {c!r} have no cells in the "
                "frame, so their respondents cannot be poststratified; add them, or map them "
                f"in [recode.{c}]."
            )
    return notes


def _comment_recode(path: Path) -> None:
    """Say above the codebook's first [recode] table what it is and that it is a suggestion."""
    text = path.read_text(encoding="utf-8")
    head, sep, tail = text.partition("\n[recode.")
    comment = (
        "\n# [recode.<column>]: the frame's labels (left) mapped onto the survey's (right),\n"
        "# suggested by opinionmap init from their spelling; check each, edit freely.\n"
    )
    path.write_text(head + comment + sep.lstrip("\n") + tail, encoding="utf-8")


def _draft_spec(
    survey: Survey, outcome: str, area: str, predictors: list[str]
) -> tuple[ModelSpec, list[str]]:
    v = survey.codebook[outcome]
    levels = tuple(v.levels or ())
    comments = [f"{outcome}: drafted by opinionmap init; edit freely."]
    scale = ordered_scale(levels)
    if len(levels) == 2:
        family = "bernoulli"
        comments.append(f"bernoulli: two answers; {levels[1]!r} is the 'success'.")
    elif scale is not None:
        family, levels = "ordinal", scale
        comments.append(f"ordinal: the answers form an ordered scale, low to high {levels}.")
    else:
        family = "categorical"
        # the most common answer is the reference: its contrasts are the best estimated
        counts = survey.responses(outcome)[outcome].value_counts()
        levels = tuple(sorted(levels, key=lambda level: -int(counts.get(level, 0))))
        comments.append(
            f"categorical: the answers are not a known ordered scale; {levels[0]!r} is the "
            "reference. Set family = 'ordinal' (levels low to high) if they are ordered."
        )
    merge = None
    if family == "categorical" and len(levels) > MANY_ANSWERS:
        merge = MERGE_BELOW
        comments.append(
            f"{len(levels)} answers: those fewer than {MERGE_BELOW} respondents gave are "
            "modelled as one, 'other' (merge_below); if this is free text, code it first."
        )
    fixed, varying = [], [area]
    for p in predictors:
        kind = survey.codebook[p].kind
        if kind == "categorical" and len(survey.levels(p)) > FIXED_LEVELS:
            varying.append(p)
        else:
            fixed.append(p)
    comments.append(
        f"Terms: predictors with up to {FIXED_LEVELS} levels (and numeric ones) as fixed "
        "effects, others and the area as varying intercepts, so small groups borrow strength."
    )
    if v.missing:
        instead = (
            "or model don't know with [outcome] hurdle"
            if family == "ordinal"
            else "or list one in levels to model it as an answer"
        )
        comments.append(
            f"Missing codes {format_values(v.missing)} are dropped (shares of those "
            f"answering); {instead}."
        )
    terms = [*fixed, *(f"(1 | {g})" for g in varying)]
    spec = ModelSpec(
        formula=f"{outcome} ~ 1 + " + " + ".join(terms),
        family=family,  # type: ignore[arg-type]
        levels=levels,
        missing=tuple(v.missing),
        merge_below=merge,
    )
    return spec, comments


def _project_file(source: Path, frame_weight: str) -> str:
    weight = "" if frame_weight == "population" else tomli_w.dumps({"weight": frame_weight})
    title = tomli_w.dumps({"title": f"{source.stem}: small-area estimates"})
    return f"""# What `opinionmap run` reads besides models/*.toml; paths relative to this file.
# Every key is optional: frame.csv, codebook.toml and report/ are the defaults.
{weight}
[report]
{title}# Maps: a shapefile of the areas, its attribute holding the area codes as the survey
# spells them, and the one holding their names.
# boundaries = {{ path = "areas.shp", key = "ADM1_PCODE", name = "ADM1_EN" }}
# Published national figures, shown beside the estimates: question,category,percent.
# published = "published.csv"
# groups = ["sex", "age"]      # breakdowns besides the area (default: the predictors)
"""


def _readme(source: Path, columns: list[str], numeric: list[str], census: Frame | None) -> str:
    where = " x ".join(columns)
    note = (
        f"\nNumeric predictors ({', '.join(numeric)}) are not in the frame: add their "
        "value for each cell (e.g. its mean), or drop them from the formulas.\n"
        if numeric
        else ""
    )
    frame = (
        f"Fill in `frame_template.csv` with the population count of every cell\n"
        f"   ({where}) and save it as `frame.csv` (or build it from census tables\n"
        "   with `opinionmap frame rake`)."
        if census is None
        else f"`frame.csv` is a copy of {census.source}; check `[recode]` in `codebook.toml`\n"
        "   (the frame's labels mapped onto the survey's) with\n"
        "   `opinionmap frame check frame.csv --codebook codebook.toml`."
    )
    return f"""# opinionmap project for {source.name}

Drafted by `opinionmap init`. Next steps:

1. Check `codebook.toml`: each variable's role, its levels in order and its missing
   codes (labels such as "Don't know" and the file's user-missing values are drafted as
   missing).
2. Check `models/*.toml`: one question each; the comments say why each choice was made.
3. {frame}{note}
4. `opinionmap.toml` holds the report's title; add boundaries there for maps.
5. `opinionmap run .` fits every question and writes `report/report.html`.
"""
