"""R-hat and ESS of every scalar at once: the same numbers as ArviZ's, the 5%/95% tail ESS."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from arviz_stats.base import array_stats
from scipy.special import ndtri

from opinionmap.diagnostics import convergence, diagnose, ess_tail


def _ar1(phi: float, chains: int = 4, draws: int = 800, scalars: int = 6) -> np.ndarray:
    rng = np.random.default_rng(int(abs(phi) * 100))
    noise = rng.normal(size=(chains, draws, scalars))
    out = np.empty_like(noise)
    out[:, 0] = noise[:, 0]
    for t in range(1, draws):
        out[:, t] = phi * out[:, t - 1] + noise[:, t]
    return out


def _awkward() -> np.ndarray:
    """Odd draws, a constant scalar, a missing draw, ties, an indicator, a stuck chain."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 301, 6))
    x[:, :, 0] = 2.5
    x[2, 17, 1] = np.nan
    x[:, :, 2] = np.round(x[:, :, 2])
    x[:, :, 3] = x[:, :, 3] > 0.4
    x[0, :, 4] += 3.0
    return x


def _arviz(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.moveaxis(draws, (0, 1), (-2, -1))
    return (
        array_stats.rhat(x),
        array_stats.ess(x, method="bulk"),
        array_stats.ess(x, method="tail", prob=(0.05, 0.95)),
    )


@pytest.mark.parametrize(
    "draws",
    [
        _ar1(0.0),
        _ar1(0.6),
        _ar1(0.95),
        _ar1(0.995),
        _ar1(-0.5),
        _awkward(),
        _ar1(0.3, chains=1),
        _ar1(0.3, draws=3),
        _ar1(0.3, draws=9),
    ],
    ids=["iid", "ar 0.6", "ar 0.95", "ar 0.995", "ar -0.5", "awkward", "1 chain", "3 draws", "9"],
)
def test_rhat_and_ess_equal_arviz_stats_scalar_by_scalar(draws: np.ndarray) -> None:
    ours = convergence(draws)
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = _arviz(draws)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.shape == reference.shape == draws.shape[2:]
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(reference))
        np.testing.assert_allclose(mine, reference, rtol=1e-12)


def test_nan_where_the_statistics_are_undefined() -> None:
    r_hat, bulk, tail = convergence(_awkward())
    assert np.isnan(r_hat[1]) and np.isnan(bulk[1]) and np.isnan(tail[1])  # a missing draw
    assert r_hat[4] > 1.4  # one chain 3 SD from the others
    one_chain = convergence(_ar1(0.3, chains=1))
    assert np.isnan(one_chain[0]).all() and (one_chain[1] > 100).all()
    assert all(np.isnan(s).all() for s in convergence(_ar1(0.3, draws=3)))
    with pytest.raises(ValueError, match=r"draws must be \(chain, draw, \.\.\.\), got shape"):
        convergence(np.zeros(10))


def _sticky_tail(seed: int) -> np.ndarray:
    """4 chains x 2,000 draws, independent except their lowest 5%, which come in runs of 25."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.05, 1.0, size=(4, 2000))
    for chain in u:
        for start in rng.choice(np.arange(0, 2000, 25), size=4, replace=False):
            chain[start : start + 25] = rng.uniform(0.0, 0.05, size=25)
    return ndtri(u)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_tail_ess_is_that_of_the_5_and_95_percent_quantiles(seed: int) -> None:
    draws = _sticky_tail(seed)
    tail = float(ess_tail(draws))
    # the runs below the 5% quantile leave fewer than 400 effective draws there
    assert tail < 400
    # ArviZ 1's default quantiles (11% and 89%, its credible interval's) would pass them
    assert float(array_stats.ess(draws, method="tail", prob=(0.11, 0.89))) > 400
    posterior = xr.Dataset({"mu": (("chain", "draw"), draws)})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(draws.shape, dtype=bool))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    diagnostics = diagnose(tree, warn=False)
    assert diagnostics.max_rhat < 1.01 and diagnostics.min_ess_bulk > 400
    assert not diagnostics.converged
    assert f"tail ESS down to {tail:.0f} (< 400) for mu" in diagnostics.verdict()


def test_diagnose_labels_each_scalar_and_leaves_constant_ones_out() -> None:
    rng = np.random.default_rng(1)
    posterior = xr.Dataset(
        {
            "beta": (("chain", "draw", "term"), rng.normal(size=(4, 500, 2))),
            "corr": (("chain", "draw", "a", "b"), np.ones((4, 500, 2, 2))),
            "sigma": (("chain", "draw"), np.abs(rng.normal(size=(4, 500)))),
        },
        coords={"term": ["age", "sex"], "a": ["x", "y"], "b": ["x", "y"]},
    )
    posterior["corr"][:, :, 0, 1] = rng.uniform(-1, 1, size=(4, 500))
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 500), dtype=bool))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    table = diagnose(tree, warn=False).table
    assert list(table.index) == ["beta[age]", "beta[sex]", "corr[x,y]", "sigma"]
    r_hat, bulk, tail = convergence(posterior["beta"].values)
    np.testing.assert_array_equal(table.loc[["beta[age]", "beta[sex]"], "r_hat"], r_hat)
    np.testing.assert_array_equal(table.loc[["beta[age]", "beta[sex]"], "ess_bulk"], bulk)
    np.testing.assert_array_equal(table.loc[["beta[age]", "beta[sex]"], "ess_tail"], tail)


def test_a_scalar_with_a_missing_draw_fails_the_verdict_by_name() -> None:
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(4, 500, 3))
    mu[1, 40, 2] = np.nan
    posterior = xr.Dataset({"mu": (("chain", "draw", "k"), mu)}, coords={"k": ["a", "b", "c"]})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 500), dtype=bool))})
    diagnostics = diagnose(
        xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats}), warn=False
    )
    assert "mu[c]" in diagnostics.table.index
    assert not diagnostics.converged
    assert "R-hat or ESS undefined (missing or infinite draws) for 1 parameter(s): mu[c]" in (
        diagnostics.verdict()
    )
