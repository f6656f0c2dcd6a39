"""Per-term prior scales and the prior check: what the priors say on the probability scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from opinionmap.checks import prior_check, prior_draws
from opinionmap.cli import app
from opinionmap.design import DesignError, build_design
from opinionmap.spec import ModelSpec, Priors, SpecError

runner = CliRunner()


def _data(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": np.where(rng.random(n) < 0.8, "yes", "no"),
            "sex": rng.choice(["male", "female"], n),
            "region": rng.choice(list("abcdefgh"), n),
            "group": rng.choice(list("xyz"), n),
            "z": rng.choice(["low", "mid", "high"], n),
        }
    )


SPEC = """\
formula = "y ~ 1 + sex + (1 | region) + (1 | group) + (1 | region:group)"
family = "bernoulli"
data = "survey.csv"
[outcome]
levels = ["no", "yes"]
[priors.group_sd]
sigma = 1.0
region = 0.5
[priors.fixed]
sigma = 2.5
"sex[male]" = 0.1
"""


CODEBOOK = """\
[variables.y]
role = "outcome"
levels = ["no", "yes"]
[variables.sex]
role = "predictor"
levels = ["female", "male"]
[variables.region]
role = "area"
[variables.group]
role = "predictor"
[variables.z]
role = "outcome"
levels = ["low", "mid", "high"]
"""


def test_per_term_scales_are_read_written_and_named(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    spec = ModelSpec.from_toml(tmp_path / "spec.toml")
    assert spec.priors.group_sd_for("region") == 0.5
    assert spec.priors.group_sd_for("group") == 1.0
    assert spec.priors.fixed_for("sex[male]") == 0.1
    assert spec.priors.fixed_for("age") == 2.5
    spec.to_toml(tmp_path / "again.toml")
    assert ModelSpec.from_toml(tmp_path / "again.toml") == spec
    # a model with other priors is another model
    assert spec.hash() != ModelSpec(spec.formula, spec.family, spec.levels).hash()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[priors.group_sd]\nsigma = 1\nregoin = 0.5\n", r"\[priors.group_sd\] names 'regoin'"),
        ("[priors.group_sd]\nregion = -1\n", r"\[priors.group_sd\] region must be a positive"),
        ("[priors.fixed]\nage = 1\n", r"fixed names 'age', which is not a coefficient"),
        ('[priors.fixed]\n"sex[male]" = 0\n', r"\[priors.fixed\] sex\[male\] must be a positive"),
    ],
)
def test_per_term_scale_errors(tmp_path, table, message):
    head = SPEC.split("[priors.group_sd]")[0]
    (tmp_path / "spec.toml").write_text(head + table)
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_toml(tmp_path / "spec.toml")


def test_a_coefficient_the_design_lacks_is_named_with_the_ones_it_has():
    spec = ModelSpec(
        "y ~ 1 + sex + (1 | region)",
        "bernoulli",
        ("no", "yes"),
        priors=Priors(fixed_by=(("sex[female]", 1.0),)),
    )
    # sex's reference level is 'female' (sorted), so its only coefficient is sex[male]
    with pytest.raises(DesignError, match=r"'sex\[female\]'.*its coefficients: 'sex\[male\]'"):
        build_design(spec, _data())


def test_prior_draws_follow_the_per_term_scales():
    spec = ModelSpec(
        "y ~ 1 + sex + (1 | region) + (1 | group) + (1 | region:group)",
        "bernoulli",
        ("no", "yes"),
        priors=Priors(
            group_sd_by=(("region", 0.5), ("region:group", 0.2)),
            fixed_by=(("sex[male]", 0.1),),
            fixed_autoscale=False,
        ),
    )
    prior = prior_draws(spec, _data(), draws=4000, random_seed=1).posterior
    half_normal_mean = np.sqrt(2 / np.pi)
    # region and region:group are sampled as a polar pair, group on its own
    for term, scale in (("region", 0.5), ("region:group", 0.2), ("group", 1.0)):
        mean = float(prior[f"sigma_{term}"].mean())
        assert mean == pytest.approx(scale * half_normal_mean, rel=0.06), term
    assert float(prior["beta"].sel(coef="sex[male]").std()) == pytest.approx(0.1, rel=0.06)


def test_prior_check_tells_narrow_from_wide_priors():
    data = _data()
    narrow = ModelSpec(
        "y ~ 1 + sex + (1 | region)",
        "bernoulli",
        ("no", "yes"),
        priors=Priors(intercept=0.01, fixed=0.01, group_sd=0.01),
    )
    table = prior_check(narrow, data, draws=200, prob=0.9)
    overall = table[(table["factor"] == "all")].set_index("category")
    # every draw predicts about 50:50, far from the observed 80% yes
    assert overall.loc["yes", "lower"] > 0.45 and overall.loc["yes", "upper"] < 0.55
    assert overall.loc["yes", "outside"] and table.attrs["extreme"] == 0.0
    wide = ModelSpec("y ~ 1 + sex + (1 | region)", "bernoulli", ("no", "yes"),
                     priors=Priors(intercept=20.0, fixed=20.0, group_sd=5.0))  # fmt: skip
    assert prior_check(wide, data, draws=200).attrs["extreme"] > 0.5
    # the same seed gives the same table
    again = prior_check(narrow, data, draws=200, prob=0.9)
    pd.testing.assert_frame_equal(table, again)


def test_ordinal_prior_draws_have_ordered_cutpoints():
    spec = ModelSpec("z ~ sex + (1 | region)", "ordinal", ("low", "mid", "high"))
    prior = prior_draws(spec, _data(), draws=500).posterior
    assert (prior["cutpoints"].diff("cutpoint") > 0).all()
    table = prior_check(spec, _data(), draws=100)
    shares = table[table["factor"] == "all"]["replicated_mean"]
    assert shares.sum() == pytest.approx(1.0)


def test_prior_check_command(tmp_path: Path):
    _data().to_csv(tmp_path / "survey.csv", index=False)
    (tmp_path / "survey.codebook.toml").write_text(CODEBOOK)
    (tmp_path / "spec.toml").write_text(SPEC)
    out, plot = tmp_path / "prior.csv", tmp_path / "prior.png"
    result = runner.invoke(
        app,
        ["prior-check", str(tmp_path / "spec.toml"), "--out", str(out), "--plot", str(plot),
         "--draws", "100"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shares of the survey's respondents implied by the priors" in result.output
    assert "lie outside the prior's intervals" in result.output
    table = pd.read_csv(out)
    assert set(table["factor"]) == {"all", "sex", "region", "group"}
    assert plot.stat().st_size > 10_000
    bad = runner.invoke(app, ["prior-check", str(tmp_path / "absent.toml")])
    assert bad.exit_code == 2 and "no such spec file" in bad.output
