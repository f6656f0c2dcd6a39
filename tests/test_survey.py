"""Surveys: the four formats, validation errors that name file, column and values, accessors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opinionmap.codebook import Codebook
from opinionmap.errors import CodebookError, SurveyError
from opinionmap.survey import Survey, read_survey


def _csv(tmp_path: Path, df: pd.DataFrame, name: str = "survey.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(sort=False).items()}


# -- reading and types ----------------------------------------------------------------
def test_csv_with_codebook_beside_it(
    tmp_path: Path, survey_df: pd.DataFrame, codebook_path: Path
) -> None:
    path = _csv(tmp_path, survey_df)  # survey.csv beside survey.codebook.toml
    survey = read_survey(path)
    assert survey.source == path
    assert survey.codebook.source == codebook_path
    assert survey.n_respondents == 8
    assert survey.outcomes == ("presence", "trust")
    assert survey.predictors == ("sex", "age")
    assert (survey.area, survey.weight, survey.id) == ("region", "weight", "respondent_id")
    data = survey.data
    assert data["respondent_id"].tolist()[:2] == ["001", "002"]  # leading zeros survive
    presence = data["presence"].cat
    assert presence.ordered
    assert list(presence.categories) == ["more", "same", "less", "dont_know"]
    assert not data["region"].cat.ordered
    assert list(data["region"].cat.categories) == ["KZ-AKM", "KZ-AST", "KZ-ALA"]
    assert data["age"].dtype == np.float64 and data["age"].iloc[0] == 23.0
    assert data["weight"].dtype == np.float64
    assert data["note"].tolist() == list("abcdefgh")  # undeclared: untouched


def test_codebook_as_object_path_or_roles(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook, codebook_path: Path
) -> None:
    path = _csv(tmp_path, survey_df, "elsewhere.csv")
    by_object = read_survey(path, codebook)
    by_path = read_survey(path, str(codebook_path))
    by_roles = read_survey(
        path,
        outcomes={"presence": ["more", "same", "less"]},
        predictors=["sex"],
        area="region",
        missing=["dont_know"],
    )
    pd.testing.assert_frame_equal(by_object.data, by_path.data)
    assert by_roles.codebook["region"].levels == ("KZ-AKM", "KZ-ALA", "KZ-AST")  # inferred
    assert by_roles.weight is None
    np.testing.assert_array_equal(by_roles.weights(), np.ones(8))


def test_format_argument_overrides_the_suffix(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    path = _csv(tmp_path, survey_df, "export.txt")
    assert read_survey(path, codebook, format="csv").n_respondents == 8


def test_csv_round_trip_through_to_file(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    out = survey.to_file(tmp_path / "out" / "copy.csv", write_codebook=True)
    assert (tmp_path / "out" / "copy.codebook.toml").is_file()
    again = read_survey(out)
    pd.testing.assert_frame_equal(again.data, survey.data)
    assert again.codebook == survey.codebook


def test_parquet_round_trip_through_to_file(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    out = survey.to_file(tmp_path / "copy.parquet")
    again = read_survey(out, codebook)
    pd.testing.assert_frame_equal(again.data, survey.data)


def test_parquet_integer_codes_are_compared_as_labels(tmp_path: Path) -> None:
    path = tmp_path / "codes.parquet"
    pd.DataFrame({"q": [1, 2, 9, 1], "band": [3.0, 1.0, 2.0, 1.0]}).to_parquet(path)
    survey = read_survey(path, outcomes={"q": ["1", "2"]}, predictors=["band"], missing=["9"])
    assert _counts(survey.responses("q")["q"]) == {"1": 2, "2": 1}
    assert survey.levels("band") == ("1", "2", "3")


def test_to_file_rejects_other_suffixes(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    with pytest.raises(SurveyError, match=r"copy\.sav: cannot write suffix '\.sav'.*'\.csv'"):
        survey.to_file("copy.sav")


def _labelled_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pid": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "region": [2.0, 1.0, 3.0, 2.0, 1.0, 2.0],
            "q": [1.0, 3.0, 98.0, 1.0, 2.0, 98.0],
            "w": [1.0, 2.0, 1.0, 0.5, 1.5, 1.0],
        }
    )


_REGION_LABELS = {2: "KZ-AST", 1: "KZ-AKM", 3: "KZ-ALA"}  # declared out of numeric order
_Q_LABELS = {1: "more", 2: "same", 3: "less", 98: "dont_know"}


def _labelled_codebook() -> Codebook:
    return Codebook.from_roles(
        outcomes={"q": ["more", "same", "less"]},
        area="region",
        weight="w",
        id="pid",
        missing=["dont_know"],
    )


def test_spss_labels_order_and_user_missing(tmp_path: Path) -> None:
    path = tmp_path / "survey.sav"
    pyreadstat.write_sav(
        _labelled_frame(),
        path,
        variable_value_labels={"region": _REGION_LABELS, "q": _Q_LABELS},
        missing_ranges={"q": [98]},
    )
    survey = read_survey(path, _labelled_codebook())
    # categories in the order the file declares its labels, not sorted
    assert list(survey.data["region"].cat.categories) == ["KZ-AST", "KZ-AKM", "KZ-ALA"]
    assert survey.levels("region") == ("KZ-AST", "KZ-AKM", "KZ-ALA")
    # 98 is SPSS user-missing; it survives as its label and the codebook calls it missing
    assert _counts(survey.data["q"]) == {"more": 2, "same": 1, "less": 1, "dont_know": 2}
    assert _counts(survey.responses("q")["q"]) == {"more": 2, "same": 1, "less": 1}
    assert survey.data["w"].tolist() == [1.0, 2.0, 1.0, 0.5, 1.5, 1.0]  # numbers, not labels


def test_stata_labels_order_and_missing_codes(tmp_path: Path) -> None:
    path = tmp_path / "survey.dta"
    pyreadstat.write_dta(
        _labelled_frame(),
        path,
        variable_value_labels={"region": {1: "KZ-AKM", 2: "KZ-AST", 3: "KZ-ALA"}, "q": _Q_LABELS},
    )
    survey = read_survey(path, _labelled_codebook())
    assert list(survey.data["region"].cat.categories) == ["KZ-AKM", "KZ-AST", "KZ-ALA"]
    assert survey.data["region"].tolist()[:2] == ["KZ-AST", "KZ-AKM"]
    assert _counts(survey.data["q"]) == {"more": 2, "same": 1, "less": 1, "dont_know": 2}
    assert survey.describe().set_index("category").loc["dont_know", "n"] == 2


def test_outcome_names_are_enough_in_spss(tmp_path: Path) -> None:
    """Levels in the file's label order; the user-missing code, whatever its label, missing."""
    path = tmp_path / "survey.sav"
    labels = {1: "more", 2: "same", 3: "less", 98: "unsure"}
    pyreadstat.write_sav(
        _labelled_frame(),
        path,
        variable_value_labels={"region": _REGION_LABELS, "q": labels},
        missing_ranges={"q": [98]},
    )
    survey = read_survey(path, outcomes=["q"], area="region", weight="w", id="pid")
    assert survey.codebook["q"].levels == ("more", "same", "less")
    assert survey.codebook["q"].missing == ("unsure",)
    assert _counts(survey.responses("q")["q"]) == {"more": 2, "same": 1, "less": 1}


def test_stata_extended_missing_values_are_missing_codes(tmp_path: Path) -> None:
    """.a-.z: by their value label where there is one, else as Stata writes them (".b")."""
    path = tmp_path / "survey.dta"
    frame = pd.DataFrame({
        "q": [1.0, 2.0, "a", 1.0, "b", 3.0, 2.0, "a"],
        "region": ["A", "B", "A", "B", "A", "B", "A", "B"]})  # fmt: skip
    pyreadstat.write_dta(
        frame,
        path,
        variable_value_labels={"q": {1: "more", 2: "same", 3: "less", "a": "Refused"}},
        missing_user_values={"q": ["a", "b"]},
    )
    survey = read_survey(path, outcomes=["q"], area="region")
    assert survey.codebook["q"].levels == ("more", "same", "less")
    assert survey.codebook["q"].missing == ("Refused", ".b")
    assert _counts(survey.data["q"]) == {"more": 2, "same": 2, "less": 1, "Refused": 2, ".b": 1}
    assert _counts(survey.responses("q")["q"]) == {"more": 2, "same": 2, "less": 1}


def test_outcome_names_are_enough_in_csv(tmp_path: Path) -> None:
    """Don't-know-like labels and blank cells become missing codes; the rest are the levels."""
    path = tmp_path / "survey.csv"
    rows = ["q,sex,region", "yes,f,A", "no,m,A", "Don't know,f,B", ",m,B", "yes,m,B",
            "REFUSED,f,A", "no,f,B"]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    survey = read_survey(path, outcomes="q", predictors=["sex"], area="region")
    assert survey.codebook["q"].levels == ("no", "yes")
    assert survey.codebook["q"].missing == ("Don't know", "REFUSED", "no_answer")
    assert survey.data["q"].tolist()[3] == "no_answer"
    assert _counts(survey.responses("q")["q"]) == {"yes": 2, "no": 2}
    with pytest.raises(SurveyError, match=r"outcome 'x' is not a column of the data"):
        read_survey(path, outcomes=["x"], area="region")
    path.write_text("q,region\nyes,A\nDon't know,B\n")
    with pytest.raises(SurveyError, match=r"'q' has fewer than two answers.*Don't know"):
        read_survey(path, outcomes=["q"], area="region")
    with pytest.raises(CodebookError, match=r"names the outcomes without their levels"):
        Codebook.from_roles(outcomes=["q"])  # type: ignore[arg-type]


def test_unlabelled_spss_codes_must_be_declared(tmp_path: Path) -> None:
    path = tmp_path / "survey.sav"
    frame = _labelled_frame()
    frame.loc[0, "q"] = 7.0  # a code with no value label
    pyreadstat.write_sav(frame, path, variable_value_labels={"q": _Q_LABELS})
    with pytest.raises(SurveyError, match=r"survey\.sav: column 'q' has values not declared.*'7'"):
        read_survey(path, _labelled_codebook())


# -- file-level errors -----------------------------------------------------------------
def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "survey.xlsx"
    path.write_text("x")
    with pytest.raises(SurveyError, match=r"survey\.xlsx: .*suffix '\.xlsx'.*'\.csv'.*'\.dta'"):
        read_survey(path, outcomes={"q": ["a", "b"]})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SurveyError, match=r"nothere\.csv: survey file not found"):
        read_survey(tmp_path / "nothere.csv", outcomes={"q": ["a", "b"]})


def test_no_codebook_says_how_to_give_one(tmp_path: Path, survey_df: pd.DataFrame) -> None:
    path = _csv(tmp_path, survey_df, "lonely.csv")
    with pytest.raises(SurveyError, match=r"lonely\.csv: a codebook is needed") as info:
        read_survey(path)
    message = str(info.value)
    assert "lonely.codebook.toml" in message and "outcomes=" in message


def test_codebook_and_roles_together_is_an_error(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    path = _csv(tmp_path, survey_df)
    with pytest.raises(SurveyError, match="either a codebook or roles"):
        read_survey(path, codebook, area="region")
    with pytest.raises(TypeError, match="'areas'"):
        read_survey(path, areas="region")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.sav"
    path.write_bytes(b"not an spss file")
    with pytest.raises(SurveyError, match=r"broken\.sav: cannot read as SPSS"):
        read_survey(path, outcomes={"q": ["a", "b"]})


# -- validation errors -----------------------------------------------------------------
def _read_bad(tmp_path: Path, df: pd.DataFrame, codebook: Codebook) -> Survey:
    return read_survey(_csv(tmp_path, df, "bad.csv"), codebook)


def test_absent_columns_listed_with_those_present(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    df = survey_df.drop(columns=["sex", "weight"])
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: column\(s\) 'sex', 'weight' declared in the codebook .* are not in "
        r"the data; columns present: 'respondent_id', 'region'",
    ):
        _read_bad(tmp_path, df, codebook)


def test_undeclared_predictor_values(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    df = survey_df.assign(sex=["M", "female", "F", "male", "female", "male", "M", "female"])
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: column 'sex' has values not declared in the codebook: 'M', 'F' "
        r"\(declared levels: 'male', 'female'\)\. In the codebook, add them to its 'levels'",
    ):
        _read_bad(tmp_path, df, codebook)


def test_undeclared_outcome_values_suggest_levels_or_missing(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    df = survey_df.assign(presence=survey_df["presence"].replace({"dont_know": "refused"}))
    with pytest.raises(
        SurveyError,
        match=r"column 'presence' has values not declared in the codebook: 'refused' "
        r"\(declared levels: 'more', 'same', 'less'; missing codes: 'dont_know'\)\. "
        r"In the codebook, add them to its 'levels' or 'missing'",
    ):
        _read_bad(tmp_path, df, codebook)


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        pytest.param(
            ["1", "heavy", "1", "1", "n/a", "1", "1", "1"],
            r"weight column 'weight' should be numeric but holds 'heavy', 'n/a'",
            id="non-numeric",
        ),
        pytest.param(
            ["1", "-2", "1", "1", "1", "-0.5", "1", "1"],
            r"weight column 'weight' has negative weights -2\.0, -0\.5 at respondent_id "
            r"'002', '006'",
            id="negative",
        ),
        pytest.param(
            ["1", "", "1", "1", "1", "1", "1", "1"],
            r"weight column 'weight' has blank or infinite weights at respondent_id '002'",
            id="blank",
        ),
        pytest.param(
            ["1", "1", "inf", "1", "1", "1", "1", "1"],
            r"weight column 'weight' has blank or infinite weights at respondent_id '003'",
            id="infinite",
        ),
        pytest.param(["0"] * 8, r"weight column 'weight' sums to zero", id="zero-sum"),
    ],
)
def test_bad_weights(
    tmp_path: Path,
    survey_df: pd.DataFrame,
    codebook: Codebook,
    weights: list[str],
    pattern: str,
) -> None:
    with pytest.raises(SurveyError, match=r"bad\.csv: " + pattern):
        _read_bad(tmp_path, survey_df.assign(weight=weights), codebook)


def test_empty_survey(tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook) -> None:
    with pytest.raises(SurveyError, match=r"bad\.csv: the survey has no rows"):
        _read_bad(tmp_path, survey_df.iloc[:0], codebook)


def test_empty_file(tmp_path: Path, codebook: Codebook) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("")
    with pytest.raises(SurveyError, match=r"blank\.csv: the file is empty"):
        read_survey(path, codebook)


def test_duplicated_ids_with_counts(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    ids = ["001", "002", "002", "004", "007", "007", "007", "008"]
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: id column 'respondent_id' has 2 duplicated id\(s\): "
        r"'002' \(2 rows\), '007' \(3 rows\)",
    ):
        _read_bad(tmp_path, survey_df.assign(respondent_id=ids), codebook)


def test_outcome_entirely_blank(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    with pytest.raises(SurveyError, match=r"bad\.csv: outcome column 'trust' is empty"):
        _read_bad(tmp_path, survey_df.assign(trust=""), codebook)


def test_outcome_entirely_missing_codes(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    with pytest.raises(SurveyError, match=r"'trust' has no substantive answers.*'refused'"):
        _read_bad(tmp_path, survey_df.assign(trust="refused"), codebook)


def test_blank_outcome_cells_must_be_coded(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    presence = survey_df["presence"].tolist()
    presence[4] = ""
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: outcome column 'presence' has 1 blank cell\(s\) at respondent_id "
        r"'005'; code them explicitly \(e\.g\. as 'dont_know'\) and list that code under "
        r"'missing'",
    ):
        _read_bad(tmp_path, survey_df.assign(presence=presence), codebook)


def test_blank_predictor_cells_name_the_rows(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    region = survey_df["region"].tolist()
    region[1] = region[6] = ""
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: area column 'region' has 2 blank cell\(s\) at respondent_id "
        r"'002', '007'",
    ):
        _read_bad(tmp_path, survey_df.assign(region=region), codebook)


def test_blank_cells_without_an_id_name_row_positions() -> None:
    cb = Codebook.from_roles(outcomes={"q": ["a", "b"]}, predictors=["g"])
    df = pd.DataFrame({"q": ["a", "b", "a"], "g": ["x", None, "y"]})
    with pytest.raises(
        SurveyError, match=r"<DataFrame>: predictor column 'g' .* at rows 1 \(0-based\)"
    ):
        Survey.from_dataframe(df, cb)


def test_non_numeric_numeric_predictor(
    tmp_path: Path, survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    age = survey_df["age"].tolist()
    age[2] = "forty"
    with pytest.raises(
        SurveyError,
        match=r"bad\.csv: predictor column 'age' should be numeric but holds 'forty'.*"
        r"declare the column as categorical",
    ):
        _read_bad(tmp_path, survey_df.assign(age=age), codebook)


def test_an_outcome_with_one_observed_level_is_read(
    survey_df: pd.DataFrame, codebook: Codebook
) -> None:
    survey = Survey.from_dataframe(survey_df.assign(presence="more"), codebook)
    assert _counts(survey.responses("presence")["presence"]) == {
        "more": 8,
        "same": 0,
        "less": 0,
    }


# -- accessors -------------------------------------------------------------------------
def test_responses_under_drop_and_keep(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    dropped = survey.responses("presence")  # codebook: drop
    assert len(dropped) == 6
    assert list(dropped["presence"].cat.categories) == ["more", "same", "less"]
    assert _counts(dropped["presence"]) == {"more": 3, "same": 2, "less": 1}
    kept = survey.responses("presence", missing_policy="keep")
    assert len(kept) == 8
    assert _counts(kept["presence"]) == {"more": 3, "same": 2, "less": 1, "dont_know": 2}
    trust = survey.responses("trust")  # codebook: keep
    assert list(trust["trust"].cat.categories) == ["yes", "no", "refused"]
    assert _counts(trust["trust"]) == {"yes": 3, "no": 3, "refused": 2}
    assert _counts(survey.responses("trust", "drop")["trust"]) == {"yes": 3, "no": 3}
    assert dropped.index.tolist() == [0, 1, 3, 4, 5, 7]  # rows trace back to the data


def test_responses_rejects_non_outcomes(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    with pytest.raises(
        SurveyError, match=r"'sex' is not an outcome; outcomes: 'presence', 'trust'"
    ):
        survey.responses("sex")
    with pytest.raises(SurveyError, match=r"unknown missing_policy 'ignore'"):
        survey.responses("presence", missing_policy="ignore")


def test_accessors_return_copies(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    before = survey.data.copy()
    rows = survey.responses("presence", "keep")
    rows.loc[0, "age"] = -1.0
    weights = survey.weights()
    weights[:] = 0.0
    survey_df.loc[0, "age"] = "99"  # the input frame is copied too
    pd.testing.assert_frame_equal(survey.data, before)
    assert survey.weights()[0] == 1.0


def test_levels(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    survey = Survey.from_dataframe(survey_df, codebook)
    assert survey.levels("presence") == ("more", "same", "less")
    assert survey.levels("presence", include_missing=True) == (
        "more",
        "same",
        "less",
        "dont_know",
    )
    with pytest.raises(SurveyError, match=r"'age' is not a categorical variable"):
        survey.levels("age")


def test_inferred_numeric_looking_levels_sort_as_numbers() -> None:
    cb = Codebook.from_roles(outcomes={"q": ["a", "b"]}, predictors=["band"])
    df = pd.DataFrame({"q": ["a", "b", "a"], "band": ["10", "2", "01"]})
    assert Survey.from_dataframe(df, cb).levels("band") == ("01", "2", "10")


def test_describe(survey_df: pd.DataFrame, codebook: Codebook) -> None:
    table = Survey.from_dataframe(survey_df, codebook).describe()
    presence = table[table["outcome"] == "presence"].set_index("category")
    assert presence["n"].to_dict() == {"more": 3, "same": 2, "less": 1, "dont_know": 2}
    assert presence.loc["more", "share_valid"] == pytest.approx(3 / 6)
    assert presence.loc["dont_know", "share"] == pytest.approx(2 / 8)
    assert np.isnan(presence.loc["dont_know", "share_valid"])
    weights = survey_df["weight"].astype(float)
    more = survey_df["presence"] == "more"
    valid = survey_df["presence"] != "dont_know"
    assert presence.loc["more", "weighted_share_valid"] == pytest.approx(
        weights[more].sum() / weights[valid].sum()
    )
    valid_shares = table[~table["is_missing"]].groupby("outcome")["share_valid"].sum()
    np.testing.assert_allclose(valid_shares.to_numpy(), 1.0)


# -- properties ------------------------------------------------------------------------
_LABEL = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_categories_round_trip_through_csv(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    levels = data.draw(st.lists(_LABEL, min_size=2, max_size=5, unique=True), label="levels")
    values = data.draw(st.lists(st.sampled_from(levels), min_size=1, max_size=30), label="rows")
    codebook = Codebook.from_roles(outcomes={"q": levels[:-1]}, missing=levels[-1:])
    df = pd.DataFrame({"q": values})
    if set(values) == {levels[-1]}:
        return  # every answer coded missing: an error, tested above
    survey = Survey.from_dataframe(df, codebook)
    path = survey.to_file(tmp_path_factory.mktemp("prop") / "s.csv")
    again = read_survey(path, codebook)
    assert _counts(again.data["q"]) == _counts(survey.data["q"])
    assert _counts(again.data["q"]) == {lv: values.count(lv) for lv in levels}
    assert tuple(again.data["q"].cat.categories) == tuple(levels)


# -- the sampling design ----------------------------------------------------------------------
_DESIGN_TOML = """
[variables.district]
role = "strata"

[variables.village]
role = "cluster"

[variables.villages]
role = "fpc"
"""


def _design_df(survey_df: pd.DataFrame) -> pd.DataFrame:
    """``survey_df`` with strata, clusters and the fpc as text, as a CSV gives them."""
    return survey_df.assign(
        district=["n", "n", "n", "s", "s", "s", "s", "s"],
        village=["01", "1", "1", "01", "02", "02", "03", "03"],
        villages=["20", "20", "20", "9", "9", "9", "9", "9"],
    )


def test_design_columns_are_typed_and_exposed(
    tmp_path: Path, survey_df: pd.DataFrame, codebook_path: Path
) -> None:
    codebook_path.write_text(codebook_path.read_text() + _DESIGN_TOML)
    path = _csv(tmp_path, _design_df(survey_df))
    survey = read_survey(path, codebook_path)
    assert (survey.strata, survey.cluster, survey.fpc) == ("district", "village", "villages")
    data = survey.data
    assert data["village"].tolist()[:3] == ["01", "1", "1"]  # labels, read as text
    assert isinstance(data["district"].dtype, pd.CategoricalDtype)
    assert data["villages"].dtype == np.float64
    assert survey.levels("village") == ("01", "1", "02", "03")  # numeric order, "01" != "1"
    assert survey.codebook["village"].levels is None  # labels are never written back
    by_roles = read_survey(
        path,
        outcomes={"presence": ["more", "same", "less"]},
        missing=["dont_know"],
        strata="district",
        fpc="villages",
    )
    assert (by_roles.strata, by_roles.cluster, by_roles.fpc) == ("district", None, "villages")


@pytest.mark.parametrize(
    ("column", "values", "pattern"),
    [
        pytest.param(
            "district",
            ["n", "n", "", "s", "s", "s", "s", "s"],
            r"strata column 'district' has 1 blank cell\(s\) at respondent_id '003'; every "
            r"respondent needs a strata label",
            id="blank-stratum",
        ),
        pytest.param(
            "village",
            ["01", "1", "1", "01", "02", "", "03", ""],
            r"cluster column 'village' has 2 blank cell\(s\) at respondent_id '006', '008'",
            id="blank-cluster",
        ),
        pytest.param(
            "villages",
            ["20", "20", "20", "9", "nine", "9", "9", "9"],
            r"fpc column 'villages' should be numeric but holds 'nine'",
            id="non-numeric-fpc",
        ),
        pytest.param(
            "villages",
            ["20", "20", "20", "9", "9", "", "9", "9"],
            r"fpc column 'villages' has blank or infinite values at respondent_id '006'",
            id="blank-fpc",
        ),
        pytest.param(
            "villages",
            ["0", "0", "0", "9", "9", "9", "9", "9"],
            r"fpc column 'villages' has values <= 0 \(0\.0\) at respondent_id '001', '002', "
            r"'003'; an fpc is a population count of PSUs \(> 1\) or a sampling fraction",
            id="zero-fpc",
        ),
        pytest.param(
            "villages",
            ["20", "20", "21", "9", "9", "9", "9", "9"],
            r"fpc column 'villages' varies within 1 stratum\(s\) \('n': 20\.0, 21\.0\); the fpc "
            r"describes a stratum",
            id="varying-fpc",
        ),
        pytest.param(
            "villages",
            ["20", "20", "20", "2", "2", "2", "2", "2"],
            r"fpc column 'villages' counts fewer population PSUs than the sample holds in 1 "
            r"stratum\(s\) \('s': fpc 2 < 3 sampled PSUs\)",
            id="fpc-below-sampled-psus",
        ),
        pytest.param(
            "villages",
            ["0.5", "0.5", "0.5", "9", "9", "9", "9", "9"],
            r"fpc column 'villages' mixes sampling fractions \(values < 1, e\.g\. 0\.5\) with "
            r"population counts \(values > 1, e\.g\. 9\)",
            id="fractions-and-counts",
        ),
    ],
)
def test_bad_design_columns(
    tmp_path: Path,
    survey_df: pd.DataFrame,
    codebook: Codebook,
    column: str,
    values: list[str],
    pattern: str,
) -> None:
    design = Codebook.from_dict(
        {
            "variables": {
                **codebook.to_dict()["variables"],
                "district": {"role": "strata"},
                "village": {"role": "cluster"},
                "villages": {"role": "fpc"},
            }
        }
    )
    df = _design_df(survey_df).assign(**{column: values})
    with pytest.raises(SurveyError, match=r"bad\.csv: " + pattern):
        _read_bad(tmp_path, df, design)


def test_sampling_fractions_are_an_fpc(survey_df: pd.DataFrame) -> None:
    cb = Codebook.from_roles(outcomes={"presence": ["more", "same", "less", "dont_know"]},
                             strata="district", fpc="villages")  # fmt: skip
    df = _design_df(survey_df).assign(villages=[0.5, 0.5, 0.5, 1, 1, 1, 1, 1])
    assert Survey.from_dataframe(df, cb).data["villages"].tolist()[-1] == 1.0
