"""Fitting: sample a model, store the respondent-level log-likelihood, check convergence.

:func:`fit` returns a :class:`FitResult` wrapping an ArviZ ``xarray.DataTree``
with the standard groups (``posterior``, ``sample_stats``, ``log_likelihood``,
``observed_data``, ``constant_data``) and provenance in its attributes (the
spec as JSON, hashes of spec and data, package and library versions, the seed).
The saved netCDF file is a plain ArviZ ``DataTree``: ``xarray.open_datatree``
and ``arviz`` read it without opinionmap installed.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap._io import atomic_path
from opinionmap.covariates import table_from_json
from opinionmap.design import (
    Design,
    GroupIndex,
    VariableCoding,
    build_design,
    cell_keys,
    data_hash,
)
from opinionmap.diagnostics import Diagnostics, diagnose
from opinionmap.errors import OpinionmapError, format_values
from opinionmap.model import build_model, is_auxiliary, model_coords, noncentering_weight
from opinionmap.predict import Draws, linear_predictor, log_probabilities
from opinionmap.spec import ModelSpec

__all__ = ["SAMPLERS", "FitResult", "ProvenanceError", "fit", "load"]

SAMPLERS = ("nutpie", "pymc", "numpyro")
ADAPTATIONS = ("diag", "low_rank")
LogLikelihood = Literal["auto", "respondent", "cell"]
# store respondent-level log-likelihood up to this many values (draws x respondents)
RESPONDENT_LOGLIK_MAX = 50_000_000
# NUTS target acceptance rate (step-size adaptation); 0.95 rather than PyMC's 0.8, as
# rstanarm does for multilevel models: the standard deviations of terms with few levels
# have skewed posteriors whose narrow ends otherwise give occasional divergences
TARGET_ACCEPT = 0.95
# nutpie models compiled in this process, newest last: compiling takes 8-40 s with numba
# (2-5 s when opinionmap._compile_cache has the model's C callbacks on disk)
# and the same model refitted (another seed, more draws) need not pay it again
_COMPILED_CACHE_SIZE = 4
_compiled: OrderedDict[str, Any] = OrderedDict()


class ProvenanceError(OpinionmapError):
    """A saved fit does not match the spec or data it is checked against, or is not a fit."""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("opinionmap", "pymc", "pytensor", "arviz", "nutpie", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass(frozen=True)
class FitResult:
    """A fitted model: the ArviZ ``DataTree``, its spec and design, and diagnostics."""

    tree: xr.DataTree
    spec: ModelSpec
    design: Design
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group as a Dataset."""
        return self.tree["posterior"].to_dataset()

    def draws(self) -> Draws:
        """Parameters flattened over (chain, draw), for NumPy work."""
        return Draws.from_posterior(self.posterior, self.design)

    # -- persistence -------------------------------------------------------------------
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

    # -- summaries -----------------------------------------------------------------------
    def summary(self, *, prob: float = 0.9, var_names: Sequence[str] | None = None) -> pd.DataFrame:
        """ArviZ summary of the model parameters, one labelled row per scalar.

        Rows are named like ``beta[sex[female],same]`` and ``u_region[KZ-AKM]``;
        the sampled auxiliaries (``z_*``, the intercept or cutpoints at the numeric
        predictors' means) are left out.
        """
        import arviz as az

        names = (
            list(var_names)
            if var_names
            else [v for v in self.posterior.data_vars if not is_auxiliary(str(v))]
        )
        return az.summary(self.tree, var_names=names, ci_prob=prob, round_to="none")

    def loo(self) -> Any:
        """PSIS-LOO over respondents (``arviz.loo``)."""
        import arviz as az

        return az.loo(self.tree)


def fit(
    spec: ModelSpec,
    survey: Any,
    *,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    cores: int | None = None,
    random_seed: int | None = None,
    sampler: str = "nutpie",
    progress: bool = True,
    log_likelihood: LogLikelihood = "auto",
    warn: bool = True,
    target_accept: float | None = None,
    aggregate: bool = True,
    adaptation: str = "diag",
) -> FitResult:
    """Fit a model to survey data.

    Parameters
    ----------
    spec
        The model (:class:`~opinionmap.spec.ModelSpec` or ``read_spec(path)``).
    survey
        A :class:`~opinionmap.Survey` or a DataFrame with the formula's columns.
    draws, tune, chains
        NUTS draws kept per chain, tuning steps per chain, and chains; ``None``
        takes the spec's ``[sampling]`` table, else 1,000, 1,000 and 4
        (:class:`~opinionmap.spec.Sampling`).
    cores
        Chains run in parallel (default: ``min(chains, os.cpu_count())``).
    random_seed
        Seed; the same seed and data give identical draws. ``None`` draws one
        and records it in the result's attributes.
    sampler
        ``"nutpie"`` (default), ``"pymc"`` (PyMC's own NUTS) or ``"numpyro"``
        (NUTS in JAX; needs the ``numpyro`` extra: ``pip install 'opinionmap[numpyro]'``).
    progress
        Show a progress bar while sampling.
    log_likelihood
        ``"respondent"`` stores each respondent's log-likelihood (for LOO);
        ``"cell"`` one value per covariate cell; ``"auto"`` (default) stores
        respondents unless draws x respondents exceeds 50 million.
    warn
        Emit a :class:`~opinionmap.diagnostics.ConvergenceWarning` when the fit
        did not converge.
    target_accept
        NUTS target acceptance rate; ``None`` uses :data:`TARGET_ACCEPT` (0.95).
        Raise it (0.99) when a fit reports divergences.
    aggregate
        ``True`` (default) evaluates the likelihood on covariate cells;
        ``False`` on respondents (the same log-density, more slowly; for checks).
    adaptation
        nutpie's mass-matrix adaptation: ``"diag"`` (default) or ``"low_rank"``
        (a diagonal plus low-rank matrix that also learns correlations between
        parameters). ``"low_rank"`` helps ordinal and binary models whose group
        standard deviations mix slowly (the bundled presence-of-Muslim-countries
        question: R-hat 1.015 with ``"diag"``, 1.006 and no divergences with
        ``"low_rank"``, 31 s against 45 s), but did worse on the China and EU
        questions (R-hat 1.012; 1 divergence) and costs much more per draw for
        categorical models with many categories: an option to try on a fit that
        did not converge, not a better default. nutpie only.

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> spec = om.read_spec("models/presence_russia.toml")  # doctest: +SKIP
    >>> result = om.fit(spec, om.read_survey(spec.data), random_seed=1)  # doctest: +SKIP
    >>> print(result.diagnostics.verdict())  # doctest: +SKIP
    """
    if sampler not in SAMPLERS:
        raise OpinionmapError(
            f"unknown sampler {sampler!r}; choose one of {format_values(SAMPLERS)}."
        )
    draws, tune, chains = spec.sampling.resolve(draws, tune, chains)
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(value, int) or value < low:
            raise OpinionmapError(f"{name} must be an integer >= {low}, got {value!r}.")
    if log_likelihood not in ("auto", "respondent", "cell"):
        raise OpinionmapError(
            f"log_likelihood must be 'auto', 'respondent' or 'cell', got {log_likelihood!r}."
        )
    if adaptation not in ADAPTATIONS:
        raise OpinionmapError(
            f"unknown adaptation {adaptation!r}; choose one of {format_values(ADAPTATIONS)}."
        )
    if adaptation != "diag" and sampler != "nutpie":
        raise OpinionmapError(
            f"adaptation={adaptation!r} needs sampler='nutpie' (got {sampler!r})."
        )
    if target_accept is None:
        target_accept = TARGET_ACCEPT
    if not isinstance(target_accept, int | float) or not 0.0 < target_accept < 1.0:
        raise OpinionmapError(
            f"target_accept must lie strictly between 0 and 1, got {target_accept!r}."
        )
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
    design = build_design(spec, survey, aggregate=aggregate)
    cores = cores or min(chains, os.cpu_count() or 1)
    tree = _sample(
        design,
        sampler,
        draws,
        tune,
        chains,
        cores,
        random_seed,
        progress,
        float(target_accept),
        adaptation,
    )
    tree = _assemble(tree, design, log_likelihood)
    tree.attrs.update(
        {
            "opinionmap_spec": spec.to_json(),
            "opinionmap_spec_hash": spec.hash(),
            "opinionmap_data_hash": design.data_hash,
            "opinionmap_versions": json.dumps(_versions()),
            "opinionmap_random_seed": int(random_seed),
            "opinionmap_sampler": sampler,
            "opinionmap_draws": draws,
            "opinionmap_tune": tune,
            "opinionmap_chains": chains,
            "opinionmap_target_accept": float(target_accept),
            "opinionmap_adaptation": adaptation,
            "opinionmap_aggregate": int(aggregate),
            **design.to_attrs(),
            "opinionmap_groups": json.dumps(
                [
                    {"name": g.name, "factors": list(g.factors), "levels": list(g.levels)}
                    for g in design.groups
                ]
            ),
            "opinionmap_x_sd": json.dumps([float(v) for v in design.x_sd]),
        }
    )
    diagnostics = diagnose(tree, warn=False)
    if warn and not diagnostics.converged:
        from opinionmap.diagnostics import ConvergenceWarning

        warnings.warn(diagnostics.verdict(), ConvergenceWarning, stacklevel=2)
    return FitResult(tree, spec, design, diagnostics)


def _model_key(design: Design) -> str:
    """Everything the compiled model depends on: spec, data, cells, coords, weights."""
    parts = {
        "spec": design.spec.hash(),
        "data": design.data_hash,
        "cells": design.n_cells,
        "coords": model_coords(design),
        "weights": [noncentering_weight(design, g).tolist() for g in design.groups],
    }
    return json.dumps(parts, sort_keys=True)


def _compile_nutpie(design: Design) -> Any:
    """The nutpie-compiled model of a design, from this process's cache when it has it.

    A new process compiling a model it compiled before loads nutpie's C callbacks from
    the disk cache (:mod:`opinionmap._compile_cache`) instead of building them again.
    """
    from opinionmap._compile_cache import compile_pymc_model

    key = _model_key(design)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    import pytensor

    # without fastmath: with it, kernels compiled afresh and kernels loaded from
    # PyTensor's disk cache round differently, so the same seed gave different draws in
    # a first session and in later ones
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = compile_pymc_model(build_model(design))
    _compiled[key] = compiled
    while len(_compiled) > _COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return compiled


def _sample(
    design: Design,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    seed: int,
    progress: bool,
    target_accept: float,
    adaptation: str = "diag",
) -> xr.DataTree:
    if sampler == "nutpie":
        import nutpie

        tree = nutpie.sample(
            _compile_nutpie(design),
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            save_warmup=False,
            progress_bar=progress,
            target_accept=target_accept,
            adaptation=adaptation,
        )
    else:
        import pymc as pm

        model = build_model(design)

        if sampler == "numpyro":
            try:
                import numpyro  # noqa: F401
            except ImportError as exc:
                raise OpinionmapError(
                    "sampler 'numpyro' needs numpyro and jax: pip install 'opinionmap[numpyro]' "
                    "(or pip install numpyro)"
                ) from exc
        with model:
            tree = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                progressbar=progress,
                nuts_sampler=sampler,
                target_accept=target_accept,
                compute_convergence_checks=False,
            )
    keep = {}
    for group in ("posterior", "sample_stats"):
        ds = tree[group].to_dataset()
        if group == "sample_stats":
            ds = ds[[v for v in ds.data_vars if ds[v].dtype != object]]
        keep[group] = ds
    return xr.DataTree.from_dict(keep)


def _assemble(tree: xr.DataTree, design: Design, log_likelihood: LogLikelihood) -> xr.DataTree:
    """Add log_likelihood, observed_data and constant_data groups."""
    posterior = tree["posterior"].to_dataset()
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    draws = Draws.from_posterior(posterior, design)
    level = log_likelihood
    if level == "auto":
        level = (
            "respondent"
            if n_chain * n_draw * design.n_respondents <= RESPONDENT_LOGLIK_MAX
            else "cell"
        )
    outcome = design.spec.outcome
    cell_ll = np.empty((draws.n_samples, design.n_cells)) if level == "cell" else None
    resp_ll = np.empty((draws.n_samples, design.n_respondents)) if level == "respondent" else None
    chunk = max(1, 20_000_000 // max(design.n_cells * len(design.categories), 1))
    for start in range(0, draws.n_samples, chunk):
        sl = slice(start, min(start + chunk, draws.n_samples))
        part = draws.subset(sl)
        logp = log_probabilities(design, linear_predictor(part, design), part)
        if resp_ll is not None:
            resp_ll[sl] = logp[:, design.respondent_cell, design.respondent_response]
        if cell_ll is not None:
            cell_ll[sl] = (logp * design.counts[None]).sum(axis=2)
    if resp_ll is not None:
        ll = xr.DataArray(
            resp_ll.reshape(n_chain, n_draw, -1),
            dims=("chain", "draw", "respondent"),
            coords={
                "chain": posterior["chain"],
                "draw": posterior["draw"],
                "respondent": design.respondent_id,
            },
        )
    else:
        assert cell_ll is not None
        ll = xr.DataArray(
            cell_ll.reshape(n_chain, n_draw, -1),
            dims=("chain", "draw", "cell"),
            coords={"chain": posterior["chain"], "draw": posterior["draw"]},
        )
    log_lik = xr.Dataset({outcome: ll})
    log_lik.attrs["opinionmap_level"] = level

    responses = np.asarray(design.categories, dtype=object)[design.respondent_response].astype(str)
    observed = xr.Dataset(
        {
            outcome: ("respondent", responses),
            "counts": (("cell", "response"), design.counts),
        },
        coords={"respondent": design.respondent_id, "response": list(design.categories)},
    )
    constant: dict[str, Any] = {
        "respondent_cell": ("respondent", design.respondent_cell),
        "X": (("cell", "coef"), design.X),
    }
    for g in design.groups:
        constant[f"index_{g.name}"] = ("cell", g.index)
    for c in design.codings:
        values = design.cells[c.name]
        constant[f"cell_{c.name}"] = (
            "cell",
            values.astype(str).to_numpy()
            if c.kind == "categorical"
            else values.to_numpy(dtype=float),
        )
    constant_data = xr.Dataset(
        constant, coords={"respondent": design.respondent_id, "coef": list(design.coef_names)}
    )
    groups = {
        "posterior": posterior,
        "sample_stats": tree["sample_stats"].to_dataset(),
        "log_likelihood": log_lik,
        "observed_data": observed,
        "constant_data": constant_data,
    }
    return xr.DataTree.from_dict(groups)


def load(
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    data: Any = None,
) -> FitResult:
    """Load a fit saved by :meth:`FitResult.save`.

    Parameters
    ----------
    path
        The netCDF file.
    spec, data
        Optional: check that the fit was made with this spec and this survey;
        a mismatch is a :class:`ProvenanceError` saying which differs.

    Raises
    ------
    ProvenanceError
        Not an opinionmap fit, its stored data do not match its recorded hash
        (the file was edited), or it does not match ``spec`` / ``data``.
    """
    source = Path(path)
    if not source.is_file():
        raise ProvenanceError(f"{source}: no such file.")
    try:
        tree = xr.open_datatree(source, engine="h5netcdf").load()
    except (OSError, ValueError) as exc:
        raise ProvenanceError(f"{source}: cannot be read as a netCDF DataTree: {exc}") from exc
    attrs = tree.attrs
    if "opinionmap_spec" not in attrs:
        raise ProvenanceError(
            f"{source}: not an opinionmap fit (no 'opinionmap_spec' attribute); it may be a plain "
            "ArviZ file, which arviz.from_netcdf reads."
        )
    stored_spec = ModelSpec.from_json(attrs["opinionmap_spec"])
    design = _design_from_tree(tree, stored_spec)
    if design.data_hash != attrs["opinionmap_data_hash"]:
        raise ProvenanceError(
            f"{source}: the data stored in the file do not match its recorded data hash; the file "
            "was modified after fitting. Refit the model."
        )
    if spec is not None and spec.hash() != attrs["opinionmap_spec_hash"]:
        raise ProvenanceError(
            f"{source}: was fitted with a different spec (formula {stored_spec.formula!r}, family "
            f"{stored_spec.family!r}) than the one given ({spec.formula!r}, {spec.family!r}). "
            "Refit, or load without spec= to use the stored one."
        )
    if data is not None:
        given = build_design(stored_spec, data, covariates=design.covariates)
        if given.data_hash != attrs["opinionmap_data_hash"]:
            raise ProvenanceError(
                f"{source}: was fitted to different data than the survey given (data hash "
                f"{attrs['opinionmap_data_hash'][:12]} in the file, {given.data_hash[:12]} for "
                "the survey). Refit the model on this survey."
            )
    return FitResult(tree, stored_spec, design, diagnose(tree, warn=False))


def _design_from_tree(tree: xr.DataTree, spec: ModelSpec) -> Design:
    attrs = tree.attrs
    const = tree["constant_data"].to_dataset()
    observed = tree["observed_data"].to_dataset()
    codings = tuple(
        VariableCoding(c["name"], c["kind"], tuple(c["levels"]))
        for c in json.loads(attrs["opinionmap_codings"])
    )
    groups = tuple(
        GroupIndex(
            g["name"],
            tuple(g["factors"]),
            tuple(g["levels"]),
            const[f"index_{g['name']}"].values.astype(np.int64),
        )
        for g in json.loads(attrs["opinionmap_groups"])
    )
    cells = pd.DataFrame(
        {
            c.name: (
                pd.Categorical(
                    const[f"cell_{c.name}"].values.astype(str), categories=list(c.levels)
                )
                if c.kind == "categorical"
                else const[f"cell_{c.name}"].values.astype(float)
            )
            for c in codings
        }
    )
    categories = tuple(json.loads(attrs["opinionmap_categories"]))
    responses = observed[spec.outcome].values.astype(str)
    y = pd.Categorical(responses, categories=list(categories)).codes.astype(np.int64)
    respondent_cell = const["respondent_cell"].values.astype(np.int64)
    X = const["X"].values.astype(float)
    return Design(
        spec=spec,
        categories=categories,
        coef_names=tuple(json.loads(attrs["opinionmap_coef_names"])),
        X=X,
        x_sd=np.asarray(json.loads(attrs["opinionmap_x_sd"]), dtype=float),
        groups=groups,
        counts=observed["counts"].values.astype(np.int64),
        codings=codings,
        cells=cells,
        respondent_cell=respondent_cell,
        respondent_response=y,
        respondent_id=observed["respondent"].values.astype(str),
        data_hash=data_hash(spec, cell_keys(X, groups)[respondent_cell], y),
        covariates=(
            table_from_json(attrs["opinionmap_covariates"])
            if "opinionmap_covariates" in attrs
            else None
        ),
    )
