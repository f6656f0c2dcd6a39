"""Summaries of posterior draws: the interval width and tidy tables.

Every interval opinionmap prints or writes is an equal-tailed posterior interval
whose width, when not given, is ArviZ's ``rcParams["stats.ci_prob"]`` read at
call time (0.89 unless changed), so one setting changes it everywhere::

    from arviz_base import rcParams
    rcParams["stats.ci_prob"] = 0.9
"""

from __future__ import annotations

import warnings

import pandas as pd
import xarray as xr

from opinionmap.errors import OpinionmapError

__all__ = ["interval_prob", "summarise_draws"]


def interval_prob(prob: float | None = None) -> float:
    """The interval width to use: ``prob``, else ArviZ's ``rcParams["stats.ci_prob"]``.

    Examples
    --------
    >>> interval_prob(0.8)
    0.8
    >>> from arviz_base import rc_context
    >>> with rc_context({"stats.ci_prob": 0.95}):
    ...     interval_prob()
    0.95
    """
    if prob is None:
        from arviz_base import rcParams

        prob = rcParams["stats.ci_prob"]
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0.0 < prob < 1.0:
        raise OpinionmapError(
            f"interval width prob must lie strictly between 0 and 1, got {prob!r}."
        )
    return float(prob)


def summarise_draws(draws: xr.DataArray, *, prob: float | None = None) -> pd.DataFrame:
    """Tidy table of draws: one row per cell of the non-sample dims.

    Columns: the dims, ``mean``, ``sd``, ``lower``, ``upper`` (equal-tailed
    interval at ``prob``, default :func:`interval_prob`).

    Examples
    --------
    >>> import numpy as np
    >>> da = xr.DataArray(np.arange(8.0).reshape(2, 4), dims=("chain", "draw"))
    >>> summarise_draws(da, prob=0.5).round(3).to_dict("records")
    [{'mean': 3.5, 'sd': 2.449, 'lower': 1.75, 'upper': 5.25}]
    """
    prob = interval_prob(prob)
    sample = ("chain", "draw")
    alpha = (1 - prob) / 2
    # cells without draws (shares of an empty area) summarise to NaN, quietly
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom", RuntimeWarning)
        stats = xr.Dataset(
            {
                "mean": draws.mean(sample),
                "sd": draws.std(sample, ddof=1),
                "lower": draws.quantile(alpha, sample).drop_vars("quantile"),
                "upper": draws.quantile(1 - alpha, sample).drop_vars("quantile"),
            }
        )
    if not stats["mean"].dims:
        return pd.DataFrame([{k: float(stats[k]) for k in ("mean", "sd", "lower", "upper")}])
    return stats.to_dataframe().reset_index()
