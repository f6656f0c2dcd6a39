"""Direct estimates: hand-computed values and the equal-weights limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import opinionmap as om
from opinionmap.direct import direct_estimates
from opinionmap.errors import SurveyError


def test_hand_computed_weighted_share_and_linearised_se() -> None:
    df = pd.DataFrame(
        {
            "area": ["a", "a", "a", "b", "b"],
            "y": ["x", "z", "x", "z", "x"],
            "w": [1.0, 3.0, 1.0, 2.0, 2.0],
        }
    )
    t = direct_estimates(df, "y", by="area", weight="w").set_index(["area", "category"])
    # area a: p = (1 + 1) / 5 = 0.4. Area a is a domain of the whole weights-only design, as in
    # R: svyby(~I(y == "x"), ~area, svydesign(ids = ~1, weights = ~w, data = df), svymean).
    # Each of the n = 5 rows is a PSU; z = w (y - p) / 5 is 0.12, -0.24, 0.12 in area a and 0
    # in area b, so Var = 5/4 * (0.12^2 + 0.24^2 + 0.12^2) = 0.108, SE 0.3286. (The per-area
    # formula asserted before, 3/2 * 0.0864 = 0.1296, SE 0.36, treated area a as its own sample.)
    assert t.loc[("a", "x"), "weighted"] == pytest.approx(0.4)
    assert t.loc[("a", "x"), "weighted_se"] == pytest.approx(np.sqrt(0.108))
    assert t.loc[("a", "x"), "raw"] == pytest.approx(2 / 3)
    assert t.loc[("a", "x"), "raw_se"] == pytest.approx(np.sqrt(2 / 3 * 1 / 3 / 3))
    assert t.loc[("a", "x"), "n_respondents"] == 3
    # Kish effective n = (sum w)^2 / sum w^2 = 25 / 11
    assert t.loc[("a", "x"), "n_effective"] == pytest.approx(25 / 11)
    # shares of the categories add up to one in each area
    assert t.groupby(level="area")["weighted"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_equal_weights_give_the_binomial_se_with_n_minus_one() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"area": ["a"] * 200, "y": rng.choice(["p", "q"], 200)})
    t = direct_estimates(df, "y", by="area").set_index("category")
    p = (df["y"] == "p").mean()
    assert t.loc["p", "weighted"] == pytest.approx(p)
    assert t.loc["p", "weighted_se"] == pytest.approx(np.sqrt(p * (1 - p) / 199))


def test_survey_codebook_supplies_categories_missing_codes_and_weight() -> None:
    survey = om.read_survey(om.datasets.kazakhstan_survey_path())
    t = direct_estimates(survey, "presence_china")
    assert set(t["category"]) == {"more", "same", "less"}  # dont_know dropped, as the model does
    assert t["region"].nunique() == 17
    answered = survey.data["presence_china"].astype(str) != "dont_know"
    assert t.drop_duplicates("region")["n_respondents"].sum() == int(answered.sum())
    # the weights are used: weighted and raw shares differ somewhere
    assert not np.allclose(t["weighted"], t["raw"])


def test_missing_columns_are_named() -> None:
    df = pd.DataFrame({"area": ["a"], "y": ["x"]})
    with pytest.raises(SurveyError, match=r"column\(s\) 'region' not in the survey"):
        direct_estimates(df, "y", by="region")
    with pytest.raises(SurveyError, match=r"no weight column 'w'"):
        direct_estimates(df, "y", by="area", weight="w")
