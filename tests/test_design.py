"""Designs: cells x counts, treatment coding, group levels, new data, input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import opinionmap as om
from opinionmap import datasets
from opinionmap.design import DesignError, build_design
from opinionmap.spec import ModelSpec

RUSSIA = ModelSpec(
    formula="presence_russia ~ 1 + sex + settlement + (1 | age) + (1 | region) + (1 | ethnicity)"
    " + (1 | region:ethnicity)",
    family="ordinal",
    levels=("less", "same", "more"),
    missing=("dont_know",),
)


@pytest.fixture(scope="module")
def kazakhstan() -> om.Survey:
    return om.read_survey(datasets.kazakhstan_survey_path())


def _df() -> pd.DataFrame:
    """Twelve respondents: a 3-level outcome, two predictors, a grouping factor."""
    return pd.DataFrame(
        {
            "y": list("abcabcaabbcc"),
            "sex": ["m", "f"] * 6,
            "x": [0.5, 1.5, 0.5, 1.5, 0.5, 1.5, 2.0, 2.0, 0.5, 1.5, 0.5, 1.5],
            "g": list("ppqqrrppqqrr"),
        }
    )


def _spec(
    formula: str,
    family: str = "categorical",
    levels: tuple[str, ...] = ("a", "b", "c"),
    **kwargs: object,
) -> ModelSpec:
    return ModelSpec(formula=formula, family=family, levels=levels, **kwargs)  # type: ignore[arg-type]


# -- cells and counts ----------------------------------------------------------------------
def test_cells_reproduce_every_respondent() -> None:
    df = _df()
    design = build_design(_spec("y ~ 1 + sex + x + (1 | g)"), df)
    assert design.n_respondents == 12
    assert design.counts.sum() == 12
    # respondents sharing sex, x and g share a cell; each cell is distinct
    assert design.n_cells == len(df.drop_duplicates(["sex", "x", "g"]))
    keys = np.column_stack([design.X, design.groups[0].index])
    assert len(np.unique(keys, axis=0)) == design.n_cells
    # each respondent's cell has their covariates, and the counts are their responses
    cells = design.cells.iloc[design.respondent_cell].reset_index(drop=True)
    assert cells["sex"].astype(str).tolist() == df["sex"].tolist()
    assert cells["x"].tolist() == df["x"].tolist()
    assert cells["g"].astype(str).tolist() == df["g"].tolist()
    rebuilt = np.zeros_like(design.counts)
    np.add.at(rebuilt, (design.respondent_cell, design.respondent_response), 1)
    np.testing.assert_array_equal(rebuilt, design.counts)
    assert [design.categories[i] for i in design.respondent_response] == df["y"].tolist()


def test_respondent_level_design_has_one_cell_each() -> None:
    df = _df()
    spec = _spec("y ~ 1 + sex + x + (1 | g)")
    cells = build_design(spec, df)
    each = build_design(spec, df, aggregate=False)
    assert each.n_cells == 12
    np.testing.assert_array_equal(each.counts.sum(axis=1), np.ones(12))
    # the same data, whichever way it is laid out
    assert each.data_hash == cells.data_hash
    changed = df.assign(y=["b", *df["y"].tolist()[1:]])
    assert build_design(spec, changed).data_hash != cells.data_hash


def test_missing_codes_are_dropped() -> None:
    df = _df().assign(y=["dk", *list("bcabcaabbcc")])
    design = build_design(_spec("y ~ 1 + sex", missing=("dk",)), df)
    assert design.n_respondents == 11
    assert design.respondent_id.tolist() == [str(i) for i in range(1, 12)]


def test_treatment_coding_with_reference_level() -> None:
    df = _df()
    df["sex"] = pd.Categorical(df["sex"], categories=["m", "f"])  # declared order: m first
    design = build_design(_spec("y ~ 1 + sex + x + sex:x"), df)
    assert design.coef_names == ("sex[f]", "x", "sex[f]:x")
    female = (df["sex"] == "f").to_numpy(dtype=float)
    each = build_design(_spec("y ~ 1 + sex + x + sex:x"), df, aggregate=False)
    np.testing.assert_array_equal(each.X[:, 0], female)
    np.testing.assert_array_equal(each.X[:, 1], df["x"].to_numpy())
    np.testing.assert_array_equal(each.X[:, 2], female * df["x"].to_numpy())
    np.testing.assert_allclose(design.x_sd, each.X.std(axis=0))


def test_unobserved_fixed_effect_level_is_not_coded() -> None:
    # a declared level nobody has cannot be estimated: no column for it, and new data
    # with that level are refused
    df = _df()
    df["sex"] = pd.Categorical(df["sex"], categories=["other", "m", "f"])
    design = build_design(_spec("y ~ 1 + sex"), df)
    assert design.coef_names == ("sex[f]",)
    with pytest.raises(DesignError, match=r"predictor 'sex' has level\(s\) 'other'"):
        design.evaluate(pd.DataFrame({"sex": ["other"]}))


def test_group_levels_include_declared_levels_without_respondents(
    kazakhstan: om.Survey,
) -> None:
    design = build_design(RUSSIA, kazakhstan)
    regions = kazakhstan.codebook["region"].levels
    by_name = {g.name: g for g in design.groups}
    assert by_name["region"].levels == tuple(regions)
    assert len(regions) == 17
    assert by_name["age"].levels == ("18-29", "30-44", "45-59", "60+")
    interaction = by_name["region:ethnicity"]
    assert len(interaction.levels) == 17 * 3
    assert interaction.levels[:3] == ("KZ-AKM:kazakh", "KZ-AKM:russian", "KZ-AKM:other")
    per_level = design.respondents_per_level(interaction)
    assert per_level.sum() == design.n_respondents
    # a declared area without respondents still gets an effect
    df = _df()
    df["g"] = pd.Categorical(df["g"], categories=["p", "q", "r", "s"])
    design = build_design(_spec("y ~ 1 + (1 | g)"), df)
    assert design.groups[0].levels == ("p", "q", "r", "s")
    np.testing.assert_array_equal(design.respondents_per_level(design.groups[0]), [4, 4, 4, 0])


# -- new data --------------------------------------------------------------------------------
def test_evaluate_codes_new_rows_with_training_levels() -> None:
    design = build_design(_spec("y ~ 1 + sex + (1 | g)"), _df())
    new = design.evaluate(pd.DataFrame({"sex": ["m", "f", "f"], "g": ["r", "p", "q"]}))
    # sex levels sort alphabetically (f, m): m is the dummy
    assert design.coef_names == ("sex[m]",)
    np.testing.assert_array_equal(new.X[:, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(new.groups[0].index, [2, 0, 1])


def test_evaluate_unknown_predictor_level() -> None:
    design = build_design(_spec("y ~ 1 + sex + (1 | g)"), _df())
    with pytest.raises(DesignError, match=r"predictor 'sex' has level\(s\) 'x'.*not fitted with"):
        design.evaluate(pd.DataFrame({"sex": ["m", "x"], "g": ["p", "q"]}))


def test_evaluate_unknown_group_level_error_or_sample() -> None:
    design = build_design(_spec("y ~ 1 + sex + (1 | g)"), _df())
    frame = pd.DataFrame({"sex": ["m", "f", "m"], "g": ["p", "zz", "q"]})
    with pytest.raises(DesignError, match=r"grouping factor 'g' has level\(s\) 'zz'.*new_levels="):
        design.evaluate(frame)
    new = design.evaluate(frame, new_levels="sample")
    np.testing.assert_array_equal(new.groups[0].index, [0, -1, 1])


def test_interaction_and_numeric_levels_code_like_their_labels() -> None:
    df = _df().assign(k=[1, 2] * 6)  # a grouping factor stored as numbers
    design = build_design(_spec("y ~ 1 + (1 | g:sex) + (1 | k)"), df)
    g_sex, k = design.groups
    assert g_sex.levels == ("p:f", "p:m", "q:f", "q:m", "r:f", "r:m")
    assert k.levels == ("1", "2")
    rows = pd.DataFrame(
        {
            "g": pd.Categorical(["r", "p", "q"], categories=["r", "q", "p"]),  # other order
            "sex": ["m", "f", "m"],
            "k": [2, 1, 2],
        }
    )
    new = design.evaluate(rows)
    np.testing.assert_array_equal(new.groups[0].index, [5, 0, 3])
    np.testing.assert_array_equal(new.groups[1].index, [1, 0, 1])


def test_evaluate_missing_column() -> None:
    design = build_design(_spec("y ~ 1 + sex + (1 | g)"), _df())
    with pytest.raises(DesignError, match=r"column\(s\) 'g' used by the model are missing"):
        design.evaluate(pd.DataFrame({"sex": ["m"]}))


# -- input errors ------------------------------------------------------------------------------
def test_formula_naming_unknown_column() -> None:
    with pytest.raises(DesignError, match=r"names column\(s\) 'income' that the data lacks"):
        build_design(_spec("y ~ 1 + sex + income"), _df())


def test_outcome_with_one_observed_level() -> None:
    df = _df().assign(y=["a"] * 10 + ["dk", "dk"])
    spec = _spec("y ~ 1 + sex", family="bernoulli", levels=("a", "b"), missing=("dk",))
    with pytest.raises(DesignError, match=r"only one observed level \('a'\)"):
        build_design(spec, df)


def test_outcome_level_nobody_gave() -> None:
    spec = _spec("y ~ 1 + sex", levels=("a", "b", "c", "d"))
    with pytest.raises(DesignError, match=r"level\(s\) 'd' are in the spec's levels but no"):
        build_design(spec, _df())


def test_outcome_value_outside_levels_and_missing() -> None:
    df = _df().assign(y=["zz", *list("bcabcaabbcc")])
    with pytest.raises(DesignError, match=r"has values 'zz' that are neither"):
        build_design(_spec("y ~ 1 + sex"), df)


def test_empty_outcome() -> None:
    df = _df().assign(y=[None, *list("bcabcaabbcc")])
    with pytest.raises(DesignError, match=r"outcome 'y' is empty in 1 rows"):
        build_design(_spec("y ~ 1 + sex"), df)


def test_grouping_factor_with_one_level() -> None:
    df = _df().assign(g="p")
    with pytest.raises(DesignError, match=r"grouping factor 'g' has one level \('p'\)"):
        build_design(_spec("y ~ 1 + sex + (1 | g)"), df)


def test_fixed_effect_with_one_level() -> None:
    df = _df().assign(sex="m")
    with pytest.raises(DesignError, match=r"predictor 'sex' has one observed level"):
        build_design(_spec("y ~ 1 + sex"), df)


def test_empty_predictor() -> None:
    df = _df()
    df.loc[3, "sex"] = None
    with pytest.raises(DesignError, match=r"predictor 'sex' is empty in rows 3"):
        build_design(_spec("y ~ 1 + sex"), df)


def test_not_a_table() -> None:
    with pytest.raises(DesignError, match="expected a Survey or a pandas DataFrame, got list"):
        build_design(_spec("y ~ 1 + sex"), [1, 2, 3])


# -- formula semantics as R's model.matrix ------------------------------------------------
def _factors() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 240
    return pd.DataFrame(
        {
            "y": rng.choice(["no", "yes"], n),
            "sex": np.tile(["f", "m"], n // 2),
            "age": np.repeat(["a", "b", "c"], n // 3),
            "x": rng.normal(size=n),
            "g": rng.choice(["g1", "g2", "g3", "g4"], n),
        }
    )


# R's column names (factor levels f, m and a, b, c; contr.treatment) beside ours:
# R writes "sexm", opinionmap "sex[m]"; "(Intercept)" is the Intercept, not a column
R_COLUMNS = [
    ("y ~ 1 + sex", ["sexm"]),
    ("y ~ 0 + sex", ["sexf", "sexm"]),
    ("y ~ 0 + sex + age", ["sexf", "sexm", "ageb", "agec"]),
    ("y ~ 0 + age + sex", ["agea", "ageb", "agec", "sexm"]),
    ("y ~ 1 + sex + age", ["sexm", "ageb", "agec"]),
    ("y ~ 1 + sex * age", ["sexm", "ageb", "agec", "sexm:ageb", "sexm:agec"]),
    ("y ~ 1 + sex + sex:age", ["sexm", "sexf:ageb", "sexm:ageb", "sexf:agec", "sexm:agec"]),
    ("y ~ 1 + age:sex + sex", ["sexm", "ageb:sexf", "agec:sexf", "ageb:sexm", "agec:sexm"]),
    (
        "y ~ 0 + sex:age",
        ["sexf:agea", "sexm:agea", "sexf:ageb", "sexm:ageb", "sexf:agec", "sexm:agec"],
    ),
    ("y ~ 1 + x + sex:x", ["x", "sexm:x"]),
    ("y ~ 1 + sex:x", ["sexf:x", "sexm:x"]),
    ("y ~ 0 + x + sex", ["x", "sexf", "sexm"]),
    ("y ~ 1 + sex + x:age", ["sexm", "x:agea", "x:ageb", "x:agec"]),
    ("y ~ 0 + sex + (1 | g)", ["sexf", "sexm"]),
]


def _r_name(name: str) -> str:
    """opinionmap's column label written as R writes it: sex[m]:x -> sexm:x."""
    return name.replace("[", "").replace("]", "")


@pytest.mark.parametrize(("formula", "expected"), R_COLUMNS)
def test_columns_are_r_model_matrix_columns(formula: str, expected: list[str]) -> None:
    spec = ModelSpec(formula=formula, family="bernoulli", levels=("no", "yes"))
    design = build_design(spec, _factors())
    assert [_r_name(n) for n in design.coef_names] == expected
    # the coded values are the dummies and products the names say
    df = _factors()
    for j, coef in enumerate(design.coefs):
        column = np.ones(len(df))
        for variable, level in coef.parts:
            column = column * (df[variable] == level if level is not None else df[variable])
        np.testing.assert_array_equal(design.X[design.respondent_cell, j], column)


@pytest.mark.parametrize(
    ("formula", "family", "message"),
    [
        # R codes both factors by all their levels: with the intercept, 7 collinear columns
        ("y ~ 1 + sex:age", "bernoulli", r"\('sex\[f\]:age\[a\]', .* collinear whatever the data"),
        ("y ~ 0 + (1 | g)", "bernoulli", "nothing carries the overall level"),
        ("y ~ 0 + x + (1 | g)", "bernoulli", "nothing carries the overall level"),
    ],
)
def test_formulas_that_cannot_be_estimated_are_refused(
    formula: str, family: str, message: str
) -> None:
    spec = ModelSpec(formula=formula, family=family, levels=("no", "yes"))
    with pytest.raises(DesignError, match=message):
        build_design(spec, _factors())


def test_ordinal_cutpoints_carry_the_level_so_factors_use_contrasts() -> None:
    df = _factors().assign(y=np.resize(["lo", "mid", "hi"], 240))
    spec = ModelSpec(formula="y ~ 0 + sex + (1 | g)", family="ordinal", levels=("lo", "mid", "hi"))
    assert build_design(spec, df).coef_names == ("sex[m]",)


def test_the_outcome_is_not_its_own_predictor() -> None:
    with pytest.raises(om.SpecError, match="the outcome 'y' is also a predictor"):
        ModelSpec(formula="y ~ 1 + sex + y", family="bernoulli", levels=("no", "yes"))
    with pytest.raises(om.SpecError, match="the outcome 'y' is also a predictor"):
        ModelSpec(formula="y ~ 1 + (1 | y)", family="bernoulli", levels=("no", "yes"))
