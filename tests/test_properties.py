"""Property-based tests of the readers: bad input raises OpinionmapError, good input round-trips.

Hypothesis generates spec tables, formulas, codebooks, frames, margin files and survey
files, valid and not. Whatever it generates, a reader either returns or raises an
:class:`~opinionmap.errors.OpinionmapError` (whose subclasses name the stage):
never a ``KeyError``, ``TypeError`` or a pandas error leaking out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import opinionmap as om
from opinionmap.errors import OpinionmapError
from opinionmap.frame import Frame, read_frame, read_margin
from opinionmap.spec import ModelSpec

# OPINIONMAP_HYPOTHESIS_EXAMPLES=1500 for a longer search than the test suite's
SETTINGS = settings(
    max_examples=int(os.environ.get("OPINIONMAP_HYPOTHESIS_EXAMPLES", 80)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# values a TOML or JSON table can hold
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
names = st.sampled_from(["y", "x", "g", "h", "sex", "1", "0", "y2"])


@st.composite
def formulas(draw: st.DrawFn) -> str:
    """Formula-like text: mostly well-formed terms, sometimes junk."""
    terms = draw(
        st.lists(
            st.one_of(
                names,
                st.builds(lambda a, b: f"{a}:{b}", names, names),
                st.builds(lambda a: f"(1 | {a})", names),
                st.builds(lambda a, b: f"({a} | {b})", names, names),
                st.sampled_from(["log(x)", "x*h", "-1", "(", "||", "~", "x + ", "C(x)"]),
            ),
            min_size=0,
            max_size=4,
        )
    )
    left = draw(st.sampled_from(["y", "y + x", "", "log(y)"]))
    return f"{left} ~ " + " + ".join(terms) if draw(st.booleans()) else " + ".join(terms)


@st.composite
def spec_tables(draw: st.DrawFn) -> dict[str, object]:
    table: dict[str, object] = {
        "formula": draw(st.one_of(formulas(), values)),
        "family": draw(st.one_of(st.sampled_from(["categorical", "ordinal", "bernoulli"]), values)),
        "outcome": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"levels": st.lists(st.text(min_size=1, max_size=4), max_size=4)},
                    optional={"missing": st.lists(st.text(max_size=4), max_size=2)},
                ),
                values,
            )
        ),
    }
    for key in ("priors", "sampling", "covariates", "data", "name", "extra"):
        if draw(st.booleans()):
            table[key] = draw(values)
    return table


@SETTINGS
@given(spec_tables())
def test_spec_tables_are_read_or_refused_with_a_spec_error(table: dict[str, object]) -> None:
    try:
        spec = ModelSpec.from_dict(table)
    except OpinionmapError:
        return
    # what was read writes back to the same spec, through JSON and through TOML
    assert ModelSpec.from_json(spec.to_json()) == spec
    with tempfile.TemporaryDirectory() as folder:
        again = om.read_spec(spec.to_toml(Path(folder) / "spec.toml"))
    assert again.hash() == spec.hash()


@SETTINGS
@given(formulas(), st.sampled_from(["categorical", "ordinal", "bernoulli"]))
def test_formulas_are_parsed_or_refused(formula: str, family: str) -> None:
    levels = ("a", "b", "c") if family != "bernoulli" else ("a", "b")
    try:
        spec = ModelSpec(formula=formula, family=family, levels=levels)  # type: ignore[arg-type]
    except OpinionmapError:
        return
    assert spec.outcome not in spec.variables


codebook_tables = st.fixed_dictionaries(
    {},
    optional={
        "survey": st.one_of(
            st.fixed_dictionaries({}, optional={"missing": st.lists(st.text(max_size=4))}), values
        ),
        "variables": st.one_of(
            st.dictionaries(
                names,
                st.one_of(
                    st.fixed_dictionaries(
                        {"role": st.sampled_from(["outcome", "predictor", "area", "weight", "id"])},
                        optional={
                            "levels": st.lists(st.text(min_size=1, max_size=3), max_size=3),
                            "kind": st.sampled_from(["categorical", "numeric", "any", "x"]),
                            "missing": st.lists(st.text(max_size=3), max_size=2),
                        },
                    ),
                    values,
                ),
                max_size=4,
            ),
            values,
        ),
    },
)


@SETTINGS
@given(codebook_tables)
def test_codebook_tables_are_read_or_refused(table: dict[str, object]) -> None:
    try:
        codebook = om.Codebook.from_dict(table)
    except OpinionmapError:
        return
    with tempfile.TemporaryDirectory() as folder:
        again = om.read_codebook(codebook.to_toml(Path(folder) / "c.codebook.toml"))
    assert again.to_dict() == codebook.to_dict()


cells = st.sampled_from(["a", "b", "c", "", "Нур-Султан", "x:y", " a"])
counts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 10**6),
    st.sampled_from(["12", "many", "", "1e308", "-0"]),
)


@SETTINGS
@given(st.lists(st.tuples(cells, cells, counts), min_size=0, max_size=8))
def test_frames_are_read_or_refused(rows: list[tuple[str, str, object]]) -> None:
    text = "region,sex,population\n" + "".join(f"{r},{s},{c}\n" for r, s, c in rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.csv"
        path.write_text(text, encoding="utf-8")
        try:
            frame = read_frame(path)
        except OpinionmapError:
            return
        again = read_frame(frame.to_file(Path(folder) / "again.csv"))
    # a frame that was read has finite, non-negative counts with a positive total
    totals = frame.data["population"].to_numpy(dtype=float)
    assert np.isfinite(totals).all() and (totals >= 0).all() and 0 < totals.sum() < np.inf
    assert again.total == pytest.approx(frame.total)
    assert again.n_cells == frame.n_cells


@SETTINGS
@given(
    st.lists(st.tuples(cells, counts), min_size=0, max_size=5),
    st.lists(st.tuples(cells, counts), min_size=0, max_size=5),
    st.sampled_from(["population", "count"]),
)
def test_margin_files_are_raked_or_refused(
    first: list[tuple[str, object]], second: list[tuple[str, object]], header: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, rows in (("region", first), ("sex", second)):
            path = Path(folder) / f"{name}.csv"
            path.write_text(
                f"{name},{header}\n" + "".join(f"{a},{c}\n" for a, c in rows), encoding="utf-8"
            )
            paths.append(path)
        try:
            frame = Frame.from_margins([read_margin(p) for p in paths])
        except OpinionmapError:
            return
    # a raked frame matches both margins' total
    assert frame.total > 0 and np.isfinite(frame.total)


survey_values = st.sampled_from(["yes", "no", "dont_know", "", "maybe", "1", " yes"])


@SETTINGS
@given(
    st.lists(
        st.tuples(survey_values, cells, st.sampled_from(["1", "2.5", "", "-1", "x", "inf"])),
        min_size=0,
        max_size=8,
    )
)
def test_survey_files_are_read_or_refused(rows: list[tuple[str, str, str]]) -> None:
    text = "q,region,w\n" + "".join(f"{q},{r},{w}\n" for q, r, w in rows)
    codebook = (
        '[survey]\nmissing = ["dont_know"]\n'
        '[variables.q]\nrole = "outcome"\nlevels = ["yes", "no"]\n'
        '[variables.region]\nrole = "area"\n'
        '[variables.w]\nrole = "weight"\n'
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.csv"
        path.write_text(text, encoding="utf-8")
        (Path(folder) / "s.codebook.toml").write_text(codebook, encoding="utf-8")
        try:
            survey = om.read_survey(path)
        except OpinionmapError:
            return
        again = om.read_survey(survey.to_file(Path(folder) / "again.csv", write_codebook=True))
    assert survey.n_respondents == len(rows) == again.n_respondents
    assert (survey.weights() >= 0).all() and np.isfinite(survey.weights()).all()
    pd.testing.assert_series_equal(
        survey.data["q"].astype(str), again.data["q"].astype(str), check_names=False
    )
