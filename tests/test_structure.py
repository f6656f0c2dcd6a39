"""Structured priors: random walks over ordered levels and BYM2 over areas.

The bases are checked against the maths (the covariance they imply, its scaling, the
sum-to-zero constraints; the scaling factor against the constrained inverse of a
perturbed precision, as the Stan and INLA case studies compute it); spec, codebook
and adjacency errors against their messages; and the fitted models against
simulated data with known effects, where the structured prior must recover them
and beat the exchangeable one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import opinionmap as om
from opinionmap import datasets
from opinionmap.codebook import Codebook, CodebookError
from opinionmap.design import DesignError, build_design
from opinionmap.fitting import fit
from opinionmap.model import build_model
from opinionmap.plan import make_plan
from opinionmap.report import _model_line
from opinionmap.spec import ModelSpec, Priors, SpecError
from opinionmap.structure import (
    AdjacencyError,
    Graph,
    Structure,
    adjacency_from_boundaries,
    components,
    read_adjacency,
    structured_basis,
)

REGIONS = (
    "KZ-AKM", "KZ-AKT", "KZ-ALM", "KZ-ATY", "KZ-ZAP", "KZ-ZHA", "KZ-KAR", "KZ-KUS", "KZ-KZY",
    "KZ-MAN", "KZ-PAV", "KZ-SEV", "KZ-YUZ", "KZ-VOS", "KZ-AST", "KZ-ALA", "KZ-SHY",
)  # fmt: skip


def _geometric_mean(values: np.ndarray) -> float:
    return float(np.exp(np.log(values).mean()))


def _constrained_inverse(q: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Cov of N(0, Q_pert^-1) conditioned on each component summing to zero (INLA's way)."""
    n = q.shape[0]
    q_pert = q + np.eye(n) * q.diagonal().max() * np.sqrt(np.finfo(float).eps)
    inverse = np.linalg.inv(q_pert)
    a = np.zeros((len(groups), n))
    for r, group in enumerate(groups):
        a[r, group] = 1.0
    return inverse - inverse @ a.T @ np.linalg.solve(a @ inverse @ a.T, a @ inverse)


# -- bases ---------------------------------------------------------------------------


def test_bym2_basis_of_the_bundled_regions_is_the_scaled_icar():
    graph = read_adjacency(datasets.kazakhstan_adjacency_path(), "region", REGIONS)
    basis = structured_basis(graph)
    cov = basis.matrix @ basis.matrix.T
    # Riebler et al.'s scaling: the geometric mean of the marginal variances is one
    assert _geometric_mean(np.diag(cov)) == pytest.approx(1.0, abs=1e-10)
    assert np.allclose(cov.sum(axis=0), 0.0, atol=1e-10)  # the ICAR sums to zero
    # the scaling factor as the case studies compute it (perturbed precision, constraint)
    q = np.diag(np.zeros(17))
    for i, j in graph.edges:
        q[i, j] = q[j, i] = -1.0
    q -= np.diag(q.sum(axis=1))
    reference = _constrained_inverse(q, [list(range(17))])
    assert basis.scale[0] == pytest.approx(_geometric_mean(np.diag(reference)), rel=1e-5)
    assert np.allclose(cov, reference / basis.scale[0], atol=1e-5)


def test_components_are_scaled_and_centred_separately_and_islands_are_exchangeable():
    # a triangle, a pair and an island
    graph = Graph("area", "bym2", 6, ((0, 1), (0, 2), (1, 2), (3, 4)), islands=(5,))
    assert components(graph) == [[0, 1, 2], [3, 4], [5]]
    basis = structured_basis(graph)
    cov = basis.matrix @ basis.matrix.T
    for group in ([0, 1, 2], [3, 4]):
        assert _geometric_mean(np.diag(cov)[group]) == pytest.approx(1.0)
        assert np.allclose(cov[np.ix_(group, group)].sum(axis=0), 0.0, atol=1e-12)
    assert cov[5, 5] == pytest.approx(1.0)  # the island: an independent N(0, 1)
    assert np.allclose(cov[5, :5], 0.0) and np.allclose(cov[:3, 3:5], 0.0)


def test_random_walks_have_the_covariance_of_their_differences():
    rw1 = structured_basis(Graph.walk("age", "rw1", 6))
    cov = rw1.matrix @ rw1.matrix.T
    assert _geometric_mean(np.diag(cov)) == pytest.approx(1.0)
    # neighbouring levels are more alike than distant ones
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert corr[0, 1] > corr[0, 2] > corr[0, 5]
    # first differences are independent with a common variance (the rw1 definition)
    d1 = np.diff(np.eye(6), axis=0)
    diff_cov = d1 @ cov @ d1.T
    assert np.allclose(diff_cov, np.eye(5) * diff_cov[0, 0], atol=1e-10)
    rw2 = structured_basis(Graph.walk("age", "rw2", 6))
    assert rw2.trend is not None
    assert rw2.trend.sum() == pytest.approx(0.0) and rw2.trend.std() == pytest.approx(1.0)
    # the second-difference part has no linear trend left in it
    assert np.allclose(rw2.trend @ rw2.matrix, 0.0, atol=1e-10)
    d2 = np.diff(np.eye(6), n=2, axis=0)
    cov2 = rw2.matrix @ rw2.matrix.T
    assert np.allclose(d2 @ cov2 @ d2.T, np.eye(4) * (d2 @ cov2 @ d2.T)[0, 0], atol=1e-10)


# -- adjacency lists ------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "adjacency.csv"
    path.write_text(text)
    return path


def test_adjacency_errors_name_the_areas_and_the_fix(tmp_path):
    levels = ("north", "south", "east")
    with pytest.raises(AdjacencyError, match=r"'North'.*did you mean 'north'"):
        read_adjacency(_write(tmp_path, "a,b\nNorth,south\nsouth,east\n"), "area", levels)
    with pytest.raises(AdjacencyError, match=r"'east' of 'area' have no neighbours.*'east,'"):
        read_adjacency(_write(tmp_path, "a,b\nnorth,south\n"), "area", levels)
    with pytest.raises(AdjacencyError, match=r"pairs area\(s\) 'east' with itself"):
        read_adjacency(_write(tmp_path, "a,b\nnorth,south\neast,east\n"), "area", levels)
    with pytest.raises(AdjacencyError, match=r"declares 'south' an island"):
        read_adjacency(_write(tmp_path, "a,b\nnorth,south\nsouth,\neast,\n"), "area", levels)
    with pytest.raises(AdjacencyError, match="no such adjacency file"):
        read_adjacency(tmp_path / "absent.csv", "area", levels)
    # an island declared with an empty second column is fine; pairs in either order, once
    graph = read_adjacency(
        _write(tmp_path, "a,b\nsouth,north\nnorth,south\neast,\n"), "area", levels
    )
    assert graph.edges == ((0, 1),) and graph.islands == (2,)


def test_adjacency_from_boundaries_reproduces_the_bundled_list(tmp_path):
    out = tmp_path / "pairs.csv"
    pairs = adjacency_from_boundaries(
        datasets.kazakhstan_boundaries_path(), key="ISO_3166_2", out=out
    )
    bundled = pd.read_csv(datasets.kazakhstan_adjacency_path())
    assert {tuple(p) for p in pairs.to_numpy()} == {tuple(p) for p in bundled.to_numpy()}
    # what it writes reads back as the same graph
    assert read_adjacency(out, "region", REGIONS) == read_adjacency(
        datasets.kazakhstan_adjacency_path(), "region", REGIONS
    )
    with pytest.raises(AdjacencyError, match="no field 'CODE'"):
        adjacency_from_boundaries(datasets.kazakhstan_boundaries_path(), key="CODE")


# -- specs and codebooks -----------------------------------------------------------------


SPEC = """\
formula = "y ~ 1 + sex + (1 | age) + (1 | region)"
family = "bernoulli"
[outcome]
levels = ["no", "yes"]
[priors.structure]
age = "rw1"
region = { type = "bym2", adjacency = "adjacency.csv" }
"""


def test_spec_reads_and_writes_structured_priors(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    spec = ModelSpec.from_toml(tmp_path / "spec.toml")
    assert spec.priors.structure_for("age") == Structure("rw1")
    region = spec.priors.structure_for("region")
    assert region is not None and region.adjacency == tmp_path / "adjacency.csv"
    spec.to_toml(tmp_path / "again.toml")
    assert ModelSpec.from_toml(tmp_path / "again.toml") == spec
    # the adjacency's path is not part of the model's identity (its graph enters the data hash)
    moved = ModelSpec(
        spec.formula,
        spec.family,
        spec.levels,
        priors=Priors(
            structure=(("age", Structure("rw1")), ("region", Structure("bym2", Path("b.csv"))))
        ),
    )
    assert moved.hash() == spec.hash()


@pytest.mark.parametrize(
    ("structure", "message"),
    [
        ('age = "rw3"', r"unknown structure 'rw3'"),
        ('region = "bym2"', r"bym2 prior needs its adjacency list"),
        ('age = { type = "rw1", adjacency = "a.csv" }', r"rw1 takes no adjacency list"),
        ('sex = "rw1"', r"names 'sex', which is not a varying-intercept term"),
        ('"age:region" = "rw1"', r"not to an interaction"),
    ],
)
def test_spec_errors_for_structured_priors(tmp_path, structure, message):
    text = SPEC.split("[priors.structure]")[0].replace(
        "(1 | region)", "(1 | region) + (1 | age:region)"
    )
    (tmp_path / "spec.toml").write_text(f"{text}[priors.structure]\n{structure}\n")
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_toml(tmp_path / "spec.toml")


def test_a_structured_term_takes_no_parameterization():
    with pytest.raises(SpecError, match=r"always sampled non-centred; remove its parameter"):
        Priors(parameterization=(("age", "centered"),), structure=(("age", Structure("rw1")),))


def test_codebook_declares_ordered_predictors(tmp_path):
    entry = {"role": "predictor", "levels": ["young", "old"], "ordered": True}
    codebook = Codebook.from_dict({"variables": {"age": entry}})
    assert codebook["age"].ordered
    codebook.to_toml(tmp_path / "c.codebook.toml")
    assert Codebook.from_toml(tmp_path / "c.codebook.toml")["age"].ordered
    with pytest.raises(CodebookError, match=r"key\(s\) 'ordered' do not apply to role 'weight'"):
        Codebook.from_dict({"variables": {"w": {"role": "weight", "ordered": True}}})
    with pytest.raises(CodebookError, match="ordered predictor needs its levels"):
        Codebook.from_dict({"variables": {"a": {"role": "predictor", "ordered": True}}})
    with pytest.raises(CodebookError, match="'ordered' must be true or false"):
        Codebook.from_dict({"variables": {"age": {**entry, "ordered": "yes"}}})


# -- designs ---------------------------------------------------------------------------


def _ordered_data(n: int = 60, seed: int = 0, ordered: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ages = ["18-29", "30-44", "45-59", "60+"]
    age = rng.choice(ages, n)
    return pd.DataFrame(
        {
            "y": rng.choice(["no", "yes"], n),
            "age": pd.Categorical(age, categories=ages, ordered=ordered),
        }
    )


def _walk_spec(kind: str = "rw1") -> ModelSpec:
    return ModelSpec(
        "y ~ 1 + (1 | age)",
        "bernoulli",
        ("no", "yes"),
        priors=Priors(structure=(("age", Structure(kind)),)),  # type: ignore[arg-type]
    )


def test_random_walk_needs_ordered_levels():
    with pytest.raises(DesignError, match=r"'rw1' needs ordered levels.*'ordered = true'"):
        build_design(_walk_spec(), _ordered_data(ordered=False))
    plain = _ordered_data().assign(age=lambda d: d["age"].astype(str))
    with pytest.raises(DesignError, match="no declared order"):
        build_design(_walk_spec(), plain)
    two = _ordered_data().assign(
        age=lambda d: pd.Categorical(
            np.where(d["age"].isin(["18-29", "30-44"]), "young", "old"),
            categories=["young", "old"],
            ordered=True,
        )
    )
    with pytest.raises(DesignError, match="'rw2' needs at least three levels"):
        build_design(_walk_spec("rw2"), two)


def test_the_bundled_codebook_orders_age_and_education():
    survey = om.read_survey(datasets.kazakhstan_survey_path())
    assert survey.data["age"].cat.ordered and survey.data["education"].cat.ordered
    assert not survey.data["region"].cat.ordered


def test_a_structured_design_is_stored_with_its_graph_and_planned_non_centred():
    design = build_design(_walk_spec("rw2"), _ordered_data())
    assert design.graph("age") == Graph.walk("age", "rw2", 4)
    plan = make_plan(design)
    assert plan.term("age").structure == "rw2" and plan.term("age").parameterization == (
        "noncentered"
    )
    again = type(design).from_tree(design.to_tree())
    assert again.graphs == design.graphs and again.data_hash == design.data_hash
    model = build_model(design)
    assert {"z_age", "z_trend_age", "sigma_age"} <= set(model.named_vars)
    assert model.named_vars_to_dims["u_age"] == ("age",)


# -- fits against simulated truth ----------------------------------------------------------


def _simulate_walk(seed: int, n: int = 1500, n_levels: int = 12):
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.25, n_levels)
    truth = np.cumsum(steps)
    truth -= truth.mean()
    # fewer respondents at the ends, as with the oldest age bands
    weights = np.minimum(np.arange(1, n_levels + 1), np.arange(n_levels, 0, -1)) ** 1.5
    level = rng.choice(n_levels, n, p=weights / weights.sum())
    y = rng.random(n) < expit(-0.3 + truth[level])
    labels = [f"a{i:02d}" for i in range(n_levels)]
    data = pd.DataFrame(
        {
            "y": np.where(y, "yes", "no"),
            "age": pd.Categorical([labels[i] for i in level], categories=labels, ordered=True),
        }
    )
    return data, truth


def _fit_u(
    spec: ModelSpec, data: pd.DataFrame, term: str, seed: int, draws: int = 500
) -> tuple[Any, ...]:
    """Posterior mean and 90% interval of a term's effects, and the fit."""
    result = fit(spec, data, draws=draws, tune=500, chains=4, random_seed=seed, progress=False,
                 warn=False)  # fmt: skip
    u = result.posterior[f"u_{term}"].stack(sample=("chain", "draw")).values
    return u.mean(axis=1), np.quantile(u, 0.05, axis=1), np.quantile(u, 0.95, axis=1), result


@pytest.mark.slow
def test_rw1_recovers_random_walks_and_beats_the_exchangeable_prior():
    # four random walks over 12 age bands, 1,500 respondents, fewer at the ends. One fit's
    # effects share their errors (the intercept, the smoothing), so the pooled coverage of
    # 48 effects scatters widely around 90%: the test asks for at least 65%
    iid = ModelSpec("y ~ 1 + (1 | age)", "bernoulli", ("no", "yes"))
    covered, squared, squared_iid = [], [], []
    for seed in (3, 4, 5, 6):
        data, truth = _simulate_walk(seed=seed)
        mean, low, high, result = _fit_u(_walk_spec("rw1"), data, "age", seed=1)
        assert result.diagnostics.converged, result.diagnostics.verdict()
        covered.extend((low <= truth) & (truth <= high))
        squared.extend((mean - truth) ** 2)
        iid_mean, *_ = _fit_u(iid, data, "age", seed=1)
        squared_iid.extend((iid_mean - truth) ** 2)
    assert np.mean(covered) >= 0.65
    assert np.sqrt(np.mean(squared)) < 0.9 * np.sqrt(np.mean(squared_iid))


@pytest.mark.slow
def test_bym2_recovers_a_smooth_map_and_beats_the_exchangeable_prior(tmp_path):
    from opinionmap.maps import read_boundaries

    areas = {
        a.key: a
        for a in read_boundaries(
            datasets.kazakhstan_boundaries_path(), key="ISO_3166_2", name="ADM1_EN"
        )
    }
    rng = np.random.default_rng(5)
    east = np.array([areas[r].label_at[0] for r in REGIONS])
    north = np.array([areas[r].label_at[1] for r in REGIONS])
    # a smooth east-west and north-south gradient, as attitudes often vary
    truth = 0.9 * (east - east.mean()) / east.std() + 0.4 * (north - north.mean()) / north.std()
    truth = truth + rng.normal(0.0, 0.1, len(REGIONS))
    truth -= truth.mean()
    n = 700
    region = rng.integers(0, len(REGIONS), n)
    y = rng.random(n) < expit(0.2 + truth[region])
    data = pd.DataFrame(
        {
            "y": np.where(y, "yes", "no"),
            "region": pd.Categorical([REGIONS[i] for i in region], categories=list(REGIONS)),
        }
    )
    structure = Structure("bym2", datasets.kazakhstan_adjacency_path())
    spec = ModelSpec(
        "y ~ 1 + (1 | region)",
        "bernoulli",
        ("no", "yes"),
        priors=Priors(structure=(("region", structure),)),
    )
    # rho mixes slowly (17 areas say little about it): 4 x 1,000 draws
    mean, low, high, result = _fit_u(spec, data, "region", seed=2, draws=1000)
    assert result.diagnostics.converged, result.diagnostics.verdict()
    coverage = float(((low <= truth) & (truth <= high)).mean())
    assert coverage >= 0.75
    rho = result.posterior["rho_region"].values
    assert float(rho.mean()) > 0.5  # the map is mostly spatial, and the fit says so
    iid = ModelSpec("y ~ 1 + (1 | region)", "bernoulli", ("no", "yes"))
    iid_mean, *_ = _fit_u(iid, data, "region", seed=2)
    assert float(np.abs(mean - truth).mean()) < float(np.abs(iid_mean - truth).mean())
    # it poststratifies, and the saved fit keeps its graph
    frame = pd.DataFrame({"region": list(REGIONS), "population": np.full(17, 1000.0)})
    estimates = om.poststratify(result, frame, by="region", weight="population")
    shares = estimates.summary()
    assert np.allclose(shares.groupby("region")["mean"].sum(), 1.0)
    path = result.save(tmp_path / "fit.nc")
    assert om.load(path).design.graphs == result.design.graphs
    # the report says what the structured prior found
    line = _model_line(result, 0.9)
    low, high = np.quantile(rho, [0.05, 0.95])
    assert (
        f"region: BYM2 over 29 neighbour pairs; the spatial share of its variation (rho) "
        f"{rho.mean():.2f} [{low:.2f}, {high:.2f}]." in line
    )


@pytest.mark.slow
def test_categorical_and_ordinal_models_take_structured_priors():
    data, _ = _simulate_walk(seed=4, n=600, n_levels=6)
    rng = np.random.default_rng(0)
    data["z"] = rng.choice(["a", "b", "c"], len(data))
    for family, levels in (("categorical", ("a", "b", "c")), ("ordinal", ("a", "b", "c"))):
        spec = ModelSpec(
            "z ~ 1 + (1 | age)",
            family,  # type: ignore[arg-type]
            levels,
            priors=Priors(structure=(("age", Structure("rw2")),)),
        )
        result = fit(spec, data, draws=200, tune=300, chains=2, random_seed=1, progress=False,
                     warn=False)  # fmt: skip
        u = result.posterior["u_age"]
        width = 2 if family == "categorical" else 1
        assert u.shape[2] == 6 and (u.ndim == 4) == (width == 2)
        # every draw of every linear predictor's effects sums to zero over the levels
        assert np.allclose(u.sum("age"), 0.0, atol=1e-8)


def test_adjacency_command(tmp_path):
    from typer.testing import CliRunner

    from opinionmap.cli import app

    out = tmp_path / "pairs.csv"
    result = CliRunner().invoke(
        app,
        ["adjacency", str(datasets.kazakhstan_boundaries_path()), "--key", "ISO_3166_2",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "29 neighbour pairs among 17 areas" in result.output
    assert (
        read_adjacency(out, "region", REGIONS).edges
        == read_adjacency(datasets.kazakhstan_adjacency_path(), "region", REGIONS).edges
    )
    bad = CliRunner().invoke(
        app, ["adjacency", str(datasets.kazakhstan_boundaries_path()), "--key", "X", "-o", str(out)]
    )
    assert bad.exit_code == 2 and "no field 'X'" in bad.output
