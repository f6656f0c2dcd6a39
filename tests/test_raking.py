"""Raking: margins matched to 1e-6, inconsistent margins rejected, KL-closest solution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opinionmap.errors import RakingError
from opinionmap.raking import rake


def _joint(rng: np.random.Generator) -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [
            ["A", "B", "C", "D"],
            ["male", "female"],
            ["18-29", "30-44", "45-59", "60+"],
            ["kazakh", "russian", "other"],
            ["urban", "rural"],
        ],
        names=["region", "sex", "age", "ethnicity", "settlement"],
    )
    return pd.DataFrame(
        {"population": rng.gamma(1.5, 1000.0, len(index))}, index=index
    ).reset_index()


def _margin(joint: pd.DataFrame, dims: list[str]) -> pd.DataFrame:
    return joint.groupby(dims, as_index=False, observed=True)["population"].sum()


def _max_rel_error(result: pd.DataFrame, margin: pd.DataFrame) -> float:
    dims = [c for c in margin.columns if c != "population"]
    got = result.groupby(dims, observed=True)["population"].sum()
    want = margin.set_index(dims)["population"]
    got.index = (
        got.index.set_levels([lv.astype(str) for lv in got.index.levels])
        if isinstance(got.index, pd.MultiIndex)
        else got.index.astype(str)
    )
    return float(((got.reindex(want.index) - want).abs() / want).max())


def test_matches_every_margin_to_1e6_relative() -> None:
    joint = _joint(np.random.default_rng(7))
    margins = [
        _margin(joint, ["region", "sex", "age"]),
        _margin(joint, ["region", "ethnicity"]),
        _margin(joint, ["region", "settlement"]),
    ]
    result = rake(margins)
    assert len(result) == len(joint)
    for margin in margins:
        assert _max_rel_error(result, margin) < 1e-6
    assert result.attrs["raking"].max_relative_error < 1e-10
    assert result["population"].sum() == pytest.approx(joint["population"].sum(), rel=1e-12)


def test_two_independent_margins_give_their_product() -> None:
    # with a uniform seed, raking two one-way margins gives the independence table
    sex = pd.DataFrame({"sex": ["female", "male"], "population": [60.0, 40.0]})
    age = pd.DataFrame({"age": ["young", "old"], "population": [30.0, 70.0]})
    result = rake([sex, age]).set_index(["sex", "age"])["population"]
    assert result[("female", "young")] == pytest.approx(18.0)
    assert result[("male", "old")] == pytest.approx(28.0)


def test_seed_association_is_kept_where_margins_allow() -> None:
    # the seed's odds ratio survives raking (IPF preserves cross-product ratios)
    seed = pd.DataFrame(
        {
            "sex": ["f", "f", "m", "m"],
            "age": ["y", "o", "y", "o"],
            "population": [4.0, 1.0, 1.0, 4.0],
        }
    )
    sex = pd.DataFrame({"sex": ["f", "m"], "population": [50.0, 150.0]})
    age = pd.DataFrame({"age": ["y", "o"], "population": [120.0, 80.0]})
    out = rake([sex, age], seed=seed).set_index(["sex", "age"])["population"]
    odds_ratio = out[("f", "y")] * out[("m", "o")] / (out[("f", "o")] * out[("m", "y")])
    assert odds_ratio == pytest.approx(16.0, rel=1e-8)
    assert out.groupby(level="sex").sum()["m"] == pytest.approx(150.0)


def test_margins_with_different_totals_are_rejected() -> None:
    sex = pd.DataFrame({"sex": ["f", "m"], "population": [60.0, 40.0]})
    age = pd.DataFrame({"age": ["y", "o"], "population": [30.0, 71.0]})
    with pytest.raises(RakingError, match=r"disagree on their totals.*100.*101"):
        rake([sex, age])


def test_margins_disagreeing_on_a_shared_dimension_are_rejected() -> None:
    by_sex = pd.DataFrame(
        {
            "region": ["A", "A", "B", "B"],
            "sex": ["f", "m"] * 2,
            "population": [5.0, 5.0, 10.0, 10.0],
        }
    )
    by_eth = pd.DataFrame(
        {
            "region": ["A", "A", "B", "B"],
            "ethnicity": ["k", "r"] * 2,
            "population": [6.0, 6.0, 4.0, 14.0],
        }
    )
    with pytest.raises(RakingError, match=r"shared margin over 'region'.*'A'"):
        rake([by_sex, by_eth])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (pd.DataFrame({"sex": ["f", "m"], "population": [-1.0, 101.0]}), "negative counts"),
        (pd.DataFrame({"sex": ["f", "m"], "population": ["many", 1]}), "non-numeric"),
        (pd.DataFrame({"sex": ["f", "m"], "count": [1.0, 1.0]}), "no column 'population'"),
        (pd.DataFrame({"sex": ["f", "f"], "population": [50.0, 50.0]}), "more than once"),
    ],
)
def test_bad_margin_values_are_named(bad: pd.DataFrame, message: str) -> None:
    age = pd.DataFrame({"age": ["y", "o"], "population": [50.0, 50.0]})
    with pytest.raises(RakingError, match=message):
        rake([age, bad])


def test_margin_missing_a_level_is_rejected() -> None:
    a = pd.DataFrame(
        {"region": ["A", "A", "B"], "sex": ["f", "m", "f"], "population": [1.0, 1.0, 1.0]}
    )
    with pytest.raises(RakingError, match=r"no row for cells.*'region': 'B', 'sex': 'm'"):
        rake([a])
    b = pd.DataFrame({"region": ["A", "B", "C"], "population": [1.0, 1.0, 1.0]})
    c = pd.DataFrame({"region": ["A", "B"], "population": [1.5, 1.5]})
    with pytest.raises(RakingError, match=r"lacks levels 'C'"):
        rake([b, c])


def test_non_convergence_is_reported() -> None:
    # a seed with structural zeros that no table can reconcile with the margins
    seed = pd.DataFrame(
        {
            "sex": ["f", "f", "m", "m"],
            "age": ["y", "o", "y", "o"],
            "population": [1.0, 0.0, 0.0, 1.0],
        }
    )
    sex = pd.DataFrame({"sex": ["f", "m"], "population": [70.0, 30.0]})
    age = pd.DataFrame({"age": ["y", "o"], "population": [50.0, 50.0]})
    with pytest.raises(RakingError, match="did not converge"):
        rake([sex, age], seed=seed, max_iter=50)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.5, 1e6), min_size=6, max_size=6),
    st.lists(st.floats(0.5, 1e6), min_size=3, max_size=3),
)
def test_any_consistent_pair_of_margins_is_matched(a: list[float], b: list[float]) -> None:
    regions = pd.DataFrame({"region": list("ABCDEF"), "population": a})
    total = sum(a)
    eth = pd.DataFrame(
        {"ethnicity": ["k", "r", "o"], "population": [v / sum(b) * total for v in b]}
    )
    result = rake([regions, eth])
    assert _max_rel_error(result, regions) < 1e-6
    assert _max_rel_error(result, eth) < 1e-6
    assert (result["population"] >= 0).all()
