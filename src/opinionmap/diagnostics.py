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

__all__ = ["ConvergenceWarning", "Diagnostics", "diagnose", "warn_if_unconverged"]

# sample statistics flagging a transition that stopped at the maximum tree depth
# (nutpie; PyMC and NumPyro through PyMC)
_MAX_DEPTH = ("maxdepth_reached", "reached_max_treedepth")
RHAT_MAX = 1.01
ESS_MIN = 400.0
BFMI_MIN = 0.3


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
    from arviz_stats import ess
    from arviz_stats import rhat as rank_rhat

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # constant draws (the unit diagonal of a correlation matrix, 1 up to rounding) have no
        # R-hat or ESS
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = rank_rhat(posterior, var_names=names)
        ess_bulk = ess(posterior, var_names=names, method="bulk")
        ess_tail = ess(posterior, var_names=names, method="tail")
    rows = []
    for name in names:
        r = _flatten(rhat[name], name)
        b = _flatten(ess_bulk[name], name)
        t = _flatten(ess_tail[name], name)
        for label in r:
            rows.append((label, r[label], b[label], t[label]))
    table = pd.DataFrame(rows, columns=["parameter", "r_hat", "ess_bulk", "ess_tail"]).set_index(
        "parameter"
    )
    constant = [
        label
        for name in names
        for label, value in _flatten(posterior[name].std(("chain", "draw")), name).items()
        if value < 1e-9
    ]
    table = table.drop(index=constant)
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


def _flatten(da: xr.DataArray, name: str) -> dict[str, float]:
    """``{"name[label,label]": value}`` for every element of ``da``, in C order."""
    if da.ndim == 0:
        return {name: float(da)}
    labels = product(*(da[d].values.tolist() for d in da.dims))
    return {
        f"{name}[{','.join(map(str, label))}]": float(value)
        for label, value in zip(labels, da.values.ravel(), strict=True)
    }
