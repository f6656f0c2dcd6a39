"""Fitted models, saved and loaded without PyMC.

A :class:`FitResult` wraps an ArviZ ``xarray.DataTree`` with the standard groups
(``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data``,
``constant_data``) and provenance in its attributes: the spec as JSON, hashes of
spec and data, the sampler settings (:class:`~opinionmap.spec.Sampling`), the
parameterisation plan (:class:`~opinionmap.plan.Plan`), package versions. The
saved netCDF file is a plain ArviZ ``DataTree``: ``xarray.open_datatree`` and
``arviz`` read it without opinionmap installed.

Everything here, and everything that uses a fit (poststratification, effects,
posterior predictive checks, reports, maps), runs without importing PyMC,
PyTensor, nutpie or numba; only :func:`opinionmap.fit` needs them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap._io import atomic_path
from opinionmap.design import Design, DesignError, SurveyData, build_design
from opinionmap.diagnostics import Diagnostics, convergence, diagnose, scalar_draws
from opinionmap.errors import OpinionmapError
from opinionmap.plan import Plan, is_auxiliary
from opinionmap.predict import Draws
from opinionmap.spec import ModelSpec, Sampling
from opinionmap.summaries import interval_prob

if TYPE_CHECKING:
    from arviz_stats.utils import ELPDDataLOO

__all__ = ["FitResult", "Fitted", "ProvenanceError", "SavedTree", "checksum", "load"]

# the groups a fit's checksum covers: everything sampled or computed from the samples
CHECKSUM_GROUPS = ("posterior", "sample_stats", "log_likelihood")

# groups every saved fit has
GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data")


class ProvenanceError(OpinionmapError):
    """A saved fit does not match the spec or data it is checked against, or is not a fit."""


class Fitted(Protocol):
    """What poststratification, effects and posterior predictive checks need of a fit."""

    @property
    def design(self) -> Design:
        """The data the model was fitted to, coded."""
        ...

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws, dims ``(chain, draw, ...)``."""
        ...

    def draws(self) -> Draws:
        """The parameters flattened over (chain, draw)."""
        ...


class SavedTree:
    """What every fit has: its ArviZ ``DataTree``, its diagnostics, and a file to go to."""

    tree: xr.DataTree
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group as a Dataset."""
        return self.tree["posterior"].to_dataset()

    @property
    def converged(self) -> bool:
        """Whether the fit passed the convergence checks (R-hat, ESS, divergences, ...)."""
        return self.diagnostics.converged

    @property
    def verdict(self) -> str:
        """The convergence verdict: the key figures, or every failed check and the fix."""
        return self.diagnostics.verdict()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit as netCDF (h5netcdf), atomically.

        Examples
        --------
        >>> result.save("fit.nc")  # doctest: +SKIP
        """
        target = Path(path)
        with atomic_path(target) as tmp:
            self.tree.to_netcdf(tmp, engine="h5netcdf")
        return target


@dataclass(frozen=True)
class FitResult(SavedTree):
    """A fitted model: the ArviZ ``DataTree``, its spec and design, and diagnostics."""

    tree: xr.DataTree
    spec: ModelSpec
    design: Design
    diagnostics: Diagnostics

    @property
    def plan(self) -> Plan:
        """How the model was parameterised (which terms were centred and paired)."""
        return Plan.from_json(self.tree.attrs["opinionmap_plan"])

    @property
    def sampling(self) -> Sampling:
        """The sampler settings the fit was made with, every one resolved."""
        return Sampling.from_attrs(self.tree.attrs)

    def draws(self) -> Draws:
        """Parameters flattened over (chain, draw), for NumPy work."""
        return Draws.from_posterior(self.posterior, self.design)

    def summary(
        self, *, prob: float | None = None, var_names: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """ArviZ summary of the model parameters, one labelled row per scalar.

        Rows are named like ``beta[sex[female],same]`` and ``u_region[KZ-AKM]``;
        the sampled auxiliaries (``z_*``, the intercept or cutpoints at the numeric
        predictors' means) are left out. ``prob``: interval width (default
        :func:`~opinionmap.summaries.interval_prob`). Its ``r_hat``, ``ess_bulk`` and
        ``ess_tail`` are computed as the convergence verdict's (:attr:`diagnostics`).
        """
        from arviz_stats import summary

        names = (
            list(var_names)
            if var_names
            else [v for v in self.posterior.data_vars if not is_auxiliary(str(v))]
        )
        table: pd.DataFrame = summary(
            self.tree, var_names=names, ci_prob=interval_prob(prob), round_to="none"
        )
        # the convergence columns as the verdict computes them: ArviZ takes its tail ESS at
        # the 11% and 89% quantiles, the verdict at 5% and 95% (diagnostics.TAIL_PROBS);
        # both list each variable's scalars in C order
        r_hat, bulk, tail = convergence(scalar_draws(self.posterior, [str(n) for n in names])[1])
        table["ess_bulk"], table["ess_tail"], table["r_hat"] = bulk, tail, r_hat
        return table

    def loo(self) -> ELPDDataLOO:
        """PSIS-LOO over respondents (``arviz_stats.loo``), pointwise values included.

        Whether the fit stored each respondent's log-likelihood or one per distinct
        (cell, answer) pair (large fits), the result is the respondent-level PSIS-LOO:
        respondents with the same cell and answer have the same log-likelihood draws,
        hence the same smoothed weights, ``elpd_i`` and Pareto k, so each pair is
        computed once and counted once per respondent. ``n_data_points`` is the
        number of respondents.
        """
        from arviz_stats import loo

        if self.tree["log_likelihood"].attrs.get("opinionmap_level") != "pattern":
            result: ELPDDataLOO = loo(self.tree, pointwise=True)
            return result
        log_lik = self.tree["log_likelihood"].to_dataset()[self.design.spec.outcome]
        return respondent_loo(log_lik, self.design, loo(self.tree, pointwise=True))


def load(
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    data: SurveyData | None = None,
) -> FitResult:
    """Load a fit saved by :meth:`FitResult.save`; the file alone is enough.

    Parameters
    ----------
    path
        The netCDF file (it holds the spec, the data the model saw, the draws).
    spec, data
        Optional checks: that the fit was made with this spec and this survey;
        a mismatch is a :class:`ProvenanceError` saying which differs.

    Raises
    ------
    ProvenanceError
        Not an opinionmap fit, written by an incompatible version, its stored data
        do not match its recorded hash (the file was edited), or it does not match
        ``spec`` / ``data``.
    """
    source = Path(path)
    tree = _read_tree(source)
    attrs = tree.attrs
    if "opinionmap_joint" in attrs:
        raise ProvenanceError(
            f"{source}: holds a joint model of several questions; read it with "
            "opinionmap.joint.load_joint."
        )
    try:
        design = Design.from_tree(tree)
    except DesignError as exc:
        raise ProvenanceError(f"{source}: {exc}") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise ProvenanceError(
            f"{source}: its opinionmap attributes or groups are incomplete or malformed ({exc!r}); "
            "the file was modified after fitting. Refit the model."
        ) from exc
    if design.spec.hash() != attrs["opinionmap_spec_hash"]:
        raise ProvenanceError(
            f"{source}: the spec stored in the file does not match its recorded spec hash; the "
            "file was modified after fitting. Refit the model."
        )
    if checksum(tree) != attrs.get("opinionmap_checksum"):
        raise ProvenanceError(
            f"{source}: the draws, sample statistics or log-likelihood stored in the file do not "
            "match the checksum recorded when it was fitted; the file was modified or damaged. "
            "Refit the model."
        )
    if design.data_hash != attrs["opinionmap_data_hash"]:
        raise ProvenanceError(
            f"{source}: the data stored in the file do not match its recorded data hash; the file "
            "was modified after fitting. Refit the model."
        )
    stored = design.spec
    if spec is not None and spec.hash() != attrs["opinionmap_spec_hash"]:
        raise ProvenanceError(
            f"{source}: was fitted with a different spec (formula {stored.formula!r}, family "
            f"{stored.family!r}) than the one given ({spec.formula!r}, {spec.family!r}). "
            "Refit, or load without spec= to use the stored one."
        )
    if data is not None:
        given = build_design(stored, data, covariates=design.covariates)
        if given.data_hash != attrs["opinionmap_data_hash"]:
            raise ProvenanceError(
                f"{source}: was fitted to different data than the survey given (data hash "
                f"{attrs['opinionmap_data_hash'][:12]} in the file, {given.data_hash[:12]} for "
                "the survey). Refit the model on this survey."
            )
    return FitResult(tree, stored, design, diagnose(tree, warn=False))


def checksum(tree: xr.DataTree) -> str:
    """SHA-256 of the draws, sample statistics and pointwise log-likelihood of a fit.

    Every variable of :data:`CHECKSUM_GROUPS`, in name order: its name, dims, dtype
    and values. Recorded when the fit is made; :func:`load` refuses a file whose
    arrays no longer give it.
    """
    digest = hashlib.sha256()
    for group in CHECKSUM_GROUPS:
        data = tree[group].to_dataset()
        for name in sorted(str(v) for v in data.data_vars):
            values = np.ascontiguousarray(data[name].values)
            digest.update(f"{group}/{name}{data[name].dims}{values.dtype}".encode())
            digest.update(values.tobytes())
    return digest.hexdigest()


def respondent_loo(log_lik: xr.DataArray, design: Design, by_pattern: ELPDDataLOO) -> ELPDDataLOO:
    """The respondent-level PSIS-LOO from one computed per (cell, answer) pair.

    ``log_lik`` holds each pair's log-likelihood, dims (chain, draw, pair) in the order of
    :meth:`~opinionmap.design.Design.patterns`; ``by_pattern`` is its PSIS-LOO. Aggregated
    as ``arviz_stats`` aggregates pointwise values: ``elpd`` the sum over respondents, its
    SE ``sqrt(n var(elpd_i))``, ``p_loo`` the sum of ``lppd_i - elpd_i``.
    """
    from arviz_stats.utils import ELPDDataLOO
    from scipy.special import logsumexp

    pair = next(d for d in log_lik.dims if d not in ("chain", "draw"))
    draws = log_lik.transpose(pair, "chain", "draw").values.reshape(log_lik.sizes[pair], -1)
    lppd = logsumexp(draws, axis=1, b=1.0 / draws.shape[1])
    elpd_pattern = by_pattern.elpd_i.values
    _, _, _, index = design.patterns()
    elpd_i = elpd_pattern[index]
    p_i = (lppd - elpd_pattern)[index]
    n = design.n_respondents
    coords = {"respondent": design.respondent_id}
    return ELPDDataLOO(
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n * np.var(elpd_i, ddof=1))) if n > 1 else 0.0,
        p=float(p_i.sum()),
        n_samples=by_pattern.n_samples,
        n_data_points=n,
        scale="log",
        warning=by_pattern.warning,
        good_k=by_pattern.good_k,
        elpd_i=xr.DataArray(elpd_i, dims="respondent", coords=coords),
        pareto_k=xr.DataArray(by_pattern.pareto_k.values[index], dims="respondent", coords=coords),
    )


def _read_tree(source: Path) -> xr.DataTree:
    if not source.is_file():
        raise ProvenanceError(f"{source}: no such file.")
    try:
        tree = xr.open_datatree(source, engine="h5netcdf").load()
    except (OSError, ValueError) as exc:
        raise ProvenanceError(f"{source}: cannot be read as a netCDF DataTree: {exc}") from exc
    if "opinionmap_spec" not in tree.attrs:
        raise ProvenanceError(
            f"{source}: not an opinionmap fit (no 'opinionmap_spec' attribute); it may be a plain "
            "ArviZ file, which arviz.from_netcdf reads."
        )
    absent = [g for g in GROUPS if g not in tree.children]
    if absent:
        raise ProvenanceError(
            f"{source}: the fit lacks group(s) {', '.join(absent)}; the file was modified after "
            "fitting. Refit the model."
        )
    return tree
