r"""Direct estimates: raw and design-weighted shares by area, with design-based errors.

The comparison every MRP table should carry (as emdi and the R ``survey``
package users expect): for each area, the unweighted share of each category
and the design-weighted (Hajek) share with its linearised standard error

.. math::

    \hat p = \frac{\sum_i w_i y_i}{\sum_i w_i}, \qquad
    \widehat{\mathrm{Var}}(\hat p) = \frac{n}{n-1}
    \frac{\sum_i w_i^2 (y_i - \hat p)^2}{(\sum_i w_i)^2},

which is what ``survey::svymean`` gives for a design with weights only (no
strata or clusters; with-replacement approximation). The unweighted share's
standard error is the binomial ``sqrt(p (1 - p) / n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from opinionmap.design import as_frame
from opinionmap.errors import SurveyError, format_values
from opinionmap.summaries import interval_prob

if TYPE_CHECKING:
    from opinionmap.design import SurveyData

__all__ = ["direct_estimates"]


def direct_estimates(
    survey: SurveyData,
    outcome: str,
    *,
    by: str | Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    missing: Sequence[str] | None = None,
    weight: str | None = None,
    prob: float | None = None,
) -> pd.DataFrame:
    """Raw and design-weighted shares of each category by area.

    Parameters
    ----------
    survey
        A :class:`~opinionmap.Survey` (its codebook gives the categories, missing
        codes and weight column) or a DataFrame.
    outcome
        The question.
    by
        Column(s) to estimate by (default: the survey codebook's area).
    categories
        Categories to report (default: the codebook's levels, or the observed
        values). Responses outside them (missing codes) are dropped first, as the
        model does.
    missing
        Codes to drop (default: the codebook's missing codes for ``outcome``).
    weight
        Design-weight column (default: the codebook's weight; none means all 1).
    prob
        Width of the normal-approximation interval around the weighted share
        (default :func:`~opinionmap.summaries.interval_prob`).

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``category``, ``n_respondents``, ``raw``, ``raw_se``,
        ``weighted``, ``weighted_se``, ``lower``, ``upper`` (clipped to [0, 1]),
        ``n_effective`` (Kish's effective sample size of the area).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"area": ["a", "a", "a", "b"], "y": ["x", "z", "x", "z"],
    ...                    "w": [1.0, 3.0, 1.0, 2.0]})
    >>> t = direct_estimates(df, "y", by="area", weight="w")
    >>> t.loc[(t.area == "a") & (t.category == "x"), ["raw", "weighted"]].round(3).values.tolist()
    [[0.667, 0.4]]
    """
    df, _ = as_frame(survey)
    codebook = getattr(survey, "codebook", None)
    if by is None:
        if codebook is None or codebook.area is None:
            raise SurveyError(
                "direct estimates: which column is the area? Pass by=... (the survey has no "
                "codebook area)."
            )
        by = codebook.area.name
    by_cols = [by] if isinstance(by, str) else list(by)
    absent = [c for c in [outcome, *by_cols] if c not in df.columns]
    if absent:
        raise SurveyError(
            f"direct estimates: column(s) {format_values(absent)} not in the survey "
            f"(columns: {format_values(list(df.columns), limit=30)})."
        )
    variable = codebook[outcome] if codebook is not None and outcome in codebook.names else None
    if missing is None:
        missing = tuple(variable.missing) if variable is not None else ()
    if weight is None and codebook is not None and codebook.weight is not None:
        weight = codebook.weight.name
    values = df[outcome].astype(str)
    keep = ~values.isin(list(missing))
    if categories is None:
        if variable is not None and variable.levels:
            categories = [str(v) for v in variable.levels]
        else:
            categories = sorted(set(values[keep]))
    keep &= values.isin(list(categories))
    data = df.loc[keep, by_cols].astype(str).copy()
    data["_y"] = pd.Categorical(values[keep], categories=list(categories))
    w = _weights(df.loc[keep], weight)
    data["_w"] = w
    z = norm.ppf(0.5 + interval_prob(prob) / 2)
    rows = []
    for key, group in data.groupby(by_cols, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        rows += [(*key, *row) for row in _area_rows(group, categories, z)]
    columns = [
        *by_cols,
        "category",
        "n_respondents",
        "raw",
        "raw_se",
        "weighted",
        "weighted_se",
        "lower",
        "upper",
        "n_effective",
    ]
    return pd.DataFrame(rows, columns=columns)


def _weights(rows: pd.DataFrame, weight: str | None) -> np.ndarray:
    """The design weights of the rows (all 1 without a weight column), checked."""
    if weight is None:
        return np.ones(len(rows))
    if weight not in rows.columns:
        raise SurveyError(f"direct estimates: no weight column {weight!r} in the survey.")
    w = pd.to_numeric(rows[weight], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(w).all() or (w < 0).any():
        raise SurveyError(
            f"direct estimates: weight column {weight!r} has missing, non-numeric or "
            "negative values."
        )
    return w


def _area_rows(group: pd.DataFrame, categories: Sequence[str], z: float) -> list[tuple[Any, ...]]:
    """One area's row per category: n, raw share and SE, weighted share, SE, interval, Kish n."""
    n = len(group)
    wg = group["_w"].to_numpy()
    total = wg.sum()
    n_eff = total**2 / (wg**2).sum() if total > 0 else 0.0
    rows = []
    for category in categories:
        y = (group["_y"] == category).to_numpy(dtype=float)
        raw = y.mean()
        p = float((wg * y).sum() / total) if total > 0 else np.nan
        var = n / (n - 1) * float((wg**2 * (y - p) ** 2).sum()) / total**2 if n > 1 else np.nan
        se = float(np.sqrt(var))
        rows.append(
            (
                category,
                n,
                raw,
                float(np.sqrt(raw * (1 - raw) / n)),
                p,
                se,
                max(0.0, p - z * se),
                min(1.0, p + z * se),
                n_eff,
            )
        )
    return rows
