"""Rare answers of a categorical question merged into one category (``[outcome]
merge_below``): reported, reversible, and carried through poststratification, direct
estimates and published figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import opinionmap as om
from opinionmap.design import Design, DesignError, build_design
from opinionmap.direct import direct_estimates
from opinionmap.fitting import fit
from opinionmap.report import ReportOptions, _model_line, _national
from opinionmap.spec import ModelSpec, Sampling, SpecError

LEVELS = ("none", "russia", "china", "usa", "turkey", "belarus")
# respondents per answer: usa 12, turkey 6 and belarus 3 are rare below 15; china 40 is not
COUNTS = {"none": 300, "russia": 200, "china": 40, "usa": 12, "turkey": 6, "belarus": 3}


def _survey(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    answers = np.repeat(list(COUNTS), list(COUNTS.values()))
    rng.shuffle(answers)
    n = len(answers)
    return pd.DataFrame({"y": answers, "sex": rng.choice(["f", "m"], n),
                         "region": rng.choice(["r1", "r2", "r3", "r4"], n)})  # fmt: skip


def _spec(**kwargs) -> ModelSpec:
    return ModelSpec("y ~ 1 + sex + (1 | region)", "categorical", LEVELS, **kwargs)


def test_answers_below_the_threshold_become_one_category():
    design = build_design(_spec(merge_below=15), _survey())
    assert design.categories == ("none", "russia", "china", "other")
    assert design.merged == ("usa", "turkey", "belarus")
    assert design.counts.sum(axis=0).tolist() == [300, 200, 40, 21]
    assert design.recode == {"usa": "other", "turkey": "other", "belarus": "other"}
    # stored with the fit's design, and read back
    assert Design.from_tree(design.to_tree()).merged == design.merged


def test_without_the_setting_nothing_is_merged():
    design = build_design(_spec(), _survey())
    assert design.categories == LEVELS and design.merged == () and design.recode == {}


def test_one_rare_answer_is_kept_and_the_reference_never_merged():
    # only belarus (3) is below 5: nothing to merge it with
    assert build_design(_spec(merge_below=5), _survey()).merged == ()
    # the reference level is the model's baseline, however few gave it
    spec = ModelSpec("y ~ 1 + sex", "categorical", ("belarus", *LEVELS[:-1]), merge_below=15)
    design = build_design(spec, _survey())
    assert design.categories == ("belarus", "none", "russia", "china", "other")
    assert design.merged == ("usa", "turkey")


def test_a_level_nobody_gave_is_merged_rather_than_refused():
    data = _survey()
    data = data[data["y"] != "belarus"]
    with pytest.raises(DesignError, match=r"'belarus'.*no respondent gave.*merge_below"):
        build_design(_spec(), data)
    assert build_design(_spec(merge_below=15), data).merged == ("usa", "turkey", "belarus")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"merge_below": 0}, r"merge_below = 0: give a number of respondents"),
        ({"merge_below": 2.5}, r"merge_below must be a whole number of respondents, got 2.5"),
        ({"merge_below": True}, r"must be a whole number"),
        ({"merge_below": 10, "other": "usa"}, r"other = 'usa' is already an outcome level"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        _spec(**kwargs)


def test_only_categorical_models_merge():
    with pytest.raises(SpecError, match=r"merge_below merges rare answers of a categorical"):
        ModelSpec("y ~ 1", "ordinal", ("a", "b", "c"), merge_below=10)


def test_the_spec_file_round_trips(tmp_path):
    spec = _spec(merge_below=15, other="rest")
    path = spec.to_toml(tmp_path / "q.toml")
    assert "merge_below = 15" in path.read_text()
    again = om.read_spec(path)
    assert (again.merge_below, again.other) == (15, "rest")
    assert again.hash() == spec.hash() != _spec().hash()
    text = path.read_text().replace("merge_below = 15\n", "")
    path.write_text(text)
    with pytest.raises(SpecError, match=r"other names the category .* merge_below .* not set"):
        om.read_spec(path)


def test_direct_estimates_count_merged_answers_as_the_category():
    data = _survey()
    recode = build_design(_spec(merge_below=15), data).recode
    table = direct_estimates(data, "y", by="region", recode=recode, missing=())
    assert set(table["category"]) == {"none", "russia", "china", "other"}
    shares = table.pivot(index="region", columns="category", values="raw")
    expected = data.assign(y=data["y"].replace(recode)).groupby("region")["y"]
    assert shares["other"].to_numpy() == pytest.approx(
        expected.apply(lambda s: (s == "other").mean()).to_numpy()
    )


@pytest.mark.slow
def test_a_merged_fit_poststratifies_and_reports_it():
    data = _survey()
    spec = _spec(merge_below=15)
    result = fit(spec, data, sampling=Sampling(draws=300, tune=300, chains=2), random_seed=3,
                 progress=False, warn=False)  # fmt: skip
    frame = data.groupby(["sex", "region"]).size().rename("n").reset_index()
    estimates = om.poststratify(result, frame, weight="n")
    table = estimates.summary()
    assert table.attrs["merged"] == ["usa", "turkey", "belarus"]
    other = table.set_index("category").loc["other", "mean"]
    assert other == pytest.approx(21 / len(data), abs=0.012)  # the survey's own share, 3.7%
    line = _model_line(result, 0.9)
    assert (
        "Answers given by fewer than 15 respondents each ('usa', 'turkey', 'belarus') are "
        "modelled as one category, 'other'." in line
    )
    published = pd.DataFrame({"question": "y", "category": list(LEVELS),
                              "percent": [50.0, 30.0, 10.0, 5.0, 3.0, 2.0]})  # fmt: skip
    national = _national(result, estimates, ReportOptions(published=published), 0.9)
    assert national.set_index("category")["published"].to_dict() == pytest.approx(
        {"none": 0.5, "russia": 0.3, "china": 0.1, "other": 0.1}
    )
