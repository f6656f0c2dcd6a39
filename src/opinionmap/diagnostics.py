"""Convergence diagnostics run after every fit: R-hat, ESS, divergences, tree depth, BFMI.

Anything off (fewer than two chains, R-hat > 1.01, bulk or tail ESS < 400, any
divergence, any transition at the maximum tree depth, E-BFMI < 0.3) is reported
loudly: a :class:`ConvergenceWarning` naming the worst parameters and what to do,
and a verdict that travels with the fit: ``opinionmap summary`` prints it, and
poststratification, effects and predictive checks of a fit that failed warn again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap.plan import is_auxiliary

__all__ = [
    "ConvergenceWarning",
    "Diagnostics",
    "convergence",
    "diagnose",
    "ess_bulk",
    "ess_tail",
    "rhat",
    "warn_if_unconverged",
]

# sample statistics flagging a transition that stopped at the maximum tree depth
# (nutpie; PyMC and NumPyro through PyMC)
_MAX_DEPTH = ("maxdepth_reached", "reached_max_treedepth")
RHAT_MAX = 1.01
ESS_MIN = 400.0
BFMI_MIN = 0.3
#: the quantiles whose indicators' ESS is the tail ESS (Vehtari et al. 2021, as Stan and
#: the R package posterior); ArviZ 1 takes its credible-interval default (11% and 89%)
TAIL_PROBS = (0.05, 0.95)
# scalar parameters diagnosed at once (bounds the memory of the FFTs to ~100 MB at 8,000
# draws)
_CHUNK = 512


class ConvergenceWarning(UserWarning):
    """A fit did not converge by the thresholds above."""


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of a fit."""

    table: pd.DataFrame  # one row per scalar parameter: r_hat, ess_bulk, ess_tail
    divergences: int
    n_samples: int
    bfmi: tuple[float, ...]
    n_chains: int = 2
    max_depth_hits: int = 0
    partial: str | None = None

    @property
    def max_rhat(self) -> float:
        """Largest R-hat over parameters."""
        return float(self.table["r_hat"].max())

    @property
    def min_ess_bulk(self) -> float:
        """Smallest bulk ESS over parameters."""
        return float(self.table["ess_bulk"].min())

    @property
    def min_ess_tail(self) -> float:
        """Smallest tail ESS over parameters."""
        return float(self.table["ess_tail"].min())

    @property
    def problems(self) -> list[str]:
        """Each failed check, in words, naming the worst parameters."""
        out = []
        t = self.table
        if self.partial:
            out.append(f"sampling was interrupted: the fit holds {self.partial}")
        if self.n_chains < 2:
            out.append(
                f"R-hat needs at least 2 chains to compare and this fit has {self.n_chains}: "
                "sample 4 chains to check convergence"
            )
        elif self.max_rhat > RHAT_MAX or not np.isfinite(self.max_rhat):
            worst = t.sort_values("r_hat", ascending=False).head(3)
            few = ""
            if self.n_chains < 4:
                # measured in benchmarks/bench_real_defaults.py: with 2 chains, fits whose
                # bulk ESS is above 1,000 still cross 1.01 now and then
                few = (
                    f" (from {self.n_chains} chains, R-hat is noisy near {RHAT_MAX}: "
                    "sample 4 chains, the default)"
                )
            out.append(
                f"R-hat up to {self.max_rhat:.3f} (> {RHAT_MAX}) for "
                + ", ".join(f"{i} ({v:.3f})" for i, v in worst["r_hat"].items())
                + few
            )
        for col, label in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
            low = float(t[col].min())
            if low < ESS_MIN or not np.isfinite(low):
                worst = t.sort_values(col).head(3)
                out.append(
                    f"{label} ESS down to {low:.0f} (< {ESS_MIN:.0f}) for "
                    + ", ".join(f"{i} ({v:.0f})" for i, v in worst[col].items())
                )
        # pandas' min and max above skip NaN: a statistic that could not be computed
        # (a missing or infinite draw) is a problem of its own
        columns = ["ess_bulk", "ess_tail"] + (["r_hat"] if self.n_chains >= 2 else [])
        undefined = t.index[t[columns].isna().any(axis=1)]
        if len(undefined):
            out.append(
                f"R-hat or ESS undefined (missing or infinite draws) for {len(undefined)} "
                "parameter(s): " + ", ".join(map(str, undefined[:3]))
            )
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions out of {self.n_samples} draws")
        if self.max_depth_hits:
            out.append(
                f"{self.max_depth_hits} of {self.n_samples} transitions stopped at the maximum "
                "tree depth (the sampler could not finish its trajectories)"
            )
        low_bfmi = [b for b in self.bfmi if b < BFMI_MIN]
        if low_bfmi:
            out.append(f"E-BFMI {min(low_bfmi):.2f} (< {BFMI_MIN}) in {len(low_bfmi)} chain(s)")
        return out

    @property
    def converged(self) -> bool:
        """True when every check passes."""
        return not self.problems

    def verdict(self) -> str:
        """A short report: 'converged' with the key figures, or every problem and the fix."""
        rhat = f"max R-hat {self.max_rhat:.3f}" if self.n_chains >= 2 else "R-hat n/a (1 chain)"
        figures = (
            f"{rhat}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"min tail ESS {self.min_ess_tail:.0f}, {self.divergences} divergences"
        )
        if self.converged:
            return f"converged: {figures}"
        return (
            "NOT CONVERGED: "
            + "; ".join(self.problems)
            + ". Do not report these estimates yet: run more draws and tuning (--draws/--tune), "
            "more chains, or simplify the model; divergences call for stronger priors on the "
            "group standard deviations or another parameterisation "
            "([priors.parameterization])."
        )


def diagnose(tree: xr.DataTree, *, warn: bool = True) -> Diagnostics:
    """Compute diagnostics of a sampled ``DataTree`` and warn loudly when anything is off."""
    posterior = tree["posterior"].to_dataset()
    names = [str(v) for v in posterior.data_vars if not is_auxiliary(str(v))]
    labels, draws = scalar_draws(posterior, names)
    # constant draws (the unit diagonal of a correlation matrix, 1 up to rounding) have no
    # R-hat or ESS; a scalar with a missing draw stays, its statistics undefined
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        constant = np.nanstd(draws, axis=(0, 1)) < 1e-9
    r_hat, bulk, tail = convergence(draws)
    table = pd.DataFrame(
        {"r_hat": r_hat, "ess_bulk": bulk, "ess_tail": tail},
        index=pd.Index(labels, name="parameter"),
    )[~constant]
    stats = tree["sample_stats"].to_dataset()
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    n_samples = int(posterior.sizes["chain"] * posterior.sizes["draw"])
    bfmi: tuple[float, ...] = ()
    if "energy" in stats:
        energy = stats["energy"].transpose("chain", "draw").values
        bfmi = tuple(
            float(np.mean(np.diff(e) ** 2) / np.var(e)) if np.var(e) > 0 else float("nan")
            for e in energy
        )
    depth = next((stats[v] for v in _MAX_DEPTH if v in stats), None)
    result = Diagnostics(
        table,
        divergences,
        n_samples,
        bfmi,
        n_chains=int(posterior.sizes["chain"]),
        max_depth_hits=int(depth.sum()) if depth is not None else 0,
        partial=tree.attrs.get("opinionmap_partial"),
    )
    if warn and not result.converged:
        warnings.warn(result.verdict(), ConvergenceWarning, stacklevel=2)
    return result


def warn_if_unconverged(result: object, what: str) -> None:
    """Warn (:class:`ConvergenceWarning`) that ``what`` uses a fit that did not converge."""
    diagnostics = getattr(result, "diagnostics", None)
    if isinstance(diagnostics, Diagnostics) and not diagnostics.converged:
        warnings.warn(
            f"{what} from a fit that did not converge: {diagnostics.verdict()}",
            ConvergenceWarning,
            stacklevel=3,
        )


def scalar_draws(posterior: xr.Dataset, names: list[str]) -> tuple[list[str], np.ndarray]:
    """The draws of every scalar of the variables ``names``: labels and (chain, draw, scalar).

    Each variable's elements in C order, labelled ``name[label,label]``.
    """
    labels: list[str] = []
    blocks: list[np.ndarray] = []
    for name in names:
        da = posterior[name].transpose("chain", "draw", ...)
        labels.extend(_labels(da, name))
        blocks.append(np.asarray(da.values, dtype=float).reshape(da.shape[0], da.shape[1], -1))
    if not blocks:
        return labels, np.empty((posterior.sizes["chain"], posterior.sizes["draw"], 0))
    return labels, np.concatenate(blocks, axis=2)


def _labels(da: xr.DataArray, name: str) -> list[str]:
    """``name[label,label]`` for every element of ``da`` but its chain and draw, in C order."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [name]
    return [
        f"{name}[{','.join(map(str, label))}]"
        for label in product(*(da[d].values.tolist() for d in dims))
    ]


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat of each scalar in ``draws`` (chain, draw, ...).

    The larger of the bulk and the folded (tail) R-hat of Vehtari et al. (2021), as
    ``arviz_stats.rhat`` computes it one scalar at a time, here for all at once. NaN
    where a scalar has a missing draw, or with fewer than 2 chains or 4 draws.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> mixed = rng.normal(size=(4, 500, 2))
    >>> stuck = mixed + np.arange(4)[:, None, None]  # each chain around its own value
    >>> bool(rhat(mixed).max() < 1.01), bool(rhat(stuck).min() > 1.5)
    (True, True)
    """
    return convergence(draws)[0]


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of each scalar in ``draws`` (chain, draw, ...).

    The ESS of the rank-normalised split chains (Vehtari et al. 2021), as
    ``arviz_stats.ess(method="bulk")``; NaN where a scalar has a missing draw or with
    fewer than 4 draws.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> independent = rng.normal(size=(4, 1000))
    >>> sticky = np.cumsum(independent, axis=1)  # a random walk
    >>> bool(ess_bulk(independent) > 3000), bool(ess_bulk(sticky) < 100)
    (True, True)
    """
    return convergence(draws)[1]


def ess_tail(draws: np.ndarray, probs: tuple[float, float] = TAIL_PROBS) -> np.ndarray:
    """Tail effective sample size of each scalar in ``draws`` (chain, draw, ...).

    The smaller ESS of the indicators of a draw lying below the ``probs`` quantiles
    (5% and 95%: Vehtari et al. 2021), as ``arviz_stats.ess(method="tail",
    prob=probs)``; NaN where a scalar has a missing draw or with fewer than 4 draws.
    """
    return convergence(draws, probs)[2]


def convergence(
    draws: np.ndarray, probs: tuple[float, float] = TAIL_PROBS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat, bulk ESS and tail ESS (:func:`rhat`, :func:`ess_bulk`, :func:`ess_tail`) at once.

    Each scalar's draws are ranked once for its bulk R-hat and bulk ESS. ``draws`` is
    (chain, draw, ...); each result has the shape of the ``...``.
    """
    draws = np.asarray(draws, dtype=float)
    if draws.ndim < 2:
        raise ValueError(f"draws must be (chain, draw, ...), got shape {draws.shape}")
    n_chains, n_draws = draws.shape[:2]
    shape = draws.shape[2:]
    flat = np.moveaxis(draws.reshape(n_chains, n_draws, -1), 2, 0)
    out = np.full((3, flat.shape[0]), np.nan)
    if n_draws >= 4:
        with np.errstate(divide="ignore", invalid="ignore"):
            for start in range(0, flat.shape[0], _CHUNK):
                chunk = np.ascontiguousarray(flat[start : start + _CHUNK])
                valid = ~np.isnan(chunk).any(axis=(1, 2))
                if valid.any():
                    out[:, start : start + len(chunk)][:, valid] = _statistics(chunk[valid], probs)
    r_hat, bulk, tail = (row.reshape(shape) for row in out)
    return r_hat, bulk, tail


def _statistics(x: np.ndarray, probs: tuple[float, float]) -> np.ndarray:
    """R-hat, bulk and tail ESS of (scalar, chain, draw) draws without missing values."""
    split = _split(x)
    z = _z_scale(split)
    bulk = _ess(z)
    if x.shape[1] >= 2:
        median = np.median(split.reshape(split.shape[0], -1), axis=1)
        folded = _rhat_of(_z_scale(np.abs(split - median[:, None, None])))
        r_hat = _rhat_of(z)
        r_hat = np.where(folded > r_hat, folded, r_hat)
    else:  # R-hat compares chains
        r_hat = np.full(len(x), np.nan)
    quantiles = np.quantile(x.reshape(x.shape[0], -1), probs, axis=1)
    below_low = _ess(_split(x <= quantiles[0][:, None, None]).astype(float))
    below_high = _ess(_split(x <= quantiles[1][:, None, None]).astype(float))
    tail = np.where(below_high < below_low, below_high, below_low)
    return np.stack((r_hat, bulk, tail))


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and last halves: (scalar, 2 x chain, draw // 2)."""
    half = x.shape[2] // 2
    return np.concatenate((x[:, :, :half], x[:, :, x.shape[2] - half :]), axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Draws replaced by the normal quantiles of their average ranks (Blom's offset 3/8)."""
    from scipy.special import ndtri

    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    order = np.argsort(flat, axis=1)
    ordered = np.take_along_axis(flat, order, axis=1)
    # tied draws share the mean of their ranks (scipy.stats.rankdata's "average")
    position = np.broadcast_to(np.arange(n), flat.shape)
    starts = np.ones(flat.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(flat.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(flat.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=1)
    return ndtri((ranks - 3 / 8) / (n - 2 * 3 / 8 + 1)).reshape(x.shape)


def _rhat_of(x: np.ndarray) -> np.ndarray:
    """The potential scale reduction of (scalar, chain, draw) draws."""
    n = x.shape[2]
    between = n * np.var(np.mean(x, axis=2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of (scalar, chain, draw) draws: Geyer's initial monotone sequence (Stan's).

    Autocovariances by FFT, averaged over chains, then for each scalar the sums of
    consecutive pairs of autocorrelations until the first that is not positive,
    made monotone; step for step ``arviz_stats``'s ``_ess``, over all scalars at once.
    """
    from scipy.fft import next_fast_len

    n_scalars, n_chains, n = x.shape
    size = n_chains * n
    out = np.full(n_scalars, float(size))
    varying = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) >= np.finfo(float).resolution
    if not varying.any():
        return out
    x = x[varying]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=2, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=2)
    spectrum *= np.conjugate(spectrum)
    acov = np.fft.irfft(spectrum, n=m, axis=2)[:, :, :n] / n
    mean_acov = acov.mean(axis=1)
    mean_var = mean_acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=2), axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    k = len(x)
    rows = np.arange(k)
    rho_t = np.zeros((k, n))
    rho_t[:, 0] = 1.0
    rho_t[:, 1] = rho[:, 1]
    even = np.ones(k)
    odd = rho[:, 1].copy()
    t_end = np.ones(k, dtype=int)
    # Geyer's initial positive sequence: pairs of lags while their sum stays positive
    active = np.ones(k, dtype=bool)
    t = 1
    while t < n - 3:
        active &= (even + odd) > 0.0
        if not active.any():
            break
        even = np.where(active, rho[:, t + 1], even)
        odd = np.where(active, rho[:, t + 2], odd)
        keep = active & (even + odd >= 0)
        rho_t[keep, t + 1] = even[keep]
        rho_t[keep, t + 2] = odd[keep]
        t_end[active] = t + 2
        t += 2
    max_t = t_end - 2
    positive = even > 0
    rho_t[rows[positive], max_t[positive] + 1] = even[positive]
    # Geyer's initial monotone sequence: no pair larger than the one before
    t = 1
    while t <= max_t.max() - 2:
        inside = t <= max_t - 2
        before = rho_t[:, t - 1] + rho_t[:, t]
        lower = inside & (rho_t[:, t + 1] + rho_t[:, t + 2] > before)
        rho_t[lower, t + 1] = before[lower] / 2.0
        rho_t[lower, t + 2] = rho_t[lower, t + 1]
        t += 2
    upto = np.arange(n)[None, :] <= max_t[:, None]
    tau = -1.0 + 2.0 * np.where(upto, rho_t, 0.0).sum(axis=1) + rho_t[rows, max_t + 1]
    tau = np.maximum(tau, 1 / np.log10(size))
    ess = size / tau
    ess[np.isnan(rho_t).any(axis=1)] = np.nan
    out[varying] = ess
    return out
