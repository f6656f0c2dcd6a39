"""Predictive checks: observed vs replicated category shares, from the posterior or the prior.

Overall and by every categorical predictor and grouping factor, the observed
share of each response category is set beside the distribution of the same
share in data replicated from the posterior (each cell's respondents redrawn
from its category probabilities). An observed share outside its replicated
interval points to a misfit for that group.

:func:`prior_check` does the same with draws from the prior, before any fitting:
what the priors imply on the probability scale. An observed share far outside the
prior's interval means a prior too narrow to reach the data; a prior that puts
most cells at near-certain answers (``extreme`` in the table's attributes) is
wider than anyone believes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from opinionmap._io import save_figure
from opinionmap.diagnostics import warn_if_unconverged
from opinionmap.errors import format_values
from opinionmap.predict import Draws, iter_probabilities
from opinionmap.summaries import interval_prob

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from opinionmap.design import Design, SurveyData
    from opinionmap.results import Fitted
    from opinionmap.spec import ModelSpec

__all__ = ["PriorDraws", "plot_ppc", "ppc", "prior_check", "prior_draws"]

# a cell prediction whose most likely answer has at least this probability is "extreme"
EXTREME = 0.99


@dataclass(frozen=True)
class PriorDraws:
    """Draws from a model's prior, shaped like a fit's posterior (``chain``, ``draw``, ...)."""

    design: Design
    posterior: xr.Dataset

    def draws(self) -> Draws:
        """The parameters flattened over (chain, draw)."""
        return Draws.from_posterior(self.posterior, self.design)


def prior_draws(
    spec: ModelSpec, data: SurveyData, *, draws: int = 500, random_seed: int = 0
) -> PriorDraws:
    """Draw every parameter of ``spec``'s model from its prior (no fitting, no likelihood).

    The model is built on ``data`` (its cells, levels and predictor scales, which the
    autoscaled priors depend on). Ordinal cutpoints are sorted in each draw: the
    prior of ordered cutpoints is that of sorted independent normals.
    """
    import pymc as pm

    from opinionmap.design import build_design
    from opinionmap.model import build_model

    design = build_design(spec, data)
    log = logging.getLogger("pymc")
    level = log.level
    log.setLevel(logging.WARNING)  # not PyMC's "Sampling: [...]" line
    try:
        with build_model(design), warnings.catch_warnings():
            # the likelihood is a Potential, which prior sampling leaves out: as it should
            warnings.filterwarnings("ignore", message="The effect of Potentials")
            tree = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
    finally:
        log.setLevel(level)
    prior = tree["prior"].to_dataset()
    if "cutpoints" in prior:
        axis = prior["cutpoints"].get_axis_num("cutpoint")
        prior["cutpoints"] = prior["cutpoints"].copy(data=np.sort(prior["cutpoints"], axis=axis))
    return PriorDraws(design, prior)


def prior_check(
    spec: ModelSpec,
    data: SurveyData,
    *,
    draws: int = 500,
    by: list[str] | None = None,
    prob: float | None = None,
    random_seed: int = 0,
) -> pd.DataFrame:
    """What the priors imply: observed shares beside shares replicated from the prior.

    The table of :func:`ppc`, with the prior in place of the posterior (columns
    ``replicated_mean``, ``lower``, ``upper`` are the prior's). Its attributes also
    hold ``extreme``: the share of (draw, cell) predictions whose most likely answer
    has probability at least 0.99, a sign of priors wider than anyone believes.

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> spec = om.read_spec("models/presence_russia.toml")  # doctest: +SKIP
    >>> table = prior_check(spec, om.read_survey(spec.data))  # doctest: +SKIP
    >>> table[table["factor"] == "all"]  # doctest: +SKIP
    """
    prior = prior_draws(spec, data, draws=draws, random_seed=random_seed)
    table = ppc(prior, by=by, data=data, prob=prob, n_draws=draws, random_seed=random_seed)
    top = np.concatenate(
        [p.max(axis=2).ravel() for _, p in iter_probabilities(prior.draws(), prior.design)]
    )
    table.attrs["extreme"] = float((top >= EXTREME).mean())
    table.attrs["source"] = "prior"
    return table


def ppc(
    result: Fitted,
    *,
    by: list[str] | None = None,
    data: SurveyData | None = None,
    prob: float | None = None,
    n_draws: int = 400,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Observed vs replicated category shares, overall and by each factor.

    Parameters
    ----------
    result
        A :class:`~opinionmap.results.FitResult`.
    by
        Factors to break down by (default: every categorical predictor and
        grouping factor of the model). With ``data``, any column of the survey,
        including ones the model leaves out (a check for omitted variables).
    data
        The survey the model was fitted to; needed only for ``by`` columns that
        are not in the model.
    prob
        Width of the replicated interval (default
        :func:`~opinionmap.summaries.interval_prob`).
    n_draws
        Posterior draws used (thinned evenly); replication noise is included.
    random_seed
        Seed of the replication, so the table is reproducible.

    Returns
    -------
    pandas.DataFrame
        Columns ``factor``, ``level``, ``category``, ``n`` (respondents),
        ``observed``, ``replicated_mean``, ``lower``, ``upper``, ``outside``
        (observed share outside the interval). ``factor == "all"`` is overall.
    """
    prob = interval_prob(prob)
    warn_if_unconverged(result, "a posterior predictive check")
    design = result.design
    draws = result.draws()
    step = max(1, draws.n_samples // n_draws)
    thinned = draws.subset(slice(0, None, step))
    rng = np.random.default_rng(random_seed)
    model_factors = [c.name for c in design.codings if c.kind == "categorical"]
    factors = list(by) if by is not None else model_factors
    groupings = [("all", np.zeros(design.n_respondents, dtype=np.int64), ["all"])]
    extra = [f for f in factors if f not in model_factors]
    frame = _respondent_frame(result, data, extra) if extra else None
    for f in factors:
        if f in model_factors:
            column = design.cells[f]
            codes = column.cat.codes.to_numpy().astype(np.int64)[design.respondent_cell]
            labels = [str(v) for v in column.cat.categories]
        else:
            assert frame is not None
            values = pd.Categorical(frame[f].astype(str))
            codes = values.codes.astype(np.int64)
            labels = [str(v) for v in values.categories]
        groupings.append((f, codes, labels))
    k = len(design.categories)
    observed_y = design.respondent_response
    # replicated responses per respondent, tallied by group: (S, groups, K) per grouping
    tallies = [np.zeros((0, len(labels), k)) for _, _, labels in groupings]
    for _, p in iter_probabilities(thinned, design, chunk_draws=100):
        cdf = np.cumsum(p[:, design.respondent_cell, :], axis=2)
        u = rng.random((p.shape[0], design.n_respondents, 1))
        y_rep = np.minimum((cdf < u).sum(axis=2), k - 1)
        for i, (_, codes, labels) in enumerate(groupings):
            key = codes[None, :] * k + y_rep
            counts = np.stack([np.bincount(row, minlength=len(labels) * k) for row in key]).reshape(
                p.shape[0], len(labels), k
            )
            tallies[i] = np.concatenate([tallies[i], counts], axis=0)
    alpha = (1 - prob) / 2
    rows = []
    for (name, codes, labels), tally in zip(groupings, tallies, strict=True):
        obs = np.bincount(codes * k + observed_y, minlength=len(labels) * k).reshape(-1, k)
        for j, label in enumerate(labels):
            n = int(obs[j].sum())
            if n == 0:
                continue
            rep = tally[:, j, :] / n
            lower, upper = np.quantile(rep, [alpha, 1 - alpha], axis=0)
            for c, category in enumerate(design.categories):
                rows.append(
                    (name, label, category, n, obs[j, c] / n, rep[:, c].mean(), lower[c], upper[c])
                )
    table = pd.DataFrame(
        rows,
        columns=[
            "factor",
            "level",
            "category",
            "n",
            "observed",
            "replicated_mean",
            "lower",
            "upper",
        ],
    )
    table["outside"] = (table["observed"] < table["lower"]) | (table["observed"] > table["upper"])
    table.attrs["prob"] = prob
    return table


def _respondent_frame(result: Fitted, data: SurveyData | None, columns: list[str]) -> pd.DataFrame:
    """The survey rows the model used, in the design's respondent order."""
    from opinionmap.design import DesignError, as_frame

    design = result.design
    if data is None:
        raise DesignError(
            f"ppc: {format_values(columns)} are not in the model; pass data=<the survey> to "
            "break the check down by columns the model leaves out."
        )
    df, _ = as_frame(data)
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise DesignError(f"ppc: the data has no column(s) {format_values(absent)}.")
    outcome = df[design.spec.outcome].astype(str)
    used = df.loc[~outcome.isin(design.spec.missing)]
    if len(used) != design.n_respondents:
        raise DesignError(
            f"ppc: the data has {len(used)} usable respondents but the model was fitted to "
            f"{design.n_respondents}; pass the survey the model was fitted to."
        )
    return used.reset_index(drop=True)


def prob_label(table: pd.DataFrame) -> str:
    """The interval width stored in a ppc table's attrs, as text (e.g. ``"90%"``)."""
    return f"{interval_prob(table.attrs.get('prob')):.0%}"


def plot_ppc(table: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> Figure:
    """Plot a :func:`ppc` table: one panel per factor, observed dots on replicated intervals.

    Returns the matplotlib figure; with ``path`` (``.png``, ``.svg`` or ``.pdf``)
    it is also written, atomically.
    """
    import matplotlib.pyplot as plt

    factors = list(dict.fromkeys(table["factor"]))
    categories = list(dict.fromkeys(table["category"]))
    heights = [max(1, table.loc[table["factor"] == f, "level"].nunique()) for f in factors]
    fig, axes = plt.subplots(
        len(factors),
        1,
        figsize=(7, 1.0 + 0.32 * sum(heights) * len(categories) / 2 + 0.6 * len(factors)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    colours = plt.get_cmap("tab10")
    for ax, factor in zip(axes[:, 0], factors, strict=True):
        sub = table[table["factor"] == factor]
        levels = list(dict.fromkeys(sub["level"]))
        width = 0.8 / len(categories)
        for k, category in enumerate(categories):
            rows = sub[sub["category"] == category].set_index("level").reindex(levels)
            y = np.arange(len(levels)) + (k - (len(categories) - 1) / 2) * width
            ax.hlines(y, rows["lower"], rows["upper"], color=colours(k), lw=3, alpha=0.45)
            ax.plot(rows["observed"], y, "o", color=colours(k), ms=4, label=str(category))
        counts = sub.drop_duplicates("level").set_index("level")["n"].reindex(levels)
        ax.set_yticks(np.arange(len(levels)), [f"{lv} (n={int(n)})" for lv, n in counts.items()])
        ax.invert_yaxis()
        ax.set_title(f"by {factor}" if factor != "all" else "overall", loc="left", fontsize=10)
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        title=f"observed share (dot) and {table.attrs.get('source', 'replicated')} "
        f"{prob_label(table)} interval (bar)",
        fontsize=8,
        title_fontsize=8,
        ncol=len(categories),
        loc="upper center",
    )
    axes[-1, 0].set_xlabel("share of respondents")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    if path is not None:
        save_figure(fig, path)
    return fig
