"""Poststratification: invariants, chunking, dask, new levels, contrasts, bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from helpers import PriorFit
from opinionmap.design import DesignError, build_design
from opinionmap.errors import FrameError
from opinionmap.frame import Frame
from opinionmap.model import build_model
from opinionmap.poststratification import CoverageWarning, poststratify
from opinionmap.predict import linear_predictor, probabilities
from opinionmap.spec import ModelSpec

REGIONS = ["north", "south", "east", "west", "capital"]


def _survey(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": pd.Categorical(rng.choice(REGIONS[:4], n), categories=REGIONS),
            "sex": rng.choice(["male", "female"], n),
            "age": rng.choice(["young", "old"], n),
            "answer": rng.choice(["less", "same", "more"], n),
        }
    )


def _prior_fit(family: str, seed: int = 1) -> PriorFit:
    rng = np.random.default_rng(seed)
    df = _survey(rng)
    levels = ("less", "same", "more")
    if family == "bernoulli":
        df["answer"] = np.where(df["answer"] == "more", "yes", "no")
        levels = ("no", "yes")
    spec = ModelSpec(
        formula="answer ~ 1 + sex + (1 | age) + (1 | region)", family=family, levels=levels
    )
    design = build_design(spec, df)
    model = build_model(design)
    # the likelihood is a Potential, which prior sampling rightly ignores: we want the prior
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
        prior = pm.sample_prior_predictive(draws=60, random_seed=seed)
    posterior = prior["prior"].to_dataset()
    if "cutpoints" in posterior:  # forward sampling ignores the ordering transform
        posterior["cutpoints"] = posterior["cutpoints"].copy(
            data=np.sort(posterior["cutpoints"].values, axis=-1)
        )
    return PriorFit(design, posterior)


def _frame(rng: np.random.Generator) -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [REGIONS[:4], ["male", "female"], ["young", "old"]], names=["region", "sex", "age"]
    )
    return pd.DataFrame(
        {"population": rng.integers(1, 1000, len(index)).astype(float)}, index=index
    ).reset_index()


@pytest.fixture(scope="module", params=["categorical", "ordinal", "bernoulli"])
def prior_fit(request: pytest.FixtureRequest) -> PriorFit:
    return _prior_fit(request.param)


def test_shares_are_probabilities_in_every_draw(prior_fit: PriorFit) -> None:
    frame = _frame(np.random.default_rng(2))
    est = poststratify(prior_fit, frame, weight="population", by=["region", "sex"])
    values = est.draws.values
    assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
    np.testing.assert_allclose(est.draws.sum("category").values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(est.overall.sum("category").values, 1.0, rtol=1e-12)
    assert est.draws.dims == ("chain", "draw", "region", "sex", "category")
    assert list(est.draws["region"].values) == REGIONS[:4]


def test_one_cell_frame_equals_the_cell_probability(prior_fit: PriorFit) -> None:
    row = pd.DataFrame(
        {"region": ["south"], "sex": ["female"], "age": ["old"], "population": [7.0]}
    )
    est = poststratify(prior_fit, row, weight="population", by=[])
    design = prior_fit.design
    draws = prior_fit.draws()
    coded = design.evaluate(row)
    expected = probabilities(design, linear_predictor(draws, design, coded), draws)[:, 0, :]
    np.testing.assert_allclose(est.overall.values.reshape(expected.shape), expected, rtol=1e-12)


def test_proportional_frame_gives_identical_estimates(prior_fit: PriorFit) -> None:
    frame = _frame(np.random.default_rng(3))
    doubled = frame.assign(population=frame["population"] * 2)
    a = poststratify(prior_fit, frame, weight="population", by=["region"])
    b = poststratify(prior_fit, doubled, weight="population", by=["region"])
    np.testing.assert_allclose(a.draws.values, b.draws.values, rtol=1e-12)
    assert (b.population == 2 * a.population).all()


def test_chunked_and_unchunked_agree(prior_fit: PriorFit) -> None:
    frame = _frame(np.random.default_rng(4))
    whole = poststratify(prior_fit, frame, weight="population", by=["region", "age"])
    tiny = poststratify(
        prior_fit, frame, weight="population", by=["region", "age"], chunk_values=50
    )
    np.testing.assert_allclose(whole.draws.values, tiny.draws.values, rtol=1e-12)


def test_aggregating_a_finer_pass_equals_poststratifying_by_fewer_columns(
    prior_fit: PriorFit,
) -> None:
    frame = _frame(np.random.default_rng(7))
    # west has no population: its cells are NaN in the finer pass and drop out of the sums
    frame["population"] = frame["population"].where(
        (frame["region"] != "west") | (frame["sex"] != "male"), 0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)  # west's men: tested elsewhere
        whole = poststratify(prior_fit, frame, weight="population", by=["region", "sex", "age"])
    for by in (["region"], ["sex"], ["age", "region"], []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoverageWarning)
            direct = poststratify(prior_fit, frame, weight="population", by=by)
        got = whole.aggregate(by)
        assert got.by == direct.by == tuple(by)
        np.testing.assert_allclose(got.draws.values, direct.draws.values, rtol=1e-12)
        assert got.draws.dims == direct.draws.dims
        pd.testing.assert_series_equal(got.population, direct.population, rtol=1e-12)
        pd.testing.assert_series_equal(got.n_respondents, direct.n_respondents)
        pd.testing.assert_frame_equal(got.summary(prob=0.8), direct.summary(prob=0.8), rtol=1e-9)
    with pytest.raises(DesignError, match=r"aggregate: .*'region', 'sex', 'age'.*got 'settlement'"):
        whole.aggregate("settlement")


def test_the_reports_one_pass_by_every_group_warns_as_a_pass_by_each_would() -> None:
    from opinionmap.report import _by_each

    fit = _prior_fit("bernoulli", seed=15)
    frame = _frame(np.random.default_rng(15))
    # no old men anywhere: a gap in the frame's sex x age, none in its sexes or ages
    gap = frame.assign(
        population=frame["population"].where((frame["sex"] != "male") | (frame["age"] != "old"), 0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables = list(_by_each(fit, Frame.from_dataframe(gap), ["sex", "age"], None))  # type: ignore[arg-type]
    assert [t.by for t in tables] == [("sex",), ("age",)]
    # no one old at all: named as poststratify(by=["age"]) names it
    none_old = frame.assign(population=frame["population"].where(frame["age"] != "old", 0))
    with pytest.warns(CoverageWarning, match=r"age cell\(s\) 'old' have no population"):
        list(_by_each(fit, Frame.from_dataframe(none_old), ["sex", "age"], None))  # type: ignore[arg-type]


def test_summary_has_the_contract_columns(prior_fit: PriorFit) -> None:
    frame = _frame(np.random.default_rng(5))
    table = poststratify(prior_fit, frame, weight="population", by=["region"]).summary(prob=0.8)
    assert list(table.columns[:6]) == ["region", "category", "mean", "sd", "lower", "upper"]
    assert "n_respondents" in table.columns
    categories = set(prior_fit.design.categories)
    assert set(table["category"]) == categories  # reference / failure level included
    assert len(table) == 4 * len(categories)
    assert (table["lower"] <= table["mean"]).all() and (table["mean"] <= table["upper"]).all()
    counts = prior_fit.design.cells.assign(n=prior_fit.design.counts.sum(axis=1))
    by_region = counts.groupby("region", observed=True)["n"].sum()
    got = table.drop_duplicates("region").set_index("region")["n_respondents"]
    assert (got.reindex(by_region.index.astype(str)).to_numpy() == by_region.to_numpy()).all()


def test_dask_frame_on_a_local_cluster_matches_pandas() -> None:
    import dask.dataframe as dd
    from dask import distributed

    fit = _prior_fit("categorical", seed=7)
    frame = _frame(np.random.default_rng(6))
    expected = poststratify(fit, frame, weight="population", by=["region"])
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        got = poststratify(
            fit, dd.from_pandas(frame, npartitions=3), weight="population", by=["region"]
        )
    np.testing.assert_allclose(got.draws.values, expected.draws.values, rtol=1e-10)


def test_new_levels_error_lists_them_and_sample_draws_them() -> None:
    fit = _prior_fit("bernoulli", seed=8)
    frame = _frame(np.random.default_rng(8))
    extra = frame[frame["region"] == "north"].assign(region="islands")
    frame = pd.concat([frame, extra], ignore_index=True)
    with pytest.raises(
        DesignError, match=r"'region' has level\(s\) 'islands'.*new_levels='sample'"
    ):
        poststratify(fit, frame, weight="population", by=["region"])
    a = poststratify(
        fit, frame, weight="population", by=["region"], new_levels="sample", random_seed=1
    )
    b = poststratify(
        fit, frame, weight="population", by=["region"], new_levels="sample", random_seed=1
    )
    np.testing.assert_array_equal(a.draws.values, b.draws.values)
    islands = a.draws.sel(region="islands", category="yes").values
    north = a.draws.sel(region="north", category="yes").values
    assert np.isfinite(islands).all()
    assert not np.allclose(islands, north)  # its own effect, not a copy of a known region


def test_codebook_level_without_respondents_is_not_new() -> None:
    # 'capital' is a declared region level with no respondents: it has a fitted effect
    fit = _prior_fit("categorical", seed=9)
    frame = _frame(np.random.default_rng(9))
    capital = frame[frame["region"] == "north"].assign(region="capital")
    est = poststratify(
        fit, pd.concat([frame, capital], ignore_index=True), weight="population", by=["region"]
    )
    assert int(est.n_respondents["capital"]) == 0


@pytest.mark.parametrize(
    ("change", "error", "pattern"),
    [
        (lambda f: f.drop(columns="population"), FrameError, r"no weight column 'population'"),
        (lambda f: f.assign(population=-f["population"]), FrameError, r"negative counts"),
        (
            # one categorical variable the frame lacks is estimated (MrsP), two are not
            lambda f: f.groupby(["region"], as_index=False)["population"].sum(),
            FrameError,
            r"model uses column\(s\) .*'sex'.* that the frame lacks.*estimates one categorical",
        ),
        (
            lambda f: f.assign(sex=f["sex"].replace({"female": "F"})),
            DesignError,
            r"predictor 'sex' has level\(s\) 'F'",
        ),
        (
            lambda f: f.assign(age=f["age"].where(f.index != 3)),
            FrameError,
            r"column 'age' is empty in rows 3",
        ),
    ],
)
def test_bad_frames_are_named(change, error, pattern) -> None:  # type: ignore[no-untyped-def]
    fit = _prior_fit("bernoulli", seed=10)
    frame = change(_frame(np.random.default_rng(10)))
    with pytest.raises(error, match=pattern):
        poststratify(fit, frame, weight="population", by=["region"])


def test_by_column_absent_from_frame() -> None:
    fit = _prior_fit("bernoulli", seed=11)
    with pytest.raises(FrameError, match=r"by column\(s\) 'district' not in the frame"):
        poststratify(fit, _frame(np.random.default_rng(11)), weight="population", by=["district"])


def test_contrast_probability_matches_the_draws() -> None:
    fit = _prior_fit("categorical", seed=12)
    est = poststratify(fit, _frame(np.random.default_rng(12)), weight="population", by=["region"])
    c = est.contrast({"region": "north"}, {"region": "south"}, "less")
    north = est.draws.sel(region="north", category="less")
    south = est.draws.sel(region="south", category="less")
    assert c.prob_greater == pytest.approx(float((north > south).mean()))
    summary = c.summary(prob=0.9)
    assert summary["lower"] <= summary["mean"] <= summary["upper"]
    with pytest.raises(DesignError, match=r"category 'maybe' is not one of"):
        est.contrast({"region": "north"}, {"region": "south"}, "maybe")
    with pytest.raises(DesignError, match=r"not among the estimates' by columns"):
        est.contrast({"sex": "male"}, {"sex": "female"}, "less")


def test_frame_object_is_accepted(tmp_path: Path) -> None:
    fit = _prior_fit("ordinal", seed=13)
    frame = Frame.from_dataframe(_frame(np.random.default_rng(13)))
    est = poststratify(fit, frame, weight="population", by=["age"])
    assert list(est.draws["age"].values) == ["old", "young"] or set(est.draws["age"].values) == {
        "old",
        "young",
    }


# -- nothing silently dropped or wrong -----------------------------------------------------
def test_areas_without_population_or_missing_from_the_frame_are_reported() -> None:
    fit = _prior_fit("bernoulli", seed=13)
    frame = _frame(np.random.default_rng(13))
    empty = frame.assign(population=frame["population"].where(frame["region"] != "west", 0.0))
    with pytest.warns(CoverageWarning, match=r"region cell\(s\) 'west' have no population"):
        est = poststratify(fit, empty, weight="population", by=["region"])
    assert "west" not in set(est.summary(prob=0.9)["region"])
    without = frame[frame["region"] != "east"]
    with pytest.warns(CoverageWarning, match=r"surveyed region level\(s\) 'east' are not in"):
        poststratify(fit, without, weight="population", by=["region"])


def test_a_label_that_differs_only_by_case_or_spaces_is_not_a_new_level() -> None:
    fit = _prior_fit("bernoulli", seed=14)
    frame = _frame(np.random.default_rng(14))
    frame["region"] = frame["region"].replace({"north": " North "})
    for policy in ("error", "sample"):
        with pytest.raises(DesignError, match=r"' North ' \(did you mean 'north'\?\)"):
            poststratify(fit, frame, weight="population", by=["region"], new_levels=policy)
    frame = _frame(np.random.default_rng(14)).replace({"sex": {"female": "Female"}})
    with pytest.raises(DesignError, match=r"'Female' \(did you mean 'female'\?\)"):
        poststratify(fit, frame, weight="population", by=["region"])


def test_sampled_new_levels_are_named_on_the_estimates() -> None:
    fit = _prior_fit("bernoulli", seed=15)
    frame = _frame(np.random.default_rng(15))
    extra = frame[frame["region"] == "north"].assign(region="islands")
    est = poststratify(
        fit, pd.concat([frame, extra]), weight="population", by=["region"], new_levels="sample"
    )
    assert dict(est.new_levels) == {"region": ("islands",)}
    assert est.summary(prob=0.9).attrs["new_levels"] == {"region": ["islands"]}
    plain = poststratify(fit, frame, weight="population", by=["region"])
    assert dict(plain.new_levels) == {}


def test_estimates_say_what_they_are_shares_of() -> None:
    fit = _prior_fit("bernoulli", seed=16)
    table = poststratify(
        fit, _frame(np.random.default_rng(16)), weight="population", by=["region"]
    ).summary(prob=0.9)
    # every answer is modelled: shares of everyone; no diagnostics on a prior draw
    assert set(table["estimand"]) == {"of everyone"}
    assert table["converged"].isna().all()
    whole = poststratify(fit, _frame(np.random.default_rng(16)), weight="population", by=[])
    total = whole.summary(prob=0.9)
    assert list(total["category"]) == ["no", "yes"]
    assert total["mean"].sum() == pytest.approx(1.0)
    assert total["population"].iloc[0] == pytest.approx(
        _frame(np.random.default_rng(16))["population"].sum()
    )


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda f: f.assign(population=-f["population"]), r"rows have negative counts"),
        (lambda f: f.assign(population=f["population"].where(f.index != 2)), r"missing counts"),
        (lambda f: f.assign(population=f["population"].where(f.index != 2, np.inf)), r"infinite"),
        (lambda f: pd.concat([f, f.iloc[:1]], ignore_index=True), r"appear more than once"),
        (lambda f: f.assign(sex=f["sex"].where(f.index != 4)), r"empty cell labels"),
        (lambda f: f.assign(population=1e308), r"sums to inf"),
    ],
)
def test_a_dask_frame_gets_the_same_checks(change, pattern) -> None:  # type: ignore[no-untyped-def]
    import dask.dataframe as dd

    fit = _prior_fit("bernoulli", seed=17)
    frame = change(_frame(np.random.default_rng(17)))
    with pytest.raises(FrameError, match=pattern):
        poststratify(fit, dd.from_pandas(frame, npartitions=2), weight="population", by=["region"])


def test_huge_counts_are_an_error_not_nan_shares() -> None:
    fit = _prior_fit("bernoulli", seed=18)
    frame = _frame(np.random.default_rng(18)).assign(population=1e308)
    with pytest.raises(FrameError, match=r"'population' sums to infinity"):
        poststratify(fit, frame, weight="population", by=["region"])


def test_a_column_named_twice_in_by_is_an_error() -> None:
    fit = _prior_fit("bernoulli", seed=19)
    with pytest.raises(FrameError, match=r"by names 'region' twice"):
        poststratify(
            fit, _frame(np.random.default_rng(19)), weight="population", by=["region", "region"]
        )
