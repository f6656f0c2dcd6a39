"""Poststratification: posterior draws of population shares by area or group.

For every posterior draw, every frame cell's category probabilities are
weighted by the cell's population and summed within each cell of ``by`` (and
over the whole population). The result keeps ``chain`` and ``draw``, so any
summary, contrast or probability ("P(share wanting less China is higher among
ethnic Kazakhs than Russians)") is computed from the full posterior.

Frame rows equal on every model variable and ``by`` column are merged
(populations summed), coded with the model's levels and sorted by output group.
A compiled kernel (:mod:`opinionmap._kernel`, numba) then computes, draw by draw
in parallel, each cell's linear predictors, its category probabilities and their
population-weighted sums by group in one pass, never holding draws x cells x
categories; it covers categorical, ordinal, bernoulli and hurdle models, both
links, and every kind of term. The NumPy path
(:func:`~opinionmap.predict.linear_predictor` and
:func:`~opinionmap.predict.probabilities` over blocks of draws x cells x
categories, summed as contiguous runs) gives the same estimates to rounding; it
takes any model the kernel does not cover, and every model when the environment
variable ``OPINIONMAP_POSTSTRATIFY_KERNEL`` is ``0``.

Memory is bounded whatever the frame size: frame cells and draws are processed
in chunks (the NumPy path holds at most ``chunk_values`` draws x cells x
categories at once), and a dask DataFrame frame is processed
partition by partition as dask tasks, so the same call runs on a
``dask.distributed`` cluster when one is the active scheduler.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap.design import (
    NEW_LEVELS,
    Design,
    DesignError,
    GroupIndex,
    NewData,
    NewLevels,
    level_codes,
)
from opinionmap.diagnostics import warn_if_unconverged
from opinionmap.errors import FrameError, did_you_mean, format_values, near_misses
from opinionmap.frame import Frame
from opinionmap.frameless import (
    FramelessModel,
    check_frame_cells,
    fit_frameless,
    frameless_variable,
    pair_draws,
)
from opinionmap.predict import Draws, linear_predictor, probabilities
from opinionmap.summaries import interval_prob, summarise_draws

if TYPE_CHECKING:
    import dask.dataframe as dd

    from opinionmap._kernel import Kernel
    from opinionmap.results import Fitted

# a poststratification frame: validated (it knows its count column), in memory, or in dask
type FrameData = Frame | pd.DataFrame | dd.DataFrame

__all__ = [
    "ANSWERING",
    "EVERYONE",
    "MRP",
    "Contrast",
    "CoverageWarning",
    "Estimates",
    "poststratify",
]
# values held at once per chunk: draws x cells x categories
CHUNK_VALUES = 8_000_000


@dataclass(frozen=True)
class Contrast:
    """Posterior of a difference in shares between two groups."""

    difference: xr.DataArray  # (chain, draw)
    a: Mapping[str, str]
    b: Mapping[str, str]
    category: str

    @property
    def prob_greater(self) -> float:
        """Posterior probability that group ``a``'s share exceeds group ``b``'s."""
        return float((self.difference > 0).mean())

    def summary(self, prob: float | None = None) -> dict[str, float]:
        """Mean, sd, equal-tailed interval of the difference and P(a > b).

        ``prob``: interval width (default :func:`~opinionmap.summaries.interval_prob`).
        """
        alpha = (1 - interval_prob(prob)) / 2
        values = self.difference.values.reshape(-1)
        lower, upper = np.quantile(values, [alpha, 1 - alpha])
        return {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)),
            "lower": float(lower),
            "upper": float(upper),
            "prob_greater": self.prob_greater,
        }


ANSWERING = "of those answering"
EVERYONE = "of everyone"
MRP = "MRP: the frame has every variable the model uses"


class CoverageWarning(UserWarning):
    """Areas or groups the estimates cannot cover: no population in the frame, or not in it."""


@dataclass(frozen=True)
class Estimates:
    """Poststratified shares, as posterior draws.

    Attributes
    ----------
    draws
        Dims ``(chain, draw, *by, category)``; each draw sums to one over
        ``category`` in every ``by`` cell that has population.
    overall
        The whole population, dims ``(chain, draw, category)``.
    population
        Population of each ``by`` cell (the sum of the frame's weights).
    n_respondents
        Survey respondents in each ``by`` cell (NaN when ``by`` uses columns the
        model does not, whose respondents the fit does not record).
    estimand
        :data:`EVERYONE` when every answer is a category of the model, or
        :data:`ANSWERING` when the spec drops missing codes (``dropped``) before
        fitting, so that shares are of those who gave a substantive answer.
    dropped
        The outcome codes left out of the shares (the spec's ``[outcome] missing``).
    converged
        Whether the fit passed the convergence checks (``None``: it has no diagnostics).
    verdict
        The fit's convergence verdict, when it has one.
    new_levels
        Per grouping term, the frame levels the survey never saw whose effects were
        drawn from the fitted distribution (``new_levels="sample"``).
    merged
        The rare answers the model merged into its last category (the spec's
        ``[outcome] merge_below``): their shares are that category's.
    hurdle
        A hurdle model's non-answer code (its last category), whose shares
        :meth:`answering` takes out; ``None`` without a hurdle.
    method
        :data:`MRP`, or how the frame was extended by a survey variable it lacks
        (:mod:`opinionmap.frameless`).
    """

    draws: xr.DataArray
    overall: xr.DataArray
    by: tuple[str, ...]
    population: pd.Series
    n_respondents: pd.Series
    estimand: str = EVERYONE
    dropped: tuple[str, ...] = ()
    converged: bool | None = None
    verdict: str | None = None
    new_levels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    merged: tuple[str, ...] = ()
    hurdle: str | None = None
    method: str = MRP

    def answering(self) -> Estimates:
        """The shares of those who give an ordered answer: a hurdle model's code taken out.

        Each draw's shares of the answers divided by one minus the code's share, which
        is exactly the population-weighted share among those answering.

        Examples
        --------
        >>> est = poststratify(result, frame, by=["region"])  # doctest: +SKIP
        >>> est.answering().summary()  # of those answering  # doctest: +SKIP
        """
        if self.hurdle is None:
            raise DesignError(
                "these estimates have no hurdle: they are "
                f"{self.estimand}{self._dropped_note()} already. Shares of those answering "
                "come from a model with [outcome] hurdle = '<non-answer code>'."
            )
        answers = [c for c in self.draws["category"].values if c != self.hurdle]

        def renormalise(shares: xr.DataArray) -> xr.DataArray:
            with np.errstate(invalid="ignore", divide="ignore"):
                code = shares.sel(category=self.hurdle).drop_vars("category")
                return shares.sel(category=answers) / (1.0 - code)

        return replace(
            self,
            draws=renormalise(self.draws),
            overall=renormalise(self.overall),
            estimand=ANSWERING,
            dropped=(*self.dropped, self.hurdle),
            hurdle=None,
        )

    def aggregate(self, by: str | Sequence[str]) -> Estimates:
        """The estimates by some of the ``by`` columns: the others' cells summed, by population.

        Each draw's share in a coarser cell is its finer cells' shares weighted by their
        populations, which is what poststratifying by the coarser columns gives (to
        rounding): so one pass over the frame by several columns serves each of them.
        ``by`` empty gives the whole population.

        Examples
        --------
        >>> est = poststratify(result, frame, by=["sex", "age"])  # doctest: +SKIP
        >>> est.aggregate("age").summary()  # as poststratify(..., by=["age"])  # doctest: +SKIP
        """
        keep = (by,) if isinstance(by, str) else tuple(by)
        unknown = [b for b in keep if b not in self.by]
        if unknown or len(set(keep)) < len(keep):
            raise DesignError(
                f"aggregate: by must name each of some of the estimates' by columns "
                f"{format_values(self.by)} once; got {format_values(list(keep))}."
            )
        other = [b for b in self.by if b not in keep]
        sizes = [self.draws.sizes[b] for b in self.by]
        population = xr.DataArray(
            self.population.to_numpy(dtype=float).reshape(sizes),
            dims=self.by,
            coords={b: self.draws[b].values for b in self.by},
        )
        den = population.sum(other).transpose(*keep)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = (self.draws.fillna(0.0) * population).sum(other) / den
        dims = ("chain", "draw", *keep, "category")
        draws = xr.DataArray(  # coordinates in poststratify's order: a summary's row order
            np.ascontiguousarray(draws.where(den > 0).transpose(*dims).values),
            dims=dims,
            coords={d: self.draws[d].values for d in ("chain", "draw", "category", *keep)},
            name="share",
        )
        levels = [self.draws[b].values for b in keep]
        index = (
            pd.MultiIndex.from_product(levels, names=list(keep))
            if len(keep) > 1
            else pd.Index(levels[0] if keep else ["all"], name=keep[0] if keep else "all")
        )
        respondents = (
            xr.DataArray(self.n_respondents.to_numpy(dtype=float).reshape(sizes), dims=self.by)
            .sum(other, min_count=1)
            .transpose(*keep)
        )
        return replace(
            self,
            draws=draws,
            by=keep,
            population=pd.Series(np.ravel(den.values), index=index, name="population"),
            n_respondents=pd.Series(
                np.ravel(respondents.values), index=index, name="n_respondents"
            ),
        )

    def _dropped_note(self) -> str:
        return f" ({format_values(self.dropped)} left out)" if self.dropped else ""

    def summary(self, prob: float | None = None) -> pd.DataFrame:
        """Tidy table of the estimates, one row per ``by`` cell and category.

        Columns: the ``by`` columns, ``category``, ``mean``, ``sd``, ``lower``,
        ``upper`` (equal-tailed interval at ``prob``, default
        :func:`~opinionmap.summaries.interval_prob`), ``n_respondents``,
        ``population``, ``estimand`` (:data:`EVERYONE` or :data:`ANSWERING`) and
        ``converged`` (whether the fit passed the convergence checks). Without
        ``by``, one row per category for the whole population. Cells of ``by``
        without population are left out (:func:`poststratify` warns about them).
        The table's ``attrs`` hold ``prob``, ``dropped``, ``verdict``, ``new_levels`` and
        ``merged``.
        """
        if self.by:
            table = summarise_draws(self.draws, prob=prob).dropna(subset=["mean"])
        else:
            table = summarise_draws(self.overall, prob=prob)
        keys = list(self.by)
        extra = pd.DataFrame(
            {"n_respondents": self.n_respondents, "population": self.population}
        ).reset_index()
        if keys:
            for k in keys:
                extra[k] = extra[k].astype(str)
                table[k] = table[k].astype(str)
            table = table.merge(extra, on=keys, how="left")
        else:
            table = table.assign(
                n_respondents=extra["n_respondents"].iloc[0], population=extra["population"].iloc[0]
            )
        if table["n_respondents"].notna().all():
            table["n_respondents"] = table["n_respondents"].astype(int)
        table["estimand"] = self.estimand
        table["converged"] = self.converged
        columns = [*keys, "category", "mean", "sd", "lower", "upper", "n_respondents", "population"]
        out = table[[*columns, "estimand", "converged"]].reset_index(drop=True)
        out.attrs.update(
            prob=interval_prob(prob),
            dropped=list(self.dropped),
            verdict=self.verdict,
            new_levels={k: list(v) for k, v in self.new_levels.items()},
            merged=list(self.merged),
            method=self.method,
        )
        return out

    def overall_summary(self, prob: float | None = None) -> pd.DataFrame:
        """Tidy table of the whole population's shares, with ``estimand`` and ``converged``."""
        table = summarise_draws(self.overall, prob=prob)
        return table.assign(estimand=self.estimand, converged=self.converged)

    def contrast(self, a: Mapping[str, str], b: Mapping[str, str], category: str) -> Contrast:
        """Difference between two ``by`` cells in the share of ``category``.

        Examples
        --------
        >>> est = poststratify(result, frame, by=["ethnicity"])  # doctest: +SKIP
        >>> kazakh, russian = {"ethnicity": "kazakh"}, {"ethnicity": "russian"}
        >>> c = est.contrast(kazakh, russian, "less")  # doctest: +SKIP
        >>> c.prob_greater  # P(share wanting less is higher among Kazakhs)  # doctest: +SKIP
        """
        for side in (a, b):
            unknown = sorted(set(side) - set(self.by))
            if unknown:
                raise DesignError(
                    f"contrast names {format_values(unknown)}, which are not among the "
                    f"estimates' by columns {format_values(self.by)}."
                )
        if category not in self.draws["category"].values:
            raise DesignError(
                f"category {category!r} is not one of "
                f"{format_values(list(self.draws['category'].values))}."
            )
        pick = self.draws.sel(category=category)
        try:
            first = pick.sel({k: str(v) for k, v in a.items()})
            second = pick.sel({k: str(v) for k, v in b.items()})
        except KeyError as exc:
            raise DesignError(f"contrast: unknown level {exc}") from exc
        diff = first - second
        extra = [d for d in diff.dims if d not in ("chain", "draw")]
        if extra:
            raise DesignError(
                f"contrast: give a level for every by column; {format_values(extra)} left open."
            )
        return Contrast(diff, dict(a), dict(b), category)


def poststratify(
    result: Fitted,
    frame: FrameData,
    *,
    weight: str | None = None,
    by: str | Sequence[str] = (),
    new_levels: NewLevels = "error",
    random_seed: int = 0,
    chunk_values: int = CHUNK_VALUES,
    frameless: FramelessModel | None = None,
) -> Estimates:
    """Poststratify a fitted model to a population frame.

    Parameters
    ----------
    result
        A :class:`~opinionmap.results.FitResult`.
    frame
        A :class:`~opinionmap.frame.Frame`, a pandas DataFrame or a dask
        DataFrame with every predictor the model uses, the ``by`` columns and
        the ``weight`` column.
    weight
        Population count column; default the frame's own (a
        :class:`~opinionmap.frame.Frame` knows it; a DataFrame must name it).
    by
        A column, or columns, to estimate by; empty (default): the whole
        population only.
    new_levels
        ``"error"`` (default): frame levels of a grouping factor that the survey
        never saw are an error listing them. ``"sample"``: their effects are drawn
        from the fitted hierarchical distribution (normal with the fitted
        standard deviation), one draw per level and posterior draw.
    random_seed
        Seed for ``new_levels="sample"``.
    chunk_values
        Bound on the numbers held at once per chunk of cells and draws: the largest
        draws x cells x categories block of the NumPy path, or the kernel's
        coefficients of a block of draws.
    frameless
        When the model uses a categorical survey variable the frame lacks
        (education): its fitted model (:func:`~opinionmap.frameless.fit_frameless`),
        to split every frame cell by it, draw by draw (MrsP). ``None`` (default) fits
        one when the frame lacks such a variable. The estimates' ``method`` says
        which was done.

    Returns
    -------
    Estimates

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> frame = om.read_frame(om.datasets.kazakhstan_frame_path())  # doctest: +SKIP
    >>> est = om.poststratify(result, frame, by=["region"])  # doctest: +SKIP
    >>> est.summary(prob=0.9).head()  # doctest: +SKIP
    """
    design: Design = result.design
    by = (by,) if isinstance(by, str) else tuple(by)
    if new_levels not in NEW_LEVELS:
        raise DesignError(f"new_levels must be 'error' or 'sample', got {new_levels!r}.")
    repeated = sorted({b for b in by if by.count(b) > 1})
    if repeated:
        raise FrameError(f"frame: by names {format_values(repeated)} twice; name each column once.")
    warn_if_unconverged(result, "poststratified estimates")
    data, weight, is_dask = _frame_data(frame, weight)
    if design.covariates is not None:
        # the area covariates stored in the fit, so frame and survey see the same values
        if is_dask:
            data = data.map_partitions(design.with_covariates)
        else:
            data = design.with_covariates(data)
    lacking = _lacking(data, design, frameless)
    keep = _columns(data, design, by, lacking)
    draws = result.draws()
    posterior = result.posterior
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    by_levels = _by_levels(data, by, design, is_dask)
    new_labels = _new_labels(data, design, new_levels, is_dask, lacking)
    draws = _extend_draws(draws, design, new_labels, random_seed)
    split = None
    if lacking:
        if frameless is None:
            frameless = fit_frameless(result, lacking[0], random_seed=random_seed)
        warn_if_unconverged(frameless.result, f"the model of {frameless.variable!r}")
        split = _split(frameless, data, new_labels, draws.n_samples, is_dask, random_seed)
    job = _Job(
        design,
        draws,
        tuple(keep),
        by,
        tuple(by_levels),
        new_labels,
        weight,
        chunk_values,
        split,
        _kernel_enabled(),
    )
    if is_dask:
        import dask

        parts = [dask.delayed(job.run)(part) for part in data[[*keep, weight]].to_delayed()]
        results = dask.compute(*parts)
        num = sum(r[0] for r in results)
        den = sum(r[1] for r in results)
    else:
        num, den = job.run(data[[*keep, weight]])
    assert isinstance(num, np.ndarray) and isinstance(den, np.ndarray)
    _check_totals(num, den, weight)
    k = len(design.categories)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = num / den[None, :, None]
        overall = num.sum(axis=1) / den.sum()
    dims = ("chain", "draw", *by, "category")
    shape = (n_chain, n_draw, *[len(v) for v in by_levels], k)
    coords: dict[str, Any] = {
        "chain": posterior["chain"].values,
        "draw": posterior["draw"].values,
        "category": list(design.categories),
    }
    coords.update({b: list(v) for b, v in zip(by, by_levels, strict=True)})
    draws_da = xr.DataArray(shares.reshape(shape), dims=dims, coords=coords, name="share")
    overall_da = xr.DataArray(
        overall.reshape(n_chain, n_draw, k),
        dims=("chain", "draw", "category"),
        coords={k_: coords[k_] for k_ in ("chain", "draw", "category")},
        name="share",
    )
    index = (
        pd.MultiIndex.from_product(by_levels, names=list(by))
        if len(by) > 1
        else pd.Index(by_levels[0] if by else ["all"], name=by[0] if by else "all")
    )
    population = pd.Series(den, index=index, name="population")
    respondents = _respondents(design, by, index)
    warn_uncovered(design, by, population, respondents)
    diagnostics = getattr(result, "diagnostics", None)
    return Estimates(
        draws_da,
        overall_da,
        by,
        population,
        respondents,
        estimand=ANSWERING if design.spec.missing else EVERYONE,
        dropped=design.spec.missing,
        converged=None if diagnostics is None else bool(diagnostics.converged),
        verdict=None if diagnostics is None else str(diagnostics.verdict()),
        new_levels={g: tuple(":".join(key) for key in keys) for g, keys in new_labels.items()},
        merged=design.merged,
        hurdle=design.spec.hurdle,
        method=MRP if frameless is None or not lacking else frameless.method,
    )


def _lacking(data: Any, design: Design, frameless: FramelessModel | None) -> tuple[str, ...]:
    """The model's categorical survey variable the frame lacks, if any (at most one)."""
    variable = frameless_variable(design, list(data.columns))
    lacking = () if variable is None else (variable,)
    if frameless is not None and frameless.variable not in lacking:
        raise FrameError(
            f"frame: frameless= models {frameless.variable!r}, but the frame "
            + (
                f"lacks {format_values(lacking)} instead."
                if lacking
                else "has every variable the model uses; leave frameless out."
            )
        )
    return lacking


def _columns(
    data: Any, design: Design, by: tuple[str, ...], lacking: tuple[str, ...] = ()
) -> list[str]:
    """The frame columns the estimates need: the model's variables, then the ``by`` columns."""
    columns = list(data.columns)
    absent_by = [c for c in by if c not in columns]
    if absent_by:
        raise FrameError(
            f"frame: by column(s) {format_values(absent_by)} not in the frame "
            f"(columns: {format_values(columns)})."
        )
    needed = [v for v in design.spec.variables if v not in lacking]
    absent = [c for c in needed if c not in columns]
    if absent:
        numeric = {c.name for c in design.codings if c.kind != "categorical"}
        one = (
            " opinionmap estimates one categorical survey variable's split of the frame's "
            "cells (MrsP); with several, add all but one to the frame."
            if len(absent) > 1 and not set(absent) & numeric
            else ""
        )
        raise FrameError(
            f"frame: the model uses column(s) {format_values(absent)} that the frame lacks "
            f"(columns: {format_values(columns)}). Add them to the frame, e.g. merge "
            f"area-level covariates onto it by area.{one}"
        )
    return list(dict.fromkeys([*needed, *by]))


def _check_totals(num: np.ndarray, den: np.ndarray, weight: str) -> None:
    """The weighted sums must be finite and positive: no NaN shares from overflowing counts."""
    if not np.isfinite(den).all() or not np.isfinite(num).all():
        raise FrameError(
            f"frame: the counts in {weight!r} overflow when summed (values near 1e308); divide "
            "them by a constant (shares do not change) and poststratify again."
        )
    if float(den.sum()) <= 0:
        raise FrameError(f"frame: column {weight!r} sums to zero; nothing to poststratify.")


def warn_uncovered(
    design: Design, by: tuple[str, ...], population: pd.Series, respondents: pd.Series
) -> None:
    """Warn about ``by`` cells that have respondents but no population, or none in the frame.

    As :func:`poststratify` does for its ``by``; also for estimates aggregated from a
    finer pass (:meth:`Estimates.aggregate`), whose cells it checks as a pass by them would.
    """
    if not by:
        return
    empty = population.index[population.to_numpy() <= 0]
    surveyed = respondents.index[respondents.fillna(0).to_numpy() > 0]
    # one by column: every level the frame lists; several: the combinations with respondents
    # (others are structural zeros of the cross-classification)
    named = [_label(i) for i in empty if len(by) == 1 or i in set(surveyed)]
    if named:
        warnings.warn(
            f"frame: {'/'.join(by)} cell(s) {format_values(named)} have no population in the "
            "frame; their shares are undefined and left out of the estimates.",
            CoverageWarning,
            stacklevel=3,
        )
    missing = _surveyed_not_in_frame(design, by, population.index)
    if missing:
        warnings.warn(
            f"frame: surveyed {'/'.join(by)} level(s) {format_values(missing)} are not in the "
            "frame, so they have no estimates; add their cells to the frame (or recode them).",
            CoverageWarning,
            stacklevel=3,
        )


def _label(key: Any) -> str:
    return ":".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _surveyed_not_in_frame(design: Design, by: tuple[str, ...], index: pd.Index) -> list[str]:
    """``by`` levels of respondents that the frame does not have (one ``by`` column at a time)."""
    out = []
    n_cell = design.counts.sum(axis=1)
    for i, b in enumerate(by):
        if b not in design.cells.columns:
            continue
        present = set(index.get_level_values(i).astype(str))
        answered = design.cells[b].astype(str)[n_cell > 0]
        out += sorted(set(answered) - present)
    return out


@dataclass(frozen=True)
class _Job:
    """The per-partition work: partial numerators (S, G, K) and denominators (G,).

    ``kernel``: whether to use the compiled kernel (:mod:`opinionmap._kernel`) where it
    covers the model; otherwise, or for a model it does not cover, the NumPy path
    (:func:`~opinionmap.predict.linear_predictor`, :func:`~opinionmap.predict.probabilities`).
    Both give the same estimates to rounding.
    """

    design: Design
    draws: Draws
    keep: tuple[str, ...]
    by: tuple[str, ...]
    by_levels: tuple[list[str], ...]
    new_labels: dict[str, list[tuple[str, ...]]]
    weight: str
    chunk_values: int
    split: _Split | None = None
    kernel: bool = True

    def run(self, part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The partition's weighted sums of category probabilities and its populations."""
        k = len(self.design.categories)
        n_groups = int(np.prod([len(v) for v in self.by_levels])) if self.by else 1
        num = np.zeros((self.draws.n_samples, n_groups, k))
        den = np.zeros(n_groups)
        if len(part) == 0:
            return num, den
        cells, group, w = self._cells(part)
        kernel = None
        if self.kernel:
            from opinionmap._kernel import Kernel  # imports numba: only when poststratifying

            kernel = Kernel.for_design(self.design, self.draws)
        chunk_cells, chunk_draws = self.chunk_sizes(len(cells), kernel)
        draw_slices = [
            slice(d0, min(d0 + chunk_draws, self.draws.n_samples))
            for d0 in range(0, self.draws.n_samples, chunk_draws)
        ]
        # one slice of draws: lay its coefficients out once for every chunk of cells
        tables = (
            [kernel.table(draw_slices[0])] if kernel is not None and len(draw_slices) == 1 else []
        )
        for start in range(0, len(cells), chunk_cells):
            rows = slice(start, min(start + chunk_cells, len(cells)))
            coded, split_coded = self._code(cells.iloc[rows])
            np.add.at(den, group[rows], w[rows])
            for sl in draw_slices:
                weights = self._weights(sl, w[rows], split_coded)
                if kernel is None:
                    self._add_numpy(sl, coded, weights, group[rows], num)
                else:
                    table = tables[0] if tables else kernel.table(sl)
                    for e, data in enumerate(coded):
                        kernel.accumulate(
                            table, kernel.cells(data), weights[..., e], group[rows], num[sl]
                        )
        return num, den

    def chunk_sizes(self, n_cells: int, kernel: Kernel | None) -> tuple[int, int]:
        """Frame cells and draws computed at once, so that memory stays bounded.

        The NumPy path holds (draws x cells x categories) blocks of at most about
        ``chunk_values`` numbers. The kernel holds none: per draw, it holds its table of
        coefficients and, when cells are split by a variable the frame lacks, each
        cell's weight at every level of it; those stay under ``chunk_values`` too.
        """
        k, n_samples = len(self.design.categories), self.draws.n_samples
        if kernel is None:
            cells = max(1, min(n_cells, self.chunk_values // max(k * 64, 1)))
            return cells, max(1, self.chunk_values // max(cells * k, 1))
        levels = 0 if self.split is None else len(self.split.levels) + 1
        cells = max(1, min(n_cells, self.chunk_values // (64 * max(levels, 1))))
        per_draw = kernel.values_per_draw + cells * levels
        return cells, max(1, min(n_samples, self.chunk_values // per_draw))

    def _cells(self, part: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Distinct cells, their output groups and populations, sorted by group."""
        # collapse to distinct (model variables x by) combinations first (NaN kept, so
        # that coding reports it), then sort by output group so that each chunk's
        # weighted sums are contiguous runs (np.add.reduceat, no transposed copies)
        cells = (
            part.groupby(list(self.keep), sort=False, observed=True, dropna=False)[self.weight]
            .sum()
            .reset_index()
        )
        group = _group_codes(cells, self.by, self.by_levels)
        order = np.argsort(group, kind="stable")
        cells = cells.iloc[order].reset_index(drop=True)
        return cells, group[order], cells[self.weight].to_numpy(dtype=float)

    def _code(self, block: pd.DataFrame) -> tuple[list[NewData], NewData | None]:
        """A block of cells coded for the model, and for the split's model when there is one."""
        split = self.split
        if split is None:
            return [_code_with_new(self.design, block, self.new_labels)], None
        # the block at every level of the variable the frame lacks, and its model's coding
        coded = [
            _code_with_new(self.design, block.assign(**{split.variable: level}), self.new_labels)
            for level in split.levels
        ]
        return coded, _code_with_new(split.design, block, split.new_labels)

    def _weights(self, sl: slice, w: np.ndarray, split_coded: NewData | None) -> np.ndarray:
        """Each cell's weight: (1, cells, 1), or (S, cells, levels) split draw by draw."""
        if self.split is None or split_coded is None:
            return w[None, :, None]
        # (S, cells, levels): each frame cell's split, draw by draw
        own = self.split.draws.subset(sl)
        design = self.split.design
        shares = probabilities(design, linear_predictor(own, design, split_coded), own)
        return w[None, :, None] * shares

    def _add_numpy(
        self,
        sl: slice,
        coded: list[NewData],
        weights: np.ndarray,
        g: np.ndarray,
        num: np.ndarray,
    ) -> None:
        """Add a chunk's weighted probabilities into ``num``, by the NumPy path."""
        sub = self.draws.subset(sl)
        runs = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        for e, data in enumerate(coded):
            p = probabilities(self.design, linear_predictor(sub, self.design, data), sub)
            p *= weights[:, :, e : e + 1]
            num[sl, g[runs], :] += np.add.reduceat(p, runs, axis=1)


def _kernel_enabled() -> bool:
    from opinionmap._kernel import enabled

    return enabled()


@dataclass(frozen=True)
class _Split:
    """How to split frame cells by a variable the frame lacks: its model's design and draws."""

    variable: str
    levels: tuple[str, ...]
    design: Design
    draws: Draws  # paired with the outcome model's draws, new levels appended
    new_labels: dict[str, list[tuple[str, ...]]]


def _split(
    frameless: FramelessModel,
    data: Any,
    new_labels: dict[str, list[tuple[str, ...]]],
    n_samples: int,
    is_dask: bool,
    seed: int,
) -> _Split:
    """The split of the frame's cells by ``frameless``'s variable, checked against the frame."""
    design = frameless.design
    absent = [v for v in design.spec.variables if v not in data.columns]
    if absent:
        raise FrameError(
            f"frame: the model of {frameless.variable!r} given (frameless=) uses column(s) "
            f"{format_values(absent)} that the frame lacks: it models another spec's terms. "
            f"Fit it from this fit: fit_frameless(result, {frameless.variable!r})."
        )
    names = {g.name for g in design.groups}
    own_labels = {k: v for k, v in new_labels.items() if k in names}
    columns = [c.name for c in design.codings if c.kind == "categorical"]
    rows = data[columns].drop_duplicates()
    check_frame_cells(frameless, rows.compute() if is_dask else rows, own_labels)
    draws = frameless.result.draws()
    draws = draws.subset(pair_draws(n_samples, draws.n_samples))
    draws = _extend_draws(draws, design, own_labels, seed + 1)
    return _Split(frameless.variable, frameless.levels, design, draws, own_labels)


def _frame_data(frame: Any, weight: str | None) -> tuple[Any, str, bool]:
    """The frame's rows, its weight column, and whether it is a dask DataFrame."""
    if isinstance(frame, Frame):
        weight = weight or frame.weight
        if frame.weight != weight and weight not in frame.data.columns:
            raise FrameError(
                f"frame: no weight column {weight!r} (its counts are in {frame.weight!r}); "
                f"pass weight={frame.weight!r}."
            )
        return frame.data, weight, False
    if weight is None:
        raise FrameError(
            "frame: name the population count column of a DataFrame frame with weight=... "
            "(or read the frame with read_frame(path, weight=...), which records it)."
        )
    try:
        import dask.dataframe as dd

        if isinstance(frame, dd.DataFrame):
            _check_dask_frame(frame, weight)
            return frame, weight, True
    except ImportError:  # pragma: no cover - dask is a dependency
        pass
    if isinstance(frame, pd.DataFrame):
        validated = Frame.from_dataframe(
            frame,
            weight=weight,
            cells=[
                c
                for c in frame.columns
                if c != weight and not pd.api.types.is_numeric_dtype(frame[c])
            ],
        )
        return validated.data, weight, False
    raise FrameError(
        f"frame must be a Frame, a pandas or a dask DataFrame, got {type(frame).__name__}."
    )


def _check_dask_frame(frame: Any, weight: str) -> None:
    """The checks :class:`~opinionmap.frame.Frame` makes, made on a dask DataFrame (one pass).

    Counts must be numbers, present, finite and >= 0 with a finite positive total; cell
    columns (every non-numeric column) must be filled, and no cell may appear twice.
    """
    import dask

    columns = list(frame.columns)
    if weight not in columns:
        raise FrameError(f"frame: no weight column {weight!r} (columns: {format_values(columns)}).")
    if not pd.api.types.is_numeric_dtype(frame[weight].dtype):
        raise FrameError(
            f"frame: column {weight!r} holds {frame[weight].dtype} values; counts must be numbers."
        )
    cells = [c for c in columns if c != weight and not pd.api.types.is_numeric_dtype(frame[c])]
    counts = frame[weight]
    checks = {
        "missing counts": counts.isna().sum(),
        "infinite counts": (counts.abs() == np.inf).sum(),
        "negative counts": (counts < 0).sum(),
        "total": counts.sum(),
    }
    if cells:
        checks["empty cell labels"] = frame[cells].isna().sum().sum()
        checks["largest repeat"] = frame.groupby(cells, dropna=False).size().max()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow", RuntimeWarning)
        found = dict(zip(checks, dask.compute(*checks.values()), strict=True))
    for name in ("missing counts", "infinite counts", "negative counts", "empty cell labels"):
        if found.get(name, 0):
            where = repr(weight) if "counts" in name else format_values(cells)
            raise FrameError(
                f"frame: {int(found[name])} rows have {name} (in {where}); every cell needs a "
                "label in every cell column and a finite count >= 0."
            )
    if found.get("largest repeat", 1) > 1:
        raise FrameError(
            f"frame: some cells of {format_values(cells)} appear more than once; each cell must "
            "appear once: sum the duplicated rows, or add the column that tells them apart."
        )
    total = float(found["total"])
    if not np.isfinite(total) or total <= 0:
        raise FrameError(
            f"frame: column {weight!r} sums to {total}; the counts must have a finite, positive "
            "total (divide very large counts by a constant: shares do not change)."
        )


def _unique(data: Any, column: str, is_dask: bool) -> list[str]:
    """Distinct values of a column as text, in order of appearance (NaN as ``"nan"``)."""
    values = data[column].unique()
    if is_dask:
        values = values.compute()
    return list(dict.fromkeys(str(v) for v in np.asarray(values, dtype=object)))


def _by_levels(data: Any, by: tuple[str, ...], design: Design, is_dask: bool) -> list[list[str]]:
    levels = []
    codings = {c.name: c for c in design.codings}
    for column in by:
        present = _unique(data, column, is_dask)
        if column in codings and codings[column].kind == "categorical":
            known = list(codings[column].levels)
            ordered = [lv for lv in known if lv in present] + [
                lv for lv in present if lv not in known
            ]
        elif not is_dask and isinstance(data[column].dtype, pd.CategoricalDtype):
            ordered = [str(v) for v in data[column].cat.categories if str(v) in present]
        else:
            ordered = sorted(present)
        levels.append(ordered)
    return levels


def _new_labels(
    data: Any, design: Design, new_levels: NewLevels, is_dask: bool, lacking: tuple[str, ...] = ()
) -> dict[str, list[tuple[str, ...]]]:
    """Frame levels of each grouping term that the model does not know, as tuples of labels.

    A variable the frame lacks (``lacking``) takes each of its survey levels.
    """
    out: dict[str, list[tuple[str, ...]]] = {}
    for g in design.groups:
        present = [f for f in g.factors if f not in lacking]
        combos: Any = data[present].drop_duplicates() if present else pd.DataFrame(index=[0])
        if is_dask and present:
            combos = combos.compute()
        for f in g.factors:
            if f in lacking:
                levels = pd.DataFrame({f: list(design.coding(f).levels)})
                combos = combos.merge(levels, how="cross")
        combos = combos[list(g.factors)].reset_index(drop=True)
        unseen = combos.loc[design.level_index(g, combos) < 0]
        unknown = list(dict.fromkeys(_keys(unseen, g.factors)))
        _refuse_near_misses(design, g, unseen)
        if unknown:
            if new_levels == "error":
                raise DesignError(
                    f"frame: grouping factor {g.name!r} has level(s) "
                    f"{format_values([':'.join(u) for u in unknown])} "
                    f"that the survey never saw (the model knows {format_values(g.levels)}). "
                    "Recode them, or pass new_levels='sample' (CLI: --new-levels sample) to draw "
                    "their effects from the fitted hierarchical distribution."
                )
            out[g.name] = unknown
    return out


def _refuse_near_misses(design: Design, group: GroupIndex, unseen: pd.DataFrame) -> None:
    """A frame label that is a known level but for case or spacing is a mistake, not a new level."""
    for factor in group.factors:
        levels = design.coding(factor).levels
        misses = near_misses(set(unseen[factor].astype(str)) - set(levels), levels)
        if misses:
            raise DesignError(
                f"frame: {factor!r} has label(s) that differ from levels the model knows only by "
                f"case or spacing: {did_you_mean(misses)}. Labels are compared exactly; recode "
                "the frame (read_frame(..., recode=...))."
            )


def _keys(rows: pd.DataFrame, factors: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each row's levels of ``factors``, as a tuple of labels."""
    return list(zip(*(rows[f].astype(str) for f in factors), strict=True))


def _extend_draws(
    draws: Draws, design: Design, new_labels: dict[str, list[tuple[str, ...]]], seed: int
) -> Draws:
    """The draws with effects for new levels drawn from the fitted distribution, appended.

    Independent ``N(0, sigma^2)`` per linear predictor, or, for terms whose effects
    are drawn jointly (varying slopes, ``(1 | ID | g)``), ``N(0, L L^T)`` with each
    draw's Cholesky factor ``L``.
    """
    if not new_labels:
        return draws
    return _with_new_effects(draws, design, new_labels, np.random.default_rng(seed))


def _with_new_effects(
    draws: Draws,
    design: Design,
    new_labels: dict[str, list[tuple[str, ...]]],
    rng: np.random.Generator,
) -> Draws:
    """:func:`_extend_draws` with a generator; a hurdle model's part too."""
    effects = dict(draws.effects)
    for g in design.groups:
        if g.name not in new_labels:
            continue
        u = effects[g.name]
        shape = (u.shape[0], len(new_labels[g.name]), *u.shape[2:])
        z = rng.standard_normal(shape)
        factor = draws.factors.get(g.name)
        if factor is None:
            sigma = draws.sigmas[g.name]
            new = z * (sigma[:, None, :] if sigma.ndim > 1 else sigma[:, None])
        elif factor.ndim == 4:  # slopes of a categorical model: (S, K-1, coefs, coefs)
            new = np.einsum("scij,snjc->snic", factor, z)
        else:  # (S, m, m), m the coefficients or the categories of the effects
            new = np.einsum("sij,snj->sni", factor, z)
        effects[g.name] = np.concatenate([u, new], axis=1)
    hurdle = (
        None if draws.hurdle is None else _with_new_effects(draws.hurdle, design, new_labels, rng)
    )
    return replace(draws, effects=effects, hurdle=hurdle)


def _code_with_new(
    design: Design, block: pd.DataFrame, new_labels: dict[str, list[tuple[str, ...]]]
) -> NewData:
    coded = design.evaluate(block, new_levels="sample" if new_labels else "error")
    if not new_labels:
        return coded
    groups = []
    for g in coded.groups:
        index = g.index.copy()
        if g.name in new_labels and (index < 0).any():
            lookup = {key: len(g.levels) + i for i, key in enumerate(new_labels[g.name])}
            index[index < 0] = [lookup[key] for key in _keys(block.loc[index < 0], g.factors)]
        groups.append(g.with_index(index))
    return NewData(coded.X, tuple(groups))


def _group_codes(
    cells: pd.DataFrame, by: tuple[str, ...], by_levels: tuple[list[str], ...]
) -> np.ndarray:
    if not by:
        return np.zeros(len(cells), dtype=np.int64)
    code = np.zeros(len(cells), dtype=np.int64)
    for column, levels in zip(by, by_levels, strict=True):
        c = level_codes(cells[column], tuple(levels))
        code = code * len(levels) + c
    return code


def _respondents(design: Design, by: tuple[str, ...], index: pd.Index) -> pd.Series:
    if not by:
        return pd.Series([design.n_respondents], index=index, name="n_respondents", dtype=float)
    if any(b not in design.cells.columns for b in by):
        return pd.Series(np.nan, index=index, name="n_respondents")
    n_cell = design.counts.sum(axis=1)
    table = design.cells[list(by)].astype(str).assign(n=n_cell)
    counts = table.groupby(list(by), sort=False)["n"].sum()
    return counts.reindex(index).fillna(0).rename("n_respondents").astype(float)
