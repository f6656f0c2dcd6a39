"""The compiled poststratification kernel gives the NumPy path's estimates, for every model."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from helpers import PriorFit
from opinionmap import _kernel
from opinionmap.design import build_design
from opinionmap.frameless import FramelessModel, frameless_spec
from opinionmap.model import build_model
from opinionmap.poststratification import CHUNK_VALUES, Estimates, _Job, poststratify
from opinionmap.predict import Draws, linear_predictor, log_probabilities
from opinionmap.spec import ModelSpec, Priors, Structure

REGIONS = ["north", "south", "east", "west"]
AGES = ["young", "middle", "old"]
ANSWERS = ("less", "same", "more")
TOLERANCE = 1e-10


def _survey(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "region": rng.choice(REGIONS, n),
            "sex": rng.choice(["male", "female"], n),
            "age": pd.Categorical(rng.choice(AGES, n), categories=AGES, ordered=True),
            "education": rng.choice(["low", "mid", "high"], n),
            "x": rng.normal(0.0, 1.0, n).round(1),
            "answer": rng.choice(ANSWERS, n),
        }
    )


def _prior_fit(spec: ModelSpec, df: pd.DataFrame, seed: int = 3) -> PriorFit:
    design = build_design(spec, df)
    model = build_model(design)
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
        prior = pm.sample_prior_predictive(draws=40, random_seed=seed)
    posterior = prior["prior"].to_dataset()
    if "cutpoints" in posterior:  # forward sampling ignores the ordering transform
        posterior["cutpoints"] = posterior["cutpoints"].copy(
            data=np.sort(posterior["cutpoints"].values, axis=-1)
        )
    return PriorFit(design, posterior)


def _frame(seed: int = 2, extra_region: bool = True) -> pd.DataFrame:
    """Every region (and one the survey never saw) x sex x age, a value of ``x`` per cell."""
    regions = [*REGIONS, "island"] if extra_region else REGIONS
    index = pd.MultiIndex.from_product(
        [regions, ["male", "female"], AGES], names=["region", "sex", "age"]
    )
    rng = np.random.default_rng(seed)
    frame = index.to_frame(index=False)
    frame["x"] = rng.normal(0.0, 1.0, len(frame)).round(2)
    frame["population"] = rng.integers(1, 1000, len(frame)).astype(float)
    return frame


# (formula, family, spec keywords): every family, link and kind of term
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "categorical": ("answer ~ 1 + sex + (1 | age) + (1 | region)", "categorical", {}),
    "categorical slopes, correlated categories": (
        "answer ~ 1 + sex + x + (1 + x | region) + (1 | p | age)",
        "categorical",
        {},
    ),
    "ordinal logit, uncorrelated slopes": (
        "answer ~ 1 + sex + x + (1 + x || region) + (1 | age)",
        "ordinal",
        {},
    ),
    "ordinal probit, random walk": (
        "answer ~ 1 + sex + (1 | age) + (1 | region)",
        "ordinal",
        {"link": "probit", "priors": Priors(structure=(("age", Structure("rw1")),))},
    ),
    "bernoulli logit, slopes": (
        "answer ~ 1 + sex + x + (0 + x | age) + (1 | region)",
        "bernoulli",
        {},
    ),
    "bernoulli probit, correlated slopes": (
        "answer ~ 1 + x + (1 + x | region)",
        "bernoulli",
        {"link": "probit"},
    ),
    "hurdle": ("answer ~ 1 + sex + x + (1 | region) + (1 | age)", "ordinal", {"hurdle": "dk"}),
}


@functools.cache
def _fit(name: str) -> PriorFit:
    formula, family, kwargs = MODELS[name]
    df = _survey()
    levels: tuple[str, ...] = ANSWERS
    if family == "bernoulli":
        df["answer"] = np.where(df["answer"] == "more", "yes", "no")
        levels = ("no", "yes")
    if "hurdle" in kwargs:
        df.loc[df.index % 7 == 0, "answer"] = "dk"
    return _prior_fit(ModelSpec(formula, family, levels, **kwargs), df)


@pytest.fixture(scope="module", params=list(MODELS))
def model(request: pytest.FixtureRequest) -> PriorFit:
    return _fit(request.param)


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times the kernel ran (its calls recorded, then made)."""
    calls: list[int] = []
    accumulate = _kernel.Kernel.accumulate

    def counted(self: _kernel.Kernel, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        accumulate(self, *args, **kwargs)

    monkeypatch.setattr(_kernel.Kernel, "accumulate", counted)
    yield calls


def _both(
    monkeypatch: pytest.MonkeyPatch, calls: list[int], *args: Any, **kwargs: Any
) -> tuple[Estimates, Estimates]:
    """The estimates by the NumPy path, then by the kernel (checked to have run)."""
    monkeypatch.setenv(_kernel.SWITCH, "0")
    numpy_path = poststratify(*args, **kwargs)
    assert not calls
    monkeypatch.delenv(_kernel.SWITCH)
    kernel = poststratify(*args, **kwargs)
    assert calls
    return numpy_path, kernel


def _assert_same(a: Estimates, b: Estimates) -> None:
    for x, y in ((a.draws, b.draws), (a.overall, b.overall)):
        assert x.dims == y.dims
        np.testing.assert_allclose(x.values, y.values, rtol=0, atol=TOLERANCE)
        assert np.isnan(x.values).sum() == np.isnan(y.values).sum()
    assert (a.population == b.population).all()


def test_the_kernel_gives_the_numpy_estimates(
    model: PriorFit, monkeypatch: pytest.MonkeyPatch, kernel_calls: list[int]
) -> None:
    args = (model, _frame())
    kwargs = {"weight": "population", "by": ["region", "sex"], "new_levels": "sample"}
    numpy_path, kernel = _both(monkeypatch, kernel_calls, *args, **kwargs)
    _assert_same(numpy_path, kernel)
    np.testing.assert_allclose(kernel.draws.sum("category").values[:, :, :4], 1.0, rtol=1e-12)
    assert kernel.new_levels == {"region": ("island",)}


def test_the_kernel_gives_the_same_estimates_in_small_chunks(
    model: PriorFit, kernel_calls: list[int]
) -> None:
    frame = _frame(seed=5, extra_region=False)
    whole = poststratify(model, frame, weight="population", by="age")
    chunks = poststratify(model, frame, weight="population", by="age", chunk_values=40)
    assert len(kernel_calls) > 2
    _assert_same(whole, chunks)


def test_every_family_runs_on_one_compiled_kernel() -> None:
    fits = [_fit("categorical"), _fit("hurdle"), _fit("bernoulli probit, correlated slopes")]
    for fit in fits:
        poststratify(fit, _frame(extra_region=False), weight="population", by="region")
    # one machine-code version serves every model: one compile (or cache load) per process
    # (whatever ran before in the process: a read-only or float32 input is copied)
    assert len(_kernel._accumulate.signatures) == 1, _kernel._accumulate.signatures


def test_a_model_the_kernel_does_not_cover_takes_the_numpy_path(
    monkeypatch: pytest.MonkeyPatch, kernel_calls: list[int]
) -> None:
    fit = _fit("categorical")
    frame = _frame(extra_region=False)
    expected = poststratify(fit, frame, weight="population", by="region")
    assert kernel_calls
    kernel_calls.clear()
    monkeypatch.setattr(_kernel.Kernel, "for_design", classmethod(lambda cls, d, dr: None))
    fallback = poststratify(fit, frame, weight="population", by="region")
    assert not kernel_calls
    _assert_same(expected, fallback)


def test_the_kernel_covers_every_family_and_link() -> None:
    for name in MODELS:
        fit = _fit(name)
        layout = _kernel.Kernel.for_design(fit.design, fit.draws())
        assert layout is not None, name
        assert layout.hurdle == (name == "hurdle")


def test_memory_is_bounded_by_the_chunk_sizes_whatever_the_frame_size() -> None:
    fit = _fit("categorical slopes, correlated categories")
    draws = fit.draws()
    layout = _kernel.Kernel.for_design(fit.design, draws)
    assert layout is not None
    job = _Job(fit.design, draws, (), (), (), {}, "population", CHUNK_VALUES)
    for n_cells in (10, 1_000_000, 100_000_000):
        cells, n_draws = job.chunk_sizes(n_cells, layout)
        assert cells <= min(n_cells, CHUNK_VALUES // 64)
        # the kernel's largest block: the draws' coefficients (no draws x cells x categories)
        assert n_draws * layout.values_per_draw <= CHUNK_VALUES
        assert n_draws == draws.n_samples  # a small model's table holds every draw at once
    small = _Job(fit.design, draws, (), (), (), {}, "population", 100)
    cells, n_draws = small.chunk_sizes(1_000_000, layout)
    assert cells == 1 and 1 <= n_draws <= max(1, 100 // layout.values_per_draw)


def test_a_frame_split_by_a_variable_it_lacks_gives_the_numpy_estimates(
    monkeypatch: pytest.MonkeyPatch, kernel_calls: list[int]
) -> None:
    spec = ModelSpec("answer ~ 1 + sex + education + (1 | region) + (1 | age)", "ordinal", ANSWERS)
    outcome = _prior_fit(spec, _survey())
    split_spec = frameless_spec(outcome.design, "education")
    split = FramelessModel("education", _prior_fit(split_spec, _survey(), seed=4))  # type: ignore[arg-type]
    frame = _frame(extra_region=False).drop(columns="x")
    numpy_path, kernel = _both(
        monkeypatch,
        kernel_calls,
        outcome,
        frame,
        weight="population",
        by="region",
        frameless=split,
        chunk_values=2_000,
    )
    _assert_same(numpy_path, kernel)
    assert kernel.method == split.method


@pytest.mark.parametrize("scale", [1.0, 25.0], ids=["prior draws", "far in the tails"])
def test_the_pointwise_log_likelihood_kernel_gives_the_numpy_values(
    model: PriorFit, scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opinionmap.fitting import _log_likelihood

    # every coefficient scaled: probabilities down to exp(-1000) and below, where a
    # kernel in probability space would give -inf or lose every digit
    posterior = model.posterior.map(lambda v: v * scale)
    design = model.design
    draws = Draws.from_posterior(posterior, design)
    computed = _kernel.log_likelihood(
        design, draws, design.respondent_cell, design.respondent_response, chunk=7
    )
    if design.spec.hurdle is not None:
        assert computed is None  # not covered: the NumPy path
        return
    assert computed is not None
    expected = log_probabilities(design, linear_predictor(draws, design), draws)[
        :, design.respondent_cell, design.respondent_response
    ]
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-12)
    if scale > 1:
        assert computed.min() < -200
    # the fit's stored group, by respondent and by pattern, with and without the kernel
    for level in ("respondent", "pattern"):
        with_kernel = _log_likelihood(posterior, design, level)
        monkeypatch.setenv(_kernel.SWITCH, "0")
        without = _log_likelihood(posterior, design, level)
        monkeypatch.delenv(_kernel.SWITCH)
        name = design.spec.outcome
        np.testing.assert_allclose(with_kernel[name], without[name], rtol=1e-12, atol=1e-12)
