"""Model specs: parsing, TOML round trips, hashing, and errors that name the bad key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from opinionmap.spec import (
    LOW_RANK_MAX_PARAMETERS,
    FixedTerm,
    GroupTerm,
    ModelSpec,
    Priors,
    Sampling,
    SpecError,
    read_spec,
)

RUSSIA = (
    "presence_russia ~ 1 + sex + settlement + (1 | age) + (1 | region) + (1 | region:ethnicity)"
)


def _spec(**kwargs: object) -> ModelSpec:
    base: dict[str, object] = {
        "formula": RUSSIA,
        "family": "ordinal",
        "levels": ("less", "same", "more"),
        "missing": ("dont_know",),
    }
    base.update(kwargs)
    return ModelSpec(**base)  # type: ignore[arg-type]


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.toml"
    path.write_text(text)
    return path


GOOD_TOML = """\
formula = "presence_russia ~ 1 + sex + (1 | region) + (1 | region:ethnicity)"
family = "ordinal"
data = "../data/survey.csv"
[outcome]
levels = ["less", "same", "more"]
missing = ["dont_know"]
[priors]
fixed = { sigma = 1.5, autoscale = false }
group_sd = 0.5
[priors.parameterization]
region = "noncentered"
"""


# -- parsing ---------------------------------------------------------------------------
def test_formula_terms() -> None:
    spec = _spec()
    assert spec.outcome == "presence_russia"
    assert spec.intercept
    assert spec.fixed_terms == (FixedTerm(("sex",)), FixedTerm(("settlement",)))
    assert [g.name for g in spec.group_terms] == ["age", "region", "region:ethnicity"]
    assert spec.group_terms[2] == GroupTerm(("region", "ethnicity"))
    assert spec.variables == ("sex", "settlement", "age", "region", "ethnicity")
    assert spec.categories == ("less", "same", "more")


def test_repeated_term_counts_once() -> None:
    spec = _spec(formula="y ~ x + x + (1 | g) + (1 | g)", family="bernoulli", levels=("a", "b"))
    assert [t.name for t in spec.fixed_terms] == ["x"]
    assert [g.name for g in spec.group_terms] == ["g"]


def test_integer_prior_scales_hash_like_floats() -> None:
    # a spec written in Python with integer scales must match itself read back from a
    # saved fit, or load(path, spec=spec) would report a different spec
    ints = Priors(intercept=100, fixed=100, fixed_autoscale=False, cutpoints=100, group_sd=1)
    floats = Priors(intercept=100.0, fixed=100.0, fixed_autoscale=False, cutpoints=100.0)
    assert _spec(priors=ints).hash() == _spec(priors=floats).hash()
    with pytest.raises(SpecError, match=r"group_sd.sigma must be a positive number, got 0"):
        Priors(group_sd=0)


def test_formula_without_intercept_and_with_interaction() -> None:
    spec = _spec(formula="y ~ 0 + a + a:b", family="bernoulli", levels=("no", "yes"))
    assert not spec.intercept
    assert [t.name for t in spec.fixed_terms] == ["a", "a:b"]


def test_read_spec_from_toml_resolves_data_path(tmp_path: Path) -> None:
    spec = read_spec(_toml(tmp_path, GOOD_TOML))
    assert spec.family == "ordinal"
    assert spec.missing == ("dont_know",)
    assert spec.data == (tmp_path / "../data/survey.csv").resolve()
    assert spec.priors.fixed == 1.5 and not spec.priors.fixed_autoscale
    assert spec.priors.group_sd == 0.5
    assert spec.priors.intercept == Priors().intercept  # untouched defaults stay
    assert spec.priors.parameterization_for("region") == "noncentered"
    assert spec.priors.parameterization_for("region:ethnicity") == "auto"


def test_toml_round_trip(tmp_path: Path) -> None:
    spec = read_spec(_toml(tmp_path, GOOD_TOML))
    again = read_spec(spec.to_toml(tmp_path / "again.toml"))
    assert again == spec
    assert again.hash() == spec.hash()


def test_json_round_trip_and_hash() -> None:
    spec = _spec(priors=Priors(intercept=100, fixed=100, fixed_autoscale=False, cutpoints=100))
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.hash() == spec.hash()
    # the hash ignores where the data live, not what the model is
    assert _spec(data=Path("/elsewhere/survey.csv")).hash() == _spec().hash()
    assert _spec(priors=Priors(group_sd=0.5)).hash() != _spec().hash()
    assert _spec(missing=()).hash() != _spec().hash()


def test_sampling_table_sets_a_models_defaults(tmp_path: Path) -> None:
    spec = read_spec(_toml(tmp_path, GOOD_TOML + "[sampling]\ndraws = 2000\nchains = 2\n"))
    assert spec.sampling == Sampling(draws=2000, chains=2)
    # a value given to fit or on the command line wins, then the spec's, then 1000/1000/4
    resolved = spec.sampling.resolved()
    assert (resolved.draws, resolved.tune, resolved.chains) == (2000, 1000, 2)
    given = spec.sampling.merged(draws=150, tune=200).resolved()
    assert (given.draws, given.tune, given.chains) == (150, 200, 2)
    assert read_spec(spec.to_toml(tmp_path / "again.toml")) == spec
    assert ModelSpec.from_json(spec.to_json()) == spec
    # how long to sample is not part of the model: a fit's spec check ignores it
    assert spec.hash() == read_spec(_toml(tmp_path, GOOD_TOML)).hash()
    assert "sampling" not in read_spec(_toml(tmp_path, GOOD_TOML)).to_dict()


def test_every_sampler_setting_in_one_object(tmp_path: Path) -> None:
    text = GOOD_TOML + "[sampling]\ndraws = 500\nseed = 7\nsampler = 'pymc'\ntarget_accept = 0.99\n"
    spec = read_spec(_toml(tmp_path, text))
    assert spec.sampling == Sampling(draws=500, seed=7, sampler="pymc", target_accept=0.99)
    # the call's settings over the spec's, then the defaults (resolved when asked)
    settings = spec.sampling.merged(Sampling(chains=2), seed=8).resolved("ordinal")
    assert (settings.draws, settings.tune, settings.chains, settings.seed) == (500, 1000, 2, 8)
    assert (settings.sampler, settings.target_accept, settings.adaptation) == ("pymc", 0.99, "diag")
    assert settings.cores is not None and 1 <= settings.cores <= 2
    # adaptation "auto" (the default) picks nutpie's mass matrix by family; a choice stays
    auto = {f: Sampling().resolved(f).adaptation for f in ("ordinal", "bernoulli", "categorical")}
    assert auto == {"ordinal": "low_rank", "bernoulli": "low_rank", "categorical": "diag"}
    assert Sampling(adaptation="diag").resolved("ordinal").adaptation == "diag"
    assert Sampling(adaptation="low_rank").resolved("categorical").adaptation == "low_rank"
    # a large model (hundreds of district effects) takes the diagonal one; a choice stays
    big = LOW_RANK_MAX_PARAMETERS + 1
    assert Sampling().resolved("ordinal", LOW_RANK_MAX_PARAMETERS).adaptation == "low_rank"
    assert Sampling().resolved("ordinal", big).adaptation == "diag"
    assert Sampling(adaptation="low_rank").resolved("ordinal", big).adaptation == "low_rank"
    # one setting left open gets a seed of its own, drawn and then fixed
    assert Sampling().resolved().seed != Sampling().resolved().seed
    # what a fit stores, and reads back
    attrs = settings.to_attrs()
    assert attrs["opinionmap_random_seed"] == 8 and attrs["opinionmap_draws"] == 500
    assert Sampling.from_attrs(attrs) == settings
    assert read_spec(spec.to_toml(tmp_path / "again.toml")) == spec


def test_spec_is_immutable() -> None:
    spec = _spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.family = "categorical"  # type: ignore[misc]


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\nlikelihood = "x"\n'
            '[outcome]\nlevels = ["a", "b"]\n',
            r"unknown key\(s\) 'likelihood' at the top level; allowed keys",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\norder = 1\n',
            r"unknown key\(s\) 'order' in \[outcome\]",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[priors]\nslope = 1\n",
            r"unknown key\(s\) 'slope' in \[priors\]",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[priors]\nfixed = { sigma = 1, scale = 2 }\n",
            r"fixed names 'scale', which is not a coefficient of the formula's fixed effects "
            r"\(their variables: 'x'\)",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[priors]\nintercept = -1\n",
            r"intercept.sigma must be a positive number, got -1",
        ),
        (
            'formula = "y ~ x + (1 | g)"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            '[priors.parameterization]\ng = "sideways"\n',
            r"g = 'sideways'; choose one of",
        ),
        (
            'family = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n',
            r"missing required key 'formula'",
        ),
        ('formula = "y ~ x"\nfamily = "bernoulli"\n', r"\[outcome\] levels is required"),
        ('formula = "y ~ x"\nfamily = "bernoulli\n', r"not valid TOML"),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[sampling]\nsamples = 2000\n",
            r"unknown key\(s\) 'samples' in \[sampling\]; allowed keys: 'draws', 'tune', 'chains'",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[sampling]\ndraws = 0\n",
            r"\[sampling\] draws must be an integer >= 1, got 0",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\nsampling = 2000\n'
            '[outcome]\nlevels = ["a", "b"]\n',
            r"\[sampling\] must be a table",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[sampling]\ntarget_accept = 1.5\n",
            r"\[sampling\] target_accept must lie strictly between 0 and 1, got 1.5",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            '[sampling]\nsampler = "gibbs"\n',
            r"\[sampling\] unknown sampler 'gibbs'; choose one of 'nutpie', 'pymc', 'numpyro'",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            '[sampling]\nadaptation = "low_rank"\nsampler = "pymc"\n',
            r"\[sampling\] adaptation='low_rank' needs sampler='nutpie'",
        ),
        (
            'formula = "y ~ x"\nfamily = "bernoulli"\n[outcome]\nlevels = ["a", "b"]\n'
            "[sampling]\nseed = -1\n",
            r"\[sampling\] seed must be an integer >= 0, got -1",
        ),
    ],
    ids=[
        "top-level",
        "outcome",
        "priors",
        "priors-fixed",
        "negative-sigma",
        "parameterization",
        "no-formula",
        "no-levels",
        "bad-toml",
        "sampling-key",
        "sampling-draws",
        "sampling-not-table",
        "sampling-accept",
        "sampling-sampler",
        "sampling-adaptation",
        "sampling-seed",
    ],
)
def test_bad_spec_files(tmp_path: Path, text: str, message: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(SpecError, match=message) as info:
        read_spec(path)
    assert str(path) in str(info.value)  # names the file


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        read_spec(tmp_path / "nope.toml")


def test_family_must_match_levels() -> None:
    with pytest.raises(SpecError, match=r"'bernoulli' needs exactly two outcome levels.*got 3"):
        _spec(family="bernoulli")
    with pytest.raises(SpecError, match=r"'ordinal' needs at least three ordered levels"):
        _spec(levels=("no", "yes"), missing=())
    with pytest.raises(SpecError, match=r"unknown family 'poisson'"):
        _spec(family="poisson")


def test_levels_errors() -> None:
    with pytest.raises(SpecError, match="needs at least two levels"):
        _spec(family="categorical", levels=("a",))
    with pytest.raises(SpecError, match="lists a level twice"):
        _spec(levels=("less", "same", "same"))
    with pytest.raises(
        SpecError, match=r"'dont_know' listed both in \[outcome\] levels and missing"
    ):
        _spec(levels=("less", "same", "more", "dont_know"))


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y + x", "has no '~'"),
        ("y ~ 1 + (x | g)", "varying slope of 'x' but the fixed effects lack 'x'"),
        ("y ~ np.log(x)", "not a plain column name"),
        ("y ~ x +", "cannot parse formula"),
    ],
)
def test_bad_formulas(formula: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(formula=formula, family="bernoulli", levels=("a", "b"), missing=())


def test_the_probit_link(tmp_path: Path) -> None:
    text = (
        'formula = "y ~ x"\nfamily = "ordinal"\nlink = "probit"\n'
        '[outcome]\nlevels = ["a", "b", "c"]\n'
    )
    spec = read_spec(_toml(tmp_path, text))
    assert spec.link == "probit"
    spec.to_toml(tmp_path / "again.toml")
    assert read_spec(tmp_path / "again.toml") == spec
    logit = ModelSpec("y ~ x", "ordinal", ("a", "b", "c"))
    # the default is not written, so the specs written before the key existed keep their hash
    assert "link" not in logit.to_dict() and logit.hash() != spec.hash()
    with pytest.raises(SpecError, match=r"unknown link 'cauchit'; choose one of 'logit', 'probit'"):
        ModelSpec("y ~ x", "ordinal", ("a", "b", "c"), link="cauchit")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="link 'probit' applies to ordinal and bernoulli models"):
        ModelSpec("y ~ x", "categorical", ("a", "b", "c"), link="probit")
